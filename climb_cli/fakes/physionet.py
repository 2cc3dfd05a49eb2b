"""A faithful fake of physionet.org's download surface, as MIT-LCP/physionet-build serves it in production.

Production means Django behind nginx: Django resolves the URL, looks up the project version (404 before any
auth), authenticates (login session, or HTTP Basic for ``Wget/``/``libwfdb/`` User-Agents only), checks
access and answers ``X-Accel-Redirect``; nginx then serves the bytes (Range, ETag, autoindex listings).
This module reproduces what such a deployment answers, from /work/shared/reference/physionet-protocol.md
and sources.md section 1:

* ``GET|HEAD /files/<slug>/<version>/<path>``: files, nginx autoindex listings (trailing slash), nginx's 301
  to the internal ``/static|/protected/published-projects/...`` alias for a directory without the slash;
* the open projects' nginx tree ``/static/published-projects/<slug>/<version>/...`` and ``<label>.zip``;
* ``/content/<slug>/`` (302 to the latest version), ``/content/<slug>/<version>/`` (landing page with the
  ``Version:`` line wfdb-python scrapes), ``/content/<slug>/get-zip/<version>/``;
* ``/api/v1/project/published/[<slug>/[<version>/]]`` and the legacy ``/rest/database-list/``;
* the Django login flow (``/login/`` with CSRF), ``/logout/``, ``/projects/``, ``/sign-dua/<slug>/<ver>/``.

Files honour the shared fault plan (:mod:`climb_cli.fakes.faults`).  Everything runs in-process on 127.0.0.1.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import io
import json
import os
import posixpath
import random
import re
import secrets
import string
import threading
import time
import unicodedata
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

from climb_cli.fakes.faults import (
    BaseFakeHandler,
    FakeHTTPServer,
    Fault,
    FaultPlan,
    RequestRecord,
    http_date,
    nginx_error_page,
    send_fault_status,
    serve_bytes,
)

__all__ = [
    "FakePhysioNet",
    "FakeProject",
    "FakeUser",
    "Fault",
    "FaultPlan",
    "RequestRecord",
    "autoindex_html",
    "project_zip_label",
    "write_sha256sums",
]

NGINX_SERVER = "nginx/1.22.1"
CSP = "sandbox; default-src 'self'"
CHECKSUM_FILE = "SHA256SUMS.txt"
SESSION_COOKIE_AGE = 43200  # seconds, what physionet.org sends with sessionid
CSRF_COOKIE_AGE = 31449600  # Django's default (one year)
AUTOINDEX_NAME_LENGTH = 50  # nginx's autoindex column width

#: project/utility.py: HTTP_AUTH_USER_AGENT, applied with re.match (so anchored at the start).
HTTP_AUTH_USER_AGENT = re.compile("|".join(("Wget/", "libwfdb/")))
ACCESS_POLICIES = ("open", "restricted", "credentialed")
_LICENSES = {
    "open": "Open Data Commons Attribution License v1.0",
    "restricted": "PhysioNet Restricted Health Data License 1.5.0",
    "credentialed": "PhysioNet Credentialed Health Data License 1.5.0",
}

_TEXT = "text/plain; charset=utf-8"
_BINARY = "application/octet-stream"
_MIME = {
    ".txt": _TEXT,
    ".csv": _TEXT,
    ".tsv": _TEXT,
    ".hea": _TEXT,
    ".md": _TEXT,
    ".sha256": _TEXT,
    ".html": "text/html; charset=utf-8",
    ".htm": "text/html; charset=utf-8",
    ".xml": "text/xml; charset=utf-8",
    ".json": "application/json",
    ".zip": "application/zip",
    ".pdf": "application/pdf",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".svg": "image/svg+xml",
}
for _ext in (".dat", ".edf", ".atr", ".mat", ".bin", ".gz", ".tar", ".npy", ".npz", ".parquet", ".dcm"):
    _MIME[_ext] = _BINARY
for _ext in (".nii", ".h5", ".hdf5", ".wav", ".xz", ".bz2", ".7z", ".qrs", ".ecg", ".abp", ".xws"):
    _MIME[_ext] = _BINARY


def content_type_for(name: str) -> str:
    """Content-Type by extension; names without a known extension (RECORDS, ANNOTATORS, .csv) are text."""
    return _MIME.get(posixpath.splitext(name)[1].lower(), _TEXT)


# ------------------------------------------------------------------------------------------ models


@dataclass
class FakeUser:
    """A PhysioNet account.  Tests may mutate the flags while the server runs (it keeps this object)."""

    username: str
    email: str
    password: str
    credentialed: bool = True
    trainings_ok: bool = True
    dua_signed: set[str] = field(default_factory=set)  # project slugs whose DUA this user signed


@dataclass
class FakeProject:
    """One published version of a project; ``root`` holds its files exactly as /files/ serves them."""

    slug: str
    version: str
    root: Path  # directory holding the files of this version
    access: str = "open"  # "open" | "restricted" | "credentialed"
    title: str = ""

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        if self.access not in ACCESS_POLICIES:
            raise ValueError(f"access must be one of {ACCESS_POLICIES}, not {self.access!r}")
        if not re.fullmatch(r"[\w-]+", self.slug) or not re.fullmatch(r"[\d.]+", self.version):
            raise ValueError(f"slug/version {self.slug!r}/{self.version!r} would not match physionet's URLs")
        if not self.title:
            self.title = self.slug

    @property
    def version_key(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.version.split(".") if p.isdigit())


def _tree_files(root: Path) -> list[str]:
    """Relative paths of every regular file (symlinks skipped), sorted like ``find | LC_COLLATE=C sort``."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))]
        for name in filenames:
            full = os.path.join(dirpath, name)
            if os.path.islink(full) or not os.path.isfile(full):
                continue
            out.append(Path(os.path.relpath(full, root)).as_posix())
    out.sort(key=lambda p: p.encode("utf-8", "surrogateescape"))
    return out


