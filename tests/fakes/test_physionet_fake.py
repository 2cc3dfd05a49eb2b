"""The PhysioNet fake against the reference (shared/reference/physionet-protocol.md, sources.md section 1).

Everything runs offline on 127.0.0.1 with real sockets: `requests` for the status matrix, headers, Range
semantics and faults; the unmodified reference clients (GNU wget, wfdb-python) for end-to-end fidelity.
"""

from __future__ import annotations

import base64
import hashlib
import html
import http.client
import io
import os
import re
import shutil
import subprocess
import threading
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import wfdb
from wfdb.io import download as wfdb_download

from climb_cli.fakes.faults import http_date, nginx_etag
from climb_cli.fakes.physionet import (
    LOGIN_ERROR,
    FakePhysioNet,
    FakeProject,
    FakeUser,
    project_zip_label,
    write_sha256sums,
)

MTIME = 1795816313  # Fri, 27 Nov 2026 21:51:53 GMT, like the reference's sample headers
WGET = "Wget/1.21.3"
CURL = "curl/8.4.0"
PASSWORD = "correct-horse-42"  # .netrc tokens cannot hold spaces


# ----------------------------------------------------------------------------------------- fixtures


def _build_tree(root: Path) -> dict[str, np.ndarray]:
    """A small WFDB-style project: text files, a nested dir, 2 records in records500/00000, RECORDS."""
    (root / "records500" / "00000").mkdir(parents=True)
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "LICENSE.txt").write_bytes(b"".join(b"License line %04d.\n" % i for i in range(134)))
    (root / "data.csv").write_bytes(b"subject_id,hr\n" + b"".join(b"%d,%d\n" % (i, 60 + i) for i in range(4)))
    (root / "sub" / "notes.txt").write_bytes(b"hello notes")
    (root / "sub" / "deeper" / "x.txt").write_bytes(b"deep\n")
    (root / ("n" * 60 + ".txt")).write_bytes(b"a long name\n")
    (root / "with space & amp.txt").write_bytes(b"odd name\n")
    signals = {}
    # One signal file per record: wfdb-python's dl_database lists a multi-channel record's single .dat once
    # per channel and downloads the duplicates concurrently, which races with itself (a wfdb bug).
    for i, name in enumerate(("00001_hr", "00002_hr")):
        t = np.arange(1500)
        sig = (np.sin(t / (20 + 7 * i)) * (1.5 + i))[:, None]
        wfdb.wrsamp(
            name,
            fs=500,
            units=["mV"],
            sig_name=[("I", "II")[i]],
            p_signal=sig,
            fmt=["16"],
            adc_gain=[1000.0],
            baseline=[0],
            write_dir=str(root / "records500" / "00000"),
        )
        signals[name] = np.round(sig * 1000).astype(np.int64)
    (root / "RECORDS").write_bytes(b"records500/00000/00001_hr\nrecords500/00000/00002_hr\n")
    write_sha256sums(root)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (MTIME, MTIME))
    return signals


def _tree_files(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "index.html"
    }


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    root = tmp_path_factory.mktemp("physionet") / "demo"
    root.mkdir()
    return root, _build_tree(root)


def _users() -> list[FakeUser]:
    both = {"demoeicu", "demorestricted"}
    return [
        FakeUser("alice", "Alice@Example.org", PASSWORD, dua_signed=set(both)),
        FakeUser("bob", "bob@example.org", PASSWORD, credentialed=False, dua_signed=set(both)),
        FakeUser("carol", "carol@example.org", PASSWORD, trainings_ok=False, dua_signed=set(both)),
        FakeUser("dave", "dave@example.org", PASSWORD),
    ]


def _projects(root: Path) -> list[FakeProject]:
    return [
        FakeProject("demoecg", "1.0.0", root, "open", "Demo ECG Signal Toolbox"),
        FakeProject("demoecg", "1.2.0", root, "open", "Demo ECG Signal Toolbox"),
        FakeProject("demoecg", "1.10.0", root, "open", "Demo ECG Signal Toolbox"),
        FakeProject("demoeicu", "2.0.0", root, "credentialed", "Demo eICU Collaborative Research Database"),
        FakeProject("demorestricted", "1.0.0", root, "restricted", "Demo Restricted"),
    ]


@pytest.fixture(scope="module")
def pn(tree: tuple[Path, dict[str, np.ndarray]]) -> Iterator[FakePhysioNet]:
    with FakePhysioNet(_projects(tree[0]), _users()) as server:
        yield server


