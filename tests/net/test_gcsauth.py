"""net/gcsauth.py: Google bearer tokens from Application Default Credentials (a service-account key file whose
token_uri is the fake token endpoint), refreshed once however many requests saw the 401, never shown."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli import redaction
from climb_cli.errors import AccessError
from climb_cli.net.session import ClimbSession
from tests.fakes.gcs import TOKEN_MARK, FakeGoogleOAuth

pytest.importorskip("google.auth", reason="google-auth is in the test extra (climb-cli[gcs])")
from climb_cli.net.gcsauth import GoogleBearer  # noqa: E402

EMAIL = "ada-sa@ada-lab.iam.gserviceaccount.com"


@pytest.fixture
def oauth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGoogleOAuth]:
    for var in ("GOOGLE_CLOUD_PROJECT", "GCLOUD_PROJECT", "CLIMB_GCS_BILLING_PROJECT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    with FakeGoogleOAuth() as fake:
        key = tmp_path / "key.json"
        key.write_text(json.dumps(fake.service_account(EMAIL, "ada-lab")))
        monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(key))
        yield fake


def test_a_token_from_the_key_file_refreshed_once_for_many_401s(oauth: FakeGoogleOAuth) -> None:
    bearer = GoogleBearer.resolve(ClimbSession())
    assert bearer is not None and bearer.billing_project == "ada-lab" and bearer.account == EMAIL
    token = bearer.token()
    assert TOKEN_MARK in token and oauth.grants() == 1
    assert bearer.token() == token and oauth.grants() == 1  # reused while valid
    assert token not in repr(bearer) and redaction.redact(f"x {token} y") == "x *** y"
    threads = [threading.Thread(target=bearer.refused, args=(token,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert oauth.grants() == 2 and bearer.token() != token  # eight 401s, one new token
    grants = [s for s in oauth.seen if s.method == "POST"]
    assert all(s.path == "/token" and "authorization" not in s.headers for s in grants)


def test_the_billing_setting_wins(oauth: FakeGoogleOAuth, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIMB_GCS_BILLING_PROJECT", "lab-billing")
    bearer = GoogleBearer.resolve(ClimbSession())
    assert bearer is not None and bearer.billing_project == "lab-billing"


def test_an_unreachable_token_endpoint_is_one_line(oauth: FakeGoogleOAuth) -> None:
    bearer = GoogleBearer.resolve(ClimbSession())
    assert bearer is not None
    host = f"{oauth.host}:{oauth.port}"
    oauth.stop()
    with pytest.raises(AccessError, match=f"cannot reach {host} for a Google access token") as e:
        bearer.token()
    assert "\n" not in str(e.value)


def test_without_google_auth_installed_it_says_which_extra(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['google.auth'] = None\n"
        "from climb_cli.net.gcsauth import GoogleBearer\n"
        "from climb_cli.errors import UsageError\n"
        "try:\n    GoogleBearer.resolve(None)\n"
        "except UsageError as e:\n    print(e)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (
        r.stdout.strip()
        == "--mirror gcs gets Google access tokens with google-auth: pip install 'climb-cli[gcs]'"
    )


def test_the_token_refresh_goes_through_the_environments_proxy(
    oauth: FakeGoogleOAuth, monkeypatch: pytest.MonkeyPatch
) -> None:
    """google-auth refreshes through a climb session, so HTTP(S)_PROXY / NO_PROXY and the CA bundle apply to
    the token endpoint as to every other request."""
    from tests.fakes.proxy import FakeProxy

    for var in ("NO_PROXY", "no_proxy", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        bearer = GoogleBearer.resolve(ClimbSession())
        assert bearer is not None and TOKEN_MARK in bearer.token()
        assert proxy.seen == [("POST", oauth.token_uri)]
