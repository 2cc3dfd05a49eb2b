"""Parquet shards: turning processed samples into rows, writing them deterministically and atomically.

Row layout (readable with plain pyarrow or pandas, no climb needed):
  id, split, labels (list<string>), target (list<uint8> multi-hot in class order, or float64),
  kept index columns (string), modality metadata (sampling_rate, lead_names, units, ...),
  every array as `<name>` (flat list of its dtype, row-major) plus `<name>_shape` (list<int32>),
  provenance: source_files, source_sha256 (list<string>), recipe_hash.
Same inputs give the same rows in the same order and the same bytes: no timestamps, fixed row
groups, fixed encodings (numeric arrays use BYTE_STREAM_SPLIT, which compresses them well).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from climb_cli import atomic
from climb_cli.errors import ItemError
from climb_cli.index import Item
from climb_cli.steps.base import Sample

RESERVED = {"id", "split", "labels", "target", "source_files", "source_sha256", "recipe_hash"}


def _meta_type(value: Any) -> pa.DataType:
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int | np.integer):
        return pa.int64()
    if isinstance(value, float | np.floating):
        return pa.float64()
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return pa.list_(pa.string())
        if all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in value):
            return pa.list_(pa.int64())
        return pa.list_(pa.float64())
    return pa.string()


def _ambiguous(value: Any) -> bool:
    return value is None or (isinstance(value, list | tuple) and len(value) == 0)


def build_schema(
    samples: Sample | list[Sample], item: Item, classes: list[str], regression: bool
) -> pa.Schema:
    """The shard schema, from the first processed samples of a run (every shard shares it). A meta
    value that says nothing of its type (None, an empty list) takes its type from another sample."""
    if isinstance(samples, Sample):
        samples = [samples]
    sample = samples[0]
    meta = dict(sample.meta)
    for other in samples[1:]:
        for k, v in other.meta.items():
            if k in meta and _ambiguous(meta[k]) and not _ambiguous(v):
                meta[k] = v
    fields = [
        pa.field("id", pa.string()),
        pa.field("split", pa.string()),
        pa.field("labels", pa.list_(pa.string())),
    ]
    fields.append(pa.field("target", pa.float64() if regression else pa.list_(pa.uint8())))
    for k in item.extra:
        fields.append(pa.field(k, pa.string()))
    for k, v in sorted(meta.items()):
        if k.startswith("_"):
            continue  # private hand-over between steps, never an output column
        if k in RESERVED or k in item.extra:
            raise ItemError(f"metadata field {k!r} clashes with a reserved or kept column")
        fields.append(pa.field(k, _meta_type(v)))
    for name, arr in sorted(sample.arrays.items()):
        fields.append(pa.field(name, pa.list_(pa.from_numpy_dtype(arr.dtype))))
        fields.append(pa.field(f"{name}_shape", pa.list_(pa.int32())))
    fields += [
        pa.field("source_files", pa.list_(pa.string())),
        pa.field("source_sha256", pa.list_(pa.string())),
        pa.field("recipe_hash", pa.string()),
    ]
    schema_meta = {
        b"climb.classes": json.dumps(classes).encode(),
        b"climb.layout": b"arrays are flat row-major; see <name>_shape",
    }
    return pa.schema(fields, metadata=schema_meta)


def to_row(
    schema: pa.Schema,
    item: Item,
    sample: Sample,
    classes: list[str],
    provenance: list[tuple[str, str]],
    recipe_hash: str,
) -> dict[str, Any]:
    row: dict[str, Any] = {"id": item.id, "split": item.split, "labels": list(item.labels)}
    if schema.field("target").type == pa.float64():
        row["target"] = item.target
    else:
        present = set(item.labels)
        row["target"] = [1 if c in present else 0 for c in classes]
    row.update(item.extra)
    names = set(schema.names)
    for k, v in sample.meta.items():
        if k in names and not k.startswith("_"):
            row[k] = v.tolist() if isinstance(v, np.ndarray) else v
    for name, arr in sample.arrays.items():
        if name not in names:
            raise ItemError(f"array {name!r} is not in the shard schema (steps produced different arrays)")
        want = schema.field(name).type.value_type
        if pa.from_numpy_dtype(arr.dtype) != want:
            raise ItemError(f"array {name!r} is {arr.dtype}, the shard schema says {want}")
        row[name] = np.ascontiguousarray(arr).reshape(-1)
        row[f"{name}_shape"] = list(arr.shape)
    row["source_files"] = [p for p, _ in provenance]
    row["source_sha256"] = [h for _, h in provenance]
    row["recipe_hash"] = recipe_hash
    return row


def _columns(schema: pa.Schema, rows: list[dict[str, Any]]) -> pa.Table:
    arrays = []
    for f in schema:
        values: list[Any] = [r.get(f.name) for r in rows]
        if pa.types.is_list(f.type) and isinstance(values[0], np.ndarray):
            flat = np.concatenate(values) if values else np.array([])
            offsets = np.zeros(len(values) + 1, dtype=np.int32)
            np.cumsum([len(v) for v in values], out=offsets[1:])
            arrays.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat, type=f.type.value_type)))
        else:
            arrays.append(pa.array(values, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


class ShardWriter:
    """Writes rows in fixed-size row groups to a temporary file; `commit` renames it into place."""

    def __init__(
        self,
        schema: pa.Schema,
        final: Path,
        row_group_rows: int,
        compression: str,
        array_encoding: str = "byte_stream_split",
    ) -> None:
        self.schema, self.final, self.row_group_rows = schema, final, max(1, row_group_rows)
        self.tmp = final.parent / ".tmp" / f"{final.name}.{os.getpid()}"
        self.tmp.parent.mkdir(parents=True, exist_ok=True)
        float_arrays = [  # numeric array columns: BYTE_STREAM_SPLIT, then zstd (Parquet 2.11, pyarrow >= 16)
            f.name
            for f in schema
            if pa.types.is_list(f.type)
            and (pa.types.is_floating(f.type.value_type) or pa.types.is_integer(f.type.value_type))
            and f"{f.name}_shape" in schema.names
        ]
        small = [f.name for f in schema if f.name not in float_arrays]
        unique = {"id", "source_files", "source_sha256"}
        strings = [
            f.name
            for f in schema
            if f.name not in unique
            and (
                pa.types.is_string(f.type)
                or (pa.types.is_list(f.type) and pa.types.is_string(f.type.value_type))
            )
        ]
        self._writer = pq.ParquetWriter(
            str(self.tmp),
            schema,
            compression=None if compression == "none" else compression,
            use_dictionary=strings,
            # pyarrow wants the leaf path of a list column; keyed by its name it silently writes PLAIN
            column_encoding=(
                {f"{n}.list.element": "BYTE_STREAM_SPLIT" for n in float_arrays}
                if array_encoding == "byte_stream_split"
                else None
            )
            or None,
            write_statistics=[n for n in small if not pa.types.is_list(schema.field(n).type)],
        )
        self._rows: list[dict[str, Any]] = []
        self._tables: list[pa.Table] = []  # rows added as tables (`add_table`), not yet written
        self._table_rows = 0
        self.rows = 0

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)
        if len(self._rows) >= self.row_group_rows:
            self._flush()

    def add_table(self, table: pa.Table) -> None:
        """Rows that are already columns (a part's row group, read back): written in the same fixed
        row groups as `add`'s, so the shard's bytes do not depend on how its rows were cut into parts."""
        self._tables.append(table.replace_schema_metadata(self.schema.metadata))
        self._table_rows += table.num_rows
        while self._table_rows >= self.row_group_rows:
            self._flush_tables(self.row_group_rows)

    def _flush_tables(self, n: int) -> None:
        buffered = pa.concat_tables(self._tables)
        self._write(buffered.slice(0, n).combine_chunks())
        rest = buffered.slice(n)
        self._tables, self._table_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def _write(self, table: pa.Table) -> None:
        self._writer.write_table(table, row_group_size=table.num_rows)
        self.rows += table.num_rows

    def _flush(self) -> None:
        if self._rows:
            self._write(_columns(self.schema, self._rows))
            self._rows = []
        if self._table_rows:
            self._flush_tables(self._table_rows)

    def commit(self) -> tuple[int, int, str]:
        """Finish, fsync, rename into place; returns (rows, bytes, sha256)."""
        self._flush()
        self._writer.close()
        with open(self.tmp, "rb+") as f:
            os.fsync(f.fileno())
            f.seek(0)
            digest = hashlib.file_digest(f, "sha256").hexdigest()
        size = self.tmp.stat().st_size
        os.replace(self.tmp, self.final)
        return self.rows, size, digest

    def abort(self) -> None:
        try:
            self._writer.close()
        finally:
            self.tmp.unlink(missing_ok=True)


class NpzShardWriter:
    """`output: {format: npz}`: the same rows as a Parquet shard, as one uncompressed .npz per shard.

    Members (numpy .npy files in a ZIP_STORED archive with fixed timestamps, so the same rows give
    the same bytes): every non-array column by name (`id`, `split`, kept columns and metadata as
    unicode arrays; numbers as numbers; list columns such as `labels`, `source_files` as JSON text per
    row; a multi-hot `target` as a (rows, classes) uint8 matrix); every array `<name>` stacked as
    (rows, *shape) when all rows share a shape, else flat with `<name>_offsets` (rows + 1, int64);
    and `<name>_shape` (rows, ndim) int32 always (-1 pads the shape of a row with fewer axes).
    `np.load(path)` reads it; uncompressed members can be memory-mapped at their offsets.
    """

    def __init__(self, schema: pa.Schema, final: Path) -> None:
        self.schema, self.final = schema, final
        self._rows: list[dict[str, Any]] = []

    def add(self, row: dict[str, Any]) -> None:
        self._rows.append(row)

    def _members(self) -> dict[str, np.ndarray]:
        rows, out = self._rows, {}
        arrays = {f.name for f in self.schema if f"{f.name}_shape" in self.schema.names}
        for f in self.schema:
            values: list[Any] = [r.get(f.name) for r in rows]
            if f.name in arrays:
                shapes = [tuple(r[f"{f.name}_shape"]) for r in rows]
                dtype = f.type.value_type.to_pandas_dtype()
                if len(set(shapes)) <= 1:
                    shape = shapes[0] if shapes else (0,)
                    out[f.name] = (
                        np.stack([np.asarray(v).reshape(shape) for v in values])
                        if rows
                        else np.zeros((0,), dtype)
                    )
                else:
                    out[f.name] = np.concatenate(values).astype(dtype, copy=False)
                    offsets = np.zeros(len(values) + 1, dtype=np.int64)
                    np.cumsum([len(v) for v in values], out=offsets[1:])
                    out[f"{f.name}_offsets"] = offsets
            elif f.name.endswith("_shape") and f.name.removesuffix("_shape") in arrays:
                ndim = max((len(v) for v in values), default=0)
                out[f.name] = np.array([list(v) + [-1] * (ndim - len(v)) for v in values], dtype=np.int32)
            elif f.name == "target" and pa.types.is_list(f.type):  # (rows, classes); (0, 0) when empty
                out[f.name] = np.array(values, dtype=np.uint8).reshape(len(values), -1 if values else 0)
            elif pa.types.is_list(f.type):
                out[f.name] = np.array(
                    [json.dumps(list(v) if v is not None else None) for v in values], dtype=str
                )
            elif pa.types.is_floating(f.type):
                out[f.name] = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
            elif pa.types.is_integer(f.type) or pa.types.is_boolean(f.type):
                out[f.name] = np.array(values, dtype=f.type.to_pandas_dtype())
            else:
                out[f.name] = np.array(["" if v is None else str(v) for v in values], dtype=str)
        return out

    def commit(self) -> tuple[int, int, str]:
        """Write the archive atomically (atomic.atomic_path); returns (rows, bytes, sha256)."""
        import zipfile

        with atomic.atomic_path(self.final) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as z:
                for name, arr in self._members().items():
                    info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                    with z.open(info, "w", force_zip64=True) as fh:
                        np.lib.format.write_array(fh, np.ascontiguousarray(arr), allow_pickle=False)
            with open(tmp, "rb") as f:
                digest = hashlib.file_digest(f, "sha256").hexdigest()
            size = tmp.stat().st_size
        return len(self._rows), size, digest

    def abort(self) -> None:
        self._rows = []  # nothing is on disk before commit


def shard_rows(path: Path) -> int:
    """Rows in a committed shard (Parquet footer, or the length of an NPZ's `id`)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return len(z["id"])
    return pq.ParquetFile(path).metadata.num_rows


def json_bytes(data: Any) -> bytes:
    """The one JSON form of markers and manifests (sorted keys: same data, same bytes)."""
    return (json.dumps(data, indent=2, sort_keys=True) + "\n").encode()


def write_json_atomic(path: Path, data: Any) -> None:
    atomic.write_bytes(path, json_bytes(data))


def write_table_atomic(path: Path, table: pa.Table) -> None:
    with atomic.atomic_path(path) as tmp:
        pq.write_table(table, str(tmp), compression="zstd")
