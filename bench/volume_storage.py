"""How should volumes and videos be stored? Bytes and write/read time of Parquet tensor columns vs NPZ files.

Run: python bench/volume_storage.py [--quick] [--runs N]

Data: CT-like 256x256x160 int16 HU volumes (the generator of bench/volume_memory.py: body, lungs, spine,
scanner noise, -1024 outside the reconstruction circle) and what climb's steps make of them:
  ct_hu_int16    the volume as read (volume.read dtype int16)                      160x256x256 int16, 20 MiB
  ct_pe_float32  volume.resample 1 mm + volume.window pe (float32 [0, 1])       200x205x205 float32, 32 MiB
  ct_pe_uint8    the same window as uint8                                          200x205x205 uint8, 8 MiB
  ctpa_video     video.from_volume (ctpa window, CLAHE 1.5 8x8): frames            160x256x256 uint8, 10 MiB
Layouts, each holding the same items (one row group per item, as the pipeline sizes them: > 32 MB rows
or 1 row per group at these sizes):
  parquet_list      list<T> column + <name>_shape, PLAIN, zstd: what shards.py wrote up to now, because
                    its BYTE_STREAM_SPLIT request keyed by the column name is silently ignored (baseline)
  parquet_list_bss  the same with BYTE_STREAM_SPLIT set on the leaf path `<name>.list.element`
  shard_writer      climb's own shards.build_schema/to_row/ShardWriter as checked out (the encoding it
                    really wrote is printed at the end)
  parquet_blob      binary column of the raw little-endian bytes + shape + dtype, zstd (np.frombuffer)
  parquet_blob_shuf the same bytes byte-shuffled first (the environment notes' recommendation; numpy
                    un-shuffles in one line: frombuffer(b, u1).reshape(itemsize, -1).T.copy().view(dtype))
  npz               one np.savez file per item + a Parquet index (id, file, shape, dtype)
  npz_zip           np.savez_compressed (zlib level 6) + the same index
Times: medians of --runs on one thread (pyarrow cpu count 1), files in the page cache; read = back to a
numpy array of the right shape; "one" = one random item from a shard or its NPZ file.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from volume_memory import REPO, SPACING, ct_like  # noqa: E402

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def make_items(count: int) -> dict[str, list[np.ndarray]]:
    import SimpleITK as sitk

    from climb_cli.steps.base import Sample, registry

    def run(s: Sample, name: str, **kw: object) -> Sample:
        d = registry()[name]
        return d.fn(s, d.params.model_validate(kw))

    kinds: dict[str, list[np.ndarray]] = {
        "ct_hu_int16": [],
        "ct_pe_float32": [],
        "ct_pe_uint8": [],
        "ctpa_video": [],
    }
    for i in range(count):
        hu = ct_like(100 + i)
        meta = {
            "axes": "zyx",
            "spacing": list(SPACING),
            "origin": [0.0] * 3,
            "direction": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
        }
        img = sitk.GetImageFromArray(hu)
        img.SetSpacing(SPACING)
        kinds["ct_hu_int16"].append(hu)
        s = run(
            Sample("x", arrays={"volume": hu.astype(np.float32)}, meta=dict(meta)),
            "volume.resample",
            spacing=1.0,
            fill=-1024,
        )
        res = s.arrays["volume"]
        kinds["ct_pe_float32"].append(
            run(Sample("x", arrays={"volume": res.copy()}), "volume.window", preset="pe").arrays["volume"]
        )
        kinds["ct_pe_uint8"].append(
            run(Sample("x", arrays={"volume": res}), "volume.window", preset="pe", output="uint8").arrays[
                "volume"
            ]
        )
        kinds["ctpa_video"].append(
            run(Sample("x", arrays={"volume": hu}), "video.from_volume").arrays["video"]
        )
    return kinds


# ------------------------------------------------------------------------------------------- layouts


def _list_table(name: str, arrays: list[np.ndarray]) -> pa.Table:
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    offsets = np.zeros(len(flat) + 1, dtype=np.int32)
    np.cumsum([f.size for f in flat], out=offsets[1:])
    values = pa.ListArray.from_arrays(pa.array(offsets), pa.array(np.concatenate(flat)))
    shapes = pa.array([list(a.shape) for a in arrays], type=pa.list_(pa.int32()))
    ids = pa.array([f"item{i:03d}" for i in range(len(arrays))])
    return pa.table({"id": ids, name: values, f"{name}_shape": shapes})


def write_shard_writer(folder: Path, name: str, arrays: list[np.ndarray]) -> None:
    """Through climb's own shard writer (what a run writes)."""
    from climb_cli.index import Item
    from climb_cli.shards import ShardWriter, build_schema, to_row
    from climb_cli.steps.base import Sample

    items = [Item(f"item{i:03d}", "train", (), {}) for i in range(len(arrays))]
    samples = [Sample(it.id, arrays={name: a}) for it, a in zip(items, arrays, strict=True)]
    schema = build_schema(samples[0], items[0], [], False)
    writer = ShardWriter(schema, folder / "shard.parquet", 1, "zstd")
    for it, s in zip(items, samples, strict=True):
        writer.add(to_row(schema, it, s, [], [], "bench"))
    writer.commit()


