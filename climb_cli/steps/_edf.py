"""A plain EDF/EDF+/BDF reader for the files pyedflib refuses, per the EDF and EDF+ specifications.

pyedflib (edflib) cannot read EDF+D / BDF+D at all ("The file is discontinuous and cannot be read") and
refuses a header holding any byte outside printable ASCII ("not EDF(+) or BDF(+) compliant (Physical
Dimension)" for a latin-1 '°' in a unit). mne reads both. `EdfFile` offers the part of
`pyedflib.EdfReader` that `eeg.read_edf` uses, so the step has one code path for either reader.

Header text is decoded as UTF-8 when it is valid UTF-8, else as latin-1 (the '°' byte 0xB0 of some
exports). Physical values are (d - dmin) * (pmax - pmin) / (dmax - dmin) + pmin, as mne computes them.
Records are joined as stored; `record_onsets` gives each data record's start from its time-keeping
annotation (EDF+), so a caller can place annotations on the joined timeline and report the gaps.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import re
from pathlib import Path

import numpy as np

_ANNOTATION_LABELS = {"edf annotations", "bdf annotations"}
_TAL = re.compile(rb"([+-]\d+(?:\.\d*)?)(?:\x15(\d+(?:\.\d*)?))?\x14(.*?)\x14\x00", re.DOTALL)


def header_is_ascii(path: Path) -> bool:
    """True when every header byte (after BDF's 0xFF marker) is printable ASCII, as edflib demands."""
    with open(path, "rb") as f:
        head = f.read(256)
        ns = int(head[252:256].decode("latin-1").strip() or 0)
        head += f.read(256 * ns)
    body = head[1:] if head[:1] == b"\xff" else head
    return all(32 <= b <= 126 for b in body)


def _text(raw: bytes) -> str:
    try:
        return raw.decode("utf-8").strip()
    except UnicodeDecodeError:
        return raw.decode("latin-1").strip()


class EdfFile:
    """An EDF/EDF+/BDF file read with numpy; the methods mirror pyedflib.EdfReader's."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with open(path, "rb") as f:
            head = f.read(256)
            ns = int(head[252:256].decode("latin-1").strip())
            ext = f.read(256 * ns)
        self.bdf = head[:1] == b"\xff"
        self.n_records = int(head[236:244].decode("latin-1").strip())
        self.record_seconds = float(head[244:252].decode("latin-1").strip())
        self._head, self._ns = head, ns

        def fields(offset: int, width: int) -> list[str]:
            start = offset * ns
            return [_text(ext[start + width * i : start + width * (i + 1)]) for i in range(ns)]

        self.labels = fields(0, 16)
        self.units = fields(96, 8)
        self.pmin = np.array([float(v) for v in fields(104, 8)])
        self.pmax = np.array([float(v) for v in fields(112, 8)])
        self.dmin = np.array([float(v) for v in fields(120, 8)])
        self.dmax = np.array([float(v) for v in fields(128, 8)])
        self.prefilters = fields(136, 80)
        self.spr = [int(v) for v in fields(216, 8)]
        self._offsets = np.concatenate([[0], np.cumsum(self.spr)]).astype(int)
        # as pyedflib: signal i of the methods below counts the ordinary signals only
        self._signals = [i for i, lab in enumerate(self.labels) if lab.casefold() not in _ANNOTATION_LABELS]
        self._data: np.ndarray | None = None
        self._annotations: tuple[list[float], list[float], list[str]] | None = None
        self.record_onsets: list[float] = []

    def __enter__(self) -> EdfFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self._data = None

    # ------------------------------------------------------------------------- raw data records

    def _records(self) -> np.ndarray:
        """The data records as bytes, (n_records, bytes per record), mapped from the file (not read)."""
        if self._data is None:
            width = 3 if self.bdf else 2
            per_record = int(self._offsets[-1]) * width
            offset = 256 * (self._ns + 1)
            needed = offset + self.n_records * per_record
            size = self.path.stat().st_size
            if size < needed:
                raise OSError(f"{self.path.name}: {size} bytes, the header needs {needed}")
            self._data = np.memmap(
                self.path, dtype=np.uint8, mode="r", offset=offset, shape=(self.n_records, per_record)
            )
        return self._data

    def _digital(self, i: int) -> np.ndarray:
        """Signal i (index among all signals) as int32 digital values, records joined."""
        width = 3 if self.bdf else 2
        raw = np.ascontiguousarray(
            self._records()[:, self._offsets[i] * width : self._offsets[i + 1] * width]
        )
        if not self.bdf:
            return raw.view("<i2").reshape(-1).astype(np.int32)
        b = raw.reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        return np.where(v >= 1 << 23, v - (1 << 24), v)

    # ------------------------------------------------------------------- pyedflib.EdfReader's API

    def getSignalLabels(self) -> list[str]:  # noqa: N802 (pyedflib's names)
        return [self.labels[i] for i in self._signals]

    def getSampleFrequency(self, i: int) -> float:  # noqa: N802
        if self.record_seconds <= 0:
            raise ValueError(f"data record duration {self.record_seconds:g} s: no sampling rate")
        return self.spr[self._signals[i]] / self.record_seconds

    def getPhysicalDimension(self, i: int) -> str:  # noqa: N802
        return self.units[self._signals[i]]

    def getPrefilter(self, i: int) -> str:  # noqa: N802
        return self.prefilters[self._signals[i]]

    def getFileDuration(self) -> float:  # noqa: N802
        return self.n_records * self.record_seconds

    def readSignal(self, i: int, digital: bool = False) -> np.ndarray:  # noqa: N802
        i = self._signals[i]
        d = self._digital(i).astype(np.float64)
        if digital:
            return d
        gain = (self.pmax[i] - self.pmin[i]) / (self.dmax[i] - self.dmin[i])
        return (d - self.dmin[i]) * gain + self.pmin[i]

    def readAnnotations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: N802
        """(onsets, durations, texts): onsets in seconds from the first data record's start (duration -1
        when the annotation has none, as pyedflib)."""
        onsets, durations, texts = self._read_annotations()
        return np.array(onsets, dtype=np.float64), np.array(durations, dtype=np.float64), np.array(texts)

    def getStartdatetime(self) -> _dt.datetime:  # noqa: N802
        date = self._head[168:176].decode("latin-1").strip()
        clock = self._head[176:184].decode("latin-1").strip()
        day, month, yy = (int(v) for v in date.split("."))
        hour, minute, second = (int(v) for v in clock.split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy
        recording = _text(self._head[88:168]).split()
        if len(recording) > 1 and recording[0] == "Startdate":  # EDF+: the 4-digit year
            with contextlib.suppress(ValueError):
                year = _dt.datetime.strptime(recording[1], "%d-%b-%Y").year
        start = _dt.datetime(year, month, day, hour, minute, second)
        self._read_annotations()
        if self.record_onsets and 0 < self.record_onsets[0] < 1:
            start += _dt.timedelta(seconds=self.record_onsets[0])
        return start

    # ----------------------------------------------------------------------------- annotations

    def _read_annotations(self) -> tuple[list[float], list[float], list[str]]:
        if self._annotations is not None:
            return self._annotations
        channels = [i for i, lab in enumerate(self.labels) if lab.casefold() in _ANNOTATION_LABELS]
        onsets: list[float] = []
        durations: list[float] = []
        texts: list[str] = []
        record_onsets: list[float] = []
        width = 3 if self.bdf else 2
        if not self.n_records:
            channels = []
        for r in range(self.n_records):
            keeper: float | None = None
            for i in channels:
                slot = self._records()[r, self._offsets[i] * width : self._offsets[i + 1] * width].tobytes()
                for m in _TAL.finditer(slot):
                    onset = float(m.group(1))
                    duration = float(m.group(2)) if m.group(2) else -1.0
                    parts = m.group(3).split(b"\x14")
                    if keeper is None and not parts[0]:
                        keeper = onset  # the record's time-keeping annotation
                    for part in parts:
                        if part:
                            onsets.append(onset)
                            durations.append(duration)
                            texts.append(_text(part))
            record_onsets.append(keeper if keeper is not None else r * self.record_seconds)
        first = record_onsets[0] if record_onsets else 0.0
        self.record_onsets = record_onsets
        self._annotations = ([o - first for o in onsets], durations, texts)
        return self._annotations


def join_timeline(
    onsets: list[float], record_onsets: list[float], record_seconds: float
) -> tuple[list[float], list[list[float]]]:
    """Annotation onsets (seconds from the first record) moved onto the joined records' timeline, and the
    gaps as [joined time, seconds missing]. An onset inside a gap goes to the start of the next record."""
    if not record_onsets:
        return list(onsets), []
    starts = np.asarray(record_onsets, dtype=np.float64) - record_onsets[0]
    gaps = [
        [float((r + 1) * record_seconds), float(starts[r + 1] - starts[r] - record_seconds)]
        for r in range(len(starts) - 1)
        if starts[r + 1] - starts[r] - record_seconds > 1e-6
    ]
    moved = []
    for t in onsets:
        r = max(int(np.searchsorted(starts, t, side="right")) - 1, 0)
        moved.append(float(r * record_seconds + min(max(t - starts[r], 0.0), record_seconds)))
    return moved, gaps
