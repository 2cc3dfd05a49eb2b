"""The fake NSRR cloud API against the official PyPI client `nsrr` 0.2.0, run unmodified in a subprocess.

The client hard-codes ``API_SERVER = 'https://cloud.sleepdata.org/api/v1'`` as a module global and has no
option or environment variable for it; the runner sets only that constant to the fake (the one change the
brief allows) and then calls the client's own ``main()`` with a real argv. Its token comes from a
``--token-file``, as a user would give it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.bucket import FakeBucket
from tests.fakes.nsrr import FakeNsrr, NsrrDataset

TOKEN = "nsrr-tok-Gnusto-6d1f-secret"
EDF = os.urandom(200_000)
RUNNER = (
    "import sys; import nsrr.nsrr as m; m.API_SERVER = sys.argv[1]; sys.argv = ['nsrr', *sys.argv[2:]]; "
    "from nsrr.__main__ import main; main()"
)


@pytest.fixture
def fake() -> Iterator[FakeNsrr]:
    ds = NsrrDataset(
        "shhs",
        {"datasets/shhs1-dataset.csv": b"nsrrid,ahi\n200001,3.2\n"},
        {"polysomnography/edfs/shhs1/shhs1-200001.edf": EDF},
    )
    with FakeBucket() as store, FakeNsrr([ds], store, users={TOKEN: "ada"}, grants={"ada": {"shhs"}}) as f:
        yield f


def _nsrr(fake: FakeNsrr, cwd: Path, *args: str) -> str:
    if importlib.util.find_spec("nsrr") is None:
        pytest.skip("the official client is not installed (pip install 'nsrr==0.2.0')")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    p = subprocess.run(
        [sys.executable, "-c", RUNNER, fake.api, *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-2000:]
    return p.stdout.replace(TOKEN, "***")


def test_official_client_lists_and_downloads_open_and_controlled_files(
    fake: FakeNsrr, tmp_path: Path
) -> None:
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    out = _nsrr(fake, tmp_path, "--list-access", "--token-file", str(token_file))
    assert "shhs" in out and "Yes" in out
    out = _nsrr(fake, tmp_path, "shhs", "--list-files")
    assert "datasets/shhs1-dataset.csv" in out and "polysomnography/edfs/shhs1/shhs1-200001.edf" in out
    out = _nsrr(fake, tmp_path, "-d", "shhs", "--token-file", str(token_file))
    assert "ERROR" not in out, out
    edf = tmp_path / "shhs/polysomnography/edfs/shhs1/shhs1-200001.edf"
    assert hashlib.md5(edf.read_bytes()).digest() == hashlib.md5(EDF).digest()  # the client checked md5 too
    assert (tmp_path / "shhs/datasets/shhs1-dataset.csv").read_bytes().startswith(b"nsrrid")
    assert [r.status for r in fake.requests_for("/api/v1/auth-token")] == [200]
    assert not fake.storage.authorization_seen


def test_official_client_without_an_approved_request_gets_no_controlled_file(
    fake: FakeNsrr, tmp_path: Path
) -> None:
    fake.grants.clear()
    token_file = tmp_path / "token.txt"
    token_file.write_text(TOKEN + "\n")
    out = _nsrr(fake, tmp_path, "-d", "shhs", "--token-file", str(token_file))
    assert "token verification failed" in out
    assert not (tmp_path / "shhs/polysomnography").exists()
    assert (tmp_path / "shhs/datasets/shhs1-dataset.csv").is_file()


def test_documents(fake: FakeNsrr) -> None:
    listing = requests.get(f"{fake.api}/list/all-files", params={"dataset_name": "shhs"}, timeout=5).json()
    assert set(listing) == {"open_files", "controlled_files"}
    assert listing["open_files"]["shhs/datasets/shhs1-dataset.csv"]["size"] == 22
    meta = listing["controlled_files"]["polysomnography/edfs/shhs1/shhs1-200001.edf"]
    assert meta == {"size": len(EDF), "md5": hashlib.md5(EDF).hexdigest()}
    assert (
        requests.get(f"{fake.api}/auth-token", params={"dataset_name": "shhs"}, timeout=5).status_code == 401
    )
    r = requests.get(f"{fake.api}/download/url/open", params={"file_name": "shhs/datasets/shhs1-dataset.csv"},
                     timeout=5)  # fmt: skip
    assert r.status_code == 200 and r.text.startswith(fake.storage.base_url) and "X-Amz-Signature=" in r.text
    edf = {"file_name": "polysomnography/edfs/shhs1/shhs1-200001.edf"}
    denied = requests.get(f"{fake.api}/download/url/controlled", params=edf, timeout=5)
    assert denied.status_code == 401
    subjects = requests.get(f"{fake.api}/list/all-subjects", params={"dataset_name": "shhs"}, timeout=5)
    assert subjects.json() == {"subjects": ["200001"]}
