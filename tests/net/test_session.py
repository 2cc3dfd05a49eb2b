"""climb_cli.net.session: credentials bound to their origin on every hop, environment proxies and CA
bundles (never ~/.netrc), and TLS / DNS failures said at once. Real sockets: capture servers on 127.0.0.1
and 127.0.0.2, a CONNECT-capable forward proxy, a private test CA."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.net.session import CertificateError, ClimbSession, InsecureRedirect, UnknownHost
from climb_cli.settings import Settings
from tests.conftest import SECRETS, fast_settings, write_recipe
from tests.fakes.capture import CaptureServer
from tests.fakes.proxy import FakeProxy
from tests.fakes.tls import make_test_ca, server_context

SECRET = SECRETS[0]
_ENV = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR", "NETRC")
_PROXY_ENV = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _ENV + _PROXY_ENV:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def home() -> Iterator[CaptureServer]:
    with CaptureServer("127.0.0.1") as c:
        yield c


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    return make_test_ca(tmp_path_factory.mktemp("tls"), ["127.0.0.1", "localhost"])


@pytest.fixture
def https_home(ca: tuple[Path, Path, Path]) -> Iterator[CaptureServer]:
    with CaptureServer("127.0.0.1", tls=server_context(ca[1], ca[2])) as c:
        yield c


CREDENTIALS = {
    "cookie": {"cookies": {"sessionid": SECRET}},
    "basic": {"auth": ("ada", SECRET)},
    "bearer": {"headers": {"Authorization": f"Bearer {SECRET}"}},
}


@pytest.mark.parametrize("kind", sorted(CREDENTIALS))
def test_credentials_stay_on_their_origin_on_every_hop(
    home: CaptureServer, capture: CaptureServer, kind: str
) -> None:
    home.answers["/start"] = (302, {"Location": f"{home.base_url}/same"})  # same origin: keeps them
    home.answers["/same"] = (307, {"Location": f"{capture.base_url}/away"})  # another port or host
    with ClimbSession() as s:
        r = s.get(f"{home.base_url}/start", timeout=5, **CREDENTIALS[kind])
    assert r.status_code == 200 and r.url == f"{capture.base_url}/away" and len(r.history) == 2
    assert [c.path for c in home.seen] == ["/start", "/same"]
    assert all(c.credentials() for c in home.seen)
    if kind == "basic":
        want = "Basic " + base64.b64encode(f"ada:{SECRET}".encode()).decode()
        assert home.seen[1].headers["authorization"] == want
    assert len(capture.seen) == 1 and capture.leaked(SECRETS) == []


def test_plain_requests_would_leak_the_cookie(home: CaptureServer, capture: CaptureServer) -> None:
    """Why ClimbSession exists: requests sends a per-request cookie to wherever the redirect goes."""
    home.answers["/start"] = (302, {"Location": f"{capture.base_url}/away"})
    with requests.Session() as s:
        s.get(f"{home.base_url}/start", cookies={"sessionid": SECRET}, timeout=5)
    assert capture.leaked(SECRETS)


def test_cookies_a_server_sets_are_not_replayed_anywhere(home: CaptureServer, capture: CaptureServer) -> None:
    home.answers["/login"] = (200, {"Set-Cookie": f"sessionid={SECRET}; Path=/"})
    with ClimbSession() as s:
        r = s.get(f"{home.base_url}/login", timeout=5)
        assert r.cookies.get("sessionid") == SECRET  # the source reads it here, and passes it itself
        s.get(f"{capture.base_url}/x", timeout=5)
        s.get(f"{home.base_url}/y", timeout=5)
    assert capture.leaked(SECRETS) == [] and home.leaked(SECRETS) == []


def test_https_to_http_downgrade_with_a_credential_is_refused(
    https_home: CaptureServer, home: CaptureServer, ca: tuple[Path, Path, Path]
) -> None:
    https_home.answers["/start"] = (302, {"Location": f"{home.base_url}/plain"})
    with ClimbSession() as s, pytest.raises(InsecureRedirect, match=r"refused a redirect from https://127"):
        s.get(
            f"{https_home.base_url}/start", headers={"Authorization": f"Bearer {SECRET}"}, verify=str(ca[0])
        )
    assert home.seen == []
    with ClimbSession() as s:  # no credential: a public file may move to http
        assert s.get(f"{https_home.base_url}/start", verify=str(ca[0]), timeout=5).status_code == 200
    assert len(home.seen) == 1


def test_post_answered_303_is_followed_as_get_without_the_body(home: CaptureServer) -> None:
    home.answers["/rpc"] = (303, {"Location": f"{home.base_url}/result"})
    with ClimbSession() as s:
        r = s.post(f"{home.base_url}/rpc", json={"a": 1}, timeout=5)
    assert r.status_code == 200 and [(c.method, c.path) for c in home.seen] == [
        ("POST", "/rpc"),
        ("GET", "/result"),
    ]
    assert "content-type" not in home.seen[1].headers


def test_netrc_is_never_injected(
    home: CaptureServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text(f"machine 127.0.0.1 login ada password {SECRET}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with ClimbSession() as s:
        s.get(f"{home.base_url}/x", timeout=5)
    assert home.leaked(SECRETS) == []


# -- proxies and private CAs ------------------------------------------------------------------------


def test_https_proxy_and_private_ca_bundle_from_the_environment(
    https_home: CaptureServer, ca: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(ca[0]))
    with FakeProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        with ClimbSession() as s:
            assert s.get(f"{https_home.base_url}/a", timeout=5).content == b"captured"
        assert proxy.seen == [("CONNECT", https_home.base_url.removeprefix("https://"))]


@pytest.mark.parametrize("var", ["SSL_CERT_FILE", "CURL_CA_BUNDLE"])
def test_other_ca_settings_are_honoured(
    https_home: CaptureServer, ca: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch, var: str
) -> None:
    monkeypatch.setenv(var, str(ca[0]))
    with ClimbSession() as s:
        assert s.get(f"{https_home.base_url}/a", timeout=5).status_code == 200


def test_http_proxy_and_no_proxy(home: CaptureServer, monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeProxy() as proxy, CaptureServer("127.0.0.2") as direct:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.2")
        with ClimbSession() as s:
            s.get(f"{home.base_url}/via-proxy", timeout=5)
            s.get(f"{direct.base_url}/direct", timeout=5)
        assert proxy.seen == [("GET", f"{home.base_url}/via-proxy")]
        assert [c.path for c in home.seen] == ["/via-proxy"] and [c.path for c in direct.seen] == ["/direct"]


def test_proxy_settings_changed_between_requests_of_one_session_are_followed(
    home: CaptureServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy answer is remembered per origin (for speed), but never past a change of the variables."""
    for var in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with FakeProxy() as proxy, ClimbSession() as s:
        s.get(f"{home.base_url}/direct-1", timeout=5)
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        s.get(f"{home.base_url}/via-proxy", timeout=5)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        s.get(f"{home.base_url}/direct-2", timeout=5)
        assert proxy.seen == [("GET", f"{home.base_url}/via-proxy")]
        assert [c.path for c in home.seen] == ["/direct-1", "/via-proxy", "/direct-2"]


