"""A fast reader for the commonest WFDB records: single-segment, every signal in format 16 (little-endian)
or 61 (big-endian 16-bit), any samples per frame and byte offset, no skew (PTB-XL, MIMIC-IV-ECG, most CinC
sets, and format-61 records such as wfdb-python's p10143).

wfdb-python parses a header through pandas (~18 ms a record); this parses the text directly and
reads the samples with one `np.fromfile` per signal file, giving the same float64 values as
`wfdb.rdrecord(...).dac()`: (d - baseline) / gain, NaN where d is the format's invalid value.
It is also the only path for format 61: wfdb 4.3's `rdrecord(physical=False, smooth_frames=False)` fails
on it (`convert_dtype` parses the dtype name '>i2' as 'int..': "invalid literal for int()").
Anything it does not recognise returns None, and the caller uses wfdb.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from climb_cli.lazy import lazy

if TYPE_CHECKING:
    import numpy as np
else:
    np = lazy("numpy")  # loaded when a record is read, not when the step module is imported

_GAIN = re.compile(r"^([0-9.eE+-]+)(?:\((-?\d+)\))?(?:/(\S+))?$")
_NUMBER = re.compile(r"^[0-9]+(?:\.[0-9]+)?$")
#: format[xsamples_per_frame][:skew][+byte_offset], for the two 16-bit formats
_FORMAT = re.compile(r"^(16|61)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_DTYPES = {"16": "<i2", "61": ">i2"}
INVALID_16 = -32768


@dataclass
class Fast:
    channels: list[np.ndarray] | np.ndarray  # float64, channel c has sig_len * spf[c] samples; one 2-D
    # (n_sig, samples) array when every channel has the same samples per frame
    names: list[str]
    units: list[str]
    fs: float  # frame rate: channel c is sampled at fs * spf[c]
    spf: list[int]
    files: list[Path]
    fmt: str  # "16" or "61" (one format per record on this path)


class Truncated(Exception):
    def __init__(self, path: Path, size: int, needed: int, frames: int, channels: int, fmt: str) -> None:
        super().__init__(path, size, needed)
        self.path, self.size, self.needed, self.frames, self.channels = path, size, needed, frames, channels
        self.fmt = fmt


def read(header_path: Path, physical: bool = True) -> Fast | None:
    """The record (physical values, or digital ones as float64 when `physical` is false; NaN marks invalid
    samples either way), or None when it is not the simple kind (the caller then uses wfdb)."""
    try:
        lines = [ln.strip() for ln in header_path.read_text(encoding="latin-1").splitlines()]
    except OSError:
        return None
    lines = [ln for ln in lines if ln and not ln.startswith("#")]
    if not lines:
        return None
    rec = lines[0].split()
    if (
        len(rec) < 4
        or "/" in rec[0]
        or not rec[1].isdigit()
        or not _NUMBER.match(rec[2])
        or not rec[3].isdigit()
    ):
        return None
    n_sig, fs, sig_len = int(rec[1]), float(rec[2]), int(rec[3])
    if n_sig < 1 or len(lines) < 1 + n_sig or fs <= 0:
        return None
    files: list[str] = []
    per_file: dict[str, list[int]] = {}
    file_format: dict[str, tuple[str, int]] = {}
    gains, baselines, units, names, spf = [], [], [], [], []
    for ch, line in enumerate(lines[1 : 1 + n_sig]):
        f = line.split(maxsplit=8)
        if len(f) < 9:
            return None
        if f[1] in _DTYPES:  # the plain "16" / "61" (no regex: this loop runs per signal per record)
            layout, samples = (f[1], 0), 1
        else:
            fm = _FORMAT.match(f[1])
            if fm is None or int(fm.group(3) or 0) != 0:
                return None  # another format, or skew: let wfdb read it
            layout, samples = (fm.group(1), int(fm.group(4) or 0)), int(fm.group(2) or 1)
        m = _GAIN.match(f[2])
        if not m or not f[4].lstrip("-").isdigit():
            return None
        gain = float(m.group(1))
        if gain <= 0:
            return None
        if f[0] not in per_file:
            files.append(f[0])
            per_file[f[0]] = []
            file_format[f[0]] = layout
        elif file_format[f[0]] != layout:
            return None  # formats or offsets differ within one file
        per_file[f[0]].append(ch)
        gains.append(gain)
        baselines.append(int(m.group(2)) if m.group(2) is not None else int(f[4]))
        units.append(m.group(3) or "mV")
        names.append(f[8])
        spf.append(samples)
    if len({fmt for fmt, _ in file_format.values()}) != 1 or min(spf) < 1:
        return None
    channels: list[np.ndarray] = [np.empty(0)] * n_sig
    # one rate: the channels are the rows of one array, which the caller takes without a copy
    block = np.empty((n_sig, sig_len * spf[0])) if len(set(spf)) == 1 else None
    paths = []
    for name in files:
        path = header_path.parent / name
        if not path.is_file():
            return None  # wfdb's path reports the missing file
        chans = per_file[name]
        fmt, offset = file_format[name]
        frame = sum(spf[ch] for ch in chans)
        needed = offset + sig_len * frame * 2
        size = path.stat().st_size
        if size < needed:
            raise Truncated(path, size, needed, sig_len, frame, fmt)
        d = np.fromfile(path, dtype=_DTYPES[fmt], count=sig_len * frame, offset=offset)
        d = d.reshape(sig_len, frame)
        start = 0
        for ch in chans:
            # a strided view, read once below: (frames,) for one sample per frame, else (frames, spf)
            col = d[:, start] if spf[ch] == 1 else d[:, start : start + spf[ch]]
            start += spf[ch]
            out = block[ch].reshape(col.shape) if block is not None else np.empty(col.shape)
            if physical:
                np.subtract(col, baselines[ch], out=out, dtype=np.float64)
                np.divide(out, gains[ch], out=out)
            else:
                out[...] = col
            out[col == INVALID_16] = np.nan
            channels[ch] = out.reshape(-1)
        paths.append(path)
    fmt = next(iter(file_format.values()))[0]
    return Fast(block if block is not None else channels, names, units, fs, spf, paths, fmt)
