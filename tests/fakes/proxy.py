"""A small forward proxy on 127.0.0.1 for the proxy tests: ``CONNECT host:port`` tunnels (https) and
absolute-URI requests (plain http), as squid or tinyproxy serve them. It counts what it forwarded
(``seen``: method and target) so a test can tell that a request went through it -- or, for NO_PROXY, not.

With ``upstream_port``, every tunnel (and plain request) goes to that port on 127.0.0.1 whatever host was
asked: a client that hard-codes a real host (``https://nbia.cancerimagingarchive.net``) and honours
``HTTPS_PROXY`` reaches a fake unmodified, the fake presenting a certificate for that host from a test CA
(``make_test_ca``) that ``REQUESTS_CA_BUNDLE`` makes the client trust. ``hosts`` lists every ``host:port``
a CONNECT asked for."""

from __future__ import annotations

import http.client
import select
import socket
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

from tests.fakes.capture import LoopbackServer, _Server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_CONNECT(self) -> None:  # noqa: N802
        owner = self.server.owner
        owner.seen.append(("CONNECT", self.path))
        host, _, port = self.path.rpartition(":")
        if owner.upstream_port is not None:
            host, port = "127.0.0.1", str(owner.upstream_port)
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
        upstream = self.server.owner.upstream_port
        host, port = (
            ("127.0.0.1", upstream) if upstream is not None else (target.hostname or "", target.port or 80)
        )
        conn = http.client.HTTPConnection(host, port, timeout=10)
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

    def __init__(self, upstream_port: int | None = None) -> None:
        super().__init__("127.0.0.1")
        self.upstream_port = upstream_port
        self.seen: list[tuple[str, str]] = []

    @property
    def hosts(self) -> list[str]:
        """The ``host:port`` of every CONNECT, in order."""
        return [target for method, target in self.seen if method == "CONNECT"]

    @property
    def url(self) -> str:
        return self.base_url
