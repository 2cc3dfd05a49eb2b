"""Benchmark: the CLI's start-up, from `exec` to doing work, per command (this tree against another).

Each command runs as a subprocess with climb's bytecode cached (in the bench's temp dir, as an installed
wheel has it, whatever PYTHONDONTWRITEBYTECODE says); one untimed run of each warms that cache. Timed:

* ``climb --version`` and ``climb --help``: nothing but start-up;
* ``climb verify <name>`` on a PhysioNet-shaped raw folder of a few small files (``--files``, 20): the
  verify command path, where start-up is most of the time;
* ``climb download <name>`` of a few small files (``--files``) from the fake PhysioNet server on
  127.0.0.1 (no added latency) into a fresh folder each run: the download command path;
* ``python -c pass``: the interpreter's own floor (site, .pth hooks), not climb's.

Per command and tree: the median CPU time (user + sys) and wall time over ``--runs`` interleaved runs
(default 11; ``--quick`` 5), and the number of modules the command imported (``-X importtime``, one run).
With ``--baseline-src DIR`` (e.g. ``git archive main | tar -x -C DIR``) every command also runs with DIR's
``climb_cli`` first on the path, interleaved with this tree's, and the table gives this tree's CPU time as a
ratio of the baseline's.

Run: ``python bench/startup.py [--quick] [--runs N] [--baseline-src DIR]``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME, PROJECT, VERSION = "benchstart", "bench-start", "1.0.0"


def _tree_cmd(src: Path) -> list[str]:
    """climb from a source tree, its package first on the path (both trees are launched the same way)."""
    if not (src / "climb_cli" / "__init__.py").is_file():
        raise SystemExit(f"--baseline-src {src}: no climb_cli package there")
    code = f"import sys; sys.path.insert(0, {str(src.resolve())!r}); from climb_cli.cli import main; main()"
    return [sys.executable, "-c", code]


@dataclass
class Row:
    command: str
    tree: str
    argv: Callable[[], list[str]]  # built per run (download: a fresh folder)
    series: common.Series = field(default_factory=lambda: common.Series(""))
    modules: int = 0


def _modules(argv: list[str], env: dict[str, str]) -> int:
    """How many modules one run imported (`-X importtime` lines; the interpreter's start-up included)."""
    argv = [argv[0], "-X", "importtime", *argv[1:]]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    return sum(1 for line in proc.stderr.splitlines() if line.startswith("import time:")) - 1  # header


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__.split("\n")[0])
    p.add_argument("--files", type=int, default=20, help="files in the verify and download datasets")
    p.add_argument("--baseline-src", type=Path, default=None, help="another tree's climb, timed alongside")
    args = p.parse_args(argv)
    runs = args.runs if args.runs is not None else (5 if args.quick else 11)
    from climb_cli.fakes.physionet import FakePhysioNet, FakeProject

    with common.bench_tmpdir("startup") as tmp:
        data, recipes, mirror = tmp / "data", tmp / "recipes", tmp / "mirror" / PROJECT / VERSION
        common.make_small_files(data / "raw" / NAME, args.files)
        common.write_sha256sums(data / "raw" / NAME)
        common.make_small_files(mirror, args.files)
        common.write_sha256sums(mirror)
        common.write_recipe(recipes, NAME, PROJECT, VERSION)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMB_")}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        fresh = iter(range(1_000_000))
        with FakePhysioNet([FakeProject(PROJECT, VERSION, mirror, access="open")]) as srv:
            env["CLIMB_PHYSIONET_URL"] = srv.base_url
            trees = [("this tree", Path(__file__).resolve().parent.parent)]
            if args.baseline_src:
                trees.append(("baseline", args.baseline_src))
            rows: list[Row] = [Row("python -c pass", "-", lambda: [sys.executable, "-c", "pass"])]
            for tree, src in trees:
                climb = _tree_cmd(src)
                rows += [
                    Row("--version", tree, lambda c=climb: [*c, "--version"]),
                    Row("--help", tree, lambda c=climb: [*c, "--help"]),
                    Row(
                        f"verify ({args.files} files)",
                        tree,
                        lambda c=climb: [
                            *c,
                            "--data-dir",
                            str(data),
                            "--recipes",
                            str(recipes),
                            "verify",
                            NAME,
                        ],  # noqa: E501
                    ),
                    Row(
                        f"download ({args.files} files)",
                        tree,
                        lambda c=climb: [
                            *c,
                            "--data-dir",
                            str(tmp / f"dl{next(fresh)}"),
                            "--recipes",
                            str(recipes),
                            "download",
                            NAME,
                        ],  # fmt: skip
                    ),
                ]
            for r in rows:  # warm the bytecode cache and the page cache; count modules
                common.run_timed(r.argv(), env=env, what=r.command)
                r.modules = _modules(r.argv(), env)
            common.say(f"{common.machine_line()}\n{runs} interleaved runs per row")
            for run in range(runs):
                for r in common.rotate(rows, run):
                    r.series.add(common.run_timed(r.argv(), env=env, what=f"{r.command} ({r.tree})"))
    base = {r.command: r for r in rows if r.tree == "baseline"}
    table = []
    for r in rows:
        if r.tree == "baseline":
            continue
        b = base.get(r.command)
        table.append(
            [
                r.command,
                common.fmt_s(r.series.cpu_median),
                common.fmt_s(r.series.median),
                r.modules,
                common.fmt_s(b.series.cpu_median) if b else "-",
                common.fmt_s(b.series.median) if b else "-",
                b.modules if b else "-",
                common.fmt_ratio(r.series.cpu_median / b.series.cpu_median) if b else "-",
            ]
        )
    common.print_table(
        "start-up per command (median CPU = user + sys, seconds)",
        ["command", "CPU", "wall", "modules", "base CPU", "base wall", "base modules", "CPU / base"],
        table,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
