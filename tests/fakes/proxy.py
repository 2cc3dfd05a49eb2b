"""A small forward proxy on 127.0.0.1 for the proxy tests: ``CONNECT host:port`` tunnels (https) and
absolute-URI requests (plain http), as squid or tinyproxy serve them. It counts what it forwarded
(``seen``: method and target) so a test can tell that a request went through it -- or, for NO_PROXY, not."""

from __future__ import annotations

import http.client
import select
import socket
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.fakes.capture import LoopbackServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_CONNECT(self) -> None:  # noqa: N802
        self.server.owner.seen.append(("CONNECT", self.path))
        host, _, port = self.path.rpartition(":")
        try:
            upstream = socket.create_connection((host, int(port)), timeout=10)
        except OSError:
            self.send_error(502)
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        conns = [self.connection, upstream]
        try:
            while True:
                ready, _, _ = select.select(conns, [], [], 10)
                if not ready:
                    break
                for c in ready:
                    data = c.recv(65536)
                    if not data:
                        return
                    (upstream if c is self.connection else self.connection).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()
            self.close_connection = True

    def _forward(self) -> None:
        self.server.owner.seen.append((self.command, self.path))
        target = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=10)
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {
            k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")
        }
        conn.request(self.command, path or "/", body=body, headers=headers)
        resp = conn.getresponse()
        data = resp.read()
        self.send_response(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_POST = do_HEAD = _forward  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


class FakeProxy(LoopbackServer):
    handler = _Handler

    def __init__(self) -> None:
        super().__init__("127.0.0.1")
        self.seen: list[tuple[str, str]] = []

    @property
    def url(self) -> str:
        return self.base_url
