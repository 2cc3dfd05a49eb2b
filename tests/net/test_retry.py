"""The one retry policy (climb_cli.net.retry), tested once: statuses, Retry-After, backoff with jitter,
the attempt and time budgets, the wait hook, and send() against a real HTTP server."""

from __future__ import annotations

import email.utils
import http.server
import threading
import time
from collections.abc import Iterator

import pytest
import requests

from climb_cli.net.retry import RETRY_STATUS, GiveUp, RetryPolicy, Wait, retry_after_seconds, send


def test_retry_after_as_seconds_or_date() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= (retry_after_seconds(future) or 0) <= 31
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0


def test_backoff_is_exponential_capped_jittered_and_never_below_the_hint() -> None:
    p = RetryPolicy(backoff=1.0, backoff_max=10.0)
    for attempt, top in ((0, 1.0), (1, 2.0), (2, 4.0), (6, 10.0)):
        got = [p.delay(attempt) for _ in range(200)]
        assert all(top * 0.5 <= d <= top for d in got)
        assert len(set(got)) > 100  # jitter: threads do not retry in step
    assert p.delay(0, hint=42.0) == 42.0
    assert 0.5 <= p.delay(0, hint=0.0) <= 1.0


def test_budget_hook_and_long_hints() -> None:
    slept: list[float] = []
    heard: list[Wait] = []
    p = RetryPolicy(retries=2, backoff=0.01, on_wait=heard.append, sleep=slept.append)
    r = p.start("file.bin from host:1")
    r.wait("HTTP 503")
    r.wait("HTTP 429", hint=5.0)
    with pytest.raises(GiveUp, match="gave up after 3 tries: HTTP 503"):
        r.wait("HTTP 503")
    assert slept[1] == 5.0 and len(slept) == 2
    assert [(w.attempt, w.of) for w in heard] == [(2, 3), (3, 3)]
    assert heard[1].line() == "file.bin from host:1: HTTP 429; try 3 of 3 in 5.0s"
    with pytest.raises(GiveUp, match="asks to wait 3600s"):
        p.start("x").wait("HTTP 429", hint=3600.0)
    with pytest.raises(GiveUp, match="in 1s"):
        RetryPolicy(budget_s=1.0, sleep=slept.append).start("x").wait("HTTP 503", hint=5.0)
    r = RetryPolicy(retries=1, sleep=slept.append, on_wait=heard.append).start("x")
    n = len(heard)
    r.wait("stale part", immediate=True)
    assert len(heard) == n  # no pause, nothing to announce
    assert RetryPolicy(stall_bytes_per_s=1000, stall_window_s=30).stall_window_s == 30


class _Flaky(http.server.BaseHTTPRequestHandler):
    answers: list[tuple[int, dict[str, str]]] = []
    seen: list[str] = []

    def do_GET(self) -> None:  # noqa: N802
        self.seen.append(self.path)
        status, headers = self.answers.pop(0) if self.answers else (200, {})
        self.send_response(status)
        for k, v in {**headers, "Content-Length": "2"}.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def flaky() -> Iterator[str]:
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    _Flaky.seen.clear()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.shutdown()
    srv.server_close()


def test_send_retries_transient_statuses_honouring_retry_after(flaky: str) -> None:
    assert {429, 503} <= RETRY_STATUS and 404 not in RETRY_STATUS
    slept: list[float] = []
    _Flaky.answers[:] = [(503, {"Retry-After": "2"}), (429, {}), (200, {})]
    p = RetryPolicy(retries=3, backoff=0.01, sleep=slept.append)
    with requests.Session() as s:
        r = send(p, lambda: s.get(flaky + "/a"), "a")
    assert r.status_code == 200 and len(_Flaky.seen) == 3
    assert slept[0] == 2.0 and slept[1] < 1
    _Flaky.answers[:] = [(503, {}), (503, {})]
    with requests.Session() as s:
        r = send(p.with_(retries=1), lambda: s.get(flaky + "/b"), "b")
    assert r.status_code == 503  # the budget is spent: the last answer, for the caller's one line
    _Flaky.answers[:] = [(404, {})]
    with requests.Session() as s:
        assert send(p, lambda: s.get(flaky + "/c"), "c").status_code == 404  # not transient


def test_send_raises_the_network_error_when_the_budget_is_spent() -> None:
    with socket_closed_port() as url, requests.Session() as s, pytest.raises(requests.ConnectionError):
        send(RetryPolicy(retries=2, backoff=0.001), lambda: s.get(url, timeout=2), "x")


def socket_closed_port():  # type: ignore[no-untyped-def]
    import contextlib
    import socket

    @contextlib.contextmanager
    def cm() -> Iterator[str]:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        sock.close()  # nothing listens there now
        yield f"http://127.0.0.1:{port}/"

    return cm()
