"""Git LFS objects in GitHub repositories (HuGaDB, COVID-BLUES): raw.githubusercontent.com serves the pointer,
climb fetches the object through the LFS batch API and checks its oid; tokens stay on github.com; the shared
fault matrix on the object store; and the official git-lfs client unmodified against the same fake."""

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
from climb_cli.sources._git_lfs import parse_pointer
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, write_recipe
from tests.fakes.bucket import FAULT_IDS, arm_fault, settle
from tests.fakes.github import FakeGitHub, FakeRepo, lfs_pointer

TOKEN = SECRETS[0]
COMMIT = "c" * 40
WALK = b"#Activity\tWalking\n" + b"".join(b"%d\t%d\t%d\n" % (i, i * 2, i * 3) for i in range(60_000))
SIT = os.urandom(50_000)
GONE = b"an object nobody uploaded"
SMALL = b"accel_x,accel_y\n1,2\n"  # an ordinary small file (not LFS): served as is
TREE = {
    "Data/HuGaDB_v1_walking_01_00.txt": lfs_pointer(WALK),
    "Data/HuGaDB_v1_sitting_01_00.txt": lfs_pointer(SIT),
    "Data/missing.txt": lfs_pointer(GONE),
    "README.md": SMALL,
}


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    repos = [
        FakeRepo("romanchereshnev", "HuGaDB", {COMMIT: TREE}, lfs=[WALK, SIT]),
        FakeRepo("lab", "private-lfs", {COMMIT: TREE}, lfs=[WALK, SIT], private=True),
        FakeRepo("lab", "spent", {COMMIT: TREE}, lfs=[WALK, SIT], over_quota=True),
    ]
    with FakeGitHub(repos, tokens={TOKEN}) as gh:
        yield gh


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)


def _settings(tmp_path: Path, gh: FakeGitHub, **kw: object) -> Settings:
    mirrors = {"github": gh.api.base_url, "github-raw": gh.raw.base_url, "github-web": gh.web.base_url}
    return fast_settings(tmp_path, mirrors, **kw)


def _recipe(
    tmp_path: Path,
    files: dict[str, str | None],
    repo: str = "romanchereshnev/HuGaDB",
    checksums: str = "upstream",
) -> Recipe:
    body = f"  - id: gh\n    kind: github\n    repo: {repo}\n    commit: {COMMIT}\n    files:\n"
    for path, sha in files.items():
        body += f"      - path: {path}\n" + (f"        sha256: {sha}\n" if sha else "")
    recipe = write_recipe(tmp_path / "recipes", "toylfs", body)
    if checksums != "upstream":
        recipe.write_text(recipe.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([recipe.parent]).load("toylfs")


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toylfs")


WALK_PATH = "Data/HuGaDB_v1_walking_01_00.txt"
SIT_PATH = "Data/HuGaDB_v1_sitting_01_00.txt"


def test_pointer_parsing() -> None:
    p = parse_pointer(lfs_pointer(WALK))
    assert p is not None and p.oid == _sha(WALK) and p.size == len(WALK)
    assert len(lfs_pointer(WALK)) < 200
    assert parse_pointer(SMALL) is None and parse_pointer(b"") is None
    legacy = lfs_pointer(WALK).replace(b"git-lfs.github.com", b"hawser.github.com")
    assert parse_pointer(legacy) == p
    assert parse_pointer(lfs_pointer(WALK).replace(b"sha256:", b"sha1:")) is None
    assert parse_pointer(lfs_pointer(WALK) + b"x" * 1024) is None  # a pointer is under 1024 bytes


def test_lfs_files_are_downloaded_as_their_objects_and_checked_by_oid(
    tmp_path: Path, github: FakeGitHub
) -> None:
    settings = _settings(tmp_path, github)
    recipe = _recipe(tmp_path, {WALK_PATH: _sha(WALK), SIT_PATH: _sha(SIT), "README.md": _sha(SMALL)})
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / WALK_PATH).read_bytes() == WALK  # not the 130-byte pointer
    assert (_raw(settings) / SIT_PATH).read_bytes() == SIT
    assert (_raw(settings) / "README.md").read_bytes() == SMALL
    batches = github.web.requests_for("/romanchereshnev/HuGaDB.git/info/lfs/objects/batch", method="POST")
    assert len(batches) == 2 and all(r.status == 200 for r in batches)
    assert len(github.objects.requests_for("/github-cloud/*")) == 2 and not github.objects.authorization_seen
    assert verify_raw(recipe, settings)[0].ok
    # a later run knows both are LFS objects (stored listing): straight to the batch API
    (_raw(settings) / WALK_PATH).unlink()
    raw_before = len(github.raw.log)
    assert download(recipe, settings).ok
    assert len(github.raw.log) == raw_before and (_raw(settings) / WALK_PATH).read_bytes() == WALK
    (source,) = make_sources(recipe, settings)
    sizes = {f.path: f.size for f in source.expected_files() or []}
    assert sizes[WALK_PATH] == len(WALK) and sizes[SIT_PATH] == len(SIT)


