"""A faithful fake of Kaggle's download API (kaggle 2.2.5 + kagglesdk 0.1.38), with its storage host.

What it implements, from /work/shared/reference/sources.md §2 and the corrections in §10 #1-#9:

* **RPC** (what kagglesdk speaks): ``POST /v1/<service>/<Method>`` (production layout, ``api.kaggle.com``) and
  ``POST /api/v1/<service>/<Method>`` (the layout kagglesdk uses for ``KAGGLE_API_ENVIRONMENT=LOCALHOST``),
  camelCase JSON bodies:
  ``security.OAuthService/IntrospectToken``; ``datasets.DatasetApiService/{GetDataset, GetDatasetMetadata,
  ListDatasetFiles, DownloadDataset}``; ``competitions.CompetitionApiService/{ListDataFiles, DownloadDataFile,
  DownloadDataFiles}``.  Listings page with ``pageSize``/``pageToken`` -> ``nextPageToken``.
* **Legacy REST** (``GET /api/v1/...``, kaggle <= 1.6, kagglehub, Kaggle's curl snippet): ``datasets/list``,
  ``datasets/view``, ``datasets/metadata``, ``datasets/download[/<file>]``, ``competitions/data/list``,
  ``competitions/data/download/<c>/<file>``, ``competitions/data/download-all/<c>``.
* **Auth**: ``Authorization: Basic user:key`` (legacy key) or ``Bearer <access token>``; a wrong one -> 401
  ``{"code":401,"message":"Unauthorized"}``.  Anonymous callers may list and download *public* datasets (the
  CLI allows ``datasets files``/``datasets download`` logged out); competitions need an account (401), and
  the rules accepted (403 with Kaggle's exact JSON message).  Private or unknown -> 404 JSON.
* **Downloads** answer **302** to a GCS-style signed URL on a second host (:class:`FakeObjectStore`, another
  port), valid ``url_ttl`` seconds; whole datasets and competition bundles are zips built from the files.
  Optionally (``compress_single_files_over``) a single file larger than that is offered only zipped, as
  ``compressed/<name>.zip`` -- the wrapper is documented (§2.4) and the official CLI just saves it. A
  ``raw: true`` in the request does not change that: that it would was only an inference from a kagglesdk
  comment, never observed, so the fake serves what was observed.
* **Rate limiting**: API calls consume ``status`` faults from ``faults`` matched on the method path
  (``*/DownloadDataset``); :meth:`FakeKaggle.rate_limit` arms 429s in the legacy (``{"code":429,...}``) or
  the RPC (``{"error":{...}}``) body style, with ``Retry-After``.  Storage faults go to ``storage.faults``.
* **Proxy**: the CLI reaches a loopback fake only as ``http://localhost`` through ``HTTP_PROXY`` (§10 #1), and
  requests keeps that proxy for the redirect to storage (§10 #2), so absolute-URI requests for a registered
  upstream (the storage host) are forwarded like a plain HTTP proxy; ``http://localhost/...`` is the API.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import http.client
import io
import itertools
import json
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self
from urllib.parse import quote, unquote, urlsplit

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, Fault, FaultPlan, send_fault_status
from tests.fakes.storage import FakeObjectStore

__all__ = ["FakeKaggle", "KaggleCompetition", "KaggleDataset", "KaggleUser", "RULES_MESSAGE"]

JSON = "application/json; charset=utf-8"
RULES_MESSAGE = "You must accept this competition's rules before you'll be able to download files."
DATASET_BUCKET = "kaggle-data-sets"
COMPETITION_BUCKET = "kaggle-competitions-data"
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
_ids = itertools.count(1000)


def _zip_of(files: dict[str, bytes]) -> bytes:
    """A deterministic zip of ``files`` (fixed timestamps), like Kaggle's bundle archives."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=(2024, 5, 27, 13, 13, 6))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    return buf.getvalue()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(ts * 1000) % 1000:03d}Z"


# ------------------------------------------------------------------------------------------------ models


@dataclass
class KaggleUser:
    """A Kaggle account: a legacy API key (Basic ``username:key``) and/or access tokens (Bearer)."""

    username: str
    key: str = ""
    tokens: set[str] = field(default_factory=set)


