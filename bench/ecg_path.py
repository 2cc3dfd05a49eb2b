"""ECG path: climb's PTB-XL recipe steps per record (read_wfdb -> select_leads -> resample ->
nan_to_num -> crop_or_pad -> cast, called as the pipeline calls them) against a bare loop of
`wfdb.rdrecord` + transpose + float32 (the named baseline: what most ECG code does).

Run: python bench/ecg_path.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer records and runs")
    args = ap.parse_args(argv)
    records, runs = (40, 3) if args.quick else (200, 5)

    import wfdb

    from climb_cli.catalog import Catalog
    from climb_cli.demo import build_ptbxl_like
    from climb_cli.index import build_index
    from climb_cli.pipeline import _steps, process_item
    from climb_cli.settings import Settings

    with tempfile.TemporaryDirectory(dir="/var/tmp") as d:
        settings = Settings(data_dir=Path(d))
        build_ptbxl_like(settings.raw_dir("ptbxl_superdiagnostic"), records=records, seed=3)
        recipe = Catalog().load("ptbxl_superdiagnostic")
        items = build_index(recipe, settings).items
        steps, raw = _steps(recipe), settings.raw_dir("ptbxl_superdiagnostic")

        def climb() -> None:
            for it in items:
                process_item(it, raw, steps)

        def bare() -> None:
            for it in items:
                rec = wfdb.rdrecord(str(raw / it.inputs["record"]))
                np.ascontiguousarray(rec.p_signal.T, dtype=np.float32)

        climb(), bare()  # warm-up (imports, page cache)
        first = process_item(items[0], raw, steps).arrays["signal"]
        ref = wfdb.rdrecord(str(raw / items[0].inputs["record"])).p_signal.T.astype(np.float32)
        assert np.array_equal(first, ref), "climb and the bare loop disagree"
        tc, tb = [], []
        for _ in range(runs):
            for fn, out in ((climb, tc), (bare, tb)):
                t0 = time.perf_counter()
                fn()
                out.append((time.perf_counter() - t0) / len(items))
    c, b = statistics.median(tc), statistics.median(tb)
    print(f"ECG path, {records} PTB-XL-shaped records (12 x 5000, format 16), median of {runs} runs")
    print(f"  climb (recipe steps via process_item): {c * 1e3:7.2f} ms/record")
    print(f"  bare wfdb.rdrecord loop (baseline):    {b * 1e3:7.2f} ms/record")
    print(f"  ratio climb/bare: {c / b:.3f}  (below 1: climb is faster)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
