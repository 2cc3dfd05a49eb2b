"""How should 2D images be stored in the Parquet shards? Bytes and write/read time of each layout.

Run: python bench/image_storage.py [--quick] [--runs N]

Real images from pydicom-data (CR 1955x1841 and 1760x1760 u16 MONOCHROME1, MR 1024x1024 u16, CT 512x512
int16, US 480x640 RGB u8) plus three typical pipeline outputs made from them (CT -> PE window -> 256x256
float32 and uint8, CR -> VOI -> long side 512 uint8). Each image is written as a one-row Parquet file in
each layout, exactly as pyarrow would write a shard column:

  list_plain   list<T> column, PLAIN encoding, zstd: what shards.py writes today for integer arrays, and
               (see below) also for float arrays
  list_bss     list<T> column with BYTE_STREAM_SPLIT on the leaf `<name>.list.element`, zstd
  list_delta   list<T> column with DELTA_BINARY_PACKED on the leaf (integers only), zstd
  blob_shuf    binary column holding the raw pixel bytes byte-shuffled (all first bytes, then all second
               bytes, ...), zstd: the environment notes' recommendation
  png          binary column holding cv2.imencode(".png") bytes (level 1, OpenCV's default), no Parquet
               compression; int16 is stored offset by +32768 (PNG has no signed type); float has no PNG

Times are medians of --runs (default 5) on one core (pyarrow and OpenCV pinned to 1 thread); read time
includes rebuilding the numpy array. Finding printed at the end: shards.py's `column_encoding` keyed by
the top-level name is silently ignored by pyarrow for list columns (the leaf path is required).
"""

from __future__ import annotations

import io
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

warnings.simplefilter("ignore")  # pydicom's "download failure" warnings for files pydicom-data lacks


# ------------------------------------------------------------------------------------ images


def _dicom(name: str) -> np.ndarray | None:
    from pydicom import dcmread
    from pydicom.data import get_testdata_file

    path = get_testdata_file(name)
    if path is None:
        return None
    arr = dcmread(path).pixel_array
    return np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder("=")))


def load_images(quick: bool) -> dict[str, np.ndarray]:
    """name -> image; raw files first, then pipeline outputs derived from them."""
    out: dict[str, np.ndarray] = {}
    names = [
        ("CR RG1 1955x1841 u16", "RG1_UNCI.dcm"),
        ("CR RG3 1760x1760 u16", "RG3_UNCI.dcm"),
        ("MR2 1024x1024 u16", "MR2_UNCI.dcm"),
        ("CT 693 512x512 i16", "693_UNCI.dcm"),
        ("US1 480x640x3 u8", "US1_UNCR.dcm"),
    ]
    if quick:
        names = [names[0], names[2], names[3]]
    for label, fname in names:
        arr = _dicom(fname)
        if arr is None:
            print(f"  (skipped {fname}: pydicom-data not installed)")
            continue
        out[label] = arr
    raw = dict(out)
    for label, img in raw.items():
        out[f"{label.split()[0]} {label.split()[1]} -> 224 u8"] = to_output(img, 224)
    ct = raw.get("CT 693 512x512 i16")
    if ct is not None:
        hu = ct.astype(np.float32)  # 693_UNCI has slope 1, intercept 0: stored values are HU
        win = np.clip((hu - (400 - 500)) / 1000, 0, 1).astype(np.float32)
        out["CT PE-window -> 256 f32"] = cv2.resize(win, (256, 256), interpolation=cv2.INTER_AREA)
    return out


