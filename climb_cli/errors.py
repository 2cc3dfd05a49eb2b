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
    """A remote service refused access (401/403/404) for a dataset; says what to do."""


class TransferError(ClimbError):
    """A download failed after retries, or its bytes did not match the expected checksum."""


class ItemError(Exception):
    """One sample could not be processed; recorded in the errors file, the run goes on."""
