"""Engines: `climb preprocess --all` with 1 worker, 2 loky workers and a 2-worker Dask LocalCluster on
CPU-heavy recipes, with the CPU time of the coordinator and of the workers; then peak RSS at N and 10N items.

Run: python bench/engines.py [--quick] [--runs N] [--dicoms N] [--volumes N] [--timeline] [--no-memory]
                             [--baseline-src DIR]

Data (generated in a temporary folder, page cache warm): two datasets preprocessed by ONE command
(`preprocess --all`, so their units share one pool), each with the default 256 MB shards, so each
dataset is ONE shard: what used to be one work unit per dataset is now cut into units of
items / (4 x workers) (pipeline.cut_units) and the parts assembled into the same shard.
  - benchdicom: hard links to pydicom-data's 693_J2KR.dcm (CT 512x512, JPEG 2000 lossless, the
    compressed transfer syntax archives ship): dicom.read -> dicom.modality_lut -> dicom.window (pe)
    -> image.resize (long side 256) -> image.to_dtype uint8.
  - benchvol: CT-like NIfTI volumes 96x160x160 (0.8 x 0.8 x 1.25 mm, hard links of 4 files):
    volume.read -> volume.resample (1 mm) -> volume.window (pe, float32); ~5 MB rows.
Methods, interleaved with the order rotating run by run, each on an empty processed/ folder:
  - `--workers 1` (the serial engine: the named baseline),
  - `--workers 2` (loky, the default engine),
  - `--workers 2 --engine dask` (a LocalCluster of 2 worker processes on 127.0.0.1, started by climb).
Every run's shards must have the same sha256 as the first run's (byte-identical across engines).
Each run goes through a small wrapper (WRAP) that runs the CLI in its own process and reports: wall
time, the coordinator's CPU (getrusage SELF less the wrapper's sampling thread: CLI start-up,
recipes, index, probes, dispatch), the workers' CPU (every descendant process, sampled with psutil
every 0.1 s until the CLI exits: loky workers, Dask's nannies and workers), the
coordinator's peak RSS (ru_maxrss) and the largest worker's (VmHWM). The 1-min load average is read
before each run; its median per method is printed (the machine is shared: quote figures with it).
The wall times include the CLI's start-up and, for Dask, the cluster's start.
Memory: `preprocess benchvol --workers 2` at N and 10N volumes; the coordinator's and the largest
worker's peak RSS must not grow with the items (the parts' assembly streams row groups).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
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

# runs the CLI in this process (argv[2:]) and writes its figures as JSON to argv[1]
WRAP = r"""
import json, resource, runpy, sys, threading, time
import psutil
out, sys.argv = sys.argv[1], ["climb", *sys.argv[2:]]
me, cpu, hwm, own = psutil.Process(), {}, {}, [0.0]
def sample():
    for c in me.children(recursive=True):
        try:
            t = c.cpu_times()
            cpu[c.pid] = t.user + t.system
            for ln in open(f"/proc/{c.pid}/status"):
                if ln.startswith("VmHWM:"):
                    hwm[c.pid] = max(hwm.get(c.pid, 0), int(ln.split()[1]) * 1024)
        except (psutil.Error, OSError):
            pass
def watch():
    while True:
        sample()
        own[0] = time.thread_time()  # this thread's CPU: not the coordinator's
        time.sleep(0.1)
threading.Thread(target=watch, daemon=True).start()
# the timeline: every unit and assembly that ran (worker PID, start, end: UnitResult.started/ended)
import climb_cli.pipeline as pipeline
real, units = pipeline.preprocess_many, {}
def record(u):
    if getattr(u, "started", 0):  # (a baseline's UnitResult may not have it)
        units[(u.worker, u.started)] = [u.worker, u.started, u.ended, u.name, u.part, u.parts]
def preprocess_many(*a, **k):
    shown = k.get("on_unit")
    k["on_unit"] = lambda u: (record(u), shown and shown(u))
    out = real(*a, **k)
    for r in out.values():
        for u in getattr(r, "units", []):
            record(u)
    return out
pipeline.preprocess_many = preprocess_many
t0, start, code = time.perf_counter(), time.time(), 0
try:
    runpy.run_module("climb_cli", run_name="__main__")
except SystemExit as e:
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
finally:
    sample()
    s = resource.getrusage(resource.RUSAGE_SELF)
    json.dump({"wall": time.perf_counter() - t0, "parent_cpu": s.ru_utime + s.ru_stime - own[0],
               "workers_cpu": sum(cpu.values()), "parent_peak": s.ru_maxrss * 1024,
               "worker_peak": max(hwm.values(), default=0), "start": start, "end": time.time(),
               "timeline": sorted(units.values(), key=lambda u: u[1])}, open(out, "w"))
