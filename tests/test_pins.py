"""Pinned checksums (`checksums: pinned`): the first trusted download pins, later downloads and verify
check against the pin; lookup order inline > recipe lock > user lock; --write-lock."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.errors import RecipeError
from climb_cli.pins import Pins, read_lock
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.base import RemoteFile
from climb_cli.verify import verify_raw
from tests.conftest import write_recipe
from tests.test_archives import _Server
from tests.test_auth import _env, climb_in_process

BLOBS = {"set.zip": b"PK-not-really-a-zip" * 1000, "notes.txt": b"first version\n"}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


@pytest.fixture
def server() -> object:
    with _Server(dict(BLOBS)) as srv:
        yield srv


def _settings(tmp_path: Path, name: str = "data") -> Settings:
    return Settings(data_dir=tmp_path / name, retries=2, backoff=0.01, backoff_max=0.05, read_timeout=2.0)


def _recipe(folder: Path, base: str, checksums: str = "pinned") -> Recipe:
    src = f"  - kind: test-archive-files\n    base: {base}\n    names: [set.zip, notes.txt]\n"
    path = write_recipe(folder, "toypin", src)
    path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([folder]).load("toypin")


def test_first_download_pins_and_a_changed_upstream_is_refused(tmp_path: Path, server: _Server) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path / "recipes", server.base_url)
    report = download(recipe, settings)
    assert report.ok and report.pinned == 2
    lock = settings.raw_dir("toypin") / ".climb" / "pins.tsv"
    lines = lock.read_text().splitlines()
    assert lines[0].startswith("# climb pins v1")
    assert lines[1:] == [
        f"{sha(BLOBS['notes.txt'])}\t{len(BLOBS['notes.txt'])}\tnotes.txt",
        f"{sha(BLOBS['set.zip'])}\t{len(BLOBS['set.zip'])}\tset.zip",
    ]
    assert download(recipe, settings).pinned == 0  # already pinned: nothing new
    # upstream silently changes notes.txt (same size); the local copy is gone
    server.blobs["notes.txt"] = b"second versio\n"
    (settings.raw_dir("toypin") / "notes.txt").unlink()
    report = download(recipe, settings)
    assert not report.ok and report.category == "failed"
    (failed,) = [o for o in report.outcomes if o.status == "failed"]
    assert failed.error.startswith("toypin: checksum mismatch for notes.txt from http://127.0.0.1:")
    assert f"its sha256 is pinned in {lock}" in failed.error and "\n" not in failed.error
    assert not (settings.raw_dir("toypin") / "notes.txt").exists()  # nothing under the final name
    assert not list((settings.raw_dir("toypin") / ".climb" / "partial").rglob("notes.txt.part"))


def test_verify_checks_files_against_their_pins(tmp_path: Path, server: _Server) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path / "recipes", server.base_url)
    assert download(recipe, settings).ok
    assert verify_raw(recipe, settings)[0].ok
    (settings.raw_dir("toypin") / "notes.txt").write_bytes(b"tampered text\n")
    rep, bad = verify_raw(recipe, settings)
    assert rep.corrupt == ["notes.txt"] and [rf.sha256 for _, rf in bad] == [sha(BLOBS["notes.txt"])]


def test_with_checksums_none_nothing_is_pinned(tmp_path: Path, server: _Server) -> None:
    settings = _settings(tmp_path)
    report = download(_recipe(tmp_path / "recipes", server.base_url, "none"), settings)
    assert report.ok and report.pinned == 0
    assert not (settings.raw_dir("toypin") / ".climb" / "pins.tsv").exists()


def test_under_upstream_files_that_came_without_a_sum_are_pinned(tmp_path: Path, server: _Server) -> None:
    """`checksums: upstream` and a server that gives no sum: the first download pins (was: nothing)."""
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path / "recipes", server.base_url, "upstream")
    report = download(recipe, settings)
    assert report.ok and report.pinned == 2
    (settings.raw_dir("toypin") / "notes.txt").write_bytes(b"tampered text\n")
    assert verify_raw(recipe, settings)[0].corrupt == ["notes.txt"]


def test_a_lock_beside_the_recipe_is_checked_by_a_fresh_machine(tmp_path: Path, server: _Server) -> None:
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, server.base_url)
    first = _settings(tmp_path, "machine1")
    assert download(recipe, first).ok
    written = Pins(recipe, first).write_lock(recipes)
    assert written == recipes / "toypin.lock"
    assert written.read_text() == (first.raw_dir("toypin") / ".climb" / "pins.tsv").read_text()
    recipe = Catalog([recipes]).load("toypin")
    # a second machine: the committed lock applies before anything is downloaded there
    server.blobs["set.zip"] = b"X" + BLOBS["set.zip"][1:]
    second = _settings(tmp_path, "machine2")
    report = download(recipe, second)
    assert not report.ok and f"pinned in {written}" in report.why
    assert not (second.raw_dir("toypin") / "set.zip").exists()
    assert (second.raw_dir("toypin") / "notes.txt").read_bytes() == BLOBS["notes.txt"]
    assert report.pinned == 0  # the recipe lock covers both files


def test_lookup_order_inline_then_recipe_lock_then_user_lock(tmp_path: Path, server: _Server) -> None:
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, server.base_url)
    settings = _settings(tmp_path)
    a, b, c = "a" * 64, "b" * 64, "c" * 64
    (recipes / "toypin.lock").write_text(f"{b}\t\tset.zip\n")
    user = settings.raw_dir("toypin") / ".climb" / "pins.tsv"
    user.parent.mkdir(parents=True)
    user.write_text(f"{c}\t5\tset.zip\n{c}\t14\tnotes.txt\n")
    pins = Pins(recipe, settings)
    (source,) = make_sources(recipe, settings)
    inline = RemoteFile("set.zip", "u", sha256=a)
    got = pins.apply(source, [inline, RemoteFile("set.zip", "u"), RemoteFile("notes.txt", "u")])
    assert [(f.sha256, f.size) for f in got] == [(a, None), (b, None), (c, 14)]
    assert pins.pinned_by(source, got[1]).origin == str(recipes / "toypin.lock")  # type: ignore[union-attr]


def test_a_malformed_lock_is_a_file_line_error(tmp_path: Path, server: _Server) -> None:
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, server.base_url)
    (recipes / "toypin.lock").write_text("# ok\nnot-a-sum\t1\tset.zip\n")
    with pytest.raises(RecipeError, match=r"toypin\.lock:2: expected 'sha256<TAB>size<TAB>path'"):
        read_lock(recipes / "toypin.lock")
    report = download(recipe, _settings(tmp_path))
    assert not report.ok and "toypin.lock:2:" in report.why


def test_write_lock_from_the_command_line(tmp_path: Path) -> None:
    """A manual dataset under checksums: pinned: placed files are pinned at first sight."""
    src = (
        "  - kind: manual\n    url: https://example.org/request\n    files: [{path: a.csv}, {path: b.csv}]\n"
    )
    recipes = tmp_path / "recipes"
    path = write_recipe(recipes, "toyman", src)
    path.write_text(path.read_text().replace("checksums: upstream", "checksums: pinned"))
    raw = tmp_path / "data" / "raw" / "toyman"
    raw.mkdir(parents=True)
    (raw / "a.csv").write_text("1\n")
    (raw / "b.csv").write_text("2\n")
    out = tmp_path / "locks"
    out.mkdir()
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes), "download", "toyman"]
    env = _env(tmp_path)
    r = climb_in_process(*args, "--write-lock", str(out), env=env)
    assert r.returncode == 0, r.stderr
    assert "2 sum(s) pinned" in r.stdout
    assert f"toyman: pins written to {out / 'toyman.lock'}" in r.stdout
    pins = read_lock(out / "toyman.lock")
    assert {k: p.sha256 for k, p in pins.items()} == {"a.csv": sha(b"1\n"), "b.csv": sha(b"2\n")}
    (raw / "b.csv").write_text("3\n")  # a placed file changes after it was pinned
    r = climb_in_process(*args, env=env)
    pinned = sha(b"2\n")
    assert r.returncode == 1
    assert "replace: b.csv: sha256 " in r.stdout and f"expected {pinned} (pinned in " in r.stdout
