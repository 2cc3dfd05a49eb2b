"""The one signed-URL resolver: a durable API URL answers a redirect to a short-lived signed URL on a byte
host (Kaggle -> GCS, Grand Challenge -> CloudFront, GitHub -> S3, Hugging Face -> its CDN).

:class:`SignedUrls` caches the signed URL per file until shortly before it expires (GCS ``X-Goog-Date`` +
``X-Goog-Expires``, S3 ``X-Amz-Date`` + ``X-Amz-Expires``, CloudFront ``Expires``), and when the byte host
refuses it (400 ExpiredToken, 401, 403) drops it and resolves a fresh one, up to ``tries`` links per open.
The byte host gets the signed URL only: no credential (the caller's ``get`` sends none).
"""

from __future__ import annotations

import calendar
import threading
import time
from collections.abc import Callable
from urllib.parse import parse_qsl, urlsplit

import requests

#: the byte host's answers to an expired or revoked link.
EXPIRED = frozenset({400, 401, 403})


def deadline(url: str) -> float | None:
    """When a signed URL stops working (epoch seconds), or None when it does not say."""
    q = dict(parse_qsl(urlsplit(url).query))
    try:
        for date, expires in (("X-Goog-Date", "X-Goog-Expires"), ("X-Amz-Date", "X-Amz-Expires")):
            if date in q and expires in q:
                return calendar.timegm(time.strptime(q[date], "%Y%m%dT%H%M%SZ")) + int(q[expires])
        if "Expires" in q:
            return float(q["Expires"])
    except ValueError:
        return None
    return None


class Refused(Exception):
    """The byte host refused every fresh link; ``response`` is its last answer (closed)."""

    def __init__(self, tries: int, response: requests.Response | None) -> None:
        super().__init__(f"{tries} fresh links refused")
        self.tries, self.response = tries, response

    @property
    def status(self) -> str:
        """The last refusal's status code ('?' when there was none)."""
        return str(self.response.status_code) if self.response is not None else "?"


class SignedUrls:
    """Signed URLs per file key, shared by a source's threads."""

    def __init__(self, *, margin: float = 30.0, tries: int = 3) -> None:
        self.margin, self.tries = margin, tries
        self._lock = threading.Lock()
        self._urls: dict[str, tuple[str, float | None]] = {}

    def cached(self, key: str) -> str | None:
        """The cached link of ``key``, unless it expires within ``margin`` seconds."""
        with self._lock:
            got = self._urls.get(key)
        if got is None or (got[1] is not None and got[1] - self.margin <= time.time()):
            return None
        return got[0]

    def remember(self, key: str, url: str) -> None:
        with self._lock:
            self._urls[key] = (url, deadline(url))

    def forget(self, key: str, url: str | None = None) -> None:
        """Drop the cached link (only if still ``url``, when given: another thread may have renewed it)."""
        with self._lock:
            if url is None or self._urls.get(key, ("",))[0] == url:
                self._urls.pop(key, None)

    def open(
        self,
        key: str,
        resolve: Callable[[bool], str | requests.Response],
        get: Callable[[str], requests.Response],
        *,
        expired: Callable[[requests.Response], bool] = lambda r: r.status_code in EXPIRED,
        discard: Callable[[requests.Response], object] = lambda r: r.close(),
    ) -> requests.Response:
        """The byte host's answer for ``key``. ``resolve(fresh)`` asks the API for a signed URL (or returns
        the API's own answer, handed back as is); ``get(url)`` fetches from the byte host without credentials.
        An ``expired`` answer is discarded and a fresh link resolved; raises :class:`Refused` after ``tries``
        links."""
        fresh, last = False, None
        for _ in range(self.tries):
            url = None if fresh else self.cached(key)
            if url is None:
                got = resolve(fresh)
                if isinstance(got, requests.Response):
                    return got
                url = got
                self.remember(key, url)
            resp = get(url)
            if not expired(resp):
                return resp
            discard(resp)
            self.forget(key, url)
            fresh, last = True, resp
        raise Refused(self.tries, last)
