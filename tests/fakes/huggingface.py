"""A faithful fake of the Hugging Face Hub's download surface (sources.md §6.2, huggingface_hub 2.4.0).

* ``GET /api/{datasets|models}/<repo>/tree/<revision>[/<path>]?recursive=true`` -> ``[{"type": "file",
  "oid": <git blob sha1>, "size": n, "path": p, "lfs": {"oid": <sha256>, "size": n, "pointerSize": 134}},
  ...]`` (``lfs`` only for LFS files; folders as ``{"type": "directory", ...}``), paginated ``page_size``
  entries at a time with ``Link: <...&cursor=...>; rel="next"``;
* ``GET /api/{datasets|models}/<repo>/revision/<revision>`` -> ``{"id", "sha", "siblings": [{"rfilename"}],
  ...}``;
* ``GET|HEAD /[datasets/]<repo>/resolve/<revision>/<path>``: every answer carries ``X-Repo-Commit``;
  an LFS file -> **302** to the CDN with ``X-Linked-Etag: "<sha256>"``, ``X-Linked-Size``, ``ETag``,
  ``Location`` (a CloudFront-signed URL on a second host that never wants a token); a regular (git) file ->
  200 from the hub itself with ``ETag: "<git blob sha1>"`` and Range;
* refusals carry ``X-Error-Code`` and ``X-Error-Message`` (and ``{"error": ...}``): a private or missing repo
  answers 401 ``RepoNotFound`` to anonymous clients (404 with a valid token), a gated repo 401 ``GatedRepo``
  without a token and 403 ``GatedRepo`` for a token not (yet) granted access, ``RevisionNotFound`` and
  ``EntryNotFound`` 404, an unknown token 401 "Invalid credentials in Authorization header";
* past ``rate_limit`` hub requests per ``window`` seconds -> 429 with the IETF draft headers
  ``RateLimit: "resolvers";r=0;t=<seconds>`` and ``RateLimit-Policy`` (no Retry-After).

The CDN is a :class:`~tests.fakes.bucket.FakeBucket` in CloudFront style (``cdn``); the shared fault plan
applies to file bodies on both hosts.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Self
from urllib.parse import quote, urlencode

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer
from tests.fakes.bucket import FakeBucket, serve_file

__all__ = ["FakeHub", "HubFile", "HubRepo", "git_blob_sha1"]

_JSON = "application/json; charset=utf-8"
_RESOLVE = re.compile(r"^/(datasets/|spaces/)?(.+?)/resolve/([^/]+)/(.+)$")
_API = re.compile(r"^/api/(datasets|models)/(.+?)/(tree|revision)/([^/]+)(?:/(.*))?$")


def git_blob_sha1(data: bytes) -> str:
    """What git (and the Hub, for non-LFS files) calls a file's oid."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class HubFile:
    path: str
    data: bytes
    lfs: bool = True

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


@dataclass
class HubRepo:
    repo_id: str
    files: list[HubFile]
    repo_type: str = "dataset"
    commit: str = field(default_factory=lambda: hashlib.sha1(str(time.time_ns()).encode()).hexdigest())
    private: bool = False
    gated: bool = False
    approved: set[str] = field(default_factory=set)  # tokens granted access to a gated repo

    def file(self, path: str) -> HubFile | None:
        return next((f for f in self.files if f.path == path), None)


