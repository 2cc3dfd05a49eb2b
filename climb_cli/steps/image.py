"""2D image steps: read JPEG/PNG/TIFF/BMP, gray/RGB, resize keeping the aspect, pad to a square, CLAHE,
value scaling and per-image statistics. They also work on DICOM-decoded arrays and on frame stacks.

Arrays: (H,W) gray, (H,W,C) colour in RGB order, (F,H,W[,C]) frame stacks; the `channels` metadata written
by the readers tells a gray stack from a colour image. Every step takes `array` (default `image`); the
metadata of another array name is prefixed `<array>_`. Geometry stays in step: image.resize rescales
`pixel_spacing` when it is present, image.pad_square records `padding` [top, bottom, left, right].

CLIMB's 2D protocol (../shared/reference/climb-datasets.md, "Std 2D transform"): torchvision
Resize(223, max_size=224) -> ToTensor -> Normalize(mean, std) -> zero pad to 224x224, centring the image
on its short side, with a 223x223 result padded 1 px on the left and top. As steps:

    - image.resize: {short_side: 223, max_size: 224}
    - image.pad_square: {size: 224, align: climb}
    - image.stats: {}            # per-image mean/std; the dataset's mean/std follow from them

CLIMB padded *after* Normalize, so its pad value was the dataset mean (0 after normalisation); here the
pad amounts are kept in `padding` so a loader can fill them with the mean, and image.stats leaves them out.
Normalisation itself is not baked in: per-dataset mean/std are computed from image.stats' columns.
Other CLIMB sizes: Resize((224, 224)) without aspect (ChestX-ray8, brain tumour MRI, BCSS, DRIVE) is
image.resize {size: [224, 224]}; Jichi's Resize(224) is {short_side: 224}; CLAHE clip 1.5, tiles 8x8
(RSPECT, CT-to-video) is image.clahe's default; Brixia used clip 3.0 then image.convert_scale_abs
{alpha: 1.2, beta: 30}. Resampling uses OpenCV, so values can differ from PIL's by a grey level or so.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps import _pixels
from climb_cli.steps._pixels import Interpolation, PadAlign, meta_key
from climb_cli.steps.base import Sample, StepParams, step, why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import cv2
else:
    cv2 = lazy("cv2")

_GRAY_PI = "MONOCHROME2"


def _why(exc: BaseException) -> str:
    return why(exc, limit=200)


def _channels(sample: Sample, array: str) -> int | None:
    value = sample.meta.get(meta_key(array, "channels"))
    return int(value) if value is not None else None


def _layout(sample: Sample, array: str, x: np.ndarray) -> tuple[bool, bool]:
    try:
        return _pixels.layout(x, _channels(sample, array))
    except ValueError as exc:
        raise ItemError(f"array {array!r}: {exc}") from None


# ---------------------------------------------------------------------------------------------- read


class ReadParams(StepParams):
    input: str = Field("image", description="sample input holding the image file (JPEG, PNG, TIFF, BMP, ...)")
    array: str = Field(
        "image", description="array to write; metadata keys of another array name are prefixed '<array>_'"
    )
    mode: Literal["gray", "rgb", "keep"] = Field(
        "keep",
        description="gray: one channel (BT.601 luma, as PIL 'L'); rgb: three channels (alpha dropped); "
        "keep: as stored (gray stays 2-D, colour becomes RGB/RGBA)",
    )


@step("image.read", ReadParams)
def read(sample: Sample, p: ReadParams) -> Sample:
    """Decode an image file with OpenCV (8/16-bit kept, RGB order, EXIF orientation not applied)."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: file not found")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise ItemError(f"{path.name}: unreadable ({_why(exc)})") from None
    if data.size == 0:
        raise ItemError(f"{path.name}: empty file")
    try:
        img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise ItemError(f"{path.name}: OpenCV cannot decode it ({_why(exc)})") from None
    if img is None or img.size == 0:
        raise ItemError(f"{path.name}: not a decodable image ({data.size} bytes; OpenCV could not read it)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        code = {3: cv2.COLOR_BGR2RGB, 4: cv2.COLOR_BGRA2RGBA}.get(img.shape[2])
        if code is None:
            raise ItemError(f"{path.name}: unsupported channel count {img.shape[2]}")
        img = cv2.cvtColor(img, code)
    original = [int(img.shape[0]), int(img.shape[1])]
    if p.mode == "gray":
        img = _pixels.to_gray(img)
    elif p.mode == "rgb":
        img = _pixels.to_rgb(img)
    channels = 1 if img.ndim == 2 else int(img.shape[2])
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    sample.arrays[p.array] = np.ascontiguousarray(img)
    sample.meta.update({k("channels"): channels, k("original_shape"): original})
    if path not in sample.sources:
        sample.sources.append(path)
    return sample


# --------------------------------------------------------------------------------------------- colour


class ColorParams(StepParams):
    array: str = Field("image", description="array to convert")
    mode: Literal["gray", "rgb"] = Field(
        description="gray: BT.601 luma (PIL 'L'); rgb: gray repeated three times, alpha dropped"
    )


@step("image.color", ColorParams)
def color(sample: Sample, p: ColorParams) -> Sample:
    """Convert to gray (BT.601 luma) or RGB; works on images and frame stacks."""
    x = sample.array(p.array)
    channels = _channels(sample, p.array)
    _layout(sample, p.array, x)
    out = _pixels.to_gray(x, channels) if p.mode == "gray" else _pixels.to_rgb(x, channels)
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    sample.arrays[p.array] = out
    sample.meta[k("channels")] = 1 if p.mode == "gray" else 3
    if k("photometric_interpretation") in sample.meta:
        sample.meta[k("photometric_interpretation")] = _GRAY_PI if p.mode == "gray" else "RGB"
    return sample


# --------------------------------------------------------------------------------------------- resize


class ResizeParams(StepParams):
    array: str = Field("image", description="array to resize (every frame of a stack)")
    long_side: int | None = Field(
        None, ge=1, description="long side becomes this; aspect kept (short side rounded)"
    )
    short_side: int | None = Field(
        None,
        ge=1,
        description="torchvision Resize(short_side, max_size): short side becomes this, aspect kept, "
        "truncated as torchvision does (CLIMB's Std 2D transform: 223 with max_size 224)",
    )
    max_size: int | None = Field(None, ge=1, description="with short_side: cap on the long side")
    size: list[int] | None = Field(
        None, description="[height, width] exactly, aspect not kept (CLIMB's Resize((224, 224)))"
    )
    interpolation: Interpolation = Field(
        "auto", description="auto: INTER_AREA when shrinking, INTER_LINEAR when enlarging; or a fixed one"
    )
    upscale: bool = Field(
        True, description="false: images already within the target size are left as they are"
    )

    @field_validator("size")
    @classmethod
    def _two(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 2 or min(v) < 1):
            raise ValueError("size must be [height, width] with both >= 1")
        return v

    @model_validator(mode="after")
    def _one_rule(self) -> ResizeParams:
        given = [n for n in ("long_side", "short_side", "size") if getattr(self, n) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of long_side, short_side or size")
        if self.max_size is not None:
            if self.short_side is None:
                raise ValueError("max_size goes with short_side")
            if self.max_size <= self.short_side:
                raise ValueError("max_size must be larger than short_side")
        return self


def _target(p: ResizeParams, h: int, w: int) -> tuple[int, int]:
    if p.size is not None:
        return p.size[0], p.size[1]
    if p.long_side is not None:
        return _pixels.long_side_size(h, w, p.long_side)
    return _pixels.torchvision_size(h, w, int(p.short_side), p.max_size)  # type: ignore[arg-type]


@step("image.resize", ResizeParams)
def resize(sample: Sample, p: ResizeParams) -> Sample:
    """Resize (long side N / torchvision short side / exact size), INTER_AREA down; pixel_spacing follows."""
    x = sample.array(p.array)
    channels = _channels(sample, p.array)
    _layout(sample, p.array, x)
    h, w = _pixels.hw(x, channels)
    new_h, new_w = _target(p, h, w)
    if not p.upscale and (new_h > h or new_w > w):
        new_h, new_w = h, w
    try:
        out = _pixels.resize(x, (new_h, new_w), p.interpolation, channels)
    except (ValueError, cv2.error) as exc:
        raise ItemError(f"image.resize: cannot resize {h}x{w} to {new_h}x{new_w} ({_why(exc)})") from None
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    sy, sx = new_h / h, new_w / w
    sample.arrays[p.array] = out
    sample.meta[k("resize_scale")] = [float(sy), float(sx)]
    spacing = sample.meta.get(k("pixel_spacing"))
    if isinstance(spacing, list | tuple) and len(spacing) == 2:
        sample.meta[k("pixel_spacing")] = [float(spacing[0]) / sy, float(spacing[1]) / sx]
    padding = sample.meta.get(k("padding"))
    if isinstance(padding, list | tuple) and len(padding) == 4:  # padded earlier: the pad is resized too
        t, b, left, right = padding
        sample.meta[k("padding")] = [round(t * sy), round(b * sy), round(left * sx), round(right * sx)]
    return sample


# ------------------------------------------------------------------------------------------ pad_square


class PadSquareParams(StepParams):
    array: str = Field("image", description="array to pad (every frame of a stack)")
    size: int | None = Field(None, ge=1, description="side of the square; default the image's long side")
    align: PadAlign = Field(
        "center",
        description="center: odd pixel after; climb: as center but a square image gets the whole gap "
        "top/left (CLIMB's 223->224 case); start: pad bottom/right; end: pad top/left",
    )
    value: float = Field(0.0, description="pad value (CLIMB padded normalised images, i.e. with the mean)")


@step("image.pad_square", PadSquareParams)
def pad_square(sample: Sample, p: PadSquareParams) -> Sample:
    """Pad to a square (CLIMB's 224 protocol: align climb); meta 'padding' = [top, bottom, left, right]."""
    x = sample.array(p.array)
    channels = _channels(sample, p.array)
    _layout(sample, p.array, x)
    h, w = _pixels.hw(x, channels)
    side = p.size if p.size is not None else max(h, w)
    try:
        amounts = _pixels.pad_amounts(h, w, side, side, p.align)
        out = _pixels.pad(x, amounts, p.value, channels)
    except ValueError as exc:
        raise ItemError(f"image.pad_square: {exc}") from None
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    previous = sample.meta.get(k("padding")) or [0, 0, 0, 0]
    sample.arrays[p.array] = out
    sample.meta[k("padding")] = [int(a) + int(b) for a, b in zip(amounts, previous, strict=True)]
    return sample


# ---------------------------------------------------------------------------------------------- clahe


class ClaheParams(StepParams):
    array: str = Field("image", description="array to equalise (uint8 or uint16)")
    clip_limit: float = Field(
        1.5, gt=0, description="contrast limit (CLIMB: 1.5 for CT slices, 3.0 for Brixia)"
    )
    tile_grid: list[int] = Field([8, 8], description="[rows, columns] of tiles (CLIMB: 8x8)")
    colour: Literal["lab", "per_channel"] = Field(
        "lab", description="colour images: equalise the L of CIE Lab (uint8) or each channel"
    )

    @field_validator("tile_grid")
    @classmethod
    def _grid(cls, v: list[int]) -> list[int]:
        if len(v) != 2 or min(v) < 1:
            raise ValueError("tile_grid must be [rows, columns] with both >= 1")
        return v


@step("image.clahe", ClaheParams)
def clahe(sample: Sample, p: ClaheParams) -> Sample:
    """CLAHE (OpenCV) on uint8/uint16 images or frames; CLIMB's default clip 1.5, 8x8 tiles."""
    x = sample.array(p.array)
    channels = _channels(sample, p.array)
    _layout(sample, p.array, x)
    if x.dtype not in (np.uint8, np.uint16):
        raise ItemError(
            f"image.clahe needs uint8 or uint16 pixels, {p.array!r} is {x.dtype}; put image.to_dtype "
            "(or dicom.window with output uint8) before it"
        )
    try:
        out = _pixels.clahe(x, p.clip_limit, (p.tile_grid[0], p.tile_grid[1]), channels, p.colour)
    except (ValueError, cv2.error) as exc:
        raise ItemError(f"image.clahe: {_why(exc)}") from None
    sample.arrays[p.array] = out
    return sample


# -------------------------------------------------------------------------------------------- to_dtype


class ToDtypeParams(StepParams):
    array: str = Field("image", description="array to convert")
    dtype: Literal["uint8", "uint16", "float32"] = Field(description="stored dtype")
    scale: Literal["auto", "minmax", "max", "none"] = Field(
        "auto",
        description="auto: nominal range to full range (floats are [0,1], integers their dtype's range); "
        "minmax: (x-min)/(max-min); max: max(x,0)/max (CLIMB's get_pixel_array); none: cast, clipped",
    )
    rounding: Literal["nearest", "floor"] = Field(
        "nearest", description="to integers: round to nearest, or floor (numpy's cast, as CLIMB's uint8 cast)"
    )


_TOP = {"uint8": 255.0, "uint16": 65535.0, "float32": 1.0}


@step("image.to_dtype", ToDtypeParams)
def to_dtype(sample: Sample, p: ToDtypeParams) -> Sample:
    """Scale and cast (uint8/uint16/float32); meta 'value_range' = inputs mapped to 0 and to full scale."""
    x = sample.array(p.array)
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    top = _TOP[p.dtype]
    if x.size == 0:
        raise ItemError(f"image.to_dtype: {p.array!r} is empty")
    if p.scale == "none":
        lo, hi = 0.0, top
    elif p.scale == "minmax":
        lo, hi = float(np.min(x)), float(np.max(x))
    elif p.scale == "max":
        lo, hi = 0.0, float(np.max(x))
    else:
        lo, hi = _auto_range(x, p.array)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        raise ItemError(f"image.to_dtype: {p.array!r} has NaN or infinite values")
    if p.scale == "none":
        y = x.astype(np.float64)
        if p.dtype != "float32":
            y = np.rint(y) if p.rounding == "nearest" else np.floor(y)
            y = np.clip(y, 0, top)
        out = y.astype(p.dtype)
    elif x.dtype.kind == "f" and (lo, hi) == (0.0, 1.0):  # already [0, 1] (checked by _auto_range)
        out = _pixels.unit_to_dtype(x, p.dtype, p.rounding)
    elif p.scale == "max" and hi > 0 and p.dtype != "float32":
        # CLIMB's get_pixel_array exactly: float64 max(x, 0) / max * top, then the cast (a float32
        # reciprocal product floors some values one grey level off)
        z = np.maximum(x.astype(np.float64), 0.0) / hi * top
        z = np.rint(z) if p.rounding == "nearest" else np.floor(z)
        out = np.clip(z, 0, top).astype(p.dtype)
    else:
        span = hi - lo
        if span > 0:
            unit = (x.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / span)
        else:
            unit = np.zeros(x.shape, np.float32)
        if p.scale == "max":
            np.maximum(unit, 0, out=unit)
        np.clip(unit, 0, 1, out=unit)
        out = _pixels.unit_to_dtype(unit, p.dtype, p.rounding)
    sample.arrays[p.array] = out
    sample.meta[k("value_range")] = [float(lo), float(hi)]
    return sample


def _auto_range(x: np.ndarray, array: str) -> tuple[float, float]:
    if x.dtype.kind == "f":
        lo, hi = float(np.min(x)), float(np.max(x))
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ItemError(
                f"image.to_dtype: {array!r} has values in [{lo:g}, {hi:g}], not [0, 1]; use scale minmax, "
                "or a window first"
            )
        return 0.0, 1.0
    if x.dtype.kind == "u" or x.dtype == np.bool_:
        return _pixels.nominal_range(x) if x.dtype != np.bool_ else (0.0, 1.0)
    raise ItemError(f"image.to_dtype: scale auto does not apply to signed {x.dtype} pixels; use scale minmax")


# ------------------------------------------------------------------------------------ convert_scale_abs


class ConvertScaleAbsParams(StepParams):
    array: str = Field("image", description="array to adjust")
    alpha: float = Field(1.0, description="gain")
    beta: float = Field(0.0, description="offset added after the gain")


@step("image.convert_scale_abs", ConvertScaleAbsParams)
def convert_scale_abs(sample: Sample, p: ConvertScaleAbsParams) -> Sample:
    """uint8(|alpha*x + beta|), saturated: OpenCV convertScaleAbs (Brixia: alpha 1.2, beta 30)."""
    x = sample.array(p.array)
    try:
        sample.arrays[p.array] = cv2.convertScaleAbs(np.ascontiguousarray(x), alpha=p.alpha, beta=p.beta)
    except cv2.error as exc:
        raise ItemError(f"image.convert_scale_abs: {_why(exc)}") from None
    return sample


# ---------------------------------------------------------------------------------------------- stats


class StatsParams(StepParams):
    array: str = Field("image", description="array to measure")
    scale: Literal["auto", "none"] = Field(
        "auto",
        description="auto: integers divided by their dtype's maximum (uint8 /255: torchvision ToTensor "
        "units, as CLIMB's mean/std tables); none: raw values",
    )
    exclude_padding: bool = Field(True, description="leave out the pixels image.pad_square added")


@step("image.stats", StatsParams)
def stats(sample: Sample, p: StatsParams) -> Sample:
    """Record per-channel pixel_mean, pixel_std, pixel_count (dataset mean/std follow from them)."""
    x = sample.array(p.array)
    channels = _channels(sample, p.array)
    _layout(sample, p.array, x)
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    padding = sample.meta.get(k("padding")) if p.exclude_padding else None
    region = tuple(int(v) for v in padding) if padding else None
    try:
        mean, std, n = _pixels.channel_stats(x, channels, region)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ItemError(f"image.stats: {exc}") from None
    divisor = 1.0
    if p.scale == "auto" and x.dtype.kind in "u":
        divisor = float(np.iinfo(x.dtype).max)
    sample.meta.update(
        {
            k("pixel_mean"): [m / divisor for m in mean],
            k("pixel_std"): [s / divisor for s in std],
            k("pixel_count"): int(n),
        }
    )
    return sample
