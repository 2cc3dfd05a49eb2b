"""The Stanford AIMI source against the fake Azure Blob endpoint: listing with paging and Content-MD5, ranged
resumes pinned with If-Match, an expired SAS (one line, and a resume after `climb auth login aimi`), the SAS
never leaving its host or reaching an output, the shared fault matrix, and azure-storage-blob unmodified
against the same fake."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings, write_recipe
from tests.fakes.azure_blob import AzureBlob, FakeAzureBlob
from tests.fakes.bucket import FAULT_IDS, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.test_auth import _env, climb_in_process

CONTAINER = "chexpertchestxrays-u20210408"
BIG = os.urandom(700_000)
BLOBS = {
    "CheXpert-v1.0-small/train.csv": b"Path,Sex,Age\nx/p1.jpg,F,40\n",
    "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg": BIG,
    "CheXpert-v1.0-small/valid.csv": b"Path,Sex,Age\nv/p2.jpg,M,50\n",
    "CheXpert-v1.0-small/README.md": b"# readme\n",
}
PAGE = "https://stanfordaimi.azurewebsites.net/datasets/5158c524-d3ab-4e02-96e9-6ee9efc110a1"


@pytest.fixture
def azure() -> Iterator[FakeAzureBlob]:
    blobs = [AzureBlob(n, d) for n, d in BLOBS.items()]
    blobs.append(AzureBlob("other/blocks.bin", b"uploaded in blocks" * 10, content_md5=False))
    with FakeAzureBlob({CONTAINER: blobs, "ddidiversedermatologyimages": []}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.delenv("AIMI_SAS_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    return tmp_path / "xdg" / "climb" / "aimi"


def _store(config: Path, url: str) -> Path:
    config.mkdir(parents=True, exist_ok=True)
    path = config / f"{CONTAINER}.sas"
    path.write_text(url + "\n")
    return path


def _sig(url: str) -> str:
    return dict(parse_qsl(urlsplit(url).query))["sig"]


def _recipe(tmp_path: Path, extra: str = "", checksums: str = "upstream") -> Recipe:
    src = (
        f"  - id: aimi\n    kind: aimi\n    container: {CONTAINER}\n    prefix: CheXpert-v1.0-small/\n"
        f"    page: {PAGE}\n{extra}"
    )
    path = write_recipe(tmp_path / "recipes", "toyaimi", src, access="registered")
    if checksums != "upstream":
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toyaimi")


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return fast_settings(tmp_path, {}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyaimi")


def _texts(report: object, settings: Settings, caplog: pytest.LogCaptureFixture) -> str:
    files = [
        p.read_text(errors="replace")
        for p in settings.data_dir.rglob("*")
        if p.is_file() and p.suffix in (".json", ".tsv", ".jsonl", ".txt", ".csv", ".parquet", "")
    ]
    return "\n".join([repr(report), caplog.text, *files])


def test_download_lists_pages_checks_md5_and_verifies_offline(
    tmp_path: Path, azure: FakeAzureBlob, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = azure.container_url(CONTAINER)
    _store(config, url)
    azure.page_size = 2  # NextMarker paging
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    for name, data in BLOBS.items():
        assert (_raw(settings) / name).read_bytes() == data
    lists = azure.requests_for(f"/{azure.account}/{CONTAINER}", method="GET")
    assert len(lists) == 2 and "marker=" in lists[1].path  # 4 blobs under the prefix, 2 per page
    (source,) = make_sources(recipe, settings)
    listed = {f.path: f.md5 for f in source.expected_files() or []}
    assert listed[next(iter(BLOBS))] and all(listed.values())
    assert verify_raw(recipe, settings)[0].ok
    assert _sig(url) not in _texts(report, settings, caplog)  # listing, manifest, report: no SAS
    assert "sig=" not in _texts(report, settings, caplog)


def test_blob_without_content_md5_needs_pinned_checksums(
    tmp_path: Path, azure: FakeAzureBlob, config: Path
) -> None:
    _store(config, azure.container_url(CONTAINER))
    extra = "    include: ['**/*.bin']\n"
    src = f"  - id: aimi\n    kind: aimi\n    container: {CONTAINER}\n    prefix: other/\n{extra}"
    path = write_recipe(tmp_path / "recipes", "toyaimi", src)
    report = download(Catalog([path.parent]).load("toyaimi"), _settings(tmp_path))
    assert report.error.startswith("toyaimi: no checksum for other/blocks.bin in source 'aimi'")
    path.write_text(path.read_text().replace("checksums: upstream", "checksums: pinned"))
    assert download(Catalog([path.parent]).load("toyaimi"), _settings(tmp_path)).ok


def test_no_sas_url_says_where_to_get_one(tmp_path: Path, azure: FakeAzureBlob) -> None:
    report = download(_recipe(tmp_path), _settings(tmp_path))
    assert report.error == (
        f"toyaimi: no Stanford AIMI URL for container {CONTAINER}: accept the agreement at {PAGE}, copy the "
        "Azure container URL it shows, and run `climb auth login aimi` (or set AIMI_SAS_URL)"
    )
    assert not azure.log


def test_expired_sas_is_one_line_and_a_new_one_resumes(
    tmp_path: Path, azure: FakeAzureBlob, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    old = azure.container_url(CONTAINER, ttl=3600)
    _store(config, old)
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path)
    azure.advance(7200)
    report = download(recipe, settings)
    assert not report.ok
    assert report.error.startswith(f"toyaimi: the Stanford AIMI URL for {CONTAINER} (from ")
    assert "expired on " in report.error and f"get a new one at {PAGE} and run `climb auth login aimi`" in (
        report.error
    )
    (source,) = make_sources(recipe, settings)
    access = source.check_access()
    assert not access.ok and "expired on" in access.detail and access.next_step == PAGE
    assert _sig(old) not in _texts(report, settings, caplog)
    # the SAS expires in the middle of a blob: the part stays, the new URL resumes it with a Range
    _store(config, azure.container_url(CONTAINER, ttl=3600))
    big = "/*/view1_frontal.jpg"
    azure.expire_on_drop = True
    azure.faults.add("drop", path_glob=big, after_bytes=200_000)
    report = download(recipe, settings)
    assert not report.ok and "expired on" in report.why
    parts = list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
    assert len(parts) == 1 and parts[0].stat().st_size == 200_000
    azure.expire_on_drop = False
    _store(config, azure.container_url(CONTAINER, ttl=3600))
    assert download(recipe, settings).ok
    big_name = next(n for n in BLOBS if n.endswith("view1_frontal.jpg"))
    assert (_raw(settings) / big_name).read_bytes() == BIG
    last = settle(azure, big)[-1]
    assert last.status == 206 and last.range == "bytes=200000-"


def test_the_sas_never_follows_a_redirect(tmp_path: Path, azure: FakeAzureBlob, config: Path) -> None:
    with CaptureServer() as capture:
        name = "CheXpert-v1.0-small/README.md"
        azure.redirects[name] = f"{capture.base_url}/steal"
        url = azure.container_url(CONTAINER)
        _store(config, url)
        report = download(_recipe(tmp_path), _settings(tmp_path))
        assert not report.ok and "not followed, so the SAS stays with its host" in report.why
        assert not capture.seen and not capture.leaked([_sig(url)])


def test_permissions_and_wrong_container(tmp_path: Path, azure: FakeAzureBlob, config: Path) -> None:
    _store(config, azure.container_url(CONTAINER, permissions="r"))  # no 'l': cannot list
    report = download(_recipe(tmp_path), _settings(tmp_path))
    assert "does not allow the listing of container" in report.error and "sp=rl" in report.error


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])
def test_fault_matrix(tmp_path: Path, azure: FakeAzureBlob, config: Path, fault: str) -> None:
    _store(config, azure.container_url(CONTAINER))
    glob = "/*/view1_frontal.jpg"
    settings = _settings(tmp_path, read_timeout=0.5)
    recipe = _recipe(tmp_path, "    include: ['**/*.jpg']\n")
    big_name = next(n for n in BLOBS if n.endswith("view1_frontal.jpg"))
    if fault == "expired":  # the SAS expired before the download began: one line, nothing fetched
        azure.advance(2 * 86400)
        report = download(recipe, settings)
        assert not report.ok and "expired on" in report.error and "`climb auth login aimi`" in report.error
        assert not azure.requests_for(glob)
        return
    if fault == "expired-signed-url":
        # the SAS is the user's credential: nothing can re-sign it. A clean failure naming the expiry, the
        # part kept for the renewed URL (test_expired_sas_is_one_line_and_a_new_one_resumes)
        azure.expire_on_drop = True
        azure.faults.add("drop", path_glob=glob, after_bytes=len(BIG) // 3)
        report = download(recipe, settings)
        assert not report.ok and "expired on" in report.why and "`climb auth login aimi`" in report.why
        assert not (_raw(settings) / big_name).exists()
        (part,) = (_raw(settings) / ".climb" / "partial").rglob("*.part")
        assert part.stat().st_size == len(BIG) // 3
        return
    else:
        expected = arm_fault(azure, fault, glob, len(BIG))
        if fault == "changed":
            expected = [200, 412, 200]  # If-Match refuses the changed blob; climb starts it again
        report = download(recipe, settings)
        assert report.ok, report.outcomes
        assert [r.status for r in settle(azure, glob)] == expected
    assert (_raw(settings) / big_name).read_bytes() == BIG
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_auth_login_status_and_check(tmp_path: Path, azure: FakeAzureBlob) -> None:
    env = _env(tmp_path)
    env.pop("AIMI_SAS_URL", None)
    home = Path(env["HOME"])
    good = azure.container_url(CONTAINER)
    azure.advance(-10 * 86400)
    stale = azure.container_url(CONTAINER, ttl=60)
    azure.advance(10 * 86400)
    r = climb_in_process("auth", "login", "aimi", env=env, stdin="https://example.org/nothing\n")
    assert r.returncode == 2 and "not an Azure container URL with a SAS" in r.stderr
    r = climb_in_process("auth", "login", "aimi", env=env, stdin=stale + "\n")
    assert r.returncode == 1 and "not stored: the URL has expired" in r.stderr
    stored = home / ".config" / "climb" / "aimi" / f"{CONTAINER}.sas"
    assert not stored.exists()
    r = climb_in_process("auth", "login", "aimi", env=env, stdin=good + "\n")
    assert r.returncode == 0, r.stderr
    assert f"aimi: Azure accepted the URL for container {CONTAINER} (valid until" in r.stdout
    assert stored.read_text() == good + "\n" and stat.S_IMODE(stored.stat().st_mode) == 0o600
    r = climb_in_process("auth", "status", env=env)
    assert r.returncode == 0 and "aimi" in r.stdout and CONTAINER in r.stdout
    recipe = _recipe(tmp_path)
    assert recipe.path is not None
    g = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipe.path.parent)]
    r = climb_in_process(*g, "auth", "check", "toyaimi", env=env)
    assert CONTAINER in r.stdout and "readable" in r.stdout, r.stdout + r.stderr
    for run in (r,):
        assert _sig(good) not in run.stdout + run.stderr


def test_secrets_are_registered_for_redaction(azure: FakeAzureBlob, config: Path) -> None:
    from climb_cli import credentials, redaction

    url = azure.container_url(CONTAINER)
    _store(config, url)
    assert credentials.aimi(CONTAINER) is not None
    assert _sig(url) not in redaction.redact(f"boom: {url}") and "***" in redaction.redact(url)
    assert "sig=***" in redaction.redact_url(url.replace(_sig(url), "x" * 20))


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, azure: FakeAzureBlob, config: Path) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    _store(config, azure.container_url(CONTAINER))
    report = download(_recipe(tmp_path, "    include: ['nomatch/*']\n"), _settings(tmp_path))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toyaimi: source 'aimi' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
