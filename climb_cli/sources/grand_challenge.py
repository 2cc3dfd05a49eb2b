"""Grand Challenge (grand-challenge.org) archives: items -> images -> image files, plus File values.

Protocol (sources.md §3, corrected by §10 #10-#13): a Django REST Framework API under ``/api/v1/`` with
``Authorization: Bearer <token>`` (``credentials.grand_challenge()``: ``GRAND_CHALLENGE_TOKEN``, gcapi's
``GRAND_CHALLENGE_AUTHORIZATION``, or climb's token file) and limit/offset pagination (``count/next/previous/
results``; climb follows ``next``, only on the API's own host).

* Listing: the archive by slug (``/archives/?slug=``) or pk (``/archives/<pk>/``), its items
  (``/archives/items/?archive=<pk>``) and its images (``/cases/images/?archive=<pk>``, a detail request for
  any image the list missed).  Files land as gcapi lays out a socket value: ``<item pk>/<socket
  relative_path>/ <file name>`` for image files (``.mha``, ``.mhd`` + ``.raw``, ``.tif``; DZI tile pyramids
  are skipped), and ``<item pk>/<socket relative_path>`` for File values.  Value sockets (inline JSON) are
  not files: they stay in the stored listing ``raw/<dataset>/.climb/listing-<source id>.json``, which also
  serves ``climb verify``.
* Download: the media URL (on the API host, sent with the token) answers **302** to a CloudFront-signed URL
  valid 300 s on another host; climb follows it **without** the token, caches it until shortly before its
  ``Expires``, and on a 403/400 from the CDN (expired) asks the media URL for a fresh one -- the engine
  resumes with Range + If-Range, so an expiry mid-transfer costs no bytes.  The media URL is the file's
  durable identity (``RemoteFile.url``); the token is never sent to any other host.
* No checksums upstream: the recipe's checksum policy applies (``pinned``).
* Refusals, one line each: 401 (the token and where it came from), an invisible archive (join the challenge
  or request access at the archive page), 403 on media (no permission).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode, urljoin, urlsplit

import requests
from pydantic import Field

from climb_cli import credentials, redaction
from climb_cli.errors import AccessError, TransferError
from climb_cli.net import signed
from climb_cli.recipe import Recipe, SourceSpec
from climb_cli.settings import Settings
from climb_cli.sources import _api as shared_api
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected

DEFAULT_URL = "https://grand-challenge.org"
TOKEN_PAGE = "https://grand-challenge.org/settings/api-tokens/"
PAGE = 100
_MAX_PAGES = 100_000
_RE_RESOLVE = 2
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)


class GrandChallengeParams(SourceParams):
    archive: str = Field(pattern=r"^[\w-]+$", description="archive slug (as in its URL) or its pk (a UUID)")
    image_types: list[str] = Field(
        default_factory=lambda: ["MHD", "TIFF"], description="image file types to fetch (MHD, TIFF, DZI)"
    )


def _detail(resp: requests.Response) -> str:
    try:
        data = resp.json()
    except ValueError:
        return ""
    if isinstance(data, dict):
        if isinstance(data.get("detail"), str):
            return redaction.redact(data["detail"])[:200]
        return redaction.redact(json.dumps(data))[:200]
    return ""


class GrandChallengeSource(Source):
    kind = "grand-challenge"
    Params = GrandChallengeParams
    params: GrandChallengeParams

    def __init__(self, recipe: Recipe, spec: SourceSpec, settings: Settings) -> None:
        super().__init__(recipe, spec, settings)
        self.base = self.settings.base_url("grand-challenge", DEFAULT_URL)
        self.api = f"{self.base}/api/v1/"
        self._host = urlsplit(self.base).netloc
        self._signed = signed.SignedUrls(tries=_RE_RESOLVE + 1)
        self._archive_url: str | None = None

    def describe(self) -> str:
        return f"grand-challenge archive {self.params.archive}"

    @property
    def archive_page(self) -> str:
        if self._archive_url:
            return self._archive_url
        return f"{self.base}/archives/{self.params.archive}/"

    @property
    def listing_path(self) -> Path:
        return shared_api.listing_path(self)

    # -- credentials ------------------------------------------------------------------------------
    def credentials(self) -> credentials.Token | None:
        return credentials.grand_challenge()

    def _headers_for(self, url: str) -> dict[str, str]:
        """The token, only for the API's own host (scheme, host and port)."""
        creds = self.credentials()
        if (
            creds is None
            or urlsplit(url).netloc != self._host
            or urlsplit(url).scheme != urlsplit(self.base).scheme
        ):
            return {}
        return {"Authorization": f"Bearer {creds.value}"}

    def _token_line(self) -> str:
        return (
            f"set GRAND_CHALLENGE_TOKEN or run `climb auth login grand-challenge` "
            f"(tokens: {TOKEN_PAGE}; climb looked in GRAND_CHALLENGE_TOKEN, GRAND_CHALLENGE_AUTHORIZATION "
            "and "
            f"{credentials.config_dir() / 'grand-challenge-token'})"
        )

    def _invalid_token(self, resp: requests.Response) -> AccessError:
        creds = self.credentials()
        detail = _detail(resp) or "Invalid token."
        if creds is None:
            return AccessError(
                f"{self.recipe.name}: Grand Challenge asks for a token (HTTP 401): {self._token_line()}"
            )
        return AccessError(
            f"{self.recipe.name}: Grand Challenge rejected the token from {creds.origin} "
            f"(HTTP 401 {detail}); create a new one at {TOKEN_PAGE} "
            "and run `climb auth login grand-challenge`",
            reason="credentials rejected",
        )

    def _not_visible(self) -> AccessError:
        creds = self.credentials()
        if creds is None:
            return AccessError(
                f"{self.recipe.name}: Grand Challenge shows no archive {self.params.archive!r} "
                "without a token: "
                f"{self._token_line()}, and request access at {self.archive_page}"
            )
        return AccessError(
            f"{self.recipe.name}: the Grand Challenge archive {self.params.archive!r} is not visible to the "
            f"account of the token from {creds.origin}: join the challenge or request access at "
            f"{self.archive_page}"
        )

    # -- API ----------------------------------------------------------------------------------------
    def _get_json(self, url: str) -> Any:
        """One API GET, retried (small budget) on connection errors, 429 and 5xx honouring Retry-After."""
        if urlsplit(url).netloc != self._host:
            raise TransferError(
                f"{self.recipe.name}: Grand Challenge linked to another host: {redaction.redact_url(url)}"
            )
        r = shared_api.send_with_retry(
            self,
            lambda: self.session().get(
                url,
                headers={**self._headers_for(url), "Accept": "application/json"},
                timeout=self.timeout,
                allow_redirects=False,
            ),
            f"{self.recipe.name}: cannot reach Grand Challenge at {redaction.redact_url(url)}",
            url,
        )
        with r:
            if r.status_code == 401:
                raise self._invalid_token(r)
            if r.status_code in (403, 404):
                raise self._not_visible()
            if r.status_code == 400 and "archive" in _detail(r):
                raise self._not_visible()  # ?archive=<pk> of an archive that does not exist
            if r.status_code != 200:
                raise TransferError(
                    f"{self.recipe.name}: Grand Challenge answered HTTP {r.status_code} to "
                    f"{redaction.redact_url(url)}" + (f" ({_detail(r)})" if _detail(r) else "")
                )
            try:
                return r.json()
            except ValueError:
                raise TransferError(
                    f"{self.recipe.name}: Grand Challenge's answer to {redaction.redact_url(url)} is not JSON"
                ) from None

    def _pages(self, route: str, query: dict[str, str], *, first_only: bool = False) -> list[dict[str, Any]]:
        """Every result of a DRF list, following ``next``."""
        url: str | None = f"{self.api}{route}?{urlencode({**query, 'limit': PAGE, 'offset': 0})}"
        out: list[dict[str, Any]] = []
        seen: set[str] = set()
        while url:
            if url in seen or len(seen) > _MAX_PAGES:
                raise TransferError(f"{self.recipe.name}: Grand Challenge's pages of {route} loop")
            seen.add(url)
            page = self._get_json(url)
            if not isinstance(page, dict) or not isinstance(page.get("results"), list):
                raise TransferError(f"{self.recipe.name}: Grand Challenge's {route} is not a paginated list")
            out.extend(r for r in page["results"] if isinstance(r, dict))
            nxt = page.get("next")
            url = urljoin(url, nxt) if isinstance(nxt, str) and nxt and not first_only else None
        return out

    def _archive(self) -> dict[str, Any]:
        ref = self.params.archive
        if _UUID.match(ref):
            archive = self._get_json(f"{self.api}archives/{ref}/")
        else:
            found = [a for a in self._pages("archives/", {"slug": ref}) if a.get("slug", ref) == ref]
            if not found:
                raise self._not_visible()
            archive = found[0]
        if not isinstance(archive, dict) or not isinstance(archive.get("pk"), str):
            raise TransferError(f"{self.recipe.name}: Grand Challenge's archive {ref!r} has no pk")
        if isinstance(archive.get("url"), str):
            self._archive_url = archive["url"]
        return archive

    # -- listing ------------------------------------------------------------------------------------
    def list_files(self) -> list[RemoteFile]:
        archive = self._archive()
        items = self._pages("archives/items/", {"archive": archive["pk"]})
        images = {img.get("api_url"): img for img in self._pages("cases/images/", {"archive": archive["pk"]})}
        upstream: list[dict[str, Any]] = []
        values: dict[str, dict[str, Any]] = {}
        for item in items:
            pk = str(item.get("pk") or "")
            if safe_relpath(pk) is None or "/" in pk:
                raise TransferError(
                    f"{self.recipe.name}: Grand Challenge lists an item with an odd pk {pk!r}"
                )
            for civ in item.get("values") or []:
                socket = civ.get("interface") or civ.get("socket") or {}
                rel = str(socket.get("relative_path") or socket.get("slug") or "")
                kind = str(socket.get("super_kind") or "").lower()
                if kind == "image" and civ.get("image"):
                    image = images.get(civ["image"]) or self._get_json(civ["image"])
                    for f in image.get("files") or []:
                        if str(f.get("image_type")) not in self.params.image_types or not f.get("file"):
                            continue
                        name = unquote(urlsplit(f["file"]).path.rsplit("/", 1)[-1])
                        upstream.append({"path": f"{pk}/{rel}/{name}", "url": urljoin(self.api, f["file"])})
                elif kind == "file" and civ.get("file"):
                    upstream.append({"path": f"{pk}/{rel}", "url": urljoin(self.api, civ["file"])})
                elif kind == "value":
                    values.setdefault(pk, {})[rel] = civ.get("value")
        files: list[RemoteFile] = []
        for row in upstream:
            clean = safe_relpath(row["path"])
            if clean is None:
                raise TransferError(
                    f"{self.recipe.name}: Grand Challenge lists an unsafe path {row['path']!r}"
                )
            row["path"] = clean
            if selected(clean, self.spec):
                files.append(RemoteFile(clean, row["url"]))
        listing = {
            "kind": self.kind,
            "params": self.params_dict(),
            "archive": {k: archive.get(k) for k in ("pk", "title", "url", "api_url")},
            "files": [{"path": f.path, "url": f.url} for f in files],
            "upstream": [r["path"] for r in upstream],
            "values": values,
        }
        shared_api.write_atomic(self.listing_path, json.dumps(listing, indent=1, sort_keys=True))
        return files

    def _load_listing(self) -> dict[str, Any] | None:
        return shared_api.load_params_listing(self)

    def expected_files(self) -> list[RemoteFile] | None:
        data = self._load_listing()
        if data is None:
            return None
        rows = [r for r in data.get("files", []) if isinstance(r, dict) and "path" in r and "url" in r]
        return [RemoteFile(r["path"], r["url"]) for r in rows if selected(r["path"], self.spec)]

    def upstream_paths(self) -> set[str] | None:
        data = self._load_listing()
        return None if data is None else set(data.get("upstream", []))

    # -- downloading --------------------------------------------------------------------------------
    def _resolve(self, file: RemoteFile) -> str | requests.Response:
        """A fresh CDN link for `file`, or the media URL's own answer to pass on."""
        r = self.session().get(
            file.url,
            headers=self._headers_for(file.url),
            allow_redirects=False,
            stream=True,
            timeout=self.timeout,
        )
        if r.status_code in (301, 302, 303, 307, 308) and r.headers.get("Location"):
            location = urljoin(file.url, r.headers["Location"])
            r.close()
            return location
        if r.status_code in (401, 403, 404):
            r.close()
            if r.status_code == 401:
                raise self._invalid_token(r)
            if r.status_code == 404:
                raise AccessError(
                    f"{self.recipe.name}: Grand Challenge has no file {redaction.redact_url(file.url)} "
                    f"any more (HTTP 404); run `climb download` again to refresh the listing of "
                    f"{self.params.archive!r}"
                )
            raise self._not_visible()
        return r  # 200 served directly, or 429/5xx for the engine to retry

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        def get(target: str) -> requests.Response:
            # no token here: the CDN gets only the signed URL (and the token stays on the API's host)
            return self.session().get(
                target, headers={**headers, **self._headers_for(target)}, stream=True, timeout=self.timeout
            )

        try:  # CloudFront/S3 refuse an expired link with 403: a fresh one
            return self._signed.open(file.url, lambda fresh: self._resolve(file), get)
        except signed.Refused:
            raise TransferError(
                f"{self.recipe.name}: Grand Challenge's file host refused {_RE_RESOLVE + 1} fresh links "
                f"for {file.path}"
            ) from None

    # -- access -------------------------------------------------------------------------------------
    def check_access(self) -> AccessReport:
        name, sid = self.recipe.name, self.spec.id
        try:
            archive = self._archive()
            items = self._pages("archives/items/", {"archive": archive["pk"]}, first_only=True)
        except AccessError as e:
            step = TOKEN_PAGE if "HTTP 401" in str(e) else self.archive_page
            return AccessReport(name, sid, False, str(e), step)
        except TransferError as e:
            return AccessReport(name, sid, False, str(e))
        except requests.RequestException as e:
            return AccessReport(name, sid, False, f"network error: {type(e).__name__}")
        if not items:
            return AccessReport(
                name,
                sid,
                False,
                f"{name}: the archive {self.params.archive!r} shows no items",
                self.archive_page,
            )
        return AccessReport(
            name, sid, True, f"archive {archive.get('title') or self.params.archive!r} is visible"
        )
