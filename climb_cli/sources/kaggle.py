"""Kaggle datasets (``owner/slug``, optionally a pinned version) and competitions.

Protocol (sources.md §2, corrected by §10 #1-#9): climb speaks Kaggle's **RPC** API, ``POST
https://api.kaggle.com/v1/<service>/<Method>`` with a camelCase JSON body -- the protocol of the current
official client (kaggle 2.x / kagglesdk), which accepts both credential kinds (new access tokens as
``Bearer``, legacy ``username``/``key`` as Basic).  The legacy ``GET www.kaggle.com/api/v1/...`` paths still
exist but are only documented for Basic keys, so they are not the robust choice.

* Listing: ``datasets.DatasetApiService/ListDatasetFiles`` (``datasetVersionNumber``, ``pageToken`` ->
  ``nextPageToken``) or ``competitions.CompetitionApiService/ListDataFiles``.  A dataset without a version
  in the recipe is pinned to ``GetDataset.currentVersionNumber`` at listing time, so a resume or a verify is
  always against the bytes of one version.  The listing (with sizes) is kept under
  ``raw/<dataset>/.climb/listing-<source id>.json`` for ``climb verify``.
* Download: one file at a time (``DownloadDataset`` with ``fileName`` and ``raw: true``, or
  ``DownloadDataFile``), or the whole bundle zip with ``whole_archive: true`` (``<slug>.zip`` /
  ``<competition>.zip``: a normal file here; unpacking it is the archive step's job).  The API answers **302**
  to a signed storage URL on another host: climb follows it itself, **without** the credential, caches it
  until shortly before it expires, and on an expired link (GCS 400 ``ExpiredToken``, or a 403) asks the API
  for a fresh one; the engine then resumes with Range + If-Range.  A ``RemoteFile.url`` is therefore the API
  request (method + fields as a query string), the durable identity of the file, never a signed URL.
* Checksums: none in the listing; the storage answer's ``x-goog-hash: md5=<base64>`` is checked while
  streaming (``response_checksum``) and remembered for ``climb verify``.  Without it the recipe's checksum
  policy applies.
* Refusals, one line each: 401 (which credential, from where, how to make a new one), 403 rules not accepted
  (the competition's rules URL), 404 (unknown or private).  429 on the API is retried honouring Retry-After
  (by the engine for downloads, here for listing calls).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
import threading
import zipfile
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit

import requests
import urllib3
from pydantic import Field, model_validator

from climb_cli import credentials, redaction
from climb_cli.errors import AccessError, TransferError
from climb_cli.hashing import hash_file
from climb_cli.net import signed
from climb_cli.recipe import Recipe, SourceSpec
from climb_cli.settings import Settings
from climb_cli.sources import _api as shared_api
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected

DEFAULT_URL = "https://api.kaggle.com"
WEB = "https://www.kaggle.com"
DATASETS = "datasets.DatasetApiService"
COMPETITIONS = "competitions.CompetitionApiService"
PAGE_SIZE = 200
_RE_RESOLVE = 2  # fresh signed URLs per open() before giving up


class KaggleParams(SourceParams):
    dataset: str | None = Field(
        None, pattern=r"^[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*$", description="owner/slug of a dataset"
    )
    version: int | None = Field(None, ge=1, description="dataset version number (default: the current one)")
    competition: str | None = Field(None, pattern=r"^[A-Za-z0-9][\w-]*$", description="competition name")
    whole_archive: bool = Field(False, description="download the one bundle zip instead of file by file")

    @model_validator(mode="after")
    def _one_kind(self) -> KaggleParams:
        if (self.dataset is None) == (self.competition is None):
            raise ValueError("give exactly one of 'dataset' (owner/slug) or 'competition'")
        if self.version is not None and self.dataset is None:
            raise ValueError("'version' applies to a dataset, not a competition")
        return self


def _md5_from_goog_hash(value: str | None) -> str | None:
    """The hex MD5 in ``x-goog-hash: crc32c=<b64>,md5=<b64>`` (None when absent, e.g. composite objects)."""
    for part in (value or "").split(","):
        name, _, b64 = part.strip().partition("=")
        if name.lower() == "md5" and b64:
            try:
                digest = base64.b64decode(b64.strip(), validate=True)
            except (binascii.Error, ValueError):
                return None
            return digest.hex() if len(digest) == 16 else None
    return None


def _error_message(resp: requests.Response) -> str:
    """Kaggle's JSON error text (legacy ``{"code","message"}`` or RPC ``{"error":{...}}``), redacted."""
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        message = inner.get("message") if isinstance(inner, dict) else None
        if isinstance(message, str):
            return redaction.redact(" ".join(message.split()))[:300]
    return ""


