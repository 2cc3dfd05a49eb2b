"""What the terminal shows: the transfer bar's columns per task."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from climb_cli import ui
from climb_cli.events import Outcome


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
