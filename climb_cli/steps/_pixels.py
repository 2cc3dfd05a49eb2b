"""Pure numpy/OpenCV helpers for pixel arrays: windowing, value scaling, resizing, padding, CLAHE, statistics.

Shared by the DICOM and 2D image steps (and usable for video frames and volume slices). Nothing here knows
about Samples or DICOM datasets. Arrays are laid out as

    (H, W)          one gray image            (H, W, C)      one colour image (C = 3 RGB, 4 RGBA)
    (F, H, W)       a stack of gray frames    (F, H, W, C)   a stack of colour frames

and `channels` (1 for gray) tells a (F, H, W) stack from an (H, W, C) image. Invalid arguments raise
ValueError with a one-line message; steps turn it into an ItemError.

Window arithmetic (centre c, width w, output in [0, 1]):
  linear_exact  y = clip((x - (c - w/2)) / w, 0, 1): DICOM's LINEAR_EXACT, and exactly CLIMB's
                `windowing()` (c +- w//2) and `apply_window_level` for the even integer widths CLIMB used.
  linear        DICOM's default LINEAR function (PS3.3 C.11.2.1.2.1):
                y = clip((x - (c - 0.5)) / (w - 1) + 0.5, 0, 1)
  sigmoid       DICOM's SIGMOID: y = 1 / (1 + exp(-4 (x - c) / w))
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from climb_cli.lazy import lazy

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import cv2
else:
    cv2 = lazy("cv2")

WindowFunction = Literal["linear", "linear_exact", "sigmoid"]
Interpolation = Literal["auto", "area", "linear", "cubic", "nearest", "lanczos"]
PadAlign = Literal["center", "climb", "start", "end"]
OutputDtype = Literal["float32", "uint8", "uint16"]

_CV_INTERP = {  # names, not values: OpenCV is imported only when a step first resizes
    "area": "INTER_AREA",
    "linear": "INTER_LINEAR",
    "cubic": "INTER_CUBIC",
    "nearest": "INTER_NEAREST",
    "lanczos": "INTER_LANCZOS4",
}


def cv_interpolation(name: str) -> int:
    """OpenCV's interpolation flag for one of the names above."""
    return int(getattr(cv2, _CV_INTERP[name]))


#: dtypes cv2.resize handles natively; others go through float64 and back.
_CV_DTYPES = {np.dtype(t) for t in (np.uint8, np.uint16, np.int16, np.float32, np.float64)}
_INT_MAX = {"uint8": 255, "uint16": 65535}


# ------------------------------------------------------------------------------------------- layout


def layout(x: np.ndarray, channels: int | None = None) -> tuple[bool, bool]:
    """(is_stack, has_channels) for `x`; `channels` (from metadata) settles the ambiguous 3-D case.

    Without `channels`, a 3-D array whose last axis is 3 or 4 is taken as one colour image.
    """
    if x.ndim == 2:
        return False, False
    if x.ndim == 4:
        return True, True
    if x.ndim != 3:
        raise ValueError(f"expected an image (H,W), (H,W,C), (F,H,W) or (F,H,W,C), got shape {x.shape}")
    colour = channels > 1 if channels is not None else x.shape[-1] in (3, 4)
    return (not colour), colour


def planes(x: np.ndarray, channels: int | None = None) -> list[np.ndarray]:
    """The 2-D (or H,W,C) images of `x`: one for an image, one per frame for a stack."""
    stack, _ = layout(x, channels)
    return list(x) if stack else [x]


def from_planes(items: list[np.ndarray], stack: bool) -> np.ndarray:
    return np.stack(items) if stack else items[0]


def hw(x: np.ndarray, channels: int | None = None) -> tuple[int, int]:
    """(height, width) of an image or of each frame of a stack."""
    stack, colour = layout(x, channels)
    shape = x.shape[1:] if stack else x.shape
    return int(shape[0]), int(shape[1])


# ----------------------------------------------------------------------------------------- windows

