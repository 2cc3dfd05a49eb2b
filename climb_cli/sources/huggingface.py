"""Hugging Face Hub repositories (`kind: huggingface`) at a pinned commit::

    - kind: huggingface
      repo: laion/relaion2B-en-research-safe
      repo_type: dataset                  # or model
      revision: <40-hex commit sha>       # a branch moves; a commit does not
      include: ["*.parquet"]

Where no commit is known yet, ``pin_branch: main`` (and no ``revision``) makes the pin a required first step:
the first download asks ``/api/{type}s/<repo>/revision/<branch>`` for the branch's head commit, records it in
``raw/<dataset>/.climb/hf-revision-<source id>.json`` before the first file is fetched (a dry run or an access
check asks but records nothing), and every later download,
verify and resume uses that commit, never the branch again (copy it into the recipe's ``revision:`` to share
it). Deleting the file re-pins to the branch's new head.

Files come from ``/api/{type}s/<repo>/tree/<revision>?recursive=true`` (followed page by page through
the ``Link: rel="next"`` header); the listing is kept under ``raw/<dataset>/.climb/`` for offline
``climb verify``.

Sums: an LFS file's listing carries its sha256 (``lfs.oid``, also ``X-Linked-Etag`` on the resolve answer),
which the transfer engine checks while streaming. A regular git file (small: the Hub stores anything big
in LFS) has only its git blob sha1 as ``oid``; climb fetches such a file whole, checks
``sha1("blob <len>\\0" + bytes)`` before handing the bytes to the engine, and so never stores an
unchecked file.

Downloads use ``<base>/[datasets/]<repo>/resolve/<revision>/<path>``: an LFS file answers 302 to a signed CDN
URL on another host; climb follows it itself, without the token (``HF_TOKEN`` or huggingface_hub's token file,
needed for private and gated repositories only), caches the signed URL, and asks the Hub for a fresh one when
the CDN refuses it (expired), resuming with Range. Refusals use the Hub's ``X-Error-Code``: a gated repository
says where to request access. ``CLIMB_HUGGINGFACE_URL`` (or huggingface_hub's ``HF_ENDPOINT``) points at a
mirror.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import threading
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urljoin

import requests
from pydantic import Field, model_validator
from requests.structures import CaseInsensitiveDict

from climb_cli import atomic, credentials, redaction
from climb_cli.archives import ArchiveOptions
from climb_cli.errors import AccessError, ClimbError, RecipeError, TransferError
from climb_cli.net import signed
from climb_cli.net.session import origin
from climb_cli.sources.base import AccessReport, RemoteFile, Source, safe_relpath, selected
from climb_cli.sources.http import (
    REDIRECTS,
    RateBudget,
    api_get,
    bearer_auth,
    error_body,
    fetch,
    json_or_none,
    load_listing_extra,
    paths_from_listing,
    rate_limit_line,
    save_listing,
    selected_from_listing,
    wait_hint,
)

DEFAULT_URL = "https://huggingface.co"
GIT_FILE_LIMIT = 16 * 1024 * 1024  # regular (non-LFS) files are checked in memory up to this size
RESOLVE_TRIES = 3
_LINK_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="?next"?')


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _norm_etag(value: str) -> str:
    """huggingface_hub's normalisation: no W/ prefix, no quotes."""
    return value.strip().removeprefix("W/").strip('"')


class HuggingFaceParams(ArchiveOptions):
    repo: str = Field(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)?$", description="repo id, e.g. org/name")
    repo_type: Literal["dataset", "model"] = "dataset"
    revision: str | None = Field(None, pattern=r"^[0-9a-f]{40}$", description="the pinned commit sha")
    pin_branch: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9_./-]+$",
        description="no commit known: the first download pins this branch's head commit in the dataset's "
        "raw/.climb/ and every later run uses that commit",
    )

    @model_validator(mode="after")
    def _one_pin(self) -> HuggingFaceParams:
        if (self.revision is None) == (self.pin_branch is None):
            raise ValueError("give revision (a 40-hex commit) or pin_branch (pinned on the first download)")
        return self


