"""eeg.read_bnci_mat on BNCI .mat files written here with scipy in BCI IV 2a's layout (a cell array of
runs; the first without trials, artifact trials flagged)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.io import savemat

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.bnci import ReadBnciMatParams, read_bnci_mat


def write_bnci(
    path: Path, runs: list[tuple[np.ndarray, list[int], list[int], list[int]]], fs: float = 250.0
) -> Path:
    """runs: (X samples x 25, trial 1-based cue samples, y classes, artifacts) each; as BNCI saves them."""
    cell = np.empty((1, len(runs)), dtype=object)
    for i, (x, trial, y, art) in enumerate(runs):
        cell[0, i] = {
            "X": x,
            "trial": np.asarray(trial, dtype=float).reshape(-1, 1),
            "y": np.asarray(y, dtype=float).reshape(-1, 1),
            "fs": fs,
            "artifacts": np.asarray(art, dtype=float).reshape(-1, 1),
            "classes": np.array(["left hand", "right hand", "feet", "tongue"], dtype=object),
        }
    savemat(str(path), {"data": cell}, format="5")
    return path


def test_runs_with_trials_concatenated_and_artifacts_left_out(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    eog = rng.normal(0, 5, (300, 25))
    a, b = rng.normal(0, 5, (1000, 25)), rng.normal(0, 5, (800, 25))
    path = write_bnci(
        tmp_path / "A01T.mat", [(eog, [], [], []), (a, [101, 501], [1, 4], [0, 1]), (b, [51], [3], [0])]
    )
    s = read_bnci_mat(Sample(id="A01T", inputs={"mat": path}), ReadBnciMatParams(input="mat"))
    np.testing.assert_array_equal(s.arrays["signal"], np.concatenate([a, b]).T)
    assert s.meta["runs_used"] == 2 and s.meta["artifact_trials"] == 1
    assert s.meta["_annotations"]["onset"] == [100 / 250, (1000 + 50) / 250]
    assert s.meta["_annotations"]["text"] == ["1", "3"]
    s = read_bnci_mat(
        Sample(id="A01T", inputs={"mat": path}),
        ReadBnciMatParams(input="mat", channels=["C3", "Cz", "C4"], artifacts=True),
    )
    np.testing.assert_array_equal(s.arrays["signal"], np.concatenate([a, b]).T[[7, 9, 11]])
    assert s.meta["_annotations"]["text"] == ["1", "4", "3"]


def test_not_a_bnci_file(tmp_path: Path) -> None:
    path = tmp_path / "x.mat"
    savemat(str(path), {"other": np.zeros(3)})
    with pytest.raises(ItemError, match="no variable 'data'"):
        read_bnci_mat(Sample(id="x", inputs={"mat": path}), ReadBnciMatParams(input="mat"))
    path = write_bnci(tmp_path / "y.mat", [(np.zeros((10, 25)), [], [], [])])
    with pytest.raises(ItemError, match="no run with trials"):
        read_bnci_mat(Sample(id="y", inputs={"mat": path}), ReadBnciMatParams(input="mat"))
