"""The crawl source against fake Apache/nginx index trees (GEO, Expression Atlas): include-pruned recursion,
links that leave the tree ignored, sums files, pins, size cap, offline verify, and the fault matrix."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.crawl import _could_contain
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings, write_recipe
from tests.fakes.bucket import FAULT_IDS, arm_fault, settle
from tests.fakes.dirindex import FakeDirIndex

RAW = os.urandom(700_000)
TREE = {
    "suppl/GSE152075_RAW.tar": RAW,
    "suppl/GSE152075_counts.txt.gz": b"\x1f\x8b" + os.urandom(3000),
    "suppl/filelist.txt": b"Archive/File\tName\n",
    "matrix/GSE152075_series_matrix.txt.gz": b"\x1f\x8b" + os.urandom(500),
    "miniml/GSE152075_family.xml.tgz": os.urandom(2000),
    "soft/deep/er/x.txt": b"deep\n",
}


def _md5sums(tree: dict[str, bytes], folder: str) -> bytes:
    lines = [f"{hashlib.md5(v).hexdigest()}  {k[len(folder) + 1 :]}" for k, v in tree.items()
             if k.startswith(folder + "/")]  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


@pytest.fixture(params=["apache-pre", "apache-table", "nginx"])
def tree(request: pytest.FixtureRequest) -> Iterator[FakeDirIndex]:
    files = dict(TREE)
    files["suppl/md5sum.txt"] = _md5sums(TREE, "suppl")
    with FakeDirIndex(files, style=request.param) as fake:
        yield fake


def _recipe(tmp_path: Path, url: str, extra: str = "", include: str = "", checksums: str = "") -> Recipe:
    src = f"  - id: geo\n    kind: crawl\n    url: {url}\n{extra}"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toycrawl", src)
    if checksums:
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toycrawl")


def _settings(tmp_path: Path, **kw: object) -> Settings:
    return fast_settings(tmp_path, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toycrawl")


def test_include_prunes_the_walk_and_sums_file_checks_bytes(tmp_path: Path, tree: FakeDirIndex) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(
        tmp_path, tree.url, "    sums: suppl/md5sum.txt\n", include="'suppl/*.tar', 'suppl/*.gz'"
    )
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "suppl/GSE152075_RAW.tar").read_bytes() == RAW
    assert report.count("downloaded") == 2
    pages = {r.path for r in tree.requests_for("*/", method="GET")}
    assert pages == {tree.root, tree.root + "suppl/"}  # matrix/, miniml/, soft/ never visited
    assert not any("C=" in r.path or "ncbi" in r.path for r in tree.log)
    (source,) = make_sources(recipe, settings)
    listed = {f.path: f for f in source.expected_files() or []}
    assert listed["suppl/GSE152075_RAW.tar"].md5 == hashlib.md5(RAW).hexdigest()
    if tree.style == "nginx":  # exact byte counts in the index; Apache rounds them (no size taken)
        assert listed["suppl/GSE152075_RAW.tar"].size == len(RAW)
    else:
        assert listed["suppl/GSE152075_RAW.tar"].size is None
    tree.stop()
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2 and not bad


def test_whole_tree_with_pins_and_depth(tmp_path: Path, tree: FakeDirIndex) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path, tree.url, "    max_depth: 2\n", checksums="pinned")
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    got = {str(p.relative_to(_raw(settings))) for p in _raw(settings).rglob("*") if p.is_file()
           and ".climb" not in p.parts}  # fmt: skip
    assert "soft/deep/er/x.txt" not in got and "matrix/GSE152075_series_matrix.txt.gz" in got
    assert report.pinned == 6


def test_unpinned_and_empty_selections_are_recipe_errors(tmp_path: Path, tree: FakeDirIndex) -> None:
    report = download(_recipe(tmp_path, tree.url, include="'miniml/*'"), _settings(tmp_path))
    assert report.error.startswith(
        "toycrawl: no checksum for miniml/GSE152075_family.xml.tgz in source 'geo'"
    )
    report = download(_recipe(tmp_path, tree.url, include="'nothing/*'"), _settings(tmp_path))
    assert report.error.startswith("toycrawl: source 'geo' (crawl http://127.0.0.1:"), report.error
    assert "no upstream file matches include ['nothing/*']" in report.error


def test_wrong_sum_is_refused(tmp_path: Path, tree: FakeDirIndex) -> None:
    tree.files["suppl/md5sum.txt"] = b"0" * 32 + b"  filelist.txt\n"
    recipe = _recipe(tmp_path, tree.url, "    sums: suppl/md5sum.txt\n", include="'suppl/filelist.txt'")
    (out,) = download(recipe, _settings(tmp_path)).outcomes
    assert out.status == "failed" and out.error.startswith(
        "toycrawl: checksum mismatch for suppl/filelist.txt"
    )


def test_size_cap_and_bad_url(tmp_path: Path, tree: FakeDirIndex) -> None:
    report = download(
        _recipe(tmp_path, tree.url, "    max_files: 3\n", checksums="pinned"), _settings(tmp_path)
    )
    assert (
        report.error.startswith("toycrawl: http://127.0.0.1:") and "holds more than 3 files" in report.error
    )
    report = download(_recipe(tmp_path, tree.url + "nope/", checksums="pinned"), _settings(tmp_path))
    assert "refused its index (HTTP 404)" in report.error


def test_could_contain() -> None:
    assert _could_contain("suppl", "suppl/*.tar") and not _could_contain("matrix", "suppl/*.tar")
    assert _could_contain("a/b/c", "**/*.gz") and _could_contain("a", "*/x/*.gz")
    assert not _could_contain("a/x", "*/x") and _could_contain("soft", "soft/")


def test_check_access(tmp_path: Path, tree: FakeDirIndex) -> None:
    recipe = _recipe(tmp_path, tree.url, "    sums: suppl/md5sum.txt\n", include="'suppl/*.gz'")
    (ok,) = [s.check_access() for s in make_sources(recipe, _settings(tmp_path))]
    assert ok.ok and "1 file(s) found" in ok.detail


@pytest.mark.parametrize("fault", [f for f in FAULT_IDS if f != "expired-signed-url"])  # no signed links here
def test_fault_matrix(tmp_path: Path, fault: str) -> None:
    files = {**TREE, "suppl/md5sum.txt": _md5sums(TREE, "suppl")}
    with FakeDirIndex(files, style="apache-pre") as tree:
        glob = tree.root + "suppl/GSE152075_RAW.tar"
        expected = arm_fault(tree, fault, glob, len(RAW))
        settings = _settings(tmp_path, read_timeout=0.5)
        recipe = _recipe(tmp_path, tree.url, "    sums: suppl/md5sum.txt\n", include="'suppl/*.tar'")
        report = download(recipe, settings)
        assert report.ok, report.outcomes
        assert [r.status for r in settle(tree, glob)] == expected
    assert (_raw(settings) / "suppl/GSE152075_RAW.tar").read_bytes() == RAW
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, tree: FakeDirIndex) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, tree.url, include="'nomatch/*'"), _settings(tmp_path))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toycrawl: source 'geo' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
