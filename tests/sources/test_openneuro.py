"""The OpenNeuro source against the fake OpenNeuro: a pinned snapshot's files from the public bucket
(ETag md5), restricted datasets with the API key cookie (origin-bound), expired presigned links, `climb auth`
for the key, and the fault matrix."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli import auth
from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, piped, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, S3Object, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.openneuro import FakeOpenNeuro, OpenNeuroDataset

KEY = "on-key-Yoho-39c2-secret"
NII = os.urandom(400_000)
DESC = (
    b'{"Name": "TCP auditory oddball", "BIDSVersion": "1.8.0", '
    b'"DatasetDOI": "10.18112/openneuro.ds005237.v1.0.0"}'
)


def _files(extra: bytes = b"") -> dict[str, bytes]:
    return {
        "dataset_description.json": DESC,
        "participants.tsv": b"participant_id\tage\nsub-01\t30\n" + extra,
        "sub-01/eeg/sub-01_task-oddball_eeg.set": NII,
        "sub-01/eeg/sub-01_task-oddball_events.tsv": b"onset\tduration\n1.0\t0.1\n",
    }


def _datasets() -> list[OpenNeuroDataset]:
    return [
        OpenNeuroDataset("ds005237", {"1.0.0": _files(), "1.0.1": _files(b"sub-02\t41\n")}),
        OpenNeuroDataset("ds009999", {"1.0.0": {"README": b"private\n"}}, restricted=True),
    ]


@pytest.fixture
def store() -> Iterator[FakeBucket]:
    with FakeBucket() as s:
        yield s


@pytest.fixture
def on(store: FakeBucket) -> Iterator[FakeOpenNeuro]:
    with FakeOpenNeuro(_datasets(), store, keys={KEY: {"ds009999"}}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("OPENNEURO_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _recipe(tmp_path: Path, dataset: str = "ds005237", tag: str = "1.0.0", include: str = "") -> Recipe:
    src = f"  - id: eeg\n    kind: openneuro\n    dataset: {dataset}\n    tag: '{tag}'\n"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toyon", src)
    return Catalog([path.parent]).load("toyon")


def _settings(tmp_path: Path, fake: FakeOpenNeuro, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"openneuro": fake.base_url}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyon")


def test_pinned_snapshot_downloads_checked_by_etag_md5(
    tmp_path: Path, on: FakeOpenNeuro, store: FakeBucket
) -> None:
    settings = _settings(tmp_path, on)
    recipe = _recipe(tmp_path)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    for path, data in _files().items():
        assert (_raw(settings) / path).read_bytes() == data
    assert all("versionId=" in r.path for r in store.requests_for("/openneuro.org/*"))
    assert any('snapshot(datasetId: "ds005237", tag: "1.0.0")' in q for q in on.queries)
    assert not any(r.had_authorization or r.cookies for r in on.log + store.log)
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 4
    on.stop()
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 4 and not bad


def test_etag_md5_mismatch_is_refused(tmp_path: Path, on: FakeOpenNeuro, store: FakeBucket) -> None:
    class Corrupt(S3Object):  # the bytes no longer match the MD5 the object store reports for them
        @property
        def etag(self) -> str:
            return '"' + "0" * 32 + '"'

    for k, obj in list(store.versions.items()):
        if k[1] == "ds005237/participants.tsv":
            store.versions[k] = Corrupt(obj.bucket, obj.key, obj.data, obj.content_type, obj.mtime)
    report = download(_recipe(tmp_path, include="participants.tsv"), _settings(tmp_path, on))
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith("toyon: checksum mismatch for participants.tsv")
    assert not (_raw(_settings(tmp_path, on)) / "participants.tsv").exists()


def test_graphql_gateway_trouble_is_retried_as_openneuro_py_does(tmp_path: Path, on: FakeOpenNeuro) -> None:
    on.gateway = [503, "504 Gateway Timeout", "connect ECONNREFUSED 10.0.0.1:80", 524]
    report = download(_recipe(tmp_path, include="participants.tsv"), _settings(tmp_path, on))
    assert report.ok, (report.error, report.outcomes)
    assert not on.gateway and len(on.queries) == 6  # 4 troubled + snapshots + files
    on.gateway = ["Cannot return null for non-nullable field"]  # not transient: one line, no retry
    report = download(_recipe(tmp_path, include="participants.tsv"), _settings(tmp_path, on))
    assert report.error.startswith("toyon: OpenNeuro refused the query for ds005237: Cannot return null")
    assert len(on.queries) == 7


def test_unknown_tag_names_the_existing_ones(tmp_path: Path, on: FakeOpenNeuro) -> None:
    report = download(_recipe(tmp_path, tag="2.0.0"), _settings(tmp_path, on))
    assert report.error == (
        "toyon: OpenNeuro ds005237 has no snapshot '2.0.0' (it has: 1.0.0, 1.0.1); fix `tag:` in the recipe"
    )


def test_restricted_dataset_needs_the_key_and_sends_it_as_a_cookie(
    tmp_path: Path, on: FakeOpenNeuro, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, on)
    report = download(_recipe(tmp_path, dataset="ds009999"), settings)
    assert report.error.startswith("toyon: OpenNeuro ds009999 is restricted: get an API key at")
    monkeypatch.setenv("OPENNEURO_API_KEY", "on-wrong-key")
    report = download(_recipe(tmp_path, dataset="ds009999"), settings)
    assert report.error.startswith("toyon: the OpenNeuro API key from env OPENNEURO_API_KEY gives no access")
    monkeypatch.setenv("OPENNEURO_API_KEY", KEY)
    report = download(_recipe(tmp_path, dataset="ds009999"), settings)
    assert report.ok, report.outcomes
    assert (_raw(settings) / "README").read_bytes() == b"private\n"
    served = on.requests_for("/crn/datasets/ds009999/*")
    assert served and all("accessToken" in r.cookies for r in served)


def test_key_never_reaches_another_origin(
    tmp_path: Path, on: FakeOpenNeuro, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENNEURO_API_KEY", KEY)
    with CaptureServer() as capture:
        on.redirect_to = f"{capture.base_url}/elsewhere"
        download(_recipe(tmp_path, dataset="ds009999"), _settings(tmp_path, on))
        assert capture.seen and not capture.leaked([KEY])


def test_check_access_and_auth_login_writes_openneuro_py_config(tmp_path: Path, on: FakeOpenNeuro) -> None:
    settings = _settings(tmp_path, on)
    (row,) = auth.check([_recipe(tmp_path, dataset="ds009999")], settings)
    assert not row.ok and row.status == "no credentials"
    res = auth.login("openneuro", settings, stdin=piped(KEY))
    assert res.path == tmp_path / "xdg" / "openneuro-py" / "config.json"
    assert json.loads(res.path.read_text()) == {"endpoint": "https://openneuro.org/", "apikey": KEY}
    assert (res.path.stat().st_mode & 0o777) == 0o600
    (row,) = auth.check([_recipe(tmp_path, dataset="ds009999")], settings)
    assert row.ok and "readable with an API key" in row.detail
    found = {f["service"]: f for f in auth.status(settings)}
    assert found["openneuro"]["found"] and found["openneuro"]["origin"] == str(res.path)
    assert not any(s in json.dumps(auth.status(settings)) for s in SECRETS)


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])  # expired: the first link is stale on arrival
def test_fault_matrix(tmp_path: Path, store: FakeBucket, fault: str) -> None:
    # expired-signed-url: the links are presigned (as OpenNeuro's urls may be) and expire mid-transfer
    with FakeOpenNeuro(_datasets(), store, signed=fault in ("expired-signed-url", "expired")) as on:
        glob = "/openneuro.org/ds005237/sub-01/eeg/*.set"
        store.expire_next = len(_files()) if fault == "expired" else 0  # a listing signs every file
        expected = [200] if fault == "expired" else arm_fault(store, fault, glob, len(NII))
        settings = _settings(tmp_path, on, read_timeout=0.5)
        report = download(_recipe(tmp_path, include="'**/*.set'"), settings)
        assert report.ok, report.outcomes
        assert [r.status for r in settle(store, glob)] == expected
        if fault == "expired":
            assert 403 in [r.status for r in store.requests_for(glob)]  # refused, then a fresh link
    assert (_raw(settings) / "sub-01/eeg/sub-01_task-oddball_eeg.set").read_bytes() == NII
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, on: FakeOpenNeuro) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, include="'nomatch/*'"), _settings(tmp_path, on))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toyon: source 'eeg' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
