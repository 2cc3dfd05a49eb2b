"""Terminal rendering with rich: progress bars for transfers and preprocessing, human sizes.

Everything printed goes through `redact` first, so a secret that reached a message by accident
is still not shown. rich's progress module is imported when a bar is first built, not at start-up
(`climb --version` and a non-terminal run never draw one), and the consoles do not turn `:name:`
into emoji (a file name like `a:smile:b` is printed as it is, and rich's emoji table is not loaded).
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import TYPE_CHECKING

from rich.console import Console

from climb_cli.events import Outcome, Progress
from climb_cli.redaction import redact

if TYPE_CHECKING:
    from rich.progress import Progress as RichBar
    from rich.progress import ProgressColumn, TaskID

console = Console(highlight=False, soft_wrap=True, emoji=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, emoji=False)


def human(n: int | float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def say(text: str) -> None:
    console.print(redact(text), markup=False)


def warn(text: str) -> None:
    err_console.print(redact(text), markup=False, style="yellow")


def error(text: str) -> None:
    err_console.print("climb: error: " + redact(text), markup=False, style="red")


def _transfer_columns() -> list[ProgressColumn]:
    """The columns of a TransferBar: description, bar, percent, files or sizes, rate, ETA."""
    from rich.console import RenderableType
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        ProgressColumn,
        Task,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    class PerTask(ProgressColumn):
        """A column that renders per task unit: a count for the files task ("12/243"), sizes and a
        rate for the bytes task ("1.2/3.4 MB 5.6 MB/s"); never a file count labelled in bytes."""

        def __init__(self, **by_unit: ProgressColumn | None) -> None:
            super().__init__()
            self.by_unit = by_unit

        def render(self, task: Task) -> RenderableType:
            column = self.by_unit.get(task.fields.get("unit", ""))
            return column.render(task) if column is not None else ""

    return [
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        PerTask(files=MofNCompleteColumn(), bytes=DownloadColumn()),
        PerTask(files=None, bytes=TransferSpeedColumn()),
        TimeRemainingColumn(),
    ]


def note(text: str) -> None:
    """A progress note (e.g. a retry wait) on stderr: above the live bars on a terminal, a plain line in a
    log when stderr is not a terminal."""
    err_console.print(redact(text), markup=False, style="dim")


class _WaitHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            note("waiting: " + record.getMessage())
        except Exception:  # a note must never break a download
            self.handleError(record)


def report_waits() -> None:
    """Say every retry wait (net.retry reports them to the ``climb.net`` logger) on stderr, terminal or
    not: "waiting: <what>: <why>; try n of N in s"."""
    log = logging.getLogger("climb.net")
    if not any(isinstance(h, _WaitHandler) for h in log.handlers):
        log.addHandler(_WaitHandler(logging.INFO))
        log.setLevel(logging.INFO)


class TransferBar(Progress):
    """Files, bytes, rate and ETA of a download; quiet when stdout is not a terminal."""

    def __init__(self, label: str, *, report_failures: bool = True) -> None:
        self.label = label
        self.report_failures = report_failures  # False: the caller lists failed files itself
        self._bar: RichBar | None = None
        self._lock = threading.Lock()
        self.failed = 0

    def start(self, total_files: int, total_bytes: int | None) -> None:
        if not console.is_terminal:  # nothing to draw (a log, a pipe): no bar, and no rich.progress import
            return
        from rich.progress import Progress as RichBar

        self._bar = RichBar(*_transfer_columns(), console=console, transient=True)
        self._bar.start()
        self._files = self._bar.add_task(f"{self.label} files", total=total_files, unit="files")
        self._bytes = self._bar.add_task(f"{self.label} bytes", total=total_bytes, unit="bytes")

    def advance(self, nbytes: int) -> None:
        if self._bar:
            self._bar.update(self._bytes, advance=nbytes)

    def file_done(self, outcome: Outcome) -> None:
        if self._bar:
            self._bar.update(self._files, advance=1)
            if outcome.status == "skipped":
                self._bar.update(self._bytes, advance=outcome.size)
        if outcome.status == "failed" and not outcome.access_denied and self.report_failures:
            with self._lock:
                self.failed += 1
                if self.failed <= 5:
                    warn(f"  failed {outcome.file.path}: {outcome.error}")

    def skipped(self, files: int, nbytes: int) -> None:
        if self._bar and files:  # one update for them all, not one per file
            self._bar.update(self._files, advance=files)
            self._bar.update(self._bytes, advance=nbytes)

    def message(self, text: str) -> None:
        note(text)

    def stop(self) -> None:
        if self._bar:
            self._bar.stop()


def unit_bar(label: str, total: int | None) -> tuple[RichBar, TaskID]:
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeRemainingColumn
    from rich.progress import Progress as RichBar

    bar = RichBar(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    return bar, bar.add_task(label, total=total)


def is_tty() -> bool:
    return sys.stdout.isatty()
