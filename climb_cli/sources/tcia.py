"""The Cancer Imaging Archive (`kind: tcia`): a collection's DICOM series through NBIA's REST API (v4).

    - kind: tcia
      collection: CBIS-DDSM
      modality: MG                 # optional filters of getSeries: modality, patients, series
      extract: true                # each series arrives as one ZIP of DICOM files

Listing: ``GET <api>/v4/getSeries?Collection=<c>[&Modality=..]`` (JSON array, one object per series; the
same call tcia_utils.nbia.getSeries makes). Each series is one file, ``<PatientID>/<StudyInstanceUID>/
<SeriesInstanceUID>.zip``, fetched with ``GET <api>/v4/getImage?NewFileNames=Yes&SeriesInstanceUID=<uid>``
(tcia_utils.nbia._download_and_unzip_series). No authentication: open collections need none since NBIA v4
(the Keycloak password grant of older clients is gone); restricted collections stay `manual`.

Sums: NBIA publishes none for the ZIP, so a recipe needs ``checksums: pinned`` (the first trusted download
pins each ZIP; ``climb verify`` then checks it, and the extracted DICOM files are recorded per member).
Whether NBIA builds a series ZIP byte-identically on every request is not documented: if it does not, a
re-download after a lost file reports a pin mismatch, and ``--write-lock`` should not be used for TCIA.
The ZIP is generated on the fly without Range support: an interrupted series starts again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import requests
from pydantic import Field

from climb_cli import redaction
from climb_cli.errors import AccessError, RecipeError, TransferError
from climb_cli.sources.base import AccessReport, RemoteFile, Source, SourceParams, safe_relpath, selected
from climb_cli.sources.http import (
    api_get,
    error_body,
    fetch,
    html_failure,
    is_html_page,
    json_or_none,
    load_listing,
    paths_from_listing,
    save_listing,
    unpinned_line,
)

DEFAULT_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services"
_UID = r"^[0-9]+(\.[0-9]+)*$"


class TciaParams(SourceParams):
    collection: str = Field(min_length=1, description="the TCIA collection (e.g. CBIS-DDSM, CMMD, LIDC-IDRI)")
    modality: str | None = Field(None, description="only series of this modality (getSeries Modality)")
    patients: list[str] = Field(default_factory=list, description="only these PatientIDs")
    series: list[str] = Field(default_factory=list, description="only these SeriesInstanceUIDs")


class TciaSource(Source):
    kind = "tcia"
    Params = TciaParams
    params: TciaParams

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.api = self.settings.base_url("tcia", DEFAULT_URL).rstrip("/")
        self.page = f"https://www.cancerimagingarchive.net/collection/{self.params.collection.lower()}/"

    def describe(self) -> str:
        return f"tcia collection {self.params.collection}"

    def _identity(self) -> dict[str, Any]:
        return {"collection": self.params.collection, "modality": self.params.modality}

    def _series(self) -> list[dict[str, Any]]:
        q = {"Collection": self.params.collection}
        if self.params.modality:
            q["Modality"] = self.params.modality
        url = f"{self.api}/v4/getSeries?{urlencode(q)}"
        resp = api_get(self, url, headers={"Accept": "application/json"})
        if resp.status_code in (401, 403):
            raise AccessError(
                f"{self.recipe.name}: NBIA refused the series list of {self.params.collection} "
                f"(HTTP {resp.status_code}); a restricted collection needs a `manual` source ({self.page})"
            )
        if resp.status_code != 200:
            raise TransferError(
                f"{self.recipe.name}: HTTP {resp.status_code} for {redaction.redact_url(url)}"
            )
        if not resp.content.strip():
            rows: Any = []
        else:
            rows = json_or_none(resp)
        if not isinstance(rows, list):
            raise TransferError(
                f"{self.recipe.name}: {redaction.redact_url(url)} did not answer a series list"
            )
        if not rows:
            raise AccessError(
                f"{self.recipe.name}: NBIA lists no series for collection {self.params.collection!r}"
                + (f" and modality {self.params.modality}" if self.params.modality else "")
                + f"; check the name at {self.page}"
            )
        return [r for r in rows if isinstance(r, dict)]

    def _files(self, rows: list[dict[str, Any]]) -> list[RemoteFile]:
        out: list[RemoteFile] = []
        for r in rows:
            uid = str(r.get("SeriesInstanceUID") or r.get("Series UID") or "")
            study, patient = str(r.get("StudyInstanceUID", "")), str(r.get("PatientID", ""))
            path = safe_relpath(f"{patient}/{study}/{uid}.zip")
            if path is None or not uid:
                raise TransferError(f"{self.recipe.name}: NBIA listed a series with unsafe ids {r!r:.120}")
            url = f"{self.api}/v4/getImage?{urlencode({'NewFileNames': 'Yes', 'SeriesInstanceUID': uid})}"
            out.append(RemoteFile(path, url))
        return out

    def _select(self, files: list[RemoteFile]) -> list[RemoteFile]:
        p = self.params
        keep = []
        for f in files:
            patient, _, rest = f.path.partition("/")
            uid = rest.rpartition("/")[2].removesuffix(".zip")
            if p.patients and patient not in p.patients:
                continue
            if p.series and uid not in p.series:
                continue
            if selected(f.path, self.spec):
                keep.append(f)
        return keep

    def list_files(self) -> list[RemoteFile]:
        every = self._files(self._series())
        save_listing(self, self._identity(), every)
        files = self._select(every)
        missing = sorted(set(self.params.series) - {f.path.rpartition("/")[2][:-4] for f in files})
        if missing:
            raise AccessError(
                f"{self.recipe.name}: collection {self.params.collection} has no series {missing[0]} "
                f"(and {len(missing) - 1} more)"
                if len(missing) > 1
                else f"{self.recipe.name}: collection {self.params.collection} has no series {missing[0]}"
            )
        if files and self.recipe.checksums != "pinned":
            raise RecipeError(unpinned_line(self, [f.path for f in files]))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        files = load_listing(self, self._identity())
        return None if files is None else self._select(files)

    def upstream_paths(self) -> set[str] | None:
        return paths_from_listing(self, self._identity())

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        resp = fetch(self, file.url, headers=headers)
        if resp.status_code in (401, 403, 404):
            error_body(resp)
            raise AccessError(
                f"{self.recipe.name}: NBIA refused series {file.path} (HTTP {resp.status_code}); "
                f"see {self.page}"
            )
        if resp.status_code == 200 and resp.headers.get("Content-Length") == "0":
            resp.close()
            raise AccessError(
                f"{self.recipe.name}: NBIA sent an empty answer for series {file.path}: the series is not "
                f"(or no longer) public in {self.params.collection}"
            )
        if resp.status_code in (200, 206) and is_html_page(file.path, resp):
            resp.close()
            raise html_failure(self, file, resp)
        return resp

    def check_access(self) -> AccessReport:
        name, sid = self.recipe.name, self.spec.id
        try:
            files = self._select(self._files(self._series()))
        except AccessError as e:
            return AccessReport(name, sid, False, str(e), self.page)
        except TransferError as e:
            return AccessReport(name, sid, False, str(e))
        except requests.RequestException as e:
            return AccessReport(name, sid, False, f"network error: {type(e).__name__}")
        return AccessReport(
            name, sid, True, f"collection {self.params.collection}: {len(files)} series listed, open access"
        )
