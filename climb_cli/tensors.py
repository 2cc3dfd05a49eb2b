"""CLIMB's load-time transforms: a stored row -> the float32 (C, H, W) tensor CLIMB's loaders give.

The shards keep the decoded image (uint8, original size); a recipe's `climb_tensor:` block, copied into
`manifest.json`, records how CLIMB's dataset classes turned that image into a model input at load time.
`to_climb(row, manifest)` applies it with PIL and numpy (no torch needed), reproducing torchvision's
PIL path exactly:

- `std2d` — `Resize(223, max_size=224)`: the short side to 223 unless the long side would pass 224, in
  which case the long side is 224 (torchvision's `_compute_resized_output_size`); `resize_short` —
  `Resize(size)`; `resize_square` — `Resize((size, size))`; `std2d_square` — APTOS's rule: a square
  image gets `Resize(size)` (size x size), any other the `std2d` resize; bilinear, as PIL does it;
- `ToTensor()` (/255), then `Normalize(mean, std)` when the recipe gives them;
- the zero pad CLIMB applies *after* Normalize (so the fill is the mean, not black) up to size x size:
  `center` (both axes), `width` (left/right only), `height` (top/bottom only), `fixed`, or `none`. An odd
  pad puts the extra pixel first (left / top), as CLIMB's 223 -> 224 pad does;
- `ct_window` (3-D CT windows: RadFusion, LNDb) — the stored HU window (z, y, x) clipped to
  center -/+ width // 2 and scaled to [0, 1] as CLIMB's `windowing`, returned as (1, y, x, z).

    import pyarrow.parquet as pq, json
    from climb_cli.tensors import to_climb
    manifest = json.load(open(".../manifest.json"))
    x = to_climb(pq.read_table(".../data").slice(0, 1).to_pylist()[0], manifest)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

Resize = Callable[[int, int, int], tuple[int, int]]


def _std2d(h: int, w: int, size: int) -> tuple[int, int]:
    """torchvision Resize(size - 1, max_size=size) output (h, w)."""
    return _short_side(h, w, size - 1, max_size=size)


def _short_side(h: int, w: int, size: int, max_size: int | None = None) -> tuple[int, int]:
    """torchvision's `_compute_resized_output_size` for an int size (short side), with optional max_size."""
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    if max_size is not None and new_long > max_size:
        new_short, new_long = int(max_size * new_short / new_long), max_size
    new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    return new_h, new_w


def _std2d_square(h: int, w: int, size: int) -> tuple[int, int]:
    """APTOS (fundus/aptos.py): Resize(size) for a square image, else Resize(size - 1, max_size=size)."""
    return (size, size) if h == w else _std2d(h, w, size)


RESIZES: dict[str, Resize | None] = {
    "std2d": _std2d,
    "std2d_square": _std2d_square,
    "resize_short": lambda h, w, size: _short_side(h, w, size),
    "resize_square": lambda h, w, size: (size, size),
    "none": None,
}


def row_array(row: Mapping[str, Any], name: str = "image", dtype: str | None = None) -> np.ndarray:
    """A stored array of one row (flat list column + `<name>_shape`) as an ndarray of its shape; `dtype` is
    the manifest's `arrays[name].dtype` (a row read with `to_pylist` has lost it)."""
    flat = row[name]
    shape = row.get(f"{name}_shape")
    arr = np.asarray(flat, dtype=dtype)
    return arr.reshape(shape) if shape is not None else arr


def _to_pil_image(img: np.ndarray, channels: str | None) -> Any:
    from PIL import Image

    if img.dtype != np.uint8:
        raise ValueError(f"CLIMB's loaders read 8-bit images; this array is {img.dtype} (store uint8)")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    pil = Image.fromarray(img)
    if channels is not None and pil.mode != channels:
        pil = pil.convert(channels)
    return pil


def _pad_amounts(h: int, w: int, spec: Mapping[str, Any]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) zero padding up to size x size."""
    mode, size = spec.get("pad", "center"), int(spec.get("size", 224))
    if mode == "fixed":
        left, top, right, bottom = (int(v) for v in spec["pad_fixed"])
        return left, top, right, bottom
    if mode == "none":
        return 0, 0, 0, 0
    dw = max(size - w, 0) if mode in ("center", "width") else 0
    dh = max(size - h, 0) if mode in ("center", "height") else 0
    return dw - dw // 2, dh - dh // 2, dw // 2, dh // 2


def apply(img: np.ndarray, spec: Mapping[str, Any]) -> np.ndarray:
    """CLIMB's load-time transform of one decoded uint8 image ((H, W) or (H, W, C)) -> float32 (C, H, W)."""
    from PIL import Image

    transform = spec.get("transform", "std2d")
    if transform not in RESIZES:
        raise ValueError(f"unknown climb_tensor transform {transform!r} (known: {', '.join(RESIZES)})")
    pil = _to_pil_image(np.asarray(img), spec.get("channels"))
    resize = RESIZES[transform]
    if resize is not None:
        new_h, new_w = resize(pil.height, pil.width, int(spec.get("size", 224)))
        if (new_h, new_w) != (pil.height, pil.width):
            pil = pil.resize((new_w, new_h), Image.Resampling.BILINEAR)
    x = np.asarray(pil, dtype=np.float32) / 255.0
    x = x[None] if x.ndim == 2 else np.transpose(x, (2, 0, 1))
    mean, std = spec.get("mean"), spec.get("std")
    if mean is not None and std is not None:
        m = np.asarray(mean, dtype=np.float32).reshape(-1, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(-1, 1, 1)
        if m.shape[0] not in (1, x.shape[0]):
            raise ValueError(f"mean has {m.shape[0]} values for {x.shape[0]} channel(s)")
        x = (x - m) / s
    left, top, right, bottom = _pad_amounts(x.shape[1], x.shape[2], spec)
    if left or top or right or bottom:
        x = np.pad(x, ((0, 0), (top, bottom), (left, right)))
    return np.ascontiguousarray(x, dtype=np.float32)


def ct_window(volume: np.ndarray, center: float, width: int) -> np.ndarray:
    """CLIMB's `windowing` of a 3-D loader (RSNA, RadFusion, LNDb): lower/upper = center -/+ width // 2,
    clip, (x - lower) / (upper - lower); the stored (z, y, x) window becomes CLIMB's (1, y, x, z) float32
    tensor (`permute(1, 2, 3, 0)` of the (z, 1, y, x) stack)."""
    x = np.asarray(volume, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"ct_window needs a (z, y, x) window; this array is {x.ndim}-D {x.shape}")
    lower, upper = center - width // 2, center + width // 2
    x = (np.clip(x, lower, upper) - lower) / (upper - lower)
    return np.ascontiguousarray(np.transpose(x, (1, 2, 0))[None], dtype=np.float32)


def to_climb(row: Mapping[str, Any], manifest: Mapping[str, Any]) -> np.ndarray:
    """The tensor CLIMB's loader gives for this stored row, by the manifest's `climb_tensor` block."""
    spec = manifest.get("climb_tensor")
    if not spec:
        raise ValueError(f"{manifest.get('dataset', 'this dataset')}: its manifest records no climb_tensor")
    name = spec.get("array", "image")
    dtype = (manifest.get("arrays") or {}).get(name, {}).get("dtype")
    if spec.get("transform") == "ct_window":
        return ct_window(row_array(row, name, dtype), float(spec["center"]), int(spec["width"]))
    return apply(row_array(row, name, dtype), spec)
