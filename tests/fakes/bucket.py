"""A fake S3-style object store: anonymous public buckets, ListObjectsV2, presigned and CloudFront URLs.

It plays three roles in the tests of the Zenodo, GitHub, Hugging Face and plain-HTTPS sources:

* a **public bucket** read anonymously over HTTPS, as IDC (``idc-open-data``), TCIA's open data, ISIC's
  challenge archives or Mendeley's zip cache are (sources.md §5.2): path-style ``/<bucket>/<key>`` objects
  with ``ETag: "<md5 hex>"`` (``"<md5 of the part md5s>-<N>"`` for a multipart upload, which is *not* an
  MD5 of the content), ``Last-Modified``, ``x-amz-request-id``, ``Server: AmazonS3``, Range/If-Range through
  the shared :func:`~climb_cli.fakes.faults.serve_bytes`; ``GET /<bucket>?list-type=2&prefix=..`` answers the
  ListObjectsV2 XML (``KeyCount``, ``IsTruncated``, ``NextContinuationToken``; ``page_size`` caps a page);
  errors are S3's XML (``NoSuchKey`` 404, ``NoSuchBucket`` 404, ``AccessDenied`` 403 for a private bucket);
* the **signed-URL host** behind a redirect (GitHub release assets: S3 presigned ``X-Amz-*`` query, 300 s,
  sources.md §6.1; expired -> 403 ``AccessDenied`` "Request has expired", §7.4);
* a **CDN** (Hugging Face LFS files: CloudFront ``Expires``/``Signature``/``Key-Pair-Id``; expired or bad
  -> 403 ``AccessDenied``).

As on real S3, a presigned request that *also* carries an ``Authorization`` header is refused (400
``InvalidArgument``, "Only one auth mechanism allowed"), and every request is logged with
``had_authorization``: :attr:`FakeBucket.authorization_seen` is what credential-stripping tests assert on.

Test knobs: ``advance(seconds)`` moves the store's clock (URLs issued earlier expire, new ones are fine),
``expire_on_drop`` does that the moment a drop fault cuts a body (a deterministic "the link expired during
the transfer, before the resume"), ``expire_next`` issues that many links already expired (stale when first
used), ``signed_url_uses`` makes every presigned S3 URL valid for that many
requests, ``page_size`` for listings.  A ``drop`` fault armed with
``headers=RESET`` ends the connection with a TCP reset instead of a clean close (see
:func:`reset_connection`), so "connection reset mid-body" and "short body" are distinct faults.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import hmac
import secrets
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote, urlencode, urlsplit
from xml.sax.saxutils import escape

from climb_cli.fakes.faults import (
    BaseFakeHandler,
    FakeHTTPServer,
    Fault,
    FaultPlan,
    RequestRecord,
    serve_bytes,
)
from tests.fakes.tls import make_test_ca

__all__ = [
    "FAULT_IDS",
    "RESET",
    "arm_fault",
    "settle",
    "FakeBucket",
    "S3Object",
    "TLSServerMixin",
    "make_test_ca",
    "reset_connection",
    "s3_error",
    "serve_file",
]

#: Arm a drop fault with ``headers=RESET`` to end the connection with a TCP RST after ``after_bytes``.
RESET = {"x-fake-fault": "reset"}
_XML = "application/xml"
_S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
Style = Literal["s3", "cloudfront"]


# ----------------------------------------------------------------------------------- shared helpers


def reset_connection(handler: BaseFakeHandler) -> None:
    """Abort the handler's TCP connection with a reset (SO_LINGER 0), not a FIN: the client's next read fails
    with ECONNRESET instead of seeing a clean end of stream."""
    sock = handler.connection
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        handler.rfile.close()  # drop the makefile() reference so close() really closes the descriptor
        sock.close()
    handler.close_connection = True


def serve_file(
    handler: BaseFakeHandler,
    data: bytes,
    *,
    content_type: str,
    mtime: float,
    etag: str | None,
    extra_headers: list[tuple[str, str]],
    fault: Fault | None,
    ranges: bool = True,
    on_drop: Callable[[], None] | None = None,
) -> None:
    """serve_bytes plus this module's extras: ``ranges=False`` ignores Range (a server without range support),
    a drop fault armed with :data:`RESET` resets the connection after its bytes, and ``on_drop`` runs after
    a dropped body but before the client can notice (the connection is still open then)."""
    if not ranges and fault is None and handler.headers.get("Range"):
        fault = Fault("ignore_range")  # the server has no range support: the whole body, status 200
        fault.hits = 1
    serve_bytes(
        handler,
        data,
        content_type=content_type,
        mtime=mtime,
        etag=etag,
        extra_headers=extra_headers,
        fault=fault,
    )
    if handler.fault_kind == "ignore_range" and not ranges:
        handler.fault_kind = None  # not a fault: the server's normal behaviour
    if on_drop is not None and handler.fault_kind == "drop":
        on_drop()
    if fault is not None and fault.kind == "drop" and fault.headers.get("x-fake-fault") == "reset":
        reset_connection(handler)


def s3_error(code: str, message: str, **extra: str) -> bytes:
    """An S3 error document."""
    rid = secrets.token_hex(8).upper()
    fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
        f"<Message>{escape(message)}</Message>"
        f"{fields}<RequestId>{rid}</RequestId><HostId>{secrets.token_urlsafe(24)}</HostId></Error>"
    ).encode()


def _amz_date(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def _parse_amz_date(value: str) -> float | None:
    try:
        return dt.datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


# ------------------------------------------------------------------------------- the fault matrix

#: The shared network fault list of issue 3, one id per column of the README's source x fault matrix.
FAULT_IDS = (
    "drop-mid-body",  # connection reset (RST) after a third of the body
    "short-body",  # clean close (FIN) before Content-Length
    "stall",  # the body stops for longer than the client's read timeout
    "ignore-range",  # the resume asks for a Range and gets 200 with the whole body
    "changed",  # the file changed between two requests: If-Range fails, 200 with the new validators
    "429-burst",  # two 429s, with Retry-After: 1 then 0
    "503-burst",  # three 503s with Retry-After: 0
    "expired-signed-url",  # the signed URL expires between the first request and the resume
)


def arm_fault(fake: FakeHTTPServer, fault: str, path_glob: str, size: int) -> list[int]:
    """Arm ``fault`` (one of FAULT_IDS) on ``fake`` for the next transfer of a ``size``-byte file whose path
    matches ``path_glob``; returns the statuses the file's requests should get (stalled and expired requests
    excepted, see :func:`settle`).  For ``expired-signed-url`` ``fake`` is the :class:`FakeBucket` holding the
    object: the first transfer breaks after a third, and at that moment every link issued so far expires."""
    plan, cut = fake.faults, max(1, size // 3)
    if fault == "drop-mid-body":
        plan.add("drop", path_glob=path_glob, after_bytes=cut, headers=dict(RESET))
        return [200, 206]
    if fault == "short-body":
        plan.add("drop", path_glob=path_glob, after_bytes=cut)
        return [200, 206]
    if fault == "stall":
        plan.add("stall", path_glob=path_glob, after_bytes=cut, seconds=2.0)
        return [206]
    if fault in ("ignore-range", "changed"):
        plan.add("drop", path_glob=path_glob, after_bytes=cut)
        plan.add("ignore_range" if fault == "ignore-range" else "change", path_glob=path_glob)
        return [200, 200]
    if fault == "429-burst":
        plan.add("status", path_glob=path_glob, status=429, retry_after="1", body=b"Too Many Requests")
        plan.add("status", path_glob=path_glob, status=429, retry_after="0", body=b"Too Many Requests")
        return [429, 429, 200]
    if fault == "503-burst":
        plan.add("status", path_glob=path_glob, status=503, times=3, retry_after="0")
        return [503, 503, 503, 200]
    if fault == "expired-signed-url":
        if not isinstance(fake, FakeBucket):
            raise TypeError("expired-signed-url is armed on the object store that checks the signatures")
        fake.expire_on_drop = True
        plan.add("drop", path_glob=path_glob, after_bytes=cut)
        return [200, 206]
    raise ValueError(f"unknown fault {fault!r}; expected one of {FAULT_IDS}")


def logged(fake: FakeHTTPServer, n: int, path_glob: str = "*", wait: float = 30.0) -> list[RequestRecord]:
    """Every logged request for ``path_glob`` in the order they started, once at least ``n`` are logged.

    A request is logged by its serving thread just before its last byte goes out, so a response the client
    closed early (or read only the headers of) may be logged after the client's next request, or after the
    test has moved on, when the machine is loaded. Waiting for the count (not for a quiet moment) and ordering
    by ``started`` (stamped when the server read the request) gives the order the client sent them in. Gives
    up after ``wait`` seconds and returns what is there, for the caller's assertion to show."""
    deadline = time.monotonic() + wait
    reqs = fake.requests_for(path_glob)
    while len(reqs) < n and time.monotonic() < deadline:
        time.sleep(0.01)
        reqs = fake.requests_for(path_glob)
    return sorted(reqs, key=lambda r: r.started)


