"""What a report says about one dataset, read only from what climb wrote: the recipe, the raw manifest
(raw/<name>/.climb/manifest.sqlite, opened read-only), and the processed outputs (manifest.json,
errors.parquet and the shards). Nothing here writes to the data dir, and nothing depends on the order
a filesystem lists things in, so the same data always gives the same facts.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from climb_cli.recipe import Recipe
from climb_cli.settings import Settings

MAX_ERRORS_LISTED = 20  # failed items listed by id on a page (all are counted)


@dataclass
class Count:
    """One bar of a chart: what is on disk against what the recipe expects."""

    name: str
    actual: int | None
    expected: int | None
    tolerance: float = 0.0

    @property
    def differs(self) -> bool:
        """Outside the recipe's tolerance (only when both counts are known): what `climb verify --outputs`
        reports as a problem."""
        from climb_cli.verify import _within

        if self.expected is None or self.actual is None:
            return False
        return not _within(self.actual, self.expected, self.tolerance)


@dataclass
class RawFacts:
    files: int = 0
    bytes: int = 0
    verified: int = 0  # files re-hashed by `climb verify` at least once
    first_verified: float = 0.0
    last_verified: float = 0.0
    last_fetched: float = 0.0
    recorded: bool = True  # False: files placed by hand that no `climb download` has recorded yet


@dataclass
class Outputs:
    """The processed outputs of the recipe's current hash (manifest.json), if any."""

    dir: Path
    manifest: dict[str, Any] | None = None
    other_hashes: list[str] = field(default_factory=list)  # outputs of an older recipe
    unreadable: str = ""  # why manifest.json could not be read

    @property
    def shards(self) -> list[dict[str, Any]]:
        return list((self.manifest or {}).get("shards") or [])

    @property
    def rows(self) -> int:
        return sum(int(s.get("rows", 0)) for s in self.shards)

    @property
    def bytes(self) -> int:
        return sum(int(s.get("bytes", 0)) for s in self.shards)


@dataclass
class Errors:
    count: int = 0
    reasons: list[tuple[str, int, str]] = field(default_factory=list)  # (reason, items, example id)
    listed: list[tuple[str, str, str]] = field(default_factory=list)  # (id, split, reason)


@dataclass
class DatasetFacts:
    recipe: Recipe
    raw_dir: Path
    raw: RawFacts | None
    outputs: Outputs
    errors: Errors
    splits: list[Count]
    classes: list[Count]

    @property
    def name(self) -> str:
        return self.recipe.name

    @property
    def state(self) -> str:
        if self.outputs.manifest is not None:
            return "processed"
        if self.outputs.other_hashes:
            return "processed (older recipe)"
        if self.raw is None or self.raw.files == 0:
            return "not downloaded"
        if self.raw.verified == self.raw.files:
            return "verified"
        return "downloaded"

    @property
    def problems(self) -> list[str]:
        """Short lines for the corpus index: what someone should look at."""
        out = []
        if self.outputs.unreadable:
            out.append(
                f"manifest.json unreadable: run climb preprocess {self.name} ({self.outputs.unreadable})"
            )
        if self.errors.count:
            out.append(f"{self.errors.count:,} failed item(s)")
        off = [c.name for c in (*self.splits, *self.classes) if c.differs]
        if off and self.outputs.manifest is not None:
            out.append(f"{len(off)} count(s) differ from expected: {', '.join(off[:4])}")
        if self.outputs.other_hashes and self.outputs.manifest is None:
            out.append("outputs are from an older recipe: run climb preprocess")
        if self.raw is not None and not self.raw.recorded:
            out.append("raw files not recorded: run climb download")
        if self.raw is not None and 0 < self.raw.verified < self.raw.files:
            out.append(f"{self.raw.files - self.raw.verified:,} raw file(s) never verified")
        return out


def raw_facts(raw_dir: Path) -> RawFacts | None:
    """Counts from the raw manifest, opened read-only (shared raw data may be read-only); files on disk
    when there is no manifest (placed by hand, never recorded)."""
    path = raw_dir / ".climb" / "manifest.sqlite"
    if not path.is_file():
        if not raw_dir.is_dir():
            return None
        from climb_cli.manifest import walk_files

        files = walk_files(raw_dir)
        return RawFacts(len(files), sum((raw_dir / f).stat().st_size for f in files), recorded=False)
    # A manifest at rest (no -wal beside it) is opened immutable: SQLite then creates no -wal/-shm
    # files, so a report never writes into raw/ (which may be shared and read-only). A live one (a
    # download is writing) is opened read-only through the WAL its writer keeps, to see its rows.
    live = path.with_name(path.name + "-wal").exists()
    db = sqlite3.connect(f"{path.absolute().as_uri()}?{'mode=ro' if live else 'immutable=1'}", uri=True)
    try:
        row = db.execute(
            "SELECT COUNT(*), COALESCE(SUM(size), 0), COALESCE(SUM(verified_at > 0), 0),"
            " COALESCE(MIN(NULLIF(verified_at, 0)), 0), COALESCE(MAX(verified_at), 0),"
            " COALESCE(MAX(fetched_at), 0) FROM files"
        ).fetchone()
    except sqlite3.DatabaseError:
        return None
    finally:
        db.close()
    files, size, verified, first_verified, last_verified, last_fetched = row
    return RawFacts(
        int(files), int(size), int(verified), float(first_verified), float(last_verified), float(last_fetched)
    )


