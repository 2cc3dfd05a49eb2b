"""The fake Google Drive against its pages and against gdown 6.5.1, the reference client, run unmodified.

gdown recognises Drive only by the host names ``drive.google.com``/``docs.google.com`` and rewrites every
Drive URL to ``https://drive.google.com/uc?id=...``, so it cannot be pointed at a local URL. As for zenodo_get
(tests/fakes/test_zenodo_fake.py), the fake and gdown run together in a private network + mount namespace
where /etc/hosts sends ``drive.google.com`` and ``drive.usercontent.google.com`` to 127.0.0.1, the fake
listening on :443 with a certificate from a throw-away CA that requests trusts through REQUESTS_CA_BUNDLE.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.gdrive import DriveFile, FakeDrive
from tests.fakes.test_zenodo_fake import _namespace_prefix

BIG = os.urandom(300_000)


@pytest.fixture
def fake() -> Iterator[FakeDrive]:
    with FakeDrive([DriveFile("1BigFileAbCdEfGhIjKlMnOpQrStUv", "big.zip", BIG),
                    DriveFile("1SmallFileAbCdEfGhIjKlMnOpQr", "s.txt", b"small\n")]) as f:  # fmt: skip
        yield f


def test_pages(fake: FakeDrive) -> None:
    uc = requests.get(f"{fake.base_url}/uc", params={"id": "1BigFileAbCdEfGhIjKlMnOpQrStUv"}, timeout=5)
    assert uc.status_code == 200 and uc.headers["Content-Type"].startswith("text/html")
    assert "Content-Disposition" not in uc.headers and 'id="download-form"' in uc.text
    assert uc.text.count("\n") == 1  # one line, as Drive serves it (gdown parses line by line)
    direct = requests.get(f"{fake.base_url}/uc", params={"id": "1SmallFileAbCdEfGhIjKlMnOpQr"}, timeout=5)
    assert direct.history[0].status_code == 303 and direct.content == b"small\n"
    assert direct.headers["Content-Disposition"] == 'attachment; filename="s.txt"'
    stale = requests.get(f"{fake.base_url}/download", params={"id": "1BigFileAbCdEfGhIjKlMnOpQrStUv",
                         "export": "download", "confirm": "t", "uuid": "nope"}, timeout=5)  # fmt: skip
    assert "download-form" in stale.text  # no valid uuid: the warning page again


_RUNNER = textwrap.dedent(
    '''
    """Inside `unshare --net --mount`: loopback up, Drive hosts -> 127.0.0.1, the fake on :443, then gdown."""
    import fcntl, hashlib, json, os, socket, struct, subprocess, sys
    from pathlib import Path

    from tests.fakes.gdrive import DriveFile, DriveFolder, FakeDrive

    work = Path(sys.argv[1])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\\n127.0.0.1 drive.google.com drive.usercontent.google.com\\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)

    big = (work / "big.bin").read_bytes()
    fake = FakeDrive([DriveFile("1BigFileAbCdEfGhIjKlMnOpQrStUv", "big.zip", big),
                      DriveFile("1SmallFileAbCdEfGhIjKlMnOpQr", "s.txt", b"small\\n"),
                      DriveFile("1QuotaFileAbCdEfGhIjKlMnOpQr", "q.zip", b"q" * 500, quota=True)],
                     folders=(DriveFolder("1RootFolderAbCdEfGhIjKlMnOpQr", "CLIMB QA",
                                          [DriveFile("1TopFileAbCdEfGhIjKlMnOpQrStU", "top.txt", b"top\\n")],
                                          [DriveFolder("1QaFolderAbCdEfGhIjKlMnOpQrSt", "qa",
                                                       [DriveFile("1QaFileAbCdEfGhIjKlMnOpQrStUv", "a.jsonl",
                                                                  b"{}\\n")])]),),
                     port=443, public_url="https://drive.google.com",
                     content_url="https://drive.usercontent.google.com")
    fake.tls = (work / "tls" / "server.pem", work / "tls" / "server.key")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(REQUESTS_CA_BUNDLE=str(work / "tls" / "ca.pem"), SSL_CERT_FILE=str(work / "tls" / "ca.pem"),
               HOME=str(work / "home"))
    runs = []
    with fake:
        for name, url in [("big", "https://drive.google.com/file/d/1BigFileAbCdEfGhIjKlMnOpQrStUv/view"),
                          ("small", "https://drive.google.com/uc?id=1SmallFileAbCdEfGhIjKlMnOpQr"),
                          ("quota", "https://drive.google.com/uc?id=1QuotaFileAbCdEfGhIjKlMnOpQr")]:
            out = work / "out" / name
            out.parent.mkdir(exist_ok=True)
            p = subprocess.run([sys.executable, "-m", "gdown", "-q", url, "-O", str(out)],
                               env=env, capture_output=True, text=True, timeout=60)
            runs.append({"name": name, "rc": p.returncode, "err": (p.stdout + p.stderr)[-1500:],
                         "sha": hashlib.sha256(out.read_bytes()).hexdigest() if out.is_file() else None})
        out = work / "out" / "folder"
        p = subprocess.run([sys.executable, "-m", "gdown", "--folder", "-q", "-O", str(out),
                            "https://drive.google.com/drive/folders/1RootFolderAbCdEfGhIjKlMnOpQr"],
                           env=env, capture_output=True, text=True, timeout=60)
        got = sorted(str(f.relative_to(out)) for f in out.rglob("*") if f.is_file())
        err = (p.stdout + p.stderr)[-1500:]
        runs.append({"name": "folder", "rc": p.returncode, "err": err, "files": got})
        log = [{"path": r.path, "status": r.status} for r in fake.log]
    (work / "result.json").write_text(json.dumps({"runs": runs, "log": log}))
    '''
)


def test_gdown_downloads_through_the_interstitial(tmp_path: Path) -> None:
    if importlib.util.find_spec("gdown") is None:
        pytest.skip("gdown is not installed (pip install 'gdown==6.5.1')")
    prefix = _namespace_prefix()
    from tests.fakes.tls import make_test_ca

    make_test_ca(tmp_path / "tls", ["drive.google.com", "drive.usercontent.google.com"])
    (tmp_path / "big.bin").write_bytes(BIG)
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    p = subprocess.run([*prefix, "--", sys.executable, str(tmp_path / "runner.py"), str(tmp_path)],
                       capture_output=True, text=True, timeout=180, env=env)  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    big, small, quota, folder = result["runs"]
    assert folder["rc"] == 0, folder["err"]
    assert folder["files"] == ["qa/a.jsonl", "top.txt"], folder[
        "files"
    ]  # gdown's folder walk, the same pages
    assert big["rc"] == 0 and big["sha"] == hashlib.sha256(BIG).hexdigest(), big["err"]
    assert small["rc"] == 0 and small["sha"] == hashlib.sha256(b"small\n").hexdigest(), small["err"]
    assert quota["rc"] != 0 and "Too many users have viewed or downloaded this file recently" in quota["err"]
    paths = [e["path"] for e in result["log"]]
    assert any(p.startswith("/download?") and "uuid=" in p and "confirm=t" in p for p in paths)
