"""A faithful fake of GitHub's download surface (sources.md §6.1): four hosts plus an object store.

* ``api`` (api.github.com): ``GET /repos/<o>/<r>``, ``/repos/<o>/<r>/releases/tags/<tag>`` (``assets[]``
  with ``name, size, url, browser_download_url, content_type, digest: "sha256:<hex>"`` -- ``null`` for
  assets uploaded before digests existed), ``/repos/<o>/<r>/releases/assets/<id>`` (JSON, or with
  ``Accept: application/octet-stream`` a 302 to the signed object URL),
  ``/repos/<o>/<r>/tarball|zipball/<ref>`` (302 to codeload; for a private repository the codeload URL
  carries its own short-lived ``token=``). Errors are ``{"message": ..., "documentation_url": ...}``: 404
  for missing *and* for private without a token, 401 ``Bad credentials``. Rate limit:
  ``x-ratelimit-limit/remaining/used/reset/resource`` on every answer, and past ``rate_limit`` requests per
  ``window`` seconds a 403 "API rate limit exceeded" with ``x-ratelimit-remaining: 0`` (a token gets
  ``token_rate_limit``);
* ``web`` (github.com): ``/<o>/<r>/releases/download/<tag>/<name>`` -> 302 to a presigned object-store URL
  (``X-Amz-Expires=300``, ``response-content-disposition=attachment; filename=<name>``); private -> 404;
* ``raw`` (raw.githubusercontent.com): ``/<o>/<r>/<ref>/<path>`` -> ``text/plain; charset=utf-8`` whatever
  the file, an opaque strong ETag, Range, ``Cache-Control: max-age=300``; private needs
  ``Authorization: token|Bearer``; missing -> 404 ``404: Not Found``;
* ``codeload`` (codeload.github.com): ``/<o>/<r>/legacy.tar.gz|legacy.zip/<ref>`` -> a deterministic
  archive of the tree with the ``<o>-<r>-<sha7>/`` top folder, no Range support (200 to a Range request);
* ``objects`` (a :class:`~tests.fakes.bucket.FakeBucket`): where release assets and Git LFS objects
  live, private, reachable only through signed URLs; it logs whether any request carried an
  ``Authorization`` header;
* Git LFS (git-lfs docs/api/batch.md) on ``web``: ``POST /<o>/<r>.git/info/lfs/objects/batch`` with
  ``Accept``/``Content-Type: application/vnd.git-lfs+json`` and ``{"operation": "download", "objects":
  [{"oid", "size"}]}`` -> ``{"transfer": "basic", "objects": [{"oid", "size", "authenticated": true,
  "actions": {"download": {"href": <signed object-store URL>, "expires_in": 3600, "expires_at": ...}}}]}``;
  a missing object is a per-object ``"error": {"code": 404, "message": "Object does not exist on the
  server"}`` (overall 200); a wrong Accept is 406; a private repository without credentials 401 with
  ``LFS-Authenticate: Basic realm="GitHub"`` (HTTP Basic with the token as password, or Bearer); a
  repository over its data quota 403 with GitHub's quota message (``over_quota``). The tree holds the pointer
  text (``raw`` serves it); :func:`lfs_pointer` makes one.

All hosts share one fault plan (file bodies only: raw, codeload, objects).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import secrets
import tarfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import quote

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, serve_file

__all__ = ["FakeAsset", "FakeGitHub", "FakeRelease", "FakeRepo", "lfs_pointer"]

LFS_JSON = "application/vnd.git-lfs+json"
LFS_QUOTA = (
    "This repository is over its data quota. Account responsible for LFS bandwidth should purchase more data "
    "packs to restore access."
)


def lfs_pointer(data: bytes) -> bytes:
    """The Git LFS pointer file of ``data`` (docs/spec.md: version, then oid and size, sorted)."""
    oid = hashlib.sha256(data).hexdigest()
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {len(data)}\n".encode()


_JSON = "application/json; charset=utf-8"
_DOCS = "https://docs.github.com/rest"
_EPOCH = 1700000000.0  # fixed archive member times, so an archive's bytes (and sha256) never change


@dataclass
class FakeAsset:
    name: str
    data: bytes
    digest: bool = True  # False: an asset uploaded before 2025-06 (``digest: null``)
    content_type: str = "application/octet-stream"
    id: int = field(default_factory=lambda: secrets.randbelow(10**8) + 10**8)


@dataclass
class FakeRelease:
    tag: str
    assets: list[FakeAsset]
    id: int = field(default_factory=lambda: secrets.randbelow(10**8) + 10**8)


@dataclass
class FakeRepo:
    owner: str
    name: str
    commits: dict[str, dict[str, bytes]]  # commit sha -> {path: bytes}
    releases: list[FakeRelease] = field(default_factory=list)
    private: bool = False
    lfs: list[bytes] = field(default_factory=list)  # Git LFS objects stored for this repository
    over_quota: bool = False  # LFS bandwidth spent: the batch API answers 403

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    def archive(self, sha: str, fmt: str) -> bytes:
        """A deterministic tar.gz or zip of the tree at ``sha`` (top folder ``<owner>-<name>-<sha7>``)."""
        top = f"{self.owner}-{self.name}-{sha[:7]}"
        tree = self.commits[sha]
        buf = io.BytesIO()
        if fmt == "zip":
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
                for path in sorted(tree):
                    member = zipfile.ZipInfo(f"{top}/{path}", time.gmtime(_EPOCH)[:6])
                    member.compress_type = zipfile.ZIP_DEFLATED
                    z.writestr(member, tree[path])
            return buf.getvalue()
        with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
            for path in sorted(tree):
                info = tarfile.TarInfo(f"{top}/{path}")
                info.size, info.mtime, info.mode = len(tree[path]), int(_EPOCH), 0o644
                tar.addfile(info, io.BytesIO(tree[path]))
        return buf.getvalue()


class _Handler(BaseFakeHandler):
    server_header = "github.com"
    role = ""
    fake: _Host

    @property
    def gh(self) -> FakeGitHub:
        return self.fake.owner

    def _json(self, status: int, payload: object, headers: list[tuple[str, str]] | None = None) -> None:
        self.respond(status, json.dumps(payload).encode(), content_type=_JSON, headers=headers or [])

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        return value.strip() if scheme.lower() in ("token", "bearer") and value else None

    def route(self) -> None:
        if (
            self.command == "POST"
            and self.fake.role == "web"
            and self.url_path.endswith(".git/info/lfs/objects/batch")
        ):
            self._lfs_batch()
            return
        if self.command not in ("GET", "HEAD"):
            self.respond(405, b"", content_type=None)
            return
        getattr(self, f"_route_{self.fake.role}")()

    # -- github.com/<o>/<r>.git/info/lfs/objects/batch ---------------------------------------------
    def _basic_or_token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        scheme, _, value = auth.partition(" ")
        if scheme.lower() == "basic":
            try:
                return base64.b64decode(value).decode().partition(":")[2] or None
            except (ValueError, UnicodeDecodeError):
                return None
        return self._token()

    def _lfs(self, status: int, payload: object, headers: list[tuple[str, str]] | None = None) -> None:
        self.respond(status, json.dumps(payload).encode(), content_type=LFS_JSON, headers=headers or [])

    def _lfs_batch(self) -> None:
        gh = self.gh
        body = self.read_body()
        if gh.lfs_redirect:  # a test knob: where a hostile or misconfigured server could send the client
            self.respond(307, b"", content_type=None, headers=[("Location", gh.lfs_redirect)])
            return
        m = re.match(r"^/([^/]+)/([^/]+)\.git/info/lfs/objects/batch$", self.url_path)
        repo = gh.repo(m.group(1), m.group(2)) if m else None
        docs = "https://docs.github.com/repositories/working-with-files/managing-large-files"
        if LFS_JSON not in self.headers.get("Accept", ""):
            self._lfs(
                406, {"message": "Must accept 'application/vnd.git-lfs+json'", "documentation_url": docs}
            )
            return
        token = self._basic_or_token()
        if token is not None and token not in gh.tokens:
            self._lfs(401, {"message": "Bad credentials", "documentation_url": docs},
                      [("LFS-Authenticate", 'Basic realm="GitHub"')])  # fmt: skip
            return
        if repo is not None and repo.private and token is None:
            self._lfs(401, {"message": "Authentication required", "documentation_url": docs},
                      [("LFS-Authenticate", 'Basic realm="GitHub"')])  # fmt: skip
            return
        if repo is None:
            self._lfs(404, {"message": "Repository not found", "documentation_url": docs})
            return
        try:
            req = json.loads(body)
            wanted = [(str(o["oid"]), int(o["size"])) for o in req["objects"]]
        except (ValueError, KeyError, TypeError):
            self._lfs(422, {"message": "Unprocessable entity", "documentation_url": docs})
            return
        if req.get("operation") != "download":
            self._lfs(403, {"message": "Upload not permitted", "documentation_url": docs})
            return
        if repo.over_quota:
            self._lfs(
                403, {"message": LFS_QUOTA, "documentation_url": f"{docs}/about-storage-and-bandwidth-usage"}
            )
            return
        stored = {hashlib.sha256(d).hexdigest(): d for d in repo.lfs}
        out = []
        for oid, size in wanted:
            data = stored.get(oid)
            if data is None:
                out.append(
                    {
                        "oid": oid,
                        "size": size,
                        "error": {"code": 404, "message": "Object does not exist on the server"},
                    }
                )  # noqa: E501
                continue
            ttl = gh.lfs_ttl
            stale = gh.lfs_stale > 0  # a test knob: an href already past its lifetime when it is used
            if stale:
                gh.lfs_stale -= 1
                gh.objects.advance(-2 * ttl)
            href = gh.objects.sign("github-cloud", f"{repo.full_name}/{oid}", ttl)
            if stale:
                gh.objects.advance(2 * ttl)
            expires_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + ttl))
            gh.lfs_issued += 1
            action = {"href": href, "expires_in": ttl, "expires_at": expires_at}
            out.append(
                {"oid": oid, "size": len(data), "authenticated": True, "actions": {"download": action}}
            )
        self._lfs(200, {"transfer": "basic", "objects": out})

    # -- api.github.com ---------------------------------------------------------------------------
    def _route_api(self) -> None:
        gh, token = self.gh, self._token()
        if token is not None and token not in gh.tokens:
            self._json(401, {"message": "Bad credentials", "documentation_url": _DOCS, "status": "401"})
            return
        ok, limits = gh._spend(token is not None)
        if not ok:
            self._json(
                403,
                {
                    "message": "API rate limit exceeded for 127.0.0.1. (But here's the good news: "
                    "Authenticated "
                    "requests get a higher rate limit. Check out the documentation for more details.)",
                    "documentation_url": f"{_DOCS}/overview/rate-limits-for-the-rest-api",
                },
                limits,
            )
            return
        m = re.match(r"^/repos/([^/]+)/([^/]+)(/.*)?$", self.url_path)
        repo = gh.repo(m.group(1), m.group(2)) if m else None
        if repo is None or (repo.private and token is None):
            self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, limits)
            return
        rest = (m.group(3) if m else "") or ""
        api = f"{gh.api.base_url}/repos/{repo.full_name}"
        if rest in ("", "/"):
            self._json(200, {"full_name": repo.full_name, "private": repo.private, "url": api}, limits)
        elif mm := re.match(r"^/releases/tags/(.+)$", rest):
            release = next((r for r in repo.releases if r.tag == mm.group(1)), None)
            if release is None:
                self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, limits)
            else:
                self._json(200, gh.release_json(repo, release), limits)
        elif mm := re.match(r"^/releases/assets/(\d+)$", rest):
            found = gh.asset(repo, int(mm.group(1)))
            if found is None:
                self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, limits)
            elif "application/octet-stream" in self.headers.get("Accept", ""):
                url = gh.objects.sign(
                    "github-release-assets", gh.object_key(found[1]), 300, filename=found[1].name
                )
                self.respond(302, b"", content_type=None, headers=limits + [("Location", url)])
            else:
                self._json(200, gh.asset_json(repo, found[0], found[1]), limits)
        elif mm := re.match(r"^/(tarball|zipball)/([0-9a-f]{40})$", rest):
            if mm.group(2) not in repo.commits:
                self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, limits)
                return
            fmt = "legacy.tar.gz" if mm.group(1) == "tarball" else "legacy.zip"
            url = f"{gh.codeload.base_url}/{repo.full_name}/{fmt}/{mm.group(2)}"
            if repo.private:
                url += "?token=" + gh.mint_codeload_token()
            self.respond(302, b"", content_type=None, headers=limits + [("Location", url)])
        else:
            self._json(404, {"message": "Not Found", "documentation_url": _DOCS, "status": "404"}, limits)

    # -- github.com -------------------------------------------------------------------------------
    def _route_web(self) -> None:
        gh = self.gh
        m = re.match(r"^/([^/]+)/([^/]+)/releases/download/([^/]+)/([^/]+)$", self.url_path)
        repo = gh.repo(m.group(1), m.group(2)) if m else None
        if m is None or repo is None or repo.private:
            self.respond(404, b"Not Found", content_type="text/plain; charset=utf-8")
            return
        release = next((r for r in repo.releases if r.tag == m.group(3)), None)
        asset = next((a for a in release.assets if a.name == m.group(4)), None) if release else None
        if asset is None:
            self.respond(404, b"Not Found", content_type="text/plain; charset=utf-8")
            return
        url = gh.objects.sign("github-release-assets", gh.object_key(asset), 300, filename=asset.name)
        self.respond(302, b"", content_type="text/html; charset=utf-8", headers=[("Location", url)])

    # -- raw.githubusercontent.com -----------------------------------------------------------------
    def _route_raw(self) -> None:
        gh = self.gh
        parts = self.url_path.lstrip("/").split("/", 3)
        repo = gh.repo(parts[0], parts[1]) if len(parts) == 4 else None
        token = self._token()
        tree = repo.commits.get(parts[2]) if repo is not None else None
        if (
            tree is None
            or parts[3] not in tree
            or (repo is not None and repo.private and (token is None or token not in gh.tokens))
        ):
            self.respond(404, b"404: Not Found", content_type="text/plain; charset=utf-8")
            return
        data = tree[parts[3]]
        fault = self.file_fault(faults=gh.faults)
        serve_file(
            self,
            data,
            content_type="text/plain; charset=utf-8",
            mtime=_EPOCH,
            etag=f'"{hashlib.sha256(data).hexdigest()}"',
            extra_headers=[
                ("Cache-Control", "max-age=300"),
                ("X-Content-Type-Options", "nosniff"),
                ("Access-Control-Allow-Origin", "*"),
                ("X-GitHub-Request-Id", secrets.token_hex(8).upper()),
            ],
            fault=fault,
        )

    # -- codeload.github.com -----------------------------------------------------------------------
    def _route_codeload(self) -> None:
        gh = self.gh
        m = re.match(
            r"^/([^/]+)/([^/]+)/(legacy\.tar\.gz|legacy\.zip|tar\.gz|zip)/([0-9a-f]{40})$", self.url_path
        )
        repo = gh.repo(m.group(1), m.group(2)) if m else None
        if m is None or repo is None or m.group(4) not in repo.commits:
            self.respond(404, b"404: Not Found", content_type="text/plain; charset=utf-8")
            return
        if repo.private and self.query.get("token", [""])[-1] not in gh.codeload_tokens:
            self.respond(404, b"404: Not Found", content_type="text/plain; charset=utf-8")
            return
        fmt = "zip" if m.group(3).endswith("zip") else "tar.gz"
        data = repo.archive(m.group(4), fmt)
        fault = self.file_fault(faults=gh.faults)
        name = f"{repo.owner}-{repo.name}-{m.group(4)[:7]}.{fmt}"
        serve_file(
            self,
            data,
            content_type="application/zip" if fmt == "zip" else "application/x-gzip",
            mtime=_EPOCH,
            etag=f'"{hashlib.sha1(data).hexdigest()}"',
            extra_headers=[("Content-Disposition", f"attachment; filename={name}")],
            fault=fault,
            ranges=False,
        )


class _Host(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self, owner: FakeGitHub, role: str, faults: FaultPlan) -> None:
        super().__init__(faults=faults)
        self.owner, self.role = owner, role


class FakeGitHub:
    """api + web + raw + codeload + objects, started and stopped together."""

    def __init__(
        self,
        repos: list[FakeRepo],
        *,
        tokens: set[str] | None = None,
        rate_limit: int = 60,
        token_rate_limit: int = 5000,
        window: float = 3600.0,
    ) -> None:
        self.repos = {(r.owner.lower(), r.name.lower()): r for r in repos}
        self.tokens = tokens or set()
        self.faults = FaultPlan()
        self.api = _Host(self, "api", self.faults)
        self.web = _Host(self, "web", self.faults)
        self.raw = _Host(self, "raw", self.faults)
        self.codeload = _Host(self, "codeload", self.faults)
        self.objects = FakeBucket(style="s3", faults=self.faults)
        self.rate_limit, self.token_rate_limit, self.window = rate_limit, token_rate_limit, window
        self.codeload_tokens: set[str] = set()
        self.lfs_ttl = 3600  # seconds an LFS download href is valid (expires_in)
        self.lfs_issued = 0
        self.lfs_stale = 0  # this many batch answers give an href that has already expired
        self.lfs_redirect: str | None = None  # batch answers 307 to this URL (tests of where tokens go)
        self._lock = threading.Lock()
        self._used = {False: 0, True: 0}
        self._window_end = {False: 0.0, True: 0.0}

    @property
    def hosts(self) -> list[FakeHTTPServer]:
        return [self.api, self.web, self.raw, self.codeload, self.objects]

    def start(self) -> Self:
        for h in self.hosts:
            h.start()
        for repo in self.repos.values():
            for data in repo.lfs:
                oid = hashlib.sha256(data).hexdigest()
                self.objects.put("github-cloud", f"{repo.full_name}/{oid}", data, public=False)
            for release in repo.releases:
                for asset in release.assets:
                    key = self.object_key(asset)
                    ctype = asset.content_type
                    self.objects.put(
                        "github-release-assets", key, asset.data, content_type=ctype, public=False
                    )
        return self

    def stop(self) -> None:
        for h in self.hosts:
            h.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- model --------------------------------------------------------------------------------------
    def repo(self, owner: str, name: str) -> FakeRepo | None:
        return self.repos.get((owner.lower(), name.lower()))

    def asset(self, repo: FakeRepo, asset_id: int) -> tuple[FakeRelease, FakeAsset] | None:
        for release in repo.releases:
            for a in release.assets:
                if a.id == asset_id:
                    return release, a
        return None

    @staticmethod
    def object_key(asset: FakeAsset) -> str:
        return f"{asset.id}/{quote(asset.name)}"

    def mint_codeload_token(self) -> str:
        tok = "AAB" + secrets.token_hex(16).upper()
        self.codeload_tokens.add(tok)
        return tok

    def asset_json(self, repo: FakeRepo, release: FakeRelease, a: FakeAsset) -> dict[str, object]:
        return {
            "url": f"{self.api.base_url}/repos/{repo.full_name}/releases/assets/{a.id}",
            "id": a.id,
            "node_id": f"RA_{a.id}",
            "name": a.name,
            "label": "",
            "content_type": a.content_type,
            "state": "uploaded",
            "size": len(a.data),
            "digest": f"sha256:{hashlib.sha256(a.data).hexdigest()}" if a.digest else None,
            "download_count": 0,
            "created_at": "2025-07-01T00:00:00Z",
            "updated_at": "2025-07-01T00:00:00Z",
            "browser_download_url": (
                f"{self.web.base_url}/{repo.full_name}/releases/download/{release.tag}/{quote(a.name)}"
            ),
        }

    def release_json(self, repo: FakeRepo, release: FakeRelease) -> dict[str, object]:
        api = f"{self.api.base_url}/repos/{repo.full_name}/releases/{release.id}"
        return {
            "url": api,
            "assets_url": f"{api}/assets",
            "html_url": f"{self.web.base_url}/{repo.full_name}/releases/tag/{release.tag}",
            "id": release.id,
            "tag_name": release.tag,
            "name": release.tag,
            "draft": False,
            "prerelease": False,
            "assets": [self.asset_json(repo, release, a) for a in release.assets],
            "tarball_url": f"{self.api.base_url}/repos/{repo.full_name}/tarball/{release.tag}",
            "zipball_url": f"{self.api.base_url}/repos/{repo.full_name}/zipball/{release.tag}",
        }

    # -- rate limit ---------------------------------------------------------------------------------
    def _spend(self, authenticated: bool) -> tuple[bool, list[tuple[str, str]]]:
        limit = self.token_rate_limit if authenticated else self.rate_limit
        with self._lock:
            now = time.time()
            if now >= self._window_end[authenticated]:
                self._window_end[authenticated], self._used[authenticated] = now + self.window, 0
            allowed = self._used[authenticated] < limit
            if allowed:
                self._used[authenticated] += 1
            used, reset = self._used[authenticated], int(self._window_end[authenticated]) + 1
        return allowed, [
            ("x-ratelimit-limit", str(limit)),
            ("x-ratelimit-remaining", str(limit - used)),
            ("x-ratelimit-reset", str(reset)),
            ("x-ratelimit-used", str(used)),
            ("x-ratelimit-resource", "core"),
        ]
