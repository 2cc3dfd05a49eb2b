"""A faithful fake of grand-challenge.org's archive API (Django REST Framework) and its CloudFront media host.

From /work/shared/reference/sources.md §3 and the corrections in §10 #10-#13, checked with gcapi 0.16.1:

* ``GET /api/v1/gcapi/`` (no auth) -> ``{"latest_version", "lowest_supported_version"}``;
* ``GET /api/v1/archives/[?slug=]`` and ``/api/v1/archives/<pk>/``;
* ``GET /api/v1/archives/items/?archive=<pk>`` and ``/api/v1/archives/items/<pk>/``;
* ``GET /api/v1/cases/images/?archive=<pk>`` and ``/api/v1/cases/images/<pk>/``;
* DRF limit/offset pagination (default 100, max 1000): ``{"count", "next", "previous", "results"}`` with
  absolute ``next``/``previous``; every field gcapi's pydantic models require (§10 #12); ``Content-Type``
  exactly ``application/json`` (§10 #10);
* ``?archive=<unknown pk>`` -> **400** ``{"archive": ["Select a valid choice. ..."]}`` (the filter spans all
  archives); an archive that exists but that the caller may not see -> an empty page (§10 #13); its detail ->
  404;
* auth: ``Authorization: Bearer <token>`` (keyword case-insensitive, gcapi sends ``BEARER``); an unknown token
  -> **401** ``{"detail":"Invalid token."}`` with ``WWW-Authenticate: Bearer``; no token = the anonymous user,
  who sees public archives only;
* media: ``GET /media/images/<pk[0:2]>/<pk[2:4]>/<image pk>/<file pk>/<name>`` and
  ``/media/components/componentinterfacevalue/<..>/<..>/<civ pk>/<name>``: unknown -> 404, a bad token
  silently falls back to anonymous, no permission -> **403**, else **302** to a CloudFront-signed URL
  (``Expires``, ``Signature``, ``Key-Pair-Id``) on another port, valid ``url_ttl`` = 300 s (expired -> 403
  ``AccessDenied``).

Pass ``tls=`` an :class:`ssl.SSLContext` to serve https (gcapi refuses anything else); the media host then
uses the same context.  API and media answers consume ``status`` faults from ``faults`` (matched on the
path); the bytes' faults go to ``storage.faults``.
"""

from __future__ import annotations

import itertools
import json
import ssl
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote, urlencode

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan, send_fault_status
from tests.fakes.storage import FakeObjectStore, TLSMixin

__all__ = ["FakeGrandChallenge", "GCArchive", "GCImage", "GCImageFile", "GCItem", "GCSocket", "GCValue"]

JSON = "application/json"  # exactly: gcapi compares the header with == (§10 #10)
LATEST = "0.16.1"
LOWEST = "0.13.0"
_civ_pks = itertools.count(1)
_socket_pks = itertools.count(1)


def _uuid() -> str:
    return str(uuid.uuid4())


@dataclass
class GCImageFile:
    name: str
    data: bytes
    image_type: str = "MHD"  # MHD (.mha, or .mhd + .raw), TIFF, DZI
    pk: str = field(default_factory=_uuid)


@dataclass
class GCImage:
    name: str
    files: list[GCImageFile]
    shape: tuple[int, ...] = (1, 4, 4)  # depth, height, width
    pk: str = field(default_factory=_uuid)


@dataclass
class GCSocket:
    slug: str
    super_kind: str = "Image"  # Image | File | Value
    kind: str = "Image"
    relative_path: str = ""
    title: str = ""
    pk: int = field(default_factory=lambda: next(_socket_pks))

    def __post_init__(self) -> None:
        self.relative_path = self.relative_path or (
            f"images/{self.slug}" if self.super_kind == "Image" else f"{self.slug}.json"
        )
        self.title = self.title or self.slug.replace("-", " ").title()


@dataclass
class GCValue:
    socket: GCSocket
    image: GCImage | None = None
    file: bytes | None = None  # for File sockets: stored under the socket's relative_path name
    value: Any = None
    pk: int = field(default_factory=lambda: next(_civ_pks))


