"""Tests of the EEG steps: EDF/EDF+/BDF reading (pyedflib's bundled files, the real HMC hypnogram in
../shared/fixtures/wfdb, and EDF+ files written here with known sines and annotations), channel-name
normalisation, resampling, filters, scaling, re-referencing and epoching. Offline and fast.
"""

from __future__ import annotations

import collections
import datetime as dt
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyedflib
import pytest
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.index import Item
from climb_cli.shards import build_schema, to_row
from climb_cli.steps.base import Sample, registry
from climb_cli.steps.eeg import channel_key, match_channels

PYEDFLIB_DATA = Path(os.path.dirname(pyedflib.__file__))
FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "wfdb"
START = dt.datetime(2020, 5, 17, 22, 30, 0)


def run(sample: Sample, name: str, **params: Any) -> Sample:
    """Validate `params` the way a recipe is validated, then run the step."""
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def bundled(rel: str) -> Path:
    path = PYEDFLIB_DATA / rel
    if not path.is_file():
        pytest.skip(f"pyedflib's bundled file {rel} is not installed")
    return path


def hmc_hypnogram() -> Path:
    path = FIXTURES / "test_edfann.edf"
    if not path.is_file():
        pytest.skip(f"{path} not found (the shared fixtures folder is absent)")
    return path


def write_edf(
    path: Path,
    channels: list[tuple[str, int, np.ndarray]],
    annotations: list[tuple[float, float, str]] = (),  # type: ignore[assignment]
    start: dt.datetime = START,
    bdf: bool = False,
) -> Path:
    """Write an EDF+ (or BDF+) file: channels as (label, integer rate, physical samples in uV)."""
    ftype = pyedflib.FILETYPE_BDFPLUS if bdf else pyedflib.FILETYPE_EDFPLUS
    writer = pyedflib.EdfWriter(str(path), len(channels), file_type=ftype)
    dmax = 8388607 if bdf else 32767
    writer.setSignalHeaders(
        [
            {
                "label": label,
                "dimension": "uV",
                "sample_frequency": fs,
                "physical_min": -500.0,
                "physical_max": 500.0,
                "digital_min": -dmax - 1,
                "digital_max": dmax,
                "prefilter": "HP:0.3Hz",
            }
            for label, fs, _ in channels
        ]
    )
    writer.setStartdatetime(start)
    writer.writeSamples([np.asarray(x, dtype=np.float64) for _, _, x in channels])
    for onset, duration, text in annotations:
        writer.writeAnnotation(onset, duration, text)
    writer.close()
    return path


def sine(freq: float, fs: float, seconds: float, amp: float = 1.0, phase: float = 0.0) -> np.ndarray:
    t = np.arange(int(round(seconds * fs))) / fs
    return amp * np.sin(2 * np.pi * freq * t + phase)


def tone(x: np.ndarray, freq: float, fs: float) -> float:
    """Amplitude of the `freq` Hz component of a 1-D signal (least squares on sin and cos)."""
    t = np.arange(len(x)) / fs
    basis = np.column_stack([np.sin(2 * np.pi * freq * t), np.cos(2 * np.pi * freq * t), np.ones_like(t)])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(coef[0], coef[1]))


def peak_hz(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x - x.mean()))
    return float(np.fft.rfftfreq(len(x), 1 / fs)[np.argmax(spectrum)])


def with_signal(x: np.ndarray, fs: float, names: list[str] | None = None, units: str = "uV") -> Sample:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    names = names or [f"Ch{i}" for i in range(x.shape[0])]
    meta = {"sampling_rate": fs, "channel_names": names, "units": [units] * len(names)}
    return Sample(id="s", arrays={"signal": x}, meta=meta)


def read(path: Path, **params: Any) -> Sample:
    return run(Sample(id=path.stem, inputs={"edf": path}), "eeg.read_edf", **params)


# --------------------------------------------------------------------------------------- registration


def test_every_eeg_step_is_registered_with_docs_and_described_params() -> None:
    steps = {k: v for k, v in registry().items() if k.startswith("eeg.")}
    expected = {
        "eeg.read_edf",
        "eeg.select_channels",
        "eeg.resample",
        "eeg.bandpass",
        "eeg.highpass",
        "eeg.lowpass",
        "eeg.notch",
        "eeg.scale",
        "eeg.reference",
        "eeg.epoch",
        "eeg.epoch_events",
        "eeg.cast",
        "eeg.read_eeglab",
        "eeg.read_bnci_mat",
        "eeg.read_faced_pkl",
    }
    assert set(steps) == expected
    for name, definition in steps.items():
        assert definition.doc, name
        for field_name, field in definition.params.model_fields.items():
            assert field.description, f"{name}.{field_name} has no description"