sys.exit(code)
"""


def write_data(root: Path, dicoms: int, volumes: int) -> tuple[Path, Path]:
    import SimpleITK as sitk
    from pydicom.data import get_testdata_file
    from volume_memory import ct_like

    recipes, data = root / "recipes", root / "data"
    recipes.mkdir()
    src = root / "693_J2KR.dcm"
    shutil.copyfile(str(get_testdata_file("693_J2KR.dcm")), src)
    raw = data / "raw" / "benchdicom"
    raw.mkdir(parents=True)
    for i in range(dicoms):  # hard links: n items, one file's worth of disk and page cache
        os.link(src, raw / f"ct{i:05d}.dcm")
    vols = root / "volumes"
    vols.mkdir()
    for i in range(4):
        img = sitk.GetImageFromArray(ct_like(i, VOL_SHAPE))
        img.SetSpacing((0.8, 0.8, 1.25))
        sitk.WriteImage(img, str(vols / f"v{i}.nii"))
    set_volumes(data, vols, volumes)
    fmt = {"ext": "dcm", "input": "image", "steps": DICOM_STEPS, "modality": "ct"}
    (recipes / "benchdicom.yaml").write_text(RECIPE.format(name="benchdicom", **fmt))
    fmt = {"ext": "nii", "input": "volume", "steps": VOLUME_STEPS, "modality": "ct"}
    # row groups of 8 MB (one 5 MB row each): what a worker holds while it writes, whatever the items
    text = RECIPE.format(name="benchvol", **fmt) + "output:\n  row_group_size: 8MB\n"
    (recipes / "benchvol.yaml").write_text(text)
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


def run_wrapped(args: list[str], what: str, src: str | None = None) -> dict[str, float]:
    """One CLI run under WRAP: its figures (and the 1-min load average just before it). `src`: a
    folder whose climb_cli is run instead of this checkout's (a baseline: `git archive` of a commit)."""
    load = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        cmd = [sys.executable, "-c", WRAP, out.name, *args]  # `-c`: the working folder's climb_cli first
        r = subprocess.run(cmd, capture_output=True, text=True, cwd=src or str(common.REPO))
        if r.returncode != 0:
            raise SystemExit(f"{what} failed (exit {r.returncode}):\n{r.stdout[-1500:]}\n{r.stderr[-1500:]}")
        return {**json.loads(Path(out.name).read_text()), "load": load}


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def idle(run: dict) -> dict[str, float]:
    """From a run's timeline: per worker (mean over the workers that ran units), the seconds from the
    CLI's start to its first unit (start-up, the coordinator's planning, the probes), from its last
    unit's end to the CLI's exit (the tail, and the commit), and idle in between."""
    by: dict[int, list[list]] = {}
    for u in run["timeline"]:
        by.setdefault(u[0], []).append(u)
    if not by:
        return {"idle_start": 0.0, "idle_end": 0.0, "idle_mid": 0.0, "busy": 0.0}
    first = [min(u[1] for u in us) - run["start"] for us in by.values()]
    last = [run["end"] - max(u[2] for u in us) for us in by.values()]
    busy = [sum(u[2] - u[1] for u in us) for us in by.values()]
    span = run["end"] - run["start"]
    mid = [span - f - la - b for f, la, b in zip(first, last, busy, strict=True)]
    mean = statistics.mean
    return {"idle_start": mean(first), "idle_end": mean(last), "idle_mid": mean(mid), "busy": mean(busy)}


def print_timeline(label: str, run: dict) -> None:
    """Each unit of a run, per worker PID: start-end seconds from the CLI's start, and what it was."""
    common.say(f"timeline, {label} (wall {run['wall']:.2f} s; seconds from the CLI's start):")
    by: dict[int, list[list]] = {}
    for u in run["timeline"]:
        by.setdefault(u[0], []).append(u)
    for pid, us in sorted(by.items()):
        cells = [
            f"{u[1] - run['start']:.1f}-{u[2] - run['start']:.1f} {u[3].split('.')[0]}"
            + (f"#{u[4]}/{u[5]}" if u[5] > 1 else "")
            for u in us
        ]
        common.say(f"  pid {pid}: " + ", ".join(cells))


