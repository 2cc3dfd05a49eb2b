"""Gathering a dataset's facts: counts against expectations, failed items grouped by kind, the raw
manifest read without writing, states from nothing on disk to outputs of an older recipe."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from climb_cli.manifest import Entry, RawManifest
from climb_cli.report.gather import Count, _reason_kind, gather, raw_facts
from climb_cli.settings import Settings
from tests.report.conftest import Mini


@pytest.mark.parametrize(
    ("actual", "expected", "tol", "differs"),
    [
        (100, 100, 0.0, False),
        (99, 100, 0.0, True),
        (99, 100, 0.01, False),
        (98, 100, 0.01, True),
        (None, 5, 0, False),
    ],
)
def test_a_count_differs_outside_the_tolerance(
    actual: int | None, expected: int, tol: float, differs: bool
) -> None:
    assert Count("x", actual, expected, tol).differs is differs


def test_counts_failures_and_problems_of_a_processed_dataset(minis: Mini) -> None:
    f = gather(minis.recipes["mini-image"], minis.settings)
    assert f.state == "processed" and f.outputs.rows == 5
    assert [(c.name, c.actual, c.expected) for c in f.splits] == [("train", 3, 3), ("test", 2, 2)]
    assert [(c.name, c.actual, c.expected, c.differs) for c in f.classes] == [
        ("circle", 3, 3, False),
        ("square", 2, 3, True),
    ]
    assert f.errors.count == 1 and f.errors.listed[0][:2] == ("broken", "train")
    assert "not a decodable image" in f.errors.listed[0][2]
    assert f.raw is not None and f.raw.files == 6 and not f.raw.recorded  # placed by hand, not recorded
    assert f.problems == [
        "1 failed item(s)",
        "1 count(s) differ from expected: square",
        "raw files not recorded: run climb download",
    ]


def test_failures_are_grouped_by_kind_without_file_names_or_numbers() -> None:
    steps = {"image.read", "ecg.read_wfdb"}
    a = _reason_kind("scans/a.png: not a decodable image (240 bytes)", steps)
    b = _reason_kind("b.png: not a decodable image (17 bytes)", steps)
    assert a == b == "not a decodable image (# bytes)"
    assert _reason_kind("image.read: ValueError: bad", steps) == "image.read: ValueError: bad"


def test_nothing_on_disk(tmp_path: Path, minis: Mini) -> None:
    f = gather(minis.recipes["mini-video"], Settings(data_dir=tmp_path))
    assert f.state == "not downloaded" and f.raw is None and f.problems == []
    assert [(c.name, c.actual, c.expected) for c in f.splits] == [("train", None, 2), ("test", None, 1)]


def test_outputs_of_an_older_recipe_are_named(tmp_path: Path, minis: Mini) -> None:
    r = minis.recipes["mini-video"]
    settings = Settings(data_dir=tmp_path)
    shutil.copytree(minis.settings.processed_dir(r.name), settings.processed_dir(r.name))
    old = settings.processed_dir(r.name) / r.content_hash()
    old.rename(old.with_name("0123456789abcdef"))
    f = gather(r, settings)
    assert f.state == "processed (older recipe)" and f.outputs.other_hashes == ["0123456789abcdef"]
    assert "outputs are from an older recipe: run climb preprocess" in f.problems


def test_the_raw_manifest_is_read_without_writing_anything(tmp_path: Path) -> None:
    raw = tmp_path / "raw" / "x"
    with RawManifest.for_dataset(raw) as m:
        m.put_batch(
            [
                Entry("a.dat", 10, 1, "0" * 64, verified_at=1_700_000_000.0),
                Entry("b.dat", 32, 1, "1" * 64, verified_at=1_700_000_100.0),
                Entry("c.dat", 5, 1, "2" * 64),
            ]
        )
    folder = raw / ".climb"
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    facts = raw_facts(raw)
    after = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    assert before == after  # no -wal / -shm created, nothing rewritten
    assert facts is not None and (facts.files, facts.bytes, facts.verified) == (3, 47, 2)
    assert facts.last_verified == 1_700_000_100.0 and facts.recorded


def test_the_report_flags_what_verify_outputs_reports(minis: Mini) -> None:
    from climb_cli.verify import verify_outputs

    flagged = {}
    for name, r in minis.recipes.items():
        f = gather(r, minis.settings)
        flagged[name] = {c.name for c in (*f.splits, *f.classes) if c.differs}
        problems = verify_outputs(r, minis.settings).problems
        assert flagged[name] == {
            p.split()[1].rstrip(":") for p in problems if p.startswith(("split ", "class "))
        }
    assert flagged == {"mini-image": {"square"}, "mini-video": set(), "mini-volume": set()}
