"""The Grand Challenge source against the fake grand-challenge.org and its CloudFront-like CDN (real sockets).

An archive by slug or pk (paged items and images, image files and File values), a public archive without a
token, refusals as one line without secrets, the token never reaching the CDN, signed links expiring before
and during a transfer, and the shared fault matrix.  climb is tested over plain http on loopback (its session
does not read SSL_CERT_FILE); the https side of the fake is proven with gcapi in tests/fakes.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download, plan
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from tests.conftest import fast_settings, redirect_to, write_recipe
from tests.fakes.capture import CaptureServer
from tests.fakes.grand_challenge import (
    FakeGrandChallenge,
    GCArchive,
    GCImage,
    GCImageFile,
    GCItem,
    GCSocket,
    GCValue,
)

GC_TOKEN = "gc-tok-Frotz-5b2e-secret"
GC_BOB = "gc-bob-Yomin-77d0-secret"
GC_WRONG = "gc-bad-Xyzzy-e3c1-secret"
GC_SECRETS = (GC_TOKEN, GC_BOB, GC_WRONG)
BIG = 1_200_000


def _archive(slug: str, n: int, seed: int, **kw: object) -> GCArchive:
    rnd = random.Random(seed)
    ct = GCSocket("ct-image")
    label = GCSocket("label", super_kind="Value", kind="Anything")
    report = GCSocket("report", super_kind="File", kind="Anything", relative_path="report.json")
    items = []
    for i in range(n):
        if i == 0:
            files = [GCImageFile("case0.mha", rnd.randbytes(BIG))]
        elif i == 1:  # an .mhd header with its .raw, plus a DZI pyramid climb skips by default
            files = [
                GCImageFile("case1.mhd", b"ObjectType = Image\nElementDataFile = case1.raw\n"),
                GCImageFile("case1.raw", rnd.randbytes(4000)),
                GCImageFile("case1.dzi", b"<Image/>", image_type="DZI"),
            ]
        else:
            files = [GCImageFile(f"case{i}.tif", rnd.randbytes(2000 + i), image_type="TIFF")]
        values = [
            GCValue(ct, image=GCImage(f"case{i}", files)),
            GCValue(label, value={"malignant": i % 2 == 0}),
            GCValue(report, file=json.dumps({"case": i}).encode()),
        ]
        items.append(GCItem(values, title=f"case {i}"))
    return GCArchive(slug, items, **kw)  # type: ignore[arg-type]


@pytest.fixture
def gc() -> Iterator[FakeGrandChallenge]:
    archives = [
        _archive("lung-ct", 5, 1, viewers={"ada"}, title="Lung CT"),
        _archive("open-ct", 2, 2, public=True),
        _archive("hidden-ct", 2, 3, viewers={"bob"}),
    ]
    with FakeGrandChallenge(archives=archives, tokens={GC_TOKEN: "ada", GC_BOB: "bob"}, max_limit=2) as fake:
        yield fake  # max_limit=2: every list takes several pages


@pytest.fixture
def settings(tmp_path: Path, gc: FakeGrandChallenge) -> Settings:
    return fast_settings(tmp_path, {"grand-challenge": gc.base_url}, read_timeout=1.0)


@pytest.fixture
def no_gc_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("GRAND_CHALLENGE_TOKEN", "GRAND_CHALLENGE_AUTHORIZATION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch, no_gc_credentials: None) -> None:
    monkeypatch.setenv("GRAND_CHALLENGE_TOKEN", GC_TOKEN)


def _recipe(tmp_path: Path, body: str, name: str = "gctoy") -> Recipe:
    src = "  - id: data\n    kind: grand-challenge\n" + "".join(
        f"    {ln}\n" for ln in body.strip().splitlines()
    )
    path = write_recipe(tmp_path / "recipes", name, src)
    return Catalog([path.parent]).load(name)


def _expected(archive: GCArchive, image_types: tuple[str, ...] = ("MHD", "TIFF")) -> dict[str, bytes]:
    out: dict[str, bytes] = {}
    for item in archive.items:
        for v in item.values:
            if v.image is not None:
                for f in v.image.files:
                    if f.image_type in image_types:
                        out[f"{item.pk}/{v.socket.relative_path}/{f.name}"] = f.data
            elif v.file is not None:
                out[f"{item.pk}/{v.socket.relative_path}"] = v.file
    return out


def _raw(settings: Settings, name: str = "gctoy") -> Path:
    return settings.raw_dir(name)


def test_archive_by_slug_downloads_byte_identical_and_the_token_never_reaches_the_cdn(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    recipe = _recipe(tmp_path, "archive: lung-ct")
    report = download(recipe, settings)
    assert report.ok, report.error
    want = _expected(gc.archives["lung-ct"])
    assert report.count("downloaded") == len(want) == 5 + 1 + 2 + 3  # 5 reports, .mha, .mhd+.raw, 3 .tif
    raw = _raw(settings)
    for rel, data in want.items():
        assert (raw / rel).read_bytes() == data, rel
    assert not list(raw.rglob("*.dzi"))
    assert gc.storage.log and not gc.storage.authorization_seen
    api = [r for r in gc.log if r.path.startswith(("/api/v1/archives", "/api/v1/cases", "/media/"))]
    assert api and all(r.had_authorization for r in api)
    assert len(gc.requests_for("/api/v1/archives/items/")) == 3  # 5 items, 2 per page: next was followed
    assert not gc.requests_for("/api/v1/cases/images/*/")  # the archive's image list had them all
    # offline: the stored listing; Value sockets are kept there
    source = make_sources(recipe, settings)[0]
    expected = source.expected_files()
    assert expected is not None and {f.path for f in expected} == set(want)
    assert all(f.url.startswith(gc.base_url + "/media/") for f in expected)
    listing = json.loads((raw / ".climb" / "listing-data.json").read_text())
    assert {v["label.json"]["malignant"] for v in listing["values"].values()} == {True, False}
    assert source.upstream_paths() == set(want)


def test_archive_by_pk_and_a_subset(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    pk = gc.archives["lung-ct"].pk
    recipe = _recipe(tmp_path, f"archive: {pk}\ninclude: ['*/report.json']\nimage_types: [MHD, TIFF, DZI]")
    p = plan(recipe, settings)
    assert len(p.jobs) == 5 and all(rf.path.endswith("/report.json") for _, rf in p.jobs)
    assert gc.requests_for(f"/api/v1/archives/{pk}/")
    assert download(recipe, settings).ok


def test_public_archive_without_a_token(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, no_gc_credentials: None
) -> None:
    report = download(_recipe(tmp_path, "archive: open-ct"), settings)
    assert report.ok, report.error
    for rel, data in _expected(gc.archives["open-ct"]).items():
        assert (_raw(settings) / rel).read_bytes() == data
    assert not any(r.had_authorization for r in gc.log + gc.storage.log)


@pytest.mark.parametrize(
    ("env", "archive", "expected", "step"),
    [
        (
            {"GRAND_CHALLENGE_TOKEN": GC_WRONG},
            "lung-ct",
            "gctoy: Grand Challenge rejected the token from env GRAND_CHALLENGE_TOKEN "
            "(HTTP 401 Invalid token.); "
            "create a new one at https://grand-challenge.org/settings/api-tokens/ and run "
            "`climb auth login grand-challenge`",
            "https://grand-challenge.org/settings/api-tokens/",
        ),
        (
            {"GRAND_CHALLENGE_AUTHORIZATION": f"Bearer {GC_BOB}"},
            "lung-ct",
            "gctoy: the Grand Challenge archive 'lung-ct' is not visible to the account of the token "
            "from env GRAND_CHALLENGE_AUTHORIZATION: join the challenge or request access at ",
            "/archives/lung-ct/",
        ),
        (
            {},
            "hidden-ct",
            "gctoy: Grand Challenge shows no archive 'hidden-ct' without a token: "
            "set GRAND_CHALLENGE_TOKEN or run `climb auth login grand-challenge`",
            "/archives/hidden-ct/",
        ),
        (
            {"GRAND_CHALLENGE_TOKEN": GC_TOKEN},
            "0b2c8d3e-0000-4000-8000-000000000000",
            "gctoy: the Grand Challenge archive '0b2c8d3e-0000-4000-8000-000000000000' is not visible",
            "/archives/0b2c8d3e-0000-4000-8000-000000000000/",
        ),
    ],
)
def test_refusals_are_one_line_without_secrets(
    tmp_path: Path,
    settings: Settings,
    gc: FakeGrandChallenge,
    monkeypatch: pytest.MonkeyPatch,
    no_gc_credentials: None,
    env: dict[str, str],
    archive: str,
    expected: str,
    step: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    recipe = _recipe(tmp_path, f"archive: {archive}")
    report = download(recipe, settings)
    assert not report.ok and report.error.startswith(expected), report.error
    assert "\n" not in report.error and not any(s in report.error for s in GC_SECRETS)
    why = (
        "no credentials"
        if not env
        else "credentials rejected"
        if GC_WRONG in env.values()
        else "access not granted"
    )
    assert report.category == why, report.category
    access = make_sources(recipe, settings)[0].check_access()
    assert not access.ok and access.detail == report.error and access.next_step.endswith(step)
    assert not gc.storage.log


def test_access_revoked_after_listing_is_one_line_per_source(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    recipe = _recipe(tmp_path, "archive: lung-ct")
    p = plan(recipe, settings)
    gc.archives["lung-ct"].viewers.clear()  # the challenge admins remove the user
    from climb_cli.manifest import RawManifest
    from climb_cli.transfer import Downloader

    with RawManifest.for_dataset(_raw(settings)) as manifest:
        outcomes = Downloader.from_settings(settings).run(p.jobs, manifest)
    assert all(o.status == "failed" and o.access_denied for o in outcomes)
    assert {o.error for o in outcomes} == {
        "gctoy: the Grand Challenge archive 'lung-ct' is not visible to the account of the token from env "
        f"GRAND_CHALLENGE_TOKEN: join the challenge or request access at {gc.base_url}/archives/lung-ct/"
    }
    assert len(gc.requests_for("/media/*")) <= settings.connections_per_host  # refused once, not per file
    assert not [p for p in _raw(settings).rglob("*") if p.is_file() and ".climb" not in p.parts]


def test_access_check_ok(tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None) -> None:
    access = make_sources(_recipe(tmp_path, "archive: lung-ct"), settings)[0].check_access()
    assert access.ok and "Lung CT" in access.detail
    assert not gc.storage.log  # no data downloaded


# --------------------------------------------------------------------------------------- fault matrix

FAULTS = ["drop", "short", "stall", "ignore_range", "change", "429", "503", "expired", "expired_mid_transfer"]


def _arm(gc: FakeGrandChallenge, fault: str) -> None:
    store, glob = gc.storage, "*/case0.mha"
    if fault in ("drop", "short"):
        store.faults.add(fault, path_glob=glob, after_bytes=400_000)
    elif fault == "stall":
        store.faults.add("stall", path_glob=glob, after_bytes=300_000, seconds=2.5)
    elif fault in ("ignore_range", "change"):
        store.faults.add("drop", path_glob=glob, after_bytes=500_000)
        store.faults.add(fault, path_glob=glob)
    elif fault == "429":  # the media view (API host) throttles
        gc.faults.add("status", path_glob="/media/*", status=429, times=2, retry_after="0", content_type=None)
    elif fault == "503":
        store.faults.add("status", path_glob=glob, status=503, times=3, retry_after="0")
    elif fault == "expired":
        store.expire_next(1)
    elif fault == "expired_mid_transfer":
        store.max_uses = 1  # each link works once: the resume after the drop meets an expired link (403)
        store.faults.add("drop", path_glob=glob, after_bytes=600_000)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_matrix(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None, fault: str
) -> None:
    archive = gc.archives["lung-ct"]
    rel = next(p for p in _expected(archive) if p.endswith("case0.mha"))
    recipe = _recipe(tmp_path, "archive: lung-ct\ninclude: ['**/case0.mha']")
    _arm(gc, fault)
    report = download(recipe, settings)
    assert report.ok, report.error
    assert (_raw(settings) / rel).read_bytes() == _expected(archive)[rel]
    assert not gc.storage.authorization_seen
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
    statuses = [r.status for r in gc.storage.log]
    if fault in ("drop", "short", "stall"):
        assert statuses[-1] == 206
    if fault in ("ignore_range", "change"):
        assert statuses == [200, 200]
    if fault == "429":
        assert [r.status for r in gc.requests_for("/media/*")] == [429, 429, 302]
    if fault == "503":
        assert statuses == [503, 503, 503, 200]
    if fault.startswith("expired"):
        assert 403 in statuses and len(gc.requests_for("/media/*")) >= 2
    if fault == "expired_mid_transfer":
        assert statuses[-1] == 206  # resumed on a fresh link


def test_persistent_expiry_is_one_clean_line(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    gc.storage.max_uses = 0
    report = download(_recipe(tmp_path, "archive: lung-ct\ninclude: ['**/case0.mha']"), settings)
    (outcome,) = report.outcomes
    assert outcome.status == "failed"
    assert (
        outcome.error == "gctoy: Grand Challenge's file host refused 3 fresh links for " + outcome.file.path
    )
    assert not [p for p in _raw(settings).rglob("*.mha")]


def test_env_is_clean_of_secrets_in_listing(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    assert download(_recipe(tmp_path, "archive: lung-ct\ninclude: ['*/report.json']"), settings).ok
    for path in (_raw(settings) / ".climb").rglob("*"):
        if path.is_file():
            text = path.read_bytes().decode("utf-8", "replace")
            assert not any(s in text for s in GC_SECRETS), path
    assert os.environ["GRAND_CHALLENGE_TOKEN"] == GC_TOKEN


def test_429_and_503_on_the_api_are_retried_honouring_retry_after(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import climb_cli.net.retry as module  # the one retry policy sleeps here

    slept: list[float] = []
    monkeypatch.setattr(module.time, "sleep", slept.append)  # record the waits instead of waiting
    gc.faults.add("status", path_glob="/api/v1/archives/items/", status=429, times=1, retry_after="9")
    gc.faults.add("status", path_glob="/api/v1/cases/images/", status=503, times=1, retry_after="0")
    report = download(_recipe(tmp_path, "archive: lung-ct\ninclude: ['*/report.json']"), settings)
    assert report.ok, report.error
    assert [r.status for r in gc.requests_for("/api/v1/archives/items/")][:2] == [429, 200]
    assert [r.status for r in gc.requests_for("/api/v1/cases/images/")][:2] == [503, 200]
    assert slept[0] >= 9 and len(slept) == 2


def test_token_never_follows_a_redirect_to_another_origin(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None, capture: CaptureServer
) -> None:
    """A media URL answered with a 302 to another port or host (not the CDN): no token arrives there."""
    gc.faults.add("status", path_glob="/media/*", **redirect_to(capture))
    download(_recipe(tmp_path, "archive: lung-ct\ninclude: ['*/report.json']"), settings)
    assert capture.seen and capture.leaked(GC_SECRETS) == []


def test_include_that_matches_nothing_is_an_error(
    tmp_path: Path, settings: Settings, gc: FakeGrandChallenge, token: None
) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, "archive: lung-ct\ninclude: ['nomatch/*']"), settings)
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("gctoy: source 'data' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