#: distinct real images (file, frame) for the shard test: CR, MR, CT, NM, US (gray and RGB), multi-frame.
SHARD_SOURCES = [
    ("RG1_UNCI.dcm", None),
    ("RG3_UNCI.dcm", None),
    ("MR2_UNCI.dcm", None),
    ("693_UNCI.dcm", None),
    ("US1_UNCR.dcm", None),
    ("CT_small.dcm", None),
    ("MR_small.dcm", None),
    ("JPEG-LL.dcm", None),
    ("JPGLosslessP14SV1_1s_1f_8b.dcm", None),
    ("MR-SIEMENS-DICOM-WithOverlays.dcm", None),
    ("examples_overlay.dcm", None),
    ("bad_sequence.dcm", None),
    ("explicit_VR-UN.dcm", None),
    ("examples_rgb_color.dcm", None),
    ("color-pl.dcm", None),
    ("eCT_Supplemental.dcm", 0),
    ("eCT_Supplemental.dcm", 1),
    ("emri_small.dcm", 0),
    ("emri_small.dcm", 5),
    ("color3d_jpeg_baseline.dcm", 0),
    ("color3d_jpeg_baseline.dcm", 60),
    ("examples_ybr_color.dcm", 0),
    ("examples_ybr_color.dcm", 15),
]


def shard_images(quick: bool) -> list[np.ndarray]:
    """224 uint8 outputs of SHARD_SOURCES (those installed)."""
    out = []
    for name, frame in SHARD_SOURCES[: 8 if quick else None]:
        arr = _dicom(name)
        if arr is None:
            continue
        out.append(to_output(arr if frame is None else arr[frame], 224))
    return out


def to_output(img: np.ndarray, size: int) -> np.ndarray:
    """A typical training output: min-max to [0,1] (MONOCHROME1 CRs inverted), long side `size`, uint8."""
    x = img.astype(np.float32)
    lo, hi = float(x.min()), float(x.max())
    y = (x - lo) / max(hi - lo, 1e-6)
    if img.dtype == np.uint16 and img.ndim == 2 and img.shape[0] in (1955, 1760):  # the CRs: MONOCHROME1
        y = 1 - y
    h, w = img.shape[:2]
    dsize = (max(1, round(w * size / max(h, w))), max(1, round(h * size / max(h, w))))
    return np.rint(cv2.resize(y, dsize, interpolation=cv2.INTER_AREA) * 255).astype(np.uint8)


# ------------------------------------------------------------------------------------ layouts


def shuffle_bytes(a: np.ndarray) -> bytes:
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return b.T.tobytes()


def unshuffle_bytes(data: bytes, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    b = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1)
    return np.ascontiguousarray(b.T).view(dtype).reshape(shape)


@dataclass
class Layout:
    name: str
    write: Callable[[np.ndarray], bytes]
    read: Callable[[bytes, np.ndarray], np.ndarray]  # (file bytes, original for dtype/shape) -> array
    applies: Callable[[np.ndarray], bool]


def _list_table(a: np.ndarray) -> pa.Table:
    flat = np.ascontiguousarray(a).reshape(-1)
    col = pa.ListArray.from_arrays(pa.array([0, flat.size], pa.int32()), pa.array(flat))
    return pa.table({"image": col, "image_shape": pa.array([list(a.shape)], pa.list_(pa.int32()))})


def _write_list(encoding: str | None) -> Callable[[np.ndarray], bytes]:
    def write(a: np.ndarray) -> bytes:
        buf = io.BytesIO()
        pq.write_table(
            _list_table(a),
            buf,
            compression="zstd",
            use_dictionary=False,
            write_statistics=False,
            column_encoding={"image.list.element": encoding} if encoding else None,
        )
        return buf.getvalue()

    return write


def _read_list(data: bytes, like: np.ndarray) -> np.ndarray:
    t = pq.read_table(io.BytesIO(data))
    values = t.column("image").combine_chunks().values.to_numpy(zero_copy_only=False)
    shape = t.column("image_shape")[0].as_py()
    return values.reshape(shape)


