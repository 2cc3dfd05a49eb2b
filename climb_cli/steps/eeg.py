"""EEG / PSG steps: read EDF, EDF+ and BDF, pick channels by name, resample, filter, rescale and epoch.

Every step works on `sample.arrays["signal"]`, shaped (channels, samples), and keeps `sample.meta` in sync
(`sampling_rate`, `channel_names`, `units`, ...). The epoching steps turn the recording into
`sample.arrays["epochs"]` shaped (epochs, channels, samples), with one label and one onset per epoch in
`meta["epoch_labels"]` / `meta["epoch_onsets"]`: one recording stays one output row holding all of its
epochs, so the pipeline's one-item-one-row contract holds.

Private metadata: `eeg.read_edf` keeps the EDF+ annotations in `meta["_annotations"]`
({"onset": [s], "duration": [s], "text": [str]}) and the start time in `meta["start_time"]`. Keys starting
with `_` are for later steps only (`eeg.epoch` / `eeg.epoch_events` consume and remove `_annotations`);
they must not reach the output.

Channel names are matched by a documented rule (see `channel_key`): an exact, case- and space-insensitive
match wins; otherwise a leading signal-type prefix (`EEG `, `EOG `, `EMG `, `ECG `, `EKG `) and a trailing
reference suffix (`-A1`, `-A2`, `-M1`, `-M2`, `-REF`, `-LE`, `-AR`, `-AVG`, `-CAR`, also after `:`) are
removed before comparing: `C3-A2`, `EEG C3-M2` and `c3` all match `C3`, while bipolar names such as
`Fpz-Cz` keep both electrodes.

CLIMB's own choices, for reference (climb-datasets.md section 1.5 and section 3, EEG):
- SHHS: channels C3 and C4 (`EEG(sec)` and `EEG` in the EDF: `aliases: {"EEG(sec)": C3, "EEG": C4}`), no
  resampling (125 Hz), no filter, 30 s epochs of 3750 samples, scaling +-125 uV -> [0, 1]
  (`eeg.scale` preset `shhs`), stages from the profusion XML (`eeg.epoch` hypnogram_format `profusion_xml`).
- ISRUC: resample to 125 Hz, channels F3 F4 C3 C4 O1 O2 (suffixes -A1/-A2/-M1/-M2 stripped), 30 s epochs,
  model on C3 and C4, scaling (x + 25) / 50 in uV (`eeg.scale` preset `isruc`), stages from `<pid>_1.txt`
  (`eeg.epoch` hypnogram_format `lines`).
- BCI IV 2a: band-pass 4-40 Hz, event epochs 0 to 4 - 1/250 s with baseline (0, 0.3996)
  (`eeg.epoch_events` tmin 0, tmax 3.996, baseline [0, 0.3996]).
- Auditory oddball: resample 250 Hz, band-pass 0.5-50 Hz, notch 60 and 120 Hz, average reference, event
  epochs -0.1 to 0.796 s with baseline (-0.1, 0). (CLIMB's bad-channel interpolation needs electrode
  positions and is not offered.)
- FACED: 1 s (250-sample) windows (`eeg.epoch` window 1, labels none).
Filters here are zero-phase Butterworth / IIR notch filters, not MNE's FIR filters: expect the same pass
and stop bands, not bit-identical output.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps import _edf, _signal
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import pyedflib
    import scipy.signal as _ss
else:
    pyedflib = lazy("pyedflib")
    _ss = lazy("scipy.signal")

# --------------------------------------------------------------------------------------------- helpers

#: reference electrodes removed from the end of a channel name when matching (`C3-A2` -> `C3`).
DEFAULT_REFERENCES: tuple[str, ...] = ("A1", "A2", "M1", "M2", "REF", "LE", "AR", "AVG", "CAR")

_TYPE_PREFIX = re.compile(r"^(?:EEG|EOG|EMG|ECG|EKG)[\s:]+(?=\S)", re.IGNORECASE)
_ANNOTATION_CHANNELS = {"edf annotations", "bdf annotations"}

#: CLIMB / AASM sleep-stage map used by `eeg.epoch` when no mapping is given. Keys are compared
#: case-insensitively after trimming; None marks an epoch as unknown (movement, unscored).
SLEEP_STAGES: dict[str, str | None] = {
    # AASM spellings (HMC, newer PSG exports) and short forms
    "sleep stage w": "W",
    "sleep stage n1": "N1",
    "sleep stage n2": "N2",
    "sleep stage n3": "N3",
    "sleep stage r": "R",
    "sleep stage rem": "R",
    "w": "W",
    "wake": "W",
    "n1": "N1",
    "n2": "N2",
    "n3": "N3",
    "n4": "N3",
    "r": "R",
    "rem": "R",
    # Rechtschaffen & Kales (Sleep-EDF): stages 3 and 4 are N3
    "sleep stage 1": "N1",
    "sleep stage 2": "N2",
    "sleep stage 3": "N3",
    "sleep stage 4": "N3",
    "sleep stage n4": "N3",
    # numeric hypnograms: ISRUC <pid>_1.txt (0 W, 1 N1, 2 N2, 3 N3, 5 REM) and SHHS profusion XML
    # (0-3 as ISRUC, 4 = R&K stage 4 -> N3, 5 REM, 6 movement, 9 unscored)
    "0": "W",
    "1": "N1",
    "2": "N2",
    "3": "N3",
    "4": "N3",
    "5": "R",
    # unknown: dropped by default
    "sleep stage ?": None,
    "movement time": None,
    "sleep stage m": None,
    "sleep stage mt": None,
    "?": None,
    "6": None,
    "7": None,
    "9": None,
    "unscored": None,
}


def _exact_key(name: str) -> str:
    return "".join(name.split()).casefold()


def channel_key(name: str, references: Sequence[str] = DEFAULT_REFERENCES) -> str:
    """The normalised form of a channel name used for matching.

    Rule: trim; drop a leading signal-type prefix (`EEG`, `EOG`, `EMG`, `ECG`, `EKG` followed by spaces or
    `:`); drop one trailing reference suffix `-<ref>` or `:<ref>` where <ref> is one of `references`
    (case-insensitive); then remove all spaces and compare case-insensitively.
    `EEG C3-M2` -> `c3`, `C3-A2` -> `c3`, `EEG Fpz-Cz` -> `fpz-cz`, `FP1-REF` -> `fp1`.
    """
    key = "".join(_TYPE_PREFIX.sub("", name.strip()).split()).casefold()
    for ref in sorted(references, key=len, reverse=True):
        r = "".join(ref.split()).casefold()
        for sep in ("-", ":"):
            tail = sep + r
            if r and key.endswith(tail) and len(key) > len(tail):
                return key[: -len(tail)]
    return key


def match_channels(
    names: Sequence[str],
    wanted: Sequence[str],
    aliases: dict[str, str] | None = None,
    references: Sequence[str] = DEFAULT_REFERENCES,
) -> list[int | None]:
    """For each wanted name, the index of the matching channel in `names` (None when absent).

    `aliases` renames file channels before matching (`{"EEG(sec)": "C3"}`; keys compared case- and
    space-insensitively). An exact match wins over a normalised one; two candidates at the same level are
    an ItemError (ambiguous).
    """
    alias = {_exact_key(k): v for k, v in (aliases or {}).items()}
    effective = [alias.get(_exact_key(n), n) for n in names]
    exact = [_exact_key(n) for n in effective]
    normal = [channel_key(n, references) for n in effective]
    out: list[int | None] = []
    for w in wanted:
        hits = [i for i, k in enumerate(exact) if k == _exact_key(w)]
        if not hits:
            hits = [i for i, k in enumerate(normal) if k == channel_key(w, references)]
        if len(hits) > 1:
            raise ItemError(f"channel {w!r} is ambiguous: the recording has {[names[i] for i in hits]}")
        out.append(hits[0] if hits else None)
    return out


def _check_channel_list(channels: list[str] | None) -> list[str] | None:
    if channels is None:
        return None
    seen: set[str] = set()
    for ch in channels:
        key = _exact_key(ch)
        if not key:
            raise ValueError("channel names must not be empty")
        if key in seen:
            raise ValueError(f"channel {ch!r} is listed twice")
        seen.add(key)
    return channels


def _finite_signal(sample: Sample, step_name: str) -> np.ndarray:
    """The `signal` array, refusing NaN/inf (they would spread through filters and statistics)."""
    if "signal" not in sample.arrays and "epochs" in sample.arrays:
        raise ItemError(f"{step_name} works on the continuous signal: put it before eeg.epoch")
    x = sample.array("signal")
    bad = int(x.size - np.count_nonzero(np.isfinite(x)))
    if bad:
        raise ItemError(f"signal has {bad} NaN/inf samples; {step_name} cannot filter them")
    return x


# ----------------------------------------------------------------------------------------- EDF reading


def _edf_layout(path: Path) -> dict[str, Any]:
    """Parse the fixed EDF/BDF header and check the file size against it (pyedflib prints, then fails)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(256)
            if len(head) < 256:
                raise ItemError(f"{path.name}: truncated EDF header ({len(head)} of 256 bytes)")
            ns = int(head[252:256].decode("ascii").strip())
            extra = f.read(256 * ns)
    except ItemError:
        raise
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ItemError(f"{path.name}: not an EDF/BDF file ({_why(exc)})") from None
    bdf = head[:8] == b"\xffBIOSEMI"
    if not bdf and head[:8] != b"0       ":
        raise ItemError(f"{path.name}: not an EDF/BDF file (version field {head[:8]!r})")
    if len(extra) < 256 * ns:
        raise ItemError(f"{path.name}: truncated EDF header ({256 + len(extra)} of {256 * (ns + 1)} bytes)")
    try:
        n_records = int(head[236:244].decode("ascii").strip())
        reserved = head[192:236].decode("ascii", "replace").strip()
        spr_field = extra[216 * ns : 224 * ns].decode("ascii")
        spr = [int(spr_field[8 * i : 8 * i + 8].strip()) for i in range(ns)]
    except (ValueError, UnicodeDecodeError) as exc:
        raise ItemError(f"{path.name}: malformed EDF header ({_why(exc)})") from None
    if n_records >= 0:
        expected = 256 * (ns + 1) + n_records * sum(spr) * (3 if bdf else 2)
        if size < expected:
            raise ItemError(
                f"{path.name}: truncated EDF file, {size} bytes but the header needs {expected} "
                f"({n_records} data records)"
            )
        if size > expected:
            raise ItemError(f"{path.name}: {size - expected} bytes beyond the data records the header names")
    return {"bdf": bdf, "reserved": reserved, "n_records": n_records}


