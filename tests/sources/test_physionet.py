"""The PhysioNet source against the fake server: listing, subsets, login, and refusals."""

from __future__ import annotations

import filecmp
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from climb_cli.acquire import download, plan
from climb_cli.catalog import Catalog
from climb_cli.errors import ClimbError, TransferError
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.manifest import RawManifest
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources.physionet import parse_sha256sums
from tests.conftest import SECRETS, TEST_USER, redirect_to, write_recipe
from tests.fakes.capture import CaptureServer
from tests.fakes.moto_s3 import SignedS3, signed_s3


def _recipe(
    tmp_path: Path, project: str = "ptb-xl", access: str = "open", include: str = "records500/"
) -> Recipe:
    src = f"""  - id: data
    kind: physionet
    project: {project}
    version: 1.0.3
    include: [{include}, ptbxl_database.csv, scp_statements.csv]
"""
    path = write_recipe(tmp_path / "recipes", "toyecg", src, access=access)
    return Catalog([path.parent]).load("toyecg")


def test_parse_sha256sums_is_order_independent_and_strict() -> None:
    a = "a" * 64
    b = "b" * 64
    assert parse_sha256sums(f"{b} z.txt\n{a} *dir/a.dat\n\n", "S") == {"z.txt": b, "dir/a.dat": a}
    with pytest.raises(TransferError, match=r"S:1: unsafe path '/etc/passwd'"):
        parse_sha256sums(f"{a} /etc/passwd\n", "S")
    with pytest.raises(TransferError, match=r"S:2: unsafe path '../x'"):
        parse_sha256sums(f"{a} ok\n{a} ../x\n", "S")
    with pytest.raises(TransferError, match=r"S:1: not a '<sha256> <path>' line"):
        parse_sha256sums("nothex file\n", "S")


def test_open_project_subset_downloads_byte_identical(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path
) -> None:
    recipe = _recipe(tmp_path)
    report = download(recipe, settings)
    assert report.ok, report.error
    raw = settings.raw_dir("toyecg")
    wanted = sorted(
        p.relative_to(mirror_copy).as_posix()
        for p in mirror_copy.rglob("*")
        if p.is_file()
        and (
            p.name.endswith((".hea", ".dat"))
            and "records500" in p.parts
            or p.name in ("ptbxl_database.csv", "scp_statements.csv")
        )
    )
    assert report.count("downloaded") == len(wanted) == 2 * 30 + 2
    for rel in wanted:
        assert filecmp.cmp(raw / rel, mirror_copy / rel, shallow=False), rel
    assert not (raw / "records100").exists() and not (raw / "RECORDS").exists()
    assert (raw / "SHA256SUMS.txt").read_bytes() == (mirror_copy / "SHA256SUMS.txt").read_bytes()
    with RawManifest.for_dataset(raw) as m:
        rows = m.load()
    assert set(rows) == set(wanted)
    assert all(r.url.startswith(server.base_url + "/files/ptb-xl/1.0.3/") for r in rows.values())
    # identifies as climb, anonymous for an open project, identity encoding
    file_requests = server.requests_for("/files/ptb-xl/1.0.3/records500/*")
    assert file_requests and all(r.user_agent.startswith("climb/") for r in file_requests)
    assert not any(r.had_authorization for r in server.log)


def test_second_download_skips_without_network_or_rehash(
    tmp_path: Path, settings: Settings, server: FakePhysioNet
) -> None:
    recipe = _recipe(tmp_path)
    assert download(recipe, settings).ok
    before = len(server.log)
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 62 and again.count("downloaded") == 0
    assert len(server.log) == before  # SHA256SUMS.txt is kept: a published version never changes


def test_credentialed_project_via_login_form(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None
) -> None:
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    report = download(recipe, settings)
    assert report.ok, report.error
    logins = server.requests_for("/login/", method="POST")
    assert len(logins) == 1 and logins[0].status == 302
    files = server.requests_for("/files/secret-ecg/*")
    assert files and all(r.status == 200 and "sessionid" in r.cookies for r in files)
    assert all(r.user_agent.startswith("climb/") for r in server.log)
    assert not any(r.had_authorization for r in server.log)  # no Basic header to a server that ignores it