def outputs(recipe: Recipe, settings: Settings) -> Outputs:
    base = settings.processed_dir(recipe.name)
    current = recipe.content_hash()
    out = Outputs(base / current)
    path = out.dir / "manifest.json"
    if path.is_file():
        try:
            out.manifest = json.loads(path.read_text())
        except (ValueError, OSError) as e:
            out.unreadable = f"{type(e).__name__}: {e}"
    if base.is_dir():
        out.other_hashes = sorted(
            p.name for p in base.iterdir() if p.name != current and (p / "manifest.json").is_file()
        )
    return out


def errors(out: Outputs) -> Errors:
    path = out.dir / "errors.parquet"
    if out.manifest is None or not path.is_file():
        return Errors()
    try:
        table = pq.read_table(path, columns=["id", "split", "reason"])
    except (OSError, pa.ArrowException) as e:
        n = int((out.manifest or {}).get("errors", 0))
        return Errors(n, [(f"errors.parquet cannot be read ({type(e).__name__}: {e})", n, "")])
    rows = list(zip(*(table.column(c).to_pylist() for c in ("id", "split", "reason")), strict=True))
    by_kind: Counter[str] = Counter()
    example: dict[str, tuple[str, str]] = {}  # kind -> (its first reason, item id)
    steps = _step_names()
    for item_id, _, reason in rows:
        key = _reason_kind(str(reason), steps)
        by_kind[key] += 1
        example.setdefault(key, (str(reason), str(item_id)))
    kinds = sorted(by_kind.items(), key=lambda kv: (-kv[1], kv[0]))
    return Errors(
        count=len(rows),
        reasons=[(example[k][0], n, example[k][1]) for k, n in kinds],
        listed=[(str(i), str(s or ""), str(r)) for i, s, r in rows[:MAX_ERRORS_LISTED]],
    )


_FILE = re.compile(r"^[^\s:]+\.[A-Za-z0-9]{1,5}$")


def _reason_kind(reason: str, steps: set[str]) -> str:
    """What failures have in common: the reason without the leading file name and with numbers
    blanked ("a.png: not a decodable image (240 bytes ...)" -> "not a decodable image (# bytes ...)")."""
    head, sep, rest = reason.partition(": ")
    if sep and head not in steps and ("/" in head or _FILE.match(head)):
        reason = rest
    return re.sub(r"\d+", "#", reason)


def _step_names() -> set[str]:
    from climb_cli.steps.base import registry

    return set(registry())


def _counts(
    actual: dict[str, int] | None, expected: dict[str, int], order: list[str], tol: float
) -> list[Count]:
    """Bars in the recipe's order (then the rest by name); actual None when nothing was processed."""
    names = list(dict.fromkeys([*order, *sorted({*(actual or {}), *expected})]))
    return [Count(n, None if actual is None else int(actual.get(n, 0)), expected.get(n), tol) for n in names]


SPLIT_ORDER = ("train", "training", "val", "valid", "validation", "dev", "test")


def gather(recipe: Recipe, settings: Settings) -> DatasetFacts:
    """Everything a dataset's page and its index row show, except the sample thumbnails."""
    raw_dir = settings.raw_dir(recipe.name)
    out = outputs(recipe, settings)
    m = out.manifest or {}
    expect = recipe.expect
    tol = float(getattr(expect, "tolerance", 0.0) or 0.0)
    found = {*m.get("splits", {}), *expect.splits}
    splits = _counts(
        m.get("splits") if out.manifest else None,
        dict(expect.splits),
        [s for s in SPLIT_ORDER if s in found],
        tol,
    )
    classes = _counts(
        m.get("classes") if out.manifest else None, dict(expect.class_counts), list(recipe.classes), tol
    )
    return DatasetFacts(recipe, raw_dir, raw_facts(raw_dir), out, errors(out), splits, classes)
