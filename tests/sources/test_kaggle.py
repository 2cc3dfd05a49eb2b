"""The Kaggle source against the fake Kaggle API and its GCS-like storage host, over real sockets.

Datasets (pinned and current version, pagination, legacy key and access token, private), competitions
(files, bundle, rules not accepted), refusals as one line without secrets, the credential never reaching the
storage host, signed links expiring before and during a transfer, and the shared fault matrix.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download, plan
from climb_cli.catalog import Catalog
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.kaggle import KaggleSource, _md5_from_goog_hash
from climb_cli.transfer import Downloader
from tests.conftest import fast_settings, redirect_to, write_recipe
from tests.fakes.bucket import logged
from tests.fakes.capture import CaptureServer
from tests.fakes.kaggle import FakeKaggle, KaggleCompetition, KaggleDataset, KaggleUser

KAGGLE_KEY = "kgl-key-Quux-93b1-secret"
KAGGLE_TOKEN = "KGAT_tok-Frob-4e7a-secret"
BOB_TOKEN = "KGAT_bob-Zork-11aa-secret"
WRONG_TOKEN = "KGAT_wrong-Gnusto-7c2d-secret"
KAGGLE_SECRETS = (KAGGLE_KEY, KAGGLE_TOKEN, BOB_TOKEN, WRONG_TOKEN)
BIG = 1_200_000


def _files(seed: int) -> dict[str, bytes]:
    rnd = __import__("random").Random(seed)
    out = {f"table_{i}.csv": f"id,value\n{i},{rnd.random()}\n".encode() for i in range(5)}
    out["images/scan 1.png"] = b"\x89PNG\r\n" + rnd.randbytes(3000)
    out["data/big.bin"] = rnd.randbytes(BIG)
    return out


@pytest.fixture(scope="module")
def v1() -> dict[str, bytes]:
    return _files(1)


@pytest.fixture(scope="module")
def v2() -> dict[str, bytes]:
    return _files(2)


@pytest.fixture
def kaggle(v1: dict[str, bytes], v2: dict[str, bytes]) -> Iterator[FakeKaggle]:
    datasets = [
        KaggleDataset("alice", "toy", {1: v1, 2: v2}),
        KaggleDataset("carol", "secret", {1: {"s.csv": b"a\n1\n"}}, private=True, viewers={"alice"}),
    ]
    competitions = [
        KaggleCompetition("comp", {"train.csv": b"id\n1\n", "test/t.csv": b"id\n2\n"}, accepted={"alice"}),
    ]
    users = [
        KaggleUser("alice", key=KAGGLE_KEY, tokens={KAGGLE_TOKEN}),
        KaggleUser("bob", tokens={BOB_TOKEN}),
    ]
    with FakeKaggle(
        datasets=datasets, competitions=competitions, users=users, max_page_size=3
    ) as fake:  # max_page_size=3 forces climb through several pages
        yield fake


@pytest.fixture
def settings(tmp_path: Path, kaggle: FakeKaggle) -> Settings:
    return fast_settings(tmp_path, {"kaggle": kaggle.base_url}, read_timeout=1.0)


@pytest.fixture
def no_kaggle_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("KAGGLE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))


@pytest.fixture
def token(monkeypatch: pytest.MonkeyPatch, no_kaggle_credentials: None) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)


def _recipe(tmp_path: Path, body: str, name: str = "kagtoy") -> Recipe:
    src = "  - id: data\n    kind: kaggle\n" + "".join(f"    {line}\n" for line in body.strip().splitlines())
    path = write_recipe(tmp_path / "recipes", name, src)
    return Catalog([path.parent]).load(name)


def _no_secret(text: str) -> None:
    assert not any(s in text for s in KAGGLE_SECRETS), "a Kaggle test secret leaked"


def _raw(settings: Settings, name: str = "kagtoy") -> Path:
    return settings.raw_dir(name)


def test_md5_from_goog_hash() -> None:
    md5 = hashlib.md5(b"abc").digest()
    b64 = __import__("base64").b64encode(md5).decode()
    assert _md5_from_goog_hash(f"crc32c=AAAAAA==,md5={b64}") == md5.hex()
    assert _md5_from_goog_hash(f"crc32c=AAAAAA==, md5={b64}") == md5.hex()
    assert _md5_from_goog_hash("crc32c=AAAAAA==") is None
    assert _md5_from_goog_hash("md5=not-base64!") is None
    assert _md5_from_goog_hash(None) is None


def test_params_need_exactly_one_of_dataset_or_competition(tmp_path: Path) -> None:
    from climb_cli.errors import RecipeError

    for body in ("competition: comp\nversion: 2", "dataset: alice/toy\ncompetition: comp", "version: 1"):
        with pytest.raises(RecipeError):
            _recipe(tmp_path, body)


def test_pinned_version_files_byte_identical_and_credential_never_reaches_storage(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v1: dict[str, bytes]
) -> None:
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 1\nexclude: ['data/']")
    report = download(recipe, settings)
    assert report.ok, report.error
    raw = _raw(settings)
    wanted = {n: b for n, b in v1.items() if not n.startswith("data/")}
    assert report.count("downloaded") == len(wanted) == 6
    for name, data in wanted.items():
        assert (raw / name).read_bytes() == data, name
    # every storage request came without the credential; every API request carried it as Bearer
    assert kaggle.storage.log and not kaggle.storage.authorization_seen
    assert all(r.had_authorization for r in kaggle.log)
    assert all(r.user_agent.startswith("climb/") for r in kaggle.log + kaggle.storage.log)
    # the listing walked several pages (the fake caps pages at 3 files) and pinned version 1
    lists = kaggle.requests_for("/v1/datasets.DatasetApiService/ListDatasetFiles")
    assert len(lists) == 3
    assert not kaggle.requests_for("/v1/datasets.DatasetApiService/GetDataset")
    # offline: the stored listing, with the md5 each storage answer carried (x-goog-hash)
    source = make_sources(recipe, settings)[0]
    expected = source.expected_files()
    assert expected is not None and {f.path for f in expected} == set(wanted)
    assert all(f.md5 == hashlib.md5(wanted[f.path]).hexdigest() for f in expected)
    assert all("datasetVersionNumber=1" in f.url and "X-Goog" not in f.url for f in expected)
    assert source.upstream_paths() == set(v1)
    assert json.loads((raw / ".climb" / "listing-data.json").read_text())["version"] == 1


def test_unpinned_dataset_is_pinned_to_the_current_version(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v2: dict[str, bytes]
) -> None:
    recipe = _recipe(tmp_path, "dataset: alice/toy\ninclude: ['table_*.csv']")
    p = plan(recipe, settings)
    assert len(kaggle.requests_for("/v1/datasets.DatasetApiService/GetDataset")) == 1
    assert {rf.path for _, rf in p.jobs} == {f"table_{i}.csv" for i in range(5)}
    assert all("datasetVersionNumber=2" in rf.url for _, rf in p.jobs)
    assert all(rf.size == len(v2[rf.path]) for _, rf in p.jobs)
    report = download(recipe, settings)
    assert report.ok, report.error
    assert all((_raw(settings) / n).read_bytes() == v2[n] for n in (rf.path for _, rf in p.jobs))


def test_legacy_key_is_sent_as_basic_and_opens_a_private_dataset(
    tmp_path: Path,
    settings: Settings,
    kaggle: FakeKaggle,
    monkeypatch: pytest.MonkeyPatch,
    no_kaggle_credentials: None,
) -> None:
    cfg = tmp_path / "no-kaggle"
    cfg.mkdir()
    (cfg / "kaggle.json").write_text(json.dumps({"username": "alice", "key": KAGGLE_KEY}))
    recipe = _recipe(tmp_path, "dataset: carol/secret\nversion: 1")
    report = download(recipe, settings)
    assert report.ok, report.error
    assert (_raw(settings) / "s.csv").read_bytes() == b"a\n1\n"
    assert not kaggle.storage.authorization_seen


def test_public_dataset_downloads_without_credentials(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, no_kaggle_credentials: None, v2: dict[str, bytes]
) -> None:
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 2\ninclude: [table_0.csv]")
    assert download(recipe, settings).ok
    assert (_raw(settings) / "table_0.csv").read_bytes() == v2["table_0.csv"]
    assert not any(r.had_authorization for r in kaggle.log + kaggle.storage.log)


def test_whole_archive_is_one_zip_file(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v2: dict[str, bytes]
) -> None:
    import zipfile

    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 2\nwhole_archive: true")
    report = download(recipe, settings)
    assert report.ok, report.error
    archive = _raw(settings) / "toy.zip"
    with zipfile.ZipFile(archive) as zf:
        assert {n: zf.read(n) for n in zf.namelist()} == v2
    ds = kaggle.datasets["alice/toy"]
    stored = kaggle.storage.objects[f"kaggle-data-sets/{ds.id}/{ds.version_id(2)}/bundle/archive.zip"]
    assert archive.read_bytes() == stored.data
    source = make_sources(recipe, settings)[0]
    assert source.upstream_paths() == {"toy.zip"}


def test_competition_files_and_bundle(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None
) -> None:
    report = download(_recipe(tmp_path, "competition: comp"), settings)
    assert report.ok, report.error
    raw = _raw(settings)
    assert (raw / "train.csv").read_bytes() == b"id\n1\n" and (raw / "test/t.csv").read_bytes() == b"id\n2\n"
    report = download(_recipe(tmp_path, "competition: comp\nwhole_archive: true", name="kagcomp"), settings)
    assert report.ok, report.error
    assert (_raw(settings, "kagcomp") / "comp.zip").is_file()
    assert not kaggle.storage.authorization_seen


def test_competition_rules_not_accepted_is_one_line_with_the_rules_url(
    tmp_path: Path,
    settings: Settings,
    kaggle: FakeKaggle,
    monkeypatch: pytest.MonkeyPatch,
    no_kaggle_credentials: None,
) -> None:
    monkeypatch.setenv("KAGGLE_API_TOKEN", BOB_TOKEN)
    recipe = _recipe(tmp_path, "competition: comp")
    report = download(recipe, settings)
    assert not report.ok
    errors = {o.error for o in report.outcomes}
    assert errors == {
        "kagtoy: you have not accepted the rules of the Kaggle competition comp: accept them at "
        "https://www.kaggle.com/competitions/comp/rules, then run climb again"
    }
    assert all(o.access_denied for o in report.outcomes)
    access = make_sources(recipe, settings)[0].check_access()
    assert not access.ok and access.next_step == "https://www.kaggle.com/competitions/comp/rules"
    assert not any((_raw(settings)).glob("*.csv"))
    kaggle.competitions["comp"].accepted.add("bob")  # the user accepts them on the web site
    assert make_sources(recipe, settings)[0].check_access().ok
    assert download(recipe, settings).ok


@pytest.mark.parametrize(
    ("env", "body", "expected"),
    [
        (
            {"KAGGLE_API_TOKEN": WRONG_TOKEN},
            "dataset: alice/toy",
            "kagtoy: Kaggle did not accept the credentials from env KAGGLE_API_TOKEN (HTTP 401); "
            "create a new API token at https://www.kaggle.com/settings/api and run `climb auth login kaggle`",
        ),
        (
            {"KAGGLE_USERNAME": "alice", "KAGGLE_KEY": WRONG_TOKEN},
            "competition: comp",
            "kagtoy: Kaggle did not accept the credentials from env KAGGLE_USERNAME/KAGGLE_KEY (HTTP 401)",
        ),
        (
            {},
            "competition: comp",
            "kagtoy: Kaggle needs you to sign in for competition comp; climb looked in KAGGLE_API_TOKEN, "
            "~/.kaggle/access_token, KAGGLE_USERNAME/KAGGLE_KEY and ",
        ),
        (
            {},
            "dataset: carol/secret",
            "kagtoy: Kaggle refused dataset carol/secret (HTTP 404: Dataset not found); check the recipe, or "
            "sign in with an account that may see it (https://www.kaggle.com/datasets/carol/secret)",
        ),
        (
            {"KAGGLE_API_TOKEN": KAGGLE_TOKEN},
            "dataset: alice/toy\nversion: 9",
            "kagtoy: Kaggle refused dataset alice/toy version 9 (HTTP 404: Dataset version 9 not found)",
        ),
    ],
)
def test_refusals_are_one_line_without_secrets(
    tmp_path: Path,
    settings: Settings,
    kaggle: FakeKaggle,
    monkeypatch: pytest.MonkeyPatch,
    no_kaggle_credentials: None,
    env: dict[str, str],
    body: str,
    expected: str,
) -> None:
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    recipe = _recipe(tmp_path, body)
    report = download(recipe, settings)
    assert not report.ok and report.error.startswith(expected), report.error
    assert "\n" not in report.error
    _no_secret(report.error)
    rejected, signed_out = WRONG_TOKEN in env.values(), not env and body.startswith("competition")
    why = "credentials rejected" if rejected else "no credentials" if signed_out else "failed"
    assert report.category == why, report.category
    access = make_sources(recipe, settings)[0].check_access()
    assert not access.ok and access.detail == report.error and access.next_step


def test_429_on_the_listing_is_retried_honouring_retry_after(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    import climb_cli.net.retry as module  # the one retry policy sleeps here

    slept: list[float] = []
    monkeypatch.setattr(module.time, "sleep", slept.append)  # record the waits instead of waiting
    kaggle.rate_limit("ListDatasetFiles", times=2, retry_after="7", style="rpc")
    kaggle.rate_limit("DownloadDataset", times=2, retry_after="0", style="legacy")
    report = download(_recipe(tmp_path, "dataset: alice/toy\nversion: 2\ninclude: [table_1.csv]"), settings)
    assert report.ok, report.error
    assert [r.status for r in kaggle.requests_for("*/ListDatasetFiles")][:3] == [429, 429, 200]
    assert len(slept) == 2 and min(slept) >= 7  # Retry-After honoured by the listing's own retry
    assert [r.status for r in kaggle.requests_for("*/DownloadDataset")][:3] == [429, 429, 302]


def test_link_expired_before_use_is_re_resolved(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v2: dict[str, bytes]
) -> None:
    """A link cached by an earlier open() that the store's clock has since expired: 400, fresh link, done."""
    settings = settings.with_(read_timeout=30.0)  # open() has no retry: no 1 s deadline on a loaded machine
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 2\ninclude: [data/big.bin]")
    source = make_sources(recipe, settings)[0]
    assert isinstance(source, KaggleSource)
    (rf,) = source.list_files()
    source.open(rf, {"Range": "bytes=0-0"}).close()  # resolves and caches a signed URL
    kaggle.storage.advance(kaggle.url_ttl + 3600)
    raw = _raw(settings)
    Downloader.from_settings(settings).fetch(source, rf, raw / rf.path, raw)
    assert (raw / rf.path).read_bytes() == v2["data/big.bin"]
    # in the order the store received them (the early-closed 206 may be logged late: wait for it)
    statuses = [r.status for r in logged(kaggle.storage, 3)]
    assert statuses == [206, 400, 200], statuses
    assert len(logged(kaggle, 2, "*/DownloadDataset")) == 2


