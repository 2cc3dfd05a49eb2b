"""The pages' content, read back from the parsed HTML: counts beside expectations with differences
flagged, one thumbnail of the right kind per sample shown, failed items, steps, provenance, the corpus
index with its totals, and values escaped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from climb_cli.report import write_reports
from climb_cli.report.gather import gather
from climb_cli.report.render import dataset_page
from tests.report.conftest import Demo, Mini, parse_page


@pytest.fixture(scope="module")
def pages(minis: Mini, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    out = write_reports(list(minis.recipes.values()), minis.settings, tmp_path_factory.mktemp("pages"))
    trees = {name: parse_page(p.read_text()) for name, p in out.pages.items()}
    trees["index"] = parse_page(out.index.read_text())
    return trees


def text(el: Any) -> str:
    return "".join(el.itertext())


def count_rows(tree: Any, header: str) -> dict[str, list[str]]:
    """The rows of the count table whose first column is `header`: name -> [on disk, expected, diff]."""
    for table in tree.iter("table"):
        heads = [text(th) for th in table.iter("th")]
        if heads and heads[0] == header:
            rows = {}
            for tr in table.find("tbody"):
                cells = [text(td).strip() for td in tr]
                rows[cells[0]] = [cells[2], cells[3], cells[4]]
            return rows
    raise AssertionError(f"no table headed {header!r}")


def figures(tree: Any) -> list[Any]:
    return tree.findall(".//figure")


def test_image_page(pages: dict[str, Any]) -> None:
    tree = pages["mini-image"]
    assert count_rows(tree, "split") == {
        "train": ["3", "3", "= expected"],
        "test": ["2", "2", "= expected"],
    }
    assert count_rows(tree, "class") == {
        "circle": ["3", "3", "= expected"],
        "square": ["2", "3", "⚠ -1 (-33.3%)"],
    }
    figs = figures(tree)
    assert len(figs) == 5 and all(f.get("class") == "image" and len(f.findall(".//img")) == 1 for f in figs)
    body = text(tree.find(".//main"))
    assert "Showing 5 of 5 samples" in body and "never shows more than 6" in body
    assert "1 item(s) failed" in body and "broken" in body and "not a decodable image" in body
    assert "image.read" in body and "mode: rgb" in body and "long_side: 48" in body


def test_volume_page_has_three_planes_per_sample(pages: dict[str, Any], minis: Mini) -> None:
    tree = pages["mini-volume"]
    figs = figures(tree)
    assert len(figs) == 3
    for f in figs:
        assert f.get("class") == "volume"
        assert [i.get("alt") for i in f.findall(".//img")] == ["axial", "coronal", "sagittal"]
    body = text(tree.find(".//main"))
    r = minis.recipes["mini-volume"]
    manifest = json.loads(
        (minis.settings.processed_dir(r.name) / r.content_hash() / "manifest.json").read_text()
    )
    assert r.content_hash() in body and manifest["input_digest"] in body and manifest["climb_version"] in body
    assert "Every item was processed." in body and "credentialed" in body


def test_video_page_has_a_strip_of_frames(pages: dict[str, Any]) -> None:
    figs = figures(pages["mini-video"])
    assert len(figs) == 3
    for f in figs:
        assert f.get("class") == "video" and len(f.findall(".//img")) == 5
        assert "frames 1, 3, 5, 6, 8 of 8" in text(f)


def test_demo_page_has_ecg_traces_and_its_counts(demo: Demo) -> None:
    tree = parse_page(demo.page.read_text())
    manifest = json.loads(
        next(
            (demo.data_dir / "demo" / "processed" / "ptbxl_superdiagnostic").glob("*/manifest.json")
        ).read_text()
    )
    splits = count_rows(tree, "split")
    assert {k: int(v[0]) for k, v in splits.items()} == manifest["splits"]
    classes = count_rows(tree, "class")
    assert {k: int(v[0]) for k, v in classes.items()} == manifest["classes"]
    figs = figures(tree)
    assert len(figs) == min(6, sum(manifest["splits"].values()))
    for f in figs:
        assert f.get("class") == "signal" and sum(e.tag.endswith("polyline") for e in f.iter()) == 3
        assert "3 of 12 channels, first 10 s at 500 Hz" in text(f)
    body = text(tree.find(".//main"))
    assert "physionet" in body and "CC-BY-4.0" in body and "Wagner P" in body
    assert "all verified" in body  # the demo ran climb verify: the raw manifest says when


def test_index_rows_and_totals(pages: dict[str, Any]) -> None:
    tree = pages["index"]
    table = tree.find(".//table[@class='corpus']")
    rows = {text(tr[0]).split("Miniature")[0]: [text(td).strip() for td in tr] for tr in table.find("tbody")}
    assert set(rows) == {"mini-image", "mini-video", "mini-volume"}
    assert rows["mini-image"][1:5] == ["image", "manual", "open", "processed"]
    assert rows["mini-image"][6] == "5" and "1 failed item(s)" in rows["mini-image"][7]
    assert rows["mini-volume"][3] == "credentialed"
    foot = [text(th) for th in table.find("tfoot").iter("th")]
    assert foot[0] == "total" and foot[6] == "11"
    body = text(tree.find(".//main"))
    assert "of 19.01 TB" in body and "11 of 4.51 M (< 0.01%)" in body
    assert [a.get("href") for a in table.iter("a")] == [
        "mini-image.html",
        "mini-video.html",
        "mini-volume.html",
    ]


def test_values_are_escaped(minis: Mini) -> None:
    r = minis.recipes["mini-video"]
    evil = r.model_copy(update={"title": "<script>alert(1)</script>", "notes": "a & b <b>"})
    page = dataset_page(gather(evil, minis.settings), None, shown=False, data_dir=minis.settings.data_dir)
    tree = parse_page(page)
    assert tree.find(".//script") is None and text(tree.find(".//h1")) == "<script>alert(1)</script>"
    assert "a &amp; b &lt;b&gt;" in page


def test_a_dataset_not_downloaded_says_so(minis: Mini, tmp_path: Path) -> None:
    from climb_cli.settings import Settings

    empty = Settings(data_dir=tmp_path)
    out = write_reports([minis.recipes["mini-video"]], empty, tmp_path / "out")
    tree = parse_page(out.pages["mini-video"].read_text())
    body = text(tree.find(".//main"))
    assert "not downloaded" in body and "No processed samples yet." in body and "Not processed yet." in body
    assert count_rows(tree, "split") == {"train": ["—", "2", "—"], "test": ["—", "1", "—"]}


def test_tables_and_text_are_shown_as_a_few_rows(minis: Mini) -> None:
    import numpy as np

    from climb_cli.report.thumbs import Samples, thumb

    rows = [
        {
            "id": "p1",
            "split": "train",
            "labels": ["yes"],
            "age": "61",
            "values": np.arange(3.0),
            "text": "Chest pain.",
        },
        {
            "id": "p2",
            "split": "test",
            "labels": [],
            "age": "47",
            "values": np.arange(3.0),
            "text": "No finding.",
        },
    ]
    facts = gather(minis.recipes["mini-video"], minis.settings)
    page = dataset_page(facts, Samples([thumb(r) for r in rows], 2), shown=True, data_dir=Path("/"))
    table = parse_page(page).find(".//table[@class='rows']")
    assert [text(th) for th in table.iter("th")] == ["id", "split", "labels", "age", "values", "text"]
    assert [[text(td) for td in tr] for tr in table.find("tbody")] == [
        ["p1", "train", "yes", "61", "0, 1, 2", "Chest pain."],
        ["p2", "test", "", "47", "0, 1, 2", "No finding."],
    ]
