"""Server-agnostic building blocks shared by every fake server: fault injection, nginx-style byte serving.

What lives here, and why together:

* :class:`Fault` / :class:`FaultPlan` -- a thread-safe queue of misbehaviours ("drop the connection after N
  body bytes", "answer 503 with Retry-After", "ignore Range", ...) that a test arms before a request and
  that the server consumes when it serves a *file* (never a listing, an API document or a login page).
* :func:`serve_bytes` / :func:`send_body` -- the one byte-serving helper every fake uses, modelled on
  nginx's static module (what serves the bytes behind PhysioNet, and what most object stores imitate):
  ``Content-Length``, ``Last-Modified``, strong ``ETag``, ``Accept-Ranges``, a single ``Range`` -> 206,
  unsatisfiable -> 416, ``If-Range``, ``If-None-Match``/``If-Modified-Since`` -> 304, ``If-Match``/
  ``If-Unmodified-Since`` -> 412, HEAD.  Faults are applied here, so every fake gets them for free.
* :class:`FakeHTTPServer` / :class:`BaseFakeHandler` -- a ``ThreadingHTTPServer`` on 127.0.0.1 speaking
  HTTP/1.1 with keep-alive, daemon threads, an optional latency added to every request before it is
  answered (listings, errors and redirects too, as a proxy or a long round trip adds it), a request log
  (:class:`RequestRecord`) and a count of the TCP connections accepted.  A concrete fake subclasses both
  and implements ``route()``.

Nothing in this module knows about PhysioNet, Kaggle or Zenodo.
"""

from __future__ import annotations

import contextlib
import email.utils
import fnmatch
import http
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "BODY_FAULT_KINDS",
    "FAULT_KINDS",
    "HEAD_FAULT_KINDS",
    "BaseFakeHandler",
    "Fault",
    "FaultPlan",
    "FakeHTTPServer",
    "RangeNotSatisfiable",
    "RequestRecord",
    "http_date",
    "nginx_error_page",
    "nginx_etag",
    "parse_http_date",
    "parse_range",
    "send_body",
    "send_endless",
    "send_fault_status",
    "serve_bytes",
]

#: Every fault kind :class:`FaultPlan` accepts.
#: ``throttle`` (not in the original brief) caps the body rate at ``bytes_per_second`` for the hit requests,
#: like PhysioNet's observed per-connection cap.
#: ``endless`` and ``trickle``: issue 7's hostile servers (a body that never ends, one byte every 5 s).
FAULT_KINDS = frozenset(
    {"drop", "short", "stall", "status", "ignore_range", "change", "throttle", "flip", "endless", "trickle"}
)
#: Kinds that act on the body bytes (meaningless for HEAD, 304, 416).
BODY_FAULT_KINDS = frozenset({"drop", "short", "stall", "throttle", "flip", "endless", "trickle"})
#: Kinds a HEAD request may consume (servers pass this to :meth:`FaultPlan.take` for HEAD).
HEAD_FAULT_KINDS = FAULT_KINDS - BODY_FAULT_KINDS

_CHUNK = 64 * 1024


# --------------------------------------------------------------------------------------------- faults


