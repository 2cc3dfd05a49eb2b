"""Run every benchmark in bench/: each ``bench/*.py`` that defines a top-level ``main()``.

    python bench/run_all.py                 # all of them, default sizes (a few minutes each)
    python bench/run_all.py --quick         # smaller and fewer runs (passed to scripts that accept it)
    python bench/run_all.py download verify # only these (names without .py)
    python bench/run_all.py --list          # what would run

Each benchmark runs alone in its own process, one after another (they would disturb each other's
timings), with its output streamed as it comes; a summary of exit codes and durations ends the run.
common.py (shared helpers) and this file are not benchmarks.  Exit code: 0 if every benchmark passed.
"""

from __future__ import annotations

import argparse
import ast
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_BENCHMARKS = {"common.py", "run_all.py", "__init__.py", "__main__.py"}


def defines_main(path: Path) -> bool:
    """Whether the file has a top-level ``def main`` (read with ast: nothing is imported or run)."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return True  # let it run and fail loudly rather than skip it silently
    return any(isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == "main" for n in tree.body)


def discover() -> list[Path]:
    return [
        p
        for p in sorted(HERE.glob("*.py"))
        if p.name not in NOT_BENCHMARKS and not p.name.startswith("_") and defines_main(p)
    ]


def accepts_quick(path: Path) -> bool:
    try:
        return "--quick" in path.read_text(encoding="utf-8")
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run every benchmark in bench/ (see bench/README.md).")
    p.add_argument("names", nargs="*", help="benchmarks to run (file names without .py); default: all")
    p.add_argument("--quick", action="store_true", help="pass --quick to the benchmarks that accept it")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = p.parse_args(argv)

    found = discover()
    if args.names:
        by_name = {f.stem: f for f in found}
        unknown = [n for n in args.names if n.removesuffix(".py") not in by_name]
        if unknown:
            p.error(f"no benchmark named {', '.join(unknown)} (have: {', '.join(by_name) or 'none'})")
        found = [by_name[n.removesuffix(".py")] for n in dict.fromkeys(args.names)]
    if args.list:
        for f in found:
            print(f"{f.stem:<20} bench/{f.name}")
        return 0
    if not found:
        print("no benchmarks found in bench/", file=sys.stderr)
        return 1

    results: list[tuple[str, int, float]] = []
    for f in found:
        cmd = [sys.executable, str(f)] + (["--quick"] if args.quick and accepts_quick(f) else [])
        print(f"\n=== {f.stem}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        try:
            rc = subprocess.run(cmd, cwd=HERE.parent).returncode
        except KeyboardInterrupt:
            print(f"\ninterrupted during {f.stem}", file=sys.stderr)
            return 130
        results.append((f.stem, rc, time.perf_counter() - t0))

    print("\n=== summary")
    width = max(len(n) for n, _, _ in results)
    for name, rc, secs in results:
        print(f"{name:<{width}}  {'ok' if rc == 0 else f'FAILED (exit {rc})':<16} {secs:7.0f} s")
    return 0 if all(rc == 0 for _, rc, _ in results) else 1


if __name__ == "__main__":
    sys.exit(main())