def _file_type(layout: dict[str, Any]) -> str:
    base = "BDF" if layout["bdf"] else "EDF"
    reserved = str(layout["reserved"]).upper()
    if reserved.startswith(("EDF+", "BDF+")):
        return f"{base}+{reserved[4:5]}" if reserved[4:5] in ("C", "D") else f"{base}+"
    return base


def _start_time(reader: Any) -> str:
    try:
        start = reader.getStartdatetime()
        sub = getattr(reader, "starttime_subsecond", None)  # pyedflib: in units of 100 ns
        if isinstance(sub, int) and 0 <= sub < 10_000_000:
            # pyedflib 0.1.42's getStartdatetime divides it by 100, not 10 (+0.3945312 s gives .039453)
            start = start.replace(microsecond=sub // 10)
        return start.isoformat()
    except Exception:  # an unparsable date in the header: keep reading the signals
        return ""


def _annotations(reader: pyedflib.EdfReader) -> dict[str, list[Any]]:
    onsets, durations, texts = reader.readAnnotations()
    return {
        "onset": [float(v) for v in onsets],
        "duration": [float(v) for v in durations],
        "text": [str(t) for t in texts],
    }


def _open(path: Path, layout: dict[str, Any]) -> Any:
    """pyedflib's reader, or climb's own (`_edf`) for what edflib refuses: EDF+D/BDF+D files and headers
    with non-ASCII bytes (mne reads both)."""
    try:
        if _file_type(layout).endswith("+D") or not _edf.header_is_ascii(path):
            return _edf.EdfFile(path)
        return pyedflib.EdfReader(str(path))
    except (OSError, ValueError) as exc:
        raise ItemError(f"{path.name}: not a readable EDF/BDF file ({_why(exc)})") from None


def _joined_annotations(reader: Any, annotations: dict[str, list[Any]]) -> list[list[float]]:
    """For an EDF+D file read by `_edf`: annotation onsets moved onto the joined records; the gaps."""
    if not isinstance(reader, _edf.EdfFile):
        return []
    onsets, gaps = _edf.join_timeline(annotations["onset"], reader.record_onsets, reader.record_seconds)
    annotations["onset"] = onsets
    return gaps


def read_edf_annotations(path: Path) -> tuple[dict[str, list[Any]], str]:
    """The EDF+ annotations of `path` ({"onset", "duration", "text"} lists) and its ISO start time
    (onsets on the joined timeline of an EDF+D file, as `eeg.read_edf` joins its records)."""
    layout = _edf_layout(path)
    try:
        with _open(path, layout) as reader:
            annotations = _annotations(reader)
            _joined_annotations(reader, annotations)
            return annotations, _start_time(reader)
    except OSError as exc:
        raise ItemError(f"{path.name}: cannot read annotations ({_why(exc)})") from None


def read_tuh_rec(path: Path) -> dict[str, list[Any]]:
    """A TUH EEG Events (TUEV) `.rec` file as annotations: one event per line `channel,start,stop,class`
    (channel: index into TUH's TCP montage; start/stop in seconds; class 1-6 = spsw, gped, pled, eyem,
    artf, bckg), as {"onset", "duration", "text" (the class code), "channel"} lists."""
    try:
        lines = path.read_text(encoding="ascii").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemError(f"{path.name}: unreadable .rec file ({_why(exc)})") from None
    out: dict[str, list[Any]] = {"onset": [], "duration": [], "text": [], "channel": []}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = [t.strip() for t in line.split(",")]
        try:
            if len(parts) != 4:
                raise ValueError(f"{len(parts)} fields")
            chan, start, stop, label = int(parts[0]), float(parts[1]), float(parts[2]), int(float(parts[3]))
            if chan < 0 or not 0 <= start < stop or not (math.isfinite(start) and math.isfinite(stop)):
                raise ValueError("channel < 0 or start/stop out of order")
        except ValueError as exc:
            raise ItemError(
                f"{path.name}:{n}: not a .rec event line 'channel,start,stop,class' ({exc}): {line[:60]!r}"
            ) from None
        out["onset"].append(start)
        out["duration"].append(stop - start)
        out["text"].append(str(label))
        out["channel"].append(chan)
    return out


class ReadEdfParams(StepParams):
    input: str = Field("edf", description="sample input holding the EDF / EDF+ / BDF file")
    channels: list[str] | None = Field(
        None,
        description="channels to read, in this order, matched by name (exact, then with EEG prefix and "
        "-A1/-A2/-M1/-M2/-REF... suffix removed: C3-A2 = EEG C3-M2 = C3); null reads every signal",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict,
        description='rename file channels before matching, e.g. SHHS {"EEG(sec)": "C3", "EEG": "C4"}',
    )
    references: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFERENCES),
        description="reference electrode names stripped from the end of channel names when matching",
    )
    missing: Literal["error", "zero"] = Field(
        "error", description="a wanted channel not in the file: fail the item, or add a zero row (unit '')"
    )
    rates: Literal["error", "resample"] = Field(
        "error",
        description="channels with different sampling rates: fail the item, or resample them all to `hz`",
    )
    hz: float | None = Field(
        None, gt=0, description="common rate for rates=resample (default: the highest rate among channels)"
    )
    physical: bool = Field(True, description="physical units (e.g. uV); false gives digital values ('adu')")
    discontinuous: Literal["error", "concatenate"] = Field(
        "error",
        description="EDF+D / BDF+D files (gaps between records): fail, or join the records as stored "
        "(annotation onsets are moved onto the joined timeline; meta 'gaps' lists [time, seconds missing])",
    )
    annotation_columns: bool = Field(
        False,
        description="also write the EDF+ annotations as output columns annotation_onsets / _durations / "
        "_texts (they are always kept privately for eeg.epoch)",
    )

    @field_validator("channels")
    @classmethod
    def _distinct(cls, channels: list[str] | None) -> list[str] | None:
        return _check_channel_list(channels)


