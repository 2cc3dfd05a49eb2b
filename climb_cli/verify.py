"""Verification: raw files against their upstream sums, and processed shards against their manifest.

Raw: every expected file (the recipe's selection of each source's list) is re-hashed in parallel
threads (hashlib releases the GIL, so all cores hash large files at once; tasks of small files, mostly
per-file Python work, run one at a time: hash_plan.gil_bound) and reported as missing, corrupt or
fine; files under raw/<dataset>/ that upstream does not have are reported as unexpected. Members
extracted from archives are expected files too, checked against the sums recorded when they were
extracted (an archive removed on purpose after extraction is not missing); with `checksums: pinned`
files without an upstream sum are checked against their pins; a manual source's globs with fewer
files than the recipe expects are reported as missing.
Outputs: every shard's sha256, byte size and row count against manifest.json, and the split and
class counts against the recipe's expectations.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from climb_cli import archives
from climb_cli.engines import usable_cpus
from climb_cli.hash_plan import gil_bound, plan_tasks
from climb_cli.hashing import hash_file as _hash_file
from climb_cli.hashing import stat_and_hash
from climb_cli.locks import raw_lock
from climb_cli.manifest import Entry, RawManifest, walk_files
from climb_cli.pins import Pins
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.base import RemoteFile, Source


@dataclass
class RawReport:
    dataset: str
    checked: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    corrupt: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    never_listed: list[str] = field(default_factory=list)  # sources with no stored file list
    lists_missing: list[str] = field(default_factory=list)  # list gone: checked against the manifest
    repaired: list[str] = field(default_factory=list)
    seconds: float = 0.0
    read_only: bool = False  # the raw folder is not writable: results were not recorded
    unrepaired: dict[str, str] = field(default_factory=dict)  # path -> why --repair could not fix it

    @property
    def ok(self) -> bool:
        return not (
            self.missing or self.corrupt or self.unexpected or self.never_listed or self.lists_missing
        )

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "ok": self.ok,
            "checked": self.checked,
            "bytes": self.bytes,
            "missing": self.missing,
            "corrupt": self.corrupt,
            "unexpected": self.unexpected,
            "never_listed": self.never_listed,
            "lists_missing": self.lists_missing,
            "repaired": self.repaired,
            "read_only": self.read_only,
            "unrepaired": self.unrepaired,
            "seconds": round(self.seconds, 3),
        }


def _recorded_files(
    source: Source, prefix: str, rows: dict[str, Entry]
) -> list[tuple[RemoteFile, RemoteFile | None]]:
    """What the raw manifest says this source delivered, as expected files with their recorded sums;
    an extracted member comes with its archive's file (what a repair fetches) when that is recorded."""
    out: list[tuple[RemoteFile, RemoteFile | None]] = []
    for key, e in sorted(rows.items()):
        if e.source != source.spec.id or not key.startswith(prefix):
            continue
        rf = RemoteFile(key[len(prefix) :], e.url, e.size, e.sha256)
        archive = None
        if "!/" in e.url:  # an archive member: "<archive key>!/<member name>"
            akey = e.url.split("!/", 1)[0]
            a = rows.get(akey)
            if a is not None:
                archive = RemoteFile(akey[len(prefix) :], a.url, a.size, a.sha256)
        out.append((rf, archive))
    return out


def verify_raw(
    recipe: Recipe,
    settings: Settings,
    *,
    workers: int | None = None,
    metadata: bool = False,
    engine: Any = None,
) -> tuple[RawReport, list]:
    """Hash every expected file. Returns the report and the (source, file) pairs that are bad.
    Holds the dataset's raw lock (it updates the raw manifest). With an `engine` (engines.py:
    Dask, Ray) the files are hashed by its workers, else by local threads; either way in tasks of
    about equal bytes (hash_plan.py), so large files spread over every worker.

    metadata=True (verify --metadata) hashes only files whose size or mtime differ from their manifest
    row or whose recorded sum is not the upstream one; the rest count as checked by their metadata."""
    with raw_lock(settings.raw_dir(recipe.name), recipe.name, "climb verify"):
        return _verify_raw(recipe, settings, workers, engine, metadata)


Known = tuple[int, int, str] | None  # a file's recorded (size, mtime_ns, sha256) when --metadata may trust it


# Tasks of small files run one at a time per process (hash_plan.gil_bound: two threads on them mostly
# hand the GIL to each other); tasks of large files run beside them on the other threads.
_ONE_SMALL_TASK = threading.Lock()

