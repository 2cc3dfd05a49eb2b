"""BNCI Horizon 2020 `.mat` recordings (BCI Competition IV 2a = BNCI 001-2014, A0<s><T|E>.mat):
`eeg.read_bnci_mat`.

Each file holds one MATLAB variable `data`, a cell array of runs; a run is a struct with `X` (samples x
channels, microvolts), `trial` (1-based sample index of each cue), `y` (class 1-4 per trial), `fs`,
`artifacts` (1 = the trial was marked as an artifact). The first runs of a session hold only eye
movements and rest (no trials); A04T lacks two of them, which is why CLIMB indexes its runs 3-8 with
"run - 2" for A04T. This reader keeps every run that has trials (the same runs, without the special
case), concatenates them in order and hands the cues to `eeg.epoch_events` as annotations (text = the
class code), leaving out artifact trials (counted in `artifact_trials`), as CLIMB does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.eeg import DEFAULT_REFERENCES, match_channels

# BCI IV 2a's 22 EEG channels then 3 EOG, in the files' column order (the competition's description)
BCI_IV_2A_CHANNELS = [
    "Fz", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "C6", "CP3", "CP1",
    "CPz", "CP2", "CP4", "P1", "Pz", "P2", "POz", "EOG-left", "EOG-central", "EOG-right",
]  # fmt: skip


class ReadBnciMatParams(StepParams):
    input: str = Field("mat", description="sample input holding the BNCI .mat file")
    channel_names: list[str] = Field(
        default_factory=lambda: list(BCI_IV_2A_CHANNELS),
        description="names of the files' columns, in order (the files carry none; default BCI IV 2a's 25)",
    )
    channels: list[str] | None = Field(None, description="channels to keep, in order (default: all)")
    artifacts: bool = Field(False, description="keep trials marked as artifacts (CLIMB removes them)")


def _runs(path: Path) -> list[dict[str, Any]]:
    from scipy.io import loadmat

    try:
        mat = loadmat(str(path), simplify_cells=True)
    except (ValueError, OSError, TypeError, NotImplementedError) as exc:
        raise ItemError(f"{path.name}: not a readable BNCI .mat file ({exc})") from None
    if "data" not in mat:
        raise ItemError(f"{path.name}: no variable 'data' (not a BNCI .mat file?)")
    data = mat["data"]
    runs = [data] if isinstance(data, dict) else list(np.ravel(np.asarray(data, dtype=object)))
    if not all(isinstance(r, dict) and "X" in r for r in runs):
        raise ItemError(f"{path.name}: 'data' is not a list of runs with X (not a BNCI .mat file?)")
    return runs


@step("eeg.read_bnci_mat", ReadBnciMatParams)
def read_bnci_mat(sample: Sample, p: ReadBnciMatParams) -> Sample:
    """Read a BNCI .mat (BCI IV 2a) into `signal` (channels, samples, uV): runs with trials, cues kept."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: BNCI .mat file not found")
    with item_errors(f"{path.name}: cannot read the BNCI file"):
        runs = _runs(path)
    parts: list[np.ndarray] = []
    events: dict[str, list[Any]] = {"onset": [], "duration": [], "text": []}
    fs: float | None = None
    offset, used, artifacts = 0, 0, 0
    for r in runs:
        trial = np.atleast_1d(np.asarray(r.get("trial", []), dtype=np.int64))
        if trial.size == 0:
            continue
        x = np.asarray(r["X"], dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != len(p.channel_names):
            raise ItemError(
                f"{path.name}: a run has X of shape {x.shape}, not (samples, {len(p.channel_names)})"
            )
        rate = float(r["fs"])
        if fs is not None and rate != fs:
            raise ItemError(f"{path.name}: runs have different rates ({fs:g}, {rate:g} Hz)")
        fs = rate
        y = np.atleast_1d(np.asarray(r["y"], dtype=np.int64))
        art = np.atleast_1d(np.asarray(r.get("artifacts", np.zeros_like(y)), dtype=np.int64))
        if not (len(y) == len(trial) == len(art)):
            raise ItemError(
                f"{path.name}: a run has {len(trial)} cues, {len(y)} labels, {len(art)} artifact flags"
            )
        for t, label, bad in zip(trial, y, art, strict=True):
            if bad and not p.artifacts:
                artifacts += 1
                continue
            events["onset"].append((offset + int(t) - 1) / rate)
            events["duration"].append(0.0)
            events["text"].append(str(int(label)))
        parts.append(x.T)
        offset += x.shape[0]
        used += 1
    if fs is None:
        raise ItemError(f"{path.name}: no run with trials")
    signal = np.concatenate(parts, axis=1)
    names = list(p.channel_names)
    if p.channels is not None:
        found = match_channels(names, p.channels, {}, DEFAULT_REFERENCES)
        absent = [w for w, i in zip(p.channels, found, strict=True) if i is None]
        if absent:
            raise ItemError(f"{path.name}: channel(s) {absent} not among {', '.join(names)}")
        signal = signal[[i for i in found if i is not None]]
        names = [names[i] for i in found if i is not None]
    sample.arrays["signal"] = np.ascontiguousarray(signal)
    sample.meta.update(
        sampling_rate=fs,
        channel_names=names,
        units=["uV"] * len(names),
        original_length=int(signal.shape[1]),
        runs_used=used,
        artifact_trials=artifacts,
        _annotations=events,
    )
    if path not in sample.sources:
        sample.sources.append(path)
    return sample