@step("eeg.read_edf", ReadEdfParams)
def read_edf(sample: Sample, p: ReadEdfParams) -> Sample:
    """Read EDF / EDF+ / BDF into `signal` (channels, samples) with EDF+ annotations kept.

    pyedflib reads it, except EDF+D/BDF+D files and headers with non-ASCII bytes (a latin-1 '°' unit),
    which edflib refuses: climb's own reader (`steps/_edf.py`, values as mne's) reads those.
    """
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: EDF file not found")
    with item_errors(f"{path.name}: cannot read the EDF file"):
        return _read_edf(sample, p, path)


def _read_edf(sample: Sample, p: ReadEdfParams, path: Path) -> Sample:
    layout = _edf_layout(path)
    ftype = _file_type(layout)
    if ftype.endswith("+D") and p.discontinuous == "error":
        raise ItemError(f"{path.name}: {ftype} (discontinuous) recording; set discontinuous: concatenate")
    reader = _open(path, layout)
    with reader:
        labels = [str(x).strip() for x in reader.getSignalLabels()]
        signal_idx = [i for i, lab in enumerate(labels) if lab.casefold() not in _ANNOTATION_CHANNELS]
        names = [labels[i] for i in signal_idx]
        if p.channels is None:
            picks: list[int | None] = list(signal_idx)
        else:
            found = match_channels(names, p.channels, p.aliases, p.references)
            absent = [w for w, i in zip(p.channels, found, strict=True) if i is None]
            if absent and p.missing == "error":
                raise ItemError(
                    f"{path.name}: channel(s) {absent} not in the file "
                    f"(channels: {', '.join(names) or 'none'})"
                )
            picks = [signal_idx[i] if i is not None else None for i in found]
        present = [i for i in picks if i is not None]
        if not present:
            raise ItemError(f"{path.name}: no signal channels to read (the file has {len(names)})")
        rates = {i: float(reader.getSampleFrequency(i)) for i in present}
        distinct = sorted(set(rates.values()))
        if len(distinct) > 1 and p.rates == "error":
            listed = ", ".join(f"{labels[i]} {rates[i]:g} Hz" for i in present)
            raise ItemError(
                f"{path.name}: channels have different sampling rates ({listed}); "
                "pick channels of one rate or set rates: resample"
            )
        target = float(p.hz) if (p.hz is not None and p.rates == "resample") else max(distinct)
        rows: dict[int, np.ndarray] = {}
        for i in present:
            try:
                x = np.asarray(reader.readSignal(i, digital=not p.physical), dtype=np.float64)
            except Exception as exc:
                raise ItemError(f"{path.name}: cannot read channel {labels[i]!r} ({_why(exc)})") from None
            if not math.isclose(rates[i], target, rel_tol=1e-12):
                try:
                    x = _signal.resample(x, rates[i], target, "poly")[0]
                except ValueError as exc:
                    raise ItemError(f"{path.name}: channel {labels[i]!r}: {exc}") from None
            rows[i] = x
        lengths = {len(v) for v in rows.values()}
        n = min(lengths)
        if max(lengths) - n > 1:  # rounding of resampled lengths may differ by one sample at most
            raise ItemError(f"{path.name}: channels have different durations ({sorted(lengths)} samples)")
        out_rows: list[np.ndarray] = []
        units: list[str] = []
        prefilters: list[str] = []
        chan_names: list[str] = []
        original_rates: list[float] = []
        for pos, pick in enumerate(picks):
            if pick is None:
                out_rows.append(np.zeros(n))
                units.append("")
                prefilters.append("")
                chan_names.append(p.channels[pos] if p.channels else "")
                original_rates.append(0.0)
                continue
            out_rows.append(rows[pick][:n])
            units.append("adu" if not p.physical else str(reader.getPhysicalDimension(pick)).strip())
            prefilters.append(str(reader.getPrefilter(pick)).strip())
            chan_names.append(labels[pick])
            original_rates.append(rates[pick])
        annotations = _annotations(reader) if ftype.startswith(("EDF+", "BDF+")) else _empty_annotations()
        gaps = _joined_annotations(reader, annotations) if ftype.endswith("+D") else []
        start = _start_time(reader)
        duration = float(reader.getFileDuration())

    sample.arrays["signal"] = np.ascontiguousarray(np.stack(out_rows))
    sample.meta.update(
        sampling_rate=target,
        channel_names=chan_names,
        units=units,
        prefilter=prefilters,
        original_sampling_rates=original_rates,
        original_length=int(n),
        duration=duration,
        start_time=start,
        file_type=ftype,
        _annotations=annotations,
    )
    if ftype.endswith("+D"):
        sample.meta["gaps"] = gaps
    if p.channels is not None and p.missing == "zero":
        sample.meta["missing_channels"] = [w for w, i in zip(p.channels, picks, strict=True) if i is None]
    if p.annotation_columns:
        sample.meta.update(
            annotation_onsets=list(annotations["onset"]),
            annotation_durations=list(annotations["duration"]),
            annotation_texts=list(annotations["text"]),
        )
    if path not in sample.sources:
        sample.sources.append(path)
    return sample


