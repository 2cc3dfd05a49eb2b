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

climb walks that chain afresh for every request, so the resume of a dropped transfer gets a new ``uuid``
instead of reusing a stale one. Drive publishes no checksum: the recipe pins one (or ``checksums: pinned``
records the first download's). No credentials are used or sent.
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from pydantic import Field, model_validator

from climb_cli import redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
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

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        url = file.url
        for _ in range(3):  # uc -> interstitial -> file (an old page may confirm once more)
            resp = fetch(self, url, headers=headers)
            if _is_file(resp):
                return resp
            ctype = resp.headers.get("Content-Type", "")
            if resp.status_code in (429,) or resp.status_code >= 500:
                return resp  # the engine retries these (Retry-After honoured)
            if "text/html" not in ctype:
                if resp.status_code in (200, 206):
                    return resp  # bytes without a file name: accepted, checked by the recipe's sum
                error_body(resp)
                raise AccessError(
                    f"{self.recipe.name}: Google Drive answered HTTP {resp.status_code} for {file.path} "
                    f"({redaction.redact_url(url)}); check the file id, and that it is shared with 'Anyone "
                    f"with the link' ({self._view(file)})"
                )
            page = _Interstitial()
            page.feed(error_body(resp, _PAGE_LIMIT).decode("utf-8", "replace"))
            if page.error:
                raise TransferError(
                    f"{self.recipe.name}: Google Drive refuses {file.path} for now: {page.error[:200]} "
                    f"({self._view(file)})"
                )
            nxt = page.next_url(resp.url or url)
            if nxt is None:
                raise AccessError(
                    f"{self.recipe.name}: Google Drive gave a page without the file for {file.path} (HTTP "
                    f"{resp.status_code}): it is not shared with 'Anyone with the link'; ask its owner, or "
                    f"download it by hand from {self._view(file)}"
                )
            url = nxt
        raise TransferError(f"{self.recipe.name}: Google Drive kept answering pages for {file.path}")

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
