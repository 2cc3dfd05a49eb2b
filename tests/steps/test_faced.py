"""eeg.read_faced_pkl: FACED's pickled (28, 32, 7500) arrays read without running code, neutral videos
dropped, 1 s windows labelled with their video's emotion."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.faced import ReadFacedParams, read_faced_pkl


def _run(path: Path, **kw: object) -> Sample:
    return read_faced_pkl(Sample(id="sub000", inputs={"pkl": path}), ReadFacedParams(input="pkl", **kw))


def test_windows_and_emotions(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(0, 1, (28, 3, 500)).astype(np.float32)
    path = tmp_path / "sub000.pkl"
    path.write_bytes(pickle.dumps(x))
    s = _run(path)
    e = s.arrays["epochs"]
    assert e.shape == (24 * 2, 3, 250)
    np.testing.assert_array_equal(e[0], x[0, :, :250])
    np.testing.assert_array_equal(e[1], x[0, :, 250:])
    np.testing.assert_array_equal(e[24], x[16, :, :250])  # videos 12-15 (neutral) left out
    assert s.meta["epoch_labels"][:2] == ["Anger", "Anger"] and s.meta["epoch_labels"][24] == "Amusement"
    assert s.meta["epoch_labels"][-1] == "Tenderness" and s.meta["epoch_onsets"][:3] == [0.0, 1.0, 0.0]


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, ("echo pwned",))


def test_a_pickle_that_is_not_an_array_runs_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub001.pkl"
    path.write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(ItemError, match=r"refusing posix.system|refusing os.system|refusing nt.system"):
        _run(path)
    path.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ItemError, match="holds a dict"):
        _run(path)
    path.write_bytes(pickle.dumps(np.zeros((5, 2, 10))))
    with pytest.raises(ItemError, match=r"shape \(5, 2, 10\)"):
        _run(path)
