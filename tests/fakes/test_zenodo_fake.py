"""The fake Zenodo against sources.md §4 and §10 #14-#15, and against zenodo_get, Zenodo's official client.

zenodo_get 3.0.0 hard-codes https://zenodo.org and ignores HTTP(S)_PROXY (§10 #14), so the only way to
point it at a fake without changing its code is name resolution: the test runs the fake and the client
together inside a private network namespace (only a loopback interface, so nothing can leave the machine)
with a private mount namespace in which /etc/hosts says zenodo.org is 127.0.0.1, the fake listening on
127.0.0.1:443 with a certificate from a throw-away CA that the client trusts through SSL_CERT_FILE.
Where the machine cannot make such namespaces, the test skips and says why.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.bucket import FakeBucket
from tests.fakes.zenodo import FakeZenodo, ZenodoFile, ZenodoRecord

TOKEN = "zget-token-4c1d2e9f"  # zenodo_get only takes its token on the command line; not a climb secret


@pytest.fixture
def fake() -> Iterator[FakeZenodo]:
    records = [
        ZenodoRecord(
            1001, [ZenodoFile("data/a b.csv", b"x,y\n1,2\n"), ZenodoFile("big.bin", os.urandom(50_000))]
        ),
        ZenodoRecord(1002, [ZenodoFile("secret.txt", b"s3cret data\n")], restricted=True),
    ]
    with FakeZenodo(records, tokens={TOKEN: {1002}}) as z:
        yield z


def test_record_json_has_the_legacy_shape(fake: FakeZenodo) -> None:
    r = requests.get(f"{fake.base_url}/api/records/1001", timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["id"] == 1001 and body["doi"] == "10.5281/zenodo.1001" and body["metadata"]["title"]
    f = body["files"][0]
    assert f["key"] == "data/a b.csv" and f["size"] == 8
    assert f["checksum"] == "md5:" + hashlib.md5(b"x,y\n1,2\n").hexdigest()
    assert f["links"]["self"] == f"{fake.base_url}/api/records/1001/files/data%2Fa%20b.csv/content"
    assert set(body["links"]) >= {"self", "self_html", "files", "archive", "latest"}
    entries = requests.get(f"{fake.base_url}/api/records/1001/files", timeout=5).json()["entries"]
    assert [e["key"] for e in entries] == ["data/a b.csv", "big.bin"]
    assert entries[0]["links"]["content"].endswith("/files/data%2Fa%20b.csv/content")


def test_file_headers_range_and_ui_path(fake: FakeZenodo) -> None:
    data = fake.records[1001].files[1].data
    md5 = hashlib.md5(data).hexdigest()
    url = f"{fake.base_url}/api/records/1001/files/big.bin/content"
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert r.status_code == 206 and r.content == data[10:20]
    assert r.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert r.headers["ETag"] == f'"md5:{md5}"' and r.headers["Content-MD5"] == md5  # hex, not base64
    assert r.headers["Content-Disposition"] == "attachment; filename=big.bin" and "Last-Modified" in r.headers
    r = requests.get(url, headers={"Range": "bytes=10-19", "If-Range": '"md5:stale"'}, timeout=5)
    assert r.status_code == 200 and r.content == data
    ui = requests.get(f"{fake.base_url}/records/1001/files/data/a b.csv?download=1", timeout=5)
    assert ui.status_code == 200 and ui.content == b"x,y\n1,2\n"
    fake.ranges = False
    r = requests.get(url, headers={"Range": "bytes=10-19"}, timeout=5)
    assert r.status_code == 200 and r.content == data  # no range support: the whole file


def test_restricted_record_needs_a_token_as_header_or_query(fake: FakeZenodo) -> None:
    url = f"{fake.base_url}/api/records/1002"
    anon = requests.get(url, timeout=5)
    assert anon.status_code == 403 and anon.json()["status"] == 403
    bad = requests.get(url, headers={"Authorization": "Bearer nope"}, timeout=5)
    assert bad.status_code == 401 and bad.json()["status"] == 401
    assert requests.get(url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).status_code == 200
    assert requests.get(url, params={"access_token": TOKEN}, timeout=5).status_code == 200
    content = f"{url}/files/secret.txt/content"
    assert requests.get(content, timeout=5).status_code == 403
    assert requests.get(content, params={"access_token": TOKEN}, timeout=5).content == b"s3cret data\n"
    missing = requests.get(f"{fake.base_url}/api/records/4242", timeout=5)
    assert missing.status_code == 404 and missing.json()["message"]


def test_rate_limit_headers_and_429(fake: FakeZenodo) -> None:
    fake.rate_limit, fake.window = 2, 60.0
    fake.refill()
    url = f"{fake.base_url}/api/records/1001"
    first, second, third = (requests.get(url, timeout=5) for _ in range(3))
    assert first.headers["X-RateLimit-Limit"] == "2" and first.headers["X-RateLimit-Remaining"] == "1"
    assert second.headers["X-RateLimit-Remaining"] == "0"
    assert int(first.headers["X-RateLimit-Reset"]) >= int(__import__("time").time())
    assert third.status_code == 429 and third.json() == {"message": "2 per 1 minute", "status": 429}
    assert 1 <= int(third.headers["Retry-After"]) <= 60
    # file downloads count too
    assert requests.get(f"{url}/files/big.bin/content", timeout=5).status_code == 429


def test_storage_mode_redirects_to_a_presigned_url() -> None:
    with (
        FakeBucket() as store,
        FakeZenodo([ZenodoRecord(7, [ZenodoFile("f.bin", b"abc")])], storage=store) as z,
    ):
        r = requests.get(f"{z.base_url}/api/records/7/files/f.bin/content", allow_redirects=False, timeout=5)
        assert r.status_code == 302 and r.headers["Location"].startswith(store.base_url)
        assert "X-Amz-Signature=" in r.headers["Location"]
        assert requests.get(r.headers["Location"], timeout=5).content == b"abc"
        unsigned = requests.get(store.url("zenodo-files", r.headers["Location"].split("/zenodo-files/")[1]
                                          .split("?")[0]), timeout=5)  # fmt: skip
        assert unsigned.status_code == 403  # the bucket is private: only the signature opens it


# --------------------------------------------------------------------------------------------------
# zenodo_get in a private network namespace

_RUNNER = textwrap.dedent(
    '''
    """Runs inside `unshare --net --mount`: loopback up, zenodo.org -> 127.0.0.1, fake on :443, zenodo_get."""
    import fcntl, hashlib, json, os, socket, struct, subprocess, sys
    from pathlib import Path

    from tests.fakes.zenodo import FakeZenodo, ZenodoFile, ZenodoRecord

    work, token = Path(sys.argv[1]), sys.argv[2]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # ip link set lo up, without iproute2
    flags = struct.unpack("16sh", fcntl.ioctl(s, 0x8913, struct.pack("16sh", b"lo", 0)))[1]
    fcntl.ioctl(s, 0x8914, struct.pack("16sh", b"lo", flags | 1))
    hosts = work / "hosts"
    hosts.write_text("127.0.0.1 localhost\\n127.0.0.1 zenodo.org\\n")
    subprocess.run(["mount", "--bind", str(hosts), "/etc/hosts"], check=True)
    assert socket.gethostbyname("zenodo.org") == "127.0.0.1"

    spec = json.loads((work / "spec.json").read_text())
    records = [ZenodoRecord(r["id"], [ZenodoFile(k, bytes.fromhex(v)) for k, v in r["files"].items()],
                            restricted=r["restricted"]) for r in spec["records"]]
    fake = FakeZenodo(records, tokens={token: {r.id for r in records}}, port=443,
                      public_url="https://zenodo.org", rate_limit=spec["rate_limit"], window=1.0)
    fake.tls = (work / "tls" / "server.pem", work / "tls" / "server.key")
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["SSL_CERT_FILE"] = str(work / "tls" / "ca.pem")
    runs = []
    with fake:
        for i, args in enumerate(spec["runs"]):
            out = work / f"out{i}"
            argv = [sys.executable, "-m", "zenodo_get", *args, "-o", str(out), "-v", "0", "-p", "0.1"]
            argv = [token if a == "TOKEN" else a for a in argv]
            p = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60)
            got = {str(f.relative_to(out)): hashlib.sha256(f.read_bytes()).hexdigest()
                   for f in out.rglob("*") if f.is_file()}
            runs.append({"rc": p.returncode, "files": got,
                         "stderr": (p.stdout + p.stderr)[-2000:].replace(token, "***")})
        log = [{"method": r.method, "path": r.path.replace(token, "***"), "status": r.status,
                "auth": r.had_authorization, "ua": r.user_agent} for r in fake.log]
    (work / "result.json").write_text(json.dumps({"runs": runs, "log": log}))
    '''
)


def _namespace_prefix() -> list[str]:
    """The unshare invocation that gives a private network + mount namespace here, or pytest.skip why not."""
    if not sys.platform.startswith("linux"):
        pytest.skip("zenodo_get test: needs Linux network namespaces")
    unshare = shutil.which("unshare")
    if unshare is None or shutil.which("mount") is None:
        pytest.skip("zenodo_get test: util-linux `unshare`/`mount` not installed")
    prefix = (
        [unshare, "--net", "--mount"]
        if os.geteuid() == 0
        else [unshare, "--map-root-user", "--net", "--mount"]
    )
    probe = subprocess.run([*prefix, "--", "true"], capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        pytest.skip(f"zenodo_get test: cannot create a network+mount namespace here: {probe.stderr.strip()}")
    return prefix


def test_zenodo_get_downloads_from_the_fake(tmp_path: Path) -> None:
    if importlib.util.find_spec("zenodo_get") is None:
        pytest.skip("zenodo_get is not installed (pip install 'zenodo-get==3.0.0')")
    if shutil.which("openssl") is None:
        pytest.skip("zenodo_get test: the openssl CLI is needed to make a test CA")
    prefix = _namespace_prefix()
    from tests.fakes.bucket import make_test_ca

    make_test_ca(tmp_path / "tls", ["zenodo.org"])
    public = {"data/a b.csv": b"x,y\n1,2\n", "big.bin": os.urandom(300_000), "notes.txt": b"hello\n"}
    spec = {
        "records": [
            {"id": 1001, "restricted": False, "files": {k: v.hex() for k, v in public.items()}},
            {"id": 1002, "restricted": True, "files": {"secret.txt": b"s3cret data\n".hex()}},
        ],
        "rate_limit": 3,  # 1 + 3 requests for the first run: one 429, honoured through Retry-After
        "runs": [["1001"], ["1001", "-g", "*.csv"], ["1002"], ["1002", "-a", "TOKEN"]],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "runner.py").write_text(_RUNNER)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    p = subprocess.run(
        [*prefix, "--", sys.executable, str(tmp_path / "runner.py"), str(tmp_path), TOKEN],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert p.returncode == 0, p.stderr[-3000:].replace(TOKEN, "***")
    result = json.loads((tmp_path / "result.json").read_text())
    full, glob, denied, granted = result["runs"]
    sha = {k: hashlib.sha256(v).hexdigest() for k, v in public.items()}
    assert full["rc"] == 0 and full["files"] == sha, full["stderr"]
    assert glob["rc"] == 0 and glob["files"] == {"data/a b.csv": sha["data/a b.csv"]}, glob["stderr"]
    assert denied["rc"] != 0 and denied["files"] == {}
    assert granted["rc"] == 0, granted["stderr"]
    assert granted["files"] == {"secret.txt": hashlib.sha256(b"s3cret data\n").hexdigest()}
    log = result["log"]
    assert [e["status"] for e in log].count(429) >= 1  # zenodo_get met the rate limit and retried
    assert all(e["path"].startswith("/api/records/") for e in log)
    # zenodo_get sends the token as a query parameter, never as a header (§10 #14)
    restricted = [e for e in log if e["path"].startswith("/api/records/1002") and e["status"] == 200]
    assert restricted and all("access_token=***" in e["path"] and not e["auth"] for e in restricted)
    assert any(
        e["path"] == "/api/records/1001/files/data/a%20b.csv/content" for e in log
    )  # unquote(links.self)
