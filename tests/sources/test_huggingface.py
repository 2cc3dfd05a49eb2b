"""The Hugging Face source against the fake Hub: tree listing (paginated), LFS files through signed CDN
URLs (sha256-checked, re-resolved on expiry, never with the token), regular files checked by their git blob
sha1, gated and private repositories, rate limits, and the shared fault matrix (on an LFS file)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from climb_cli.acquire import download, plan
from climb_cli.catalog import Catalog
from climb_cli.errors import RecipeError, TransferError
from climb_cli.manifest import RawManifest
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.transfer import Downloader
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, client_python, fast_settings, redirect_to, write_recipe
from tests.fakes.bucket import FAULT_IDS, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.huggingface import FakeHub, HubFile, HubRepo

TOKEN, WRONG = SECRETS[0], SECRETS[1]  # under the leak guard of tests/conftest.py
COMMIT = "5b3e0f1c2a4d6e8f9a0b1c2d3e4f5a6b7c8d9e0f"
PARQUET = os.urandom(650_000)


@pytest.fixture
def repo_files() -> list[HubFile]:
    return [
        HubFile("data/train-00000-of-00002.parquet", PARQUET),
        HubFile("data/train-00001-of-00002.parquet", os.urandom(3000)),
        HubFile("README.md", b"---\nlicense: cc-by-4.0\n---\n# toy\n", lfs=False),
        HubFile(".gitattributes", b"*.parquet filter=lfs diff=lfs merge=lfs -text\n", lfs=False),
    ]


@pytest.fixture
def hub(repo_files: list[HubFile]) -> Iterator[FakeHub]:
    repos = [
        HubRepo("climb/toy", repo_files, commit=COMMIT),
        HubRepo("climb/gated", [HubFile("x.bin", b"gated bytes" * 100)], commit=COMMIT, gated=True),
        HubRepo("climb/private", [HubFile("y.bin", b"private bytes" * 100)], commit=COMMIT, private=True),
        HubRepo(
            "climb/model", [HubFile("model.safetensors", b"weights" * 100)], repo_type="model", commit=COMMIT
        ),
    ]
    with FakeHub(repos, tokens={TOKEN, "granted-elsewhere-77"}, page_size=2) as fake:
        fake.repos[("dataset", "climb/gated")].approved.add(TOKEN)
        yield fake


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


def _settings(tmp_path: Path, hub: FakeHub, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"huggingface": hub.base_url}, **kw)


@pytest.fixture
def settings(tmp_path: Path, hub: FakeHub) -> Settings:
    return _settings(tmp_path, hub)


def _recipe(
    tmp_path: Path,
    repo: str = "climb/toy",
    include: str = "",
    repo_type: str = "dataset",
    revision: str = COMMIT,
) -> Recipe:
    src = f"  - id: hf\n    kind: huggingface\n    repo: {repo}\n    repo_type: {repo_type}\n"
    src += f"    revision: {revision}\n"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toyhf", src)
    return Catalog([path.parent]).load("toyhf")


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toyhf")


def test_repo_at_a_commit_downloads_byte_identical(
    tmp_path: Path, settings: Settings, hub: FakeHub, repo_files: list[HubFile]
) -> None:
    recipe = _recipe(tmp_path)
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert report.count("downloaded") == 4
    for f in repo_files:
        assert (_raw(settings) / f.path).read_bytes() == f.data
    trees = hub.requests_for("/api/datasets/climb/toy/tree/*")
    assert len(trees) == 3  # 6 entries (folder included), 2 per page: the Link header was followed
    assert len(hub.cdn.requests_for("/hf-lfs/*")) == 2  # LFS files from the CDN, git files from the hub
    (source,) = make_sources(recipe, settings)
    by_path = {f.path: f for f in source.expected_files() or []}
    assert by_path["data/train-00000-of-00002.parquet"].sha256 == hashlib.sha256(PARQUET).hexdigest()
    assert by_path["README.md"].sha256 is None  # checked by git blob sha1 at download time instead
    hub.stop()  # verify is offline
    assert verify_raw(recipe, settings)[0].ok


def test_token_goes_to_the_hub_never_to_the_cdn(
    tmp_path: Path, settings: Settings, hub: FakeHub, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    report = download(_recipe(tmp_path, repo="climb/gated"), settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "x.bin").read_bytes() == b"gated bytes" * 100
    resolves = hub.requests_for("/datasets/climb/gated/resolve/*")
    assert resolves and all(r.had_authorization and r.status == 302 for r in resolves)
    assert hub.cdn.log and not hub.cdn.authorization_seen


def test_model_repos_and_include_globs(tmp_path: Path, settings: Settings, hub: FakeHub) -> None:
    report = download(_recipe(tmp_path, repo="climb/model", repo_type="model"), settings)
    assert report.ok and (_raw(settings) / "model.safetensors").read_bytes() == b"weights" * 100
    assert hub.requests_for("/climb/model/resolve/*")
    report = download(_recipe(tmp_path, include="'data/*00001*'"), settings)
    assert report.ok and report.count("downloaded") == 1
    assert not (_raw(settings) / "README.md").exists()


def test_a_regular_file_is_checked_by_its_git_sha1(tmp_path: Path, settings: Settings, hub: FakeHub) -> None:
    readme = hub.repos[("dataset", "climb/toy")].files[2]
    original = readme.data
    recipe = _recipe(tmp_path, include="README.md")
    (source,) = make_sources(recipe, settings)
    (rf,) = source.list_files()
    readme.data = original.replace(b"toy", b"TOY")  # served bytes no longer match the listed oid
    with pytest.raises(TransferError) as err:
        Downloader.from_settings(settings).fetch(source, rf, _raw(settings) / rf.path, _raw(settings))
    assert str(err.value).startswith("toyhf: checksum mismatch for README.md from http://")
    assert "(git blob sha1: expected " in str(err.value) and not (_raw(settings) / "README.md").exists()
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
    readme.data = original
    assert download(recipe, settings).ok


@pytest.mark.parametrize(
    ("repo", "token", "expected"),
    [
        (
            "climb/gated",
            None,
            "toyhf: dataset climb/gated on Hugging Face is gated: request access at http://127.0.0.1:{port}/"
            "datasets/climb/gated (signed in), then set HF_TOKEN",
        ),
        (
            "climb/gated",
            "granted-elsewhere-77",
            "toyhf: the Hugging Face account of the token from env HF_TOKEN has not been granted access to "
            "gated dataset climb/gated yet: accept its terms at http://127.0.0.1:{port}/datasets/climb/gated "
            "while signed in to that account (HTTP 403)",
        ),
        (
            "climb/private",
            None,
            "toyhf: Hugging Face dataset climb/private not found (if it is private, set HF_TOKEN)",
        ),
        ("climb/private", WRONG, "toyhf: Hugging Face rejected the token from env HF_TOKEN (HTTP 401)"),
        (
            "climb/nothing",
            TOKEN,
            "toyhf: Hugging Face dataset climb/nothing not found (the account of the token",
        ),
    ],
)
def test_refusals_are_one_line(
    tmp_path: Path,
    settings: Settings,
    hub: FakeHub,
    monkeypatch: pytest.MonkeyPatch,
    repo: str,
    token: str | None,
    expected: str,
) -> None:
    if token:
        monkeypatch.setenv("HF_TOKEN", token)
    report = download(_recipe(tmp_path, repo=repo), settings)
    error = report.error or next(o.error for o in report.outcomes if o.error)
    assert error.startswith(expected.format(port=hub.port)), error
    assert "\n" not in error and not any(s in error for s in SECRETS)
    assert not (_raw(settings) / "x.bin").exists()
    why = {None: "no credentials", WRONG: "credentials rejected"}.get(token, "access not granted")
    assert report.category == (why if repo == "climb/gated" or token == WRONG else "failed"), report.category


def test_unknown_revision(tmp_path: Path, settings: Settings, hub: FakeHub) -> None:
    report = download(_recipe(tmp_path, revision="f" * 40), settings)
    assert report.error == f"toyhf: revision {'f' * 40} not found in Hugging Face dataset climb/toy"


def test_pin_branch_pins_the_head_commit_on_the_first_download_and_keeps_it(
    tmp_path: Path, settings: Settings, hub: FakeHub
) -> None:
    src = "  - id: hf\n    kind: huggingface\n    repo: climb/toy\n    pin_branch: main\n"
    recipe = Catalog([write_recipe(tmp_path / "recipes", "toyhf", src).parent]).load("toyhf")
    (source,) = make_sources(recipe, settings)
    assert source.describe() == "huggingface dataset climb/toy@main (not pinned yet)"
    assert verify_raw(recipe, settings)[0].ok is False  # nothing pinned, nothing listed: no network here
    lock = _raw(settings) / ".climb" / "hf-revision-hf.json"
    assert plan(recipe, settings, with_sizes=True).files == 4 and not lock.exists()  # a dry run pins nothing
    assert source.check_access().ok and not lock.exists()  # nor does `climb auth check`
    report = download(recipe, settings)
    assert report.ok, report.error
    assert json.loads(lock.read_text())["revision"] == COMMIT
    assert verify_raw(recipe, settings)[0].ok
    (source,) = make_sources(recipe, settings)
    assert source.describe() == f"huggingface dataset climb/toy@{COMMIT[:10]}"
    # the branch moves on (this fake then forgets the old commit): climb keeps asking for the pinned one
    hub.repos[("dataset", "climb/toy")].commit = "a" * 40
    (_raw(settings) / "README.md").unlink()
    again = download(recipe, settings)
    assert again.error == (
        f"toyhf: revision {COMMIT} not found in Hugging Face dataset climb/toy (pinned in {lock})"
    )
    lock.unlink()  # re-pin on purpose: the new head
    assert download(recipe, settings).ok
    assert json.loads(lock.read_text())["revision"] == "a" * 40


def test_a_recipe_gives_revision_or_pin_branch(tmp_path: Path) -> None:
    for extra in ("", f"    revision: {COMMIT}\n    pin_branch: main\n"):
        src = f"  - id: hf\n    kind: huggingface\n    repo: climb/toy\n{extra}"
        with pytest.raises(RecipeError, match="give revision"):
            Catalog([write_recipe(tmp_path / "recipes", "toyhf", src).parent]).load("toyhf")


def test_expired_cdn_link_is_resolved_again_and_resumed(
    tmp_path: Path, settings: Settings, hub: FakeHub
) -> None:
    (source,) = make_sources(_recipe(tmp_path, include="'data/train-00000*'"), settings)
    (rf,) = source.list_files()
    first = source.open(rf, {"Accept-Encoding": "identity"})
    head = first.raw.read(5000)
    first.close()
    hub.cdn.advance(3601)  # past the CloudFront Expires
    again = source.open(
        rf, {"Accept-Encoding": "identity", "Range": "bytes=5000-", "If-Range": first.headers["ETag"]}
    )
    assert again.status_code == 206 and head + again.content == PARQUET
    assert [r.status for r in sorted(hub.cdn.log, key=lambda r: r.started)] == [200, 403, 206]
    assert len(hub.requests_for("/datasets/climb/toy/resolve/*")) == 2


def test_probe_reads_linked_etag_without_downloading(
    tmp_path: Path, settings: Settings, hub: FakeHub
) -> None:
    recipe = _recipe(tmp_path)
    (source,) = make_sources(recipe, settings)
    files = {f.path: f for f in source.list_files()}
    meta = source.probe(files["data/train-00000-of-00002.parquet"])  # type: ignore[attr-defined]
    assert meta == {"commit": COMMIT, "etag": hashlib.sha256(PARQUET).hexdigest(), "size": str(len(PARQUET))}
    assert not hub.cdn.log
    assert source.check_access().ok
    (gated,) = make_sources(_recipe(tmp_path, repo="climb/gated"), settings)
    report = gated.check_access()
    assert not report.ok and "is gated: request access at" in report.detail
    assert report.next_step.endswith("/datasets/climb/gated") and not hub.cdn.log


def test_rate_limit_with_the_ietf_ratelimit_header(tmp_path: Path, repo_files: list[HubFile]) -> None:
    with FakeHub([HubRepo("climb/toy", repo_files[1:3], commit=COMMIT)], rate_limit=2, window=1.0) as hub:
        settings = _settings(tmp_path, hub)
        (source,) = make_sources(_recipe(tmp_path), settings)
        with requests.Session() as other:
            for _ in range(2):  # someone else spends this window's budget, just before climb lists
                other.get(f"{hub.base_url}/api/datasets/climb/toy/revision/{COMMIT}", timeout=5).close()
        jobs = [(source, rf) for rf in source.list_files()]
        with RawManifest.for_dataset(_raw(settings)) as manifest:
            outcomes = Downloader.from_settings(settings).run(jobs, manifest)
        assert all(o.status == "downloaded" for o in outcomes), outcomes
        statuses = [r.status for r in sorted(hub.log, key=lambda r: r.started)]
        # the tree listing met a 429 and waited for t=; the two resolves were then paced (r=1, then r=0)
        assert statuses == [200, 200, 429, 200, 302, 200] or statuses == [200, 200, 429, 200, 200, 302]
        for f in repo_files[1:3]:
            assert (_raw(settings) / f.path).read_bytes() == f.data


def test_a_429_on_resolve_carries_the_ratelimit_wait_to_the_engine(
    tmp_path: Path, settings: Settings, hub: FakeHub
) -> None:
    (source,) = make_sources(_recipe(tmp_path, include="README.md"), settings)
    (rf,) = source.list_files()
    hub.rate_limit, hub.window = 0, 30.0
    resp = source.open(rf, {"Accept-Encoding": "identity"})
    assert resp.status_code == 429 and resp.headers["RateLimit"].startswith('"resolvers";r=0;t=')
    assert 1 <= int(resp.headers["Retry-After"]) <= 30  # what the transfer engine honours
    resp.close()


@pytest.mark.parametrize("fault", FAULT_IDS)
def test_fault_matrix(tmp_path: Path, settings: Settings, hub: FakeHub, fault: str) -> None:
    host = hub.cdn
    expected = arm_fault(host, fault, "/hf-lfs/*", len(PARQUET))
    report = download(_recipe(tmp_path, include="'data/train-00000*'"), settings.with_(read_timeout=0.5))
    assert report.ok, report.outcomes
    assert (_raw(settings) / "data/train-00000-of-00002.parquet").read_bytes() == PARQUET
    assert [r.status for r in settle(host, "/hf-lfs/*")] == expected
    assert not host.authorization_seen
    if fault == "expired-signed-url":
        assert [r.status for r in host.log].count(403) == 1
        assert len(hub.requests_for("/datasets/climb/toy/resolve/*")) == 2
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


_HF_CLIENT = """
import hashlib, json, sys
from huggingface_hub import hf_hub_download, list_repo_files, snapshot_download
from huggingface_hub.errors import GatedRepoError