def _write_blob(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    t = pa.table({"image": pa.array([shuffle_bytes(a)], pa.binary())})
    pq.write_table(t, buf, compression="zstd", use_dictionary=False, write_statistics=False)
    return buf.getvalue()


def _read_blob(data: bytes, like: np.ndarray) -> np.ndarray:
    blob = pq.read_table(io.BytesIO(data)).column("image")[0].as_py()
    return unshuffle_bytes(blob, like.dtype, like.shape)


def _png_ready(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.int16:
        return (a.astype(np.int32) + 32768).astype(np.uint16)
    if a.ndim == 3:
        return cv2.cvtColor(a, cv2.COLOR_RGB2BGR)
    return a


def _write_png(a: np.ndarray) -> bytes:
    ok, png = cv2.imencode(".png", _png_ready(a))
    if not ok:
        raise RuntimeError("PNG encode failed")
    buf = io.BytesIO()
    t = pa.table({"image": pa.array([png.tobytes()], pa.binary())})
    pq.write_table(t, buf, compression="none", use_dictionary=False, write_statistics=False)
    return buf.getvalue()


def _read_png(data: bytes, like: np.ndarray) -> np.ndarray:
    blob = pq.read_table(io.BytesIO(data)).column("image")[0].as_py()
    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
    if like.dtype == np.int16:
        return (img.astype(np.int32) - 32768).astype(np.int16)
    if img.ndim == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _is_int(a: np.ndarray) -> bool:
    return a.dtype.kind in "iu"


LAYOUTS = [
    Layout("list_plain", _write_list(None), _read_list, lambda a: True),
    Layout("list_bss", _write_list("BYTE_STREAM_SPLIT"), _read_list, lambda a: True),
    Layout("list_delta", _write_list("DELTA_BINARY_PACKED"), _read_list, _is_int),
    Layout("blob_shuf", _write_blob, _read_blob, lambda a: True),
    Layout("png", _write_png, _read_png, lambda a: a.dtype in (np.uint8, np.uint16, np.int16)),
]


def shard_rows(images: list[np.ndarray], layout: str) -> pa.Table:
    """A multi-row table of `images` in one layout (list columns, or one binary blob per row)."""
    shapes = pa.array([list(a.shape) for a in images], pa.list_(pa.int32()))
    if layout.startswith("list"):
        flat = np.concatenate([a.reshape(-1) for a in images])
        offsets = np.zeros(len(images) + 1, np.int32)
        np.cumsum([a.size for a in images], out=offsets[1:])
        col = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
    elif layout == "blob_shuf":
        col = pa.array([shuffle_bytes(a) for a in images], pa.binary())
    else:
        col = pa.array([cv2.imencode(".png", _png_ready(a))[1].tobytes() for a in images], pa.binary())
    return pa.table({"image": col, "image_shape": shapes})


def shard_bench(images: list[np.ndarray], runs: int) -> list[list[str]]:
    """Write a shard of all `images` per layout and read every image back; bytes and ms per image."""
    rows = []
    raw = sum(a.nbytes for a in images)
    encodings = {"list_plain": None, "list_bss": "BYTE_STREAM_SPLIT", "list_delta": "DELTA_BINARY_PACKED"}
    for layout in ("list_plain", "list_bss", "list_delta", "blob_shuf", "png"):
        enc = encodings.get(layout)

        def write(layout: str = layout, enc: str | None = enc) -> bytes:
            buf = io.BytesIO()
            pq.write_table(
                shard_rows(images, layout),
                buf,
                compression="none" if layout == "png" else "zstd",
                use_dictionary=False,
                write_statistics=False,
                column_encoding={"image.list.element": enc} if enc else None,
            )
            return buf.getvalue()

        data = write()

        def read(layout: str = layout, data: bytes = data) -> list[np.ndarray]:
            t = pq.read_table(io.BytesIO(data))
            shapes = t.column("image_shape").to_pylist()
            col = t.column("image").combine_chunks()
            if layout.startswith("list"):
                values = col.values.to_numpy(zero_copy_only=False)
                offsets = col.offsets.to_numpy()
                return [values[offsets[i] : offsets[i + 1]].reshape(s) for i, s in enumerate(shapes)]
            out = []
            for i, s in enumerate(shapes):
                blob = col[i].as_py()
                if layout == "blob_shuf":
                    out.append(unshuffle_bytes(blob, np.dtype(np.uint8), tuple(s)))
                else:
                    img = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
                    out.append(cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if img.ndim == 3 else img)
            return out

        back = read()
        if not all(np.array_equal(a, b) for a, b in zip(images, back, strict=True)):
            raise SystemExit(f"shard layout {layout} did not round-trip")
        n = len(images)
        w = median_ms(write, runs) / n
        r = median_ms(read, runs) / n
        rows.append([layout, f"{len(data):,}", f"{raw / len(data):.2f}x", f"{w:.2f}", f"{r:.3f}"])
    return rows


def median_ms(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


def shards_encoding_check() -> str:
    """Does `column_encoding={"<name>": "BYTE_STREAM_SPLIT"}` (as shards.py writes it) reach a list column?"""
    a = np.linspace(0, 1, 1000, dtype=np.float32)
    t = _list_table(a)
    out = []
    for key in ("image", "image.list.element"):
        buf = io.BytesIO()
        pq.write_table(
            t, buf, compression="zstd", use_dictionary=False, column_encoding={key: "BYTE_STREAM_SPLIT"}
        )
        enc = pq.ParquetFile(io.BytesIO(buf.getvalue())).metadata.row_group(0).column(0).encodings
        out.append(f"column_encoding key {key!r} -> leaf encodings {enc}")
    return "\n".join(out)


def main() -> None:
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args()
    runs = common.runs_from(args)
    pa.set_cpu_count(1)
    pa.set_io_thread_count(1)
    cv2.setNumThreads(1)
    print(common.machine_line())
    print(f"pyarrow {pa.__version__}, OpenCV {cv2.__version__}, {runs} runs per cell, medians")
    images = load_images(args.quick)
    if not images:
        raise SystemExit("no test images: pip install pydicom-data")
    rows = []
    groups = {"full-resolution stored pixels": {}, "pipeline outputs, long side 224, uint8": {}}
    for label, img in images.items():
        group = groups[
            "pipeline outputs, long side 224, uint8" if "-> 224" in label else "full-resolution stored pixels"
        ]
        for lay in LAYOUTS:
            if not lay.applies(img):
                rows.append([label, lay.name, "-", "-", "-", "-"])
                continue
            data = lay.write(img)
            back = lay.read(data, img)
            if back.shape != img.shape or not np.array_equal(back, img):
                raise SystemExit(f"{lay.name} did not round-trip {label}")
            w = median_ms(lambda lay=lay, img=img: lay.write(img), runs)
            r = median_ms(lambda lay=lay, data=data, img=img: lay.read(data, img), runs)
            rows.append(
                [label, lay.name, f"{len(data):,}", f"{img.nbytes / len(data):.2f}x", f"{w:.1f}", f"{r:.1f}"]
            )
            if "->" in label and "224" not in label:
                continue  # the float output is not in a group total (PNG cannot hold it)
            t = group.setdefault(lay.name, [0.0, 0.0, 0.0, 0.0])  # bytes, raw bytes, write ms, read ms
            for i, v in enumerate((len(data), img.nbytes, w, r)):
                t[i] += v
    common.print_table(
        "Bytes (raw/stored ratio) and time per image, ms",
        ["image", "layout", "file bytes", "ratio", "write ms", "read ms"],
        rows,
    )
    for title, totals in groups.items():
        complete = {k: v for k, v in totals.items() if k != "list_delta" or len(totals) == len(LAYOUTS)}
        common.print_table(
            f"Totals: {title}",
            ["layout", "bytes", "ratio", "write ms", "read ms", "write MB/s"],
            [
                [
                    k,
                    f"{int(v[0]):,}",
                    f"{v[1] / v[0]:.2f}x",
                    f"{v[2]:.1f}",
                    f"{v[3]:.1f}",
                    f"{v[1] / 1e3 / v[2]:.0f}",
                ]
                for k, v in complete.items()
            ],
        )
    shard = shard_images(args.quick)
    common.print_table(
        f"One {len(shard)}-row shard of distinct real images (CR/MR/CT/NM/US), 224 uint8, per image",
        ["layout", "shard bytes", "ratio", "write ms", "read ms"],
        shard_bench(shard, runs),
    )
    print("\nshards.py check (float list column, BYTE_STREAM_SPLIT requested):")
    print(shards_encoding_check())


if __name__ == "__main__":
    main()
