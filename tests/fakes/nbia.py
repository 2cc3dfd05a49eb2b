"""A fake of TCIA's NBIA REST API v4 (sources-more.md §5a; tcia_utils 3.3.5 ``nbia.py``).

``/nbia-api/services/v4/<endpoint>``, no authentication (tcia_utils sends none since its v4 migration):

* ``getCollectionValues`` -> ``[{"Collection": name}, ...]``;
* ``getSeries?Collection=&PatientID=&StudyInstanceUID=&SeriesInstanceUID=&Modality=`` (all optional filters)
  -> a JSON array of series objects (``SeriesInstanceUID, StudyInstanceUID, Modality, SeriesDescription,
  SeriesNumber, BodyPartExamined, Collection, PatientID, ImageCount, FileSize, LicenseName, LicenseURI,
  DateReleased``); no match -> an empty body (tcia_utils: "an empty body means no results");
* ``getSeriesSize?SeriesInstanceUID=`` -> ``[{"TotalSizeInBytes": "...", "ObjectCount": n}]``;
* ``getImage?NewFileNames=Yes&SeriesInstanceUID=`` -> the whole series as one ZIP (members ``1-<n>.dcm`` with
  NewFileNames, else ``<SOPInstanceUID>.dcm``); ``getImageWithMD5Hash?SeriesInstanceUID=`` adds
  ``md5hashes.csv`` (``<member>,<md5 hex>`` per line -- the member name and layout are inferred, the client
  does not read it). The ZIP is built deterministically (stored members, fixed times), so repeated
  requests give the same bytes; whether NBIA's are byte-stable is not known (inferred). It is sent with
  ``Content-Length`` and no Range support (a Range request gets 200 and the whole body, inferred);
* an unknown series -> 200 with an empty body (inferred: what tcia_utils treats as "no results").

Faults apply to the ZIP bodies.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, FaultPlan
from tests.fakes.bucket import FakeBucket, serve_file

__all__ = ["FakeNBIA", "NbiaSeries"]

PREFIX = "/nbia-api/services/v4/"
_JSON = "application/json"
_EPOCH = (2020, 1, 1, 0, 0, 0)


@dataclass
class NbiaSeries:
    uid: str
    patient: str
    study: str
    collection: str
    modality: str
    instances: dict[str, bytes]  # SOPInstanceUID -> DICOM bytes
    description: str = ""
    number: int = 1
    body_part: str = "BREAST"
    license: str = "Creative Commons Attribution 3.0 Unported License"
    extra: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, object]:
        return {
            "SeriesInstanceUID": self.uid,
            "StudyInstanceUID": self.study,
            "Modality": self.modality,
            "SeriesDescription": self.description,
            "SeriesNumber": self.number,
            "BodyPartExamined": self.body_part,
            "Collection": self.collection,
            "PatientID": self.patient,
            "ImageCount": len(self.instances),
            "FileSize": sum(len(d) for d in self.instances.values()),
            "LicenseName": self.license,
            "LicenseURI": "https://creativecommons.org/licenses/by/3.0/",
            "DateReleased": "2016-09-14 00:00:00.0",
            **self.extra,
        }

    def zip(self, *, new_names: bool, md5: bool) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
            lines = []
            for i, (sop, data) in enumerate(sorted(self.instances.items()), 1):
                name = f"1-{i:02d}.dcm" if new_names else f"{sop}.dcm"
                z.writestr(zipfile.ZipInfo(name, _EPOCH), data)
                lines.append(f"{name},{hashlib.md5(data).hexdigest()}\n")
            if md5:
                z.writestr(zipfile.ZipInfo("md5hashes.csv", _EPOCH), "".join(lines))
        return buf.getvalue()


class _Handler(BaseFakeHandler):
    server_header = "Apache"
    fake: FakeNBIA

    def _json(self, payload: object) -> None:
        body = json.dumps(payload).encode() if payload else b""
        self.respond(200, body, content_type=_JSON)

    def route(self) -> None:
        if self.command not in ("GET", "HEAD", "POST"):
            self.respond(405, b"", content_type=None)
            return
        path = self.url_path
        if not path.startswith(PREFIX):
            self.respond(404, b"<html><body>Not Found</body></html>")
            return
        endpoint = path[len(PREFIX) :]
        q = {k: v[-1] for k, v in self.query.items()}
        fake = self.fake
        if endpoint == "getCollectionValues":
            self._json([{"Collection": c} for c in sorted({s.collection for s in fake.series})])
        elif endpoint == "getSeries":
            keys = {
                "Collection": "collection",
                "PatientID": "patient",
                "StudyInstanceUID": "study",
                "SeriesInstanceUID": "uid",
                "Modality": "modality",
            }
            rows = [
                s.as_json()
                for s in fake.series
                if all(getattr(s, attr) == q[k] for k, attr in keys.items() if q.get(k))
            ]
            self._json(rows)
        elif endpoint == "getSeriesSize":
            s = fake.find(q.get("SeriesInstanceUID", ""))
            if s is None:
                self._json([])
            else:
                total = sum(len(d) for d in s.instances.values())
                self._json([{"TotalSizeInBytes": f"{float(total)}", "ObjectCount": len(s.instances)}])
        elif endpoint in ("getImage", "getImageWithMD5Hash"):
            s = fake.find(q.get("SeriesInstanceUID", ""))
            if s is None:
                self.respond(200, b"", content_type=_JSON)
                return
            data = s.zip(new_names=q.get("NewFileNames") == "Yes", md5=endpoint == "getImageWithMD5Hash")
            serve_file(
                self,
                data,
                content_type="application/zip",
                mtime=1_600_000_000,
                etag=None,
                extra_headers=[("Content-Disposition", f"attachment; filename={s.uid}.zip")],
                fault=self.file_fault(path),
                ranges=False,
            )
        else:
            self.respond(404, b"<html><body>Not Found</body></html>")


class FakeNBIA(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self, series: list[NbiaSeries]) -> None:
        super().__init__(faults=FaultPlan())
        self.series = series

    def start(self) -> Self:
        super().start()
        return self

    @property
    def api(self) -> str:
        return f"{self.base_url}/nbia-api/services"

    def find(self, uid: str) -> NbiaSeries | None:
        return next((s for s in self.series if s.uid == uid), None)


@contextlib.contextmanager
def idc_copy(series: Iterable[NbiaSeries], index: Path) -> Iterator[FakeBucket]:
    """IDC's copy of these series: a public bucket (``s3://idc-open-data/<crdc_series_uuid>/
    <crdc_instance_uuid>.dcm``, as IDC lays them out) holding their instances, and at ``index`` a parquet with
    the idc-index-data columns the tcia source reads (one row per series)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with FakeBucket() as bucket:
        rows = []
        for s in series:
            su = str(uuid.uuid4())
            for data in s.instances.values():
                bucket.put(
                    "idc-open-data", f"{su}/{uuid.uuid4()}.dcm", data, content_type="application/dicom"
                )
            rows.append({
                "collection_id": s.collection.lower().replace("-", "_"), "SeriesInstanceUID": s.uid,
                "StudyInstanceUID": s.study, "PatientID": s.patient, "Modality": s.modality,
                "series_aws_url": f"s3://idc-open-data/{su}/*",
            })  # fmt: skip
        pq.write_table(pa.Table.from_pylist(rows), index)
        yield bucket
