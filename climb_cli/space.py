"""The one free-space check: how much a folder's disk has free, the reserve a run keeps, and the one line
said when the disk is (or would be) full.

- :func:`free_bytes` — free bytes of the disk holding a path (its nearest existing parent);
- :func:`shortfall` — the line ``no space left on <dir>: N bytes needed, F free (R kept free by
  --min-free)`` when ``need`` bytes would eat into the reserve, else None (the up-front check of
  ``download``, ``download --dry-run`` and ``verify --repair``);
- :class:`SpaceGuard` — the same check while streaming, shared by every transfer of a run: one
  ``statvfs`` every ``every`` bytes written in all (not per chunk), so an endless body stops at the
  reserve instead of filling the disk;
- :func:`said_when_full` — an ``ENOSPC`` from a write, or sqlite's "database or disk is full"
  (errors.is_disk_full), raised inside turned into errors.no_space's line instead of an internal error.

The error is errors.DiskFullError, the line's wording errors.no_space's (shared with the manifest and
preprocess).
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from climb_cli.errors import DiskFullError, UsageError, is_disk_full, no_space

#: the reserve a run keeps free on the data disk unless told otherwise (--min-free, CLIMB_MIN_FREE).
DEFAULT_MIN_FREE = 2 * 1024**3
#: bytes written (by all transfers of a run) between two free-space checks.
CHECK_EVERY = 16 * 1024**2
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str, what: str = "--min-free") -> int:
    """``"2G"``, ``"500M"``, ``"1.5GiB"``, ``"0"`` or a plain byte count -> bytes (binary units)."""
    t = text.strip().upper().removesuffix("IB").removesuffix("B")
    unit = t[-1:] if t[-1:] in _UNITS else ""
    try:
        value = float(t[: len(t) - len(unit)] if unit else t)
    except ValueError:
        raise UsageError(f"{what} {text!r}: expected a size such as 2G, 500M or 1048576") from None
    if value < 0:
        raise UsageError(f"{what} {text!r}: must be >= 0")
    return int(value * _UNITS[unit])


def existing(path: Path) -> Path:
    """The path itself or its nearest existing parent (the folder whose disk will hold it)."""
    while not path.exists() and path.parent != path:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    return shutil.disk_usage(existing(path)).free


def _line(where: Path, need: int | None, free: int, reserve: int) -> str:
    needed = f"{need:,} bytes needed" if need else "more bytes needed"
    if not reserve:
        return f"no space left on {where}: {needed}, {free:,} free; free some space and rerun"
    return (
        f"no space left on {where}: {needed}, {free:,} free of which --min-free keeps {reserve:,}; "
        "free some space (or lower --min-free) and rerun"
    )


def shortfall(path: Path, need: int | None, reserve: int = 0) -> str | None:
    """None if ``need`` more bytes (None: an unknown amount, at least one) fit on path's disk leaving
    ``reserve`` free, else the one line."""
    where = existing(path)
    free = shutil.disk_usage(where).free
    if (need or 1) + reserve > free:
        return _line(where, need, free, reserve)
    return None


class SpaceGuard:
    """The reserve, checked while streaming: :meth:`check` before a body, :meth:`wrote` after each chunk;
    raises DiskFullError. The disk is looked at (statvfs) again once ``every`` bytes were written since the
    last look, by all transfers together, or ``max_age`` seconds passed: a run of many small files costs a
    look per ``every`` bytes, not one per file."""

    def __init__(self, path: Path, reserve: int, every: int = CHECK_EVERY, max_age: float = 1.0) -> None:
        self.path, self.reserve, self.every, self.max_age = path, reserve, max(1, every), max_age
        self._since = 0  # bytes written since the last look
        self._free: int | None = None  # free bytes at the last look
        self._looked = 0.0  # time.monotonic() of the last look
        self._lock = threading.Lock()

    def check(self, need: int | None = None) -> None:
        """Raise DiskFullError if ``need`` more bytes (None: unknown) would go below the reserve."""
        with self._lock:
            free, since, looked = self._free, self._since, self._looked
        fresh = since < self.every and time.monotonic() - looked < self.max_age
        if free is not None and fresh and (need or 1) + self.reserve <= free - since:
            return  # the last look, less what was written since, still leaves room
        self._look(need)

    def _look(self, need: int | None) -> None:
        where = existing(self.path)
        free = shutil.disk_usage(where).free
        with self._lock:
            self._free, self._since, self._looked = free, 0, time.monotonic()
        if (need or 1) + self.reserve > free:
            raise DiskFullError(_line(where, need or None, free, self.reserve))

    def wrote(self, n: int, remaining: int | None = None) -> None:
        with self._lock:
            self._since += n
            due = self._since >= self.every
        if due:
            self._look(remaining)


@contextlib.contextmanager
def said_when_full(path: Path) -> Iterator[None]:
    """Turn a disk-full error (OSError ENOSPC, sqlite "database or disk is full") raised inside into
    DiskFullError with :func:`full_line`."""
    try:
        yield
    except (OSError, sqlite3.Error) as e:
        if is_disk_full(e):
            raise full_line(path) from None
        raise


def full_line(path: Path, need: int | None = None) -> DiskFullError:
    """The error for a write that failed because the disk is full (need: the bytes still to write)."""
    return no_space(existing(path), need)


__all__ = [
    "CHECK_EVERY",
    "DEFAULT_MIN_FREE",
    "SpaceGuard",
    "free_bytes",
    "full_line",
    "parse_size",
    "said_when_full",
    "shortfall",
]
