"""The fake grand-challenge.org is faithful: gcapi 0.16.1, unmodified, lists an archive's items and downloads.

gcapi insists on https and on media URLs with the API's own netloc (sources.md §10 #11), so the fake serves
TLS with a certificate made here (``cryptography``) that gcapi trusts through ``SSL_CERT_FILE``; gcapi runs in
a subprocess so that variable is read the way a user's shell would set it.  Also checked without gcapi: the
exact ``Content-Type``, DRF paging links, the 400/401/403/404 answers, and the CloudFront-style expiry.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.fakes.grand_challenge import (
    FakeGrandChallenge,
    GCArchive,
    GCImage,
    GCImageFile,
    GCItem,
    GCSocket,
    GCValue,
)

TOKEN = "gcf-tok-Nitfol-2a9b-secret"
OTHER = "gcf-oth-Bozbar-6c3d-secret"


def _archive() -> GCArchive:
    ct = GCSocket("ct-image")
    label = GCSocket("label", super_kind="Value", kind="Anything")
    report = GCSocket("report", super_kind="File", kind="Anything", relative_path="report.json")
    items = [
        GCItem(
            [
                GCValue(
                    ct, image=GCImage(f"case{i}.mha", [GCImageFile(f"case{i}.mha", os.urandom(4000 + i))])
                ),
                GCValue(label, value={"y": i}),
                GCValue(report, file=json.dumps({"case": i}).encode()),
            ],
            title=f"case {i}",
        )
        for i in range(3)
    ]
    return GCArchive("lung-ct", items, title="Lung CT", viewers={"ada"})


def _tls_missing() -> str | None:
    if importlib.util.find_spec("cryptography") is None:
        return "the 'cryptography' package is needed to make the test certificate (pip install cryptography)"
    return None


def _gcapi_missing() -> str | None:
    if importlib.util.find_spec("gcapi") is None:
        return "gcapi is not installed (pip install gcapi==0.16.1)"
    return _tls_missing()


@pytest.fixture
def tls_fake(tmp_path: Path) -> Iterator[tuple[FakeGrandChallenge, Path]]:
    reason = _tls_missing()
    if reason:
        pytest.skip(reason)
    from tests.fakes.storage import self_signed_cert, server_context

    cert, key = self_signed_cert(tmp_path / "tls")
    with FakeGrandChallenge(
        archives=[_archive()], tokens={TOKEN: "ada", OTHER: "bob"}, tls=server_context(cert, key)
    ) as f:
        yield f, cert


@pytest.fixture
def fake() -> Iterator[FakeGrandChallenge]:
    with FakeGrandChallenge(archives=[_archive()], tokens={TOKEN: "ada", OTHER: "bob"}, max_limit=2) as f:
        yield f


GCAPI_SCRIPT = """
import json, sys
from pathlib import Path
import gcapi
base, out = sys.argv[1], Path(sys.argv[2])
client = gcapi.Client(base_url=base)  # the token comes from GRAND_CHALLENGE_AUTHORIZATION, as gcapi documents
archive = client.archives.detail(slug="lung-ct")
items = list(client.archive_items.iterate_all(params={"archive": archive.pk}))
for item in items:
    for value in item.values:
        client.download_socket_value(value, output_directory=out / item.pk)
