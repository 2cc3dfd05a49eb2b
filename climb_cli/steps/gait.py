"""Gait / IMU steps: read a HuGaDB-style sensor table into a multichannel signal with activity labels.

HuGaDB (climb-datasets.md section 1.8) ships one tab-separated text file per recording: a few `#Key value`
metadata lines (`#Activity`, `#ActivityID`, `#Date-Time`), a header row naming 39 columns (accelerometer and
gyroscope x/y/z for the right/left foot, shin and thigh: `acc_rf_x` ... `gyro_lt_z`; `EMG_r`, `EMG_l`) and
the activity ID of every sample in the last column `act`. Values are raw int16 (IMU, +-2 g and
+-2000 deg/s full scale) and uint8 (EMG); the files carry no time stamps.

CLIMB read each file with pandas and returned the raw table plus the header's activity list: no
preprocessing, no windows. It defines 12 activity classes (`Walking` ... `Sitting in Car`, the IDs 1-12
below) while its Dataset_Info says 4; no 4-class grouping is given anywhere, so the default keeps the 12
classes and `merge` lets a recipe collapse them (e.g. {"Going Up": "Stairs", "Going Down": "Stairs"}).

`gait.read_tsv` gives `signal` (channels, samples) and either a per-sample `activity` array (indices into
meta `activity_classes`, -1 = unknown ID) or fixed windows `windows` (n, channels, samples) with one label
per window; one recording stays one output row.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps.base import Sample, StepParams, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import pandas as pd
else:
    pd = lazy("pandas")

#: HuGaDB activity IDs -> CLIMB's class names (`HuGaDB_LABELS` in CLIMB's gait/hugadb.py).
HUGADB_ACTIVITIES: dict[int, str] = {
    1: "Walking",
    2: "Running",
    3: "Going Up",
    4: "Going Down",
    5: "Sitting",
    6: "Sitting Down",
    7: "Standing Up",
    8: "Standing",
    9: "Bicycling",
    10: "Up by Elevator",
    11: "Down by Elevator",
    12: "Sitting in Car",
}

#: HuGaDB's README: 2,111,962 samples over 35,903 s of recordings, i.e. about 58.8 samples per second.
HUGADB_RATE = 58.8

#: full-scale ranges from the HuGaDB README, for `physical: true` (int16 counts -> physical units).
_FULL_SCALE = {"acc": (2.0 / 32768.0, "g"), "gyro": (2000.0 / 32768.0, "deg/s")}


def _read_table(path: Path, sep: str) -> tuple[dict[str, str], pd.DataFrame]:
    """(`#Key value` metadata lines, numeric table) of a HuGaDB-style text file."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ItemError(f"{path.name}: unreadable sensor table ({_why(exc)})") from None
    lines = text.splitlines()
    header: dict[str, str] = {}
    skip = 0
    for line in lines:
        if not line.startswith("#"):
            break
        skip += 1
        parts = line[1:].strip().split(None, 1)
        if parts:
            header[parts[0]] = parts[1].strip() if len(parts) > 1 else ""
    body = "\n".join(lines[skip:])
    if not body.strip():
        raise ItemError(f"{path.name}: no sensor table after the {skip} metadata line(s)")
    try:
        df = pd.read_csv(io.StringIO(body), sep=sep, header=0)
    except (ValueError, pd.errors.ParserError) as exc:
        raise ItemError(f"{path.name}: malformed sensor table ({_why(exc)})") from None
    df.columns = [str(c).strip() for c in df.columns]
    df = df.loc[:, [c for c in df.columns if c and not c.startswith("Unnamed:")]]  # trailing separators
    if df.empty:
        raise ItemError(f"{path.name}: the sensor table has a header but no samples")
    return header, df


def _numeric(df: pd.DataFrame, path: Path) -> np.ndarray:
    out = np.empty((df.shape[1], df.shape[0]), dtype=np.float64)
    for k, col in enumerate(df.columns):
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=np.float64)
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            raise ItemError(
                f"{path.name}: column {col!r} has {bad.size} non-numeric or missing value(s), first at data "
                f"row {int(bad[0]) + 1} ({df[col].iloc[int(bad[0])]!r})"
            )
        out[k] = values
    return out


class ReadTsvParams(StepParams):
    input: str = Field("recording", description="sample input holding the sensor table (.txt / .tsv / .csv)")
    sep: str = Field("\t", description="column separator (HuGaDB: tab)")
    label_column: str | None = Field(
        "act", description="column with the activity ID of each sample (HuGaDB: act); null: no labels"
    )
    channels: list[str] | None = Field(
        None, description="sensor columns to keep, in this order (default: every column but the label)"
    )
    sampling_rate: float = Field(
        HUGADB_RATE,
        gt=0,
        description="samples per second (the files have no time stamps; HuGaDB averages 58.8 Hz: "
        "2,111,962 samples in 35,903 s)",
    )
    physical: bool = Field(
        False,
        description="convert acc_* counts to g (x 2/32768) and gyro_* to deg/s (x 2000/32768), HuGaDB's "
        "full scales; other columns stay raw ('adu'). CLIMB kept raw values",
    )
    classes: dict[int, str] = Field(
        default_factory=lambda: dict(HUGADB_ACTIVITIES),
        description="activity ID -> class name (default: HuGaDB's 12 activities, CLIMB's names)",
    )
    merge: dict[str, str] = Field(
        default_factory=dict,
        description="class name -> coarser class (CLIMB's Dataset_Info says 4 classes but defines none)",
    )
    labels: Literal["per_sample", "windows", "none"] = Field(
        "per_sample",
        description="per_sample: `activity` array of class indices; windows: fixed windows with one "
        "label each; none: only the file's activity list",
    )
    window: int | None = Field(None, gt=0, description="window length in samples (labels=windows)")
    stride: int | None = Field(None, gt=0, description="samples between window starts (default: window)")
    min_purity: float = Field(
        0.5,
        gt=0,
        le=1,
        description="a window's label is its most frequent class; windows where it covers less than this "
        "fraction (or is unknown) are dropped; 1.0 keeps only single-activity windows",
    )
    dtype: Literal["float32", "float64"] = Field("float32", description="stored dtype of signal / windows")

    @model_validator(mode="after")
    def _window_given(self) -> ReadTsvParams:
        if self.labels == "windows" and self.window is None:
            raise ValueError("labels windows needs a window length (samples)")
        if self.labels != "none" and self.label_column is None:
            raise ValueError(f"labels {self.labels} needs a label_column")
        return self