def test_pinned_policy_pins_the_content_not_the_pointer(tmp_path: Path, github: FakeGitHub) -> None:
    settings = _settings(tmp_path, github)
    recipe = _recipe(tmp_path, {WALK_PATH: None}, checksums="pinned")
    assert download(recipe, settings).ok
    pins = (_raw(settings) / ".climb" / "pins.tsv").read_text()
    assert f"{_sha(WALK)}\t{len(WALK)}\tData/HuGaDB_v1_walking_01_00.txt" in pins
    assert _sha(TREE[WALK_PATH]) not in pins


def test_a_pin_that_is_not_the_oid_is_one_line(tmp_path: Path, github: FakeGitHub) -> None:
    settings = _settings(tmp_path, github)
    pointer_sha = _sha(TREE[WALK_PATH])  # what a lock written before LFS support would hold
    (out,) = download(_recipe(tmp_path, {WALK_PATH: pointer_sha}), settings).outcomes
    assert out.status == "failed"
    assert out.error == (
        f"toylfs: {WALK_PATH} is a Git LFS pointer to oid {_sha(WALK)[:12]}... but the recipe pins sha256 "
        f"{pointer_sha[:12]}...: pin the oid (the sha256 of the content, size {len(WALK)})"
    )
    assert not (_raw(settings) / WALK_PATH).exists()


def test_missing_object_and_quota_are_one_line(tmp_path: Path, github: FakeGitHub) -> None:
    settings = _settings(tmp_path, github)
    (out,) = download(_recipe(tmp_path, {"Data/missing.txt": _sha(GONE)}), settings).outcomes
    assert out.error.startswith("toylfs: Git LFS object of Data/missing.txt at commit ")
    assert out.error.endswith("unavailable: Object does not exist on the server (code 404)")
    (out,) = download(_recipe(tmp_path, {WALK_PATH: _sha(WALK)}, repo="lab/spent"), settings).outcomes
    assert out.error.startswith("toylfs: the Git LFS server refused Data/HuGaDB_v1_walking_01_00.txt")
    assert "(HTTP 403): This repository is over its data quota." in out.error


def test_private_repository_token_goes_to_github_only(
    tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = _settings(tmp_path, github)
    recipe = _recipe(tmp_path, {WALK_PATH: _sha(WALK)}, repo="lab/private-lfs")
    (out,) = download(recipe, settings).outcomes
    assert "not found on GitHub (HTTP 404) (if the repository is private, set GITHUB_TOKEN)" in out.error
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert download(recipe, settings).ok
    (batch,) = github.web.requests_for("/lab/private-lfs.git/info/lfs/objects/batch", method="POST")
    assert batch.had_authorization and batch.status == 200
    assert github.raw.requests_for("/lab/private-lfs/*")[-1].had_authorization
    assert not github.objects.authorization_seen  # the signed href on another host gets no token


def test_the_token_never_follows_a_batch_redirect(
    tmp_path: Path, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.capture import CaptureServer

    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    with CaptureServer() as capture:
        github.lfs_redirect = f"{capture.base_url}/steal/objects/batch"
        settings = _settings(tmp_path, github)
        (out,) = download(_recipe(tmp_path, {WALK_PATH: _sha(WALK)}), settings).outcomes
        assert out.status == "failed" and "the Git LFS batch API answered HTTP 307" in out.error
        assert not capture.seen and not capture.leaked([TOKEN])  # not followed: nothing went there
    (batch,) = github.web.requests_for("*/objects/batch", method="POST")
    assert batch.had_authorization and batch.status == 307


def test_an_expired_href_is_requested_again_and_resumed(tmp_path: Path, github: FakeGitHub) -> None:
    settings = _settings(tmp_path, github)
    (source,) = make_sources(_recipe(tmp_path, {WALK_PATH: _sha(WALK)}), settings)
    (rf,) = source.list_files()
    first = source.open(rf, {"Accept-Encoding": "identity"})
    head = first.raw.read(1000)
    first.close()
    github.objects.advance(3601)  # expires_in 3600 has passed
    again = source.open(
        rf, {"Accept-Encoding": "identity", "Range": "bytes=1000-", "If-Range": first.headers["ETag"]}
    )
    assert again.status_code == 206 and head + again.content == WALK
    assert [r.status for r in sorted(github.objects.log, key=lambda r: r.started)] == [200, 403, 206]
    assert len(github.web.requests_for("*/objects/batch", method="POST")) == 2


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])
def test_fault_matrix(tmp_path: Path, github: FakeGitHub, fault: str) -> None:
    host = github.objects
    if fault == "expired":  # the first href is past its lifetime when used: 403, a new batch, then 200
        github.lfs_stale = 1
        expected = [200]
    else:
        expected = arm_fault(host, fault, "/github-cloud/*", len(WALK))
    settings = _settings(tmp_path, github, read_timeout=0.5)
    report = download(_recipe(tmp_path, {WALK_PATH: _sha(WALK)}), settings)
    assert report.ok, report.outcomes
    assert (_raw(settings) / WALK_PATH).read_bytes() == WALK
    assert [r.status for r in settle(host, "/github-cloud/*")] == expected
    assert not host.authorization_seen
    if fault in ("expired-signed-url", "expired"):
        assert len(github.web.requests_for("*/objects/batch", method="POST")) == 2
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