def _empty_annotations() -> dict[str, list[Any]]:
    return {"onset": [], "duration": [], "text": []}


# ------------------------------------------------------------------------------------- select_channels


class SelectChannelsParams(StepParams):
    channels: list[str] = Field(
        min_length=1,
        description="channel names in the wanted order (exact, then normalised: C3-A2 = EEG C3-M2 = C3); "
        "channel_names become these names",
    )
    aliases: dict[str, str] = Field(
        default_factory=dict, description='rename channels before matching, e.g. {"EEG(sec)": "C3"}'
    )
    references: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFERENCES),
        description="reference electrode names stripped from the end of channel names when matching",
    )
    missing: Literal["error", "zero"] = Field(
        "error", description="a channel not in the recording: fail the item, or add a zero row (unit '')"
    )

    @field_validator("channels")
    @classmethod
    def _distinct(cls, channels: list[str] | None) -> list[str] | None:
        return _check_channel_list(channels)


@step("eeg.select_channels", SelectChannelsParams)
def select_channels(sample: Sample, p: SelectChannelsParams) -> Sample:
    """Keep and reorder channels by name with reference suffixes normalised (C3-A2 -> C3)."""
    x = sample.array("signal")
    names = [str(n) for n in (sample.meta.get("channel_names") or [])]
    units = list(sample.meta.get("units") or [""] * len(names))
    if len(names) != x.shape[0] or len(units) != x.shape[0]:
        raise ItemError(f"channel_names/units do not match the signal's {x.shape[0]} rows")
    found = match_channels(names, p.channels, p.aliases, p.references)
    absent = [w for w, i in zip(p.channels, found, strict=True) if i is None]
    if absent and p.missing == "error":
        raise ItemError(f"channel(s) {absent} not in the recording (channels: {', '.join(names)})")
    rows = [x[i] if i is not None else np.zeros(x.shape[1], dtype=x.dtype) for i in found]
    sample.arrays["signal"] = np.stack(rows)
    sample.meta["source_channels"] = [names[i] if i is not None else "" for i in found]
    sample.meta["channel_names"] = list(p.channels)
    sample.meta["units"] = [units[i] if i is not None else "" for i in found]
    for key in ("prefilter", "original_sampling_rates"):
        values = sample.meta.get(key)
        if isinstance(values, list) and len(values) == len(names):
            blank: Any = "" if key == "prefilter" else 0.0
            sample.meta[key] = [values[i] if i is not None else blank for i in found]
    if p.missing == "zero":
        sample.meta["missing_channels"] = absent
    return sample


# -------------------------------------------------------------------------------------------- resample


class ResampleParams(StepParams):
    hz: float = Field(gt=0, description="target sampling rate in Hz (ISRUC 125, auditory oddball 250)")
    method: Literal["poly", "fft", "decimate"] = Field(
        "poly",
        description="poly: polyphase FIR (scipy resample_poly); fft: Fourier (scipy resample); "
        "decimate: integer-factor down-sampling with an IIR anti-alias filter",
    )


