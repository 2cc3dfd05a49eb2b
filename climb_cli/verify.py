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

import bisect
import contextlib
import dataclasses
import functools
import json
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from collections.abc import Set as AbstractSet
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
from climb_cli.manifest import Entry, RawManifest, iter_files
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
    source: Source, prefix: str, manifest: RawManifest
) -> list[tuple[RemoteFile, RemoteFile | None]]:
    """What the raw manifest says this source delivered, as expected files with their recorded sums;
    an extracted member comes with its archive's file (what a repair fetches) when that is recorded.
    The source's rows are read in path order a page at a time (the manifest is never loaded whole)."""
    out: list[tuple[RemoteFile, RemoteFile | None]] = []
    archives_by_key: dict[str, RemoteFile | None] = {}
    for e in manifest.entries(source.spec.id):
        key = e.path
        if not key.startswith(prefix):
            continue
        rf = RemoteFile(key[len(prefix) :], e.url, e.size, e.sha256)
        archive = None
        if "!/" in e.url:  # an archive member: "<archive key>!/<member name>"
            akey = e.url.split("!/", 1)[0]
            if akey not in archives_by_key:
                a = manifest.get(akey)
                archives_by_key[akey] = (
                    None if a is None else RemoteFile(akey[len(prefix) :], a.url, a.size, a.sha256)
                )
            archive = archives_by_key[akey]
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
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            out.append(None)  # no file there: nothing, a folder in its place, or a file where a folder is
    return out


def _worker_count(engine: Any, workers: int | None) -> int:
    """Who hashes at once: the cluster's workers, else `workers` threads, else every usable CPU."""
    if engine is not None and getattr(engine, "workers", None):
        return int(engine.workers)
    return workers or usable_cpus()[0]


def _sizes(
    expected: _Expected,
    manifest: RawManifest,
    raw_root: Path,
    metadata: bool,
) -> list[int]:
    """Each expected file's bytes to hash, for planning the tasks: the upstream size, else the
    recorded one, else the file's own (0 when it is missing); with --metadata a recorded file counts
    0 (it is most likely trusted by its size and mtime, not hashed). The manifest is read a chunk of
    rows at a time."""
    out: list[int] = []
    for start in range(0, len(expected), _CHUNK):
        chunk = expected.take(range(start, min(start + _CHUNK, len(expected))))
        previous = manifest.rows([key for _, _, key in chunk])
        out.extend(_chunk_sizes(chunk, previous, raw_root, metadata))
    return out


_CHUNK = 2000  # expected files whose manifest rows are read at once


def _chunk_sizes(
    chunk: list[tuple[Source, RemoteFile, str]],
    previous: dict[str, tuple[int, int, str]],
    raw_root: Path,
    metadata: bool,
) -> Iterator[int]:
    for _, rf, key in chunk:
        row = previous.get(key)
        if metadata and row is not None:
            yield 0
        elif rf.size is not None:
            yield rf.size
        elif row is not None:
            yield row[0]
        else:
            try:
                yield os.stat(raw_root / key).st_size
            except OSError:
                yield 0


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


class _Expected:
    """The files to check, in order: item i is (source, file, manifest key). Kept as each source's run of
    files under its folder prefix and the item made when asked (a million (source, file, key) tuples
    held at once: ~70 MB)."""

    def __init__(self) -> None:
        self._files: list[RemoteFile] = []
        self._starts: list[int] = []  # where each run begins in _files
        self._runs: list[tuple[Source, str]] = []  # each run's source and folder prefix

    def add(self, source: Source, prefix: str, files: Iterable[RemoteFile]) -> None:
        if not self._runs or self._runs[-1] != (source, prefix):
            self._starts.append(len(self._files))
            self._runs.append((source, prefix))
        self._files.extend(files)

    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, i: int) -> tuple[Source, RemoteFile, str]:
        source, prefix = self._runs[0 if len(self._runs) == 1 else bisect.bisect_right(self._starts, i) - 1]
        rf = self._files[i]
        return source, rf, prefix + rf.path if prefix else rf.path

    def take(self, indices: Iterable[int]) -> list[tuple[Source, RemoteFile, str]]:
        """Items by index, in one call (no method call per item)."""
        files = self._files
        if len(self._runs) == 1:
            source, prefix = self._runs[0]
            if not prefix:
                return [(source, rf, rf.path) for rf in map(files.__getitem__, indices)]
            return [(source, rf, prefix + rf.path) for rf in map(files.__getitem__, indices)]
        return [self[i] for i in indices]

    def clear(self) -> None:
        self._files, self._starts, self._runs = [], [], []


