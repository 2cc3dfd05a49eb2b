"""`climb report` and `climb demo`'s report: pages written where asked and printed, the same data giving
the same bytes (across processes and output folders), --no-samples, secrets scrubbed."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from climb_cli.redaction import register
from climb_cli.report import write_reports
from climb_cli.settings import Settings
from tests.conftest import TEST_PASSWORD, run_climb
from tests.report.conftest import Demo, Mini, parse_page


def _digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.html"))}


def test_demo_ends_by_writing_its_report_and_printing_its_path(demo: Demo) -> None:
    last = demo.stdout.strip().splitlines()[-2:]
    assert last[0].startswith(f"report: {demo.page} ") and str(demo.index) in last[0]
    assert last[1].startswith("demo OK")
    tree = parse_page(demo.page.read_text())
    assert tree.find(".//h1").text.startswith("PTB-XL")
    # the demo checks its outputs against the generated counts: every count is as expected
    page = demo.page.read_text()
    assert "⚠" not in page and page.count("= expected") >= 3
    assert (demo.index.parent / "index.html").is_file()


def test_cli_writes_every_page_and_prints_where(minis: Mini, tmp_path: Path) -> None:
    out = tmp_path / "reports"
    args = ["--data-dir", str(minis.settings.data_dir), "--recipes", str(minis.recipe_dir), "report"]
    proc = run_climb(*args, "mini-image", "mini-video", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"mini-image: {out / 'mini-image.html'}",
        f"mini-video: {out / 'mini-video.html'}",
        f"index: {out / 'index.html'}",
    ]
    index = (out / "index.html").read_text()
    # the index covers the corpus (every recipe, the packaged PTB-XL too) and links the pages written
    for name in ("mini-image", "mini-video", "mini-volume", "ptbxl_superdiagnostic"):
        assert f">{name}<" in index
    assert 'href="mini-image.html"' in index and 'href="mini-volume.html"' not in index
    bad = run_climb(*args, "no-such-set", "--out", str(out))
    assert bad.returncode == 2 and "no recipe named 'no-such-set'" in bad.stderr
    assert run_climb(*args, "--out", str(out)).returncode == 2  # neither names nor --all


def test_default_folder_is_reports_in_the_data_dir(minis: Mini, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    shutil.copytree(minis.settings.data_dir, settings.data_dir)
    written = write_reports([minis.recipes["mini-video"]], settings)
    assert written.index == settings.data_dir / "reports" / "index.html"
    assert written.pages == {"mini-video": settings.data_dir / "reports" / "mini-video.html"}


def test_same_data_same_bytes_across_processes_and_folders(minis: Mini, tmp_path: Path) -> None:
    args = ["--data-dir", str(minis.settings.data_dir), "--recipes", str(minis.recipe_dir), "report", "--all"]
    runs = []
    for k, seed in enumerate(("1", "977")):  # another hash seed: no set or dict order leaks into a page
        out = tmp_path / f"run{k}"
        proc = run_climb(*args, "--out", str(out), env={"PYTHONHASHSEED": seed, "TZ": "Pacific/Auckland"})
        assert proc.returncode == 0, proc.stderr
        runs.append(_digests(out))
    from climb_cli.catalog import Catalog

    pages = len(Catalog([minis.recipe_dir]).names()) + 1  # the minis, the packaged recipes, the index
    assert runs[0] == runs[1] and len(runs[0]) == pages
    again = write_reports(list(minis.recipes.values()), minis.settings, tmp_path / "lib")
    assert _digests(again.index.parent)["mini-volume.html"] == runs[0]["mini-volume.html"]


def test_no_samples_shows_no_image_trace_or_row(minis: Mini, demo: Demo, tmp_path: Path) -> None:
    written = write_reports(list(minis.recipes.values()), minis.settings, tmp_path, samples=False)
    demo_settings = Settings(data_dir=demo.data_dir / "demo")
    from climb_cli.catalog import Catalog

    ecg = write_reports(
        [Catalog().load("ptbxl_superdiagnostic")], demo_settings, tmp_path / "ecg", samples=False
    )
    for page in [*written.pages.values(), *ecg.pages.values()]:
        text = page.read_text()
        tree = parse_page(text)
        assert tree.findall(".//img") == [] and "<polyline" not in text and tree.find(".//figure") is None
        assert "written with <code>--no-samples</code>" in text
        assert "on disk" in text  # the counts are still there


def test_secrets_in_failure_reasons_are_scrubbed(minis: Mini, tmp_path: Path) -> None:
    r = minis.recipes["mini-image"]
    settings = Settings(data_dir=tmp_path / "data")
    shutil.copytree(minis.settings.processed_dir(r.name), settings.processed_dir(r.name))
    errors = settings.processed_dir(r.name) / r.content_hash() / "errors.parquet"
    reason = f"download failed: https://host/file?token={TEST_PASSWORD}"
    pq.write_table(pa.table({"id": ["x"], "split": ["train"], "reason": [reason]}), errors)
    register(TEST_PASSWORD)
    page = write_reports([r], settings, tmp_path / "out").pages[r.name].read_text()
    assert TEST_PASSWORD not in page and "token=***" in page


def test_pages_are_self_contained(minis: Mini, demo: Demo) -> None:
    pages = [*sorted(demo.page.parent.glob("*.html"))]
    out = write_reports(list(minis.recipes.values()), minis.settings, minis.settings.data_dir / "self")
    pages += [*out.pages.values(), out.index]
    for page in pages:
        text = page.read_text()
        tree = parse_page(text)
        assert (
            tree.findall(".//script") == []
            and tree.findall(".//link") == []
            and tree.find(".//iframe") is None
        )
        assert all(img.get("src", "").startswith("data:image/png;base64,") for img in tree.iter("img"))
        assert not re.search(r"url\(|@import|src=\"http", text)
        assert os.fspath(minis.settings.data_dir) not in text and os.fspath(demo.data_dir) not in text


def test_damaged_outputs_are_reported_not_fatal(minis: Mini, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    shutil.copytree(minis.settings.data_dir, settings.data_dir)
    image, video = minis.recipes["mini-image"], minis.recipes["mini-video"]
    img_out = settings.processed_dir(image.name) / image.content_hash()
    (img_out / "data" / "test-00000.parquet").write_bytes(b"PAR1 truncated")
    (img_out / "errors.parquet").write_bytes(b"not parquet")
    (settings.processed_dir(video.name) / video.content_hash() / "manifest.json").write_text("{not json")
    out = write_reports([image, video], settings, tmp_path / "out")
    page = parse_page(out.pages[image.name].read_text())
    body = "".join(page.find(".//main").itertext())
    assert "The shards could not be read" in body and "climb verify --outputs mini-image" in body
    assert len(page.findall(".//figure")) == 1  # the train row drawn before the damaged test shard
    assert "errors.parquet cannot be read" in body
    index = "".join(parse_page(out.index.read_text()).itertext())
    assert "manifest.json unreadable: run climb preprocess mini-video" in index


def test_an_unwritable_out_folder_is_one_clear_line(minis: Mini, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    args = ["--data-dir", str(minis.settings.data_dir), "--recipes", str(minis.recipe_dir), "report"]
    proc = run_climb(*args, "mini-video", "--out", str(blocker / "reports"))
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [
        f"climb: error: cannot write reports into {blocker / 'reports'}: Not a directory; "
        "choose a folder with --out"
    ]
