"""The GitHub source against the fake GitHub: raw files and archives at a pinned commit, release assets
through signed object-store URLs (re-resolved on expiry), tokens that never leave GitHub's own hosts,
rate limits, refusals, and the shared fault matrix (on a release asset)."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
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
from tests.fakes.bucket import FAULT_IDS, arm_fault, logged, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.github import FakeAsset, FakeGitHub, FakeRelease, FakeRepo

TOKEN, WRONG = SECRETS[0], SECRETS[1]  # under the leak guard of tests/conftest.py
# CLIMB's frozen ECG split files (climb-datasets.md, Appendix): the real pins, used as recipe fields
CLIMB_COMMIT = "0f767b1ea168810b998981078dc27e7f9a4e4675"
CLIMB_SPLITS = {
    "src/datasets/ecg/ptbxl_splits.csv": (
        "e48f07e91d6b2616707483bfff3863d4c3bd02866274ccf935d8363269713ba9",
        1737930,
    ),
    "src/datasets/ecg/CPSC_splits.csv": (
        "e008e2ba52280c568d986fa34e4a46c751c633cb67afb73e367ce890015440b1",
        538384,
    ),
    "src/datasets/ecg/Ga_splits.csv": (
        "6e47ca14de188d0a5086e2759f8019d5560a529516c39f1ad3183722c3ec306a",
        811585,
    ),
    "src/datasets/ecg/ChapmanShaoxing_splits.csv": (
        "b3ec97578d4f780c7f01c61383194a8780734b286523c8411e2c685795406be9",
        957465,
    ),
}
HEADER = b",Unnamed: 0,file_name,normal,cd,mi,sttc,other,afib,hyp,patient,split,label\n"
ASSET = os.urandom(600_000)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def tree() -> dict[str, bytes]:
    rows = b"".join(
        b"%d,%d,/x/ptbxl/HR%05d.hea,1,0,0,0,0,0,0,%d,train,0\n" % (i, i, i, i) for i in range(2000)
    )
    return {
        "src/datasets/ecg/ptbxl_splits.csv": HEADER + rows,
        "src/datasets/ecg/CPSC_splits.csv": HEADER + rows[:5000],
        "README.md": b"# CLIMB\n",
    }


@pytest.fixture
def github(tree: dict[str, bytes]) -> Iterator[FakeGitHub]:
    repos = [
        FakeRepo(
            "DDVD233",
            "CLIMB",
            {CLIMB_COMMIT: tree},
            releases=[
                FakeRelease(
                    "v1.0",
                    [
                        FakeAsset("weights.bin", ASSET),
                        FakeAsset("old notes.txt", b"uploaded before digests\n", digest=False),
                    ],
                )
            ],
        ),
        FakeRepo(
            "lab",
            "private-data",
            {"a" * 40: {"x.csv": b"1,2\n"}},
            private=True,
            releases=[FakeRelease("v2", [FakeAsset("p.bin", b"private asset" * 50)])],
        ),  # fmt: skip
    ]
    with FakeGitHub(repos, tokens={TOKEN}) as gh:
        yield gh


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)


def _settings(tmp_path: Path, gh: FakeGitHub | None, **kw: object) -> Settings:
    mirrors = {"github": gh.api.base_url, "github-raw": gh.raw.base_url} if gh else {}
    return fast_settings(tmp_path, mirrors, **kw)


@pytest.fixture
def settings(tmp_path: Path, github: FakeGitHub) -> Settings:
    return _settings(tmp_path, github)


def _recipe(tmp_path: Path, body: str, *, checksums: str = "upstream", access: str = "open") -> Recipe:
    src = "  - id: gh\n    kind: github\n" + body
    path = write_recipe(tmp_path / "recipes", "toygh", src, access=access)
    if checksums != "upstream":
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toygh")


def _files_yaml(files: dict[str, tuple[str | None, int | None]], repo: str = "DDVD233/CLIMB") -> str:
    out = f"    repo: {repo}\n    commit: {CLIMB_COMMIT}\n    files:\n"
    for path, (sha, size) in files.items():
        out += f"      - path: {path}\n"
        if sha:
            out += f"        sha256: {sha}\n"
        if size is not None:
            out += f"        size: {size}\n"
    return out


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toygh")


def test_climb_ecg_split_pins_as_recipe_fields(tmp_path: Path) -> None:
    """The appendix's real pins validate and give the raw URLs at the pinned commit, offline."""
    recipe = _recipe(tmp_path, _files_yaml({p: v for p, v in CLIMB_SPLITS.items()}))
    (source,) = make_sources(recipe, _settings(tmp_path, None))
    files = source.expected_files()
    assert files is not None and len(files) == 4
    first = files[0]
    assert first.path == "src/datasets/ecg/ptbxl_splits.csv" and first.size == 1737930
    assert first.url == (
        "https://raw.githubusercontent.com/DDVD233/CLIMB/0f767b1ea168810b998981078dc27e7f9a4e4675/"
        "src/datasets/ecg/ptbxl_splits.csv"
    )
    assert first.sha256 == CLIMB_SPLITS[first.path][0]
    assert source.upstream_paths() == set(CLIMB_SPLITS)


