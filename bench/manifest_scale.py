"""How the raw manifest behaves at a million entries: bulk insert, full load (the skip check a
rerun does once), and single-row lookups; against a baseline of the same rows in a JSON file
(what a naive manifest would do). Run: python bench/manifest_scale.py [--quick] [--rows N]."""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

from climb_cli.manifest import Entry, RawManifest  # noqa: E402


def _rows(n: int) -> list[Entry]:
    return [
        Entry(
            f"files/p{i % 100:02d}/p{i:08d}/s{i * 7:08d}/{i:012x}.jpg",
            100_000 + i,
            1_700_000_000_000_000_000 + i,
            f"{i:064x}",
            "data",
            f"https://physionet.org/files/x/1.0/{i}",
            f'"{i:x}-1"',
            1.0,
            1.0,
        )
        for i in range(n)
    ]


def _median(fn, runs: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 rows")
    args = ap.parse_args()
    n = 100_000 if args.quick else args.rows
    rows = _rows(n)
    with common.bench_tmpdir("manifest") as d:
        path = d / "manifest.sqlite"
        t0 = time.perf_counter()
        with RawManifest(path) as m:
            m.put_many(rows)
        insert = time.perf_counter() - t0
        m = RawManifest(path)
        load = _median(lambda: m.load_index())
        keys = [r.path for r in random.Random(0).sample(rows, 10_000)]
        lookup = _median(lambda: [m.get(k) for k in keys]) / len(keys)
        m.close()
        jpath = d / "manifest.json"
        jpath.write_text(json.dumps({r.path: r.__dict__ for r in rows}))
        jload = _median(lambda: json.loads(jpath.read_text()))
        jsave = _median(lambda: jpath.write_text(json.dumps({r.path: r.__dict__ for r in rows})), runs=1)
        size = path.stat().st_size
    print(f"rows: {n:,}  sqlite file: {size / 1e6:.0f} MB")
    print(f"bulk insert:            {insert:7.2f} s  ({n / insert:,.0f} rows/s)")
    print(
        f"load all (skip check):  {load:7.2f} s   baseline json.load {jload:.2f} s  ratio {jload / load:.2f}x"
    )
    print(f"one lookup:             {lookup * 1e6:7.1f} us")
    print(f"commit one new row:     sqlite: one transaction; json baseline rewrites the file: {jsave:.2f} s")


if __name__ == "__main__":
    main()
