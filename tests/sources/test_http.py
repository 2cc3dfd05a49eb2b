"""The plain HTTPS / S3-bucket source against the fake bucket: pinned URLs, the checksum policy, HTML pages
served in place of data, ListObjectsV2 listings (paginated, ETag md5s, multipart objects), refusals, and
the shared fault matrix."""

from __future__ import annotations

import hashlib
import io
import os
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, redirect_to, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, arm_fault, settle
from tests.fakes.capture import CaptureServer

ZIP = os.urandom(640_000)
CSV = b"image,MEL,NV\nISIC_0024306,0.0,1.0\n"
SERIES = "1.3.6.1.4.1.14519.5.2.1.6279"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def bucket() -> Iterator[FakeBucket]:
    with FakeBucket() as b:
        b.put(
            "isic-challenge-data",
            "2018/ISIC2018_Task3_Training_Input.zip",
            ZIP,
            content_type="application/zip",
        )
        b.put(
            "isic-challenge-data",
            "2018/ISIC2018_Task3_Training_GroundTruth.csv",
            CSV,
            content_type="text/csv",
        )
        b.put("isic-challenge-data", "2020/ISIC_2020_Training_JPEG.zip", b"<html><body>Sign in</body></html>",
              content_type="text/html; charset=utf-8")  # fmt: skip
        for i in range(5):
            b.put("idc-open-data", f"{SERIES}/{i:04d}.dcm", os.urandom(1000 + i))
        b.put("idc-open-data", f"{SERIES}/big.dcm", os.urandom(20_000), parts=3)  # multipart: ETag is no md5
        b.put("idc-open-data", "other-series/x.dcm", b"not selected")
        b.put("private-bucket", "a.bin", b"secret", public=False)
        yield b


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return fast_settings(tmp_path, **kw)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return _settings(tmp_path)


def _recipe(tmp_path: Path, body: str, checksums: str = "upstream") -> Recipe:
    path = write_recipe(tmp_path / "recipes", "toyhttp", "  - id: web\n    kind: http\n" + body)
    if checksums != "upstream":
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toyhttp")


def _files(bucket: FakeBucket, entries: list[tuple[str, str | None]]) -> str:
    out = "    files:\n"
    for key, sha in entries:
        out += f"      - url: {bucket.url('isic-challenge-data', key)}\n"
        if sha:
            out += f"        sha256: {sha}\n"
    return out


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyhttp")


def test_pinned_urls_download_byte_identical(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    body = _files(
        bucket,
        [
            ("2018/ISIC2018_Task3_Training_Input.zip", _sha(ZIP)),
            ("2018/ISIC2018_Task3_Training_GroundTruth.csv", _sha(CSV)),
        ],
    )
    recipe = _recipe(tmp_path, body)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "ISIC2018_Task3_Training_Input.zip").read_bytes() == ZIP
    assert (_raw(settings) / "ISIC2018_Task3_Training_GroundTruth.csv").read_bytes() == CSV
    assert not bucket.authorization_seen and all(r.user_agent.startswith("climb/") for r in bucket.log)
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2


