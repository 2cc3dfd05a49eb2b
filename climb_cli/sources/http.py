"""Plain HTTPS files and anonymous S3-style buckets (`kind: http`), plus the helpers that the Zenodo,
GitHub and Hugging Face sources share.

A recipe either lists URLs with their pinned sums::

    - kind: http
      files:
        - url: https://isic-challenge-data.s3.amazonaws.com/2018/ISIC2018_Task3_Training_GroundTruth.zip
          sha256: 0123...
          size: 35000          # optional; checked when given

or names a public bucket prefix, listed with S3's ListObjectsV2 (the XML API that AWS S3, GCS's XML API
and most S3 clones answer anonymously), e.g. an IDC series::

    - kind: http
      bucket: {url: https://idc-open-data.s3.amazonaws.com, prefix: 5f7e.../}

Sums: a file's pinned sha256 (or md5); for a bucket, the object's ETag when it is a plain MD5 (a multipart
ETag, ``"<hex>-<n>"``, is not). A file with no sum at all is accepted only under ``checksums: pinned``,
where the first trusted download pins it in the recipe's lock file. A server that answers an HTML page in
place of data (a login wall, an expired cache link, an error page with status 200) is a clean one-line
failure, not a corrupt file.

Shared helpers (used by zenodo.py, github.py, huggingface.py): :func:`fetch` follows redirects by hand
and sends credentials only to the origin they belong to; :func:`api_get` retries API documents on
429/5xx honouring ``Retry-After``, ``X-RateLimit-Reset`` and the IETF ``RateLimit`` header; a
:class:`RateBudget` paces requests to the ``X-RateLimit-Remaining`` a service reports; :func:`save_listing`
/ :func:`load_listing` keep an API listing under ``raw/<dataset>/.climb/`` so that ``climb verify`` works
offline.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit

import requests
from pydantic import Field, model_validator

from climb_cli import atomic, credentials, redaction
from climb_cli.archives import ArchiveOptions
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net import retry
from climb_cli.net.retry import MAX_WAIT, RETRY_STATUS, RetryPolicy, retry_after_seconds
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected

REDIRECTS = (301, 302, 303, 307, 308)
MAX_HINTED_WAIT = MAX_WAIT  # a server asking for a longer pause gets a failure line instead of a silent hang
_HEX64 = r"^[0-9a-fA-F]{64}$"
_HEX32 = r"^[0-9a-fA-F]{32}$"
_RATELIMIT_T = re.compile(r"(?:^|;)\s*t=(\d+)")
_RATELIMIT_R = re.compile(r"(?:^|;)\s*r=(\d+)")
_HTML_TYPES = ("text/html", "application/xhtml+xml")


# ---------------------------------------------------------------------------------------------
# Shared helpers


class HeaderAuth(requests.auth.AuthBase):
    """Credential headers of any name (``Authorization``, NSRR's ``token``, ``Cookie``, an API-key header) as
    requests ``auth``: the session applies ``auth`` on its first origin only, on every redirect hop, whereas
    it binds only ``Authorization``/``Cookie`` among plain headers."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.headers = dict(headers)

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers.update(self.headers)
        return r

    def __repr__(self) -> str:  # never show the values
        return f"HeaderAuth({sorted(self.headers)})"


def fetch(
    source: Source,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    auth: dict[str, str] | None = None,
    method: str = "GET",
    stream: bool = True,
    follow: bool = True,
) -> requests.Response:
    """One request through the source's session: ``auth`` headers, whatever their names, go only to the first
    URL's origin (the session binds them on every redirect hop): a token for an API never reaches a CDN or an
    object store."""
    try:
        return source.session().request(
            method, url, headers=headers, auth=HeaderAuth(auth) if auth else None, stream=stream,
            timeout=source.timeout, allow_redirects=follow,
        )  # fmt: skip
    except requests.TooManyRedirects:
        raise TransferError(
            f"{source.recipe.name}: too many redirects from {redaction.redact_url(url)}"
        ) from None


def wait_hint(resp: requests.Response) -> float | None:
    """Seconds the server asks us to wait: Retry-After (seconds or date), else X-RateLimit-Reset (epoch) when
    the budget is spent, else the IETF draft ``RateLimit: "api";r=0;t=55`` (Hugging Face)."""
    ra = retry_after_seconds(resp.headers.get("Retry-After"))
    if ra is not None:
        return ra
    reset, remaining = resp.headers.get("X-RateLimit-Reset", ""), resp.headers.get("X-RateLimit-Remaining")
    if reset.isdigit() and remaining in (None, "0"):
        return max(0.0, int(reset) - time.time())
    m = _RATELIMIT_T.search(resp.headers.get("RateLimit", ""))
    return float(m.group(1)) if m else None


class RateBudget:
    """The request budget a service reports (X-RateLimit-Limit/Remaining/Reset, or RateLimit r=/t=), shared by
    a source's threads: when it is spent, ``wait()`` sleeps until the window resets instead of spending a
    request on a sure 429. Each ``wait()`` counts one request against the budget."""

    def __init__(self, max_wait: float = MAX_HINTED_WAIT) -> None:
        self.max_wait = max_wait
        self._lock = threading.Lock()
        self._limit: int | None = None
        self._remaining: int | None = None
        self._reset_at: float | None = None

    def update(self, resp: requests.Response) -> None:
        h = resp.headers
        remaining, reset_at = h.get("X-RateLimit-Remaining", ""), None
        if h.get("X-RateLimit-Reset", "").isdigit():
            reset_at = float(h["X-RateLimit-Reset"])
        elif (m := _RATELIMIT_T.search(h.get("RateLimit", ""))) is not None:
            reset_at = time.time() + float(m.group(1))
            r = _RATELIMIT_R.search(h.get("RateLimit", ""))
            remaining = r.group(1) if r else ""
        if not remaining.isdigit():
            return
        with self._lock:
            if h.get("X-RateLimit-Limit", "").isdigit():
                self._limit = int(h["X-RateLimit-Limit"])
            same_window = (
                reset_at is not None and self._reset_at is not None and abs(reset_at - self._reset_at) < 1
            )
            if same_window and self._remaining is not None:
                # answers to requests sent earlier arrive late: keep the lower count
                self._remaining = min(self._remaining, int(remaining))
            else:
                self._remaining = int(remaining)
            self._reset_at = reset_at

    def wait(self, what: str = "API") -> float:
        """Count one request; first sleep until the window resets if none is left (said on the ``climb.net``
        logger, as every retry wait is). Returns the pause."""
        slept = 0.0
        while True:
            with self._lock:
                now = time.time()
                if self._reset_at is not None and now >= self._reset_at:
                    self._remaining, self._reset_at = self._limit, None  # a new window: the full budget
                if self._remaining is None or self._remaining > 0:
                    if self._remaining is not None:
                        self._remaining -= 1
                    return slept
                if self._reset_at is None:
                    return slept  # spent, and no idea when it resets: let the server say (429 + Retry-After)
                delay = self._reset_at - now + 0.05
            if delay > self.max_wait:
                return slept
            retry.log.warning(
                "%s: rate limit spent; next request in %.1fs, when the window resets", what, delay
            )
            time.sleep(delay)
            slept += delay


def api_get(
    source: Source,
    url: str,
    *,
    headers: dict[str, str] | None = None,
    auth: dict[str, str] | None = None,
    budget: RateBudget | None = None,
    follow: bool = True,
    stream: bool = False,
) -> requests.Response:
    """GET an API document (not streamed unless asked) under the one retry policy (net.retry): connection
    errors, 429/5xx and GitHub's 403 rate-limit answers, honouring the server's wait hints. Returns the last
    response whatever its status (the caller turns refusals into one line); raises TransferError when the host
    cannot be reached."""

    def once() -> requests.Response:
        if budget is not None:
            budget.wait(f"{source.recipe.name}: {urlsplit(url).netloc}")
        resp = fetch(source, url, headers=headers, auth=auth, stream=stream, follow=follow)
        if budget is not None:
            budget.update(resp)
        return resp

    def limited(resp: requests.Response) -> bool:
        return resp.status_code in RETRY_STATUS or (
            resp.status_code == 403 and resp.headers.get("X-RateLimit-Remaining") == "0"
        )

    policy = RetryPolicy.from_settings(source.settings, max_wait=MAX_HINTED_WAIT)
    try:
        return retry.send(policy, once, f"{source.recipe.name}: {redaction.redact_url(url)}",
                          retry_if=limited, hint=wait_hint)  # fmt: skip
    except (requests.ConnectionError, requests.Timeout) as e:
        raise TransferError(
            f"{source.recipe.name}: cannot reach {redaction.redact_url(url)} ({type(e).__name__})"
        ) from None


def rate_limit_line(source: Source, service: str, resp: requests.Response, advice: str) -> str:
    """One line for a rate limit that outlasted the retries."""
    hint = wait_hint(resp)
    when = f" for another {int(hint)} s" if hint else ""
    return f"{source.recipe.name}: {service} rate limit reached (HTTP {resp.status_code}){when}; {advice}"


def error_body(resp: requests.Response, limit: int = 65536) -> bytes:
    """The first bytes of an error response's body (they are small; never read a whole stream), then close."""
    try:
        return resp.raw.read(limit, decode_content=True) if resp.raw is not None else resp.content[:limit]
    except Exception:  # noqa: BLE001 - a best-effort read of an error page: any failure means "no body"
        return b""
    finally:
        resp.close()


def json_or_none(resp: requests.Response) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def is_html_page(path: str, resp: requests.Response, expected_type: str | None = None) -> bool:
    """True when a 2xx response is an HTML page but the file is not one (expected by type or extension)."""
    ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
    if ctype not in _HTML_TYPES:
        return False
    if expected_type:
        return expected_type.split(";")[0].strip().lower() not in _HTML_TYPES
    return not path.lower().endswith((".html", ".htm", ".xhtml"))


def html_failure(source: Source, file: RemoteFile, resp: requests.Response) -> TransferError:
    return TransferError(
        f"{source.recipe.name}: {redaction.redact_url(resp.url or file.url)} answered an HTML page "
        f"(HTTP {resp.status_code}, {resp.headers.get('Content-Type', '')}) instead of {file.path}: "
        "the link may need a login or a click-through, or may have moved"
    )


def open_checked(
    source: Source,
    file: RemoteFile,
    headers: dict[str, str],
    refused: Callable[[int, str], Exception],
    *,
    url: str | None = None,
    auth: dict[str, str] | None = None,
) -> requests.Response:
    """``fetch`` a file's bytes (``url`` when it differs from ``file.url``) and :func:`checked` the answer."""
    return checked(source, file, fetch(source, url or file.url, headers=headers, auth=auth), refused)


def checked(
    source: Source, file: RemoteFile, resp: requests.Response, refused: Callable[[int, str], Exception]
) -> requests.Response:
    """A byte host's answer for ``file``: a 401/403/404/410 becomes ``refused(status, url without
    secrets)``, an HTML page in place of the file a one-line failure; any other answer is returned for the
    engine (2xx, 416, 429, 5xx)."""
    if resp.status_code in (401, 403, 404, 410):
        status, where = resp.status_code, redaction.redact_url(resp.url or file.url)
        error_body(resp)
        raise refused(status, where)
    if resp.status_code in (200, 206) and is_html_page(file.path, resp):
        resp.close()
        raise html_failure(source, file, resp)
    return resp


def probe_access(
    source: Source,
    ok: Callable[[list[RemoteFile]], str],
    next_step: str = "",
    probe: Callable[[list[RemoteFile]], None] | None = None,
) -> AccessReport:
    """``climb auth check`` for a listed source: list, then read one byte of the first file (or run
    ``probe``), without downloading data; a refusal is a report with ``next_step``, never an exception."""
    name, sid = source.recipe.name, source.spec.id
    try:
        files = source.list_files()
        if probe is not None:
            probe(files)
        elif files:
            source.open(files[0], {"Range": "bytes=0-0"}).close()
    except AccessError as e:
        return AccessReport(name, sid, False, str(e), next_step)
    except (TransferError, RecipeError) as e:
        return AccessReport(name, sid, False, str(e))
    except requests.RequestException as e:
        return AccessReport(name, sid, False, f"network error: {type(e).__name__}")
    return AccessReport(name, sid, True, ok(files))


def listing_path(source: Source) -> Path:
    return source.settings.raw_dir(source.recipe.name) / ".climb" / f"listing-{source.spec.id}.json"


def save_listing(
    source: Source, identity: dict[str, Any], files: list[RemoteFile], extra: dict[str, Any] | None = None
) -> None:
    """Store what upstream listed (all files, not only the selected ones) and any source-specific ``extra``
    facts, atomically."""
    path = listing_path(source)
    path.parent.mkdir(parents=True, exist_ok=True)
    body = {
        "kind": source.kind,
        "identity": identity,
        "files": [{k: v for k, v in asdict(f).items() if v is not None} for f in files],
        "extra": extra or {},
    }
    atomic.write_json(path, body, indent=1, sort_keys=True)


def _stored_body(source: Source, identity: dict[str, Any]) -> dict[str, Any] | None:
    try:
        body = json.loads(listing_path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(body, dict) or body.get("kind") != source.kind or body.get("identity") != identity:
        return None
    return body


def load_listing(source: Source, identity: dict[str, Any]) -> list[RemoteFile] | None:
    """The stored listing, or None when there is none or it belongs to another record/revision/prefix."""
    body = _stored_body(source, identity)
    if body is None:
        return None
    try:
        return [RemoteFile(**f) for f in body.get("files", [])]
    except TypeError:
        return None


def load_listing_extra(source: Source, identity: dict[str, Any]) -> dict[str, Any]:
    """The ``extra`` facts stored with the listing ({} when none)."""
    body = _stored_body(source, identity)
    extra = body.get("extra") if body else None
    return extra if isinstance(extra, dict) else {}


def selected_from_listing(source: Source, identity: dict[str, Any]) -> list[RemoteFile] | None:
    """The stored listing's files that the source's include/exclude globs select (None: no listing)."""
    files = load_listing(source, identity)
    return None if files is None else [f for f in files if selected(f.path, source.spec)]


def paths_from_listing(source: Source, identity: dict[str, Any]) -> set[str] | None:
    """Every upstream path in the stored listing (None: no listing)."""
    files = load_listing(source, identity)
    return None if files is None else {f.path for f in files}


def bearer_auth(token: credentials.Token | None) -> dict[str, str] | None:
    """``Authorization: Bearer`` for ``fetch``/``api_get``'s ``auth`` (sent to the first origin only)."""
    return {"Authorization": f"Bearer {token.value}"} if token else None


def md5_from_headers(resp: requests.Response, *, trust_etag: bool) -> str | None:
    """An MD5 the response carries: x-goog-hash md5= (base64), Content-MD5 (base64, or hex as Zenodo
    sends), or an S3 single-part ETag when ``trust_etag``."""
    h = resp.headers
    for part in h.get("x-goog-hash", "").split(","):
        name, _, value = part.strip().partition("=")
        if name == "md5":
            return _b64_hex(value)
    cmd5 = h.get("Content-MD5", "").strip()
    if re.match(_HEX32, cmd5):
        return cmd5.lower()
    if cmd5:
        got = _b64_hex(cmd5)
        if got:
            return got
    etag = h.get("ETag", "").strip().strip('"')
    if trust_etag and re.match(_HEX32, etag):
        return etag.lower()
    return None


def _b64_hex(value: str) -> str | None:
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


def list_s3(source: Source, base: str, prefix: str) -> list[tuple[str, int | None, str | None]]:
    """Every object under ``prefix`` of an anonymous S3-style bucket (``base`` = its path-style or
    virtual-host URL), through ListObjectsV2 pages: (key, size, md5 when the ETag is a plain MD5, not a
    multipart one)."""
    out: list[tuple[str, int | None, str | None]] = []
    token = None
    while True:
        q = {"list-type": "2", "prefix": prefix}
        if token:
            q["continuation-token"] = token
        url = f"{base}/?{urlencode(q)}"
        resp = api_get(source, url)
        if resp.status_code in (401, 403, 404):
            code = _s3_code(resp.content)
            raise AccessError(
                f"{source.recipe.name}: the bucket {redaction.redact_url(base)} refused to list "
                f"{prefix or '/'} ({code or f'HTTP {resp.status_code}'}); it may not be public, or the "
                "recipe's bucket URL/prefix is wrong"
            )
        if resp.status_code != 200:
            raise TransferError(
                f"{source.recipe.name}: listing {redaction.redact_url(url)} failed (HTTP {resp.status_code})"
            )
        try:
            root = ET.fromstring(resp.content)
        except ET.ParseError:
            raise TransferError(
                f"{source.recipe.name}: {redaction.redact_url(url)} is not an S3 ListObjectsV2 answer"
            ) from None
        for el in root:
            if _local(el.tag) != "Contents":
                continue
            fields = {_local(c.tag): (c.text or "") for c in el}
            etag = fields.get("ETag", "").strip().strip('"')
            md5 = etag.lower() if re.match(_HEX32, etag) else None
            size = int(fields["Size"]) if fields.get("Size", "").isdigit() else None
            out.append((fields.get("Key", ""), size, md5))
        truncated = (root.findtext(_ns(root, "IsTruncated")) or "").strip() == "true"
        token = (root.findtext(_ns(root, "NextContinuationToken")) or "").strip()
        if not truncated:
            return out
        if not token:
            raise TransferError(f"{source.recipe.name}: a truncated listing without NextContinuationToken")


def unpinned_line(source: Source, paths: list[str]) -> str:
    first = paths[0]
    more = f" (and {len(paths) - 1} more)" if len(paths) > 1 else ""
    return (
        f"{source.recipe.name}: no checksum for {first}{more} in source {source.spec.id!r}: pin its sha256 "
        "in the recipe, or set `checksums: pinned` to pin it on the first download"
    )


# ---------------------------------------------------------------------------------------------
# kind: http


class HttpFile(SourceParams):
    url: str = Field(pattern=r"^https?://", description="where the file is (https in practice)")
    path: str | None = Field(None, description="where it goes under the source folder (default: URL's name)")
    sha256: str | None = Field(None, pattern=_HEX64)
    md5: str | None = Field(None, pattern=_HEX32)
    size: int | None = Field(None, ge=0)
    content_type: str | None = Field(None, description="expected type; text/html here allows an HTML page")

    @property
    def dest(self) -> str:
        return self.path or unquote(PurePosixPath(urlsplit(self.url).path).name)


class HttpBucket(SourceParams):
    url: str = Field(pattern=r"^https?://", description="bucket endpoint, virtual-host or path style")
    prefix: str = Field("", description="key prefix to list; paths are relative to it")
    sha256: dict[str, str] = Field(default_factory=dict, description="optional pins, by relative path")


class HttpParams(ArchiveOptions):
    files: list[HttpFile] = Field(default_factory=list)
    bucket: HttpBucket | None = None

    @model_validator(mode="after")
    def _one_way(self) -> HttpParams:
        if bool(self.files) == (self.bucket is not None):
            raise ValueError("give exactly one of 'files' (a list of URLs) or 'bucket' (url + prefix)")
        seen: set[str] = set()
        for f in self.files:
            dest = f.dest
            if safe_relpath(dest) is None:
                raise ValueError(f"unsafe or empty path {dest!r} for {f.url} (give 'path')")
            if dest in seen:
                raise ValueError(f"two files go to {dest!r}")
            seen.add(dest)
        if self.bucket is not None:
            for p, digest in self.bucket.sha256.items():
                if not re.match(_HEX64, digest):
                    raise ValueError(f"bucket.sha256[{p!r}] is not a sha256")
        return self


class HttpSource(Source):
    """Files at fixed URLs, or every object under a public bucket prefix."""

    kind = "http"
    Params = HttpParams
    params: HttpParams

    def describe(self) -> str:
        if self.params.bucket is not None:
            return f"http bucket {redaction.redact_url(self.params.bucket.url)}/{self.params.bucket.prefix}"
        return f"http ({len(self.params.files)} file(s))"

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        b = self.params.bucket
        return {"url": b.url, "prefix": b.prefix} if b is not None else {}

    def _from_recipe(self) -> list[RemoteFile]:
        return [RemoteFile(f.dest, f.url, f.size, f.sha256 and f.sha256.lower(), f.md5 and f.md5.lower())
                for f in self.params.files]  # fmt: skip

    def _bucket_base(self) -> str:
        assert self.params.bucket is not None
        return self.params.bucket.url.rstrip("/")

    def _list_bucket(self) -> list[RemoteFile]:
        b = self.params.bucket
        assert b is not None
        base, out = self._bucket_base(), []
        for key, size, md5 in list_s3(self, base, b.prefix):
            rel = safe_relpath(key[len(b.prefix) :]) if key.startswith(b.prefix) else None
            if rel is None or key.endswith("/"):
                continue  # folder markers, odd keys
            pin = b.sha256.get(rel)
            out.append(RemoteFile(rel, f"{base}/{quote(key)}", size, pin and pin.lower(), md5))
        return out

    def _check_policy(self, files: list[RemoteFile]) -> list[RemoteFile]:
        unpinned = [f.path for f in files if not (f.sha256 or f.md5)]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return files

    def list_files(self) -> list[RemoteFile]:
        if self.params.bucket is None:
            return self._check_policy(self._from_recipe())
        files = self._list_bucket()
        save_listing(self, self._identity(), files)
        return self._check_policy([f for f in files if selected(f.path, self.spec)])

    def expected_files(self) -> list[RemoteFile] | None:
        if self.params.bucket is None:
            return self._from_recipe()
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        if self.params.bucket is None:
            return {f.path for f in self._from_recipe()}
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def _expected_type(self, file: RemoteFile) -> str | None:
        for f in self.params.files:
            if f.url == file.url:
                return f.content_type
        return None

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        resp = fetch(self, file.url, headers=headers)
        if resp.status_code in (401, 403, 404, 410):
            body = error_body(resp)
            code = _s3_code(body) if "xml" in resp.headers.get("Content-Type", "") else None
            what = "not found" if resp.status_code in (404, 410) else "refused"
            raise AccessError(
                f"{self.recipe.name}: {redaction.redact_url(resp.url or file.url)} {what} "
                f"({code or f'HTTP {resp.status_code}'}); check the URL in the recipe, or whether the file "
                "still is public"
            )
        if resp.status_code in (200, 206) and is_html_page(file.path, resp, self._expected_type(file)):
            resp.close()
            raise html_failure(self, file, resp)
        return resp

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        s3 = "x-amz-request-id" in resp.headers or resp.headers.get("Server", "").startswith("AmazonS3")
        md5 = md5_from_headers(resp, trust_etag=s3)
        return RemoteFile(file.path, file.url, file.size, file.sha256, md5) if md5 else file

    def sizes(self, files: list[RemoteFile]) -> list[RemoteFile]:
        def size_of(f: RemoteFile) -> RemoteFile:
            if f.size is not None:
                return f
            try:
                r = fetch(self, f.url, method="HEAD", stream=False)
            except requests.RequestException:
                return f
            cl = r.headers.get("Content-Length", "")
            return RemoteFile(f.path, f.url, int(cl), f.sha256, f.md5) if r.ok and cl.isdigit() else f

        with ThreadPoolExecutor(self.settings.connections_per_host) as pool:
            return list(pool.map(size_of, files))

    def check_access(self) -> AccessReport:
        try:
            files = self.list_files()
            if files:
                self.open(files[0], {"Range": "bytes=0-0"}).close()
        except (AccessError, TransferError, RecipeError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e), "check the recipe's URLs")
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        return AccessReport(self.recipe.name, self.spec.id, True, f"{len(files)} file(s) reachable, no login")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _ns(root: ET.Element, name: str) -> str:
    return root.tag[: root.tag.index("}") + 1] + name if root.tag.startswith("{") else name


def _s3_code(body: bytes) -> str | None:
    """The <Code> of an S3/GCS/CloudFront XML error body, if it is one."""
    try:
        root = ET.fromstring(body[:65536])
    except ET.ParseError:
        return None
    code = root.findtext("Code") if _local(root.tag) == "Error" else None
    return code.strip() if code else None
