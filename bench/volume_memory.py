"""Does peak memory stay flat as the number of volumes grows? Peak RSS of the real pipeline per item count.

Run: python bench/volume_memory.py [--quick] [--runs N] [--counts 10 40 80]

Generates a few CT-like 256x256x160 int16 NIfTI volumes (0.8 x 0.8 x 1.25 mm: body, lungs, spine, noise),
then for each item count N starts a FRESH Python process that preprocesses N items exactly as
`climb preprocess` does with one worker: the items are cut into shards the way plan_units sizes them
(shard_size // row bytes), and every shard goes through pipeline.run_unit (process_item -> to_row ->
ShardWriter -> commit). Steps: volume.read -> volume.resample (1 mm isotropic, fill -1024) ->
volume.window (pe 400/1000, float32): about 34 MB of float32 per output row.

Memory is measured two ways in each child: resource.getrusage(RUSAGE_SELF).ru_maxrss (the kernel's peak)
and psutil RSS sampled every 5 ms in a thread. The baseline is the child's RSS after imports and set-up,
before the first item. Printed: medians over --runs of peak RSS per N, the growth over the baseline, the
per-item time, and the ratio of the largest N's peak to the smallest N's (the named baseline): a ratio
near 1.0 means memory does not grow with the number of items.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

SHAPE = (160, 256, 256)  # z, y, x
SPACING = (0.8, 0.8, 1.25)  # x, y, z mm
STEPS = [
    {"name": "volume.read", "params": {}},
    {"name": "volume.resample", "params": {"spacing": 1.0, "fill": -1024}},
    {"name": "volume.window", "params": {"preset": "pe"}},
]


def ct_like(seed: int, shape: tuple[int, int, int] = SHAPE) -> np.ndarray:
    """A CT-like int16 HU volume: air outside a body ellipse, soft tissue, two lungs, a spine, scanner noise,
    -1024 outside the reconstruction circle. Shapes drift along z so slices differ."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    y, x = np.mgrid[0:ny, 0:nx].astype(np.float32)
    cy, cx = ny / 2, nx / 2
    out = np.empty(shape, np.int16)
    fov = (x - cx) ** 2 + (y - cy) ** 2 > (0.49 * nx) ** 2
    for k in range(nz):
        t = k / max(1, nz - 1)
        a, b = (0.40 + 0.03 * np.sin(3 * t + seed)) * nx, (0.28 + 0.02 * np.cos(2 * t)) * ny
        body = ((x - cx) / a) ** 2 + ((y - cy) / b) ** 2 < 1
        lung_r = 0.12 * nx * (0.6 + 0.4 * np.sin(np.pi * t))
        lungs = (((x - cx + 0.17 * nx) / lung_r) ** 2 + ((y - cy + 0.02 * ny) / (1.3 * lung_r)) ** 2 < 1) | (
            ((x - cx - 0.17 * nx) / lung_r) ** 2 + ((y - cy + 0.02 * ny) / (1.3 * lung_r)) ** 2 < 1
        )
        spine = (x - cx) ** 2 + (y - cy - 0.2 * ny) ** 2 < (0.04 * nx) ** 2
        hu = np.full((ny, nx), -1000.0, np.float32) + rng.normal(0, 8, (ny, nx))
        hu[body] = 40 + rng.normal(0, 14, int(body.sum()))
        hu[lungs & body] = -850 + rng.normal(0, 30, int((lungs & body).sum()))
        hu[spine] = 700 + rng.normal(0, 90, int(spine.sum()))
        hu[fov] = -1024
        out[k] = np.rint(hu).astype(np.int16)
    return out


def write_volumes(folder: Path, count: int) -> list[str]:
    import SimpleITK as sitk

    names = []
    for i in range(count):
        img = sitk.GetImageFromArray(ct_like(i))
        img.SetSpacing(SPACING)
        name = f"vol{i:02d}.nii"
        sitk.WriteImage(img, str(folder / name))
        names.append(name)
    return names


# -------------------------------------------------------------------------------------------- child