@step("eeg.resample", ResampleParams)
def resample(sample: Sample, p: ResampleParams) -> Sample:
    """Resample the signal to `hz`; the length becomes round(n * hz / rate); a no-op at the same rate."""
    return _signal.resample_sample(sample, "eeg.resample", p.hz, p.method, _finite_signal)


# --------------------------------------------------------------------------------------------- filters


class BandpassParams(StepParams):
    low: float = Field(gt=0, description="lower cut-off in Hz (BCI IV 2a: 4; auditory oddball: 0.5)")
    high: float = Field(gt=0, description="upper cut-off in Hz, below Nyquist (BCI IV 2a: 40; oddball: 50)")
    order: int = Field(4, ge=1, le=8, description="Butterworth order (applied forward and backward)")

    @model_validator(mode="after")
    def _ordered(self) -> BandpassParams:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class CutoffParams(StepParams):
    hz: float = Field(gt=0, description="cut-off frequency in Hz (below the Nyquist frequency)")
    order: int = Field(4, ge=1, le=8, description="Butterworth order (applied forward and backward)")


def _filtered(sample: Sample, step_name: str, apply: Callable[[np.ndarray, float], np.ndarray]) -> Sample:
    return _signal.filter_sample(sample, step_name, apply, _finite_signal)


@step("eeg.bandpass", BandpassParams)
def bandpass(sample: Sample, p: BandpassParams) -> Sample:
    """Zero-phase Butterworth band-pass (sosfiltfilt) between `low` and `high` Hz."""
    return _filtered(sample, "eeg.bandpass", lambda x, fs: _signal.bandpass(x, fs, p.low, p.high, p.order))


@step("eeg.highpass", CutoffParams)
def highpass(sample: Sample, p: CutoffParams) -> Sample:
    """Zero-phase Butterworth high-pass (sosfiltfilt) at `hz` Hz."""
    return _filtered(sample, "eeg.highpass", lambda x, fs: _signal.highpass(x, fs, p.hz, p.order))


@step("eeg.lowpass", CutoffParams)
def lowpass(sample: Sample, p: CutoffParams) -> Sample:
    """Zero-phase Butterworth low-pass (sosfiltfilt) at `hz` Hz."""
    return _filtered(sample, "eeg.lowpass", lambda x, fs: _signal.lowpass(x, fs, p.hz, p.order))


def notch_filter(x: np.ndarray, fs: float, freqs: Sequence[float], quality: float = 30.0) -> np.ndarray:
    """Zero-phase IIR notch (scipy iirnotch + filtfilt) at each of `freqs` Hz; bandwidth = f / quality."""
    a = _signal.as_2d(x)
    nyquist = fs / 2.0
    for f0 in freqs:
        if not 0 < f0 < nyquist:
            raise ValueError(
                f"notch frequency {f0:g} Hz must be between 0 and the Nyquist frequency {nyquist:g} Hz "
                f"(sampling rate {fs:g} Hz)"
            )
        b, den = _ss.iirnotch(f0, quality, fs=fs)
        padlen = 3 * max(len(b), len(den))
        if a.shape[-1] <= padlen:
            raise ValueError(f"signal too short to filter: {a.shape[-1]} samples, needs more than {padlen}")
        a = _ss.filtfilt(b, den, a, axis=-1)
    return np.ascontiguousarray(a)


class NotchParams(StepParams):
    hz: list[float] = Field(
        default_factory=lambda: [50.0],
        min_length=1,
        description="mains frequencies to remove in Hz: [50] (Europe/Asia), [60] (Americas); "
        "CLIMB's auditory oddball used [60, 120]",
    )
    quality: float = Field(30.0, gt=0, description="quality factor Q: the -3 dB notch width is hz / Q")

    @field_validator("hz")
    @classmethod
    def _positive(cls, hz: list[float]) -> list[float]:
        if any(not (f > 0 and math.isfinite(f)) for f in hz):
            raise ValueError("notch frequencies must be positive")
        return hz


@step("eeg.notch", NotchParams)
def notch(sample: Sample, p: NotchParams) -> Sample:
    """Zero-phase IIR notch (iirnotch + filtfilt) at each frequency in `hz` (50/60 Hz mains, harmonics)."""
    return _filtered(sample, "eeg.notch", lambda x, fs: notch_filter(x, fs, p.hz, p.quality))


# ----------------------------------------------------------------------------------------------- scale

#: factor from a unit to volts; `u`, `µ` and `μ` all spell micro.
_UNIT_VOLTS = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "nv": 1e-9}

#: CLIMB's fixed scalings (climb-datasets.md section 3, EEG), as (unit, low, high): (x - low)/(high - low).
SCALE_PRESETS: dict[str, tuple[str, float, float]] = {
    "shhs": ("uV", -125.0, 125.0),  # CLIMB: (x - (-0.000125)) / 0.00025 on volts: +-125 uV -> [0, 1]
    "isruc": ("uV", -25.0, 25.0),  # CLIMB: (x + 25) / 50 on MNE's microvolt data frame
}


def _volts_per_unit(unit: str) -> float | None:
    u = unit.strip().replace("µ", "u").replace("μ", "u").casefold()
    return _UNIT_VOLTS.get(u)


class ScaleParams(StepParams):
    preset: Literal["shhs", "isruc"] | None = Field(
        None,
        description="CLIMB's fixed scalings: shhs = +-125 uV -> [0, 1] ((x+125)/250 in uV); "
        "isruc = (x+25)/50 in uV. Sets unit and range",
    )
    unit: str | None = Field(
        None,
        description="first convert each channel from its unit (meta units: V, mV, uV, nV) to this unit; "
        "e.g. uV turns volts into microvolts (x 1e6)",
    )
    range: tuple[float, float] | None = Field(
        None, description="map [low, high] to [0, 1]: (x - low) / (high - low); no clipping"
    )
    factor: float = Field(1.0, description="then multiply by this (1e6: V -> uV; 0.01: divide by 100)")
    offset: float = Field(0.0, description="then add this")
    units: str | None = Field(
        None,
        description="unit written to meta units afterwards (default: `unit` after a conversion, '1' after "
        "a range, '' after a bare factor/offset)",
    )

    @model_validator(mode="after")
    def _consistent(self) -> ScaleParams:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range low ({self.range[0]}) must be below high ({self.range[1]})")
        if self.preset is not None and (self.unit is not None or self.range is not None):
            raise ValueError("preset sets unit and range; do not give them as well")
        if self.unit is not None and _volts_per_unit(self.unit) is None:
            raise ValueError(f"unknown unit {self.unit!r} (known: V, mV, uV, nV)")
        return self


