"""NSRR, the National Sleep Research Resource (`kind: nsrr`): ``dataset: shhs``, files chosen with the usual
include/exclude globs (paths relative to the dataset, e.g. ``polysomnography/edfs/shhs1/*.edf``).

Protocol: the NSRR cloud API that the official PyPI client ``nsrr`` 0.2.0 uses (docs/sources-protocols.md,
"NSRR"), base ``https://cloud.sleepdata.org/api/v1``:

* ``GET /list/all-files?dataset_name=<ds>`` (no auth) lists ``open_files`` (keys carry the ``<ds>/`` prefix)
  and ``controlled_files`` (keys relative to the dataset), each ``{"size": <bytes>, "md5": <hex>}``;
* a file's bytes: ``GET /download/url/open?file_name=<key>``, or for a controlled file first
  ``GET /auth-token?dataset_name=<ds>`` with header ``token: <user token>`` (-> ``{"auth_token": ...}``) and
  then ``GET /download/url/controlled?file_name=<key>`` with ``Authorization: Bearer <auth_token>``; the
  body of either is a URL (a signed object-store link), fetched with no credentials at all.

climb resolves that URL afresh for every request (the official client does the same per file), so a link
that expired mid-transfer is replaced on the resume; the user token and the auth token go only to the API
origin. The user token comes from ``NSRR_TOKEN`` or ``~/.config/climb/nsrr-token`` (``climb auth login
nsrr``; the same one-line file ``nsrr --token-file`` reads); it is needed for controlled files only, and
access needs an approved data access request on sleepdata.org.
"""

from __future__ import annotations

from typing import Any, TypeGuard
from urllib.parse import quote, urlencode

import requests
from pydantic import Field

from climb_cli import credentials, redaction
from climb_cli.credentials import Token
from climb_cli.errors import AccessError, TransferError
from climb_cli.net import signed
from climb_cli.net.session import ClimbSession
from climb_cli.settings import Settings
from climb_cli.sources.base import (
    USER_AGENT,
    AccessReport,
    RemoteFile,
    Source,
    SourceParams,
    safe_relpath,
    selected,
)
from climb_cli.sources.http import (
    HeaderAuth,
    api_get,
    checked,
    error_body,
    fetch,
    json_or_none,
    paths_from_listing,
    probe_access,
    save_listing,
    selected_from_listing,
)

DEFAULT_API = "https://cloud.sleepdata.org/api/v1"
TOKEN_PAGE = "https://sleepdata.org/token"
_HEX32 = frozenset("0123456789abcdef")


class NsrrParams(SourceParams):
    dataset: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]*$", description="NSRR dataset slug (shhs, mros, cfs...)"
    )


def _is_md5(value: object) -> TypeGuard[str]:
    return isinstance(value, str) and len(value) == 32 and set(value.lower()) <= _HEX32


