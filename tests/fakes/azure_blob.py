"""A fake Azure Blob Storage endpoint, as Stanford AIMI's datasets are served (sources-more.md §6).

Path-style addressing as Azurite and the SDK use on 127.0.0.1: ``/<account>/<container>[/<blob>]``
(the real service puts the account in the host name: ``https://<account>.blob.core.windows.net/<container>``).
Only service-SAS access, as AIMI hands out: the query string carries ``sv, st?, se, sr, sp, sig`` and the
fake checks the signature exactly as the service does (HMAC-SHA256 with the account key over the
string-to-sign the SDK builds in ``azure/storage/blob/_shared_access_signature.py:add_resource_signature``),
so a SAS made by ``azure.storage.blob.generate_container_sas`` with :attr:`FakeAzureBlob.account_key` works.

* **List Blobs**: ``GET /<a>/<c>?restype=container&comp=list`` (+ ``prefix``, ``marker``,
  ``maxresults`` ≤ 5000, ``include``) -> ``EnumerationResults`` XML with ``<Blob><Name/><Properties>``
  (``Content-Length``,
  ``Content-MD5`` base64, ``Etag``, ``Last-Modified``, ``BlobType``...) and ``<NextMarker>`` (opaque) when the
  page is full. Needs ``l`` in ``sp``.
* **Get Blob** / **Get Blob Properties** (HEAD): ``x-ms-range`` (the SDK) or ``Range``; 206 with
  ``Content-Range``; ``Content-MD5`` on a whole-blob answer, ``x-ms-blob-content-md5`` on a ranged one;
  ``If-Match`` -> 412 ``ConditionNotMet``. ``If-Range`` is not among the conditional headers Azure documents:
  the fake ignores it (climb sends ``If-Match`` on a resume). Needs ``r`` in ``sp``.
* **Errors**: XML ``<Error><Code/><Message/>...`` with ``x-ms-error-code``; an expired SAS is 403
  ``AuthenticationFailed`` with ``<AuthenticationErrorDetail>Signature not valid in the specified time
  frame...``; a bad signature 403 ``AuthenticationFailed`` "Signature did not match"; a missing permission 403
  ``AuthorizationPermissionMismatch``; no SAS at all on a private container 404 ``ResourceNotFound``
  (Azure hides private containers from anonymous callers); a missing blob 404 ``BlobNotFound``.

Faults (the shared plan) apply to blob bodies only. ``advance(seconds)`` moves the clock (SAS expiry);
``expire_on_drop`` makes every SAS issued so far expire when a drop fault cuts a body.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Self
from urllib.parse import quote, urlencode
from xml.sax.saxutils import escape

from climb_cli.fakes.faults import (
    BaseFakeHandler,
    FakeHTTPServer,
    FaultPlan,
    _changed_etag,
    http_date,
)
from tests.fakes.bucket import serve_file

__all__ = ["AzureBlob", "FakeAzureBlob", "string_to_sign"]

API_VERSION = "2026-10-06"  # newest x-ms-version of azure-storage-blob 12.31.1
_XML = "application/xml"
#: the query names of a service SAS, in string-to-sign order (after sp, st, se and the resource)
_SAS_TAIL = ("si", "sip", "spr", "sv", "sr", "snapshot", "ses", "rscc", "rscd", "rsce", "rscl", "rsct")


_AUTH_FAILED = (
    "Server failed to authenticate the request. Make sure the value of Authorization header is formed "
    "correctly including the signature."
)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(int(ts), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_iso(value: str) -> float | None:
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(value, fmt).replace(tzinfo=dt.UTC).timestamp()
        except ValueError:
            continue
    return None


def string_to_sign(account: str, container: str, q: dict[str, str]) -> str:
    """The service-SAS string-to-sign for a container (or blob, ``sr=b``) resource, as the SDK builds it."""
    head = [q.get("sp", ""), q.get("st", ""), q.get("se", ""), f"/blob/{account}/{container}"]
    return "\n".join(head + [q.get(k, "") for k in _SAS_TAIL])


@dataclass
class AzureBlob:
    name: str
    data: bytes
    mtime: float = 1_700_000_000.0
    content_md5: bool = True  # False: uploaded in blocks without a whole-blob MD5 (blank Content-MD5)
    content_type: str = "application/octet-stream"

    @property
    def etag(self) -> str:
        return '"0x8DC' + hashlib.sha1(self.data).hexdigest()[:12].upper() + '"'

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode() if self.content_md5 else ""


class _Handler(BaseFakeHandler):
    server_header = "Windows-Azure-Blob/1.0 Microsoft-HTTPAPI/2.0"
    fake: FakeAzureBlob

    def _ms(self) -> list[tuple[str, str]]:
        return [
            ("x-ms-request-id", secrets.token_hex(16)),
            ("x-ms-version", self.headers.get("x-ms-version") or API_VERSION),
        ]

    def _error(self, status: int, code: str, message: str, **extra: str) -> None:
        rid = secrets.token_hex(16)
        fields = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in extra.items())
        body = (
            '\ufeff<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{code}</Code><Message>{escape(message)}\n"
            f"RequestId:{rid}\nTime:{dt.datetime.now(dt.UTC).isoformat()}</Message>{fields}</Error>"
        ).encode()
        self.respond(status, body, content_type=_XML, headers=[*self._ms(), ("x-ms-error-code", code)])

    def route(self) -> None:
        if self.command not in ("GET", "HEAD"):
            self._error(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
            return
        parts = self.url_path.lstrip("/").split("/", 2)
        account = parts[0]
        container = parts[1] if len(parts) > 1 else ""
        blob = parts[2] if len(parts) > 2 else ""
        fake = self.fake
        q = {k: v[-1] for k, v in self.query.items()}
        if account != fake.account or container not in fake.containers:
            self._error(404, "ContainerNotFound", "The specified container does not exist.")
            return
        if "sig" not in q:
            self._error(404, "ResourceNotFound", "The specified resource does not exist.")
            return
        problem = fake.check_sas(container, q, "l" if not blob else "r")
        if problem is not None:
            self._error(*problem[:3], **problem[3])
            return
        if not blob:
            if q.get("restype") == "container" and q.get("comp") == "list":
                self._list(container, q)
            else:
                self._error(
                    400, "InvalidQueryParameterValue", "Value for one of the query parameters is invalid."
                )
            return
        obj = fake.containers[container].get(blob)
        if obj is None:
            self._error(404, "BlobNotFound", "The specified blob does not exist.")
            return
        if blob in fake.redirects:  # a test knob: Azure itself never redirects a blob read
            self.respond(302, b"", content_type=None, headers=[("Location", fake.redirects[blob])])
            return
        self._serve(obj)

    def _serve(self, obj: AzureBlob) -> None:
        fake = self.fake
        fault = self.file_fault()
        etag = _changed_etag(obj.etag) if fault is not None and fault.kind == "change" else obj.etag
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match.strip() not in ("*", etag):
            self._error(
                412, "ConditionNotMet", "The condition specified using HTTP conditional header(s) is not met."
            )
            return
        xr = self.headers.get("x-ms-range")
        if xr is not None:  # x-ms-range wins over Range, as on the service
            del self.headers["Range"]
            self.headers["Range"] = xr
        del self.headers["If-Range"]  # not an Azure conditional header (see the module docstring)
        ranged = self.headers.get("Range") is not None
        extra = [
            *self._ms(),
            ("x-ms-blob-type", "BlockBlob"),
            ("x-ms-creation-time", http_date(obj.mtime)),
            ("x-ms-lease-status", "unlocked"),
            ("x-ms-lease-state", "available"),
            ("x-ms-server-encrypted", "true"),
        ]
        if obj.content_md5:
            extra.append(("x-ms-blob-content-md5" if ranged else "Content-MD5", obj.md5_b64))
        serve_file(
            self,
            obj.data,
            content_type=obj.content_type,
            mtime=obj.mtime,
            etag=obj.etag,
            extra_headers=extra,
            fault=fault,
            on_drop=fake.expire_all if fake.expire_on_drop else None,
        )

    def _list(self, container: str, q: dict[str, str]) -> None:
        fake = self.fake
        prefix = q.get("prefix", "")
        try:
            maxresults = int(q.get("maxresults", "5000"))
        except ValueError:
            maxresults = 0
        if not 1 <= maxresults <= 5000:
            self._error(
                400,
                "OutOfRangeQueryParameterValue",
                "One of the query parameters specified in the request URI is outside the permissible range.",
            )
            return
        maxresults = min(maxresults, fake.page_size)
        marker = q.get("marker", "")
        after = ""
        if marker:
            after = fake.markers.get(marker, "")
            if not after:
                self._error(
                    400,
                    "InvalidQueryParameterValue",
                    "Value for one of the query parameters specified in the request URI is invalid.",
                )
                return
        names = sorted(
            n for n in fake.containers[container] if n.startswith(prefix) and (not after or n > after)
        )
        page, more = names[:maxresults], len(names) > maxresults
        items = []
        for n in page:
            b = fake.containers[container][n]
            enc = quote(n, safe="/")
            name_xml = (
                f"<Name>{escape(n)}</Name>"
                if enc == n or n.isprintable()
                else f'<Name Encoded="true">{enc}</Name>'
            )
            items.append(
                f"<Blob>{name_xml}<Properties><Creation-Time>{http_date(b.mtime)}</Creation-Time>"
                f"<Last-Modified>{http_date(b.mtime)}</Last-Modified><Etag>{b.etag.strip(chr(34))}</Etag>"
                f"<Content-Length>{len(b.data)}</Content-Length><Content-Type>{b.content_type}</Content-Type>"
                "<Content-Encoding /><Content-Language /><Content-CRC64 />"
                f"<Content-MD5>{b.md5_b64}</Content-MD5><Cache-Control /><Content-Disposition />"
                "<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
                "<AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>"
                "<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties>"
                "<OrMetadata /></Blob>"
            )
        nxt = ""
        if more:
            token = "2!" + secrets.token_urlsafe(18)
            fake.markers[token] = page[-1]
            nxt = token
        base = f"{fake.base_url}/{fake.account}"
        body = (
            '\ufeff<?xml version="1.0" encoding="utf-8"?>'
            f'<EnumerationResults ServiceEndpoint="{base}/" ContainerName="{container}">'
            f"<Prefix>{escape(prefix)}</Prefix><Marker>{escape(marker)}</Marker>"
            f"<MaxResults>{maxresults}</MaxResults><Blobs>{''.join(items)}</Blobs>"
            f"<NextMarker>{escape(nxt)}</NextMarker></EnumerationResults>"
        ).encode()
        self.respond(200, body, content_type=_XML, headers=self._ms())


class FakeAzureBlob(FakeHTTPServer):
    """One storage account with private containers, reachable with service SAS URLs."""

    handler_class = _Handler

    def __init__(
        self, containers: dict[str, list[AzureBlob]], *, account: str = "aimistanforddatasets01"
    ) -> None:
        super().__init__(faults=FaultPlan())
        self.account = account
        self.account_key = base64.b64encode(secrets.token_bytes(64)).decode()
        self.containers = {c: {b.name: b for b in blobs} for c, blobs in containers.items()}
        self.page_size = 5000
        self.markers: dict[str, str] = {}
        self.redirects: dict[str, str] = {}  # blob name -> Location (tests of where the SAS may go)
        self.clock_offset = 0.0
        self.expire_on_drop = False
        self._issued_until = 0.0
        self._lock = threading.Lock()

    def start(self) -> Self:
        super().start()
        return self

    # -- clock -------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        self.clock_offset += seconds

    def expire_all(self) -> None:
        """Move the clock past the expiry of every SAS issued so far."""
        self.clock_offset = max(self.clock_offset, self._issued_until - time.time() + 1)

    # -- SAS ---------------------------------------------------------------------------------------
    def _sign(self, text: str) -> str:
        key = base64.b64decode(self.account_key)
        return base64.b64encode(hmac.new(key, text.encode(), hashlib.sha256).digest()).decode()

    def sas(self, container: str, *, ttl: float = 86400.0, permissions: str = "rl") -> str:
        """A container SAS query string, as the AIMI site hands out (sv, st, se, sr=c, sp, sig)."""
        now = self.now()
        q = {"sv": "2020-10-02", "st": _iso(now - 300), "se": _iso(now + ttl), "sr": "c", "sp": permissions}
        q["sig"] = self._sign(string_to_sign(self.account, container, q))
        with self._lock:
            self._issued_until = max(self._issued_until, now + ttl)
        return urlencode(q)

    def container_url(self, container: str, **kw: float | str) -> str:
        return f"{self.base_url}/{self.account}/{container}?{self.sas(container, **kw)}"  # type: ignore[arg-type]

    def check_sas(self, container: str, q: dict[str, str], need: str) -> tuple | None:
        """None when the SAS allows `need` ('l' list, 'r' read) now; else (status, code, message, extra)."""
        if not q.get("sv") or not q.get("se") or q.get("sr") not in ("c", "b"):
            return (
                403,
                "AuthenticationFailed",
                _AUTH_FAILED,
                {"AuthenticationErrorDetail": "sv, se and sr are mandatory."},
            )
        if not hmac.compare_digest(q.get("sig", ""), self._sign(string_to_sign(self.account, container, q))):
            detail = f"Signature did not match. String to sign used was {q.get('sp', '')}"
            return (
                403,
                "AuthenticationFailed",
                _AUTH_FAILED,
                {"AuthenticationErrorDetail": detail},
            )
        now = self.now()
        start, expiry = _parse_iso(q.get("st", "")) if q.get("st") else None, _parse_iso(q["se"])
        if expiry is None or now > expiry or (start is not None and now < start):
            cur = dt.datetime.fromtimestamp(now, dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
            detail = (
                f"Signature not valid in the specified time frame: Start [{q.get('st', '')}] - "
                f"Expiry [{q.get('se', '')}] - Current [{cur}]"
            )
            return (
                403,
                "AuthenticationFailed",
                _AUTH_FAILED,
                {"AuthenticationErrorDetail": detail},
            )
        if need not in q.get("sp", ""):
            return (
                403,
                "AuthorizationPermissionMismatch",
                "This request is not authorized to perform this operation using this permission.",
                {},
            )
        return None
