"""A signed-URL object-store host: where Kaggle's and Grand Challenge's APIs redirect the actual bytes.

Both services answer a download request with a redirect to a *different* host that holds the object and
checks a signature in the query string (sources.md §0.7, §2.4, §3.2, §7.4):

* ``style="gcs"`` -- Google Cloud Storage V4 signed URLs (Kaggle): ``X-Goog-Algorithm``,
  ``X-Goog-Credential``, ``X-Goog-Date`` (``%Y%m%dT%H%M%SZ``), ``X-Goog-Expires`` (seconds),
  ``X-Goog-SignedHeaders=host`` and ``X-Goog-Signature``.  Responses carry ``ETag: "<md5 hex>"`` and
  ``x-goog-hash: crc32c=<b64>,md5=<b64>`` (``omit_md5`` drops the md5, as for composite objects).
  Expired -> **400** XML ``ExpiredToken``; a bad signature -> 403 ``SignatureDoesNotMatch``; no signature
  at all -> 403 ``AccessDenied``.
* ``style="cloudfront"`` -- a CloudFront canned-policy URL (Grand Challenge): ``Expires=<epoch>``,
  ``Signature=<base64>``, ``Key-Pair-Id``.  Expired, bad or missing signature -> **403** XML ``AccessDenied``.

Signatures are an HMAC of the path and the expiry fields with a per-store secret, so a client cannot mint or
stretch a URL; only the API fake that owns the store can (``sign()``).  Knobs for tests: ``advance(seconds)``
moves the store's clock (every URL issued before may expire), ``max_uses`` makes each URL valid for that many
requests (a deterministic "the link expired between two requests", e.g. after a drop mid-body), and
``revoke_all()``.  Bytes are served by the shared :func:`~climb_cli.fakes.faults.serve_bytes` (Range,
If-Range, 416, HEAD, the fault plan), and every request lands in ``log`` with ``had_authorization``:
:attr:`FakeObjectStore.authorization_seen` is what the credential-stripping tests assert on.

:class:`TLSMixin` serves any fake over https (gcapi refuses plain http), and :func:`self_signed_cert` makes
the certificate for a test (needs the ``cryptography`` package; tests skip without it).
"""

from __future__ import annotations

import base64
import binascii
import calendar
import hashlib
import hmac
import mimetypes
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal, Self
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan, serve_bytes
from tests.fakes.tls import self_signed_cert, server_context

__all__ = ["FakeObjectStore", "StoredObject", "TLSMixin", "crc32c", "self_signed_cert", "server_context"]

Style = Literal["gcs", "cloudfront"]
_XML = "application/xml; charset=UTF-8"