def test_every_source_goes_through_the_proxy(
    tmp_path: Path, server: FakePhysioNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = "  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [ptbxl_database.csv]\n"
    recipe = Catalog([write_recipe(tmp_path / "r", "toyecg", src).parent]).load("toyecg")
    with FakeProxy() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        report = download(recipe, fast_settings(tmp_path, {"physionet": server.base_url}))
        assert report.ok, report.error
        assert len(proxy.seen) == len(server.log) == 2  # SHA256SUMS.txt and the file, both via the proxy


def test_certificate_failure_is_one_line_at_once(tmp_path: Path, https_home: CaptureServer) -> None:
    """No CA configured for the private CA: not retried (was 9 tries over 172 s), says what to set."""
    src = (
        f"  - kind: http\n    files:\n      - url: {https_home.base_url}/a.bin\n        sha256: {'a' * 64}\n"
    )
    recipe = Catalog([write_recipe(tmp_path / "r", "toyhttp", src).parent]).load("toyhttp")
    settings: Settings = fast_settings(tmp_path, retries=8, backoff=0.5, backoff_max=5)
    t0 = time.monotonic()
    report = download(recipe, settings)
    assert not report.ok and https_home.connections == 1 and time.monotonic() - t0 < 5
    (out,) = report.outcomes
    assert "TLS certificate of 127.0.0.1 could not be verified" in out.error
    assert "REQUESTS_CA_BUNDLE or SSL_CERT_FILE" in out.error and "\n" not in out.error
    with ClimbSession() as s, pytest.raises(CertificateError):
        s.get(f"{https_home.base_url}/a", timeout=5)


def test_unknown_host_is_said_at_once() -> None:
    t0 = time.monotonic()
    with (
        ClimbSession() as s,
        pytest.raises(UnknownHost, match="cannot resolve the host name climb-nowhere.invalid"),
    ):
        s.get("http://climb-nowhere.invalid/x", timeout=5)
    assert time.monotonic() - t0 < 10


def test_the_aws_signature_goes_to_the_bucket_only_and_physionet_credentials_never(
    tmp_path: Path, server: FakePhysioNet, good_credentials: None, capture: CaptureServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """--mirror aws on a credentialed project: PhysioNet (signed in with the password, then its session
    cookie) serves SHA256SUMS.txt, the bucket (the capture server, another port or host) the bytes. The
    SigV4 signature with the AWS key goes to the bucket's origin only; no cookie or password goes there."""
    key_id, secret = "AKIACLIMBAWSTEST0001", "aws-secret-Frobozz-91c4-secret"
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("CLIMB_PHYSIONET_AWS_BUCKET", "secret-ecg-grant")
    src = "  - kind: physionet\n    project: secret-ecg\n    version: 1.0.3\n"
    src += "    include: [ptbxl_database.csv]\n"
    recipe = Catalog([write_recipe(tmp_path / "r", "toyecg", src, access="credentialed").parent]).load(
        "toyecg"
    )
    mirrors = {"physionet": server.base_url, "physionet-aws": capture.base_url}
    report = download(recipe, fast_settings(tmp_path, mirrors).with_(mirror="aws"))
    assert not report.ok  # the capture server has no such object: what matters is what reached whom
    assert capture.seen and all(c.path == "/secret-ecg-grant/1.0.3/ptbxl_database.csv" for c in capture.seen)
    for c in capture.seen:
        assert set(c.credentials()) == {"authorization"}  # the signature, no cookie
        assert c.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={key_id}/")
        assert c.headers["x-amz-request-payer"] == "requester"
    assert not [x for x in capture.leaked(SECRETS) if not x.endswith(": authorization")]
    assert server.requests_for("/login/", method="POST")  # PhysioNet's own credentials went to PhysioNet
    assert not any(r.had_authorization for r in server.log)  # and no AWS signature did
