"""Engines: `climb preprocess --all` with 1 worker, 2 loky workers and a 2-worker Dask LocalCluster on
CPU-heavy recipes; then peak RSS at 1x and 10x items.

Run: python bench/engines.py [--quick] [--runs N]

Data (generated in a temporary folder, page cache warm): two datasets preprocessed by ONE command
(`preprocess --all`, so their units share one pool):
  - benchdicom: copies of pydicom-data's 693_UNCI.dcm (CT 512x512 int16): dicom.read ->
    dicom.modality_lut -> dicom.window (pe) -> image.resize (long side 256) -> image.to_dtype uint8;
    shard_size 2MB (32 rows of 64 KiB per shard: several units per worker).
  - benchvol: CT-like NIfTI volumes 96x160x160 (0.8 x 0.8 x 1.25 mm, hard links of 4 files):
    volume.read -> volume.resample (1 mm) -> volume.window (pe, float32); ~5 MB rows, shard_size
    16MB, row groups of 8MB.
Methods, interleaved with the order rotating run by run, each on an empty processed/ folder:
  - `--workers 1` (the serial engine: the named baseline),
  - `--workers 2` (loky, the default engine),
  - `--workers 2 --engine dask` (a LocalCluster of 2 worker processes on 127.0.0.1, started by climb).
Every run's shards must have the same sha256 as the first run's (byte-identical across engines).
Memory: `preprocess benchvol --workers 2` at N and 10N volumes in a fresh process tree; peak RSS is
the largest ru_maxrss of any process in the tree (the CLI or one of its workers), median over runs.
The wall times include the CLI's start-up and, for Dask, the cluster's start.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

RECIPE = """name: {name}
title: engine benchmark {name}
modality: {modality}
license: none
access: open
sources: [{{kind: physionet, project: bench, version: 1.0.0}}]
index:
  files: {{glob: "*.{ext}", pattern: "(?P<f>[^/]+)\\\\.{ext}$"}}
  id: f
  inputs: {{{input}: "{{f}}.{ext}"}}
  split: {{fixed: train}}
steps:
{steps}
output:
  shard_size: {shard}
  row_group_size: {group}