@step("eeg.scale", ScaleParams)
def scale(sample: Sample, p: ScaleParams) -> Sample:
    """Fixed affine scaling: unit conversion, CLIMB presets (shhs, isruc), range -> [0,1], factor/offset."""
    unit, rng = p.unit, p.range
    if p.preset is not None:
        unit, low, high = SCALE_PRESETS[p.preset]
        rng = (low, high)
    arrays = [k for k in ("signal", "epochs") if k in sample.arrays]
    if not arrays:
        raise ItemError("no signal or epochs array yet; a reader step must come first")
    n_ch = sample.arrays[arrays[0]].shape[-2] if sample.arrays[arrays[0]].ndim >= 2 else 1
    units = list(sample.meta.get("units") or [""] * n_ch)
    if len(units) != n_ch:
        raise ItemError(f"units ({len(units)}) do not match the {n_ch} channels")
    gain = np.ones(n_ch)
    if unit is not None:
        target = _volts_per_unit(unit)
        assert target is not None
        for i, u in enumerate(units):
            volts = _volts_per_unit(u)
            if volts is None:
                raise ItemError(f"channel {i} has unit {u!r}, which cannot be converted to {unit}")
            gain[i] = volts / target
    shift = 0.0
    if rng is not None:
        span = rng[1] - rng[0]
        gain, shift = gain / span, -rng[0] / span
    gain, shift = gain * p.factor, shift * p.factor + p.offset
    for name in arrays:
        x = np.asarray(sample.arrays[name], dtype=np.float64)
        sample.arrays[name] = x * gain[:, None] + shift
    identity = p.factor == 1.0 and p.offset == 0.0
    if p.units is not None:
        new_units = [p.units] * n_ch
    elif rng is not None:
        new_units = ["1"] * n_ch  # dimensionless
    elif unit is not None and identity:
        new_units = [unit] * n_ch
    else:
        new_units = units if identity else [""] * n_ch  # a bare factor/offset: the unit is not known
    # cumulative: y = x_original * scale_factor + scale_offset (per channel)
    prev_gain = np.asarray(sample.meta.get("scale_factor") or [1.0] * n_ch, dtype=np.float64)
    prev_off = np.asarray(sample.meta.get("scale_offset") or [0.0] * n_ch, dtype=np.float64)
    sample.meta["scale_factor"] = [float(v) for v in prev_gain * gain]
    sample.meta["scale_offset"] = [float(v) for v in prev_off * gain + shift]
    sample.meta["units"] = new_units
    return sample


# ------------------------------------------------------------------------------------------- reference


class ReferenceParams(StepParams):
    mode: Literal["average", "channel"] = Field(
        "average", description="average: subtract the mean of all channels (CLIMB's oddball); channel: one"
    )
    channel: str | None = Field(None, description="reference channel name for mode=channel")

    @model_validator(mode="after")
    def _needs_channel(self) -> ReferenceParams:
        if self.mode == "channel" and not self.channel:
            raise ValueError("mode channel needs a channel name")
        return self


@step("eeg.reference", ReferenceParams)
def reference(sample: Sample, p: ReferenceParams) -> Sample:
    """Re-reference: subtract the channel average (zero rows of missing channels excluded) or one channel."""
    x = _finite_signal(sample, "eeg.reference")
    names = [str(n) for n in (sample.meta.get("channel_names") or [])]
    if len(names) != x.shape[0]:
        raise ItemError(f"channel_names do not match the signal's {x.shape[0]} rows")
    if p.mode == "average":
        missing = {_exact_key(m) for m in (sample.meta.get("missing_channels") or [])}
        rows = [i for i, n in enumerate(names) if _exact_key(n) not in missing]
        ref = x[rows].mean(axis=0, keepdims=True)
        sample.meta["reference"] = "average"
    else:
        assert p.channel is not None
        (i,) = match_channels(names, [p.channel])
        if i is None:
            raise ItemError(f"reference channel {p.channel!r} not in the recording ({', '.join(names)})")
        ref = x[i : i + 1]
        sample.meta["reference"] = names[i]
    sample.arrays["signal"] = x - ref
    return sample


# ---------------------------------------------------------------------------------------------- labels


def _stage_key(text: str) -> str:
    """Annotation text as matched against a mapping: `@@channel` suffix (HMC) dropped, trimmed, folded."""
    return text.split("@@", 1)[0].strip().casefold()


def _mapping(custom: dict[str, str | None] | None) -> dict[str, str | None]:
    source = SLEEP_STAGES if custom is None else custom
    return {_stage_key(k): v for k, v in source.items()}