# --------------------------------------------------------------------------------- channel name rule


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("C3-A2", "c3"),
        ("EEG C3-M2", "c3"),
        ("c3", "c3"),
        ("C3 - A2", "c3"),
        ("C3:M2", "c3"),
        ("EEG FP1-REF", "fp1"),
        ("EEG FP1-LE", "fp1"),
        ("EOG E1-M2", "e1"),
        ("EEG Fpz-Cz", "fpz-cz"),  # bipolar: both electrodes stay
        ("Fp1-F7", "fp1-f7"),
        ("EEG(sec)", "eeg(sec)"),  # SHHS: not a prefix followed by a name
        ("EEG", "eeg"),
    ],
)
def test_channel_key_normalisation_table(name: str, key: str) -> None:
    assert channel_key(name) == key


def test_match_channels_prefers_exact_names_and_reports_ambiguity() -> None:
    names = ["EEG C3-A2", "EEG C4-A1", "EOG E1-M2", "C4"]
    assert match_channels(names, ["C3", "E1", "C4"]) == [0, 2, 3]  # exact C4 wins over EEG C4-A1
    assert match_channels(names, ["O1"]) == [None]
    with pytest.raises(ItemError, match="ambiguous"):
        match_channels(["C3-A2", "C3-M2"], ["C3"])
    # SHHS: EEG(sec) is C3, EEG is C4 (climb-datasets.md 1.5)
    shhs = ["SaO2", "H.R.", "EEG(sec)", "ECG", "EMG", "EOG(L)", "EOG(R)", "EEG"]
    assert match_channels(shhs, ["C3", "C4"], aliases={"EEG(sec)": "C3", "EEG": "C4"}) == [2, 7]


# ------------------------------------------------------------------------------------------ read_edf


