"""A fake HTTPS file tree with auto-index pages, as GEO (``ftp.ncbi.nlm.nih.gov``, Apache ``<pre>`` listing)
and Expression Atlas (``ftp.ebi.ac.uk``, Apache table listing) serve their FTP trees, or as nginx's
``autoindex`` does (docs/sources-protocols.md, "HTTPS directory crawl").

* ``style="apache-pre"``: ``<pre>`` rows ``<a href="name">name</a>   2019-01-09 11:53  123M`` (sizes rounded
  with K/M/G, exact below 1 KiB; ``-`` for folders), a "Parent Directory" link to the absolute parent path,
  sort links ``?C=N;O=D``;
* ``style="apache-table"``: the same in ``<table>`` rows (``<td><a href=...>``, size column ``1.2M``);
* ``style="nginx"``: as nginx's ``ngx_http_autoindex_handler`` writes it (``autoindex_exact_size`` on, its
  default): ``<hr><pre><a href="../">../</a>``, folders first, each row the link, the name padded to 50
  columns, ``dd-Mon-yyyy hh:mm`` and the exact byte count in 19 columns (``-`` for folders);
* a folder URL without its trailing ``/`` -> 301 to it; a missing path -> 404 (nginx/Apache error page);
* every page also links to another host (``https://www.ncbi.nlm.nih.gov/geo/``), which a crawler must ignore;
* files: the bytes (nginx ETag, Range, the shared faults).  ``root`` is the URL path the tree hangs under.
"""

from __future__ import annotations

import html
import time
from typing import Literal
from urllib.parse import quote

from climb_cli.fakes.faults import (
    BaseFakeHandler,
    FakeHTTPServer,
    FaultPlan,
    nginx_error_page,
    nginx_etag,
)
from tests.fakes.bucket import TLSServerMixin, serve_file

__all__ = ["FakeDirIndex"]

Style = Literal["apache-pre", "apache-table", "nginx"]


def _human(n: int) -> str:
    """Apache's rounded size column."""
    if n < 1024:
        return str(n)
    for unit in ("K", "M", "G", "T"):
        n_f = n / 1024
        if n_f < 1024 or unit == "T":
            return f"{n_f:.1f}{unit}" if n_f < 10 else f"{n_f:.0f}{unit}"
        n = int(n_f)
    return str(n)


class _Handler(BaseFakeHandler):
    fake: FakeDirIndex

    @property
    def server_header(self) -> str:  # type: ignore[override]
        return "nginx/1.22.1" if self.fake.style == "nginx" else "Apache"

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self.respond(405, nginx_error_page(405))
            return
        root = self.fake.root
        path = self.url_path
        if not path.startswith(root):
            self.respond(404, nginx_error_page(404))
            return
        rel = path[len(root) :]
        files = self.fake.files
        if rel in files:
            data = files[rel]
            serve_file(
                self,
                data,
                content_type="application/octet-stream",
                mtime=self.fake.mtime,
                etag=nginx_etag(self.fake.mtime, len(data)),
                extra_headers=[],
                fault=self.file_fault(path),
            )
            return
        folder = rel.rstrip("/")
        prefix = f"{folder}/" if folder else ""
        if folder and not any(k.startswith(prefix) for k in files):
            self.respond(404, nginx_error_page(404))
            return
        if rel and not rel.endswith("/"):
            self.respond(301, nginx_error_page(301), headers=[("Location", f"{path}/")])
            return
        self.respond(200, self.fake.index_page(path, prefix).encode())


