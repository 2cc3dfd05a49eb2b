"""The `climb` command line: a thin Typer skin over the library (parse options, call, render).

Exit codes: 0 ok, 1 something failed, 2 usage error (bad option, unknown dataset, bad recipe),
3 a bug in climb (an internal error, or a step that failed in a way no input can cause).
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from climb_cli import __version__, ui
from climb_cli.errors import ClimbError, StepBug, UsageError
from climb_cli.redaction import redact

if TYPE_CHECKING:  # imported where used: `climb --version` and `--help` build no recipe model
    from climb_cli.catalog import Catalog
    from climb_cli.recipe import Recipe
    from climb_cli.settings import Settings


def _value_label(self: Any, ctx: Any) -> str | None:
    """Help shows an option's metavar (N, DIR, PATH, I/N), never a Python type (<bool>, <list[Path]>)."""
    return self.metavar if isinstance(self.metavar, str) and self.metavar else None


typer.core.TyperOption.display_type_rich = _value_label  # type: ignore[method-assign]
typer.core.TyperArgument.display_type_rich = _value_label  # type: ignore[method-assign]

# Global options a user may also put after the command (`climb verify --data-dir X`): how many values.
GLOBAL_OPTIONS = {"--data-dir": 1, "--recipes": 1}

app = typer.Typer(
    name="climb",
    help="Acquire, verify and preprocess the CLIMB clinical corpus.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # tracebacks with locals could show secrets
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class State:
    def __init__(self, data_dir: str | None, recipes: list[Path]) -> None:
        self._data_dir, self._recipes = data_dir, recipes
        self._settings: Settings | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            from climb_cli.settings import Settings

            self._settings = Settings.from_env(self._data_dir, self._recipes)
        return self._settings

    @property
    def catalog(self) -> Catalog:
        from climb_cli.catalog import Catalog

        return Catalog(self.settings.recipe_dirs)


def _state(ctx: typer.Context) -> State:
    return ctx.ensure_object(State)


def _version(value: bool) -> None:
    if value:
        ui.say(f"climb {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    data_dir: Annotated[
        str | None,
        typer.Option(
            "--data-dir",
            metavar="DIR",
            help="Where raw and processed data live: a folder or object storage (s3://bucket/prefix, any "
            "fsspec URL) (env CLIMB_DATA). Also accepted after the command. Default: ~/climb-data.",
        ),
    ] = None,
    recipes: Annotated[
        list[Path] | None,
        typer.Option(
            "--recipes",
            metavar="DIR",
            help="An extra recipe folder, repeatable (env CLIMB_RECIPES, path-separated). Also "
            "accepted after the command. Default: only the packaged recipes.",
        ),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    ctx.obj = State(data_dir, list(recipes or []))
    ui.report_waits()


def _print_json(data: Any) -> None:
    sys.stdout.write(redact(json.dumps(data, indent=2, default=str)) + "\n")


# ---------------------------------------------------------------------------------------------
@app.command("list")
def list_(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    modality: Annotated[
        str | None, typer.Option(help="Only these modalities (comma-separated: eeg,graph).")
    ] = None,
    source: Annotated[
        str | None, typer.Option(help="Only recipes with a source of these kinds (nsrr,openneuro).")
    ] = None,
    access: Annotated[
        str | None, typer.Option(help="Only these access levels (open,registered,credentialed).")
    ] = None,
) -> None:
    """List the datasets climb has recipes for, with their local state.

    State: absent, partial, downloaded, verified (raw files re-hashed) or preprocessed (outputs of
    the current recipe). A broken recipe is listed with its error and the exit code is 1.

    Example: climb list --modality eeg --access open
    """
    from climb_cli.corpus import matches, summary

    st = _state(ctx)
    recipes, broken = st.catalog.load_each()
    recipes = [r for r in recipes if matches(r, modality, source, access)]
    rows = [summary(r, st.settings) for r in recipes]
    if as_json:
        _print_json(rows + [{"name": n, "error": e} for n, e in broken.items()])
    else:
        from rich.table import Table

        # where recipes come from is a column once any is not climb's own (a plug-in's, a user folder's)
        extra = ["from"] if any(row["origin"] != "climb" for row in rows) else []
        t = Table("name", "modality", "source", "access", "raw size", "samples", "state", "title", *extra)
        for row in rows:
            t.add_row(
                row["name"],
                row["modality"],
                row["source"],
                row["access"],
                ui.human(row["raw_size"]),
                f"{row['samples']:,}" if row["samples"] else "?",
                row["state"],
                row["title"],
                *([row["origin"]] if extra else []),
            )
        for n in broken:
            t.add_row(n, "", "", "", "", "", "", "[red]broken recipe (see below)[/red]", *[""] * len(extra))
        _print_table(t)
    for e in broken.values():
        ui.error(e)
    if broken:
        raise typer.Exit(1)


@app.command()
def info(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Dataset name.")],
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Show a dataset's card: description, licence, citation, access steps, files, labels, splits,
    steps, expected counts, local state and what CLIMB's definition was changed for (notes).

    Example: climb info ptbxl
    """
    from climb_cli.corpus import card

    st = _state(ctx)
    r = st.catalog.load(name)
    data = card(r, st.settings)
    if as_json:
        _print_json(data)
        return
    ui.say(f"{r.name}: {r.title}")
    if data["description"]:
        ui.say(f"  {data['description'].strip()}")
    for key in ("origin", "modality", "access", "license", "homepage", "source", "checksums", "state"):
        ui.say(f"  {key:<13} {data[key]}")
    ui.say(f"  {'raw size':<13} {ui.human(r.raw_size)}")
    ui.say(f"  {'samples':<13} {f'{r.samples:,}' if r.samples else '?'}")
    if r.citation:
        ui.say(f"  {'citation':<13} {' '.join(r.citation.split())}")
    for line in data["access_steps"]:
        ui.say(f"  {'access steps':<13} {' '.join(line.split())}")
    for line in data["files"]:
        ui.say(f"  {'files':<13} {line}")
    ui.say(f"  {'labels':<13} {data['labels']}")
    ui.say(f"  {'splits':<13} {data['splits']}")
    if r.expect.splits:
        ui.say(f"  {'expected':<13} splits {r.expect.splits}")
    if r.expect.class_counts:
        ui.say(f"  {'expected':<13} classes {r.expect.class_counts}")
    for s in r.steps:
        ui.say(f"  step {s.name} {s.params}")
    for key in ("recipe_hash", "raw_dir", "processed_dir"):
        ui.say(f"  {key:<13} {data[key]}")
    if r.notes.strip():
        ui.say("  notes (where CLIMB's definition was changed, and why):")
        for para in r.notes.strip().split("\n\n"):
            ui.say("    " + " ".join(para.split()))
    if r.climb_tensor is not None:
        ui.say(f"  {'climb_tensor':<13} {r.climb_tensor.model_dump(exclude_none=True)}")


# ---------------------------------------------------------------------------------------------
def _apply_network(
    settings: Settings,
    connections: int | None,
    retries: int | None,
    min_free: str | None = None,
    stall_speed: float | None = None,
    stall_time: float | None = None,
) -> Settings:
    from climb_cli.space import parse_size

    if min_free is not None:
        settings = settings.with_(min_free=parse_size(min_free, "--min-free"))
    for flag, value, key in (
        ("--stall-speed", stall_speed, "stall_speed"),
        ("--stall-time", stall_time, "stall_time"),
    ):
        if value is not None:
            if value < 0:
                raise UsageError(f"{flag} must be >= 0 (0 turns stall detection off)")
            settings = settings.with_(**{key: value})
    if connections is not None:
        if connections < 1:
            raise UsageError("--connections must be >= 1")
        settings = settings.with_(connections_per_host=connections)
    if retries is not None:
        settings = settings.with_(retries=retries)
    return settings


def _download_images(recipes: list[Any], settings: Any, retry_dead: bool, as_json: bool) -> None:
    """`climb download NAME --stage images`: one summary line per dataset; exit 1 when a dataset fails
    (dead links are counted, never a failure)."""
    from climb_cli.images import fetch_images

    results, failed = [], []
    for r in recipes:
        try:
            rep = fetch_images(r, settings, retry_dead=retry_dead)
        except ClimbError as e:
            failed.append(r.name)
            results.append({"dataset": r.name, "ok": False, "error": str(e)})
            if not as_json:
                ui.error(str(e))
            continue
        results.append({"dataset": r.name, "ok": True, "wanted": rep.wanted, "fetched": rep.fetched,
                        "already": rep.already, "bytes": rep.bytes, "dead": dict(rep.dead),
                        "failed": dict(rep.failed)})  # fmt: skip
        if not as_json:
            ui.say(rep.summary())
    if as_json:
        print(json.dumps(results, indent=1))
    if failed:
        raise typer.Exit(1)


@app.command()
def download(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Dataset names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset with a recipe.")] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only count files and bytes; check disk space.")
    ] = False,
    connections: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Connections per host (env CLIMB_CONNECTIONS). Default: 4.",
        ),
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(
            min=0,
            metavar="N",
            help="Retries per file (env CLIMB_RETRIES). Default: 8.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout.")] = False,
    min_free: Annotated[
        str | None,
        typer.Option(
            "--min-free",
            metavar="SIZE",
            help="Free space to keep on the data disk, checked before and while downloading, e.g. 2G, "
            "500M, 0 (env CLIMB_MIN_FREE). Default: 2G.",
        ),
    ] = None,
    stall_speed: Annotated[
        float | None,
        typer.Option(
            "--stall-speed",
            min=0,
            metavar="B/S",
            help="A body slower than this many bytes/s over --stall-time is a stall: retried (resumed), "
            "then failed; 0 turns it off (env CLIMB_STALL_SPEED). Default: 1000.",
        ),
    ] = None,
    stall_time: Annotated[
        float | None,
        typer.Option(
            "--stall-time",
            min=0,
            metavar="S",
            help="Seconds of the stall window (env CLIMB_STALL_TIME). Default: 30.",
        ),
    ] = None,
    mirror: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Where PhysioNet file bytes come from: origin (physionet.org), aws-open (the public "
            "physionet-open bucket), aws (the AWS bucket shared with you, CLIMB_PHYSIONET_AWS_BUCKET) or "
            "gcs (requester-pays gs://SLUG-VERSION.physionet.org, billed to CLIMB_GCS_BILLING_PROJECT); "
            "files are checked against the same upstream SHA256SUMS.txt (env CLIMB_MIRROR). Default: origin.",
        ),
    ] = None,
    stage: Annotated[
        str,
        typer.Option(
            "--stage",
            metavar="STAGE",
            help="files: the recipe's sources; images: fetch the image URLs a preprocess wrote (LAION), "
            "resumable and rate-limited, dead links counted and listed, not fatal. Default: files.",
        ),
    ] = "files",
    retry_dead: Annotated[
        bool, typer.Option("--retry-dead", help="With --stage images: try links found dead before again.")
    ] = False,
    write_lock: Annotated[
        Path | None,
        typer.Option(
            "--write-lock",
            metavar="PATH",
            help="After downloading, write the pinned sums (checksums: pinned) to this file, or to "
            "<folder>/<name>.lock — e.g. beside the recipe, to commit with it. Default: none.",
        ),
    ] = None,
) -> None:
    """Download datasets' raw files, resuming and verifying each against upstream checksums.

    Every dataset that can be downloaded is; the others (no credentials, access not granted,
    manual, failed) are listed at the end and the exit code is 1.

    Example: climb download ptbxl
    """
    from climb_cli.acquire import check_disk, plan
    from climb_cli.acquire import download as run_download
    from climb_cli.settings import DATA_DIR_HINT, writable
    from climb_cli.sources.physionet import MIRRORS

    st = _state(ctx)
    settings = _apply_network(st.settings, connections, retries, min_free, stall_speed, stall_time)
    if mirror is not None:
        if mirror not in MIRRORS:
            raise UsageError(f"--mirror {mirror!r}: choose one of {', '.join(MIRRORS)}")
        settings = settings.with_(mirror=mirror)
    recipes = st.catalog.resolve(list(names or []), all_)
    if stage not in ("files", "images"):
        raise UsageError(f"--stage {stage!r}: choose files or images")
    if stage == "images":
        _download_images(recipes, settings, retry_dead, as_json)
        return
    if write_lock is not None and len(recipes) > 1 and not write_lock.is_dir():
        raise UsageError("--write-lock with several datasets needs a folder (each gets <name>.lock)")
    failed: list[tuple[str, str]] = []
    summary: list[tuple[str, str, str]] = []  # (dataset, category, why) of those not complete
    results: list[dict[str, Any]] = []  # the --json summary, one object per dataset
    say = (lambda text: None) if as_json else ui.say
    for r in recipes:
        if dry_run:
            try:
                p = plan(r, settings, with_sizes=True)
            except ClimbError as e:
                failed.append((r.name, str(e)))
                results.append({"dataset": r.name, "ok": False, "error": str(e)})
                continue
            manual = sum(1 for src, _ in p.jobs if getattr(src, "manual", False))
            unknown = (
                f" + {p.unknown_files:,} file(s) of unknown size"
                + (f" ({p.size_note})" if p.size_note else "")
                if p.unknown_files
                else ""
            )
            say(
                f"{r.name}: {p.files:,} files, {ui.human(p.known_bytes)} ({p.known_bytes} bytes){unknown}, "
                f"{p.present_files:,} already present ({ui.human(p.present_bytes)})"
                + (f" ({manual} to be placed by hand: manual source)" if manual else "")
            )
            problem = check_disk(p, settings)
            if problem:
                failed.append((r.name, problem))
            elif p.unknown_files and not as_json:
                ui.warn(
                    f"{r.name}: disk check covers the known {ui.human(p.known_bytes)} only; "
                    f"{p.unknown_files:,} file(s) of unknown size may need more"
                )
            results.append({**p.as_dict(), "ok": problem is None, "disk_problem": problem})
            continue
        if not writable(settings.raw_dir(r.name)):
            why = f"cannot write to {settings.raw_dir(r.name)} (no write access there); {DATA_DIR_HINT}"
            failed.append((r.name, why))
            results.append({"dataset": r.name, "ok": False, "error": why})
            continue
        bar = ui.TransferBar(r.name) if not as_json else None
        t0 = time.monotonic()
        try:
            report = run_download(r, settings, bar)
        finally:
            if bar is not None:
                bar.stop()
        if r.sources and report.bytes:
            from climb_cli.plan import record_download

            record_download(
                settings,
                r.sources[0].kind,
                report.bytes,
                time.monotonic() - t0,
                settings.connections_per_host,
            )
        results.append(
            {
                "dataset": r.name,
                "ok": report.ok,
                "downloaded": report.count("downloaded"),
                "bytes": report.bytes,
                "already_present": report.count("skipped"),
                "failed": report.count("failed"),
                "extracted": sum(x.extracted for x in report.extracted),
                "pinned": report.pinned,
                "raw_dir": str(settings.raw_dir(r.name)),
                "problems": [
                    {"category": pr.category, "source": pr.source, "text": pr.text} for pr in report.problems
                ],
            }
        )
        if report.outcomes or report.skipped_files or not report.problems:
            extracted = sum(x.extracted for x in report.extracted)
            say(
                f"{r.name}: {report.count('downloaded')} downloaded ({ui.human(report.bytes)}), "
                f"{report.count('skipped')} already present, {report.count('failed')} failed"
                + (f", {extracted} extracted from {len(report.extracted)} archive(s)" if extracted else "")
                + (
                    f", {report.pinned} sum(s) pinned"
                    + (" (files without an upstream sum)" if r.checksums == "upstream" else "")
                    if report.pinned
                    else ""
                )
                + f" -> {settings.raw_dir(r.name)}"
            )
        for placement in report.manual:
            for line in placement.lines():
                say(line)
        if settings.remote and report.ok:
            from climb_cli.storage import Remote, push_raw

            sent, nbytes = push_raw(settings.raw_dir(r.name), Remote(settings.raw_url(r.name) or ""))
            say(f"{r.name}: {sent} file(s), {ui.human(nbytes)} uploaded -> {settings.raw_url(r.name)}")
        if write_lock is not None:
            from climb_cli.pins import Pins

            if r.checksums == "pinned":
                say(f"{r.name}: pins written to {Pins(r, settings).write_lock(write_lock)}")
            else:
                ui.warn(f"{r.name}: no lock written: its recipe says checksums: {r.checksums}, not pinned")
        if not report.ok:
            failed.append((r.name, report.why))
            summary.extend((r.name, pr.category, pr.text) for pr in report.problems)
    if dry_run and all_:
        _corpus_totals(recipes, settings, say)
    if as_json:
        _finish_json(results, failed)
        return
    if summary and len(recipes) > 1:
        _download_summary(summary, len(recipes))
        raise typer.Exit(1)
    _finish(failed, len(recipes))


def _finish_json(results: list[dict[str, Any]], failed: list[tuple[str, str]]) -> None:
    """The --json summary on stdout (errors are in it), exit 1 if any dataset failed."""
    _print_json(results)
    if failed:
        raise typer.Exit(1)


def _corpus_totals(recipes: list[Recipe], settings: Settings, say: Callable[[str], None]) -> None:
    """`download --all --dry-run`'s closing lines: the recipes' declared sums against the paper's, and
    whether what is still to download fits on the data dir's disk."""
    import shutil

    from climb_cli.corpus import totals, totals_lines
    from climb_cli.report.gather import raw_facts

    present = sum((f.bytes if f else 0) for f in (raw_facts(settings.raw_dir(r.name)) for r in recipes))
    target = settings.data_dir
    while not target.exists():
        target = target.parent
    for line in totals_lines(totals(recipes), shutil.disk_usage(target).free, present):
        say(line)


def _finish(failed: list[tuple[str, str]], total: int) -> None:
    if failed:
        for name, why in failed:
            ui.error(why if why.startswith(name) else f"{name}: {why}")
        if total > 1:
            ui.error(f"{len(failed)} of {total} dataset(s) failed")
        raise typer.Exit(1)


def _download_summary(rows: list[tuple[str, str, str]], total: int) -> None:
    """The closing table of `download --all`: each dataset that could not be completed, and why."""
    from rich.table import Table

    t = Table("dataset", "why not", "what to do", title="not downloaded", title_justify="left")
    for name, category, why in rows:
        t.add_row(redact(name), redact(category), redact(why.removeprefix(f"{name}: ")))
    _print_table(t)
    datasets = len({name for name, _, _ in rows})
    ui.error(f"{datasets} of {total} dataset(s) could not be downloaded completely (see the table above)")


def _print_table(t: Any) -> None:
    """A table on stdout; not wrapped when stdout is not a terminal (so it greps and pipes well)."""
    if ui.console.is_terminal:
        ui.console.print(t)
        return
    from rich.console import Console

    Console(width=1000, highlight=False, soft_wrap=True).print(t)


EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="Where work runs: loky (this machine's cores), dask or ray (a cluster, or a local one).",
    ),
]
SchedulerOpt = Annotated[
    str | None,
    typer.Option("--scheduler", help="Dask scheduler, e.g. tcp://10.0.0.5:8786 [a local cluster]."),
]
AddressOpt = Annotated[
    str | None,
    typer.Option("--address", help="Ray cluster address, e.g. ray://10.0.0.5:10001 [a local Ray]."),
]


def _engine_options(engine: str, scheduler: str | None, address: str | None) -> None:
    from climb_cli.engines import ENGINES

    if engine not in ENGINES:
        raise UsageError(f"--engine {engine!r}: use one of {', '.join(ENGINES)}")
    if scheduler and engine != "dask":
        raise UsageError("--scheduler is the Dask scheduler's address: use it with --engine dask")
    if address and engine != "ray":
        raise UsageError("--address is the Ray cluster's address: use it with --engine ray")


def _cluster(engine: str, scheduler: str | None, address: str | None, workers: int | None) -> Any:
    """verify's engine: None for loky (local threads hash), else a Dask or Ray cluster started once."""
    from climb_cli.engines import make_engine

    _engine_options(engine, scheduler, address)
    if engine == "loky":
        return None
    return make_engine(workers or os.cpu_count() or 1, engine, scheduler=scheduler, address=address)


@app.command()
def verify(
    ctx: typer.Context,
    names: Annotated[
        list[str] | None, typer.Argument(help="Dataset names (default: every downloaded one).")
    ] = None,
    outputs: Annotated[
        bool, typer.Option("--outputs", help="Check processed shards instead of raw files.")
    ] = False,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="Re-download missing or corrupt raw files (with --outputs: rebuild bad shards).",
        ),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Hashing threads. Default: the CPUs this process may use.",
        ),
    ] = None,
    metadata: Annotated[
        bool,
        typer.Option(
            "--metadata",
            help="Hash only files whose size or mtime changed since they were recorded (fast at "
            "corpus scale; a full verify re-hashes everything).",
        ),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    variant: Annotated[
        str | None, typer.Option(help="With --outputs: the variant that was preprocessed.")
    ] = None,
    engine: EngineOpt = "loky",
    scheduler: SchedulerOpt = None,
    address: AddressOpt = None,
) -> None:
    """Re-hash raw files against upstream sums (or shards against their manifest with --outputs).

    Example: climb verify ptbxl --repair
    """
    from climb_cli.engines import cpu_capped_workers
    from climb_cli.verify_run import verify_dataset

    workers = cpu_capped_workers(workers)[0]  # threads beyond the usable CPUs only contend
    st = _state(ctx)
    settings = st.settings
    pool = _cluster(engine, scheduler, address, workers)
    if pool is not None:
        ctx.call_on_close(pool.close)
    if names:
        recipes = st.catalog.resolve(list(names), False)
    else:
        recipes = [r for r in st.catalog.load_all() if settings.raw_dir(r.name).is_dir()]
        if not recipes:
            raise UsageError(f"nothing downloaded under {settings.data_dir / 'raw'}; name a dataset")
    results: list[dict[str, Any]] = []
    failed: list[tuple[str, str]] = []
    for r in recipes:
        res = verify_dataset(
            r,
            settings,
            outputs=outputs,
            repair=repair,
            workers=workers,
            metadata=metadata,
            variant=variant,
            engine=pool,
            repair_progress=lambda label: ui.TransferBar(label, report_failures=False),  # listed below
        )
        for line in [] if as_json else res.lines:
            ui.say(line)
        for line in res.warnings:
            ui.warn(line)
        if res.report is not None:
            results.append(res.report.as_dict())
        if res.failure is not None:
            failed.append((r.name, res.failure))
    if as_json:
        _finish_json(results, failed)
        return
    _finish(failed, len(recipes))