HashTask = tuple[int, list[tuple[str, tuple[str, ...], Known]], bool]


def _hash_chunk(task: HashTask) -> tuple[int, list]:
    """(chunk number, [(path, algorithms, recorded)], small) -> (chunk number, [(size, mtime_ns, hashes)
    or None for a missing file]): the same function in a local thread and on a cluster worker. A file
    whose size and mtime equal its `recorded` ones (verify --metadata) is not hashed: its hashes are {}.
    A `small` task (hash_plan.gil_bound) waits until no other small task runs in this process."""
    number, files, small = task
    with _ONE_SMALL_TASK if small else contextlib.nullcontext():
        return number, _hash_files(files)


def _hash_files(
    files: list[tuple[str, tuple[str, ...], Known]],
) -> list[tuple[int, int, dict[str, str]] | None]:
    out: list[tuple[int, int, dict[str, str]] | None] = []
    unhashed: dict[str, str] = {}  # one empty dict for the chunk's files not hashed, not one each
    for path, algos, recorded in files:
        try:
            if recorded is not None:  # --metadata: a stat may be all this file needs
                st = os.stat(path)
                if recorded[:2] == (st.st_size, st.st_mtime_ns):
                    out.append((st.st_size, st.st_mtime_ns, unhashed))
                    continue
            out.append(stat_and_hash(path, *algos))
        except FileNotFoundError:
            out.append(None)
    return out


def _worker_count(engine: Any, workers: int | None) -> int:
    """Who hashes at once: the cluster's workers, else `workers` threads, else every usable CPU."""
    if engine is not None and getattr(engine, "workers", None):
        return int(engine.workers)
    return workers or usable_cpus()[0]


def _sizes(
    expected: list[tuple[Source, RemoteFile, str]],
    previous: dict[str, tuple[int, int, str]],
    raw_root: Path,
    metadata: bool,
) -> list[int]:
    """Each expected file's bytes to hash, for planning the tasks: the upstream size, else the
    recorded one, else the file's own (0 when it is missing); with --metadata a recorded file counts
    0 (it is most likely trusted by its size and mtime, not hashed)."""
    out = []
    for _, rf, key in expected:
        row = previous.get(key)
        if metadata and row is not None:
            out.append(0)
        elif rf.size is not None:
            out.append(rf.size)
        elif row is not None:
            out.append(row[0])
        else:
            try:
                out.append(os.stat(raw_root / key).st_size)
            except OSError:
                out.append(0)
    return out


def _in_flight(pool: ThreadPoolExecutor, fn: Callable, tasks: Iterable) -> Iterator:
    """fn over tasks on the local threads, results as they were submitted, with at most 4 tasks per
    thread in flight: neither the tasks nor their results pile up in memory (a million files: the tasks
    are made as they are needed)."""
    window: deque = deque()
    for task in tasks:
        window.append(pool.submit(fn, task))
        if len(window) >= 4 * pool._max_workers:
            yield window.popleft().result()
    while window:
        yield window.popleft().result()


def _map_in_order(engine: Any, pool: ThreadPoolExecutor, fn: Callable, tasks: Iterable) -> Iterator:
    """fn over numbered tasks, results in task order, on the engine's workers or the local threads
    (there through `_in_flight`)."""
    if engine is None:
        yield from (r for _, r in _in_flight(pool, fn, tasks))
        return
    done: dict[int, Any] = {}
    nxt = 0
    for number, r in engine.map(fn, tasks):
        done[number] = r
        while nxt in done:
            yield done.pop(nxt)
            nxt += 1