commit, token = sys.argv[1], sys.argv[2]
out = {"files": {}}
for name in ("data/train-00000-of-00002.parquet", "README.md"):
    path = hf_hub_download("climb/toy", name, repo_type="dataset", revision=commit)
    out["files"][name] = hashlib.sha256(open(path, "rb").read()).hexdigest()
out["listed"] = sorted(list_repo_files("climb/toy", repo_type="dataset", revision=commit))
snap = snapshot_download("climb/toy", repo_type="dataset", revision=commit, cache_dir="snapshot")
root = __import__("pathlib").Path(snap)
out["snapshot"] = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
try:
    hf_hub_download("climb/gated", "x.bin", repo_type="dataset", revision=commit)
    out["gated_anonymous"] = "downloaded"
except GatedRepoError:
    out["gated_anonymous"] = "GatedRepoError"
path = hf_hub_download("climb/gated", "x.bin", repo_type="dataset", revision=commit, token=token)
out["gated_token"] = open(path, "rb").read() == b"gated bytes" * 100
print(json.dumps(out))
"""


def test_huggingface_hub_official_client_uses_the_fake(
    tmp_path: Path, hub: FakeHub, repo_files: list[HubFile]
) -> None:
    """huggingface_hub itself, from its own venv (CLIMB_HF_HUB_PY; HF_ENDPOINT -> the fake): HEAD metadata,
    CDN redirects, tree API, gating."""
    python = client_python(
        "CLIMB_HF_HUB_PY",
        "huggingface_hub runs from its own venv (it needs h11>=0.16, which the httpcore of gcapi's pinned "
        "httpx 0.23 refuses)",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("HF_", "HUGGING")) and "proxy" not in k.lower()
    }
    env.update(HF_ENDPOINT=hub.base_url, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    p = subprocess.run(
        [python, "-c", _HF_CLIENT, COMMIT, TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stderr[-2000:].replace(TOKEN, "***")
    out = json.loads(p.stdout.strip().splitlines()[-1])
    sums = {f.path: hashlib.sha256(f.data).hexdigest() for f in repo_files}
    assert out["files"] == {k: sums[k] for k in out["files"]}
    assert out["listed"] == sorted(sums) and out["snapshot"] == sorted(sums)
    assert out["gated_anonymous"] == "GatedRepoError" and out["gated_token"] is True
    assert hub.cdn.log and not hub.cdn.authorization_seen  # the client's token never reached the CDN
    heads = hub.requests_for("/datasets/climb/toy/resolve/*", method="HEAD")
    assert {r.status for r in heads} == {200, 302}  # metadata probes: a regular file, and an LFS redirect


def test_token_never_follows_a_redirect_to_another_origin(
    tmp_path: Path, settings: Settings, hub: FakeHub, monkeypatch: pytest.MonkeyPatch, capture: CaptureServer
) -> None:
    """A file the Hub serves itself answered with a 302 to another port or host: no token there."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub.faults.add("status", path_glob="/datasets/climb/toy/resolve/*/README.md", **redirect_to(capture))
    report = download(_recipe(tmp_path, include="README.md"), settings)
    assert not report.ok
    assert capture.seen and capture.leaked(SECRETS) == []


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, settings: Settings, hub: FakeHub) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, include="'nomatch/*'"), settings)
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toyhf: source 'hf' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