def main() -> None:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument("--dicoms", type=int, default=None, help="DICOM items (default 1200; --quick 160)")
    p.add_argument("--volumes", type=int, default=None, help="volume items (default 16; --quick 4)")
    p.add_argument("--timeline", action="store_true", help="print every run's units per worker PID")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS part")
    p.add_argument(
        "--baseline-src",
        default=None,
        help="a folder with another climb_cli (git archive <commit> | tar -x -C DIR): its runs interleaved",
    )
    args = p.parse_args()
    runs = common.runs_from(args)
    dicoms = args.dicoms or (160 if args.quick else 1200)
    volumes = args.volumes or (4 if args.quick else 16)
    common.say(common.machine_line())
    with common.bench_tmpdir("engines") as root:
        recipes, data = write_data(root, dicoms, volumes)
        base = ["--data-dir", str(data), "--recipes", str(recipes), "preprocess"]
        methods = {
            "1 worker (serial, baseline)": [*base, "--all", "--workers", "1"],
            "2 workers (loky)": [*base, "--all", "--workers", "2"],
            "2 workers (Dask LocalCluster)": [*base, "--all", "--workers", "2", "--engine", "dask"],
        }
        srcs = dict.fromkeys(methods)
        if args.baseline_src:  # the same methods on the baseline's code, interleaved with these
            for label in list(methods):
                methods[f"{label}, baseline src"] = methods[label]
                srcs[f"{label}, baseline src"] = args.baseline_src
        results: dict[str, list[dict[str, float]]] = {label: [] for label in methods}
        first: dict[str, dict[str, str]] = {}
        run_wrapped(methods["2 workers (loky)"], "warm-up")  # page cache, imports, .pyc
        for run in range(runs):
            for label in common.rotate(list(methods), run):
                shutil.rmtree(data / "processed", ignore_errors=True)
                results[label].append(run_wrapped(methods[label], label, srcs[label]))
                if args.timeline:
                    print_timeline(label, results[label][-1])
                got = shard_sums(data)
                if got != first.setdefault("sums", got):
                    raise SystemExit(f"{label}: shards differ from the first run's")
        serial = median(results["1 worker (serial, baseline)"], "wall")
        rows = []
        for label, rs in results.items():
            walls = [r["wall"] for r in rs]
            rows.append(
                [
                    label,
                    common.fmt_s(median(rs, "wall")),
                    f"{common.fmt_s(min(walls))}–{common.fmt_s(max(walls))}",
                    common.fmt_s(median(rs, "parent_cpu")),
                    common.fmt_s(median(rs, "workers_cpu")),
                    *(
                        f"{statistics.median(idle(r)[k] for r in rs):.2f}"
                        for k in ("idle_start", "idle_mid", "idle_end")
                    ),
                    f"{median(rs, 'load'):.1f}",
                    common.fmt_ratio(serial / median(rs, "wall")),
                ]
            )
        common.print_table(
            f"preprocess --all: {dicoms} DICOM CT slices (JPEG 2000) + {volumes} CT volumes, median of "
            f"{runs} ({len(first['sums'])} shards, sha256 identical on every engine)",
            [
                "method",
                "median s",
                "min–max",
                "coordinator CPU s",
                "workers CPU s",
                "worker idle: start s",
                "between s",
                "end s",
                "load",
                "speed-up",
            ],
            rows,
        )

        if args.no_memory:
            return
        # ---- memory: peak RSS of the coordinator and of the largest worker at N and 10N volumes
        vols = root / "volumes"
        counts = [4, 40]
        peaks: dict[int, list[dict[str, float]]] = {n: [] for n in counts}
        for run in range(1 if args.quick else max(1, runs - 2)):
            for n in common.rotate(counts, run):
                set_volumes(data, vols, n)
                shutil.rmtree(data / "processed", ignore_errors=True)
                peaks[n].append(run_wrapped([*base, "benchvol", "--workers", "2"], f"benchvol at {n}"))
        mib = {
            n: (median(v, "parent_peak") / 2**20, median(v, "worker_peak") / 2**20) for n, v in peaks.items()
        }
        lo = mib[counts[0]]
        common.print_table(
            "peak RSS, preprocess benchvol --workers 2 (coordinator: ru_maxrss; worker: largest VmHWM)",
            ["volumes", "coordinator MiB", "largest worker MiB", "runs", "vs smallest (coord / worker)"],
            [
                [
                    n,
                    f"{mib[n][0]:.0f}",
                    f"{mib[n][1]:.0f}",
                    len(peaks[n]),
                    f"{common.fmt_ratio(mib[n][0] / lo[0])} / {common.fmt_ratio(mib[n][1] / lo[1])}",
                ]
                for n in counts
            ],
        )


if __name__ == "__main__":
    main()