@dataclass
class Fault:
    """One armed misbehaviour.  ``times`` matching requests consume it (a negative ``times`` never runs out).

    kinds:
      * ``drop``: send the headers (full ``Content-Length``) and ``after_bytes`` of the body, then stop and
        close the connection -- a truncated transfer (the client sees EOF before ``Content-Length``).
      * ``short``: a short body, closed cleanly: the headers promise the full ``Content-Length``,
        ``after_bytes`` of the body are sent, then the server half-closes at once (``shutdown(SHUT_WR)``, a
        FIN right after the last byte, no error on the socket) -- what a proxy or an object store that
        gives up politely sends.  The client sees a clean EOF before ``Content-Length``.
      * ``stall``: send the headers and ``after_bytes``, sleep ``seconds``, then continue normally; a client
        whose read timeout is shorter than ``seconds`` times out.
      * ``status``: answer ``status`` (default 503) instead of the file, with ``Retry-After: retry_after``
        when set, the extra ``headers``, and ``body`` (``content_type``).
      * ``ignore_range``: answer 200 with the full body even though ``Range`` was asked.
      * ``change``: the file looks changed for this request: ``Last-Modified`` one hour later and therefore a
        different ``ETag``; ``If-Range``/``If-None-Match`` with the old validators fail (200, full body).
      * ``throttle``: send the body at ``bytes_per_second``.
      * ``flip``: send the whole body with the byte at body offset ``after_bytes`` inverted -- a bit error
        in transit that TCP's checksum missed (or a faulty proxy): lengths and headers are right.
      * ``endless``: answer 200 with no ``Content-Length`` (``Connection: close``, the body delimited by the
        close) and send the file, then zeros without end -- until the client goes away, the server stops, or
        ``after_bytes`` (when > 0) have been sent in all (a safety cap for tests).
      * ``trickle``: send the body one byte every ``seconds`` (default 5) -- each read gets a byte well
        within any read timeout, so only a throughput check notices.
    """

    kind: str
    path_glob: str = "*"
    times: int = 1
    after_bytes: int = 0
    seconds: float = 0.0
    status: int = 503
    retry_after: str | None = None
    body: bytes = b""
    content_type: str = "text/html; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)
    bytes_per_second: float = 0.0
    hits: int = 0  # how many requests this fault has hit so far

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; expected one of {sorted(FAULT_KINDS)}")
        if self.kind == "throttle" and self.bytes_per_second <= 0:
            raise ValueError("a throttle fault needs bytes_per_second > 0")
        if self.kind == "trickle":
            self.seconds = self.seconds or 5.0
            self.bytes_per_second = 1.0 / self.seconds

    @property
    def exhausted(self) -> bool:
        return 0 <= self.times <= self.hits


class FaultPlan:
    """A thread-safe, ordered list of :class:`Fault` objects shared between a test and a fake server."""

    def __init__(self, faults: Iterable[Fault] = ()) -> None:
        self._lock = threading.Lock()
        self._faults: list[Fault] = list(faults)

    def add(self, kind: str, **kw: Any) -> Fault:
        """Arm a new fault (appended after the existing ones) and return it."""
        fault = Fault(kind, **kw)
        with self._lock:
            self._faults.append(fault)
        return fault

    def take(self, path: str, *, kinds: Collection[str] | None = None) -> Fault | None:
        """Return the first non-exhausted fault whose glob matches ``path`` (and whose kind is in ``kinds``,
        when given) and count one hit against it; ``None`` when no fault applies."""
        with self._lock:
            for fault in self._faults:
                if fault.exhausted or (kinds is not None and fault.kind not in kinds):
                    continue
                if fnmatch.fnmatchcase(path, fault.path_glob):
                    fault.hits += 1
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> int:
        """How many faults are not used up yet."""
        with self._lock:
            return sum(1 for f in self._faults if not f.exhausted)

    @property
    def faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


# ----------------------------------------------------------------------------------- nginx helpers


def http_date(ts: float) -> str:
    """``Fri, 27 Nov 2026 21:51:53 GMT`` (IMF-fixdate, whole seconds like nginx)."""
    return email.utils.formatdate(int(ts), usegmt=True)


def parse_http_date(value: str | None) -> int | None:
    """Seconds since the epoch for an HTTP date (any of the three RFC 9110 forms), ``None`` if unparsable."""
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    return int(parsed.timestamp())


def nginx_etag(mtime: float, size: int) -> str:
    """nginx's strong ETag: ``"<hex mtime>-<hex size>"``."""
    return f'"{int(mtime):x}-{size:x}"'