def _class_list(p: ReadTsvParams) -> list[str]:
    out: list[str] = []
    for _, name in sorted(p.classes.items()):
        merged = p.merge.get(name, name)
        if merged not in out:
            out.append(merged)
    return out


@step("gait.read_tsv", ReadTsvParams)
def read_tsv(sample: Sample, p: ReadTsvParams) -> Sample:
    """Read a HuGaDB-style IMU/EMG table into `signal` (channels, samples) with activity labels."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: sensor table not found")
    header, df = _read_table(path, p.sep)
    if p.label_column is not None and p.label_column not in df.columns:
        raise ItemError(
            f"{path.name}: no label column {p.label_column!r} (columns: {', '.join(df.columns[:8])}...)"
        )
    sensors = [c for c in df.columns if c != p.label_column]
    if p.channels is not None:
        absent = [c for c in p.channels if c not in df.columns]
        if absent:
            raise ItemError(f"{path.name}: column(s) {absent} not in the table")
        sensors = list(p.channels)
    if not sensors:
        raise ItemError(f"{path.name}: no sensor columns")
    x = _numeric(df[sensors], path)
    units = ["adu"] * len(sensors)
    if p.physical:
        for k, name in enumerate(sensors):
            kind = name.split("_", 1)[0].casefold()
            if kind in _FULL_SCALE:
                factor, unit = _FULL_SCALE[kind]
                x[k] *= factor
                units[k] = unit
    classes = _class_list(p)
    sample.meta.update(
        sampling_rate=float(p.sampling_rate),
        channel_names=sensors,
        units=units,
        original_length=int(x.shape[1]),
        header_activities=header.get("Activity", "").split(),
    )
    if path not in sample.sources:
        sample.sources.append(path)
    if p.label_column is None:
        sample.arrays["signal"] = x.astype(p.dtype)
        return sample

    ids = _numeric(df[[p.label_column]], path)[0]
    if not np.array_equal(ids, np.round(ids)):
        raise ItemError(f"{path.name}: activity IDs in {p.label_column!r} are not integers")
    ids = ids.astype(np.int64)
    present = list(dict.fromkeys(int(v) for v in ids))  # order of first appearance
    index = {c: k for k, c in enumerate(classes)}
    lookup = {i: index[p.merge.get(name, name)] for i, name in p.classes.items()}
    uniq, inverse = np.unique(ids, return_inverse=True)
    per_sample = np.array([lookup.get(int(u), -1) for u in uniq], dtype=np.int16)[inverse.reshape(-1)]
    sample.meta.update(
        activity_ids=present,
        activities=list(dict.fromkeys(classes[lookup[i]] for i in present if i in lookup)),
        unknown_samples=int(np.count_nonzero(per_sample < 0)),  # their IDs are in activity_ids
        activity_classes=classes,
    )
    if p.labels == "none":
        sample.arrays["signal"] = x.astype(p.dtype)
        return sample
    if p.labels == "per_sample":
        sample.arrays["signal"] = x.astype(p.dtype)
        sample.arrays["activity"] = per_sample
        return sample

    assert p.window is not None
    win, stride = p.window, p.stride or p.window
    n = x.shape[1]
    if n < win:
        raise ItemError(f"{path.name}: {n} samples, shorter than one window of {win}")
    starts = np.arange((n - win) // stride + 1, dtype=np.int64) * stride
    keep: list[int] = []
    labels: list[str] = []
    for s in starts:
        seg = per_sample[s : s + win]
        counts = np.bincount(seg[seg >= 0], minlength=len(classes)) if (seg >= 0).any() else None
        if counts is None:
            continue
        best = int(np.argmax(counts))
        if counts[best] < p.min_purity * win - 1e-9:
            continue
        keep.append(int(s))
        labels.append(classes[best])
    if not keep:
        raise ItemError(f"{path.name}: no window of {win} samples reaches purity {p.min_purity:g}")
    idx = np.asarray(keep)[:, None] + np.arange(win)[None, :]
    sample.arrays["windows"] = np.ascontiguousarray(np.transpose(x[:, idx], (1, 0, 2))).astype(p.dtype)
    sample.meta.update(
        window_labels=labels,
        window_starts=keep,
        window_samples=int(win),
        n_windows=len(keep),
        windows_dropped=int(len(starts) - len(keep)),
    )
    return sample
