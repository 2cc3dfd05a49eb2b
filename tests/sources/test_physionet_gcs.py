"""`--mirror gcs`: PhysioNet's requester-pays GCS copy (gs://<slug>-<version>.physionet.org, files at its
root).

The file list and SHA256SUMS.txt come from the fake PhysioNet, the bytes from the fake Cloud Storage JSON API
with a bearer token that google-auth got from the fake token endpoint for a service-account key file (the
key file named by GOOGLE_APPLICATION_CREDENTIALS, as Application Default Credentials find it), billed to a
project sent as userProject. Every file is checked against PhysioNet's sums; each origin sees only its own
credentials."""

from __future__ import annotations

import filecmp
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.manifest import RawManifest
from climb_cli.settings import Settings
from tests.conftest import TEST_PASSWORD, TEST_USER, redirect_to, run_climb
from tests.fakes.bucket import FAULT_IDS, arm_fault
from tests.fakes.capture import CaptureServer
from tests.fakes.gcs import TOKEN_MARK, FakeGCS, FakeGoogleOAuth
from tests.sources.test_physionet import _recipe

pytest.importorskip("google.auth", reason="google-auth is in the test extra (climb-cli[gcs])")

BUCKET = "secret-ecg-1.0.3.physionet.org"  # gs://<slug>-<version>.physionet.org
READER = "ada-sa@ada-lab.iam.gserviceaccount.com"
OUTSIDER = "eve-sa@eve-lab.iam.gserviceaccount.com"
VICTIM = "records500/00000/00001_hr.dat"