# ---------------------------------------------------------------------------------------------
auth_app = typer.Typer(
    help="Credentials: where they come from (status), dataset access (check), storing them (login).",
    no_args_is_help=True,
)
app.add_typer(auth_app, name="auth")


@auth_app.command("status")
def auth_status(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Where each service's credential comes from (never the secret itself).

    For each service: whether climb finds a credential, where from (env var name or file path), and
    the account name where there is one.

    Example: climb auth status --json
    """
    from climb_cli.auth import status

    rows = status(_state(ctx).settings)
    if as_json:
        _print_json(rows)
        return
    from rich.table import Table

    t = Table("service", "found", "from", "identity")
    for row in rows:
        t.add_row(
            row["service"], "yes" if row["found"] else "no", redact(row["origin"]), redact(row["identity"])
        )
    _print_table(t)


@auth_app.command("check")
def auth_check(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Dataset names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset with a recipe.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Whether each dataset is accessible, and the next step when it is not.

    Without downloading data: credentials found? access granted? (PhysioNet: one byte of that
    version's SHA256SUMS.txt; manual: files placed?) Exit 1 when any requested dataset is not
    accessible.

    Example: climb auth check mimic-iv-ecg ptbxl
    """
    from dataclasses import asdict

    from climb_cli.auth import check

    st = _state(ctx)
    rows = check(st.catalog.resolve(list(names or []), all_), st.settings)
    if as_json:
        _print_json([asdict(r) for r in rows])
    else:
        from rich.table import Table

        t = Table("dataset", "source", "access", "detail", "next step")
        for row in rows:
            detail = row.detail.removeprefix(f"{row.dataset}: ")
            t.add_row(row.dataset, f"{row.source} ({row.kind})", row.status, detail, row.next_step)
        _print_table(t)
    if not all(r.ok for r in rows):
        if not as_json:
            bad = len({r.dataset for r in rows if not r.ok})
            ui.error(f"{bad} of {len({r.dataset for r in rows})} dataset(s) not accessible")
        raise typer.Exit(1)


@auth_app.command("login")
def auth_login(
    ctx: typer.Context,
    service: Annotated[
        str, typer.Argument(help="physionet, kaggle, grand-challenge, nsrr, openneuro or aimi.")
    ],
    username: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="Account name (PhysioNet; Kaggle legacy key). Default: prompted for on a terminal.",
        ),
    ] = None,
    no_check: Annotated[bool, typer.Option("--no-check", help="Store without trying the secret.")] = False,
) -> None:
    """Store a password or token where the service's own tools look (mode 0600).

    PhysioNet: ~/.netrc; Kaggle: ~/.kaggle/access_token (or kaggle.json with --username); Grand
    Challenge and NSRR: climb's token files; OpenNeuro: openneuro-py's config.json; Stanford AIMI: the
    container URL with its SAS, per container. The secret is read from a hidden prompt, or from stdin
    when stdin is not a terminal — never from the command line — and tried before it is stored.

    Example: climb auth login physionet --username ada
    """
    from climb_cli.auth import login

    res = login(service, _state(ctx).settings, username=username, check=not no_check)
    if res.checked:
        ui.say(f"{service}: {res.checked}")
    for note in res.notes:
        ui.warn(f"{service}: {note}")
    ui.say(f"{service}: stored in {res.path} (mode 0600)")


