"""The fake Kaggle is faithful: the official, unmodified kaggle CLI (kaggle 2.2.5 + kagglesdk) works with it.

The CLI reaches a loopback server only as ``http://localhost`` through ``HTTP_PROXY`` (sources.md §10 #1-#2),
so the fake also relays absolute-URI requests to its storage host.  Also checked without the CLI: the
signed-URL store (expiry -> 400 ExpiredToken XML, tampering -> 403), 401/404/429 bodies, paging, and the
legacy REST paths.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.kaggle import RULES_MESSAGE, FakeKaggle, KaggleCompetition, KaggleDataset, KaggleUser
from tests.fakes.storage import FakeObjectStore

KEY = "kcli-key-Blorb-0c4d-secret"
TOKEN = "KGAT_kcli-Rezrov-8f1e-secret"
FILES = {
    "a.csv": b"x,y\n1,2\n",
    "sub/b.bin": bytes(range(256)) * 40,
    "big.bin": os.urandom(1_300_000),
}
COMP = {"train.csv": b"id,label\n1,0\n", "test/t.csv": b"id\n2\n"}


def _cli_missing() -> str | None:
    for module in ("kaggle", "kagglesdk", "six"):
        if importlib.util.find_spec(module) is None:
            return f"the official kaggle CLI is not installed (no module {module!r}): pip install kaggle six"
    return None


needs_cli = pytest.mark.skipif(_cli_missing() is not None, reason=_cli_missing() or "")


@pytest.fixture
def fake() -> Iterator[FakeKaggle]:
    datasets = [KaggleDataset("alice", "toy", {1: {"a.csv": b"old\n"}, 2: FILES})]
    competitions = [
        KaggleCompetition("open-comp", COMP, accepted={"alice"}),
        KaggleCompetition("closed-comp", COMP, accepted=set()),
    ]
    users = [KaggleUser("alice", key=KEY, tokens={TOKEN})]
    with FakeKaggle(datasets=datasets, competitions=competitions, users=users) as f:
        yield f


def _kaggle(fake: FakeKaggle, home: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """Run the official CLI exactly as a user would, pointed at the fake through HTTP_PROXY."""
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KAGGLE_")
        and k.lower() not in ("http_proxy", "https_proxy", "no_proxy", "all_proxy")
    }
    base.update(HOME=str(home), KAGGLE_API_ENVIRONMENT="LOCALHOST", HTTP_PROXY=fake.base_url)
    base.update(env)
    home.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "kaggle", *args],
        env=base,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, (r.stdout + r.stderr)[-2000:]
    return r.stdout


# ------------------------------------------------------------------------------ the official client


@needs_cli
def test_cli_lists_and_downloads_a_dataset_with_a_legacy_key(tmp_path: Path, fake: FakeKaggle) -> None:
    home = tmp_path / "home"
    key = {"KAGGLE_USERNAME": "alice", "KAGGLE_KEY": KEY}
    out = _ok(_kaggle(fake, home, "datasets", "files", "alice/toy", **key))
    for name in FILES:
        assert name in out
    _ok(_kaggle(fake, home, "datasets", "download", "alice/toy", "-p", "whole", **key))
    with zipfile.ZipFile(home / "whole" / "toy.zip") as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == FILES
    _ok(_kaggle(fake, home, "datasets", "download", "alice/toy", "-f", "sub/b.bin", "-p", "one", **key))
    assert (home / "one" / "sub" / "b.bin").read_bytes() == FILES["sub/b.bin"]
    _ok(_kaggle(fake, home, "datasets", "download", "alice/toy/1", "-f", "a.csv", "-p", "v1", **key))
    assert (home / "v1" / "a.csv").read_bytes() == b"old\n"
    # GetDatasetMetadata precedes every download (§10 #4); the API saw Basic auth, the storage none (§10 #2)
    assert len(fake.requests_for("*/GetDatasetMetadata")) == 3
    assert fake.storage.log and not fake.storage.authorization_seen
    api = [r for r in fake.log if "/api/v1/" in r.path]
    assert api and all(r.had_authorization for r in api)
    assert all(r.user_agent == "" for r in api)  # §10 #3: the CLI sends an empty User-Agent


@needs_cli
def test_cli_with_an_access_token_and_anonymously(tmp_path: Path, fake: FakeKaggle) -> None:
    home = tmp_path / "home"
    _ok(
        _kaggle(
            fake,
            home,
            "datasets",
            "download",
            "alice/toy",
            "-f",
            "a.csv",
            "-p",
            "tok",
            KAGGLE_API_TOKEN=TOKEN,
        )
    )
    assert (home / "tok" / "a.csv").read_bytes() == FILES["a.csv"]
    assert [r.status for r in fake.requests_for("*/IntrospectToken")] == [200]
    before = len(fake.log)
    out = _ok(_kaggle(fake, home, "datasets", "files", "alice/toy"))  # public: allowed logged out
    assert "big.bin" in out
    assert not any(r.had_authorization for r in fake.log[before:])


@needs_cli
def test_cli_competition_download_with_rules_accepted_and_not(tmp_path: Path, fake: FakeKaggle) -> None:
    home = tmp_path / "home"
    key = {"KAGGLE_USERNAME": "alice", "KAGGLE_KEY": KEY}
    _ok(_kaggle(fake, home, "competitions", "download", "open-comp", "-p", "all", **key))
    with zipfile.ZipFile(home / "all" / "open-comp.zip") as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == COMP
    _ok(_kaggle(fake, home, "competitions", "download", "open-comp", "-f", "test/t.csv", "-p", "one", **key))
    assert (home / "one" / "test" / "t.csv").read_bytes() == COMP["test/t.csv"]
    r = _kaggle(fake, home, "competitions", "download", "closed-comp", "-p", "no", **key)
    assert r.returncode == 1
    assert RULES_MESSAGE in r.stdout + r.stderr
    assert not (home / "no").exists() or not any((home / "no").iterdir())
    assert not fake.storage.authorization_seen


@needs_cli
def test_cli_resumes_a_dropped_transfer_on_the_same_signed_url(tmp_path: Path, fake: FakeKaggle) -> None:
    """§10 #8: the CLI's in-process retry resumes (Range + If-Range) on the redirected URL, no credential."""
    home = tmp_path / "home"
    fake.storage.faults.add("drop", path_glob="*/big.bin", after_bytes=1_200_000)
    _ok(
        _kaggle(
            fake, home, "datasets", "download", "alice/toy", "-f", "big.bin", "-p", "big",
            KAGGLE_USERNAME="alice", KAGGLE_KEY=KEY,
        )
    )  # fmt: skip
    assert (home / "big" / "big.bin").read_bytes() == FILES["big.bin"]
    ranged = [r for r in fake.storage.log if r.range]
    assert ranged and ranged[0].status == 206 and ranged[0].if_range == f'"{_md5(FILES["big.bin"])}"'
    assert not fake.storage.authorization_seen