class _HubHandler(BaseFakeHandler):
    server_header = "huggingface-hub-fake"
    fake: FakeHub

    def _error(self, status: int, code: str | None, message: str, extra: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        headers = [("X-Error-Message", message), *extra]
        if code:
            headers.append(("X-Error-Code", code))
        self.respond(status, json.dumps({"error": message}).encode(), content_type=_JSON, headers=headers)

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _repo(self, repo_type: str, repo_id: str, *, download: bool) -> HubRepo | None:
        """The repo if the client may read it (download=True: the files themselves); else answers and None."""
        token, hub = self._token(), self.fake
        if token is not None and token not in hub.tokens:
            self._error(401, None, "Invalid credentials in Authorization header")
            return None
        repo = hub.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and token is None):
            status = 404 if token is not None else 401
            self._error(status, "RepoNotFound", "Repository not found")
            return None
        if download and repo.gated and (token is None or token not in repo.approved):
            kind = "dataset" if repo_type == "dataset" else "model"
            page = f"{hub.base_url}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
            if token is None:
                self._error(
                    401,
                    "GatedRepo",
                    f"Access to {kind} {repo_id} is restricted. You must have access to it and be "
                    "authenticated "
                    "to access it. Please log in.",
                )
            else:
                self._error(
                    403,
                    "GatedRepo",
                    f"Access to {kind} {repo_id} is restricted and you are not in the authorized list. "
                    f"Visit {page} to ask for access.",
                )
            return None
        return repo

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self.respond(405, b"", content_type=None)
            return
        allowed, limits = self.fake._spend()
        self._queued_headers.extend(limits)  # on every answer, as the Hub does
        if not allowed:
            self._error(
                429,
                None,
                "You have exceeded our hourly quotas for action: resolve. We invite you to retry later.",
            )
            return
        path = self.url_path
        if m := _API.match(path):
            repo_type = "dataset" if m.group(1) == "datasets" else "model"
            self._api(repo_type, m.group(2), m.group(3), m.group(4), m.group(5) or "")
        elif m := _RESOLVE.match(path):
            repo_type = "dataset" if m.group(1) == "datasets/" else "model"
            self._resolve(repo_type, m.group(2), m.group(3), m.group(4))
        else:
            self._error(404, None, "Not Found")

    def _api(self, repo_type: str, repo_id: str, what: str, revision: str, sub: str) -> None:
        repo = self._repo(repo_type, repo_id, download=False)
        if repo is None:
            return
        if revision not in (repo.commit, "main"):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        if what == "revision":
            body = {
                "id": repo.repo_id,
                "sha": repo.commit,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "siblings": [{"rfilename": f.path} for f in repo.files],
            }
            self.respond(200, json.dumps(body).encode(), content_type=_JSON)
            return
        prefix = sub.rstrip("/") + "/" if sub else ""
        recursive = self.query.get("recursive", ["false"])[-1].lower() in ("true", "1")
        entries: list[dict[str, object]] = []
        dirs: set[str] = set()
        for f in sorted(repo.files, key=lambda f: f.path):
            if not f.path.startswith(prefix):
                continue
            rest = f.path[len(prefix) :]
            parts = rest.split("/")
            for i in range(1, len(parts)):
                d = prefix + "/".join(parts[:i])
                if d not in dirs and (recursive or i == 1):
                    dirs.add(d)
                    entries.append(
                        {"type": "directory", "oid": git_blob_sha1(d.encode()), "size": 0, "path": d}
                    )
            if len(parts) > 1 and not recursive:
                continue
            entry: dict[str, object] = {
                "type": "file",
                "oid": git_blob_sha1(f.data),
                "size": len(f.data),
                "path": f.path,
            }
            if f.lfs:
                entry["oid"] = git_blob_sha1(
                    f"version https://git-lfs.github.com/spec/v1\noid sha256:{f.sha256}\n".encode()
                )
                entry["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": 134}
            entries.append(entry)
        start = int(self.query.get("cursor", ["0"])[-1] or 0)
        page = entries[start : start + self.fake.page_size]
        headers = []
        if start + self.fake.page_size < len(entries):
            q = {k: v[-1] for k, v in self.query.items()}
            q["cursor"] = str(start + self.fake.page_size)
            headers.append(
                ("Link", f'<{self.fake.base_url}{self.path.split("?")[0]}?{urlencode(q)}>; rel="next"')
            )
        self.respond(200, json.dumps(page).encode(), content_type=_JSON, headers=headers)

    def _resolve(self, repo_type: str, repo_id: str, revision: str, path: str) -> None:
        repo = self._repo(repo_type, repo_id, download=True)
        if repo is None:
            return
        if revision not in (repo.commit, "main"):
            self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
            return
        f = repo.file(path)
        if f is None:
            self._error(404, "EntryNotFound", "Entry not found", [("X-Repo-Commit", repo.commit)])
            return
        common = [("X-Repo-Commit", repo.commit), ("Access-Control-Allow-Origin", "*")]
        if f.lfs:
            url = self.fake.cdn.sign("hf-lfs", self.fake.cdn_key(repo, f), self.fake.cdn_ttl)
            body = f"Found. Redirecting to {url}".encode()
            self.respond(
                302,
                body,
                content_type="text/plain; charset=utf-8",
                headers=common
                + [
                    ("X-Linked-Etag", f'"{f.sha256}"'),
                    ("X-Linked-Size", str(len(f.data))),
                    ("ETag", f'W/"{git_blob_sha1(f.data)[:20]}"'),
                    ("Location", url),
                ],
            )
            return
        fault = self.file_fault()
        serve_file(
            self,
            f.data,
            content_type="text/plain; charset=utf-8",
            mtime=1700000000.0,
            etag=f'"{git_blob_sha1(f.data)}"',
            extra_headers=common
            + [("Content-Disposition", f'inline; filename="{quote(f.path.rsplit("/", 1)[-1])}"')],
            fault=fault,
        )


class FakeHub(FakeHTTPServer):
    """The hub (this server) plus its CDN (``cdn``), started and stopped together."""

    handler_class = _HubHandler

    def __init__(
        self,
        repos: list[HubRepo],
        *,
        tokens: set[str] | None = None,
        page_size: int = 1000,
        rate_limit: int | None = None,
        window: float = 300.0,
        cdn_ttl: int = 3600,
    ) -> None:
        super().__init__()
        self.repos = {(r.repo_type, r.repo_id): r for r in repos}
        self.tokens = tokens or set()
        self.page_size = page_size
        self.rate_limit, self.window = rate_limit, window
        self.cdn = FakeBucket(style="cloudfront", faults=self.faults)
        self.cdn_ttl = cdn_ttl
        self._lock = threading.Lock()
        self._window_end, self._used = 0.0, 0

    def start(self) -> Self:
        super().start()
        self.cdn.start()
        for repo in self.repos.values():
            for f in repo.files:
                if f.lfs:
                    self.cdn.put("hf-lfs", self.cdn_key(repo, f), f.data, public=False)
        return self

    def stop(self) -> None:
        self.cdn.stop()
        super().stop()

    @staticmethod
    def cdn_key(repo: HubRepo, f: HubFile) -> str:
        return f"repos/{hashlib.sha1(repo.repo_id.encode()).hexdigest()[:16]}/{f.sha256}"

    def _spend(self) -> tuple[bool, list[tuple[str, str]]]:
        """Count a request: (allowed, the IETF draft RateLimit / RateLimit-Policy headers)."""
        if self.rate_limit is None:
            return True, []
        with self._lock:
            now = time.time()
            if now >= self._window_end:
                self._window_end, self._used = now + self.window, 0
            allowed = self._used < self.rate_limit
            if allowed:
                self._used += 1
            remaining, reset = self.rate_limit - self._used, max(1, math.ceil(self._window_end - now))
        return allowed, [
            ("RateLimit", f'"resolvers";r={remaining};t={reset}'),
            ("RateLimit-Policy", f'"fixed window";"resolvers";q={self.rate_limit};w={self.window:g}'),
        ]
