"""Tests of gait.read_tsv on HuGaDB-shaped files written here (the real files need a manual download):
metadata lines, 38 sensor columns + `act`, per-sample and windowed labels, class merging, unit conversion
and malformed tables.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, registry

PARTS = ["rf", "rs", "rt", "lf", "ls", "lt"]
SENSORS = [f"{kind}_{part}_{axis}" for part in PARTS for kind in ("acc", "gyro") for axis in "xyz"]
COLUMNS = SENSORS + ["EMG_r", "EMG_l", "act"]


def run(sample: Sample, name: str, **params: Any) -> Sample:
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def hugadb_file(path: Path, acts: list[int], seed: int = 0) -> tuple[Path, np.ndarray]:
    """A HuGaDB v2-shaped recording: 3 metadata lines, a header row, int16 IMU, uint8 EMG, activity IDs."""
    rng = np.random.default_rng(seed)
    n = len(acts)
    imu = rng.integers(-32768, 32767, size=(n, 36))
    emg = rng.integers(0, 255, size=(n, 2))
    data = np.column_stack([imu, emg, np.asarray(acts)])
    lines = ["#Activity\twalking running", "#ActivityID\t1 2", "#Date 08-22-14-24", "\t".join(COLUMNS)]
    lines += ["\t".join(str(int(v)) for v in row) for row in data]
    path.write_text("\n".join(lines) + "\n")
    return path, data[:, :38].T.astype(np.float64)


def read(path: Path, **params: Any) -> Sample:
    return run(Sample(id=path.stem, inputs={"recording": path}), "gait.read_tsv", **params)


def test_registered_with_docs() -> None:
    definition = registry()["gait.read_tsv"]
    assert definition.doc
    assert all(f.description for f in definition.params.model_fields.values())


def test_read_hugadb_file_signal_channels_and_per_sample_labels(tmp_path: Path) -> None:
    acts = [1] * 100 + [2] * 50 + [1] * 30
    path, expected = hugadb_file(tmp_path / "HuGaDB_v2_various_01_00.txt", acts)
    s = read(path)
    x = s.arrays["signal"]
    assert x.shape == (38, 180) and x.dtype == np.float32
    assert np.array_equal(x, expected)  # int16 / uint8 values are exact in float32
    assert s.meta["channel_names"] == SENSORS + ["EMG_r", "EMG_l"]
    assert s.meta["units"] == ["adu"] * 38
    assert s.meta["sampling_rate"] == 58.8
    assert s.meta["header_activities"] == ["walking", "running"]
    assert s.meta["activity_ids"] == [1, 2]
    assert s.meta["activities"] == ["Walking", "Running"]
    assert len(s.meta["activity_classes"]) == 12
    act = s.arrays["activity"]
    assert act.shape == (180,) and act.dtype == np.int16
    assert np.array_equal(act, np.array(acts) - 1)  # class index = ID - 1 for the default classes
    assert s.sources == [path]


def test_physical_units_from_hugadb_full_scales(tmp_path: Path) -> None:
    path, raw = hugadb_file(tmp_path / "r.txt", [8] * 20)
    s = read(path, physical=True, dtype="float64")
    names = s.meta["channel_names"]
    acc, gyro, emg = names.index("acc_rt_z"), names.index("gyro_lf_x"), names.index("EMG_l")
    assert np.allclose(s.arrays["signal"][acc], raw[acc] * 2 / 32768)
    assert np.allclose(s.arrays["signal"][gyro], raw[gyro] * 2000 / 32768)
    assert np.array_equal(s.arrays["signal"][emg], raw[emg])
    assert (s.meta["units"][acc], s.meta["units"][gyro], s.meta["units"][emg]) == ("g", "deg/s", "adu")


def test_windows_count_majority_labels_and_purity(tmp_path: Path) -> None:
    acts = [1] * 120 + [4] * 180  # 300 samples
    path, raw = hugadb_file(tmp_path / "w.txt", acts)
    s = read(path, labels="windows", window=100, stride=50)
    count = (300 - 100) // 50 + 1
    assert s.arrays["windows"].shape == (count, 38, 100)
    assert s.meta["window_starts"] == [0, 50, 100, 150, 200]
    # window 100..199 holds 20 Walking and 80 Going Down samples
    assert s.meta["window_labels"] == ["Walking", "Walking", "Going Down", "Going Down", "Going Down"]
    assert np.array_equal(s.arrays["windows"][2], raw[:, 100:200])
    assert "signal" not in s.arrays
    pure = read(path, labels="windows", window=100, stride=50, min_purity=1.0)
    assert pure.meta["window_starts"] == [0, 150, 200]
    assert pure.meta["windows_dropped"] == 2


def test_merge_classes_and_unknown_ids(tmp_path: Path) -> None:
    path, _ = hugadb_file(tmp_path / "m.txt", [3] * 10 + [4] * 10 + [13] * 5)
    s = read(path, merge={"Going Up": "Stairs", "Going Down": "Stairs"})
    classes = s.meta["activity_classes"]
    assert len(classes) == 11 and classes[2] == "Stairs"
    assert s.meta["activities"] == ["Stairs"]
    assert s.meta["activity_ids"] == [3, 4, 13]
    assert s.meta["unknown_samples"] == 5
    assert np.array_equal(s.arrays["activity"], [2] * 20 + [-1] * 5)


def test_malformed_tables_are_item_errors(tmp_path: Path) -> None:
    path, _ = hugadb_file(tmp_path / "bad.txt", [1] * 5)
    lines = path.read_text().splitlines()
    fields = lines[6].split("\t")
    fields[3] = "oops"  # third data row (after 3 metadata lines and the header), column gyro_rf_x
    lines[6] = "\t".join(fields)
    path.write_text("\n".join(lines))
    with pytest.raises(ItemError, match=r"bad.txt: column 'gyro_rf_x'.*non-numeric.*row 3 \('oops'\)"):
        read(path)
    (tmp_path / "empty.txt").write_text("#Activity\twalking\n")
    with pytest.raises(ItemError, match="no sensor table"):
        read(tmp_path / "empty.txt")
    (tmp_path / "nolabel.txt").write_text("a\tb\n1\t2\n")
    with pytest.raises(ItemError, match="no label column 'act'"):
        read(tmp_path / "nolabel.txt")
    plain = read(tmp_path / "nolabel.txt", label_column=None, labels="none", sampling_rate=100)
    assert plain.arrays["signal"].tolist() == [[1.0], [2.0]]
    with pytest.raises(ValidationError, match="window length"):
        registry()["gait.read_tsv"].params.model_validate({"labels": "windows"})
