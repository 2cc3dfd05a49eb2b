"""PhysioNet (physionet.org, or any mirror running the same software).

Files live at /files/<slug>/<version>/<path>; SHA256SUMS.txt at the version root is both the file
list and the checksum source. The real server honours HTTP basic auth only for User-Agents that
begin with `Wget/` or `libwfdb/`; climb keeps identifying itself as climb and instead signs in
through the site's login form (as a browser does) and sends the session cookie, which the server
accepts from any client. A mirror that answers 401 with a Basic challenge (an nginx auth_basic
mirror, say) gets Basic credentials instead. Refusals become one line that says what to do.
With `--mirror aws-open` the bytes of an open project come from the public physionet-open bucket
(anonymous GETs, no credential ever sent there) while SHA256SUMS.txt still comes from PhysioNet, so
every file is checked against the same upstream sums whichever host served it. With `--mirror aws` the
bytes of any project, credentialed ones included, come from the AWS bucket PhysioNet shares with the
user's linked AWS account (CLIMB_PHYSIONET_AWS_BUCKET; files under <version>/), read with requests signed
by the user's AWS credentials (net/awsauth.py); SHA256SUMS.txt still comes from PhysioNet. With `--mirror gcs`
they come from the project's requester-pays bucket gs://<slug>-<version>.physionet.org (files at its root)
through the Cloud Storage JSON API, with the user's Google OAuth token and billing project (net/gcsauth.py).
"""

from __future__ import annotations

import html
import os
import re
import threading
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

from pydantic import Field, field_validator

from climb_cli import credentials, redaction
from climb_cli.errors import AccessError, TransferError, UsageError
from climb_cli.recipe import Recipe, SourceSpec
from climb_cli.settings import Settings
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected

if TYPE_CHECKING:
    import requests

DEFAULT_URL = "https://physionet.org"
# PhysioNet's open-data bucket on AWS: s3://physionet-open/<slug>/<version>/<path>, anonymous reads; its
# HTTPS form is what `aws s3 sync --no-sign-request` fetches (CLIMB_PHYSIONET_OPEN_URL points elsewhere).
OPEN_BUCKET_URL = "https://physionet-open.s3.amazonaws.com"
MIRRORS = ("origin", "aws-open", "aws", "gcs")
# A credentialed project's AWS copy: one bucket per project, files under <version>/ (sources.md 1.10). The
# bucket's name is shown on the project page once PhysioNet grants the user's AWS account; the naming rule
# is not documented, so it is a setting. CLIMB_PHYSIONET_AWS_URL points at an S3-compatible endpoint
# (path-style) instead of https://<bucket>.s3.amazonaws.com.
AWS_BUCKET_ENV = "CLIMB_PHYSIONET_AWS_BUCKET"
# A project's GCS copy: gs://<slug>-<version>.physionet.org, files at the bucket root, requester pays
# (sources.md 1.10), read through the JSON API (CLIMB_PHYSIONET_GCS_URL points at another endpoint;
# CLIMB_PHYSIONET_GCS_BUCKET names another bucket).
GCS_API_URL = "https://storage.googleapis.com"
GCS_BUCKET_ENV = "CLIMB_PHYSIONET_GCS_BUCKET"
CHECKSUMS = "SHA256SUMS.txt"
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_CSRF_INPUT = re.compile(r'name=["\']csrfmiddlewaretoken["\']\s+value=["\']([^"\']+)["\']')
_CSRF_INPUT_REV = re.compile(r'value=["\']([^"\']+)["\']\s+name=["\']csrfmiddlewaretoken["\']')
_LISTING_ROW = re.compile(r'<a href="([^"]+)">[^<]*</a>\s+\S+\s+\S+\s+(\d+|-)\s*$', re.M)


class PhysioNetParams(SourceParams):
    project: str = Field(pattern=r"^[\w-]+$", description="project slug, e.g. ptb-xl")
    version: str = Field(pattern=r"^\d+(\.\d+)*$", description="published version, e.g. 1.0.3")

    @field_validator("version", mode="before")
    @classmethod
    def _quoted(cls, v: object) -> object:
        if isinstance(v, int | float):
            raise ValueError(f'quote it: version: "{v}" (YAML reads an unquoted 1.10 as the number 1.1)')
        return v


