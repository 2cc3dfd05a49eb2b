"""Google Drive files shared with "Anyone with the link" (`kind: gdrive`)::

    - kind: gdrive
      files:
        - {id: 1AbC..., path: COVID-US/videos.zip, sha256: <hex>}   # or md5; else `checksums: pinned`

Protocol (as gdown 6.5.1 speaks it; docs/sources-protocols.md, "Google Drive"): ``GET
https://drive.google.com/uc?id=<id>&export=download``. A response with ``Content-Disposition`` is the file
(small files, after a redirect to ``drive.usercontent.google.com``). A large file gets the virus-scan
interstitial instead: an HTML page whose ``<form id="download-form" action=...>`` carries hidden inputs
(``id``, ``export``, ``confirm``, ``uuid``); the file is the GET of that action with those inputs as the
query. An older page links ``/uc?export=download&confirm=...`` instead; both are understood. ``<p
class="uc-error-subcaption">`` carries Drive's refusal ("Too many users have viewed or downloaded this file
recently ...") and becomes one line; a login page means the file is not shared publicly.

climb keeps the confirmed link (net.signed) while it works; when it answers the warning page again (a stale
``uuid``), it walks ``uc`` afresh for a new one. Drive publishes no checksum: the recipe pins one (or
``checksums: pinned`` records the first download's). No credentials are used or sent.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from pydantic import Field, model_validator

from climb_cli import redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net import signed
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath
from climb_cli.sources.http import error_body, fetch, unpinned_line

DEFAULT_URL = "https://drive.google.com"
_PAGE_LIMIT = 2 * 1024 * 1024


class DriveFile(SourceParams):
    id: str = Field(pattern=r"^[-\w]{10,}$", description="the file id (from /file/d/<id>/view)")
    path: str = Field(description="where it goes under the source folder")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    size: int | None = Field(None, ge=0)


class GDriveParams(SourceParams):
    files: list[DriveFile] = Field(min_length=1)

    @model_validator(mode="after")
    def _paths(self) -> GDriveParams:
        seen: set[str] = set()
        for f in self.files:
            if safe_relpath(f.path) is None:
                raise ValueError(f"unsafe path {f.path!r} for Drive file {f.id}")
            if f.path in seen:
                raise ValueError(f"two files go to {f.path!r}")
            seen.add(f.path)
        return self


class _Interstitial(HTMLParser):
    """What the virus-scan / quota page offers: the download form (action + hidden inputs), an old-style
    confirm link, or Drive's error subcaption."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.action: str | None = None
        self.inputs: list[tuple[str, str]] = []
        self.confirm_href: str | None = None
        self.error: str | None = None
        self._in_form = False
        self._in_error = False
        self._error_text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form" and a.get("id") == "download-form":
            self.action, self._in_form = a.get("action", ""), True
        elif tag == "input" and self._in_form and a.get("type") == "hidden" and a.get("name"):
            self.inputs.append((a["name"], a.get("value", "")))
        elif tag == "a" and a.get("href", "").startswith("/uc?export=download") and self.confirm_href is None:
            self.confirm_href = a["href"]
        elif tag == "p" and "uc-error-subcaption" in a.get("class", "").split():
            self._in_error = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._in_form = False
        elif tag == "p" and self._in_error:
            self._in_error = False
            self.error = " ".join("".join(self._error_text).split())

    def handle_data(self, data: str) -> None:
        if self._in_error:
            self._error_text.append(data)

    def next_url(self, page_url: str) -> str | None:
        if self.action:
            parts = urlsplit(urljoin(page_url, self.action))
            query = dict(parse_qsl(parts.query, keep_blank_values=True))
            query.update(self.inputs)
            return urlunsplit(parts._replace(query=urlencode(query)))
        if self.confirm_href:
            return urljoin(page_url, self.confirm_href)
        return None


def _is_file(resp: requests.Response) -> bool:
    return resp.status_code in (200, 206) and "Content-Disposition" in resp.headers