class _Known:
    """The paths upstream has, for telling unexpected files: each source's own collection under its folder
    prefix, kept as the source gives it (a million paths are not copied into one more set)."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, AbstractSet[str]]] = []

    def add(self, prefix: str, paths: AbstractSet[str]) -> None:
        if paths:
            self._parts.append((prefix, paths))

    def __contains__(self, key: str) -> bool:
        for prefix, paths in self._parts:
            if (key[len(prefix) :] in paths if prefix else key in paths) and key.startswith(prefix):
                return True
        return False


def _verify_raw(
    recipe: Recipe, settings: Settings, workers: int | None, engine: Any, metadata: bool = False
) -> tuple[RawReport, list]:
    t0 = time.perf_counter()
    report = RawReport(recipe.name)
    raw_root = settings.raw_dir(recipe.name)
    expected = _Expected()
    known = _Known()
    pins = Pins(recipe, settings)
    archive_of: dict[int, RemoteFile] = {}  # id(member file) -> its archive (what --repair fetches)
    for source in make_sources(recipe, settings):
        files = source.expected_files()
        prefix = source.spec.into + "/" if source.spec.into else ""
        if files is None:
            with RawManifest.for_dataset(raw_root) as m:
                from_manifest = _recorded_files(source, prefix, m)
            if not from_manifest:
                report.never_listed.append(source.spec.id)
                continue
            # the stored list is gone (e.g. SHA256SUMS.txt deleted): every file the manifest says this
            # source delivered is still checked against the sum it was verified with on download
            report.lists_missing.append(source.spec.id)
            for rf, archive in from_manifest:
                if archive is not None:
                    archive_of[id(rf)] = archive
                expected.add(source, prefix, [rf])
            continue
        files = pins.apply(source, files)
        members, removed = archives.expected_members(source, files)
        not_files = removed | {m.path for m, _ in members}
        expected.add(source, prefix, (rf for rf in files if rf.path not in not_files))
        for member, archive in members:
            archive_of[id(member)] = archive
            expected.add(source, prefix, [member])
        upstream = getattr(source, "upstream_paths", lambda: None)()
        known.add(prefix, upstream or {rf.path for rf in files})
        known.add(prefix, {m.path for m, _ in members})
        report.missing.extend(getattr(source, "shortfalls", list)())
    bad: list[tuple[Source, RemoteFile]] = []
    now = time.time()
    manifest = RawManifest.for_reading(raw_root)
    report.read_only = manifest.read_only
    # task number -> its files and their manifest rows, while the task is in flight
    rows_of: dict[int, tuple[list[tuple[Source, RemoteFile, str]], dict[str, tuple[int, int, str]]]] = {}

    def algos(rf: RemoteFile) -> tuple[str, ...]:
        return ("sha256", "md5") if (rf.md5 and not rf.sha256) else ("sha256",)

    def trusted(rf: RemoteFile, row: tuple[int, int, str] | None) -> Known:
        return row if metadata and row and rf.sha256 in (None, row[2]) else None

    def check(
        item: tuple[Source, RemoteFile, str], hashed: tuple | None, row: tuple[int, int, str] | None
    ) -> tuple[str, int, Entry | None]:
        source, rf, key = item
        if hashed is None:
            return "missing", 0, None
        size, mtime_ns, hashes = hashed
        if metadata and row and row[:2] == (size, mtime_ns) and rf.sha256 in (None, row[2]):
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
        changed: list[Entry] = []
        unchanged: list[str] = []

        sizes = _sizes(expected, manifest, raw_root, metadata)
        plan = plan_tasks(sizes, _worker_count(engine, workers))
        small = [gil_bound(sizes, task) for task in plan]
        del sizes

        root = str(raw_root) + "/"

        def make(n: int) -> HashTask:
            """Task n, with its files and their manifest rows read now and kept until its results are checked
            (the tasks in flight hold their rows; the manifest is never loaded whole)."""
            items = expected.take(plan[n])
            rows = manifest.rows([key for _, _, key in items])
            rows_of[n] = (items, rows)
            # not pathlib (~40 us a file), nor os.path.join (~3 us): keys are clean relative paths
            return n, [(root + key, algos(rf), trusted(rf, rows.get(key))) for _, rf, key in items], small[n]

        tasks = (make(n) for n in range(len(plan)))  # made as needed
        bad_at: list[tuple[int, str]] = []  # (index in expected, state): reported in that order
        runs = _in_flight(pool, _hash_chunk, tasks) if engine is None else engine.map(_hash_chunk, tasks)
        for number, hashed in runs:
            items, rows = rows_of.pop(number)
            for i, item, h in zip(plan[number], items, hashed, strict=True):
                old = rows.get(item[2])
                state, size, entry = check(item, h, old)
                report.checked += 1
                report.bytes += size
                if state in ("missing", "corrupt"):
                    bad_at.append((i, state))
                elif entry is not None:
                    if old == (entry.size, entry.mtime_ns, entry.sha256):
                        unchanged.append(entry.path)
                    elif old is not None and (full := manifest.get(entry.path)) is not None:
                        changed.append(  # re-hashed: keep where it came from
                            dataclasses.replace(
                                entry, url=full.url, etag=full.etag, fetched_at=full.fetched_at
                            )
                        )
                    else:
                        changed.append(entry)  # new to the manifest (placed by hand)
        for i, state in sorted(bad_at):
            source, rf, key = expected[i]
            (report.missing if state == "missing" else report.corrupt).append(key)
            bad.append((source, archive_of.get(id(rf), rf)))
        manifest.put_batch(changed)
        if not metadata:  # verified_at is when a file's bytes were last hashed
            manifest.touch_verified(unchanged, now)
        if report.corrupt:
            manifest.delete(report.corrupt)
    expected.clear()
    # unexpected files can be judged only with every list; the folder is walked one path at a time and
    # only the unexpected ones are kept
    if not (report.never_listed or report.lists_missing):
        report.unexpected = sorted(p for p in iter_files(raw_root) if p not in known)
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