@pytest.mark.parametrize("kind", ["competition", "dataset"])
def test_a_file_offered_only_zipped_is_fetched_checked_and_unpacked(
    tmp_path: Path, v2: dict[str, bytes], token: None, kind: str
) -> None:
    big = v2["data/big.bin"]
    comp = KaggleCompetition("bigcomp", {"big.bin": big, "small.csv": b"id\n1\n"}, accepted={"alice"})
    ds = KaggleDataset("alice", "bigds", {1: {"big.bin": big, "small.csv": b"id\n1\n"}})
    spec = "competition: bigcomp" if kind == "competition" else "dataset: alice/bigds\nversion: 1"
    users = [KaggleUser("alice", tokens={KAGGLE_TOKEN})]
    with FakeKaggle(competitions=[comp], datasets=[ds], users=users, compress_single_files_over=1000) as fake:
        settings = fast_settings(tmp_path, {"kaggle": fake.base_url})
        recipe = _recipe(tmp_path, spec)
        report = download(recipe, settings)
        assert report.ok, report.error
        raw = _raw(settings)
        assert (raw / "big.bin").read_bytes() == big and (raw / "small.csv").read_bytes() == b"id\n1\n"
        assert not (raw / "big.bin.zip").exists() and not list((raw / ".climb" / "wrapped").rglob("*.zip"))
        # the zip came zipped-only (raw: true changes nothing), checked against storage's md5, and is recorded
        zips = [r for r in fake.storage.log if "/compressed/big.bin.zip" in r.path]
        assert len(zips) == 1 and zips[0].status == 200
        (rec,) = [json.loads(x) for x in (raw / ".climb" / "wrapped-data.jsonl").read_text().splitlines()]
        assert rec["path"] == "big.bin" and rec["zip"] == "big.bin.zip"
        assert rec["member_size"] == len(big) and rec["member_sha256"] == hashlib.sha256(big).hexdigest()
        stored = next(o for k, o in fake.storage.objects.items() if k.endswith("/compressed/big.bin.zip"))
        assert rec["zip_sha256"] == hashlib.sha256(stored.data).hexdigest() and rec["zip_size"] == len(
            stored.data
        )
        # the member is in the manifest like any file; a rerun and verify need no download
        assert download(recipe, settings).count("skipped") == 2
        raw_report, _ = __import__("climb_cli.verify", fromlist=["verify_raw"]).verify_raw(recipe, settings)
        assert raw_report.ok, raw_report