def test_raw_files_at_a_pinned_commit(
    tmp_path: Path,
    settings: Settings,
    github: FakeGitHub,
    tree: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wanted = {p: (_sha(tree[p]), len(tree[p])) for p in ("src/datasets/ecg/ptbxl_splits.csv", "README.md")}
    recipe = _recipe(tmp_path, _files_yaml(wanted))  # type: ignore[arg-type]
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    for p in wanted:
        assert (_raw(settings) / p).read_bytes() == tree[p]
    reqs = github.raw.requests_for(f"/DDVD233/CLIMB/{CLIMB_COMMIT}/*")
    assert len(reqs) == 2 and not any(r.had_authorization for r in reqs)
    assert verify_raw(recipe, settings)[0].ok  # offline: the pins are the recipe's
    # with a token, raw.githubusercontent.com (GitHub's own host) gets it; nothing else is contacted
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    (_raw(settings) / "README.md").unlink()
    assert download(recipe, settings).ok
    assert github.raw.requests_for("*/README.md")[-1].had_authorization
    assert not github.objects.log and not github.codeload.log


def test_raw_file_that_does_not_match_its_pin_is_refused(
    tmp_path: Path, settings: Settings, github: FakeGitHub
) -> None:
    recipe = _recipe(tmp_path, _files_yaml({"README.md": ("ab" * 32, None)}))
    (out,) = download(recipe, settings).outcomes
    assert out.status == "failed" and out.error.startswith(
        "toygh: checksum mismatch for README.md from http://"
    )
    assert not (_raw(settings) / "README.md").exists()


def test_unpinned_files_need_the_pinned_policy(
    tmp_path: Path, settings: Settings, github: FakeGitHub, tree: dict[str, bytes]
) -> None:
    report = download(_recipe(tmp_path, _files_yaml({"README.md": (None, None)})), settings)
    assert report.error == (
        "toygh: no checksum for README.md in source 'gh': pin its sha256 in the recipe, or set "
        "`checksums: pinned` to pin it on the first download"
    )
    pinned = _recipe(tmp_path, _files_yaml({"README.md": (None, None)}), checksums="pinned")
    assert download(pinned, settings).ok
    assert (_raw(settings) / "README.md").read_bytes() == tree["README.md"]


def test_missing_file_or_private_repository(
    tmp_path: Path, settings: Settings, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = download(_recipe(tmp_path, _files_yaml({"nope.csv": ("ab" * 32, None)})), settings)
    assert report.outcomes[0].error == (
        f"toygh: nope.csv at commit {CLIMB_COMMIT} not found on GitHub (HTTP 404) (if the repository is "
        "private, set GITHUB_TOKEN)"
    )
    sha = _sha(b"1,2\n")
    body = f"    repo: lab/private-data\n    commit: {'a' * 40}\n    files:\n      - {{path: x.csv, sha256: {sha}}}\n"  # noqa: E501
    assert "set GITHUB_TOKEN" in download(_recipe(tmp_path, body), settings).outcomes[0].error
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert download(_recipe(tmp_path, body), settings).ok


def test_release_assets_through_signed_urls_without_the_token(
    tmp_path: Path, settings: Settings, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    notes = b"uploaded before digests\n"
    body = (
        "    repo: DDVD233/CLIMB\n    release: v1.0\n    assets:\n      - {name: weights.bin}\n"
        f"      - {{name: old notes.txt, sha256: {_sha(notes)}}}\n"
    )
    recipe = _recipe(tmp_path, body)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "weights.bin").read_bytes() == ASSET
    assert (_raw(settings) / "old notes.txt").read_bytes() == notes
    assert len(github.web.requests_for("/DDVD233/CLIMB/releases/download/v1.0/*")) == 2
    assert not github.objects.authorization_seen
    (source,) = make_sources(recipe, settings)
    listed = {f.path: f.sha256 for f in source.expected_files() or []}
    assert listed == {"weights.bin": _sha(ASSET), "old notes.txt": _sha(notes)}  # digest, and the pin
    # with a token: the API asset endpoint (token sent there), then the object store without it
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    for name in ("weights.bin", "old notes.txt"):
        (_raw(settings) / name).unlink()
    assert download(recipe, settings).ok
    api = github.api.requests_for("/repos/DDVD233/CLIMB/releases/assets/*")
    assert len(api) == 2 and all(r.had_authorization and r.status == 302 for r in api)
    assert len(github.objects.log) == 4 and not github.objects.authorization_seen


def test_release_digest_and_recipe_pin_must_agree(
    tmp_path: Path, settings: Settings, github: FakeGitHub
) -> None:
    pin = "cd" * 32
    body = f"    repo: DDVD233/CLIMB\n    release: v1.0\n    assets:\n      - {{name: weights.bin, sha256: {pin}}}\n"  # noqa: E501
    report = download(_recipe(tmp_path, body), settings)
    assert report.error.startswith("toygh: the recipe pins sha256 cdcdcdcdcdcd... for weights.bin but GitHub")
    body = "    repo: DDVD233/CLIMB\n    release: v1.0\n    assets:\n      - {name: model.ckpt}\n"
    report = download(_recipe(tmp_path, body), settings)
    assert (
        report.error == "toygh: release v1.0 of DDVD233/CLIMB has no asset 'model.ckpt' "
        "(it has: old notes.txt, weights.bin)"
    )
    assert report.category == "failed"  # a wrong recipe, not missing credentials
    # without a pin, an asset without a digest has no checksum at all
    body = "    repo: DDVD233/CLIMB\n    release: v1.0\n"
    assert download(_recipe(tmp_path, body), settings).error.startswith(
        "toygh: no checksum for old notes.txt"
    )


def test_an_expired_link_is_resolved_again_and_resumed(
    tmp_path: Path, settings: Settings, github: FakeGitHub
) -> None:
    body = "    repo: DDVD233/CLIMB\n    release: v1.0\n    assets: [{name: weights.bin}]\n"
    settings = settings.with_(read_timeout=30.0)  # open() has no retry: no 2 s deadline on a loaded machine
    (source,) = make_sources(_recipe(tmp_path, body), settings)
    (rf,) = source.list_files()
    first = source.open(rf, {"Accept-Encoding": "identity"})
    head = first.raw.read(1000)
    first.close()
    github.objects.advance(301)  # X-Amz-Expires=300 has passed
    again = source.open(
        rf, {"Accept-Encoding": "identity", "Range": "bytes=1000-", "If-Range": first.headers["ETag"]}
    )
    assert again.status_code == 206 and head + again.content == ASSET
    # in the order the store received them (the early-closed 200 and the 403 may be logged late: wait)
    statuses = [r.status for r in logged(github.objects, 3)]
    assert statuses == [200, 403, 206], statuses
    assert len(logged(github.web, 2, "*/releases/download/v1.0/weights.bin")) == 2


def test_repository_archive_at_a_commit(
    tmp_path: Path,
    settings: Settings,
    github: FakeGitHub,
    tree: dict[str, bytes],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    data = github.repo("DDVD233", "CLIMB").archive(CLIMB_COMMIT, "tar.gz")  # type: ignore[union-attr]
    body = f"    repo: DDVD233/CLIMB\n    commit: {CLIMB_COMMIT}\n    archive: tar.gz\n"
    body += f"    sha256: {_sha(data)}\n"
    report = download(_recipe(tmp_path, body), settings)
    assert report.ok, (report.error, report.outcomes)
    got = (_raw(settings) / f"CLIMB-{CLIMB_COMMIT}.tar.gz").read_bytes()
    assert got == data
    with tarfile.open(fileobj=io.BytesIO(got)) as tar:
        assert tar.extractfile(f"DDVD233-CLIMB-{CLIMB_COMMIT[:7]}/README.md").read() == tree["README.md"]  # type: ignore[union-attr]
    assert github.api.requests_for(f"*/tarball/{CLIMB_COMMIT}")[0].had_authorization
    assert github.codeload.log and not any(r.had_authorization for r in github.codeload.log)
    # the archive step of the source: extracted without the <owner>-<repo>-<sha7>/ top folder
    body += "    extract: true\n    strip_components: 1\n"
    assert download(_recipe(tmp_path, body), settings).ok
    for path, data in tree.items():
        assert (_raw(settings) / path).read_bytes() == data


def test_private_archive_uses_codeloads_own_token(
    tmp_path: Path, settings: Settings, github: FakeGitHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = github.repo("lab", "private-data").archive("a" * 40, "zip")  # type: ignore[union-attr]
    body = f"    repo: lab/private-data\n    commit: {'a' * 40}\n    archive: zip\n    sha256: {_sha(data)}\n"
    monkeypatch.setenv("GITHUB_TOKEN", WRONG)
    assert download(_recipe(tmp_path, body), settings).outcomes[0].error == (
        "toygh: GitHub rejected the token from env GITHUB_TOKEN (HTTP 401, bad credentials)"
    )
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    assert download(_recipe(tmp_path, body), settings).ok
    (cl,) = github.codeload.log
    assert "token=" in cl.path and not cl.had_authorization


def test_api_rate_limit(tmp_path: Path, tree: dict[str, bytes]) -> None:
    repo = FakeRepo(
        "o", "r", {CLIMB_COMMIT: tree}, releases=[FakeRelease("v1", [FakeAsset("a.bin", b"abc")])]
    )
    body = "    repo: o/r\n    release: v1\n"
    with FakeGitHub([repo], rate_limit=1, window=1.0) as gh:
        (source,) = make_sources(_recipe(tmp_path, body), _settings(tmp_path, gh))
        requests.get(f"{gh.api.base_url}/repos/o/r", timeout=5).close()  # the window's budget is spent
        assert [f.path for f in source.list_files()] == ["a.bin"]  # waited for x-ratelimit-reset
        assert [r.status for r in gh.api.log] == [200, 403, 200]
    with FakeGitHub([repo], rate_limit=0) as gh:
        report = download(_recipe(tmp_path, body), _settings(tmp_path, gh))
        assert report.error.startswith("toygh: GitHub API rate limit reached (HTTP 403) for another ")
        assert report.error.endswith("s; set GITHUB_TOKEN to raise the limit from 60 to 5000 requests/hour")
        assert len(gh.api.log) == 1  # no point retrying for an hour


def test_check_access(tmp_path: Path, settings: Settings, github: FakeGitHub) -> None:
    body = "    repo: DDVD233/CLIMB\n    release: v1.0\n    assets: [{name: weights.bin}]\n"
    (src,) = make_sources(_recipe(tmp_path, body), settings)
    assert src.check_access().ok and not github.objects.log  # a link was resolved, nothing downloaded
    body = f"    repo: lab/private-data\n    commit: {'a' * 40}\n    archive: zip\n    sha256: {'ab' * 32}\n"
    (src,) = make_sources(_recipe(tmp_path, body), settings)
    report = src.check_access()
    assert (
        not report.ok and "not found on GitHub" in report.detail and report.next_step.endswith("private-data")
    )


@pytest.mark.parametrize("fault", FAULT_IDS)
def test_fault_matrix(tmp_path: Path, settings: Settings, github: FakeGitHub, fault: str) -> None:
    host = github.objects
    expected = arm_fault(host, fault, "/github-release-assets/*", len(ASSET))
    body = "    repo: DDVD233/CLIMB\n    release: v1.0\n    assets: [{name: weights.bin}]\n"
    report = download(_recipe(tmp_path, body), settings.with_(read_timeout=0.5))
    assert report.ok, report.outcomes
    assert (_raw(settings) / "weights.bin").read_bytes() == ASSET
    assert [r.status for r in settle(host, "/github-release-assets/*")] == expected
    assert not host.authorization_seen
    if fault == "expired-signed-url":
        assert [r.status for r in host.log].count(403) == 1  # the cached link was refused, then replaced
        assert len(github.web.log) == 2
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_token_never_follows_a_redirect_to_another_origin(
    tmp_path: Path,
    settings: Settings,
    github: FakeGitHub,
    monkeypatch: pytest.MonkeyPatch,
    capture: CaptureServer,
) -> None:
    """A private raw file answered with a 302 to another port or host: the token stays on its origin."""
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    github.faults.add("status", path_glob="/lab/private-data/*", **redirect_to(capture))
    body = f"    repo: lab/private-data\n    commit: {'a' * 40}\n    files:\n      - path: x.csv\n"
    body += f"        sha256: {_sha(b'1,2' + bytes([10]))}\n"
    report = download(_recipe(tmp_path, body, access="registered"), settings)
    assert not report.ok
    assert capture.seen and capture.leaked(SECRETS) == []
    assert github.raw.log and all(r.had_authorization for r in github.raw.log)


def test_include_that_matches_nothing_is_an_error(
    tmp_path: Path, settings: Settings, github: FakeGitHub
) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(
        _recipe(tmp_path, "    repo: DDVD233/CLIMB\n    release: v1.0\n    include: ['nomatch/*']\n"),
        settings,
    )
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toygh: source 'gh' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