def write_parquet_list(folder: Path, name: str, arrays: list[np.ndarray], bss: bool = False) -> None:
    with pq.ParquetWriter(
        str(folder / "shard.parquet"),
        _list_table(name, arrays[:1]).schema,
        compression="zstd",
        use_dictionary=["id"],
        column_encoding={f"{name}.list.element": "BYTE_STREAM_SPLIT"} if bss else None,
    ) as w:
        for i, a in enumerate(arrays):
            t = _list_table(name, [a])
            w.write_table(t.set_column(0, "id", pa.array([f"item{i:03d}"])), row_group_size=1)


def write_parquet_list_bss(folder: Path, name: str, arrays: list[np.ndarray]) -> None:
    write_parquet_list(folder, name, arrays, bss=True)


def write_parquet_blob(folder: Path, name: str, arrays: list[np.ndarray], shuffle: bool = False) -> None:
    schema = pa.schema(
        [
            ("id", pa.string()),
            (name, pa.binary()),
            (f"{name}_shape", pa.list_(pa.int32())),
            (f"{name}_dtype", pa.string()),
        ]
    )
    with pq.ParquetWriter(
        str(folder / "shard.parquet"), schema, compression="zstd", use_dictionary=["id"]
    ) as w:
        for i, a in enumerate(arrays):
            t = pa.table(
                {
                    "id": [f"item{i:03d}"],
                    name: pa.array(
                        [_shuffle(a) if shuffle else np.ascontiguousarray(a).tobytes()], pa.binary()
                    ),
                    f"{name}_shape": pa.array([list(a.shape)], pa.list_(pa.int32())),
                    f"{name}_dtype": [a.dtype.str],
                },
                schema=schema,
            )
            w.write_table(t, row_group_size=1)