"""
DICOM_STEPS = """  - dicom.read: {}
  - dicom.modality_lut: {}
  - dicom.window: {preset: pe}
  - image.resize: {long_side: 256}
  - image.to_dtype: {dtype: uint8}"""
VOLUME_STEPS = """  - volume.read: {}
  - volume.resample: {spacing: 1.0, fill: -1024}
  - volume.window: {preset: pe}"""
VOL_SHAPE = (96, 160, 160)

# the peak RSS of a process tree: the child's own RUSAGE_CHILDREN after it reaped the CLI (and the
# CLI reaped its workers): the largest peak of any one process in it
PEAK = (
    "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:], capture_output=True); "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
)


def write_data(root: Path, dicoms: int, volumes: int) -> tuple[Path, Path]:
    import SimpleITK as sitk
    from pydicom.data import get_testdata_file
    from volume_memory import ct_like

    recipes, data = root / "recipes", root / "data"
    recipes.mkdir()
    src = Path(get_testdata_file("693_UNCI.dcm"))
    raw = data / "raw" / "benchdicom"
    raw.mkdir(parents=True)
    for i in range(dicoms):
        shutil.copyfile(src, raw / f"ct{i:05d}.dcm")
    vols = root / "volumes"
    vols.mkdir()
    for i in range(4):
        img = sitk.GetImageFromArray(ct_like(i, VOL_SHAPE))
        img.SetSpacing((0.8, 0.8, 1.25))
        sitk.WriteImage(img, str(vols / f"v{i}.nii"))
    set_volumes(data, vols, volumes)
    fmt = {
        "ext": "dcm",
        "input": "image",
        "steps": DICOM_STEPS,
        "shard": "2MB",
        "group": "2MB",
        "modality": "ct",
    }
    (recipes / "benchdicom.yaml").write_text(RECIPE.format(name="benchdicom", **fmt))
    fmt = {
        "ext": "nii",
        "input": "volume",
        "steps": VOLUME_STEPS,
        "shard": "16MB",
        "group": "8MB",
        "modality": "ct",
    }
    (recipes / "benchvol.yaml").write_text(RECIPE.format(name="benchvol", **fmt))
    return recipes, data


def set_volumes(data: Path, vols: Path, n: int) -> None:
    raw = data / "raw" / "benchvol"
    shutil.rmtree(raw, ignore_errors=True)
    raw.mkdir(parents=True)
    for i in range(n):  # hard links: n items, 4 files' worth of disk
        os.link(vols / f"v{i % 4}.nii", raw / f"vol{i:04d}.nii")


def shard_sums(data: Path) -> dict[str, str]:
    return {
        p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((data / "processed").rglob("data/*.parquet"))
    }


def main() -> None:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument("--dicoms", type=int, default=None, help="DICOM items (default 480; --quick 240)")
    p.add_argument("--volumes", type=int, default=None, help="volume items (default 8; --quick 4)")
    args = p.parse_args()
    runs = common.runs_from(args)
    dicoms = args.dicoms or (240 if args.quick else 480)
    volumes = args.volumes or (4 if args.quick else 8)
    common.say(common.machine_line())
    with common.bench_tmpdir("engines") as root:
        recipes, data = write_data(root, dicoms, volumes)
        base = [*common.climb_cmd(), "--data-dir", str(data), "--recipes", str(recipes), "preprocess"]
        methods = {
            "1 worker (serial, baseline)": [*base, "--all", "--workers", "1"],
            "2 workers (loky)": [*base, "--all", "--workers", "2"],
            "2 workers (Dask LocalCluster)": [*base, "--all", "--workers", "2", "--engine", "dask"],
        }
        series = {label: common.Series(label) for label in methods}
        sums: dict[str, dict[str, str]] = {}
        common.run_timed(methods["2 workers (loky)"], what="warm-up")  # page cache, imports, .pyc
        for run in range(runs):
            for label in common.rotate(list(methods), run):
                shutil.rmtree(data / "processed", ignore_errors=True)
                series[label].add(common.run_timed(methods[label], what=label))
                got = shard_sums(data)
                first = sums.setdefault("first", got)
                if got != first:
                    raise SystemExit(f"{label}: shards differ from the first run's")
                sums[label] = got
        base_median = series["1 worker (serial, baseline)"].median
        rows = [
            [
                s.label,
                common.fmt_s(s.median),
                s.spread,
                common.fmt_s(s.cpu_median),
                common.fmt_ratio(base_median / s.median),
            ]
            for s in series.values()
        ]
        common.print_table(
            f"preprocess --all: {dicoms} DICOM CT slices + {volumes} CT volumes, median of {runs} "
            f"({len(sums['first'])} shards, sha256 identical on every engine)",
            ["method", "median s", "min–max", "CPU s", "speed-up vs 1 worker"],
            rows,
        )

        # ---- memory: peak RSS at N and 10N volumes
        vols = root / "volumes"
        counts = [4, 40]  # both past one shard: what must not grow is the per-process peak
        peaks: dict[int, list[int]] = {n: [] for n in counts}
        for run in range(max(1, runs - 2) if not args.quick else 1):
            for n in common.rotate(counts, run):
                set_volumes(data, vols, n)
                shutil.rmtree(data / "processed", ignore_errors=True)
                cmd = [sys.executable, "-c", PEAK, *base, "benchvol", "--workers", "2"]
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    raise SystemExit(f"benchvol at {n} volumes failed")
                peaks[n].append(int(r.stdout.strip()) * 1024)
        mib = {n: statistics.median(v) / 2**20 for n, v in peaks.items()}
        common.print_table(
            "peak RSS of the largest process (CLI or worker), preprocess benchvol --workers 2",
            ["volumes", "peak MiB (median)", "runs", "ratio vs smallest"],
            [[n, f"{mib[n]:.0f}", len(peaks[n]), common.fmt_ratio(mib[n] / mib[counts[0]])] for n in counts],
        )


if __name__ == "__main__":
    main()
