"""Cholec80 clips (placed by hand, as its manual source says): MP4s written by OpenCV with phase, tool and
timestamp files in the release's layout -> one row per CLIMB phase interval, its frames at 1 fps."""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np
import pytest

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.video import ClipsParams, clips
from tests.conftest import fast_settings
from tests.recipes.conftest import build, packaged, rewritten

PHASES = ["Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection"]
TOOLS = ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]


def _shade(k: int) -> int:
    return (k // 25) * 9 % 240 + 8  # constant per second of video: survives the lossy codec


def _place(raw: Path, video: str, n: int, rng: np.random.Generator) -> list[str]:
    (raw / "videos").mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(raw / "videos" / f"{video}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (32, 24))
    assert out.isOpened()
    for k in range(n):
        out.write(np.full((24, 32, 3), _shade(k), dtype=np.uint8))
    out.release()
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, n), 3, replace=False))
    ph = [PHASES[int(np.searchsorted(cuts, i, side="right"))] for i in range(n)]
    (raw / "phase_annotations").mkdir(exist_ok=True)
    (raw / "phase_annotations" / f"{video}-phase.txt").write_text(
        "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(ph))
    )
    (raw / "tool_annotations").mkdir(exist_ok=True)
    tool_rows = "".join(f"{i}\t" + "\t".join(map(str, rng.integers(0, 2, 7))) + "\n" for i in range(0, n, 25))
    (raw / "tool_annotations" / f"{video}-tool.txt").write_text(
        "Frame\t" + "\t".join(TOOLS) + "\n" + tool_rows
    )
    stamps = [f"00:{i // 1500:02d}:{i // 25 % 60:02d}.{i % 25:02d}" for i in range(n)]
    (raw / "videos" / f"{video}-timestamp.txt").write_text("Frame\n" + "".join(f"{s}\n" for s in stamps))
    return ph


def test_cholec80_clips_one_row_per_phase_interval(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("cholec80")
    lengths = {"video02": 2290, "video01": 2260}  # > 90 s at 25 fps: every interval holds a 1 fps frame
    truth = {v: _place(raw, v, n, rng) for v, n in lengths.items()}
    data = packaged("cholec80")
    data["sources"][0]["globs"] = [{"pattern": g["pattern"], "count": 2} for g in data["sources"][0]["globs"]]
    data.pop("expect")  # CLIMB's 7,200 clips are for the 80 videos
    data["output"] = {"format": "parquet"}  # the clips differ in length; parquet keeps each row's shape
    rows, manifest = build(rewritten(tmp_path, data, hook_from="cholec80"), settings)
    assert len(rows) == 180
    random.seed(0)
    train = set(random.sample(sorted(lengths), int(0.8 * len(lengths))))
    for r in rows:
        video, n = r["id"].split("#")
        i, total = int(n), lengths[video]
        size = total // 90
        first, last = i * size, ((i + 1) * size if i != 89 else total) - 1
        assert r["clip_frames"] == [first, last]
        assert r["split"] == ("train" if video in train else "valid")
        assert set(r["labels"]) == set(truth[video][first : last + 1])
        kept = [k for k in range(first, last + 1) if k % 25 == 0]  # 1 fps of 25 fps
        shape = r["video_shape"]
        assert shape == [len(kept), 24, 32, 3]
        frames = np.asarray(r["video"], dtype=np.uint8).reshape(shape)
        assert np.allclose(frames.reshape(len(kept), -1).mean(axis=1), [_shade(k) for k in kept], atol=4)
        intervals = json.loads(r["phase_intervals"])
        assert len(intervals) == 90 and set(intervals[i]["labels"]) == set(r["labels"])
    assert sum(manifest["splits"].values()) == 180


def test_a_clip_without_a_kept_frame_is_an_item_error() -> None:
    sample = Sample(id="video01", inputs={}, fields={"r": "[[0, 10], [11, 20]]"})
    sample.arrays["video"] = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    sample.meta.update(frame_indices=[0], fps=1.0)
    with pytest.raises(ItemError, match=r"clip 1 \(source frames 11-20\) holds no kept frame"):
        clips(sample, ClipsParams(ranges_field="r"))
