"""Pure numpy/scipy helpers for 1-D physiological signals (ECG now, EEG later).

Every function takes an array shaped (channels, samples) and works along the last axis. Inputs are
converted to float64 and float64 is returned: choosing the stored dtype is the job of a cast step.
Invalid arguments raise ValueError with a one-line message; steps turn it into an ItemError.

The last section holds the step bodies the ECG and EEG modules share (sampling rate lookup, resampling and
filtering of `sample.arrays["signal"]`, overflow-checked casts); each module passes its own step name and
its own check of the signal, so step names and error messages stay per module.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from fractions import Fraction
from typing import TYPE_CHECKING, Literal

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps.base import Sample

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import numpy as np
    import scipy.signal as _ss
else:
    np = lazy("numpy")
    _ss = lazy("scipy.signal")

ResampleMethod = Literal["poly", "fft", "decimate"]
CropAlign = Literal["start", "center", "end"]
PadMode = Literal["zero", "edge"]

#: largest up or down factor accepted by the polyphase resampler (its FIR filter has ~20x this many taps).
MAX_POLY_FACTOR = 100_000


def as_2d(x: np.ndarray) -> np.ndarray:
    """`x` as a float64 (channels, samples) array; a 1-D input becomes one channel."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 1:
        a = a[np.newaxis, :]
    if a.ndim != 2:
        raise ValueError(f"expected a (channels, samples) array, got shape {a.shape}")
    return a


def _exact(hz: float) -> Fraction:
    """A rate as an exact fraction of its shortest decimal spelling (62.4725 -> 249890/4000)."""
    if not np.isfinite(hz) or hz <= 0:
        raise ValueError(f"sampling rate must be a positive finite number, got {hz!r}")
    return Fraction(repr(float(hz)))


def rate_ratio(orig_hz: float, new_hz: float) -> tuple[int, int]:
    """(up, down) with up/down == new_hz/orig_hz, reduced by their gcd (360 -> 500 gives (25, 18))."""
    ratio = _exact(new_hz) / _exact(orig_hz)  # Fraction keeps it reduced
    if max(ratio.numerator, ratio.denominator) > MAX_POLY_FACTOR:
        ratio = ratio.limit_denominator(MAX_POLY_FACTOR)
        if ratio.numerator > MAX_POLY_FACTOR or ratio.numerator == 0:
            raise ValueError(
                f"cannot resample {orig_hz} Hz -> {new_hz} Hz with a polyphase filter (ratio too extreme); "
                "use method 'fft'"
            )
    return ratio.numerator, ratio.denominator


def resampled_length(n: int, orig_hz: float, new_hz: float) -> int:
    """round(n * new_hz / orig_hz), halves rounded up, computed exactly."""
    exact = Fraction(n) * _exact(new_hz) / _exact(orig_hz)
    return int((exact + Fraction(1, 2)).__floor__())


def decimate_factor(orig_hz: float, new_hz: float) -> int:
    """The integer q with orig_hz / q == new_hz; ValueError when the ratio is not a whole number >= 1."""
    ratio = _exact(orig_hz) / _exact(new_hz)
    if ratio.denominator != 1 or ratio.numerator < 1:
        raise ValueError(
            f"decimate needs an integer down-sampling factor, but {orig_hz:g} Hz / {new_hz:g} Hz "
            f"= {float(ratio):g}; use method 'poly' or 'fft'"
        )
    return ratio.numerator


