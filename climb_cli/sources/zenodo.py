"""Zenodo records (`kind: zenodo`): `record: <id>`, files chosen with the usual include/exclude globs.

``record:`` is the record id or its DOI (``10.5281/zenodo.<id>``). Give a version's own id, not the
concept id of all versions, which follows the latest version. ``GET <base>/api/records/<id>`` lists the
files with ``checksum: "md5:<hex>"`` (the only sum Zenodo publishes) and ``links.self``
(``.../files/<key>/content``), which is what climb downloads. The listing is kept under
``raw/<dataset>/.climb/`` so that ``climb verify`` can check the files offline. Responses also carry
``Content-MD5`` (hex) and ``ETag: "md5:<hex>"``.

Zenodo rate-limits every request (``X-RateLimit-Limit/Remaining/Reset``, 429 with ``Retry-After``): climb
paces itself to the remaining budget, waiting for the window to reset rather than spending a request on a
sure 429, and the transfer engine retries a 429 after the server's ``Retry-After``.

A token (``ZENODO_TOKEN``, or ~/.config/climb/zenodo-token) is needed only for restricted records, and
only sent to them: climb asks anonymously first and sends the token only after a 401/403, so a stale
token never breaks an open record. It is sent as ``Authorization: Bearer`` — never in the query string,
where it would end up in URLs and logs — and only to the Zenodo host itself.
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import quote

import requests
from pydantic import Field, field_validator

from climb_cli import credentials, redaction
from climb_cli.archives import ArchiveOptions
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.sources.base import AccessReport, RemoteFile, Source, safe_relpath, selected
from climb_cli.sources.http import (
    RateBudget,
    api_get,
    bearer_auth,
    error_body,
    fetch,
    html_failure,
    is_html_page,
    json_or_none,
    md5_from_headers,
    paths_from_listing,
    rate_limit_line,
    save_listing,
    selected_from_listing,
)

DEFAULT_URL = "https://zenodo.org"
_MD5 = re.compile(r"^md5:([0-9a-fA-F]{32})$")
_DOI = re.compile(r"^(?:https?://(?:dx\.)?doi\.org/)?(?:10\.5281/zenodo\.)?(\d+)$", re.I)
_ETAG_MD5 = re.compile(r'^(?:W/)?"?md5:([0-9a-fA-F]{32})"?$')


class ZenodoParams(ArchiveOptions):
    record: int = Field(
        gt=0, description="record id (zenodo.org/records/<id>), or its DOI 10.5281/zenodo.<id>"
    )

    @field_validator("record", mode="before")
    @classmethod
    def _from_doi(cls, v: Any) -> Any:
        if isinstance(v, str) and (m := _DOI.match(v.strip())):
            return int(m.group(1))
        return v


class ZenodoSource(Source):
    kind = "zenodo"
    Params = ZenodoParams
    params: ZenodoParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.settings.base_url("zenodo", DEFAULT_URL)
        self.page = f"{self.base}/records/{self.params.record}"
        self.api = f"{self.base}/api/records/{self.params.record}"
        self.budget = RateBudget()
        self._send_token = False  # set once the record refused an anonymous request

    def describe(self) -> str:
        return f"zenodo record {self.params.record}"

    # -- credentials ----------------------------------------------------------------------------
    def credentials(self) -> credentials.Token | None:
        return credentials.zenodo()

    def _auth(self) -> dict[str, str] | None:
        return bearer_auth(self.credentials()) if self._send_token else None

    def _with_token_after_refusal(self, send: Any) -> requests.Response:
        """`send(auth)` anonymously (or with the token once the record needed it); on a 401/403 with
        a token at hand, once more with the token. Open records never see the token."""
        resp = send(self._auth())
        if resp.status_code in (401, 403) and not self._send_token and self.credentials() is not None:
            resp.close()
            self._send_token = True
            resp = send(self._auth())
        return resp

    def _refusal(self, status: int, message: str, what: str) -> AccessError:
        """One line for a 401/403/404/410 from Zenodo about `what` (the record, or one of its files)."""
        tok = self.credentials()
        rid, name = self.params.record, self.recipe.name
        if status in (404, 410):
            return AccessError(
                f"{name}: {what} not found on Zenodo (HTTP {status}); check `record: {rid}` in the recipe "
                f"({self.page})"
            )
        if status == 401 and tok is not None:
            return AccessError(
                f"{name}: Zenodo did not accept the token from {tok.origin} (HTTP 401); make a new personal "
                f"access token at {self.base}/account/settings/applications/tokens/new/",
                reason="credentials rejected",
            )
        if tok is None:
            return AccessError(
                f"{name}: Zenodo record {rid} is restricted: request access at {self.page}, then set "
                "ZENODO_TOKEN to a personal access token (or put it in ~/.config/climb/zenodo-token)"
            )
        detail = f" ({redaction.redact(message)[:120]})" if message else ""
        return AccessError(
            f"{name}: your Zenodo token (from {tok.origin}) gives no access to record {rid}{detail}: request "
            f"access at {self.page}"
        )

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"record": self.params.record}

    def _parse(self, body: Any) -> list[RemoteFile]:
        if not isinstance(body, dict):
            raise TransferError(
                f"{self.recipe.name}: {redaction.redact_url(self.api)} did not answer a record"
            )
        entries = body.get("files")
        if entries is None and isinstance(body.get("entries"), list):
            entries = body["entries"]
        if not entries:
            access = (body.get("metadata") or {}).get("access_right")
            if access in ("restricted", "closed", "embargoed"):
                raise self._refusal(403, f"files are {access}", f"record {self.params.record}")
            raise TransferError(f"{self.recipe.name}: Zenodo record {self.params.record} lists no files")
        out: list[RemoteFile] = []
        for e in entries:
            key = str(e.get("key") or e.get("filename") or "")
            path = safe_relpath(key)
            if path is None:
                raise TransferError(
                    f"{self.recipe.name}: Zenodo record {self.params.record} has an unsafe file name {key!r}"
                )
            m = _MD5.match(str(e.get("checksum") or ""))
            links = e.get("links") or {}
            url = links.get("content") if "entries" in body else links.get("self")
            url = (
                requests.utils.requote_uri(url) if url else f"{self.api}/files/{quote(key, safe='')}/content"
            )
            size = e.get("size", e.get("filesize"))
            out.append(RemoteFile(path, url, int(size) if size is not None else None, None,
                                  m.group(1).lower() if m else None))  # fmt: skip
        return out

    def _fetch_listing(self) -> list[RemoteFile]:
        resp = self._with_token_after_refusal(
            lambda auth: api_get(
                self, self.api, headers={"Accept": "application/json"}, auth=auth, budget=self.budget
            )
        )
        status = resp.status_code
        if status in (401, 403, 404, 410):
            body = json_or_none(resp) or {}
            raise self._refusal(status, str(body.get("message", "")), f"record {self.params.record}")
        if status in (429, 503) or status >= 500:
            raise TransferError(
                rate_limit_line(self, "Zenodo", resp, "try again later")
                if status == 429
                else f"{self.recipe.name}: Zenodo answered HTTP {status} for {redaction.redact_url(self.api)}"
            )
        if status != 200:
            raise TransferError(f"{self.recipe.name}: HTTP {status} for {redaction.redact_url(self.api)}")
        files = self._parse(json_or_none(resp))
        save_listing(self, self._identity(), files)
        return files

    def list_files(self) -> list[RemoteFile]:
        return [f for f in self._fetch_listing() if selected(f.path, self.spec)]

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def send(auth: dict[str, str] | None) -> requests.Response:
            self.budget.wait()
            resp = fetch(self, file.url, headers=headers, auth=auth)
            self.budget.update(resp)
            return resp

        resp = self._with_token_after_refusal(send)
        if resp.status_code in (401, 403, 404, 410):
            body = error_body(resp)
            message = ""
            if body.startswith(b"{"):
                try:
                    message = str(json.loads(body).get("message", ""))
                except (ValueError, AttributeError):
                    message = ""
            raise self._refusal(resp.status_code, message, f"{file.path} of record {self.params.record}")
        if resp.status_code in (200, 206) and is_html_page(file.path, resp):
            resp.close()
            raise html_failure(self, file, resp)
        return resp

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        m = _ETAG_MD5.match(resp.headers.get("ETag", "").strip())
        md5 = m.group(1).lower() if m else md5_from_headers(resp, trust_etag=False)
        return RemoteFile(file.path, file.url, file.size, file.sha256, md5) if md5 else file

    def check_access(self) -> AccessReport:
        try:
            files = self.list_files()
            if files:
                r = self.open(files[0], {"Range": "bytes=0-0"})
                r.close()
        except AccessError as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e), self.page)
        except (TransferError, RecipeError) as e:
            return AccessReport(self.recipe.name, self.spec.id, False, str(e))
        except requests.RequestException as e:
            return AccessReport(self.recipe.name, self.spec.id, False, f"network error: {type(e).__name__}")
        who = "with a token" if self._send_token else "anonymously"
        return AccessReport(
            self.recipe.name, self.spec.id, True, f"record {self.params.record} readable {who}"
        )