def test_read_edf_generated_edfplus_values_meta_and_annotations(tmp_path: Path) -> None:
    c3 = sine(10, 100, 60, amp=100)
    c4 = sine(5, 50, 60, amp=50)
    path = write_edf(
        tmp_path / "rec.edf",
        [("EEG C3-A2", 100, c3), ("EEG C4-M1", 50, c4)],
        [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage 2"), (10.5, -1, "Lights off")],
    )
    with pytest.raises(ItemError, match="different sampling rates"):
        read(path)
    s = read(path, channels=["C3"])
    x = s.arrays["signal"]
    assert x.shape == (1, 6000)
    step = 1000 / 65535  # physical range / digital range: the quantisation step of the file
    assert np.max(np.abs(x[0] - c3)) <= step
    assert s.meta["sampling_rate"] == 100.0
    assert s.meta["channel_names"] == ["EEG C3-A2"]  # as in the file
    assert s.meta["units"] == ["uV"]
    assert s.meta["prefilter"] == ["HP:0.3Hz"]
    assert s.meta["original_length"] == 6000
    assert s.meta["duration"] == 60.0
    assert s.meta["file_type"] == "EDF+C"
    assert dt.datetime.fromisoformat(s.meta["start_time"]) == START
    ann = s.meta["_annotations"]
    assert sorted(ann["text"]) == ["Lights off", "Sleep stage 2", "Sleep stage W"]
    by_text = {t: (o, d) for o, d, t in zip(ann["onset"], ann["duration"], ann["text"], strict=True)}
    assert by_text["Sleep stage 2"] == (30.0, 30.0)
    assert by_text["Lights off"][0] == pytest.approx(10.5)
    assert s.sources == [path]

    both = read(path, rates="resample")
    assert both.arrays["signal"].shape == (2, 6000)
    assert both.meta["original_sampling_rates"] == [100.0, 50.0]
    resampled = both.arrays["signal"][1, 500:-500]
    assert peak_hz(resampled, 100) == pytest.approx(5.0, abs=0.05)
    assert tone(resampled, 5, 100) == pytest.approx(50, rel=0.01)

    digital = read(path, channels=["C3"], physical=False)
    assert digital.meta["units"] == ["adu"]
    assert np.array_equal(digital.arrays["signal"], np.round(digital.arrays["signal"]))


def test_read_edf_missing_channels_error_or_zero_row(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "r.edf", [("EEG F3-A2", 64, sine(3, 64, 10, 20))])
    with pytest.raises(ItemError, match=r"\['O1'\] not in the file"):
        read(path, channels=["F3", "O1"])
    s = read(path, channels=["O1", "F3"], missing="zero")
    assert s.arrays["signal"].shape == (2, 640)
    assert not s.arrays["signal"][0].any()
    assert s.meta["channel_names"] == ["O1", "EEG F3-A2"]
    assert s.meta["units"] == ["", "uV"]
    assert s.meta["missing_channels"] == ["O1"]


def test_read_edf_corrupt_truncated_and_missing_files_are_item_errors(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "ok.edf", [("C3", 100, sine(10, 100, 20, 50))])
    data = path.read_bytes()
    (tmp_path / "short.edf").write_bytes(data[:-300])
    with pytest.raises(ItemError, match="short.edf: truncated EDF file"):
        read(tmp_path / "short.edf")
    (tmp_path / "long.edf").write_bytes(data + b"\0" * 10)
    with pytest.raises(ItemError, match="long.edf: 10 bytes beyond"):
        read(tmp_path / "long.edf")
    (tmp_path / "head.edf").write_bytes(data[:100])
    with pytest.raises(ItemError, match="truncated EDF header"):
        read(tmp_path / "head.edf")
    (tmp_path / "junk.edf").write_bytes(b"not an edf file at all " * 20)
    with pytest.raises(ItemError, match="junk.edf: not an EDF/BDF file"):
        read(tmp_path / "junk.edf")
    with pytest.raises(ItemError, match="not found"):
        read(tmp_path / "absent.edf")


def test_read_edf_refuses_discontinuous_edf_unless_asked(tmp_path: Path) -> None:
    path = write_edf(tmp_path / "d.edf", [("C3", 10, sine(1, 10, 5))])
    raw = bytearray(path.read_bytes())
    assert raw[192:197] == b"EDF+C"
    raw[192:197] = b"EDF+D"
    path.write_bytes(bytes(raw))
    with pytest.raises(ItemError, match="EDF\\+D"):
        read(path)


def test_read_bundled_test_generator_edf_sines() -> None:
    s = read(bundled("data/test_generator.edf"))
    assert s.arrays["signal"].shape == (11, 120000)
    assert s.meta["sampling_rate"] == 200.0
    names = s.meta["channel_names"]
    assert names[4:6] == ["sine 1 Hz", "sine 8 Hz"]
    assert s.meta["_annotations"]["text"] == ["Recording starts", "Recording ends"]
    x = s.arrays["signal"]
    for label, hz in [("sine 1 Hz", 1.0), ("sine 8 Hz", 8.0), ("sine 15 Hz", 15.0), ("sine 50 Hz", 50.0)]:
        assert peak_hz(x[names.index(label)], 200) == pytest.approx(hz, abs=0.01), label


def test_read_bundled_bdf_with_mixed_rates() -> None:
    path = bundled("tests/data/test_generator.bdf")
    with pytest.raises(ItemError, match="1000 Hz.*800 Hz"):
        read(path)
    s = read(path, rates="resample", hz=500)
    assert s.meta["file_type"].startswith("BDF")
    assert s.arrays["signal"].shape == (5, 15000)  # 30 s at 500 Hz
    assert s.meta["original_sampling_rates"] == [1000.0, 800.0, 500.0, 975.0, 999.0]
    first = s.arrays["signal"][0, 1000:-1000]
    native = read(path, channels=["sine 5Hz"]).arrays["signal"][0]
    assert peak_hz(first, 500) == pytest.approx(5.0, abs=0.05)
    assert tone(first, 5, 500) == pytest.approx(tone(native[2000:-2000], 5, 1000), rel=0.01)


def test_read_bundled_subsecond_edf_with_inverted_physical_range() -> None:
    path = bundled("tests/data/test_subsecond.edf")
    s = read(path)
    d = read(path, physical=False)
    assert s.meta["channel_names"] == ["Fp1"] and s.meta["sampling_rate"] == 128.0
    assert s.arrays["signal"].shape == (1, 89344)
    # the first record's time-keeping TAL says +0.3945312 s (pyedflib's getStartdatetime gives .039453)
    assert dt.datetime.fromisoformat(s.meta["start_time"]).microsecond == 394531
    assert "XLSpike" in s.meta["_annotations"]["text"]
    # EDF header fields, parsed here from the raw bytes: physical min/max are inverted (+8711 / -8711)
    raw = path.read_bytes()
    ns = int(raw[252:256])
    assert raw[256 : 256 + 16].strip() == b"Fp1"

    def field(offset: int) -> float:  # per-signal fields are stored field by field, 8 bytes per signal
        return float(raw[256 + offset * ns : 256 + offset * ns + 8])

    pmin, pmax, dmin, dmax = field(104), field(112), field(120), field(128)
    assert pmin > pmax
    expected = (d.arrays["signal"] - dmin) * (pmax - pmin) / (dmax - dmin) + pmin
    assert np.allclose(s.arrays["signal"], expected, atol=1e-6)


def test_read_bundled_legacy_edf_skips_its_annotation_channel() -> None:
    s = read(bundled("tests/data/test_legacy.edf"))
    assert s.meta["file_type"] == "EDF"
    assert len(s.meta["channel_names"]) == 11
    assert "EDF Annotations" not in s.meta["channel_names"]


def test_read_real_hmc_hypnogram_annotations() -> None:
    from climb_cli.steps.eeg import read_edf_annotations

    ann, start = read_edf_annotations(hmc_hypnogram())
    assert len(ann["text"]) == 856
    assert start == "2001-01-01T23:59:30"
    counts = collections.Counter(ann["text"])
    assert counts["Sleep stage N2"] == 430 and counts["Sleep stage R"] == 141
    assert counts["Lights off@@EEG F4-A1"] == 1


# ---------------------------------------------------------------------------------- select / reference


def test_select_channels_orders_normalises_and_zero_fills() -> None:
    s = with_signal(np.arange(12.0).reshape(3, 4), 100, ["EEG C4-A1", "EEG C3-A2", "EOG E1-M2"])
    s.meta["prefilter"] = ["a", "b", "c"]
    out = run(s, "eeg.select_channels", channels=["C3", "c4", "O2"], missing="zero")
    assert np.array_equal(out.arrays["signal"], [[4, 5, 6, 7], [0, 1, 2, 3], [0, 0, 0, 0]])
    assert out.meta["channel_names"] == ["C3", "c4", "O2"]
    assert out.meta["source_channels"] == ["EEG C3-A2", "EEG C4-A1", ""]
    assert out.meta["prefilter"] == ["b", "a", ""]
    assert out.meta["missing_channels"] == ["O2"]
    with pytest.raises(ItemError, match="O2"):
        run(with_signal(np.zeros((1, 4)), 100, ["C3"]), "eeg.select_channels", channels=["O2"])
    with pytest.raises(ValidationError, match="listed twice"):
        registry()["eeg.select_channels"].params.model_validate({"channels": ["C3", "c3"]})


def test_average_and_channel_reference() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 500))
    avg = run(with_signal(x, 100, ["C3", "C4", "O1", "O2"]), "eeg.reference")
    assert np.allclose(avg.arrays["signal"].sum(axis=0), 0)
    one = run(with_signal(x, 100, ["C3", "C4", "O1", "O2"]), "eeg.reference", mode="channel", channel="O2")
    assert np.allclose(one.arrays["signal"], x - x[3])
    assert one.meta["reference"] == "O2"


