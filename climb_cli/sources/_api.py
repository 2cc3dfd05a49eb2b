"""Helpers shared by the sources that talk to a JSON API with their own small retry budget (Grand Challenge,
Kaggle): the retried request and the listing they keep under ``raw/<dataset>/.climb/``, tied to the
source's params.

(The sources built on ``http.api_get`` — GitHub, Hugging Face, Zenodo — use ``http``'s helpers instead:
they pace themselves to the service's rate budget, which these two do not.) A module whose name starts
with ``_`` is not loaded as a source kind.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

from climb_cli.errors import TransferError
from climb_cli.sources.base import Source
from climb_cli.sources.http import listing_path

#: API answers retried (while the budget lasts), honouring Retry-After.
API_RETRY = frozenset({408, 429, 500, 502, 503, 504})
#: the longest Retry-After honoured between two API tries.
MAX_RETRY_AFTER = 600.0


def sleep_before_retry(source: Source, attempt: int, retry_after: float | None) -> None:
    """Exponential backoff (settings.backoff up to backoff_max), or Retry-After (capped) when longer."""
    delay = min(source.settings.backoff_max, source.settings.backoff * (2**attempt))
    if retry_after is not None:
        delay = max(delay, min(retry_after, MAX_RETRY_AFTER))
    time.sleep(delay)


def send_with_retry(
    source: Source, send: Callable[[], requests.Response], unreachable: str
) -> requests.Response:
    """``send()`` retried with a small budget (at most 5 retries, fewer if settings.retries says so) on
    connection errors and on the statuses in API_RETRY, honouring Retry-After. Returns the first other
    answer, or the last one when the budget is spent; a connection error on the last try raises
    TransferError ``"<unreachable>: <error type>"``."""
    from climb_cli.transfer import retry_after_seconds

    tries = max(1, min(source.settings.retries, 5) + 1)
    for attempt in range(tries):
        last = attempt == tries - 1
        try:
            r = send()
        except (requests.ConnectionError, requests.Timeout) as e:
            if last:
                raise TransferError(f"{unreachable}: {type(e).__name__}") from None
            sleep_before_retry(source, attempt, None)
            continue
        if r.status_code in API_RETRY and not last:
            with r:
                sleep_before_retry(source, attempt, retry_after_seconds(r.headers.get("Retry-After")))
            continue
        return r
    raise AssertionError("unreachable")


def write_atomic(path: Path, text: str) -> None:
    """Write `text` to `path` through a temporary file in the same folder (readers never see half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