@needs_cli
def test_cli_gives_up_on_429_and_401_as_the_real_service_makes_it(tmp_path: Path, fake: FakeKaggle) -> None:
    home = tmp_path / "home"
    fake.rate_limit("ListDatasetFiles", times=1, retry_after="1")
    r = _kaggle(fake, home, "datasets", "files", "alice/toy", KAGGLE_USERNAME="alice", KAGGLE_KEY=KEY)
    assert r.returncode == 1 and "TooManyRequests" in r.stdout + r.stderr  # §10 #5: not retried
    r = _kaggle(
        fake, home, "competitions", "download", "open-comp", KAGGLE_USERNAME="alice", KAGGLE_KEY="nope"
    )
    assert r.returncode == 1 and "Authentication required" in r.stdout  # §10 #6: auth help, exit 1
    assert [x.status for x in fake.requests_for("*/DownloadDataFiles")] == [401]


# ------------------------------------------------------------------------------ protocol details


def _md5(data: bytes) -> str:
    return __import__("hashlib").md5(data).hexdigest()


def _rpc(
    fake: FakeKaggle, method: str, body: dict, auth: tuple[str, str] | None = ("alice", KEY)
) -> requests.Response:
    service = "competitions.CompetitionApiService" if "Data" in method else "datasets.DatasetApiService"
    return requests.post(
        f"{fake.base_url}/v1/{service}/{method}", json=body, auth=auth, allow_redirects=False, timeout=5
    )


def test_download_redirects_to_a_signed_gcs_url_on_another_port(fake: FakeKaggle) -> None:
    r = _rpc(fake, "DownloadDataset", {"ownerSlug": "alice", "datasetSlug": "toy", "fileName": "a.csv"})
    assert r.status_code == 302
    location = r.headers["Location"]
    assert location.startswith(fake.storage.base_url) and fake.storage.port != fake.port
    for field in (
        "X-Goog-Algorithm",
        "X-Goog-Credential",
        "X-Goog-Date",
        "X-Goog-Expires",
        "X-Goog-Signature",
    ):
        assert field + "=" in location
    got = requests.get(location, timeout=5)
    assert got.status_code == 200 and got.content == FILES["a.csv"]
    md5 = base64.b64encode(bytes.fromhex(_md5(FILES["a.csv"]))).decode()
    assert got.headers["x-goog-hash"].startswith("crc32c=") and got.headers["x-goog-hash"].endswith(
        f",md5={md5}"
    )
    assert got.headers["ETag"] == f'"{_md5(FILES["a.csv"])}"' and got.headers["Accept-Ranges"] == "bytes"
    part = requests.get(location, headers={"Range": "bytes=2-4", "If-Range": got.headers["ETag"]}, timeout=5)
    assert part.status_code == 206 and part.content == FILES["a.csv"][2:5]


