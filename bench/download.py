"""Benchmark: `climb download` vs `wget -r`, `xargs -P curl` (many small files) and curl (one large).

**Many small files.** A project of many small files (1-30 KB, PTB-XL-like nested folders, plus
SHA256SUMS.txt) is served on 127.0.0.1 by the fake PhysioNet server with 50 ms added to every request
(listings, robots.txt and errors included: what a proxy or a long round trip adds).  Each run starts from a
fresh empty folder and times, as subprocesses:

* ``wget -r -N -c -np -nH --cut-dirs=3 -q -P D <files url>/``: the command PhysioNet's project pages
  recommend (sources.md 1.7), including what it costs a user: robots.txt and one index.html per folder;
* ``xargs -P8 -n2 curl -sSf --create-dirs -o`` (and ``-P4``) over the *same file list* (every file of
  SHA256SUMS.txt and SHA256SUMS.txt itself, given to it for free): one curl per file, 8 (4) at a time;
* ``climb --data-dir D --recipes R download <name> --connections 4`` and ``--connections 8``.

**One large file** (1 GiB; ``--large-mb``) on loopback without added latency: ``climb download`` (which
hashes while streaming and checks the sum before its atomic rename) against ``curl -o F`` then
``sha256sum F`` in one shell command.

The methods are interleaved (their order rotates each run).  Every result is checked complete (file count
every run; ``sha256sum -c`` once each).  Requests and TCP connections are counted at the server.
climb's bytecode is cached under the bench's temp dir (as a pip-installed wheel has it), even where
PYTHONDONTWRITEBYTECODE is set, and one untimed climb run warms it.
Run: ``python bench/download.py [--quick]``.
"""

from __future__ import annotations

import math
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

PROJECT, VERSION, NAME = "bench-small", "1.0.0", "benchdl"
BIG_PROJECT, BIG_NAME = "bench-large", "benchdlbig"


@dataclass
class Method:
    key: str
    label: str
    connections: int  # parallel connections, for the latency floor
    command: Callable[[Path], list[str]]
    result_dir: Callable[[Path], Path]  # where the project's files land under the target folder
    baseline: str = ""  # key of the xargs method with the same parallelism (climb rows)
    lists_first: bool = False  # fetches SHA256SUMS.txt alone before the files (climb)
    cwd: bool = False  # runs in the target folder (xargs/curl write relative paths)
    series: common.Series | None = None
    requests: list[int] = field(default_factory=list)
    bytes_served: int = 0
    conns: list[int] = field(default_factory=list)  # TCP connections accepted by the server
    first_request: list[float] = field(default_factory=list)  # seconds from launch to the first request
    last_request: list[float] = field(default_factory=list)  # seconds from the last request's start to exit
    gap_ms: list[float] = field(default_factory=list)  # median time between requests on one connection


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


def _clean_env(pycache: Path, **extra: str) -> dict[str, str]:
    """This environment without proxies or climb settings that would change what is measured, and with
    climb's bytecode cached (an installed wheel has its .pyc files; an editable checkout under
    PYTHONDONTWRITEBYTECODE=1 would compile every module on every run)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("CLIMB_")
        and k.lower() not in ("http_proxy", "https_proxy", "all_proxy")
        and k != "PYTHONDONTWRITEBYTECODE"
    }
    env["no_proxy"] = env["NO_PROXY"] = "127.0.0.1,localhost"
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra)
    return env


def _climb(climb: list[str], recipes: Path, name: str, extra: list[str]) -> Callable[[Path], list[str]]:
    return lambda d: [*climb, "--data-dir", str(d), "--recipes", str(recipes), "download", name, *extra]


def _time_one(srv, m: Method, target: Path, env: dict[str, str]) -> common.Timing:  # type: ignore[no-untyped-def]
    """Run one method into target, recording the server's view of it (requests, connections, timing)."""
    start, conns0 = _settled_log_length(srv), srv.connections
    launched = time.time()
    timing = common.run_timed(m.command(target), env=env, cwd=target if m.cwd else None, what=m.label)
    exited = launched + timing.wall
    end = _settled_log_length(srv)
    assert m.series is not None
    m.series.add(timing)
    records = srv.log[start:end]
    m.requests.append(len(records))
    m.conns.append(srv.connections - conns0)
    m.bytes_served = sum(r.bytes_sent for r in records)
    starts = sorted(r.started for r in records)
    m.first_request.append(starts[0] - launched)
    m.last_request.append(exited - starts[-1])
    per_conn: dict[int, list[float]] = {}
    for r in records:
        per_conn.setdefault(r.client_port, []).append(r.started)
    gaps = []
    for s in per_conn.values():
        s.sort()
        gaps += [b - a for a, b in zip(s, s[1:], strict=False)]
    m.gap_ms.append(statistics.median(gaps) * 1000 if gaps else float("nan"))
    return timing


