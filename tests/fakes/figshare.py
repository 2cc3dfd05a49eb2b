"""A fake of figshare's public API v2 and its download host (docs/sources-protocols.md, "figshare").

* ``GET /v2/articles/<id>`` -> the article presenter with ``files[]``; ``GET /v2/articles/<id>/files`` ->
  the file array, paged with ``page``/``page_size`` (default 10, as documented) or ``limit``/``offset``
  (mixing them -> 422); ``GET /v2/articles/<id>/versions`` and ``/versions/<n>`` (that version's files);
* file objects: ``id``, ``name``, ``size``, ``is_link_only``, ``download_url``
  (``<base>/files/<file id>``, the ndownloader role), ``supplied_md5``, ``computed_md5``, ``mimetype``;
* errors: JSON ``{"message": ..., "code": ...}``; unknown article -> 404 "Article with specified ID does not
  exist", unknown version -> 404 "Version does not exist";
* ``GET /files/<file id>`` (ndownloader): with ``storage=FakeBucket`` a 302 to a presigned URL (60 s) there,
  else the bytes themselves (Range, faults).  ``Authorization: token <t>`` is accepted and ignored on public
  articles; every request is logged with ``had_authorization``.

``redirects`` (path -> URL) makes a path answer 302 there (credential-stripping tests).
The shared fault plan applies to file bodies (glob on ``/files/*`` here, or on the bucket's object path).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, TLSServerMixin, serve_file

__all__ = ["FakeFigshare", "FigshareArticle", "FigshareFile"]

_ARTICLE = re.compile(r"^/v2/articles/(\d+)/?$")
_FILES = re.compile(r"^/v2/articles/(\d+)/files/?$")
_VERSIONS = re.compile(r"^/v2/articles/(\d+)/versions/?$")
_VERSION = re.compile(r"^/v2/articles/(\d+)/versions/(\d+)/?$")
_DOWNLOAD = re.compile(r"^/files/(\d+)$")


@dataclass
class FigshareFile:
    id: int
    name: str
    data: bytes
    supplied_md5: str = ""
    mtime: float = field(default_factory=lambda: time.time() - 86400)

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class FigshareArticle:
    id: int
    versions: dict[int, list[FigshareFile]]  # version number -> its files (the highest is the latest)
    title: str = "A fake figshare dataset"

    @property
    def latest(self) -> int:
        return max(self.versions)


class _Handler(BaseFakeHandler):
    server_header = "nginx"
    fake: FakeFigshare

    def _json(self, status: int, payload: object) -> None:
        self.respond(status, json.dumps(payload).encode(), content_type="application/json; charset=UTF-8")

    def _error(self, status: int, message: str, code: str = "EntityNotFound") -> None:
        self._json(status, {"message": message, "code": code})

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._error(405, "Method not allowed", "MethodNotAllowed")
            return
        path = self.url_path
        if path in self.fake.redirects:
            self.respond(302, b"", content_type=None, headers=[("Location", self.fake.redirects[path])])
            return
        if m := _DOWNLOAD.match(path):
            self._download(int(m.group(1)))
            return
        for pattern, handler in (
            (_ARTICLE, self._article),
            (_FILES, self._files),
            (_VERSIONS, self._versions),
            (_VERSION, self._version),
        ):
            if m := pattern.match(path):
                article = self.fake.articles.get(int(m.group(1)))
                if article is None:
                    self._error(404, "Article with specified ID does not exist")
                    return
                handler(article, *m.groups()[1:])
                return
        self._error(404, "Resource not found")

    def _article(self, article: FigshareArticle) -> None:
        self._json(200, self.fake.article_json(article, article.latest))

    def _version(self, article: FigshareArticle, version: str) -> None:
        if int(version) not in article.versions:
            self._error(404, "Version does not exist")
            return
        self._json(200, self.fake.article_json(article, int(version)))

    def _versions(self, article: FigshareArticle) -> None:
        base = self.fake.url
        self._json(200, [{"version": v, "url": f"{base}/v2/articles/{article.id}/versions/{v}"}
                         for v in sorted(article.versions)])  # fmt: skip

    def _files(self, article: FigshareArticle) -> None:
        q = {k: v[-1] for k, v in self.query.items()}
        paged, offset = ("page" in q or "page_size" in q), ("limit" in q or "offset" in q)
        if paged and offset:
            self._error(422, "Mixing page/page_size with limit/offset is not allowed", "ValidationFailed")
            return
        try:
            if offset:
                size = min(int(q.get("limit", "10")), self.fake.max_page_size)
                start = int(q.get("offset", "0"))
            else:
                size = min(int(q.get("page_size", "10")), self.fake.max_page_size)
                start = (int(q.get("page", "1")) - 1) * size
        except ValueError:
            self._error(400, "Invalid pagination parameters", "BadRequest")
            return
        files = [self.fake.file_json(f) for f in article.versions[article.latest]]
        self._json(200, files[start : start + size])

    def _download(self, file_id: int) -> None:
        f = self.fake.file(file_id)
        if f is None:
            self._error(404, "File not found")
            return
        if self.fake.storage is not None:
            url = self.fake.storage.sign("pfigshare-u-files", f"{f.id}/{f.name}", 60, filename=f.name)
            self.respond(302, b"", content_type=None, headers=[("Location", url)])
            return
        serve_file(
            self,
            f.data,
            content_type="binary/octet-stream",
            mtime=f.mtime,
            etag=f'"{f.md5}"',
            extra_headers=[("Content-Disposition", f"attachment; filename={f.name}")],
            fault=self.file_fault(),
        )


class FakeFigshare(TLSServerMixin, FakeHTTPServer):
    handler_class = _Handler

    def __init__(
        self,
        articles: list[FigshareArticle],
        *,
        storage: FakeBucket | None = None,
        max_page_size: int = 1000,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.articles = {a.id: a for a in articles}
        self.storage = storage
        self.max_page_size = max_page_size
        self.redirects: dict[str, str] = {}  # path -> Location (credential-stripping tests)

    def start(self) -> FakeFigshare:
        super().start()
        if self.storage is not None:
            for a in self.articles.values():
                for files in a.versions.values():
                    for f in files:
                        self.storage.put("pfigshare-u-files", f"{f.id}/{f.name}", f.data, public=False)
        return self

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/")

    def file(self, file_id: int) -> FigshareFile | None:
        for a in self.articles.values():
            for files in a.versions.values():
                for f in files:
                    if f.id == file_id:
                        return f
        return None

    def file_json(self, f: FigshareFile) -> dict[str, object]:
        return {
            "id": f.id,
            "name": f.name,
            "size": len(f.data),
            "is_link_only": False,
            "download_url": f"{self.url}/files/{f.id}",
            "supplied_md5": f.supplied_md5 or f.md5,
            "computed_md5": f.md5,
            "mimetype": "application/octet-stream",
        }

    def article_json(self, article: FigshareArticle, version: int) -> dict[str, object]:
        return {
            "id": article.id,
            "title": article.title,
            "doi": f"10.6084/m9.figshare.{article.id}.v{version}",
            "version": version,
            "url": f"{self.url}/v2/articles/{article.id}",
            "defined_type_name": "dataset",
            "is_public": True,
            "files": [self.file_json(f) for f in article.versions[version]],
        }