def child(n: int, raw: Path, out: Path, names: list[str]) -> dict[str, float]:
    """Preprocess n items with the pipeline's own functions; report memory and time."""
    import psutil

    from climb_cli.index import Item
    from climb_cli.pipeline import UnitSpec, _steps, process_item, run_unit
    from climb_cli.recipe import Recipe
    from climb_cli.shards import build_schema

    recipe = Recipe.model_validate(
        {
            "name": "bench-volumes",
            "title": "volume memory benchmark",
            "modality": "ct",
            "license": "none",
            "access": "open",
            "sources": [{"id": "data", "kind": "local"}],
            "steps": STEPS,
        }
    )
    items = [Item(f"v{i:04d}", "train", (), {"volume": names[i % len(names)]}) for i in range(n)]
    # the coordinator's probe: one item tells the schema and the row size (pipeline.preprocess)
    steps = _steps(recipe)
    probe = process_item(items[0], raw, steps)
    schema = build_schema(probe, items[0], [], False)
    row_bytes = sum(a.nbytes for a in probe.arrays.values()) + 256
    del probe
    per_shard = max(1, int(recipe.output.shard_size) // row_bytes)
    per_group = max(1, min(per_shard, int(recipe.output.row_group_size) // row_bytes))
    units = [
        UnitSpec(
            name=f"train-{k:05d}.parquet",
            split="train",
            items=items[s : s + per_shard],
            recipe=recipe,
            raw_root=str(raw),
            out_dir=str(out),
            schema=schema,
            digest=f"bench-{k}",
            row_group_rows=per_group,
        )
        for k, s in enumerate(range(0, n, per_shard))
    ]

    proc = psutil.Process()
    baseline = proc.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            stop.wait(0.005)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    rows = 0
    for unit in units:
        result = run_unit(unit)
        if result.errors:
            raise SystemExit(f"item errors: {result.errors[:2]}")
        rows += result.rows
        for shard in out.rglob(unit.name):  # keep the disk small; the shard was written and committed
            shard.unlink()
    seconds = time.perf_counter() - t0
    stop.set()
    thread.join()
    assert rows == n, (rows, n)
    return {
        "n": n,
        "baseline_mib": baseline / 2**20,
        "sampled_peak_mib": peak[0] / 2**20,
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "seconds_per_item": seconds / n,
        "row_mib": row_bytes / 2**20,
        "shards": len(units),
    }


# ------------------------------------------------------------------------------------------- parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="counts 5 10 20, one run")
    parser.add_argument("--runs", type=int, default=None, help="fresh processes per count (default 3)")
    parser.add_argument("--counts", type=int, nargs="+", default=None, help="item counts (default 10 40 80)")
    parser.add_argument("--distinct", type=int, default=4, help="distinct volume files the items cycle over")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--raw", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--names", type=str, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.child, args.raw, args.out, args.names.split(","))))
        return

    counts = args.counts or ([5, 10, 20] if args.quick else [10, 40, 80])
    runs = args.runs or (1 if args.quick else 3)
    with common.bench_tmpdir("volmem") as tmp:
        raw = tmp / "raw"
        raw.mkdir()
        t0 = time.perf_counter()
        names = write_volumes(raw, args.distinct)
        chain = " -> ".join(s["name"] for s in STEPS)
        print(
            f"generated {len(names)} CT-like volumes {SHAPE[::-1]} int16 in "
            f"{time.perf_counter() - t0:.1f} s; steps: {chain}; {runs} fresh process(es) per count"
        )
        results: dict[int, list[dict[str, float]]] = {}
        for r in range(runs):
            for n in counts:  # interleaved, so machine noise hits every count alike
                out = tmp / f"out-{n}-{r}"
                out.mkdir()
                cmd = [
                    sys.executable,
                    __file__,
                    "--child",
                    str(n),
                    "--raw",
                    str(raw),
                    "--out",
                    str(out),
                    "--names",
                    ",".join(names),
                ]
                done = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"child for N={n} failed:\n{done.stderr[-2000:]}")
                results.setdefault(n, []).append(json.loads(done.stdout.strip().splitlines()[-1]))
                shutil.rmtree(out)
        print()
        print(
            f"{'items':>6} {'shards':>6} {'baseline MiB':>13} {'peak RSS MiB':>13} {'sampled MiB':>12} "
            f"{'growth MiB':>11} {'s/item':>7}"
        )
        med: dict[int, float] = {}
        for n in counts:
            rs = results[n]
            m = {k: statistics.median(r[k] for r in rs) for k in rs[0]}
            med[n] = m["maxrss_mib"]
            print(
                f"{n:>6} {int(m['shards']):>6} {m['baseline_mib']:>13.0f} {m['maxrss_mib']:>13.0f} "
                f"{m['sampled_peak_mib']:>12.0f} {m['maxrss_mib'] - m['baseline_mib']:>11.0f} "
                f"{m['seconds_per_item']:>7.2f}"
            )
        row = results[counts[0]][0]["row_mib"]
        lo, hi = min(counts), max(counts)
        print()
        print(
            f"output row: {row:.1f} MiB float32; peak RSS ratio N={hi} / N={lo} (baseline): "
            f"{med[hi] / med[lo]:.3f} (medians of {runs})"
        )


if __name__ == "__main__":
    main()