_REASONS_NGINX = {
    301: "301 Moved Permanently",
    302: "302 Found",
    400: "400 Bad Request",
    403: "403 Forbidden",
    404: "404 Not Found",
    405: "405 Not Allowed",
    412: "412 Precondition Failed",
    416: "416 Requested Range Not Satisfiable",
    429: "429 Too Many Requests",
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def nginx_error_page(status: int, server: str = "nginx/1.22.1") -> bytes:
    """The HTML body nginx sends with its own error/redirect responses."""
    try:
        title = _REASONS_NGINX.get(status) or f"{status} {http.HTTPStatus(status).phrase}"
    except ValueError:
        title = str(status)
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>{server}</center>\r\n</body>\r\n</html>\r\n"
    ).encode()


class RangeNotSatisfiable(Exception):
    """The ``Range`` header cannot be satisfied (nginx answers 416 ``Content-Range: bytes */size``)."""


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """Parse a ``Range`` header exactly as nginx's range filter (``ngx_http_range_parse``) does.

    Returns ``(start, end_exclusive)`` for one satisfiable range, ``None`` when the full body should be sent
    (no header, not a ``bytes=`` range, ``bytes=0-`` on an empty file, or several ranges -- real nginx
    would send ``multipart/byteranges`` for those; the fakes send 200 with the full body, which RFC 9110
    allows), and raises :class:`RangeNotSatisfiable` for a malformed or unsatisfiable byte range (nginx
    answers 416 for both).
    """
    if not value or value[:6].lower() != "bytes=":
        return None
    s = value[6:] + "\0"
    i = 0
    ranges: list[tuple[int, int]] = []

    def digits() -> int:
        nonlocal i
        n = 0
        while s[i].isdigit() and s[i].isascii():
            n = n * 10 + int(s[i])
            i += 1
        return n

    while True:
        start = end = 0
        suffix = False
        while s[i] == " ":
            i += 1
        if s[i] != "-":
            if not ("0" <= s[i] <= "9"):
                raise RangeNotSatisfiable(value)
            start = digits()
            while s[i] == " ":
                i += 1
            if s[i] != "-":
                raise RangeNotSatisfiable(value)
            i += 1
            while s[i] == " ":
                i += 1
            if s[i] in ",\0":
                end = size
                found = True
            else:
                found = False
        else:
            suffix, found = True, False
            i += 1
        if not found:
            if not ("0" <= s[i] <= "9"):
                raise RangeNotSatisfiable(value)
            end = digits()
            while s[i] == " ":
                i += 1
            if s[i] not in ",\0":
                raise RangeNotSatisfiable(value)
            if suffix:
                start = size - end if end < size else 0
                end = size - 1
            end = size if end >= size else end + 1
        if start < end:
            ranges.append((start, end))
        elif start == 0:
            return None
        if s[i] != ",":
            break
        i += 1
    if not ranges:
        raise RangeNotSatisfiable(value)
    if len(ranges) > 1:
        return None  # multi-range: see the docstring
    return ranges[0]


# ------------------------------------------------------------------------------------ HTTP plumbing


@dataclass
class RequestRecord:
    """One served request, as seen by the fake (appended to ``FakeHTTPServer.log`` when it completes)."""

    method: str
    path: str  # as requested, with the query string
    user_agent: str | None
    status: int
    range: str | None
    bytes_sent: int  # body bytes actually written
    had_authorization: bool
    cookies: tuple[str, ...]  # cookie names the client sent
    if_range: str | None = None
    fault: str | None = None  # kind of the fault that hit this request
    client_port: int = 0  # the client's source port: equal ports = one reused keep-alive connection
    started: float = 0.0


class _ThreadingServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], fake: Any) -> None:
        self.fake = fake
        self.stopping = threading.Event()
        self._conn_lock = threading.Lock()
        self._connections: set[socket.socket] = set()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
            self.fake.connections += 1
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, OSError | TimeoutError):
            return  # the client went away: normal for fault tests
        self.fake.errors.append(exc)
        super().handle_error(request, client_address)


class BaseFakeHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive handler: logs every request, adds the fake's latency, and calls ``route()``.

    Subclasses implement :meth:`route` and answer with :meth:`respond` or :func:`serve_bytes`; both write
    a correct ``Content-Length`` so connections can be reused.  ``queue_header()`` adds a header (e.g. a
    ``Set-Cookie``) to whatever response is sent next.
    """

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    server_header = "fake-server/1.0"
    server: _ThreadingServer
    _queued_headers: list[tuple[str, str]]  # headers added by queue_header, sent at end_headers

    # -- plumbing ---------------------------------------------------------------------------------
    def version_string(self) -> str:
        return self.server_header

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature from the stdlib
        """Silence the default stderr access log (the fake keeps its own, ``fake.log``)."""

    def send_response(self, code: int, message: str | None = None) -> None:
        self.status = code
        super().send_response(code, message)

    def end_headers(self) -> None:
        for name, value in self._queued_headers:
            self.send_header(name, value)
        self._queued_headers = []
        super().end_headers()

    def queue_header(self, name: str, value: str) -> None:
        self._queued_headers.append((name, value))

    @property
    def fake(self) -> Any:
        return self.server.fake

    def _dispatch(self) -> None:
        self.status = 0
        self.bytes_sent = 0
        self.fault_kind: str | None = None
        self._body: bytes | None = None
        self._queued_headers = []
        self._record_obj: RequestRecord | None = None
        self._started = time.time()
        try:
            if self.fake.latency > 0:
                time.sleep(self.fake.latency)
            self.route()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError):
            self.close_connection = True
        finally:
            try:
                self._drain_body()
            except OSError:
                self.close_connection = True
            self.commit_record()

    def commit_record(self, pending_bytes: int = 0) -> None:
        """Put this request into ``fake.log`` now; later calls update the same record.

        The response helpers call it just before the last bytes of a response go out, so a client that has
        read a complete response always finds its record in the log (no race with the serving thread).
        """
        rec = self._record_obj
        if rec is None:
            rec = RequestRecord(
                method=self.command,
                path=self.path,
                user_agent=self.headers.get("User-Agent"),
                status=self.status,
                range=self.headers.get("Range"),
                bytes_sent=self.bytes_sent + pending_bytes,
                had_authorization="Authorization" in self.headers,
                cookies=tuple(self.cookies),
                if_range=self.headers.get("If-Range"),
                fault=self.fault_kind,
                client_port=self.client_address[1] if self.client_address else 0,
                started=self._started,
            )
            self._record_obj = rec
            self.fake._record(rec)
        else:
            rec.status = self.status
            rec.bytes_sent = self.bytes_sent + pending_bytes
            rec.fault = self.fault_kind

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _dispatch

    def route(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # -- request helpers --------------------------------------------------------------------------
    def file_fault(self, path: str | None = None, faults: FaultPlan | None = None) -> Fault | None:
        """The armed fault for a file response at ``path`` (default: this request's path) from ``faults``
        (default: the fake's plan); a HEAD takes only the kinds a HEAD can show (none of the body faults)."""
        kinds = HEAD_FAULT_KINDS if self.command == "HEAD" else None
        plan = self.fake.faults if faults is None else faults
        return plan.take(self.url_path if path is None else path, kinds=kinds)

    @property
    def url_path(self) -> str:
        """The percent-decoded path, without the query string."""
        return unquote(urlsplit(self.path).path)

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.path).query, keep_blank_values=True)

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for header in self.headers.get_all("Cookie") or ():
            try:
                parsed = SimpleCookie()
                parsed.load(header)
            except CookieError:
                continue
            jar.update({name: morsel.value for name, morsel in parsed.items()})
        return jar

    def read_body(self) -> bytes:
        """The request body (read once; ``Content-Length`` bodies only)."""
        if self._body is None:
            if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
                self.close_connection = True  # not supported by the fakes: don't reuse the connection
                self._body = b""
            else:
                length = int(self.headers.get("Content-Length") or 0)
                self._body = self.rfile.read(length) if length > 0 else b""
        return self._body

    def _drain_body(self) -> None:
        if self._body is None and not self.close_connection:
            self.read_body()

    # -- response helpers -------------------------------------------------------------------------
    def respond(
        self,
        status: int,
        body: bytes = b"",
        *,
        content_type: str | None = "text/html; charset=utf-8",
        headers: Sequence[tuple[str, str]] | Mapping[str, str] = (),
    ) -> None:
        """Send a complete response with ``Content-Length`` (no body for HEAD, 204 and 304)."""
        self.send_response(status)
        items = headers.items() if isinstance(headers, Mapping) else headers
        if content_type and status not in (204, 304):
            self.send_header("Content-Type", content_type)
        if status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        for name, value in items:
            self.send_header(name, value)
        with_body = bool(body) and self.command != "HEAD" and status not in (204, 304)
        if not with_body:
            self.commit_record()
        self.end_headers()
        if with_body:
            self.commit_record(len(body))
            self.wfile.write(body)
            self.bytes_sent += len(body)


