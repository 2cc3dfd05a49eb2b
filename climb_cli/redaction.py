"""Keeping secrets out of every output: a registry of known secret values and URL redaction.

Everything climb prints, logs or writes into a report goes through `redact`. Credentials register
themselves here when they are loaded, so even an unexpected exception message is scrubbed.
"""

from __future__ import annotations

import re
import threading
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

_lock = threading.Lock()
_secrets: set[str] = set()
_SECRET_QUERY_KEYS = re.compile(r"(token|key|signature|sig|password|secret|credential|auth)", re.I)
MASK = "***"


def register(value: str | None) -> None:
    """Remember a secret value so that `redact` removes it wherever it appears."""
    if value and len(value) >= 3:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret (longest first) with ***."""
    if not text:
        return text
    with _lock:
        known = sorted(_secrets, key=len, reverse=True)
    for s in known:
        if s in text:
            text = text.replace(s, MASK)
    return text


def _secret_key(key: str) -> bool:
    """Query parameters that carry credentials or signatures (S3/GCS/CloudFront signed URLs)."""
    return bool(_SECRET_QUERY_KEYS.search(key)) or key.lower().startswith(("x-amz-", "x-goog-"))


def redact_url(url: str) -> str:
    """A URL safe to print: no user:password@, no signed query values, no registered secrets."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc = f"{netloc}:{parts.port}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, MASK if _secret_key(k) else v) for k, v in pairs]
        if masked != pairs:
            query = urlencode(masked, safe="*")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))
