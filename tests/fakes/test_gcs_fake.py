"""The fake GCS and the fake Google token endpoint, proven with Google's own clients: google-cloud-storage
(pointed at the fake by STORAGE_EMULATOR_HOST, which only changes the API endpoint; the credentials passed are
used as given) and google-auth's service-account and authorized-user credentials, unmodified."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from tests.fakes.gcs import FakeGCS, FakeGoogleOAuth

storage = pytest.importorskip("google.cloud.storage", reason="google-cloud-storage is in the test extra")
exceptions = pytest.importorskip("google.api_core.exceptions")
service_account = pytest.importorskip("google.oauth2.service_account")
user_credentials = pytest.importorskip("google.oauth2.credentials")

BUCKET = "mimic-cxr-jpg-2.1.0.physionet.org"
READER = "reader@climb-test.iam.gserviceaccount.com"
OUTSIDER = "outsider@climb-test.iam.gserviceaccount.com"
SCOPE = ["https://www.googleapis.com/auth/devstorage.read_only"]
DATA = bytes(range(256)) * 40


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGCS]:
    with FakeGoogleOAuth() as oauth, FakeGCS(oauth) as fake:
        fake.bucket(BUCKET, readers={READER, "ada@example.org"})
        fake.put(BUCKET, "files/p10/s1.jpg", DATA, "image/jpeg")
        fake.billing = {
            READER: {"lab-billing"},
            OUTSIDER: {"lab-billing"},
            "ada@example.org": {"ada-project"},
        }
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", fake.base_url)
        yield fake


def _client(gcs: FakeGCS, email: str) -> object:
    info = gcs.oauth.service_account(email, "climb-test")
    creds = service_account.Credentials.from_service_account_info(info, scopes=SCOPE)
    return storage.Client(project="climb-test", credentials=creds)


def test_the_official_client_downloads_a_requester_pays_object(gcs: FakeGCS) -> None:
    client = _client(gcs, READER)
    bucket = client.bucket(BUCKET, user_project="lab-billing")
    blob = bucket.blob("files/p10/s1.jpg")
    assert blob.download_as_bytes() == DATA  # the client checks the x-goog-hash crc32c/md5 of a whole body
    assert blob.download_as_bytes(start=100, end=199) == DATA[100:200]  # a range
    meta = bucket.get_blob("files/p10/s1.jpg")
    assert meta is not None and meta.size == len(DATA) and meta.md5_hash and meta.crc32c
    assert gcs.oauth.grants() >= 1  # JWT grants (the client keeps a token per credentials copy)
    media = [s for s in gcs.seen if "alt=media" in s.path]
    assert media and all("userProject=lab-billing" in s.path for s in media)
    assert all(s.headers["authorization"].startswith("Bearer ya29.") for s in gcs.seen)
    assert gcs.reads and {r for r in gcs.reads} == {(READER, "lab-billing")}


def test_requester_pays_without_a_user_project_is_400(gcs: FakeGCS) -> None:
    client = _client(gcs, READER)
    with pytest.raises(exceptions.BadRequest, match="requester pays bucket but no user project"):
        client.bucket(BUCKET).blob("files/p10/s1.jpg").download_as_bytes()


def test_refusals_as_google_words_them(gcs: FakeGCS) -> None:
    outsider = _client(gcs, OUTSIDER)  # a valid token, not in the project's Google group
    with pytest.raises(exceptions.Forbidden, match="does not have storage.objects.get access"):
        outsider.bucket(BUCKET, user_project="lab-billing").blob("files/p10/s1.jpg").download_as_bytes()
    reader = _client(gcs, READER)  # may read, may not bill that project
    with pytest.raises(exceptions.Forbidden, match="serviceusage.services.use"):
        reader.bucket(BUCKET, user_project="someone-elses").blob("files/p10/s1.jpg").download_as_bytes()
    with pytest.raises(exceptions.NotFound, match="No such object"):
        reader.bucket(BUCKET, user_project="lab-billing").blob("files/nope.jpg").download_as_bytes()
    # no token at all (what `curl` gets; the client's AuthorizedSession would try to refresh on this 401)
    url = f"{gcs.base_url}/storage/v1/b/{BUCKET}/o/files%2Fp10%2Fs1.jpg?alt=media&userProject=lab-billing"
    r = requests.get(url, timeout=10)
    assert r.status_code == 401 and r.json()["error"]["message"].startswith("Anonymous caller does not have")


def test_a_forged_key_gets_no_token_and_an_expired_token_is_refreshed(gcs: FakeGCS) -> None:
    from google.auth.exceptions import RefreshError

    info = gcs.oauth.service_account(READER, "climb-test")
    forged = dict(
        info, private_key=gcs.oauth.service_account("forger@x.iam.gserviceaccount.com", "x")["private_key"]
    )
    creds = service_account.Credentials.from_service_account_info(forged, scopes=SCOPE)
    with pytest.raises(RefreshError, match="Invalid JWT Signature"):
        storage.Client(project="p", credentials=creds).bucket(BUCKET, user_project="lab-billing").blob(
            "files/p10/s1.jpg"
        ).download_as_bytes()
    client = _client(gcs, READER)
    blob = client.bucket(BUCKET, user_project="lab-billing").blob("files/p10/s1.jpg")
    assert blob.download_as_bytes() == DATA
    before = gcs.oauth.grants()
    gcs.oauth.expire_all()  # the server forgets the token; the client refreshes on its 401 and goes on
    assert blob.download_as_bytes() == DATA
    assert gcs.oauth.grants() == before + 1
    assert [r.status for r in gcs.log if "alt=media" in r.path][-2:] == [401, 200]


def _user(info: dict[str, str]) -> object:
    """google-auth's user credentials as an authorized-user file gives them; built with the constructor
    because from_authorized_user_info always puts in Google's own token endpoint."""
    return user_credentials.Credentials(
        token=None,
        refresh_token=info["refresh_token"],
        client_id=info["client_id"],
        client_secret=info["client_secret"],
        token_uri=info["token_uri"],
        scopes=SCOPE,
    )


def test_an_authorized_user_refreshes_through_its_refresh_token(gcs: FakeGCS) -> None:
    from google.auth.exceptions import RefreshError

    info = gcs.oauth.authorized_user("ada@example.org", quota_project_id="ada-project")
    client = storage.Client(project="ada-project", credentials=_user(info))
    assert (
        client.bucket(BUCKET, user_project="ada-project").blob("files/p10/s1.jpg").download_as_bytes() == DATA
    )
    client = storage.Client(project="p", credentials=_user(dict(info, client_secret="not-the-secret")))
    with pytest.raises(RefreshError, match="invalid_grant"):
        client.bucket(BUCKET, user_project="ada-project").blob("files/p10/s1.jpg").download_as_bytes()
