"""The Cancer Imaging Archive (`kind: tcia`): a collection's DICOM series through NBIA's REST API (v4).

    - kind: tcia
      collection: CBIS-DDSM
      modality: MG                 # optional filters of getSeries: modality, patients, series
      extract: true                # each series arrives as one ZIP of DICOM files

Listing: ``GET <api>/v4/getSeries?Collection=<c>[&Modality=..]`` (JSON array, one object per series; the
same call tcia_utils.nbia.getSeries makes). Each series is one file, ``<PatientID>/<StudyInstanceUID>/
<SeriesInstanceUID>.zip`` (with ``series_folders: true``: ``.../<SeriesInstanceUID>/<SeriesInstanceUID>.zip``,
so the members of two series of one study, both ``1-01.dcm`` ..., extract into separate folders),
fetched with ``GET <api>/v4/getImage?NewFileNames=Yes&SeriesInstanceUID=<uid>``
(tcia_utils.nbia._download_and_unzip_series). No authentication: open collections need none since NBIA v4
(the Keycloak password grant of older clients is gone); restricted collections stay `manual`.

``mirror: idc`` takes the same series from the Imaging Data Commons' public bucket instead, without
contacting NBIA: the series come from IDC's index (the ``idc-index-data`` parquet that ``idc-index`` ships,
or the file named by ``CLIMB_IDC_INDEX``; rows of ``collection_id`` = the collection in lower case with
``_`` for ``-``), each series' objects are listed with ListObjectsV2 under ``s3://<bucket>/<crdc_series_uuid>/``
on ``https://s3.amazonaws.com`` (mirror key ``idc``), and every DICOM instance is one file,
``<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<crdc_instance_uuid>.dcm``, checked against its MD5
ETag (IDC uploads single-part objects, inferred). The identity of the data is then per instance (the files'
hashes), the same unit as NBIA's ZIP members after extraction; whether IDC's instance bytes equal NBIA's is
not verified (IDC may re-write headers).

Sums: NBIA publishes none for the ZIP, so a recipe needs ``checksums: pinned`` (the first trusted download
pins each ZIP; ``climb verify`` then checks it, and the extracted DICOM files are recorded per member).
Whether NBIA builds a series ZIP byte-identically on every request is not documented: if it does not, a
re-download after a lost file reports a pin mismatch, and ``--write-lock`` should not be used for TCIA.
The ZIP is generated on the fly without Range support: an interrupted series starts again.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import quote, urlencode

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
    list_s3,
    load_listing,
    paths_from_listing,
    save_listing,
    unpinned_line,
)

DEFAULT_URL = "https://nbia.cancerimagingarchive.net/nbia-api/services"
IDC_URL = "https://s3.amazonaws.com"  # idc-index: aws_endpoint_url; buckets path-style below it
_UID = r"^[0-9]+(\.[0-9]+)*$"


class TciaParams(SourceParams):
    collection: str = Field(min_length=1, description="the TCIA collection (e.g. CBIS-DDSM, CMMD, LIDC-IDRI)")
    modality: str | None = Field(None, description="only series of this modality (getSeries Modality)")
    patients: list[str] = Field(default_factory=list, description="only these PatientIDs")
    series: list[str] = Field(default_factory=list, description="only these SeriesInstanceUIDs")
    mirror: Literal["idc"] | None = Field(None, description="idc: the same series from IDC's public bucket")
    series_folders: bool = Field(
        False,
        description="NBIA: put each series' ZIP in a folder of its own (<PatientID>/<StudyInstanceUID>/"
        "<SeriesInstanceUID>/<SeriesInstanceUID>.zip), so a study with several series extracts without "
        "clashing member names (1-01.dcm), as IDC's layout",
    )


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
        out: dict[str, Any] = {
            "collection": self.params.collection,
            "modality": self.params.modality,
            "mirror": self.params.mirror,
        }
        if self.params.series_folders:
            out["series_folders"] = True
        return out

    # -- IDC -----------------------------------------------------------------------------------------
    def _idc_rows(self) -> list[dict[str, Any]]:
        path = os.environ.get("CLIMB_IDC_INDEX", "")
        if not path:
            try:
                import idc_index_data
            except ImportError:
                raise AccessError(
                    f"{self.recipe.name}: `mirror: idc` needs IDC's series index: pip install "
                    "idc-index-data, or set CLIMB_IDC_INDEX to its parquet file"
                ) from None
            path = str(idc_index_data.IDC_INDEX_PARQUET_FILEPATH)
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        cols = [
            "collection_id",
            "SeriesInstanceUID",
            "StudyInstanceUID",
            "PatientID",
            "Modality",
            "series_aws_url",
        ]
        try:
            table = pq.read_table(path, columns=cols)
        except (OSError, ValueError) as e:
            raise TransferError(f"{self.recipe.name}: cannot read the IDC index {path}: {e}") from None
        cid = self.params.collection.lower().replace("-", "_")
        table = table.filter(pc.equal(table["collection_id"], cid))
        if self.params.modality:
            table = table.filter(pc.equal(table["Modality"], self.params.modality))
        rows = table.to_pylist()
        if not rows:
            raise AccessError(
                f"{self.recipe.name}: IDC's index ({path}) has no series of collection_id {cid!r}"
                + (f" and modality {self.params.modality}" if self.params.modality else "")
            )
        return rows

    def _idc_files(self, rows: list[dict[str, Any]]) -> list[RemoteFile]:
        """One file per DICOM instance, listed in the bucket (so only the selected series are listed)."""
        endpoint = self.settings.base_url("idc", IDC_URL).rstrip("/")
        out: list[RemoteFile] = []
        for r in rows:
            url = str(r.get("series_aws_url") or "")  # s3://<bucket>/<crdc_series_uuid>/*
            parts = url.split("/")
            if len(parts) < 4 or parts[0] != "s3:":
                raise TransferError(f"{self.recipe.name}: IDC index row without a bucket URL: {url!r:.80}")
            bucket, uuid = parts[2], parts[3]
            folder = f"{r['PatientID']}/{r['StudyInstanceUID']}/{r['SeriesInstanceUID']}"
            for key, size, md5 in list_s3(self, f"{endpoint}/{bucket}", f"{uuid}/"):
                name = key.rpartition("/")[2]
                path = safe_relpath(f"{folder}/{name}")
                if path is None or not name.endswith(".dcm"):
                    continue
                out.append(RemoteFile(path, f"{endpoint}/{bucket}/{quote(key)}", size, None, md5))
        return out

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
            folder = f"{patient}/{study}/{uid}" if self.params.series_folders else f"{patient}/{study}"
            path = safe_relpath(f"{folder}/{uid}.zip")
            if path is None or not uid:
                raise TransferError(f"{self.recipe.name}: NBIA listed a series with unsafe ids {r!r:.120}")
            url = f"{self.api}/v4/getImage?{urlencode({'NewFileNames': 'Yes', 'SeriesInstanceUID': uid})}"
            out.append(RemoteFile(path, url))
        return out

    def _wanted(self, patient: str, series: str) -> bool:
        p = self.params
        return (not p.patients or patient in p.patients) and (not p.series or series in p.series)

    def _select(self, files: list[RemoteFile]) -> list[RemoteFile]:
        keep = []
        for f in files:
            parts = f.path.split("/")  # NBIA: P/Study/[Series/]Series.zip; IDC: P/Study/Series/instance.dcm
            series = parts[2].removesuffix(".zip")
            if self._wanted(parts[0], series) and selected(f.path, self.spec):
                keep.append(f)
        return keep

    def list_files(self) -> list[RemoteFile]:
        if self.params.mirror == "idc":
            rows = [
                r for r in self._idc_rows() if self._wanted(str(r["PatientID"]), str(r["SeriesInstanceUID"]))
            ]
            every = self._idc_files(rows)
            save_listing(self, self._identity(), every)
            files = [f for f in every if selected(f.path, self.spec)]
            got = {f.path.split("/")[2] for f in files}
            missing = sorted(set(self.params.series) - got)
            if missing:
                raise AccessError(
                    f"{self.recipe.name}: IDC has no series {missing[0]} of {self.params.collection}"
                )
            unpinned = [f.path for f in files if not f.md5]
            if unpinned and self.recipe.checksums != "pinned":
                raise RecipeError(unpinned_line(self, unpinned))
            return files
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
        if self.params.mirror == "idc":
            if resp.status_code in (401, 403, 404):
                error_body(resp)
                raise AccessError(
                    f"{self.recipe.name}: IDC's bucket refused {file.path} (HTTP {resp.status_code}, "
                    f"{redaction.redact_url(file.url)})"
                )
            return resp
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
        if self.params.mirror == "idc":
            try:
                n = len(self.list_files())
            except (AccessError, RecipeError) as e:
                return AccessReport(name, sid, False, str(e))
            except TransferError as e:
                return AccessReport(name, sid, False, str(e))
            return AccessReport(name, sid, True, f"collection {self.params.collection}: {n} instances on IDC")
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
