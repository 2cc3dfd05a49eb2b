"""EEGLAB `.set` recordings (OpenNeuro BIDS EEG, e.g. the auditory oddball ds003061): `eeg.read_eeglab`.

A `.set` is a MATLAB v5/v7 file holding the EEG structure, either as top-level variables (pop_saveset's
default) or under one variable `EEG`: `nbchan`, `pnts`, `trials`, `srate`, `chanlocs(i).labels`,
`event(i).type` / `.latency` (1-based samples) and `data`, which is either the (channels, samples) matrix
itself or the name of a `.fdt` file beside the `.set` holding float32 little-endian samples, channels
varying fastest. EEGLAB stores microvolts. MATLAB v7.3 (HDF5) `.set` files are refused with that reason.

Events become the private `_annotations` that `eeg.epoch_events` cuts around: from the `.set`'s own
`event` list, or, with `events_input`, from a BIDS `*_events.tsv` (`onset` in seconds and the column
`events_column`, `value` by default — the event codes MNE-BIDS maps, as CLIMB's 2 = standard and
8 = oddball_with_reponse).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.eeg import DEFAULT_REFERENCES, match_channels


class ReadEeglabParams(StepParams):
    input: str = Field("set", description="sample input holding the EEGLAB .set file")
    channels: list[str] | None = Field(None, description="channels to keep, in order, matched by name")
    references: list[str] = Field(
        default_factory=lambda: list(DEFAULT_REFERENCES),
        description="reference suffixes stripped when matching",
    )
    events_input: str | None = Field(
        None, description="sample input of a BIDS *_events.tsv to take the events from (default: the .set's)"
    )
    events_column: str = Field("value", description="events.tsv column holding the event code")


def _field(eeg: dict[str, Any], name: str, where: str) -> Any:
    if name not in eeg:
        raise ItemError(f"{where}: no EEG.{name} (not an EEGLAB .set?)")
    return eeg[name]


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, dict):
        return [v]
    if isinstance(v, np.ndarray):
        return list(v.ravel())
    return list(v) if isinstance(v, list | tuple) else []


def read_set(path: Path) -> tuple[np.ndarray, float, list[str], dict[str, list[Any]]]:
    """(signal (channels, samples) float64 in uV, rate, channel names, events as annotations)."""
    from scipy.io import loadmat

    with open(path, "rb") as fh:
        head = fh.read(128)
    if b"MATLAB 7.3" in head or head[:8] == b"\x89HDF\r\n\x1a\n":
        raise ItemError(f"{path.name}: a MATLAB v7.3 (HDF5) .set; save it from EEGLAB as v7 to read it here")
    try:
        mat = loadmat(str(path), simplify_cells=True)
    except (ValueError, OSError, TypeError) as exc:
        raise ItemError(f"{path.name}: not a readable EEGLAB .set ({exc})") from None
    eeg = mat["EEG"] if isinstance(mat.get("EEG"), dict) else mat
    nbchan = int(_field(eeg, "nbchan", path.name))
    pnts = int(_field(eeg, "pnts", path.name))
    trials = int(eeg.get("trials", 1) or 1)
    srate = float(_field(eeg, "srate", path.name))
    data = _field(eeg, "data", path.name)
    n = pnts * trials
    if isinstance(data, str):
        fdt = path.parent / Path(data).name
        if not fdt.is_file():
            raise ItemError(f"{path.name}: its data file {fdt.name} is not beside it")
        raw = np.fromfile(fdt, dtype="<f4")
        if raw.size != nbchan * n:
            raise ItemError(f"{fdt.name}: {raw.size} values, expected {nbchan} x {n}")
        x = raw.reshape(n, nbchan).T.astype(np.float64)
    else:
        x = np.asarray(data, dtype=np.float64).reshape(nbchan, -1)
        if x.shape[1] != n:
            raise ItemError(f"{path.name}: data has {x.shape[1]} samples, EEG.pnts x trials = {n}")
    locs = _as_list(eeg.get("chanlocs", []))
    names = [str(c.get("labels", "")).strip() for c in locs] if len(locs) == nbchan else [""] * nbchan
    events: dict[str, list[Any]] = {"onset": [], "duration": [], "text": []}
    for ev in _as_list(eeg.get("event", [])):
        if not isinstance(ev, dict) or "latency" not in ev:
            continue
        events["onset"].append((float(ev["latency"]) - 1.0) / srate)
        events["duration"].append(0.0)
        events["text"].append(str(ev.get("type", "")).strip())
    return x, srate, names, events


def read_events_tsv(path: Path, column: str) -> dict[str, list[Any]]:
    """A BIDS events.tsv as annotations: onset (s), duration (s), text = the `column` value."""
    with open(path, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    if rows and (column not in rows[0] or "onset" not in rows[0]):
        raise ItemError(f"{path.name}: needs the columns onset and {column} (has {', '.join(rows[0])})")
    out: dict[str, list[Any]] = {"onset": [], "duration": [], "text": []}
    for r in rows:
        try:
            onset = float(r["onset"])
        except ValueError:
            continue  # 'n/a'
        dur = r.get("duration", "0")
        out["onset"].append(onset)
        out["duration"].append(float(dur) if dur not in ("", "n/a") else 0.0)
        out["text"].append(str(r[column]).strip())
    return out


@step("eeg.read_eeglab", ReadEeglabParams)
def read_eeglab(sample: Sample, p: ReadEeglabParams) -> Sample:
    """Read an EEGLAB .set (+ .fdt) into `signal` (channels, samples, uV) with its events kept."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: EEGLAB file not found")
    with item_errors(f"{path.name}: cannot read the EEGLAB file"):
        x, srate, names, events = read_set(path)
    if p.channels is not None:
        found = match_channels(names, p.channels, {}, p.references)
        absent = [w for w, i in zip(p.channels, found, strict=True) if i is None]
        if absent:
            raise ItemError(
                f"{path.name}: channel(s) {absent} not in the file (channels: {', '.join(names)})"
            )
        x = x[[i for i in found if i is not None]]
        names = [names[i] for i in found if i is not None]
    if p.events_input is not None:
        ev_path = sample.input(p.events_input)
        if not ev_path.is_file():
            raise ItemError(f"{ev_path.name}: events file not found")
        events = read_events_tsv(ev_path, p.events_column)
        sample.sources.append(ev_path)
    sample.arrays["signal"] = np.ascontiguousarray(x)
    sample.meta.update(
        sampling_rate=srate,
        channel_names=names,
        units=["uV"] * len(names),
        original_length=int(x.shape[1]),
        duration=float(x.shape[1] / srate),
        _annotations=events,
    )
    if path not in sample.sources:
        sample.sources.append(path)
    fdt = path.with_suffix(".fdt")
    if fdt.is_file() and fdt not in sample.sources:
        sample.sources.append(fdt)
    return sample
