"""HTTPS directory trees (`kind: crawl`): every file under a directory URL that the recipe's include/exclude
globs select, found by reading the server's index pages -- no hand-listed URLs::

    - kind: crawl
      url: https://ftp.ncbi.nlm.nih.gov/geo/series/GSE152nnn/GSE152075/suppl/
      include: ["*_RAW.tar", "*.txt.gz"]
      sums: md5sum.txt        # optional: a sums file in the tree ("<md5|sha256>  <path>" lines)
      sha256: {GSE152075_RAW.tar: <hex>}   # optional pins, by path
      max_depth: 4            # folders below url that may be visited (default 5)
      max_files: 20000        # a bigger tree is an error, not a surprise (default 10000)

GEO and Expression Atlas serve their FTP trees over HTTPS as Apache or nginx auto-index pages
(docs/sources-protocols.md, "HTTPS directory crawl"). A page's links are kept when they resolve to a place
below ``url`` on the same origin; ``../``, sort links (``?C=N;O=D``), absolute paths and other hosts are
ignored; a link ending in ``/`` is a folder, visited only if an include glob could match something below it
(so ``include: ["suppl/*.tar"]`` never walks the rest of the tree). The size column is used when it is an
exact byte count (nginx's default, Apache under 1 KiB), never when it is rounded (``1.2M``).

A new kind rather than a third mode of ``http``: its listing (recursion, pruning, a size cap, a sums file)
and its params are its own, while the bytes go through the same helpers (``fetch``, the HTML-page check,
S3-style ``Content-MD5``/ETag sums) as ``http``. Sums: the sums file, the recipe's pins, or ``checksums:
pinned``; an index page lists none.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
from pydantic import Field, field_validator

from climb_cli import redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.sources.base import (
    AccessReport,
    RemoteFile,
    Source,
    SourceParams,
    _glob_regex,
    nothing_selected,
    safe_relpath,
    selected,
)
from climb_cli.sources.http import (
    api_get,
    md5_from_headers,
    open_checked,
    paths_from_listing,
    probe_access,
    save_listing,
    selected_from_listing,
    unpinned_line,
)

_HEX = re.compile(r"^(?:[0-9a-fA-F]{32}|[0-9a-fA-F]{64})$")


class CrawlParams(SourceParams):
    url: str = Field(pattern=r"^https?://[^?#]+/$", description="the directory URL (ends with /)")
    sums: str | None = Field(None, description="a sums file in the tree: '<md5|sha256>  <path>' lines")
    sha256: dict[str, str] = Field(default_factory=dict, description="optional pins, by relative path")
    max_depth: int = Field(5, ge=0, le=50, description="folders below url that may be visited")
    max_files: int = Field(10_000, ge=1, description="more files than this in the tree is an error")

    @field_validator("sha256")
    @classmethod
    def _hex(cls, v: dict[str, str]) -> dict[str, str]:
        for path, digest in v.items():
            if not re.match(r"^[0-9a-fA-F]{64}$", digest):
                raise ValueError(f"sha256[{path!r}] is not a sha256")
        return v


class _Index(HTMLParser):
    """Links of an auto-index page, with the text that follows each one (where the size column is)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[tuple[str, str]] = []  # (href, text after the link up to the next tag-line)
        self._href: str | None = None
        self._after: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._close()
            self._href = dict(attrs).get("href")
        elif tag == "tr":
            self._close()

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._after.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._close()

    def _close(self) -> None:
        if self._href is not None:
            self.links.append((self._href, "".join(self._after)))
        self._href, self._after = None, []

    def close(self) -> None:
        super().close()
        self._close()


def _size(after_link: str) -> int | None:
    """The exact byte count of an index row (link text, date, time, size), if its size column holds one."""
    tokens = after_link.split()
    if not tokens:
        return None
    last = tokens[-1]
    return int(last) if last.isdigit() and len(tokens) >= 2 else None


def _could_contain(folder: str, pattern: str) -> bool:
    """Whether a path below ``folder`` (``a/b``, no trailing slash) could match the include glob."""
    if pattern.endswith("/"):
        pattern += "**"
    psegs, dsegs = pattern.split("/"), folder.split("/")
    for i, d in enumerate(dsegs):
        if i >= len(psegs):
            return False
        if psegs[i].startswith("**"):
            return True
        if not _glob_regex(psegs[i]).match(d):
            return False
    return len(psegs) > len(dsegs)


