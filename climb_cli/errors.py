"""The error types climb raises: each carries one line a person can act on."""

from __future__ import annotations


class ClimbError(Exception):
    """An expected failure with a one-line, secret-free message. The CLI prints it and exits 1."""

    exit_code = 1


class UsageError(ClimbError):
    """The command line asked for something that cannot be done (exit 2)."""

    exit_code = 2


class RecipeError(ClimbError):
    """A recipe file is invalid; the message names the file, line and field path."""

    exit_code = 2


class AccessError(ClimbError):
    """A remote service refused access (401/403/404) for a dataset; says what to do. `reason`, when
    the source knows it: 'no credentials', 'credentials rejected', 'access not granted', 'failed'."""

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason

    def __reduce__(self) -> tuple[type[ClimbError], tuple[str, str | None]]:
        return (type(self), (str(self), self.reason))


class PluginError(ClimbError):
    """An installed plug-in (an entry point in climb.sources, climb.steps or climb.recipes) failed to
    load, or claims a name (source kind, step, recipe) that climb or another plug-in already has."""

    exit_code = 2


class TransferError(ClimbError):
    """A download failed after retries, or its bytes did not match the expected checksum."""


class ItemError(Exception):
    """One sample could not be processed; recorded in the errors file, the run goes on."""


class StepBug(Exception):
    """A step failed in a way no input can cause (TypeError, AttributeError, ... raised in climb's
    or a plug-in's own code, or MemoryError): a bug, not a bad item. The run stops (exit 3)."""

    exit_code = 3


class ItemDropped(ItemError):
    """A step drops this sample on purpose (CLIMB drops ECGs not exactly 5000 samples long): counted by
    reason in the manifest's `dropped`, like the index's deliberate drops, not an error."""


class DiskFullError(ClimbError):
    """A write failed because the filesystem is full (ENOSPC, SQLite's "database or disk is full")."""


def is_disk_full(e: BaseException) -> bool:
    """Whether `e` is a full disk: OSError ENOSPC (also pyarrow's, which names it only in the text) or
    SQLite's "database or disk is full"."""
    import errno
    import sqlite3

    if isinstance(e, sqlite3.OperationalError):
        return "disk is full" in str(e)
    return isinstance(e, OSError) and (e.errno == errno.ENOSPC or "No space left on device" in str(e))


def no_space(where: object, needed: int | None = None, what: str = "") -> DiskFullError:
    """The one line a full disk gets: `no space left on <dir>: N bytes needed` (and what for)."""
    import shutil

    try:
        free = f", {shutil.disk_usage(str(where)).free:,} free"
    except OSError:
        free = ""
    need = f"{needed:,} bytes needed" if needed is not None else "more bytes needed"
    return DiskFullError(
        f"no space left on {where}: {need}{' for ' + what if what else ''}{free}; free some space "
        f"and rerun (what was written so far is kept)"
    )