def settle(fake: FakeHTTPServer, path_glob: str, method: str = "GET", wait: float = 2.0) -> list:
    """The logged requests for ``path_glob`` in the order they started, once the log stops growing (a request
    is logged when its last byte goes out).  Stalled requests and 403s for expired URLs are left out: they are
    how a fault looks, not what the client asked for."""
    seen, deadline = -1, time.monotonic() + wait
    reqs: list = []
    while time.monotonic() < deadline:
        reqs = fake.requests_for(path_glob, method=method)
        if len(reqs) == seen:
            break
        seen = len(reqs)
        time.sleep(0.1)
    reqs = sorted(reqs, key=lambda r: r.started)
    return [r for r in reqs if r.fault != "stall" and r.status != 403]


# ------------------------------------------------------------------------------------------- TLS


class TLSServerMixin:
    """Serve a FakeHTTPServer over https: set ``tls = (cert, key)`` before ``start()``."""

    tls: tuple[Path, Path] | None = None

    def start(self) -> Self:
        started = super().start()  # type: ignore[misc]
        if self.tls is not None:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(self.tls[0]), str(self.tls[1]))
            httpd = self._httpd  # type: ignore[attr-defined]
            httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True, do_handshake_on_connect=False)
        return started

    @property
    def base_url(self) -> str:
        url: str = super().base_url  # type: ignore[misc]
        return url.replace("http://", "https://", 1) if self.tls is not None else url


