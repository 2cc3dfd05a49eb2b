"""Shared test fixtures: generated PhysioNet projects, the fake server, settings, and a secret guard.

The guard fails any test whose captured output (stdout, stderr, logs, failure report) contains
one of the test secrets below, so a leak anywhere in the suite is a red test.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from climb_cli.demo import build_ptbxl_like
from climb_cli.fakes.physionet import FakePhysioNet, FakeProject, FakeUser
from climb_cli.settings import Settings
from tests.fakes.capture import CaptureServer

TEST_USER = "ada"
TEST_EMAIL = "ada@example.org"
TEST_PASSWORD = "pw-Xyzzy-7f3a9c-secret"
WRONG_PASSWORD = "wrong-Plugh-51e0-secret"
SECRETS = (
    TEST_PASSWORD,
    WRONG_PASSWORD,
    # Kaggle
    "kgl-key-Quux-93b1-secret",
    "KGAT_tok-Frob-4e7a-secret",
    "KGAT_bob-Zork-11aa-secret",
    "KGAT_wrong-Gnusto-7c2d-secret",
    "kcli-key-Blorb-0c4d-secret",
    "KGAT_kcli-Rezrov-8f1e-secret",
    # Grand Challenge
    "gc-tok-Frotz-5b2e-secret",
    "gc-bob-Yomin-77d0-secret",
    "gc-bad-Xyzzy-e3c1-secret",
    "gcf-tok-Nitfol-2a9b-secret",
    "gcf-oth-Bozbar-6c3d-secret",
    # Zenodo (zenodo_get takes its token on the command line; the test masks it)
    "zget-token-4c1d2e9f",
    # NSRR, OpenNeuro, figshare
    "nsrr-tok-Gnusto-6d1f-secret",
    "nsrr-bad-Frotz-0a7e-secret",
    "on-key-Yoho-39c2-secret",
    "fig-tok-Plover-8b5a-secret",
    # S3 (moto)
    "s3-secret-Ozmoo-3d7f-secret",
    # AWS credentials for PhysioNet's AWS copies (--mirror aws)
    "aws-secret-Frobozz-91c4-secret",
    # Google OAuth for PhysioNet's GCS copies (--mirror gcs; tests/fakes/gcs.py): access and refresh tokens
    "gcs-tok-Zorkmid-4b7e-secret",
    "gcs-refresh-Frobnitz-2c8a-secret",
    "gcs-client-Quendor-7d1b-secret",
    # a signed URL's signature (tests/test_transfer.py)
    "sig-Wumpus-5e8d-secret",
)
S3_KEY_ID = "AKIACLIMBTEST0000001"
SHARED_WFDB = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "wfdb"
REPO = Path(__file__).resolve().parents[1]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    texts = [content for _, content in report.sections]
    if report.longrepr is not None:
        texts.append(str(report.longrepr))
    leaked = [s for s in SECRETS if any(s in t for t in texts)]
    if leaked and report.when == "call":
        report.outcome = "failed"
        report.longrepr = f"a test secret appeared in captured output ({len(leaked)} secret(s)); see sections"


@pytest.fixture(scope="session")
def ptbxl_mirror(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PTB-XL-shaped project (30 generated records), never modified by tests."""
    root = tmp_path_factory.mktemp("mirror") / "ptb-xl" / "1.0.3"
    build_ptbxl_like(root, records=30, seed=1)
    return root


@pytest.fixture
def mirror_copy(ptbxl_mirror: Path, tmp_path: Path) -> Path:
    """A private copy of the project that a test may damage."""
    dest = tmp_path / "mirror" / "ptb-xl" / "1.0.3"
    shutil.copytree(ptbxl_mirror, dest)
    return dest


def make_users() -> list[FakeUser]:
    return [
        FakeUser(TEST_USER, TEST_EMAIL, TEST_PASSWORD, dua_signed={"ptb-xl", "secret-ecg"}),
        FakeUser("bob", "bob@example.org", TEST_PASSWORD, credentialed=False),
        FakeUser("cy", "cy@example.org", TEST_PASSWORD, dua_signed=set()),
    ]


@pytest.fixture
def server(mirror_copy: Path) -> Iterator[FakePhysioNet]:
    """The fake PhysioNet serving the project twice: open (ptb-xl) and credentialed (secret-ecg)."""
    projects = [
        FakeProject("ptb-xl", "1.0.3", mirror_copy, access="open", title="PTB-XL demo"),
        FakeProject("secret-ecg", "1.0.3", mirror_copy, access="credentialed", title="Credentialed copy"),
    ]
    with FakePhysioNet(projects, make_users()) as srv:
        yield srv


