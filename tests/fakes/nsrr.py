"""A fake of the NSRR cloud API (``cloud.sleepdata.org/api/v1``) as the official PyPI client ``nsrr`` 0.2.0
uses it (docs/sources-protocols.md, "NSRR"); the bytes live in a :class:`FakeBucket` behind signed URLs.

* ``GET /api/v1/list/access`` with header ``token:`` -> ``{"datasets": [{"Dataset", "Full Name", "URL",
  "Access"}]}``; a missing or unknown token -> 401 ``{"error": ...}`` (status inferred);
* ``GET /api/v1/list/all-files?dataset_name=<ds>`` (no auth) -> ``{"open_files": {"<ds>/<path>": {"size",
  "md5"}}, "controlled_files": {"<path>": {...}}}``; ``/list/all-subjects`` and ``/list/subject-files``
  (subject = the digits of a file name, as SHHS's ``shhs1-200001.edf``); an unknown dataset -> 404;
* ``GET /api/v1/auth-token?dataset_name=<ds>`` with header ``token:`` -> ``{"auth_token": "<t>"}`` valid
  ``auth_ttl`` seconds; unknown token -> 401, no approved DUA for the dataset -> 403;
* ``GET /api/v1/download/url/open?file_name=<ds/path>`` and ``/download/url/controlled?file_name=<path>``
  (``Authorization: Bearer <auth_token>``, else 401) -> the body is a presigned URL (``url_ttl`` s) of the
  object in the bucket ``nsrr-cloud``, as ``text/plain``;
* ``redirects`` (API path -> URL, e.g. ``{"/auth-token": ...}``): that endpoint answers 302 there instead
  (for credential-stripping tests: neither the user token nor the auth token may follow).

The fault plan of the *bucket* applies to the bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from dataclasses import dataclass, field

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, TLSServerMixin

__all__ = ["FakeNsrr", "NsrrDataset"]

BUCKET = "nsrr-cloud"


@dataclass
class NsrrDataset:
    slug: str
    open_files: dict[str, bytes]  # path relative to the dataset -> bytes
    controlled_files: dict[str, bytes] = field(default_factory=dict)
    name: str = "Sleep Heart Health Study"


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


class _Handler(BaseFakeHandler):
    server_header = "nginx"
    fake: FakeNsrr

    def _json(self, status: int, payload: object) -> None:
        self.respond(status, json.dumps(payload).encode(), content_type="application/json")

    def _q(self, name: str) -> str:
        return (self.query.get(name) or [""])[-1]

    def route(self) -> None:
        if self.command != "GET":
            self._json(405, {"error": "Method not allowed"})
            return
        path = self.url_path.removeprefix("/api/v1")
        if path in self.fake.redirects:
            self.respond(302, b"", content_type=None, headers=[("Location", self.fake.redirects[path])])
            return
        handler = {
            "/list/access": self._access,
            "/list/all-files": self._all_files,
            "/list/all-subjects": self._subjects,
            "/list/subject-files": self._subject_files,
            "/auth-token": self._auth_token,
            "/download/url/open": self._url_open,
            "/download/url/controlled": self._url_controlled,
        }.get(path)
        if handler is None:
            self._json(404, {"error": "Not found"})
        else:
            handler()

    # -- lists ----------------------------------------------------------------------------------
    def _user(self) -> str | None:
        token = self.headers.get("token")
        return self.fake.users.get(token or "") if token else None

    def _access(self) -> None:
        user = self._user()
        if user is None:
            self._json(401, {"error": "Invalid token"})
            return
        rows = [
            {"Dataset": d.slug, "Full Name": d.name, "URL": f"https://sleepdata.org/datasets/{d.slug}",
             "Access": "Yes" if d.slug in self.fake.grants.get(user, set()) else "No"}
            for d in self.fake.datasets.values()
        ]  # fmt: skip
        self._json(200, {"datasets": rows})

    def _dataset(self) -> NsrrDataset | None:
        ds = self.fake.datasets.get(self._q("dataset_name"))
        if ds is None:
            self._json(404, {"error": "Dataset not found"})
        return ds

    def _listing(self, ds: NsrrDataset, subject: str | None = None) -> dict[str, object]:
        def keep(path: str) -> bool:
            return subject is None or subject in re.findall(r"\d+", path.rsplit("/", 1)[-1])

        return {
            "open_files": {f"{ds.slug}/{p}": {"size": len(b), "md5": _md5(b)}
                           for p, b in ds.open_files.items() if keep(p)},
            "controlled_files": {p: {"size": len(b), "md5": _md5(b)}
                                 for p, b in ds.controlled_files.items() if keep(p)},
        }  # fmt: skip

    def _all_files(self) -> None:
        ds = self._dataset()
        if ds is not None:
            self._json(200, self._listing(ds))

    def _subjects(self) -> None:
        ds = self._dataset()
        if ds is not None:
            names = [p.rsplit("/", 1)[-1] for p in [*ds.open_files, *ds.controlled_files]]
            subjects = sorted({m for n in names for m in re.findall(r"\d{6}", n)})
            self._json(200, {"subjects": subjects})

    def _subject_files(self) -> None:
        ds = self._dataset()
        if ds is not None:
            self._json(200, self._listing(ds, self._q("subject")))

    # -- tokens and URLs ------------------------------------------------------------------------
    def _auth_token(self) -> None:
        user = self._user()
        ds = self._dataset() if user is not None else None
        if user is None:
            self._json(401, {"error": "Invalid token"})
            return
        if ds is None:
            return
        if ds.slug not in self.fake.grants.get(user, set()):
            self._json(403, {"error": "No approved data access request for this dataset"})
            return
        token = secrets.token_urlsafe(24)
        self.fake.auth_tokens[token] = (ds.slug, time.time() + self.fake.auth_ttl)
        self._json(200, {"auth_token": token})

    def _send_url(self, key: str) -> None:
        url = self.fake.storage.sign(BUCKET, key, self.fake.url_ttl)
        self.respond(200, url.encode(), content_type="text/plain; charset=utf-8")

    def _url_open(self) -> None:
        key = self._q("file_name")
        slug, _, rel = key.partition("/")
        ds = self.fake.datasets.get(slug)
        if ds is None or rel not in ds.open_files:
            self._json(404, {"error": "File not found"})
            return
        self._send_url(key)

    def _url_controlled(self) -> None:
        auth = self.headers.get("Authorization", "")
        grant = self.fake.auth_tokens.get(auth[7:]) if auth.startswith("Bearer ") else None
        if grant is None or grant[1] < time.time():
            self._json(401, {"error": "Invalid or expired auth token"})
            return
        ds = self.fake.datasets[grant[0]]
        key = self._q("file_name")
        if key not in ds.controlled_files:
            self._json(404, {"error": "File not found"})
            return
        self._send_url(f"{ds.slug}/{key}")


class FakeNsrr(TLSServerMixin, FakeHTTPServer):
    """``users`` maps a user token to a user name; ``grants`` a user name to the datasets whose data access
    request is approved."""

    handler_class = _Handler

    def __init__(
        self,
        datasets: list[NsrrDataset],
        storage: FakeBucket,
        *,
        users: dict[str, str] | None = None,
        grants: dict[str, set[str]] | None = None,
        auth_ttl: float = 3600,
        url_ttl: int = 3600,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.datasets = {d.slug: d for d in datasets}
        self.storage = storage
        self.users = users or {}
        self.grants = grants or {}
        self.auth_ttl = auth_ttl
        self.url_ttl = url_ttl
        self.auth_tokens: dict[str, tuple[str, float]] = {}
        self.redirects: dict[str, str] = {}

    def start(self) -> FakeNsrr:
        super().start()
        for d in self.datasets.values():
            for path, data in {**d.open_files, **d.controlled_files}.items():
                self.storage.put(BUCKET, f"{d.slug}/{path}", data, public=False)
        return self

    @property
    def api(self) -> str:
        return f"{self.base_url}/api/v1"
