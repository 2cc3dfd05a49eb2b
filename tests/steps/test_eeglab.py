"""eeg.read_eeglab on EEGLAB .set files written here with scipy (struct arrays as EEGLAB saves them):
data inline and in a .fdt beside the .set, events from the .set and from a BIDS events.tsv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.eeglab import ReadEeglabParams, read_eeglab


def write_set(
    path: Path, x: np.ndarray, srate: float, names: list[str], events: list[tuple[str, float]], fdt: bool
) -> Path:
    """An EEGLAB .set (MATLAB v5): chanlocs and event as struct arrays; data inline or in <stem>.fdt
    (float32, channels varying fastest), as pop_saveset writes them."""
    chanlocs = np.zeros(len(names), dtype=[("labels", "O"), ("type", "O")])
    for i, n in enumerate(names):
        chanlocs[i] = (n, "EEG")
    event = np.zeros(len(events), dtype=[("type", "O"), ("latency", "O")])
    for i, (t, lat) in enumerate(events):
        event[i] = (t, float(lat))
    if fdt:
        x.T.astype("<f4").tofile(path.with_suffix(".fdt"))
        data: object = path.with_suffix(".fdt").name
    else:
        data = x.astype(np.float32)
    savemat(
        str(path),
        {"setname": "test", "nbchan": float(x.shape[0]), "pnts": float(x.shape[1]), "trials": 1.0,
         "srate": float(srate), "data": data, "chanlocs": chanlocs, "event": event},
        format="5",
    )  # fmt: skip
    return path


def _sample(tmp_path: Path, **inputs: Path) -> Sample:
    return Sample(id="r", inputs=dict(inputs))


@pytest.mark.parametrize("fdt", [False, True])
def test_reads_data_channels_and_events(tmp_path: Path, fdt: bool) -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 10, (3, 500)).astype(np.float32)
    path = write_set(tmp_path / "s_eeg.set", x, 250.0, ["Fz", "Cz", "Pz"], [("2", 26), ("8", 151)], fdt)
    s = read_eeglab(_sample(tmp_path, set=path), ReadEeglabParams(input="set"))
    np.testing.assert_array_equal(s.arrays["signal"], x.astype(np.float64))
    assert s.meta["sampling_rate"] == 250.0 and s.meta["channel_names"] == ["Fz", "Cz", "Pz"]
    assert s.meta["_annotations"]["onset"] == [0.1, 0.6] and s.meta["_annotations"]["text"] == ["2", "8"]
    s = read_eeglab(_sample(tmp_path, set=path), ReadEeglabParams(input="set", channels=["Pz", "Fz"]))
    np.testing.assert_array_equal(s.arrays["signal"], x[[2, 0]].astype(np.float64))


def test_events_from_a_bids_events_tsv(tmp_path: Path) -> None:
    x = np.zeros((2, 100), dtype=np.float32)
    path = write_set(tmp_path / "s_eeg.set", x, 100.0, ["A", "B"], [("standard", 1)], fdt=False)
    tsv = tmp_path / "s_events.tsv"
    tsv.write_text(
        "onset\tduration\ttrial_type\tvalue\n0.25\t0\tstandard\t2\nn/a\t0\tx\t1\n0.5\tn/a\toddball\t8\n"
    )
    s = read_eeglab(_sample(tmp_path, set=path, ev=tsv), ReadEeglabParams(input="set", events_input="ev"))
    assert s.meta["_annotations"] == {"onset": [0.25, 0.5], "duration": [0.0, 0.0], "text": ["2", "8"]}


def test_bad_files_are_item_errors(tmp_path: Path) -> None:
    h5 = tmp_path / "v73.set"
    h5.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64" + b"\0" * 100)
    with pytest.raises(ItemError, match="v7.3"):
        read_eeglab(_sample(tmp_path, set=h5), ReadEeglabParams(input="set"))
    x = np.zeros((2, 10), dtype=np.float32)
    path = write_set(tmp_path / "f.set", x, 10.0, ["A", "B"], [], fdt=True)
    path.with_suffix(".fdt").unlink()
    with pytest.raises(ItemError, match="f.fdt is not beside it"):
        read_eeglab(_sample(tmp_path, set=path), ReadEeglabParams(input="set"))
    path = write_set(tmp_path / "g.set", x, 10.0, ["A", "B"], [], fdt=False)
    with pytest.raises(ItemError, match=r"channel\(s\) \['C'\] not in the file"):
        read_eeglab(_sample(tmp_path, set=path), ReadEeglabParams(input="set", channels=["C"]))