def _read_hypnogram_lines(path: Path) -> list[str]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemError(f"{path.name}: unreadable hypnogram ({_why(exc)})") from None
    lines = [line.strip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _read_profusion_xml(path: Path) -> tuple[list[str], float | None]:
    """SleepStage values of an NSRR / Compumedics profusion XML, and its EpochLength if present."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ItemError(f"{path.name}: unreadable profusion XML ({_why(exc)})") from None
    stages = [(el.text or "").strip() for el in root.iter("SleepStage")]
    if not stages:
        raise ItemError(f"{path.name}: no SleepStage elements (not a profusion XML?)")
    epoch_el = root.find(".//EpochLength")
    epoch = None
    if epoch_el is not None and epoch_el.text:
        try:
            epoch = float(epoch_el.text.strip())
        except ValueError:
            epoch = None
    return stages, epoch


def _window_labels(
    onsets: np.ndarray,
    length: float,
    intervals: list[tuple[float, float, str | None]],
    min_coverage: float,
) -> list[str | None]:
    """Per window [t, t+length): the class covering most of it (None when unknown or under min_coverage)."""
    classes = sorted({c for _, _, c in intervals if c is not None})
    index = {c: k for k, c in enumerate(classes)}
    cover = np.zeros((len(onsets), len(classes) + 1))
    ends = onsets + length
    for start, end, cls in intervals:
        ov = np.minimum(ends, end) - np.maximum(onsets, start)
        cover[:, index[cls] if cls is not None else len(classes)] += np.clip(ov, 0.0, None)
    out: list[str | None] = []
    for row in cover:
        k = int(np.argmax(row))
        if k == len(classes) or row[k] < min_coverage * length - 1e-9 or row[k] <= 0:
            out.append(None)
        else:
            out.append(classes[k])
    return out


def _annotation_source(sample: Sample, annotation_input: str | None) -> tuple[dict[str, list[Any]], float]:
    """Annotations to label with, and the shift (s) that puts their onsets on the signal's time axis."""
    if annotation_input is None:
        ann = sample.meta.get("_annotations")
        if ann is None:
            raise ItemError("no annotations: read the recording with eeg.read_edf or set annotation_input")
        return ann, 0.0
    path = sample.input(annotation_input)
    if not path.is_file():
        raise ItemError(f"{path.name}: annotation file not found")
    if path.suffix.lower() == ".rec":  # TUEV: events per channel, times relative to the recording
        ann, start = read_tuh_rec(path), ""
    else:
        ann, start = read_edf_annotations(path)
    if path not in sample.sources:
        sample.sources.append(path)
    shift = 0.0
    sig_start = str(sample.meta.get("start_time") or "")
    if start and sig_start:
        try:
            delta = _dt.datetime.fromisoformat(start) - _dt.datetime.fromisoformat(sig_start)
            shift = delta.total_seconds()
        except ValueError:
            shift = 0.0
    return ann, shift


def _seconds_to_samples(seconds: float, fs: float, what: str) -> int:
    n = seconds * fs
    k = int(round(n))
    if k < 1:
        raise ItemError(f"{what} of {seconds:g} s is less than one sample at {fs:g} Hz")
    if abs(n - k) > 1e-6 * max(1.0, n):
        raise ItemError(f"{what} of {seconds:g} s is not a whole number of samples at {fs:g} Hz ({n:g})")
    return k


# ----------------------------------------------------------------------------------------------- epoch


class EpochParams(StepParams):
    window: float = Field(30.0, gt=0, description="window length in seconds (sleep: 30; FACED: 1)")
    stride: float | None = Field(None, gt=0, description="seconds between window starts (default: window)")
    start: float = Field(0.0, ge=0, description="first window start, seconds from the recording start")
    labels: Literal["annotations", "hypnogram", "none"] = Field(
        "annotations",
        description="annotations: EDF+ annotations (of the recording, or of annotation_input); hypnogram: "
        "a stage file (hypnogram_input); none: no labels",
    )
    annotation_input: str | None = Field(
        None,
        description="sample input of a separate EDF+ annotation file (Sleep-EDF *-Hypnogram.edf, HMC "
        "*_sleepscoring.edf); its onsets are shifted by the start-time difference",
    )
    hypnogram_input: str = Field("hypnogram", description="sample input holding the hypnogram file")
    hypnogram_format: Literal["lines", "profusion_xml"] = Field(
        "lines",
        description="lines: one stage per line (ISRUC <pid>_1.txt); "
        "profusion_xml: NSRR SleepStage elements (SHHS)",
    )
    hypnogram_epoch: float = Field(
        30.0, gt=0, description="seconds per hypnogram entry (a profusion XML's EpochLength wins)"
    )
    mapping: dict[str, str | None] | None = Field(
        None,
        description="annotation text / hypnogram code -> class (null = unknown); case-insensitive, an "
        "'@@channel' suffix is ignored; default: sleep stages W N1 N2 N3 R (AASM and R&K: "
        "'Sleep stage 3'/'4' -> N3; codes 0 1 2 3 4 5 -> W N1 N2 N3 N3 R; movement/unscored/? unknown)",
    )
    unknown: Literal["drop", "keep", "error"] = Field(
        "drop", description="windows whose label is unknown, unmapped or not covered: drop, keep, or fail"
    )
    unknown_label: str = Field("?", description="label written for kept unknown windows")
    min_coverage: float = Field(
        0.5, gt=0, le=1, description="a label must cover at least this fraction of a window"
    )
    keep_signal: bool = Field(False, description="keep the continuous `signal` array next to `epochs`")


def _epoch_starts(n: int, win: int, stride: int, first: int) -> np.ndarray:
    if n - first < win:
        return np.zeros(0, dtype=np.int64)
    count = (n - first - win) // stride + 1
    return first + stride * np.arange(count, dtype=np.int64)


def _cut(x: np.ndarray, starts: np.ndarray, win: int) -> np.ndarray:
    """(channels, samples) -> (epochs, channels, win) at the given start samples (a copy)."""
    if len(starts) == 0:
        return np.zeros((0, x.shape[0], win), dtype=x.dtype)
    return np.stack([x[:, s : s + win] for s in starts.tolist()])


@step("eeg.epoch", EpochParams)
def epoch(sample: Sample, p: EpochParams) -> Sample:
    """Cut fixed windows (window, stride s) labelled from EDF+ annotations or a hypnogram -> `epochs`."""
    x = sample.array("signal")
    fs = _signal.sampling_rate(sample)
    win = _seconds_to_samples(p.window, fs, "window")
    stride = _seconds_to_samples(p.stride if p.stride is not None else p.window, fs, "stride")
    first = int(round(p.start * fs))
    starts = _epoch_starts(x.shape[1], win, stride, first)
    onsets = starts / fs
    labels: list[str | None]
    if p.labels == "none":
        labels = [""] * len(starts)
    else:
        mapping = _mapping(p.mapping)
        intervals: list[tuple[float, float, str | None]] = []
        if p.labels == "annotations":
            ann, shift = _annotation_source(sample, p.annotation_input)
            for onset, dur, text in zip(ann["onset"], ann["duration"], ann["text"], strict=True):
                key = _stage_key(str(text))
                if dur > 0 and key in mapping:
                    intervals.append((onset + shift, onset + shift + dur, mapping[key]))
        else:
            path = sample.input(p.hypnogram_input)
            if not path.is_file():
                raise ItemError(f"{path.name}: hypnogram file not found")
            epoch_len = p.hypnogram_epoch
            if p.hypnogram_format == "lines":
                codes = _read_hypnogram_lines(path)
            else:
                codes, xml_epoch = _read_profusion_xml(path)
                epoch_len = xml_epoch or epoch_len
            if path not in sample.sources:
                sample.sources.append(path)
            for k, code in enumerate(codes):
                key = _stage_key(code)
                intervals.append((k * epoch_len, (k + 1) * epoch_len, mapping.get(key)))
        labels = _window_labels(onsets, win / fs, intervals, p.min_coverage)
    keep = np.ones(len(starts), dtype=bool)
    out_labels: list[str] = []
    for k, lab in enumerate(labels):
        if lab is None:
            if p.unknown == "error":
                raise ItemError(f"window at {onsets[k]:g} s has no known label")
            if p.unknown == "drop":
                keep[k] = False
                continue
            lab = p.unknown_label
        out_labels.append(lab)
    if not keep.any():
        raise ItemError(
            f"no labelled windows: {len(starts)} window(s) of {p.window:g} s in {x.shape[1] / fs:g} s, "
            f"none with a known label"
        )
    starts = starts[keep]
    sample.arrays["epochs"] = _cut(x, starts, win)
    if not p.keep_signal:
        del sample.arrays["signal"]
    sample.meta.pop("_annotations", None)
    sample.meta.update(
        epoch_labels=out_labels,
        epoch_onsets=[float(v) for v in starts / fs],
        epoch_seconds=float(win / fs),
        epoch_samples=int(win),
        n_epochs=int(len(starts)),
        epochs_dropped=int(len(keep) - int(keep.sum())),
    )
    return sample


# ---------------------------------------------------------------------------------------- epoch_events


class EpochEventsParams(StepParams):
    tmin: float = Field(description="epoch start relative to each event, s (BCI IV 2a: 0; oddball: -0.1)")
    tmax: float = Field(description="epoch end, inclusive, s (BCI IV 2a: 3.996; oddball: 0.796)")
    mapping: dict[str, str] = Field(
        min_length=1,
        description="event annotation text -> class (case-insensitive); other annotations are ignored",
    )
    baseline: tuple[float, float] | None = Field(
        None,
        description="subtract each channel's mean over [a, b] s (BCI IV 2a: [0, 0.3996]; oddball: [-0.1, 0])",
    )
    annotation_input: str | None = Field(
        None,
        description="sample input of a separate EDF+ annotation file, or a TUEV .rec event file "
        "(default: the recording's own annotations)",
    )
    keep_signal: bool = Field(False, description="keep the continuous `signal` array next to `epochs`")

    @model_validator(mode="after")
    def _ordered(self) -> EpochEventsParams:
        if not self.tmin < self.tmax:
            raise ValueError(f"tmin ({self.tmin}) must be below tmax ({self.tmax})")
        if self.baseline is not None:
            a, b = self.baseline
            if not (a <= b and self.tmin - 1e-9 <= a and b <= self.tmax + 1e-9):
                raise ValueError(f"baseline {list(self.baseline)} must be ordered and inside [tmin, tmax]")
        return self


@step("eeg.epoch_events", EpochEventsParams)
def epoch_events(sample: Sample, p: EpochEventsParams) -> Sample:
    """Cut event-locked epochs [tmin, tmax] around mapped EDF+ annotations, with optional baseline."""
    x = sample.array("signal")
    fs = _signal.sampling_rate(sample)
    ann, shift = _annotation_source(sample, p.annotation_input)
    mapping = {_stage_key(k): v for k, v in p.mapping.items()}
    first = int(round(p.tmin * fs))
    win = int(round((p.tmax - p.tmin) * fs)) + 1
    starts: list[int] = []
    labels: list[str] = []
    onsets: list[float] = []
    channels: list[int] = []
    dropped = 0
    event_channels = ann.get("channel") or [-1] * len(ann["onset"])
    for onset, text, chan in zip(ann["onset"], ann["text"], event_channels, strict=True):
        key = _stage_key(str(text))
        if key not in mapping:
            continue
        s = int(round((onset + shift) * fs)) + first
        if s < 0 or s + win > x.shape[1]:
            dropped += 1
            continue
        starts.append(s)
        labels.append(mapping[key])
        onsets.append(float(onset + shift))
        channels.append(int(chan))
    if not starts:
        raise ItemError(f"no events to epoch: none of {sorted(p.mapping)} inside the recording")
    epochs = _cut(np.asarray(x, dtype=np.float64), np.asarray(starts, dtype=np.int64), win)
    if p.baseline is not None:
        times = (first + np.arange(win)) / fs
        sel = (times >= p.baseline[0] - 1e-9) & (times <= p.baseline[1] + 1e-9)
        if not sel.any():
            raise ItemError(f"baseline {list(p.baseline)} holds no sample at {fs:g} Hz")
        epochs = epochs - epochs[:, :, sel].mean(axis=2, keepdims=True)
    sample.arrays["epochs"] = epochs
    if not p.keep_signal:
        del sample.arrays["signal"]
    sample.meta.pop("_annotations", None)
    sample.meta.update(
        epoch_labels=labels,
        epoch_onsets=onsets,
        epoch_tmin=float(first / fs),
        epoch_samples=int(win),
        n_epochs=len(starts),
        epochs_dropped=dropped,
    )
    if "channel" in ann:  # TUEV: the montage channel each event was marked on
        sample.meta["epoch_channels"] = channels
    return sample


# ------------------------------------------------------------------------------------------------ cast


class CastParams(StepParams):
    dtype: Literal["float32", "float16", "float64"] = Field("float32", description="stored dtype")


@step("eeg.cast", CastParams)
def cast(sample: Sample, p: CastParams) -> Sample:
    """Cast `signal` and/or `epochs` to the stored dtype; overflow to inf is an item error."""
    names = [k for k in ("signal", "epochs") if k in sample.arrays]
    if not names:
        raise ItemError("no signal or epochs array yet; a reader step must come first")
    for name in names:
        out, overflow = _signal.astype_counting_overflow(sample.arrays[name], p.dtype)
        if overflow:
            raise ItemError(f"{overflow} values of {name} overflow {p.dtype}; scale first or keep float64")
        sample.arrays[name] = out
    sample.meta["dtype"] = p.dtype
    return sample
