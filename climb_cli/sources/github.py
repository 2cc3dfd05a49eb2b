"""GitHub (`kind: github`): raw files or a whole-repository archive at a pinned commit, or release assets.

Three forms, one per source block::

    - kind: github                      # raw files at a commit (CLIMB's frozen ECG splits)
      repo: DDVD233/CLIMB
      commit: 0f767b1ea168810b998981078dc27e7f9a4e4675
      files:
        - {path: src/datasets/ecg/ptbxl_splits.csv, sha256: e48f07e9..., size: 1737930}

    - kind: github                      # the repository archive at a commit
      repo: owner/name
      commit: <40 hex>
      archive: tar.gz                   # or zip
      sha256: <hex>                     # of the archive bytes

    - kind: github                      # assets of a release; `assets` pins names/sums (else all, by include)
      repo: owner/name
      release: v1.0
      assets: [{name: data.zip, sha256: <hex>}]

Sums: raw files and archives are pinned in the recipe (GitHub publishes none for them); release assets carry
``digest: "sha256:<hex>"`` since 2025-06 (a recipe pin wins, and a disagreement is an error). A file with no
sum from either side is accepted only under ``checksums: pinned``. Codeload archives are generated on
demand and have been re-compressed by GitHub in the past: an archive pin can break, raw files' pins do not.

Raw files tracked by Git LFS: raw.githubusercontent.com serves the pointer (``version
https://git-lfs.github.com/spec/v1`` / ``oid sha256:<hex>`` / ``size <n>``, under 1024 bytes). climb
recognises a pointer in a small answer, asks ``https://github.com/<repo>.git/info/lfs/objects/batch`` for the
object (``sources/_git_lfs.py``) and downloads its signed ``href`` (on another host, without the token); the
oid is the content's sha256 and is checked as such (a recipe pin must equal it). What was learnt is kept in
the source's stored listing, so resumes and ``climb verify`` know the file is an LFS object.

Release assets go github.com -> 302 -> a signed object-store URL valid 5 minutes; climb caches that URL,
and when the store refuses it (403/400: expired) goes back to GitHub for a fresh one and resumes with
Range. ``GITHUB_TOKEN`` (optional) raises the API limit from 60 to 5000 requests an hour and opens private
repositories; it is sent to api.github.com and raw.githubusercontent.com only, never to codeload or the
object store.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from functools import partial
from typing import Any, Literal
from urllib.parse import quote, urljoin

import requests
from pydantic import Field, model_validator

from climb_cli import credentials, redaction
from climb_cli.archives import ArchiveOptions
from climb_cli.errors import AccessError, ClimbError, RecipeError, TransferError
from climb_cli.net import signed
from climb_cli.net.session import origin
from climb_cli.sources import _git_lfs as lfs
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected
from climb_cli.sources.http import (
    REDIRECTS,
    RateBudget,
    api_get,
    bearer_auth,
    error_body,
    fetch,
    json_or_none,
    load_listing,
    load_listing_extra,
    paths_from_listing,
    rate_limit_line,
    save_listing,
    unpinned_line,
    wait_hint,
)

API_URL = "https://api.github.com"
RAW_URL = "https://raw.githubusercontent.com"
WEB_URL = "https://github.com"
_HEX64 = r"^[0-9a-fA-F]{64}$"
_DIGEST = re.compile(r"^sha256:([0-9a-fA-F]{64})$")
RESOLVE_TRIES = 3  # fresh signed URLs per open() before giving up


class GitHubFile(SourceParams):
    path: str = Field(description="path in the repository at the commit")
    sha256: str | None = Field(None, pattern=_HEX64)
    size: int | None = Field(None, ge=0)
    save_as: str | None = Field(None, description="where it goes under the source folder (default: path)")

    @property
    def dest(self) -> str:
        return self.save_as or self.path


class GitHubAsset(SourceParams):
    name: str
    sha256: str | None = Field(None, pattern=_HEX64)
    size: int | None = Field(None, ge=0)


class GitHubParams(ArchiveOptions):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$", description="owner/name")
    commit: str | None = Field(None, pattern=r"^[0-9a-f]{40}$", description="the pinned commit (full sha)")
    files: list[GitHubFile] = Field(default_factory=list)
    archive: Literal["tar.gz", "zip"] | None = None
    sha256: str | None = Field(None, pattern=_HEX64, description="sha256 of the archive")
    release: str | None = Field(None, description="release tag")
    assets: list[GitHubAsset] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_way(self) -> GitHubParams:
        forms = [bool(self.files), self.archive is not None, self.release is not None]
        if sum(forms) != 1:
            raise ValueError("give exactly one of 'files', 'archive' or 'release'")
        if (self.files or self.archive) and self.commit is None:
            raise ValueError("'files' and 'archive' need 'commit' (a full 40-hex sha: a branch moves)")
        if self.sha256 and self.archive is None:
            raise ValueError("'sha256' at this level is the archive's; pin files and assets in their entries")
        if self.assets and self.release is None:
            raise ValueError("'assets' belong to a 'release'")
        dests = [f.dest for f in self.files]
        for d in dests:
            if safe_relpath(d) is None:
                raise ValueError(f"unsafe path {d!r}")
        if len(set(dests)) != len(dests):
            raise ValueError("two files go to the same path")
        for a in self.assets:
            if safe_relpath(a.name) is None or "/" in a.name:
                raise ValueError(f"not an asset name: {a.name!r}")
        return self


class GitHubSource(Source):
    kind = "github"
    Params = GitHubParams
    params: GitHubParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.settings.base_url("github", API_URL)
        self.raw = self.settings.base_url("github-raw", RAW_URL)
        self.web = self.settings.base_url("github-web", WEB_URL)
        self.lfs_url = f"{self.web}/{self.params.repo}.git/info/lfs"
        self.owner, self.name = self.params.repo.split("/")
        self.page = f"https://github.com/{self.params.repo}"
        self.budget = RateBudget()
        self._lock = threading.Lock()
        self._signed = signed.SignedUrls(tries=RESOLVE_TRIES)  # release assets' and LFS objects' links
        self._headers: dict[str, dict[str, str]] = {}  # signed URL -> headers its LFS action asks for
        self._lfs: dict[str, lfs.Pointer] | None = None  # path -> Git LFS pointer (raw files)
        self._asset_api: dict[str, str] = {}  # path -> API asset URL (for private repositories)

    def describe(self) -> str:
        p = self.params
        what = f"@{p.commit[:10]}" if p.commit else f" release {p.release}"
        return f"github {p.repo}{what}"

    # -- credentials & refusals -----------------------------------------------------------------
    def credentials(self) -> credentials.Token | None:
        return credentials.github()

    def _auth(self) -> dict[str, str] | None:
        return bearer_auth(self.credentials())

    def _refusal(self, resp: requests.Response, what: str) -> ClimbError:
        """One line for a 401/403/404 from GitHub (rate limits included)."""
        tok, name, status = self.credentials(), self.recipe.name, resp.status_code
        if status in (403, 429) and (resp.headers.get("X-RateLimit-Remaining") == "0" or wait_hint(resp)):
            advice = (
                "try again later"
                if tok
                else "set GITHUB_TOKEN to raise the limit from 60 to 5000 requests/hour"
            )
            return TransferError(rate_limit_line(self, "GitHub API", resp, advice))
        if status == 401 and tok is not None:
            return AccessError(
                f"{name}: GitHub rejected the token from {tok.origin} (HTTP 401, bad credentials)",
                reason="credentials rejected",
            )
        if status in (401, 403):
            return AccessError(f"{name}: GitHub refused {what} (HTTP {status}); check access to {self.page}")
        hint = "" if tok else " (if the repository is private, set GITHUB_TOKEN)"
        return AccessError(f"{name}: {what} not found on GitHub (HTTP {status}){hint}")

    # -- listing --------------------------------------------------------------------------------
    def _pinned(self) -> list[RemoteFile]:
        p = self.params
        if p.archive is not None:
            assert p.commit is not None
            kind = "tarball" if p.archive == "tar.gz" else "zipball"
            url = f"{self.api}/repos/{p.repo}/{kind}/{p.commit}"
            return [
                RemoteFile(f"{self.name}-{p.commit}.{p.archive}", url, None, p.sha256 and p.sha256.lower())
            ]
        return [
            RemoteFile(
                f.dest,
                f"{self.raw}/{p.repo}/{p.commit}/{quote(f.path)}",
                f.size,
                f.sha256 and f.sha256.lower(),
            )
            for f in p.files
        ]

    def _identity(self) -> dict[str, Any]:
        return {"repo": self.params.repo, "release": self.params.release}

    def _release_files(self) -> list[RemoteFile]:
        p = self.params
        url = f"{self.api}/repos/{p.repo}/releases/tags/{quote(p.release or '', safe='')}"
        headers = {"Accept": "application/vnd.github+json", "X-GitHub-Api-Version": "2022-11-28"}
        resp = api_get(self, url, headers=headers, auth=self._auth(), budget=self.budget)
        if resp.status_code != 200:
            raise self._refusal(resp, f"release {p.release!r} of {p.repo}")
        body = json_or_none(resp)
        assets = body.get("assets") if isinstance(body, dict) else None
        if not isinstance(assets, list):
            raise TransferError(f"{self.recipe.name}: {redaction.redact_url(url)} did not answer a release")
        pins = {a.name: a for a in p.assets}
        out: list[RemoteFile] = []
        for a in assets:
            name = str(a.get("name", ""))
            if safe_relpath(name) is None or "/" in name:
                continue
            m = _DIGEST.match(str(a.get("digest") or ""))
            digest = m.group(1).lower() if m else None
            pin = pins.get(name)
            sha = pin.sha256.lower() if pin and pin.sha256 else digest
            if pin and pin.sha256 and digest and digest != pin.sha256.lower():
                raise TransferError(
                    f"{self.recipe.name}: the recipe pins sha256 {pin.sha256[:12]}... for {name} but GitHub "
                    f"reports {digest[:12]}... for release {p.release}: the asset was replaced upstream"
                )
            size = a.get("size")
            browser = str(a.get("browser_download_url") or "")
            if not browser:
                continue
            out.append(RemoteFile(name, browser, int(size) if size is not None else None, sha))
            if a.get("url"):
                self._asset_api[name] = str(a["url"])
        missing = sorted(set(pins) - {f.path for f in out})
        if missing:
            raise AccessError(
                f"{self.recipe.name}: release {p.release} of {p.repo} has no asset {missing[0]!r} "
                f"(it has: {', '.join(sorted(f.path for f in out)) or 'none'})",
                reason="failed",
            )
        return out

    def _select(self, files: list[RemoteFile]) -> list[RemoteFile]:
        if self.params.release is not None and self.params.assets:
            names = {a.name for a in self.params.assets}
            return [f for f in files if f.path in names and selected(f.path, self.spec)]
        return [f for f in files if selected(f.path, self.spec)]

    # -- Git LFS (raw files) ------------------------------------------------------------------------
    def _lfs_identity(self) -> dict[str, Any]:
        return {"repo": self.params.repo, "commit": self.params.commit}

    def _pointers(self) -> dict[str, lfs.Pointer]:
        with self._lock:
            if self._lfs is None:
                stored = load_listing_extra(self, self._lfs_identity()).get("lfs") or {}
                self._lfs = {p: lfs.Pointer(str(v[0]), int(v[1])) for p, v in stored.items()}
            return self._lfs

    def _with_lfs(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """Raw files known to be LFS objects carry the oid as their sha256 and the object's size."""
        known = self._pointers()
        return [
            RemoteFile(f.path, f.url, known[f.path].size, f.sha256 or known[f.path].oid, f.md5)
            if f.path in known
            else f
            for f in files
        ]

    def _remember(self, file: RemoteFile, pointer: lfs.Pointer) -> None:
        if file.sha256 and file.sha256 != pointer.oid:
            raise TransferError(
                f"{self.recipe.name}: {file.path} is a Git LFS pointer to oid {pointer.oid[:12]}... but the "
                f"recipe pins sha256 {file.sha256[:12]}...: pin the oid (the sha256 of the content, size "
                f"{pointer.size})"
            )
        known = self._pointers()
        with self._lock:
            known[file.path] = pointer
            extra = {"lfs": {p: [v.oid, v.size] for p, v in sorted(known.items())}}
            save_listing(self, self._lfs_identity(), self._pinned(), extra)

    def _lfs_resolve(self, file: RemoteFile, pointer: lfs.Pointer) -> lfs.Action:
        auth = None
        tok = self.credentials()
        if tok is not None:  # git's HTTP Basic with the token as password; sent to github.com only
            import base64

            basic = base64.b64encode(f"x-access-token:{tok.value}".encode()).decode()
            auth = {"Authorization": f"Basic {basic}"}
        return lfs.batch(self, self.lfs_url, pointer, auth, f"{file.path} at commit {self.params.commit}")

    def list_files(self) -> list[RemoteFile]:
        if self.params.release is None:
            files = self._with_lfs(self._select(self._pinned()))
        else:
            every = self._release_files()
            save_listing(self, self._identity(), every)
            files = self._select(every)
        unpinned = [f.path for f in files if not f.sha256]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        if self.params.release is None:
            return self._with_lfs(self._select(self._pinned()))
        files = load_listing(self, self._identity())
        return None if files is None else self._select(files)

    def upstream_paths(self) -> set[str] | None:
        if self.params.release is None:
            return {f.path for f in self._pinned()}
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        if self.params.release is None:
            pointer = self._pointers().get(file.path) if self.params.files else None
            if pointer is not None:
                return self._open_signed(file, headers, partial(self._lfs_resolve, file, pointer))
            auth = self._auth()
            resp = fetch(self, file.url, headers=headers, auth=auth)  # archives: the token stays on the API
            if resp.status_code in (401, 403, 404):
                error_body(resp)
                what = f"{file.path} at commit {self.params.commit}" if self.params.files else "the archive"
                raise self._refusal(resp, what)
            if self.params.files and "Range" not in headers:
                pointer, resp = lfs.peek_pointer(resp)
                if pointer is not None:
                    resp.close()
                    self._remember(file, pointer)
                    return self._open_signed(file, headers, partial(self._lfs_resolve, file, pointer))
            return resp
        return self._open_signed(file, headers, lambda: self._resolve(file))

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        pointer = self._pointers().get(file.path) if self.params.files else None
        if pointer is not None and not file.sha256:  # the oid is the object's sha256
            return RemoteFile(file.path, file.url, pointer.size, pointer.oid, file.md5)
        return file

    def _resolve(self, file: RemoteFile) -> str | requests.Response:
        """A fresh signed URL for a release asset, or a response to hand to the engine (the asset itself when
        GitHub serves it directly, or a 429/5xx to retry)."""
        auth = self._auth()
        api_url = self._asset_api.get(file.path) if auth else None
        url = api_url or file.url
        hdrs = {"Accept": "application/octet-stream", "Accept-Encoding": "identity"}
        start = origin(url)
        for _ in range(10):
            resp = api_get(self, url, headers=hdrs, auth=auth if origin(url) == start else None,
                           budget=self.budget if api_url else None, follow=False, stream=True)  # fmt: skip
            location = resp.headers.get("Location")
            if resp.status_code in REDIRECTS and location:
                resp.close()
                nxt = urljoin(url, location)
                if origin(nxt) != start:
                    return nxt  # the object store: signed, and no token goes there
                url = nxt
                continue
            if resp.status_code in (401, 403, 404):
                error_body(resp)
                raise self._refusal(resp, f"asset {file.path} of release {self.params.release}")
            return resp
        raise TransferError(f"{self.recipe.name}: too many redirects for {redaction.redact_url(file.url)}")

    def _open_signed(
        self,
        file: RemoteFile,
        headers: dict[str, str],
        resolve: Callable[[], str | lfs.Action | requests.Response],
    ) -> requests.Response:
        """GET a release asset or an LFS object through its signed URL (net.signed: cached per file, resolved
        again when the store refuses it or it is about to expire); no credential goes to the store."""
        what = f"release {self.params.release}" if self.params.release else f"commit {self.params.commit}"

        def url_of(fresh: bool) -> str | requests.Response:
            got = resolve()
            if isinstance(got, lfs.Action):
                with self._lock:
                    self._headers[got.href] = got.header
                return got.href
            return got

        def get(url: str) -> requests.Response:
            with self._lock:
                extra = self._headers.get(url, {})
            return fetch(self, url, headers={**headers, **extra})  # no auth: a signed URL carries its own

        try:  # S3 "Request has expired" (403), or a signature the store no longer takes: a fresh link
            resp = self._signed.open(file.path, url_of, get, discard=error_body)
        except signed.Refused as e:
            raise AccessError(
                f"{self.recipe.name}: the object store refused {RESOLVE_TRIES} fresh links for {file.path} "
                f"of {what} (HTTP {e.status})"
            ) from None
        if resp.status_code == 404:
            error_body(resp)
            raise AccessError(
                f"{self.recipe.name}: the object store has no {file.path} for {what} "
                f"({redaction.redact_url(resp.url)}, HTTP 404)"
            )
        return resp

    def check_access(self) -> AccessReport:
        try:
            if self.params.release is not None:
                files = self.list_files()
                if files:
                    got = self._resolve(files[0])  # resolving a link downloads nothing
                    if isinstance(got, requests.Response):
                        got.close()
            else:
                resp = api_get(
                    self, f"{self.api}/repos/{self.params.repo}", auth=self._auth(), budget=self.budget
                )
                if resp.status_code != 200:
                    raise self._refusal(resp, f"repository {self.params.repo}")
                self.list_files()
        except AccessError as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e), self.page)
        except (TransferError, RecipeError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        return AccessReport(self.recipe.name, self.spec.id, True, f"{self.params.repo} reachable")
