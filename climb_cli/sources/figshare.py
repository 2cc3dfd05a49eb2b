"""figshare articles (`kind: figshare`): ``article: <id>`` (+ ``version: <n>``), files chosen with the usual
include/exclude globs.

Protocol (docs/sources-protocols.md, "figshare"): ``GET https://api.figshare.com/v2/articles/<id>/files``
(``page``/``page_size`` pages), or ``/v2/articles/<id>/versions/<n>`` for a pinned version (its ``files``
array), lists ``name``, ``size``, ``computed_md5`` (MD5 hex of the stored bytes; ``supplied_md5`` is what
the uploader claimed and is not trusted) and ``download_url`` (``https://ndownloader.figshare.com/files/<id>``),
which answers 302 to a short-lived signed object-store URL. climb follows that redirect afresh for every
request, so a link that expired mid-transfer costs nothing but a new redirect. Files with ``is_link_only``
live elsewhere and are refused with a line naming them.

A token (``FIGSHARE_TOKEN``, or ~/.config/climb/figshare-token) is optional; it is sent as
``Authorization: token <t>`` to the API origin only, never to ndownloader or the object store.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urljoin

import requests
from pydantic import Field

from climb_cli import credentials, redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net import signed
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected
from climb_cli.sources.http import (
    REDIRECTS,
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

DEFAULT_API = "https://api.figshare.com"
PAGE_SIZE = 1000
_MAX_PAGES = 1000
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


class FigshareParams(SourceParams):
    article: int = Field(gt=0, description="article id (figshare.com/articles/.../<id>)")
    version: int | None = Field(None, gt=0, description="article version to pin (recommended)")


class FigshareSource(Source):
    kind = "figshare"
    Params = FigshareParams
    params: FigshareParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.settings.base_url("figshare", DEFAULT_API)
        self.page = f"https://figshare.com/articles/dataset/_/{self.params.article}"
        self._signed = signed.SignedUrls()

    def describe(self) -> str:
        v = f" v{self.params.version}" if self.params.version else ""
        return f"figshare article {self.params.article}{v}"

    def credentials(self) -> credentials.Token | None:
        return credentials.figshare()

    def _auth(self) -> dict[str, str] | None:
        tok = self.credentials()
        return {"Authorization": f"token {tok.value}"} if tok else None

    def _refusal(self, status: int, message: str) -> AccessError:
        name, art = self.recipe.name, self.params.article
        what = f"article {art}" + (f" version {self.params.version}" if self.params.version else "")
        detail = f" ({redaction.redact(message)[:120]})" if message else ""
        if status == 404:
            return AccessError(
                f"{name}: figshare {what} not found (HTTP 404){detail}; check `article:`/`version:` in the "
                f"recipe ({self.page})"
            )
        return AccessError(
            f"{name}: figshare refused {what} (HTTP {status}){detail}; a private article needs "
            "FIGSHARE_TOKEN (a personal token from figshare.com/account/applications) with access to it"
        )

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"article": self.params.article, "version": self.params.version}

    def _get(self, url: str) -> Any:
        resp = api_get(self, url, headers={"Accept": "application/json"}, auth=self._auth())
        status = resp.status_code
        if status in (401, 403, 404):
            body = json_or_none(resp) or {}
            raise self._refusal(status, str(body.get("message", "")) if isinstance(body, dict) else "")
        if status != 200:
            raise TransferError(
                f"{self.recipe.name}: figshare answered HTTP {status} for {redaction.redact_url(url)}; "
                "try again later"
            )
        body = json_or_none(resp)
        if body is None:
            raise TransferError(f"{self.recipe.name}: {redaction.redact_url(url)} did not answer JSON")
        return body

    def _entries(self) -> list[dict[str, Any]]:
        base = f"{self.api}/v2/articles/{self.params.article}"
        if self.params.version:
            body = self._get(f"{base}/versions/{self.params.version}")
            files = body.get("files") if isinstance(body, dict) else None
            if not isinstance(files, list):
                raise TransferError(f"{self.recipe.name}: figshare article version without a files list")
            return files
        out: list[dict[str, Any]] = []
        for page in range(1, _MAX_PAGES + 1):
            body = self._get(f"{base}/files?page={page}&page_size={PAGE_SIZE}")
            if not isinstance(body, list):
                raise TransferError(f"{self.recipe.name}: figshare file list is not a JSON array")
            if not body:  # the server may cap page_size below ours: only an empty page ends the list
                return out
            out.extend(body)
        raise TransferError(f"{self.recipe.name}: figshare file list longer than {_MAX_PAGES} pages")

    def _parse(self, entries: list[dict[str, Any]]) -> list[RemoteFile]:
        out: list[RemoteFile] = []
        for e in entries:
            name = str(e.get("name") or "")
            path = safe_relpath(name)
            if path is None:
                raise TransferError(f"{self.recipe.name}: figshare file name {name!r} is unsafe")
            if e.get("is_link_only"):
                raise TransferError(
                    f"{self.recipe.name}: figshare file {name!r} is only a link to "
                    f"{redaction.redact_url(str(e.get('download_url', '')))}; use a `kind: http` source "
                    "for it"
                )
            md5 = str(e.get("computed_md5") or "")
            size = e.get("size")
            url = str(e.get("download_url") or "")
            if not url.startswith(("https://", "http://")):
                raise TransferError(f"{self.recipe.name}: figshare file {name!r} has no download_url")
            out.append(RemoteFile(path, url, int(size) if isinstance(size, int) else None, None,
                                  md5.lower() if _HEX32.match(md5) else None))  # fmt: skip
        return out

    def list_files(self) -> list[RemoteFile]:
        files = self._parse(self._entries())
        save_listing(self, self._identity(), files)
        chosen = [f for f in files if selected(f.path, self.spec)]
        unsummed = [f.path for f in chosen if not f.md5]
        if unsummed and self.recipe.checksums != "pinned":
            raise RecipeError(
                f"{self.recipe.name}: figshare lists no computed_md5 for {unsummed[0]}; set "
                "`checksums: pinned`"
            )
        return chosen

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def _resolve(self, file: RemoteFile, headers: dict[str, str]) -> str | requests.Response:
        """ndownloader's redirect target (a signed object-store URL), or its own answer when it has none. The
        token is not sent: ndownloader is another origin than the API."""
        resp = api_get(self, file.url, headers=headers, follow=False, stream=True)
        location = resp.headers.get("Location")
        if resp.status_code in REDIRECTS and location:
            resp.close()
            return urljoin(file.url, location)
        return resp

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def refused(status: int, where: str) -> AccessError:
            return AccessError(
                f"{self.recipe.name}: {where} refused {file.path} (HTTP {status}); the file may have been "
                f"removed from article {self.params.article}, or the article is private"
            )

        try:  # the signed link is kept until it expires; a refused one is replaced by a fresh redirect
            resp = self._signed.open(
                file.path,
                lambda fresh: self._resolve(file, headers),
                lambda url: fetch(self, url, headers=headers),
                discard=error_body,
            )
        except signed.Refused as e:
            raise AccessError(
                f"{self.recipe.name}: the object store refused {e.tries} fresh links for {file.path} "
                f"(HTTP {e.status})"
            ) from None
        return checked(self, file, resp, refused)

    def check_access(self) -> AccessReport:
        return probe_access(
            self, lambda files: f"{self.describe()}: {len(files)} file(s) readable", self.page
        )
