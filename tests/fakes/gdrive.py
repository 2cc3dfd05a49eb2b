"""A fake of Google Drive's public download path, as gdown 6.5.1 walks it (docs/sources-protocols.md,
"Google Drive"). One server plays both hosts: ``drive.google.com`` (``/uc``, ``/open``, ``/file/d/<id>/view``)
and ``drive.usercontent.google.com`` (``/download``); ``content_url`` names the latter in the pages it
serves (default: the server itself).

* ``GET /uc?id=<id>[&export=download]``: a file of at most ``scan_limit`` bytes -> 303 to
  ``<content>/download?id=<id>&export=download``; a larger one -> 200 ``text/html``, the virus-scan warning
  page (one line, as Drive minifies it) with ``<form id="download-form" action="<content>/download"
  method="get">`` and hidden inputs ``id``, ``export=download``, ``confirm=t``, ``uuid=<fresh>``;
* ``GET /download?id=&export=download[&confirm=t&uuid=]``: the bytes, with ``Content-Disposition:
  attachment; filename="<name>"``, Range and the shared faults; a large file without a valid ``uuid`` (never
  issued, or expired: ``uuid_ttl``, :meth:`expire_all`, or ``expire_next`` pages that offer a stale one) gets
  the warning page again (inferred);
* a file that is not shared publicly -> 302 to a Google sign-in page (``/ServiceLogin?...``, HTML);
* ``quota=True`` on a file -> its ``uc`` answers 403 with the "Too many users have viewed or downloaded this
  file recently" page (``<p class="uc-error-subcaption">``);
* ``GET /embeddedfolderview?id=<folder>`` (gdown's folder listing): ``<title>`` the folder's name, one
  ``flip-entry`` per child with ``<a href="https://drive.google.com/file/d/<id>/view?usp=drive_web">``
  (a file) or ``.../drive/folders/<id>`` (a subfolder) around its name (hrefs use ``public_url``); a folder
  that is not shared publicly -> 302 to the sign-in page;
* unknown id -> 404 HTML.

Page markup beyond what gdown reads (form id, hidden inputs, ``uc-error-subcaption``) is modelled on public
copies of the pages and is inferred.
"""

from __future__ import annotations

import html
import secrets
import time
from dataclasses import dataclass, field
from urllib.parse import quote

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import TLSServerMixin, serve_file

__all__ = ["DriveFile", "DriveFolder", "FakeDrive"]

QUOTA_TEXT = (
    "Too many users have viewed or downloaded this file recently. Please try accessing the file again later. "
    "If the file you are trying to access is particularly large or is shared with many people, it may take "
    "up to 24 hours to be able to view or download the file. If you still can't access a file after 24 "
    "hours, contact your domain administrator."
)
SIGN_IN = (
    "<html><head><title>Sign in - Google Accounts</title></head><body>"
    '<form id="gaia_loginform" action="/signin/v2/challenge"></form></body></html>'
)


@dataclass
class DriveFolder:
    id: str
    name: str
    files: list[DriveFile] = field(default_factory=list)
    folders: list[DriveFolder] = field(default_factory=list)
    public: bool = True


@dataclass
class DriveFile:
    id: str
    name: str
    data: bytes
    public: bool = True
    quota: bool = False
    mtime: float = field(default_factory=lambda: time.time() - 86400)


class _Handler(BaseFakeHandler):
    server_header = "GSE"
    fake: FakeDrive

    def _html(self, status: int, body: str, headers: list[tuple[str, str]] | None = None) -> None:
        self.respond(status, body.encode(), content_type="text/html; charset=utf-8", headers=headers or [])

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._html(405, "<html><body>Method not allowed</body></html>")
            return
        q = {k: v[-1] for k, v in self.query.items()}
        path = self.url_path
        if path in ("/uc", "/open"):
            self._uc(q.get("id", ""))
        elif path == "/download":
            self._download(q)
        elif path == "/embeddedfolderview":
            self._folder(q.get("id", ""))
        elif path == "/ServiceLogin":
            self._html(200, SIGN_IN)
        else:
            self._not_found()

    def _not_found(self) -> None:
        self._html(404, "<html><head><title>Not Found</title></head><body><p>Sorry, the file you have "
                        "requested does not exist.</p></body></html>")  # fmt: skip

    def _file(self, file_id: str) -> DriveFile | None:
        f = self.fake.files.get(file_id)
        if f is None:
            self._not_found()
            return None
        if not f.public:
            url = f"/ServiceLogin?continue={quote(self.fake.url + '/uc?id=' + file_id, safe='')}"
            self.respond(302, b"", content_type=None, headers=[("Location", url)])
            return None
        return f

    def _folder(self, folder_id: str) -> None:
        folder = self.fake.folders.get(folder_id)
        if folder is None:
            self._not_found()
        elif not folder.public:
            url = f"/ServiceLogin?continue={quote(self.fake.url + '/drive/folders/' + folder_id, safe='')}"
            self.respond(302, b"", content_type=None, headers=[("Location", url)])
        else:
            self._html(200, self.fake.folder_page(folder))

    def _uc(self, file_id: str) -> None:
        f = self._file(file_id)
        if f is None:
            return
        if f.quota:
            self._html(403, self.fake.quota_page())
            return
        if len(f.data) <= self.fake.scan_limit:
            location = f"{self.fake.content}/download?id={f.id}&export=download"
            self.respond(303, b"", content_type=None, headers=[("Location", location)])
            return
        self._html(200, self.fake.warning_page(f))

    def _download(self, q: dict[str, str]) -> None:
        f = self._file(q.get("id", ""))
        if f is None:
            return
        if len(f.data) > self.fake.scan_limit and not self.fake.uuid_valid(q.get("uuid", ""), f.id):
            self._html(200, self.fake.warning_page(f))
            return
        fake = self.fake
        serve_file(
            self,
            f.data,
            content_type="application/octet-stream",
            mtime=f.mtime,
            etag=None,
            extra_headers=[("Content-Disposition", f'attachment; filename="{f.name}"')],
            fault=self.file_fault(),
            on_drop=fake.expire_all if fake.expire_on_drop else None,
        )


