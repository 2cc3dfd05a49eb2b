"""FACED's preprocessed trials (`Processed_data/sub<NNN>.pkl`): `eeg.read_faced_pkl`.

Each file is a pickled numpy array (28 videos, 32 channels, 7500 samples = 30 s at 250 Hz). A pickle runs
code when it is loaded, so these are read with climb_cli.safe_pickle, which only rebuilds numpy arrays
and plain containers: any other class in the stream is refused
as an item error, so a file that is not what FACED publishes cannot run anything.

The step drops the neutral videos (CLIMB: 12-15), cuts each remaining trial into `window`-sample windows
(CLIMB: 250 = 1 s, 30 per trial) and hands them to `rows.explode` as `epochs` with one label per window
(the video's emotion: CLIMB's y1, 8 classes) in `epoch_labels` and the video index in `epoch_videos`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import Field

from climb_cli import safe_pickle
from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, step

# The 28 FACED videos in order: 3 per emotion, 4 neutral (12-15) in the middle (Chen et al. 2023).
FACED_VIDEO_EMOTIONS = (
    ["Anger"] * 3 + ["Disgust"] * 3 + ["Fear"] * 3 + ["Sadness"] * 3 + ["Neutral"] * 4
    + ["Amusement"] * 3 + ["Inspiration"] * 3 + ["Joy"] * 3 + ["Tenderness"] * 3
)  # fmt: skip


def load_array_pickle(path: Path) -> np.ndarray:
    """A pickled numpy array, rebuilt without running any other code (climb_cli.safe_pickle)."""
    try:
        obj = safe_pickle.loads(path.read_bytes())
    except safe_pickle.UnsafePickle as exc:
        raise ItemError(f"{path.name}: not a pickled numpy array ({exc})") from None
    if not isinstance(obj, np.ndarray):
        raise ItemError(f"{path.name}: holds a {type(obj).__name__}, not a numpy array")
    return obj


class ReadFacedParams(StepParams):
    input: str = Field("pkl", description="sample input holding the subject's .pkl")
    drop_videos: list[int] = Field(
        default_factory=lambda: [12, 13, 14, 15],
        description="video indices left out (CLIMB: the neutral 12-15)",
    )
    window: int = Field(250, gt=0, description="samples per window (CLIMB: 250 = 1 s at 250 Hz)")
    sampling_rate: float = Field(250.0, gt=0, description="Hz of the stored trials (FACED: 250)")


@step("eeg.read_faced_pkl", ReadFacedParams)
def read_faced_pkl(sample: Sample, p: ReadFacedParams) -> Sample:
    """Read a FACED subject (.pkl, 28 x 32 x 7500) into windowed `epochs` with each video's emotion."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: FACED .pkl not found")
    x = load_array_pickle(path)
    if x.ndim != 3 or x.shape[0] != len(FACED_VIDEO_EMOTIONS):
        raise ItemError(
            f"{path.name}: shape {x.shape}, expected ({len(FACED_VIDEO_EMOTIONS)}, channels, samples)"
        )
    videos = [v for v in range(x.shape[0]) if v not in set(p.drop_videos)]
    per = x.shape[2] // p.window
    if per == 0:
        raise ItemError(
            f"{path.name}: trials of {x.shape[2]} samples are shorter than one window ({p.window})"
        )
    kept = np.asarray(x[videos, :, : per * p.window], dtype=np.float64)
    # (videos, channels, per, window) -> (videos * per, channels, window), video-major
    epochs = kept.reshape(len(videos), x.shape[1], per, p.window).transpose(0, 2, 1, 3)
    sample.arrays["epochs"] = np.ascontiguousarray(epochs.reshape(-1, x.shape[1], p.window))
    sample.meta.update(
        sampling_rate=p.sampling_rate,
        epoch_labels=[FACED_VIDEO_EMOTIONS[v] for v in videos for _ in range(per)],
        epoch_videos=[v for v in videos for _ in range(per)],
        epoch_onsets=[w * p.window / p.sampling_rate for _ in videos for w in range(per)],
    )
    if path not in sample.sources:
        sample.sources.append(path)
    return sample