def test_recipe_saying_open_still_logs_in_after_a_403(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None
) -> None:
    recipe = _recipe(tmp_path, project="secret-ecg", access="open")
    assert download(recipe, settings).ok
    assert len(server.requests_for("/login/", method="POST")) == 1


def test_session_expiry_mid_download_logs_in_again(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None
) -> None:
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    p = plan(recipe, settings)  # logs in, fetches SHA256SUMS.txt
    server.expire_sessions()
    report = download(recipe, settings)
    assert report.ok, report.error
    assert len(p.jobs) == 62
    assert len(server.requests_for("/login/", method="POST")) == 2


@pytest.mark.parametrize(
    ("user", "password_env", "expected"),
    [
        (None, None, "PhysioNet needs you to sign in for secret-ecg/1.0.3; set PHYSIONET_USERNAME"),
        (TEST_USER, "wrong", "PhysioNet rejected the username/password of 'ada' (from env"),
        (
            "bob",
            "good",
            "may not download secret-ecg/1.0.3 (credentialing, required training, or this "
            "version's data use agreement): sign it at http://127.0.0.1:",
        ),
        ("cy", "good", "may not download secret-ecg/1.0.3"),
    ],
)
def test_refusals_are_one_actionable_line(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    monkeypatch: pytest.MonkeyPatch,
    no_credentials: None,
    user: str | None,
    password_env: str | None,
    expected: str,
) -> None:
    if user:
        monkeypatch.setenv("PHYSIONET_USERNAME", user)
        monkeypatch.setenv("PHYSIONET_PASSWORD", SECRETS[0] if password_env == "good" else SECRETS[1])
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    report = download(recipe, settings)
    assert not report.ok
    assert expected in report.error
    assert report.error.startswith("toyecg: ") and "\n" not in report.error
    assert not any(s in report.error for s in SECRETS)
    assert not (settings.raw_dir("toyecg") / "SHA256SUMS.txt").exists()


def test_unknown_version_is_a_not_found_line(
    tmp_path: Path, settings: Settings, server: FakePhysioNet
) -> None:
    src = "  - kind: physionet\n    project: ptb-xl\n    version: 9.9.9\n"
    recipe = Catalog([write_recipe(tmp_path / "r", "toyecg", src).parent]).load("toyecg")
    report = download(recipe, settings)
    assert report.error.startswith("toyecg: not found on PhysioNet: http://127.0.0.1:")
    assert "/files/ptb-xl/9.9.9/SHA256SUMS.txt (check project/version in the recipe" in report.error