# ------------------------------------------------------------------------------------------ checksums


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli) as GCS reports it in ``x-goog-hash``; pure Python, ~0.2 s/MB, cached."""
    crc, table = 0xFFFFFFFF, _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


_CRC_CACHE: dict[bytes, str] = {}
_CRC_LOCK = threading.Lock()


def _crc32c_b64(digest: bytes, data: bytes) -> str:
    """Base64 CRC-32C of ``data``, remembered by content across stores (tests publish the same bytes)."""
    with _CRC_LOCK:
        known = _CRC_CACHE.get(digest)
    if known is None:
        known = base64.b64encode(crc32c(data).to_bytes(4, "big")).decode()
        with _CRC_LOCK:
            if len(_CRC_CACHE) > 256:
                _CRC_CACHE.clear()
            _CRC_CACHE[digest] = known
    return known


@dataclass
class StoredObject:
    """One object in the store (``key`` is its path without the leading slash, e.g. ``bucket/a/b.csv``)."""

    key: str
    data: bytes
    content_type: str
    mtime: float
    generation: int = field(default_factory=lambda: time.time_ns() // 1000)
    _crc: str | None = None

    @property
    def md5_hex(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def crc32c_b64(self) -> str:
        if self._crc is None:
            self._crc = _crc32c_b64(hashlib.sha256(self.data).digest(), self.data)
        return self._crc


# ------------------------------------------------------------------------------------------------ TLS


class TLSMixin:
    """Serve a :class:`FakeHTTPServer` over https: pass ``tls=`` an :class:`ssl.SSLContext` (server side).

    The listening socket is wrapped after it is bound; accepted connections do their handshake lazily in the
    handler thread, so a client that connects and stalls cannot block the accept loop.
    """

    tls: ssl.SSLContext | None = None
    _httpd: Any
    host: str
    port: int

    def start(self) -> Self:
        started = self._httpd is not None
        super().start()  # type: ignore[misc]
        if self.tls is not None and not started:
            self._httpd.socket = self.tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return f"{self.scheme}://{self.host}:{self.port}"


# ------------------------------------------------------------------------------------------- the store


def _xml_error(code: str, message: str, details: str = "") -> bytes:
    extra = f"<Details>{details}</Details>" if details else ""
    return (
        f"<?xml version='1.0' encoding='UTF-8'?><Error><Code>{code}</Code>"
        f"<Message>{message}</Message>{extra}</Error>"
    ).encode()


class _StoreHandler(BaseFakeHandler):
    server_header = "UploadServer"

    def route(self) -> None:
        store: FakeObjectStore = self.fake
        if self.command not in ("GET", "HEAD"):
            self.respond(
                405, _xml_error("MethodNotAllowed", "The specified method is not allowed"), content_type=_XML
            )
            return
        key = self.url_path.lstrip("/")
        verdict = store.check(key, self.query)
        if verdict is not None:
            status, body = verdict
            self.respond(status, body, content_type=_XML)
            return
        obj = store.objects.get(key)
        if obj is None:
            self.respond(404, _xml_error("NoSuchKey", "The specified key does not exist."), content_type=_XML)
            return
        fault = self.file_fault()
        extra: list[tuple[str, str]] = []
        if store.style == "gcs":
            hashes = f"crc32c={obj.crc32c_b64}" + ("" if store.omit_md5 else f",md5={obj.md5_b64}")
            extra += [
                ("x-goog-hash", hashes),
                ("x-goog-generation", str(obj.generation)),
                ("x-goog-metageneration", "1"),
                ("x-goog-stored-content-encoding", "identity"),
                ("x-goog-stored-content-length", str(len(obj.data))),
                ("x-goog-storage-class", "STANDARD"),
                ("Cache-Control", "private, max-age=0"),
            ]
        else:
            extra += [("x-cache", "Miss from cloudfront"), ("Via", "1.1 fake.cloudfront.net (CloudFront)")]
        serve_bytes(
            self,
            obj.data,
            content_type=obj.content_type,
            mtime=obj.mtime,
            etag=None if store.omit_md5 and store.style == "gcs" else f'"{obj.md5_hex}"',
            extra_headers=extra,
            fault=fault,
        )


class FakeObjectStore(FakeHTTPServer):
    """An object store on its own port that serves objects only through URLs that it signed."""

    handler_class = _StoreHandler

    def __init__(
        self,
        *,
        style: Style = "gcs",
        omit_md5: bool = False,
        max_uses: int | None = None,
        tls: ssl.SSLContext | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        latency: float = 0.0,
        faults: FaultPlan | None = None,
    ) -> None:
        super().__init__(host=host, port=port, latency=latency, faults=faults)
        if style not in ("gcs", "cloudfront"):
            raise ValueError(f"style must be 'gcs' or 'cloudfront', not {style!r}")
        self.style: Style = style
        self.omit_md5 = omit_md5
        self.max_uses = max_uses
        self.tls = tls
        self.objects: dict[str, StoredObject] = {}
        self.clock_offset = 0.0
        self.issued = 0  # how many URLs were signed
        self._secret = secrets.token_bytes(32)
        self._uses: dict[str, int] = {}
        self._revoked_before = 0.0
        self._stale_next = 0
        self._lock = threading.Lock()

    # -- TLS (same as TLSMixin, kept local so the store has no mixin ordering to get wrong) -----------
    def start(self) -> Self:
        started = self._httpd is not None
        super().start()
        if self.tls is not None and not started:
            assert self._httpd is not None
            self._httpd.socket = self.tls.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        return self

    @property
    def base_url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the fake server is not started")
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    # -- objects ---------------------------------------------------------------------------------
    def put(
        self, key: str, data: bytes, *, content_type: str | None = None, mtime: float | None = None
    ) -> StoredObject:
        key = key.lstrip("/")
        ctype = content_type or mimetypes.guess_type(key)[0] or "application/octet-stream"
        obj = StoredObject(key, bytes(data), ctype, mtime if mtime is not None else time.time() - 86400)
        with self._lock:
            self.objects[key] = obj
        return obj

    # -- time and signatures -----------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward: URLs whose lifetime has passed are now expired."""
        self.clock_offset += seconds

    def revoke_all(self) -> None:
        """Every URL signed so far is expired from now on (URLs signed later are fine)."""
        self._revoked_before = self.now() + 1e-6

    def expire_next(self, n: int = 1) -> None:
        """The next ``n`` URLs are signed already expired (their lifetime ended a minute ago)."""
        with self._lock:
            self._stale_next += n

    def _mac(self, *parts: str) -> bytes:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).digest()

    def sign(self, key: str, ttl: float) -> str:
        """An absolute signed URL for ``key`` valid ``ttl`` seconds from the store's now."""
        key = key.lstrip("/")
        path = "/" + quote(key)
        now = self.now()
        with self._lock:
            self.issued += 1
            if self._stale_next > 0:
                self._stale_next -= 1
                now -= ttl + 60
        issued = (
            f"{now:.6f}"  # the fake's own signed parameter: keeps every URL unique (max_uses, revoke_all)
        )
        if self.style == "gcs":
            date = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
            credential = (
                f"fake-signer@kaggle-fake.iam.gserviceaccount.com/{date[:8]}/auto/storage/goog4_request"
            )
            expires = str(max(1, int(ttl)))
            sig = self._mac(path, date, expires, credential, issued).hex()
            query = urlencode(
                [
                    ("X-Goog-Algorithm", "GOOG4-RSA-SHA256"),
                    ("X-Goog-Credential", credential),
                    ("X-Goog-Date", date),
                    ("X-Goog-Expires", expires),
                    ("X-Goog-SignedHeaders", "host"),
                    ("X-Issued", issued),
                    ("X-Goog-Signature", sig),
                ]
            )
        else:
            expires = str(int(now + ttl))
            sig = base64.b64encode(self._mac(path, expires, issued)).decode()
            sig = sig.replace("+", "-").replace("=", "_").replace("/", "~")  # CloudFront's URL-safe alphabet
            query = urlencode(
                [
                    ("Expires", expires),
                    ("X-Issued", issued),
                    ("Signature", sig),
                    ("Key-Pair-Id", "K2FAKEKEYPAIRID"),
                ]
            )
        return f"{self.base_url}{path}?{query}"

    def check(self, key: str, query: dict[str, list[str]]) -> tuple[int, bytes] | None:
        """None when the signed URL is valid now, else (status, XML body) as the real store answers."""
        q = {k: v[0] for k, v in query.items() if v}
        path = "/" + quote(key)
        if self.style == "gcs":
            needed = ("X-Goog-Credential", "X-Goog-Date", "X-Goog-Expires", "X-Goog-Signature")
            if not any(k in q for k in needed):
                return 403, _xml_error(
                    "AccessDenied",
                    "Access denied.",
                    "Anonymous caller does not have storage.objects.get access.",
                )
            if not all(k in q for k in needed) or not q["X-Goog-Expires"].isdigit():
                return 400, _xml_error("MalformedSecurityHeader", "Your request has a malformed header.")
            try:
                given = binascii.unhexlify(q["X-Goog-Signature"])
                issued = calendar.timegm(time.strptime(q["X-Goog-Date"], "%Y%m%dT%H%M%SZ"))
            except (binascii.Error, ValueError):
                return 400, _xml_error("MalformedSecurityHeader", "Your request has a malformed header.")
            want = self._mac(
                path, q["X-Goog-Date"], q["X-Goog-Expires"], q["X-Goog-Credential"], q.get("X-Issued", "")
            )
            if not hmac.compare_digest(given, want):
                return 403, _xml_error(
                    "SignatureDoesNotMatch",
                    "The request signature we calculated does not match the signature you provided.",
                )
            deadline = issued + int(q["X-Goog-Expires"])
            if (
                self.now() > deadline
                or self._spent(q["X-Goog-Signature"])
                or self._revoked(q.get("X-Issued", ""))
            ):
                when = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(deadline))
                return 400, _xml_error(
                    "ExpiredToken", "The provided token has expired.", f"Request signature expired at: {when}"
                )
            return None
        denied = 403, _xml_error("AccessDenied", "Access denied")
        if not all(k in q for k in ("Expires", "Signature", "Key-Pair-Id", "X-Issued")):
            return denied
        cdn = base64.b64encode(self._mac(path, q["Expires"], q["X-Issued"])).decode()
        cdn = cdn.replace("+", "-").replace("=", "_").replace("/", "~")
        if not hmac.compare_digest(cdn.encode(), q["Signature"].encode()):
            return denied
        try:
            expires = int(q["Expires"])
        except ValueError:
            return denied
        if self.now() > expires or self._spent(q["Signature"]) or self._revoked(q["X-Issued"]):
            return denied
        return None

    def _revoked(self, issued: str) -> bool:
        try:
            return float(issued) < self._revoked_before
        except ValueError:
            return True

    def _spent(self, signature: str) -> bool:
        if self.max_uses is None:
            return False
        with self._lock:
            n = self._uses.get(signature, 0) + 1
            self._uses[signature] = n
        return n > self.max_uses

    # -- what tests assert on ----------------------------------------------------------------------
    @property
    def authorization_seen(self) -> bool:
        """Whether any request ever reached the store with an ``Authorization`` header."""
        with self._log_lock:
            return any(r.had_authorization for r in self.log)

    def parse(self, url: str) -> tuple[str, dict[str, list[str]]]:
        """(key, query) of a URL this store signed."""
        parts = urlsplit(url)
        return parts.path.lstrip("/"), parse_qs(parts.query)
