"""The fake OpenNeuro against its documents and against the official client, openneuro-py 2026.9.1.

openneuro-py is not in the ``test`` extra: it depends on niquests -> urllib3-future, whose wheel installs a
top-level ``urllib3`` package over the real urllib3 that requests (and so climb and the other official
clients) use. It therefore runs from its own virtual environment, named by ``CLIMB_OPENNEURO_PY`` (the path
of that environment's python, e.g. after ``python -m venv /opt/on && /opt/on/bin/pip install
openneuro-py==2026.9.1``; ``.ci/run`` makes it); without it the client test skips and says so, or fails
under ``CI=1``.

The client hard-codes ``https://openneuro.org/crn/graphql`` in module constants (``gql_url``, with
``_openneuro_host``/``_openneuro_url_prefix`` for the cookie domain and timeouts) and has no option or
environment variable for them; the runner sets only those constants to the fake and calls the client's
public ``openneuro.download()``. Its API key is read from its own config.json, written by
``climb auth login openneuro``.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from climb_cli import auth
from climb_cli.settings import Settings
from tests.conftest import client_python, piped
from tests.fakes.bucket import FakeBucket
from tests.fakes.openneuro import FakeOpenNeuro, OpenNeuroDataset

KEY = "on-key-Yoho-39c2-secret"
SET = os.urandom(300_000)
DESC = b'{"Name": "x", "BIDSVersion": "1.8.0", "DatasetDOI": "10.18112/openneuro.ds005237.v1.0.0"}'
FILES = {
    "dataset_description.json": DESC,
    "participants.tsv": b"participant_id\nsub-01\n",
    "README": b"readme\n",
    "CHANGES": b"1.0.0 initial\n",
    "sub-01/eeg/sub-01_task-oddball_eeg.set": SET,
}
RUNNER = """
import sys
from pathlib import Path
import openneuro._download as d
api, ds, tag, out = sys.argv[1:5]
host = api.split("//", 1)[1]
d._openneuro_host = host.split(":")[0]
d._openneuro_url_prefix = f"{api}/crn/"
d.gql_url = f"{api}/crn/graphql"
import openneuro
openneuro.download(dataset=ds, tag=tag, target_dir=Path(out))
"""


@pytest.fixture
def fake() -> Iterator[FakeOpenNeuro]:
    datasets = [
        OpenNeuroDataset("ds005237", {"1.0.0": FILES}),
        OpenNeuroDataset("ds009999", {"1.0.0": {"dataset_description.json": DESC, "README": b"private\n"}},
                         restricted=True),
    ]  # fmt: skip
    with FakeBucket() as store, FakeOpenNeuro(datasets, store, keys={KEY: {"ds009999"}}) as f:
        yield f


def _gql(fake: FakeOpenNeuro, query: str, key: str | None = None) -> dict:
    cookies = {"accessToken": key} if key else None
    r = requests.post(f"{fake.base_url}/crn/graphql", json={"query": query}, cookies=cookies, timeout=5)
    assert r.status_code == 200
    return r.json()


def test_graphql_documents(fake: FakeOpenNeuro) -> None:
    snaps = _gql(fake, 'query { dataset(id: "ds005237") { snapshots { id } } }')
    assert snaps == {"data": {"dataset": {"snapshots": [{"id": "ds005237:1.0.0"}]}}}
    q = (
        'query { snapshot(datasetId: "ds005237", tag: "1.0.0") '
        "{ id files(recursive: true) { filename urls size id } } }"
    )
    files = _gql(fake, q)["data"]["snapshot"]["files"]
    f = next(x for x in files if x["filename"] == "sub-01/eeg/sub-01_task-oddball_eeg.set")
    assert f["size"] == len(SET) and "/openneuro.org/ds005237/sub-01/eeg/" in f["urls"][0]
    head = requests.head(f["urls"][0], timeout=5)
    assert head.headers["ETag"] == f'"{hashlib.md5(SET).hexdigest()}"'
    denied = _gql(fake, 'query { dataset(id: "ds009999") { snapshots { id } } }')
    assert denied["errors"][0]["message"] == "You do not have access to read this dataset."
    ok = _gql(fake, q.replace("ds005237", "ds009999"), KEY)["data"]["snapshot"]["files"]
    assert ok[0]["urls"][0].startswith(f"{fake.base_url}/crn/datasets/ds009999/snapshots/1.0.0/files/")
    assert requests.get(ok[0]["urls"][0], timeout=5).status_code == 403
    assert requests.get(ok[0]["urls"][0], cookies={"accessToken": KEY}, timeout=5).content == DESC


def _client(fake: FakeOpenNeuro, tmp_path: Path, ds: str, xdg: Path) -> subprocess.CompletedProcess:
    python = client_python(
        "CLIMB_OPENNEURO_PY",
        "openneuro-py==2026.9.1 runs from its own venv (its urllib3-future dependency replaces the urllib3 "
        "that requests uses)",
    )
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(XDG_CONFIG_HOME=str(xdg), HOME=str(tmp_path / "home"))
    return subprocess.run(
        [python, "-c", RUNNER, fake.base_url, ds, "1.0.0", str(tmp_path / ds)],
        env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def test_openneuro_py_downloads_a_public_and_a_restricted_snapshot(
    fake: FakeOpenNeuro, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    xdg = tmp_path / "xdg"
    p = _client(fake, tmp_path, "ds005237", xdg)
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    for path, data in FILES.items():
        assert (tmp_path / "ds005237" / path).read_bytes() == data
    assert any(r.method == "HEAD" for r in fake.storage.log)  # it read the ETag before the GET
    assert not fake.storage.authorization_seen and not any(r.cookies for r in fake.storage.log)
    # restricted: without a key it is refused; with the key climb stored where it looks, it downloads
    denied = _client(fake, tmp_path, "ds009999", xdg)
    assert denied.returncode != 0 and not (tmp_path / "ds009999" / "README").exists()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    auth.login("openneuro", Settings(data_dir=tmp_path / "data"), stdin=piped(KEY))
    assert json.loads((xdg / "openneuro-py" / "config.json").read_text())["apikey"] == KEY
    granted = _client(fake, tmp_path, "ds009999", xdg)
    assert granted.returncode == 0, (granted.stdout + granted.stderr)[-2000:].replace(KEY, "***")
    assert (tmp_path / "ds009999" / "README").read_bytes() == b"private\n"