class FakeHTTPServer:
    """Start/stop, ``base_url``, request log and fault plan for a fake.  Subclasses set ``handler_class``."""

    handler_class: type[BaseFakeHandler] = BaseFakeHandler

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.latency = latency
        self.faults = faults if faults is not None else FaultPlan()
        self.log: list[RequestRecord] = []
        self.connections = 0  # TCP connections accepted so far (keep-alive reuse: fewer than requests)
        self.errors: list[BaseException] = []  # unexpected handler exceptions (a bug in the fake)
        self._log_lock = threading.Lock()
        self._httpd: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._httpd = _ThreadingServer((self.host, self.port), self.handler_class, self)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.stopping.set()
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _record(self, record: RequestRecord) -> None:
        with self._log_lock:
            self.log.append(record)

    def requests_for(self, path_glob: str = "*", method: str | None = None) -> list[RequestRecord]:
        """Logged requests whose path (query stripped) matches ``path_glob``."""
        with self._log_lock:
            records = list(self.log)
        return [
            r
            for r in records
            if fnmatch.fnmatchcase(r.path.split("?", 1)[0], path_glob)
            and (method is None or r.method == method)
        ]


# ------------------------------------------------------------------------------------ byte serving


def send_fault_status(handler: BaseFakeHandler, fault: Fault) -> None:
    """Answer a ``status`` fault: its code, ``Retry-After`` and extra headers, and its body."""
    headers: list[tuple[str, str]] = []
    if fault.retry_after is not None:
        headers.append(("Retry-After", fault.retry_after))
    headers.extend(fault.headers.items())
    handler.fault_kind = fault.kind
    handler.respond(fault.status, fault.body, content_type=fault.content_type, headers=headers)


def _sleep(handler: BaseFakeHandler, seconds: float) -> None:
    stopping = getattr(handler.server, "stopping", None)
    if stopping is not None:
        stopping.wait(seconds)
    else:
        time.sleep(seconds)


