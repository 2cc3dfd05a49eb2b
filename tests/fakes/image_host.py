"""A fake web host of LAION images on 127.0.0.1: what the image URLs of a caption dataset point at in the
wild. ``images`` maps a path to (status, content type, body); ``slow`` paths answer their headers and then
trickle the body slower than any sane timeout; a path not listed is 404. Every request is logged with
whether it carried an Authorization header or cookies (``fake.log``)."""

from __future__ import annotations

import time

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer

__all__ = ["FakeImageHost"]


class _Handler(BaseFakeHandler):
    def route(self) -> None:
        fake: FakeImageHost = self.fake
        path = self.url_path
        if path in fake.slow:
            body = fake.slow[path]
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            for i in range(0, len(body), 16):  # 16 bytes every 0.5 s: alive, but far too slow
                if fake.stopping():
                    return
                self.wfile.write(body[i : i + 16])
                self.wfile.flush()
                time.sleep(0.5)
            return
        status, ctype, body = fake.images.get(path, (404, "text/html", b"<h1>Not Found</h1>"))
        if status in (301, 302):
            self.respond(status, b"", content_type=None, headers=[("Location", body.decode())])
            return
        self.respond(status, body, content_type=ctype)


class FakeImageHost(FakeHTTPServer):
    handler_class = _Handler

    def __init__(
        self, images: dict[str, tuple[int, str, bytes]], slow: dict[str, bytes] | None = None
    ) -> None:
        super().__init__()
        self.images = images
        self.slow = slow or {}

    def stopping(self) -> bool:
        return self._httpd is None