class NsrrSource(Source):
    kind = "nsrr"
    Params = NsrrParams
    params: NsrrParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.settings.base_url("nsrr", DEFAULT_API)
        self.page = f"https://sleepdata.org/datasets/{self.params.dataset}"
        self._signed = signed.SignedUrls()

    def describe(self) -> str:
        return f"nsrr {self.params.dataset}"

    def credentials(self) -> Token | None:
        return credentials.nsrr()

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"dataset": self.params.dataset, "api": self.api}

    def _listing(self) -> list[RemoteFile]:
        ds = self.params.dataset
        url = f"{self.api}/list/all-files?{urlencode({'dataset_name': ds})}"
        resp = api_get(self, url, headers={"Accept": "application/json"})
        body = json_or_none(resp)
        if resp.status_code == 404 or (resp.status_code == 200 and not isinstance(body, dict)):
            raise AccessError(
                f"{self.recipe.name}: NSRR has no cloud-hosted dataset {ds!r} (HTTP {resp.status_code}); "
                f"check `dataset:` in the recipe ({self.page})",
                reason="failed",
            )
        if resp.status_code != 200:
            raise TransferError(
                f"{self.recipe.name}: NSRR answered HTTP {resp.status_code} for the file list of {ds}; "
                "try again later"
            )
        out: list[RemoteFile] = []
        for group, kind in (("open_files", "open"), ("controlled_files", "controlled")):
            entries = body.get(group) or {}
            if not isinstance(entries, dict):
                raise TransferError(f"{self.recipe.name}: NSRR's {group} for {ds} is not an object")
            for key, meta in entries.items():
                rel = key[len(ds) + 1 :] if kind == "open" and key.startswith(f"{ds}/") else key
                path = safe_relpath(rel)
                if path is None or not isinstance(meta, dict):
                    raise TransferError(f"{self.recipe.name}: NSRR lists an unsafe file name {key!r}")
                url = f"{self.api}/download/url/{kind}?file_name={quote(key, safe='/')}"
                size = meta.get("size")
                md5 = meta.get("md5")
                out.append(RemoteFile(path, url, size if isinstance(size, int) else None, None,
                                      md5.lower() if _is_md5(md5) else None))  # fmt: skip
        return out

    def list_files(self) -> list[RemoteFile]:
        files = self._listing()
        save_listing(self, self._identity(), files)
        chosen = [f for f in files if selected(f.path, self.spec)]
        if self._controlled(chosen) and self.credentials() is None:
            raise self._no_token()
        return chosen

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- refusals -------------------------------------------------------------------------------
    def _no_token(self) -> AccessError:
        return AccessError(
            f"{self.recipe.name}: NSRR {self.params.dataset} has controlled files: get your token at "
            f"{TOKEN_PAGE}, then run `climb auth login nsrr` (or set NSRR_TOKEN)"
        )

    def _denied(self, status: int, tok: Token) -> AccessError:
        if status == 401:
            return AccessError(
                f"{self.recipe.name}: NSRR did not accept the token from {tok.origin} (HTTP 401); get a "
                f"current one at {TOKEN_PAGE}",
                reason="credentials rejected",
            )
        return AccessError(
            f"{self.recipe.name}: your NSRR token (from {tok.origin}) has no approved data access request "
            f"for {self.params.dataset} (HTTP {status}); request access at {self.page}"
        )

    # -- transfer -------------------------------------------------------------------------------
    def _auth_token(self) -> str:
        """A fresh dataset auth token for the user token (the official client asks before every file)."""
        tok = self.credentials()
        if tok is None:
            raise self._no_token()
        url = f"{self.api}/auth-token?{urlencode({'dataset_name': self.params.dataset})}"
        resp = api_get(self, url, auth={"token": tok.value})
        body = json_or_none(resp)
        if resp.status_code in (401, 403, 404):
            raise self._denied(resp.status_code, tok)
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("auth_token"):
            raise TransferError(f"{self.recipe.name}: NSRR auth-token answered HTTP {resp.status_code}")
        value = str(body["auth_token"])
        redaction.register(value)
        return value

    def _resolve(self, file: RemoteFile) -> str:
        """The signed URL of the file's bytes, asked for now."""
        auth = None
        if "/download/url/controlled" in file.url:
            auth = {"Authorization": f"Bearer {self._auth_token()}"}
        resp = api_get(self, file.url, auth=auth)
        text = resp.text.strip() if resp.status_code == 200 else ""
        if resp.status_code in (401, 403):
            tok = self.credentials()
            raise self._denied(resp.status_code, tok) if tok else self._no_token()
        if resp.status_code == 404:
            raise AccessError(
                f"{self.recipe.name}: NSRR no longer has {file.path} of {self.params.dataset} (HTTP 404)"
            )
        if not text.startswith(("https://", "http://")) or "\n" in text:
            raise TransferError(
                f"{self.recipe.name}: NSRR gave no download URL for {file.path} (HTTP {resp.status_code})"
            )
        return text

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def refused(status: int, where: str) -> TransferError:
            return TransferError(
                f"{self.recipe.name}: the storage link NSRR gave for {file.path} was refused (HTTP {status}) "
                f"at {where}"
            )

        try:  # the signed link is kept until it expires; a refused one is replaced by a fresh one
            resp = self._signed.open(
                file.path,
                lambda fresh: self._resolve(file),
                lambda url: fetch(self, url, headers=headers),  # a signed link: no credentials at all
                discard=error_body,
            )
        except signed.Refused as e:
            raise TransferError(
                f"{self.recipe.name}: the object store refused {e.tries} fresh links NSRR gave for "
                f"{file.path} (HTTP {e.status})"
            ) from None
        return checked(self, file, resp, refused)

    @staticmethod
    def _controlled(files: list[RemoteFile]) -> list[RemoteFile]:
        return [f for f in files if "/download/url/controlled" in f.url]

    def check_access(self) -> AccessReport:
        def ok(files: list[RemoteFile]) -> str:
            n = len(self._controlled(files))
            return f"{self.params.dataset}: " + (
                f"{n} controlled file(s) granted" if n else "open files only"
            )

        def probe(files: list[RemoteFile]) -> None:
            if self._controlled(files):
                self._auth_token()

        return probe_access(self, ok, self.page, probe)

    @staticmethod
    def check_login(settings: Settings, token: Token) -> str:
        """`climb auth login nsrr`: GET /list/access with the token (what `nsrr --list-access` does)."""
        api = settings.base_url("nsrr", DEFAULT_API)
        with ClimbSession(USER_AGENT) as s:  # env proxies and CAs; the token bound to the API's origin
            r = s.get(
                f"{api}/list/access",
                auth=HeaderAuth({"token": token.value}),
                timeout=(settings.connect_timeout, settings.read_timeout),
            )
        if r.status_code in (401, 403):
            raise AccessError(f"NSRR rejected the token (HTTP {r.status_code})")
        if r.status_code != 200:
            raise requests.HTTPError(f"HTTP {r.status_code}")
        body = json_or_none(r)
        rows = body.get("datasets") if isinstance(body, dict) else None
        n = len(rows) if isinstance(rows, list) else 0
        return f"NSRR accepted the token ({n} dataset(s) listed)"