image_url = items[0].values[0].image
files = client.images.download(url=image_url, output_directory=out / "direct", filename="first")
print(json.dumps({"archive": archive.pk, "items": [i.pk for i in items], "direct": [str(f) for f in files]}))
"""


@pytest.mark.skipif(_gcapi_missing() is not None, reason=_gcapi_missing() or "")
def test_gcapi_lists_an_archive_and_downloads_its_images(
    tmp_path: Path, tls_fake: tuple[FakeGrandChallenge, Path]
) -> None:
    fake, cert = tls_fake
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAND_CHALLENGE", "SSL_CERT"))}
    env.update(SSL_CERT_FILE=str(cert), GRAND_CHALLENGE_AUTHORIZATION=f"Bearer {TOKEN}")
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-c", GCAPI_SCRIPT, fake.base_url + "/api/v1/", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    result = json.loads(r.stdout.strip().splitlines()[-1])
    archive = fake.archives["lung-ct"]
    assert result["archive"] == archive.pk and result["items"] == [i.pk for i in archive.items]
    for item in archive.items:
        image = item.values[0].image
        assert image is not None
        assert (out / item.pk / "images" / "ct-image" / f"{image.pk}.mha").read_bytes() == image.files[0].data
        assert json.loads((out / item.pk / "label.json").read_text()) == item.values[1].value
        assert (out / item.pk / "report.json").read_bytes() == item.values[2].file
    first = archive.items[0].values[0].image
    assert first is not None and (out / "direct" / "first.mha").read_bytes() == first.files[0].data
    assert fake.base_url.startswith("https://") and fake.storage.base_url.startswith("https://")
    assert fake.storage.log and not fake.storage.authorization_seen  # httpx dropped the token cross-origin
    assert all(rec.had_authorization for rec in fake.log if rec.path.startswith("/api/v1/archives"))
    assert not fake.errors and not fake.storage.errors


@pytest.mark.skipif(_gcapi_missing() is not None, reason=_gcapi_missing() or "")
def test_gcapi_sees_nothing_of_an_archive_it_may_not_see(
    tmp_path: Path, tls_fake: tuple[FakeGrandChallenge, Path]
) -> None:
    fake, cert = tls_fake
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GRAND_CHALLENGE", "SSL_CERT"))}
    env.update(SSL_CERT_FILE=str(cert), GRAND_CHALLENGE_AUTHORIZATION=OTHER)
    script = (
        "import sys, gcapi\n"
        "c = gcapi.Client(base_url=sys.argv[1])\n"
        "try:\n    c.archives.detail(slug='lung-ct')\n"
        "except gcapi.exceptions.ObjectNotFound:\n    print('not found')\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, fake.base_url + "/api/v1/"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and r.stdout.strip() == "not found", r.stderr[-2000:]


# ------------------------------------------------------------------------------ protocol details


def _get(fake: FakeGrandChallenge, path: str, token: str | None = TOKEN, **kw: object) -> requests.Response:
    headers = {"Authorization": f"BEARER {token}"} if token else {}
    return requests.get(f"{fake.base_url}{path}", headers=headers, timeout=5, **kw)  # type: ignore[arg-type]


def test_json_answers_are_exactly_application_json_and_page_with_absolute_links(
    fake: FakeGrandChallenge,
) -> None:
    pk = fake.archives["lung-ct"].pk
    r = _get(fake, f"/api/v1/archives/items/?archive={pk}")
    assert r.headers["Content-Type"] == "application/json"  # §10 #10: string equality in gcapi
    page = r.json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["previous"] is None
    assert page["next"] == f"{fake.base_url}/api/v1/archives/items/?archive={pk}&limit=2&offset=2"
    last = requests.get(page["next"], headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5).json()
    assert len(last["results"]) == 1 and last["next"] is None
    assert last["previous"] == f"{fake.base_url}/api/v1/archives/items/?archive={pk}&limit=2"
    item = page["results"][0]
    assert item["archive"] == f"{fake.base_url}/api/v1/archives/{pk}/"  # §10 #12: the archive's API URL
    assert {"hanging_protocol", "optional_hanging_protocols", "view_content"} <= set(item)
    assert all(v["socket"] == v["interface"] for v in item["values"])


def test_refusals(fake: FakeGrandChallenge) -> None:
    pk = fake.archives["lung-ct"].pk
    r = _get(fake, "/api/v1/archives/", token="nope")
    assert r.status_code == 401 and r.json() == {"detail": "Invalid token."}
    assert r.headers["WWW-Authenticate"] == "Bearer"
    assert _get(fake, "/api/v1/gcapi/", token="nope").status_code == 200  # the version probe needs no auth
    assert _get(fake, "/api/v1/archives/?slug=lung-ct", token=None).json()["results"] == []
    assert _get(fake, f"/api/v1/archives/{pk}/", token=OTHER).status_code == 404
    assert _get(fake, f"/api/v1/archives/items/?archive={pk}", token=OTHER).json()["count"] == 0  # §10 #13
    bad = _get(fake, "/api/v1/cases/images/?archive=00000000-0000-4000-8000-000000000000")
    assert bad.status_code == 400 and "is not one of the available choices" in bad.json()["archive"][0]


def test_media_redirects_to_a_cloudfront_link_that_expires_after_300_seconds(
    fake: FakeGrandChallenge,
) -> None:
    pk = fake.archives["lung-ct"].pk
    image = _get(fake, f"/api/v1/cases/images/?archive={pk}").json()["results"][0]
    media = image["files"][0]["file"]
    assert media.startswith(
        f"{fake.base_url}/media/images/{image['pk'][:2]}/{image['pk'][2:4]}/{image['pk']}/"
    )
    assert (
        requests.get(media, timeout=5, allow_redirects=False).status_code == 403
    )  # anonymous: no permission
    r = requests.get(media, headers={"Authorization": "Bearer wrong"}, timeout=5, allow_redirects=False)
    assert r.status_code == 403  # a bad token falls back to anonymous on media
    r = requests.get(media, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5, allow_redirects=False)
    assert r.status_code == 302
    link = r.headers["Location"]
    assert link.startswith(fake.storage.base_url) and all(
        f"{k}=" in link for k in ("Expires", "Signature", "Key-Pair-Id")
    )
    got = requests.get(link, headers={"Range": "bytes=10-19"}, timeout=5)
    assert got.status_code == 206 and len(got.content) == 10
    fake.storage.advance(299)
    assert requests.get(link, timeout=5).status_code == 200
    fake.storage.advance(2)
    expired = requests.get(link, timeout=5)
    assert expired.status_code == 403 and b"<Code>AccessDenied</Code>" in expired.content
    assert _get(fake, "/media/images/00/00/nothing/here.mha").status_code == 404
