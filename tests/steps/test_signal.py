"""Tests of the pure signal helpers in climb_cli.steps._signal (no files, no Sample)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal as ss

from climb_cli.steps import _signal


def tone(hz: float, fs: float, seconds: float, amplitude: float = 1.0, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * fs)) / fs
    return np.tile(amplitude * np.sin(2 * np.pi * hz * t), (channels, 1))


def peak_hz(x: np.ndarray, fs: float) -> float:
    spectrum = np.abs(np.fft.rfft(x))
    return float(np.fft.rfftfreq(x.size, 1 / fs)[np.argmax(spectrum)])


def amplitude_at(x: np.ndarray, hz: float, fs: float) -> float:
    """Least-squares amplitude of the `hz` sinusoid in the 1-D signal `x`."""
    t = np.arange(x.size) / fs
    basis = np.column_stack([np.sin(2 * np.pi * hz * t), np.cos(2 * np.pi * hz * t)])
    coef, *_ = np.linalg.lstsq(basis, x, rcond=None)
    return float(np.hypot(*coef))


def power(x: np.ndarray) -> float:
    return float(np.mean(np.square(x)))


# ------------------------------------------------------------------------------------------ resampling


@pytest.mark.parametrize(
    ("orig", "new", "expected"),
    [
        (360, 500, (25, 18)),
        (500, 100, (1, 5)),
        (1000, 500, (1, 2)),
        (250, 500, (2, 1)),
        (62.4725, 125, (50000, 24989)),
    ],
)
def test_rate_ratio_is_exact_and_reduced(orig: float, new: float, expected: tuple[int, int]) -> None:
    assert _signal.rate_ratio(orig, new) == expected


def test_resampled_length_rounds_half_up() -> None:
    assert _signal.resampled_length(1001, 1000, 500) == 501  # 500.5 -> 501
    assert _signal.resampled_length(1000, 360, 500) == 1389  # 1388.9
    assert _signal.resampled_length(7, 3, 1) == 2  # 2.33


@pytest.mark.parametrize(
    ("orig", "new", "method", "n"),
    [
        (500, 100, "poly", 5000),
        (360, 500, "poly", 3600),
        (1000, 500, "decimate", 10000),
        (1000, 500, "decimate", 10001),
        (250, 500, "fft", 2500),
        (500, 360, "fft", 5000),
    ],
)
def test_resample_keeps_frequency_amplitude_and_length(orig: float, new: float, method: str, n: int) -> None:
    x = tone(10, orig, n / orig, amplitude=2.0, channels=2)
    y = _signal.resample(x, orig, new, method)  # type: ignore[arg-type]
    assert y.dtype == np.float64
    assert y.shape == (2, int(np.floor(n * new / orig + 0.5)))
    assert peak_hz(y[0], new) == pytest.approx(10, abs=new / y.shape[1])
    core = y[0, y.shape[1] // 10 : -y.shape[1] // 10]  # away from filter edge effects
    # 2 %: decimate's Chebyshev I filter has 0.05 dB pass-band ripple, applied twice
    assert amplitude_at(core, 10, new) == pytest.approx(2.0, rel=0.02)
    np.testing.assert_allclose(y[0], y[1])  # channels are independent and identical here


def test_resample_matches_the_ideal_sine() -> None:
    x = tone(10, 360, 10)
    y = _signal.resample(x, 360, 500, "poly")[0]
    ideal = tone(10, 500, 10)[0]
    assert np.max(np.abs(y - ideal)[500:-500]) < 1e-2


def test_resample_same_rate_is_a_copy() -> None:
    x = tone(5, 500, 1)
    y = _signal.resample(x, 500, 500.0)
    np.testing.assert_array_equal(x, y)
    assert y is not x


def test_decimate_needs_an_integer_factor() -> None:
    x = tone(5, 360, 2)
    with pytest.raises(ValueError, match="integer"):
        _signal.resample(x, 360, 250, "decimate")
    with pytest.raises(ValueError, match="integer"):
        _signal.resample(x, 360, 720, "decimate")
    assert _signal.decimate_factor(1000, 500) == 2


def test_resample_1d_input_becomes_one_channel() -> None:
    assert _signal.resample(np.ones(100), 100, 50).shape == (1, 50)


# -------------------------------------------------------------------------------------------- filters


def test_bandpass_removes_drift_and_mains_and_keeps_the_band() -> None:
    fs = 500.0
    keep = tone(10, fs, 20)
    drift = tone(0.05, fs, 20, amplitude=3.0)
    hum = tone(100, fs, 20, amplitude=0.5)
    y = _signal.bandpass(keep + drift + hum, fs, 0.5, 45, order=3)
    inner = slice(1000, -1000)
    residual = y[:, inner] - keep[:, inner]
    assert power(residual) / power(drift[:, inner] + hum[:, inner]) < 1e-3
    assert power(y[:, inner]) / power(keep[:, inner]) == pytest.approx(1.0, abs=0.02)
    # each unwanted component on its own is attenuated
    assert power(_signal.bandpass(hum, fs, 0.5, 45)[:, inner]) / power(hum[:, inner]) < 1e-4
    assert power(_signal.bandpass(drift, fs, 0.5, 45)[:, inner]) / power(drift[:, inner]) < 1e-3


def _lag_of_peak(x: np.ndarray, y: np.ndarray) -> int:
    corr = ss.correlate(y, x, mode="full")
    return int(np.argmax(corr) - (x.size - 1))


def test_filters_are_zero_phase() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5000)
    fs = 500.0
    for y in (
        _signal.bandpass(x, fs, 0.5, 45)[0],
        _signal.lowpass(x, fs, 20)[0],
        _signal.highpass(x, fs, 0.5)[0],
    ):
        assert _lag_of_peak(x, y) == 0
    # the same Butterworth run causally (one pass) does lag: the check above can fail
    causal = ss.sosfilt(_signal.butter_sos("lowpass", 20, fs, 3), x)
    assert _lag_of_peak(x, causal) > 0


def test_highpass_and_lowpass_split_frequencies() -> None:
    fs = 250.0
    low, high = tone(1, fs, 20), tone(40, fs, 20)
    inner = slice(500, -500)
    hp = _signal.highpass(low + high, fs, 10)
    lp = _signal.lowpass(low + high, fs, 10)
    np.testing.assert_allclose(hp[:, inner], high[:, inner], atol=0.01)
    np.testing.assert_allclose(lp[:, inner], low[:, inner], atol=0.01)


@pytest.mark.parametrize(
    ("kind", "cutoff"),
    [
        ("lowpass", 250.0),
        ("lowpass", 300.0),
        ("highpass", 0.0),
        ("bandpass", (0.5, 260.0)),
        ("bandpass", (40.0, 30.0)),
    ],
)
def test_bad_cutoffs_are_rejected(kind: str, cutoff: float | tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="Nyquist|below"):
        _signal.butter_sos(kind, cutoff, 500.0, 3)  # type: ignore[arg-type]


def test_too_short_signal_to_filter() -> None:
    with pytest.raises(ValueError, match="too short"):
        _signal.bandpass(np.ones((2, 10)), 500, 0.5, 45)


# ---------------------------------------------------------------------------------------- crop or pad


@pytest.mark.parametrize(
    ("align", "expected"),
    [("start", [0, 1, 2, 3]), ("center", [3, 4, 5, 6]), ("end", [6, 7, 8, 9])],
)
def test_crop(align: str, expected: list[int]) -> None:
    x = np.arange(10.0)[np.newaxis].repeat(2, 0)
    y, padded = _signal.crop_or_pad(x, 4, align)  # type: ignore[arg-type]
    assert padded == 0
    np.testing.assert_array_equal(y, [expected, expected])


@pytest.mark.parametrize(
    ("align", "pad", "expected"),
    [
        ("start", "zero", [1, 2, 3, 0, 0, 0]),
        ("end", "zero", [0, 0, 0, 1, 2, 3]),
        ("center", "zero", [0, 1, 2, 3, 0, 0]),
        ("start", "edge", [1, 2, 3, 3, 3, 3]),
        ("end", "edge", [1, 1, 1, 1, 2, 3]),
        ("center", "edge", [1, 1, 2, 3, 3, 3]),
    ],
)
def test_pad(align: str, pad: str, expected: list[int]) -> None:
    y, padded = _signal.crop_or_pad(np.array([[1.0, 2.0, 3.0]]), 6, align, pad)  # type: ignore[arg-type]
    assert padded == 3
    np.testing.assert_array_equal(y[0], expected)


def test_crop_or_pad_exact_length_and_empty() -> None:
    x = np.arange(5.0)[np.newaxis]
    y, padded = _signal.crop_or_pad(x, 5)
    np.testing.assert_array_equal(x, y)
    assert padded == 0
    y, padded = _signal.crop_or_pad(np.zeros((2, 0)), 3, pad="edge")
    assert y.shape == (2, 3) and padded == 3 and not y.any()


# ------------------------------------------------------------------------------------- normalisations


def test_zscore_per_lead_and_global() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal([[5.0], [-3.0]], [[2.0], [0.1]], size=(2, 1000))
    z = _signal.zscore(x)
    np.testing.assert_allclose(z.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=1), 1, atol=1e-12)
    g = _signal.zscore(x, per_lead=False)
    assert g.mean() == pytest.approx(0, abs=1e-12) and g.std() == pytest.approx(1)
    assert abs(g[1].std() - 1) > 0.5  # global statistics differ from per-lead ones


def test_flat_lead_gives_zeros_not_nan() -> None:
    x = np.vstack([np.full(100, 7.0), np.linspace(-1, 1, 100)])
    for fn in (_signal.zscore, _signal.range_scale, _signal.minmax):
        y = fn(x, per_lead=True)
        assert np.isfinite(y).all()
        np.testing.assert_array_equal(y[0], 0)
    assert not _signal.zscore(np.full((2, 10), 3.0), per_lead=False).any()


def test_range_is_climbs_formula() -> None:
    x = np.array([[0.0, 1.0, 2.0, 3.0], [-2.0, 0.0, 2.0, 6.0]])
    np.testing.assert_allclose(_signal.range_scale(x), x / (6.0 - -2.0))  # default: whole record
    np.testing.assert_allclose(_signal.range_scale(x, per_lead=True), x / np.array([[3.0], [8.0]]))


def test_minmax_maps_to_unit_interval() -> None:
    x = np.array([[2.0, 4.0, 6.0], [-1.0, 0.0, 1.0]])
    np.testing.assert_allclose(_signal.minmax(x), [[0, 0.5, 1], [0, 0.5, 1]])
    np.testing.assert_allclose(_signal.minmax(x, per_lead=False), (x + 1) / 7)