def test_a_zip_that_does_not_hold_the_file_is_refused(
    tmp_path: Path, v2: dict[str, bytes], token: None
) -> None:
    import io
    import zipfile

    comp = KaggleCompetition("bigcomp", {"big.bin": v2["data/big.bin"]}, accepted={"alice"})
    with FakeKaggle(
        competitions=[comp],
        users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})],
        compress_single_files_over=1000,
    ) as fake:
        key = next(k for k in fake.storage.objects if k.endswith("/compressed/big.bin.zip"))
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr("other.bin", b"x" * 2000)
        fake.storage.put(key, buf.getvalue())
        settings = fast_settings(tmp_path, {"kaggle": fake.base_url})
        report = download(_recipe(tmp_path, "competition: bigcomp"), settings)
        assert not report.ok
        (outcome,) = report.outcomes
        assert outcome.error == "kagtoy: Kaggle's big.bin.zip for big.bin holds other.bin, not just big.bin"
        assert not (_raw(settings) / "big.bin").exists()


# --------------------------------------------------------------------------------------- fault matrix

FAULTS = [
    "drop",
    "short",
    "stall",
    "ignore_range",
    "change",
    "429",
    "503",
    "expired",
    "expired_mid_transfer",
]


def _arm(kaggle: FakeKaggle, fault: str) -> None:
    store, glob = kaggle.storage, "*/big.bin"
    if fault in ("drop", "short"):
        store.faults.add(fault, path_glob=glob, after_bytes=400_000)
    elif fault == "stall":
        store.faults.add("stall", path_glob=glob, after_bytes=300_000, seconds=2.5)
    elif fault in ("ignore_range", "change"):
        store.faults.add("drop", path_glob=glob, after_bytes=500_000)
        store.faults.add(fault, path_glob=glob)
    elif fault == "429":
        kaggle.rate_limit("DownloadDataset", times=2, retry_after="0")
    elif fault == "503":
        store.faults.add(
            "status", path_glob=glob, status=503, times=3, retry_after="0", content_type="text/html"
        )
    elif fault == "expired":
        store.expire_next(
            1
        )  # the first link is already past its lifetime: 400 ExpiredToken, then a fresh one
    elif fault == "expired_mid_transfer":
        store.max_uses = 1  # each link works once: the resume after the drop meets ExpiredToken
        store.faults.add("drop", path_glob=glob, after_bytes=600_000)


