"""What the transfer engine reports while it works (kept light: the CLI imports it at start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class Outcome:
    file: Any  # a sources.base.RemoteFile
    status: str  # "downloaded" | "skipped" | "failed"
    size: int = 0
    sha256: str = ""
    error: str = ""
    access_denied: bool = False
    reason: str = ""  # an access refusal's AccessError.reason, when the source knew it (no credentials, ...)


class Progress:
    """Callbacks of a download; the CLI renders them with rich. The default does nothing."""

    def start(self, total_files: int, total_bytes: int | None) -> None: ...
    def advance(self, nbytes: int) -> None: ...
    def file_done(self, outcome: Outcome) -> None: ...

    def skipped(self, files: int, nbytes: int) -> None:
        """Files found present and unchanged before any transfer, in one call (a rerun: possibly
        millions at once); they do not pass through `file_done`."""

    def message(self, text: str) -> None: ...