def test_netrc_credentials_for_the_mirror_host(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    monkeypatch: pytest.MonkeyPatch,
    no_credentials: None,
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login {TEST_USER} password {SECRETS[0]}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    assert download(recipe, settings).ok


def test_dry_run_sizes_come_from_listings(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path
) -> None:
    recipe = _recipe(tmp_path)
    p = plan(recipe, settings, with_sizes=True)
    expected = sum((mirror_copy / rf.path).stat().st_size for _, rf in p.jobs)
    assert p.total_bytes == expected
    listing_requests = [r for r in server.log if r.path.endswith("/")]
    assert 0 < len(listing_requests) <= 2  # one per folder, not one per file
    assert not settings.raw_dir("toyecg").joinpath("records500").exists()


def test_session_cookie_never_follows_a_redirect_to_another_origin(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, capture: CaptureServer
) -> None:
    """A credentialed file answered with a 302 to another port or host: no Cookie, no Authorization there."""
    server.faults.add("status", path_glob="/files/secret-ecg/*", **redirect_to(capture))
    report = download(_recipe(tmp_path, project="secret-ecg", access="credentialed"), settings)
    assert not report.ok  # the capture server's bytes are not the file
    assert capture.seen and capture.leaked(SECRETS) == []
    assert any("sessionid" in r.cookies for r in server.requests_for("/files/secret-ecg/*"))


def test_signed_in_but_not_allowed_is_not_a_wrong_password(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    monkeypatch: pytest.MonkeyPatch,
    no_credentials: None,
) -> None:
    monkeypatch.setenv("PHYSIONET_USERNAME", "cy")  # right password, no data use agreement signed
    monkeypatch.setenv("PHYSIONET_PASSWORD", SECRETS[0])
    report = download(_recipe(tmp_path, project="secret-ecg", access="credentialed"), settings)
    assert report.category == "access not granted"
    assert report.error.startswith(
        "toyecg: signed in to PhysioNet as 'cy', but your PhysioNet account may not "
    )
    assert "rejected" not in report.error
    # the second sign-in was the login view's redirect of the session already signed in
    logins = server.requests_for("/login/")
    assert [(r.method, r.status) for r in logins] == [("GET", 200), ("POST", 302), ("GET", 302)]


def test_wrong_password_is_its_own_category(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    monkeypatch: pytest.MonkeyPatch,
    no_credentials: None,
) -> None:
    monkeypatch.setenv("PHYSIONET_USERNAME", TEST_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", SECRETS[1])
    report = download(_recipe(tmp_path, project="secret-ecg", access="credentialed"), settings)
    assert report.category == "credentials rejected"
    assert "PhysioNet rejected the username/password of 'ada'" in report.error


def test_503_and_429_on_the_login_post_are_retried(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None
) -> None:
    server.login_faults.add("status", status=503, retry_after="0")
    server.login_faults.add("status", status=429, retry_after="0")
    assert download(_recipe(tmp_path, project="secret-ecg", access="credentialed"), settings).ok
    posts = server.requests_for("/login/", method="POST")
    assert [r.status for r in posts] == [503, 429, 302]


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (503, b"<html>503 Service Temporarily Unavailable</html>", "the server is busy or failing"),
        (
            403,
            b"<h1>Forbidden <span>(403)</span></h1><p>CSRF verification failed. Request aborted.</p>",
            "CSRF",
        ),
    ],
)
def test_a_login_post_that_keeps_failing_is_said_as_what_it_is(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    good_credentials: None,
    status: int,
    body: bytes,
    said: str,
) -> None:
    server.login_faults.add("status", status=status, body=body, times=-1)
    report = download(_recipe(tmp_path, project="secret-ecg", access="credentialed"), settings)
    assert report.category == "failed"
    assert (
        f"PhysioNet's sign-in at http://127.0.0.1:{server.port}/login/ answered HTTP {status}" in report.error
    )
    assert said in report.error and "this is not a password problem" in report.error
    assert "rejected" not in report.error


# ------------------------------------------------------------ --mirror aws: the bucket PhysioNet shares
GRANT_BUCKET = "secret-ecg-grant"


@pytest.fixture
def aws_grant(tmp_path: Path, mirror_copy: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SignedS3]:
    """The credentialed project's AWS copy (files under <version>/) in a bucket that checks signatures, and
    no AWS credentials anywhere in the environment (each test adds the ones it means)."""
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws" / "credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws" / "config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("CLIMB_PHYSIONET_AWS_BUCKET", GRANT_BUCKET)
    with signed_s3() as s3:
        s3.client.create_bucket(Bucket=GRANT_BUCKET)
        for p in mirror_copy.rglob("*"):
            if p.is_file() and p.name != "SHA256SUMS.txt":
                s3.client.put_object(
                    Bucket=GRANT_BUCKET,
                    Key=f"1.0.3/{p.relative_to(mirror_copy).as_posix()}",
                    Body=p.read_bytes(),
                )
        yield s3


def _aws_settings(settings: Settings, s3: SignedS3) -> Settings:
    return settings.with_(mirror="aws", mirrors={**settings.mirrors, "physionet-aws": s3.endpoint})