def _verify_raw(
    recipe: Recipe, settings: Settings, workers: int | None, engine: Any, metadata: bool = False
) -> tuple[RawReport, list]:
    t0 = time.perf_counter()
    report = RawReport(recipe.name)
    raw_root = settings.raw_dir(recipe.name)
    expected: list[tuple[Source, RemoteFile, str]] = []
    known: set[str] = set()
    pins = Pins(recipe, settings)
    archive_of: dict[int, RemoteFile] = {}  # id(member file) -> its archive (what --repair fetches)
    entries: dict[str, Entry] | None = None  # the raw manifest, read once if a source needs it
    for source in make_sources(recipe, settings):
        files = source.expected_files()
        prefix = source.spec.into + "/" if source.spec.into else ""
        if files is None:
            if entries is None:
                with RawManifest.for_dataset(raw_root) as m:
                    entries = m.load()
            from_manifest = _recorded_files(source, prefix, entries)
            if not from_manifest:
                report.never_listed.append(source.spec.id)
                continue
            # the stored list is gone (e.g. SHA256SUMS.txt deleted): every file the manifest says this
            # source delivered is still checked against the sum it was verified with on download
            report.lists_missing.append(source.spec.id)
            for rf, archive in from_manifest:
                if archive is not None:
                    archive_of[id(rf)] = archive
                expected.append((source, rf, prefix + rf.path))
            continue
        files = pins.apply(source, files)
        members, removed = archives.expected_members(source, files)
        member_paths = {m.path for m, _ in members}
        expected.extend(
            (source, rf, prefix + rf.path) for rf in files if rf.path not in removed | member_paths
        )
        for member, archive in members:
            archive_of[id(member)] = archive
            expected.append((source, member, prefix + member.path))
        upstream = getattr(source, "upstream_paths", lambda: None)()
        known.update(prefix + p for p in (upstream or {rf.path for rf in files}))
        known.update(prefix + m.path for m, _ in members)
        report.missing.extend(getattr(source, "shortfalls", list)())
    bad: list[tuple[Source, RemoteFile]] = []
    now = time.time()
    manifest = RawManifest.for_reading(raw_root)
    report.read_only = manifest.read_only
    previous: dict[str, tuple[int, int, str]] = {}

    def algos(rf: RemoteFile) -> tuple[str, ...]:
        return ("sha256", "md5") if (rf.md5 and not rf.sha256) else ("sha256",)

    def trusted(rf: RemoteFile, key: str) -> Known:
        row = previous.get(key)
        return row if metadata and row and rf.sha256 in (None, row[2]) else None

    def check(item: tuple[Source, RemoteFile, str], hashed: tuple | None) -> tuple[str, int, Entry | None]:
        source, rf, key = item
        if hashed is None:
            return "missing", 0, None
        size, mtime_ns, hashes = hashed
        if metadata:
            row = previous.get(key)
            if row and row[:2] == (size, mtime_ns) and rf.sha256 in (None, row[2]):
                return "ok", size, None  # the manifest row stands as it is: nothing to write
        good = (rf.sha256 is None or hashes["sha256"] == rf.sha256) and (
            rf.md5 is None or rf.sha256 is not None or hashes["md5"] == rf.md5
        )
        entry = Entry(key, size, mtime_ns, hashes["sha256"], source.spec.id, rf.url, "", 0.0, now)
        return ("ok" if good else "corrupt"), size, entry

    with (
        manifest,
        ThreadPoolExecutor(_worker_count(None, workers), thread_name_prefix="climb-verify") as pool,
    ):
        previous.update(manifest.load_index())
        changed: list[Entry] = []
        unchanged: list[str] = []

        sizes = _sizes(expected, previous, raw_root, metadata)
        plan = plan_tasks(sizes, _worker_count(engine, workers))
        small = [gil_bound(sizes, task) for task in plan]
        del sizes

        root = str(raw_root)

        def job(i: int) -> tuple[str, tuple[str, ...], Known]:
            _, rf, key = expected[i]
            return os.path.join(root, key), algos(rf), trusted(rf, key)  # not pathlib: ~40 us a file

        tasks = ((n, [job(i) for i in task], small[n]) for n, task in enumerate(plan))  # made as needed
        bad_at: list[tuple[int, str]] = []  # (index in expected, state): reported in that order
        runs = _in_flight(pool, _hash_chunk, tasks) if engine is None else engine.map(_hash_chunk, tasks)
        for number, hashed in runs:
            for i, h in zip(plan[number], hashed, strict=True):
                item = expected[i]
                state, size, entry = check(item, h)
                report.checked += 1
                report.bytes += size
                if state in ("missing", "corrupt"):
                    bad_at.append((i, state))
                elif entry is not None:
                    old = previous.get(entry.path)
                    if old == (entry.size, entry.mtime_ns, entry.sha256):
                        unchanged.append(entry.path)
                    else:
                        changed.append(entry)  # new to the manifest (placed by hand), or re-hashed
        for i, state in sorted(bad_at):
            source, rf, key = expected[i]
            (report.missing if state == "missing" else report.corrupt).append(key)
            bad.append((source, archive_of.get(id(rf), rf)))
        for i, e in enumerate(changed):
            if e.path in previous and (full := manifest.get(e.path)) is not None:  # keep where it came from
                changed[i] = Entry(
                    e.path, e.size, e.mtime_ns, e.sha256, e.source, full.url, full.etag, full.fetched_at, now
                )
        manifest.put_batch(changed)
        if not metadata:  # verified_at is when a file's bytes were last hashed
            manifest.touch_verified(unchanged, now)
        if report.corrupt:
            manifest.delete(report.corrupt)
    previous.clear()  # a million rows: freed before the folder walk below adds its own list
    expected.clear()
    if report.never_listed or report.lists_missing:
        known = set()  # cannot judge unexpected files without every list
    else:
        report.unexpected = sorted(p for p in walk_files(raw_root) if p not in known)
    if recipe.images is not None:  # the images stage's files: checked against its own records
        from climb_cli.images import check_images

        stage = recipe.images.into + "/"
        report.unexpected = [p for p in report.unexpected if not p.startswith(stage)]
        missing, corrupt, checked = check_images(recipe, settings)
        report.missing += missing
        report.corrupt += corrupt
        report.checked += checked
    report.seconds = time.perf_counter() - t0
    return report, bad


