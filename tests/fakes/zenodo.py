"""A faithful fake of Zenodo's download surface (InvenioRDM with the legacy JSON serializer), from
/work/shared/reference/sources.md §4 and §10 #14-#15.

* ``GET /api/records/<id>`` -> the legacy record JSON: ``files[]`` with ``id``, ``key``, ``size``,
  ``checksum: "md5:<hex>"`` and ``links.self = <base>/api/records/<id>/files/<key>/content`` (the key
  percent-encoded as the URI template does: spaces and slashes too), ``metadata`` (title, doi,
  publication_date, keywords... what zenodo_get reads), ``links`` (self, self_html, files, archive, latest);
* ``GET /api/records/<id>/files`` -> the RDM file list (``entries[]`` with ``key, size, checksum, links``);
* ``GET|HEAD /api/records/<id>/files/<key>/content`` and the UI path ``/records/<id>/files/<key>?download=1``
  -> the bytes with ``ETag: "md5:<hex>"``, ``Content-MD5: <hex>`` (hex, not base64), ``Last-Modified``,
  ``Content-Disposition: attachment; filename=...``; Range/If-Range unless ``ranges=False`` (Zenodo has been
  seen ignoring Range, so a client must accept a 200);
* every response carries ``X-RateLimit-Limit/Remaining/Reset`` (epoch); past the budget (``rate_limit``
  requests per ``window`` seconds, for all clients of 127.0.0.1 together) -> 429 with ``Retry-After`` and
  ``{"message": "<N> per 1 minute", "status": 429}`` (§10 #15);
* restricted records need a token, as ``Authorization: Bearer <token>`` or ``?access_token=<token>`` (what
  zenodo_get sends, §10 #14): none -> 403, unknown token -> 401, a token without a grant -> 403; errors are
  ``{"message": ..., "status": ...}``;
* ``storage=FakeBucket(...)``: files live in an object store and ``/content`` answers 302 to a presigned
  URL there (how an InvenioRDM instance with S3 storage serves them), to test credential stripping.

The shared fault plan applies to file bodies.  ``public_url`` (e.g. ``https://zenodo.org``) is what the
links say, for a client that only knows the real host name (zenodo_get in a network namespace, see
tests/fakes/test_zenodo_fake.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import quote

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, TLSServerMixin, serve_file

__all__ = ["FakeZenodo", "ZenodoFile", "ZenodoRecord"]

_JSON = "application/json"
_RECORD = re.compile(r"^/api/records/(\d+)/?$")
_FILES = re.compile(r"^/api/records/(\d+)/files/?$")
_CONTENT = re.compile(r"^/api/records/(\d+)/files/(.+)/content$")
_UI_FILE = re.compile(r"^/records?/(\d+)/files/(.+)$")


@dataclass
class ZenodoFile:
    key: str
    data: bytes
    mtime: float = field(default_factory=lambda: time.time() - 86400)
    id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()


@dataclass
class ZenodoRecord:
    id: int
    files: list[ZenodoFile]
    title: str = "A fake dataset"
    restricted: bool = False
    keywords: list[str] = field(default_factory=lambda: ["test"])
    publication_date: str = "2024-01-15"

    def file(self, key: str) -> ZenodoFile | None:
        return next((f for f in self.files if f.key == key), None)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat()


class _ZenodoHandler(BaseFakeHandler):
    server_header = "nginx"
    fake: FakeZenodo

    # -- helpers --------------------------------------------------------------------------------
    def _json(self, status: int, payload: object, extra: list[tuple[str, str]] | None = None) -> None:
        body = json.dumps(payload, indent=2).encode()
        self.respond(status, body, content_type=_JSON, headers=self._limits + (extra or []))

    def _error(self, status: int, message: str) -> None:
        self._json(status, {"message": message, "status": status})

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        values = self.query.get("access_token")
        return values[-1] if values else None

    def _allowed(self, record: ZenodoRecord) -> bool:
        """Answers the refusal itself and returns False when the client may not read the record."""
        token = self._token()
        if token is not None and token not in self.fake.tokens:
            self._error(
                401,
                "The server could not verify that you are authorized to access the URL requested. You "
                "either supplied the wrong credentials (e.g. a bad password), or your browser doesn't "
                "understand how to supply the credentials required.",
            )
            return False
        if record.restricted and (token is None or record.id not in self.fake.tokens[token]):
            self._error(403, "You don't have the permission to access the requested resource.")
            return False
        return True

    # -- routing --------------------------------------------------------------------------------
    def route(self) -> None:
        self._limits: list[tuple[str, str]] = []
        if self.command not in ("GET", "HEAD"):
            self.respond(405, b"", content_type=None)
            return
        ok, self._limits, retry = self.fake._spend()
        if not ok:
            n = self.fake.rate_limit
            per = "1 minute" if self.fake.window == 60 else f"{self.fake.window:g} second"
            self._json(429, {"message": f"{n} per {per}", "status": 429}, [("Retry-After", str(retry))])
            return
        path = self.url_path
        if m := _RECORD.match(path):
            self._record(int(m.group(1)))
        elif m := _FILES.match(path):
            self._file_list(int(m.group(1)))
        elif (m := _CONTENT.match(path)) or (m := _UI_FILE.match(path)):
            self._content(int(m.group(1)), m.group(2))
        else:
            self._error(404, "The requested URL was not found on the server.")

    def _get_record(self, rid: int) -> ZenodoRecord | None:
        record = self.fake.records.get(rid)
        if record is None:
            self._error(404, "The persistent identifier does not exist.")
        return record

    def _record(self, rid: int) -> None:
        record = self._get_record(rid)
        if record is not None and self._allowed(record):
            self._json(200, self.fake.record_json(record))

    def _file_list(self, rid: int) -> None:
        record = self._get_record(rid)
        if record is not None and self._allowed(record):
            self._json(200, self.fake.files_json(record))

    def _content(self, rid: int, key: str) -> None:
        record = self._get_record(rid)
        if record is None or not self._allowed(record):
            return
        f = record.file(key)
        if f is None:
            self._error(404, "The requested URL was not found on the server.")
            return
        if self.fake.storage is not None:
            url = self.fake.storage.sign("zenodo-files", f"{rid}/{f.id}/data", 60, filename=f.key)
            self.respond(302, b"", content_type=None, headers=self._limits + [("Location", url)])
            return
        fault = self.file_fault()
        name = f.key.rsplit("/", 1)[-1]
        extra = self._limits + [
            ("Content-MD5", f.md5),
            ("Content-Disposition", f"attachment; filename={quote(name)}"),
        ]
        serve_file(
            self,
            f.data,
            content_type="application/octet-stream",
            mtime=f.mtime,
            etag=f'"md5:{f.md5}"',
            extra_headers=extra,
            fault=fault,
            ranges=self.fake.ranges,
        )


class FakeZenodo(TLSServerMixin, FakeHTTPServer):
    """The fake.  ``tokens`` maps a personal access token to the restricted record ids it may read."""

    handler_class = _ZenodoHandler

    def __init__(
        self,
        records: list[ZenodoRecord],
        *,
        tokens: dict[str, set[int]] | None = None,
        rate_limit: int | None = None,
        window: float = 60.0,
        ranges: bool = True,
        storage: FakeBucket | None = None,
        public_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.records = {r.id: r for r in records}
        self.tokens = tokens or {}
        self.rate_limit = rate_limit
        self.window = window
        self.ranges = ranges
        self.storage = storage
        self.public_url = public_url
        self._budget_lock = threading.Lock()
        self._window_end = 0.0
        self._used = 0

    def start(self) -> FakeZenodo:
        super().start()
        if self.storage is not None:
            for record in self.records.values():
                for f in record.files:
                    self.storage.put("zenodo-files", f"{record.id}/{f.id}/data", f.data, public=False)
        return self

    @property
    def url(self) -> str:
        return (self.public_url or self.base_url).rstrip("/")

    # -- rate limit -----------------------------------------------------------------------------
    def _spend(self) -> tuple[bool, list[tuple[str, str]], int]:
        """Count one request against the budget: (allowed, X-RateLimit-* headers, seconds to reset)."""
        if self.rate_limit is None:
            return True, [], 0
        with self._budget_lock:
            now = time.time()
            if now >= self._window_end:
                self._window_end, self._used = now + self.window, 0
            window_end = self._window_end
            reset = math.ceil(window_end)
            allowed = self._used < self.rate_limit
            if allowed:
                self._used += 1
            remaining = self.rate_limit - self._used
        headers = [
            ("X-RateLimit-Limit", str(self.rate_limit)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", str(reset)),
        ]
        return allowed, headers, max(1, math.ceil(window_end - now))

    def refill(self) -> None:
        """Start a fresh rate-limit window now."""
        with self._budget_lock:
            self._window_end, self._used = 0.0, 0

    # -- documents ------------------------------------------------------------------------------
    def file_json(self, record: ZenodoRecord, f: ZenodoFile) -> dict[str, object]:
        api = f"{self.url}/api/records/{record.id}"
        return {
            "id": f.id,
            "key": f.key,
            "size": len(f.data),
            "checksum": f"md5:{f.md5}",
            "links": {"self": f"{api}/files/{quote(f.key, safe='')}/content"},
        }

    def record_json(self, record: ZenodoRecord) -> dict[str, object]:
        rid, base = record.id, self.url
        doi = f"10.5281/zenodo.{rid}"
        created = _iso(min((f.mtime for f in record.files), default=time.time()))
        return {
            "created": created,
            "modified": created,
            "updated": created,
            "id": rid,
            "recid": str(rid),
            "conceptrecid": str(rid - 1),
            "doi": doi,
            "conceptdoi": f"10.5281/zenodo.{rid - 1}",
            "doi_url": f"https://doi.org/{doi}",
            "title": record.title,
            "revision": 3,
            "status": "published",
            "state": "done",
            "submitted": True,
            "owners": [1],
            "metadata": {
                "title": record.title,
                "doi": doi,
                "publication_date": record.publication_date,
                "description": "<p>Generated by climb's fake Zenodo.</p>",
                "access_right": "restricted" if record.restricted else "open",
                "creators": [{"name": "Doe, Jane", "affiliation": "Nowhere"}],
                "keywords": record.keywords,
                "resource_type": {"title": "Dataset", "type": "dataset"},
                "license": {"id": "cc-by-4.0"},
                "relations": {
                    "version": [
                        {
                            "index": 0,
                            "is_last": True,
                            "parent": {"pid_type": "recid", "pid_value": str(rid - 1)},
                        }
                    ]
                },
            },
            "links": {
                "self": f"{base}/api/records/{rid}",
                "self_html": f"{base}/records/{rid}",
                "doi": f"https://doi.org/{doi}",
                "files": f"{base}/api/records/{rid}/files",
                "archive": f"{base}/api/records/{rid}/files-archive",
                "latest": f"{base}/api/records/{rid}/versions/latest",
                "latest_html": f"{base}/records/{rid}/latest",
            },
            "files": [self.file_json(record, f) for f in record.files],
            "swh": {},
            "stats": {"downloads": 0, "unique_downloads": 0, "views": 0, "unique_views": 0},
        }

    def files_json(self, record: ZenodoRecord) -> dict[str, object]:
        api = f"{self.url}/api/records/{record.id}"
        entries = []
        for f in record.files:
            content = f"{api}/files/{quote(f.key, safe='')}/content"
            entries.append(
                {
                    "key": f.key,
                    "file_id": f.id,
                    "size": len(f.data),
                    "checksum": f"md5:{f.md5}",
                    "mimetype": "application/octet-stream",
                    "status": "completed",
                    "storage_class": "L",
                    "links": {"self": f"{api}/files/{quote(f.key, safe='')}", "content": content},
                }
            )
        return {"enabled": True, "entries": entries, "order": [], "links": {"self": f"{api}/files"}}