@dataclass
class KaggleDataset:
    """A dataset with numbered versions (``{version: {path: bytes}}``); the highest number is current."""

    owner: str
    slug: str
    versions: dict[int, dict[str, bytes]]
    private: bool = False
    viewers: set[str] = field(default_factory=set)  # who may see a private dataset (besides the owner)
    licenses: list[str] = field(default_factory=lambda: ["CC0-1.0"])
    title: str = ""
    id: int = field(default_factory=lambda: next(_ids))
    created: float = 1716815587.0  # 2024-05-27T13:13:07Z

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.slug}"

    @property
    def current(self) -> int:
        return max(self.versions)

    def version_id(self, number: int) -> int:
        return self.id * 100 + number

    def visible_to(self, user: KaggleUser | None) -> bool:
        return not self.private or (user is not None and user.username in self.viewers | {self.owner})


@dataclass
class KaggleCompetition:
    """A competition: its data files and who accepted its rules."""

    name: str
    files: dict[str, bytes]
    accepted: set[str] = field(default_factory=set)
    id: int = field(default_factory=lambda: next(_ids))
    created: float = 1716815587.0


class _ApiError(Exception):
    def __init__(self, status: int, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, list(headers)


# ----------------------------------------------------------------------------------------------- handler


class _KaggleHandler(BaseFakeHandler):
    server_header = "kaggle-fake"

    def route(self) -> None:
        fake: FakeKaggle = self.fake
        if self.path.startswith(("http://", "https://")):
            netloc = urlsplit(self.path).netloc
            if netloc in fake.proxy_targets():
                self._forward(netloc)
                return
            if urlsplit(self.path).hostname not in ("localhost", fake.host):
                self.respond(502, b"fake proxy: unknown upstream\n", content_type="text/plain")
                return
        path = self.url_path
        try:
            method, args = self._parse(path)
            fault = fake.faults.take(method, kinds={"status"})
            if fault is not None:
                send_fault_status(self, fault)
                return
            user = self._user()
            handler = getattr(self, "_rpc_" + method.rsplit("/", 1)[-1], None)
            if handler is None:
                raise _ApiError(404, f"Unknown method {method}")
            handler(user, args)
        except _ApiError as e:
            body = json.dumps({"code": e.status, "message": e.message}).replace("'", "\\u0027")
            self.respond(e.status, body.encode(), content_type=JSON, headers=e.headers)

    # -- request parsing ----------------------------------------------------------------------------
    def _parse(self, path: str) -> tuple[str, dict[str, Any]]:
        """(canonical RPC method path, request fields) for an RPC POST or a legacy REST GET."""
        rpc = path.removeprefix("/api")
        head = rpc.split("/")
        if len(head) == 4 and head[1] == "v1" and "." in head[2]:
            if self.command != "POST":
                raise _ApiError(405, "Method Not Allowed")
            raw = self.read_body() or b"{}"
            try:
                args = json.loads(raw)
            except ValueError:
                raise _ApiError(400, "Invalid JSON body") from None
            if not isinstance(args, dict):
                raise _ApiError(400, "Invalid JSON body")
            return rpc, args
        if not path.startswith("/api/v1/") or self.command not in ("GET", "HEAD"):
            raise _ApiError(404, "Not found")
        parts = [unquote(p) for p in path[len("/api/v1/") :].split("/")]
        q = {k: v[-1] for k, v in self.query.items()}
        ds, comp = "/v1/datasets.DatasetApiService/", "/v1/competitions.CompetitionApiService/"
        version = q.get("datasetVersionNumber") or q.get("dataset_version_number")
        common: dict[str, Any] = {}
        if version and version.isdigit():
            common["datasetVersionNumber"] = int(version)
        if q.get("pageToken") or q.get("page_token"):
            common["pageToken"] = q.get("pageToken") or q.get("page_token")
        if (q.get("pageSize") or q.get("page_size") or "").isdigit():
            common["pageSize"] = int(q.get("pageSize") or q.get("page_size") or 0)
        if parts[0] == "datasets" and len(parts) >= 4:
            owner_slug = {"ownerSlug": parts[2], "datasetSlug": parts[3], **common}
            names = {"list": "ListDatasetFiles", "view": "GetDataset", "metadata": "GetDatasetMetadata"}
            if parts[1] in names and len(parts) == 4:
                return ds + names[parts[1]], owner_slug
            if parts[1] == "download":
                name = "/".join(parts[4:]) or q.get("file_name") or q.get("fileName")
                return ds + "DownloadDataset", {**owner_slug, **({"fileName": name} if name else {})}
        if parts[:2] == ["competitions", "data"] and len(parts) >= 4:
            if parts[2] == "list" and len(parts) == 4:
                return comp + "ListDataFiles", {"competitionName": parts[3], **common}
            if parts[2] == "download-all" and len(parts) == 4:
                return comp + "DownloadDataFiles", {"competitionName": parts[3]}
            if parts[2] == "download" and len(parts) >= 5:
                return comp + "DownloadDataFile", {
                    "competitionName": parts[3],
                    "fileName": "/".join(parts[4:]),
                }
        raise _ApiError(404, "Not found")

    def _user(self) -> KaggleUser | None:
        header = self.headers.get("Authorization")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        user = None
        if scheme.lower() == "basic":
            try:
                name, _, key = base64.b64decode(value.strip(), validate=True).decode().partition(":")
            except (binascii.Error, ValueError):
                name = key = ""
            user = self.fake.users.get(name)
            if user is not None and (not user.key or user.key != key):
                user = None
        elif scheme.lower() == "bearer":
            user = self.fake.user_for_token(value.strip())
        if user is None:
            raise _ApiError(401, "Unauthorized", [("WWW-Authenticate", 'Basic realm="kaggle"')])
        return user

    # -- responses ------------------------------------------------------------------------------------
    def _json(self, obj: Any) -> None:
        self.respond(
            200, json.dumps(obj).encode(), content_type=JSON, headers=[("X-Kaggle-ApiVersion", "1.7.0")]
        )

    def _redirect(self, key: str) -> None:
        url = self.fake.storage.sign(key, self.fake.url_ttl)
        self.fake.redirects += 1
        self.respond(302, b"", content_type=None, headers=[("Location", url), ("Cache-Control", "no-store")])

    def _page(self, items: list[Any], args: dict[str, Any]) -> tuple[list[Any], str]:
        size = int(args.get("pageSize") or self.fake.page_size)
        size = max(1, min(size, self.fake.max_page_size))
        token = args.get("pageToken") or ""
        try:
            start = int(base64.urlsafe_b64decode(token.encode()).decode()) if token else 0
        except (binascii.Error, ValueError):
            raise _ApiError(400, "Invalid page token") from None
        page = items[start : start + size]
        more = start + size < len(items)
        return page, base64.urlsafe_b64encode(str(start + size).encode()).decode() if more else ""

    # -- datasets -------------------------------------------------------------------------------------
    def _dataset(self, user: KaggleUser | None, args: dict[str, Any]) -> tuple[KaggleDataset, int]:
        ds = self.fake.datasets.get(f"{args.get('ownerSlug')}/{args.get('datasetSlug')}")
        if ds is None or not ds.visible_to(user):
            raise _ApiError(404, "Dataset not found")
        number = args.get("datasetVersionNumber")
        number = ds.current if number in (None, 0) else number
        if not isinstance(number, int) or number not in ds.versions:
            raise _ApiError(404, f"Dataset version {number} not found")
        return ds, number

    def _rpc_IntrospectToken(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        owner = self.fake.user_for_token(str(args.get("token") or ""))
        if owner is None:
            self._json({"active": False})
        else:
            self._json({"active": True, "clientId": "kaggle-cli", "username": owner.username, "scope": "*"})

    def _rpc_GetDataset(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        ds, _ = self._dataset(user, {**args, "datasetVersionNumber": None})
        files = ds.versions[ds.current]
        self._json(
            {
                "id": ds.id,
                "ref": ds.ref,
                "title": ds.title or ds.slug,
                "url": f"https://www.kaggle.com/datasets/{ds.ref}",
                "ownerRef": ds.owner,
                "ownerName": ds.owner,
                "isPrivate": ds.private,
                "licenseName": ds.licenses[0] if ds.licenses else "Unknown",
                "totalBytes": sum(len(b) for b in files.values()),
                "lastUpdated": _iso(ds.created + 86400 * ds.current),
                "currentVersionNumber": ds.current,
                "versions": [
                    {"versionNumber": n, "creationDate": _iso(ds.created + 86400 * n), "status": "Ready"}
                    for n in sorted(ds.versions, reverse=True)
                ],
            }
        )

    def _rpc_GetDatasetMetadata(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        ds, _ = self._dataset(user, {**args, "datasetVersionNumber": None})
        self._json(
            {
                "info": {
                    "datasetId": ds.id,
                    "datasetSlug": ds.slug,
                    "ownerUser": ds.owner,
                    "title": ds.title or ds.slug,
                    "isPrivate": ds.private,
                    "licenses": [{"name": n} for n in ds.licenses],
                    "keywords": [],
                    "collaborators": [],
                    "data": [],
                }
            }
        )

    def _rpc_ListDatasetFiles(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        ds, number = self._dataset(user, args)
        created = _iso(ds.created + 86400 * number)
        items = [
            {
                "ref": name,
                "datasetRef": ds.ref,
                "ownerRef": ds.owner,
                "name": name,
                "creationDate": created,
                "totalBytes": len(data),
                "url": f"https://www.kaggle.com/api/v1/datasets/download/{ds.ref}/{quote(name)}",
                "columns": [],
            }
            for name, data in sorted(ds.versions[number].items())
        ]
        page, token = self._page(items, args)
        self._json({"datasetFiles": page, **({"nextPageToken": token} if token else {})})

    def _rpc_DownloadDataset(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        ds, number = self._dataset(user, args)
        base = f"{DATASET_BUCKET}/{ds.id}/{ds.version_id(number)}"
        name = args.get("fileName")
        if not name:
            self._redirect(f"{base}/bundle/archive.zip")
            return
        if name not in ds.versions[number]:
            raise _ApiError(404, f"File {name} not found in dataset {ds.ref}")
        limit = self.fake.compress_single_files_over
        if limit is not None and len(ds.versions[number][name]) > limit:
            self._redirect(f"{base}/compressed/{name}.zip")
            return
        self._redirect(f"{base}/{name}")

    # -- competitions ---------------------------------------------------------------------------------
    def _competition(
        self, user: KaggleUser | None, args: dict[str, Any], *, download: bool
    ) -> KaggleCompetition:
        comp = self.fake.competitions.get(str(args.get("competitionName")))
        if user is None:
            raise _ApiError(401, "Unauthorized")
        if comp is None:
            raise _ApiError(404, "Competition not found")
        if download and user.username not in comp.accepted:
            raise _ApiError(403, RULES_MESSAGE)
        return comp

    def _rpc_ListDataFiles(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        comp = self._competition(user, args, download=False)
        items = [
            {
                "ref": name,
                "name": name,
                "description": "",
                "totalBytes": len(data),
                "url": f"https://www.kaggle.com/api/v1/competitions/data/download/{comp.name}/{quote(name)}",
                "creationDate": _iso(comp.created),
            }
            for name, data in sorted(comp.files.items())
        ]
        page, token = self._page(items, args)
        self._json({"files": page, **({"nextPageToken": token} if token else {})})

    def _rpc_DownloadDataFile(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        comp = self._competition(user, args, download=True)
        name = str(args.get("fileName") or "")
        if name not in comp.files:
            raise _ApiError(404, f"File {name} not found in competition {comp.name}")
        limit = self.fake.compress_single_files_over
        if limit is not None and len(comp.files[name]) > limit:
            self._redirect(f"{COMPETITION_BUCKET}/kaggle-v2/{comp.id}/compressed/{name}.zip")
            return
        self._redirect(f"{COMPETITION_BUCKET}/kaggle-v2/{comp.id}/{name}")

    def _rpc_DownloadDataFiles(self, user: KaggleUser | None, args: dict[str, Any]) -> None:  # noqa: N802
        comp = self._competition(user, args, download=True)
        self._redirect(f"{COMPETITION_BUCKET}/kaggle-v2/{comp.id}/bundle/archive.zip")

    # -- plain HTTP proxy -----------------------------------------------------------------------------
    def _forward(self, netloc: str) -> None:
        """Relay an absolute-URI request to a registered upstream, streaming the answer back."""
        parts = urlsplit(self.path)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
        body = self.read_body()
        conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=60)
        try:
            conn.request(self.command, target, body=body or None, headers=headers)
            resp = conn.getresponse()
            self.send_response(resp.status, resp.reason)
            for name, value in resp.getheaders():
                if name.lower() not in _HOP:
                    self.send_header(name, value)
            self.send_header("Connection", "close")
            self.close_connection = True
            self.commit_record()
            self.end_headers()
            if self.command == "HEAD":
                return
            while True:
                try:
                    chunk = resp.read1(64 * 1024)
                except (http.client.HTTPException, OSError):
                    break
                if not chunk:
                    break
                self.wfile.write(chunk)
                self.bytes_sent += len(chunk)
        finally:
            conn.close()


# ------------------------------------------------------------------------------------------------ server


class FakeKaggle(FakeHTTPServer):
    """The Kaggle API on one port and its GCS-like storage (``storage``) on another."""

    handler_class = _KaggleHandler

    def __init__(
        self,
        *,
        datasets: Iterable[KaggleDataset] = (),
        competitions: Iterable[KaggleCompetition] = (),
        users: Iterable[KaggleUser] = (),
        storage: FakeObjectStore | None = None,
        page_size: int = 20,
        max_page_size: int = 200,
        url_ttl: int = 259200,
        compress_single_files_over: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, faults=faults)
        self.datasets = {d.ref: d for d in datasets}
        self.competitions = {c.name: c for c in competitions}
        self.users = {u.username: u for u in users}
        self._own_storage = storage is None
        self.storage = storage if storage is not None else FakeObjectStore(style="gcs", host=host)
        self.page_size, self.max_page_size = page_size, max_page_size
        self.url_ttl = url_ttl
        self.compress_single_files_over = compress_single_files_over
        self.redirects = 0  # how many signed URLs the API handed out
        self._lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------------------
    def start(self) -> Self:
        self.storage.start()
        self.publish()
        return super().start()

    def stop(self) -> None:
        super().stop()
        if self._own_storage:
            self.storage.stop()

    def publish(self) -> None:
        """(Re)build every storage object from the datasets and competitions (after a test changes them)."""
        for ds in self.datasets.values():
            for number, files in ds.versions.items():
                base = f"{DATASET_BUCKET}/{ds.id}/{ds.version_id(number)}"
                mtime = ds.created + 86400 * number
                for name, data in files.items():
                    self.storage.put(f"{base}/{name}", data, mtime=mtime)
                    if self.compress_single_files_over is not None:
                        self.storage.put(
                            f"{base}/compressed/{name}.zip", _zip_of({name.rsplit("/", 1)[-1]: data})
                        )
                self.storage.put(f"{base}/bundle/archive.zip", _zip_of(files), mtime=mtime)
        for comp in self.competitions.values():
            base = f"{COMPETITION_BUCKET}/kaggle-v2/{comp.id}"
            for name, data in comp.files.items():
                self.storage.put(f"{base}/{name}", data, mtime=comp.created)
                if self.compress_single_files_over is not None:
                    wrapped = _zip_of({name.rsplit("/", 1)[-1]: data})
                    self.storage.put(f"{base}/compressed/{name}.zip", wrapped, mtime=comp.created)
            self.storage.put(f"{base}/bundle/archive.zip", _zip_of(comp.files), mtime=comp.created)

    # -- helpers for tests ----------------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        """What climb's ``CLIMB_KAGGLE_URL`` points at (RPC under ``/v1/``)."""
        return self.base_url

    def proxy_targets(self) -> set[str]:
        with contextlib.suppress(RuntimeError):
            return {urlsplit(self.storage.base_url).netloc}
        return set()

    def user_for_token(self, token: str) -> KaggleUser | None:
        if not token:
            return None
        return next((u for u in self.users.values() if token in u.tokens), None)

    def rate_limit(
        self, method: str, *, times: int = 1, retry_after: str | None = "1", style: str = "legacy"
    ) -> Fault:
        """Arm ``times`` 429 answers for an RPC method (``"DownloadDataset"``), legacy or RPC body style."""
        body: dict[str, object]
        if style == "rpc":
            body = {"error": {"code": 429, "message": "Too many requests", "status": "RESOURCE_EXHAUSTED"}}
        else:
            body = {"code": 429, "message": "TooManyRequests"}
        return self.faults.add(
            "status",
            path_glob=f"*/{method}",
            status=429,
            times=times,
            retry_after=retry_after,
            body=json.dumps(body).encode(),
            content_type=JSON,
        )
