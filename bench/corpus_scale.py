"""A simulated 1 M-file dataset through climb's own code: plan, the download's skip check (a rerun with
every file present), and verify --metadata, each in its own process, with wall time and peak RSS.

The dataset is a PhysioNet-style project: N small files under 1,000 folders plus the SHA256SUMS.txt that
lists them, placed in raw/<dataset>/ as if a download had put them there. The PhysioNet URL points at a
closed port on 127.0.0.1, so any network access would fail the step. Steps:
  record       setup: the raw manifest as a finished download leaves it (one row per file: size, mtime,
               the upstream sum), written straight with RawManifest.put_batch
  seed         (optional) the first `download` over files placed by hand: hashes and records each one
  plan         `climb plan`'s figures (one SQL scan) plus the listing with present bytes
  skip         `download` again: every file skipped by size+mtime against the raw manifest
  verify-meta  `verify --metadata`: every file's size+mtime against the manifest and the upstream sums
  verify       the full `verify` (re-hash everything), the baseline the metadata check is compared with
The issue's target: plan, skip and verify-meta of 1 M files each under 60 s and 1 GB.

With --baseline-src DIR (a checkout of an older commit: `git archive <commit> | tar -x -C DIR`), each
step is run with that code too, right after the current code's run, on the same files (interleaved, so
both see the same machine load); the table gets a baseline row per step.

Run: python bench/corpus_scale.py [--files N] [--quick] [--keep] [--baseline-src DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "bigset"
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def _workdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="climb-bench-corpus-", dir=common.tmp_base()))


def _make(root: Path, n: int) -> None:
    raw = root / "data" / "raw" / NAME
    lines = []
    for i in range(n):
        folder = raw / f"p{i // 1000:04d}"
        if i % 1000 == 0:
            folder.mkdir(parents=True, exist_ok=True)
        data = f"{i}\n".encode()
        rel = f"p{i // 1000:04d}/s{i:07d}.dat"
        (raw / rel).write_bytes(data)
        lines.append(f"{hashlib.sha256(data).hexdigest()} {rel}\n")
    (raw / "SHA256SUMS.txt").write_text("".join(lines))
    recipes = root / "recipes"
    recipes.mkdir()
    # the single-source PTB-XL recipe (as tests/conftest.py's write_recipe) under another name
    text = (REPO / "recipes" / "ecg" / "ptbxl_superdiagnostic.yaml").read_text()
    head, _, rest = text.partition("sources:\n")
    _, _, tail = rest.partition("\nchecksums:")
    head = head.replace("name: ptbxl_superdiagnostic", f"name: {NAME}")
    tail = tail.split("\nexpect:")[0] + "\n"
    source = f'  - id: data\n    kind: physionet\n    project: {NAME}\n    version: "1.0"\n'
    (recipes / f"{NAME}.yaml").write_text(head + "sources:\n" + source + "\nchecksums:" + tail)


STEP = r"""
import json, sys, time
from pathlib import Path
from climb_cli.catalog import Catalog
from climb_cli.settings import Settings
root, step = Path(sys.argv[1]), sys.argv[2]
settings = Settings(data_dir=root / "data", mirrors={"physionet": "http://127.0.0.1:9"}, retries=0)
recipe = Catalog([root / "recipes"]).load("bigset")
import resource
ru0 = resource.getrusage(resource.RUSAGE_SELF)
cpu0 = ru0.ru_utime + ru0.ru_stime
t0 = time.perf_counter()
if step == "record":
    from climb_cli.manifest import Entry, RawManifest
    raw = settings.raw_dir("bigset")
    rows = []
    for line in (raw / "SHA256SUMS.txt").read_text().splitlines():
        digest, rel = line.split(" ", 1)
        st = (raw / rel).stat()
        url = "http://127.0.0.1:9/files/bigset/1.0/" + rel
        rows.append(Entry(rel, st.st_size, st.st_mtime_ns, digest, "data", url, "", 1.0, 1.0))
    with RawManifest.for_dataset(raw) as m:
        for i in range(0, len(rows), 100_000):
            m.put_batch(rows[i : i + 100_000])
    out = {"rows": len(rows)}
elif step in ("seed", "skip"):
    from climb_cli.acquire import download
    r = download(recipe, settings)
    assert r.ok, r.why
    out = {"skipped": r.count("skipped"), "downloaded": r.count("downloaded")}
elif step == "plan":
    from climb_cli.acquire import plan
    from climb_cli.plan import plan_dataset
    p = plan(recipe, settings)
    d = plan_dataset(recipe, settings, workers=2, connections=4)
    out = {"files": d.files.value, "raw_bytes": d.raw_bytes.value}
    out.update(listed=p.files, present=p.present_bytes)
else:
    from climb_cli.verify import verify_raw
    rep, _ = verify_raw(recipe, settings, metadata=(step == "verify-meta"))
    assert rep.ok, rep.as_dict()
    out = {"checked": rep.checked}
import resource
ru = resource.getrusage(resource.RUSAGE_SELF)
out["seconds"] = round(time.perf_counter() - t0, 2)
out["cpu_seconds"] = round(ru.ru_utime + ru.ru_stime - cpu0, 2)
out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
print(json.dumps(out))
"""


def _run(root: Path, step: str, src: Path = REPO) -> dict:
    """One step in a fresh process importing climb_cli from `src` (this checkout, or a baseline's)."""
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STEP, str(root), step], stdout=subprocess.PIPE, text=True, cwd=src, env=env
    )
    out, _ = proc.communicate()
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"step {step} failed (exit {proc.returncode})")
    res = json.loads(out.strip().splitlines()[-1])
    res.update(step=step, wall=round(wall, 2))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=1_000_000)
    ap.add_argument("--quick", action="store_true", help="100,000 files")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--steps", default="record,plan,skip,verify-meta")
    ap.add_argument("--reuse", type=Path, help="a work folder kept by an earlier --keep run")
    ap.add_argument("--baseline-src", type=Path, help="also run each step with the climb_cli under DIR")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else args.files
    root = args.reuse or _workdir()
    try:
        if args.reuse is None:
            t0 = time.perf_counter()
            _make(root, n)
            print(f"made {n:,} files in {time.perf_counter() - t0:.1f}s under {root}", flush=True)
        rows = []
        for step in args.steps.split(","):
            r = _run(root, step)
            rows.append(r)
            print(r, flush=True)
            if args.baseline_src is not None and step != "record":  # record: setup, the same for both
                b = _run(root, step, args.baseline_src.resolve())
                b["step"] = f"{step} (baseline)"
                rows.append(b)
                print(b, flush=True)
        if args.reuse is not None:
            n = (
                rows[0].get("files")
                or rows[0].get("checked")
                or rows[0].get("skipped")
                or rows[0].get("rows")
                or n
            )
        # CPU seconds (user + system) vary less than wall time on a shared machine: both are shown
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        print("| step | files | seconds (in-process) | CPU seconds | wall incl. start-up | peak RSS |")
        print("|---|---:|---:|---:|---:|---:|")
        for r in rows:
            cells = [r["step"], f"{n:,}", r["seconds"], r["cpu_seconds"], r["wall"], f"{r['peak_rss_mb']} MB"]
            print("| " + " | ".join(map(str, cells)) + " |")
    finally:
        if not args.keep and args.reuse is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
