"""Google Drive files shared with "Anyone with the link" (`kind: gdrive`)::

    - kind: gdrive
      files:
        - {id: 1AbC..., path: COVID-US/videos.zip, sha256: <hex>}   # or md5; else `checksums: pinned`

or every file of a shared folder (and its subfolders), chosen with include/exclude globs::

    - kind: gdrive
      folder: 1XyZ...                      # the id in drive.google.com/drive/folders/<id>
      include: ["qa/*.jsonl"]
      sha256: {qa/train.jsonl: <hex>}      # optional pins, by path; else `checksums: pinned`

A folder is listed as gdown lists it, from ``GET /embeddedfolderview?id=<folder>``: the page's links to
``/file/d/<id>/view`` are files and to ``/drive/folders/<id>`` subfolders, named by their link text (no sizes,
no sums). The listing is stored for ``climb verify``.

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

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import requests
from pydantic import Field, model_validator

from climb_cli import redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net import signed
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected
from climb_cli.sources.http import (
    api_get,
    error_body,
    fetch,
    paths_from_listing,
    save_listing,
    selected_from_listing,
    unpinned_line,
)

DEFAULT_URL = "https://drive.google.com"
_PAGE_LIMIT = 2 * 1024 * 1024
_FILE_LINK = re.compile(r"^/file/d/([-\w]{25,})/view")
_FOLDER_LINK = re.compile(r"^/drive/folders/([-\w]{25,})/?$")
_MAX_DEPTH = 20


class DriveFile(SourceParams):
    id: str = Field(pattern=r"^[-\w]{10,}$", description="the file id (from /file/d/<id>/view)")
    path: str = Field(description="where it goes under the source folder")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    md5: str | None = Field(None, pattern=r"^[0-9a-fA-F]{32}$")
    size: int | None = Field(None, ge=0)


class GDriveParams(SourceParams):
    files: list[DriveFile] = Field(default_factory=list)
    folder: str | None = Field(None, pattern=r"^[-\w]{10,}$", description="a shared folder's id (its files)")
    sha256: dict[str, str] = Field(default_factory=dict, description="pins for a folder's files, by path")
    max_files: int = Field(10_000, ge=1, description="more files than this in the folder is an error")

    @model_validator(mode="after")
    def _paths(self) -> GDriveParams:
        if bool(self.files) == (self.folder is not None):
            raise ValueError("give exactly one of 'files' (ids and paths) or 'folder' (a shared folder's id)")
        for path, digest in self.sha256.items():
            if not re.match(r"^[0-9a-fA-F]{64}$", digest):
                raise ValueError(f"sha256[{path!r}] is not a sha256")
        seen: set[str] = set()
        for f in self.files:
            if safe_relpath(f.path) is None:
                raise ValueError(f"unsafe path {f.path!r} for Drive file {f.id}")
            if f.path in seen:
                raise ValueError(f"two files go to {f.path!r}")
            seen.add(f.path)
        return self


class _FolderView(HTMLParser):
    """The links of an ``embeddedfolderview`` page (gdown's folder listing): files ``/file/d/<id>/view`` and
    subfolders ``/drive/folders/<id>``, with their link text as the name; ``<title>`` is the folder's name."""

    def __init__(self, hosts: set[str]) -> None:
        super().__init__(convert_charrefs=True)
        self.hosts = hosts
        self.title: str | None = None
        self.entries: list[tuple[str, str, str]] = []  # (kind "file"|"folder", id, name)
        self._in_title = False
        self._link: tuple[str, str] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag == "a":
            parts = urlsplit(dict(attrs).get("href") or "")
            if (parts.hostname or "") not in self.hosts:
                return
            if m := _FILE_LINK.match(parts.path):
                self._link, self._text = ("file", m.group(1)), []
            elif m := _FOLDER_LINK.match(parts.path):
                self._link, self._text = ("folder", m.group(1)), []

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title = (self.title or "") + data
        elif self._link is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag == "a" and self._link is not None:
            self.entries.append((*self._link, " ".join("".join(self._text).split())))
            self._link = None


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
        if self.params.folder:
            return f"google drive folder {self.params.folder}"
        return f"google drive ({len(self.params.files)} file(s))"

    def _uc(self, file_id: str) -> str:
        return f"{self.base}/uc?{urlencode({'id': file_id, 'export': 'download'})}"

    def _files(self) -> list[RemoteFile]:
        return [
            RemoteFile(f.path, self._uc(f.id), f.size, f.sha256 and f.sha256.lower(), f.md5 and f.md5.lower())
            for f in self.params.files
        ]

    # -- a shared folder ------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"folder": self.params.folder}

    def _folder_page(self, folder_id: str) -> _FolderView:
        url = f"{self.base}/embeddedfolderview?{urlencode({'id': folder_id})}"
        resp = api_get(self, url, headers={"Accept": "text/html"})
        redirected = urlsplit(resp.url or url).path != "/embeddedfolderview"
        if resp.status_code != 200 or redirected:
            raise AccessError(
                f"{self.recipe.name}: Google Drive did not list folder {folder_id} (HTTP {resp.status_code}"
                f"{', a sign-in page' if redirected else ''}): it must be shared with 'Anyone with the link' "
                f"({self.base}/drive/folders/{folder_id})"
            )
        page = _FolderView({urlsplit(self.base).hostname or "", "drive.google.com"})
        page.feed(resp.text)
        if page.title is None:
            raise TransferError(
                f"{self.recipe.name}: Google Drive's folder page for {folder_id} has no title"
            )
        return page

    def _list_folder(self) -> list[RemoteFile]:
        assert self.params.folder is not None
        out: dict[str, RemoteFile] = {}
        todo, seen = [(self.params.folder, "", 0)], {self.params.folder}
        while todo:
            folder_id, prefix, depth = todo.pop(0)
            for kind, entry_id, name in self._folder_page(folder_id).entries:
                path = safe_relpath(prefix + name.replace("/", "_"))
                if path is None:
                    continue
                if kind == "folder":
                    if entry_id not in seen and depth < _MAX_DEPTH:
                        seen.add(entry_id)
                        todo.append((entry_id, path + "/", depth + 1))
                    continue
                if path in out:
                    raise TransferError(
                        f"{self.recipe.name}: folder {self.params.folder} holds two files {path!r}"
                    )
                pin = self.params.sha256.get(path)
                out[path] = RemoteFile(path, self._uc(entry_id), None, pin and pin.lower())
                if len(out) > self.params.max_files:
                    raise RecipeError(
                        f"{self.recipe.name}: Drive folder {self.params.folder} holds more than "
                        f"{self.params.max_files} files; narrow `include:` or raise `max_files:`"
                    )
        return [out[k] for k in sorted(out)]

    def list_files(self) -> list[RemoteFile]:
        if self.params.folder is None:
            files = self._files()
        else:
            listed = self._list_folder()
            save_listing(self, self._identity(), listed)
            files = [f for f in listed if selected(f.path, self.spec)]
        unpinned = [f.path for f in files if not (f.sha256 or f.md5)]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        if self.params.folder is not None:
            return selected_from_listing(self, self._identity())
        return self._files()

    def upstream_paths(self) -> set[str] | None:
        if self.params.folder is not None:
            return paths_from_listing(self, self._identity())
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
            files = self.list_files() if self.params.folder else self._files()
            for f in files[:1] if self.params.folder else files:
                self.open(f, {"Range": "bytes=0-0"}).close()
        except (AccessError, TransferError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        return AccessReport(self.recipe.name, self.spec.id, True, f"{len(files)} Drive file(s) downloadable")