# ---------------------------------------------------------------------------------------------
# Outputs


@dataclass
class OutputReport:
    dataset: str
    directory: str = ""
    shards: int = 0
    rows: int = 0
    problems: list[str] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)
    subset: str = ""  # why the outputs cover only part of the dataset (checked against their own counts)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict:
        return {
            "dataset": self.dataset,
            "ok": self.ok,
            "directory": self.directory,
            "shards": self.shards,
            "rows": self.rows,
            "splits": self.splits,
            "classes": self.classes,
            "subset": self.subset or None,
            "problems": self.problems,
        }


def _within(actual: int, expected: int, tolerance: float) -> bool:
    return abs(actual - expected) <= tolerance * max(expected, 1)


def _check_shard(task: tuple[int, tuple[str, dict]]) -> tuple[int, list[str]]:
    """(number, (output folder, manifest shard entry)) -> (number, problems with that shard)."""
    from climb_cli.shards import shard_rows

    number, (out_dir, shard) = task
    path = Path(out_dir) / shard["name"]
    if not path.is_file():
        return number, [f"{shard['name']}: missing"]
    problems = []
    if path.stat().st_size != shard["bytes"]:
        problems.append(f"{shard['name']}: {path.stat().st_size} bytes, manifest says {shard['bytes']}")
    if _hash_file(path, "sha256")["sha256"] != shard["sha256"]:
        problems.append(f"{shard['name']}: sha256 differs from the manifest (corrupt or replaced)")
        return number, problems
    rows = shard_rows(path)
    if rows != shard["rows"]:
        problems.append(f"{shard['name']}: {rows} rows, manifest says {shard['rows']}")
    return number, problems


def verify_outputs(
    recipe: Recipe, settings: Settings, *, workers: int | None = None, engine: Any = None
) -> OutputReport:

    out_dir = settings.processed_dir(recipe.name) / recipe.content_hash()
    if settings.remote:
        return _verify_remote_outputs(recipe, settings, workers, engine)
    report = OutputReport(recipe.name, str(out_dir))
    mpath = out_dir / "manifest.json"
    if not mpath.is_file():
        others = sorted(p.name for p in settings.processed_dir(recipe.name).glob("*/manifest.json"))
        report.problems.append(
            f"no outputs for this recipe version ({recipe.content_hash()}) in {out_dir.parent}; run "
            f"`climb preprocess {recipe.name}`"
            + (f" (other versions present: {', '.join(others)})" if others else "")
        )
        return report
    try:
        manifest = json.loads(mpath.read_text())
    except ValueError as e:
        report.problems.append(f"{mpath}: not valid JSON ({e})")
        return report

    return _check_outputs(recipe, report, manifest, _check_shard, str(out_dir), workers, engine)


@functools.lru_cache(maxsize=8)
def _remote(url: str) -> Any:
    """One filesystem client per output URL in a process (the threads, or a cluster worker, share it)."""
    from climb_cli.storage import Remote

    return Remote(url)