def write_sha256sums(root: Path, *, shuffle: bool = False, seed: int = 0) -> Path:
    """Write ``root/SHA256SUMS.txt`` exactly as physionet-build's ``make_checksum_file`` does.

    One ``'<sha256hex> <relpath>\\n'`` line (a single space, no ``*``) per regular file under ``root``,
    recursively, except ``SHA256SUMS.txt`` itself; symlinks skipped; byte-order sorted.  ``shuffle=True``
    writes the same lines in a deterministic (``seed``) non-sorted order, like migrated projects' files.
    """
    root = Path(root)
    lines = []
    for rel in _tree_files(root):
        if rel == CHECKSUM_FILE:
            continue
        digest = hashlib.sha256()
        with open(root / rel, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        lines.append(f"{digest.hexdigest()} {rel}\n")
    if shuffle and len(lines) > 1:
        ordered = list(lines)
        random.Random(seed).shuffle(lines)
        if lines == ordered:
            lines.reverse()
    out = root / CHECKSUM_FILE
    out.write_bytes("".join(lines).encode("utf-8", "surrogateescape"))
    return out


def _slugify(value: str) -> str:
    """django.utils.text.slugify."""
    value = unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value.lower())
    return re.sub(r"[-\s]+", "-", value).strip("-_")


def project_zip_label(project: FakeProject) -> str:
    """``slugify(title) + '-' + version``: the zip's name (without ``.zip``) and its top folder."""
    return f"{_slugify(project.title)}-{project.version}"


