"""`climb verify` as a library call: one dataset's raw files or outputs checked, repaired on request,
and the result as lines to show and a one-line failure; the CLI only prints them.

`verify_dataset` takes the dataset's raw lock for the whole check-and-repair (a download or another
verify of the same dataset waits or is refused), fetches lost file lists again, re-downloads bad
files, rebuilds bad outputs, and verifies again after each repair.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from climb_cli.errors import ClimbError
from climb_cli.events import Progress
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.ui import human
from climb_cli.verify import OutputReport, RawReport


@dataclass
class DatasetResult:
    """What verify found for one dataset: its report (None when it could not be checked), what to
    say about it (lines for stdout, warnings for stderr) and why it failed, if it did."""

    name: str
    report: RawReport | OutputReport | None = None
    lines: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    failure: str | None = None


def verify_dataset(
    recipe: Recipe,
    settings: Settings,
    *,
    outputs: bool = False,
    repair: bool = False,
    workers: int | None = None,
    metadata: bool = False,
    variant: str | None = None,
    engine: Any = None,
    repair_progress: Callable[[str], Progress] | None = None,
) -> DatasetResult:
    """Verify one dataset (raw files, or with outputs=True its processed shards) and, with repair,
    fix what can be fixed. `repair_progress(label)` gives the progress of a repair download."""
    if outputs:
        return _outputs(recipe.with_variant(variant), settings, repair, workers, engine)
    from climb_cli.locks import LockedError, raw_lock

    res = DatasetResult(recipe.name)
    try:
        with raw_lock(
            settings.raw_dir(recipe.name), recipe.name, "climb verify" + (" --repair" if repair else "")
        ):
            raw = _raw(recipe, settings, workers, repair, metadata, engine, res, repair_progress)
    except LockedError as e:
        res.failure = str(e).removeprefix(f"{recipe.name}: ")
        return res
    res.report = raw
    res.lines += raw_lines(raw)
    if raw.read_only:
        res.warnings.append(
            f"{recipe.name}: {settings.raw_dir(recipe.name)} is read-only: results were not recorded"
        )
    if not raw.ok:
        res.failure = _raw_failure(raw, repair)
    return res


def _outputs(
    recipe: Recipe, settings: Settings, repair: bool, workers: int | None, engine: Any
) -> DatasetResult:
    from climb_cli.verify import repair_outputs, verify_outputs

    res = DatasetResult(recipe.name)
    rep = verify_outputs(recipe, settings, workers=workers, engine=engine)
    if repair and not rep.ok and recipe.index is not None:
        bad = len(rep.problems)
        try:
            rep = repair_outputs(recipe, settings, workers=workers)
        except ClimbError as e:
            res.failure = f"could not rebuild the outputs: {e}"
            return res
        res.lines.append(f"{recipe.name}: rebuilt the outputs ({bad} problem(s) found before)")
    res.report = rep
    res.lines.append(
        f"{recipe.name}: {rep.shards} shards, {rep.rows:,} rows, splits {rep.splits} -> "
        + ("OK" if rep.ok else f"{len(rep.problems)} problem(s)")
        + (f" (a subset: {rep.subset}; checked against its own counts)" if rep.subset else "")
    )
    res.lines += [f"  {p}" for p in rep.problems[:20]]
    if not rep.ok:
        res.failure = f"{len(rep.problems)} output problem(s); first: {rep.problems[0]}"
    return res


def _raw(
    recipe: Recipe,
    settings: Settings,
    workers: int | None,
    repair: bool,
    metadata: bool,
    engine: Any,
    res: DatasetResult,
    repair_progress: Callable[[str], Progress] | None,
) -> RawReport:
    """verify_raw, and with repair: fetch lost file lists, re-download bad files, verify again."""
    from climb_cli.verify import verify_raw

    raw, bad = verify_raw(recipe, settings, workers=workers, metadata=metadata, engine=engine)
    if repair and raw.lists_missing and not raw.never_listed:
        from climb_cli.acquire import relist

        for problem in relist(recipe, settings, raw.lists_missing):
            res.warnings.append(f"  could not fetch the file list again: {problem}")
        lists_were_missing = raw.lists_missing
        raw, bad = verify_raw(recipe, settings, workers=workers, engine=engine)  # against the fresh lists
        if not raw.lists_missing:
            res.lines.append(f"{recipe.name}: fetched the file list of {', '.join(lists_were_missing)} again")
    if repair and bad and not raw.never_listed:
        from climb_cli.acquire import repair as run_repair

        bar = repair_progress(f"{recipe.name} repair") if repair_progress else None
        try:
            outs = run_repair(recipe, settings, bad, bar)
        finally:
            if (stop := getattr(bar, "stop", None)) is not None:
                stop()
        repaired = [o.file.path for o in outs if o.status == "downloaded"]
        unrepaired = {o.file.path: o.error for o in outs if o.status == "failed"}
        raw, _ = verify_raw(recipe, settings, workers=workers, engine=engine)  # everything, after the repair
        raw.repaired = sorted(repaired)
        raw.unrepaired = unrepaired
    return raw


def raw_lines(raw: RawReport) -> list[str]:
    """The raw report as a user reads it: counts and the verdict, then up to 10 paths of each kind."""
    lines = [
        f"{raw.dataset}: {raw.checked:,} files, {human(raw.bytes)} checked in {raw.seconds:.1f}s: "
        f"{len(raw.missing)} missing, {len(raw.corrupt)} corrupt, {len(raw.unexpected)} unexpected"
        + (f", {len(raw.repaired)} repaired" if raw.repaired else "")
        + f" -> {'OK' if raw.ok else 'PROBLEMS'}"
    ]
    for label, paths in (("missing", raw.missing), ("corrupt", raw.corrupt), ("unexpected", raw.unexpected)):
        for p in paths[:10]:
            why = raw.unrepaired.get(p)
            lines.append(f"  {label}: {p}" + (f" (could not repair: {why})" if why else ""))
        if len(paths) > 10:
            lines.append(f"  ... and {len(paths) - 10} more {label}")
    lines += [
        f"  source {s!r} was never listed: run `climb download {raw.dataset}` first" for s in raw.never_listed
    ]
    lines += [
        f"  source {s!r}: its stored file list is gone; files were checked against the "
        f"raw manifest's sums (run with --repair to fetch the list again)"
        for s in raw.lists_missing
    ]
    return lines


def _raw_failure(raw: RawReport, repair: bool) -> str:
    if not (raw.missing or raw.corrupt or raw.lists_missing):
        hint = ""
    elif not repair:
        hint = " (run with --repair)"
    else:
        hint = " (--repair could not fix them; why is listed above)"
    return (
        f"{len(raw.missing)} missing, {len(raw.corrupt)} corrupt, {len(raw.unexpected)} unexpected"
        + (f", {len(raw.never_listed)} source(s) never listed" if raw.never_listed else "")
        + (f", {len(raw.lists_missing)} file list(s) gone" if raw.lists_missing else "")
        + hint
    )
