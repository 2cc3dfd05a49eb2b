"""Video steps (ultrasound, endoscopy, CT-as-video): decode AVI/MP4 with OpenCV, sample frames, resize, and
render a CT volume as frames the way CLIMB's `nifti_to_video` did.

Storage convention: `sample.arrays["video"]` is uint8 shaped (frames, height, width) for gray or
(frames, height, width, 3) for RGB (channels in R, G, B order, not OpenCV's BGR). Meta: `fps` (of the frames
kept), `source_fps`, `frame_count`, `source_frame_count`, `duration` (seconds of source), `frame_indices`
(which source frames were kept, 0-based) and `color` ("gray" or "rgb").

Frames are decoded in order with grab()/retrieve() (no seeking, which is imprecise in many containers) and
only the sampled ones are converted and kept, so memory is frames kept x frame size. A container whose
frame count is wrong is handled: the whole stream is decoded once, and if it holds fewer frames than the
container said the item fails (truncated file) unless `allow_short` is set, in which case the sampling is
planned again on the real count.

`video.clips` groups the decoded frames into clips by source frame ranges from a kept column, for
`rows.explode` with `bounds` (one row per clip, clips of different lengths).

CLIMB: no video module sampled or resized frames (EchoNet decodes every frame to RGB); CT volumes became
MP4 at fps 10, one frame per slice, window 700/80 (centre 80), CLAHE clip 1.5 on 8x8 tiles
(`video.from_volume`).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps._pixels import cv_interpolation
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.volume import WindowChoice, clahe_frames, window_params, window_uint8

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import cv2
else:
    cv2 = lazy("cv2")

# --------------------------------------------------------------------------------------------- helpers


def uniform_indices(n: int, frames: int) -> list[int]:
    """`frames` indices spread evenly over 0..n-1, first and last included (repeats when frames > n)."""
    if frames == 1:
        return [(n - 1) // 2]
    return [int(v) for v in np.round(np.linspace(0, n - 1, frames)).astype(int)]


def fps_indices(n: int, source_fps: float, target_fps: float) -> list[int]:
    """Source frame shown at each output time k / target_fps, for every time inside the video."""
    count = max(1, math.ceil(n * target_fps / source_fps - 1e-9))
    out = [int(math.floor(k * source_fps / target_fps + 1e-9)) for k in range(count)]
    return [i for i in out if i < n]


def _plan(p: ReadParams, n: int, source_fps: float, where: str) -> list[int]:
    if p.frames is not None:
        return uniform_indices(n, p.frames)
    if p.fps is not None:
        if not source_fps > 0:
            raise ItemError(f"{where}: the container gives no frame rate; sample by frames instead of fps")
        return fps_indices(n, source_fps, p.fps)
    return list(range(n))


# ---------------------------------------------------------------------------------------------- read


class ReadParams(StepParams):
    input: str = Field("video", description="sample input holding the video file (AVI, MP4, ...)")
    frames: int | None = Field(
        None,
        ge=1,
        description="keep this many frames spread uniformly, first and last included (a shorter "
        "video repeats frames)",
    )
    fps: float | None = Field(None, gt=0, description="keep frames at this rate (instead of frames)")
    color: Literal["rgb", "gray"] = Field(
        "rgb", description="rgb: (n, H, W, 3) in R, G, B order; gray: (n, H, W)"
    )
    max_bytes: int = Field(
        2 * 1024**3, gt=0, description="refuse an item whose kept frames would take more memory than this"
    )
    allow_short: bool = Field(
        False, description="accept a stream with fewer frames than its container says (else: item error)"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> ReadParams:
        if self.frames is not None and self.fps is not None:
            raise ValueError("give frames or fps, not both")
        return self


@step("video.read", ReadParams)
def read(sample: Sample, p: ReadParams) -> Sample:
    """Decode a video with OpenCV into `video`, all frames or N uniform / a target fps; gray or RGB."""
    path = sample.input(p.input)
    with item_errors(f"{path.name}: cannot decode the video"):
        return _read(sample, p, path)


def _open(path: Path) -> cv2.VideoCapture:
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        raise ItemError(f"{path.name}: OpenCV/FFmpeg cannot open it (corrupt, truncated or unknown codec)")
    return cap


def _decode(path: Path, keep: list[int], color: str) -> tuple[dict[int, np.ndarray], int]:
    """Decode the whole stream in order; return the kept frames by index and the number of frames decoded."""
    wanted = set(keep)
    got: dict[int, np.ndarray] = {}
    cap = _open(path)
    try:
        i = 0
        while cap.grab():
            if i in wanted:
                ok, frame = cap.retrieve()
                if not ok or frame is None:
                    raise ItemError(f"{path.name}: frame {i} cannot be decoded")
                if color == "gray":
                    frame = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
                else:
                    frame = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB) if frame.ndim == 2 else frame[..., ::-1]
                got[i] = np.ascontiguousarray(frame)
            i += 1
        return got, i
    finally:
        cap.release()


def _read(sample: Sample, p: ReadParams, path: Path) -> Sample:
    if not path.is_file():
        raise ItemError(f"{path.name}: file not found")
    cap = _open(path)
    try:
        reported = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        source_fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        width = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if not math.isfinite(source_fps) or source_fps < 0:
        source_fps = 0.0
    if reported <= 0:
        reported = 0
    channels = 1 if p.color == "gray" else 3

    def affordable(keep: list[int]) -> list[int]:
        need = len(keep) * width * height * channels
        if need > p.max_bytes:
            raise ItemError(
                f"{path.name}: {len(keep)} frames of {width}x{height} need {need / 2**20:.0f} MiB, over "
                "max_bytes; sample fewer frames (frames or fps)"
            )
        return keep

    keep = affordable(_plan(p, reported, source_fps, path.name) if reported else [])
    got, decoded = _decode(path, keep, p.color)
    if decoded == 0:
        raise ItemError(f"{path.name}: no frame could be decoded")
    if decoded != reported:
        if decoded < reported and not p.allow_short:
            raise ItemError(
                f"{path.name}: decoded {decoded} frames but the container says {reported} "
                "(truncated or corrupt?)"
            )
        keep = affordable(_plan(p, decoded, source_fps, path.name))
        if not set(keep) <= set(got):
            got, decoded = _decode(path, keep, p.color)
    frames = np.stack([got[i] for i in keep])
    duration = decoded / source_fps if source_fps > 0 else 0.0
    if p.fps is not None:
        fps = float(p.fps)
    elif p.frames is not None:
        fps = len(keep) / duration if duration > 0 else 0.0
    else:
        fps = source_fps
    sample.arrays["video"] = frames
    sample.meta.update(
        fps=fps,
        source_fps=source_fps,
        frame_count=len(keep),
        source_frame_count=decoded,
        duration=duration,
        frame_indices=keep,
        color=p.color,
    )
    if path not in sample.sources:
        sample.sources.append(path)
    return sample


# --------------------------------------------------------------------------------------------- clips


class ClipsParams(StepParams):
    ranges_field: str = Field(
        description="kept index column: a JSON list of [first, last] source frame numbers (inclusive), one "
        "per clip (Cholec80: written by its hook from the 90 phase intervals)"
    )


@step("video.clips", ClipsParams)
def clips(sample: Sample, p: ClipsParams) -> Sample:
    """Group the decoded frames into clips by source frame ranges: `clip_bounds` ([start, stop) into
    `video`, for rows.explode's `bounds`) and `clip_frames` (each clip's source range)."""
    import json

    sample.array("video")
    kept = sample.meta.get("frame_indices")
    if not isinstance(kept, list):
        raise ItemError("video.clips: no frame_indices; read the video with video.read first")
    try:
        ranges = [(int(a), int(b)) for a, b in json.loads(sample.fields[p.ranges_field])]
    except KeyError:
        raise ItemError(f"video.clips: no kept column {p.ranges_field!r} (add it to index.keep)") from None
    except (ValueError, TypeError):
        raise ItemError(f"video.clips: {p.ranges_field} is not a JSON list of [first, last] pairs") from None
    if not ranges:
        raise ItemError(f"video.clips: {p.ranges_field} lists no clip")
    positions = np.asarray(kept, dtype=np.int64)
    bounds = []
    for n, (first, last) in enumerate(ranges):
        a = int(np.searchsorted(positions, first, side="left"))
        b = int(np.searchsorted(positions, last, side="right"))
        if b <= a:
            raise ItemError(
                f"video.clips: clip {n} (source frames {first}-{last}) holds no kept frame at "
                f"{sample.meta.get('fps', 0):g} fps; keep more frames (fps) or check the ranges"
            )
        bounds.append([a, b])
    sample.meta.update(clip_bounds=bounds, clip_frames=[[a, b] for a, b in ranges])
    return sample


# -------------------------------------------------------------------------------------------- resize


class ResizeParams(StepParams):
    size: list[int] | None = Field(
        None, min_length=2, max_length=2, description="exact [height, width] (aspect not kept)"
    )
    long_side: int | None = Field(None, ge=1, description="scale so the longer side is this, aspect kept")
    pad_square: bool = Field(False, description="with long_side: zero-pad (centred) to long_side x long_side")
    interpolation: Literal["area", "linear", "cubic", "nearest"] = Field(
        "area", description="OpenCV interpolation (area suits shrinking)"
    )

    @model_validator(mode="after")
    def _one_rule(self) -> ResizeParams:
        if (self.size is None) == (self.long_side is None):
            raise ValueError("give exactly one of size or long_side")
        if self.pad_square and self.long_side is None:
            raise ValueError("pad_square goes with long_side")
        return self

    @field_validator("size")
    @classmethod
    def _positive(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and any(n < 1 for n in v):
            raise ValueError("sizes must be >= 1")
        return v


@step("video.resize", ResizeParams)
def resize(sample: Sample, p: ResizeParams) -> Sample:
    """Resize every frame to [height, width], or long side N keeping aspect (optionally padded to square)."""
    video = sample.array("video")
    if video.ndim not in (3, 4):
        raise ItemError(f"video is {video.shape}; (frames, H, W[, 3]) expected")
    h, w = video.shape[1:3]
    if p.size is not None:
        th, tw = p.size
    else:
        assert p.long_side is not None
        scale = p.long_side / max(h, w)
        th, tw = max(1, round(h * scale)), max(1, round(w * scale))
    out = np.empty((video.shape[0], th, tw, *video.shape[3:]), dtype=video.dtype)
    if (th, tw) == (h, w):
        out[:] = video
    else:
        for i in range(video.shape[0]):
            out[i] = cv2.resize(video[i], (tw, th), interpolation=cv_interpolation(p.interpolation))
    if p.pad_square:
        assert p.long_side is not None
        n = p.long_side
        square = np.zeros((video.shape[0], n, n, *video.shape[3:]), dtype=video.dtype)
        top, left = (n - th) // 2, (n - tw) // 2
        square[:, top : top + th, left : left + tw] = out
        out = square
        sample.meta["pad_offset"] = [top, left]
    sample.arrays["video"] = out
    return sample


# --------------------------------------------------------------------------------------- from_volume


class FromVolumeParams(WindowChoice):
    preset: Literal["pe", "lung", "ctpa", "brain", "bone"] | None = Field(
        None,
        description="named window; without preset, center and width: ctpa (centre 80, width 700, CLIMB's "
        "nifti_to_video)",
    )
    clahe: bool = Field(True, description="CLAHE on every frame (CLIMB: yes)")
    clip_limit: float = Field(1.5, gt=0, description="CLAHE clip limit (CLIMB: 1.5)")
    tiles: list[int] = Field([8, 8], min_length=2, max_length=2, description="CLAHE tile grid [rows, cols]")
    along: Literal["z", "y", "x"] = Field(
        "z",
        description="array axis the frames follow: z gives the stored slices as (y, x) frames (axial after "
        "volume.reorient); CLIMB took nibabel's array axis 0, which is x here (along x, transpose true, no "
        "volume.reorient reproduce it exactly)",
    )
    transpose: bool = Field(False, description="swap each frame's rows and columns")
    channels: Literal[1, 3] = Field(
        1, description="1: gray (n, H, W); 3: gray copied to RGB (CLIMB wrote BGR)"
    )
    fps: float = Field(10.0, gt=0, description="frame rate recorded in meta (CLIMB: 10, one frame per slice)")
    keep_volume: bool = Field(False, description="keep the `volume` array too (doubles the row size)")
    array: str = Field("volume", description="volume array to render (HU, stored (z, y, x))")

    @model_validator(mode="after")
    def _one_window(self) -> FromVolumeParams:  # replaces WindowChoice's: no choice at all means ctpa
        explicit = self.center is not None or self.width is not None
        if self.preset is not None and explicit:
            raise ValueError("give either preset or center+width, not both")
        if explicit and (self.center is None or self.width is None):
            raise ValueError("give both center and width")
        return self


@step("video.from_volume", FromVolumeParams)
def from_volume(sample: Sample, p: FromVolumeParams) -> Sample:
    """CLIMB's CTPA-to-video: window (ctpa 80/700) to uint8, CLAHE 1.5 on 8x8 tiles, one frame per slice."""
    vol = sample.array(p.array)
    if vol.ndim != 3:
        raise ItemError(f"array {p.array!r} is {vol.shape}; a (z, y, x) volume is expected")
    preset = p.preset if p.preset is not None or p.center is not None else "ctpa"
    name, center, width = window_params(preset, p.center, p.width)
    axis = "zyx".index(p.along)
    frames = np.moveaxis(vol, axis, 0)
    if p.transpose:
        frames = frames.transpose(0, 2, 1)
    frames = window_uint8(np.ascontiguousarray(frames), center, width)
    if p.clahe:
        frames = clahe_frames(frames, p.clip_limit, (p.tiles[0], p.tiles[1]))
    if p.channels == 3:
        frames = np.repeat(frames[..., None], 3, axis=3)
    if not p.keep_volume:
        del sample.arrays[p.array]
    sample.arrays["video"] = np.ascontiguousarray(frames)
    n = int(frames.shape[0])
    sample.meta.update(
        fps=float(p.fps),
        frame_count=n,
        frame_axis=p.along,
        window_preset=name,
        window_center=center,
        window_width=width,
        clahe_clip_limit=float(p.clip_limit) if p.clahe else 0.0,
        color="gray" if p.channels == 1 else "rgb",
    )
    return sample