# ---------------------------------------------------------------------------------- resample / filters


def test_resample_keeps_frequency_and_amplitude() -> None:
    x = sine(10, 256, 20, amp=40)
    out = run(with_signal(x, 256), "eeg.resample", hz=125)
    y = out.arrays["signal"][0]
    assert len(y) == 2500 and out.meta["sampling_rate"] == 125.0
    assert peak_hz(y, 125) == pytest.approx(10, abs=0.06)
    assert tone(y[200:-200], 10, 125) == pytest.approx(40, rel=0.01)


def test_notch_removes_50hz_and_keeps_10hz() -> None:
    fs = 250.0
    x = sine(10, fs, 20, amp=30) + sine(50, fs, 20, amp=20, phase=0.3)
    y = run(with_signal(x, fs), "eeg.notch", hz=[50]).arrays["signal"][0][500:-500]
    assert tone(y, 50, fs) < 0.2  # 20 -> < 0.2: at least 40 dB down
    assert tone(y, 10, fs) == pytest.approx(30, rel=0.01)
    # 60 Hz mains and its harmonic (CLIMB's auditory oddball): both removed, 10 Hz kept
    z = sine(10, fs, 20, amp=30) + sine(60, fs, 20, amp=20) + sine(120, fs, 20, amp=10)
    w = run(with_signal(z, fs), "eeg.notch", hz=[60, 120]).arrays["signal"][0][500:-500]
    assert tone(w, 60, fs) < 0.2 and tone(w, 120, fs) < 0.1
    assert tone(w, 10, fs) == pytest.approx(30, rel=0.01)
    with pytest.raises(ItemError, match="Nyquist"):
        run(with_signal(z, fs), "eeg.notch", hz=[130])


def test_notch_on_the_bundled_50hz_channel() -> None:
    s = read(bundled("data/test_generator.edf"), channels=["sine 8 Hz", "sine 50 Hz"])
    mixed = s.arrays["signal"].sum(axis=0, keepdims=True)
    before = tone(mixed[0, 2000:-2000], 50, 200)
    assert before > 10
    sample = with_signal(mixed, 200)
    y = run(sample, "eeg.notch", hz=[50]).arrays["signal"][0, 2000:-2000]
    assert tone(y, 50, 200) < before / 100
    assert tone(y, 8, 200) == pytest.approx(tone(s.arrays["signal"][0, 2000:-2000], 8, 200), rel=0.01)


def test_bandpass_4_40_keeps_the_band() -> None:
    fs = 250.0
    x = sine(1, fs, 30, amp=10) + sine(12, fs, 30, amp=10) + sine(90, fs, 30, amp=10)
    y = run(with_signal(x, fs), "eeg.bandpass", low=4, high=40).arrays["signal"][0][1000:-1000]
    assert tone(y, 12, fs) == pytest.approx(10, rel=0.01)
    assert tone(y, 1, fs) < 0.1 and tone(y, 90, fs) < 0.1
    with pytest.raises(ValidationError):
        registry()["eeg.bandpass"].params.model_validate({"low": 40, "high": 4})


