"""The Zenodo source against the fake Zenodo: md5-checked downloads, encoded keys, restricted records,
rate-limit pacing, credential stripping, offline verify, and the shared fault matrix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, redirect_to, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.zenodo import FakeZenodo, ZenodoFile, ZenodoRecord

TOKEN, WRONG = SECRETS[0], SECRETS[1]  # under the leak guard of tests/conftest.py
BIG = 700_000


@pytest.fixture
def files() -> dict[str, bytes]:
    return {
        "data/a.csv": b"id,label\n1,0\n2,1\n",
        "b c.bin": os.urandom(BIG),
        "README.md": b"# fake\n",
    }


@pytest.fixture
def zenodo(files: dict[str, bytes]) -> Iterator[FakeZenodo]:
    records = [
        ZenodoRecord(1001, [ZenodoFile(k, v) for k, v in files.items()]),
        ZenodoRecord(1002, [ZenodoFile("secret.bin", b"restricted bytes" * 100)], restricted=True),
    ]
    with FakeZenodo(records, tokens={TOKEN: {1002}, "other-token-3f9": set()}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("ZENODO_TOKEN", "ZENODO_ACCESS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _settings(tmp_path: Path, url: str, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"zenodo": url}, **kw)


@pytest.fixture
def settings(tmp_path: Path, zenodo: FakeZenodo) -> Settings:
    return _settings(tmp_path, zenodo.base_url)


def _recipe(tmp_path: Path, record: int = 1001, include: str = "", access: str = "open") -> Recipe:
    src = f"  - id: zen\n    kind: zenodo\n    record: {record}\n"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toyzen", src, access=access)
    return Catalog([path.parent]).load("toyzen")


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyzen")


def test_record_downloads_byte_identical_checked_by_md5(
    tmp_path: Path, settings: Settings, zenodo: FakeZenodo, files: dict[str, bytes]
) -> None:
    recipe = _recipe(tmp_path)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert report.count("downloaded") == 3
    for key, data in files.items():
        assert (_raw(settings) / key).read_bytes() == data
    paths = {r.path.split("?")[0] for r in zenodo.requests_for("/api/records/1001/files/*", method="GET")}
    # keys are percent-encoded as in links.self: the space and the slash too
    assert "/api/records/1001/files/b%20c.bin/content" in paths
    assert "/api/records/1001/files/data%2Fa.csv/content" in paths
    assert not any(r.had_authorization for r in zenodo.log)  # no token configured, none sent
    assert all(r.user_agent.startswith("climb/") for r in zenodo.log)
    # a second run: nothing to fetch
    before = len(zenodo.requests_for("*/content"))
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 3 and len(zenodo.requests_for("*/content")) == before


def test_include_globs_select_files_and_verify_works_offline(
    tmp_path: Path, settings: Settings, zenodo: FakeZenodo, files: dict[str, bytes]
) -> None:
    recipe = _recipe(tmp_path, include="'data/*'")
    report = download(recipe, settings)
    assert report.ok and report.count("downloaded") == 1
    assert not (_raw(settings) / "b c.bin").exists()
    zenodo.stop()  # verify needs no network: the listing was stored
    (source,) = make_sources(recipe, settings)
    expected = source.expected_files()
    assert expected is not None and [f.path for f in expected] == ["data/a.csv"]
    assert expected[0].md5 == ZenodoFile("x", files["data/a.csv"]).md5
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 1 and not bad
    (_raw(settings) / "data/a.csv").write_bytes(b"id,label\n1,1\n2,1\n")
    rep, _ = verify_raw(recipe, settings)
    assert rep.corrupt == ["data/a.csv"]


def test_md5_mismatch_is_refused(tmp_path: Path, settings: Settings, zenodo: FakeZenodo) -> None:
    zenodo.records[1001].files[2].data = b"# changed after listing\n"  # README.md, listing not refreshed
    recipe = _recipe(tmp_path, include="README.md")
    # the listing (record JSON) is generated per request; make the served bytes differ from it
    original = zenodo.record_json

    def stale(record: ZenodoRecord) -> dict:
        body = original(record)
        for f in body["files"]:  # type: ignore[union-attr]
            if f["key"] == "README.md":
                f["checksum"] = "md5:" + "0" * 32
        return body

    zenodo.record_json = stale  # type: ignore[method-assign]
    report = download(recipe, settings)
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith(
        "toyzen: checksum mismatch for README.md from http://"
    )
    assert not (_raw(settings) / "README.md").exists()


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (
            None,
            "toyzen: Zenodo record 1002 is restricted: request access at "
            "http://127.0.0.1:{port}/records/1002, "
            "then set ZENODO_TOKEN",
        ),
        (WRONG, "toyzen: Zenodo did not accept the token from env ZENODO_TOKEN (HTTP 401); make a new"),
        (
            "other-token-3f9",
            "toyzen: your Zenodo token (from env ZENODO_TOKEN) gives no access to record 1002",
        ),
    ],
)
def test_restricted_record_refusals_are_one_line(
    tmp_path: Path,
    settings: Settings,
    zenodo: FakeZenodo,
    monkeypatch: pytest.MonkeyPatch,
    token: str | None,
    expected: str,
) -> None:
    if token:
        monkeypatch.setenv("ZENODO_TOKEN", token)
    report = download(_recipe(tmp_path, record=1002, access="registered"), settings)
    assert not report.ok
    assert report.error.startswith(expected.format(port=zenodo.port)), report.error
    assert "\n" not in report.error and not any(s in report.error for s in SECRETS)
    why = {None: "no credentials", WRONG: "credentials rejected"}.get(token, "access not granted")
    assert report.category == why, report.category


def test_restricted_record_with_token_uses_bearer_never_the_query(
    tmp_path: Path, settings: Settings, zenodo: FakeZenodo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", TOKEN)
    report = download(_recipe(tmp_path, record=1002, access="registered"), settings)
    assert report.ok, report.error
    assert (_raw(settings) / "secret.bin").read_bytes() == b"restricted bytes" * 100
    first, *rest = zenodo.log  # asked anonymously first; the token only once the record refused that
    assert not first.had_authorization and first.status == 403
    assert rest and all(r.had_authorization for r in rest)
    assert not any("access_token" in r.path or TOKEN in r.path for r in zenodo.log)
    listing = (_raw(settings) / ".climb" / "listing-zen.json").read_text()
    assert TOKEN not in listing


def test_a_stale_token_never_breaks_an_open_record(
    tmp_path: Path,
    settings: Settings,
    zenodo: FakeZenodo,
    monkeypatch: pytest.MonkeyPatch,
    files: dict[str, bytes],
) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", WRONG)  # revoked long ago: Zenodo answers 401 to any request with it
    report = download(_recipe(tmp_path), settings)
    assert report.ok, report.error
    assert (_raw(settings) / "b c.bin").read_bytes() == files["b c.bin"]
    assert zenodo.log and not any(r.had_authorization for r in zenodo.log)  # an open record: never sent


def test_record_given_as_its_doi(tmp_path: Path, settings: Settings, zenodo: FakeZenodo) -> None:
    src = "  - id: zen\n    kind: zenodo\n    record: 10.5281/zenodo.1001\n    include: [README.md]\n"
    recipe = Catalog([write_recipe(tmp_path / "recipes", "toyzen", src).parent]).load("toyzen")
    assert download(recipe, settings).ok and (_raw(settings) / "README.md").is_file()


def test_unknown_record_is_a_not_found_line(tmp_path: Path, settings: Settings, zenodo: FakeZenodo) -> None:
    report = download(_recipe(tmp_path, record=99), settings)
    assert report.error.startswith("toyzen: record 99 not found on Zenodo (HTTP 404); check `record: 99`")


def test_token_never_reaches_the_storage_host(
    tmp_path: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", TOKEN)
    with (
        FakeBucket() as store,
        FakeZenodo(
            [ZenodoRecord(1001, [ZenodoFile(k, v) for k, v in files.items()], restricted=True)],
            tokens={TOKEN: {1001}},
            storage=store,
        ) as zenodo,
    ):
        settings = _settings(tmp_path, zenodo.base_url)
        report = download(_recipe(tmp_path, access="registered"), settings)
        assert report.ok, (report.error, report.outcomes)
        assert (_raw(settings) / "b c.bin").read_bytes() == files["b c.bin"]
        content = zenodo.requests_for("*/content")
        assert content and all(r.status == 302 and r.had_authorization for r in content)
        assert len(store.requests_for("/zenodo-files/*")) == 3
        assert not store.authorization_seen


def test_paces_to_the_rate_limit_instead_of_hitting_429(tmp_path: Path, files: dict[str, bytes]) -> None:
    many = {f"part-{i}.bin": os.urandom(2000) for i in range(5)}
    with FakeZenodo(
        [ZenodoRecord(1001, [ZenodoFile(k, v) for k, v in many.items()])], rate_limit=3, window=1.0
    ) as zenodo:
        settings = _settings(tmp_path, zenodo.base_url, connections_per_host=1)
        report = download(_recipe(tmp_path), settings)
        assert report.ok, report.outcomes
        statuses = [r.status for r in zenodo.log]
    assert len(statuses) == 6 and 429 not in statuses  # 1 record + 5 files, over 2 windows, no refusal
    for key, data in many.items():
        assert (_raw(settings) / key).read_bytes() == data


def test_listing_retries_a_429_after_retry_after(tmp_path: Path, files: dict[str, bytes]) -> None:
    with FakeZenodo(
        [ZenodoRecord(1001, [ZenodoFile("README.md", files["README.md"])])], rate_limit=2, window=1.0
    ) as zenodo:
        settings = _settings(tmp_path, zenodo.base_url)
        (source,) = make_sources(_recipe(tmp_path), settings)
        with requests.Session() as other:
            for _ in range(2):  # someone else spends the window's budget just before climb lists
                other.get(f"{zenodo.base_url}/api/records/1001", timeout=5).close()
        files_ = source.list_files()  # 429 + Retry-After, wait, then 200
        assert [f.path for f in files_] == ["README.md"]
        assert [r.status for r in zenodo.requests_for("/api/records/1001")] == [200, 200, 429, 200]


def test_server_without_range_support(tmp_path: Path, files: dict[str, bytes]) -> None:
    with FakeZenodo([ZenodoRecord(1001, [ZenodoFile("b c.bin", files["b c.bin"])])], ranges=False) as zenodo:
        zenodo.faults.add("drop", path_glob="*/content", after_bytes=100_000)
        settings = _settings(tmp_path, zenodo.base_url)
        report = download(_recipe(tmp_path), settings)
        assert report.ok, report.outcomes
        reqs = settle(zenodo, "*/content")
        assert [r.status for r in reqs] == [200, 200] and reqs[1].range  # asked to resume, got it whole
    assert (_raw(settings) / "b c.bin").read_bytes() == files["b c.bin"]


def test_check_access(tmp_path: Path, settings: Settings, zenodo: FakeZenodo) -> None:
    (ok,) = [s.check_access() for s in make_sources(_recipe(tmp_path), settings)]
    assert ok.ok and "readable anonymously" in ok.detail
    (denied,) = [s.check_access() for s in make_sources(_recipe(tmp_path, record=1002), settings)]
    assert not denied.ok and denied.next_step.endswith("/records/1002")
    assert not (_raw(settings) / "b c.bin").exists()  # no data downloaded


@pytest.mark.parametrize("fault", FAULT_IDS)
def test_fault_matrix(tmp_path: Path, files: dict[str, bytes], fault: str) -> None:
    data = files["b c.bin"]
    with (
        FakeBucket() as store,
        FakeZenodo(
            [ZenodoRecord(1001, [ZenodoFile("b c.bin", data)])],
            storage=store if fault == "expired-signed-url" else None,
        ) as zenodo,
    ):
        host = store if fault == "expired-signed-url" else zenodo
        glob = "/zenodo-files/*" if fault == "expired-signed-url" else "*/content"
        expected = arm_fault(host, fault, glob, len(data))
        settings = _settings(tmp_path, zenodo.base_url, read_timeout=0.5)
        report = download(_recipe(tmp_path), settings)
        assert report.ok, report.outcomes
        assert [r.status for r in settle(host, glob)] == expected
    assert (_raw(settings) / "b c.bin").read_bytes() == data
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_token_never_follows_a_redirect_to_another_origin(
    tmp_path: Path,
    settings: Settings,
    zenodo: FakeZenodo,
    monkeypatch: pytest.MonkeyPatch,
    capture: CaptureServer,
) -> None:
    monkeypatch.setenv("ZENODO_TOKEN", TOKEN)
    zenodo.faults.add("status", path_glob="*/content", **redirect_to(capture))
    report = download(_recipe(tmp_path, record=1002, access="registered"), settings)
    assert not report.ok
    assert capture.seen and capture.leaked(SECRETS) == []
    assert any(r.had_authorization for r in zenodo.requests_for("*/content"))


def test_include_that_matches_nothing_is_an_error(
    tmp_path: Path, settings: Settings, zenodo: FakeZenodo
) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, include="'nomatch/*'"), settings)
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toyzen: source 'zen' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
