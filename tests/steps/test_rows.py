"""rows.explode: windows along one or more axes, stride, squeeze, a partial last window, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.rows import ExplodeParams, explode, explode_step


def _cut(data: dict[str, np.ndarray], **params: object) -> list[tuple[str, Sample]]:
    sample = Sample(id="x", arrays=data, meta={"sampling_rate": 100})
    return explode(explode_step(sample, ExplodeParams.model_validate(params)))


def test_sleep_epochs_ct_windows_and_trials() -> None:
    eeg = np.arange(2 * 1000, dtype=np.float32).reshape(2, 1000)  # 2 channels, 10 s at 100 Hz
    rows = _cut({"signal": eeg, "other": np.ones(3)}, arrays=["signal"], axes=[1], size=[300])
    assert [s for s, _, _ in rows] == ["#0", "#1", "#2"]  # the last 100 samples are no whole epoch
    assert all(r.arrays["signal"].shape == (2, 300) and r.arrays["other"].shape == (3,) for _, r, _ in rows)
    assert (rows[2][1].arrays["signal"] == eeg[:, 600:900]).all() and rows[0][1].meta == {
        "sampling_rate": 100
    }
    ct = np.zeros((50, 4, 4), np.int16)
    rows = _cut({"volume": ct}, arrays=["volume"], size=[24], stride=[12], partial="keep")
    assert [r.arrays["volume"].shape[0] for _, r, _ in rows] == [24, 24, 24, 14]  # the last reaches the end
    trials = np.random.default_rng(0).normal(size=(28, 32, 50))
    rows = _cut({"eeg": trials}, arrays=["eeg"], size=[1], squeeze=True)
    assert len(rows) == 28 and rows[5][1].arrays["eeg"].shape == (32, 50)
    assert (rows[5][1].arrays["eeg"] == trials[5]).all()
    assert explode(Sample(id="y")) == [("", Sample(id="y"), None)]  # no explode step: one row
    # sleep stages: one row per epoch, each with its own stage and onset
    epochs = np.zeros((3, 2, 10), np.float32)
    sample = Sample(
        id="x",
        arrays={"epochs": epochs},
        meta={"epoch_labels": ["W", None, "N2"], "epoch_onsets": [0, 30, 60]},
    )
    rows = explode(
        explode_step(
            sample,
            ExplodeParams(
                arrays=["epochs"], size=[1], squeeze=True, meta=["epoch_onsets"], label_from="epoch_labels"
            ),
        )
    )
    assert [(s, r.meta, lab) for s, r, lab in rows] == [
        ("#0", {"epoch_onsets": 0}, ("W",)),
        ("#1", {"epoch_onsets": 30}, ()),
        ("#2", {"epoch_onsets": 60}, ("N2",)),
    ]
    with pytest.raises(ItemError, match="not a list of 3 entries"):
        explode_step(
            Sample(id="x", arrays={"epochs": epochs}, meta={"epoch_labels": ["W"]}),
            ExplodeParams(arrays=["epochs"], size=[1], label_from="epoch_labels"),
        )


def test_refusals() -> None:
    with pytest.raises(ItemError, match="no whole window"):
        _cut({"a": np.zeros(5)}, arrays=["a"], size=[10])
    with pytest.raises(ItemError, match="differ in extent"):
        _cut({"a": np.zeros(5), "b": np.zeros(6)}, arrays=["a", "b"], size=[2])
    with pytest.raises(ItemError, match="has 1 axes"):
        _cut({"a": np.zeros(5)}, arrays=["a"], axes=[1], size=[2])
    with pytest.raises(ValueError, match="one entry per axis"):
        ExplodeParams(arrays=["a"], axes=[0, 1], size=[2])


def test_window_labels_from_a_kept_json_column() -> None:
    """RSNA PE / LNDb: a hook writes one label list per 24-slice window; each window row gets its own."""
    from climb_cli.steps.volume import SliceWindowsParams, slice_windows

    vol = np.arange(60 * 2 * 2, dtype=np.float32).reshape(60, 2, 2)
    sample = Sample(
        id="study", arrays={"volume": vol}, fields={"window_labels": '[["central", "any"], [], ["any"]]'}
    )
    sample = slice_windows(sample, SliceWindowsParams(output="array"))  # (60 - 24) // 12 = 3 windows
    rows = explode(
        explode_step(
            sample,
            ExplodeParams(
                arrays=["windows"],
                size=[1],
                squeeze=True,
                meta=["window_starts"],
                labels_field="window_labels",
            ),
        )
    )
    assert [(s, lab, r.meta["window_starts"]) for s, r, lab in rows] == [
        ("#0", ("central", "any"), 0), ("#1", (), 12), ("#2", ("any",), 24)
    ]  # fmt: skip
    assert (rows[1][1].arrays["windows"] == vol[12:36]).all() and "_window_labels" not in rows[0][1].meta
    bad = Sample(id="s", arrays={"volume": vol}, fields={"window_labels": "[1]"})
    with pytest.raises(ItemError, match="not a list of 3 entries"):
        explode_step(slice_windows(bad, SliceWindowsParams(output="array")),
                     ExplodeParams(arrays=["windows"], size=[1], labels_field="window_labels"))  # fmt: skip


def test_bounds_cut_windows_of_any_length_with_their_labels_and_meta() -> None:
    sample = Sample(id="video01", arrays={"video": np.arange(10 * 2).reshape(10, 2)})
    sample.meta.update(clip_bounds=[[0, 3], [3, 4], [4, 10]], clip_frames=[[0, 74], [75, 99], [100, 260]],
                       labels=[["Preparation"], [], ["Preparation", "ClippingCutting"]])  # fmt: skip
    p = ExplodeParams(arrays=["video"], bounds="clip_bounds", meta=["clip_frames"], label_from="labels")
    rows = explode(explode_step(sample, p))
    assert [
        (s, sub.arrays["video"][:, 0].tolist(), sub.meta["clip_frames"], lab) for s, sub, lab in rows
    ] == [
        ("#0", [0, 2, 4], [0, 74], ("Preparation",)),
        ("#1", [6], [75, 99], ()),
        ("#2", [8, 10, 12, 14, 16, 18], [100, 260], ("Preparation", "ClippingCutting")),
    ]
    assert "clip_bounds" not in rows[0][1].meta
    sample.meta["clip_bounds"] = [[0, 3], [3, 11], [11, 12]]  # past the end
    with pytest.raises(ItemError, match="not a list of \\[start, stop\\) inside 10"):
        explode_step(sample, p)
    with pytest.raises(ValueError, match="exactly one of size or bounds"):
        ExplodeParams(arrays=["video"], bounds="clip_bounds", size=[1])
