"""Stanford AIMI datasets (`kind: aimi`): an Azure Blob container read with the SAS URL AIMI hands out.

After accepting a dataset's research use agreement on stanfordaimi.azurewebsites.net, the site shows an
Azure container URL with a shared access signature (``https://<account>.blob.core.windows.net/<container>
?sv=..&se=<expiry>&sr=c&sp=rl&sig=..``); that URL *is* the credential. ``climb auth login aimi`` stores it
(``~/.config/climb/aimi/<container>.sas``, mode 0600), or ``AIMI_SAS_URL`` gives one. A recipe names the
container::

    - kind: aimi
      container: chexpertchestxrays-u20210408
      prefix: CheXpert-v1.0/            # optional: list only under this prefix
      page: https://stanfordaimi.azurewebsites.net/datasets/<id>   # where to accept the agreement

Listing: List Blobs (``?restype=container&comp=list``, pages of up to 5000 followed through ``NextMarker``),
with ``Content-Length`` and ``Content-MD5`` (base64 MD5; blank for blobs uploaded in blocks, which then need
``checksums: pinned``). Bytes: Get Blob with ``Range``; a resume pins the version with ``If-Match: <ETag>``
(Azure does not document ``If-Range``), and a 412 (the blob changed) restarts the file from byte 0. The SAS
rides in the query string of every request and nowhere else: it never goes into a RemoteFile, a listing, a
manifest or a message (``sig`` is masked, and the URL, query and signature are registered secrets), and
redirects are not followed (Azure Blob does not redirect; a 3xx is an error, so the SAS cannot travel).

An expired SAS is 403 ``AuthenticationFailed`` ("Signature not valid in the specified time frame"): the
message says when it expired and how to get a new one; the partial file stays for a resume.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

import requests
from pydantic import Field

from climb_cli import credentials, redaction
from climb_cli.credentials import Token
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net.session import ClimbSession
from climb_cli.settings import Settings
from climb_cli.sources.base import (
    USER_AGENT,
    AccessReport,
    RemoteFile,
    Source,
    SourceParams,
    safe_relpath,
    selected,
)
from climb_cli.sources.http import (
    REDIRECTS,
    api_get,
    error_body,
    fetch,
    load_listing,
    paths_from_listing,
    save_listing,
    unpinned_line,
)

API_VERSION = "2021-08-06"  # x-ms-version climb sends (any version since 2019-02-02 answers the same XML)
AIMI_SITE = "https://stanfordaimi.azurewebsites.net/datasets"
PAGE = 5000


class AimiParams(SourceParams):
    container: str = Field(
        pattern=r"^[a-z0-9](?:[a-z0-9-]{1,61})[a-z0-9]$", description="Azure container name"
    )
    prefix: str = Field("", description="list only blobs under this prefix")
    page: str = Field(AIMI_SITE, description="the dataset's page (where its agreement is accepted)")


def _split(sas_url: str) -> tuple[str, str]:
    """(container URL without query, SAS query string)."""
    parts = urlsplit(sas_url)
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}", parts.query


def _expiry(query: str) -> dt.datetime | None:
    se = dict(parse_qsl(query)).get("se", "")
    for fmt in ("%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%MZ", "%Y-%m-%d"):
        try:
            return dt.datetime.strptime(se, fmt).replace(tzinfo=dt.UTC)
        except ValueError:
            continue
    return None


def _error(resp: requests.Response) -> tuple[str, str]:
    """(x-ms-error-code or <Code>, AuthenticationErrorDetail or Message) of an Azure error answer."""
    try:
        body = resp.content[:65536]  # error documents are small
    except requests.RequestException:
        body = b""
    finally:
        resp.close()
    code = resp.headers.get("x-ms-error-code", "")
    detail = ""
    try:
        root = ET.fromstring(body.decode("utf-8-sig", "replace").strip() or "<Error/>")
        code = code or (root.findtext("Code") or "")
        detail = root.findtext("AuthenticationErrorDetail") or (root.findtext("Message") or "").split("\n")[0]
    except ET.ParseError:
        pass
    return code, redaction.redact(detail)


def _md5_hex(b64: str | None) -> str | None:
    if not b64:
        return None
    try:
        raw = base64.b64decode(b64.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 16 else None


class AimiSource(Source):
    kind = "aimi"
    Params = AimiParams
    params: AimiParams

    def describe(self) -> str:
        return f"aimi container {self.params.container}"

    # -- the SAS ---------------------------------------------------------------------------------
    def credentials(self) -> Token | None:
        return credentials.aimi(self.params.container)

    def _sas(self) -> tuple[str, str]:
        tok = self.credentials()
        if tok is None:
            raise AccessError(
                f"{self.recipe.name}: no Stanford AIMI URL for container {self.params.container}: accept the "
                f"agreement at {self.params.page}, copy the Azure container URL it shows, and run "
                "`climb auth login aimi` (or set AIMI_SAS_URL)"
            )
        return _split(tok.value)

    def _refusal(self, resp: requests.Response, what: str) -> AccessError | TransferError:
        code, detail = _error(resp)
        tok = self.credentials()
        where = tok.origin if tok else "?"
        name, c = self.recipe.name, self.params.container
        if resp.status_code == 403 and code == "AuthenticationFailed":
            exp = _expiry(self._sas()[1])
            if "time frame" in detail or (exp is not None and exp < dt.datetime.now(dt.UTC)):
                when = exp.strftime("%Y-%m-%d %H:%M UTC") if exp else "?"
                return AccessError(
                    f"{name}: the Stanford AIMI URL for {c} (from {where}) expired on {when}: get a new one "
                    f"at {self.params.page} and run `climb auth login aimi`; downloaded files stay and resume"
                )
            return AccessError(
                f"{name}: Azure rejected the AIMI URL for {c} (from {where}): {code} ({detail}); copy the "
                f"container URL again from {self.params.page} and run `climb auth login aimi`"
            )
        if resp.status_code == 403:
            return AccessError(
                f"{name}: the AIMI URL for {c} (from {where}) does not allow {what} ({code}): it needs "
                "permissions r and l (sp=rl); get a new one at " + self.params.page
            )
        if resp.status_code == 404:
            return AccessError(
                f"{name}: {what} not found in Azure container {c} (HTTP 404 {code}); check `container:` and "
                "`prefix:` in the recipe against the URL from " + self.params.page
            )
        return TransferError(f"{name}: Azure answered HTTP {resp.status_code} {code} for {what}")

    # -- listing ---------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"container": self.params.container, "prefix": self.params.prefix}

    def _list_page(self, marker: str, maxresults: int = PAGE) -> tuple[list[RemoteFile], str]:
        base, sas = self._sas()
        q: dict[str, str] = {"restype": "container", "comp": "list", "maxresults": str(maxresults)}
        if self.params.prefix:
            q["prefix"] = self.params.prefix
        if marker:
            q["marker"] = marker
        url = f"{base}?{urlencode(q)}&{sas}"
        resp = api_get(
            self, url, headers={"x-ms-version": API_VERSION, "Accept": "application/xml"}, follow=False
        )
        if resp.status_code != 200:
            raise self._refusal(resp, f"the listing of container {self.params.container}")
        try:
            root = ET.fromstring(resp.content.decode("utf-8-sig"))
        except (ET.ParseError, UnicodeDecodeError):
            raise TransferError(
                f"{self.recipe.name}: {redaction.redact_url(url)} did not answer a blob listing"
            ) from None
        out: list[RemoteFile] = []
        for blob in root.iter("Blob"):
            el = blob.find("Name")
            raw = (el.text or "") if el is not None else ""
            name = unquote(raw) if el is not None and el.get("Encoded") == "true" else raw
            props = blob.find("Properties")
            size = props.findtext("Content-Length") if props is not None else None
            md5 = _md5_hex(props.findtext("Content-MD5")) if props is not None else None
            if name.endswith("/") and size in ("0", None):
                continue  # a folder placeholder
            path = safe_relpath(name)
            if path is None:
                raise TransferError(
                    f"{self.recipe.name}: container {self.params.container} has an unsafe blob name {name!r}"
                )
            out.append(RemoteFile(path, f"{base}/{quote(name)}", int(size) if size else None, None, md5))
        return out, root.findtext("NextMarker") or ""

    def _listing(self) -> list[RemoteFile]:
        files: list[RemoteFile] = []
        marker, pages = "", 0
        while True:
            page, marker = self._list_page(marker)
            files.extend(page)
            pages += 1
            if not marker:
                return files
            if pages > 100_000:
                raise TransferError(
                    f"{self.recipe.name}: the listing of {self.params.container} does not end"
                )

    def list_files(self) -> list[RemoteFile]:
        every = self._listing()
        save_listing(self, self._identity(), every)
        files = [f for f in every if selected(f.path, self.spec)]
        unpinned = [f.path for f in files if not f.md5]
        if unpinned and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, unpinned))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        files = load_listing(self, self._identity())
        return None if files is None else [f for f in files if selected(f.path, self.spec)]

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- transfer --------------------------------------------------------------------------------
    def _get(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        _, sas = self._sas()
        h = {**headers, "x-ms-version": API_VERSION}
        validator = h.pop("If-Range", None)
        if validator and validator.startswith('"') and "Range" in h:
            h["If-Match"] = validator  # the version of the bytes already on disk
        elif "Range" in h and validator:
            del h["Range"]  # a date validator cannot pin a blob version: fetch it whole
        resp = fetch(self, f"{file.url}?{sas}", headers=h, follow=False)
        if resp.status_code in REDIRECTS:
            resp.close()
            raise TransferError(
                f"{self.recipe.name}: Azure answered a redirect (HTTP {resp.status_code}) for {file.path}; "
                "not followed, so the SAS stays with its host"
            )
        return resp

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        resp = self._get(file, headers)
        if resp.status_code == 412 and "Range" in headers:  # changed since the partial file was written
            error_body(resp)
            rest = {k: v for k, v in headers.items() if k not in ("Range", "If-Range")}
            resp = self._get(file, rest)
        if resp.status_code in (401, 403, 404):
            raise self._refusal(resp, file.path)
        return resp

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        md5 = _md5_hex(resp.headers.get("Content-MD5") or resp.headers.get("x-ms-blob-content-md5"))
        return RemoteFile(file.path, file.url, file.size, file.sha256, md5) if md5 else file

    def check_access(self) -> AccessReport:
        name, sid = self.recipe.name, self.spec.id
        try:
            files, _ = self._list_page("", maxresults=1)
            if files:
                self.open(files[0], {"Range": "bytes=0-0"}).close()
        except AccessError as e:
            return AccessReport(name, sid, False, str(e), self.params.page)
        except TransferError as e:
            return AccessReport(name, sid, False, str(e))
        except requests.RequestException as e:
            return AccessReport(name, sid, False, f"network error: {type(e).__name__}")
        exp = _expiry(self._sas()[1])
        until = f" (the URL expires {exp:%Y-%m-%d})" if exp else ""
        return AccessReport(name, sid, True, f"container {self.params.container} readable{until}")

    @classmethod
    def check_login(cls, settings: Settings, token: Token) -> str:
        """`climb auth login aimi`: list one blob with the URL; AccessError when Azure refuses it."""
        base, sas = _split(token.value)
        s = ClimbSession(USER_AGENT)  # environment proxies and CA bundle, as every other request
        try:
            r = s.get(
                f"{base}?restype=container&comp=list&maxresults=1&{sas}",
                headers={"x-ms-version": API_VERSION},
                timeout=(settings.connect_timeout, settings.read_timeout),
                allow_redirects=False,
            )
        finally:
            s.close()
        if r.status_code == 200:
            exp = _expiry(sas)
            return f"Azure accepted the URL for container {credentials.aimi_container(token.value)}" + (
                f" (valid until {exp:%Y-%m-%d %H:%M} UTC)" if exp else ""
            )
        code, detail = _error(r)
        if r.status_code >= 500:
            raise requests.HTTPError(f"HTTP {r.status_code}")
        if "time frame" in detail:
            raise AccessError(f"the URL has expired ({detail}); get a new one from the dataset's AIMI page")
        raise AccessError(
            f"Azure refused the URL (HTTP {r.status_code} {code}{': ' + detail if detail else ''})"
        )