def test_filters_refuse_nan_and_work_before_epoching_only() -> None:
    x = np.ones((1, 1000))
    x[0, 5] = np.nan
    with pytest.raises(ItemError, match="NaN"):
        run(with_signal(x, 100), "eeg.lowpass", hz=10)
    s = Sample(id="e", arrays={"epochs": np.zeros((2, 1, 100))}, meta={"sampling_rate": 100.0})
    with pytest.raises(ItemError, match="before eeg.epoch"):
        run(s, "eeg.highpass", hz=1)


# ---------------------------------------------------------------------------------------------- scale


def test_scale_presets_match_climb_formulas() -> None:
    uv = np.array([[-125.0, 0.0, 125.0, 250.0]])
    out = run(with_signal(uv, 125, units="uV"), "eeg.scale", preset="shhs")
    assert np.allclose(out.arrays["signal"], [[0.0, 0.5, 1.0, 1.5]])  # no clipping
    # CLIMB computed (x - (-0.000125)) / 0.00025 on volts: same numbers from a volt-unit recording
    volts = uv * 1e-6
    out_v = run(with_signal(volts, 125, units="V"), "eeg.scale", preset="shhs")
    assert np.allclose(out_v.arrays["signal"], (volts + 0.000125) / 0.00025)
    assert out_v.meta["units"] == ["1"]
    isruc = run(with_signal(np.array([[-25.0, 0.0, 25.0]]), 125), "eeg.scale", preset="isruc")
    assert np.allclose(isruc.arrays["signal"], [[0.0, 0.5, 1.0]])


def test_scale_unit_conversion_factor_and_recorded_affine() -> None:
    s = with_signal(np.array([[1e-6, -2e-6], [1.0, 0.0]]), 100, units="V")
    s.meta["units"] = ["V", "mV"]
    out = run(s, "eeg.scale", unit="uV")
    assert np.allclose(out.arrays["signal"], [[1.0, -2.0], [1e3, 0.0]])
    assert out.meta["units"] == ["uV", "uV"]
    out = run(out, "eeg.scale", factor=0.01)
    assert np.allclose(out.arrays["signal"], [[0.01, -0.02], [10.0, 0.0]])
    assert out.meta["scale_factor"] == pytest.approx([1e4, 10.0])  # cumulative, from the original units
    bad = with_signal(np.zeros((1, 3)), 100, units="degC")
    with pytest.raises(ItemError, match="degC"):
        run(bad, "eeg.scale", unit="uV")
    with pytest.raises(ValidationError, match="preset sets"):
        registry()["eeg.scale"].params.model_validate({"preset": "shhs", "unit": "uV"})


# ---------------------------------------------------------------------------------------------- epoch


@pytest.mark.parametrize(
    ("n", "fs", "window", "stride"), [(3000, 100, 5.0, None), (3001, 100, 5.0, 2.5), (1000, 50, 3.0, 1.0)]
)
def test_epoch_count_onsets_and_content(n: int, fs: float, window: float, stride: float | None) -> None:
    x = np.vstack([np.arange(n, dtype=float), -np.arange(n, dtype=float)])
    out = run(with_signal(x, fs), "eeg.epoch", window=window, stride=stride, labels="none")
    win, step_n = int(window * fs), int((stride or window) * fs)
    count = (n - win) // step_n + 1
    epochs = out.arrays["epochs"]
    assert epochs.shape == (count, 2, win)
    assert out.meta["n_epochs"] == count
    assert out.meta["epoch_onsets"] == [k * step_n / fs for k in range(count)]
    for k in (0, count - 1):
        assert np.array_equal(epochs[k, 0], np.arange(k * step_n, k * step_n + win))
        assert np.array_equal(epochs[k, 1], -np.arange(k * step_n, k * step_n + win))
    assert "signal" not in out.arrays


def test_epoch_labels_from_edf_annotations_rk_spellings(tmp_path: Path) -> None:
    fs = 10
    stages = ["Sleep stage W", "Sleep stage 1", "Sleep stage 2", "Sleep stage 3", "Sleep stage 4"]
    stages += ["Sleep stage R", "Movement time", "Sleep stage ?"]
    ann = [(30.0 * k, 30.0, text) for k, text in enumerate(stages)] + [(45.0, -1, "Arousal")]
    x = np.repeat(np.arange(len(stages), dtype=float), 30 * fs)  # epoch k holds the value k
    path = write_edf(tmp_path / "sc.edf", [("EEG Fpz-Cz", fs, x)], ann)
    s = run(read(path), "eeg.epoch", window=30)
    assert s.meta["epoch_labels"] == ["W", "N1", "N2", "N3", "N3", "R"]
    assert s.meta["epoch_onsets"] == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]
    assert s.meta["epochs_dropped"] == 2
    assert np.allclose(s.arrays["epochs"][:, 0, :].mean(axis=1), [0, 1, 2, 3, 4, 5], atol=0.02)
    assert "_annotations" not in s.meta
    kept = run(read(path), "eeg.epoch", window=30, unknown="keep")
    assert kept.meta["epoch_labels"][-2:] == ["?", "?"]
    with pytest.raises(ItemError, match="no known label"):
        run(read(path), "eeg.epoch", window=30, unknown="error")
    # 15 s windows with a 15 s stride: each half of a stage gets its label
    half = run(read(path), "eeg.epoch", window=15)
    assert half.meta["epoch_labels"][:4] == ["W", "W", "N1", "N1"]


