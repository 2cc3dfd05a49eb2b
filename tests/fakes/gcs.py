"""A fake Google Cloud Storage JSON API and a fake Google OAuth 2.0 token endpoint, on 127.0.0.1.

They stand in for ``storage.googleapis.com`` and ``oauth2.googleapis.com/token`` in the tests of
``--mirror gcs`` (PhysioNet's requester-pays buckets ``gs://<slug>-<version>.physionet.org``), and are proven
by Google's own client (google-cloud-storage + google-auth, unmodified) in tests/fakes/test_gcs_fake.py.

:class:`FakeGoogleOAuth` (``POST /token``), as google-auth's ``oauth2/_client.py`` speaks to it:

* ``grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer`` with ``assertion=<JWT>`` (a service-account
  key file): the JWT's RS256 signature is checked with the public half of the key :meth:`service_account`
  made, and its claims as Google checks them (``iss`` = the account's e-mail, ``aud`` =
  ``https://oauth2.googleapis.com/token`` whatever the ``token_uri``, ``exp`` in the future and at most an
  hour after ``iat``, a ``scope``). A bad signature is 400 ``invalid_grant`` "Invalid JWT Signature.".
* ``grant_type=refresh_token`` with ``client_id``, ``client_secret`` and ``refresh_token`` (an authorized-user
  file from ``gcloud auth application-default login``, :meth:`authorized_user`); a wrong one is 400
  ``invalid_grant``.
* Success: ``{"access_token", "expires_in", "token_type": "Bearer"}``. ``lifetime`` sets ``expires_in``;
  :meth:`expire_all` makes every token issued so far invalid (a token that expired in the middle of a run);
  ``stale_next`` issues that many tokens already invalid (revoked before their first use).

:class:`FakeGCS` (JSON API, path style as the emulators and ``STORAGE_EMULATOR_HOST`` use it):

* ``GET /storage/v1/b/<bucket>/o/<object>`` (metadata, ``alt=json``) and the same with ``alt=media`` (the
  bytes), also under ``/download/storage/v1/...`` (the path google-cloud-storage downloads from). The object
  name is one percent-encoded path segment (``/`` as ``%2F``); an unencoded ``/`` names nothing (404).
* Media: ``x-goog-hash: crc32c=<b64>,md5=<b64>``, ``x-goog-generation``, ``x-goog-metageneration``,
  ``x-goog-stored-content-length``, ``x-goog-stored-content-encoding: identity``, an ``ETag``; ``Range`` ->
  206, ``If-Match`` with another ETag -> 412 ``conditionNotMet`` (the JSON API documents If-Match and
  If-None-Match, not If-Range).
* Auth, in the order Google answers: no ``Authorization`` -> 401 "Anonymous caller does not have
  storage.objects.get access ..."; an unknown or expired bearer token -> 401 ``authError`` "Invalid
  Credentials" with ``WWW-Authenticate: Bearer``; a requester-pays bucket without ``userProject`` (query) or
  ``x-goog-user-project`` (header) -> 400 "Bucket is a requester pays bucket but no user project provided."
  (reason ``required``); a user project the caller may not bill -> 403 "... does not have
  serviceusage.services.use access to the Google Cloud project ..."; a caller outside the bucket's readers
  (PhysioNet's Google group) -> 403 "... does not have storage.objects.get access to the Google Cloud Storage
  object ..."; a missing bucket or object -> 404. Errors are JSON: ``{"error": {"code", "message",
  "errors": [{"message", "domain", "reason"}]}}``.

Faults (the shared plan) apply to media bodies, matched against ``/<bucket>/<object>``. Every request's
headers are kept in :attr:`FakeGCS.seen` (and :attr:`FakeGoogleOAuth.seen`) for the credential tests.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan, _changed_etag
from tests.fakes.bucket import serve_file

__all__ = ["FakeGCS", "FakeGoogleOAuth", "GcsBucket", "GcsObject", "TOKEN_MARK"]

#: part of every access token the fake issues (tests/conftest.py SECRETS: a leak fails the test)
TOKEN_MARK = "gcs-tok-Zorkmid-4b7e-secret"
REFRESH_MARK = "gcs-refresh-Frobnitz-2c8a-secret"
CLIENT_SECRET = "gcs-client-Quendor-7d1b-secret"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"  # the aud google-auth puts in every grant JWT
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
STORAGE_SCOPES = (
    "https://www.googleapis.com/auth/devstorage.read_only",
    "https://www.googleapis.com/auth/devstorage.read_write",
    "https://www.googleapis.com/auth/devstorage.full_control",
    "https://www.googleapis.com/auth/cloud-platform",
    "https://www.googleapis.com/auth/cloud-platform.read-only",
)


def _b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names


class _Recording(BaseFakeHandler):
    def note(self) -> None:
        self.fake.seen.append(Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))

    def json_answer(
        self, status: int, doc: dict[str, Any], headers: list[tuple[str, str]] | None = None
    ) -> None:
        body = json.dumps(doc).encode()
        self.respond(status, body, content_type="application/json; charset=UTF-8", headers=headers or [])


# ------------------------------------------------------------------------------------- the token endpoint
class _OAuthHandler(_Recording):
    server_header = "scaffolding on HTTPServer2"

    def route(self) -> None:
        self.note()
        fake: FakeGoogleOAuth = self.fake
        if self.command != "POST" or self.url_path != "/token":
            self.json_answer(404, {"error": "not_found"})
            return
        form = {k: v[-1] for k, v in parse_qs(self.read_body().decode(errors="replace")).items()}
        grant = form.get("grant_type", "")
        if grant == JWT_GRANT:
            principal, why = fake.check_assertion(form.get("assertion", ""))
        elif grant == "refresh_token":
            principal, why = fake.check_refresh(form)
        else:
            principal, why = None, "unsupported_grant_type"
        if principal is None:
            error, _, description = why.partition(": ")
            self.json_answer(400, {"error": error, "error_description": description or error})
            return
        token = fake.issue(principal)
        self.json_answer(200, {"access_token": token, "expires_in": fake.lifetime, "token_type": "Bearer"})


@dataclass
class _ServiceAccount:
    email: str
    key_id: str
    public_key: rsa.RSAPublicKey


class FakeGoogleOAuth(FakeHTTPServer):
    """Google's OAuth 2.0 token endpoint: service-account JWT grants and authorized-user refresh grants."""

    handler_class = _OAuthHandler

    def __init__(self, *, lifetime: int = 3599, **kw: Any) -> None:
        super().__init__(**kw)
        self.lifetime = lifetime
        self.seen: list[Seen] = []
        self._lock = threading.Lock()
        self._accounts: dict[str, _ServiceAccount] = {}
        self._refresh: dict[str, tuple[str, str, str]] = {}  # refresh token -> (client id, secret, principal)
        self._tokens: dict[str, tuple[str, float]] = {}  # access token -> (principal, expiry)
        self.expire_on_drop = False  # FakeGCS: a drop fault expires every token issued so far
        self.stale_next = 0  # issue that many tokens already expired (revoked before their first use)

    @property
    def token_uri(self) -> str:
        return f"{self.base_url}/token"

    # -- credentials files -------------------------------------------------------------------------
    def service_account(self, email: str, project_id: str) -> dict[str, str]:
        """A new service account: the key file Google's console hands out (token_uri: this fake)."""
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        key_id = secrets.token_hex(20)
        with self._lock:
            self._accounts[email] = _ServiceAccount(email, key_id, key.public_key())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        return {
            "type": "service_account",
            "project_id": project_id,
            "private_key_id": key_id,
            "private_key": pem,
            "client_email": email,
            "client_id": str(secrets.randbelow(10**20)),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": self.token_uri,
        }

    def authorized_user(self, email: str, quota_project_id: str | None = None) -> dict[str, str]:
        """What `gcloud auth application-default login` writes (token_uri added: this fake)."""
        client_id = f"{secrets.randbelow(10**12)}-fake.apps.googleusercontent.com"
        refresh = f"1//{REFRESH_MARK}.{secrets.token_urlsafe(12)}"
        with self._lock:
            self._refresh[refresh] = (client_id, CLIENT_SECRET, email)
        info = {
            "type": "authorized_user",
            "client_id": client_id,
            "client_secret": CLIENT_SECRET,
            "refresh_token": refresh,
            "token_uri": self.token_uri,
            "account": email,
        }
        if quota_project_id:
            info["quota_project_id"] = quota_project_id
        return info

    # -- grants ------------------------------------------------------------------------------------
    def check_assertion(self, assertion: str) -> tuple[str | None, str]:
        """The principal of a valid JWT-bearer assertion, else (None, '<error>: <description>')."""
        try:
            head_b64, claims_b64, sig_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(sig_b64)
        except ValueError:
            return (
                None,
                "invalid_grant: Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            )
        if header.get("alg") != "RS256":
            return None, "invalid_grant: Invalid JWT Signature."
        with self._lock:
            account = self._accounts.get(str(claims.get("iss", "")))
        if account is None:
            return None, "invalid_grant: Invalid grant: account not found"
        try:
            account.public_key.verify(
                signature, f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256()
            )
        except InvalidSignature:
            return None, "invalid_grant: Invalid JWT Signature."
        now = time.time()
        iat, exp = claims.get("iat"), claims.get("exp")
        if (
            not isinstance(iat, int)
            or not isinstance(exp, int)
            or exp <= now
            or iat > now + 60
            or exp - iat > 3600
        ):
            return (
                None,
                "invalid_grant: Invalid JWT: Token must be a short-lived token and in a reasonable timeframe",
            )
        if claims.get("aud") != GOOGLE_TOKEN_AUDIENCE:
            return None, "invalid_grant: Invalid JWT: Failed audience check."
        if not claims.get("scope"):
            return None, "invalid_scope: Invalid OAuth scope or ID token audience provided."
        return account.email, ""

    def check_refresh(self, form: dict[str, str]) -> tuple[str | None, str]:
        with self._lock:
            known = self._refresh.get(form.get("refresh_token", ""))
        if known is None or (form.get("client_id"), form.get("client_secret")) != known[:2]:
            return None, "invalid_grant: Bad Request"
        return known[2], ""

    def issue(self, principal: str) -> str:
        token = f"ya29.{TOKEN_MARK}.{secrets.token_urlsafe(24)}"
        with self._lock:
            stale, self.stale_next = self.stale_next > 0, max(0, self.stale_next - 1)
            self._tokens[token] = (principal, 0.0 if stale else time.time() + self.lifetime)
        return token

    def principal(self, token: str) -> str | None:
        """Whose token this is, or None when it is unknown or expired."""
        with self._lock:
            known = self._tokens.get(token)
        if known is None or known[1] <= time.time():
            return None
        return known[0]

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = {t: (p, 0.0) for t, (p, _) in self._tokens.items()}

    def grants(self) -> int:
        """Token requests answered 200 so far."""
        return sum(1 for r in self.log if r.path.startswith("/token") and r.status == 200)


# ------------------------------------------------------------------------------------------- storage
@dataclass
class GcsObject:
    data: bytes
    generation: int
    updated: float
    content_type: str = "application/octet-stream"

    @property
    def md5_b64(self) -> str:
        return base64.b64encode(hashlib.md5(self.data).digest()).decode()

    @property
    def crc32c_b64(self) -> str:
        import google_crc32c

        return base64.b64encode(google_crc32c.Checksum(self.data).digest()).decode()

    @property
    def etag(self) -> str:
        # the JSON API's etag is an opaque token of generation and metageneration
        raw = self.generation.to_bytes(8, "big") + b"\x10\x01"
        return '"' + base64.b64encode(raw).decode() + '"'


@dataclass
class GcsBucket:
    name: str
    requester_pays: bool = True
    readers: set[str] = field(default_factory=set)  # principals (the project's Google group)
    objects: dict[str, GcsObject] = field(default_factory=dict)


def _error(code: int, message: str, reason: str, **extra: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason, **extra}],
        }
    }