class CrawlSource(Source):
    kind = "crawl"
    Params = CrawlParams
    params: CrawlParams

    def describe(self) -> str:
        return f"crawl {redaction.redact_url(self.params.url)}"

    def _identity(self) -> dict[str, Any]:
        return {"url": self.params.url, "max_depth": self.params.max_depth}

    def _wanted(self, folder: str) -> bool:
        if not self.spec.include:
            return True
        extra = [self.params.sums] if self.params.sums else []
        return any(_could_contain(folder, p) for p in [*self.spec.include, *extra])

    # -- listing --------------------------------------------------------------------------------
    def _page(self, url: str) -> list[tuple[str, str]]:
        resp = api_get(self, url, headers={"Accept": "text/html"})
        if resp.status_code in (401, 403, 404, 410):
            raise AccessError(
                f"{self.recipe.name}: {redaction.redact_url(url)} refused its index "
                f"(HTTP {resp.status_code}); check `url:` in the recipe"
            )
        if resp.status_code != 200:
            raise TransferError(
                f"{self.recipe.name}: {redaction.redact_url(url)} answered HTTP {resp.status_code}; try later"
            )
        if "html" not in resp.headers.get("Content-Type", ""):
            raise RecipeError(
                f"{self.recipe.name}: {redaction.redact_url(url)} is not a directory index (Content-Type "
                f"{resp.headers.get('Content-Type', '?')}); give a folder URL ending in /"
            )
        parser = _Index()
        parser.feed(resp.text)
        parser.close()
        return parser.links

    def _crawl(self) -> list[RemoteFile]:
        base = self.params.url
        b = urlsplit(base)
        out: dict[str, RemoteFile] = {}
        todo, seen = [(base, 0)], {base}
        while todo:
            page_url, depth = todo.pop(0)
            for href, after in self._page(page_url):
                if not href or href.startswith(("?", "#", "mailto:", "javascript:")):
                    continue
                url = urljoin(page_url, href).split("#", 1)[0]
                u = urlsplit(url)
                if u.query or (u.scheme, u.netloc) != (b.scheme, b.netloc) or not u.path.startswith(b.path):
                    continue  # parent folder, sort link, another host: not part of the tree
                rel = unquote(u.path[len(b.path) :])
                if not rel:
                    continue
                if rel.endswith("/"):
                    folder = rel.rstrip("/")
                    if (
                        url not in seen
                        and depth < self.params.max_depth
                        and safe_relpath(folder)
                        and (self._wanted(folder))
                    ):
                        seen.add(url)
                        todo.append((url, depth + 1))
                    continue
                path = safe_relpath(rel)
                if path is None:
                    continue
                out[path] = RemoteFile(path, url, _size(after))
                if len(out) > self.params.max_files:
                    raise RecipeError(
                        f"{self.recipe.name}: {redaction.redact_url(base)} holds more than "
                        f"{self.params.max_files} files; narrow `include:` or raise `max_files:`"
                    )
        return [out[k] for k in sorted(out)]

    def _with_sums(self, files: list[RemoteFile]) -> list[RemoteFile]:
        sums: dict[str, str] = {}
        if self.params.sums:
            entry = next((f for f in files if f.path == self.params.sums), None)
            if entry is None:
                raise RecipeError(
                    f"{self.recipe.name}: the sums file {self.params.sums!r} is not in "
                    f"{redaction.redact_url(self.params.url)}"
                )
            resp = api_get(self, entry.url)
            if resp.status_code != 200:
                raise TransferError(
                    f"{self.recipe.name}: cannot read {self.params.sums} (HTTP {resp.status_code})"
                )
            folder = self.params.sums.rpartition("/")[0]
            for line in resp.text.splitlines():
                digest, _, name = line.strip().partition(" ")
                name = name.strip().lstrip("*").removeprefix("./")
                if _HEX.match(digest) and name:
                    sums[f"{folder}/{name}" if folder else name] = digest.lower()
        out = []
        for f in files:
            listed = sums.get(f.path)
            pin = self.params.sha256.get(f.path)
            sha256 = (pin or (listed if listed and len(listed) == 64 else None) or "").lower() or None
            md5 = listed if listed and len(listed) == 32 else None
            out.append(RemoteFile(f.path, f.url, f.size, sha256, md5))
        return out

    def list_files(self) -> list[RemoteFile]:
        files = self._with_sums(self._crawl())
        save_listing(self, self._identity(), files)
        chosen = [f for f in files if selected(f.path, self.spec)]
        if not chosen:
            raise RecipeError(nothing_selected(self))
        unpinned = [f.path for f in chosen if not (f.sha256 or f.md5)]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return chosen

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def refused(status: int, where: str) -> AccessError:
            what = "not found" if status in (404, 410) else "refused"
            return AccessError(
                f"{self.recipe.name}: {where} {what} (HTTP {status}); the tree may have changed since it "
                "was listed"
            )

        return open_checked(self, file, headers, refused)

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        s3 = "x-amz-request-id" in resp.headers or resp.headers.get("Server", "").startswith("AmazonS3")
        md5 = md5_from_headers(resp, trust_etag=s3)
        return RemoteFile(file.path, file.url, file.size, file.sha256, md5) if md5 else file

    def check_access(self) -> AccessReport:
        return probe_access(
            self, lambda files: f"{len(files)} file(s) found, no login", "check the recipe's url/include"
        )