def test_signed_urls_expire_and_cannot_be_forged(fake: FakeKaggle) -> None:
    location = _rpc(fake, "DownloadDataset", {"ownerSlug": "alice", "datasetSlug": "toy"}).headers["Location"]
    forged = location.replace("X-Goog-Expires=259200", "X-Goog-Expires=999999")
    r = requests.get(forged, timeout=5)
    assert r.status_code == 403 and b"<Code>SignatureDoesNotMatch</Code>" in r.content
    r = requests.get(location.split("?")[0], timeout=5)
    assert r.status_code == 403 and b"<Code>AccessDenied</Code>" in r.content
    fake.storage.advance(fake.url_ttl + 1)
    r = requests.get(location, timeout=5)
    assert r.status_code == 400 and r.headers["Content-Type"].startswith("application/xml")
    assert b"<Code>ExpiredToken</Code><Message>The provided token has expired.</Message>" in r.content
    fresh = _rpc(fake, "DownloadDataset", {"ownerSlug": "alice", "datasetSlug": "toy"}).headers["Location"]
    assert requests.get(fresh, timeout=5).status_code == 200


def test_store_knobs_max_uses_expire_next_and_omit_md5() -> None:
    with FakeObjectStore(max_uses=1, omit_md5=True) as store:
        store.put("b/k.txt", b"hello")
        url = store.sign("b/k.txt", 60)
        first = requests.get(url, timeout=5)
        assert first.status_code == 200 and "md5=" not in first.headers["x-goog-hash"]
        assert requests.get(url, timeout=5).status_code == 400
        store.max_uses = None
        store.expire_next(1)
        assert requests.get(store.sign("b/k.txt", 60), timeout=5).status_code == 400
        assert requests.get(store.sign("b/k.txt", 60), timeout=5).status_code == 200
        assert requests.get(store.sign("b/k.txt", 60), headers={"Authorization": "Bearer x"}, timeout=5).ok
        assert store.authorization_seen  # the log records a leaked credential


def test_api_errors_have_kaggles_json_bodies(fake: FakeKaggle) -> None:
    r = _rpc(fake, "ListDatasetFiles", {"ownerSlug": "alice", "datasetSlug": "toy"}, auth=("alice", "wrong"))
    assert r.status_code == 401 and r.json() == {"code": 401, "message": "Unauthorized"}
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    r = _rpc(fake, "DownloadDataFiles", {"competitionName": "closed-comp"})
    assert r.status_code == 403 and r.json() == {"code": 403, "message": RULES_MESSAGE}
    assert "\\u0027" in r.text  # apostrophes JSON-escaped as observed
    r = _rpc(fake, "DownloadDataFiles", {"competitionName": "open-comp"}, auth=None)
    assert r.status_code == 401
    r = _rpc(fake, "ListDatasetFiles", {"ownerSlug": "alice", "datasetSlug": "nope"})
    assert r.status_code == 404 and r.json()["code"] == 404
    fake.rate_limit("GetDataset", style="rpc", retry_after="7")
    r = _rpc(fake, "GetDataset", {"ownerSlug": "alice", "datasetSlug": "toy"})
    assert r.status_code == 429 and r.headers["Retry-After"] == "7"
    assert r.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert (
        _rpc(fake, "GetDataset", {"ownerSlug": "alice", "datasetSlug": "toy"}).json()["currentVersionNumber"]
        == 2
    )


def test_listing_pages_with_next_page_token(fake: FakeKaggle) -> None:
    names, token, pages = [], "", 0
    while True:
        body = {
            "ownerSlug": "alice",
            "datasetSlug": "toy",
            "pageSize": 2,
            **({"pageToken": token} if token else {}),
        }
        page = _rpc(fake, "ListDatasetFiles", body).json()
        names += [f["name"] for f in page["datasetFiles"]]
        assert all(f["totalBytes"] == len(FILES[f["name"]]) for f in page["datasetFiles"])
        pages += 1
        token = page.get("nextPageToken", "")
        if not token:
            break
    assert sorted(names) == sorted(FILES) and pages == 2


def test_legacy_rest_paths(fake: FakeKaggle) -> None:
    base = f"{fake.base_url}/api/v1"
    listing = requests.get(f"{base}/datasets/list/alice/toy?datasetVersionNumber=1", timeout=5).json()
    assert [f["name"] for f in listing["datasetFiles"]] == ["a.csv"]
    r = requests.get(f"{base}/datasets/download/alice/toy/sub/b.bin", timeout=5)  # follows the 302
    assert r.content == FILES["sub/b.bin"] and r.history[0].status_code == 302
    r = requests.get(f"{base}/competitions/data/download/open-comp/train.csv", auth=("alice", KEY), timeout=5)
    assert r.content == COMP["train.csv"]
    meta = requests.get(f"{base}/datasets/metadata/alice/toy", timeout=5).json()
    assert meta["info"]["licenses"] == [{"name": "CC0-1.0"}]
    view = json.loads(requests.get(f"{base}/datasets/view/alice/toy", timeout=5).text)
    assert [v["versionNumber"] for v in view["versions"]] == [2, 1]
