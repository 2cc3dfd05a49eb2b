"""The manual source: what to get, from where, into which folder; placement checked against sums;
verify of placed files; placed archives extracted; open() refuses."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.errors import AccessError, RecipeError
from climb_cli.manifest import RawManifest
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.base import RemoteFile
from climb_cli.verify import verify_raw
from tests.conftest import write_recipe
from tests.test_auth import _env, climb_in_process

TABLE = b"id,label\n1,a\n2,b\n"


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for n, d in members.items():
            z.writestr(n, d)
    return buf.getvalue()


IMAGES = _zip({f"images/{i}.png": bytes([i]) * 100 for i in range(4)})


def _recipe(tmp_path: Path, extra: str = "", files: str | None = None) -> Recipe:
    files = files or (
        f"      - {{path: labels.csv, sha256: {sha(TABLE)}, size: {len(TABLE)}}}\n"
        f"      - {{path: images.zip, sha256: {sha(IMAGES)}}}\n"
    )
    src = (
        "  - kind: manual\n"
        "    into: aimi\n"
        "    url: https://aimi.stanford.edu/datasets/toy\n"
        "    instructions: >\n"
        "      Accept the research use agreement, then download labels.csv and images.zip\n"
        "      from the links in the e-mail.\n"
        f"    files:\n{files}{extra}"
    )
    path = write_recipe(tmp_path / "recipes", "toyman", src, access="registered")
    return Catalog([path.parent]).load("toyman")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data")


def _folder(settings: Settings) -> Path:
    return settings.raw_dir("toyman") / "aimi"


def test_nothing_placed_says_what_where_and_into_which_folder(tmp_path: Path, settings: Settings) -> None:
    report = download(_recipe(tmp_path), settings)
    assert not report.ok and report.category == "manual" and not report.outcomes
    assert report.why == "toyman: manual: 0 of 2 files placed (see `climb auth check toyman`)"
    (p,) = report.manual
    assert p.lines() == [
        f"toyman: manual: 0 of 2 files placed in {_folder(settings)}/",
        "  from:  https://aimi.stanford.edu/datasets/toy",
        "  what:  Accept the research use agreement, then download labels.csv and images.zip from the "
        "links in the e-mail.",
        f"  place: labels.csv (sha256 {sha(TABLE)})",
        f"  place: images.zip (sha256 {sha(IMAGES)})",
        f"  into:  {_folder(settings)}/   then run `climb download toyman` again",
    ]


def test_placed_files_are_checked_against_their_sums(tmp_path: Path, settings: Settings) -> None:
    recipe = _recipe(tmp_path)
    folder = _folder(settings)
    folder.mkdir(parents=True)
    (folder / "labels.csv").write_bytes(TABLE)
    (folder / "images.zip").write_bytes(IMAGES[:-1] + b"!")  # a damaged download
    report = download(recipe, settings)
    (p,) = report.manual
    assert p.summary() == "manual: 1 of 2 files placed" and not p.complete
    assert p.wrong == [f"images.zip: sha256 {sha(IMAGES[:-1] + b'!')}, expected {sha(IMAGES)}"]
    assert "  replace: " + p.wrong[0] in p.lines()
    (folder / "images.zip").write_bytes(IMAGES)
    report = download(recipe, settings)
    assert report.ok, report.why
    assert report.manual[0].summary() == "manual: 2 of 2 files placed" and report.manual[0].lines() == [
        f"toyman: manual: 2 of 2 files placed in {folder}/"
    ]
    with RawManifest.for_dataset(settings.raw_dir("toyman")) as m:
        rows = m.load()
    assert {k: r.sha256 for k, r in rows.items()} == {
        "aimi/labels.csv": sha(TABLE),
        "aimi/images.zip": sha(IMAGES),
    }
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 2
    (folder / "labels.csv").write_bytes(TABLE.replace(b"a", b"c"))
    (folder / "stray.txt").write_text("?")
    rep, bad = verify_raw(recipe, settings)
    assert rep.corrupt == ["aimi/labels.csv"] and rep.unexpected == ["aimi/stray.txt"]
    assert [rf.path for _, rf in bad] == ["labels.csv"]


def test_size_mismatch_is_reported_without_hashing(tmp_path: Path, settings: Settings) -> None:
    folder = _folder(settings)
    folder.mkdir(parents=True)
    (folder / "labels.csv").write_bytes(TABLE + b"3,c\n")
    (p,) = download(_recipe(tmp_path), settings).manual
    assert p.wrong == [f"labels.csv: {len(TABLE) + 4} bytes, expected {len(TABLE)}"]


def test_globs_count_towards_placement_and_verify_reports_shortfalls(
    tmp_path: Path, settings: Settings
) -> None:
    recipe = _recipe(
        tmp_path,
        files=f"      - {{path: labels.csv, sha256: {sha(TABLE)}}}\n",
        extra="    globs:\n      - {pattern: 'edf/**/*.edf', count: 3}\n",
    )
    folder = _folder(settings)
    (folder / "edf" / "s1").mkdir(parents=True)
    (folder / "labels.csv").write_bytes(TABLE)
    (folder / "edf" / "s1" / "a.edf").write_bytes(b"0")
    (folder / "edf" / "b.edf").write_bytes(b"1")
    report = download(recipe, settings)
    (p,) = report.manual
    assert p.summary() == "manual: 3 of 4 files placed" and p.short == ["aimi/edf/**/*.edf: 2 of 3 files"]
    rep, _ = verify_raw(recipe, settings)
    assert rep.missing == ["aimi/edf/**/*.edf (2 of 3 files placed)"] and rep.checked == 3
    assert not rep.unexpected
    (folder / "edf" / "c.edf").write_bytes(b"2")
    assert download(recipe, settings).ok
    assert verify_raw(recipe, settings)[0].ok


def test_a_placed_archive_is_verified_then_extracted_and_may_be_removed(
    tmp_path: Path, settings: Settings
) -> None:
    recipe = _recipe(
        tmp_path,
        files=f"      - {{path: images.zip, sha256: {sha(IMAGES)}}}\n",
        extra=(
            "    extract: true\n    keep_archive: false\n"
            "    globs:\n      - {pattern: 'images/*.png', count: 4}\n"
        ),
    )
    folder = _folder(settings)
    folder.mkdir(parents=True)
    (folder / "images.zip").write_bytes(IMAGES[:100])  # truncated: must not be extracted
    report = download(recipe, settings)
    assert not report.extracted and not (folder / "images").exists()
    assert report.manual[0].summary() == "manual: 0 of 5 files placed"
    (folder / "images.zip").write_bytes(IMAGES)
    report = download(recipe, settings)
    assert report.ok, report.why
    assert report.manual[0].summary() == "manual: 5 of 5 files placed"
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["0.png", "1.png", "2.png", "3.png"]
    assert not (folder / "images.zip").exists()  # keep_archive: false
    again = download(recipe, settings)  # the removed archive still counts as placed
    assert again.ok and again.manual[0].summary() == "manual: 5 of 5 files placed"
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 4 and not rep.missing and not rep.unexpected, rep.as_dict()


def test_open_is_never_used_and_refuses_with_the_instructions(tmp_path: Path, settings: Settings) -> None:
    (source,) = make_sources(_recipe(tmp_path), settings)
    with pytest.raises(AccessError) as e:
        source.open(RemoteFile("labels.csv", "manual:labels.csv"), {})
    assert str(e.value) == (
        "toyman: climb cannot download this data: get labels.csv from https://aimi.stanford.edu/datasets/toy "
        f"and place it in {_folder(settings)}/ (`climb auth check toyman` lists what is missing)"
    )
    rep = source.check_access()
    assert not rep.ok and rep.detail == "manual: 0 of 2 files placed"
    assert rep.next_step.startswith("place labels.csv (sha256 ") and rep.next_step.endswith(
        f"in {_folder(settings)}/ (get them at https://aimi.stanford.edu/datasets/toy)"
    )


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ("[]", "a manual source lists 'files' or 'globs'"),
        ("[{path: ../x.csv}]", "must be a relative path without '..'"),
        ("[{path: x.csv, sha256: nothex}]", "sources[0].files[0].sha256: must match"),
    ],
)
def test_recipe_validation(tmp_path: Path, files: str, message: str) -> None:
    src = f"  - kind: manual\n    files: {files}\n"
    path = write_recipe(tmp_path / "recipes", "toyman", src)
    with pytest.raises(RecipeError, match=r"toyman\.yaml:\d+ .*") as e:
        Catalog([path.parent]).load("toyman")
    assert message in str(e.value)


def test_cli_prints_the_instructions_and_exits_1(tmp_path: Path) -> None:
    recipe = _recipe(tmp_path)
    args = ("--data-dir", str(tmp_path / "data"), "--recipes", str(recipe.path.parent), "download", "toyman")
    r = climb_in_process(*args, env=_env(tmp_path))
    assert r.returncode == 1
    assert "toyman: manual: 0 of 2 files placed in " in r.stdout
    assert "  from:  https://aimi.stanford.edu/datasets/toy" in r.stdout
    assert (
        r.stderr.strip()
        == "climb: error: toyman: manual: 0 of 2 files placed (see `climb auth check toyman`)"
    )