def send_body(
    handler: BaseFakeHandler, data: bytes | Path, start: int, end: int, fault: Fault | None = None
) -> int:
    """Write ``data[start:end]`` to the client, applying a ``drop``/``short``/``stall``/``throttle`` fault.

    Returns the number of body bytes written.  On ``drop`` and ``short`` (or when the client goes away) the
    connection is marked to be closed, so the client sees fewer bytes than ``Content-Length``; ``short``
    half-closes the socket (FIN) immediately after the last byte.
    """
    kind = fault.kind if fault is not None and fault.kind in BODY_FAULT_KINDS else None
    if kind:
        handler.fault_kind = kind
    total = end - start
    budget = min(fault.after_bytes, total) if kind in ("drop", "short", "stall") and fault else total
    sent = 0
    fh = None
    try:
        if isinstance(data, Path):
            fh = data.open("rb")
            fh.seek(start)

        def chunks(limit: int, size: int) -> Iterable[bytes]:
            nonlocal sent
            while sent < limit:
                n = min(size, limit - sent)
                chunk = fh.read(n) if fh is not None else bytes(data[start + sent : start + sent + n])  # type: ignore[index]
                if not chunk:
                    return
                flip_at = fault.after_bytes - (start + sent) if kind == "flip" and fault else -1
                if 0 <= flip_at < len(chunk):
                    chunk = chunk[:flip_at] + bytes([chunk[flip_at] ^ 0xFF]) + chunk[flip_at + 1 :]
                yield chunk

        chunk_size = _CHUNK
        if kind in ("throttle", "trickle") and fault is not None:
            chunk_size = max(1, min(_CHUNK, int(fault.bytes_per_second / 20) or 1))
        t0 = time.monotonic()
        for chunk in chunks(budget, chunk_size):
            if sent + len(chunk) == total:
                handler.commit_record(len(chunk))
            handler.wfile.write(chunk)
            sent += len(chunk)
            handler.bytes_sent += len(chunk)
            if kind in ("throttle", "trickle") and fault is not None:
                ahead = sent / fault.bytes_per_second - (time.monotonic() - t0)
                if ahead > 0:
                    _sleep(handler, ahead)
        if kind == "drop":
            handler.wfile.flush()
            handler.close_connection = True
            return sent
        if kind == "short":
            handler.wfile.flush()
            with contextlib.suppress(OSError):
                handler.connection.shutdown(socket.SHUT_WR)  # a clean FIN now, before Content-Length
            handler.close_connection = True
            return sent
        if kind == "stall" and fault is not None:
            handler.wfile.flush()
            _sleep(handler, fault.seconds)
            for chunk in chunks(total, _CHUNK):
                if sent + len(chunk) == total:
                    handler.commit_record(len(chunk))
                handler.wfile.write(chunk)
                sent += len(chunk)
                handler.bytes_sent += len(chunk)
    except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, ValueError):
        handler.close_connection = True
    finally:
        if fh is not None:
            fh.close()
    if sent < total:
        handler.close_connection = True
    return sent


def send_endless(handler: BaseFakeHandler, data: bytes | Path, fault: Fault) -> int:
    """The body of an ``endless`` fault, after headers the caller sent without Content-Length: the file, then
    zeros until the client closes, the server stops or ``fault.after_bytes`` (> 0) are sent. Returns bytes
    sent."""
    handler.fault_kind = "endless"
    handler.close_connection = True
    body = data.read_bytes() if isinstance(data, Path) else bytes(data)
    zeros = bytes(_CHUNK)
    cap = fault.after_bytes if fault.after_bytes > 0 else None
    stopping = getattr(handler.server, "stopping", None)
    sent = 0
    try:
        for i in range(0, len(body), _CHUNK):
            handler.wfile.write(body[i : i + _CHUNK])
            sent += len(body[i : i + _CHUNK])
        while (cap is None or sent < cap) and not (stopping is not None and stopping.is_set()):
            chunk = zeros if cap is None else zeros[: cap - sent]
            handler.wfile.write(chunk)
            sent += len(chunk)
    except (OSError, ValueError):
        pass
    handler.bytes_sent = sent
    handler.commit_record()
    return sent


def _changed_etag(etag: str) -> str:
    return etag[:-1] + '-c"' if etag.endswith('"') else etag + "-c"


def _etag_matches(header: str, etag: str | None, *, weak: bool) -> bool:
    if etag is None:
        return False
    if header.strip() == "*":
        return True
    wanted = etag[2:] if weak and etag.startswith("W/") else etag
    for tag in header.split(","):
        tag = tag.strip()
        if weak and tag.startswith("W/"):
            tag = tag[2:]
        if tag == wanted and (weak or not etag.startswith("W/")):
            return True
    return False