@pytest.fixture
def gcs(mirror_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGCS]:
    """The project's GCS copy readable by READER (the project's Google group), READER's key file as the
    Application Default Credentials, and nothing else Google-ish in the environment."""
    for var in (
        "GOOGLE_CLOUD_PROJECT",
        "GCLOUD_PROJECT",
        "GOOGLE_CLOUD_QUOTA_PROJECT",
        "CLIMB_GCS_BILLING_PROJECT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))  # no gcloud ADC file
    with FakeGoogleOAuth() as oauth, FakeGCS(oauth) as fake:
        fake.bucket(BUCKET, readers={READER})
        fake.billing = {READER: {"ada-lab"}, OUTSIDER: {"eve-lab"}}
        for p in sorted(mirror_copy.rglob("*")):
            if p.is_file() and p.name != "SHA256SUMS.txt":
                fake.put(BUCKET, p.relative_to(mirror_copy).as_posix(), p.read_bytes())
        key = tmp_path / "google" / "ada-sa.json"
        key.parent.mkdir()
        key.write_text(json.dumps(oauth.service_account(READER, "ada-lab")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        yield fake


def _gcs_settings(settings: Settings, gcs: FakeGCS) -> Settings:
    return settings.with_(mirror="gcs", mirrors={**settings.mirrors, "physionet-gcs": gcs.base_url})


def _assert_no_crossing(server: FakePhysioNet, gcs: FakeGCS) -> None:
    """The bearer token never went to PhysioNet; the PhysioNet cookie and password never went to GCS."""
    assert not any(r.had_authorization for r in server.log)
    assert not any(TOKEN_MARK in r.path for r in server.log)
    for seen in gcs.seen:
        assert "cookie" not in seen.headers, seen
        assert TEST_PASSWORD not in seen.path and TEST_PASSWORD not in json.dumps(seen.headers)
        assert seen.headers["authorization"].startswith(f"Bearer ya29.{TOKEN_MARK}.")
    for seen in gcs.oauth.seen:  # the token endpoint: a JWT grant, no PhysioNet credential either
        assert "cookie" not in seen.headers and "authorization" not in seen.headers


def test_credentialed_project_from_its_gcs_copy_with_a_service_account(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, gcs: FakeGCS,
    mirror_copy: Path,
) -> None:  # fmt: skip
    """The bytes come from the bucket with the key file's token, billed to the key file's project; the sums
    from PhysioNet; a damaged object is a checksum mismatch and is not kept; the manifest records GCS URLs."""
    good = gcs.buckets[BUCKET].objects[VICTIM].data
    gcs.put(BUCKET, VICTIM, good[:-1] + bytes([good[-1] ^ 1]))
    recipe = _recipe(tmp_path, project="secret-ecg", access="credentialed")
    mirrored = _gcs_settings(settings, gcs)
    report = download(recipe, mirrored)
    assert not report.ok and report.count("failed") == 1
    assert f"checksum mismatch for {VICTIM}" in report.error
    raw = settings.raw_dir("toyecg")
    assert not (raw / VICTIM).exists()  # never under its final name
    gcs.put(BUCKET, VICTIM, good)
    report = download(recipe, mirrored)
    assert report.ok, report.error
    files = [p for p in raw.rglob("*") if p.is_file() and ".climb" not in p.parts]
    assert len(files) > 30
    for p in files:
        rel = p.relative_to(raw).as_posix()
        assert filecmp.cmp(p, mirror_copy / rel, shallow=False), rel
    with RawManifest.for_dataset(raw) as m:
        rows = m.load()
    prefix = f"{gcs.base_url}/storage/v1/b/{BUCKET}/o/"
    assert rows and all(r.url.startswith(prefix) and r.url.endswith("?alt=media") for r in rows.values())
    assert rows[VICTIM].url == prefix + VICTIM.replace("/", "%2F") + "?alt=media"
    # PhysioNet served the sums only; every GCS read was READER's, billed to the key file's project
    assert [r.path for r in server.requests_for("/files/secret-ecg/*")] == [
        "/files/secret-ecg/1.0.3/SHA256SUMS.txt"
    ]
    assert gcs.reads and set(gcs.reads) == {(READER, "ada-lab")}
    assert gcs.oauth.grants() == 2  # one token per run (two runs), not one per file
    _assert_no_crossing(server, gcs)


def test_the_billing_setting_wins_and_an_expired_token_is_refreshed(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, gcs: FakeGCS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    gcs.billing[READER].add("ada-billing")
    monkeypatch.setenv("CLIMB_GCS_BILLING_PROJECT", "ada-billing")
    recipe = _recipe(
        tmp_path, project="secret-ecg", access="credentialed", include="records500/00000/00001_hr.*"
    )
    first = download(recipe, _gcs_settings(settings, gcs))
    assert first.ok, first.error
    assert set(gcs.reads) == {(READER, "ada-billing")}
    # the server forgets the token (revoked, or expired early): a 401, one new token, the run goes on
    (raw := settings.raw_dir("toyecg") / "ptbxl_database.csv").unlink()
    gcs.oauth.expire_all()
    again = download(recipe, _gcs_settings(settings, gcs))
    assert again.ok, again.error
    assert raw.is_file() and gcs.oauth.grants() == 2


def test_the_token_does_not_follow_a_redirect_to_another_host(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, gcs: FakeGCS,
    capture: CaptureServer,
) -> None:  # fmt: skip
    gcs.faults.add("status", path_glob=f"/{BUCKET}/*", **redirect_to(capture))
    recipe = _recipe(
        tmp_path, project="secret-ecg", access="credentialed", include="records500/00000/00001_hr.*"
    )
    report = download(recipe, _gcs_settings(settings, gcs))
    assert not report.ok  # the capture server's bytes are not the file
    assert capture.seen and not any(c.credentials() for c in capture.seen)
    assert not any("userProject" in c.path and TOKEN_MARK in c.path for c in capture.seen)


def _cli(tmp_path: Path) -> list[str]:
    _recipe(tmp_path, project="secret-ecg", access="credentialed", include="records500/00000/00001_hr.*")
    return [
        "--data-dir",
        str(tmp_path / "data"),
        "--recipes",
        str(tmp_path / "recipes"),
        "download",
        "toyecg",
    ]


def _env(server: FakePhysioNet, gcs: FakeGCS, tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        "CLIMB_PHYSIONET_URL": server.base_url,
        "CLIMB_PHYSIONET_GCS_URL": gcs.base_url,
        "CLIMB_MIRROR": "gcs",
        "CLIMB_BACKOFF": "0.01",
        "PHYSIONET_USERNAME": TEST_USER,
        "PHYSIONET_PASSWORD": TEST_PASSWORD,
        "NO_GCE_CHECK": "true",  # google-auth: not on a Google Cloud VM (no metadata-server probe)
        "CLOUDSDK_CONFIG": str(tmp_path / "gcloud"),
    }
    env.update(extra)
    return env


def _one_line(r: object) -> str:
    stderr = r.stderr  # type: ignore[attr-defined]
    assert r.returncode == 1, stderr  # type: ignore[attr-defined]
    assert "Traceback" not in stderr and "internal error" not in stderr
    assert TOKEN_MARK not in stderr + r.stdout  # type: ignore[attr-defined]
    return str(stderr)


def test_refusals_are_one_line_each(
    tmp_path: Path, server: FakePhysioNet, gcs: FakeGCS, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No credentials, a key Google refuses, an account outside the project's Google group, a billing
    project the account may not use: each a one-line failure saying what to do, and no data read."""
    args = _cli(tmp_path)
    key = Path(os.environ["GOOGLE_APPLICATION_CREDENTIALS"])
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS")
    r = run_climb(*args, env=_env(server, gcs, tmp_path))
    err = _one_line(r)
    assert f"--mirror gcs reads gs://{BUCKET} with your Google credentials and none were found" in err
    assert "gcloud auth application-default login" in err and "GOOGLE_APPLICATION_CREDENTIALS" in err

    forged = json.loads(key.read_text())
    forged["private_key"] = gcs.oauth.service_account("x@y.iam.gserviceaccount.com", "y")["private_key"]
    (bad := tmp_path / "google" / "forged.json").write_text(json.dumps(forged))
    err = _one_line(
        run_climb(*args, env=_env(server, gcs, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(bad)))
    )
    assert "refused to give" in err and "Invalid JWT Signature" in err, err

    (outsider := tmp_path / "google" / "eve.json").write_text(
        json.dumps(gcs.oauth.service_account(OUTSIDER, "eve-lab"))
    )
    err = _one_line(
        run_climb(*args, env=_env(server, gcs, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(outsider)))
    )
    assert f"gs://{BUCKET} refused " in err and f" to {OUTSIDER} (HTTP 403)" in err, err
    assert "request Google Cloud access to secret-ecg on" in err and "/content/secret-ecg/1.0.3/" in err

    env = _env(
        server, gcs, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key), CLIMB_GCS_BILLING_PROJECT="eve-lab"
    )
    err = _one_line(run_climb(*args, env=env))
    assert "requester pays and did not take billing project 'eve-lab'" in err and "serviceusage" in err, err

    (broken := tmp_path / "google" / "broken.json").write_text("{not json")
    err = _one_line(
        run_climb(*args, env=_env(server, gcs, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(broken)))
    )
    assert f"GOOGLE_APPLICATION_CREDENTIALS={broken}: not a usable Google credentials file" in err, err

    assert not gcs.reads  # nothing was read in any of them
    assert not any(r.path.endswith(".dat") for r in server.log)
    r = run_climb(*args, env=_env(server, gcs, tmp_path, GOOGLE_APPLICATION_CREDENTIALS=str(key)))
    assert r.returncode == 0, r.stderr
    assert gcs.reads


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])
def test_fault_matrix(
    tmp_path: Path,
    settings: Settings,
    server: FakePhysioNet,
    good_credentials: None,
    gcs: FakeGCS,
    fault: str,
) -> None:
    """The shared network faults on the GCS media GET; "expired-signed-url" is the bearer token expiring
    between the first request and the resume (a 401, one refresh, the resume), "expired" a token refused at
    its first use."""
    size = len(gcs.buckets[BUCKET].objects[VICTIM].data)
    glob = f"/{BUCKET}/{VICTIM}"
    if fault == "expired-signed-url":
        gcs.oauth.expire_on_drop = True
        gcs.faults.add("drop", path_glob=glob, after_bytes=size // 3)
    elif fault == "expired":
        gcs.oauth.stale_next = 1  # the first token is refused at its first use
    else:
        arm_fault(gcs, fault, glob, size)
    recipe = _recipe(
        tmp_path, project="secret-ecg", access="credentialed", include="records500/00000/00001_hr.*"
    )
    report = download(recipe, _gcs_settings(settings, gcs).with_(read_timeout=0.5))
    assert report.ok, report.error
    raw = settings.raw_dir("toyecg")
    assert (raw / VICTIM).read_bytes() == gcs.buckets[BUCKET].objects[VICTIM].data
    statuses = [r.status for r in gcs.requests_for("*") if VICTIM.replace("/", "%2F") in r.path]
    if fault == "expired-signed-url":
        # the resume gets a 401 and refreshes, or finds the token another file's 401 already refreshed
        assert statuses in ([200, 401, 206], [200, 206]) and 401 in [r.status for r in gcs.log]
        assert gcs.oauth.grants() == 2
    elif fault == "expired":
        assert 401 in [r.status for r in gcs.log] and gcs.oauth.grants() == 2
    elif fault == "changed":
        assert statuses == [200, 412, 200]  # If-Match failed: the whole object again
    elif fault in ("drop-mid-body", "short-body"):
        assert statuses == [200, 206]
    _assert_no_crossing(server, gcs)


def test_no_billing_project_is_one_line(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, good_credentials: None, gcs: FakeGCS,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """Credentials that name no project (and no CLIMB_GCS_BILLING_PROJECT): nothing to bill, said before any
    request reaches the requester-pays bucket."""
    key = tmp_path / "google" / "no-project.json"
    key.write_text(json.dumps(gcs.oauth.service_account(READER, "")))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
    recipe = _recipe(
        tmp_path, project="secret-ecg", access="credentialed", include="records500/00000/00001_hr.*"
    )
    report = download(recipe, _gcs_settings(settings, gcs))
    assert not report.ok and "\n" not in report.why
    assert f"gs://{BUCKET} is requester pays: set CLIMB_GCS_BILLING_PROJECT" in report.why, report.why
    assert not gcs.seen
