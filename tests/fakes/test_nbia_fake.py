"""The fake NBIA v4 API (TCIA) against the official client, tcia_utils 3.3.5, unmodified. tcia_utils
hard-codes https://nbia.cancerimagingarchive.net, so it reaches the fake through HTTPS_PROXY (a CONNECT
tunnel, tests/connect_proxy.py) and a test CA with a certificate for that name (REQUESTS_CA_BUNDLE)."""

# ruff: noqa: F811  (fixtures imported from the source tests are parameters here)
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.fakes.nbia import FakeNBIA, NbiaSeries
from tests.sources.test_tcia import nbia, series  # noqa: F401  (fixtures)


def test_md5_zip_variant(nbia: FakeNBIA, series: list[NbiaSeries]) -> None:
    """getImageWithMD5Hash adds an md5 list; the member name is inferred (tcia_utils does not read it)."""
    import hashlib

    import requests

    s = series[2]
    body = requests.get(
        f"{nbia.api}/v4/getImageWithMD5Hash", params={"SeriesInstanceUID": s.uid}, timeout=5
    ).content
    with zipfile.ZipFile(io.BytesIO(body)) as z:
        lines = z.read("md5hashes.csv").decode().splitlines()
        assert all(hashlib.md5(z.read(n)).hexdigest() == h for n, h in (x.split(",") for x in lines))


def test_tcia_utils_against_the_fake(
    tmp_path: Path, series: list[NbiaSeries], monkeypatch: pytest.MonkeyPatch
) -> None:
    import shutil

    nbia_client = pytest.importorskip("tcia_utils.nbia", reason="tcia_utils not installed (test extra)")
    if shutil.which("openssl") is None:
        pytest.skip("the openssl CLI is needed to make a test CA")
    from tests.fakes.bucket import TLSServerMixin
    from tests.fakes.proxy import FakeProxy
    from tests.fakes.tls import make_test_ca

    class TlsNBIA(TLSServerMixin, FakeNBIA):
        pass

    host = "nbia.cancerimagingarchive.net"
    ca, cert, key = make_test_ca(tmp_path / "tls", [host])
    fake = TlsNBIA(series)
    fake.tls = (cert, key)
    with fake, FakeProxy(fake.port) as proxy:
        for name in ("HTTPS_PROXY", "https_proxy"):
            monkeypatch.setenv(name, proxy.url)
        for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca))
        rows = nbia_client.getSeries(collection="CBIS-DDSM")
        cbis = {s.uid: s for s in series if s.collection == "CBIS-DDSM"}
        assert {r["SeriesInstanceUID"] for r in rows} == set(cbis)
        assert nbia_client.getSeries(collection="nothing") is None  # an empty body: "no results"
        out = tmp_path / "tciaDownload"
        nbia_client.downloadSeries(rows, path=str(out))
        for uid, s in cbis.items():
            for i, (_sop, data) in enumerate(sorted(s.instances.items()), 1):
                assert (out / uid / f"1-{i:02d}.dcm").read_bytes() == data
        nbia_client.downloadSeries(rows[:1], path=str(tmp_path / "zips"), as_zip=True)
        uid = rows[0]["SeriesInstanceUID"]
        assert (tmp_path / "zips" / f"{uid}.zip").read_bytes() == cbis[uid].zip(new_names=True, md5=False)
    assert proxy.hosts and set(proxy.hosts) == {f"{host}:443"}
    assert len(fake.requests_for("/nbia-api/services/v4/getImage")) == 4