@app.command()
def preprocess(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Dataset names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset whose raw files are present.")] = False,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Worker processes; capped by the CPUs this process may use and by memory. "
            "Default: the CPUs this process may use.",
        ),
    ] = None,
    max_errors: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="N",
            help="Items that may fail before the exit code says so. Default: 0.",
            show_default=False,
        ),
    ] = 0,
    part: Annotated[
        str | None,
        typer.Option(
            metavar="I/N",
            help="Run only every N-th shard from I (one task of a cluster array job). Default: all shards.",
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Only the first N items (recorded as a subset in the manifest). Default: every item.",
        ),
    ] = None,
    where: Annotated[
        list[str] | None,
        typer.Option(
            metavar="COLUMN=V1,V2",
            help="Only index rows with these values (a subset; repeatable). Default: every row.",
        ),
    ] = None,
    variant: Annotated[
        str | None,
        typer.Option(
            metavar="NAME",
            help="A named variant of the recipe (CLIMB's few-shot: small, medium, large). Default: none.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON summary on stdout.")] = False,
    engine: EngineOpt = "loky",
    scheduler: SchedulerOpt = None,
    address: AddressOpt = None,
    memory_per_worker: Annotated[
        str | None,
        typer.Option(
            "--memory-per-worker",
            help="Memory one worker may use, e.g. 8GB [available]; an item needing more fails as an item.",
        ),
    ] = None,
) -> None:
    """Run each recipe's steps over its items and write sharded Parquet with a manifest.

    Example: climb preprocess --all --workers 64
    """
    from climb_cli.engines import cpu_capped_workers, start_pool, stop_pool
    from climb_cli.memory import parse_size
    from climb_cli.settings import DATA_DIR_HINT, require_writable

    st = _state(ctx)
    settings = st.settings
    part_tuple = _parse_part(part)
    if limit is not None and limit < 1:
        raise UsageError("--limit must be >= 1")
    where_map: dict[str, list[str]] = {}
    for w in where or []:
        col, eq, values = w.partition("=")
        if not eq or not col.strip():
            raise UsageError(f"--where {w!r}: write COLUMN=VALUE[,VALUE...]")
        where_map.setdefault(col.strip(), []).extend(values.split(","))
    _engine_options(engine, scheduler, address)
    try:
        memory = parse_size(memory_per_worker) if memory_per_worker else None
    except ValueError as e:
        raise UsageError(f"--memory-per-worker: {e}") from None
    n_workers, cpu_note = cpu_capped_workers(workers)
    if engine == "loky":  # the workers start while the recipes load and the datasets are indexed
        start_pool(n_workers, memory)
    from climb_cli.pipeline import EngineOptions, PreprocessReport, preprocess_many

    try:
        recipes = [r.with_variant(variant) for r in st.catalog.resolve(list(names or []), all_)]
        if settings.remote:  # raw files pushed from another machine come into this one's cache
            from climb_cli.storage import Remote, pull_raw

            for r in recipes:
                if not (settings.raw_dir(r.name) / ".climb" / "manifest.sqlite").is_file():
                    pull_raw(Remote(settings.raw_url(r.name) or ""), settings.raw_dir(r.name))
    except BaseException:  # an unknown name, an interrupt: the workers started above go too
        stop_pool()
        raise
    if all_:
        ready = [r for r in recipes if settings.raw_dir(r.name).is_dir() and r.index is not None]
        for r in recipes:
            if r not in ready:
                ui.say(f"{r.name}: skipped (not downloaded, or nothing to preprocess)")
        recipes = ready
    failed: list[tuple[str, str]] = []
    outcome: dict[str, PreprocessReport | ClimbError] = {}
    writable: list[Recipe] = []
    for r in recipes:
        try:
            require_writable(settings.processed_dir(r.name), DATA_DIR_HINT)
            writable.append(r)
        except ClimbError as e:
            outcome[r.name] = e
    # every dataset's units in one pool, started once
    label = writable[0].name if len(writable) == 1 else f"{len(writable)} datasets"
    bar, task = ui.unit_bar(f"{label} items", None)
    bar.start()
    try:
        outcome |= preprocess_many(
            writable,
            settings,
            workers=n_workers,
            on_plan=lambda units, items: bar.update(task, total=items),
            on_unit=lambda u: bar.update(task, advance=u.rows + len(u.errors)),
            part=part_tuple,
            engine=EngineOptions(engine, scheduler, address, memory),
            limit=limit,
            where=where_map or None,
        )
    finally:
        bar.stop()
    results: list[dict[str, Any]] = []
    for r in recipes:
        report = outcome[r.name]
        if not isinstance(report, PreprocessReport):
            failed.append((r.name, str(report)))
            results.append({"dataset": r.name, "ok": False, "error": str(report)})
            continue
        todo = len(report.units) - report.skipped_units
        over = report.errors > max_errors
        results.append(
            {
                "dataset": r.name,
                "ok": not over,
                "rows": report.rows,
                "shards": len(report.units),
                "already_committed": report.skipped_units,
                "failed_items": report.errors,
                "workers": report.workers,
                "seconds": round(report.seconds, 3),
                "out_dir": str(report.out_dir),
                "partial": report.partial,
            }
        )
        if not report.partial and report.skipped_units == 0 and report.seconds > 0:
            from climb_cli.plan import record_preprocess

            record_preprocess(
                settings,
                r.modality,
                report.rows + report.errors,
                report.seconds,
                report.workers,
                sum(u.bytes for u in report.units),
            )
        if as_json:
            if over:
                failed.append(
                    (r.name, f"{report.errors} item(s) failed (more than --max-errors {max_errors})")
                )
            continue
        if todo:  # a note on workers only when there was work for them
            for note in (cpu_note, report.note):
                if note:
                    ui.warn(f"{r.name}: {note}")
        if report.partial:
            ui.say(
                f"{r.name}: part {part}: {len(report.units)} shard(s), {report.rows:,} rows, "
                f"{report.errors} failed item(s); once every part is done, run without --part to commit"
            )
            continue
        ui.say(
            f"{r.name}: {report.rows:,} rows in {len(report.units)} shards "
            f"({report.skipped_units} already committed), {report.errors} failed item(s), "
            f"{report.seconds:.1f}s -> {report.where}"
        )
        if report.errors:
            ui.say(f"  failed items are listed in {report.where}/errors.parquet")
        if over:
            failed.append((r.name, f"{report.errors} item(s) failed (more than --max-errors {max_errors})"))
    if as_json:
        _finish_json(results, failed)
        return
    _finish(failed, len(recipes))


