"""Sample thumbnails drawn from the shards: a few rows, each turned into something a person can look at.

Images (and DICOM frames) become PNGs; a volume its three orthogonal mid-slices (z drawn to scale from
the row's spacing); a video a strip of frames; an ECG / EEG / IMU signal an SVG trace of a few
channels; a connectivity matrix or graph a heat map; tables and text a few cells. Every picture is
embedded as a data: URI (PNG via OpenCV, which writes no timestamps) or inline SVG, so a page is one
file and the same rows give the same bytes. At most MAX_SAMPLES rows are read, from the start of
each split's first shard, taking the splits in turn.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

MAX_SAMPLES = 6
THUMB = 176  # longest side of a thumbnail, pixels
PLANE = 150  # longest side of each of a volume's three planes (they sit side by side)
MAX_TRACES = 3  # channels drawn per signal
TRACE_SECONDS = 10.0
VIDEO_FRAMES = 5
#: arrays in the order in which one is chosen to stand for a row
PREFERENCE = ("volume", "windows", "video", "image", "signal", "epochs", "adjacency", "matrix", "edge_index")


@dataclass
class Picture:
    alt: str
    uri: str  # data:image/png;base64,...
    width: int
    height: int


@dataclass
class Thumb:
    id: str
    split: str
    labels: list[str]
    kind: str  # image, volume, video, signal, graph, table, text; none: could not be drawn
    caption: str = ""
    pictures: list[Picture] = field(default_factory=list)
    svg: str = ""
    cells: dict[str, str] = field(default_factory=dict)  # a table / text row: column -> value


@dataclass
class Samples:
    thumbs: list[Thumb]
    total: int  # rows in the outputs
    error: str = ""  # why the shards could not be read (then thumbs holds those drawn before)


# ----------------------------------------------------------------------------------------- reading rows


def iter_rows(
    out_dir: Path, shards: list[dict[str, Any]], limit: int = MAX_SAMPLES
) -> Iterator[dict[str, Any]]:
    """The first rows of each split's first shard, the splits taken in turn, at most `limit`, read one
    row at a time (a row may be a 300 MB volume: only one is held at once)."""
    from climb_cli.report.gather import SPLIT_ORDER

    first: dict[str, str] = {}
    for s in sorted(shards, key=lambda s: s["name"]):
        if int(s.get("rows", 0)) > 0:
            first.setdefault(s["split"], s["name"])
    order = sorted(first, key=lambda sp: (SPLIT_ORDER.index(sp) if sp in SPLIT_ORDER else 99, sp))
    readers = [_read_rows(out_dir / first[sp]) for sp in order]
    given = 0
    while readers and given < limit:
        for reader in list(readers):
            row = next(reader, None)
            if row is None:
                readers.remove(reader)
                continue
            yield row
            given += 1
            if given == limit:
                break


def pick_rows(out_dir: Path, shards: list[dict[str, Any]], limit: int = MAX_SAMPLES) -> list[dict[str, Any]]:
    return list(iter_rows(out_dir, shards, limit))


def _read_rows(path: Path) -> Iterator[dict[str, Any]]:
    """A shard's rows one by one; arrays come out as numpy arrays of their shape."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=1):
        table = pa.Table.from_batches([batch])
        names = set(table.column_names)
        arrays = [c for c in table.column_names if f"{c}_shape" in names]
        for i in range(table.num_rows):
            row: dict[str, Any] = {}
            for c in table.column_names:
                if c in arrays:
                    values = table.column(c)[i].values
                    shape = table.column(f"{c}_shape")[i].as_py()
                    row[c] = None if values is None else values.to_numpy(zero_copy_only=False).reshape(shape)
                elif not c.endswith("_shape") or c.removesuffix("_shape") not in arrays:
                    row[c] = table.column(c)[i].as_py()
            yield row


# ------------------------------------------------------------------------------------------ pictures


