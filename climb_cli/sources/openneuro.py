"""OpenNeuro datasets (`kind: openneuro`): ``dataset: ds005237`` at a pinned snapshot ``tag: 1.0.0``, files
chosen with the usual include/exclude globs (paths relative to the dataset root, BIDS layout).

Protocol (as openneuro-py 2026.9.1 speaks it; docs/sources-protocols.md, "OpenNeuro"): GraphQL
``POST https://openneuro.org/crn/graphql`` with ``{"query": ...}``: ``dataset(id){snapshots{id}}`` to check
that the tag exists (ids are ``<ds>:<tag>``), then ``snapshot(datasetId, tag){files(recursive: true)
{filename urls size id}}`` for the flat file list. There is no checksum in the listing: a file's bytes come
from ``urls[0]`` (the public S3 bucket ``openneuro.org``, ``?versionId=`` pinned), whose ``ETag`` is the
MD5 for single-part uploads; climb takes it when it is a plain 32-hex value (as the official client does)
and otherwise checks the size (and, under ``checksums: pinned``, the first download's sha256).

The API key (``OPENNEURO_API_KEY``, or openneuro-py's own ``config.json``: ``climb auth login openneuro``
writes it there) is needed only for restricted datasets. It is sent as the cookie ``accessToken`` to the
OpenNeuro origin only -- never to the bucket or to a host a URL or a redirect names. A presigned link that
expired is replaced by listing the snapshot again.
"""

from __future__ import annotations

import json
from typing import Any

import requests
from pydantic import Field

from climb_cli import credentials, redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.net import retry, signed
from climb_cli.net.retry import RETRY_STATUS, RetryPolicy
from climb_cli.net.session import origin
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected
from climb_cli.sources.http import (
    HeaderAuth,
    checked,
    error_body,
    fetch,
    json_or_none,
    md5_from_headers,
    paths_from_listing,
    probe_access,
    save_listing,
    selected_from_listing,
)

DEFAULT_URL = "https://openneuro.org"
NO_ACCESS = "You do not have access to read this dataset."
#: HTTP answers openneuro-py retries (its allowed_retry_codes), and GraphQL error messages it treats as a
#: gateway timeout
_RETRY_STATUS = frozenset(RETRY_STATUS | {522, 524})
_TRANSIENT_PREFIXES = ("504", "502", "connect ECONNREFUSED")
_SNAPSHOTS = 'query { dataset(id: "%s") { snapshots { id } } }'
_FILES = (
    'query { snapshot(datasetId: "%s", tag: "%s") { id files(recursive: true) { filename urls size id } } }'
)


def _first_error(data: Any) -> str | None:
    """The first GraphQL error message of a response body, if it has any."""
    errors = data.get("errors") if isinstance(data, dict) else None
    if not errors:
        return None
    first = errors[0] if isinstance(errors, list) else errors
    return str(first.get("message", "")) if isinstance(first, dict) else str(first)


def _transient_message(message: str | None) -> bool:
    return message is not None and (
        message.startswith(_TRANSIENT_PREFIXES)
        or message.endswith("due to timeout")
        or message == "fetch failed"
    )


class OpenNeuroParams(SourceParams):
    dataset: str = Field(pattern=r"^ds\d{6}$", description="OpenNeuro accession number (ds005237)")
    tag: str = Field(pattern=r"^[0-9A-Za-z][0-9A-Za-z.+-]*$", description="snapshot tag to pin (1.0.0)")


