"""The figshare source against the fake figshare: computed_md5-checked downloads, paging, pinned versions,
signed redirects followed without the token, offline verify, refusals, and the shared fault matrix."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.figshare import FakeFigshare, FigshareArticle, FigshareFile

TOKEN = SECRETS[-1]
BIG = 600_000


@pytest.fixture
def files() -> dict[str, bytes]:
    return {"jichi_labels.csv": b"id,grade\n1,0\n2,3\n", "images.zip": os.urandom(BIG), "README.txt": b"hi\n"}


def _article(files: dict[str, bytes], aid: int = 4879940) -> FigshareArticle:
    v1 = [FigshareFile(100 + i, k, v) for i, (k, v) in enumerate(files.items())]
    v2 = [*v1, FigshareFile(200, "errata.txt", b"fixed\n")]
    return FigshareArticle(aid, {1: v1, 2: v2})


@pytest.fixture
def fig(files: dict[str, bytes]) -> Iterator[FakeFigshare]:
    with FakeFigshare([_article(files)], max_page_size=2) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("FIGSHARE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _recipe(tmp_path: Path, version: int | None = None, include: str = "", article: int = 4879940) -> Recipe:
    src = f"  - id: fig\n    kind: figshare\n    article: {article}\n"
    if version:
        src += f"    version: {version}\n"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toyfig", src)
    return Catalog([path.parent]).load("toyfig")


def _settings(tmp_path: Path, url: str, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"figshare": url}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyfig")


def test_latest_files_paged_and_md5_checked(
    tmp_path: Path, fig: FakeFigshare, files: dict[str, bytes]
) -> None:
    settings = _settings(tmp_path, fig.base_url)
    report = download(_recipe(tmp_path), settings)
    assert report.ok, (report.error, report.outcomes)
    assert report.count("downloaded") == 4  # the latest version has errata.txt too
    for name, data in files.items():
        assert (_raw(settings) / name).read_bytes() == data
    pages = [r.path for r in fig.requests_for("/v2/articles/4879940/files")]
    assert len(pages) == 3  # page_size capped at 2 by the fake: 2 + 2 + an empty page
    again = download(_recipe(tmp_path), settings)
    assert again.ok and again.count("skipped") == 4


def test_pinned_version_and_offline_verify(
    tmp_path: Path, fig: FakeFigshare, files: dict[str, bytes]
) -> None:
    settings = _settings(tmp_path, fig.base_url)
    recipe = _recipe(tmp_path, version=1, include="'*.csv'")
    report = download(recipe, settings)
    assert report.ok and report.count("downloaded") == 1
    fig.stop()
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 1 and not bad
    (_raw(settings) / "jichi_labels.csv").write_bytes(b"id,grade\n1,1\n2,3\n")
    rep, _ = verify_raw(recipe, settings)
    assert rep.corrupt == ["jichi_labels.csv"]


def test_md5_mismatch_is_refused(tmp_path: Path, fig: FakeFigshare) -> None:
    original = fig.file_json

    def stale(f: FigshareFile) -> dict:
        body = original(f)
        body["computed_md5"] = "0" * 32
        return body

    fig.file_json = stale  # type: ignore[method-assign]
    report = download(_recipe(tmp_path, include="README.txt"), _settings(tmp_path, fig.base_url))
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith("toyfig: checksum mismatch for README.txt")


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"article": 99}, "toyfig: figshare article 99 not found (HTTP 404) (Article with specified ID does"),
        ({"version": 7}, "toyfig: figshare article 4879940 version 7 not found (HTTP 404) (Version does not"),
    ],
)
def test_not_found_is_one_line(tmp_path: Path, fig: FakeFigshare, kw: dict, expected: str) -> None:
    report = download(_recipe(tmp_path, **kw), _settings(tmp_path, fig.base_url))
    assert not report.ok and report.error.startswith(expected) and "\n" not in report.error


def test_token_goes_to_the_api_only_never_to_the_signed_host(
    tmp_path: Path, files: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIGSHARE_TOKEN", TOKEN)
    with FakeBucket() as store, FakeFigshare([_article(files)], storage=store) as fig:
        settings = _settings(tmp_path, fig.base_url)
        report = download(_recipe(tmp_path, version=1), settings)
        assert report.ok, report.outcomes
        assert (_raw(settings) / "images.zip").read_bytes() == files["images.zip"]
        assert all(r.had_authorization for r in fig.requests_for("/v2/*"))
        assert [r.status for r in fig.requests_for("/files/*")] == [302] * 3
        assert len(store.requests_for("/pfigshare-u-files/*")) == 3 and not store.authorization_seen


def test_token_never_follows_an_api_redirect_to_another_origin(
    tmp_path: Path, fig: FakeFigshare, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FIGSHARE_TOKEN", TOKEN)
    with CaptureServer() as capture:
        fig.redirects["/v2/articles/4879940/versions/1"] = (
            f"{capture.base_url}/v2/articles/4879940/versions/1"
        )
        report = download(_recipe(tmp_path, version=1), _settings(tmp_path, fig.base_url))
        assert not report.ok and capture.seen and not capture.leaked([TOKEN])
    assert all(r.had_authorization for r in fig.requests_for("/v2/*"))


def test_check_access(tmp_path: Path, fig: FakeFigshare) -> None:
    settings = _settings(tmp_path, fig.base_url)
    (ok,) = [s.check_access() for s in make_sources(_recipe(tmp_path, version=1), settings)]
    assert ok.ok and "3 file(s) readable" in ok.detail
    (bad,) = [s.check_access() for s in make_sources(_recipe(tmp_path, article=5), settings)]
    assert not bad.ok and "not found" in bad.detail
    assert not (_raw(settings) / "images.zip").exists()


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])  # expired: the first link is stale on arrival
def test_fault_matrix(tmp_path: Path, files: dict[str, bytes], fault: str) -> None:
    data = files["images.zip"]
    with FakeBucket() as store, FakeFigshare([_article(files)], storage=store) as fig:
        glob = "/pfigshare-u-files/*"
        store.expire_next = 1 if fault == "expired" else 0
        expected = [200] if fault == "expired" else arm_fault(store, fault, glob, len(data))
        settings = _settings(tmp_path, fig.base_url, read_timeout=0.5)
        report = download(_recipe(tmp_path, version=1, include="images.zip"), settings)
        assert report.ok, report.outcomes
        assert [r.status for r in settle(store, glob)] == expected
        if fault == "expired":
            assert 403 in [r.status for r in store.requests_for(glob)]  # refused, then a fresh link
    assert (_raw(settings) / "images.zip").read_bytes() == data
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, fig: FakeFigshare) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, include="'nomatch/*'"), _settings(tmp_path, fig.base_url))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toyfig: source 'fig' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