def _check(m: Method, target: Path, expected: int, sha256sum: str, first: bool) -> None:
    out = m.result_dir(target)
    got = common.count_files(out) - common.count_files(out, name="index.html")
    if got != expected:
        raise SystemExit(f"{m.label}: {got} files in {out}, expected {expected}")
    if first:  # an independent check of the bytes, once per method
        common.run_timed(
            [sha256sum, "-c", "--quiet", "SHA256SUMS.txt"], cwd=out, what=f"sha256sum -c ({m.key})"
        )


def small_files(args, tools: dict[str, str], climb: list[str], tmp: Path, env0: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from climb_cli.fakes.physionet import FakePhysioNet, FakeProject

    runs = common.runs_from(args)
    n_files = args.files or (150 if args.quick else 280)
    mirror = tmp / "mirror" / PROJECT / VERSION
    nbytes = common.make_small_files(mirror, n_files)
    common.write_sha256sums(mirror)
    expected = n_files + 1  # + SHA256SUMS.txt
    dirs = sum(1 for d in mirror.rglob("*") if d.is_dir()) + 1
    recipes = tmp / "recipes"
    common.write_recipe(recipes, NAME, PROJECT, VERSION)
    rel = sorted(p.relative_to(mirror).as_posix() for p in mirror.rglob("*") if p.is_file())
    common.say(
        f"\nmany small files: {expected} files incl. SHA256SUMS.txt ({nbytes / 1e6:.1f} MB, 1-30 KB each, "
        f"{dirs} folders), {runs} runs per method, latency {args.latency * 1000:.0f} ms per request"
    )
    startup = common.Series("climb --version")
    with FakePhysioNet([FakeProject(PROJECT, VERSION, mirror, access="open")], latency=args.latency) as srv:
        url = srv.files_url(PROJECT, VERSION)
        env = {**env0, "CLIMB_PHYSIONET_URL": srv.base_url}
        url_list = tmp / "files.lst"  # "path url" per line: xargs -n2 gives curl `-o path url`
        url_list.write_text("".join(f"{p} {url}{p}\n" for p in rel))
        wget, curl, xargs = tools["wget"], tools["curl"], tools["xargs"]

        def xargs_curl(p: int) -> Callable[[Path], list[str]]:
            return lambda d: [
                xargs, "-a", str(url_list), f"-P{p}", "-n2", curl, "-sSf", "--create-dirs", "-o",
            ]  # fmt: skip

        methods = [
            Method(
                "wget",
                "wget -r -N -c -np (PhysioNet's command)",
                1,
                lambda d: [wget, "-r", "-N", "-c", "-np", "-nH", "--cut-dirs=3", "-q", "-P", str(d), url],
                lambda d: d,
            ),
            Method("xargs8", "xargs -P8 curl (same file list)", 8, xargs_curl(8), lambda d: d, cwd=True),
            Method("xargs4", "xargs -P4 curl (same file list)", 4, xargs_curl(4), lambda d: d, cwd=True),
        ]
        trees = [("climb", "climb download", climb, False)]
        if args.baseline_src:  # the same commands, climb's code from another tree (run in the target dir)
            trees.append(("base", "baseline climb", common.baseline_cmd(args.baseline_src), True))
        for key, label, cmd, cwd in trees:
            for n in (4, 8):
                methods.append(
                    Method(
                        f"{key}{n}",
                        f"{label} --connections {n}" + (" (default)" if n == 4 and key == "climb" else ""),
                        n,
                        _climb(cmd, recipes, NAME, ["--connections", str(n)]),
                        lambda d: d / "raw" / NAME,
                        baseline=f"xargs{n}",
                        lists_first=True,
                        cwd=cwd,
                    )
                )
        if args.diagnose:  # what climb would take without its fsync calls (monkeypatched, not edited)
            no_fsync = (
                "import os, sys; os.fsync = lambda fd: None; sys.argv[0] = 'climb'; "
                "from climb_cli.cli import main; main()"
            )
            methods.append(
                Method(
                    "nofsync",
                    "climb --connections 8, no fsync (diagnostic)",
                    8,
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
                        "--connections",
                        "8",
                    ],  # fmt: skip
                    lambda d: d / "raw" / NAME,
                    lists_first=True,
                )
            )
        for m in methods:
            m.series = common.Series(m.label)
        for m in methods:  # one untimed run of each climb tree compiles its bytecode
            if m.key in ("climb8", "base8"):
                warm = tmp / "targets" / "warm-up"
                warm.mkdir(parents=True)
                common.run_timed(m.command(warm), env=env, cwd=warm, what="warm-up")
                shutil.rmtree(warm)
        for run in range(runs):
            startup.add(common.run_timed([*climb, "--version"], env=env, what="climb --version"))
            for m in common.rotate(methods, run):
                target = tmp / "targets" / f"{m.key}-{run}"
                target.mkdir(parents=True)
                timing = _time_one(srv, m, target, env)
                _check(m, target, expected, tools["sha256sum"], run == 0)
                shutil.rmtree(target)
                common.say(f"  run {run + 1}/{runs} {m.label:<44} {timing.wall:6.2f} s")
        if srv.errors:
            raise SystemExit(f"the fake server hit errors: {srv.errors[:3]}")

    by_key = {m.key: m for m in methods}
    wget_m = by_key["wget"]
    assert wget_m.series is not None
    rows = []
    for m in methods:
        s = m.series
        assert s is not None
        reqs = int(statistics.median(m.requests))
        # The latency floor: requests one after another on each connection, nothing else taking time.
        if m.lists_first:  # SHA256SUMS.txt first, alone; then the files spread over the connections
            floor = (1 + math.ceil((reqs - 1) / m.connections)) * args.latency
        else:
            floor = math.ceil(reqs / m.connections) * args.latency
        base = by_key.get(m.baseline)
        rows.append(
            [
                m.label,
                common.fmt_s(s.median),
                s.spread,
                reqs,
                int(statistics.median(m.conns)),
                common.fmt_s(statistics.median(m.first_request)),
                common.fmt_s(statistics.median(m.last_request)),
                f"{statistics.median(m.gap_ms):.0f}" if statistics.median(m.conns) < reqs else "-",
                common.fmt_s(s.cpu_median),
                common.fmt_s(floor),
                "1.00x" if m is wget_m else common.fmt_ratio(wget_m.series.median / s.median),
                common.fmt_ratio(base.series.median / s.median) if base and base.series else "",
            ]
        )
    common.print_table(
        f"download: {expected} files, {nbytes / 1e6:.1f} MB, {args.latency * 1000:.0f} ms/request, "
        f"median of {runs} runs (seconds)",
        [
            "method",
            "median s",
            "min–max",
            "requests",
            "conns",
            "1st req s",
            "last req→exit s",
            "ms/req/conn",
            "client CPU s",
            "latency floor s",
            "wget/x",
            "xargs-curl/x",
        ],
        rows,
    )
    common.say(
        f"\nclimb start-up alone (`climb --version`, once per run): median {common.fmt_s(startup.median)} s "
        f"({startup.spread}), CPU {common.fmt_s(startup.cpu_median)} s; it is part of the climb times."
        f"\nlatency floor = requests in sequence per connection x {args.latency * 1000:.0f} ms; "
        "client CPU = user+sys seconds of the measured process (and its children)."
        "\nrequests and conns (TCP connections accepted) are counted at the server; 1st req s = launch to "
        "the first request; last req→exit s = the last request's arrival to the client's exit; "
        f"ms/req/conn = median time between request starts on one connection ({args.latency * 1000:.0f} ms "
        "of it is the added latency; - where each request had its own connection); "
        "xargs-curl/x = xargs -P<same connections> curl median ÷ this median."
    )


