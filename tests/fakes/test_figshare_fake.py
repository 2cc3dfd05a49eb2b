"""The fake figshare's documents: the article presenter, paged file lists (page/page_size, limit/offset, and
mixing them refused), versions, JSON error bodies, and ndownloader's signed redirect."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import pytest
import requests

from tests.fakes.bucket import FakeBucket
from tests.fakes.figshare import FakeFigshare, FigshareArticle, FigshareFile


@pytest.fixture
def fake() -> Iterator[FakeFigshare]:
    files = [FigshareFile(10 + i, f"f{i}.bin", bytes([i]) * (i + 1)) for i in range(12)]
    with (
        FakeBucket() as store,
        FakeFigshare([FigshareArticle(77, {1: files[:3], 2: files})], storage=store) as f,
    ):
        yield f


def test_article_versions_and_file_objects(fake: FakeFigshare) -> None:
    art = requests.get(f"{fake.url}/v2/articles/77", timeout=5).json()
    assert art["version"] == 2 and len(art["files"]) == 12 and art["doi"].endswith(".v2")
    f = art["files"][0]
    assert f["computed_md5"] == hashlib.md5(b"\x00").hexdigest() and f["size"] == 1
    assert f["download_url"] == f"{fake.url}/files/10" and f["is_link_only"] is False
    v1 = requests.get(f"{fake.url}/v2/articles/77/versions/1", timeout=5).json()
    assert [x["name"] for x in v1["files"]] == ["f0.bin", "f1.bin", "f2.bin"]
    versions = requests.get(f"{fake.url}/v2/articles/77/versions", timeout=5).json()
    assert [v["version"] for v in versions] == [1, 2]


def test_paging(fake: FakeFigshare) -> None:
    url = f"{fake.url}/v2/articles/77/files"
    assert len(requests.get(url, timeout=5).json()) == 10  # the documented default page size
    assert [x["id"] for x in requests.get(url, params={"page": 2, "page_size": 5}, timeout=5).json()] == [
        15, 16, 17, 18, 19,
    ]  # fmt: skip
    assert len(requests.get(url, params={"limit": 4, "offset": 10}, timeout=5).json()) == 2
    mixed = requests.get(url, params={"page": 1, "limit": 4}, timeout=5)
    assert mixed.status_code == 422 and "message" in mixed.json()


def test_errors_and_download_redirect(fake: FakeFigshare) -> None:
    missing = requests.get(f"{fake.url}/v2/articles/1", timeout=5)
    assert missing.status_code == 404
    assert missing.json()["message"] == "Article with specified ID does not exist"
    no_version = requests.get(f"{fake.url}/v2/articles/77/versions/9", timeout=5)
    assert no_version.status_code == 404 and no_version.json()["message"] == "Version does not exist"
    r = requests.get(f"{fake.url}/files/12", allow_redirects=False, timeout=5)
    assert r.status_code == 302 and "X-Amz-Signature=" in r.headers["Location"]
    assert requests.get(r.headers["Location"], timeout=5).content == b"\x02\x02\x02"
