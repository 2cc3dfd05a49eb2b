"""The Google Drive source against the fake Drive: small files (direct), the large-file virus-scan
interstitial (form + uuid), quota and sign-in pages as one line, pinned sums, and the fault matrix."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.errors import RecipeError
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings, write_recipe
from tests.fakes.bucket import FAULT_IDS, RESET, arm_fault, settle
from tests.fakes.gdrive import DriveFile, DriveFolder, FakeDrive

BIG = os.urandom(600_000)
SMALL = b'{"question": "Is there a B-line?", "answer": "yes"}\n'
IDS = {"big": "1BigFileAbCdEfGhIjKlMnOpQrStUv", "small": "1SmallFileAbCdEfGhIjKlMnOpQr",
       "private": "1PrivateFileAbCdEfGhIjKlMnOp", "quota": "1QuotaFileAbCdEfGhIjKlMnOpQr"}  # fmt: skip


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def drive() -> Iterator[FakeDrive]:
    files = [
        DriveFile(IDS["big"], "covid_us_videos.zip", BIG),
        DriveFile(IDS["small"], "qa.jsonl", SMALL),
        DriveFile(IDS["private"], "private.zip", b"x" * 500, public=False),
        DriveFile(IDS["quota"], "popular.zip", b"y" * 500, quota=True),
    ]
    with FakeDrive(files) as fake:
        yield fake


def _recipe(tmp_path: Path, *entries: tuple[str, str, bytes | None], checksums: str = "") -> Recipe:
    src = "  - id: gd\n    kind: gdrive\n    files:\n"
    for key, path, data in entries:
        pin = f", sha256: {_sha(data)}" if data is not None else ""
        src += f"      - {{id: {IDS[key]}, path: {path}{pin}}}\n"
    path = write_recipe(tmp_path / "recipes", "toygd", src)
    if checksums:
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toygd")


def _settings(tmp_path: Path, fake: FakeDrive, **kw: object) -> Settings:
    return fast_settings(tmp_path, {"gdrive": fake.base_url}, **kw)


def _raw(settings: Settings) -> Path:
    return settings.raw_dir("toygd")


def test_small_file_direct_and_large_file_through_the_interstitial(tmp_path: Path, drive: FakeDrive) -> None:
    settings = _settings(tmp_path, drive)
    recipe = _recipe(tmp_path, ("big", "videos/covid_us.zip", BIG), ("small", "qa/qa.jsonl", SMALL))
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    assert (_raw(settings) / "videos/covid_us.zip").read_bytes() == BIG
    assert (_raw(settings) / "qa/qa.jsonl").read_bytes() == SMALL
    downloads = [r.path for r in drive.requests_for("/download")]
    assert any("uuid=" in p and "confirm=t" in p and IDS["big"] in p for p in downloads)
    assert any("uuid=" not in p and IDS["small"] in p for p in downloads)
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 2
    drive.stop()
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2 and not bad


def test_unpinned_files_need_checksums_pinned(tmp_path: Path, drive: FakeDrive) -> None:
    report = download(_recipe(tmp_path, ("small", "qa.jsonl", None)), _settings(tmp_path, drive))
    assert report.error.startswith("toygd: no checksum for qa.jsonl in source 'gd': pin its sha256")
    pinned = download(
        _recipe(tmp_path, ("small", "qa.jsonl", None), checksums="pinned"), _settings(tmp_path, drive)
    )
    assert pinned.ok and pinned.pinned == 1


def test_wrong_pin_is_refused(tmp_path: Path, drive: FakeDrive) -> None:
    report = download(_recipe(tmp_path, ("small", "qa.jsonl", b"other")), _settings(tmp_path, drive))
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith("toygd: checksum mismatch for qa.jsonl")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        (
            "private",
            "toygd: Google Drive gave a page without the file for x.zip (HTTP 200): it is not shared",
        ),
        ("quota", "toygd: Google Drive refuses x.zip for now: Too many users have viewed or downloaded this"),
    ],
)
def test_refusal_pages_are_one_line(tmp_path: Path, drive: FakeDrive, key: str, expected: str) -> None:
    report = download(_recipe(tmp_path, (key, "x.zip", b"x")), _settings(tmp_path, drive))
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith(expected) and "\n" not in out.error
    assert not (_raw(_settings(tmp_path, drive)) / "x.zip").exists()


def test_bad_recipe_paths(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"unsafe path '../x'"):
        src = f"  - id: gd\n    kind: gdrive\n    files:\n      - {{id: {IDS['big']}, path: ../x}}\n"
        Catalog([write_recipe(tmp_path / "r", "toygd", src).parent]).load("toygd")


QA = {"train.jsonl": b'{"q": 1}\n', "test.jsonl": b'{"q": 2}\n'}


@pytest.fixture
def folder_drive() -> Iterator[FakeDrive]:
    qa_files = [DriveFile(f"1Qa{i}FileAbCdEfGhIjKlMnOpQrSt", k, v) for i, (k, v) in enumerate(QA.items())]
    qa = DriveFolder("1QaFolderAbCdEfGhIjKlMnOpQrSt", "qa", qa_files)
    root = DriveFolder(
        "1RootFolderAbCdEfGhIjKlMnOpQr", "CLIMB QA", [DriveFile(IDS["big"], "videos.zip", BIG)], [qa]
    )
    hidden = DriveFolder("1HiddenFolderAbCdEfGhIjKlMnOp", "private", [], public=False)
    with FakeDrive([], folders=(root, hidden)) as fake:
        yield fake


def _folder_recipe(tmp_path: Path, folder: str, extra: str = "", checksums: str = "") -> Recipe:
    src = f"  - id: gd\n    kind: gdrive\n    folder: {folder}\n{extra}"
    path = write_recipe(tmp_path / "recipes", "toygd", src)
    if checksums:
        path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toygd")


def test_a_shared_folder_is_listed_and_its_files_downloaded(tmp_path: Path, folder_drive: FakeDrive) -> None:
    settings = _settings(tmp_path, folder_drive)
    pins = "".join(f"      qa/{k}: {_sha(v)}\n" for k, v in QA.items())
    pins = "    sha256:\n" + pins
    recipe = _folder_recipe(tmp_path, "1RootFolderAbCdEfGhIjKlMnOpQr", pins + "    include: ['qa/*.jsonl']\n")
    report = download(recipe, settings)
    assert report.ok, (report.error, report.outcomes)
    for name, data in QA.items():
        assert (_raw(settings) / "qa" / name).read_bytes() == data
    assert not (_raw(settings) / "videos.zip").exists()
    assert len(folder_drive.requests_for("/embeddedfolderview")) == 2  # the root and qa/
    folder_drive.stop()
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2 and not bad
    (source,) = make_sources(recipe, settings)
    assert source.upstream_paths() == {"videos.zip", "qa/train.jsonl", "qa/test.jsonl"}


def test_folder_refusals(tmp_path: Path, folder_drive: FakeDrive) -> None:
    settings = _settings(tmp_path, folder_drive)
    report = download(_folder_recipe(tmp_path, "1HiddenFolderAbCdEfGhIjKlMnOp", checksums="pinned"), settings)
    assert report.error.startswith(
        "toygd: Google Drive did not list folder 1HiddenFolderAbCdEfGhIjKlMnOp (HTTP 200, a sign-in page)"
    )
    report = download(_folder_recipe(tmp_path, "1RootFolderAbCdEfGhIjKlMnOpQr"), settings)
    assert report.error.startswith("toygd: no checksum for qa/test.jsonl (and 2 more) in source 'gd'")
    with pytest.raises(RecipeError, match="give exactly one of 'files'"):
        _folder_recipe(
            tmp_path, "1RootFolderAbCdEfGhIjKlMnOpQr", f"    files: [{{id: {IDS['big']}, path: x}}]\n"
        )


def test_check_access(tmp_path: Path, drive: FakeDrive) -> None:
    settings = _settings(tmp_path, drive)
    (ok,) = [s.check_access() for s in make_sources(_recipe(tmp_path, ("big", "a.zip", BIG)), settings)]
    assert ok.ok and "1 Drive file(s) downloadable" in ok.detail
    (bad,) = [s.check_access() for s in make_sources(_recipe(tmp_path, ("private", "a.zip", None)), settings)]
    assert not bad.ok and "not shared with 'Anyone with the link'" in bad.detail
    assert not (_raw(settings) / "a.zip").exists()


@pytest.mark.parametrize("fault", [*FAULT_IDS, "expired"])  # expired: the first uuid is stale on arrival
def test_fault_matrix(tmp_path: Path, drive: FakeDrive, fault: str) -> None:
    glob = "/download"
    if fault == "expired-signed-url":  # the uuid of the confirm link expires when the body is cut
        drive.expire_on_drop = True
        drive.faults.add("drop", path_glob=glob, after_bytes=len(BIG) // 3, headers=dict(RESET))
        expected = [200, 200, 206]  # cut; the stale uuid gets the warning page; a fresh one resumes
    elif fault == "expired":
        drive.expire_next = 1
        expected = [200, 200]  # the warning page again for the stale uuid, then the file on a fresh one
    else:
        expected = arm_fault(drive, fault, glob, len(BIG))
    settings = _settings(tmp_path, drive, read_timeout=0.5)
    report = download(_recipe(tmp_path, ("big", "videos.zip", BIG)), settings)
    assert report.ok, report.outcomes
    got = [r for r in settle(drive, glob) if IDS["big"] in r.path]
    assert [r.status for r in got] == expected
    if fault.startswith("expired"):
        uuids = {r.path.split("uuid=")[1] for r in got}
        assert len(uuids) == 2  # the resume walked the interstitial again for a fresh uuid
        assert len(drive.requests_for("/uc")) == 2
    assert (_raw(settings) / "videos.zip").read_bytes() == BIG
    assert not list((_raw(settings) / ".climb" / "partial").rglob("*.part"))
