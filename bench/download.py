"""Benchmark: `climb download` against PhysioNet's own recommended `wget -r -N -c -np`, many small files.

A project of many small files (1-30 KB, PTB-XL-like nested folders, plus SHA256SUMS.txt) is served on
127.0.0.1 by the fake PhysioNet server with 50 ms added to every request (a plausible round trip to
physionet.org).  Each run starts from a fresh empty folder and times, as subprocesses:

* ``climb --data-dir D --recipes R download <name>`` (default connections, 4 per host),
* the same with ``--connections 8``,
* ``wget -r -N -c -np -nH --cut-dirs=3 -q -P D <files url>/``: the command PhysioNet's project pages
  recommend (sources.md 1.7), including what it costs a user: robots.txt and one index.html per folder.

The methods are interleaved (their order rotates each run).  Both results are checked complete (file
count every run; ``sha256sum -c`` once each).  Run: ``python bench/download.py [--quick]``.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PROJECT, VERSION, NAME = "bench-small", "1.0.0", "benchdl"


@dataclass
class Method:
    key: str
    label: str
    connections: int  # parallel connections, for the latency floor
    command: Callable[[Path], list[str]]
    result_dir: Callable[[Path], Path]  # where the project's files land under the target folder
    series: common.Series | None = None
    requests: int = 0
    bytes_served: int = 0
    first_request: list[float] = field(default_factory=list)  # seconds from launch to the first request
    gap_ms: list[float] = field(default_factory=list)  # median time between requests on one connection
    conns_used: int = 0


def _settled_log_length(server, wait: float = 0.5) -> int:  # type: ignore[no-untyped-def]
    """The request log length once it stops growing (the handler logs just after the client has its reply)."""
    deadline = time.monotonic() + wait
    n = len(server.log)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        m = len(server.log)
        if m == n:
            return n
        n = m
    return n


def _clean_env(**extra: str) -> dict[str, str]:
    """This environment without proxies or climb settings that would change what is measured."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLIMB_") and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
    }
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=None, help="files in the project (default 300; --quick 150)")
    p.add_argument("--latency", type=float, default=0.05, help="seconds added per request (default 0.05)")
    p.add_argument(
        "--diagnose", action="store_true", help="also time climb with os.fsync disabled (where its time goes)"
    )
    args = p.parse_args(argv)
    runs = common.runs_from(args)
    n_files = args.files or (150 if args.quick else 300)
    if n_files < 3:
        raise SystemExit("--files must be >= 3")
    wget = common.need_tool("wget")
    sha256sum = common.need_tool("sha256sum")
    climb = common.climb_cmd()

    from climb_cli.fakes.physionet import FakePhysioNet, FakeProject

    t_start = time.perf_counter()
    common.say(f"bench/download.py: {common.machine_line()}")
    common.say(f"  {common.tool_version([wget, '--version'])}; climb: {' '.join(climb)}")
    with common.bench_tmpdir("download") as tmp:
        mirror = tmp / "mirror" / PROJECT / VERSION
        nbytes = common.make_small_files(mirror, n_files)
        common.write_sha256sums(mirror)
        expected = n_files + 1  # + SHA256SUMS.txt
        dirs = sum(1 for d in mirror.rglob("*") if d.is_dir()) + 1
        recipes = tmp / "recipes"
        common.write_recipe(recipes, NAME, PROJECT, VERSION)
        common.say(
            f"  project: {expected} files incl. SHA256SUMS.txt ({nbytes / 1e6:.1f} MB, 1-30 KB each, "
            f"{dirs} folders), "
            f"{runs} runs per method, latency {args.latency * 1000:.0f} ms per request"
        )
        startup = common.Series("climb --version")

        with FakePhysioNet(
            [FakeProject(PROJECT, VERSION, mirror, access="open")], latency=args.latency
        ) as srv:
            url = srv.files_url(PROJECT, VERSION)
            env = _clean_env(CLIMB_PHYSIONET_URL=srv.base_url)

            def climb_download(extra: list[str]) -> Callable[[Path], list[str]]:
                return lambda d: [
                    *climb,
                    "--data-dir",
                    str(d),
                    "--recipes",
                    str(recipes),
                    "download",
                    NAME,
                    *extra,
                ]

            methods = [
                Method(
                    "wget",
                    "wget -r -N -c -np (PhysioNet's command)",
                    1,
                    lambda d: [wget, "-r", "-N", "-c", "-np", "-nH", "--cut-dirs=3", "-q", "-P", str(d), url],
                    lambda d: d,
                ),
                Method(
                    "climb",
                    "climb download (default: 4 conns)",
                    4,
                    climb_download([]),
                    lambda d: d / "raw" / NAME,
                ),
                Method(
                    "climb8",
                    "climb download --connections 8",
                    8,
                    climb_download(["--connections", "8"]),
                    lambda d: d / "raw" / NAME,
                ),
            ]
            if args.diagnose:  # what climb would take without its per-file fsync (monkeypatched, not edited)
                no_fsync = (
                    "import os, sys; os.fsync = lambda fd: None; sys.argv[0] = 'climb'; "
                    "from climb_cli.cli import main; main()"
                )
                methods.append(
                    Method(
                        "nofsync",
                        "climb, os.fsync disabled (diagnostic)",
                        4,
                        lambda d: [
                            sys.executable,
                            "-c",
                            no_fsync,
                            "--data-dir",
                            str(d),
                            "--recipes",
                            str(recipes),
                            "download",
                            NAME,
                        ],
                        lambda d: d / "raw" / NAME,
                    )
                )
            for m in methods:
                m.series = common.Series(m.label)
            for run in range(runs):
                startup.add(common.run_timed([*climb, "--version"], env=env, what="climb --version"))
                for m in common.rotate(methods, run):
                    target = tmp / "targets" / f"{m.key}-{run}"
                    target.mkdir(parents=True)
                    start = _settled_log_length(srv)
                    launched = time.time()
                    timing = common.run_timed(m.command(target), env=env, what=m.label)
                    end = _settled_log_length(srv)
                    assert m.series is not None
                    m.series.add(timing)
                    records = srv.log[start:end]
                    m.requests = len(records)
                    m.bytes_served = sum(r.bytes_sent for r in records)
                    m.first_request.append(min(r.started for r in records) - launched)
                    per_conn: dict[int, list[float]] = defaultdict(list)
                    for r in records:
                        per_conn[r.client_port].append(r.started)
                    gaps = []
                    for starts in per_conn.values():
                        starts.sort()
                        gaps += [b - a for a, b in zip(starts, starts[1:], strict=False)]
                    m.gap_ms.append(statistics.median(gaps) * 1000 if gaps else float("nan"))
                    m.conns_used = len(per_conn)
                    out = m.result_dir(target)
                    got = common.count_files(out) - common.count_files(out, name="index.html")
                    if got != expected:
                        raise SystemExit(f"{m.label}: {got} files in {out}, expected {expected}")
                    if run == 0:  # an independent check of the bytes, once per method
                        common.run_timed(
                            [sha256sum, "-c", "--quiet", "SHA256SUMS.txt"],
                            cwd=out,
                            what=f"sha256sum -c ({m.key})",
                        )
                    shutil.rmtree(target)
                    common.say(f"  run {run + 1}/{runs} {m.label:<40} {timing.wall:6.2f} s")
            if srv.errors:
                raise SystemExit(f"the fake server hit errors: {srv.errors[:3]}")

    wget_m = methods[0]
    assert wget_m.series is not None
    rows = []
    for m in methods:
        s = m.series
        assert s is not None
        # The latency floor: requests one after another on each connection, nothing else taking time.
        if m.key == "wget":
            floor = m.requests * args.latency
        else:  # SHA256SUMS.txt first, alone; then the files spread over the connections
            floor = (1 + math.ceil((m.requests - 1) / m.connections)) * args.latency
        rows.append(
            [
                m.label,
                common.fmt_s(s.median),
                s.spread,
                f"{expected / s.median:.1f}",
                m.requests,
                f"{m.bytes_served / 1e6:.1f}",
                m.conns_used,
                common.fmt_s(statistics.median(m.first_request)),
                f"{statistics.median(m.gap_ms):.0f}",
                common.fmt_s(s.cpu_median),
                common.fmt_s(floor),
                "1.00x (baseline)" if m is wget_m else common.fmt_ratio(wget_m.series.median / s.median),
            ]
        )
    common.print_table(
        f"download: {expected} files, {nbytes / 1e6:.1f} MB, {args.latency * 1000:.0f} ms/request, "
        f"median of {runs} runs (seconds)",
        [
            "method",
            "median s",
            "min–max",
            "files/s",
            "requests",
            "MB served",
            "conns",
            "1st req s",
            "ms/req/conn",
            "client CPU s",
            "latency floor s",
            "speed-up (wget/x)",
        ],
        rows,
    )
    common.say(
        f"\nclimb start-up alone (`climb --version`, once per run): median {common.fmt_s(startup.median)} s "
        f"({startup.spread}), CPU {common.fmt_s(startup.cpu_median)} s; it is part of the climb times."
        f"\nlatency floor = requests in sequence per connection x {args.latency * 1000:.0f} ms; "
        "client CPU = user+sys seconds of the measured process."
        "\n1st req s = launch to first request at the server; ms/req/conn = median time between request "
        f"starts on one connection ({args.latency * 1000:.0f} ms of it is the added latency); "
        "conns = TCP connections used."
    )
    common.say(f"total bench time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