class HuggingFaceSource(Source):
    kind = "huggingface"
    Params = HuggingFaceParams
    params: HuggingFaceParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.settings.base_url("huggingface", os.environ.get("HF_ENDPOINT") or DEFAULT_URL)
        p = self.params
        prefix = "datasets/" if p.repo_type == "dataset" else ""
        self.page = f"{self.base}/{prefix}{p.repo}"
        self._prefix = prefix
        self._pinned: str | None = p.revision or self._locked_revision()
        self._recorded = self._pinned is not None  # a pin on disk (or the recipe's commit) needs no record
        self.budget = RateBudget()
        self._lock = threading.Lock()
        self._signed = signed.SignedUrls(tries=RESOLVE_TRIES)
        self._git_oid: dict[str, str] = {}  # path -> git blob sha1, for regular (non-LFS) files

    def describe(self) -> str:
        rev = self._pinned[:10] if self._pinned else f"{self.params.pin_branch} (not pinned yet)"
        return f"huggingface {self.params.repo_type} {self.params.repo}@{rev}"

    # -- the pinned commit ----------------------------------------------------------------------
    def revision_lock_path(self) -> Path:
        return self.settings.raw_dir(self.recipe.name) / ".climb" / f"hf-revision-{self.spec.id}.json"

    def _locked_revision(self) -> str | None:
        """The commit a first download pinned (pin_branch), or None."""
        path = self.revision_lock_path()
        try:
            body = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            raise RecipeError(
                f"{self.recipe.name}: unreadable revision pin {path} ({e}); delete it to re-pin"
            ) from None
        sha = body.get("revision") if isinstance(body, dict) else None
        if (
            not isinstance(sha, str)
            or not re.fullmatch(r"[0-9a-f]{40}", sha)
            or body.get("repo") != self.params.repo
        ):
            raise RecipeError(
                f"{self.recipe.name}: {path} does not pin a commit of {self.params.repo}; delete it"
            )
        return sha

    @property
    def revision(self) -> str:
        """The commit every request names: the recipe's, the one pinned before, or (first download) the
        branch's head now, asked once and recorded before the first file is fetched (`_record_pin`)."""
        with self._lock:
            if self._pinned is None:
                self._pinned = self._branch_head()
            return self._pinned

    def _branch_head(self) -> str:
        p = self.params
        url = f"{self.base}/api/{p.repo_type}s/{p.repo}/revision/{quote(str(p.pin_branch), safe='')}"
        resp = api_get(self, url, auth=self._auth(), budget=self.budget)
        if resp.status_code != 200:
            raise self._refusal(resp, f"branch {p.pin_branch} of {p.repo}")
        body = json_or_none(resp)
        sha = body.get("sha") if isinstance(body, dict) else None
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise TransferError(
                f"{self.recipe.name}: the Hub gave no commit for branch {p.pin_branch} of {p.repo}"
            )
        return sha

    def _record_pin(self) -> None:
        """Before the first file's bytes: write the commit this run lists and fetches at (pin_branch only; a
        dry run or `climb auth check` lists and probes but never records a pin)."""
        p = self.params
        if p.revision is not None or self._recorded:
            return
        sha = self.revision
        with self._lock:
            if self._recorded:
                return
            path = self.revision_lock_path()
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                body = {"repo": p.repo, "repo_type": p.repo_type, "branch": p.pin_branch, "revision": sha}
                atomic.write_json(path, body)
            self._recorded = True

    @property
    def resolve_base(self) -> str:
        return f"{self.base}/{self._prefix}{self.params.repo}/resolve/{self.revision}/"

    # -- credentials & refusals -----------------------------------------------------------------
    def credentials(self) -> credentials.Token | None:
        return credentials.huggingface()

    def _auth(self) -> dict[str, str] | None:
        return bearer_auth(self.credentials())

    def _refusal(self, resp: requests.Response, what: str) -> ClimbError:
        p, name, tok = self.params, self.recipe.name, self.credentials()
        code = resp.headers.get("X-Error-Code", "")
        kind = p.repo_type
        if resp.status_code == 429:
            return TransferError(rate_limit_line(self, "Hugging Face", resp, "try again later"))
        if code == "GatedRepo":
            if tok is None:
                return AccessError(
                    f"{name}: {kind} {p.repo} on Hugging Face is gated: request access at {self.page} "
                    "(signed "
                    "in), then set HF_TOKEN to a token of that account"
                )
            return AccessError(
                f"{name}: the Hugging Face account of the token from {tok.origin} has not been granted "
                f"access to gated {kind} {p.repo} yet: accept its terms at {self.page} while signed in to "
                "that account (HTTP 403)"
            )
        if code == "RepoNotFound":
            who = (
                f"the account of the token from {tok.origin} cannot see it"
                if tok
                else "if it is private, set HF_TOKEN"
            )
            return AccessError(f"{name}: Hugging Face {kind} {p.repo} not found ({who})")
        rev = self._pinned or str(p.pin_branch)
        if code == "RevisionNotFound":
            where = f" (pinned in {self.revision_lock_path()})" if p.revision is None and self._pinned else ""
            return AccessError(f"{name}: revision {rev} not found in Hugging Face {kind} {p.repo}{where}")
        if code == "EntryNotFound":
            return AccessError(f"{name}: {what} not found at revision {rev[:12]} of {p.repo}")
        if resp.status_code == 401 and tok is not None:
            return AccessError(
                f"{name}: Hugging Face rejected the token from {tok.origin} (HTTP 401)",
                reason="credentials rejected",
            )
        return AccessError(f"{name}: Hugging Face refused {what} (HTTP {resp.status_code}); see {self.page}")

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        p = self.params  # no network here: before a pin exists there is no stored listing to match
        return {
            "repo": p.repo,
            "repo_type": p.repo_type,
            "revision": self._pinned or f"unpinned:{p.pin_branch}",
        }

    def _tree(self) -> list[RemoteFile]:
        p = self.params
        rev = quote(self.revision, safe="")
        url: str | None = f"{self.base}/api/{p.repo_type}s/{p.repo}/tree/{rev}?recursive=true&expand=false"
        out: list[RemoteFile] = []
        seen: set[str] = set()
        while url:
            resp = api_get(self, url, auth=self._auth(), budget=self.budget)
            if resp.status_code != 200:
                raise self._refusal(resp, f"the file list of {p.repo}")
            entries = json_or_none(resp)
            if not isinstance(entries, list):
                raise TransferError(
                    f"{self.recipe.name}: {redaction.redact_url(url)} did not answer a file list"
                )
            for e in entries:
                if not isinstance(e, dict) or e.get("type") != "file":
                    continue
                path = safe_relpath(str(e.get("path", "")))
                if path is None or path in seen:
                    continue
                seen.add(path)
                lfs = e.get("lfs") or {}
                sha = str(lfs.get("oid", "")).lower() if isinstance(lfs, dict) else ""
                size = e.get("size")
                rf = RemoteFile(
                    path,
                    self.resolve_base + quote(path),
                    int(size) if size is not None else None,
                    sha if re.fullmatch(r"[0-9a-f]{64}", sha) else None,
                )
                out.append(rf)
                if rf.sha256 is None and re.fullmatch(r"[0-9a-f]{40}", str(e.get("oid", ""))):
                    self._git_oid[path] = str(e["oid"])
            m = _LINK_NEXT.search(resp.headers.get("Link", ""))
            url = urljoin(url, m.group(1)) if m else None
        return out

    def list_files(self) -> list[RemoteFile]:
        files = self._tree()
        save_listing(self, self._identity(), files, {"git_oids": self._git_oid})
        chosen = [f for f in files if selected(f.path, self.spec)]
        unchecked = [f.path for f in chosen if not f.sha256 and f.path not in self._git_oid]
        if unchecked and self.recipe.checksums != "pinned":
            raise RecipeError(
                f"{self.recipe.name}: the Hub gives no checksum for {unchecked[0]}"
                + (f" (and {len(unchecked) - 1} more)" if len(unchecked) > 1 else "")
                + "; set `checksums: pinned` to pin it on the first download"
            )
        return chosen

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    def _git_file(self, path: str) -> bool:
        """Whether `path` is a regular git file (checked by its blob sha1); after a restart the oids come
        from the stored listing."""
        with self._lock:
            if not self._git_oid:
                oids = load_listing_extra(self, self._identity()).get("git_oids")
                if isinstance(oids, dict):
                    self._git_oid.update({str(k): str(v) for k, v in oids.items()})
            return path in self._git_oid

    # -- transfer -------------------------------------------------------------------------------
    def _hub_get(
        self, url: str, headers: dict[str, str], method: str = "GET"
    ) -> tuple[requests.Response | str, CaseInsensitiveDict[str]]:
        """Ask the Hub for ``url``, following its own redirects with the token; returns the response, or the
        cross-host (CDN) URL it redirects to (which gets no token), with the Hub's last answer's headers."""
        start, auth = origin(url), self._auth()
        for _ in range(10):
            self.budget.wait()
            resp = fetch(self, url, headers=headers, auth=auth if origin(url) == start else None,
                         method=method, follow=False)  # fmt: skip
            self.budget.update(resp)
            location = resp.headers.get("Location")
            if resp.status_code in REDIRECTS and location:
                commit = resp.headers.get("X-Repo-Commit")
                resp.close()
                if commit and commit != self.revision:
                    raise TransferError(
                        f"{self.recipe.name}: the Hub answered commit {commit[:12]} for revision "
                        f"{self.revision[:12]} of {self.params.repo}"
                    )
                nxt = urljoin(url, location)
                if origin(nxt) != start:
                    return nxt, resp.headers
                url = nxt
                continue
            return resp, resp.headers
        raise TransferError(f"{self.recipe.name}: too many redirects for {redaction.redact_url(url)}")

    def _hub_answer(self, file: RemoteFile, resp: requests.Response) -> requests.Response:
        """Check a direct (non-redirect) answer from the Hub and hand it on."""
        if resp.status_code in (401, 403, 404):
            error_body(resp)
            raise self._refusal(resp, file.path)
        if resp.status_code == 429 and "Retry-After" not in resp.headers:
            hint = wait_hint(resp)  # RateLimit: "...";r=0;t=<s> -> the Retry-After the engine honours
            if hint is not None:
                resp.headers["Retry-After"] = str(int(hint))
        if resp.status_code == 200 and self._git_file(file.path):
            return self._checked_git_file(file, resp)
        return resp

    def _checked_git_file(self, file: RemoteFile, resp: requests.Response) -> requests.Response:
        """A regular file: read it whole, check its git blob sha1, and give the engine the checked bytes."""
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > GIT_FILE_LIMIT:
            return resp  # too big to hold; the engine checks the size
        try:
            data = resp.raw.read(GIT_FILE_LIMIT + 1, decode_content=False)
        except Exception as e:  # noqa: BLE001 - urllib3 errors: report as the network error they are
            raise requests.exceptions.ChunkedEncodingError(e) from None
        finally:
            resp.close()
        if length.isdigit() and len(data) != int(length):
            raise requests.exceptions.ChunkedEncodingError(f"short body ({len(data)}/{length} bytes)")
        got, want = git_blob_sha1(data), self._git_oid[file.path]
        if got != want:
            raise TransferError(
                f"{self.recipe.name}: checksum mismatch for {file.path} from "
                f"{redaction.redact_url(file.url)} "
                f"(git blob sha1: expected {want}, got {got})"
            )
        out = requests.Response()
        out.status_code, out.url, out.reason = 200, resp.url, "OK"
        out.headers = CaseInsensitiveDict(resp.headers)
        out.headers["Content-Length"] = str(len(data))
        out.headers.pop("Content-Range", None)
        out.raw = io.BytesIO(data)
        return out

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        self._record_pin()
        if self._git_file(file.path):
            headers = {
                k: v for k, v in headers.items() if k not in ("Range", "If-Range")
            }  # whole, then checked

        def resolve(fresh: bool) -> str | requests.Response:
            got, _ = self._hub_get(file.url, headers)
            return self._hub_answer(file, got) if isinstance(got, requests.Response) else got

        try:  # an expired (or revoked) signed URL: ask the Hub again
            return self._signed.open(
                file.path, resolve, lambda url: fetch(self, url, headers=headers), discard=error_body
            )  # the CDN: no token
        except signed.Refused as e:
            raise AccessError(
                f"{self.recipe.name}: the Hugging Face CDN refused {RESOLVE_TRIES} fresh links for "
                f"{file.path} (HTTP {e.status})"
            ) from None

    def probe(self, file: RemoteFile) -> dict[str, str]:
        """HEAD the resolve URL without following the CDN redirect: X-Repo-Commit, X-Linked-Etag (sha256 of
        an LFS file), X-Linked-Size — the metadata huggingface_hub reads, without downloading anything."""
        got, h = self._hub_get(file.url, {"Accept-Encoding": "identity"}, method="HEAD")
        if isinstance(got, requests.Response):
            got.close()
            if got.status_code in (401, 403, 404, 429):
                raise self._refusal(got, file.path)
        return {
            "commit": h.get("X-Repo-Commit", ""),
            "etag": _norm_etag(h.get("X-Linked-Etag") or h.get("ETag", "")),
            "size": h.get("X-Linked-Size") or h.get("Content-Length", ""),
        }

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        linked = _norm_etag(resp.headers.get("X-Linked-Etag", ""))
        if re.fullmatch(r"[0-9a-f]{64}", linked):
            return RemoteFile(file.path, file.url, file.size, linked, file.md5)
        return file

    def sizes(self, files: list[RemoteFile]) -> list[RemoteFile]:
        return files  # the tree listing has every size

    def check_access(self) -> AccessReport:
        try:
            files = self.list_files()
            if files:
                meta = self.probe(files[0])
                if meta["commit"] and meta["commit"] != self.revision:
                    raise TransferError(f"{self.recipe.name}: the Hub answered commit {meta['commit'][:12]}")
        except AccessError as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e), self.page)
        except (TransferError, RecipeError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        return AccessReport(self.recipe.name, self.spec.id, True, f"{self.params.repo} readable")
