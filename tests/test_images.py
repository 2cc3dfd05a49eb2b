"""The images stage (`climb download NAME --stage images`, climb_cli/images.py) against a fake image host on
127.0.0.1: URLs ranked by score from a build's outputs and cut at `top`, images written under hashed names,
dead links (404, 410, a body too slow, not an image, too large) counted and listed but not fatal, no
credential sent (not even one inside a URL), and a rerun that fetches nothing new."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from climb_cli.catalog import Catalog
from climb_cli.images import fetch_images, image_kind, without_userinfo
from climb_cli.pipeline import preprocess
from climb_cli.settings import Settings
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.fakes.image_host import FakeImageHost
from tests.test_auth import climb_in_process

TOY = """name: toyimg
title: toy caption table
modality: pretrain
license: test
access: open
sources:
  - {id: data, kind: manual, instructions: place captions.parquet, files: [{path: captions.parquet}]}
checksums: pinned
index:
  table: {path: captions.parquet}
  id: key
  inputs: {table: captions.parquet}
  split: {fixed: train}
  keep: [url, caption, similarity]
images: {url_column: url, rank_by: similarity, top: TOP, max_bytes: 4000, connections: 4, per_host: 40,
         timeout: 1.5}
"""


def _jpeg(seed: int) -> bytes:
    img = np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", img)[1].tobytes()


def _png(seed: int) -> bytes:
    return cv2.imencode(".png", np.full((4, 4), seed, dtype=np.uint8))[1].tobytes()


@pytest.fixture
def host() -> FakeImageHost:
    images = {
        "/a.jpg": (200, "image/jpeg", _jpeg(1)),
        "/b": (200, "application/octet-stream", _png(2)),  # no extension, an image all the same
        "/c.jpg": (200, "image/jpeg", _jpeg(3)),
        "/gone.jpg": (410, "text/html", b"gone"),
        "/page.jpg": (200, "text/html", b"<html>an ad, not an image</html>"),
        "/huge.jpg": (200, "image/jpeg", b"\xff\xd8\xff" + os.urandom(5000)),
        "/moved.jpg": (302, "", b"/a.jpg"),
        "/low.jpg": (200, "image/jpeg", _jpeg(9)),
    }
    with FakeImageHost(images, slow={"/slow.jpg": _jpeg(4)}) as fake:
        yield fake


def _build(tmp_path: Path, base: str, top: int = 8) -> tuple[Settings, object, list[str]]:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "toyimg.yaml").write_text(TOY.replace("TOP", str(top)))
    recipe = Catalog([folder]).load("toyimg")
    settings = fast_settings(tmp_path)
    port = base.rsplit(":", 1)[1]
    rows = [  # (path, score); /low.jpg ranks last and falls outside top 8
        (f"http://user:pw-secret@127.0.0.1:{port}/a.jpg", 0.9), ("/b", 0.8), ("/c.jpg", 0.7),
        ("/missing.jpg", 0.66), ("/gone.jpg", 0.65), ("/page.jpg", 0.6), ("/slow.jpg", 0.55),
        ("/huge.jpg", 0.5), ("/low.jpg", 0.1), ("/a.jpg", 0.2),
    ]  # fmt: skip
    urls = [u if u.startswith("http") else base + u for u, _ in rows]
    raw = settings.raw_dir("toyimg")
    raw.mkdir(parents=True)
    pq.write_table(pa.table({"key": [f"k{i}" for i in range(len(rows))], "url": urls,
                             "caption": ["x"] * len(rows), "similarity": [str(s) for _, s in rows]}),
                   raw / "captions.parquet")  # fmt: skip
    assert preprocess(recipe, settings, workers=1).errors == 0
    return settings, recipe, urls


def test_dead_links_are_counted_listed_and_not_fatal_and_a_rerun_fetches_nothing(
    tmp_path: Path, host: FakeImageHost
) -> None:
    settings, recipe, urls = _build(tmp_path, host.base_url)
    rep = fetch_images(recipe, settings)
    assert rep.wanted == 8 and rep.fetched == 3
    assert dict(rep.dead) == {"HTTP 404": 1, "HTTP 410": 1, "not an image": 1, "timeout": 1, "too large": 1}
    raw = settings.raw_dir("toyimg")
    for url, data, ext in [(urls[0], _jpeg(1), "jpg"), (urls[1], _png(2), "png"), (urls[2], _jpeg(3), "jpg")]:
        key = hashlib.sha256(url.encode()).hexdigest()
        assert (raw / "images" / key[:2] / f"{key}.{ext}").read_bytes() == data
    # the URL with user:pw@ was fetched without them; no request carried a credential
    assert not any(r.had_authorization or r.cookies for r in host.log)
    assert not host.requests_for("/low.jpg")  # outside the top 8
    dead = (raw / "images" / "dead.tsv").read_text().splitlines()
    assert dead[0] == "reason\turl" and len(dead) == 6 and f"HTTP 404\t{host.base_url}/missing.jpg" in dead
    manifest = json.loads((raw / "images" / "manifest.json").read_text())
    assert manifest["present"] == 3 and sum(manifest["dead"].values()) == 5 and manifest["top"] == 8
    assert not list((raw / "images").rglob("*.tmp*")) and not list((raw / "images").rglob(".*"))
    report, _ = verify_raw(recipe, settings)
    assert report.ok, report.as_dict()  # images: checked against their recorded sums, not "unexpected"
    victim = next((raw / "images").rglob("*.png"))
    victim.write_bytes(b"\x89PNG\r\n\x1a\n changed")
    report, _ = verify_raw(recipe, settings)
    assert report.corrupt == [victim.relative_to(raw).as_posix()] and not report.unexpected
    victim.unlink()
    before = len(host.log)
    again = fetch_images(recipe, settings)
    assert (again.fetched, again.already, sum(again.dead.values())) == (1, 2, 5)  # the deleted one again
    again = fetch_images(recipe, settings)
    assert (again.fetched, again.already, sum(again.dead.values())) == (0, 3, 5)
    assert len(host.log) == before + 1  # nothing new asked after that


def test_the_cli_stage_prints_one_summary_line_and_exits_0_with_dead_links(
    tmp_path: Path, host: FakeImageHost
) -> None:
    settings, _, _ = _build(tmp_path, host.base_url, top=3)
    env = {
        "CLIMB_DATA": str(settings.data_dir),
        "CLIMB_RECIPES": str(tmp_path / "recipes"),
        "PATH": os.environ["PATH"],
    }
    run = climb_in_process("download", "toyimg", "--stage", "images", env=env)
    assert run.returncode == 0, run.stderr
    assert "toyimg images: 3 wanted, 3 fetched, 0 already there, 0 dead, 0 failed" in run.stdout
    run = climb_in_process("download", "toyimg", "--stage", "images", env=env)
    assert "3 wanted, 0 fetched, 3 already there" in run.stdout


def test_no_outputs_yet_is_one_line(tmp_path: Path) -> None:
    folder = tmp_path / "recipes"
    folder.mkdir()
    (folder / "toyimg.yaml").write_text(TOY.replace("TOP", "5"))
    recipe = Catalog([folder]).load("toyimg")
    with pytest.raises(Exception, match="run `climb preprocess toyimg` first"):
        fetch_images(recipe, fast_settings(tmp_path))


def test_helpers() -> None:
    assert image_kind(_jpeg(0)) == "jpg" and image_kind(_png(0)) == "png"
    assert image_kind(b"RIFF\0\0\0\0WEBPVP8 ") == "webp" and image_kind(b"<html>") is None
    assert without_userinfo("https://u:p@h.example:8/x?y=1") == "https://h.example:8/x?y=1"
