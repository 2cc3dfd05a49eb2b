"""Benchmark: `climb verify` (CLI and library) against `sha256sum -c SHA256SUMS.txt`, warm page cache.

Two scenarios, printed separately, each a PhysioNet-shaped raw folder (files + SHA256SUMS.txt placed
directly in raw/<name>/, where verify reads the upstream sums) in a temporary folder on the local disk:

* many-small: 2,000 files of 1-30 KB in nested folders (~31 MB): per-file overhead;
* few-large: 4 files of 100 MB (400 MB): raw hashing throughput.

Timed, each once untimed first (page cache warm, climb's manifest already created), then interleaved,
in the order the tables print them:

* ``climb --data-dir D --recipes R verify <name>`` as a subprocess: what a user runs, start-up included;
  the headline, against
* ``sha256sum -c --quiet SHA256SUMS.txt`` in the raw folder: the named baseline, then
* ``xargs -P2 -n1 sha256sum -c --quiet`` over 8 slices of SHA256SUMS.txt: the baseline on both cores;
* ``verify_raw(recipe, settings)``, the library call behind the CLI, in this process (no start-up);
* ``climb --version``: the CLI's start-up alone;
* with ``--baseline-src DIR``: ``climb verify`` again, climb's code from DIR (e.g. ``git archive <commit> |
  tar -x -C DIR``): before/after in the same run.

Each row has its wall and CPU time (user + sys) and their ratio: the cores it kept busy. The CLI runs
with its bytecode cached (in the bench's temp dir, as an installed package has it), whatever
PYTHONDONTWRITEBYTECODE says.

After each table, ``cores given`` is the xargs -P2 baseline's speed over sha256sum -c: 2.00 when the
machine gave the run both cores. Below about 1.8 other work shared the CPUs, and every ratio of the CLI to
the baselines is off (the CLI needs both cores too).

Run: ``python bench/verify.py [--quick] [--runs N] [--small-files N] [--large-count N] [--large-mb N]
[--baseline-src DIR]``; the 1 GiB check: ``--large-count 4 --large-mb 1024``.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

NAME = "benchverify"


@dataclass
class Method:
    key: str
    label: str
    run: Callable[[], common.Timing]
    series: common.Series


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _slices(sums: Path, out: Path, n: int) -> Path:
    """Split SHA256SUMS.txt into up to n line slices (paths stay relative to the raw folder).

    Returns a file listing the slices, for ``xargs -a``.
    """
    lines = sums.read_text().splitlines(keepends=True)
    n = max(1, min(n, len(lines)))
    out.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        part = out / f"slice-{i:02d}.txt"
        part.write_text("".join(lines[i::n]))
        names.append(str(part))
    listing = out / "slices.lst"
    listing.write_text("".join(f"{x}\n" for x in names))
    return listing


def scenario(
    tmp: Path,
    label: str,
    make: Callable[[Path], int],
    runs: int,
    climb: list[str],
    sha256sum: str,
    xargs: str,
    baseline: list[str] | None = None,
) -> tuple[str, int, int, list[Method], float]:
    """Build one raw folder, time every method on it; returns (label, files, bytes, methods, setup s)."""
    from climb_cli.catalog import Catalog
    from climb_cli.settings import Settings
    from climb_cli.verify import verify_raw

    t0 = time.perf_counter()
    base = tmp / label
    data, recipes = base / "data", base / "recipes"
    raw = data / "raw" / NAME
    nbytes = make(raw)
    sums = common.write_sha256sums(raw)
    n_files = len(sums.read_text().splitlines())
    common.write_recipe(recipes, NAME, "bench-verify", "1.0.0")
    listing = _slices(sums, base / "slices", 8)
    setup = time.perf_counter() - t0
    common.say(f"  {label}: {n_files} files, {nbytes / 1e6:.0f} MB written in {setup:.1f} s")

    # Loopback only, even if something went looking for the source.
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CLIMB_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["CLIMB_PHYSIONET_URL"] = "http://127.0.0.1:9"
    env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    settings = Settings.from_env(data, [recipes]).with_(mirrors={"physionet": "http://127.0.0.1:9"})
    recipe = Catalog(settings.recipe_dirs).load(NAME)

    def library() -> common.Timing:
        c0, t = _self_cpu(), time.perf_counter()
        report, _bad = verify_raw(recipe, settings)
        wall = time.perf_counter() - t
        if not report.ok or report.checked != n_files or report.bytes != nbytes:
            raise SystemExit(f"verify_raw on {label}: {report.as_dict()}")
        return common.Timing(wall, _self_cpu() - c0)

    cli = [*climb, "--data-dir", str(data), "--recipes", str(recipes), "verify", NAME]
    methods = [
        Method(
            "cli",
            "climb verify (CLI subprocess)",
            lambda: common.run_timed(cli, env=env, what="climb verify"),
            common.Series("cli"),
        ),
        Method(
            "sha",
            "sha256sum -c (baseline)",
            lambda: common.run_timed(
                [sha256sum, "-c", "--quiet", "SHA256SUMS.txt"], cwd=raw, env=env, what="sha256sum -c"
            ),
            common.Series("sha"),
        ),
        Method(
            "xargs",
            "xargs -P2 sha256sum -c (baseline)",
            lambda: common.run_timed(
                [xargs, "-a", str(listing), "-P2", "-n1", sha256sum, "-c", "--quiet"],
                cwd=raw,
                env=env,
                what="xargs -P2 sha256sum -c",
            ),
            common.Series("xargs"),
        ),
        Method("lib", "verify_raw() (library, in-process)", library, common.Series("lib")),
        Method(
            "startup",
            "climb --version (CLI start-up alone)",
            lambda: common.run_timed([*climb, "--version"], env=env, what="climb --version"),
            common.Series("startup"),
        ),
    ]
    if baseline is not None:
        base_cli = [*baseline, "--data-dir", str(data), "--recipes", str(recipes), "verify", NAME]
        methods.insert(
            1,
            Method(
                "base",
                "climb verify, --baseline-src tree",
                lambda: common.run_timed(base_cli, env=env, cwd=base, what="baseline climb verify"),
                common.Series("base"),
            ),
        )
    for m in methods:  # warm the page cache; climb's manifest exists from now on for every timed run
        m.run()
    for run in range(runs):
        for m in common.rotate(methods, run):
            m.series.add(m.run())
    return label, n_files, nbytes, methods, setup


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--small-files", type=int, default=None, help="many-small: files (default 2000; --quick 500)"
    )
    p.add_argument("--large-count", type=int, default=None, help="few-large: files (default 4; --quick 2)")
    p.add_argument(
        "--large-mb", type=int, default=None, help="few-large: MB per file (default 100; --quick 50)"
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time climb verify from another source tree (e.g. `git archive <commit>` unpacked)",
    )
    args = p.parse_args(argv)
    runs = common.runs_from(args)
    n_small = args.small_files or (500 if args.quick else 2000)
    n_large = args.large_count or (2 if args.quick else 4)
    large_mb = args.large_mb or (50 if args.quick else 100)
    sha256sum = common.need_tool("sha256sum")
    xargs = common.need_tool("xargs")
    climb = common.climb_cmd()
    baseline = common.baseline_cmd(args.baseline_src) if args.baseline_src else None

    t_start = time.perf_counter()
    common.say(f"bench/verify.py: {common.machine_line()}")
    common.say(
        f"  {common.tool_version([sha256sum, '--version'])}; climb: {' '.join(climb)}; {runs} runs each"
    )
    results = []
    with common.bench_tmpdir("verify") as tmp:
        results.append(
            scenario(
                tmp,
                "many-small",
                lambda d: common.make_small_files(d, n_small),
                runs,
                climb,
                sha256sum,
                xargs,
                baseline,
            )
        )
        results.append(
            scenario(
                tmp,
                "few-large",
                lambda d: common.make_large_files(d, n_large, large_mb * 1024 * 1024),
                runs,
                climb,
                sha256sum,
                xargs,
                baseline,
            )
        )

    for label, n_files, nbytes, methods, _ in results:
        by = {m.key: m.series for m in methods}
        rows = []
        for m in methods:
            s = m.series
            rows.append(
                [
                    m.label,
                    common.fmt_s(s.median),
                    s.spread,
                    "-" if m.key == "startup" else f"{nbytes / 1e6 / s.median:,.0f}",
                    "-" if m.key == "startup" else f"{n_files / s.median:,.0f}",
                    common.fmt_s(s.cpu_median),
                    f"{s.cpu_median / s.median:.2f}",
                    "-" if m.key == "startup" else common.fmt_ratio(by["sha"].median / s.median),
                    "-" if m.key == "startup" else common.fmt_ratio(by["xargs"].median / s.median),
                ]
            )
        common.print_table(
            f"verify, {label}: {n_files} files, {nbytes / 1e6:.0f} MB, warm cache, median of {runs} runs (s)",
            [
                "method",
                "median s",
                "min–max",
                "MB/s",
                "files/s",
                "CPU s",
                "CPU/wall",
                "sha256sum/x",
                "xargs-P2/x",
            ],
            rows,
        )
        cli, sha, xa = by["cli"], by["sha"], by["xargs"]
        common.say(
            f"headline, {label}: climb verify (CLI) is {common.fmt_ratio(sha.median / cli.median)} "
            f"`sha256sum -c` and {common.fmt_ratio(xa.median / cli.median)} `xargs -P2 sha256sum -c`; "
            f"it kept {cli.cpu_median / cli.median:.2f} cores busy"
        )
        if "base" in by:
            base = by["base"]
            common.say(
                f"before/after, {label}: the --baseline-src tree {common.fmt_s(base.median)} s "
                f"(CPU {common.fmt_s(base.cpu_median)} s), this tree {common.fmt_s(cli.median)} s "
                f"(CPU {common.fmt_s(cli.cpu_median)} s): {common.fmt_ratio(base.median / cli.median)}"
            )
        given = sha.median / xa.median
        common.say(
            f"cores given, {label}: xargs -P2 ran {given:.2f}x as fast as sha256sum -c "
            "(2.00 = both cores free)"
            + ("" if given >= 1.8 else "; other work shared the CPUs, so the ratios above are off")
        )
    common.say(
        "\nThe CLI times include its start-up (the `climb --version` row); the library call has none."
        "\nsha256sum/x and xargs-P2/x: baseline median / this median (above 1: faster than the baseline)."
        "\nCPU s: user+sys seconds (the library call's includes the benchmark process's other threads);"
        "\nCPU/wall: the cores kept busy on average (2.00 = both cores of a 2-CPU machine)."
    )
    common.say(f"total bench time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
