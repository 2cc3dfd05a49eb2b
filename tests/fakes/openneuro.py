"""A fake of OpenNeuro's GraphQL API and file hosts, as openneuro-py 2026.9.1 uses them
(docs/sources-protocols.md, "OpenNeuro").

* ``POST /crn/graphql`` with JSON ``{"query": ...}``; the fake answers the three query shapes the client
  sends (matched by regex, not a GraphQL engine): ``dataset(id){latestSnapshot{id files(recursive: true)
  {filename urls size id}}}``, ``dataset(id){snapshots{id}}`` (ids ``<ds>:<tag>``) and
  ``snapshot(datasetId, tag){id files(recursive: true){...}}`` -> ``{"data": ...}``; anything else -> HTTP 400
  ``{"errors": [{"message": "Cannot query ..."}]}``;
* errors as GraphQL does them, HTTP 200 with ``{"errors": [{"message": ...}], "data": {...: null}}``: a
  restricted dataset without a granted key -> ``"You do not have access to read this dataset."``; unknown
  dataset or tag -> ``"Dataset not found"`` / ``"Snapshot not found"`` (wording inferred);
* the API key: cookie ``accessToken=<key>`` (``keys`` maps a key to the restricted datasets it may read);
* ``urls[0]`` of a public dataset: the public bucket ``openneuro.org`` of a :class:`FakeBucket`
  (``<bucket>/openneuro.org/<ds>/<path>?versionId=<v>``), or with ``signed=True`` a presigned URL of a private
  copy (``url_ttl`` s); of a restricted dataset: ``/crn/datasets/<ds>/snapshots/<tag>/files/<a:b:c>`` on the
  fake itself, which needs the cookie (bytes with Range and the shared faults);
* ``redirect_to``: the fake's own file URLs answer 302 there (credential-stripping tests);
* ``gateway``: answers queued for the next GraphQL requests, each an HTTP status (e.g. 503, 524) or a
  GraphQL error message with HTTP 200 (e.g. ``"504 Gateway Timeout"``, which openneuro-py retries).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, TLSServerMixin, serve_file

__all__ = ["BUCKET", "FakeOpenNeuro", "OpenNeuroDataset"]

BUCKET = "openneuro.org"
_LATEST = re.compile(r'dataset\s*\(\s*id\s*:\s*"([^"]+)"\s*\)\s*{\s*latestSnapshot\b')
_SNAPSHOTS = re.compile(r'dataset\s*\(\s*id\s*:\s*"([^"]+)"\s*\)\s*{\s*snapshots\b')
_SNAPSHOT = re.compile(r'snapshot\s*\(\s*datasetId\s*:\s*"([^"]+)"\s*,\s*tag\s*:\s*"([^"]+)"\s*\)')
_FILE = re.compile(r"^/crn/datasets/(ds\d+)/snapshots/([^/]+)/files/(.+)$")


@dataclass
class OpenNeuroDataset:
    id: str
    snapshots: dict[str, dict[str, bytes]]  # tag -> {path: bytes}
    restricted: bool = False
    mtime: float = field(default_factory=lambda: time.time() - 86400)

    @property
    def latest(self) -> str:
        return list(self.snapshots)[-1]


class _Handler(BaseFakeHandler):
    server_header = "nginx"
    fake: FakeOpenNeuro

    def _json(self, status: int, payload: object) -> None:
        self.respond(status, json.dumps(payload).encode(), content_type="application/json; charset=utf-8")

    def _error(self, message: str, data: dict[str, object]) -> None:
        self._json(200, {"errors": [{"message": message, "locations": [{"line": 3, "column": 9}],
                                     "path": list(data)}], "data": data})  # fmt: skip

    def route(self) -> None:
        if self.url_path == "/crn/graphql":
            if self.command != "POST":
                self._json(405, {"errors": [{"message": "GET query missing."}]})
                return
            self._graphql()
        elif (m := _FILE.match(self.url_path)) and self.command in ("GET", "HEAD"):
            self._file(*m.groups())
        else:
            self.respond(404, b"Not Found", content_type="text/plain")

    def _may_read(self, ds: OpenNeuroDataset) -> bool:
        key = self.cookies.get("accessToken")
        return not ds.restricted or (key is not None and ds.id in self.fake.keys.get(key, set()))

    def _graphql(self) -> None:
        try:
            query = str(json.loads(self.read_body() or b"{}").get("query", ""))
        except (ValueError, AttributeError):
            self._json(400, {"errors": [{"message": "Unexpected token in JSON"}]})
            return
        self.fake.queries.append(query)
        if self.fake.gateway:
            trouble = self.fake.gateway.pop(0)
            if isinstance(trouble, int):
                self._json(trouble, {"errors": [{"message": f"HTTP {trouble}"}]})
            else:
                self._error(trouble, {"dataset": None})
            return
        if m := _SNAPSHOT.search(query):
            ds_id, tag = m.groups()
            ds = self.fake.datasets.get(ds_id)
            if ds is None or tag not in ds.snapshots:
                self._error("Snapshot not found", {"snapshot": None})
            elif not self._may_read(ds):
                self._error("You do not have access to read this dataset.", {"snapshot": None})
            else:
                self._json(200, {"data": {"snapshot": self.fake.snapshot_json(ds, tag)}})
            return
        m = _LATEST.search(query) or _SNAPSHOTS.search(query)
        if m is None:
            self._json(400, {"errors": [{"message": "Cannot query field on type Query"}]})
            return
        ds = self.fake.datasets.get(m.group(1))
        if ds is None:
            self._error("Dataset not found", {"dataset": None})
        elif not self._may_read(ds):
            self._error("You do not have access to read this dataset.", {"dataset": None})
        elif _LATEST.search(query):
            self._json(200, {"data": {"dataset": {"latestSnapshot": self.fake.snapshot_json(ds, ds.latest)}}})
        else:
            snaps = [{"id": f"{ds.id}:{t}"} for t in ds.snapshots]
            self._json(200, {"data": {"dataset": {"snapshots": snaps}}})

    def _file(self, ds_id: str, tag: str, colon_path: str) -> None:
        ds = self.fake.datasets.get(ds_id)
        path = colon_path.replace(":", "/")
        data = ds.snapshots.get(tag, {}).get(path) if ds else None
        if ds is None or data is None:
            self.respond(404, b"Not Found", content_type="text/plain")
            return
        if not self._may_read(ds):
            self._json(403, {"error": "You do not have access to read this dataset."})
            return
        if self.fake.redirect_to:
            self.respond(302, b"", content_type=None, headers=[("Location", self.fake.redirect_to)])
            return
        serve_file(
            self,
            data,
            content_type="application/octet-stream",
            mtime=ds.mtime,
            etag=f'W/"{hashlib.sha1(data).hexdigest()}"',
            extra_headers=[],
            fault=self.file_fault(),
        )


class FakeOpenNeuro(TLSServerMixin, FakeHTTPServer):
    handler_class = _Handler

    def __init__(
        self,
        datasets: list[OpenNeuroDataset],
        storage: FakeBucket,
        *,
        keys: dict[str, set[str]] | None = None,
        signed: bool = False,
        url_ttl: int = 3600,
        public_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.datasets = {d.id: d for d in datasets}
        self.storage = storage
        self.keys = keys or {}
        self.signed = signed
        self.url_ttl = url_ttl
        self.public_url = public_url
        self.redirect_to: str | None = None
        self.gateway: list[int | str] = []
        self.queries: list[str] = []
        self.version_ids: dict[tuple[str, str, str], str] = {}

    def start(self) -> FakeOpenNeuro:
        super().start()
        for ds in self.datasets.values():
            if ds.restricted:
                continue
            for tag, files in ds.snapshots.items():
                for path, data in files.items():
                    vid = self.storage.put_version(BUCKET, f"{ds.id}/{path}", data, public=not self.signed)
                    self.version_ids[(ds.id, tag, path)] = vid
        return self

    @property
    def url(self) -> str:
        return (self.public_url or self.base_url).rstrip("/")

    def file_url(self, ds: OpenNeuroDataset, tag: str, path: str) -> str:
        if ds.restricted:
            return f"{self.url}/crn/datasets/{ds.id}/snapshots/{tag}/files/{quote(path.replace('/', ':'))}"
        vid = self.version_ids[(ds.id, tag, path)]
        if self.signed:  # the signature covers the versionId query parameter, as on S3
            return self.storage.sign(BUCKET, f"{ds.id}/{path}", self.url_ttl, version_id=vid)
        return f"{self.storage.url(BUCKET, f'{ds.id}/{path}')}?versionId={vid}"

    def snapshot_json(self, ds: OpenNeuroDataset, tag: str) -> dict[str, object]:
        files = [
            {"filename": p, "urls": [self.file_url(ds, tag, p)], "size": len(b),
             "id": hashlib.sha1(f"{ds.id}:{tag}:{p}".encode()).hexdigest()}
            for p, b in ds.snapshots[tag].items()
        ]  # fmt: skip
        return {"id": f"{ds.id}:{tag}", "files": files}