#: named windows (centre, width), in modality units (HU for CT): CLIMB's pe, lung, ctpa ("window 700 /
#: level 80", clips to [-270, 430]) and brixia, plus the standard CT windows brain and bone. dicom.window
#: offers all of them, the volume/video steps the CT ones (all but brixia).
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "pe": (400.0, 1000.0),
    "lung": (-600.0, 1500.0),
    "ctpa": (80.0, 700.0),
    "brixia": (256.0, 512.0),
    "brain": (40.0, 80.0),
    "bone": (400.0, 1800.0),
}


def window_bounds(center: float, width: float, function: WindowFunction) -> tuple[float, float]:
    """The input values mapped to 0 and 1 (for the sigmoid: centre -+ width/2, where y is 0.12 / 0.88)."""
    if function == "linear":
        return center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    return center - width / 2, center + width / 2


def check_window(center: float, width: float, function: WindowFunction) -> None:
    if not np.isfinite(center) or not np.isfinite(width):
        raise ValueError(f"window centre/width must be finite numbers, got {center!r}/{width!r}")
    if function == "linear" and width < 1:
        raise ValueError(f"the LINEAR window function needs a width >= 1, got {width:g}")
    if width <= 0:
        raise ValueError(f"window width must be positive, got {width:g}")


def window(
    x: np.ndarray, center: float, width: float, function: WindowFunction = "linear_exact"
) -> np.ndarray:
    """Map values through a window to float32 in [0, 1] (see the module docstring for the formulas)."""
    check_window(center, width, function)
    a = np.asarray(x, dtype=np.float32)
    if function == "sigmoid":
        with np.errstate(over="ignore"):
            s = 1.0 / (1.0 + np.exp(-4.0 * (a.astype(np.float64) - center) / width))
        return s.astype(np.float32)
    if function == "linear":
        offset, span = center - 0.5 - (width - 1) / 2, width - 1
    else:
        offset, span = center - width / 2, width
    y = (a - np.float32(offset)) * np.float32(1.0 / span)
    np.clip(y, 0.0, 1.0, out=y)
    return y


def minmax_window(x: np.ndarray) -> tuple[float, float]:
    """CLIMB's fallback window when a file has none: centre (min+max)/2, width max-min (at least 1)."""
    lo, hi = float(np.min(x)), float(np.max(x))
    return (lo + hi) / 2, max(hi - lo, 1.0)


# -------------------------------------------------------------------------------------- value scale


def unit_to_dtype(
    y: np.ndarray, dtype: OutputDtype, rounding: Literal["nearest", "floor"] = "nearest"
) -> np.ndarray:
    """Values in [0, 1] as float32, or scaled to the full uint8/uint16 range (rounded, clipped)."""
    if dtype == "float32":
        return np.asarray(y, dtype=np.float32)
    top = _INT_MAX[dtype]
    z = np.asarray(y, dtype=np.float32) * np.float32(top)
    z = np.rint(z) if rounding == "nearest" else np.floor(z)
    np.clip(z, 0, top, out=z)
    return z.astype(dtype)


def nominal_range(x: np.ndarray) -> tuple[float, float]:
    """The range a value of this dtype nominally spans: [0,1] for floats, the full range for integers."""
    if x.dtype.kind == "f":
        return 0.0, 1.0
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        return float(info.min), float(info.max)
    if x.dtype == np.bool_:
        return 0.0, 1.0
    raise ValueError(f"unsupported pixel dtype {x.dtype}")