class _GcsHandler(_Recording):
    server_header = "UploadServer"

    def route(self) -> None:
        self.note()
        fake: FakeGCS = self.fake
        raw = urlsplit(self.path).path
        for prefix in ("/download/storage/v1/b/", "/storage/v1/b/"):
            if raw.startswith(prefix):
                break
        else:
            self.json_answer(404, _error(404, "Not Found", "notFound"))
            return
        bucket_part, sep, object_part = raw[len(prefix) :].partition("/o/")
        if not sep or "/" in object_part or not object_part or self.command not in ("GET", "HEAD"):
            self.json_answer(404, _error(404, "Not Found", "notFound"))
            return
        bucket_name, name = unquote(bucket_part), unquote(object_part)
        query = {k: v[-1] for k, v in self.query.items()}
        media = query.get("alt") == "media"
        # 1. who is calling
        auth = self.headers.get("Authorization", "")
        if not auth:
            what = "object" if media or name else "bucket"
            self.json_answer(
                401,
                _error(
                    401,
                    f"Anonymous caller does not have storage.objects.get access to the Google Cloud Storage "
                    f"{what}. Permission 'storage.objects.get' denied on resource (or it may not exist).",
                    "required",
                    locationType="header",
                    location="Authorization",
                ),
            )
            return
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else ""
        principal = fake.oauth.principal(token) if token else None
        if principal is None:
            self.json_answer(
                401,
                _error(
                    401, "Invalid Credentials", "authError", locationType="header", location="Authorization"
                ),
                headers=[
                    ("WWW-Authenticate", 'Bearer realm="https://accounts.google.com/", error="invalid_token"')
                ],
            )
            return
        bucket = fake.buckets.get(bucket_name)
        if bucket is None:
            self.json_answer(404, _error(404, "The specified bucket does not exist.", "notFound"))
            return
        # 2. who pays
        user_project = query.get("userProject") or self.headers.get("x-goog-user-project")
        if bucket.requester_pays and not user_project:
            message = "Bucket is a requester pays bucket but no user project provided."
            self.json_answer(400, _error(400, message, "required"))
            return
        if user_project and user_project not in fake.billing.get(principal, set()):
            message = (
                f"{principal} does not have serviceusage.services.use access to the Google Cloud project. "
                f"Permission 'serviceusage.services.use' denied on resource (or it may not exist)."
            )
            self.json_answer(403, _error(403, message, "forbidden"))
            return
        # 3. may they read it
        if principal not in bucket.readers:
            message = (
                f"{principal} does not have storage.objects.get access to the Google Cloud Storage object. "
                f"Permission 'storage.objects.get' denied on resource (or it may not exist)."
            )
            self.json_answer(403, _error(403, message, "forbidden"))
            return
        obj = bucket.objects.get(name)
        if obj is None:
            self.json_answer(404, _error(404, f"No such object: {bucket_name}/{name}", "notFound"))
            return
        fake.reads.append((principal, user_project or ""))
        if not media:
            self.json_answer(200, fake.metadata(bucket_name, name, obj))
            return
        fault = self.file_fault(path=f"/{bucket_name}/{name}")
        etag = _changed_etag(obj.etag) if fault is not None and fault.kind == "change" else obj.etag
        if_match = self.headers.get("If-Match")
        if if_match is not None and if_match != etag:
            self.fault_kind = fault.kind if fault is not None else None
            message = "At least one of the pre-conditions you specified did not hold."
            error = _error(412, message, "conditionNotMet", locationType="header", location="If-Match")
            self.json_answer(412, error)
            return
        headers = [
            ("x-goog-hash", f"crc32c={obj.crc32c_b64},md5={obj.md5_b64}"),
            ("x-goog-generation", str(obj.generation)),
            ("x-goog-metageneration", "1"),
            ("x-goog-stored-content-length", str(len(obj.data))),
            ("x-goog-stored-content-encoding", "identity"),
            ("X-GUploader-UploadID", secrets.token_urlsafe(30)),
        ]
        # serve_bytes, plus: a drop armed with RESET resets; on_drop runs before the client can see the drop
        serve_file(
            self,
            obj.data,
            content_type=obj.content_type,
            mtime=obj.updated,
            etag=obj.etag,
            extra_headers=headers,
            fault=fault,
            on_drop=fake.oauth.expire_all if fake.oauth.expire_on_drop else None,
        )


