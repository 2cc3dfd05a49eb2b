"""Cholec80: CLIMB's split (random.seed(0); random.sample of int(0.8 n) videos, over the sorted video
list) and its 90 annotation intervals per video with the phases and tools seen in each, as JSON; for the
clips, each phase interval's source frame range (`clip_ranges`, for video.clips) and phases
(`clip_phases`, the clip rows' labels)."""

import json
import random

import pandas as pd

INTERVALS = 90
PHASES = [
    "Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection",
    "GallbladderPackaging", "CleaningCoagulation", "GallbladderRetraction",
]  # fmt: skip
TOOLS = ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]


def _read(path):
    return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False)


def _intervals(keyed, frames=None):
    """CLIMB's Cholec.sample_intervals: sort by timestamp, cut into 90 runs (the last takes the rest);
    with `frames` ({stamp: source frame}), each run's first and last source frame too."""
    numeric = all(s.isdigit() for s in keyed)  # pandas reads a numeric column as numbers: sort as numbers
    stamps = sorted(keyed, key=int if numeric else None)
    size = len(stamps) // INTERVALS
    if size == 0:
        return None
    out = []
    for i in range(INTERVALS):
        run = stamps[i * size : (i + 1) * size if i != INTERVALS - 1 else len(stamps)]
        seen = {v for s in run for v in keyed[s]}
        entry = {"start": run[0], "end": run[-1], "labels": sorted(seen, key=(PHASES + TOOLS).index)}
        if frames is not None:
            entry["frames"] = [min(frames[s] for s in run), max(frames[s] for s in run)]
        out.append(entry)
    return out


def rows(table, ctx):
    table = table.sort_values("video", kind="stable").reset_index(drop=True)
    names = list(table["video"])
    random.seed(0)
    train = set(random.sample(names, int(0.8 * len(names))))
    table["climb_split"] = ["train" if v in train else "valid" for v in names]
    phase_col, tool_col, ranges_col, clip_col = [], [], [], []
    for v in names:
        try:
            phase = _read(ctx.raw_dir / "phase_annotations" / f"{v}-phase.txt")
            tool = _read(ctx.raw_dir / "tool_annotations" / f"{v}-tool.txt")
            stamps = _read(ctx.raw_dir / "videos" / f"{v}-timestamp.txt")["Frame"].tolist()
        except (OSError, KeyError):
            phase_col.append("")  # missing annotations: the item fails with the reason
            tool_col.append("")
            ranges_col.append("")
            clip_col.append("")
            continue
        tools_at = {
            f: [t for t in TOOLS if r[t] == "1"]
            for f, r in zip(tool["Frame"], tool.to_dict("records"), strict=True)
        }
        phases, tools, frame_of = {}, {}, {}
        for i, (frame, ph) in enumerate(zip(phase["Frame"], phase["Phase"], strict=True)):
            phases[stamps[i]] = [ph]
            frame_of[stamps[i]] = int(frame)
            if frame in tools_at:
                tools[stamps[i]] = tools_at[frame]
        p, t = _intervals(phases, frame_of), _intervals(tools)
        phase_col.append(json.dumps([{k: v for k, v in e.items() if k != "frames"} for e in p]) if p else "")
        tool_col.append(json.dumps(t) if t else "")
        ranges_col.append(json.dumps([e["frames"] for e in p]) if p else "")
        clip_col.append(json.dumps([e["labels"] for e in p]) if p else "")
    table["phase_intervals"] = phase_col
    table["tool_intervals"] = tool_col
    table["clip_ranges"] = ranges_col
    table["clip_phases"] = clip_col
    return table