def fast_settings(tmp_path: Path, mirrors: dict[str, str] | None = None, **kw: object) -> Settings:
    """Settings for tests: a private data dir, the fakes as mirrors, quick retries, short timeouts."""
    return Settings(
        data_dir=tmp_path / "data",
        mirrors=mirrors or {},
        retries=4,
        backoff=0.01,
        backoff_max=0.2,
        connect_timeout=2.0,
        read_timeout=2.0,
        chunk_size=16 * 1024,
    ).with_(**kw)


@pytest.fixture
def settings(tmp_path: Path, server: FakePhysioNet) -> Settings:
    return fast_settings(tmp_path, {"physionet": server.base_url})


@pytest.fixture
def no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PhysioNet credentials anywhere (env cleared, NETRC pointing at a missing file)."""
    monkeypatch.delenv("PHYSIONET_USERNAME", raising=False)
    monkeypatch.delenv("PHYSIONET_PASSWORD", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))


@pytest.fixture
def good_credentials(monkeypatch: pytest.MonkeyPatch, no_credentials: None) -> None:
    monkeypatch.setenv("PHYSIONET_USERNAME", TEST_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", TEST_PASSWORD)


def run_climb(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess:
    """Run the installed CLI in a subprocess (what a user runs), capturing its output."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHYSIONET_", "CLIMB_"))}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "climb_cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def piped(text: str) -> io.StringIO:
    """A stdin that is not a terminal holding one line (what `climb auth login` reads a secret from)."""

    class Pipe(io.StringIO):
        def isatty(self) -> bool:
            return False

    return Pipe(text + "\n")


def write_recipe(folder: Path, name: str, source_yaml: str, extra: str = "", access: str = "open") -> Path:
    """A PTB-XL-like recipe under another name, pointing at another source block."""
    from climb_cli.catalog import Catalog

    text = Catalog().paths()["ptbxl_superdiagnostic"].read_text()
    head, _, rest = text.partition("sources:\n")
    _, _, tail = rest.partition("\nchecksums:")
    head = head.replace("name: ptbxl_superdiagnostic", f"name: {name}").replace(
        "access: open", f"access: {access}"
    )
    text = head + "sources:\n" + source_yaml.rstrip("\n") + "\n\nchecksums:" + tail
    text = text.split("\nexpect:")[0] + "\n" + extra
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@pytest.fixture(params=["other-port", "other-host"])
def capture(request: pytest.FixtureRequest) -> Iterator[CaptureServer]:
    """A server that records what arrives: on 127.0.0.1 (another port than the fake) or on 127.0.0.2."""
    with CaptureServer("127.0.0.1" if request.param == "other-port" else "127.0.0.2") as c:
        yield c


def redirect_to(capture: CaptureServer) -> dict[str, object]:
    """A fault (``faults.add("status", **redirect_to(c))``) answering 302 to the capture server."""
    return {"status": 302, "headers": {"Location": f"{capture.base_url}/captured"}, "times": -1}


@contextlib.contextmanager
def read_only_mount(path: Path) -> Iterator[None]:
    """`path` bind-mounted read-only over itself (a shared lab copy, a read-only HOME) for the block;
    the test is skipped where mounting is not allowed (it needs CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode:
        pytest.skip("cannot bind-mount read-only here (needs CAP_SYS_ADMIN)")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode:
            pytest.skip("cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", str(path)], check=True)


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` (a really full disk: ENOSPC from the kernel); skips the test
    where mounting is not allowed (not root, no CAP_SYS_ADMIN)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {r.stderr.decode(errors='replace').strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server (a real S3 API over HTTP) on 127.0.0.1, for the whole session."""
    pytest.importorskip("moto.server", reason="moto[server] is in the test extra")
    from moto.server import ThreadedMotoServer

    from tests.fakes.moto_s3 import complete_multipart_as_s3

    complete_multipart_as_s3()  # answer a multipart upload's completion as S3 does (Arrow checks it)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """AWS settings pointing at the moto server (also seen by `climb` subprocesses) and a boto3 client;
    every test gets fresh buckets (the server is reset)."""
    import boto3
    import requests

    requests.post(f"{moto_endpoint}/moto-api/reset", timeout=10)
    env = {
        "AWS_ACCESS_KEY_ID": S3_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": "s3-secret-Ozmoo-3d7f-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    from climb_cli.engines import stop_pool

    stop_pool()  # loky workers started by earlier tests have the old environment: start fresh ones
    yield boto3.client("s3", endpoint_url=moto_endpoint)
    stop_pool()  # and later tests do not inherit this one's


def client_python(variable: str, why: str) -> str:
    """The python of an official client's own venv (named by `variable`; .ci/run makes it), for clients whose
    dependencies cannot share climb's environment. Unset: the test skips saying `why`, or fails under CI=1,
    where a skip would hide that the client never ran."""
    python = os.environ.get(variable)
    if python:
        return python
    message = f"{why}: set {variable} to the python of a venv that has it (.ci/run makes one)"
    if os.environ.get("CI"):
        pytest.fail(f"CI: {message}")
    pytest.skip(message)