def test_epoch_with_real_hmc_hypnogram_as_separate_annotation_file() -> None:
    path = hmc_hypnogram()
    ann_start = dt.datetime(2001, 1, 1, 23, 59, 30)
    n_stages = 854
    fs = 1.0
    x = np.arange(n_stages * 30, dtype=float)[None, :]
    s = with_signal(x, fs, ["EEG C4-M1"])
    s.inputs["scoring"] = path
    s.meta["start_time"] = ann_start.isoformat()
    out = run(s, "eeg.epoch", window=30, annotation_input="scoring")
    labels = out.meta["epoch_labels"]
    assert len(labels) == n_stages
    assert collections.Counter(labels) == {"N2": 430, "W": 151, "R": 141, "N1": 109, "N3": 23}
    assert path in out.sources
    # the signal started a minute before the scoring: the first two windows are unscored and dropped
    early = with_signal(np.arange((n_stages + 2) * 30, dtype=float)[None, :], fs)
    early.inputs["scoring"] = path
    early.meta["start_time"] = (ann_start - dt.timedelta(seconds=60)).isoformat()
    shifted = run(early, "eeg.epoch", window=30, annotation_input="scoring")
    assert shifted.meta["epoch_labels"] == labels
    assert shifted.meta["epoch_onsets"][0] == 60.0
    assert shifted.meta["epochs_dropped"] == 2


def test_epoch_labels_from_isruc_lines_and_shhs_profusion_xml(tmp_path: Path) -> None:
    fs = 2.0
    x = np.zeros((2, int(7 * 30 * fs)))
    (tmp_path / "1_1.txt").write_text("0\n1\n2\n3\n5\n5\n\n")  # 6 stages for 7 windows; ISRUC REM = 5
    s = with_signal(x, fs, ["C3", "C4"])
    s.inputs["hypnogram"] = tmp_path / "1_1.txt"
    out = run(s, "eeg.epoch", window=30, labels="hypnogram")
    assert out.meta["epoch_labels"] == ["W", "N1", "N2", "N3", "R", "R"]
    assert out.meta["epochs_dropped"] == 1
    xml = (
        "<?xml version='1.0' encoding='UTF-8'?><CMPStudyConfig><EpochLength>30</EpochLength>"
        "<SleepStages>"
        + "".join(f"<SleepStage>{v}</SleepStage>" for v in [0, 4, 6, 9, 5, 2, 1])
        + "</SleepStages>"
        "</CMPStudyConfig>"
    )
    (tmp_path / "shhs1-200001-profusion.xml").write_text(xml)
    s2 = with_signal(x, fs, ["C3", "C4"])
    s2.inputs["hypnogram"] = tmp_path / "shhs1-200001-profusion.xml"
    out2 = run(s2, "eeg.epoch", window=30, labels="hypnogram", hypnogram_format="profusion_xml")
    assert out2.meta["epoch_labels"] == ["W", "N3", "R", "N2", "N1"]  # 4 -> N3; 6, 9 unknown
    assert out2.meta["epoch_onsets"] == [0.0, 30.0, 120.0, 150.0, 180.0]


def test_epoch_custom_mapping_and_no_label_is_an_error() -> None:
    s = with_signal(np.zeros((1, 400)), 10)
    s.meta["_annotations"] = {"onset": [0.0, 20.0], "duration": [20.0, 20.0], "text": ["seizure", "bckg"]}
    out = run(s, "eeg.epoch", window=10, mapping={"seizure": "sz", "bckg": "bg"})
    assert out.meta["epoch_labels"] == ["sz", "sz", "bg", "bg"]
    s2 = with_signal(np.zeros((1, 400)), 10)
    s2.meta["_annotations"] = {"onset": [], "duration": [], "text": []}
    with pytest.raises(ItemError, match="no labelled windows"):
        run(s2, "eeg.epoch", window=10)
    with pytest.raises(ItemError, match="whole number of samples"):
        run(with_signal(np.zeros((1, 400)), 3), "eeg.epoch", window=0.5, labels="none")