def _shuffle(a: np.ndarray) -> bytes:
    """All first bytes of the elements, then all second bytes, ... (what BYTE_STREAM_SPLIT does)."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint8).reshape(-1, a.dtype.itemsize).T.tobytes()


def write_parquet_blob_shuf(folder: Path, name: str, arrays: list[np.ndarray]) -> None:
    write_parquet_blob(folder, name, arrays, shuffle=True)


def read_parquet_blob_shuf(folder: Path, name: str, which: int | None) -> list[np.ndarray]:
    out = []
    for a in read_parquet_blob(folder, name, which):
        raw = a.view(np.uint8)
        size = a.dtype.itemsize
        out.append(raw.reshape(size, -1).T.copy().view(a.dtype).reshape(a.shape))
    return out


def _write_npz(folder: Path, name: str, arrays: list[np.ndarray], save: Callable[..., None]) -> None:
    rows = []
    for i, a in enumerate(arrays):
        file = f"item{i:03d}.npz"
        with open(folder / file, "wb") as f:
            save(f, **{name: a})
        rows.append(
            {"id": f"item{i:03d}", "file": file, f"{name}_shape": list(a.shape), f"{name}_dtype": a.dtype.str}
        )
    pq.write_table(pa.Table.from_pylist(rows), str(folder / "index.parquet"), compression="zstd")


def write_npz(folder: Path, name: str, arrays: list[np.ndarray]) -> None:
    _write_npz(folder, name, arrays, np.savez)


def write_npz_zip(folder: Path, name: str, arrays: list[np.ndarray]) -> None:
    _write_npz(folder, name, arrays, np.savez_compressed)


def read_parquet_list(folder: Path, name: str, which: int | None) -> list[np.ndarray]:
    f = pq.ParquetFile(str(folder / "shard.parquet"))
    groups = range(f.num_row_groups) if which is None else [which]
    out = []
    for g in groups:
        t = f.read_row_group(g, columns=[name, f"{name}_shape"])
        col = t.column(name).combine_chunks()
        shape = t.column(f"{name}_shape")[0].as_py()
        out.append(col.values.to_numpy(zero_copy_only=False).reshape(shape))
    return out


def read_parquet_blob(folder: Path, name: str, which: int | None) -> list[np.ndarray]:
    f = pq.ParquetFile(str(folder / "shard.parquet"))
    groups = range(f.num_row_groups) if which is None else [which]
    out = []
    for g in groups:
        t = f.read_row_group(g, columns=[name, f"{name}_shape", f"{name}_dtype"])
        buf = t.column(name).chunk(0).buffers()[2]
        dtype = np.dtype(t.column(f"{name}_dtype")[0].as_py())
        out.append(np.frombuffer(buf, dtype=dtype).reshape(t.column(f"{name}_shape")[0].as_py()))
    return out


def read_npz(folder: Path, name: str, which: int | None) -> list[np.ndarray]:
    index = pq.read_table(str(folder / "index.parquet"), columns=["file"]).column("file").to_pylist()
    files = index if which is None else [index[which]]
    out = []
    for file in files:
        with np.load(folder / file) as z:
            out.append(z[name])
    return out


LAYOUTS: dict[str, tuple[Callable[..., None], Callable[..., list[np.ndarray]]]] = {
    "parquet_list": (write_parquet_list, read_parquet_list),
    "parquet_list_bss": (write_parquet_list_bss, read_parquet_list),
    "shard_writer": (write_shard_writer, read_parquet_list),
    "parquet_blob": (write_parquet_blob, read_parquet_blob),
    "parquet_blob_shuf": (write_parquet_blob_shuf, read_parquet_blob_shuf),
    "npz": (write_npz, read_npz),
    "npz_zip": (write_npz_zip, read_npz),
}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and ".tmp" not in p.parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 items per kind, 2 runs")
    parser.add_argument("--runs", type=int, default=None, help="timed runs (default 5; --quick 2)")
    parser.add_argument("--items", type=int, default=None, help="items per kind (default 4)")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    count = args.items or (2 if args.quick else 4)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    t0 = time.perf_counter()
    kinds = make_items(count)
    print(
        f"made {count} items per kind in {time.perf_counter() - t0:.1f} s; medians of {runs} runs, one thread"
    )
    findings: dict[tuple[str, str], dict[str, float]] = {}
    with common.bench_tmpdir("volstore") as tmp:
        for kind, arrays in kinds.items():
            raw = sum(a.nbytes for a in arrays)
            name = "video" if kind.endswith("video") else "volume"
            print()
            print(f"{kind}: {count} x {arrays[0].shape} {arrays[0].dtype}, {raw / 2**20:.1f} MiB raw")
            print(
                f"  {'layout':<17} {'MiB':>7} {'raw/x':>6} {'write s':>8} {'read all s':>10} "
                f"{'read one ms':>11} {'bytes vs base':>13} {'write vs':>8} {'read vs':>8}"
            )
            for layout, (write, read) in LAYOUTS.items():
                wt, rt, ot = [], [], []
                size = 0
                for r in range(runs):
                    folder = tmp / f"{kind}-{layout}-{r}"
                    folder.mkdir()
                    t = time.perf_counter()
                    write(folder, name, arrays)
                    wt.append(time.perf_counter() - t)
                    size = folder_bytes(folder)
                    t = time.perf_counter()
                    back = read(folder, name, None)
                    rt.append(time.perf_counter() - t)
                    t = time.perf_counter()
                    one = read(folder, name, count // 2)
                    ot.append(time.perf_counter() - t)
                    if r == 0:
                        assert all(np.array_equal(a, b) for a, b in zip(arrays, back, strict=True)), layout
                        assert np.array_equal(one[0], arrays[count // 2]), layout
                    shutil.rmtree(folder)
                m = {
                    "bytes": size,
                    "write": statistics.median(wt),
                    "read": statistics.median(rt),
                    "one": statistics.median(ot),
                }
                findings[(kind, layout)] = m
                b = findings[(kind, "parquet_list")]
                print(
                    f"  {layout:<17} {size / 2**20:>7.1f} {raw / size:>6.2f} {m['write']:>8.3f} "
                    f"{m['read']:>10.3f} {m['one'] * 1000:>11.1f} {size / b['bytes']:>13.3f} "
                    f"{m['write'] / b['write']:>8.2f} {m['read'] / b['read']:>8.2f}"
                )
        enc = _encoding_check()
        print()
        print(enc)


def _encoding_check() -> str:
    """Which encoding the leaf of an array column gets when written through climb's ShardWriter."""
    with common.bench_tmpdir("volstore-encoding") as d:
        write_shard_writer(d, "volume", [np.zeros((2, 3, 4), np.float32)])
        col = pq.ParquetFile(str(d / "shard.parquet")).metadata.row_group(0)
        for i in range(col.num_columns):
            c = col.column(i)
            if c.path_in_schema == "volume.list.element":
                return f"climb's ShardWriter wrote volume.list.element (float32) with encodings {c.encodings}"
    return "column not found"


if __name__ == "__main__":
    main()