# ------------------------------------------------------------------------------------- autoindex

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _escape_html(text: str) -> str:
    """ngx_escape_html: only < > & and double quote."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def autoindex_html(uri: str, directory: Path) -> bytes:
    """The listing nginx's ``autoindex on`` renders for ``directory`` at ``uri`` (exact size, GMT dates).

    Hidden entries are skipped; directories first, then files, each group in byte order; display names
    longer than 50 characters are cut to 47 + ``..>``; hrefs are complete and percent-encoded.
    """
    entries = []
    with os.scandir(directory) as it:
        for entry in it:
            if entry.name.startswith("."):
                continue
            try:
                st = entry.stat()  # nginx follows symlinks
            except OSError:
                continue
            is_dir = entry.is_dir()
            entries.append(
                (not is_dir, entry.name.encode("utf-8", "surrogateescape"), entry.name, is_dir, st)
            )
    entries.sort(key=lambda e: (e[0], e[1]))
    title = _escape_html(uri)
    out = [
        f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\r\n'
    ]
    width = AUTOINDEX_NAME_LENGTH
    for _, _, name, is_dir, st in entries:
        href = quote(name, safe="") + ("/" if is_dir else "")
        n = len(name)
        if n > width:
            line = f'<a href="{href}">{_escape_html(name[: width - 3])}..&gt;</a>'
        else:
            display = _escape_html(name)
            if is_dir and width - n > 0:
                display += "/"
                n += 1
            line = f'<a href="{href}">{display}</a>' + " " * (width - n)
        tm = time.gmtime(st.st_mtime)
        date = f"{tm.tm_mday:02d}-{_MONTHS[tm.tm_mon - 1]}-{tm.tm_year} {tm.tm_hour:02d}:{tm.tm_min:02d}"
        size = " " * 18 + "-" if is_dir else f"{st.st_size:19d}"
        out.append(f"{line} {date} {size}\r\n")
    out.append("</pre><hr></body>\r\n</html>\r\n")
    return "".join(out).encode("utf-8", "surrogateescape")


# ----------------------------------------------------------------------------------- Django pages

_DJANGO_404 = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n</head>\n<body>\n'
    b"  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n</body>\n</html>\n"
)
_DJANGO_403 = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>403 Forbidden</title>\n</head>\n<body>\n'
    b"  <h1>403 Forbidden</h1><p></p>\n</body>\n</html>\n"
)
LOGIN_ERROR = (
    "Please enter a correct username/email and password. Note that the password field is case-sensitive."
)
_CSRF_CHARS = string.ascii_letters + string.digits


def _csrf_failure_page(reason: str) -> bytes:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n  <meta http-equiv="content-type" content="text/html; '
        'charset=utf-8">\n  <meta name="robots" content="NONE,NOARCHIVE">\n  <title>403 Forbidden</title>\n'
        '</head>\n<body>\n<div id="summary">\n  <h1>Forbidden <span>(403)</span></h1>\n'
        "  <p>CSRF verification failed. Request aborted.</p>\n"
        f"  <p>Reason given for failure:</p>\n  <pre>\n    {html.escape(reason)}\n  </pre>\n</div>\n"
        "</body>\n</html>\n"
    ).encode()


def _page(title: str, body: str) -> bytes:
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{html.escape(title)}'
        f"</title>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    ).encode()


def _mask_csrf(secret: str) -> str:
    """django.middleware.csrf._mask_cipher_secret."""
    mask = "".join(secrets.choice(_CSRF_CHARS) for _ in range(len(secret)))
    pairs = zip((_CSRF_CHARS.index(c) for c in secret), (_CSRF_CHARS.index(c) for c in mask), strict=True)
    return mask + "".join(_CSRF_CHARS[(x + y) % len(_CSRF_CHARS)] for x, y in pairs)


def _unmask_csrf(token: str) -> str | None:
    """django.middleware.csrf._unmask_cipher_token (64 chars) or the bare secret (32 chars)."""
    if any(c not in _CSRF_CHARS for c in token):
        return None
    if len(token) == 32:
        return token
    if len(token) != 64:
        return None
    mask, cipher = token[:32], token[32:]
    pairs = zip((_CSRF_CHARS.index(c) for c in cipher), (_CSRF_CHARS.index(c) for c in mask), strict=True)
    return "".join(_CSRF_CHARS[x - y] for x, y in pairs)


def _cookie(name: str, value: str, *, max_age: int | None, httponly: bool) -> str:
    """A Set-Cookie value in Django's attribute order."""
    parts = [f"{name}={value}"]
    if max_age is not None:
        parts.append(f"expires={http_date(time.time() + max_age)}")
    if httponly:
        parts.append("HttpOnly")
    if max_age is not None:
        parts.append(f"Max-Age={max_age}")
    parts += ["Path=/", "SameSite=Lax"]
    return "; ".join(parts)


@dataclass
class _Session:
    key: str
    username: str
    kind: str  # "login" (auth.login) or "httpauth" (check_http_auth's pn_httpauth_uid cache)
    created: float


# ------------------------------------------------------------------------------------------- server