@pytest.mark.parametrize("fault", FAULTS)
def test_fault_matrix(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v2: dict[str, bytes], fault: str
) -> None:
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 2\ninclude: [data/big.bin]")
    final = _raw(settings) / "data" / "big.bin"
    _arm(kaggle, fault)
    report = download(recipe, settings)
    assert report.ok, report.error
    assert final.read_bytes() == v2["data/big.bin"]
    assert not kaggle.storage.authorization_seen
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
    statuses = [r.status for r in kaggle.storage.log]
    if fault in ("drop", "short", "stall"):
        assert 206 in statuses
    if fault.startswith("expired"):
        assert 400 in statuses and len(kaggle.requests_for("*/DownloadDataset")) >= 2
    if fault == "expired_mid_transfer":
        assert statuses[-1] == 206  # resumed on a fresh link, not restarted
    if fault in ("ignore_range", "change"):
        assert statuses == [200, 200]  # the resume asked for a range and got the whole (changed) file
    if fault == "429":
        assert [r.status for r in kaggle.requests_for("*/DownloadDataset")] == [429, 429, 302]
    if fault == "503":
        assert statuses == [503, 503, 503, 200]


def test_fault_persistent_expiry_is_one_clean_line(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None
) -> None:
    kaggle.storage.max_uses = 0  # every link is dead on arrival
    report = download(_recipe(tmp_path, "dataset: alice/toy\nversion: 2\ninclude: [data/big.bin]"), settings)
    assert not report.ok
    (outcome,) = report.outcomes
    assert outcome.error == "kagtoy: Kaggle's storage refused 3 fresh download links for data/big.bin"
    assert not (_raw(settings) / "data" / "big.bin").exists()