class OpenNeuroSource(Source):
    kind = "openneuro"
    Params = OpenNeuroParams
    params: OpenNeuroParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.base = self.settings.base_url("openneuro", DEFAULT_URL)
        self.graphql = f"{self.base}/crn/graphql"
        self.page = f"{self.base}/datasets/{self.params.dataset}/versions/{self.params.tag}"
        self._signed = signed.SignedUrls()

    def describe(self) -> str:
        return f"openneuro {self.params.dataset} {self.params.tag}"

    def credentials(self) -> credentials.Token | None:
        return credentials.openneuro()

    def _cookie(self, url: str) -> dict[str, str] | None:
        """The API key cookie, for a URL on the OpenNeuro origin only."""
        key = self.credentials()
        if key is None or origin(url) != origin(self.base):
            return None
        return {"Cookie": f"accessToken={key.value}"}

    # -- GraphQL --------------------------------------------------------------------------------
    def _query(self, query: str) -> dict[str, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        body = json.dumps({"query": query})
        auth = self._cookie(self.graphql)
        where = redaction.redact_url(self.graphql)

        def post() -> requests.Response:
            cookie = HeaderAuth(auth) if auth else None
            return self.session().post(
                self.graphql,
                data=body,
                headers=headers,
                timeout=self.timeout,
                auth=cookie,
                allow_redirects=False,
            )

        def transient(resp: requests.Response) -> bool:  # what openneuro-py retries, status or message
            return resp.status_code in _RETRY_STATUS or _transient_message(_first_error(json_or_none(resp)))

        policy = RetryPolicy.from_settings(self.settings, statuses=_RETRY_STATUS)
        try:
            resp = retry.send(policy, post, f"{self.recipe.name}: {where}", retry_if=transient)
        except (requests.ConnectionError, requests.Timeout) as e:
            raise TransferError(f"{self.recipe.name}: cannot reach {where} ({type(e).__name__})") from None
        data = json_or_none(resp)
        if not isinstance(data, dict):
            raise TransferError(
                f"{self.recipe.name}: OpenNeuro's GraphQL answered HTTP {resp.status_code} without JSON; "
                "try again later"
            )
        message = _first_error(data)
        if message is not None:
            if message == NO_ACCESS:
                raise self._no_access()
            raise TransferError(
                f"{self.recipe.name}: OpenNeuro refused the query for {self.params.dataset}: "
                f"{redaction.redact(message)[:160]}"
            )
        return data.get("data") or {}

    def _no_access(self) -> AccessError:
        key = self.credentials()
        if key is None:
            return AccessError(
                f"{self.recipe.name}: OpenNeuro {self.params.dataset} is restricted: get an API key at "
                f"{self.base} (My Account > Obtain an API Key), then run `climb auth login openneuro`"
            )
        return AccessError(
            f"{self.recipe.name}: the OpenNeuro API key from {key.origin} gives no access to "
            f"{self.params.dataset}; ask its owners for access at {self.base}/datasets/{self.params.dataset}"
        )

    # -- listing --------------------------------------------------------------------------------
    def _identity(self) -> dict[str, Any]:
        return {"dataset": self.params.dataset, "tag": self.params.tag}

    def _snapshot_files(self) -> list[RemoteFile]:
        ds, tag = self.params.dataset, self.params.tag
        dataset = self._query(_SNAPSHOTS % ds).get("dataset")
        if not isinstance(dataset, dict):
            raise AccessError(
                f"{self.recipe.name}: OpenNeuro has no dataset {ds}; check `dataset:` in the recipe"
            )
        tags = [str(s.get("id", "")).removeprefix(f"{ds}:") for s in dataset.get("snapshots") or []]
        if tag not in tags:
            raise RecipeError(
                f"{self.recipe.name}: OpenNeuro {ds} has no snapshot {tag!r} "
                f"(it has: {', '.join(tags) or 'none'}); fix `tag:` in the recipe"
            )
        snap = self._query(_FILES % (ds, tag)).get("snapshot")
        if not isinstance(snap, dict) or not isinstance(snap.get("files"), list):
            raise TransferError(f"{self.recipe.name}: OpenNeuro returned no file list for {ds} {tag}")
        out: list[RemoteFile] = []
        for f in snap["files"]:
            name = str(f.get("filename") or "")
            path = safe_relpath(name)
            if path is None:
                raise TransferError(f"{self.recipe.name}: OpenNeuro {ds} lists an unsafe file name {name!r}")
            urls = f.get("urls") or []
            size = f.get("size")
            url = requests.utils.requote_uri(str(urls[0])) if urls else ""
            out.append(RemoteFile(path, url, size if isinstance(size, int) else None))
        return out

    def list_files(self) -> list[RemoteFile]:
        files = self._snapshot_files()
        save_listing(self, self._identity(), files)
        chosen = [f for f in files if selected(f.path, self.spec)]
        gone = [f.path for f in chosen if not f.url.startswith(("https://", "http://"))]
        if gone:
            raise TransferError(
                f"{self.recipe.name}: OpenNeuro gives no URL for {gone[0]}"
                + (f" (and {len(gone) - 1} more)" if len(gone) > 1 else "")
                + f" of {self.params.dataset} {self.params.tag}: it may have been removed; exclude it"
            )
        return chosen

    def expected_files(self) -> list[RemoteFile] | None:
        return selected_from_listing(self, self._identity())

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    # -- transfer -------------------------------------------------------------------------------
    def _fresh_url(self, file: RemoteFile, fresh: bool) -> str:
        """The file's URL: the listed one, or (``fresh``: the last one was refused as expired) a new one from
        listing the snapshot again."""
        if not fresh:
            return file.url
        url = {f.path: f.url for f in self._snapshot_files()}.get(file.path)
        if not url:
            raise TransferError(f"{self.recipe.name}: {file.path} is no longer in {self.describe()}")
        return url

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def refused(status: int, where: str) -> AccessError:
            return AccessError(
                f"{self.recipe.name}: {where} refused {file.path} (HTTP {status}); the snapshot's file may "
                "be restricted or gone"
            )

        def get(url: str) -> requests.Response:
            plain = {**headers, "Accept-Encoding": "identity"}
            return fetch(self, url, headers=plain, auth=self._cookie(url))

        def expired(resp: requests.Response) -> bool:  # only a presigned link can expire
            return resp.status_code in signed.EXPIRED and signed.deadline(resp.request.url or "") is not None

        try:
            resp = self._signed.open(file.path, lambda fresh: self._fresh_url(file, fresh), get,
                                     expired=expired, discard=error_body)  # fmt: skip
        except signed.Refused as e:
            raise AccessError(
                f"{self.recipe.name}: the bucket refused {e.tries} fresh links for {file.path} "
                f"(HTTP {e.status})"
            ) from None
        return checked(self, file, resp, refused)

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        md5 = md5_from_headers(resp, trust_etag=True)  # S3: a single-part upload's ETag is its MD5
        return RemoteFile(file.path, file.url, file.size, file.sha256, md5) if md5 else file

    def check_access(self) -> AccessReport:
        who = "with an API key" if self.credentials() else "anonymously"
        return probe_access(self, lambda files: f"{self.describe()}: readable {who}", self.page)