def resample(x: np.ndarray, orig_hz: float, new_hz: float, method: ResampleMethod = "poly") -> np.ndarray:
    """Resample along the last axis from `orig_hz` to `new_hz`.

    poly:     scipy.signal.resample_poly with (up, down) from the exact rate ratio (anti-aliasing FIR).
    fft:      scipy.signal.resample (Fourier method; assumes a periodic signal, so edges can ring).
    decimate: scipy.signal.decimate by an integer factor (8th-order Chebyshev I, zero-phase), as CLIMB's
              CinC ECG loaders did; down-sampling only.
    The output always has round(n * new_hz / orig_hz) samples (halves up), whatever the method.
    """
    a = as_2d(x)
    n = a.shape[-1]
    if _exact(orig_hz) == _exact(new_hz):
        return a.copy()
    n_out = resampled_length(n, orig_hz, new_hz)
    if n == 0 or n_out == 0:
        return np.zeros((a.shape[0], n_out), dtype=np.float64)
    if method == "poly":
        up, down = rate_ratio(orig_hz, new_hz)
        y = _ss.resample_poly(a, up, down, axis=-1)
    elif method == "fft":
        y = _ss.resample(a, n_out, axis=-1)
    elif method == "decimate":
        q = decimate_factor(orig_hz, new_hz)
        # decimate's zero-phase IIR filter needs more than 27 samples (3 * (order + 1) padding).
        if n <= 27:
            raise ValueError(f"decimate needs more than 27 samples, the signal has {n}")
        y = _ss.decimate(a, q, axis=-1, zero_phase=True)
    else:
        raise ValueError(f"unknown resampling method {method!r}")
    y = np.asarray(y, dtype=np.float64)
    if y.shape[-1] > n_out:
        y = y[..., :n_out]
    elif y.shape[-1] < n_out:  # not expected from scipy, but keep the length contract
        y = np.pad(y, ((0, 0), (0, n_out - y.shape[-1])), mode="edge")
    return np.ascontiguousarray(y)


FilterKind = Literal["bandpass", "highpass", "lowpass"]


def butter_sos(kind: FilterKind, cutoff: float | tuple[float, float], fs: float, order: int) -> np.ndarray:
    """Butterworth second-order sections, with cut-offs checked against the Nyquist frequency of `fs`."""
    if not np.isfinite(fs) or fs <= 0:
        raise ValueError(f"sampling rate must be positive, got {fs!r}")
    if order < 1:
        raise ValueError(f"filter order must be >= 1, got {order}")
    nyquist = fs / 2.0
    cuts = [float(c) for c in (cutoff if isinstance(cutoff, tuple) else (cutoff,))]
    expected = 2 if kind == "bandpass" else 1
    if len(cuts) != expected:
        raise ValueError(f"a {kind} filter takes {expected} cut-off(s), got {len(cuts)}")
    for c in cuts:
        if not 0 < c < nyquist:
            raise ValueError(
                f"cut-off {c:g} Hz must be between 0 and the Nyquist frequency {nyquist:g} Hz "
                f"(sampling rate {fs:g} Hz)"
            )
    if kind == "bandpass" and not cuts[0] < cuts[1]:
        raise ValueError(f"band-pass low cut-off {cuts[0]:g} Hz must be below the high one {cuts[1]:g} Hz")
    wn = cuts if kind == "bandpass" else cuts[0]
    return _ss.butter(order, wn, btype=kind, fs=fs, output="sos")


