"""What the terminal shows: the transfer bar's columns per task; and what a run says while it waits
(ui.report_waits over net.retry's reports) with stdout and stderr not a terminal (a batch job's log):
every retry wait is one line naming the dataset, the file or URL, the host, the reason, try n of N and
the seconds until the next try."""

from __future__ import annotations

import io
import re
import socket
from pathlib import Path

import pytest
from rich.console import Console

from climb_cli import ui
from climb_cli.events import Outcome
from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import run_climb, write_recipe


def test_transfer_bar_counts_files_and_sizes_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=out, force_terminal=True, width=200, color_system=None))
    bar = ui.TransferBar("toy")
    bar.start(243, 2_430_000)
    bar.advance(1_215_000)
    for _ in range(121):
        bar.file_done(Outcome(object(), "downloaded", 10_000))
    bar._bar.refresh()  # type: ignore[union-attr]
    text = out.getvalue()
    bar.stop()
    lines = text.replace("\r", "\n").splitlines()[::-1]  # the last refresh first
    files_line = next(line for line in lines if "toy files" in line)
    bytes_line = next(line for line in lines if "toy bytes" in line)
    assert "121/243" in files_line and "bytes" not in files_line.replace("toy files", "")
    assert "/s" not in files_line  # no rate in "bytes/s" for a file count
    assert "1.2/2.4 MB" in bytes_line


WAIT = re.compile(
    r"^waiting: toyecg: (\S+) from 127\.0\.0\.1:(\d+): (.+); try (\d+) of (\d+) in [\d.]+s$", re.M
)


def _recipes(tmp_path: Path, include: str = "RECORDS") -> str:
    src = f"  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [{include}]\n"
    return str(write_recipe(tmp_path / "recipes", "toyecg", src).parent)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_dry_run_against_an_unreachable_host_says_every_wait(tmp_path: Path) -> None:
    port = _closed_port()
    env = {"CLIMB_PHYSIONET_URL": f"http://127.0.0.1:{port}", "CLIMB_RETRIES": "2", "CLIMB_BACKOFF": "0.05"}
    r = run_climb("--data-dir", str(tmp_path / "d"), "--recipes", _recipes(tmp_path), "download", "toyecg",
                  "--dry-run", env=env)  # fmt: skip
    assert r.returncode == 1
    waits = WAIT.findall(r.stderr)
    assert [(w[0], int(w[1]), w[2], w[3], w[4]) for w in waits] == [
        ("SHA256SUMS.txt", port, "ConnectionError", "2", "3"),
        ("SHA256SUMS.txt", port, "ConnectionError", "3", "3"),
    ], r.stderr
    assert "after 3 tries: ConnectionError" in r.stderr.splitlines()[-1]


def test_download_and_repair_say_their_waits_when_not_a_terminal(
    tmp_path: Path, server: FakePhysioNet
) -> None:
    env = {"CLIMB_PHYSIONET_URL": server.base_url, "CLIMB_BACKOFF": "0.05"}
    base = ("--data-dir", str(tmp_path / "d"), "--recipes", _recipes(tmp_path))
    server.faults.add("status", path_glob="*/RECORDS", status=503, retry_after="1")
    r = run_climb(*base, "download", "toyecg", env=env)
    assert r.returncode == 0, r.stderr
    assert WAIT.findall(r.stderr) == [("RECORDS", server.base_url.rsplit(":", 1)[1], "HTTP 503", "2", "9")], (
        r.stderr
    )
    (tmp_path / "d" / "raw" / "toyecg" / "RECORDS").unlink()
    server.faults.add("status", path_glob="*/RECORDS", status=503, times=2)
    r = run_climb(*base, "verify", "toyecg", "--repair", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [w[2:] for w in WAIT.findall(r.stderr)] == [("HTTP 503", "2", "9"), ("HTTP 503", "3", "9")]