class FakeDrive(TLSServerMixin, FakeHTTPServer):
    handler_class = _Handler

    def __init__(
        self,
        files: list[DriveFile],
        *,
        folders: tuple[DriveFolder, ...] = (),
        scan_limit: int = 100,
        uuid_ttl: float = 3600,
        public_url: str | None = None,
        content_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.files = {f.id: f for f in files}
        self.folders: dict[str, DriveFolder] = {}
        todo = list(folders)
        while todo:  # every folder, nested ones too, and the files in them
            folder = todo.pop()
            self.folders[folder.id] = folder
            self.files.update({f.id: f for f in folder.files})
            todo += folder.folders
        self.scan_limit = scan_limit
        self.uuid_ttl = uuid_ttl
        self.public_url = public_url
        self.content_url = content_url
        self.expire_on_drop = False
        self.expire_next = 0  # this many warning pages offer a uuid that is already stale
        self.uuids: dict[str, tuple[str, float]] = {}

    @property
    def url(self) -> str:
        return (self.public_url or self.base_url).rstrip("/")

    @property
    def content(self) -> str:
        return (self.content_url or self.url).rstrip("/")

    def expire_all(self) -> None:
        """Every uuid issued so far is no longer valid (the next warning page issues a fresh one)."""
        self.uuids.clear()

    def uuid_valid(self, uuid: str, file_id: str) -> bool:
        got = self.uuids.get(uuid)
        return got is not None and got[0] == file_id and got[1] > time.time()

    def warning_page(self, f: DriveFile) -> str:
        uuid = secrets.token_hex(4) + "-" + secrets.token_hex(2) + "-" + secrets.token_hex(6)
        stale = self.expire_next > 0
        self.expire_next -= 1 if stale else 0
        self.uuids[uuid] = (f.id, time.time() + (-1 if stale else self.uuid_ttl))
        size = f"{len(f.data) / 1e6:.1f}M"
        name = html.escape(f.name)
        return (
            "<!DOCTYPE html><html><head><title>Google Drive - Virus scan warning</title><meta http-equiv="
            '"content-type" content="text/html; charset=utf-8"/></head><body><div class="uc-main"><div '
            'id="uc-text"><p class="uc-warning-caption">Google Drive can\'t scan this file for viruses.</p>'
            '<p class="uc-warning-subcaption"><span class="uc-name-size">'
            f'<a href="/open?id={f.id}">{name}</a> '
            f"({size})</span> is too large for Google to scan for viruses. Would you still like to download "
            f'this file?</p><form id="download-form" action="{self.content}/download" method="get"><input '
            'type="submit" id="uc-download-link" class="goog-inline-block jfk-button jfk-button-action" '
            f'value="Download anyway"/><input type="hidden" name="id" value="{f.id}"><input type="hidden" '
            'name="export" value="download"><input type="hidden" name="confirm" value="t">'
            f'<input type="hidden" name="uuid" value="{uuid}"></form></div></div></body></html>\n'
        )

    def folder_page(self, folder: DriveFolder) -> str:
        def entry(href: str, item_id: str, name: str) -> str:
            return (
                f'<div class="flip-entry" id="entry-{item_id}" tabindex="0" role="link"><div '
                f'class="flip-entry-info"><a href="{href}" target="_blank"><div class="flip-entry-visual">'
                '</div><div class="flip-entry-title">'
                f"{html.escape(name)}</div></a></div></div>"
            )

        base = self.url
        rows = [entry(f"{base}/drive/folders/{d.id}", d.id, d.name) for d in folder.folders]
        rows += [entry(f"{base}/file/d/{f.id}/view?usp=drive_web", f.id, f.name) for f in folder.files]
        return (
            f"<!DOCTYPE html><html><head><title>{html.escape(folder.name)}</title></head><body>"
            f'<div class="flip-entries">{"".join(rows)}</div></body></html>\n'
        )

    def quota_page(self) -> str:
        return (
            "<!DOCTYPE html><html><head><title>Google Drive - Quota exceeded</title></head><body><div "
            'class="uc-main"><div id="uc-text"><p class="uc-error-caption">Sorry, you can&#39;t view or '
            f'download this file at this time.</p><p class="uc-error-subcaption">{QUOTA_TEXT}</p></div></div>'
            "</body></html>\n"
        )
