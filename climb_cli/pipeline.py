"""Preprocessing: plan shards, cut them into work units, run the units on an engine, commit.

The coordinator builds the index; a few probe items, processed on a worker while the coordinator
indexes the next dataset, give the row schema, row size, memory and CPU time per item; the
coordinator cuts each split into shards near the recipe's target size, and gives every shard a digest of
what it depends on (recipe hash, item ids, labels, input file hashes from the raw manifest).
A rerun skips every shard whose commit marker has the same digest, whose file still has the
recorded sha256, and whose failed items' inputs are as they were when they failed (a repaired or
re-downloaded input gets its item another try), so a crash or `kill -9` costs only the work that
was in flight. Items that fail go to errors.parquet. A run holds the dataset's processed lock
(locks.py); the parts of a cluster array job (`part`) take none.

Unit size does not follow shard size: each dataset's shards left to build are cut into units by
guided self-scheduling (`cut_units`: units shrink as the work runs out, never below MIN_UNIT_BYTES of
rows), and the costliest units run first, so every worker gets several units however large the
shards are and the workers finish together. A shard that is one unit is written by it
(temporary name, rename, marker). A shard cut into several units gets one *part* per unit
(`.parts/<shard>/<k>.parquet`, committed with its own marker), and once all its parts are in, an
assembly task on the same pool streams them, row group by row group, into the shard in fixed row
groups (the same bytes whatever the cut, engine or worker count), commits it like any shard and
removes the parts. A rerun reuses committed parts of a shard that was never assembled.
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import hashlib
import json
import os
import shutil
import statistics
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from climb_cli import __version__
from climb_cli.engines import (
    WORKER_BASE_BYTES,
    LokyEngine,
    close_engine,
    make_engine,
    memory_capped_workers,
    step_modules,
    stop_pool,
)
from climb_cli.errors import ClimbError, ItemDropped, ItemError, is_disk_full, no_space
from climb_cli.hashing import sha256_file
from climb_cli.index import Item, build_index
from climb_cli.locks import processed_lock
from climb_cli.manifest import RawManifest, connect_readonly
from climb_cli.memory import MIB, input_bytes, measure_peak
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.shards import (
    NpzShardWriter,
    ShardWriter,
    build_schema,
    json_bytes,
    to_row,
    write_json_atomic,
    write_table_atomic,
)
from climb_cli.steps.base import Sample, StepDef, bug, is_bug, registry
from climb_cli.steps.rows import explode
from climb_cli.storage import Remote, is_url, scratch_dir

PROBE_LIMIT = 50  # items tried before concluding that the recipe fails on everything
PROBE_SAMPLES = 3  # successful items whose metadata types make the row schema
GUIDE = 2  # a unit takes the items left / (GUIDE x workers): smaller units as the work runs out
MIN_UNIT_BYTES = 2 * 1024 * 1024  # the least output a unit is cut to (each costs a dispatch and a part file)
PART_COMPRESSION = "lz4"  # parts are read back once: cheap to write and to read


@dataclass
class UnitSpec:
    name: str
    split: str
    items: list[Item]
    recipe: Recipe
    raw_root: str
    out_dir: str
    schema: pa.Schema
    digest: str
    row_group_rows: int
    row_bytes: int = 0  # estimated bytes of one row (what a full disk message says is needed)
    classes: list[str] = field(default_factory=list)  # the recipe's, or the discovered vocabulary
    item_bytes: int = 0  # peak memory of one item measured on the probes
    bytes_per_input_byte: float = 0.0  # the probes' peak memory per byte of input
    item_budget: int = 0  # memory one item may use in a worker (0: no check)
    part: int = 0  # this unit's part of the shard (`items` are that part's)
    parts: int = 1  # the units the shard is cut into (1: this unit writes the shard itself)


@dataclass
class UnitResult:
    name: str
    split: str
    rows: int = 0
    bytes: int = 0
    sha256: str = ""
    errors: list[tuple[str, str, str]] = field(default_factory=list)  # (id, split, reason)
    classes: dict[str, int] = field(default_factory=dict)
    skipped: bool = False
    digest: str = ""
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> items a step dropped on purpose
    part: int = 0  # the part of the shard this result is (parts > 1), else the whole shard
    parts: int = 1
    worker: int = 0  # the process that produced it (not part of any output)
    started: float = 0.0  # when it ran there (time.time(); 0: reused): the run's timeline, no output
    ended: float = 0.0


@dataclass
class PreprocessReport:
    dataset: str
    out_dir: Path
    units: list[UnitResult] = field(default_factory=list)
    where: str = ""  # where the outputs are: the folder, or their URL on object storage
    rejected: list[tuple[str, str]] = field(default_factory=list)
    workers: int = 1
    note: str = ""
    seconds: float = 0.0
    partial: bool = False
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> items the recipe drops on purpose
    subset: dict | None = None  # a build over part of the dataset: why, and its own expected counts

    @property
    def rows(self) -> int:
        return sum(u.rows for u in self.units)

    @property
    def errors(self) -> int:
        return sum(len(u.errors) for u in self.units) + len(self.rejected)

    @property
    def skipped_units(self) -> int:
        return sum(1 for u in self.units if u.skipped)


def _steps(recipe: Recipe) -> list[tuple[StepDef, object]]:
    known = registry()
    return [(known[c.name], known[c.name].params.model_validate(c.params)) for c in recipe.steps]


def _inside_raw(raw_root: Path, inputs: dict[str, Path | list[Path]]) -> None:
    """An input (or a file a step read) that resolves through a symlink outside the dataset's raw
    folder is refused: the item fails with the reason, nothing of it is written."""
    root = raw_root.resolve()
    for name, v in inputs.items():
        for p in [v] if isinstance(v, Path) else v:
            real = p.resolve()
            if real != root and root not in real.parents:
                rel = p.relative_to(raw_root) if p.is_relative_to(raw_root) else p
                raise ItemError(f"{name} {rel} resolves outside the raw folder ({real})")


def _row_labels(labels: tuple[str, ...], classes: list[str], recipe: Recipe) -> tuple[str, ...]:
    """A row's own labels (rows.explode label_from), checked against the classes like the index's."""
    unknown = [c for c in labels if c not in classes]
    others = recipe.index.labels.others if recipe.index else "error"
    if unknown and others == "error":
        raise ItemError(f"row label(s) {', '.join(unknown)} not in the recipe's classes")
    return tuple(c for c in labels if c in classes)


def process_item(item: Item, raw_root: Path, steps: list[tuple[StepDef, object]]) -> Sample:
    inputs = {
        k: (raw_root / v if isinstance(v, str) else [raw_root / p for p in v]) for k, v in item.inputs.items()
    }
    _inside_raw(raw_root, inputs)
    sample = Sample(id=item.id, inputs=inputs, fields=dict(item.extra))  # type: ignore[arg-type]
    for step_def, params in steps:
        try:
            sample = step_def.fn(sample, params)
        except ItemError:
            raise
        except Exception as e:
            if is_bug(e):  # a bug in the step, not in the item: the run stops
                raise bug(step_def.name, item.id, e) from e
            raise ItemError(f"{step_def.name}: {type(e).__name__}: {e}") from e  # an unreadable file
    _inside_raw(raw_root, {"file": list(sample.sources)})  # files a reader found beside its input
    return sample


class _Provenance:
    """sha256 of the raw files a sample read: from the raw manifest, else hashed now."""

    def __init__(self, raw_root: Path) -> None:
        self.raw_root = raw_root
        path = raw_root / ".climb" / "manifest.sqlite"
        self.db = connect_readonly(path) if path.is_file() else None

    def __call__(self, files: list[Path]) -> list[tuple[str, str]]:
        out = []
        for f in files:
            try:
                rel = f.relative_to(self.raw_root).as_posix()
            except ValueError:
                rel = str(f)
            row = None
            if self.db is not None:
                row = self.db.execute(
                    "SELECT sha256, size, mtime_ns FROM files WHERE path = ?", (rel,)
                ).fetchone()
            if row is not None:
                st = f.stat()
                if (st.st_size, st.st_mtime_ns) == (row[1], row[2]):
                    out.append((rel, row[0]))
                    continue
            out.append((rel, sha256_file(f)))
        return out


def _failed_inputs_state(raw_root: Path, items: list[Item], failed: set[str]) -> str:
    """A digest of what is on disk now for the inputs of the items that failed: each input path (and
    a WFDB-style record's `<name>.*` siblings), present or not, with its size and mtime. A file that
    comes back (repair, a new download) changes it, so the shard whose items failed is redone."""
    h = hashlib.sha256()
    for item in items:
        if item.id not in failed:
            continue
        h.update(f"{item.id}|".encode())
        flat = [(n, r) for n, v in item.inputs.items() for r in ([v] if isinstance(v, str) else v)]
        for name, rel in sorted(flat):
            p = raw_root / rel
            paths = [p]
            with contextlib.suppress(OSError):
                paths += sorted(Path(e.path) for e in os.scandir(p.parent) if e.name.startswith(p.name + "."))
            for f in paths:
                try:
                    st = f.stat()
                    h.update(f"{name}={f.name}:{st.st_size}:{st.st_mtime_ns};".encode())
                except OSError:
                    h.update(f"{name}={f.name}:absent;".encode())
    return h.hexdigest()


def _committed(spec: UnitSpec, marker: Path, final: Path, digest: str | None = None) -> UnitResult | None:
    """The committed result of this unit (or of one of its parts: `digest`) on local disk if it is
    still good (see `_reusable`)."""
    if not (marker.is_file() and final.is_file()):
        return None
    return _reusable(
        spec, marker.read_text(), lambda: final.stat().st_size, lambda: sha256_file(final), digest
    )


def _remote_committed(spec: UnitSpec, out: Remote) -> UnitResult | None:
    """The object-storage form of `_committed`: the marker object, then the shard object's size and sha256."""
    shard = f"data/{spec.name}"
    raw = out.read_bytes(f".commits/{spec.name}.json")
    return None if raw is None else _reusable(spec, raw, lambda: out.size(shard), lambda: out.sha256(shard))


def _reusable(
    spec: UnitSpec,
    marker: str | bytes,
    size: Callable[[], int | None],
    sha256: Callable[[], str | None],
    digest: str | None = None,
) -> UnitResult | None:
    """A unit's commit marker, if the unit is still good: same digest, the shard's size and then its
    sha256 match the marker (a shard replaced by same-size garbage is redone), and the inputs of its
    failed items are as they were when they failed. The shard is read only when the cheap checks pass."""
    try:
        done = json.loads(marker)
        if done.get("digest") != (digest or spec.digest) or size() != done["bytes"]:
            return None
        errors = [tuple(e) for e in done["errors"]]
        if errors and done.get("failed_inputs") != _failed_inputs_state(
            Path(spec.raw_root), spec.items, {e[0] for e in errors}
        ):
            return None
        if sha256() != done["sha256"]:
            return None
        return UnitResult(
            spec.name,
            spec.split,
            done["rows"],
            done["bytes"],
            done["sha256"],
            errors,
            done["classes"],
            True,
            spec.digest,
            dict(done.get("dropped", {})),
        )
    except (ValueError, KeyError, TypeError, OSError):
        return None


def _item_paths(item: Item, raw_root: Path) -> list[Path]:
    paths: list[Path] = []
    for v in item.inputs.values():
        paths += [raw_root / v] if isinstance(v, str) else [raw_root / p for p in v]
    return paths


def _fits(spec: UnitSpec, item: Item, raw_root: Path) -> None:
    """An item whose estimated peak memory (the probes' peak per input byte times its input size)
    exceeds what one worker may give it fails as an item, before it can take the worker down."""
    if not spec.item_budget or not spec.bytes_per_input_byte:
        return
    need = max(spec.item_bytes, int(spec.bytes_per_input_byte * input_bytes(_item_paths(item, raw_root))))
    if need > spec.item_budget:
        raise ItemError(
            f"needs about {need // MIB:,} MiB of memory (measured on the probe items, scaled to its "
            f"input size), more than the {spec.item_budget // MIB:,} MiB a worker can give one item; "
            "run it with a larger --memory-per-worker"
        )


def _timed(fn: Callable[[Any], UnitResult]) -> Callable[[Any], UnitResult]:
    """Record when a unit ran (UnitResult.started/ended) unless it was reused."""

    @functools.wraps(fn)
    def timed(arg: Any) -> UnitResult:
        t0 = time.time()
        result = fn(arg)
        if not result.skipped:
            result.started, result.ended = t0, time.time()
        return result

    return timed


@_timed
def run_unit(spec: UnitSpec) -> UnitResult:
    """Process one unit's items and commit what it writes. Safe to run in any process on shared storage.

    A whole shard (`parts == 1`) is written and committed as the shard. On object storage (`out_dir`
    is a URL) the shard is written to local scratch, uploaded to its final key, and its commit marker
    is uploaded after it (storage.py: the commit protocol without rename). A part of a shard is
    committed as a part (`_run_part`); `assemble_shard` makes the shard of the parts."""
    if spec.parts > 1:
        return _run_part(spec)
    remote = Remote(spec.out_dir) if is_url(spec.out_dir) else None
    if remote is not None:
        committed = _remote_committed(spec, remote)
        final = scratch_dir() / f"{uuid.uuid4().hex}-{spec.name}"
        marker = Path()
    else:
        out_dir = Path(spec.out_dir)
        marker = out_dir / ".commits" / f"{spec.name}.json"
        final = out_dir / "data" / spec.name
        committed = _committed(spec, marker, final)
    if committed is not None:
        return committed
    out = spec.recipe.output
    writer: ShardWriter | NpzShardWriter = (
        NpzShardWriter(spec.schema, final)
        if out.format == "npz"
        else ShardWriter(spec.schema, final, spec.row_group_rows, out.compression, out.array_encoding)
    )
    result = _write_items(spec, writer, final)
    done = _marker(spec, result, spec.digest)
    if remote is not None:
        try:  # the object first, its marker last
            remote.upload(final, f"data/{spec.name}")
        finally:
            final.unlink(missing_ok=True)
        remote.write_bytes(f".commits/{spec.name}.json", json_bytes(done))
        return result
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(marker, done)
    return result


@contextlib.contextmanager
def _aborted_on_failure(writer: ShardWriter | NpzShardWriter, spec: UnitSpec, final: Path) -> Iterator[None]:
    """A shard being written: on any failure its temporary file is removed (nothing under the final
    name), and a full disk is the one-line no-space error naming the shard."""
    try:
        yield
    except BaseException as e:
        writer.abort()
        if is_disk_full(e):
            raise no_space(final.parent, len(spec.items) * spec.row_bytes or None, spec.name) from None
        raise


def _write_items(spec: UnitSpec, writer: ShardWriter | NpzShardWriter, final: Path) -> UnitResult:
    """Process the unit's items into `writer` and commit it; failed and dropped items are counted."""
    raw_root = Path(spec.raw_root)
    steps = _steps(spec.recipe)
    provenance = _Provenance(raw_root)
    classes = spec.classes or spec.recipe.classes
    recipe_hash = spec.recipe.content_hash()
    result = UnitResult(spec.name, spec.split, digest=spec.digest, part=spec.part, parts=spec.parts)
    result.worker = os.getpid()
    counts: Counter[str] = Counter()
    with _aborted_on_failure(writer, spec, final):
        for item in spec.items:
            try:
                _fits(spec, item, raw_root)
                sample = process_item(item, raw_root, steps)
                sources = provenance(sample.sources)
                rows, row_labels = [], []
                for suffix, sub, labels in explode(sample):
                    labels = item.labels if labels is None else _row_labels(labels, classes, spec.recipe)
                    row_item = replace(item, id=item.id + suffix, labels=labels)
                    rows.append(to_row(spec.schema, row_item, sub, classes, sources, recipe_hash))
                    row_labels.append(labels)
            except ItemDropped as e:
                result.dropped[str(e)] = result.dropped.get(str(e), 0) + 1
                continue
            except ItemError as e:
                result.errors.append((item.id, item.split, str(e)))
                continue
            except OSError as e:
                result.errors.append((item.id, item.split, f"{type(e).__name__}: {e}"))
                continue
            for row, labels in zip(rows, row_labels, strict=True):
                writer.add(row)
                counts.update(labels)
        result.rows, result.bytes, result.sha256 = writer.commit()
    result.classes = dict(sorted(counts.items()))
    return result


def _marker(spec: UnitSpec, result: UnitResult, digest: str) -> dict:
    """A commit marker: what the rerun check (`_reusable`) and the run manifest read."""
    return {
        "digest": digest,
        "rows": result.rows,
        "bytes": result.bytes,
        "sha256": result.sha256,
        "errors": result.errors,
        "failed_inputs": _failed_inputs_state(Path(spec.raw_root), spec.items, {e[0] for e in result.errors}),
        "classes": result.classes,
        "dropped": result.dropped,
    }


def _part_files(spec: UnitSpec, part: int) -> tuple[Path, Path]:
    """A part's file and its commit marker (local output folders only)."""
    folder = Path(spec.out_dir) / ".parts" / spec.name
    return folder / f"{part:05d}.parquet", folder / f"{part:05d}.json"


def _part_digest(spec: UnitSpec) -> str:
    """What a part depends on: its shard's digest and where the cut put it."""
    return hashlib.sha256(f"{spec.digest}|part {spec.part} of {spec.parts}".encode()).hexdigest()


def _run_part(spec: UnitSpec) -> UnitResult:
    """One part of a shard: its rows in a part file (lz4, the shard's row groups), then its marker.
    A committed part of the same cut is reused (a rerun after a crash before assembly)."""
    final, marker = _part_files(spec, spec.part)
    digest = _part_digest(spec)
    done = _committed(spec, marker, final, digest)
    if done is not None:
        done.part, done.parts, done.worker = spec.part, spec.parts, os.getpid()
        return done
    writer = ShardWriter(spec.schema, final, spec.row_group_rows, PART_COMPRESSION, "plain")
    result = _write_items(spec, writer, final)
    write_json_atomic(marker, _marker(spec, result, digest))
    return result


@dataclass
class Assembly:
    """A shard to assemble: its spec (all its items) and its parts' results, in part order."""

    shard: UnitSpec
    parts: list[UnitResult]


@_timed
def assemble_shard(job: Assembly) -> UnitResult:
    """Stream a shard's parts into the shard (fixed row groups: the bytes do not depend on the cut),
    commit it with its marker (rows, failed and dropped items summed over the parts), then remove the
    parts. Holds at most a part's row group and one shard row group in memory."""
    spec = job.shard
    out_dir = Path(spec.out_dir)
    final = out_dir / "data" / spec.name
    out = spec.recipe.output
    writer = ShardWriter(spec.schema, final, spec.row_group_rows, out.compression, out.array_encoding)
    result = UnitResult(spec.name, spec.split, digest=spec.digest, worker=os.getpid())
    counts: Counter[str] = Counter()
    rows = 0
    with _aborted_on_failure(writer, spec, final):
        for part in job.parts:
            f = pq.ParquetFile(_part_files(spec, part.part)[0])
            with contextlib.closing(f):
                for g in range(f.num_row_groups):
                    table = f.read_row_group(g)
                    rows += table.num_rows
                    writer.add_table(table)
            result.errors += part.errors
            counts.update(part.classes)
            for reason, n in part.dropped.items():
                result.dropped[reason] = result.dropped.get(reason, 0) + n
        if rows != sum(p.rows for p in job.parts):
            raise ClimbError(
                f"{spec.recipe.name}: the parts of {spec.name} in {out_dir / '.parts'} do not hold the rows "
                "their markers record; delete that folder and run preprocess again"
            )
        result.rows, result.bytes, result.sha256 = writer.commit()
    result.classes = dict(sorted(counts.items()))
    write_json_atomic(out_dir / ".commits" / f"{spec.name}.json", _marker(spec, result, spec.digest))
    shutil.rmtree(out_dir / ".parts" / spec.name, ignore_errors=True)
    return result


def cut_units(shards: list[UnitSpec], workers: int, unit_items: int | None = None) -> list[UnitSpec]:
    """The units that build `shards` (one dataset's), cut by guided self-scheduling: walking the
    shards in order, each unit takes the items left / (GUIDE x workers), never fewer than
    MIN_UNIT_BYTES of the shard's estimated rows, so units shrink as the work runs out and the last
    ones are small enough for the workers to finish together; a shard whose first unit would take
    it all stays one unit (no parts to assemble); with one worker every shard is one unit.
    `unit_items` fixes the size instead. Parts are
    contiguous; the cut depends on the plan and the worker count only, never on timings. A shard on
    object storage or in NPZ is one unit (their writers take whole shards)."""
    if workers <= 1 and unit_items is None:
        return list(shards)  # one worker: parts would only add their writing and assembly
    left = sum(len(u.items) for u in shards)
    units: list[UnitSpec] = []
    for u in shards:
        n = len(u.items)
        least = max(1, MIN_UNIT_BYTES // max(1, u.row_bytes))
        bounds = [0]
        while bounds[-1] < n:
            size = unit_items or max(least, -(-left // (GUIDE * max(1, workers))))
            if n - bounds[-1] - size < (unit_items or least):  # no runt at the shard's end
                size = n - bounds[-1]
            bounds.append(bounds[-1] + size)
            left -= size
        if len(bounds) == 2 or is_url(u.out_dir) or u.recipe.output.format == "npz":
            units.append(u)
            continue
        parts = len(bounds) - 1
        units += [
            replace(u, items=u.items[bounds[k] : bounds[k + 1]], part=k, parts=parts) for k in range(parts)
        ]
    return units


def _input_digests(items: list[Item], raw_root: Path) -> dict[str, str]:
    """Per item, a digest of its raw inputs (hashes from the manifest; size+mtime otherwise)."""
    with RawManifest.for_reading(raw_root, create=False) as manifest:
        known = manifest.load_index()
    keys = sorted(known)
    out = {}
    for item in items:
        h = hashlib.sha256()
        flat = [(n, r) for n, v in item.inputs.items() for r in ([v] if isinstance(v, str) else v)]
        for name, rel in sorted(flat):
            h.update(f"{name}={rel};".encode())
            i = bisect.bisect_left(keys, rel)
            while i < len(keys) and keys[i].startswith(rel):
                k = keys[i]
                if len(k) == len(rel) or k[len(rel)] in "./":
                    h.update(f"{k}:{known[k][2]};".encode())
                i += 1
            p = raw_root / rel
            if p.exists() and rel not in known:
                st = p.stat()
                h.update(f"stat:{st.st_size}:{st.st_mtime_ns};".encode())
        out[item.id] = h.hexdigest()
    return out


def _out_url(settings: Settings, recipe: Recipe) -> str | None:
    """The run's output folder on object storage (None for a local data dir)."""
    url = settings.processed_url(recipe.name)
    return f"{url}/{recipe.content_hash()}" if url else None


def plan_units(
    recipe: Recipe,
    settings: Settings,
    items: list[Item],
    schema: pa.Schema,
    row_bytes: int,
    classes: list[str] | None = None,
) -> list[UnitSpec]:
    raw_root = settings.raw_dir(recipe.name)
    out_dir = settings.processed_dir(recipe.name) / recipe.content_hash()
    per_shard = max(1, int(recipe.output.shard_size) // max(1, row_bytes))
    per_group = max(1, min(per_shard, int(recipe.output.row_group_size) // max(1, row_bytes)))
    digests = _input_digests(items, raw_root)
    class_list = list(classes if classes is not None else recipe.classes)
    by_split: dict[str, list[Item]] = {}
    for it in items:
        by_split.setdefault(it.split, []).append(it)
    units = []
    for split in sorted(by_split):
        group = by_split[split]
        for k, start in enumerate(range(0, len(group), per_shard)):
            chunk = group[start : start + per_shard]
            h = hashlib.sha256(f"{recipe.content_hash()}|{__version__}|{per_group}|".encode())
            h.update(json.dumps(class_list).encode())  # discovered classes are not in the recipe hash
            for it in chunk:
                h.update(
                    json.dumps([it.id, it.split, it.labels, it.target, it.extra, digests[it.id]]).encode()
                )
            units.append(
                UnitSpec(
                    f"{split}-{k:05d}.{recipe.output.format}",
                    split,
                    chunk,
                    recipe,
                    str(raw_root),
                    _out_url(settings, recipe) or str(out_dir),
                    schema,
                    h.hexdigest(),
                    per_group,
                    row_bytes,
                    class_list,
                )
            )
    return units


@dataclass
class EngineOptions:
    """Where units run: `kind` loky|dask|ray, a Dask scheduler or Ray address (else a local
    cluster), and the memory one worker may use (else what the machine has available)."""

    kind: str = "loky"
    scheduler: str | None = None
    address: str | None = None
    memory_per_worker: int | None = None
    unit_items: int | None = None  # items per unit (default: see `cut_units`)


@dataclass
class _Planned:
    recipe: Recipe
    report: PreprocessReport
    units: list[UnitSpec]
    schema: pa.Schema
    unit_bytes: int  # one unit's working set: a row group in memory plus one item's peak
    items: int
    t0: float
    classes: list[str]  # the recipe's, or the discovered vocabulary
    remote_out: str | None = None  # the run's output folder on object storage (None: local)
    item_seconds: float = 0.0  # CPU seconds of one item, measured on the probes


def preprocess(
    recipe: Recipe,
    settings: Settings,
    *,
    workers: int = 1,
    on_unit: Callable[[UnitResult], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    part: tuple[int, int] | None = None,
    limit: int | None = None,
    where: dict[str, list[str]] | None = None,
    subset: str | None = None,
    engine: EngineOptions | None = None,
) -> PreprocessReport:
    """Run a recipe's steps over its index and commit the shards and manifest.

    part=(i, n) runs only every n-th unit starting at i (one task of a cluster array job) and
    writes no manifest; a final run without `part` finds every shard committed and writes it.
    limit=N keeps the first N items of the index, where={column: values} only rows with those values;
    either, or `subset` (why the build covers only part of the dataset, e.g. the demo), records the
    build as a subset in the manifest, which `verify --outputs` then checks against its own counts.
    """
    out = preprocess_many(
        [recipe],
        settings,
        workers=workers,
        on_unit=on_unit,
        on_plan=on_plan,
        part=part,
        engine=engine,
        limit=limit,
        where=where,
        subset=subset,
    )
    result = out[recipe.name]
    if isinstance(result, ClimbError):
        raise result
    return result


def preprocess_many(
    recipes: list[Recipe],
    settings: Settings,
    *,
    workers: int = 1,
    on_unit: Callable[[UnitResult], None] | None = None,
    on_plan: Callable[[int, int], None] | None = None,
    part: tuple[int, int] | None = None,
    engine: EngineOptions | None = None,
    limit: int | None = None,
    where: dict[str, list[str]] | None = None,
    subset: str | None = None,
) -> dict[str, PreprocessReport | ClimbError]:
    """Preprocess several datasets with one pool, started once and warmed while the coordinator
    indexes: each dataset's probe items run on the pool as soon as it is indexed, its units as soon
    as its probes are back (while the next dataset is indexed and probed), each shard cut into parts
    is assembled as soon as its last part is in, and each dataset is committed at the end. A dataset
    that cannot be planned or committed gets its error; the others go on. `on_plan(shards, items)`
    is called with the running totals as each dataset is planned. `limit`, `where` and `subset`
    (see `preprocess`) apply to each dataset."""
    run = _Run(recipes, settings, workers, engine or EngineOptions(), part, _Part(limit, where, subset))
    run.on_unit, run.on_plan = on_unit, on_plan
    return run.run()


ASSEMBLY_SECONDS_PER_BYTE = 20e-9  # re-encoding parts into a shard: ~20 ms of CPU per MB (engines bench)
LOOKAHEAD = 1  # tasks queued on the pool beyond one per worker: a worker never waits for the coordinator


class _UnitFailed(Exception):
    def __init__(self, error: ClimbError) -> None:
        self.error = error


class _Run:
    """One `preprocess_many`: the pool, the ready tasks (probes and assemblies first, then units,
    the costliest first), the tasks in flight, and each dataset's plan and report."""

    def __init__(
        self,
        recipes: list[Recipe],
        settings: Settings,
        workers: int,
        opts: EngineOptions,
        part: tuple[int, int] | None,
        part_of: _Part,
    ) -> None:
        self.recipes, self.settings, self.workers, self.opts = recipes, settings, workers, opts
        self.part, self.part_of = part, part_of
        self.on_unit: Callable[[UnitResult], None] | None = None
        self.on_plan: Callable[[int, int], None] | None = None
        self.out: dict[str, PreprocessReport | ClimbError] = {}
        self.plans: list[_Planned] = []
        self.by_digest: dict[str, tuple[_Planned, UnitSpec]] = {}
        self.parts: dict[str, list[UnitResult]] = {}
        # (order, function, argument, memory of one unit, what the coordinator keeps of it)
        self.ready: list[tuple[tuple[int, float, int], Callable[[Any], Any], Any, int, Any]] = []
        self.in_flight: dict[Any, Any] = {}
        self.cap = 1  # units in flight at once (the memory limit), beyond LOOKAHEAD
        self.units = 0
        self._seq = 0
        self._pool: Any = None
        self._starting: Any = None

    # ---- the pool

    def _start(self) -> None:
        """Start the pool: loky's workers begin importing what the recipes' steps need at once; a
        Dask cluster starts in a thread while the coordinator indexes."""
        from concurrent.futures import ThreadPoolExecutor

        opts, workers = self.opts, self.workers
        modules = step_modules([c.name for r in self.recipes for c in r.steps])
        fit = memory_capped_workers(workers, 0, workers, opts.memory_per_worker)[0]
        if opts.kind == "loky":
            self._pool = make_engine(fit, "loky")
            if isinstance(self._pool, LokyEngine):
                self._pool.warm_up(modules)
            self.cap = self._pool.workers
            return

        def start() -> Any:
            pool = make_engine(
                workers,
                opts.kind,
                scheduler=opts.scheduler,
                address=opts.address,
                memory_per_worker=opts.memory_per_worker,
            )
            with contextlib.suppress(Exception):
                pool.warm_up(modules)
            return pool

        if opts.kind == "ray":  # ray.init belongs in the main thread (its signal handlers)
            self._pool = start()
            self.cap = max(1, self._pool.workers)
            return
        thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="climb-cluster-start")
        self._starting = thread.submit(start)
        thread.shutdown(wait=False)

    def pool(self) -> Any:
        if self._pool is None:
            self._pool = self._starting.result()  # the cluster's start-up error, if any, is raised here
            self.cap = max(1, self._pool.workers)
        return self._pool

    # ---- tasks

    def _push(
        self,
        first: bool,
        cost: float,
        fn: Callable[[Any], Any],
        arg: Any,
        unit_bytes: int = 0,
        tag: Any = None,
    ) -> None:
        """Queue a task: `first` (probes, assemblies) before units, then the costliest first."""
        import heapq

        self._seq += 1
        order = (0 if first else 1, -cost, self._seq)
        heapq.heappush(self.ready, (order, fn, arg, unit_bytes, arg if tag is None else tag))

    def _fill(self) -> None:
        import heapq

        # one task queued ahead only when every worker may run one: under a memory cap a queued
        # task could start on an idle worker
        limit = self.cap + (LOOKAHEAD if self.cap >= self.pool().workers else 0)
        while self.ready and len(self.in_flight) < limit:
            _, fn, arg, unit_bytes, tag = heapq.heappop(self.ready)
            self.in_flight[self.pool().submit(fn, arg, unit_bytes)] = tag

    def _drain(self, timeout: float | None) -> None:
        pool = self.pool()
        for handle in pool.wait_any(list(self.in_flight), timeout):
            arg = self.in_flight.pop(handle)
            if isinstance(arg, _Indexed):  # its probes are back
                try:
                    probed = pool.result(handle)
                    with _disk_full_says(self.settings, arg.recipe):
                        self._planned(
                            _planned(arg, probed, self.settings, self.part, self.opts.memory_per_worker)
                        )
                except ClimbError as e:
                    self.out[arg.recipe.name] = e
                continue
            try:
                u = pool.result(handle)
            except ClimbError as e:
                raise _UnitFailed(e) from None
            if isinstance(arg, Assembly) or u.parts == 1:  # a shard
                self.by_digest[u.digest][0].report.units.append(u)
            else:  # a part
                got = self.parts.setdefault(u.digest, [])
                got.append(u)
                if len(got) == u.parts:  # every part is in: assemble the shard now
                    job = Assembly(self.by_digest[u.digest][1], sorted(got, key=lambda r: r.part))
                    self._push(True, 0.0, assemble_shard, job)
            if self.on_unit and not isinstance(arg, Assembly):
                self.on_unit(u)

    def _planned(self, p: _Planned) -> None:
        """A dataset's plan is in: its committed shards are reported, the others cut into units."""
        self.plans.append(p)
        for u in p.units:
            self.by_digest[u.digest] = (p, u)
        if self.on_plan:
            self.on_plan(sum(len(q.units) for q in self.plans), sum(q.items for q in self.plans))
        todo = []
        for shard, done in zip(p.units, _reused(p.units), strict=True):
            if done is None:
                todo.append(shard)
                continue
            p.report.units.append(done)
            if self.on_unit:
                self.on_unit(done)
        units = cut_units(todo, self.workers, self.opts.unit_items)
        if not units:
            return
        self.units += len(units)
        unit_bytes = max(q.unit_bytes for q in self.plans if q.units)
        fit = memory_capped_workers(self.workers, unit_bytes, 2**31, self.opts.memory_per_worker)[0]
        self.cap = max(1, min(self.pool().workers, fit))
        # list scheduling by bottom level: a unit's CPU seconds, plus for a part the assembly that
        # waits for it, so the parts of a large shard finish early and its assembly overlaps the
        # other units instead of running alone at the end
        for u in units:
            cost = len(u.items) * max(p.item_seconds, 1e-6)
            if u.parts > 1:
                cost += ASSEMBLY_SECONDS_PER_BYTE * len(self.by_digest[u.digest][1].items) * u.row_bytes
            self._push(False, cost, run_unit, u, p.unit_bytes)

    # ---- the run

    def run(self) -> dict[str, PreprocessReport | ClimbError]:
        self._start()
        try:
            with contextlib.ExitStack() as stack:
                try:
                    for recipe in self.recipes:
                        try:
                            with _disk_full_says(self.settings, recipe):
                                if self.part is None:  # an array job's parts: disjoint shards, no lock
                                    name = self.settings.processed_dir(recipe.name)
                                    stack.enter_context(processed_lock(name, recipe.name, "climb preprocess"))
                                ix = _index(recipe, self.settings, self.part_of)
                        except ClimbError as e:
                            self.out[recipe.name] = e
                            continue
                        self._push(True, 0.0, probe, probe_job(ix, self.settings), tag=ix)
                        self._fill()
                        self._drain(0)  # results that came in while this dataset was indexed
                    while self.ready or self.in_flight:
                        self._fill()
                        self._drain(None)
                except _UnitFailed as e:  # a unit that could not write (a full disk): no dataset completes
                    for r in self.recipes:
                        self.out.setdefault(r.name, e.error)
                    return self.out
                if self.units:
                    unit_bytes = max(p.unit_bytes for p in self.plans if p.units)
                    n, note = memory_capped_workers(
                        self.workers, unit_bytes, self.units, self.opts.memory_per_worker
                    )
                    for p in self.plans:
                        p.report.workers, p.report.note = n, note
                for p in self.plans:
                    try:
                        with _disk_full_says(self.settings, p.recipe):
                            self.out[p.recipe.name] = _finish(p)
                    except ClimbError as e:
                        self.out[p.recipe.name] = e
            return self.out
        except BaseException:
            if self.opts.kind == "loky":  # an interrupted or failed run: no worker outlives it
                stop_pool()
            raise
        finally:
            if self._pool is not None:
                with contextlib.suppress(Exception):
                    self._pool.cancel(list(self.in_flight))
                close_engine(self._pool)
            elif self._starting is not None:
                with contextlib.suppress(BaseException):
                    close_engine(self._starting.result())


def _reused(shards: list[UnitSpec]) -> list[UnitResult | None]:
    """Each shard's committed result if it is still good, else None: checked by the coordinator (a
    committed shard is neither cut nor sent to a worker), several at a time (hashing a shard file
    releases the GIL). On object storage, one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    def check(spec: UnitSpec) -> UnitResult | None:
        if is_url(spec.out_dir):
            return _remote_committed(spec, Remote(spec.out_dir))
        out_dir = Path(spec.out_dir)
        return _committed(spec, out_dir / ".commits" / f"{spec.name}.json", out_dir / "data" / spec.name)

    local = [s for s in shards if not is_url(s.out_dir)]
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(local)))) as threads:
        found = dict(zip([id(s) for s in local], threads.map(check, local), strict=True))
    return [found[id(s)] if id(s) in found else check(s) for s in shards]


@contextlib.contextmanager
def _disk_full_says(settings: Settings, recipe: Recipe) -> Iterator[None]:
    try:
        yield
    except OSError as e:  # a full disk outside a shard (commit markers, errors.parquet, manifest.json)
        if is_disk_full(e):
            raise no_space(settings.processed_dir(recipe.name)) from None
        raise


@dataclass(frozen=True)
class _Part:
    """A build over part of a dataset: the first `limit` items, rows matching `where`, or a named subset."""

    limit: int | None = None
    where: dict[str, list[str]] | None = None
    subset: str | None = None


@dataclass
class _Indexed:
    """A dataset indexed by the coordinator, waiting for its probe items."""

    recipe: Recipe
    report: PreprocessReport
    items: list[Item]
    classes: list[str]
    t0: float
    remote_out: str | None


@dataclass
class ProbeJob:
    """The first items of a dataset to process for its row schema, row size and memory per item."""

    recipe: Recipe
    raw_root: str
    items: list[Item]
    classes: list[str]


@dataclass
class Probed:
    schema: pa.Schema
    row_bytes: int
    peaks: list[tuple[int, int]]  # (peak memory, input bytes) of each probe
    item_seconds: float  # CPU seconds of one item (the probes after the first): the cost of a unit


def _index(recipe: Recipe, settings: Settings, part_of: _Part) -> _Indexed:
    """The dataset's items (the coordinator's part of planning)."""
    limit, where, subset = part_of.limit, part_of.where, part_of.subset
    t0 = time.perf_counter()
    out_dir = settings.processed_dir(recipe.name) / recipe.content_hash()
    remote_out = _out_url(settings, recipe)
    report = PreprocessReport(recipe.name, out_dir)
    report.where = remote_out or str(out_dir)
    index = build_index(recipe, settings, where)
    report.rejected = index.rejected
    report.dropped = index.dropped
    why = []
    if where:
        why.append("--where " + " ".join(f"{c}={','.join(v)}" for c, v in sorted(where.items())))
    if limit is not None:
        index.items = index.items[:limit]
        why.append(f"--limit {limit}: the first {limit} items of the index")
    subset = subset or ("; ".join(why) if why else None)
    if subset is not None:
        report.subset = {"why": subset}
    if not index.items:
        raise ClimbError(f"{recipe.name}: the index produced no items ({len(index.rejected)} rejected)")
    return _Indexed(recipe, report, index.items, index.classes, t0, remote_out)


def probe_job(ix: _Indexed, settings: Settings) -> ProbeJob:
    raw_root = str(settings.raw_dir(ix.recipe.name))
    return ProbeJob(ix.recipe, raw_root, ix.items[:PROBE_LIMIT], ix.classes)


def probe(job: ProbeJob) -> Probed:
    """Process the first items until PROBE_SAMPLES succeed: the row schema, the size of a row, and
    each probe's peak memory and CPU time. Runs on a worker (it imports what the steps need, which
    the worker needs anyway), or in the coordinator for the serial engine."""
    recipe, raw_root = job.recipe, Path(job.raw_root)
    steps = _steps(recipe)
    probe_errors: list[str] = []
    probes: list[Sample] = []  # a few processed items: the row schema and size come from them
    peaks: list[tuple[int, int]] = []
    seconds: list[float] = []
    first_item = job.items[0]
    for item in job.items:
        cpu = time.process_time()
        try:
            sample, peak = measure_peak(partial(process_item, item, raw_root, steps))
            probes.append(sample)
        except ItemError as e:
            probe_errors.append(f"{item.id}: {e}")
            continue
        seconds.append(time.process_time() - cpu)  # with the threads a library starts (ITK)
        if peak is not None:
            peaks.append((peak, input_bytes(_item_paths(item, raw_root))))
        if len(probes) == 1:
            first_item = item
        if len(probes) == PROBE_SAMPLES:
            break
    if not probes:
        raise ClimbError(
            f"{recipe.name}: the first {len(probe_errors)} items all failed; first: {probe_errors[0]}"
        )
    sample = probes[0]
    regression = recipe.index is not None and recipe.index.labels.kind == "regression"
    try:  # the rows the probes become (rows.explode cuts one item into many) make the schema
        probe_rows = [sub for p in probes for _, sub, _ in explode(p)][: PROBE_SAMPLES * 4]
    except ItemError as e:
        raise ClimbError(f"{recipe.name}: the first item cannot be cut into rows: {e}") from None
    schema = build_schema(probe_rows, first_item, job.classes, regression)
    row_bytes = sum(a.nbytes for a in sample.arrays.values()) + 256  # per item: shards are cut in items
    timed = seconds[1:] or seconds  # the first pays for imports
    return Probed(schema, row_bytes, peaks, statistics.median(timed))


def _plan(
    recipe: Recipe,
    settings: Settings,
    part: tuple[int, int] | None,
    memory_per_worker: int | None,
    part_of: _Part,
) -> _Planned:
    """Index the dataset, process a few probe items (row schema, row size, peak memory per item)
    and plan its shards, here in this process."""
    ix = _index(recipe, settings, part_of)
    return _planned(ix, probe(probe_job(ix, settings)), settings, part, memory_per_worker)


def _planned(
    ix: _Indexed,
    probed: Probed,
    settings: Settings,
    part: tuple[int, int] | None,
    memory_per_worker: int | None,
) -> _Planned:
    """The dataset's shards, from its index and its probes."""
    recipe, report = ix.recipe, ix.report
    schema, row_bytes, peaks = probed.schema, probed.row_bytes, probed.peaks
    units = plan_units(recipe, settings, ix.items, schema, row_bytes, ix.classes)
    if part is not None:
        units = [u for k, u in enumerate(units) if k % part[1] == part[0]]
        report.partial = True
    working_set = min(
        int(recipe.output.row_group_size), row_bytes * max((len(u.items) for u in units), default=1)
    )
    # one item's peak: measured on the probes (the first one pays for imports, so it counts only
    # when it is the only one), else ~10x its row (bench/volume_memory.py: 330 MiB for a 32 MiB row)
    measured = peaks[1:] or peaks
    item_bytes = max((p for p, _ in measured), default=10 * row_bytes)
    per_input = max((p / b for p, b in measured if b), default=0.0)
    budget = (memory_per_worker or _machine_memory()) - WORKER_BASE_BYTES - working_set
    for u in units:
        u.item_bytes, u.bytes_per_input_byte, u.item_budget = item_bytes, per_input, max(1, budget)
    if ix.remote_out is None:
        (report.out_dir / "data").mkdir(parents=True, exist_ok=True)
    return _Planned(
        recipe,
        report,
        units,
        schema,
        working_set + item_bytes,
        len(ix.items),
        ix.t0,
        ix.classes,
        ix.remote_out,
        probed.item_seconds,
    )


def _machine_memory() -> int:
    """The memory this process may use: the cgroup's limit where one is set, else the machine's."""
    import psutil

    total = psutil.virtual_memory().total
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            return min(total, int(limit))
    except OSError:
        pass
    return total


def _finish(p: _Planned) -> PreprocessReport:
    report = p.report
    report.units.sort(key=lambda u: u.name)
    for u in report.units:
        for reason, n in u.dropped.items():
            report.dropped[reason] = report.dropped.get(reason, 0) + n
    report.dropped = dict(sorted(report.dropped.items()))
    if not report.partial and p.remote_out is not None:
        _commit_run_remote(p.recipe, Remote(p.remote_out), report, p.schema, p.classes)
    elif not report.partial:
        _commit_run(p.recipe, report.out_dir, report, p.schema, p.classes)
        shutil.rmtree(report.out_dir / "data" / ".tmp", ignore_errors=True)  # leftovers of killed runs
        shutil.rmtree(report.out_dir / ".parts", ignore_errors=True)  # parts of shards no longer planned
    report.seconds = time.perf_counter() - p.t0
    return report


def _commit_run(
    recipe: Recipe, out_dir: Path, report: PreprocessReport, schema: pa.Schema, class_list: list[str]
) -> None:
    planned = {u.name for u in report.units}
    for old in [*(out_dir / "data").glob("*.parquet"), *(out_dir / "data").glob("*.npz")]:
        if old.name not in planned:
            old.unlink()
            (out_dir / ".commits" / f"{old.name}.json").unlink(missing_ok=True)
    errors = _errors_table(report)
    write_table_atomic(out_dir / "errors.parquet", errors)
    write_json_atomic(
        out_dir / "manifest.json", _run_manifest(recipe, report, schema, class_list, errors.num_rows)
    )


def _errors_table(report: PreprocessReport) -> pa.Table:
    errors = [(i, s, r) for u in report.units for (i, s, r) in u.errors]
    errors += [(i, "", f"index: {r}") for i, r in report.rejected]
    return pa.table(
        {"id": [e[0] for e in errors], "split": [e[1] for e in errors], "reason": [e[2] for e in errors]},
        schema=pa.schema([("id", pa.string()), ("split", pa.string()), ("reason", pa.string())]),
    )


def _commit_run_remote(
    recipe: Recipe, out: Remote, report: PreprocessReport, schema: pa.Schema, class_list: list[str]
) -> None:
    """The run's commit on object storage: stale shards go (marker first), errors.parquet, then
    manifest.json last: a reader that finds manifest.json finds everything it lists."""
    planned = {u.name for u in report.units}
    for name in sorted(out.files("data")):
        if name.endswith((".parquet", ".npz")) and name not in planned:
            out.delete(f".commits/{name}.json")
            out.delete(f"data/{name}")
    errors = _errors_table(report)
    local = scratch_dir() / f"{uuid.uuid4().hex}-errors.parquet"
    try:
        write_table_atomic(local, errors)
        out.upload(local, "errors.parquet")
    finally:
        local.unlink(missing_ok=True)
    manifest = _run_manifest(recipe, report, schema, class_list, errors.num_rows)
    out.write_bytes("manifest.json", json_bytes(manifest))


def _run_manifest(
    recipe: Recipe, report: PreprocessReport, schema: pa.Schema, class_list: list[str], n_errors: int
) -> dict:
    splits: Counter[str] = Counter()
    classes: Counter[str] = Counter()
    for u in report.units:
        splits[u.split] += u.rows
        classes.update(u.classes)
    return {
        "dataset": recipe.name,
        "recipe_hash": recipe.content_hash(),
        "climb_version": __version__,
        "format": recipe.output.format,
        "shards": [
            {
                "name": f"data/{u.name}",
                "split": u.split,
                "rows": u.rows,
                "bytes": u.bytes,
                "sha256": u.sha256,
            }
            for u in report.units
        ],
        "splits": dict(sorted(splits.items())),
        "classes": {c: classes.get(c, 0) for c in class_list},
        "classes_discovered": bool(recipe.index and recipe.index.labels.discover),
        "variant": recipe.variant,
        "dropped": report.dropped,
        "subset": (
            None
            if report.subset is None
            else {
                **report.subset,
                "expect": {
                    "splits": recipe.expect.splits,
                    "class_counts": recipe.expect.class_counts,
                    "tolerance": recipe.expect.tolerance,
                },
            }
        ),
        "errors": n_errors,
        "input_digest": hashlib.sha256("".join(u.digest for u in report.units).encode()).hexdigest(),
        "schema": [{"name": f.name, "type": str(f.type)} for f in schema],
        "modality": recipe.modality,
        "climb_tensor": recipe.climb_tensor.model_dump() if recipe.climb_tensor else None,
        "arrays": {
            f.name: {
                "dtype": str(f.type.value_type),
                "shape_column": f"{f.name}_shape",
                "encoding": recipe.output.array_encoding,
                "compression": recipe.output.compression,
            }
            for f in schema
            if f"{f.name}_shape" in schema.names
        },
        "layout": (
            "npz: arrays stacked (rows, *shape) when rows share a shape, else flat with <name>_offsets; "
            "<name>_shape per row; list columns as JSON text (see climb_cli/shards.py NpzShardWriter)"
            if recipe.output.format == "npz"
            else "arrays are flat row-major values in <name>, with their shape in <name>_shape"
        ),
    }