# ----------------------------------------------------------------------------------------- model


@dataclass
class S3Object:
    bucket: str
    key: str
    data: bytes
    content_type: str = "binary/octet-stream"
    mtime: float = 0.0
    parts: int = 0  # >0: uploaded in that many parts (multipart ETag)

    @property
    def md5(self) -> str:
        return hashlib.md5(self.data).hexdigest()

    @property
    def etag(self) -> str:
        if self.parts <= 0:
            return f'"{self.md5}"'
        size = -(-len(self.data) // self.parts)
        digests = b"".join(
            hashlib.md5(self.data[i * size : (i + 1) * size]).digest() for i in range(self.parts)
        )
        return f'"{hashlib.md5(digests).hexdigest()}-{self.parts}"'


class _BucketHandler(BaseFakeHandler):
    server_header = "AmazonS3"
    fake: FakeBucket

    def _error(self, status: int, code: str, message: str, **extra: str) -> None:
        self.respond(status, s3_error(code, message, **extra), content_type=_XML, headers=self._amz())

    def _amz(self) -> list[tuple[str, str]]:
        return [("x-amz-request-id", secrets.token_hex(8).upper()), ("x-amz-id-2", secrets.token_urlsafe(32))]

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._error(405, "MethodNotAllowed", "The specified method is not allowed against this resource.")
            return
        path = self.url_path
        bucket, _, key = path.lstrip("/").partition("/")
        fake = self.fake
        if bucket not in fake.buckets:
            self._error(404, "NoSuchBucket", "The specified bucket does not exist", BucketName=bucket)
            return
        query = {k: v[-1] for k, v in self.query.items()}
        signed = ("X-Amz-Signature" if fake.style == "s3" else "Signature") in query
        if signed:
            problem = fake.check_signature(bucket, key, query, had_auth="Authorization" in self.headers)
            if problem is not None:
                status, code, message, fields = problem
                self._error(status, code, message, **fields)
                return
        elif "Authorization" in self.headers:
            # Real S3 would try to verify an AWS signature and fail; any other scheme is refused outright.
            self._error(
                400, "InvalidArgument", "Unsupported Authorization Type", ArgumentName="Authorization"
            )
            return
        elif bucket not in fake.public:
            self._error(403, "AccessDenied", "Access Denied")
            return
        if not key:
            if (
                self.command == "HEAD"
            ):  # HeadBucket: what SDKs (s5cmd, boto3) ask to learn the bucket's region
                self.respond(
                    200, b"", content_type=_XML, headers=[*self._amz(), ("x-amz-bucket-region", "us-east-1")]
                )
                return
            if query.get("list-type") == "2":
                self._list(bucket, query)
            else:
                self._error(
                    400, "InvalidRequest", "only ListObjectsV2 (list-type=2) is implemented by the fake"
                )
            return
        obj = fake.buckets[bucket].get(key)
        if "versionId" in query:  # a versioned bucket: that version of the key (S3 answers 400 for a bad id)
            obj = fake.versions.get((bucket, key, query["versionId"]))
            if obj is None:
                self._error(400, "InvalidArgument", "Invalid version id specified", ArgumentName="versionId")
                return
        if obj is None:
            self._error(404, "NoSuchKey", "The specified key does not exist.", Key=key)
            return
        fault = self.file_fault(path)
        extra = self._amz()
        disposition = query.get("response-content-disposition")
        if disposition:
            extra.append(("Content-Disposition", disposition))
        serve_file(
            self,
            obj.data,
            content_type=query.get("response-content-type") or obj.content_type,
            mtime=obj.mtime,
            etag=obj.etag,
            extra_headers=extra,
            fault=fault,
            on_drop=fake.expire_all if fake.expire_on_drop else None,
        )

    def _list(self, bucket: str, query: dict[str, str]) -> None:
        prefix = query.get("prefix", "")
        try:
            max_keys = min(int(query.get("max-keys", "1000")), 1000, self.fake.page_size)
        except ValueError:
            self._error(400, "InvalidArgument", "Provided max-keys not an integer or within integer range")
            return
        token = query.get("continuation-token")
        after = query.get("start-after", "")
        if token is not None:
            after = self.fake.tokens.get(token, None)  # type: ignore[assignment]
            if after is None:
                self._error(400, "InvalidArgument", "The continuation token provided is incorrect")
                return
        keys = sorted(k for k in self.fake.buckets[bucket] if k.startswith(prefix) and k > after)
        page, truncated = keys[:max_keys], len(keys) > max_keys
        items = []
        for k in page:
            o = self.fake.buckets[bucket][k]
            etag = escape(o.etag, {'"': "&quot;"})
            items.append(
                f"<Contents><Key>{escape(k)}</Key><LastModified>{_iso(o.mtime)}</LastModified>"
                f"<ETag>{etag}</ETag><Size>{len(o.data)}</Size>"
                "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        nxt = ""
        if truncated:
            new_token = secrets.token_urlsafe(24)
            self.fake.tokens[new_token] = page[-1]
            nxt = f"<NextContinuationToken>{new_token}</NextContinuationToken>"
        echoed = f"<ContinuationToken>{escape(token)}</ContinuationToken>" if token else ""
        body = (
            f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult xmlns="{_S3_NS}">'
            f"<Name>{bucket}</Name>"
            f"<Prefix>{escape(prefix)}</Prefix>{echoed}{nxt}<KeyCount>{len(page)}</KeyCount>"
            f"<MaxKeys>{max_keys}</MaxKeys><IsTruncated>{'true' if truncated else 'false'}</IsTruncated>"
            + "".join(items)
            + "</ListBucketResult>"
        ).encode()
        self.respond(200, body, content_type=_XML, headers=self._amz())


class FakeBucket(TLSServerMixin, FakeHTTPServer):
    """The object store.  ``style`` picks the signed-URL flavour (``s3`` presigned or ``cloudfront``)."""

    handler_class = _BucketHandler

    def __init__(self, *, style: Style = "s3", faults: FaultPlan | None = None, latency: float = 0.0) -> None:
        super().__init__(faults=faults, latency=latency)
        self.style: Style = style
        self.buckets: dict[str, dict[str, S3Object]] = {}
        self.public: set[str] = set()
        self.page_size = 1000
        self.signed_url_uses: int | None = None
        self.expire_on_drop = False
        self.expire_next = 0  # this many links are issued already past their lifetime ("expired before use")
        self.longest_ttl = 0
        self.tokens: dict[str, str] = {}
        self.versions: dict[tuple[str, str, str], S3Object] = {}  # (bucket, key, versionId) -> that version
        self.clock_offset = 0.0
        self.issued = 0
        self._secret = secrets.token_bytes(32)
        self._uses: dict[str, int] = {}
        self._lock = threading.Lock()

    # -- content ------------------------------------------------------------------------------
    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        *,
        content_type: str = "binary/octet-stream",
        public: bool = True,
        parts: int = 0,
        mtime: float | None = None,
    ) -> S3Object:
        store = self.buckets.setdefault(bucket, {})
        if public:
            self.public.add(bucket)
        obj = S3Object(
            bucket, key, data, content_type, mtime if mtime is not None else time.time() - 86400, parts
        )
        store[key] = obj
        return obj

    def put_version(self, bucket: str, key: str, data: bytes, *, public: bool = True) -> str:
        """Store ``data`` as a new version of ``key`` (it becomes the current one); returns its versionId."""
        obj = self.put(bucket, key, data, public=public)
        version_id = secrets.token_urlsafe(24)
        self.versions[(bucket, key, version_id)] = obj
        return version_id

    def url(self, bucket: str, key: str) -> str:
        """The plain (unsigned) path-style URL of an object."""
        return f"{self.base_url}/{bucket}/{quote(key)}"

    # -- clock & signatures -----------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Move the store's clock forward: URLs issued before may now be expired."""
        self.clock_offset += seconds

    def expire_all(self) -> None:
        """Move the clock past the expiry of every URL issued so far (new ones are valid)."""
        self.advance(self.longest_ttl + 1)

    @property
    def authorization_seen(self) -> bool:
        """Whether any request ever reached this host with an Authorization header."""
        return any(r.had_authorization for r in self.log)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def sign(
        self,
        bucket: str,
        key: str,
        ttl: int = 300,
        *,
        filename: str | None = None,
        version_id: str | None = None,
    ) -> str:
        """A signed URL for the object in this store's style, valid ``ttl`` seconds from the store's now (or
        already expired, while ``expire_next`` counts down)."""
        stale = False
        with self._lock:
            self.issued += 1
            self.longest_ttl = max(self.longest_ttl, ttl)
            if self.expire_next > 0:
                self.expire_next, stale = self.expire_next - 1, True
        now = self.now() - (ttl + 1 if stale else 0)
        path = f"/{bucket}/{quote(key)}"
        if self.style == "cloudfront":
            expires = str(int(now + ttl))
            q = {
                "Expires": expires,
                "Signature": self._mac(bucket, key, expires),
                "Key-Pair-Id": "K3ESJI6DHPFC7",
            }
            return f"{self.base_url}{path}?{urlencode(q)}"
        date = _amz_date(now)
        cred = f"AKIAFAKE{secrets.token_hex(4).upper()}/{date[:8]}/us-east-1/s3/aws4_request"
        q = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": cred,
            "X-Amz-Date": date,
            "X-Amz-Expires": str(ttl),
            "X-Amz-SignedHeaders": "host",
        }
        if version_id is not None:
            q["versionId"] = version_id
        if filename is not None:
            q["response-content-disposition"] = f"attachment; filename={filename}"
            q["response-content-type"] = "application/octet-stream"
        q["X-Amz-Signature"] = self._mac(bucket, key, *(f"{k}={v}" for k, v in sorted(q.items())))
        return f"{self.base_url}{path}?{urlencode(q)}"

    def check_signature(
        self, bucket: str, key: str, query: dict[str, str], *, had_auth: bool
    ) -> tuple[int, str, str, dict[str, str]] | None:
        """None if the signed request may proceed, else (status, code, message, extra XML fields)."""
        now = self.now()
        if self.style == "cloudfront":
            expires = query.get("Expires", "")
            good = hmac.compare_digest(query.get("Signature", ""), self._mac(bucket, key, expires))
            if not good or not expires.isdigit() or now > int(expires) or self._spent(query["Signature"]):
                return 403, "AccessDenied", "Access denied", {}
            return None
        if had_auth:
            return (
                400,
                "InvalidArgument",
                "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query "
                "string parameter or the Authorization header should be specified",
                {"ArgumentName": "Authorization", "ArgumentValue": "Bearer ***"},
            )
        signed = {k: v for k, v in query.items() if k != "X-Amz-Signature"}
        want = self._mac(bucket, key, *(f"{k}={v}" for k, v in sorted(signed.items())))
        if not hmac.compare_digest(query["X-Amz-Signature"], want):
            return 403, "SignatureDoesNotMatch", "The request signature we calculated does not match", {}
        issued = _parse_amz_date(query.get("X-Amz-Date", ""))
        ttl = query.get("X-Amz-Expires", "")
        if issued is None or not ttl.isdigit():
            return 400, "AuthorizationQueryParametersError", "X-Amz-Date / X-Amz-Expires malformed", {}
        if now > issued + int(ttl) or self._spent(query["X-Amz-Signature"]):
            return (
                403,
                "AccessDenied",
                "Request has expired",
                {
                    "X-Amz-Expires": ttl,
                    "Expires": _iso(issued + int(ttl)),
                    "ServerTime": _iso(now),
                },
            )
        return None

    def _spent(self, signature: str) -> bool:
        """Count a use of a signed URL; True when ``signed_url_uses`` says it is used up."""
        with self._lock:
            n = self._uses.get(signature, 0) + 1
            self._uses[signature] = n
            return self.signed_url_uses is not None and n > self.signed_url_uses

    def host_of(self, url: str) -> bool:
        """Whether ``url`` points at this store."""
        return urlsplit(url).port == self.port