def _check_remote_shard(task: tuple[int, tuple[str, dict]]) -> tuple[int, list[str]]:
    """`_check_shard` for outputs on object storage: (number, (output URL, manifest shard entry))."""
    import pyarrow.parquet as pq

    number, (url, shard) = task
    out = _remote(url)
    size = out.size(shard["name"])
    if size is None:
        return number, [f"{shard['name']}: missing"]
    problems = []
    if size != shard["bytes"]:
        problems.append(f"{shard['name']}: {size} bytes, manifest says {shard['bytes']}")
    if out.sha256(shard["name"]) != shard["sha256"]:
        problems.append(f"{shard['name']}: sha256 differs from the manifest (corrupt or replaced)")
        return number, problems
    if shard["name"].endswith(".npz"):  # output: {format: npz}: rows = the length of its `id`
        import io

        import numpy as np

        with np.load(io.BytesIO(out.read_bytes(shard["name"]) or b""), allow_pickle=False) as z:
            rows = len(z["id"])
    else:
        with out.open_input_file(shard["name"]) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    if rows != shard["rows"]:
        problems.append(f"{shard['name']}: {rows} rows, manifest says {shard['rows']}")
    return number, problems


def _verify_remote_outputs(
    recipe: Recipe, settings: Settings, workers: int | None, engine: Any = None
) -> OutputReport:
    """verify --outputs on object storage: the same checks, read through the filesystem client."""
    from climb_cli.storage import Remote

    out = Remote(f"{settings.processed_url(recipe.name)}/{recipe.content_hash()}")
    report = OutputReport(recipe.name, out.url)
    raw = out.read_bytes("manifest.json")
    if raw is None:
        report.problems.append(
            f"no outputs for this recipe version ({recipe.content_hash()}) at {out.url}; run "
            f"`climb preprocess {recipe.name}`"
        )
        return report
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        report.problems.append(f"{out.where('manifest.json')}: not valid JSON ({e})")
        return report
    return _check_outputs(recipe, report, manifest, _check_remote_shard, out.url, workers, engine)


def _check_outputs(
    recipe: Recipe,
    report: OutputReport,
    manifest: dict,
    check: Callable[[tuple[int, tuple[str, dict]]], tuple[int, list[str]]],
    where: str,
    workers: int | None,
    engine: Any = None,
) -> OutputReport:
    """Every shard through `check` (on the engine's workers or local threads), then the counts."""
    shards = manifest.get("shards", [])
    with ThreadPoolExecutor(workers or os.cpu_count() or 2) as pool:
        tasks = [(n, (where, shard)) for n, shard in enumerate(shards)]
        for problems in _map_in_order(engine, pool, check, tasks):
            report.problems.extend(problems)
    report.shards = len(shards)
    report.rows = sum(s["rows"] for s in shards)
    report.splits = dict(manifest.get("splits", {}))
    report.classes = dict(manifest.get("classes", {}))
    if manifest.get("recipe_hash") != recipe.content_hash():
        report.problems.append("manifest.json was written for another recipe version")
    per_split: dict[str, int] = {}
    for s in shards:
        per_split[s["split"]] = per_split.get(s["split"], 0) + s["rows"]
    if per_split != {k: v for k, v in report.splits.items() if v}:
        report.problems.append(f"shard rows per split {per_split} differ from the manifest's {report.splits}")
    expect_splits, expect_classes, tol = (
        recipe.expect.splits,
        recipe.expect.class_counts,
        recipe.expect.tolerance,
    )
    who = "recipe"
    subset = manifest.get("subset")
    if isinstance(subset, dict):  # a subset is checked against the counts it was built to have
        report.subset = str(subset.get("why", "subset"))
        own = subset.get("expect") or {}
        expect_splits, expect_classes = own.get("splits", {}), own.get("class_counts", {})
        tol, who = float(own.get("tolerance", 0.0)), "subset"
    for split, n in expect_splits.items():
        got = report.splits.get(split, 0)
        if not _within(got, n, tol):
            report.problems.append(f"split {split}: {got} rows, {who} expects {n}")
    for cls, n in expect_classes.items():
        got = report.classes.get(cls, 0)
        if not _within(got, n, tol):
            report.problems.append(f"class {cls}: {got} items, {who} expects {n}")
    unknown = set(report.classes) - set(recipe.classes)
    if recipe.classes and unknown:
        report.problems.append(f"classes not in the recipe's list: {sorted(unknown)}")
    return report


def repair_outputs(recipe: Recipe, settings: Settings, *, workers: int | None = None) -> OutputReport:
    """Rebuild what `verify_outputs` found bad: preprocess again, which reuses every committed shard
    whose bytes still match its sha256 and redoes the rest (missing, replaced or damaged shards, a
    lost manifest.json); then verify again."""
    from climb_cli.pipeline import preprocess

    preprocess(recipe, settings, workers=workers or os.cpu_count() or 1)
    return verify_outputs(recipe, settings, workers=workers)
