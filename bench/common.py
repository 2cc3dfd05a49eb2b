"""Shared helpers for the benchmarks in bench/ (not a benchmark itself: it has no main()).

Every benchmark imports this as ``common`` (``python bench/<name>.py`` puts bench/ on sys.path), works
in a temporary folder it removes at the end, talks only to 127.0.0.1, and prints a short table.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # climb_cli importable even without `pip install -e .`
    sys.path.insert(0, str(REPO))


# ------------------------------------------------------------------------------------ arguments


def arg_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the options every benchmark shares: --quick and --runs."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="fewer files and runs (a smoke run of ~1 min)")
    p.add_argument("--runs", type=int, default=None, help="timed runs per tool (default 5; --quick 3)")
    return p


def runs_from(args: argparse.Namespace) -> int:
    runs = args.runs if args.runs is not None else (3 if args.quick else 5)
    if runs < 1:
        raise SystemExit("--runs must be >= 1")
    return runs


# ------------------------------------------------------------------------------------ temp dirs


def tmp_base() -> str | None:
    """Where benchmarks put their temporary folders: $CLIMB_BENCH_TMPDIR, else /var/tmp, else $TMPDIR.

    Not /tmp by default: on the 2-vCPU machine these figures come from, creating a file under /tmp costs
    ~1 ms of CPU against ~0.05-0.1 ms elsewhere on the same ext4 disk (see README.md), which would
    swamp a many-small-files benchmark.
    """
    env = os.environ.get("CLIMB_BENCH_TMPDIR")
    if env:
        return env
    if os.access("/var/tmp", os.W_OK):
        return "/var/tmp"
    return None


@contextlib.contextmanager
def bench_tmpdir(prefix: str) -> Iterator[Path]:
    """A fresh temporary folder under tmp_base(), removed afterwards whatever happens."""
    path = Path(tempfile.mkdtemp(prefix=f"climb-bench-{prefix}-", dir=tmp_base()))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------ data sets


def make_small_files(
    root: Path,
    n: int,
    *,
    min_bytes: int = 1024,
    max_bytes: int = 30 * 1024,
    per_dir: int = 100,
    seed: int = 0,
) -> int:
    """Write ``n`` random files of ``min_bytes``..``max_bytes`` in a PTB-XL-like nested layout.

    ``records100/00000/00001_lr.dat``, ``records500/00000/00001_hr.dat``, ...: half in each records
    folder, ``per_dir`` files per sub-folder, plus ``RECORDS`` and ``LICENSE.txt`` at the top (counted in
    ``n``).  Returns the total number of bytes written (SHA256SUMS.txt is not written here).
    """
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    total = 0
    names = []
    for i in range(max(0, n - 2)):
        rec = i // 2 + 1
        kind = ("lr", "records100") if i % 2 == 0 else ("hr", "records500")
        folder = root / kind[1] / f"{((rec - 1) // (per_dir)) * per_dir:05d}"
        folder.mkdir(parents=True, exist_ok=True)
        data = rng.randbytes(rng.randint(min_bytes, max_bytes))
        (folder / f"{rec:05d}_{kind[0]}.dat").write_bytes(data)
        total += len(data)
        names.append(f"{kind[1]}/{folder.name}/{rec:05d}_{kind[0]}")
    extras = {
        "RECORDS": "".join(f"{x}\n" for x in names).encode(),
        "LICENSE.txt": b"generated benchmark data, no patients\n",
    }
    for name, data in list(extras.items())[: min(2, n)]:
        (root / name).write_bytes(data)
        total += len(data)
    return total


def make_large_files(root: Path, count: int, size: int, *, seed: int = 1) -> int:
    """Write ``count`` files of ``size`` random bytes as ``large/part-NN.bin``; returns the bytes written."""
    folder = root / "large"
    folder.mkdir(parents=True, exist_ok=True)
    block = 8 * 1024 * 1024
    rng = random.Random(seed)
    for i in range(count):
        with open(folder / f"part-{i:02d}.bin", "wb") as f:
            left = size
            while left > 0:
                n = min(block, left)
                f.write(rng.randbytes(n))
                left -= n
    return count * size


def write_sha256sums(root: Path) -> Path:
    """SHA256SUMS.txt exactly as PhysioNet writes it (the fake's generator)."""
    from climb_cli.fakes.physionet import write_sha256sums as _write

    return _write(root)


def write_recipe(folder: Path, name: str, project: str, version: str) -> Path:
    """A minimal user recipe with one PhysioNet source taking the whole project version."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(
        f"# generated by bench/: one PhysioNet source, every file of {project}/{version}\n"
        f"name: {name}\n"
        f'title: "benchmark data ({project} {version})"\n'
        "modality: ecg\n"
        "license: CC0-1.0\n"
        "access: open\n"
        "sources:\n"
        "  - id: data\n"
        "    kind: physionet\n"
        f"    project: {project}\n"
        f"    version: {version}\n"
    )
    return path


def count_files(root: Path, *, skip_dirs: tuple[str, ...] = (".climb",), name: str | None = None) -> int:
    """Regular files under root (optionally only those called ``name``), not descending into skip_dirs."""
    n = 0
    for _dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip_dirs]
        n += sum(1 for f in filenames if name is None or f == name)
    return n


# ------------------------------------------------------------------------------------ running


def climb_cmd() -> list[str]:
    """The installed ``climb`` console script, else ``python -m climb_cli``."""
    exe = shutil.which("climb")
    return [exe] if exe else [sys.executable, "-m", "climb_cli"]


def baseline_cmd(src: Path) -> list[str]:
    """climb from another source tree (e.g. `git archive <commit> | tar -x -C DIR`), for before/after runs:
    its package first on the path. Run it with a cwd outside this repo."""
    if not (src / "climb_cli" / "__init__.py").is_file():
        raise SystemExit(f"--baseline-src {src}: no climb_cli package there")
    code = f"import sys; sys.path.insert(0, {str(src.resolve())!r}); from climb_cli.cli import main; main()"
    return [sys.executable, "-c", code]


def need_tool(name: str) -> str:
    exe = shutil.which(name)
    if exe is None:
        raise SystemExit(f"{name} is not installed (needed as a baseline): apt-get install {name}")
    return exe


@dataclass
class Timing:
    wall: float  # seconds
    cpu: float  # user + sys seconds of the child process (and its children)


def run_timed(
    cmd: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, what: str = ""
) -> Timing:
    """Run a command to completion (output captured), returning wall and CPU seconds; fail loudly on rc != 0.

    CPU time comes from RUSAGE_CHILDREN, so no other child process may run at the same time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(list(cmd), env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        tail = (proc.stdout[-1500:] + "\n" + proc.stderr[-1500:]).strip()
        raise SystemExit(f"{what or cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def startup_seconds(runs: int = 3) -> float:
    """Median wall time of ``climb --version``: the CLI's fixed start-up cost (interpreter + imports)."""
    return statistics.median(
        run_timed([*climb_cmd(), "--version"], what="climb --version").wall for _ in range(runs)
    )


# ------------------------------------------------------------------------------------ statistics


@dataclass
class Series:
    """Repeated timings of one method."""

    label: str
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)

    def add(self, t: Timing) -> None:
        self.walls.append(t.wall)
        self.cpus.append(t.cpu)

    @property
    def median(self) -> float:
        return statistics.median(self.walls)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpus) if self.cpus else float("nan")

    @property
    def spread(self) -> str:
        return f"{fmt_s(min(self.walls))}–{fmt_s(max(self.walls))}"


def fmt_s(seconds: float) -> str:
    if seconds != seconds:  # nan
        return "-"
    return f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def fmt_ratio(x: float) -> str:
    return f"{x:.2f}x"


def rotate(items: Sequence, k: int) -> list:
    """``items`` rotated by ``k``: interleaves the order of methods from one run to the next."""
    k %= len(items)
    return list(items[k:]) + list(items[:k])


# ------------------------------------------------------------------------------------ output


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain fixed-width table (left-aligned first column, right-aligned others)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        padded = [
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        return "  ".join(padded)

    print(f"\n{title}")
    print(line(cells[0]))
    print("  ".join("-" * w for w in widths))
    for r in cells[1:]:
        print(line(r))


def machine_line() -> str:
    """Date, CPU count and model, OS and Python: the header of every benchmark's output."""
    model = ""
    with contextlib.suppress(OSError):
        for ln in Path("/proc/cpuinfo").read_text().splitlines():
            if ln.startswith("model name"):
                model = ln.split(":", 1)[1].strip()
                break
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    line = (
        f"{_dt.date.today().isoformat()}, {os.cpu_count()} vCPU ({model or platform.machine()}), "
        f"{platform.system()} {platform.release()}, Python {platform.python_version()}, load {load:.1f}"
    )
    if load > (os.cpu_count() or 1):
        line += "\n  WARNING: the machine is busy (1-min load above the CPU count): expect noisy figures"
    return line


def tool_version(cmd: Sequence[str]) -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(list(cmd), capture_output=True, text=True, timeout=10).stdout
        return out.splitlines()[0].strip() if out else ""
    return ""


def say(text: str) -> None:
    print(text, flush=True)