@app.command()
def plan(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Dataset names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset with a recipe.")] = False,
    workers: Annotated[int | None, typer.Option(help="Workers to plan for [all cores].")] = None,
    connections: Annotated[
        int | None, typer.Option(help="Connections per host to plan for [env CLIMB_CONNECTIONS; 4].")
    ] = None,
    listing: Annotated[
        bool,
        typer.Option("--list", help="Ask upstream for the exact file list and sizes (needs network)."),
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The work as numbers before it starts: files, bytes, samples, disk per stage, hours.

    Rates are the ones measured on this machine (download, preprocess) or documented defaults;
    every figure says where it came from.

    Example: climb plan --all --workers 64 --connections 8
    """
    from climb_cli import plan as planning

    st = _state(ctx)
    settings = _apply_network(st.settings, connections, None)
    if workers is not None and workers < 1:
        raise UsageError("--workers must be >= 1")
    n = workers or os.cpu_count() or 1
    recipes = st.catalog.resolve(list(names or []), all_)
    rates = planning.load_rates(settings)
    plans = []
    failed: list[tuple[str, str]] = []
    for r in recipes:
        exact = None
        if listing:
            from climb_cli.acquire import plan as list_files

            try:
                listed = list_files(r, settings, with_sizes=True)
                exact = (listed.files, listed.total_bytes)
            except ClimbError as e:
                failed.append((r.name, str(e)))
        plans.append(
            planning.plan_dataset(
                r, settings, workers=n, connections=settings.connections_per_host, listing=exact, rates=rates
            )
        )
    total = planning.totals(plans)
    if as_json:
        _print_json(
            {
                "workers": n,
                "connections": settings.connections_per_host,
                "datasets": [p.as_dict() for p in plans],
                "total": total,
            }
        )
    else:
        from rich.table import Table

        def fig(f: Any, fmt: Any) -> str:
            return "?" if f.value is None else f"{fmt(f.value)} ({f.source})"

        def hours(v: float) -> str:
            return f"{v:.2f} h"

        t = Table(
            "dataset",
            "files",
            "raw",
            "extracted",
            "processed",
            "peak disk",
            "samples",
            "download",
            "verify",
            "preprocess",
            title=f"plan for {n} worker(s), {settings.connections_per_host} connection(s) per host",
            title_justify="left",
        )
        for p in plans:
            t.add_row(
                p.name,
                fig(p.files, lambda v: f"{int(v):,}"),
                fig(p.raw_bytes, ui.human),
                fig(p.extracted_bytes, ui.human),
                fig(p.processed_bytes, ui.human),
                "?" if p.peak_bytes is None else ui.human(p.peak_bytes),
                fig(p.samples, lambda v: f"{int(v):,}"),
                fig(p.download_hours, hours),
                fig(p.verify_hours, hours),
                fig(p.preprocess_hours, hours),
            )
        _print_table(t)

        def unknown(key: str) -> str:
            return f" ({total[key]['unknown']} unknown)" if total[key]["unknown"] else ""

        ui.say(
            f"total: {len(plans)} dataset(s), {int(total['files']['value']):,} files{unknown('files')}, "
            f"raw {ui.human(total['raw_bytes']['value'])}{unknown('raw_bytes')}, "
            f"extracted {ui.human(total['extracted_bytes']['value'])}, "
            f"processed {ui.human(total['processed_bytes']['value'])}, "
            f"peak disk {ui.human(total['peak_bytes']['value'])}{unknown('peak_bytes')}, "
            f"{int(total['samples']['value']):,} samples{unknown('samples')}; "
            f"download {total['download_hours']['value']:.1f} h, "
            f"verify {total['verify_hours']['value']:.1f} h, "
            f"preprocess {total['preprocess_hours']['value']:.1f} h"
        )
        for p in plans:
            for d in p.deletable:
                ui.say(f"  {p.name}: deletable: {d}")
    _finish(failed, len(recipes))


@app.command()
def demo(
    ctx: typer.Context,
    records: Annotated[
        int,
        typer.Option(
            min=10, metavar="N", help="How many generated ECG records. Default: 120.", show_default=False
        ),
    ] = 120,
    workers: Annotated[
        int | None,
        typer.Option(
            min=1,
            metavar="N",
            help="Worker processes. Default: the CPUs this process may use.",
        ),
    ] = None,
) -> None:
    """Run the whole pipeline offline on a generated PTB-XL-shaped project served on 127.0.0.1.

    Example: climb demo
    """
    from climb_cli.demo import run_demo
    from climb_cli.engines import cpu_capped_workers
    from climb_cli.settings import DATA_DIR_HINT, require_writable

    st = _state(ctx)
    require_writable(st.settings.data_dir / "demo", DATA_DIR_HINT)
    n_workers, note = cpu_capped_workers(workers)
    if note:
        ui.warn(f"demo: {note}")
    ok = run_demo(st.settings.data_dir / "demo", records=records, workers=n_workers)
    if not ok:
        raise typer.Exit(1)


@app.command()
def report(
    ctx: typer.Context,
    names: Annotated[list[str] | None, typer.Argument(help="Dataset names.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Every dataset with a recipe.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", metavar="DIR", help="Folder for the pages. Default: <data-dir>/reports."),
    ] = None,
    no_samples: Annotated[
        bool,
        typer.Option(
            "--no-samples", help="Show no sample images or rows (data that must not leave its machine)."
        ),
    ] = False,
) -> None:
    """Write a static HTML page per dataset (counts, samples, failures, steps, provenance) and a corpus index.

    Each page is one self-contained file: open it in any browser, no server needed.

    Example: climb report --all --out reports/
    """
    from climb_cli.report import write_reports

    st = _state(ctx)
    recipes = st.catalog.resolve(list(names or []), all_)
    written = write_reports(recipes, st.settings, out, corpus=st.catalog.load_all(), samples=not no_samples)
    for name, path in written.pages.items():
        ui.say(f"{name}: {path}")
    ui.say(f"index: {written.index}")


@app.command()
def steps(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """List every preprocessing step with its parameters, types and defaults, by modality.

    Example: climb steps --json
    """
    from climb_cli.steps.base import registry

    out: list[dict[str, Any]] = []
    for name, s in registry().items():
        params = []
        for pname, f in s.params.model_fields.items():
            default = None if f.is_required() else f.get_default(call_default_factory=True)
            params.append(
                {
                    "name": pname,
                    "type": _type_name(f.annotation),
                    "required": f.is_required(),
                    "default": default,
                    "help": f.description or "",
                }
            )
        out.append({"name": name, "modality": s.modality, "doc": s.doc, "params": params, "origin": s.origin})
    if as_json:
        _print_json(out)
        return
    current = None
    for entry in out:
        if entry["modality"] != current:
            current = entry["modality"]
            ui.say(f"\n[{current}]")
        ui.say(f"  {entry['name']}: {entry['doc']}")
        if not str(entry["origin"]).startswith("climb"):
            ui.say(f"      from {entry['origin']}")
        for p in entry["params"]:
            d = "required" if p["required"] else f"default {p['default']!r}"
            ui.say(f"      {p['name']}: {p['type']} ({d}){' - ' + p['help'] if p['help'] else ''}")


def _parse_part(part: str | None) -> tuple[int, int] | None:
    if part is None:
        return None
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        raise UsageError(f"--part {part!r}: expected I/N, e.g. 0/8") from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError(f"--part {part!r}: need 0 <= I < N")
    return i, n


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def hoist_global_options(argv: list[str]) -> list[str]:
    """Move global options given after the command (`climb verify --data-dir X`) in front of it,
    where the parser expects them. Nothing after `--` is touched."""
    head: list[str] = []
    rest: list[str] = []
    i = 0
    seen_command = False
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            rest.extend(argv[i:])
            break
        name = arg.split("=", 1)[0]
        if seen_command and name in GLOBAL_OPTIONS:
            n = 0 if "=" in arg else GLOBAL_OPTIONS[name]
            head.extend(argv[i : i + 1 + n])
            i += 1 + n
            continue
        if not arg.startswith("-") and not seen_command:
            seen_command = True
            head_len = len(rest)
            rest.append(arg)
            i += 1
            continue
        if not seen_command and name in GLOBAL_OPTIONS and "=" not in arg:
            rest.extend(argv[i : i + 1 + GLOBAL_OPTIONS[name]])
            i += 1 + GLOBAL_OPTIONS[name]
            continue
        rest.append(arg)
        i += 1
    if not head or not seen_command:
        return argv
    return rest[:head_len] + head + rest[head_len:]


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM (a scheduler, `kill`) stops a run the way Ctrl-C does


def main() -> None:
    import atexit
    import gc
    import signal

    from climb_cli import plugins

    plugins.cli_process = True
    signal.signal(signal.SIGTERM, _terminate)
    # At exit, after the atexit work registered later (worker pools, clusters) and before the interpreter's
    # teardown: keep the objects alive to the end instead of sweeping and freeing them one by one (0.3-0.5 s
    # of a `climb download` of a few hundred files went there). Every file climb writes is closed explicitly.
    atexit.register(gc.freeze)
    try:
        try:
            app(args=hoist_global_options(sys.argv[1:]), prog_name="climb")
        except SystemExit as e:
            if e.code == 130:  # typer's answer to KeyboardInterrupt (Ctrl-C, or SIGTERM above)
                raise KeyboardInterrupt from None
            raise
    except StepBug as e:
        if os.environ.get("CLIMB_DEBUG"):
            sys.stderr.write(redact("".join(traceback.format_exception(e))))
        ui.error(f"{e} — a bug in climb, please report it (set CLIMB_DEBUG=1 for the traceback)")
        sys.exit(e.exit_code)
    except ClimbError as e:
        ui.error(str(e))
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        ui.error("interrupted; rerun to continue")
        sys.exit(130)
    except Exception as e:  # an unexpected failure: a bug; one line, secrets scrubbed
        from climb_cli.errors import is_disk_full, no_space

        if is_disk_full(e):  # a full disk where no layer said more: still one clear line
            where = os.path.dirname(getattr(e, "filename", None) or "") or "the data folder"
            ui.error(str(no_space(where)))
            sys.exit(1)
        if os.environ.get("CLIMB_DEBUG"):
            sys.stderr.write(redact("".join(traceback.format_exception(e))))
        ui.error(f"internal error: {type(e).__name__}: {e} (set CLIMB_DEBUG=1 for the traceback)")
        sys.exit(StepBug.exit_code)