def large_file(args, tools: dict[str, str], climb: list[str], tmp: Path, env0: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    from climb_cli.fakes.physionet import FakePhysioNet, FakeProject

    runs = common.runs_from(args)
    mb = args.large_mb if args.large_mb is not None else (256 if args.quick else 1024)
    mirror = tmp / "mirror-large" / BIG_PROJECT / VERSION
    size = common.make_large_files(mirror, 1, mb * 1024 * 1024)
    common.write_sha256sums(mirror)
    recipes = tmp / "recipes-large"
    common.write_recipe(recipes, BIG_NAME, BIG_PROJECT, VERSION)
    rel = "large/part-00.bin"
    common.say(f"\none large file: {mb} MiB on loopback, no added latency, {runs} runs per method")
    with FakePhysioNet([FakeProject(BIG_PROJECT, VERSION, mirror, access="open")]) as srv:
        url = srv.files_url(BIG_PROJECT, VERSION, rel)
        env = {**env0, "CLIMB_PHYSIONET_URL": srv.base_url}
        curl_sh = f'"{tools["curl"]}" -sSf -o part.bin "{url}" && "{tools["sha256sum"]}" part.bin'
        methods = [
            Method(
                "curl", "curl -o, then sha256sum", 1, lambda d: ["sh", "-c", curl_sh], lambda d: d, cwd=True
            ),
            Method(
                "climb",
                "climb download (hash while streaming)",
                1,
                _climb(climb, recipes, BIG_NAME, []),
                lambda d: d / "raw" / BIG_NAME,
            ),
        ]
        if args.baseline_src:
            methods.append(
                Method(
                    "base",
                    "baseline climb download",
                    1,
                    _climb(common.baseline_cmd(args.baseline_src), recipes, BIG_NAME, []),
                    lambda d: d / "raw" / BIG_NAME,
                    cwd=True,
                )
            )
        for m in methods:
            m.series = common.Series(m.label)
        for run in range(runs):
            for m in common.rotate(methods, run):
                target = tmp / "targets-large" / f"{m.key}-{run}"
                target.mkdir(parents=True)
                timing = _time_one(srv, m, target, env)
                got = (target / "part.bin") if m.key == "curl" else (m.result_dir(target) / rel)
                if got.stat().st_size != size:
                    raise SystemExit(f"{m.label}: {got} has {got.stat().st_size} bytes, expected {size}")
                shutil.rmtree(target)
                common.say(f"  run {run + 1}/{runs} {m.label:<44} {timing.wall:6.2f} s")
        if srv.errors:
            raise SystemExit(f"the fake server hit errors: {srv.errors[:3]}")
    curl_m = methods[0]
    assert curl_m.series is not None
    rows = []
    for m in methods:
        s = m.series
        assert s is not None
        rows.append(
            [
                m.label,
                common.fmt_s(s.median),
                s.spread,
                f"{size / s.median / 1e6:.0f}",
                common.fmt_s(s.cpu_median),
                int(statistics.median(m.requests)),
                "1.00x" if m is curl_m else common.fmt_ratio(curl_m.series.median / s.median),
            ]
        )
    common.print_table(
        f"download + sha256 of one {mb} MiB file on loopback, median of {runs} runs (seconds)",
        ["method", "median s", "min–max", "MB/s", "client CPU s", "requests", "curl+sha256sum/x"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument(
        "--files", type=int, default=None, help="small files in the project (default 280; --quick 150)"
    )
    p.add_argument("--latency", type=float, default=0.05, help="seconds added per request (default 0.05)")
    p.add_argument(
        "--large-mb", type=int, default=None, help="MiB of the large file (default 1024; --quick 256)"
    )
    p.add_argument(
        "--baseline-src",
        type=Path,
        default=None,
        metavar="DIR",
        help="also time climb from another source tree (e.g. `git archive <commit>` unpacked): before/after",
    )
    p.add_argument("--no-large", action="store_true", help="skip the large-file comparison")
    p.add_argument("--no-small", action="store_true", help="skip the many-small-files comparison")
    p.add_argument(
        "--diagnose", action="store_true", help="also time climb with os.fsync disabled (where its time goes)"
    )
    args = p.parse_args(argv)
    common.runs_from(args)
    if args.files is not None and args.files < 3:
        raise SystemExit("--files must be >= 3")
    tools = {t: common.need_tool(t) for t in ("wget", "curl", "xargs", "sha256sum")}
    climb = common.climb_cmd()
    t_start = time.perf_counter()
    common.say(f"bench/download.py: {common.machine_line()}")
    common.say(
        f"  {common.tool_version([tools['wget'], '--version'])}; "
        f"{common.tool_version([tools['curl'], '--version'])}; climb: {' '.join(climb)}"
    )
    with common.bench_tmpdir("download") as tmp:
        env0 = _clean_env(tmp / "pycache")
        if not args.no_small:
            small_files(args, tools, climb, tmp, env0)
        if not args.no_large:
            large_file(args, tools, climb, tmp, env0)
    common.say(f"total bench time {time.perf_counter() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