def sosfiltfilt(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Zero-phase filtering along the last axis, with a clear error when the signal is too short to pad."""
    a = as_2d(x)
    # scipy's default odd padding length for sosfiltfilt:
    padlen = 3 * (2 * len(sos) + 1 - min(int((sos[:, 2] == 0).sum()), int((sos[:, 5] == 0).sum())))
    if a.shape[-1] <= padlen:
        raise ValueError(f"signal too short to filter: {a.shape[-1]} samples, needs more than {padlen}")
    return np.ascontiguousarray(_ss.sosfiltfilt(sos, a, axis=-1))


def bandpass(x: np.ndarray, fs: float, low: float, high: float, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth band-pass `low`..`high` Hz (run forward and backward: the order doubles)."""
    return sosfiltfilt(x, butter_sos("bandpass", (low, high), fs, order))


def highpass(x: np.ndarray, fs: float, hz: float, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth high-pass at `hz` Hz."""
    return sosfiltfilt(x, butter_sos("highpass", hz, fs, order))


def lowpass(x: np.ndarray, fs: float, hz: float, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth low-pass at `hz` Hz."""
    return sosfiltfilt(x, butter_sos("lowpass", hz, fs, order))


def crop_or_pad(
    x: np.ndarray, length: int, align: CropAlign = "start", pad: PadMode = "zero"
) -> tuple[np.ndarray, int]:
    """Crop or pad the last axis to `length`; returns (array, number of samples added by padding).

    align says which part is kept when cropping and where the signal sits when padding:
    start keeps the beginning (pads at the end), end keeps the end (pads at the start), center splits
    evenly (the extra sample, if any, goes to the end). pad is 'zero' (constant 0) or 'edge' (repeat the
    first/last sample; an empty signal is zero-padded).
    """
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    a = as_2d(x)
    n = a.shape[-1]
    if n >= length:
        start = {"start": 0, "end": n - length, "center": (n - length) // 2}[align]
        return np.ascontiguousarray(a[:, start : start + length]), 0
    missing = length - n
    before = {"start": 0, "end": missing, "center": missing // 2}[align]
    after = missing - before
    mode: Literal["edge", "constant"] = "edge" if pad == "edge" and n > 0 else "constant"
    return np.pad(a, ((0, 0), (before, after)), mode=mode), missing


def _safe_divide(num: np.ndarray, den: np.ndarray, eps: float) -> np.ndarray:
    """num / den, with 0 wherever |den| <= eps (a flat lead becomes zeros, never NaN or inf)."""
    ok = np.abs(den) > eps
    out = np.divide(num, np.where(ok, den, 1.0))
    return np.where(np.broadcast_to(ok, out.shape), out, 0.0)


def zscore(x: np.ndarray, per_lead: bool = True, eps: float = 1e-8) -> np.ndarray:
    """(x - mean) / std, per channel or over the whole array; channels with std <= eps become zeros."""
    a = as_2d(x)
    if not a.size:
        return a.copy()
    axis = -1 if per_lead else None
    mean = a.mean(axis=axis, keepdims=True)
    std = a.std(axis=axis, keepdims=True)
    return _safe_divide(a - mean, std, eps)


def range_scale(x: np.ndarray, per_lead: bool = False, eps: float = 1e-8) -> np.ndarray:
    """x / (max(x) - min(x)), no centring: CLIMB's CinC ECG normalisation when per_lead is False."""
    a = as_2d(x)
    if not a.size:
        return a.copy()
    axis = -1 if per_lead else None
    span = a.max(axis=axis, keepdims=True) - a.min(axis=axis, keepdims=True)
    return _safe_divide(a, span, eps)


def minmax(x: np.ndarray, per_lead: bool = True, eps: float = 1e-8) -> np.ndarray:
    """(x - min) / (max - min) into [0, 1], per channel or over the whole array; flat channels give zeros."""
    a = as_2d(x)
    if not a.size:
        return a.copy()
    axis = -1 if per_lead else None
    lo = a.min(axis=axis, keepdims=True)
    return _safe_divide(a - lo, a.max(axis=axis, keepdims=True) - lo, eps)


# ------------------------------------------------------------------------------------ shared step bodies

#: a module's check of `sample.arrays["signal"]` before a step uses it: (sample, step name) -> array.
SignalCheck = Callable[[Sample, str], "np.ndarray"]


def sampling_rate(sample: Sample) -> float:
    """`meta["sampling_rate"]` as a float; an ItemError when no reader step has set it."""
    fs = sample.meta.get("sampling_rate")
    if fs is None:
        raise ItemError("no sampling_rate in the sample's metadata; a reader step must come first")
    return float(fs)


def resample_sample(
    sample: Sample, step_name: str, hz: float, method: ResampleMethod, check: SignalCheck
) -> Sample:
    """Resample the signal to `hz` and update meta sampling_rate; a no-op at the same rate."""
    fs = sampling_rate(sample)
    if math.isclose(fs, hz, rel_tol=1e-12):
        return sample
    x = check(sample, step_name)
    try:
        sample.arrays["signal"] = resample(x, fs, hz, method)
    except ValueError as exc:
        raise ItemError(str(exc)) from None
    sample.meta["sampling_rate"] = float(hz)
    return sample


def filter_sample(
    sample: Sample, step_name: str, apply: Callable[[np.ndarray, float], np.ndarray], check: SignalCheck
) -> Sample:
    """Replace the signal by apply(signal, sampling rate); a ValueError becomes '<step_name>: <reason>'."""
    x = check(sample, step_name)
    fs = sampling_rate(sample)
    try:
        sample.arrays["signal"] = apply(x, fs)
    except ValueError as exc:
        raise ItemError(f"{step_name}: {exc}") from None
    return sample


def astype_counting_overflow(x: np.ndarray, dtype: str) -> tuple[np.ndarray, int]:
    """`x` cast to `dtype`, and how many finite values became inf (overflow) in the cast."""
    with np.errstate(over="ignore"):
        out = x.astype(dtype)
    if np.isfinite(out).all():
        return out, 0
    return out, int(np.count_nonzero(np.isfinite(x) & ~np.isfinite(out)))