class FakeDirIndex(TLSServerMixin, FakeHTTPServer):
    handler_class = _Handler

    def __init__(
        self,
        files: dict[str, bytes],
        *,
        style: Style = "apache-pre",
        root: str = "/geo/series/GSE152nnn/GSE152075/",
        host: str = "127.0.0.1",
        port: int = 0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, faults=faults)
        self.files = files
        self.style: Style = style
        self.root = root
        self.mtime = time.time() - 86400

    @property
    def url(self) -> str:
        return f"{self.base_url}{self.root}"

    def _entries(self, prefix: str) -> list[tuple[str, int | None]]:
        """(name, size) of the folder's children; size None for a subfolder."""
        out: dict[str, int | None] = {}
        for k, v in self.files.items():
            if k.startswith(prefix):
                head, sep, _ = k[len(prefix) :].partition("/")
                out[head + "/" if sep else head] = None if sep else len(v)
        return sorted(out.items())

    def index_page(self, path: str, prefix: str) -> str:
        title = f"Index of {html.escape(path)}"
        entries = self._entries(prefix)
        if self.style == "nginx":
            return self._nginx(title, entries)
        parent = path.rstrip("/").rpartition("/")[0] + "/"
        if self.style == "apache-table":
            return self._apache_table(title, parent, entries)
        return self._apache_pre(title, parent, entries)

    def _nginx(self, title: str, entries: list[tuple[str, int | None]]) -> str:
        """ngx_http_autoindex_module's html: folders first, names padded to 50, exact sizes in 19 columns."""
        date = time.strftime("%d-%b-%Y %H:%M", time.gmtime(self.mtime))
        rows = ['<a href="../">../</a>']
        for name, size in sorted(entries, key=lambda e: (e[1] is not None, e[0])):
            shown = html.escape(name if len(name) <= 50 else name[:47] + "..&gt;")
            pad = " " * max(0, 50 - len(name))
            size_col = str(size) if size is not None else "-"
            rows.append(f'<a href="{quote(name)}">{shown}</a>{pad} {date} {size_col:>19}')
        head = f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<h1>{title}</h1>"
        return head + "<hr><pre>" + "\r\n".join(rows) + "\r\n</pre><hr></body>\r\n</html>\r\n"

    def _apache_head(self, title: str) -> str:
        return (
            '<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">\n<html>\n <head>\n'
            f"  <title>{title}</title>\n </head>\n <body>\n<h1>{title}</h1>\n"
        )

    def _apache_table(self, title: str, parent: str, entries: list[tuple[str, int | None]]) -> str:
        date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.mtime))
        sort = "".join(
            f'<th><a href="?C={c};O={o}">{label}</a></th>'
            for c, o, label in (("N", "D", "Name"), ("M", "A", "Last modified"), ("S", "A", "Size"))
        )
        rows = [
            '<tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th>'
            f"{sort}<th>Description</th></tr>",
            '<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td>'
            f'<td><a href="{parent}">Parent Directory</a></td><td>&nbsp;</td>'
            '<td align="right">  - </td><td>&nbsp;</td></tr>',
        ]
        for name, size in entries:
            shown = _human(size) if size is not None else "-"
            rows.append(
                '<tr><td valign="top"><img src="/icons/unknown.gif" alt="[   ]"></td>'
                f'<td><a href="{quote(name)}">{html.escape(name)}</a></td><td align="right">{date}  </td>'
                f'<td align="right">{shown:>5}</td><td>&nbsp;</td></tr>'
            )
        table = "<table>\n" + "\n".join(rows) + "\n</table>"
        tail = '<address>See also <a href="https://www.ebi.ac.uk/gxa/">Expression Atlas</a></address>\n'
        return self._apache_head(title) + table + "\n" + tail + "</body></html>\n"

    def _apache_pre(self, title: str, parent: str, entries: list[tuple[str, int | None]]) -> str:
        date = time.strftime("%Y-%m-%d %H:%M", time.gmtime(self.mtime))
        rows = [
            '<img src="/icons/blank.gif" alt="Icon "> <a href="?C=N;O=D">Name</a>                    '
            '<a href="?C=M;O=A">Last modified</a>      <a href="?C=S;O=A">Size</a>  <hr>',
            f'<img src="/icons/back.gif" alt="[PARENTDIR]"> <a href="{parent}">Parent Directory</a>'
            + " " * 29
            + "-   ",
        ]
        for name, size in entries:
            shown = _human(size) if size is not None else "-"
            pad = " " * max(1, 40 - len(name))
            link = f'<a href="{quote(name)}">{html.escape(name)}</a>'
            rows.append(f'<img src="/icons/unknown.gif" alt="[   ]"> {link}{pad}{date}  {shown:>4}  ')
        tail = '<p>See <a href="https://www.ncbi.nlm.nih.gov/geo/">GEO</a></p>\n'
        return (
            self._apache_head(title)
            + "<pre>"
            + "\n".join(rows)
            + "\n<hr></pre>\n"
            + tail
            + "</body></html>\n"
        )