@dataclass
class GCItem:
    values: list[GCValue]
    title: str = ""
    pk: str = field(default_factory=_uuid)


@dataclass
class GCArchive:
    slug: str
    items: list[GCItem]
    title: str = ""
    public: bool = False
    viewers: set[str] = field(default_factory=set)  # usernames allowed to see the archive and its media
    pk: str = field(default_factory=_uuid)

    def visible_to(self, user: str | None) -> bool:
        return self.public or (user is not None and user in self.viewers)


class _ApiError(Exception):
    def __init__(self, status: int, body: Any, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(status)
        self.status, self.body, self.headers = status, body, list(headers)


class _GCHandler(BaseFakeHandler):
    server_header = "nginx"

    def route(self) -> None:
        fake: FakeGrandChallenge = self.fake
        path = self.url_path
        fault = fake.faults.take(path, kinds={"status"})  # the bytes' faults live on the media host
        if fault is not None:
            send_fault_status(self, fault)
            return
        try:
            if self.command not in ("GET", "HEAD"):
                raise _ApiError(405, {"detail": f'Method "{self.command}" not allowed.'})
            if path.startswith("/media/"):
                self._media(path)
                return
            if not path.startswith("/api/v1/"):
                raise _ApiError(404, {"detail": "Not found."})
            if path == "/api/v1/gcapi/":
                self._json({"latest_version": fake.latest_version, "lowest_supported_version": LOWEST})
                return
            user = self._user(strict=True)
            self._api(path[len("/api/v1/") :], user)
        except _ApiError as e:
            self.respond(e.status, json.dumps(e.body).encode(), content_type=JSON, headers=e.headers)

    # -- auth ----------------------------------------------------------------------------------------
    def _user(self, *, strict: bool) -> str | None:
        header = self.headers.get("Authorization") or ""
        keyword, _, token = header.partition(" ")
        if not header or keyword.lower() != "bearer":
            return None
        user = self.fake.tokens.get(token.strip())
        if user is None and strict:
            raise _ApiError(401, {"detail": "Invalid token."}, [("WWW-Authenticate", "Bearer")])
        return user

    # -- JSON API ------------------------------------------------------------------------------------
    def _json(self, obj: Any, status: int = 200) -> None:
        self.respond(
            status, json.dumps(obj).encode(), content_type=JSON, headers=[("Vary", "Accept, Cookie")]
        )

    def _api(self, rest: str, user: str | None) -> None:
        fake: FakeGrandChallenge = self.fake
        q = {k: v[-1] for k, v in self.query.items()}
        parts = [p for p in rest.split("/") if p]
        if parts == ["archives"]:
            found = [a for a in fake.archives.values() if a.visible_to(user)]
            if "slug" in q:
                found = [a for a in found if a.slug == q["slug"]]
            self._page([fake.archive_json(a) for a in found], q, "archives/")
        elif len(parts) == 2 and parts[0] == "archives" and parts[1] != "items":
            archive = fake.archives_by_pk.get(parts[1])
            if archive is None or not archive.visible_to(user):
                raise _ApiError(404, {"detail": "No Archive matches the given query."})
            self._json(fake.archive_json(archive))
        elif parts == ["archives", "items"]:
            items = [(a, i) for a in self._filtered(q, user) for i in a.items]
            self._page([fake.item_json(a, i) for a, i in items], q, "archives/items/")
        elif len(parts) == 3 and parts[:2] == ["archives", "items"]:
            hits = [
                (a, i)
                for a in fake.archives.values()
                if a.visible_to(user)
                for i in a.items
                if i.pk == parts[2]
            ]
            if not hits:
                raise _ApiError(404, {"detail": "No ArchiveItem matches the given query."})
            self._json(fake.item_json(*hits[0]))
        elif parts == ["cases", "images"]:
            images = [img for a in self._filtered(q, user) for img in fake.images_of(a)]
            self._page([fake.image_json(img) for img in images], q, "cases/images/")
        elif len(parts) == 3 and parts[:2] == ["cases", "images"]:
            for a in fake.archives.values():
                for img in fake.images_of(a):
                    if img.pk == parts[2] and a.visible_to(user):
                        self._json(fake.image_json(img))
                        return
            raise _ApiError(404, {"detail": "No Image matches the given query."})
        else:
            raise _ApiError(404, {"detail": "Not found."})

    def _filtered(self, q: dict[str, str], user: str | None) -> list[GCArchive]:
        archives = list(self.fake.archives.values())
        if "archive" in q:
            archive = self.fake.archives_by_pk.get(q["archive"])
            if archive is None:
                raise _ApiError(
                    400,
                    {
                        "archive": [
                            f"Select a valid choice. {q['archive']} is not one of the available choices."
                        ]
                    },
                )
            archives = [archive]
        return [a for a in archives if a.visible_to(user)]

    def _page(self, results: list[Any], q: dict[str, str], route: str) -> None:
        try:
            limit = int(q.get("limit") or self.fake.page_size)
            offset = int(q.get("offset") or 0)
        except ValueError:
            limit, offset = self.fake.page_size, 0
        limit = max(1, min(limit, self.fake.max_limit))
        offset = max(0, offset)
        base = f"{self.fake.base_url}/api/v1/{route}"
        keep = [(k, v) for k, v in q.items() if k not in ("limit", "offset")]

        def link(new_offset: int | None) -> str:
            pairs = [*keep, ("limit", str(limit))] + ([("offset", str(new_offset))] if new_offset else [])
            return f"{base}?{urlencode(pairs)}"

        nxt = link(offset + limit) if offset + limit < len(results) else None
        prev = None if offset <= 0 else link(offset - limit if offset - limit > 0 else None)
        self._json(
            {
                "count": len(results),
                "next": nxt,
                "previous": prev,
                "results": results[offset : offset + limit],
            }
        )

    # -- media ---------------------------------------------------------------------------------------
    def _media(self, path: str) -> None:
        fake: FakeGrandChallenge = self.fake
        found = fake.media.get(path)
        if found is None:
            self.respond(404, b"<h1>Not Found</h1>", content_type="text/html; charset=utf-8")
            return
        archive, key = found
        user = self._user(strict=False)  # serve_images: a bad token falls back to the session/anonymous user
        if not archive.visible_to(user):
            self.respond(403, b"<h1>403 Forbidden</h1>", content_type="text/html; charset=utf-8")
            return
        fake.downloads += 1
        url = fake.storage.sign(key, fake.url_ttl)
        self.respond(302, b"", content_type="text/html; charset=utf-8", headers=[("Location", url)])


class FakeGrandChallenge(TLSMixin, FakeHTTPServer):
    """grand-challenge.org's API and media views on one port; its CloudFront-like CDN is ``storage``."""

    handler_class = _GCHandler

    def __init__(
        self,
        *,
        archives: Iterable[GCArchive] = (),
        tokens: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        storage: FakeObjectStore | None = None,
        page_size: int = 100,
        max_limit: int = 1000,
        url_ttl: int = 300,
        latest_version: str = LATEST,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, faults=faults)
        self.tls = tls
        self.archives = {a.slug: a for a in archives}
        self.archives_by_pk = {a.pk: a for a in self.archives.values()}
        self.tokens = dict(tokens or {})  # token -> username
        self._own_storage = storage is None
        self.storage = (
            storage if storage is not None else FakeObjectStore(style="cloudfront", tls=tls, host=host)
        )
        self.page_size, self.max_limit = page_size, max_limit  # DRF: PAGE_SIZE 100, max_limit 1000
        self.url_ttl = url_ttl
        self.latest_version = latest_version
        self.media: dict[str, tuple[GCArchive, str]] = {}  # media path -> (archive, storage key)
        self.downloads = 0  # how many signed URLs the media view handed out

    def start(self) -> Self:
        self.storage.start()
        super().start()
        self.publish()
        return self

    def stop(self) -> None:
        super().stop()
        if self._own_storage:
            self.storage.stop()

    def publish(self) -> None:
        """Map every image file and File value to a media path and a storage object (after changes too)."""
        self.archives_by_pk = {a.pk: a for a in self.archives.values()}
        self.media.clear()
        for archive in self.archives.values():
            for img in self.images_of(archive):
                for f in img.files:
                    path = self.image_file_path(img, f)
                    key = "protected" + path
                    self.storage.put(key, f.data, content_type="application/octet-stream")
                    self.media[path] = (archive, key)
            for item in archive.items:
                for v in item.values:
                    if v.file is not None:
                        path = self.civ_file_path(v)
                        key = "protected" + path
                        self.storage.put(key, v.file)
                        self.media[path] = (archive, key)

    # -- serialisation (every field gcapi's models require) ---------------------------------------
    @staticmethod
    def image_file_path(img: GCImage, f: GCImageFile) -> str:
        return f"/media/images/{img.pk[0:2]}/{img.pk[2:4]}/{img.pk}/{f.pk}/{f.name}"

    @staticmethod
    def civ_file_path(v: GCValue) -> str:
        name = v.socket.relative_path.rsplit("/", 1)[-1]
        h = f"{v.pk:04x}"
        return f"/media/components/componentinterfacevalue/{h[0:2]}/{h[2:4]}/{v.pk}/{name}"

    @staticmethod
    def images_of(archive: GCArchive) -> list[GCImage]:
        return [v.image for item in archive.items for v in item.values if v.image is not None]

    def archive_json(self, a: GCArchive) -> dict[str, Any]:
        return {
            "pk": a.pk,
            "title": a.title or a.slug,
            "logo": f"{self.base_url}/media/logos/archive/{a.pk}/logo.png",
            "description": None,
            "api_url": f"{self.base_url}/api/v1/archives/{a.pk}/",
            "url": f"{self.base_url}/archives/{a.slug}/",
        }

    @staticmethod
    def socket_json(s: GCSocket) -> dict[str, Any]:
        return {
            "title": s.title,
            "description": None,
            "slug": s.slug,
            "kind": s.kind,
            "pk": s.pk,
            "default_value": None,
            "super_kind": s.super_kind,
            "relative_path": s.relative_path,
            "overlay_segments": None,
            "look_up_table": None,
        }

    def item_json(self, a: GCArchive, item: GCItem) -> dict[str, Any]:
        values = []
        for v in item.values:
            socket = self.socket_json(v.socket)
            values.append(
                {
                    "pk": v.pk,
                    "socket": socket,
                    "interface": socket,
                    "value": v.value,
                    "file": f"{self.base_url}{quote(self.civ_file_path(v))}" if v.file is not None else None,
                    "image": f"{self.base_url}/api/v1/cases/images/{v.image.pk}/"
                    if v.image is not None
                    else None,
                }
            )
        return {
            "pk": item.pk,
            "archive": f"{self.base_url}/api/v1/archives/{a.pk}/",
            "title": item.title,
            "values": values,
            "hanging_protocol": None,
            "optional_hanging_protocols": [],
            "view_content": {},
        }

    def image_json(self, img: GCImage) -> dict[str, Any]:
        api_url = f"{self.base_url}/api/v1/cases/images/{img.pk}/"
        depth, height, width = (list(img.shape) + [1, 1, 1])[:3]
        return {
            "pk": img.pk,
            "name": img.name,
            "files": [
                {
                    "pk": f.pk,
                    "image": api_url,
                    "file": f"{self.base_url}{quote(self.image_file_path(img, f))}",
                    "image_type": f.image_type,
                }
                for f in img.files
            ],
            "dicom_image_set": None,
            "width": width,
            "height": height,
            "depth": depth,
            "color_space": "GRAY",
            "modality": None,
            "eye_choice": None,
            "stereoscopic_choice": None,
            "field_of_view": None,
            "shape_without_color": list(img.shape),
            "shape": list(img.shape),
            "voxel_width_mm": 1.0,
            "voxel_height_mm": 1.0,
            "voxel_depth_mm": 1.0,
            "api_url": api_url,
            "window_center": None,
            "window_width": None,
            "segments": None,
        }
