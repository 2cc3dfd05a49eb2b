"""Compile the network fault matrix (source x fault -> completes / clean failure) from the tests.

    python tools/fault_matrix.py                  # run the tests, print the Markdown table
    python tools/fault_matrix.py --update-readme  # ... and put it into README.md between the markers

Every source's test file has a parametrized `test_fault_matrix[<fault>]`; PhysioNet's faults are
covered by tests/test_transfer.py (mapped below). The tests are run with this file loaded as a pytest
plugin (`-p fault_matrix`): it wraps `climb_cli.acquire.download` before the test modules import it,
so it sees the DownloadReport of every download a test makes. A passing test whose last download
was complete is "completes"; a passing test whose last download failed (with the one clean line the
test asserts) is "clean failure"; a failing test is "FAIL". Fault ids of the different test files
are normalised (drop-mid-body -> drop, 429-burst -> 429, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
COLUMNS = [
    "drop",
    "short",
    "stall",
    "ignore_range",
    "change",
    "429",
    "503",
    "expired",
    "expired_mid_transfer",
    "endless",
    "trickle",
    "disk_full",
]
TITLES = {
    "drop": "drop mid-body",
    "short": "short body",
    "stall": "stall",
    "ignore_range": "Range ignored",
    "change": "changed (If-Range)",
    "429": "429 + Retry-After",
    "503": "503 + Retry-After",
    "expired": "signed URL expired before use",
    "expired_mid_transfer": "expired mid-transfer",
    "endless": "endless body",
    "trickle": "trickle (1 byte / 5 s)",
    "disk_full": "disk full",
}
ALIASES = {
    "drop-mid-body": "drop",
    "short-body": "short",
    "ignore-range": "ignore_range",
    "changed": "change",
    "429-burst": "429",
    "503-burst": "503",
    "expired-signed-url": "expired_mid_transfer",  # bucket.py: the link expires between request and resume
    "expired-mid-transfer": "expired_mid_transfer",
}
# PhysioNet (no signed URLs): the engine's fault tests
PHYSIONET = {
    "tests/test_transfer.py::test_resume_after_a_dropped_connection_is_byte_identical": ["drop"],
    "tests/test_transfer.py::test_short_body_closed_cleanly_is_resumed": ["short"],  # when it exists
    "tests/test_transfer.py::test_stall_past_the_read_timeout_is_retried": ["stall"],
    "tests/test_transfer.py::test_server_that_restarts_the_body_gives_an_identical_file[ignore_range]": [
        "ignore_range"
    ],
    "tests/test_transfer.py::test_server_that_restarts_the_body_gives_an_identical_file[change]": ["change"],
    "tests/test_transfer.py::test_503_and_429_bursts_with_retry_after": ["429", "503"],
    # issue 7: no size declared, so the --min-free reserve stops it (a run-stopping one-line DiskFullError)
    "tests/test_transfer.py::test_endless_body_of_unknown_size_stops_at_the_min_free_reserve": ["endless"],
    "tests/test_transfer.py::test_trickle_then_a_good_answer_completes": ["trickle"],
    "tests/test_transfer.py::test_a_full_disk_is_one_line_and_what_was_downloaded_stays_valid": ["disk_full"],
}
# engine tests that stand for another source's row: (source, fault)
ENGINE = {
    "tests/test_transfer.py::test_endless_body_stops_at_the_declared_size": [("http", "endless")],
}
# sources that hand out no signed links: their "expired" columns do not apply
NO_SIGNED_LINKS = {"physionet", "crawl", "tcia"}
START, END = "<!-- fault-matrix:start -->", "<!-- fault-matrix:end -->"


# ------------------------------------------------------------------------------- the pytest plugin
_reports: list[bool] = []
_results: dict[str, dict[str, Any]] = {}


def pytest_configure(config: Any) -> None:
    import climb_cli.acquire as acquire

    real = acquire.download

    from climb_cli.errors import ClimbError

    def recording(*args: Any, **kwargs: Any) -> Any:
        try:
            report = real(*args, **kwargs)
        except ClimbError:  # a one-line stop of the whole run (e.g. no space left): a clean failure
            _reports.append(False)
            raise
        _reports.append(bool(report.ok))
        return report

    acquire.download = recording  # type: ignore[assignment]


def pytest_runtest_setup(item: Any) -> None:
    _reports.clear()


def pytest_runtest_logreport(report: Any) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        _results[report.nodeid] = {
            "outcome": report.outcome,
            "last_download_ok": _reports[-1] if _reports else None,
            "downloads": len(_reports),
        }


def pytest_sessionfinish(session: Any) -> None:
    out = os.environ.get("CLIMB_FAULT_MATRIX_OUT")
    if out:
        Path(out).write_text(json.dumps(_results, indent=1))


# ------------------------------------------------------------------------------- the table
def _source(nodeid: str) -> str:
    module = Path(nodeid.split("::")[0]).stem.removeprefix("test_")
    return module.replace("_", "-")


def _fault(nodeid: str) -> str | None:
    m = re.search(r"::test_fault_matrix\[([^\]]+)\]$", nodeid)
    if not m:
        return None
    return ALIASES.get(m.group(1), m.group(1).replace("-", "_"))


def _cell(result: dict[str, Any]) -> str:
    if result["outcome"] == "skipped":
        return "skipped"
    if result["outcome"] != "passed":
        return "FAIL"
    if result["last_download_ok"] is None:
        return "passed"
    return "completes" if result["last_download_ok"] else "clean failure"


def table(results: dict[str, dict[str, Any]]) -> tuple[str, dict[str, int]]:
    grid: dict[str, dict[str, str]] = {}
    for nodeid, res in results.items():
        if nodeid in PHYSIONET:
            for fault in PHYSIONET[nodeid]:
                grid.setdefault("physionet", {})[fault] = _cell(res)
            continue
        if nodeid in ENGINE:
            for source, fault in ENGINE[nodeid]:
                grid.setdefault(source, {})[fault] = _cell(res)
            continue
        fault = _fault(nodeid)
        if fault is None:
            continue
        grid.setdefault(_source(nodeid), {})[fault] = _cell(res)
    extra = sorted({f for row in grid.values() for f in row} - set(COLUMNS))
    cols = COLUMNS + extra
    lines = [
        "| source | " + " | ".join(TITLES.get(c, c) for c in cols) + " |",
        "| --- | " + " | ".join("---" for _ in cols) + " |",
    ]
    totals: dict[str, int] = {}
    for source in sorted(grid, key=lambda s: (s != "physionet", s)):
        cells = [
            grid[source].get(c, "n/a" if source in NO_SIGNED_LINKS and c.startswith("expired") else "—")
            for c in cols
        ]
        for c in cells:
            totals[c] = totals.get(c, 0) + 1
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", totals


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--update-readme", action="store_true", help="write the table into README.md")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "results.json"
        env = {**os.environ, "CLIMB_FAULT_MATRIX_OUT": str(out)}
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(REPO / "tools"), str(REPO), env.get("PYTHONPATH")])
        )
        physionet_tests = sorted({n.split("::")[1].split("[")[0] for n in [*PHYSIONET, *ENGINE]})
        cmd = [
            sys.executable, "-m", "pytest", "-q", "-p", "fault_matrix", "-p", "no:cacheprovider",
            "tests/sources", "tests/test_transfer.py", "-k", " or ".join(["fault_matrix", *physionet_tests]),
        ]  # fmt: skip
        subprocess.run(cmd, cwd=REPO, env=env, check=False)
        results = json.loads(out.read_text()) if out.is_file() else {}
    text, totals = table(results)
    labels = {"—": "not covered", "n/a": "not applicable"}
    order = ["completes", "clean failure", "FAIL", "skipped", "passed", "—", "n/a"]
    summary = ", ".join(
        f"{totals[k]} {labels.get(k, k)}" for k in sorted(totals, key=lambda k: (order + [k]).index(k))
    )
    print(text + f"\nTotals: {summary}")
    if args.update_readme:
        readme = REPO / "README.md"
        body = readme.read_text()
        if START not in body or END not in body:
            print(f"README.md has no {START} ... {END} markers", file=sys.stderr)
            return 1
        head, _, rest = body.partition(START)
        _, _, tail = rest.partition(END)
        readme.write_text(f"{head}{START}\n{text}\nTotals: {summary}.\n{END}{tail}")
    return 0 if "FAIL" not in totals else 1


if __name__ == "__main__":
    sys.exit(main())