def test_epoch_events_window_length_baseline_and_bounds() -> None:
    fs = 250.0
    n = int(10 * fs)
    x = np.tile(np.linspace(0, 1, n), (2, 1)) + np.array([[5.0], [-3.0]])
    s = with_signal(x, fs, ["Cz", "Pz"])
    onsets = [0.05, 2.0, 5.0, 9.5]  # the first starts before 0 - 0.1 s, the last runs past the end
    s.meta["_annotations"] = {
        "onset": onsets + [3.0],
        "duration": [0.0] * 5,
        "text": ["standard", "oddball", "standard", "oddball", "boundary"],
    }
    mapping = {"standard": "0", "oddball": "1"}
    out = run(s, "eeg.epoch_events", tmin=-0.1, tmax=0.796, mapping=mapping, baseline=[-0.1, 0])
    ep = out.arrays["epochs"]
    assert ep.shape == (2, 2, 225)  # 0.896 s at 250 Hz, tmax inclusive, as MNE
    assert out.meta["epoch_labels"] == ["1", "0"]
    assert out.meta["epoch_onsets"] == [2.0, 5.0]
    assert out.meta["epochs_dropped"] == 2
    assert np.allclose(ep[:, :, :26].mean(axis=2), 0, atol=1e-12)  # baseline -0.1..0 s: 26 samples
    start = int(round(2.0 * fs)) - 25
    assert np.allclose(ep[0, 0], x[0, start : start + 225] - x[0, start : start + 26].mean())


# ------------------------------------------------------------------------------------ cast and output


def test_epoch_output_fits_a_parquet_row(tmp_path: Path) -> None:
    fs = 100
    path = write_edf(
        tmp_path / "p.edf",
        [("EEG C3-A2", fs, sine(10, fs, 90, 50)), ("EEG C4-A1", fs, sine(12, fs, 90, 50))],
        [(0, 30, "Sleep stage W"), (30, 30, "Sleep stage N2"), (60, 30, "Sleep stage R")],
    )
    s = read(path, channels=["C3", "C4"])
    s = run(s, "eeg.bandpass", low=0.5, high=30)
    s = run(s, "eeg.scale", preset="shhs")
    s = run(s, "eeg.epoch", window=30)
    s = run(s, "eeg.cast", dtype="float32")
    assert s.arrays["epochs"].dtype == np.float32 and s.arrays["epochs"].shape == (3, 2, 3000)
    assert not [k for k in s.meta if k.startswith("_")]
    item = Item(id="p", split="train", labels=(), inputs={"edf": "p.edf"})
    schema = build_schema(s, item, [], False)
    row = to_row(schema, item, s, [], [("p.edf", "0" * 64)], "h")
    table = pa.Table.from_pylist([row], schema=schema)
    assert table.column("epoch_labels").to_pylist() == [["W", "N2", "R"]]
    assert table.column("channel_names").to_pylist() == [["EEG C3-A2", "EEG C4-A1"]]
    assert table.column("epochs_shape").to_pylist() == [[3, 2, 3000]]


# ------------------------------------------------------------- files pyedflib refuses: climb's own reader


def _slot_bytes(path: Path) -> tuple[bytearray, int, int, int]:
    """(file bytes, header size, record size, offset of the annotation slot in a record), EDF only."""
    raw = bytearray(path.read_bytes())
    ns = int(raw[252:256])
    labels = [raw[256 + 16 * i : 256 + 16 * (i + 1)].strip() for i in range(ns)]
    spr = [int(raw[256 + 216 * ns + 8 * i : 256 + 216 * ns + 8 * (i + 1)]) for i in range(ns)]
    ann = labels.index(b"EDF Annotations")
    return raw, 256 * (ns + 1), 2 * sum(spr), 2 * sum(spr[:ann])


def write_discontinuous(path: Path, gap_after: int = 5, gap: float = 30.0) -> Path:
    """An EDF+D file with a real gap: pyedflib writes 10 one-second records of an EDF+C file, then the
    header says EDF+D and each record's time-keeping TAL (EDF+ spec 2.2.4) gets its true onset, records
    from `gap_after` on starting `gap` seconds later; record 7 also carries an annotation 0.5 s into it."""
    write_edf(path, [("EEG Fp1-Ref", 100, sine(3, 100, 10, 80)), ("EEG O2-Ref", 50, sine(1, 50, 10, 40))])
    raw, header, record, slot = _slot_bytes(path)
    assert raw[192:197] == b"EDF+C" and int(raw[236:244]) == 10
    raw[192:197] = b"EDF+D"
    width = record - slot  # the annotation channel is the last signal pyedflib writes
    for r in range(10):
        onset = r + (gap if r >= gap_after else 0)
        tal = f"+{onset}\x14\x14\x00".encode()
        if r == 7:
            tal += f"+{onset + 0.5}\x151.5\x14Arousal\x14\x00".encode()
        start = header + r * record + slot
        raw[start : start + width] = tal.ljust(width, b"\x00")
    path.write_bytes(bytes(raw))
    return path