class FakeGCS(FakeHTTPServer):
    """The Cloud Storage JSON API over the buckets in :attr:`buckets`, trusting tokens from ``oauth``."""

    handler_class = _GcsHandler

    def __init__(self, oauth: FakeGoogleOAuth, *, faults: FaultPlan | None = None, **kw: Any) -> None:
        super().__init__(faults=faults, **kw)
        self.oauth = oauth
        self.buckets: dict[str, GcsBucket] = {}
        self.billing: dict[
            str, set[str]
        ] = {}  # principal -> projects it may bill (serviceusage.services.use)
        self.seen: list[Seen] = []
        self.reads: list[tuple[str, str]] = []  # (principal, user project) of every granted read
        self._generation = int(time.time() * 1e6)

    def bucket(self, name: str, *, requester_pays: bool = True, readers: set[str] | None = None) -> GcsBucket:
        b = self.buckets[name] = GcsBucket(name, requester_pays, set(readers or ()))
        return b

    def put(
        self, bucket: str, name: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> GcsObject:
        self._generation += 1
        obj = GcsObject(data, self._generation, time.time(), content_type)
        self.buckets[bucket].objects[name] = obj
        return obj

    def metadata(self, bucket: str, name: str, obj: GcsObject) -> dict[str, Any]:
        from urllib.parse import quote

        stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(obj.updated))
        path = f"b/{quote(bucket, safe='')}/o/{quote(name, safe='')}"
        return {
            "kind": "storage#object",
            "id": f"{bucket}/{name}/{obj.generation}",
            "selfLink": f"{self.base_url}/storage/v1/{path}",
            "mediaLink": f"{self.base_url}/download/storage/v1/{path}?generation={obj.generation}&alt=media",
            "name": name,
            "bucket": bucket,
            "generation": str(obj.generation),
            "metageneration": "1",
            "contentType": obj.content_type,
            "storageClass": "STANDARD",
            "size": str(len(obj.data)),
            "md5Hash": obj.md5_b64,
            "crc32c": obj.crc32c_b64,
            "etag": obj.etag.strip('"'),
            "timeCreated": stamp,
            "updated": stamp,
        }