def test_a_path_and_a_wrong_pin(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    url = bucket.url("isic-challenge-data", "2018/ISIC2018_Task3_Training_GroundTruth.csv")
    body = f"    files:\n      - {{url: '{url}', path: labels/gt.csv, sha256: {'ab' * 32}}}\n"
    (out,) = download(_recipe(tmp_path, body), settings).outcomes
    assert out.status == "failed" and out.error.startswith(
        "toyhttp: checksum mismatch for labels/gt.csv from http://"
    )
    assert not (_raw(settings) / "labels" / "gt.csv").exists()


def test_unpinned_files_need_the_pinned_policy(
    tmp_path: Path, settings: Settings, bucket: FakeBucket
) -> None:
    body = _files(bucket, [("2018/ISIC2018_Task3_Training_GroundTruth.csv", None)])
    report = download(_recipe(tmp_path, body), settings)
    assert report.error == (
        "toyhttp: no checksum for ISIC2018_Task3_Training_GroundTruth.csv in source 'web': pin its "
        "sha256 in the "
        "recipe, or set `checksums: pinned` to pin it on the first download"
    )
    assert not bucket.log
    report = download(_recipe(tmp_path, body, checksums="pinned"), settings)
    assert report.ok and (_raw(settings) / "ISIC2018_Task3_Training_GroundTruth.csv").read_bytes() == CSV


def test_an_html_page_in_place_of_data_is_a_clean_failure(
    tmp_path: Path, settings: Settings, bucket: FakeBucket
) -> None:
    body = _files(bucket, [("2020/ISIC_2020_Training_JPEG.zip", _sha(ZIP))])
    (out,) = download(_recipe(tmp_path, body), settings).outcomes
    assert out.status == "failed" and "\n" not in out.error
    assert out.error.startswith("toyhttp: http://127.0.0.1:")
    assert out.error.endswith(
        "/isic-challenge-data/2020/ISIC_2020_Training_JPEG.zip answered an HTML page (HTTP 200, text/html; "
        "charset=utf-8) instead of ISIC_2020_Training_JPEG.zip: the link may need a login or a "
        "click-through, "
        "or may have moved"
    )
    assert not (_raw(settings) / "ISIC_2020_Training_JPEG.zip").exists()
    assert not list(_raw(settings).rglob("*.part"))
    # a file declared as HTML is fine
    page = b"<html><body>Sign in</body></html>"
    url = bucket.url("isic-challenge-data", "2020/ISIC_2020_Training_JPEG.zip")
    sha = _sha(page)
    body = f"    files:\n      - {{url: '{url}', path: page.bin, content_type: text/html, sha256: {sha}}}\n"
    assert download(_recipe(tmp_path, body), settings).ok


def test_bucket_prefix_listing(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    bucket.page_size = 2
    base = f"{bucket.base_url}/idc-open-data"
    big = bucket.buckets["idc-open-data"][f"{SERIES}/big.dcm"]
    body = f"    bucket:\n      url: {base}\n      prefix: {SERIES}/\n"
    report = download(_recipe(tmp_path, body), settings)
    assert report.error == (
        "toyhttp: no checksum for big.dcm in source 'web': pin its sha256 in the recipe, or set `checksums: "
        "pinned` to pin it on the first download"
    )
    body += f"      sha256:\n        big.dcm: {_sha(big.data)}\n"
    recipe = _recipe(tmp_path, body)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    objects = bucket.buckets["idc-open-data"]
    for key, obj in objects.items():
        local = _raw(settings) / key.removeprefix(f"{SERIES}/")
        assert local.read_bytes() == obj.data if key.startswith(SERIES) else not local.exists()
    listings = bucket.requests_for("/idc-open-data/")
    assert len(listings) == 2 * 3 and "continuation-token=" in listings[-1].path  # 2 runs, 6 keys, 2 a page
    (source,) = make_sources(recipe, settings)
    md5s = {f.path: f.md5 for f in source.expected_files() or []}
    assert md5s["0000.dcm"] == hashlib.md5(objects[f"{SERIES}/0000.dcm"].data).hexdigest()
    assert md5s["big.dcm"] is None  # "<hex>-3": not an md5 of the bytes
    bucket.stop()
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 6


def test_refusals_are_one_line(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    body = f"    bucket: {{url: '{bucket.base_url}/private-bucket'}}\n"
    assert download(_recipe(tmp_path, body), settings).error == (
        f"toyhttp: the bucket {bucket.base_url}/private-bucket refused to list / (AccessDenied); it may not "
        "be public, or the recipe's bucket URL/prefix is wrong"
    )
    body = _files(bucket, [("2019/missing.zip", _sha(b""))])
    (out,) = download(_recipe(tmp_path, body), settings).outcomes
    assert out.error == (
        f"toyhttp: {bucket.base_url}/isic-challenge-data/2019/missing.zip not found (NoSuchKey); check "
        "the URL "
        "in the recipe, or whether the file still is public"
    )


def test_a_zip_is_extracted_once_verified(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("ISIC2018_Task3_Training_Input/ISIC_0024306.jpg", b"\xff\xd8jpeg" * 100)
        z.writestr("ISIC2018_Task3_Training_Input/LICENSE.txt", b"CC-BY-NC\n")
    bucket.put("isic-challenge-data", "2018/small.zip", buf.getvalue(), content_type="application/zip")
    body = _files(bucket, [("2018/small.zip", _sha(buf.getvalue()))])
    body += "    extract: true\n    keep_archive: false\n    strip_components: 1\n"
    report = download(_recipe(tmp_path, body), settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "ISIC_0024306.jpg").read_bytes() == b"\xff\xd8jpeg" * 100
    assert (_raw(settings) / "LICENSE.txt").read_bytes() == b"CC-BY-NC\n"
    assert not (_raw(settings) / "small.zip").exists()  # removed after a complete extraction


def test_recipe_validation(tmp_path: Path) -> None:
    from climb_cli.errors import RecipeError

    with pytest.raises(RecipeError, match=r"give exactly one of 'files' \(a list of URLs\) or 'bucket'"):
        _recipe(tmp_path, "    files: []\n")
    with pytest.raises(RecipeError, match=r"unsafe or empty path '../x'"):
        _recipe(tmp_path, "    files:\n      - {url: 'https://example.org/a', path: ../x}\n")


@pytest.mark.parametrize("fault", FAULT_IDS)
def test_fault_matrix(tmp_path: Path, settings: Settings, bucket: FakeBucket, fault: str) -> None:
    key = "2018/ISIC2018_Task3_Training_Input.zip"
    glob = f"/isic-challenge-data/{key}"
    expected = arm_fault(bucket, fault, glob, len(ZIP))
    if fault == "expired-signed-url":  # a presigned link pasted into the recipe: nothing can renew it
        url = bucket.sign("isic-challenge-data", key, 3600)
        body = f"    files:\n      - {{url: '{url}', path: input.zip, sha256: {_sha(ZIP)}}}\n"
    else:
        body = (
            f"    files:\n      - {{url: '{bucket.url('isic-challenge-data', key)}', sha256: {_sha(ZIP)}}}\n"
        )
    report = download(_recipe(tmp_path, body), settings.with_(read_timeout=0.5))
    if fault == "expired-signed-url":
        (out,) = report.outcomes
        assert out.status == "failed" and "\n" not in out.error
        signature = url.split("X-Amz-Signature=")[1]
        assert out.error.startswith("toyhttp: http://127.0.0.1:") and signature not in out.error
        assert out.error.endswith(
            "refused (AccessDenied); check the URL in the recipe, or whether the file still is public"
        )
        assert not (_raw(settings) / "input.zip").exists()
        part = _raw(settings) / ".climb" / "partial" / "input.zip.part"
        assert part.stat().st_size == len(ZIP) // 3  # kept: a fresh link in the recipe resumes it
        return
    assert report.ok, report.outcomes
    assert (_raw(settings) / "ISIC2018_Task3_Training_Input.zip").read_bytes() == ZIP
    assert [r.status for r in settle(bucket, glob)] == expected
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_no_netrc_credential_on_any_hop(
    tmp_path: Path,
    settings: Settings,
    bucket: FakeBucket,
    capture: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ~/.netrc entry for both hosts is never injected, on the first hop or after a redirect."""
    netrc = tmp_path / "netrc"
    netrc.write_text(
        f"machine 127.0.0.1 login u password {SECRETS[0]}\nmachine 127.0.0.2 login u password {SECRETS[0]}\n"
    )
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    bucket.faults.add("status", path_glob="*GroundTruth.csv", **redirect_to(capture))
    body = _files(bucket, [("2018/ISIC2018_Task3_Training_GroundTruth.csv", _sha(CSV))])
    assert not download(_recipe(tmp_path, body), settings).ok
    assert capture.seen and capture.leaked(SECRETS) == []
    assert not any(r.had_authorization for r in bucket.log)


def test_a_spent_rate_budget_says_its_wait(caplog: pytest.LogCaptureFixture) -> None:
    import requests

    from climb_cli.sources.http import RateBudget

    resp = requests.Response()
    resp.headers.update({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "0"})
    resp.headers["X-RateLimit-Reset"] = str(int(time.time()) + 2)
    budget = RateBudget()
    budget.update(resp)
    with caplog.at_level("INFO", logger="climb.net"):
        assert budget.wait("toyhttp: api.example.org") > 0
    (line,) = [r.getMessage() for r in caplog.records if r.name == "climb.net"]
    assert line.startswith("toyhttp: api.example.org: rate limit spent; next request in ")
