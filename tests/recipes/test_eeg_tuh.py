"""TUEV (placed by hand, as its manual source says): TUH-style EDFs with their .rec event files in the
release's train/eval layout -> one row per event with its class, 5 s around the event."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyedflib
import pytest

from climb_cli.catalog import Catalog
from climb_cli.errors import ItemError
from climb_cli.steps.eeg import read_tuh_rec
from tests.conftest import fast_settings
from tests.recipes.conftest import build, packaged, rewritten

TEN_TWENTY = ["FP1", "FP2", "F3", "F4", "C3", "C4", "P3", "P4", "O1", "O2", "F7", "F8", "T3", "T4", "T5",
              "T6", "FZ", "CZ", "PZ"]  # fmt: skip


def write_tuh_edf(path: Path, seconds: int, rng: np.random.Generator, fs: int = 250) -> None:
    """A plain EDF (not EDF+) as TUH ships them: 'EEG <electrode>-REF' channels plus extras, 250 Hz."""
    labels = [f"EEG {c}-REF" for c in TEN_TWENTY] + ["EEG EKG1-REF", "PHOTIC-REF"]
    path.parent.mkdir(parents=True, exist_ok=True)
    w = pyedflib.EdfWriter(str(path), len(labels), file_type=pyedflib.FILETYPE_EDF)
    w.setSignalHeaders([{"label": lab, "dimension": "uV", "sample_frequency": fs, "physical_min": -3000.0,
                         "physical_max": 3000.0, "digital_min": -32768, "digital_max": 32767,
                         "prefilter": "HP:0.000 Hz LP:0.0 Hz N:0.0"} for lab in labels])  # fmt: skip
    w.writeSamples([rng.normal(0, 20, seconds * fs) for _ in labels])
    w.close()


RECS = {
    "train/aaaaaaav/aaaaaaav_00000001": "13,10.0000,11.0000,6\n2,10.0000,11.0000,1\n0,20.5000,21.5000,4\n"
    "5,0.5000,1.5000,5\n",  # the last one's window starts before the recording: not cut, counted
    "eval/00000254/00000254_00000002": "1,5.0000,6.0000,2\n3,12.0000,13.0000,3\n",
}


def test_tuev_event_rows_with_classes_channels_and_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("tuev")
    for stem, rec in RECS.items():
        write_tuh_edf(raw / "edf" / f"{stem}.edf", 24, rng)
        (raw / "edf" / f"{stem}.rec").write_text(rec)
    data = packaged("tuev")
    data["sources"][0]["globs"] = [
        {"pattern": "edf/**/*.edf", "count": 2},
        {"pattern": "edf/**/*.rec", "count": 2},
    ]
    rows, manifest = build(rewritten(tmp_path, data), settings)
    got = [(r["id"], r["split"], r["labels"], r["epoch_channels"], r["epoch_onsets"]) for r in rows]
    assert got == [
        ("00000254_00000002#0", "test", ["gped"], 1, 5.0),
        ("00000254_00000002#1", "test", ["pled"], 3, 12.0),
        ("aaaaaaav_00000001#0", "train", ["bckg"], 13, 10.0),
        ("aaaaaaav_00000001#1", "train", ["spsw"], 2, 10.0),
        ("aaaaaaav_00000001#2", "train", ["eyem"], 0, 20.5),
    ]
    for r in rows:
        assert r["epochs_shape"] == [19, 1000]  # 19 channels, 5 s at 200 Hz
        assert r["epochs_dropped"] == (1 if r["id"].startswith("aaaaaaav") else 0)
    assert manifest["classes"] == {"spsw": 1, "gped": 1, "pled": 1, "eyem": 1, "artf": 0, "bckg": 1}


def test_rec_lines_are_read_and_bad_lines_name_file_and_line(tmp_path: Path) -> None:
    rec = tmp_path / "x.rec"
    rec.write_text("13,90.4000,91.4000,6\n\n0,1.0,2.0,1\n")
    got = read_tuh_rec(rec)
    assert got == {"onset": [90.4, 1.0], "duration": [pytest.approx(1.0), 1.0], "text": ["6", "1"],
                   "channel": [13, 0]}  # fmt: skip
    rec.write_text("13,90.4,91.4,6\n13;90.4;91.4;6\n")
    with pytest.raises(ItemError, match=r"x.rec:2: not a .rec event line"):
        read_tuh_rec(rec)


def test_iiic_stays_manual_with_dataset_info_identity() -> None:
    recipe = Catalog().load("iiic")
    assert [s.kind for s in recipe.sources] == ["manual"]
    assert "BDSP Restricted Health Data License" in recipe.license and recipe.samples == 134450