def invert(x: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """lo + hi - x, kept in the dtype of x (MONOCHROME1 -> MONOCHROME2 within the range [lo, hi])."""
    if x.dtype.kind in "iu":
        info = np.iinfo(x.dtype)
        out = (np.float64(lo) + np.float64(hi)) - x.astype(np.float64)
        return np.clip(np.rint(out), info.min, info.max).astype(x.dtype)
    return (np.asarray(lo + hi, dtype=x.dtype) - x).astype(x.dtype, copy=False)


def meta_key(array: str, name: str) -> str:
    """The metadata key of `name` for an array: plain for the default array `image`, else `<array>_<name>`."""
    return name if array == "image" else f"{array}_{name}"


# ------------------------------------------------------------------------------------------- resize


def long_side_size(h: int, w: int, n: int) -> tuple[int, int]:
    """(h', w') with max(h', w') == n and the aspect ratio kept (short side rounded, at least 1)."""
    if n < 1:
        raise ValueError(f"target size must be >= 1, got {n}")
    if h >= w:
        return n, max(1, round(w * n / h))
    return max(1, round(h * n / w)), n


def torchvision_size(h: int, w: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision `Resize(size, max_size)` on an (h, w) image: short side -> size, long side capped.

    CLIMB's "Std 2D transform" is Resize(223, max_size=224): the long side becomes 224 unless the image is
    (nearly) square, when it becomes 223x223. The truncations (int()) are torchvision's.
    """
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None:
        if max_size <= size:
            raise ValueError(f"max_size ({max_size}) must be larger than the short side size ({size})")
        if new_long > max_size:
            new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def resize(
    x: np.ndarray,
    size: tuple[int, int],
    interpolation: Interpolation = "auto",
    channels: int | None = None,
) -> np.ndarray:
    """Resize every image/frame of `x` to size (h, w). auto: INTER_AREA when shrinking, else INTER_LINEAR."""
    new_h, new_w = int(size[0]), int(size[1])
    if new_h < 1 or new_w < 1:
        raise ValueError(f"target size must be at least 1x1, got {new_h}x{new_w}")
    stack, colour = layout(x, channels)
    h, w = hw(x, channels)
    if (h, w) == (new_h, new_w):
        return x
    if interpolation == "auto":
        interpolation = "area" if new_h <= h and new_w <= w else "linear"
    flag = cv_interpolation(interpolation)
    native = x.dtype in _CV_DTYPES
    work = x if native else x.astype(np.float64)

    def one(img: np.ndarray) -> np.ndarray:
        out = cv2.resize(img, (new_w, new_h), interpolation=flag)
        if img.ndim == 3 and out.ndim == 2:  # OpenCV drops a trailing axis of length 1
            out = out[:, :, np.newaxis]
        return out

    out = from_planes([one(p) for p in (work if stack else [work])], stack)
    if not native:
        if x.dtype.kind in "iu":
            info = np.iinfo(x.dtype)
            out = np.clip(np.rint(out), info.min, info.max)
        out = out.astype(x.dtype)
    return out


# ---------------------------------------------------------------------------------------------- pad


def pad_amounts(
    h: int, w: int, out_h: int, out_w: int, align: PadAlign = "center"
) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) padding that brings (h, w) to (out_h, out_w).

    center: the odd pixel goes after (bottom/right), i.e. before = gap // 2, as CLIMB's non-square case.
    climb:  as center, except that a square image gets its whole gap on the top and left (CLIMB's 223x223
            -> 224x224 edge case in the Std 2D transform).
    start:  image at the top-left (pad bottom/right);  end: image at the bottom-right.
    """
    gap_h, gap_w = out_h - h, out_w - w
    if gap_h < 0 or gap_w < 0:
        raise ValueError(f"image {h}x{w} is larger than the padded size {out_h}x{out_w}; resize it first")
    if align == "start":
        return 0, gap_h, 0, gap_w
    if align == "end":
        return gap_h, 0, gap_w, 0
    if align == "climb" and h == w:
        return gap_h, 0, gap_w, 0
    return gap_h // 2, gap_h - gap_h // 2, gap_w // 2, gap_w - gap_w // 2


def pad(
    x: np.ndarray, amounts: tuple[int, int, int, int], value: float = 0.0, channels: int | None = None
) -> np.ndarray:
    """Pad every image/frame of `x` by (top, bottom, left, right) with a constant value."""
    top, bottom, left, right = amounts
    stack, colour = layout(x, channels)
    widths = [(top, bottom), (left, right)]
    if stack:
        widths.insert(0, (0, 0))
    if colour:
        widths.append((0, 0))
    return np.pad(x, widths, mode="constant", constant_values=np.asarray(value).astype(x.dtype))


# --------------------------------------------------------------------------------------------- CLAHE


def clahe(
    x: np.ndarray,
    clip_limit: float,
    tile_grid: tuple[int, int],
    channels: int | None = None,
    colour: Literal["lab", "per_channel"] = "lab",
) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation (cv2.createCLAHE) of every image/frame.

    uint8 or uint16 only. Colour images: `lab` equalises the L channel of CIE Lab (uint8 only),
    `per_channel` each channel separately.
    """
    if x.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"CLAHE needs uint8 or uint16 pixels, got {x.dtype}")
    stack, has_colour = layout(x, channels)
    op = cv2.createCLAHE(clipLimit=float(clip_limit), tileGridSize=(int(tile_grid[1]), int(tile_grid[0])))

    def one(img: np.ndarray) -> np.ndarray:
        if not has_colour:
            return op.apply(np.ascontiguousarray(img))
        if colour == "lab" and img.shape[-1] == 3:
            if img.dtype != np.uint8:
                raise ValueError(
                    "CLAHE on the L channel of a colour image needs uint8; use colour: per_channel"
                )
            lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB)
            lab[:, :, 0] = op.apply(np.ascontiguousarray(lab[:, :, 0]))
            return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
        return np.stack([op.apply(np.ascontiguousarray(img[:, :, c])) for c in range(img.shape[-1])], axis=-1)

    return from_planes([one(p) for p in (x if stack else [x])], stack)


# -------------------------------------------------------------------------------------------- colour


def to_gray(x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """RGB(A) -> gray with ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B, as PIL's convert("L"))."""
    stack, has_colour = layout(x, channels)
    if not has_colour:
        return x
    code = cv2.COLOR_RGBA2GRAY if x.shape[-1] == 4 else cv2.COLOR_RGB2GRAY
    work = x if x.dtype in (np.uint8, np.uint16, np.float32) else x.astype(np.float32)
    out = from_planes(
        [cv2.cvtColor(np.ascontiguousarray(p), code) for p in (work if stack else [work])], stack
    )
    return out.astype(x.dtype) if out.dtype != x.dtype else out


def to_rgb(x: np.ndarray, channels: int | None = None) -> np.ndarray:
    """Gray -> RGB by repeating the channel; RGBA -> RGB by dropping alpha (as PIL's convert("RGB"))."""
    stack, has_colour = layout(x, channels)
    if has_colour:
        return np.ascontiguousarray(x[..., :3]) if x.shape[-1] != 3 else x
    return np.repeat(x[..., np.newaxis], 3, axis=-1)


# ---------------------------------------------------------------------------------------- statistics


def channel_stats(
    x: np.ndarray, channels: int | None = None, region: tuple[int, int, int, int] | None = None
) -> tuple[list[float], list[float], int]:
    """Per-channel (mean, population std, pixel count) over every frame, in float64.

    `region` = (top, bottom, left, right) padding to leave out. A dataset's statistics follow exactly from
    the per-image ones: mean = sum(n_i m_i) / N and var = sum(n_i (s_i^2 + m_i^2)) / N - mean^2.
    """
    stack, has_colour = layout(x, channels)
    a = x if stack else x[np.newaxis]
    if region is not None:
        top, bottom, left, right = region
        a = a[:, top : a.shape[1] - bottom, left : a.shape[2] - right]
    c = a.shape[-1] if has_colour else 1
    flat = a.reshape(-1, c).astype(np.float64)
    n = int(flat.shape[0])
    if n == 0:
        raise ValueError("no pixels to measure")
    mean = flat.mean(axis=0)
    std = flat.std(axis=0)
    return [float(v) for v in mean], [float(v) for v in std], n