@pytest.fixture(autouse=True)
def _reset(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "pn" in request.fixturenames:
        server: FakePhysioNet = request.getfixturevalue("pn")
        server.faults.clear()
        server.ims_exact = True
        assert not server.errors, server.errors


def _session(ua: str = CURL) -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no ~/.netrc or proxies from the environment
    s.headers["User-Agent"] = ua
    return s


def get(
    pn: FakePhysioNet,
    path: str,
    *,
    ua: str = CURL,
    auth: tuple[str, str] | None = None,
    method: str = "GET",
    **kw: Any,
) -> requests.Response:
    with _session(ua) as s:
        return s.request(method, pn.base_url + path, auth=auth, allow_redirects=False, timeout=10, **kw)


ECG = "/files/demoecg/1.0.0/"
EICU = "/files/demoeicu/2.0.0/"
REST = "/files/demorestricted/1.0.0/"
ALICE = ("Alice@Example.org", PASSWORD)


# -------------------------------------------------------------------------------- 1. status matrix

MATRIX = [
    ("open anon listing", ECG, CURL, None, 200),
    ("open anon file", ECG + "SHA256SUMS.txt", CURL, None, 200),
    ("open missing file", ECG + "nonexistent.txt", CURL, None, 404),
    ("open unknown version", "/files/demoecg/9.9/", CURL, None, 404),
    ("unknown slug", "/files/nosuchproject/1.0.0/", WGET, None, 404),
    ("no version", "/files/demoecg/", CURL, None, 404),
    ("cred anon curl", EICU + "SHA256SUMS.txt", CURL, None, 403),
    ("cred wget no creds", EICU + "SHA256SUMS.txt", WGET, None, 401),
    ("cred wget wrong password", EICU + "SHA256SUMS.txt", WGET, ("alice", "wrong"), 401),
    ("cred wget unknown user", EICU + "SHA256SUMS.txt", WGET, ("mallory", PASSWORD), 401),
    ("cred not credentialed", EICU + "SHA256SUMS.txt", WGET, ("bob", PASSWORD), 403),
    ("cred training lapsed", EICU + "SHA256SUMS.txt", WGET, ("carol", PASSWORD), 403),
    ("cred no DUA", EICU + "SHA256SUMS.txt", WGET, ("dave", PASSWORD), 403),
    ("cred python-requests UA", EICU + "SHA256SUMS.txt", "python-requests/2.34.2", ALICE, 403),
    ("cred curl UA", EICU + "SHA256SUMS.txt", CURL, ALICE, 403),
    ("cred UA not anchored", EICU + "SHA256SUMS.txt", "mytool Wget/1.0", ALICE, 403),
    ("cred UA lowercase", EICU + "SHA256SUMS.txt", "wget/1.21.3", ALICE, 403),
    ("cred wget e-mail", EICU + "SHA256SUMS.txt", WGET, ALICE, 200),
    ("cred wget e-mail other case", EICU + "SHA256SUMS.txt", WGET, ("alice@example.org", PASSWORD), 200),
    ("cred wget username", EICU + "SHA256SUMS.txt", WGET, ("alice", PASSWORD), 200),
    ("cred libwfdb", EICU + "SHA256SUMS.txt", "libwfdb/10.7.0", ALICE, 200),
    ("cred listing", EICU, WGET, ALICE, 200),
    ("cred listing anon", EICU + "sub/", WGET, None, 401),
    ("cred unknown version", "/files/demoeicu/9.9.9/SHA256SUMS.txt", WGET, None, 404),
    ("cred missing file authorized", EICU + "nonexistent.txt", WGET, ALICE, 404),
    ("cred missing file anon wget", EICU + "nonexistent.txt", WGET, None, 401),
    ("cred missing file anon curl", EICU + "nonexistent.txt", CURL, None, 403),
    ("restricted no DUA", REST + "data.csv", WGET, ("dave", PASSWORD), 403),
    ("restricted not credentialed ok", REST + "data.csv", WGET, ("bob", PASSWORD), 200),
    ("restricted anon", REST + "data.csv", WGET, None, 401),
]


@pytest.mark.parametrize(
    ("path", "ua", "auth", "status"), [m[1:] for m in MATRIX], ids=[m[0] for m in MATRIX]
)
def test_status_matrix(
    pn: FakePhysioNet, path: str, ua: str, auth: tuple[str, str] | None, status: int
) -> None:
    r = get(pn, path, ua=ua, auth=auth)
    assert r.status_code == status, r.text[:200]
    assert r.headers["Server"] == "nginx/1.22.1"
    if status == 403:
        assert r.headers["Content-Type"].startswith("text/html") and b"403" in r.content
    head = get(pn, path, ua=ua, auth=auth, method="HEAD")
    assert head.status_code == status and head.content == b""


def test_401_challenge_exact(pn: FakePhysioNet) -> None:
    r = get(pn, EICU + "SHA256SUMS.txt", ua=WGET)
    assert r.status_code == 401
    assert r.content == b"" and r.headers["Content-Length"] == "0"
    assert r.headers["WWW-Authenticate"] == 'Basic realm="PhysioNet", charset="UTF-8"'
    assert r.headers["Set-Cookie"] == "testcookie=1; HttpOnly; Path=/; SameSite=Lax"


def test_realm_is_configurable(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    with FakePhysioNet(_projects(tree[0]), realm="PhysioNet-dev") as server:
        r = get(server, EICU, ua=WGET)
        assert r.headers["WWW-Authenticate"] == 'Basic realm="PhysioNet-dev", charset="UTF-8"'


def test_basic_auth_only_for_get_and_head(pn: FakePhysioNet) -> None:
    with _session(WGET) as s:
        token = re.search(r'name="csrfmiddlewaretoken" value="(\w+)"', s.get(pn.base_url + "/login/").text)
        assert token
        url = pn.base_url + EICU + "SHA256SUMS.txt"
        r = s.post(url, data={"csrfmiddlewaretoken": token[1]}, auth=ALICE, allow_redirects=False)
        assert r.status_code == 403 and b"CSRF" not in r.content  # CSRF passed; basic auth refused for POST
        assert s.get(url, auth=ALICE).status_code == 200
    assert get(pn, EICU + "SHA256SUMS.txt", ua=WGET, auth=ALICE, method="POST").status_code == 403


def test_traversal_is_rejected(pn: FakePhysioNet) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", pn.port, timeout=5)
    try:
        for path in (
            ECG + "../../../../etc/passwd",
            ECG + "%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            ECG + "sub/../data.csv",
        ):
            conn.request("GET", path, headers={"User-Agent": CURL})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 404, path
        conn.request("GET", EICU + "../../../../etc/passwd", headers={"User-Agent": WGET})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 401  # the access check comes first
        basic = "Basic " + base64.b64encode(f"{ALICE[0]}:{ALICE[1]}".encode()).decode()
        conn.request("GET", EICU + "sub/../data.csv", headers={"User-Agent": WGET, "Authorization": basic})
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 404  # requests/urllib3 would have normalised the dot segments away
    finally:
        conn.close()


def test_basic_auth_session_cache(pn: FakePhysioNet) -> None:
    """check_http_auth caches a Basic login in a session when the client sent a cookie (as wget does)."""
    with _session(WGET) as s:
        url = pn.base_url + EICU + "data.csv"
        assert s.get(url).status_code == 401  # sets testcookie
        assert "testcookie" in s.cookies
        r = s.get(url, auth=ALICE)
        assert r.status_code == 200
        assert re.fullmatch(
            r"sessionid=[a-z0-9]{32}; expires=[^;]+ GMT; HttpOnly; Max-Age=43200; Path=/; SameSite=Lax",
            r.headers["Set-Cookie"],
        )
        # the cached session stands in for the password, but only together with an Authorization header
        assert s.get(url, auth=("alice", "not the password")).status_code == 200
        assert s.get(url).status_code == 401
        s.headers["User-Agent"] = CURL
        assert s.get(url, auth=ALICE).status_code == 403


# ------------------------------------------------------------------------------------ 2. login flow


def _mask(secret: str) -> str:
    from climb_cli.fakes.physionet import _mask_csrf

    return _mask_csrf(secret)


def test_login_flow(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    with FakePhysioNet(_projects(tree[0]), _users()) as server:
        base = server.base_url
        login = base + "/login/"
        # no CSRF cookie at all
        with _session() as s:
            r = s.post(login, data={"username": "alice", "password": PASSWORD}, allow_redirects=False)
            assert r.status_code == 403 and "CSRF verification failed" in r.text
        with _session("python-requests/2.34.2") as s:
            page = s.get(login)
            assert page.status_code == 200
            cookie = page.headers["Set-Cookie"]
            assert cookie.startswith("csrftoken=") and "Path=/" in cookie and "SameSite=Lax" in cookie
            token = re.search(r'<input type="hidden" name="csrfmiddlewaretoken" value="(\w+)">', page.text)
            assert token
            # token that does not belong to the cookie
            bad = {"csrfmiddlewaretoken": "A" * 64, "username": "alice", "password": PASSWORD}
            r = s.post(login, data=bad, allow_redirects=False)
            assert r.status_code == 403 and "CSRF verification failed" in r.text
            # wrong password: the form again, with the error
            form = {"csrfmiddlewaretoken": token[1], "username": "alice", "password": "nope"}
            r = s.post(login, data=form, allow_redirects=False)
            assert r.status_code == 200 and LOGIN_ERROR in r.text and "csrfmiddlewaretoken" in r.text
            assert "sessionid" not in s.cookies
            # good (e-mail as the username)
            form.update(username="alice@example.org", password=PASSWORD)
            r = s.post(login, data=form, headers={"Referer": login}, allow_redirects=False)
            assert r.status_code == 302 and r.headers["Location"] == "/projects/"
            session_cookie = [c for c in r.raw.headers.getlist("Set-Cookie") if c.startswith("sessionid=")]
            assert len(session_cookie) == 1
            assert re.fullmatch(
                r"sessionid=[a-z0-9]{32}; expires=[^;]+ GMT; HttpOnly; Max-Age=43200; Path=/; SameSite=Lax",
                session_cookie[0],
            )
            assert s.get(base + "/projects/").status_code == 200
            sid = s.cookies["sessionid"]
        # the session cookie works with any User-Agent, without any Authorization header
        for ua in ("python-requests/2.34.2", CURL, "Mozilla/5.0"):
            r = requests.get(base + EICU + "data.csv", cookies={"sessionid": sid}, headers={"User-Agent": ua})
            assert r.status_code == 200 and r.content == (tree[0] / "data.csv").read_bytes()
        server.expire_sessions()
        r = requests.get(base + EICU + "data.csv", cookies={"sessionid": sid}, headers={"User-Agent": CURL})
        assert r.status_code == 403
        assert (
            requests.get(base + "/projects/", cookies={"sessionid": sid}, allow_redirects=False).status_code
            == 302
        )


def test_login_session_of_an_unauthorized_user_gets_403(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    with FakePhysioNet(_projects(tree[0]), _users()) as server, _session(WGET) as s:
        token = re.search(r'value="(\w{64})"', s.get(server.base_url + "/login/").text)
        assert token
        form = {"csrfmiddlewaretoken": token[1], "username": "bob", "password": PASSWORD}
        assert s.post(server.base_url + "/login/", data=form, allow_redirects=False).status_code == 302
        # authenticated (so no 401 challenge even for Wget) but not credentialed
        assert s.get(server.base_url + EICU + "data.csv").status_code == 403


def test_login_view_redirects_a_session_that_is_already_signed_in(
    tree: tuple[Path, dict[str, np.ndarray]],
) -> None:
    """LoginView(redirect_authenticated_user=True): no form and no new sessionid, GET or POST."""
    with FakePhysioNet(_projects(tree[0]), _users()) as server, _session() as s:
        login = server.base_url + "/login/"
        token = re.search(r'value="(\w{64})"', s.get(login).text)
        assert token
        form = {"csrfmiddlewaretoken": token[1], "username": "bob", "password": PASSWORD}
        assert s.post(login, data=form, allow_redirects=False).status_code == 302
        sid = s.cookies["sessionid"]
        r = s.get(login, allow_redirects=False)
        assert (
            r.status_code == 302 and r.headers["Location"] == "/projects/" and "Set-Cookie" not in r.headers
        )
        form["csrfmiddlewaretoken"] = _mask(s.cookies["csrftoken"])
        r = s.post(login, data={**form, "next": "/sign-dua/x/1/"}, allow_redirects=False)
        assert (
            r.status_code == 302
            and r.headers["Location"] == "/sign-dua/x/1/"
            and "Set-Cookie" not in r.headers
        )
        assert s.cookies["sessionid"] == sid


def test_login_faults_answer_the_login_post_only(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    with FakePhysioNet(_projects(tree[0]), _users()) as server, _session() as s:
        login = server.base_url + "/login/"
        server.login_faults.add("status", status=503, retry_after="1")
        server.faults.add("status", status=500, path_glob="/login/")  # file faults never touch the login
        token = re.search(r'value="(\w{64})"', s.get(login).text)
        assert token
        form = {"csrfmiddlewaretoken": token[1], "username": "bob", "password": PASSWORD}
        r = s.post(login, data=form, allow_redirects=False)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert s.post(login, data=form, allow_redirects=False).status_code == 302


# ---------------------------------------------------------------------- 3. file responses and Range


def test_file_headers_like_nginx(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    body = (tree[0] / "data.csv").read_bytes()
    r = get(pn, ECG + "data.csv", headers={"Accept-Encoding": "gzip, deflate"})
    assert r.status_code == 200 and r.content == body
    h = r.headers
    assert h["Server"] == "nginx/1.22.1"
    assert h["Content-Type"] == "text/plain; charset=utf-8"
    assert h["Content-Length"] == str(len(body))
    assert h["Last-Modified"] == "Fri, 27 Nov 2026 21:51:53 GMT"
    assert h["ETag"] == nginx_etag(MTIME, len(body)) == f'"{MTIME:x}-{len(body):x}"'
    assert h["Accept-Ranges"] == "bytes"
    assert h["Content-Disposition"] == "inline; filename=data.csv"
    assert h["Content-Security-Policy"] == "sandbox; default-src 'self'"
    assert "Content-Encoding" not in h
    assert (
        get(pn, ECG + "data.csv?download").headers["Content-Disposition"] == "attachment; filename=data.csv"
    )
    dat = get(pn, ECG + "records500/00000/00001_hr.dat")
    assert dat.headers["Content-Type"] == "application/octet-stream"
    assert get(pn, ECG + "RECORDS").headers["Content-Type"] == "text/plain; charset=utf-8"
    assert get(pn, ECG + "records500/00000/00001_hr.hea").headers["Content-Type"].startswith("text/plain")
    head = get(pn, ECG + "data.csv", method="HEAD")
    assert head.status_code == 200 and head.content == b""
    for name in ("Content-Length", "ETag", "Last-Modified", "Content-Type", "Accept-Ranges"):
        assert head.headers[name] == h[name]
    assert pn.log[-1].method == "HEAD" and pn.log[-1].bytes_sent == 0
    # HEAD leaves a keep-alive connection clean for the next request
    conn = http.client.HTTPConnection("127.0.0.1", pn.port, timeout=5)
    try:
        for method in ("HEAD", "GET", "HEAD", "GET"):
            conn.request(method, ECG + "data.csv")
            resp = conn.getresponse()
            assert resp.status == 200 and resp.read() == (b"" if method == "HEAD" else body)
    finally:
        conn.close()


def test_range_requests(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    body = (tree[0] / "LICENSE.txt").read_bytes()
    size = len(body)
    url = ECG + "LICENSE.txt"
    for header, start, end in (
        ("bytes=2-5", 2, 5),
        ("bytes=1000-", 1000, size - 1),
        ("bytes=-10", size - 10, size - 1),
    ):
        r = get(pn, url, headers={"Range": header})
        assert r.status_code == 206, header
        assert r.headers["Content-Range"] == f"bytes {start}-{end}/{size}"
        assert r.headers["Content-Length"] == str(end - start + 1)
        assert r.content == body[start : end + 1]
    r = get(pn, url, headers={"Range": f"bytes={size}-"})
    assert r.status_code == 416 and r.headers["Content-Range"] == f"bytes */{size}"
    r = get(pn, url, headers={"Range": "bytes=0-1,5-6"})  # multi-range: served whole (documented)
    assert r.status_code == 200 and r.content == body
    r = get(pn, url, headers={"Range": "bytes=2-5"}, method="HEAD")
    assert r.status_code == 206 and r.headers["Content-Length"] == "4" and r.content == b""


def test_if_range_and_conditionals(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    body = (tree[0] / "LICENSE.txt").read_bytes()
    url = ECG + "LICENSE.txt"
    etag = get(pn, url, method="HEAD").headers["ETag"]
    last_modified = http_date(MTIME)
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert r.status_code == 206 and r.content == body[100:]
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": '"0-0"'})
    assert r.status_code == 200 and r.content == body
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": "W/" + etag})  # weak never matches
    assert r.status_code == 200
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": last_modified})
    assert r.status_code == 206 and r.content == body[100:]
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": http_date(MTIME - 60)})
    assert r.status_code == 200 and r.content == body
    r = get(pn, url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
    assert get(pn, url, headers={"If-None-Match": '"other"'}).status_code == 200
    r = get(pn, url, headers={"If-Modified-Since": last_modified})
    assert r.status_code == 304 and r.headers["Last-Modified"] == last_modified
    assert get(pn, url, headers={"If-Modified-Since": http_date(MTIME - 3600)}).status_code == 200
    # nginx's default "if_modified_since exact": a later date is not a match ...
    assert get(pn, url, headers={"If-Modified-Since": http_date(MTIME + 3600)}).status_code == 200
    pn.ims_exact = False  # ... unless configured as "before"
    assert get(pn, url, headers={"If-Modified-Since": http_date(MTIME + 3600)}).status_code == 304
    assert get(pn, url, headers={"If-Match": '"other"'}).status_code == 412


def test_directory_without_slash_redirects_to_internal_alias(pn: FakePhysioNet) -> None:
    r = get(pn, ECG + "sub")
    assert r.status_code == 301
    assert r.headers["Location"] == f"http://127.0.0.1:{pn.port}/static/published-projects/demoecg/1.0.0/sub/"
    followed = requests.get(r.headers["Location"], timeout=5)
    assert (
        followed.status_code == 200
        and "Index of /static/published-projects/demoecg/1.0.0/sub/" in followed.text
    )
    assert requests.get(pn.base_url + "/static/published-projects/demoecg/1.0.0/data.csv").status_code == 200
    r = get(pn, EICU + "sub", ua=WGET, auth=ALICE)
    assert r.status_code == 301
    assert (
        r.headers["Location"]
        == f"http://127.0.0.1:{pn.port}/protected/published-projects/demoeicu/2.0.0/sub/"
    )
    with _session(WGET) as s:
        assert s.get(r.headers["Location"], auth=ALICE).status_code == 404
    assert get(pn, EICU + "sub", ua=WGET).status_code == 401  # access check before nginx
    assert get(pn, "/static/published-projects/demoeicu/2.0.0/data.csv").status_code == 404
    # Django's APPEND_SLASH for the version root
    r = get(pn, "/files/demoecg/1.0.0")
    assert r.status_code == 301 and r.headers["Location"] == "/files/demoecg/1.0.0/"
    assert get(pn, ECG + "data.csv/").status_code == 404  # a file is not a directory


def _visible(line: str) -> str:
    return html.unescape(re.sub(r"<a href=\"[^\"]*\">|</a>", "", line))


def test_autoindex_format(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    r = get(pn, ECG + "sub/")
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "ETag" not in r.headers and "Last-Modified" not in r.headers
    title = "/static/published-projects/demoecg/1.0.0/sub/"
    expected = (
        f"<html>\r\n<head><title>Index of {title}</title></head>\r\n<body>\r\n"
        f'<h1>Index of {title}</h1><hr><pre><a href="../">../</a>\r\n'
        + '<a href="deeper/">deeper/</a>'
        + " " * 44
        + "27-Nov-2026 21:51"
        + " " * 19
        + "-\r\n"
        + '<a href="notes.txt">notes.txt</a>'
        + " " * 42
        + "27-Nov-2026 21:51"
        + " " * 18
        + "11\r\n"
        + "</pre><hr></body>\r\n</html>\r\n"
    )
    assert r.text == expected

    root = get(pn, ECG).text
    lines = root.split("\r\n")[4:-3]
    hrefs = [re.match(r'<a href="([^"]*)">', line)[1] for line in lines]  # type: ignore[index]
    long_name = "n" * 60 + ".txt"
    assert hrefs == [
        "records500/",
        "sub/",
        "LICENSE.txt",
        "RECORDS",
        "SHA256SUMS.txt",
        "data.csv",
        long_name,
        "with%20space%20%26%20amp.txt",
    ]
    for line in lines:
        assert _visible(line)[51:68] == "27-Nov-2026 21:51", line  # name column is 50 wide, then a space
    assert f'<a href="{long_name}">{"n" * 47}..&gt;</a> 27-Nov-2026 21:51' in root
    assert ">with space &amp; amp.txt</a>" in root
    size = (tree[0] / "LICENSE.txt").stat().st_size
    assert f"27-Nov-2026 21:51 {size:19d}\r\n" in root
    cred = get(pn, EICU, ua=WGET, auth=ALICE).text
    assert "<title>Index of /protected/published-projects/demoeicu/2.0.0/</title>" in cred


def test_sha256sums_format(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    root = tree[0]
    content = (root / "SHA256SUMS.txt").read_bytes()
    lines = content.decode().splitlines(keepends=True)
    files = sorted(
        (
            p.relative_to(root).as_posix()
            for p in root.rglob("*")
            if p.is_file() and p.name != "SHA256SUMS.txt"
        ),
        key=str.encode,
    )
    assert lines == [f"{hashlib.sha256((root / f).read_bytes()).hexdigest()} {f}\n" for f in files]
    assert {"LICENSE.txt", "RECORDS", "records500/00000/00001_hr.dat"} <= {
        ln.split(" ", 1)[1][:-1] for ln in lines
    }
    assert all(re.fullmatch(r"[0-9a-f]{64} [^ *\n][^\n]*\n", ln) for ln in lines)
    done = subprocess.run(["sha256sum", "-c", "SHA256SUMS.txt"], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count(": OK") == len(files)


def test_sha256sums_order_symlinks_and_shuffle(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "b").write_bytes(b"1")
    (tmp_path / "a-c").write_bytes(b"2")
    (tmp_path / "B").write_bytes(b"3")
    (tmp_path / ".hidden").write_bytes(b"4")
    (tmp_path / "z").write_bytes(b"5")
    (tmp_path / "link").symlink_to(tmp_path / "z")
    (tmp_path / "SHA256SUMS.txt").write_bytes(b"stale\n")
    out = write_sha256sums(tmp_path)
    names = [ln.split(" ", 1)[1] for ln in out.read_text().splitlines()]
    assert names == [".hidden", "B", "a-c", "a/b", "z"]  # byte order, like LC_COLLATE=C sort
    write_sha256sums(tmp_path, shuffle=True)
    shuffled = out.read_text()
    assert [ln.split(" ", 1)[1] for ln in shuffled.splitlines()] != names
    assert sorted(shuffled.splitlines()) == sorted(
        f"{hashlib.sha256((tmp_path / n).read_bytes()).hexdigest()} {n}" for n in names
    )
    write_sha256sums(tmp_path, shuffle=True)
    assert out.read_text() == shuffled  # deterministic
    assert subprocess.run(["sha256sum", "-c", "--quiet", out.name], cwd=tmp_path).returncode == 0


# -------------------------------------------------------------------- content pages, API, zip


def test_content_pages_and_api(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    r = get(pn, "/content/demoecg/")
    assert (
        r.status_code == 302 and r.headers["Location"] == "/content/demoecg/1.10.0/"
    )  # numeric, not lexical
    page = get(pn, "/content/demoecg/1.10.0/")
    assert page.status_code == 200 and "Demo ECG Signal Toolbox" in page.text
    version_line = [ln for ln in page.text.splitlines() if "Version:" in ln]
    assert version_line[0].split(":")[-1].strip().split("<")[0] == "1.10.0"  # wfdb's get_version scrape
    assert get(pn, "/content/nosuch/").status_code == 404
    assert get(pn, "/content/demoecg/9.9/").status_code == 404

    versions = get(pn, "/api/v1/project/published/demoecg/").json()
    assert [v["version"] for v in versions] == ["1.0.0", "1.2.0", "1.10.0"]
    assert set(versions[0]) == {"slug", "title", "version", "abstract"}
    detail = get(pn, "/api/v1/project/published/demoeicu/2.0.0/").json()
    total = sum(p.stat().st_size for p in tree[0].rglob("*") if p.is_file())
    assert detail["main_storage_size"] == total
    assert detail["slug"] == "demoeicu" and detail["version"] == "2.0.0"
    assert detail["title"] == "Demo eICU Collaborative Research Database"
    assert get(pn, "/api/v1/project/published/nosuch/").status_code == 404
    assert get(pn, "/api/v1/project/published/demoecg/7.0/").status_code == 404
    assert len(get(pn, "/api/v1/project/published/").json()) == 5
    assert get(pn, "/no/such/page").status_code == 404


def test_zip_download(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    path = "/content/demoeicu/get-zip/2.0.0/"
    assert get(pn, path, ua=WGET).status_code == 401
    r = get(pn, path, ua=WGET, auth=ALICE)
    label = project_zip_label(pn.latest("demoeicu"))  # type: ignore[arg-type]
    assert label == "demo-eicu-collaborative-research-database-2.0.0"
    assert r.status_code == 200 and r.headers["Content-Type"] == "application/zip"
    assert r.headers["Content-Disposition"] == f"attachment; filename={label}.zip"
    with zipfile.ZipFile(io.BytesIO(r.content)) as zf:
        got = {n.removeprefix(label + "/"): zf.read(n) for n in zf.namelist()}
    assert got == _tree_files(tree[0])
    assert get(pn, "/api/v1/project/published/demoeicu/2.0.0/").json()["compressed_storage_size"] == len(
        r.content
    )
    part = get(pn, path, ua=WGET, auth=ALICE, headers={"Range": "bytes=10-"})
    assert part.status_code == 206 and part.content == r.content[10:]
    static = get(pn, "/static/published-projects/demoecg/demo-ecg-signal-toolbox-1.0.0.zip")
    assert static.status_code == 200 and static.content[:2] == b"PK"


# -------------------------------------------------------------------------------------- 4. faults


def test_fault_drop_truncates_the_body(pn: FakePhysioNet) -> None:
    url = pn.base_url + ECG + "records500/00000/00001_hr.dat"
    size = int(requests.head(url).headers["Content-Length"])
    pn.faults.add("drop", path_glob="*/00001_hr.dat", after_bytes=1000)
    assert requests.head(url).status_code == 200  # HEAD does not use up a body fault
    got = bytearray()
    broken = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)
    with requests.get(url, stream=True, timeout=5) as r:
        assert r.status_code == 200 and r.headers["Content-Length"] == str(size)
        with pytest.raises(broken):
            for chunk in r.iter_content(256):
                got += chunk
    assert 0 < len(got) <= 1000  # urllib3 throws away the chunk in flight
    assert pn.faults.pending() == 0
    rec = pn.requests_for("*/00001_hr.dat", "GET")[-1]
    assert rec.fault == "drop" and rec.bytes_sent == 1000
    # exactly after_bytes reach the client, then EOF
    pn.faults.add("drop", path_glob="*/00001_hr.dat", after_bytes=1000)
    conn = http.client.HTTPConnection("127.0.0.1", pn.port, timeout=5)
    try:
        conn.request("GET", ECG + "records500/00000/00001_hr.dat")
        resp = conn.getresponse()
        with pytest.raises(http.client.IncompleteRead) as short:
            resp.read()
        assert len(short.value.partial) == 1000 and short.value.expected == size - 1000
    finally:
        conn.close()
    assert len(requests.get(url, timeout=5).content) == size  # used up: the next one is whole


def test_fault_stall_fires_a_read_timeout(pn: FakePhysioNet) -> None:
    url = pn.base_url + ECG + "LICENSE.txt"
    pn.faults.add("stall", path_glob="*LICENSE.txt", after_bytes=10, seconds=1.5)
    t0 = time.monotonic()
    with requests.get(url, stream=True, timeout=(2, 0.3)) as r:
        assert r.status_code == 200
        with pytest.raises((requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            b"".join(r.iter_content(64))
    assert time.monotonic() - t0 < 1.2
    assert requests.get(url, timeout=2).status_code == 200  # the server is still responsive


def test_fault_stall_then_continues(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    pn.faults.add("stall", path_glob="*data.csv", after_bytes=5, seconds=0.3)
    t0 = time.monotonic()
    r = requests.get(pn.base_url + ECG + "data.csv", timeout=5)
    assert time.monotonic() - t0 >= 0.3
    assert r.content == (tree[0] / "data.csv").read_bytes()


def test_fault_status_with_retry_after(pn: FakePhysioNet) -> None:
    url = pn.base_url + ECG + "data.csv"
    pn.faults.add("status", path_glob="*data.csv", status=503, retry_after="2")
    pn.faults.add(
        "status",
        path_glob="*data.csv",
        status=429,
        retry_after="Fri, 27 Nov 2026 21:52:00 GMT",
        body=b'{"detail": "slow down"}',
        content_type="application/json",
    )
    assert get(pn, ECG, ua=CURL).status_code == 200  # listings are never faulted
    r = requests.get(url)
    assert r.status_code == 503 and r.headers["Retry-After"] == "2"
    r = requests.get(url)
    assert r.status_code == 429 and r.headers["Retry-After"] == "Fri, 27 Nov 2026 21:52:00 GMT"
    assert r.json() == {"detail": "slow down"}
    assert requests.get(url).status_code == 200


def test_faults_apply_after_the_access_check(pn: FakePhysioNet) -> None:
    pn.faults.add("status", path_glob="/files/demoeicu/*", status=500)
    assert get(pn, EICU + "data.csv", ua=WGET).status_code == 401
    assert pn.faults.pending() == 1
    assert get(pn, EICU + "data.csv", ua=WGET, auth=ALICE).status_code == 500


def test_fault_ignore_range(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    body = (tree[0] / "LICENSE.txt").read_bytes()
    pn.faults.add("ignore_range", path_glob="*LICENSE.txt")
    r = get(pn, ECG + "LICENSE.txt", headers={"Range": "bytes=100-"})
    assert r.status_code == 200 and r.content == body and "Content-Range" not in r.headers
    assert get(pn, ECG + "LICENSE.txt", headers={"Range": "bytes=100-"}).status_code == 206


def test_fault_change_breaks_if_range(pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    body = (tree[0] / "LICENSE.txt").read_bytes()
    url = ECG + "LICENSE.txt"
    etag = get(pn, url, method="HEAD").headers["ETag"]
    pn.faults.add("change", path_glob="*LICENSE.txt")
    r = get(pn, url, headers={"Range": "bytes=100-", "If-Range": etag})
    assert r.status_code == 200 and r.content == body
    assert r.headers["ETag"] != etag and r.headers["Last-Modified"] != http_date(MTIME)
    assert get(pn, url, headers={"Range": "bytes=100-", "If-Range": etag}).status_code == 206


def test_fault_throttle(pn: FakePhysioNet) -> None:
    pn.faults.add("throttle", path_glob="*/00002_hr.dat", bytes_per_second=10000)
    t0 = time.monotonic()
    r = requests.get(pn.base_url + ECG + "records500/00000/00002_hr.dat", timeout=5)
    assert r.status_code == 200 and len(r.content) == 3000
    assert time.monotonic() - t0 >= 0.25


def test_fault_endless(pn: FakePhysioNet) -> None:
    """No Content-Length, the file then zeros until the client hangs up (here: a 1 MiB cap)."""
    url = pn.base_url + ECG + "records500/00000/00002_hr.dat"
    plain = requests.get(url, timeout=5).content
    pn.faults.add("endless", path_glob="*/00002_hr.dat", after_bytes=1 << 20)
    with requests.get(url, timeout=5, stream=True) as r:
        assert r.status_code == 200 and "Content-Length" not in r.headers
        assert r.headers["Connection"] == "close"
        body = r.raw.read()
    assert len(body) == 1 << 20 and body.startswith(plain) and body[len(plain) :] == bytes((1 << 20) - 3000)
    pn.faults.add("endless", path_glob="*/00002_hr.dat")  # no cap: goes on while the client reads
    with requests.get(url, timeout=5, stream=True) as r:
        got = 0
        for chunk in r.iter_content(1 << 16):
            got += len(chunk)
            if got > 8 << 20:
                break
    assert got > 8 << 20


def test_fault_trickle(pn: FakePhysioNet) -> None:
    """One byte every ``seconds``: each read gets a byte, the body never comes at speed."""
    pn.faults.add("trickle", path_glob="*/00002_hr.dat", seconds=0.05)
    with requests.get(pn.base_url + ECG + "records500/00000/00002_hr.dat", timeout=1, stream=True) as r:
        assert r.headers["Content-Length"] == "3000"
        t0 = time.monotonic()
        first = r.raw.read(10)
    assert len(first) == 10 and time.monotonic() - t0 >= 0.4


# -------------------------------------------------------------------------- server behaviour


def test_keep_alive_and_concurrency(pn: FakePhysioNet) -> None:
    # this test's requests only: an earlier test's early-closed response (a trickle) may be logged late
    t0 = time.time()
    with _session() as s:
        for _ in range(5):
            assert s.get(pn.base_url + ECG + "data.csv").status_code == 200
    mine = [r for r in pn.requests_for(ECG + "data.csv") if r.started >= t0]
    assert len(mine) == 5 and len({r.client_port for r in mine}) == 1  # one reused connection

    # a transfer stalled (its body held back until the server stops) does not hold up 30 requests on six
    # other connections: they are all answered while its body is still outstanding
    pn.faults.add("stall", path_glob="*LICENSE.txt", seconds=120)
    with requests.get(pn.base_url + ECG + "LICENSE.txt", stream=True, timeout=5) as stalled:
        assert stalled.status_code == 200
        results: list[int] = []

        def worker() -> None:
            with _session() as s:
                results.extend(s.get(pn.base_url + ECG + "RECORDS", timeout=5).status_code for _ in range(5))

        workers = [threading.Thread(target=worker) for _ in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert results == [200] * 30
        # the stalled response is logged when its last byte goes out: not yet
        assert not [r for r in pn.requests_for(ECG + "LICENSE.txt") if r.started >= t0]


def test_latency_and_log(tree: tuple[Path, dict[str, np.ndarray]]) -> None:
    with FakePhysioNet(_projects(tree[0]), _users(), latency=0.05) as server:
        t0 = time.monotonic()
        requests.get(
            server.base_url + EICU + "data.csv?x=1", headers={"User-Agent": WGET, "Range": "bytes=1-"}
        )
        assert time.monotonic() - t0 >= 0.05
        rec = server.log[-1]
        assert (rec.method, rec.path, rec.status, rec.range) == (
            "GET",
            EICU + "data.csv?x=1",
            401,
            "bytes=1-",
        )
        assert rec.user_agent == WGET and rec.had_authorization is False and rec.cookies == ()
        requests.get(server.base_url + ECG + "data.csv", cookies={"a": "1", "b": "2"}, auth=("x", "y"))
        rec = server.log[-1]
        assert rec.had_authorization and rec.cookies == ("a", "b") and rec.bytes_sent == 34
    with pytest.raises(RuntimeError):
        _ = server.base_url


# ------------------------------------------------------------------ 5. unmodified reference clients

needs_wget = pytest.mark.skipif(shutil.which("wget") is None, reason="GNU wget is not installed")


def _wget(pn: FakePhysioNet, url: str, dest: Path, home: Path) -> subprocess.CompletedProcess[str]:
    cmd = ["wget", "-r", "-N", "-c", "-np", "-nH", "--cut-dirs=3", "-q", "-P", str(dest), url]
    env = {"HOME": str(home), "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)


def _assert_mirror(dest: Path, root: Path) -> None:
    assert _tree_files(dest) == _tree_files(root)
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS.txt"], cwd=dest, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


@needs_wget
def test_wget_mirrors_an_open_project(
    pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    dest, home = tmp_path / "dl", tmp_path / "home"
    home.mkdir()
    start = len(pn.log)
    done = _wget(pn, pn.base_url + ECG, dest, home)
    assert done.returncode == 0, done.stderr
    _assert_mirror(dest, tree[0])
    records = pn.log[start:]
    assert all((r.user_agent or "").startswith("Wget/") for r in records)
    assert {r.status for r in records} <= {200, 404}  # 404 = robots.txt

    # resume: truncate one file, rerun; wget asks for the rest and gets a 206
    target = dest / "LICENSE.txt"
    target.write_bytes(target.read_bytes()[:1000])
    start = len(pn.log)
    done = _wget(pn, pn.base_url + ECG, dest, home)
    assert done.returncode == 0, done.stderr
    license_reqs = [r for r in pn.log[start:] if r.path == ECG + "LICENSE.txt"]
    assert [(r.status, r.range) for r in license_reqs] == [(206, "bytes=1000-")]
    _assert_mirror(dest, tree[0])


@needs_wget
def test_wget_mirrors_a_credentialed_project_with_netrc(
    pn: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    dest, home = tmp_path / "dl", tmp_path / "home"
    home.mkdir()
    netrc = home / ".netrc"
    netrc.write_text(f"machine 127.0.0.1 login alice password {PASSWORD}\n")
    netrc.chmod(0o600)
    start = len(pn.log)
    done = _wget(pn, pn.base_url + EICU, dest, home)
    assert done.returncode == 0, done.stderr
    _assert_mirror(dest, tree[0])
    records = pn.log[start:]
    assert records[0].status == 401 and not records[0].had_authorization  # wget waits for the challenge
    files = [r for r in records if r.path.startswith(EICU)]
    assert len(files) > 10
    assert all(r.status == 200 for r in files[1:]) and all(r.had_authorization for r in files[1:])

    target = dest / "records500" / "00000" / "00002_hr.dat"
    target.write_bytes(target.read_bytes()[:2500])
    start = len(pn.log)
    assert _wget(pn, pn.base_url + EICU, dest, home).returncode == 0
    reqs = [r for r in pn.log[start:] if r.path.endswith("00002_hr.dat")]
    assert [(r.status, r.range) for r in reqs] == [(206, "bytes=2500-")]
    _assert_mirror(dest, tree[0])


@needs_wget
def test_wget_without_credentials_is_refused(pn: FakePhysioNet, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    done = _wget(pn, pn.base_url + EICU, tmp_path / "dl", tmp_path / "home")
    assert done.returncode == 6  # wget: "Username/password authentication failure"
    assert not (tmp_path / "dl").exists() or not any((tmp_path / "dl").rglob("*.*"))


@pytest.fixture
def wfdb_index(pn: FakePhysioNet, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePhysioNet]:
    original = wfdb_download.config.db_index_url
    wfdb_download.set_db_index_url(pn.base_url + "/files/")
    # dl_database/dl_files also read /content/ through a module constant (there is no setter for it)
    monkeypatch.setattr(wfdb_download, "PN_CONTENT_URL", pn.base_url + "/content/")
    try:
        yield pn
    finally:
        wfdb_download.set_db_index_url(original)


def test_wfdb_python_reads_and_downloads(
    wfdb_index: FakePhysioNet, tree: tuple[Path, dict[str, np.ndarray]], tmp_path: Path
) -> None:
    root, signals = tree
    for name, expected in signals.items():
        rec = wfdb.rdrecord(name, pn_dir="demoecg/1.0.0/records500/00000", physical=False)
        assert rec.fs == 500 and rec.sig_name == [{"00001_hr": "I", "00002_hr": "II"}[name]]
        assert np.array_equal(rec.d_signal, expected)
    header = wfdb.rdheader("00001_hr", pn_dir="demoecg/1.0.0/records500/00000")
    assert header.sig_len == 1500

    dest = tmp_path / "wfdb"
    wfdb.dl_database("demoecg", str(dest))  # resolves the latest version through /content/demoecg/
    want = {k: v for k, v in _tree_files(root).items() if k.startswith("records500/")}
    assert _tree_files(dest) == want
    assert any(r.path == "/files/demoecg/1.10.0/RECORDS" for r in wfdb_index.log)

    # dl_files resumes a short local file with a Range request after a HEAD size probe
    target = dest / "records500" / "00000" / "00001_hr.dat"
    target.write_bytes(target.read_bytes()[:1234])
    start = len(wfdb_index.log)
    wfdb.dl_files("demoecg", str(dest), ["records500/00000/00001_hr.dat"])
    assert target.read_bytes() == want["records500/00000/00001_hr.dat"]
    dat = [(r.method, r.status, r.range) for r in wfdb_index.log[start:] if r.path.endswith("00001_hr.dat")]
    assert ("GET", 206, "bytes=1234-") in dat and ("HEAD", 200, None) in dat


def test_wfdb_python_cannot_read_credentialed(wfdb_index: FakePhysioNet) -> None:
    """wfdb-python's UA is not whitelisted (wfdb-python #568): a credentialed project is a 403."""
    with pytest.raises(PermissionError):
        wfdb.rdheader("00001_hr", pn_dir="demoeicu/2.0.0/records500/00000")