def test_credential_never_follows_a_redirect_to_another_origin(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, capture: CaptureServer
) -> None:
    """The download RPC answered with a 302 to another port or host: the capture gets no credential."""
    kaggle.faults.add("status", path_glob="*DownloadDataset", **redirect_to(capture))
    report = download(_recipe(tmp_path, "dataset: alice/toy\nversion: 1\ninclude: [table_1.csv]"), settings)
    assert not report.ok
    assert capture.seen and capture.leaked(KAGGLE_SECRETS) == []


def test_a_file_without_any_upstream_sum_is_pinned_and_verify_checks_the_pin(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None, v1: dict[str, bytes]
) -> None:
    """Composite objects: no md5 in the listing nor in x-goog-hash. Under `checksums: upstream` the first
    download pins their sha256 (and says so); a same-size corrupted copy then fails verify."""
    from climb_cli.pins import read_lock, user_lock_path
    from climb_cli.verify import verify_raw

    kaggle.storage.omit_md5 = True
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 1\ninclude: ['table_*.csv']")
    assert recipe.checksums == "upstream"
    report = download(recipe, settings)
    assert report.ok, report.error
    assert report.pinned == 5  # was: 0, nothing recorded, no warning
    pins = read_lock(user_lock_path(settings, "kagtoy"))
    assert {k: p.sha256 for k, p in pins.items()} == {
        f"table_{i}.csv": hashlib.sha256(v1[f"table_{i}.csv"]).hexdigest() for i in range(5)
    }
    victim = _raw(settings) / "table_3.csv"
    data = bytearray(victim.read_bytes())
    data[-2] ^= 0x01
    victim.write_bytes(bytes(data))
    rep, bad = verify_raw(recipe, settings)
    assert rep.corrupt == ["table_3.csv"] and len(bad) == 1  # was: verify passed the corrupted copy


def test_files_with_an_upstream_md5_are_not_pinned(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None
) -> None:
    recipe = _recipe(tmp_path, "dataset: alice/toy\nversion: 1\ninclude: ['table_*.csv']")
    report = download(recipe, settings)
    assert report.ok and report.pinned == 0


def test_include_that_matches_nothing_is_an_error(
    tmp_path: Path, settings: Settings, kaggle: FakeKaggle, token: None
) -> None:
    """Globs that select no upstream file: one line naming the source and its globs, not "ok" with 0 files."""
    report = download(_recipe(tmp_path, "dataset: alice/toy\ninclude: ['nomatch/*']"), settings)
    assert not report.ok and report.category == "failed" and not report.outcomes, report.error
    assert report.error.startswith("kagtoy: source 'data' ("), report.error
    assert "no upstream file matches include ['nomatch/*']; check these globs in " in report.error
