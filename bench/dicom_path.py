"""Per-item time of climb's DICOM -> window -> resize path against a bare pydicom + numpy + OpenCV loop.

Run: python bench/dicom_path.py [--quick] [--runs N]

climb:  the registered steps called exactly as the pipeline calls them (climb_cli.pipeline.process_item
        with validated parameters): dicom.read -> dicom.modality_lut -> dicom.window (CT: preset pe,
        400/1000) or dicom.voi_lut (MR/CR: the file's first window, linear_exact) -> image.resize
        (long side 256; INTER_AREA down, INTER_LINEAR up) -> image.to_dtype uint8.
bare:   the same work written by hand: dcmread, pixel_array, x*slope+intercept in float32, clip to the
        window, 1-y for MONOCHROME1, cv2.resize (same interpolation), rint(*255) to uint8.

Both run in this process on one core (OpenCV pinned to 1 thread), interleaved run by run, on real files
from pydicom and pydicom-data (page cache warm). Each run processes every file `repeat` times; the
figure is the median over runs of the time per item. The outputs are compared (at most 1 grey level
apart) so the two loops are known to do the same work.
"""

from __future__ import annotations

import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

warnings.simplefilter("ignore")  # pydicom's "download failure" warnings for files pydicom-data lacks

import pydicom  # noqa: E402
from pydicom.data import get_testdata_file  # noqa: E402

from climb_cli.index import Item  # noqa: E402
from climb_cli.pipeline import process_item  # noqa: E402
from climb_cli.steps.base import registry  # noqa: E402

SIZE = 256

#: (label, file, window): window "pe" = CT preset 400/1000; "file" = the file's first window.
FILES = [
    ("CT 128x128 int16 (CT_small)", "CT_small.dcm", "pe", 40),
    ("CT 512x512 int16 (693_UNCI)", "693_UNCI.dcm", "pe", 20),
    ("CT 512x512 J2K lossless (693_J2KR)", "693_J2KR.dcm", "pe", 3),
    ("MR 1024x1024 u16 (MR2_UNCI)", "MR2_UNCI.dcm", "file", 6),
    ("CR 1955x1841 MONOCHROME1 (RG1_UNCI)", "RG1_UNCI.dcm", "file", 3),
    ("MR 64x64 JPEG-LS lossless", "MR_small_jpeg_ls_lossless.dcm", "file", 40),
]
QUICK = {"CT_small.dcm", "693_UNCI.dcm", "RG1_UNCI.dcm"}


def climb_steps(window: str) -> list[tuple[object, object]]:
    known = registry()
    spec: list[tuple[str, dict]] = [("dicom.read", {}), ("dicom.modality_lut", {})]
    if window == "pe":
        spec.append(("dicom.window", {"preset": "pe"}))
    else:
        spec.append(("dicom.voi_lut", {"source": "window", "function": "linear_exact"}))
    spec += [("image.resize", {"long_side": SIZE}), ("image.to_dtype", {"dtype": "uint8"})]
    return [(known[name], known[name].params.model_validate(params)) for name, params in spec]


def climb_item(path: Path, steps: list) -> np.ndarray:
    item = Item(id=path.stem, split="train", labels=(), inputs={"image": str(path)})
    return process_item(item, Path("/"), steps).arrays["image"]


def bare_item(path: Path, window: str) -> np.ndarray:
    ds = pydicom.dcmread(path)
    x = ds.pixel_array.astype(np.float32)
    slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
    if slope != 1 or intercept != 0:
        x = x * np.float32(slope) + np.float32(intercept)
    if window == "pe":
        center, width = 400.0, 1000.0
    else:
        wc, ww = ds.WindowCenter, ds.WindowWidth
        center = float(wc[0] if isinstance(wc, pydicom.multival.MultiValue) else wc)
        width = float(ww[0] if isinstance(ww, pydicom.multival.MultiValue) else ww)
    y = np.clip((x - np.float32(center - width / 2)) * np.float32(1 / width), 0, 1)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        y = 1 - y
    h, w = y.shape
    new = (SIZE, max(1, round(w * SIZE / h))) if h >= w else (max(1, round(h * SIZE / w)), SIZE)
    flag = cv2.INTER_AREA if new[0] <= h and new[1] <= w else cv2.INTER_LINEAR  # climb's "auto"
    y = cv2.resize(y, (new[1], new[0]), interpolation=flag)
    return np.clip(np.rint(y * 255), 0, 255).astype(np.uint8)


def per_item(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(wall, CPU) seconds per call; CPU time (this thread) is what other processes cannot inflate."""
    w0, c0 = time.perf_counter(), time.thread_time()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - w0) / repeat, (time.thread_time() - c0) / repeat


def main() -> None:
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args()
    runs = common.runs_from(args)
    cv2.setNumThreads(1)
    print(common.machine_line())
    print(
        f"pydicom {pydicom.__version__}, OpenCV {cv2.__version__}, numpy {np.__version__}; "
        f"{runs} runs, medians of the time per item"
    )
    rows = []
    totals = {"climb wall": 0.0, "bare wall": 0.0, "climb cpu": 0.0, "bare cpu": 0.0}
    for label, name, window, repeat in FILES:
        if args.quick and name not in QUICK:
            continue
        found = get_testdata_file(name)
        if found is None:
            print(f"  (skipped {name}: not installed; pip install pydicom-data)")
            continue
        path = Path(found)
        steps = climb_steps(window)
        a, b = climb_item(path, steps), bare_item(path, window)  # warm-up and equivalence check
        if a.shape != b.shape or int(np.max(np.abs(a.astype(int) - b.astype(int)))) > 1:
            raise SystemExit(f"{name}: climb and bare outputs differ (shapes {a.shape} vs {b.shape})")
        climb_t: list[tuple[float, float]] = []
        bare_t: list[tuple[float, float]] = []
        for r in range(runs):
            jobs = [
                (climb_t, lambda path=path, steps=steps: climb_item(path, steps)),
                (bare_t, lambda path=path, window=window: bare_item(path, window)),
            ]
            for out, fn in common.rotate(jobs, r):
                out.append(per_item(fn, repeat))
        cw, bw = (statistics.median(t[0] for t in ts) for ts in (climb_t, bare_t))
        cc, bc = (statistics.median(t[1] for t in ts) for ts in (climb_t, bare_t))
        for key, v in (("climb wall", cw), ("bare wall", bw), ("climb cpu", cc), ("bare cpu", bc)):
            totals[key] += v
        rows.append(_row(label, cw, bw, cc, bc))
    if not rows:
        raise SystemExit("no DICOM files found")
    rows.append(_row("all files, one item each", *totals.values()))
    common.print_table(
        f"DICOM -> window -> resize (long side {SIZE}) -> uint8: ms per item, median of {runs} runs "
        "(wall clock, and CPU time of this thread)",
        ["file", "climb wall", "bare wall", "ratio", "climb CPU", "bare CPU", "CPU ratio", "CPU diff"],
        rows,
    )


def _row(label: str, cw: float, bw: float, cc: float, bc: float) -> list[str]:
    return [
        label,
        f"{cw * 1000:.2f}",
        f"{bw * 1000:.2f}",
        common.fmt_ratio(cw / bw),
        f"{cc * 1000:.2f}",
        f"{bc * 1000:.2f}",
        common.fmt_ratio(cc / bc),
        f"{(cc - bc) * 1000:+.2f}",
    ]


if __name__ == "__main__":
    main()