class KaggleSource(Source):
    kind = "kaggle"
    Params = KaggleParams
    params: KaggleParams

    def __init__(self, recipe: Recipe, spec: SourceSpec, settings: Settings) -> None:
        super().__init__(recipe, spec, settings)
        self.base = self.settings.base_url("kaggle", DEFAULT_URL)
        self._signed = signed.SignedUrls(tries=_RE_RESOLVE + 1)
        self._lock = threading.Lock()
        self._wrappers: set[str] = set()  # identities of files Kaggle offered only zipped
        self._version: int | None = self.params.version

    # -- names and places -----------------------------------------------------------------------
    @property
    def ref(self) -> str:
        return self.params.dataset or self.params.competition or ""

    @property
    def page_url(self) -> str:
        if self.params.competition:
            return f"{WEB}/competitions/{self.params.competition}"
        version = f"/versions/{self._version}" if self._version else ""
        return f"{WEB}/datasets/{self.params.dataset}{version}"

    @property
    def rules_url(self) -> str:
        return f"{WEB}/competitions/{self.params.competition}/rules"

    def describe(self) -> str:
        if self.params.competition:
            return f"kaggle competition {self.params.competition}"
        return f"kaggle dataset {self.params.dataset}" + (
            f" v{self.params.version}" if self.params.version else ""
        )

    @property
    def listing_path(self) -> Path:
        return shared_api.listing_path(self)

    @property
    def sums_path(self) -> Path:
        return self.listing_path.with_name(f"listing-{self.spec.id}.sums.jsonl")

    def _rpc_url(self, service: str, method: str) -> str:
        return f"{self.base}/v1/{service}/{method}"

    # -- credentials ------------------------------------------------------------------------------
    def credentials(self) -> credentials.Token | None:
        return credentials.kaggle()

    def _auth(self) -> tuple[dict[str, str], tuple[str, str] | None]:
        creds = self.credentials()
        if creds is None:
            return {}, None
        if creds.scheme == "Basic":
            return {}, (creds.username, creds.value)
        return {"Authorization": f"Bearer {creds.value}"}, None

    def _looked_in(self) -> str:
        config = credentials.kaggle_config_dir() / "kaggle.json"
        return f"KAGGLE_API_TOKEN, ~/.kaggle/access_token, KAGGLE_USERNAME/KAGGLE_KEY and {config}"

    def _no_credentials_message(self) -> str:
        what = f"competition {self.params.competition}" if self.params.competition else self.params.dataset
        return (
            f"{self.recipe.name}: Kaggle needs you to sign in for {what}; "
            f"climb looked in {self._looked_in()}: "
            f"create an API token at {WEB}/settings/api and run `climb auth login kaggle`"
        )

    def _refusal(self, resp: requests.Response) -> AccessError:
        """The one line for a 401/403/404 from the API."""
        creds = self.credentials()
        status, message = resp.status_code, _error_message(resp)
        if status == 401:
            if creds is None:
                return AccessError(self._no_credentials_message())
            return AccessError(
                f"{self.recipe.name}: Kaggle did not accept the credentials from {creds.origin} (HTTP 401); "
                f"create a new API token at {WEB}/settings/api and run `climb auth login kaggle`",
                reason="credentials rejected",
            )
        if status == 403 and self.params.competition and "rules" in message.lower():
            return AccessError(
                f"{self.recipe.name}: you have not accepted the rules of the Kaggle competition "
                f"{self.params.competition}: accept them at {self.rules_url}, then run climb again"
            )
        if status == 403 and self.params.competition and creds is None:
            return AccessError(self._no_credentials_message())
        if status in (403, 404):
            if self.params.competition:
                what = f"competition {self.params.competition}"
            else:
                version = f" version {self._version}" if self._version else ""
                what = f"dataset {self.params.dataset}{version}"
            hint = (
                "check the recipe, or sign in with an account that may see it"
                if creds is None
                else f"check the recipe, or whether the account from {creds.origin} may see it"
            )
            detail = f": {message}" if message else ""
            return AccessError(
                f"{self.recipe.name}: Kaggle refused {what} (HTTP {status}{detail}); {hint} ({self.page_url})"
            )
        return AccessError(f"{self.recipe.name}: Kaggle refused the request (HTTP {status}: {message})")

    # -- API calls ----------------------------------------------------------------------------------
    def _post(self, url: str, body: dict[str, Any], **kw: Any) -> requests.Response:
        headers, auth = self._auth()
        return self.session().post(
            url,
            data=json.dumps(body),
            headers={**headers, "Content-Type": "application/json", "Accept": "application/json"},
            auth=auth,
            timeout=self.timeout,
            allow_redirects=False,
            **kw,
        )

    def _api(self, service: str, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """One JSON RPC call, retried (small budget) on connection errors, 429 and 5xx with Retry-After."""
        url = self._rpc_url(service, method)
        r = shared_api.send_with_retry(
            self,
            lambda: self._post(url, body),
            f"{self.recipe.name}: cannot reach Kaggle at {redaction.redact_url(url)}",
            url,
        )
        with r:
            if r.status_code in (401, 403, 404):
                raise self._refusal(r)
            if r.status_code != 200:
                detail = _error_message(r)
                raise TransferError(
                    f"{self.recipe.name}: Kaggle answered HTTP {r.status_code} to {method}"
                    + (f" ({detail})" if detail else "")
                )
            try:
                data = r.json()
            except ValueError:
                raise TransferError(f"{self.recipe.name}: Kaggle's {method} answer is not JSON") from None
            if not isinstance(data, dict):
                raise TransferError(f"{self.recipe.name}: Kaggle's {method} answer is not a JSON object")
            if isinstance(data.get("code"), int) and data["code"] >= 400:  # kagglesdk's own rule
                raise TransferError(f"{self.recipe.name}: Kaggle {method}: {_error_message(r)}")
            return data

    # -- listing ------------------------------------------------------------------------------------
    def _identity(self, method: str, fields: dict[str, Any]) -> str:
        """The durable URL of one download: the RPC method with its request fields as a query string."""
        service = COMPETITIONS if self.params.competition else DATASETS
        query = urlencode([(k, str(v).lower() if isinstance(v, bool) else str(v)) for k, v in fields.items()])
        return f"{self._rpc_url(service, method)}?{query}"

    def _body(self, url: str) -> tuple[str, dict[str, Any]]:
        """(RPC URL, JSON body) back from an identity URL."""
        parts = urlsplit(url)
        body: dict[str, Any] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            if k == "datasetVersionNumber":
                body[k] = int(v)
            elif k == "raw":
                body[k] = v == "true"
            else:
                body[k] = v
        return f"{parts.scheme}://{parts.netloc}{parts.path}", body

    def _resolve_version(self) -> int | None:
        if self.params.dataset is None:
            return None
        if self._version is None:
            owner, slug = self.params.dataset.split("/", 1)
            data = self._api(DATASETS, "GetDataset", {"ownerSlug": owner, "datasetSlug": slug})
            number = data.get("currentVersionNumber")
            if isinstance(number, int) and number > 0:
                self._version = number
        return self._version

    def _list_upstream(self, *, first_page_only: bool = False) -> list[tuple[str, int | None]]:
        """(name, size) of every upstream file, following nextPageToken."""
        if self.params.competition:
            service, method, key = COMPETITIONS, "ListDataFiles", "files"
            body: dict[str, Any] = {"competitionName": self.params.competition}
        else:
            owner, slug = (self.params.dataset or "/").split("/", 1)
            service, method, key = DATASETS, "ListDatasetFiles", "datasetFiles"
            body = {"ownerSlug": owner, "datasetSlug": slug}
            if self._version:
                body["datasetVersionNumber"] = self._version
        out: list[tuple[str, int | None]] = []
        seen_tokens: set[str] = set()
        token = ""
        while True:
            page = self._api(
                service, method, {**body, "pageSize": PAGE_SIZE, **({"pageToken": token} if token else {})}
            )
            if page.get("errorMessage"):
                raise AccessError(
                    f"{self.recipe.name}: Kaggle: {redaction.redact(str(page['errorMessage']))}"
                )
            for item in page.get(key) or []:
                name = item.get("name") or item.get("ref")
                size = item.get("totalBytes")
                if isinstance(name, str):
                    out.append(
                        (name, int(size) if isinstance(size, int | str) and str(size).isdigit() else None)
                    )
            token = str(page.get("nextPageToken") or "")
            if not token or first_page_only:
                return out
            if token in seen_tokens:
                raise TransferError(f"{self.recipe.name}: Kaggle's {method} repeats page token {token!r}")
            seen_tokens.add(token)

    def list_files(self) -> list[RemoteFile]:
        version = self._resolve_version()
        upstream = self._list_upstream()
        files: list[RemoteFile] = []
        if self.params.whole_archive:
            name = (
                f"{self.params.competition}.zip"
                if self.params.competition
                else f"{self.ref.split('/')[1]}.zip"
            )
            files.append(RemoteFile(name, self._download_identity(None)))
        else:
            for name, size in upstream:
                clean = safe_relpath(name)
                if clean is None:
                    raise TransferError(f"{self.recipe.name}: Kaggle lists an unsafe file name {name!r}")
                if selected(clean, self.spec):
                    files.append(RemoteFile(clean, self._download_identity(name), size))
        files = self._with_learned_sums(files)
        listing = {
            "kind": self.kind,
            "params": self.params_dict(),
            "version": version,
            "files": [{"path": f.path, "url": f.url, "size": f.size, "md5": f.md5} for f in files],
            "upstream": [n for n, _ in upstream],
        }
        shared_api.write_atomic(self.listing_path, json.dumps(listing, indent=1, sort_keys=True))
        return files

    def _download_identity(self, name: str | None) -> str:
        if self.params.competition:
            fields: dict[str, Any] = {"competitionName": self.params.competition}
            if name is None:
                return self._identity("DownloadDataFiles", fields)
            return self._identity("DownloadDataFile", {**fields, "fileName": name})
        owner, slug = (self.params.dataset or "/").split("/", 1)
        fields = {"ownerSlug": owner, "datasetSlug": slug}
        if self._version:
            fields["datasetVersionNumber"] = self._version
        if name is not None:
            fields.update(fileName=name, raw=True)
        return self._identity("DownloadDataset", fields)

    def _load_listing(self) -> dict[str, Any] | None:
        return shared_api.load_params_listing(self)

    def _learned_sums(self) -> dict[str, str]:
        out: dict[str, str] = {}
        try:
            lines = self.sums_path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return out
        for line in lines:
            try:
                row = json.loads(line)
                out[redaction.redact_url(row["url"])] = row["md5"]
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def _with_learned_sums(self, files: list[RemoteFile]) -> list[RemoteFile]:
        sums = self._learned_sums()
        if not sums:
            return files
        return [
            RemoteFile(f.path, f.url, f.size, f.sha256, f.md5 or sums.get(redaction.redact_url(f.url)))
            for f in files
        ]

    def expected_files(self) -> list[RemoteFile] | None:
        data = self._load_listing()
        if data is None:
            return None
        files = [
            RemoteFile(row["path"], row["url"], row.get("size"), None, row.get("md5"))
            for row in data.get("files", [])
            if isinstance(row, dict) and "path" in row and "url" in row
        ]
        return self._with_learned_sums(files)

    def upstream_paths(self) -> set[str] | None:
        data = self._load_listing()
        if data is None:
            return None
        if self.params.whole_archive:
            return {row["path"] for row in data.get("files", [])}
        return {p for p in (safe_relpath(n) for n in data.get("upstream", [])) if p}

    # -- downloading --------------------------------------------------------------------------------
    def _resolve(self, file: RemoteFile) -> str | requests.Response:
        """A fresh signed storage URL for `file`, or the API's own non-redirect answer to pass on."""
        url, body = self._body(file.url)
        r = self._post(url, body, stream=True)
        if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("Location"):
            location = urljoin(url, r.headers["Location"])
            r.close()
            return location
        if r.status_code in (401, 403, 404):
            try:
                raise self._refusal(r)
            finally:
                r.close()
        if r.status_code == 200 and "json" in r.headers.get("Content-Type", ""):
            try:
                message = _error_message(r)
                data = r.json()
            except ValueError:
                data, message = None, ""
            finally:
                r.close()
            raise TransferError(
                f"{self.recipe.name}: Kaggle answered {file.path} with JSON instead of a download link"
                + (f" ({message})" if message else "")
                + (f": {json.dumps(data)[:200]}" if data and not message else "")
            )
        return r  # 429/5xx for the engine to retry, or a mirror that serves the bytes itself

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def get(target: str) -> requests.Response:
            wrapper = self._wrapper_name(file, target)
            if wrapper is not None:
                return self._open_zipped(file, wrapper)
            # A bare GET: no Authorization, no auth= -- the storage host never sees the credential.
            return self.session().get(target, headers=headers, stream=True, timeout=self.timeout)

        try:  # GCS ExpiredToken (400) or a refused/expired link (401/403): a fresh link
            return self._signed.open(file.url, lambda fresh: self._resolve(file), get)
        except signed.Refused:
            raise TransferError(
                f"{self.recipe.name}: Kaggle's storage refused {_RE_RESOLVE + 1} fresh download links "
                f"for {file.path}"
            ) from None

    def _wrapper_name(self, file: RemoteFile, link: str) -> str | None:
        """The name of the zip Kaggle wraps a large single file in (``compressed/<name>.zip``), or None
        when the link is to the file itself."""
        if self.params.whole_archive or file.path.lower().endswith(".zip"):
            return None
        base = urlsplit(link).path.rsplit("/", 1)[-1]
        if base.lower().endswith(".zip") and not base.lower().endswith(".zip.zip") and base != file.path:
            return base
        return None

    def _open_zipped(self, file: RemoteFile, wrapper: str) -> requests.Response:
        """A file Kaggle offers only zipped: fetch the zip (checked against storage's md5, resumable, like
        any file), check it holds just this one file of the listed size, unpack it (zip's CRC-32 checked),
        record both in ``.climb/wrapped-<source>.jsonl``, drop the zip, and hand the member to the engine
        as a local response, which hashes, size-checks and commits it like any download."""
        from climb_cli.transfer import fetch_one

        zip_rf = RemoteFile(f"{file.path}.zip", file.url)
        zip_path = self.raw_dir / ".climb" / "wrapped" / f"{file.path}.zip"
        with self._lock:
            self._wrappers.add(file.url)
        fetch_one(self, zip_rf, zip_path)
        name, want = self.recipe.name, file.path.rsplit("/", 1)[-1]
        member = tempfile.TemporaryFile(dir=zip_path.parent)  # noqa: SIM115 - handed on as the body
        try:
            with zipfile.ZipFile(zip_path) as zf:
                infos = [i for i in zf.infolist() if not i.is_dir()]
                if len(infos) != 1 or infos[0].filename.rsplit("/", 1)[-1] != want:
                    raise TransferError(
                        f"{name}: Kaggle's {wrapper} for {file.path} holds "
                        f"{', '.join(i.filename for i in infos[:3]) or 'nothing'}, not just {want}"
                    )
                info = infos[0]
                if file.size is not None and info.file_size != file.size:
                    raise TransferError(
                        f"{name}: {wrapper} holds {info.file_size} bytes of {want}; Kaggle lists {file.size}"
                    )
                sha, md5 = hashlib.sha256(), hashlib.md5()
                with zf.open(info) as src:  # reads no more than declared; checks the CRC-32 at the end
                    while chunk := src.read(1024 * 1024):
                        member.write(chunk)
                        sha.update(chunk)
                        md5.update(chunk)
        except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError) as e:
            member.close()
            raise TransferError(f"{name}: cannot unpack Kaggle's {wrapper} for {file.path}: {e}") from None
        except BaseException:
            member.close()
            raise
        record = {
            "path": file.path,
            "zip": wrapper,
            "zip_size": zip_path.stat().st_size,
            "zip_sha256": hash_file(zip_path, "sha256")["sha256"],
            "member_size": info.file_size,
            "member_crc32": f"{info.CRC:08x}",
            "member_sha256": sha.hexdigest(),
        }
        log = self.raw_dir / ".climb" / f"wrapped-{self.spec.id}.jsonl"
        with self._lock, open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, sort_keys=True) + "\n")
        zip_path.unlink()
        member.seek(0)
        return _local_response(member, info.file_size, base64.b64encode(md5.digest()).decode())

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        md5 = _md5_from_goog_hash(resp.headers.get("x-goog-hash"))
        if md5 is None or file.sha256 or file.md5:
            return file
        wrapper = file.url in self._wrappers and file.path.endswith(".zip")  # the zip, not the file
        if (
            not self.params.whole_archive and not wrapper
        ):  # a bundle zip may be rebuilt upstream: don't remember its sum
            line = json.dumps({"url": redaction.redact_url(file.url), "md5": md5}) + "\n"
            with self._lock:
                self.sums_path.parent.mkdir(parents=True, exist_ok=True)
                with open(self.sums_path, "a", encoding="utf-8") as f:
                    f.write(line)
        return RemoteFile(file.path, file.url, file.size, None, md5)

    # -- access -------------------------------------------------------------------------------------
    def check_access(self) -> AccessReport:
        """The file listing (first page); for a competition also whether its rules were accepted, by asking
        for one file's download link without following it."""
        name, sid = self.recipe.name, self.spec.id
        try:
            self._resolve_version()
            files = self._list_upstream(first_page_only=True)
            if self.params.competition and files:
                probe = RemoteFile(files[0][0], self._download_identity(files[0][0]))
                answer = self._resolve(probe)
                if isinstance(answer, requests.Response):
                    answer.close()
                    if answer.status_code != 200:
                        return AccessReport(
                            name, sid, False, f"HTTP {answer.status_code} from Kaggle", self.page_url
                        )
        except AccessError as e:
            step = self.rules_url if "rules" in str(e) else f"{WEB}/settings/api"
            if "refused" in str(e):
                step = self.page_url
            return AccessReport(name, sid, False, str(e), step)
        except TransferError as e:
            return AccessReport(name, sid, False, str(e))
        except requests.RequestException as e:
            return AccessReport(name, sid, False, f"network error: {type(e).__name__}")
        what = "competition data" if self.params.competition else "dataset files"
        return AccessReport(name, sid, True, f"{what} listed ({len(files)} on the first page)")


def _local_response(body: Any, size: int, md5_b64: str) -> requests.Response:
    """A 200 response whose body is a local file (an unpacked member), for the transfer engine."""
    headers = {"Content-Length": str(size), "x-goog-hash": f"md5={md5_b64}"}
    resp = requests.Response()
    resp.status_code = 200
    resp.headers = requests.structures.CaseInsensitiveDict(headers)
    resp.raw = urllib3.HTTPResponse(
        body=body, headers=headers, status=200, preload_content=False, decode_content=False
    )
    return resp