def test_credentialed_project_from_its_aws_copy_with_the_users_aws_profile(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, aws_grant: SignedS3,
    mirror_copy: Path,
) -> None:  # fmt: skip
    """--mirror aws: the file bytes come from the bucket, signed with the AWS profile's keys (the standard
    chain: a credentials file, not argv); SHA256SUMS.txt comes from PhysioNet and every file is checked
    against it, so a damaged object in the bucket is caught."""
    creds = tmp_path / "aws" / "credentials"
    creds.parent.mkdir(parents=True, exist_ok=True)
    creds.write_text(
        f"[physionet]\naws_access_key_id = {aws_grant.key_id}\naws_secret_access_key = {aws_grant.secret}\n"
    )
    os.environ["AWS_PROFILE"] = "physionet"  # restored by monkeypatch's delenv undo in aws_grant
    try:
        key = "1.0.3/records500/00000/00001_hr.dat"
        good = aws_grant.client.get_object(Bucket=GRANT_BUCKET, Key=key)["Body"].read()
        aws_grant.client.put_object(Bucket=GRANT_BUCKET, Key=key, Body=good[:-1] + bytes([good[-1] ^ 1]))
        recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
        aws = _aws_settings(settings, aws_grant)
        report = download(recipe, aws)
        assert not report.ok and report.count("failed") == 1
        assert "checksum mismatch for records500/00000/00001_hr.dat" in report.error
        aws_grant.client.put_object(Bucket=GRANT_BUCKET, Key=key, Body=good)
        report = download(recipe, aws)
        assert report.ok, report.error
        raw = settings.raw_dir("toyecg")
        for p in raw.rglob("*"):
            rel = p.relative_to(raw).as_posix()
            if p.is_file() and ".climb" not in p.parts:
                assert filecmp.cmp(p, mirror_copy / rel, shallow=False), rel
        with RawManifest.for_dataset(raw) as m:
            rows = m.load()
        assert rows and all(
            r.url.startswith(f"{aws_grant.endpoint}/{GRANT_BUCKET}/1.0.3/") for r in rows.values()
        )
        # PhysioNet served the sums only, and saw no AWS signature
        assert [r.path for r in server.requests_for("/files/secret-ecg/*")] == [
            "/files/secret-ecg/1.0.3/SHA256SUMS.txt"
        ]
        assert not any(r.had_authorization for r in server.log)
        assert not any(aws_grant.key_id in r.path for r in server.log)
    finally:
        os.environ.pop("AWS_PROFILE", None)


def test_aws_copy_without_aws_credentials_is_one_line(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, aws_grant: SignedS3
) -> None:
    """The bucket refuses a request without a signature (its policy); climb does not send one: it says
    in one line where the credentials go. Without the bucket setting, one line names it."""
    anonymous = requests.get(f"{aws_grant.endpoint}/{GRANT_BUCKET}/1.0.3/ptbxl_database.csv", timeout=10)
    assert anonymous.status_code == 403
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    report = download(recipe, _aws_settings(settings, aws_grant))
    assert not report.ok
    assert (
        f"--mirror aws reads s3://{GRANT_BUCKET} with your AWS credentials and none were found" in report.why
    )
    assert "AWS_PROFILE" in report.why and "\n" not in report.why
    assert report.category == "no credentials", report.category  # not "access not granted"
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = aws_grant.key_id, "wrong-secret"
    try:
        report = download(recipe, _aws_settings(settings, aws_grant))
    finally:
        del os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]
    assert not report.ok and report.category != "ok"
    assert f"s3://{GRANT_BUCKET} refused" in report.why and "HTTP 403" in report.why, report.why
    assert "wrong-secret" not in report.why
    os.environ.pop("CLIMB_PHYSIONET_AWS_BUCKET")
    try:
        report = download(recipe, _aws_settings(settings, aws_grant))
    finally:
        os.environ["CLIMB_PHYSIONET_AWS_BUCKET"] = GRANT_BUCKET
    assert not report.ok and "set CLIMB_PHYSIONET_AWS_BUCKET to the bucket named on" in report.why


@pytest.mark.parametrize(
    ("globs", "said"),
    [
        ("include: ['nomatch/*']", "no upstream file matches include ['nomatch/*']"),
        ("exclude: ['**']", "no upstream file matches exclude ['**']"),
    ],
)
def test_globs_that_select_nothing_are_an_error(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, globs: str, said: str
) -> None:
    """Every source of a recipe is there to fetch something: one that selects no file fails with one line
    naming the dataset, the source and its globs, and where to fix them; `--dry-run` says the same."""
    src = f"  - id: data\n    kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    {globs}\n"
    path = write_recipe(tmp_path / "recipes", "toyecg", src)
    recipe = Catalog([path.parent]).load("toyecg")
    report = download(recipe, settings)
    assert not report.ok and report.category == "failed" and not report.outcomes
    assert report.error == (
        f"toyecg: source 'data' (physionet ptb-xl/1.0.3): {said}; check these globs in {path} against the "
        "upstream listing"
    )
    with pytest.raises(ClimbError) as e:
        plan(recipe, settings)
    assert str(e.value) == report.error