def _gcs_message(r: requests.Response) -> str:
    """The message of a Cloud Storage JSON error ({"error": {"code", "message"}}), on one line."""
    try:
        message = str(r.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        message = r.reason or "no message"
    return redaction.redact(" ".join(message.split()))[:300]


def parse_sha256sums(text: str | Iterable[str], where: str) -> dict[str, str]:
    """Parse SHA256SUMS.txt order-independently: '<hex> <path>' (one or more spaces, optional '*').
    `text` is the whole file or its lines (an open file: read as it is parsed, never whole in memory).

    Absolute paths, '..' and malformed lines are rejected with the line number.
    """
    out: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines() if isinstance(text, str) else text, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        digest, _, rest = line.partition(" ")
        path = rest.lstrip(" ").removeprefix("*")
        if not _HEX64.match(digest) or not path:
            raise TransferError(f"{where}:{n}: not a '<sha256> <path>' line")
        clean = safe_relpath(path)
        if clean is None:
            raise TransferError(f"{where}:{n}: unsafe path {path!r} (absolute or with '..')")
        out[clean] = digest.lower()
    return out


class _UpstreamPaths(AbstractSet[str]):
    """SHA256SUMS.txt's paths and the checksum file itself: a view of the parsed sums, not a copy (a
    million paths as a new set: ~32 MB)."""

    def __init__(self, sums: dict[str, str]) -> None:
        self._sums = sums

    def __contains__(self, path: object) -> bool:
        return path in self._sums or path == CHECKSUMS

    def __iter__(self) -> Iterator[str]:
        yield CHECKSUMS
        yield from (p for p in self._sums if p != CHECKSUMS)

    def __len__(self) -> int:
        return len(self._sums) + (CHECKSUMS not in self._sums)


class PhysioNetSource(Source):
    kind = "physionet"
    Params = PhysioNetParams
    params: PhysioNetParams

    def __init__(self, recipe: Recipe, spec: SourceSpec, settings: Settings) -> None:
        super().__init__(recipe, spec, settings)
        self.base = self.settings.base_url("physionet", DEFAULT_URL)
        self.files_url = f"{self.base}/files/{self.params.project}/{self.params.version}/"
        self.page_url = f"{self.base}/content/{self.params.project}/{self.params.version}/"
        # File bytes may come from a cloud copy; the list and its sums always come from the origin, so a file
        # is checked against the same upstream SHA256SUMS.txt whichever host served it.
        self.bytes_url = self.files_url
        self.mirror = self.settings.mirror
        if self.mirror == "aws-open":
            bucket = self.settings.base_url("physionet-open", OPEN_BUCKET_URL)
            self.bytes_url = f"{bucket}/{self.params.project}/{self.params.version}/"
        self.aws_bucket = os.environ.get(AWS_BUCKET_ENV, "").strip() if self.mirror == "aws" else ""
        if self.aws_bucket:
            endpoint = self.settings.mirrors.get("physionet-aws")
            host = (
                f"{endpoint.rstrip('/')}/{self.aws_bucket}"
                if endpoint
                else f"https://{self.aws_bucket}.s3.amazonaws.com"
            )
            self.bytes_url = f"{host}/{self.params.version}/"
        self.gcs_bucket = ""
        if self.mirror == "gcs":
            slug, version = self.params.project, self.params.version
            self.gcs_bucket = os.environ.get(GCS_BUCKET_ENV, "").strip() or f"{slug}-{version}.physionet.org"
            api = self.settings.base_url("physionet-gcs", GCS_API_URL)
            self.bytes_url = f"{api}/storage/v1/b/{quote(self.gcs_bucket, safe='')}/o/"
        self._aws: Any = None  # net.awsauth.SigV4, resolved at the first file
        self._gcs: Any = None  # net.gcsauth.GoogleBearer, resolved at the first file
        self._auth_lock = threading.Lock()
        self._cookies: dict[str, str] = {}
        self._generation = 0  # bumped at each successful login
        self._account = ""  # the account signed in as (for the "signed in but not allowed" line)
        self._basic = False

    def describe(self) -> str:
        return f"physionet {self.params.project}/{self.params.version}"

    # -- credentials ----------------------------------------------------------------------------
    def _host(self) -> str:
        return urlsplit(self.base).hostname or ""

    def credentials(self) -> credentials.UserPassword | None:
        return credentials.physionet(self._host())

    def _login(self, seen_generation: int) -> None:
        """Sign in through the login form and keep the session cookie (once per expiry).

        Three outcomes are told apart: signed in (a new session, or the login view redirecting a
        session that is already signed in), the credentials refused (the form again, with its error),
        and the server failing (429/5xx after retries, a CSRF refusal, no form): each its own line."""
        from climb_cli.net.retry import RETRY_STATUS
        from climb_cli.sources._api import send_with_retry

        with self._auth_lock:
            if self._generation != seen_generation:
                return  # another thread logged in meanwhile
            creds = self.credentials()
            if creds is None:
                raise AccessError(self._needs_login_message(), reason="no credentials")
            s = self.session()
            login = f"{self.base}/login/"
            shown = redaction.redact_url(login)
            unreachable = f"{self.recipe.name}: cannot reach PhysioNet's sign-in page {shown}"
            current = dict(self._cookies)  # the session we hold, if any: the login view may know it
            r = send_with_retry(
                self,
                lambda: s.get(login, cookies=current or None, allow_redirects=False, timeout=self.timeout),
                unreachable,
                login,
            )
            with r:
                if r.status_code in (301, 302, 303) and current.get("sessionid"):
                    self._signed_in(current["sessionid"], creds.username)  # still signed in
                    return
                token = r.cookies.get("csrftoken") or s.cookies.get("csrftoken")
                m = _CSRF_INPUT.search(r.text) or _CSRF_INPUT_REV.search(r.text)
                if r.status_code != 200 or not m or not token:
                    raise AccessError(
                        f"{self.recipe.name}: cannot sign in to PhysioNet at {shown} "
                        f"(HTTP {r.status_code}, no login form); "
                        f"is {redaction.redact_url(self.base)} a PhysioNet server?",
                        reason="failed",
                    )
            form = {
                "csrfmiddlewaretoken": html.unescape(m.group(1)),
                "username": creds.username,
                "password": creds.password,
                "next": "/",
            }
            r = send_with_retry(
                self,
                lambda: s.post(
                    login,
                    data=form,
                    headers={"Referer": login},
                    cookies={"csrftoken": token},
                    allow_redirects=False,
                    timeout=self.timeout,
                ),
                unreachable,
                login,
            )
            with r:
                session_id = r.cookies.get("sessionid")
                if r.status_code in (301, 302, 303) and session_id:
                    self._signed_in(session_id, creds.username)
                    return
                if r.status_code == 200 and (_CSRF_INPUT.search(r.text) or _CSRF_INPUT_REV.search(r.text)):
                    raise AccessError(  # the form again, with its error: the credentials were refused
                        f"{self.recipe.name}: PhysioNet rejected the username/password of {creds.username!r} "
                        f"(from {creds.origin}); check them, or reset the password at "
                        f"{self.base}/reset-password/",
                        reason="credentials rejected",
                    )
                if r.status_code == 403 and "CSRF" in r.text:
                    why = "CSRF verification failed: the form's cookie did not come back (a proxy?)"
                elif r.status_code in RETRY_STATUS:
                    why = "the server is busy or failing; try again later"
                else:
                    why = "an unexpected answer"
                raise AccessError(
                    f"{self.recipe.name}: PhysioNet's sign-in at {shown} answered HTTP {r.status_code} "
                    f"({why}); this is not a password problem",
                    reason="failed",
                )

    def _signed_in(self, session_id: str, username: str) -> None:
        redaction.register(session_id)
        self._cookies = {"sessionid": session_id}
        self._account = username
        self._generation += 1

    def _needs_login_message(self) -> str:
        return (
            f"{self.recipe.name}: PhysioNet needs you to sign in for "
            f"{self.params.project}/{self.params.version}; set PHYSIONET_USERNAME and PHYSIONET_PASSWORD, "
            f"or add 'machine {self._host() or 'physionet.org'}' "
            f"to ~/.netrc (`climb auth login physionet`)"
        )

    def _denied_message(self) -> str:
        who = f"signed in to PhysioNet as {self._account!r}, but " if self._account else ""
        return (
            f"{self.recipe.name}: {who}your PhysioNet account may not download {self.params.project}/"
            f"{self.params.version} (credentialing, required training, or this version's data use "
            f"agreement): sign it at {self.page_url}"
        )

    # -- HTTP ------------------------------------------------------------------------------------
    def _aws_auth(self) -> Any:
        """The user's AWS credentials as a request signer (once per source), or one line saying what to do."""
        from climb_cli.net.awsauth import SigV4

        with self._auth_lock:
            if self._aws is None:
                self._aws = SigV4.resolve()
            if self._aws is None:
                raise AccessError(
                    f"{self.recipe.name}: --mirror aws reads s3://{self.aws_bucket} with your AWS "
                    f"credentials and none were found: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and "
                    f"AWS_SECRET_ACCESS_KEY) for the AWS account linked on {self.page_url}, or run "
                    f"`aws configure`",
                    reason="no credentials",
                )
            return self._aws

    def _gcs_auth(self) -> Any:
        """The user's Google credentials as a bearer-token auth with a billing project (once per source), or
        one line saying what to do."""
        from climb_cli.net.gcsauth import BILLING_ENV, LOGIN_HINT, GoogleBearer

        with self._auth_lock:
            if self._gcs is None:
                self._gcs = GoogleBearer.resolve(self.session())
            if self._gcs is None:
                raise AccessError(
                    f"{self.recipe.name}: --mirror gcs reads gs://{self.gcs_bucket} with your Google "
                    f"credentials and none were found: {LOGIN_HINT}",
                    reason="no credentials",
                )
            if not self._gcs.billing_project:
                raise AccessError(
                    f"{self.recipe.name}: gs://{self.gcs_bucket} is requester pays: set {BILLING_ENV} to the "
                    f"Google Cloud project to bill for the download (or GOOGLE_CLOUD_PROJECT)",
                    reason="no credentials",
                )
            return self._gcs

    def _open_gcs(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        """A JSON-API media GET from the GCS copy with the user's bearer token and billing project: a token
        refused (401) is refreshed once; a resume's If-Range becomes If-Match (what the JSON API documents),
        and an object changed since (412) is fetched whole. No PhysioNet cookie or password goes there."""
        from climb_cli.net.gcsauth import BILLING_ENV, LOGIN_HINT

        bearer = self._gcs_auth()
        headers = dict(headers)
        validator = headers.pop("If-Range", None)
        if validator and validator.endswith('"'):
            headers["If-Match"] = validator
        elif validator:
            headers.pop("Range", None)  # a date validator: GCS cannot check it, so take the whole object
        refreshed = False
        while True:
            r = self.session().get(
                file.url,
                params={"userProject": bearer.billing_project},
                headers=headers,
                auth=bearer,
                stream=True,
                timeout=self.timeout,
            )
            if r.status_code == 401 and not refreshed:
                r.close()
                refreshed = True
                bearer.refused(r.request.headers.get("Authorization", "").removeprefix("Bearer "))
                continue
            if r.status_code == 412 and "If-Match" in headers:
                r.close()
                headers.pop("If-Match")
                headers.pop("Range", None)  # changed since the part began: the whole object (a 200 restarts)
                continue
            break
        if r.status_code not in (400, 401, 403):
            return r
        why = _gcs_message(r)
        r.close()
        where = f"gs://{self.gcs_bucket}"
        who = bearer.account or "your Google account"
        if r.status_code == 401:
            msg = f"{where} did not accept the access token of {who} (HTTP 401: {why}); {LOGIN_HINT}"
            reason = "credentials rejected"
        elif "serviceusage" in why or r.status_code == 400:
            msg = (
                f"{where} is requester pays and did not take billing project {bearer.billing_project!r} "
                f"(HTTP {r.status_code}: {why}); set {BILLING_ENV} to a project with billing where {who} has "
                f"serviceusage.services.use"
            )
            reason = "access not granted"
        else:
            msg = (
                f"{where} refused {file.path} to {who} (HTTP 403): request Google Cloud access to "
                f"{self.params.project} on {self.page_url} with this Google account (PhysioNet adds it to "
                f"the project's Google group), or download with --mirror origin"
            )
            reason = "access not granted"
        raise AccessError(f"{self.recipe.name}: {msg}", reason=reason)

    def _open_mirror(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        """A GET from the cloud copy: anonymous for physionet-open; for --mirror aws signed with the user's
        AWS credentials (requester pays); for --mirror gcs see _open_gcs. No PhysioNet cookie or password ever
        goes to that host."""
        if self.mirror == "gcs":
            r = self._open_gcs(file, headers)
            if r.status_code != 404:
                return r
            r.close()
            raise AccessError(
                f"{self.recipe.name}: {file.path} is not in gs://{self.gcs_bucket} (HTTP 404); not every "
                f"project is mirrored: download from PhysioNet itself with --mirror origin"
            )
        auth = self._aws_auth() if self.mirror == "aws" else None
        if auth is not None:
            headers = {**headers, "x-amz-request-payer": "requester"}
        r = self.session().get(file.url, headers=headers, auth=auth, stream=True, timeout=self.timeout)
        if auth is not None and r.status_code in (401, 403):
            r.close()
            raise AccessError(
                f"{self.recipe.name}: s3://{self.aws_bucket} refused {file.path} to your AWS credentials "
                f"(HTTP {r.status_code}): link this AWS account to {self.params.project} on {self.page_url} "
                f"(cloud access), check {AWS_BUCKET_ENV}, or download with --mirror origin",
                reason="access not granted",
            )
        if r.status_code in (401, 403, 404):
            r.close()
            raise AccessError(
                f"{self.recipe.name}: {file.path} is not in the {self.mirror} mirror "
                f"({redaction.redact_url(file.url)}: HTTP {r.status_code}); not every project is mirrored: "
                f"download from PhysioNet itself with --mirror origin"
            )
        return r

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        if self.bytes_url != self.files_url and file.url.startswith(self.bytes_url):
            return self._open_mirror(file, headers)
        s = self.session()
        if self.recipe.access != "open" and not self._cookies and not self._basic and self.credentials():
            self._login(self._generation)
        tried_login = tried_basic = False
        while True:
            generation = self._generation
            auth = None
            if self._basic:
                creds = self.credentials()
                auth = (creds.username, creds.password) if creds else None
            r = s.get(
                file.url,
                headers=headers,
                cookies=self._cookies or None,
                auth=auth,
                stream=True,
                timeout=self.timeout,
            )
            if (
                r.status_code == 401
                and not tried_basic
                and "basic" in r.headers.get("WWW-Authenticate", "").lower()
            ):
                r.close()
                tried_basic = True
                if self.credentials() is None:
                    raise AccessError(self._needs_login_message(), reason="no credentials")
                self._basic = True
                continue
            if r.status_code == 403 and not tried_login and self.credentials() is not None:
                r.close()
                tried_login = True
                self._login(generation)  # a first login, or a fresh session after expiry
                continue
            if r.status_code in (401, 403):
                r.close()
                if self.credentials() is None:
                    raise AccessError(self._needs_login_message(), reason="no credentials")
                if r.status_code == 401:
                    raise AccessError(
                        f"{self.recipe.name}: PhysioNet did not accept your credentials for "
                        f"{redaction.redact_url(file.url)} (HTTP 401)",
                        reason="credentials rejected",
                    )
                raise AccessError(self._denied_message(), reason="access not granted")
            if r.status_code == 404:
                r.close()
                raise AccessError(
                    f"{self.recipe.name}: not found on PhysioNet: {redaction.redact_url(file.url)} "
                    f"(check project/version in the recipe; the project page is {self.page_url})"
                )
            return r

    # -- listing ---------------------------------------------------------------------------------
    def _checksum_file(self) -> RemoteFile:
        return RemoteFile(path=CHECKSUMS, url=self.files_url + CHECKSUMS)

    def _all_upstream(self) -> dict[str, str] | None:
        """The stored SHA256SUMS.txt, parsed once per version of the file on disk."""
        local = self.raw_dir / CHECKSUMS
        try:
            st = local.stat()
        except FileNotFoundError:
            return None
        key = (st.st_size, st.st_mtime_ns)
        cached = getattr(self, "_sums_cache", None)
        if cached is None or cached[0] != key:
            with open(local, encoding="utf-8", errors="replace") as f:
                sums = parse_sha256sums(f, str(local))
            self._sums_cache = cached = (key, sums)
        return cached[1]

    def _remote(self, path: str, digest: str) -> RemoteFile:
        if self.gcs_bucket:  # the JSON API names an object in one path segment ('/' as %2F)
            return RemoteFile(
                path=path, url=f"{self.bytes_url}{quote(path, safe='')}?alt=media", sha256=digest
            )
        return RemoteFile(path=path, url=self.bytes_url + quote(path), sha256=digest)

    def list_files(self) -> list[RemoteFile]:
        """Fetch SHA256SUMS.txt once (a published version never changes), then select from it."""
        if self.mirror not in MIRRORS:
            raise UsageError(f"--mirror {self.mirror!r}: PhysioNet mirrors are {', '.join(MIRRORS)}")
        if self.mirror == "aws" and not self.aws_bucket:
            raise UsageError(
                f"{self.recipe.name}: --mirror aws reads the AWS bucket PhysioNet shares with your linked "
                f"AWS account: set {AWS_BUCKET_ENV} to the bucket named on {self.page_url} (cloud access)"
            )
        if self.mirror == "aws-open" and self.recipe.access != "open":
            slug, version = self.params.project, self.params.version
            raise AccessError(
                f"{self.recipe.name}: the physionet-open bucket holds open projects only and this one is "
                f"{self.recipe.access}; its cloud copies are per-user grants: --mirror aws (a bucket "
                f"PhysioNet opens to your AWS account) or --mirror gcs (requester-pays "
                f"gs://{slug}-{version}.physionet.org for your Google account), or download with "
                f"--mirror origin"
            )
        if self._all_upstream() is None:
            from climb_cli.transfer import fetch_one

            fetch_one(self, self._checksum_file(), self.raw_dir / CHECKSUMS)
        return self.expected_files() or []

    def expected_files(self) -> list[RemoteFile] | None:
        sums = self._all_upstream()
        if sums is None:
            return None
        return [self._remote(p, d) for p, d in sorted(sums.items()) if selected(p, self.spec)]

    def upstream_paths(self) -> AbstractSet[str] | None:
        """Every file the upstream version holds (selected or not), plus the checksum file itself."""
        sums = self._all_upstream()
        return None if sums is None else _UpstreamPaths(sums)

    def sizes(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """Sizes from the directory listings (one request per folder, not one per file)."""
        folders = sorted({f.path.rpartition("/")[0] for f in files})
        found: dict[str, int] = {}

        def listing(folder: str) -> dict[str, int]:
            url = self.files_url + (quote(folder) + "/" if folder else "")
            r = self.open(RemoteFile(folder + "/", url), {})
            try:
                if r.status_code != 200:
                    return {}
                out = {}
                for href, size in _LISTING_ROW.findall(r.text):
                    if size != "-" and not href.endswith("/"):
                        name = unquote(href)
                        out[f"{folder}/{name}" if folder else name] = int(size)
                return out
            finally:
                r.close()

        with ThreadPoolExecutor(self.settings.connections_per_host) as pool:
            for part in pool.map(listing, folders):
                found.update(part)
        return [RemoteFile(f.path, f.url, found.get(f.path, f.size), f.sha256, f.md5) for f in files]

    def check_access(self) -> AccessReport:
        import requests

        try:
            r = self.open(self._checksum_file(), {"Range": "bytes=0-0"})
            r.close()
        except AccessError as e:
            return AccessReport(
                self.recipe.name, self.spec.id, False, str(e), self.page_url, reason=e.reason or ""
            )
        except TransferError as e:  # a certificate or host-name failure: one line, said as it is
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        ok = r.status_code in (200, 206)
        return AccessReport(
            self.recipe.name, self.spec.id, ok, f"HTTP {r.status_code}", "" if ok else self.page_url
        )
