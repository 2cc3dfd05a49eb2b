"""ECG steps: read a WFDB record, pick leads, resample, filter, crop/pad, normalise and cast.

Every step works on `sample.arrays["signal"]`, shaped (leads, samples), and keeps `sample.meta` in sync
(`sampling_rate`, `lead_names`, `units`, ...). Arrays stay float64 until `ecg.cast` picks the stored dtype.

CLIMB's own choices, for reference (see docs of the reference corpus, section 1.4): the CinC loaders
resample to 500 Hz (integer `decimate` down, Fourier `resample` up), divide by max - min over the whole
record (`ecg.normalize` method=range, per_lead=false) and keep the first 5000 samples; the MIMIC-IV-ECG
processors use a 3rd-order Butterworth high-pass 0.5 Hz then low-pass 45 Hz with filtfilt (`ecg.highpass`
+ `ecg.lowpass`, order 3) and a per-lead z-score.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator, model_validator

from climb_cli.errors import ItemDropped, ItemError
from climb_cli.lazy import lazy
from climb_cli.steps import _signal, _wfdb_fast
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import numpy as np
    import wfdb
else:
    np = lazy("numpy")
    wfdb = lazy("wfdb")

# --------------------------------------------------------------------------------------------- helpers

#: bytes per sample of the fixed-width WFDB formats (212, 310 and 311 pack samples; FLAC is compressed).
_BYTES_PER_SAMPLE = {"8": 1, "80": 1, "16": 2, "61": 2, "160": 2, "24": 3, "32": 4}
_FLAC_FORMATS = {"508", "516", "524"}


def _signal_bytes(fmt: str, n_samples: int) -> int:
    """Bytes wfdb reads for `n_samples` samples of format `fmt` (mirrors wfdb's own read arithmetic)."""
    if fmt == "212":
        return math.ceil(n_samples * 1.5)
    if fmt in ("310", "311"):
        if fmt == "310" and n_samples % 3 == 2:
            return 4 * math.ceil(n_samples * 4 / 3 / 4)
        return math.ceil(n_samples * 4 / 3)
    return n_samples * _BYTES_PER_SAMPLE[fmt]


def _record_base(path: Path) -> Path:
    """The record path without extension (a trailing `.hea` is tolerated)."""
    path = Path(os.path.abspath(path))
    return path.with_name(path.name[: -len(".hea")]) if path.name.endswith(".hea") else path


_NUMBER = r"[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?"
_FS_TOKEN = re.compile(rf"{_NUMBER}(?:/{_NUMBER}(?:\(-?{_NUMBER}\))?)?")


def _check_record_line(header_path: Path) -> str:
    """Reject a malformed record line (wfdb silently turns an unparsable sampling rate into 250 Hz)."""
    try:
        text = header_path.read_bytes().decode("latin-1")
    except OSError as exc:
        raise ItemError(f"{header_path.name}: unreadable header ({_why(exc)})") from None
    lines = [line.strip() for line in text.splitlines()]
    record_line = next((line for line in lines if line and not line.startswith("#")), "")
    tokens = record_line.split()
    ok = (
        len(tokens) >= 2
        and tokens[1].isdigit()
        and (len(tokens) < 3 or _FS_TOKEN.fullmatch(tokens[2]) is not None)
        and (len(tokens) < 4 or tokens[3].isdigit())
    )
    if not ok:
        raise ItemError(f"{header_path.name}: not a WFDB header (record line {record_line[:60]!r})")
    return record_line


def _check_signal_files(header: wfdb.Record, directory: Path, spf: list[int]) -> list[Path]:
    """Check that every signal file exists and is as long as the header says; return them in header order.

    wfdb itself fails on a short file with an unhelpful numpy error, so the expected size is computed
    here: byte_offset + the packed size of sig_len frames of that file's signals.
    """
    groups: dict[str, list[int]] = {}
    for ch, name in enumerate(header.file_name):
        groups.setdefault(name, []).append(ch)
    paths: list[Path] = []
    for name, channels in groups.items():
        if not name or name == "~":
            raise ItemError(f"{header.record_name}.hea: signal {channels[0]} has no signal file")
        path = directory / name
        if not path.is_file():
            raise ItemError(f"{name}: signal file missing (named in {header.record_name}.hea)")
        paths.append(path)
        fmts = {header.fmt[ch] for ch in channels}
        if len(fmts) != 1:
            raise ItemError(f"{name}: signals in one file use different formats ({', '.join(sorted(fmts))})")
        fmt = fmts.pop()
        if fmt in _FLAC_FORMATS:
            continue  # compressed: the decoded length is checked after reading
        if fmt not in _BYTES_PER_SAMPLE and fmt not in ("212", "310", "311"):
            raise ItemError(f"{name}: unsupported WFDB signal format {fmt!r}")
        if header.sig_len is None:
            continue  # wfdb infers the length from the file size: nothing to compare against
        offset = (header.byte_offset[channels[0]] if header.byte_offset else None) or 0
        frame = sum(spf[ch] for ch in channels)
        needed = offset + _signal_bytes(fmt, header.sig_len * frame)
        size = path.stat().st_size
        if size < needed:
            raise ItemError(
                f"{name}: truncated signal file, {size} bytes but the header needs {needed} "
                f"({header.sig_len} samples x {frame} per frame, format {fmt})"
            )
    return paths


def _finite_signal(sample: Sample, step_name: str) -> np.ndarray:
    """The `signal` array, refusing NaN/inf (they would spread through filters and statistics)."""
    x = sample.array("signal")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ItemError(f"signal has {bad} NaN/inf samples; put ecg.nan_to_num before {step_name}")
    return x


def _lead_key(name: str) -> str:
    """How lead names are compared: case-insensitive, spaces ignored (`aVR` == `AVR`, `ECG 1` == `ecg1`)."""
    return "".join(name.split()).casefold()


# ------------------------------------------------------------------------------------------- read_wfdb


class ReadWfdbParams(StepParams):
    input: str = Field("record", description="sample input holding the record path, without extension")
    physical: bool = Field(
        True, description="physical units (e.g. mV); false gives the raw digital values (units 'adu')"
    )
    mixed_rates: Literal["interpolate", "error"] = Field(
        "interpolate",
        description="signals with different samples per frame (e.g. ECG 500 Hz, ABP 125 Hz): interpolate "
        "the slower ones linearly onto the fastest rate (meta original_lead_sampling_rates keeps each "
        "lead's own rate), "
        "or fail the item",
    )


@step("ecg.read_wfdb", ReadWfdbParams)
def read_wfdb(sample: Sample, p: ReadWfdbParams) -> Sample:
    """Read a WFDB record (.hea + .dat/.mat/FLAC signal files; single- or multi-segment, one or several
    sampling rates) into `signal` (leads, samples).

    Formats 16 and 61 are read by climb's own reader, the others by wfdb. A multi-segment record (MIMIC
    waveforms) is joined segment after segment: a fixed layout by position, a variable layout by signal
    name onto the layout header's signals, with NaN where a segment lacks a signal and for null (`~`)
    segments. Signals with more samples per frame run faster: the slower ones are linearly interpolated
    between their own samples, placed at their true instants (sample j of k in a frame at (frame + j/k)/fs),
    onto the fastest rate; the last frame holds its last value, and a NaN makes its interpolated neighbours
    NaN (with physical: false the interpolated digital values are not integers). Nothing of the fastest
    signals is averaged away (wfdb's smooth_frames would).
    """
    base = _record_base(sample.input(p.input))
    with item_errors(f"{base.name}.hea: cannot read the record"):
        return _read_wfdb(sample, p, base)


@dataclass
class _Signals:
    """A record as read: channel c holds n_frames * spf[c] samples."""

    channels: list[np.ndarray] | np.ndarray  # or one (n_sig, samples) array at one rate
    names: list[str]
    units: list[str]
    spf: list[int]
    fs: float  # frame rate
    files: list[Path]  # headers (of segments) and signal files, in reading order


def _read_wfdb(sample: Sample, p: ReadWfdbParams, base: Path) -> Sample:
    header_path = base.with_name(base.name + ".hea")
    if not header_path.is_file():
        raise ItemError(f"{header_path.name}: header file not found")
    record_line = _check_record_line(header_path)
    if "/" in record_line.split()[0]:
        rec = _read_multi_segment(header_path, base, p.physical)
    else:
        rec = _read_segment(header_path, base, p.physical)
    signal, rate = _one_rate(rec, header_path, p.mixed_rates)
    _store(sample, header_path, signal, rec.names, rec.units, rate, rec.files)
    # always set (one shard schema for every row), kept in step with the leads by ecg.select_leads
    sample.meta["original_lead_sampling_rates"] = [rec.fs * k for k in rec.spf]
    return sample


def _read_segment(header_path: Path, base: Path, physical: bool) -> _Signals:
    """One single-segment record (a whole record, or one segment of a multi-segment one)."""
    try:
        fast = _wfdb_fast.read(header_path, physical=physical)
    except _wfdb_fast.Truncated as t:
        raise ItemError(
            f"{t.path.name}: truncated signal file, {t.size} bytes but the header needs {t.needed} "
            f"({t.frames} samples x {t.channels} per frame, format {t.fmt})"
        ) from None
    if fast is not None:
        units = fast.units if physical else ["adu"] * len(fast.names)
        return _Signals(fast.channels, fast.names, units, fast.spf, fast.fs, fast.files)
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:
        raise ItemError(f"{header_path.name}: unreadable WFDB header ({_why(exc)})") from None
    if isinstance(header, wfdb.MultiRecord) or getattr(header, "seg_name", None):
        raise ItemError(f"{header_path.name}: a multi-segment header where a segment was expected")
    n_sig = header.n_sig or 0
    if n_sig < 1:
        raise ItemError(f"{header_path.name}: the record has no signals")
    names = [str(n) if n is not None else "" for n in (header.sig_name or [""] * n_sig)]
    spf = [int(s or 1) for s in (header.samps_per_frame or [1] * n_sig)]
    fs = float(header.fs)
    signal_files = _check_signal_files(header, base.parent, spf)

    try:
        record = wfdb.rdrecord(str(base), physical=False, smooth_frames=False)
        values = record.dac(expanded=True, return_res=64)
    except Exception as exc:
        files = ", ".join(f.name for f in signal_files)
        raise ItemError(f"{files}: cannot read signals of {header_path.name} ({_why(exc)})") from None

    expected = header.sig_len if header.sig_len is not None else record.sig_len
    lengths = [len(ch) for ch in values]
    if any(n != expected * k for n, k in zip(lengths, spf, strict=True)):
        files = ", ".join(f.name for f in signal_files)
        raise ItemError(
            f"{files}: short read, got {lengths} samples per channel but {header_path.name} says {expected}"
        )
    if physical:
        channels = [np.asarray(ch, dtype=np.float64) for ch in values]
        units = [str(u) if u else "" for u in (record.units or [""] * n_sig)]
    else:
        # invalid-sample markers become NaN, as in physical mode
        channels = [
            np.where(np.isnan(ph), np.nan, np.asarray(d, dtype=np.float64))
            for d, ph in zip(record.e_d_signal, values, strict=True)
        ]
        units = ["adu"] * n_sig
    return _Signals(channels, names, units, spf, fs, [*signal_files])


def _read_multi_segment(header_path: Path, base: Path, physical: bool) -> _Signals:
    """Join the segments of a multi-segment record (fixed or variable layout, null segments as NaN)."""
    if not physical:
        raise ItemError(
            f"{header_path.name}: a multi-segment record is read in physical units only (its segments "
            "may use different gains and baselines); set physical: true"
        )
    try:
        header = wfdb.rdheader(str(base))
    except Exception as exc:
        raise ItemError(f"{header_path.name}: unreadable WFDB header ({_why(exc)})") from None
    seg_names = [str(n) for n in (header.seg_name or [])]
    seg_lens = [int(n) for n in (header.seg_len or [])]
    if not seg_names or len(seg_names) != len(seg_lens):
        raise ItemError(f"{header_path.name}: multi-segment header without a segment list")
    fs = float(header.fs)
    directory = base.parent
    files: list[Path] = []

    def segment(name: str) -> _Signals:
        seg_header = directory / f"{name}.hea"
        if not seg_header.is_file():
            raise ItemError(f"{seg_header.name}: segment header missing (named in {header_path.name})")
        _check_record_line(seg_header)
        files.append(seg_header)
        return _read_segment(seg_header, directory / name, physical)

    parts = list(zip(seg_names, seg_lens, strict=True))
    variable = seg_lens[0] == 0
    if variable:  # the layout segment: signal names, units and samples per frame, no samples
        layout_header = directory / f"{seg_names[0]}.hea"
        if not layout_header.is_file():
            raise ItemError(f"{layout_header.name}: layout header missing (named in {header_path.name})")
        files.append(layout_header)
        try:
            layout = wfdb.rdheader(str(directory / seg_names[0]))
        except Exception as exc:
            raise ItemError(f"{layout_header.name}: unreadable WFDB header ({_why(exc)})") from None
        names = [str(n) for n in (layout.sig_name or [])]
        units = [str(u) if u else "" for u in (layout.units or [""] * len(names))]
        spf = [int(k or 1) for k in (layout.samps_per_frame or [1] * len(names))]
        parts = parts[1:]
        if not names:
            raise ItemError(f"{layout_header.name}: the layout segment names no signals")
    else:
        names, units, spf = [], [], []
    total = sum(n for _, n in parts)
    channels: list[np.ndarray] = []
    position = 0
    for name, n_frames in parts:
        if name == "~":  # a null segment: no signal was recorded
            position += n_frames
            continue
        seg = segment(name)
        if not math.isclose(seg.fs, fs, rel_tol=1e-9):
            raise ItemError(f"{name}.hea: segment frame rate {seg.fs:g} Hz, record {fs:g} Hz")
        if not names:  # fixed layout: the first segment's signals
            names, units, spf = list(seg.names), list(seg.units), list(seg.spf)
        if not channels:
            channels = [np.full(total * k, np.nan) for k in spf]
        if not variable and seg.names != names:
            raise ItemError(
                f"{name}.hea: signals {seg.names} differ from the first segment's {names} in a fixed layout"
            )
        for c_seg, signal_name in enumerate(seg.names):
            if signal_name not in names:
                raise ItemError(
                    f"{name}.hea: signal {signal_name!r} is not in the layout ({', '.join(names)})"
                )
            c = names.index(signal_name) if variable else c_seg
            k = spf[c]
            if seg.spf[c_seg] != k:
                raise ItemError(
                    f"{name}.hea: signal {signal_name!r} has {seg.spf[c_seg]} samples per frame, "
                    f"the record {k}"
                )
            x = seg.channels[c_seg]
            if len(x) != n_frames * k:
                raise ItemError(f"{name}.hea: {len(x) // k} frames where {header_path.name} says {n_frames}")
            channels[c][position * k : (position + n_frames) * k] = x
        files.extend(seg.files)
        position += n_frames
    if not channels:
        if not names:
            raise ItemError(f"{header_path.name}: every segment is null; no signal to read")
        channels = [np.full(total * k, np.nan) for k in spf]
    return _Signals(channels, names, units, spf, fs, files)


def _one_rate(rec: _Signals, header_path: Path, mixed_rates: str) -> tuple[np.ndarray, float]:
    """(leads, samples) at one rate: as read when every signal has the same samples per frame, else the
    slower signals linearly interpolated onto the fastest rate (see read_wfdb)."""
    if len(set(rec.spf)) == 1:
        one = rec.channels if isinstance(rec.channels, np.ndarray) else np.stack(rec.channels)
        return one, rec.fs * rec.spf[0]
    if mixed_rates == "error":
        rates = ", ".join(f"{n} {rec.fs * k:g} Hz" for n, k in zip(rec.names, rec.spf, strict=True))
        raise ItemError(
            f"{header_path.name}: multi-frequency record ({rates}): channels have different sampling "
            "rates; set mixed_rates: interpolate"
        )
    top = max(rec.spf)
    n_frames = len(rec.channels[0]) // rec.spf[0]
    grid = np.arange(n_frames * top) / top  # in frames
    rows = []
    for x, k in zip(rec.channels, rec.spf, strict=True):
        rows.append(x if k == top else np.interp(grid, np.arange(n_frames * k) / k, x))
    return np.stack(rows), rec.fs * top


def _store(
    sample: Sample,
    header_path: Path,
    signal: np.ndarray,
    names: list[str],
    units: list[str],
    rate: float,
    signal_files: list[Path],
) -> Sample:
    sample.arrays["signal"] = np.ascontiguousarray(signal)
    sample.meta.update(
        sampling_rate=rate,
        lead_names=names,
        units=units,
        original_length=int(signal.shape[1]),
        original_sampling_rate=rate,
    )
    for path in [header_path, *signal_files]:
        if path not in sample.sources:
            sample.sources.append(path)
    return sample


# ---------------------------------------------------------------------------------------- select_leads


class SelectLeadsParams(StepParams):
    leads: list[str] = Field(
        min_length=1,
        description="lead names in the wanted order, matched case-insensitively ignoring spaces (aVR = AVR)",
    )
    missing: Literal["error", "zero"] = Field(
        "error", description="a lead not in the record: fail the item (error) or add a zero row with unit ''"
    )

    @field_validator("leads")
    @classmethod
    def _distinct(cls, leads: list[str]) -> list[str]:
        seen: set[str] = set()
        for lead in leads:
            key = _lead_key(lead)
            if not key:
                raise ValueError("lead names must not be empty")
            if key in seen:
                raise ValueError(f"lead {lead!r} is listed twice")
            seen.add(key)
        return leads


@step("ecg.select_leads", SelectLeadsParams)
def select_leads(sample: Sample, p: SelectLeadsParams) -> Sample:
    """Keep and reorder leads by name (case/space-insensitive); lead_names become the names asked for."""
    x = sample.array("signal")
    names = list(sample.meta.get("lead_names") or [])
    units = list(sample.meta.get("units") or [""] * len(names))
    if len(names) != x.shape[0] or len(units) != x.shape[0]:
        raise ItemError(f"lead_names/units do not match the signal's {x.shape[0]} rows")
    rates = sample.meta.get("original_lead_sampling_rates")
    if rates is not None and len(rates) != len(names):
        raise ItemError(f"original_lead_sampling_rates do not match the signal's {x.shape[0]} rows")
    index: dict[str, list[int]] = {}
    for i, name in enumerate(names):
        index.setdefault(_lead_key(name), []).append(i)
    rows: list[np.ndarray] = []
    out_units: list[str] = []
    out_rates: list[float] = []
    absent: list[str] = []
    for lead in p.leads:
        hits = index.get(_lead_key(lead), [])
        if len(hits) > 1:
            raise ItemError(f"lead {lead!r} is ambiguous: the record has {[names[i] for i in hits]}")
        if hits:
            rows.append(x[hits[0]])
            out_units.append(units[hits[0]])
            out_rates.append(float(rates[hits[0]]) if rates is not None else 0.0)
        elif p.missing == "zero":
            rows.append(np.zeros(x.shape[1], dtype=x.dtype))
            out_units.append("")
            out_rates.append(0.0)
            absent.append(lead)
        else:
            raise ItemError(f"lead {lead!r} not in the record (leads: {', '.join(names)})")
    sample.arrays["signal"] = np.stack(rows)
    sample.meta["lead_names"] = list(p.leads)
    sample.meta["units"] = out_units
    if rates is not None:
        sample.meta["original_lead_sampling_rates"] = out_rates
    if p.missing == "zero":
        sample.meta["missing_leads"] = absent
    return sample


# -------------------------------------------------------------------------------------------- resample


class ResampleParams(StepParams):
    hz: float = Field(gt=0, description="target sampling rate in Hz")
    method: Literal["poly", "fft", "decimate"] = Field(
        "poly",
        description="poly: polyphase FIR (scipy resample_poly); fft: Fourier (scipy resample); "
        "decimate: integer-factor down-sampling with an IIR anti-alias filter, as CLIMB",
    )


@step("ecg.resample", ResampleParams)
def resample(sample: Sample, p: ResampleParams) -> Sample:
    """Resample to `hz`; the length becomes round(n * hz / rate); a no-op at the same rate."""
    return _signal.resample_sample(sample, "ecg.resample", p.hz, p.method, _finite_signal)


# --------------------------------------------------------------------------------------------- filters


class BandpassParams(StepParams):
    low: float = Field(gt=0, description="lower cut-off in Hz")
    high: float = Field(gt=0, description="upper cut-off in Hz (below the Nyquist frequency)")
    order: int = Field(3, ge=1, le=8, description="Butterworth order (applied forward and backward)")

    @model_validator(mode="after")
    def _ordered(self) -> BandpassParams:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class CutoffParams(StepParams):
    hz: float = Field(gt=0, description="cut-off frequency in Hz (below the Nyquist frequency)")
    order: int = Field(3, ge=1, le=8, description="Butterworth order (applied forward and backward)")


def _filtered(sample: Sample, step_name: str, apply: Callable[[np.ndarray, float], np.ndarray]) -> Sample:
    return _signal.filter_sample(sample, step_name, apply, _finite_signal)


@step("ecg.bandpass", BandpassParams)
def bandpass(sample: Sample, p: BandpassParams) -> Sample:
    """Zero-phase Butterworth band-pass (sosfiltfilt) between `low` and `high` Hz."""
    return _filtered(sample, "ecg.bandpass", lambda x, fs: _signal.bandpass(x, fs, p.low, p.high, p.order))


@step("ecg.highpass", CutoffParams)
def highpass(sample: Sample, p: CutoffParams) -> Sample:
    """Zero-phase Butterworth high-pass (sosfiltfilt) at `hz` Hz, e.g. baseline-wander removal at 0.5 Hz."""
    return _filtered(sample, "ecg.highpass", lambda x, fs: _signal.highpass(x, fs, p.hz, p.order))


@step("ecg.lowpass", CutoffParams)
def lowpass(sample: Sample, p: CutoffParams) -> Sample:
    """Zero-phase Butterworth low-pass (sosfiltfilt) at `hz` Hz."""
    return _filtered(sample, "ecg.lowpass", lambda x, fs: _signal.lowpass(x, fs, p.hz, p.order))


# ----------------------------------------------------------------------------------------- crop_or_pad


class CropOrPadParams(StepParams):
    length: int = Field(gt=0, description="output length in samples")
    align: Literal["start", "center", "end"] = Field(
        "start", description="part kept when cropping / where the signal sits when padding"
    )
    pad: Literal["zero", "edge"] = Field("zero", description="pad with zeros or by repeating the edge sample")


@step("ecg.crop_or_pad", CropOrPadParams)
def crop_or_pad(sample: Sample, p: CropOrPadParams) -> Sample:
    """Crop or pad to exactly `length` samples; meta 'padded' counts the samples added."""
    x, padded = _signal.crop_or_pad(sample.array("signal"), p.length, p.align, p.pad)
    sample.arrays["signal"] = x
    sample.meta["padded"] = int(padded)
    return sample


# ---------------------------------------------------------------------------------------- require_length


class RequireLengthParams(StepParams):
    length: int = Field(gt=0, description="the only accepted number of samples")


@step("ecg.require_length", RequireLengthParams)
def require_length(sample: Sample, p: RequireLengthParams) -> Sample:
    """Drop (counted in the manifest's `dropped`, not an error) a record whose length is not exactly
    `length` samples, as CLIMB's CPSC, Georgia and Chapman loaders drop every record that is not 5000
    samples long after resampling."""
    n = int(sample.array("signal").shape[1])
    if n != p.length:
        raise ItemDropped(f"ecg.require_length: not {p.length} samples long")
    return sample


# ------------------------------------------------------------------------------------------- normalize


class NormalizeParams(StepParams):
    method: Literal["zscore", "range", "minmax", "none"] = Field(
        "zscore",
        description="zscore: (x-mean)/std; range: x/(max-min), no centring (CLIMB's CinC loaders, with "
        "per_lead=false); minmax: (x-min)/(max-min) into [0,1]; none: unchanged",
    )
    per_lead: bool = Field(True, description="statistics per lead (true) or over the whole record (false)")
    eps: float = Field(1e-8, ge=0, description="a spread (std or max-min) at or below this gives zeros")


@step("ecg.normalize", NormalizeParams)
def normalize(sample: Sample, p: NormalizeParams) -> Sample:
    """Normalise amplitudes (zscore, range = CLIMB's x/(max-min), minmax); flat leads become zeros."""
    if p.method == "none":
        return sample
    x = _finite_signal(sample, "ecg.normalize")
    fn = {"zscore": _signal.zscore, "range": _signal.range_scale, "minmax": _signal.minmax}[p.method]
    sample.arrays["signal"] = fn(x, per_lead=p.per_lead, eps=p.eps)
    return sample


# ------------------------------------------------------------------------------------------------ cast


class CastParams(StepParams):
    dtype: Literal["float32", "float16", "float64", "int16"] = Field(
        "float32", description="stored dtype of the signal"
    )
    scale: float | None = Field(
        None,
        gt=0,
        description="multiply by this before casting; required for int16 (values rounded, clipped to int16)",
    )

    @model_validator(mode="after")
    def _int_needs_scale(self) -> CastParams:
        if self.dtype == "int16" and self.scale is None:
            raise ValueError("dtype int16 needs a scale (e.g. 1000 to store mV as integer uV)")
        return self


@step("ecg.cast", CastParams)
def cast(sample: Sample, p: CastParams) -> Sample:
    """Cast the signal to the stored dtype (int16 via x*scale, rounded and clipped); meta 'dtype'."""
    x = np.asarray(sample.array("signal"), dtype=np.float64)
    if p.scale is not None:
        x = x * p.scale
    if p.dtype == "int16":
        if np.isnan(x).any():
            raise ItemError("signal has NaN samples, which int16 cannot hold; use ecg.nan_to_num first")
        info = np.iinfo(np.int16)
        out = np.clip(np.rint(x), info.min, info.max).astype(np.int16)
    else:
        out, overflow = _signal.astype_counting_overflow(x, p.dtype)
        if overflow:
            raise ItemError(f"{overflow} samples overflow {p.dtype}; lower the scale or use a wider dtype")
    sample.arrays["signal"] = out
    sample.meta["dtype"] = p.dtype
    if p.scale is not None:
        sample.meta["scale"] = float(p.scale)
    return sample


# ------------------------------------------------------------------------------------------ nan_to_num


class NanToNumParams(StepParams):
    value: float = Field(0.0, description="value written in place of NaN (missing samples in WFDB)")


@step("ecg.nan_to_num", NanToNumParams)
def nan_to_num(sample: Sample, p: NanToNumParams) -> Sample:
    """Replace NaN samples (WFDB's missing values) with `value`; meta 'nan_count' counts them."""
    x = sample.array("signal")
    mask = np.isnan(x)
    count = int(np.count_nonzero(mask))
    if count:
        x = np.where(mask, p.value, x)
    sample.arrays["signal"] = x
    sample.meta["nan_count"] = count
    return sample
