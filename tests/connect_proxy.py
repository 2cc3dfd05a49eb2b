"""A minimal HTTPS forward proxy for tests: `CONNECT host:port` tunnels to a fake on 127.0.0.1.

A client that hard-codes a real host (``https://nbia.cancerimagingarchive.net``) and honours ``HTTPS_PROXY``
(as ``requests`` does) reaches the fake unmodified: the proxy opens the tunnel to the fake whatever host was
asked, the fake presents a certificate for that host from a test CA (``make_test_ca``), and
``REQUESTS_CA_BUNDLE`` makes the client trust it. ``hosts`` records every ``host:port`` asked for.
"""

from __future__ import annotations

import contextlib
import select
import socket
import socketserver
import threading
from typing import Self


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = sock.recv(4096)
            if not chunk:
                return
            head += chunk
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = line.partition(" ")
        target = rest.partition(" ")[0]
        if method != "CONNECT":
            sock.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.hosts.append(target)
        upstream = socket.create_connection(("127.0.0.1", self.server.upstream_port), timeout=30)
        sock.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        pair = [sock, upstream]
        try:
            while True:
                readable, _, _ = select.select(pair, [], [], 30)
                if not readable:
                    return
                for s in readable:
                    data = s.recv(65536)
                    if not data:
                        return
                    (upstream if s is sock else sock).sendall(data)
        except OSError:
            return
        finally:
            with contextlib.suppress(OSError):
                upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    hosts: list[str]
    upstream_port: int


class ConnectProxy:
    def __init__(self, upstream_port: int) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.hosts = []
        self._server.upstream_port = upstream_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def hosts(self) -> list[str]:
        return self._server.hosts

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