class GDriveSource(Source):
    kind = "gdrive"
    Params = GDriveParams
    params: GDriveParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.settings.base_url("gdrive", DEFAULT_URL)
        self._signed = signed.SignedUrls()

    def describe(self) -> str:
        return f"google drive ({len(self.params.files)} file(s))"

    def _files(self) -> list[RemoteFile]:
        return [RemoteFile(f.path, f"{self.base}/uc?{urlencode({'id': f.id, 'export': 'download'})}", f.size,
                           f.sha256 and f.sha256.lower(), f.md5 and f.md5.lower())
                for f in self.params.files]  # fmt: skip

    def list_files(self) -> list[RemoteFile]:
        files = self._files()
        unpinned = [f.path for f in files if not (f.sha256 or f.md5)]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        return self._files()

    def upstream_paths(self) -> set[str] | None:
        return {f.path for f in self._files()}

    def _view(self, file: RemoteFile) -> str:
        return f"{self.base}/file/d/{dict(parse_qsl(urlsplit(file.url).query)).get('id', '')}/view"

    def _walk(self, file: RemoteFile, headers: dict[str, str]) -> str | requests.Response:
        """``uc``: the file itself (small files), an answer for the engine (429/5xx), or the link the
        interstitial page offers (its form with a fresh ``uuid``, or an old page's confirm link)."""
        resp = fetch(self, file.url, headers=headers)
        ctype = resp.headers.get("Content-Type", "")
        if _is_file(resp) or resp.status_code == 429 or resp.status_code >= 500:
            return resp  # the engine retries 429/5xx (Retry-After honoured)
        if "text/html" not in ctype:
            if resp.status_code in (200, 206):
                return resp  # bytes without a file name: accepted, checked by the recipe's sum
            error_body(resp)
            raise AccessError(
                f"{self.recipe.name}: Google Drive answered HTTP {resp.status_code} for {file.path} "
                f"({redaction.redact_url(file.url)}); check the file id, and that it is shared with 'Anyone "
                f"with the link' ({self._view(file)})"
            )
        page = _Interstitial()
        page.feed(error_body(resp, _PAGE_LIMIT).decode("utf-8", "replace"))
        if page.error:
            raise TransferError(
                f"{self.recipe.name}: Google Drive refuses {file.path} for now: {page.error[:200]} "
                f"({self._view(file)})"
            )
        nxt = page.next_url(resp.url or file.url)
        if nxt is None:
            raise AccessError(
                f"{self.recipe.name}: Google Drive gave a page without the file for {file.path} (HTTP "
                f"{resp.status_code}): it is not shared with 'Anyone with the link'; ask its owner, or "
                f"download it by hand from {self._view(file)}"
            )
        return nxt

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def page_again(resp: requests.Response) -> bool:  # a stale uuid gets the warning page again
            html = "text/html" in resp.headers.get("Content-Type", "")
            page = resp.status_code in (200, 206) and html and not _is_file(resp)
            return page or resp.status_code in signed.EXPIRED  # (429/5xx go to the engine's retries)

        try:  # the confirmed link is kept while it works; a stale one is replaced by walking uc again
            return self._signed.open(
                file.path,
                lambda fresh: self._walk(file, headers),
                lambda url: fetch(self, url, headers=headers),
                expired=page_again,
                discard=error_body,
            )
        except signed.Refused as e:
            raise TransferError(
                f"{self.recipe.name}: Google Drive answered its warning page {e.tries} times for {file.path} "
                f"(HTTP {e.status}); download it by hand from {self._view(file)}"
            ) from None

    def check_access(self) -> AccessReport:
        try:
            files = self._files()
            for f in files:
                self.open(f, {"Range": "bytes=0-0"}).close()
        except (AccessError, TransferError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        return AccessReport(self.recipe.name, self.spec.id, True, f"{len(files)} Drive file(s) downloadable")
