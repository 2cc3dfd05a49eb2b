"""Helpers shared by the sources that talk to a JSON API with their own small retry budget (Grand Challenge,
Kaggle): the retried request and the listing they keep under ``raw/<dataset>/.climb/``, tied to the
source's params.

(The sources built on ``http.api_get`` — GitHub, Hugging Face, Zenodo — use ``http``'s helpers instead:
they pace themselves to the service's rate budget, which these two do not.) A module whose name starts
with ``_`` is not loaded as a source kind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from climb_cli import atomic, redaction
from climb_cli.errors import TransferError
from climb_cli.net import retry
from climb_cli.net.retry import RetryPolicy
from climb_cli.sources.base import Source
from climb_cli.sources.http import listing_path


def send_with_retry(
    source: Source, send: Callable[[], requests.Response], unreachable: str, url: str = ""
) -> requests.Response:
    """``send()`` under the one retry policy (net.retry) with a small budget (at most 5 retries, fewer if
    settings.retries says so). Returns the first non-transient answer, or the last one when the budget is
    spent; a connection error on the last try raises TransferError ``"<unreachable>: <error type>"``.
    Each wait is announced as ``"<dataset>: <url>: HTTP 429; try 2 of 6 in 9.0s"``."""
    policy = RetryPolicy.from_settings(source.settings, retries=min(source.settings.retries, 5))
    try:
        what = f"{source.recipe.name}: {redaction.redact_url(url)}" if url else unreachable
        return retry.send(policy, send, what)
    except (requests.ConnectionError, requests.Timeout) as e:
        raise TransferError(f"{unreachable}: {type(e).__name__}") from None


def write_atomic(path: Path, text: str) -> None:
    """``atomic.write_text`` (kept for the sources that import it from here)."""
    atomic.write_text(path, text)


def load_params_listing(source: Source) -> dict[str, Any] | None:
    """The stored listing, or None when there is none or it was made for other params (another version,
    dataset, archive or file selection)."""
    try:
        data = json.loads(listing_path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("params") != source.params_dict():
        return None
    return data
