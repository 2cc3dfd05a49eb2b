"""The TCIA source against the fake NBIA v4 API: a collection's series as ZIPs of real DICOM files (written
by pydicom), filters, pins, extraction, refusals, and the shared fault matrix (NBIA has no signed URLs and,
as far as known, no Range on getImage: a broken series starts again)."""

from __future__ import annotations

import io
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, arm_fault, settle
from tests.fakes.nbia import FakeNBIA, NbiaSeries, idc_copy


def _dicom(patient: str, study: str, series: str, modality: str, seed: int, side: int = 64) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.5.1.4.1.1.1.2")  # digital mammography for presentation
    sop = generate_uid()
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x.dcm", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = patient, study, series, sop
    ds.SOPClassUID, ds.Modality = meta.MediaStorageSOPClassUID, modality
    ds.Rows = ds.Columns = side
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelData = np.random.default_rng(seed).integers(0, 4096, (side, side), dtype=np.uint16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _series(collection: str, patient: str, modality: str, n: int, seed: int, side: int = 64) -> NbiaSeries:
    study, uid = generate_uid(), generate_uid()
    inst = {}
    for i in range(n):
        data = _dicom(patient, study, uid, modality, seed * 100 + i, side)
        inst[pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID] = data
    return NbiaSeries(uid, patient, study, collection, modality, inst, description="full mammogram images")


@pytest.fixture(scope="module")
def series() -> list[NbiaSeries]:
    return [
        _series("CBIS-DDSM", "Mass-Training_P_00001_LEFT_CC", "MG", 1, 1, side=300),
        _series("CBIS-DDSM", "Mass-Training_P_00001_LEFT_MLO", "MG", 1, 2),
        _series("CBIS-DDSM", "Calc-Test_P_00038_LEFT_CC_1", "MG", 2, 3),
        _series("LIDC-IDRI", "LIDC-IDRI-0001", "CT", 3, 4),
    ]


@pytest.fixture
def nbia(series: list[NbiaSeries]) -> Iterator[FakeNBIA]:
    with FakeNBIA(series) as fake:
        yield fake


def _recipe(
    tmp_path: Path, extra: str = "", checksums: str = "pinned", collection: str = "CBIS-DDSM"
) -> Recipe:
    src = f"  - id: tcia\n    kind: tcia\n    collection: {collection}\n{extra}"
    path = write_recipe(tmp_path / "recipes", "toytcia", src)
    if checksums != "upstream":
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toytcia")


def _settings(tmp_path: Path, nbia: FakeNBIA, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"tcia": nbia.api}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toytcia")


def _path(s: NbiaSeries) -> str:
    return f"{s.patient}/{s.study}/{s.uid}.zip"


def test_collection_series_download_pin_and_extract(
    tmp_path: Path, nbia: FakeNBIA, series: list[NbiaSeries]
) -> None:
    settings = _settings(tmp_path, nbia)
    recipe = _recipe(tmp_path, "    extract: true\n")
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    cbis = [s for s in series if s.collection == "CBIS-DDSM"]
    assert report.count("downloaded") == 3
    for s in cbis:
        z = _raw(settings) / _path(s)
        assert z.read_bytes() == s.zip(new_names=True, md5=False)
        for i, (sop, data) in enumerate(sorted(s.instances.items()), 1):
            member = z.parent / f"1-{i:02d}.dcm"
            assert member.read_bytes() == data
            assert pydicom.dcmread(member).SOPInstanceUID == sop
    q = nbia.requests_for("/nbia-api/services/v4/getSeries*")[0].path
    assert "Collection=CBIS-DDSM" in q
    pins = (_raw(settings) / ".climb" / "pins.tsv").read_text()
    assert all(_path(s) in pins for s in cbis)
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 3 + 4, rep.as_dict()
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 3
    assert len(nbia.requests_for("/nbia-api/services/v4/getImage*")) == 3


def test_filters(tmp_path: Path, nbia: FakeNBIA, series: list[NbiaSeries]) -> None:
    settings = _settings(tmp_path, nbia)
    lidc = next(s for s in series if s.collection == "LIDC-IDRI")
    report = download(_recipe(tmp_path, "    modality: CT\n", collection="LIDC-IDRI"), settings)
    assert report.ok and (_raw(settings) / _path(lidc)).is_file()
    assert "Modality=CT" in nbia.requests_for("/nbia-api/services/v4/getSeries*")[-1].path
    one = series[2]
    report = download(_recipe(tmp_path, f"    series: ['{one.uid}']\n"), settings)
    assert report.ok and [o.file.path for o in report.outcomes] == [_path(one)]


def test_refusals_are_one_line(tmp_path: Path, nbia: FakeNBIA) -> None:
    settings = _settings(tmp_path, nbia)
    report = download(_recipe(tmp_path, collection="CBIS-DDS"), settings)
    assert report.error == (
        "toytcia: NBIA lists no series for collection 'CBIS-DDS'; check the name at "
        "https://www.cancerimagingarchive.net/collection/cbis-dds/"
    )
    report = download(_recipe(tmp_path, checksums="upstream"), settings)
    assert report.error.startswith("toytcia: no checksum for ") and "`checksums: pinned`" in report.error
    report = download(_recipe(tmp_path, "    series: ['1.2.3']\n"), settings)
    assert report.error == "toytcia: collection CBIS-DDSM has no series 1.2.3"


def test_check_access(tmp_path: Path, nbia: FakeNBIA) -> None:
    (src,) = make_sources(_recipe(tmp_path), _settings(tmp_path, nbia))
    rep = src.check_access()
    assert rep.ok and rep.detail == "collection CBIS-DDSM: 3 series listed, open access"
    assert not nbia.requests_for("/nbia-api/services/v4/getImage*")


def test_series_gone_from_nbia(tmp_path: Path, nbia: FakeNBIA, series: list[NbiaSeries]) -> None:
    settings = _settings(tmp_path, nbia)
    (src,) = make_sources(_recipe(tmp_path), settings)
    files = src.list_files()
    nbia.series = [s for s in nbia.series if s.uid != series[0].uid]  # withdrawn after the listing
    with pytest.raises(Exception, match="NBIA sent an empty answer for series .*: the series is not"):
        src.open(next(f for f in files if series[0].uid in f.path), {})


@pytest.mark.parametrize("fault", [f for f in FAULT_IDS if f != "expired-signed-url"])
def test_fault_matrix(tmp_path: Path, nbia: FakeNBIA, series: list[NbiaSeries], fault: str) -> None:
    big = series[0]
    data = big.zip(new_names=True, md5=False)
    expected = arm_fault(nbia, fault, "/nbia-api/services/v4/getImage", len(data))
    # getImage has no Range: every resume is a whole new body (200), never a 206
    expected = {"drop-mid-body": [200, 200], "short-body": [200, 200], "stall": [200]}.get(fault, expected)
    settings = _settings(tmp_path, nbia, read_timeout=0.5)
    report = download(_recipe(tmp_path, f"    series: ['{big.uid}']\n"), settings)
    assert report.ok, report.outcomes
    assert (_raw(settings) / _path(big)).read_bytes() == data
    assert [r.status for r in settle(nbia, "/nbia-api/services/v4/getImage")] == expected
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


# ---------------------------------------------------------------------------------------------------------
# mirror: idc -- the same series from IDC's public bucket, one MD5-checked object per DICOM instance


@pytest.fixture
def idc(series: list[NbiaSeries], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeBucket]:
    """IDC's copy of the NBIA fake's series (tests.fakes.nbia.idc_copy), its index in CLIMB_IDC_INDEX."""
    with idc_copy(series, tmp_path / "idc_index.parquet") as bucket:
        monkeypatch.setenv("CLIMB_IDC_INDEX", str(tmp_path / "idc_index.parquet"))
        yield bucket


def test_idc_mirror_gives_the_same_instances(
    tmp_path: Path, nbia: FakeNBIA, idc: FakeBucket, series: list[NbiaSeries]
) -> None:
    import hashlib

    settings = fast_settings(tmp_path, {"tcia": nbia.api, "idc": idc.base_url})
    recipe = _recipe(tmp_path, "    mirror: idc\n", checksums="upstream")  # MD5 ETags: no pins needed
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert not nbia.log  # NBIA is not contacted at all
    cbis = [s for s in series if s.collection == "CBIS-DDSM"]
    assert report.count("downloaded") == sum(len(s.instances) for s in cbis)
    got = {}
    for s in cbis:
        folder = _raw(settings) / s.patient / s.study / s.uid
        got[s.uid] = sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.dcm"))
    assert verify_raw(recipe, settings)[0].ok
    # the same hash identity as NBIA's route: the extracted ZIP members have the same sha256s
    nbia_settings = fast_settings(tmp_path / "nbia", {"tcia": nbia.api})
    assert download(_recipe(tmp_path / "nbia", "    extract: true\n"), nbia_settings).ok
    for s in cbis:
        folder = nbia_settings.raw_dir("toytcia") / s.patient / s.study
        assert sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.dcm")) == got[s.uid]


def test_idc_mirror_resumes_and_says_what_is_missing(
    tmp_path: Path, idc: FakeBucket, series: list[NbiaSeries], monkeypatch: pytest.MonkeyPatch
) -> None:
    big = series[0]
    settings = fast_settings(tmp_path, {"idc": idc.base_url})
    idc.faults.add("drop", path_glob="/idc-open-data/*", after_bytes=50_000)
    report = download(_recipe(tmp_path, f"    mirror: idc\n    series: ['{big.uid}']\n"), settings)
    assert report.ok and [r.status for r in settle(idc, "/idc-open-data/*/*.dcm")] == [200, 206]
    assert download(_recipe(tmp_path, "    mirror: idc\n", collection="CMMD"), settings).error == (
        "toytcia: IDC's index (" + os.environ["CLIMB_IDC_INDEX"] + ") has no series of collection_id 'cmmd'"
    )
    monkeypatch.delenv("CLIMB_IDC_INDEX")
    monkeypatch.setitem(sys.modules, "idc_index_data", None)  # as if idc-index-data were not installed
    assert download(_recipe(tmp_path, "    mirror: idc\n"), settings).error == (
        "toytcia: `mirror: idc` needs IDC's series index: pip install idc-index-data, or set CLIMB_IDC_INDEX "
        "to its parquet file"
    )


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, nbia: FakeNBIA) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, "    include: ['nomatch/*']\n"), _settings(tmp_path, nbia))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toytcia: source 'tcia' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