class _PhysioNetHandler(BaseFakeHandler):
    server_header = NGINX_SERVER
    fake: FakePhysioNet

    def route(self) -> None:
        path = self.url_path
        if path == "/login/" and self.command == "POST":
            fault = self.fake.login_faults.take(path, kinds={"status"})
            if fault is not None:  # the front end (nginx, a rate limiter) answers before Django
                send_fault_status(self, fault)
                return
        if path.startswith("/static/published-projects/"):
            self._static(path)
        elif path.startswith("/protected/") or path == "/protected":
            self._nginx_error(404)  # an nginx "internal" location: not reachable from outside
        else:
            self._django(path)

    # -- nginx ------------------------------------------------------------------------------------
    def _nginx_error(self, status: int, headers: Iterable[tuple[str, str]] = ()) -> None:
        self.respond(status, nginx_error_page(status, NGINX_SERVER), headers=list(headers))

    def _nginx_serve(
        self, project: FakeProject, rel: str, accel_prefix: str, extra: list[tuple[str, str]]
    ) -> None:
        """What nginx does with ``X-Accel-Redirect: <accel_prefix>/<slug>/<ver>/<rel>``."""
        parts = [p for p in rel.split("/") if p and p != "."]  # nginx merges slashes, drops "./"
        if ".." in parts or "\x00" in rel:
            self._nginx_error(404)
            return
        target = project.root.joinpath(*parts)
        internal = f"{accel_prefix}/{project.slug}/{project.version}/{'/'.join(parts)}"
        if rel == "" or rel.endswith("/"):
            if target.is_dir():
                uri = internal if internal.endswith("/") else internal + "/"
                body = autoindex_html(uri, target)
                self.respond(200, body, content_type="text/html; charset=utf-8", headers=extra)
            else:
                self._nginx_error(404)
            return
        if target.is_dir():
            # nginx's static module: a directory without "/" -> 301 to the *internal* URI + "/", absolute.
            host = (self.headers.get("Host") or self.fake.host).rsplit(":", 1)[0] or self.fake.host
            self._nginx_error(301, [("Location", f"http://{host}:{self.fake.port}{internal}/")])
            return
        if not target.is_file():
            self._nginx_error(404)
            return
        fault = self.file_fault()
        serve_bytes(
            self,
            target,
            content_type=content_type_for(target.name),
            extra_headers=extra,
            fault=fault,
            ims_exact=self.fake.ims_exact,
        )

    def _serve_zip(self, project: FakeProject, extra: list[tuple[str, str]]) -> None:
        data, mtime = self.fake._zip_bytes(project)
        fault = self.file_fault()
        serve_bytes(
            self,
            data,
            content_type="application/zip",
            mtime=mtime,
            extra_headers=extra,
            fault=fault,
            ims_exact=self.fake.ims_exact,
        )

    def _static(self, path: str) -> None:
        """nginx's ``/static/published-projects/`` tree: open projects only, no Django in front."""
        if self.command not in ("GET", "HEAD"):
            self._nginx_error(405)
            return
        rest = path[len("/static/published-projects/") :]
        slug, _, tail = rest.partition("/")
        version, sep, rel = tail.partition("/")
        versions = [p for p in self.fake._projects.values() if p.slug == slug and p.access == "open"]
        if versions and not sep and version.endswith(".zip"):
            for project in versions:
                if version == project_zip_label(project) + ".zip":
                    self._serve_zip(project, [])
                    return
        found = self.fake._projects.get((slug, version))
        if found is None or found.access != "open":
            self._nginx_error(404)
            return
        if not sep:  # ".../<slug>/<version>" is a directory
            host = (self.headers.get("Host") or self.fake.host).rsplit(":", 1)[0] or self.fake.host
            self._nginx_error(301, [("Location", f"http://{host}:{self.fake.port}{path}/")])
            return
        self._nginx_serve(found, rel, "/static/published-projects", [])

    # -- Django -----------------------------------------------------------------------------------
    _ROUTES: tuple[tuple[re.Pattern[str], str], ...] = (
        (re.compile(r"^/$"), "_home"),
        (re.compile(r"^/files/(?P<slug>[\w-]+)/(?P<version>[\d.]+)/(?P<path>.*)$"), "_files"),
        (re.compile(r"^/content/(?P<slug>[\w-]+)/$"), "_content_latest"),
        (re.compile(r"^/content/(?P<slug>[\w-]+)/(?P<version>[\d.]+)/$"), "_content_version"),
        (re.compile(r"^/content/(?P<slug>[\w-]+)/get-zip/(?P<version>[\d.]+)/$"), "_zip"),
        (re.compile(r"^/api/v1/project/published/$"), "_api_list"),
        (re.compile(r"^/api/v1/project/published/(?P<slug>[\w-]+)/$"), "_api_versions"),
        (re.compile(r"^/api/v1/project/published/(?P<slug>[\w-]+)/(?P<version>[\d.]+)/$"), "_api_detail"),
        (re.compile(r"^/rest/database-list/$"), "_api_list"),
        (re.compile(r"^/login/$"), "_login"),
        (re.compile(r"^/logout/$"), "_logout"),
        (re.compile(r"^/projects/$"), "_projects"),
        (re.compile(r"^/sign-dua/(?P<slug>[\w-]+)/(?P<version>[\d.]+)/$"), "_sign_dua"),
    )
    _CSRF_EXEMPT = frozenset({"_api_list", "_api_versions", "_api_detail"})  # DRF views are csrf_exempt

    def _django(self, path: str) -> None:
        name = ""
        for pattern, view in self._ROUTES:
            match = pattern.match(path)
            if match:
                name = view
                break
        else:
            # CommonMiddleware APPEND_SLASH: 301 to path + "/" when that would resolve (GET/HEAD).
            if (
                self.command in ("GET", "HEAD")
                and not path.endswith("/")
                and any(p.match(path + "/") for p, _ in self._ROUTES)
            ):
                query = urlsplit(self.path).query
                location = quote(path + "/") + (f"?{query}" if query else "")
                self.respond(301, b"", headers=[("Location", location)])
            else:
                self.respond(404, _DJANGO_404)
            return
        if self.command not in ("GET", "HEAD", "OPTIONS", "TRACE") and name not in self._CSRF_EXEMPT:
            reason = self._csrf_failure()
            if reason:
                self.respond(403, _csrf_failure_page(reason))
                return
        getattr(self, name)(**match.groupdict())

    # auth helpers
    def _session(self) -> _Session | None:
        key = self.cookies.get("sessionid")
        return self.fake._get_session(key) if key else None

    def _login_user(self) -> FakeUser | None:
        session = self._session()
        if session is not None and session.kind == "login":
            return self.fake._user_by_name(session.username)
        return None

    def _http_auth_allowed(self) -> bool:
        """project/utility.py http_auth_allowed (DEBUG-like: plain HTTP is accepted on loopback)."""
        if self.command not in ("GET", "HEAD"):
            return False
        return bool(HTTP_AUTH_USER_AGENT.match(self.headers.get("User-Agent", "")))

    def _check_http_auth(self, user: FakeUser | None) -> FakeUser | None:
        """project/utility.py check_http_auth, including its session cache."""
        header = self.headers.get("Authorization")
        if header is None or not self._http_auth_allowed() or user is not None:
            return user
        session = self._session()
        if session is not None and session.kind == "httpauth":
            cached = self.fake._user_by_name(session.username)
            if cached is not None:
                return cached
        tokens = header.split()
        if len(tokens) != 2 or tokens[0].lower() != "basic":
            return None
        try:
            username, password = base64.b64decode(tokens[1], validate=True).decode().split(":", 1)
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        found = self.fake._authenticate(username, password)
        if found is not None and self.cookies:
            new = self.fake._new_session(found.username, "httpauth")
            self.queue_header(
                "Set-Cookie", _cookie("sessionid", new.key, max_age=SESSION_COOKIE_AGE, httponly=True)
            )
        return found

    def _deny(self, user: FakeUser | None) -> None:
        """project/utility.py require_http_auth."""
        if self._http_auth_allowed() and user is None:
            self.respond(
                401,
                b"",
                headers=[
                    ("WWW-Authenticate", f'Basic realm="{self.fake.realm}", charset="UTF-8"'),
                    ("Set-Cookie", "testcookie=1; HttpOnly; Path=/; SameSite=Lax"),
                    ("Vary", "Cookie"),
                ],
            )
        else:
            self.respond(403, _DJANGO_403)

    def _csrf_failure(self) -> str | None:
        """CsrfViewMiddleware.process_view for unsafe methods over plain HTTP (no Referer check)."""
        secret = self.cookies.get("csrftoken")
        if not secret or _unmask_csrf(secret) != secret or len(secret) != 32:
            return "CSRF cookie not set."
        token = ""
        if self.command == "POST" and "form" in (self.headers.get("Content-Type") or ""):
            form = parse_qs(self.read_body().decode("utf-8", "replace"), keep_blank_values=True)
            token = (form.get("csrfmiddlewaretoken") or [""])[0]
        if not token:
            token = self.headers.get("X-CSRFToken", "")
        if not token:
            return "CSRF token missing."
        if _unmask_csrf(token) != secret:
            return "CSRF token incorrect."
        return None

    def _project(self, slug: str, version: str) -> FakeProject | None:
        return self.fake._projects.get((slug, version))

    # views
    def _home(self) -> None:
        self.respond(200, _page("PhysioNet", "<h1>PhysioNet (fake)</h1>"))

    def _files(self, slug: str, version: str, path: str) -> None:
        """project/views.py serve_published_project_file, then nginx."""
        project = self._project(slug, version)
        if project is None:
            self.respond(404, _DJANGO_404)
            return
        user = self._check_http_auth(self._login_user())
        if not self.fake._can_access(user, project):
            self._deny(user)
            return
        disposition = "attachment" if "download" in self.query else "inline"
        extra = [("Content-Disposition", f"{disposition}; filename={posixpath.basename(path)}")]
        if not path.lower().endswith(".pdf"):
            extra.append(("Content-Security-Policy", CSP))
        prefix = "/static/published-projects" if project.access == "open" else "/protected/published-projects"
        self._nginx_serve(project, path, prefix, extra)

    def _zip(self, slug: str, version: str) -> None:
        project = self._project(slug, version)
        if project is None:
            self.respond(404, _DJANGO_404)
            return
        user = self._check_http_auth(self._login_user())
        if not self.fake._can_access(user, project):
            self._deny(user)
            return
        label = project_zip_label(project)
        self._serve_zip(project, [("Content-Disposition", f"attachment; filename={label}.zip")])

    def _content_latest(self, slug: str) -> None:
        latest = self.fake.latest(slug)
        if latest is None:
            self.respond(404, _DJANGO_404)
            return
        self.respond(302, b"", headers=[("Location", f"/content/{slug}/{latest.version}/")])

    def _content_version(self, slug: str, version: str) -> None:
        project = self._project(slug, version)
        if project is None:
            self.respond(404, _DJANGO_404)
            return
        title = html.escape(project.title)
        files = f"/files/{project.slug}/{project.version}/"
        body = (
            f"<h1>{title}</h1>\n"
            f"<p>Published: {time.strftime('%b. %d, %Y', time.gmtime(self.fake._published(project)))}.</p>\n"
            f"<p>Version: {project.version}</p>\n"
            f"<p>Access policy: {project.access}</p>\n"
            f'<p><a href="{files}">Files</a></p>\n'
            f"<pre>wget -r -N -c -np {files}</pre>"
        )
        self.respond(200, _page(f"{project.title} v{project.version}", body))

    def _json(self, status: int, payload: object) -> None:
        self.respond(
            status,
            json.dumps(payload).encode(),
            content_type="application/json",
            headers=[("Vary", "Accept"), ("Allow", "GET, HEAD, OPTIONS")],
        )

    def _api_list(self) -> None:
        self._json(200, [self.fake._api_summary(p) for p in self.fake._sorted_projects()])

    def _api_versions(self, slug: str) -> None:
        versions = [p for p in self.fake._sorted_projects() if p.slug == slug]
        if not versions:
            self._json(404, {"detail": "Not found."})
            return
        self._json(
            200,
            [
                {"slug": p.slug, "title": p.title, "version": p.version, "abstract": _abstract(p)}
                for p in versions
            ],
        )

    def _api_detail(self, slug: str, version: str) -> None:
        project = self._project(slug, version)
        if project is None:
            self._json(404, {"detail": "Not found."})
            return
        self._json(200, self.fake._api_detail(project))

    def _login_form(self, status: int, error: str = "", next_url: str = "") -> None:
        cookie_secret = self.cookies.get("csrftoken", "")
        if len(cookie_secret) != 32 or _unmask_csrf(cookie_secret) != cookie_secret:
            cookie_secret = "".join(secrets.choice(_CSRF_CHARS) for _ in range(32))
        token = _mask_csrf(cookie_secret)
        errors = f'<div class="alert alert-danger">{html.escape(error)}</div>\n' if error else ""
        next_field = (
            f'<input type="hidden" name="next" value="{html.escape(next_url, quote=True)}">\n'
            if next_url
            else ""
        )
        body = (
            f"<h1>Account Login</h1>\n{errors}"
            '<form action="/login/" method="post">\n'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{token}">\n'
            '<input type="text" name="username" autofocus autocapitalize="none" autocomplete="username" '
            'maxlength="254" required id="id_username">\n'
            '<input type="password" name="password" autocomplete="current-password" required '
            'id="id_password">\n'
            '<input type="checkbox" name="remember" id="id_remember">\n'
            f'{next_field}<button type="submit">Login</button>\n</form>'
        )
        self.respond(
            status,
            _page("Login", body),
            headers=[
                ("Set-Cookie", _cookie("csrftoken", cookie_secret, max_age=CSRF_COOKIE_AGE, httponly=False)),
                ("Vary", "Cookie"),
            ],
        )

    def _login(self) -> None:
        """Django LoginView (redirect_authenticated_user=True) with physionet's dual username/e-mail
        backend. A session that is already signed in is redirected, whatever the method: no form,
        no new ``sessionid``."""
        if self._login_user() is not None:
            source = (
                self.query
                if self.command in ("GET", "HEAD")
                else parse_qs(self.read_body().decode("utf-8", "replace"), keep_blank_values=True)
            )
            next_url = (source.get("next") or [""])[0]
            location = (
                next_url if next_url.startswith("/") and not next_url.startswith("//") else "/projects/"
            )
            self.respond(302, b"", headers=[("Location", location), ("Vary", "Cookie")])
            return
        if self.command in ("GET", "HEAD"):
            self._login_form(200, next_url=(self.query.get("next") or [""])[0])
            return
        if self.command != "POST":
            self.respond(405, b"", headers=[("Allow", "GET, POST, HEAD, OPTIONS")])
            return
        form = parse_qs(self.read_body().decode("utf-8", "replace"), keep_blank_values=True)
        username = (form.get("username") or [""])[0]
        password = (form.get("password") or [""])[0]
        next_url = (form.get("next") or [""])[0]
        user = self.fake._authenticate(username, password) if username and password else None
        if user is None:
            self._login_form(200, LOGIN_ERROR, next_url)
            return
        old = self.cookies.get("sessionid")
        if old:
            self.fake._drop_session(old)
        session = self.fake._new_session(user.username, "login")
        location = next_url if next_url.startswith("/") and not next_url.startswith("//") else "/projects/"
        new_csrf = "".join(secrets.choice(_CSRF_CHARS) for _ in range(32))  # rotate_token() on login
        self.respond(
            302,
            b"",
            headers=[
                ("Location", location),
                ("Set-Cookie", _cookie("csrftoken", new_csrf, max_age=CSRF_COOKIE_AGE, httponly=False)),
                ("Set-Cookie", _cookie("sessionid", session.key, max_age=SESSION_COOKIE_AGE, httponly=True)),
                ("Vary", "Cookie"),
            ],
        )

    def _logout(self) -> None:
        key = self.cookies.get("sessionid")
        if key:
            self.fake._drop_session(key)
        self.respond(
            302,
            b"",
            headers=[
                ("Location", "/"),
                (
                    "Set-Cookie",
                    'sessionid=""; expires=Thu, 01 Jan 1970 00:00:00 GMT; Max-Age=0; Path=/; SameSite=Lax',
                ),
            ],
        )

    def _projects(self) -> None:
        user = self._login_user()
        if user is None:
            self.respond(302, b"", headers=[("Location", "/login/?next=/projects/")])
            return
        self.respond(
            200, _page("Projects", f"<h1>Projects</h1>\n<p>Logged in as {html.escape(user.username)}</p>")
        )

    def _sign_dua(self, slug: str, version: str) -> None:
        project = self._project(slug, version)
        if project is None or project.access == "open":
            self.respond(404, _DJANGO_404)
            return
        user = self._login_user()
        if user is None:
            self.respond(302, b"", headers=[("Location", f"/login/?next=/sign-dua/{slug}/{version}/")])
            return
        if self.command == "POST":
            form = parse_qs(self.read_body().decode("utf-8", "replace"), keep_blank_values=True)
            if "agree" in form:
                user.dua_signed.add(slug)
                self.respond(
                    200, _page("Access Granted", f"<h1>Access Granted - {html.escape(project.title)}</h1>")
                )
                return
        secret = self.cookies.get("csrftoken") or "".join(secrets.choice(_CSRF_CHARS) for _ in range(32))
        body = (
            f"<h1>{html.escape(project.title)} Data Use Agreement</h1>\n"
            '<form method="post">'
            f'<input type="hidden" name="csrfmiddlewaretoken" value="{_mask_csrf(secret)}">'
            '<button type="submit" name="agree">I agree</button></form>'
        )
        self.respond(
            200,
            _page("Sign DUA", body),
            headers=[("Set-Cookie", _cookie("csrftoken", secret, max_age=CSRF_COOKIE_AGE, httponly=False))],
        )


