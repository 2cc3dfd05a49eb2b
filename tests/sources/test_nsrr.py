"""The NSRR source against the fake NSRR cloud API: open and controlled files (token -> auth token -> signed
URL), md5 checks, refusals, credential stripping, `climb auth` for the NSRR token, and the fault matrix."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli import auth
from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.errors import AccessError
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings, piped, write_recipe
from tests.fakes.bucket import FAULT_IDS, FakeBucket, arm_fault, settle
from tests.fakes.capture import CaptureServer
from tests.fakes.nsrr import FakeNsrr, NsrrDataset

TOKEN = "nsrr-tok-Gnusto-6d1f-secret"
WRONG = "nsrr-bad-Frotz-0a7e-secret"
OTHER = "nsrr-other-token-77"
EDF = os.urandom(500_000)


def _shhs() -> NsrrDataset:
    return NsrrDataset(
        "shhs",
        {"datasets/shhs1-dataset-0.21.0.csv": b"nsrrid,ahi\n200001,3.2\n", "README.txt": b"SHHS\n"},
        {"polysomnography/edfs/shhs1/shhs1-200001.edf": EDF,
         "polysomnography/annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml": b"<PSGAnnotation/>\n"},
    )  # fmt: skip


@pytest.fixture
def store() -> Iterator[FakeBucket]:
    with FakeBucket() as s:
        yield s


@pytest.fixture
def nsrr(store: FakeBucket) -> Iterator[FakeNsrr]:
    users = {TOKEN: "ada", OTHER: "bob"}
    with FakeNsrr([_shhs()], store, users=users, grants={"ada": {"shhs"}}) as fake:
        yield fake


@pytest.fixture(autouse=True)
def no_tokens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NSRR_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


def _recipe(tmp_path: Path, include: str = "", dataset: str = "shhs") -> Recipe:
    src = f"  - id: psg\n    kind: nsrr\n    dataset: {dataset}\n"
    if include:
        src += f"    include: [{include}]\n"
    path = write_recipe(tmp_path / "recipes", "toynsrr", src, access="registered")
    return Catalog([path.parent]).load("toynsrr")


def _settings(tmp_path: Path, fake: FakeNsrr, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"nsrr": fake.api}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toynsrr")


def test_open_files_need_no_token(tmp_path: Path, nsrr: FakeNsrr, store: FakeBucket) -> None:
    settings = _settings(tmp_path, nsrr)
    recipe = _recipe(tmp_path, include="'datasets/*', README.txt")
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "datasets/shhs1-dataset-0.21.0.csv").read_bytes().startswith(b"nsrrid")
    assert not nsrr.requests_for("/api/v1/auth-token") and not store.authorization_seen
    nsrr.stop()  # verify is offline: the listing (with md5s) was stored
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2 and not bad


def test_controlled_files_with_a_token(
    tmp_path: Path, nsrr: FakeNsrr, store: FakeBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSRR_TOKEN", TOKEN)
    settings = _settings(tmp_path, nsrr)
    report = download(_recipe(tmp_path), settings)
    assert report.ok, (report.error, report.outcomes)
    assert report.count("downloaded") == 4
    assert (_raw(settings) / "polysomnography/edfs/shhs1/shhs1-200001.edf").read_bytes() == EDF
    assert len(nsrr.requests_for("/api/v1/auth-token")) == 2  # a fresh auth token per controlled file
    assert not store.authorization_seen
    assert all(TOKEN not in r.path for r in nsrr.log + store.log)
    listing = (_raw(settings) / ".climb" / "listing-psg.json").read_text()
    assert TOKEN not in listing


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        (
            None,
            "toynsrr: NSRR shhs has controlled files: get your token at https://sleepdata.org/token, then",
        ),
        (WRONG, "toynsrr: NSRR did not accept the token from env NSRR_TOKEN (HTTP 401)"),
        (
            OTHER,
            "toynsrr: your NSRR token (from env NSRR_TOKEN) has no approved data access request for shhs",
        ),
    ],
)
def test_refusals_are_one_line(
    tmp_path: Path, nsrr: FakeNsrr, monkeypatch: pytest.MonkeyPatch, token: str | None, expected: str
) -> None:
    if token:
        monkeypatch.setenv("NSRR_TOKEN", token)
    report = download(_recipe(tmp_path, include="'polysomnography/**'"), _settings(tmp_path, nsrr))
    text = report.error or " ".join(o.error for o in report.outcomes)
    assert not report.ok and text.startswith(expected), text
    assert "\n" not in text and not any(s in text for s in SECRETS)
    why = {None: "no credentials", WRONG: "credentials rejected", OTHER: "access not granted"}[token]
    assert report.category == why, report.category


def test_unknown_dataset(tmp_path: Path, nsrr: FakeNsrr) -> None:
    report = download(_recipe(tmp_path, dataset="nope"), _settings(tmp_path, nsrr))
    assert report.error.startswith("toynsrr: NSRR has no cloud-hosted dataset 'nope' (HTTP 404)")
    assert report.category == "failed"  # a wrong recipe, not missing credentials


def test_md5_mismatch_is_refused(tmp_path: Path, nsrr: FakeNsrr, store: FakeBucket) -> None:
    store.buckets["nsrr-cloud"]["shhs/README.txt"].data = b"changed\n"
    report = download(_recipe(tmp_path, include="README.txt"), _settings(tmp_path, nsrr))
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith("toynsrr: checksum mismatch for README.txt")
    assert not (_raw(_settings(tmp_path, nsrr)) / "README.txt").exists()


@pytest.mark.parametrize("endpoint", ["/auth-token", "/download/url/controlled"])
def test_tokens_never_follow_a_redirect_to_another_origin(
    tmp_path: Path, nsrr: FakeNsrr, monkeypatch: pytest.MonkeyPatch, endpoint: str
) -> None:
    """The user token (header ``token:``) and the auth token (``Authorization: Bearer``) stay on the API's
    origin when the API redirects elsewhere."""
    monkeypatch.setenv("NSRR_TOKEN", TOKEN)
    with CaptureServer() as capture:
        nsrr.redirects[endpoint] = f"{capture.base_url}/elsewhere"
        report = download(_recipe(tmp_path, include="'polysomnography/edfs/**'"), _settings(tmp_path, nsrr))
        assert not report.ok
        assert capture.seen and not capture.leaked([TOKEN])  # it was asked, without any credential
    reached = nsrr.requests_for(f"/api/v1{endpoint}")
    assert reached and (endpoint == "/auth-token" or all(r.had_authorization for r in reached))


def test_check_access_and_auth_login(tmp_path: Path, nsrr: FakeNsrr, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = _settings(tmp_path, nsrr)
    (row,) = auth.check([_recipe(tmp_path)], settings)
    assert not row.ok and row.status == "no credentials" and "climb auth login nsrr" in row.detail
    with pytest.raises(AccessError, match=r"not stored: NSRR rejected the token \(HTTP 401\)"):
        auth.login("nsrr", settings, stdin=piped(WRONG))
    res = auth.login("nsrr", settings, stdin=piped(TOKEN))
    assert res.path == tmp_path / "xdg" / "climb" / "nsrr-token"
    assert res.path.read_text() == TOKEN + "\n" and (res.path.stat().st_mode & 0o777) == 0o600
    assert "NSRR accepted the token" in res.checked
    (row,) = auth.check([_recipe(tmp_path)], settings)
    assert row.ok and "2 controlled file(s) granted" in row.detail
    found = {f["service"]: f for f in auth.status(settings)}
    assert found["nsrr"]["found"] and found["nsrr"]["origin"] == str(res.path)
    assert not (_raw(settings) / "README.txt").exists()


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])  # expired: the first link is stale on arrival
def test_fault_matrix(
    tmp_path: Path, nsrr: FakeNsrr, store: FakeBucket, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    monkeypatch.setenv("NSRR_TOKEN", TOKEN)
    glob = "/nsrr-cloud/shhs/polysomnography/edfs/*"
    store.expire_next = 1 if fault == "expired" else 0
    expected = [200] if fault == "expired" else arm_fault(store, fault, glob, len(EDF))
    settings = _settings(tmp_path, nsrr, read_timeout=0.5)
    report = download(_recipe(tmp_path, include="'polysomnography/edfs/**'"), settings)
    assert report.ok, report.outcomes
    assert [r.status for r in settle(store, glob)] == expected
    if fault == "expired":
        assert 403 in [r.status for r in store.requests_for(glob)]  # refused, then a fresh link
    assert (_raw(settings) / "polysomnography/edfs/shhs1/shhs1-200001.edf").read_bytes() == EDF
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))


def test_cli_login_check_download_never_show_the_token(tmp_path: Path, nsrr: FakeNsrr) -> None:
    """What a user runs: the token goes in through stdin only and appears in no output and no file climb
    writes (other than the 0600 token file)."""
    recipe = _recipe(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIMB_", "NSRR_")) and "proxy" not in k}
    env.update(HOME=str(tmp_path / "home"), XDG_CONFIG_HOME=str(tmp_path / "xdg"), CLIMB_NSRR_URL=nsrr.api,
               CLIMB_DATA=str(tmp_path / "data"), CLIMB_RECIPES=str(recipe.path.parent), CLIMB_RETRIES="2",
               CLIMB_BACKOFF="0.01")  # fmt: skip

    def climb(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "climb_cli", *args], input=stdin, env=env,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    outputs = [climb("auth", "login", "nsrr", stdin=WRONG + "\n")]
    assert outputs[-1].returncode != 0 and "NSRR rejected the token (HTTP 401)" in outputs[-1].stderr
    outputs.append(climb("auth", "login", "nsrr", stdin=TOKEN + "\n"))
    assert outputs[-1].returncode == 0, outputs[-1].stderr
    outputs += [climb("auth", "status"), climb("auth", "check", "toynsrr"), climb("download", "toynsrr")]
    assert all(o.returncode == 0 for o in outputs[1:]), [o.stderr for o in outputs]
    assert (tmp_path / "data/raw/toynsrr/polysomnography/edfs/shhs1/shhs1-200001.edf").read_bytes() == EDF
    for o in outputs:
        assert not any(s in o.stdout + o.stderr for s in (TOKEN, WRONG))
    token_file = tmp_path / "xdg/climb/nsrr-token"
    for f in tmp_path.rglob("*"):
        if f.is_file() and f != token_file and f.stat().st_size < 5_000_000:
            assert TOKEN.encode() not in f.read_bytes(), f


def test_include_that_matches_nothing_is_an_error(tmp_path: Path, nsrr: FakeNsrr) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, include="'nomatch/*'"), _settings(tmp_path, nsrr))
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("toynsrr: source 'psg' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