def serve_bytes(
    handler: BaseFakeHandler,
    data: bytes | Path,
    *,
    content_type: str,
    mtime: float | None = None,
    etag: str | Callable[[float, int], str] | None = nginx_etag,
    extra_headers: Sequence[tuple[str, str]] = (),
    fault: Fault | None = None,
    ims_exact: bool = True,
) -> None:
    """Serve ``data`` (bytes, or a file) as nginx's static module would, applying ``fault``.

    * ``etag`` may be a string, ``None`` (no ETag), or a function of ``(mtime, size)`` (default: nginx's).
    * ``ims_exact``: nginx's default ``if_modified_since exact`` -- 304 only when ``If-Modified-Since`` equals
      the file's mtime; ``False`` gives the ``before`` behaviour (304 when the date is >= mtime).
    * Conditional order as in nginx's not_modified filter: ``If-Unmodified-Since``/``If-Match`` -> 412, then
      ``If-Modified-Since`` and ``If-None-Match`` -> 304 when every one present says "not modified"; then
      the range filter (``If-Range`` as a strong ETag string compare, or an exact date).
    """
    if isinstance(data, Path):
        size = data.stat().st_size
        if mtime is None:
            mtime = data.stat().st_mtime
    else:
        size = len(data)
    if fault is not None and fault.kind == "status":
        send_fault_status(handler, fault)
        return
    if fault is not None and fault.kind in ("change", "ignore_range"):
        handler.fault_kind = fault.kind
    changed = fault is not None and fault.kind == "change"
    if changed and mtime is not None:
        mtime += 3600
    etag_value: str | None
    if callable(etag):
        etag_value = etag(mtime if mtime is not None else 0, size)
    else:
        etag_value = _changed_etag(etag) if (changed and etag) else etag
    mtime_int = int(mtime) if mtime is not None else None

    validators: list[tuple[str, str]] = []
    if mtime_int is not None:
        validators.append(("Last-Modified", http_date(mtime_int)))
    if etag_value is not None:
        validators.append(("ETag", etag_value))

    h = handler.headers
    server = handler.version_string()
    # 412 preconditions
    ius = h.get("If-Unmodified-Since")
    if ius is not None and mtime_int is not None:
        t = parse_http_date(ius)
        if t is None or mtime_int > t:
            handler.respond(412, nginx_error_page(412, server))
            return
    if h.get("If-Match") is not None and not _etag_matches(h["If-Match"], etag_value, weak=False):
        handler.respond(412, nginx_error_page(412, server))
        return
    # 304
    ims, inm = h.get("If-Modified-Since"), h.get("If-None-Match")
    if ims is not None or inm is not None:
        not_modified = True
        if ims is not None:
            t = parse_http_date(ims)
            if mtime_int is None or t is None or t != mtime_int and (ims_exact or t < mtime_int):
                not_modified = False
        if inm is not None and not _etag_matches(inm, etag_value, weak=True):
            not_modified = False
        if not_modified:
            handler.respond(304, headers=validators)
            return

    start, end, status = 0, size, 200
    range_header = h.get("Range")
    if range_header is not None and not (fault is not None and fault.kind == "ignore_range"):
        if_range = h.get("If-Range")
        range_applies = True
        if if_range is not None:
            if len(if_range) >= 2 and if_range.endswith('"'):
                range_applies = etag_value is not None and if_range == etag_value
            else:
                range_applies = mtime_int is not None and parse_http_date(if_range) == mtime_int
        if range_applies:
            try:
                parsed = parse_range(range_header, size)
            except RangeNotSatisfiable:
                handler.respond(
                    416,
                    nginx_error_page(416, server),
                    headers=[("Content-Range", f"bytes */{size}")],
                )
                return
            if parsed is not None:
                start, end = parsed
                status = 206

    endless = fault is not None and fault.kind == "endless" and status == 200 and handler.command != "HEAD"
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    if not endless:
        handler.send_header("Content-Length", str(end - start))
    for name, value in validators:
        handler.send_header(name, value)
    handler.send_header("Connection", "close" if endless else "keep-alive")
    if status == 206:
        handler.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
    for name, value in extra_headers:
        handler.send_header(name, value)
    handler.send_header("Accept-Ranges", "bytes")
    if handler.command == "HEAD" or end == start:
        handler.commit_record()
    handler.end_headers()
    if handler.command == "HEAD":
        return
    if endless and fault is not None:
        send_endless(handler, data, fault)
        return
    send_body(handler, data, start, end, fault)
