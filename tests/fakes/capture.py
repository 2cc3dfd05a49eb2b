"""A capture server for credential tests: it records every request's method, path and headers and answers
200 with a few bytes (or what ``answers[path]`` says: a status and headers, e.g. a redirect). A fake
redirects a credentialed request here (another port, or another host such as 127.0.0.2 on loopback) and
the test asserts that no credential arrived. ``tls=`` (a server SSLContext) serves https."""

from __future__ import annotations

import ssl
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

CREDENTIAL_HEADERS = ("authorization", "cookie", "proxy-authorization")


@dataclass(frozen=True)
class Captured:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names

    def credentials(self) -> dict[str, str]:
        return {k: v for k, v in self.headers.items() if k in CREDENTIAL_HEADERS}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.owner.seen.append(
            Captured(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        )
        status, headers = self.server.owner.answers.get(self.path.split("?")[0], (200, {}))
        body = b"captured"
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_POST = do_HEAD = _answer  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: Any

    def verify_request(self, request: object, client_address: object) -> bool:
        self.owner.connections += 1  # counted before any TLS handshake
        return True

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that refuses our certificate, or goes away: expected in these tests


class LoopbackServer:
    """A threaded HTTP server on ``host`` (port chosen by the OS) serving ``handler``, https with ``tls``;
    a context manager. Base of the capture server and the proxy."""

    handler: type[BaseHTTPRequestHandler]

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        self.host, self.tls = host, tls
        self.connections = 0
        self._httpd: _Server | None = None

    def start(self) -> Self:
        self._httpd = _Server((self.host, 0), self.handler)
        self._httpd.owner = self
        if self.tls is not None:
            self._httpd.socket = self.tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    @property
    def base_url(self) -> str:
        assert self._httpd is not None
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{self.host}:{self._httpd.server_address[1]}"

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class CaptureServer(LoopbackServer):
    handler = _Handler

    def __init__(self, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> None:
        super().__init__(host, tls)
        self.seen: list[Captured] = []
        self.answers: dict[str, tuple[int, dict[str, str]]] = {}

    def leaked(self, secrets: list[str] | tuple[str, ...] = ()) -> list[str]:
        """Credential headers, and any secret anywhere in a request line or header, that arrived here."""
        out = []
        for c in self.seen:
            out += [f"{c.method} {c.path}: {k}" for k in c.credentials()]
            text = c.path + " " + " ".join(c.headers.values())
            out += [f"{c.method} {c.path}: a secret" for s in secrets if s and s in text]
        return out