class _CountingSink(io.RawIOBase):
    """A seekable, write-only file that only remembers how big it got (for the zip's size)."""

    def __init__(self) -> None:
        super().__init__()
        self.pos = 0
        self.size = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.pos += len(b)
        self.size = max(self.size, self.pos)
        return len(b)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self.pos, os.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        return self.pos


def _abstract(project: FakeProject) -> str:
    return f"<p>{html.escape(project.title)} (a fake project served by climb's PhysioNet fake).</p>"


class FakePhysioNet(FakeHTTPServer):
    """An in-process physionet.org: ``with FakePhysioNet([project], [user]) as pn: pn.base_url ...``.

    ``log`` lists every request (:class:`RequestRecord`), ``faults`` is the shared :class:`FaultPlan`
    (applied to file responses after the access check), ``expire_sessions()`` logs every client out.
    """

    handler_class = _PhysioNetHandler

    def __init__(
        self,
        projects: Iterable[FakeProject],
        users: Iterable[FakeUser] = (),
        *,
        realm: str = "PhysioNet",
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, faults=faults)
        self.realm = realm
        #: ``status`` faults answered to ``POST /login/`` (503 from the front end, 429 from a rate
        #: limiter, a 403 CSRF page); the file ``faults`` never touch the login view.
        self.login_faults = FaultPlan()
        #: nginx's ``if_modified_since`` default is ``exact`` (304 only for the exact mtime); set False for
        #: ``before`` (304 whenever If-Modified-Since >= mtime).
        self.ims_exact = True
        self._projects: dict[tuple[str, str], FakeProject] = {}
        for project in projects:
            key = (project.slug, project.version)
            if key in self._projects:
                raise ValueError(f"duplicate project version {key}")
            self._projects[key] = project
        self.users: list[FakeUser] = list(users)
        self._sessions: dict[str, _Session] = {}
        self._state_lock = threading.Lock()
        self._zip_cache: dict[tuple[str, str], tuple[tuple[object, ...], bytes, float]] = {}
        self._zip_sizes: dict[tuple[str, str], tuple[tuple[object, ...], int]] = {}

    # -- public helpers -----------------------------------------------------------------------------
    @property
    def projects(self) -> list[FakeProject]:
        return self._sorted_projects()

    def latest(self, slug: str) -> FakeProject | None:
        """The highest version of ``slug`` by numeric tuple (what /content/<slug>/ redirects to)."""
        versions = [p for p in self._projects.values() if p.slug == slug]
        return max(versions, key=lambda p: p.version_key) if versions else None

    def files_url(self, slug: str, version: str, path: str = "") -> str:
        return f"{self.base_url}/files/{slug}/{version}/{quote(path)}"

    def expire_sessions(self) -> None:
        """Invalidate every session (login and Basic-auth cache): clients must log in again."""
        with self._state_lock:
            self._sessions.clear()

    @property
    def session_count(self) -> int:
        with self._state_lock:
            return len(self._sessions)

    # -- state used by the handler ---------------------------------------------------------------------
    def _sorted_projects(self) -> list[FakeProject]:
        return sorted(self._projects.values(), key=lambda p: (p.slug, p.version_key))

    def _user_by_name(self, username: str) -> FakeUser | None:
        return next((u for u in self.users if u.username == username), None)

    def _authenticate(self, login: str, password: str) -> FakeUser | None:
        """user/backends.py DualAuthModelBackend: username, or e-mail (case-insensitive)."""
        for user in self.users:
            if (user.username == login or user.email.lower() == login.lower()) and secrets.compare_digest(
                user.password.encode(), password.encode()
            ):
                return user
        return None

    @staticmethod
    def _can_access(user: FakeUser | None, project: FakeProject) -> bool:
        """project/authorization/access.py can_view_project_files (open / restricted / credentialed)."""
        if project.access == "open":
            return True
        if user is None or project.slug not in user.dua_signed:
            return False
        if project.access == "restricted":
            return True
        return user.credentialed and user.trainings_ok

    def _new_session(self, username: str, kind: str) -> _Session:
        session = _Session(
            key="".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(32)),
            username=username,
            kind=kind,
            created=time.time(),
        )
        with self._state_lock:
            self._sessions[session.key] = session
        return session

    def _get_session(self, key: str) -> _Session | None:
        with self._state_lock:
            session = self._sessions.get(key)
            if session is not None and time.time() - session.created > SESSION_COOKIE_AGE:
                del self._sessions[key]
                return None
            return session

    def _drop_session(self, key: str) -> None:
        with self._state_lock:
            self._sessions.pop(key, None)

    def _published(self, project: FakeProject) -> float:
        try:
            return max((project.root / rel).stat().st_mtime for rel in _tree_files(project.root))
        except ValueError:
            return project.root.stat().st_mtime

    def _main_storage_size(self, project: FakeProject) -> int:
        return sum((project.root / rel).stat().st_size for rel in _tree_files(project.root))

    def _zip_signature(
        self, project: FakeProject
    ) -> tuple[list[str], list[os.stat_result], tuple[object, ...]]:
        files = _tree_files(project.root)
        stats = [(project.root / rel).stat() for rel in files]
        return (
            files,
            stats,
            tuple((rel, st.st_size, st.st_mtime_ns) for rel, st in zip(files, stats, strict=True)),
        )

    def _write_zip(
        self, project: FakeProject, files: list[str], stats: list[os.stat_result], sink: io.IOBase
    ) -> None:
        """The version's zip as physionet builds it (``zip -q -X -9`` of the byte-sorted file list)."""
        label = project_zip_label(project)
        with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
            for rel, st in zip(files, stats, strict=True):
                date_time = max(time.localtime(st.st_mtime)[:6], (1980, 1, 1, 0, 0, 0))
                info = zipfile.ZipInfo(f"{label}/{rel}", date_time=date_time)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o444 << 16
                info.file_size = st.st_size
                with open(project.root / rel, "rb") as src, zf.open(info, "w") as dst:
                    for block in iter(lambda: src.read(1 << 20), b""):  # noqa: B023 - consumed at once
                        dst.write(block)

    def _zip_bytes(self, project: FakeProject) -> tuple[bytes, float]:
        """The zip itself (built in memory on the first get-zip request, then cached until a file changes)."""
        files, stats, signature = self._zip_signature(project)
        key = (project.slug, project.version)
        with self._state_lock:
            cached = self._zip_cache.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1], cached[2]
        buf = io.BytesIO()
        self._write_zip(project, files, stats, buf)
        data = buf.getvalue()
        mtime = max((st.st_mtime for st in stats), default=time.time())
        with self._state_lock:
            self._zip_cache[key] = (signature, data, mtime)
            self._zip_sizes[key] = (signature, len(data))
        return data, mtime

    def _zip_size(self, project: FakeProject) -> int:
        """``compressed_storage_size``: the zip's size, computed without keeping the zip in memory."""
        files, stats, signature = self._zip_signature(project)
        key = (project.slug, project.version)
        with self._state_lock:
            cached = self._zip_sizes.get(key)
        if cached is not None and cached[0] == signature:
            return cached[1]
        sink = _CountingSink()
        self._write_zip(project, files, stats, sink)
        with self._state_lock:
            self._zip_sizes[key] = (signature, sink.size)
        return sink.size

    def _api_summary(self, project: FakeProject) -> dict[str, object]:
        return {
            "slug": project.slug,
            "title": project.title,
            "version": project.version,
            "abstract": _abstract(project),
            "license": {"name": _LICENSES[project.access]},
            "dua": {"name": f"{project.title} DUA"} if project.access != "open" else None,
            "main_storage_size": self._main_storage_size(project),
            "compressed_storage_size": self._zip_size(project),
        }

    def _api_detail(self, project: FakeProject) -> dict[str, object]:
        published = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(self._published(project)))
        return {
            "slug": project.slug,
            "title": project.title,
            "version": project.version,
            "abstract": _abstract(project),
            "license": {"name": _LICENSES[project.access]},
            "short_description": project.title,
            "project_home_page": "",
            "publish_datetime": published,
            "doi": f"10.13026/fake-{project.slug}-{project.version}",
            "main_storage_size": self._main_storage_size(project),
            "compressed_storage_size": self._zip_size(project),
        }
