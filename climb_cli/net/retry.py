"""The one retry policy: which answers are transient, how long to wait, when to give up, who hears about it.

- transient: connection errors and timeouts, and the statuses in :data:`RETRY_STATUS` (plus whatever a
  caller adds, e.g. GitHub's 403 with ``X-RateLimit-Remaining: 0``);
- the wait: exponential backoff ``backoff * 2**attempt`` capped at ``backoff_max``, with jitter (50-100 %)
  so that many threads do not retry in step, or the server's hint when that is longer (``Retry-After`` as
  seconds or a date; the caller may pass a richer hint such as ``X-RateLimit-Reset``);
- the budget: ``retries`` further tries and, when given, ``budget_s`` seconds in all; a hint longer than
  ``max_wait`` is not waited out (the caller gets a line instead of a silent hang);
- every wait is reported to ``on_wait`` (host, attempt n of N, seconds) before it starts, so that no wait
  is silent; by default it goes to the ``climb.net`` logger;
- ``stall_bytes_per_s`` / ``stall_window_s`` carry the stall threshold for the transfer engine (a body that
  delivers less than that many bytes per second over the window is a transient failure).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import requests

#: statuses retried everywhere (timeouts, too early, rate limits, server trouble).
RETRY_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
#: the longest pause a server may ask for and still be waited out.
MAX_WAIT = 600.0
#: the errors retried (a TLS verification error or an unknown host is not transient: see net.session).
NETWORK_ERRORS: tuple[type[BaseException], ...] = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)

log = logging.getLogger("climb.net")


@dataclass(frozen=True)
class Wait:
    """One announced pause: what is retried, why, which try comes next, and how long until it."""

    what: str
    why: str
    attempt: int  # the try about to be made (2 = the first retry)
    of: int  # tries in all
    delay: float

    def line(self) -> str:
        return f"{self.what}: {self.why}; try {self.attempt} of {self.of} in {self.delay:.1f}s"


def log_wait(w: Wait) -> None:
    log.warning("%s", w.line())


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None if absent or unparsable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class GiveUp(Exception):
    """The budget is spent (or the server asked for a pause longer than ``max_wait``)."""


@dataclass(frozen=True)
class RetryPolicy:
    retries: int = 8
    backoff: float = 1.0
    backoff_max: float = 120.0
    max_wait: float = MAX_WAIT
    budget_s: float | None = None
    statuses: frozenset[int] = RETRY_STATUS
    stall_bytes_per_s: float | None = None
    stall_window_s: float | None = None
    on_wait: Callable[[Wait], None] = log_wait
    sleep: Callable[[float], None] = field(default=lambda s: time.sleep(s), repr=False)

    @classmethod
    def from_settings(cls, settings: Any, **kw: Any) -> RetryPolicy:
        """The policy of a run's Settings (retries, backoff, backoff_max, stall_speed/stall_time), with
        overrides; waits go to ``on_wait`` (the ``climb.net`` logger; the CLI prints it: ui.report_waits)."""
        base = {
            "retries": settings.retries,
            "backoff": settings.backoff,
            "backoff_max": settings.backoff_max,
            "stall_bytes_per_s": getattr(settings, "stall_speed", None) or None,
            "stall_window_s": getattr(settings, "stall_time", None) or None,
        }
        return cls(**{**base, **kw})

    def with_(self, **kw: Any) -> RetryPolicy:
        return replace(self, **kw)

    def delay(self, attempt: int, hint: float | None = None) -> float:
        """Seconds before retry ``attempt + 1``: jittered exponential backoff, or the server's hint when that
        is longer (a server is never asked again sooner than it said)."""
        backoff = min(self.backoff_max, self.backoff * (2**attempt)) * random.uniform(0.5, 1.0)
        return backoff if hint is None else max(backoff, hint)

    def start(self, what: str) -> Retrier:
        return Retrier(self, what)


class Retrier:
    """The retry state of one operation: ``wait(why, hint)`` sleeps (announced) or raises GiveUp."""

    def __init__(self, policy: RetryPolicy, what: str) -> None:
        self.policy, self.what = policy, what
        self.attempt = 0  # retries done so far
        self.started = time.monotonic()
        self._why = ""

    @property
    def left(self) -> int:
        return self.policy.retries - self.attempt

    def plan(self, why: str, hint: float | None = None, *, immediate: bool = False) -> float:
        """The pause before the next try (counted as spent); raises GiveUp when there is no next try."""
        p = self.policy
        if self.attempt >= p.retries:
            raise GiveUp(f"gave up after {self.attempt + 1} tries: {why}")
        if hint is not None and hint > p.max_wait:
            raise GiveUp(f"{why}; the server asks to wait {hint:.0f}s (more than {p.max_wait:.0f}s)")
        delay = 0.0 if immediate else p.delay(self.attempt, hint)
        if p.budget_s is not None and time.monotonic() - self.started + delay > p.budget_s:
            raise GiveUp(f"gave up after {self.attempt + 1} tries in {p.budget_s:.0f}s: {why}")
        self.attempt += 1
        self._why = why
        return delay

    def pause(self, delay: float) -> None:
        """Announce the pause to ``on_wait``, then sleep it."""
        if delay > 0:
            p = self.policy
            p.on_wait(Wait(self.what, self._why, self.attempt + 1, p.retries + 1, delay))
            p.sleep(delay)

    def wait(self, why: str, hint: float | None = None, *, immediate: bool = False) -> None:
        """plan() then pause(): sleep before the next try, or raise GiveUp."""
        self.pause(self.plan(why, hint, immediate=immediate))


def send(
    policy: RetryPolicy,
    request: Callable[[], requests.Response],
    what: str,
    *,
    retry_if: Callable[[requests.Response], bool] | None = None,
    hint: Callable[[requests.Response], float | None] | None = None,
) -> requests.Response:
    """``request()`` retried on network errors and on transient answers (``policy.statuses``, or
    ``retry_if``), waiting what the server hints (Retry-After unless ``hint`` says otherwise). Returns the
    first other answer, or the last transient one when the budget is spent; a network error on the last try
    is raised as it is (the caller names the host)."""
    r = policy.start(what)
    hint = hint or (lambda resp: retry_after_seconds(resp.headers.get("Retry-After")))
    while True:
        try:
            resp = request()
        except NETWORK_ERRORS as e:
            try:
                r.wait(type(e).__name__)
            except GiveUp:
                raise e from None
            continue
        transient = retry_if(resp) if retry_if is not None else resp.status_code in policy.statuses
        if not transient:
            return resp
        try:
            delay = r.plan(f"HTTP {resp.status_code}", hint(resp))
        except GiveUp:
            return resp
        resp.close()
        r.pause(delay)