def to_uint8(x: np.ndarray, lo: float | None = None, hi: float | None = None) -> np.ndarray:
    """Scale to 0..255 between robust limits (0.5 and 99.5 percentiles) unless already uint8."""
    if x.dtype == np.uint8 and lo is None:
        return x
    x = x.astype(np.float32)
    if lo is None or hi is None:
        lo, hi = _limits(x)
    if hi <= lo:
        return np.zeros(x.shape, dtype=np.uint8)
    y = (np.nan_to_num(x, nan=lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _limits(x: np.ndarray) -> tuple[float, float]:
    flat = x.reshape(-1)
    if flat.size > 1_000_000:
        flat = flat[:: flat.size // 1_000_000]
    flat = flat[np.isfinite(flat)]
    if flat.size == 0:
        return 0.0, 0.0
    lo, hi = np.percentile(flat, [0.5, 99.5])
    if hi <= lo:
        lo, hi = float(flat.min()), float(flat.max())
    return float(lo), float(hi)


def png(img: np.ndarray, alt: str, aspect: float = 1.0, side: int = THUMB) -> Picture:
    """A PNG thumbnail (longest side THUMB; small images enlarged without smoothing). `aspect` stretches
    the height (physical row spacing / column spacing) so a slice is drawn to scale; `side` is the
    longest side in pixels."""
    import cv2

    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 3:
        img = cv2.cvtColor(np.ascontiguousarray(img[:, :, :3]), cv2.COLOR_RGB2BGR)
    h, w = img.shape[:2]
    h_phys = max(1.0, h * aspect)
    scale = side / max(h_phys, w)
    size = (max(1, round(w * scale)), max(1, round(h_phys * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST
    img = cv2.resize(np.ascontiguousarray(img), size, interpolation=interp)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise ValueError("PNG encoding failed")
    uri = "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")
    return Picture(alt, uri, size[0], size[1])


def _image(arr: np.ndarray, name: str) -> tuple[list[Picture], str]:
    note = ""
    if arr.ndim == 3 and arr.shape[2] not in (1, 3, 4):  # a stack of frames: the first one
        note = f"frame 1 of {arr.shape[0]}"
        arr = arr[0]
    if arr.ndim == 4:
        note = f"frame 1 of {arr.shape[0]}"
        arr = arr[0]
    return [png(to_uint8(arr), name)], note


def _volume(arr: np.ndarray, row: dict[str, Any]) -> tuple[list[Picture], str]:
    note = ""
    if arr.ndim == 4:  # (windows, z, y, x): the first window
        note = f"window 1 of {arr.shape[0]}, "
        arr = arr[0]
    z, y, x = arr.shape
    spacing = row.get("spacing") or [1.0, 1.0, 1.0]
    sx, sy, sz = (float(v) if v else 1.0 for v in list(spacing)[:3])
    lo, hi = _limits(arr)
    orient = str(row.get("orientation") or "LPS")
    up = (lambda a: a[::-1]) if orient[2:3] == "S" else (lambda a: a)  # superior at the top
    pics = [
        png(to_uint8(arr[z // 2], lo, hi), "axial", sy / sx, PLANE),
        png(to_uint8(up(arr[:, y // 2, :]), lo, hi), "coronal", sz / sx, PLANE),
        png(to_uint8(up(arr[:, :, x // 2]), lo, hi), "sagittal", sz / sy, PLANE),
    ]
    return pics, note + f"{z}x{y}x{x} voxels (z, y, x), mid-slices: axial, coronal, sagittal"


def _video(arr: np.ndarray, row: dict[str, Any]) -> tuple[list[Picture], str]:
    n = arr.shape[0]
    idx = sorted({round(k * (n - 1) / max(1, VIDEO_FRAMES - 1)) for k in range(min(n, VIDEO_FRAMES))})
    lo, hi = (None, None) if arr.dtype == np.uint8 else _limits(arr)
    frames = [to_uint8(arr[i], lo, hi) for i in idx]
    pics = [png(f, f"frame {i + 1}") for f, i in zip(frames, idx, strict=True)]
    fps = row.get("fps")
    rate = f" at {float(fps):.3g} fps" if fps else ""
    return pics, f"frames {', '.join(str(i + 1) for i in idx)} of {n}{rate}"


def _heat(arr: np.ndarray, alt: str) -> Picture:
    import cv2

    gray = to_uint8(np.abs(arr.astype(np.float32)))
    rgb = cv2.cvtColor(cv2.applyColorMap(gray, cv2.COLORMAP_VIRIDIS), cv2.COLOR_BGR2RGB)
    return png(rgb, alt)


def _graph(row: dict[str, Any], name: str) -> tuple[list[Picture], str]:
    if name in ("adjacency", "matrix"):
        a = row[name]
        return [_heat(a, name)], f"{a.shape[0]} x {a.shape[1]} {name}"
    edges = row["edge_index"]
    feats = row.get("node_features")
    n = int(feats.shape[0]) if isinstance(feats, np.ndarray) else int(edges.max(initial=-1)) + 1
    e = int(edges.shape[1]) if edges.ndim == 2 else 0
    if n == 0 or n > 1024:
        return [], f"{n} nodes, {e} edges"
    a = np.zeros((n, n), dtype=np.float32)
    w = row.get("edge_weight")
    a[edges[0], edges[1]] = w if isinstance(w, np.ndarray) and w.size == e else 1.0
    return [_heat(a, "adjacency")], f"{n} nodes, {e} edges (adjacency)"


# -------------------------------------------------------------------------------------------- traces


def trace_svg(signal: np.ndarray, names: list[str], rate: float | None) -> tuple[str, str]:
    """Up to MAX_TRACES channels of the first TRACE_SECONDS as an inline SVG, one lane per channel."""
    channels, samples = signal.shape
    keep = min(samples, int(TRACE_SECONDS * rate) if rate else 5000)
    shown = min(channels, MAX_TRACES)
    width, lane, label = 360, 46, 34
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="trace" viewBox="0 0 {width} {lane * shown}" '
        f'width="{width}" height="{lane * shown}" role="img">'
    ]
    for c in range(shown):
        y = signal[c, :keep].astype(np.float64)
        y = np.nan_to_num(y)
        pts = _decimate(y, 2 * (width - label))
        lo, hi = (float(pts.min()), float(pts.max())) if pts.size else (0.0, 0.0)
        span = hi - lo or 1.0
        top = c * lane
        xs = label + np.arange(pts.size) * (width - label - 2) / max(1, pts.size - 1)
        ys = top + 4 + (hi - pts) * (lane - 8) / span
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ys, strict=True))
        name = html.escape(names[c] if c < len(names) else f"ch{c + 1}")
        parts.append(
            f'<line x1="{label}" y1="{top + lane / 2:.1f}" x2="{width}" y2="{top + lane / 2:.1f}" '
            'class="grid"/>'
            f'<text x="2" y="{top + lane / 2 + 4:.1f}" class="lead">{name}</text>'
            f'<polyline points="{path}" class="wave"/>'
        )
    parts.append("</svg>")
    secs = f"{keep / rate:g} s at {rate:g} Hz" if rate else f"{keep} samples"
    return "".join(parts), f"{shown} of {channels} channels, first {secs}"


def _decimate(y: np.ndarray, points: int) -> np.ndarray:
    """At most `points` values keeping each bucket's min and max (peaks survive)."""
    if y.size <= points:
        return y
    buckets = points // 2
    edges = np.linspace(0, y.size, buckets + 1).astype(int)
    out = np.empty(2 * buckets)
    for k in range(buckets):
        seg = y[edges[k] : edges[k + 1]]
        i, j = int(seg.argmin()), int(seg.argmax())
        out[2 * k], out[2 * k + 1] = (seg[i], seg[j]) if i < j else (seg[j], seg[i])
    return out


# ------------------------------------------------------------------------------------------- samples

_SKIP = {"id", "split", "labels", "target", "source_files", "source_sha256", "recipe_hash"}


def _short(v: Any, n: int = 80) -> str:
    if isinstance(v, float):
        text = f"{v:.6g}"
    elif isinstance(v, list):
        text = ", ".join(_short(x, 20) for x in v[:8]) + (", ..." if len(v) > 8 else "")
    else:
        text = str(v)
    return text if len(text) <= n else text[: n - 1] + "…"


def thumb(row: dict[str, Any]) -> Thumb:
    """One row as a thumbnail of the right kind."""
    arrays = [k for k, v in row.items() if isinstance(v, np.ndarray)]
    t = Thumb(str(row.get("id")), str(row.get("split") or ""), list(row.get("labels") or []), "table")
    name = next((p for p in PREFERENCE if p in arrays), None)
    if name is None and arrays and row[arrays[0]].ndim == 2 and min(row[arrays[0]].shape) > 1:
        name = "image"  # an unknown 2-D array: draw it
    arr = row.get(name) if name else None
    if name in ("volume", "windows") and arr is not None and arr.ndim in (3, 4):
        t.kind = "volume"
        t.pictures, t.caption = _volume(arr, row)
    elif name == "video" and arr is not None and arr.ndim in (3, 4):
        t.kind = "video"
        t.pictures, t.caption = _video(arr, row)
    elif name in ("signal", "epochs") and arr is not None and arr.ndim in (2, 3):
        t.kind = "signal"
        sig, note = arr, ""
        if arr.ndim == 3:
            sig = arr[0]
            lab = (row.get("epoch_labels") or [None])[0]
            note = f"epoch 1 of {arr.shape[0]}" + (f" ({lab})" if lab is not None else "") + "; "
        names = row.get("lead_names") or row.get("channel_names") or row.get("channels") or []
        rate = row.get("sampling_rate")
        t.svg, caption = trace_svg(sig, [str(n) for n in names], float(rate) if rate else None)
        t.caption = note + caption
    elif name in ("adjacency", "matrix", "edge_index") and arr is not None:
        t.kind = "graph"
        t.pictures, t.caption = _graph(row, name)
    elif name is not None and arr is not None and arr.ndim >= 2:
        t.kind = "image"
        t.pictures, t.caption = _image(arr, name)
        t.caption = ", ".join(x for x in (t.caption, "x".join(str(d) for d in arr.shape)) if x)
    else:
        t.kind = "text" if isinstance(row.get("text"), str) else "table"
        for k, v in row.items():
            if k in _SKIP or k.endswith("_shape"):
                continue
            if isinstance(v, np.ndarray):
                v = v.reshape(-1)[:8].tolist() + (["..."] if v.size > 8 else [])
            t.cells[k] = _short(v, 400 if k == "text" else 80)
    return t


def samples(out_dir: Path, shards: list[dict[str, Any]], total: int) -> Samples:
    thumbs: list[Thumb] = []
    error = ""
    try:
        for row in iter_rows(out_dir, shards):  # each row dropped once drawn
            try:
                thumbs.append(thumb(row))
            except Exception as e:  # an array no picture can be made of: say so, keep the page
                t = Thumb(
                    str(row.get("id")), str(row.get("split") or ""), list(row.get("labels") or []), "none"
                )
                t.caption = f"not drawn: {type(e).__name__}: {e}"
                thumbs.append(t)
    except (OSError, pa.ArrowException) as e:
        error = f"{type(e).__name__}: {e}"
    return Samples(thumbs, total, error)