def test_read_edf_discontinuous_concatenate_matches_mne(tmp_path: Path) -> None:
    """pyedflib cannot open any EDF+D file ("The file is discontinuous and cannot be read"); mne joins the
    records as stored, and is the reference for the values."""
    mne = pytest.importorskip("mne")
    path = write_discontinuous(tmp_path / "nk.edf")
    with pytest.raises(OSError, match="discontinuous"):
        pyedflib.EdfReader(str(path))
    s = read(path, discontinuous="concatenate", rates="resample", hz=100)
    one = read(path, discontinuous="concatenate", channels=["Fp1"])
    raw = mne.io.read_raw_edf(path, preload=True, verbose="error")
    reference = raw.get_data(picks=["EEG Fp1-Ref"])[0] * 1e6  # mne gives volts
    np.testing.assert_allclose(one.arrays["signal"][0], reference, rtol=1e-12, atol=1e-9)
    assert one.arrays["signal"].shape == (1, 1000)
    assert s.arrays["signal"].shape == (2, 1000)
    assert s.meta["file_type"] == "EDF+D"
    assert s.meta["channel_names"] == ["EEG Fp1-Ref", "EEG O2-Ref"]
    assert s.meta["units"] == ["uV", "uV"] and s.meta["prefilter"] == ["HP:0.3Hz", "HP:0.3Hz"]
    assert s.meta["duration"] == 10.0
    assert s.meta["gaps"] == [[5.0, 30.0]]
    ann = s.meta["_annotations"]
    assert ann["text"] == ["Arousal"] and ann["duration"] == [1.5]
    assert ann["onset"] == [pytest.approx(7.5)]  # 37.5 s after the start, 7.5 s into the joined records
    assert dt.datetime.fromisoformat(s.meta["start_time"]) == START
    with pytest.raises(
        ItemError, match=r"EDF\+D \(discontinuous\) recording; set discontinuous: concatenate"
    ):
        read(path)

    from climb_cli.steps.eeg import read_edf_annotations

    annotations, start = read_edf_annotations(path)
    assert annotations["onset"] == [pytest.approx(7.5)] and start == START.isoformat()


def test_read_edf_non_ascii_unit_matches_mne(tmp_path: Path) -> None:
    """A latin-1 '°' (byte 0xB0) in a unit field: pyedflib refuses the file, mne reads it."""
    mne = pytest.importorskip("mne")
    path = write_edf(
        tmp_path / "temp.edf", [("Temp", 100, sine(0.1, 100, 20, 3) + 36), ("C3", 100, sine(10, 100, 20, 50))]
    )  # one rate: mne would resample a slower channel
    raw = bytearray(path.read_bytes())
    ns = int(raw[252:256])
    assert raw[256 + 96 * ns : 256 + 96 * ns + 8] == b"uV      "
    raw[256 + 96 * ns : 256 + 96 * ns + 8] = b"\xb0C      "
    path.write_bytes(bytes(raw))
    with pytest.raises(OSError, match="Physical Dimension"):
        pyedflib.EdfReader(str(path))
    s = read(path, channels=["Temp"])
    reference = mne.io.read_raw_edf(path, preload=True, verbose="error")
    assert reference._orig_units["Temp"] == "°C" and s.meta["units"] == ["°C"]
    np.testing.assert_allclose(s.arrays["signal"][0], reference.get_data(picks=["Temp"])[0], rtol=1e-12)
    c3 = read(path, channels=["C3"])
    np.testing.assert_allclose(c3.arrays["signal"][0], reference.get_data(picks=["C3"])[0] * 1e6, rtol=1e-12)
    assert s.meta["file_type"] == "EDF+C" and dt.datetime.fromisoformat(s.meta["start_time"]) == START


@pytest.mark.parametrize(
    "rel", ["tests/data/test_generator.edf", "tests/data/test_subsecond.edf", "tests/data/test_generator.bdf"]
)
def test_own_edf_reader_equals_pyedflib_on_bundled_files(rel: str) -> None:
    """climb's own reader (used only for files pyedflib refuses) against pyedflib on files both read."""
    from climb_cli.steps._edf import EdfFile

    path = bundled(rel)
    with pyedflib.EdfReader(str(path)) as ref, EdfFile(path) as own:
        assert own.getSignalLabels() == [str(x).strip() for x in ref.getSignalLabels()]
        # pyedflib's getStartdatetime divides the sub-second (100 ns units) by 100: compare with its raw field
        assert own.getStartdatetime() == ref.getStartdatetime().replace(
            microsecond=ref.starttime_subsecond // 10
        )
        assert own.getFileDuration() == ref.getFileDuration()
        for i in range(len(own.getSignalLabels())):
            assert own.getSampleFrequency(i) == ref.getSampleFrequency(i)
            assert own.getPhysicalDimension(i) == ref.getPhysicalDimension(i).strip()
            assert own.getPrefilter(i) == ref.getPrefilter(i).strip()
            np.testing.assert_array_equal(own.readSignal(i, digital=True), ref.readSignal(i, digital=True))
            np.testing.assert_allclose(own.readSignal(i), ref.readSignal(i), rtol=1e-9, atol=1e-9)
        for got, want in zip(own.readAnnotations(), ref.readAnnotations(), strict=True):
            if got.dtype.kind == "f":
                np.testing.assert_allclose(got, want, atol=1e-6)
            else:
                assert [str(t) for t in got] == [str(t) for t in want]
