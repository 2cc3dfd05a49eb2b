"""Rows from one item: `rows.explode` cuts arrays into windows, one output row per window.

BCSS patches (a 2-D tile grid over an image), CT windows of 24 slices, sleep epochs of 30 s, FACED
trials: the step says which arrays to cut along which axes with which window `size` and `stride`;
the pipeline then writes one row per window, with the id `<item>#<n>` (n counts windows in
row-major order of their positions, from 0), the item's labels, split and kept columns, and every
array that is not cut repeated. Cutting one axis in size-1 windows (sleep epochs from `eeg.epoch`),
`meta` lists of one entry per window are split with it, and `label_from` makes such a list the
rows' labels (`labels: {from_rows: true}` in the recipe). A last window that would run past the end is dropped
(`partial: drop`) or kept shorter (`partial: keep`). An item with no whole window is an item error.
Windows of different lengths (Cholec80's 90 annotation intervals as clips) come from `bounds`: a meta list
of [start, stop) positions along axis 0, one window each, set by an earlier step (`video.clips`); `meta`,
`label_from` and `labels_field` then have one entry per window.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
from pydantic import Field, model_validator

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, step

KEY = "_explode"  # the private hand-over from the step to the pipeline


class ExplodeParams(StepParams):
    arrays: list[str] = Field(min_length=1, description="arrays to cut (all the same extent on the axes)")
    axes: list[int] = Field(default_factory=lambda: [0], description="axes to cut along")
    size: list[int] | None = Field(
        None, description="window length per axis (1 with squeeze: one row per index); or give bounds"
    )
    bounds: str | None = Field(
        None,
        description="instead of size: a meta list of [start, stop) along axis 0, one window each, of any "
        "lengths (video.clips)",
    )
    stride: list[int] | None = Field(None, description="step between windows per axis (default: size)")
    squeeze: bool = Field(False, description="drop the cut axes when their size is 1 (FACED trials)")
    partial: str = Field("drop", pattern="^(drop|keep)$", description="a last window shorter than size")
    meta: list[str] = Field(
        default_factory=list, description="per-window metadata lists (one entry per index of the cut axis)"
    )
    label_from: str | None = Field(
        None,
        description="a per-window metadata list (eeg.epoch's epoch_labels) whose entry is the row's label; "
        "the recipe's labels say `from_rows: true`",
    )
    labels_field: str | None = Field(
        None,
        description="a kept index column holding a JSON list with one label (or list of labels) per window, "
        "e.g. written by a hook from a per-slice table (RSNA PE, LNDb windows)",
    )

    @model_validator(mode="after")
    def _lengths(self) -> ExplodeParams:
        n = len(self.axes)
        if (self.size is None) == (self.bounds is None):
            raise ValueError("give exactly one of size or bounds")
        if self.bounds is not None:
            if self.axes != [0] or self.stride is not None or self.squeeze:
                raise ValueError("bounds cut axis 0 only, without stride or squeeze")
            if self.label_from and self.labels_field:
                raise ValueError("give 'label_from' or 'labels_field', not both")
            return self
        assert self.size is not None
        if len(self.size) != n or (self.stride is not None and len(self.stride) != n):
            raise ValueError("axes, size and stride need one entry per axis")
        if any(s < 1 for s in self.size + (self.stride or [])):
            raise ValueError("size and stride must be >= 1")
        if (self.meta or self.label_from or self.labels_field) and (n != 1 or self.size != [1]):
            raise ValueError(
                "per-window 'meta' / 'label_from' / 'labels_field' need one axis cut with size [1]"
            )
        if self.label_from and self.labels_field:
            raise ValueError("give 'label_from' or 'labels_field', not both")
        return self


@step("rows.explode", ExplodeParams)
def explode_step(sample: Sample, p: ExplodeParams) -> Sample:
    """Cut arrays into windows: one output row per window, id <item>#<n>."""
    for name in p.arrays:
        arr = sample.array(name)
        if any(a >= arr.ndim or a < -arr.ndim for a in p.axes):
            raise ItemError(f"rows.explode: array {name!r} has {arr.ndim} axes, not {p.axes}")
    extents = {tuple(sample.arrays[n].shape[a] for a in p.axes) for n in p.arrays}
    if len(extents) != 1:
        raise ItemError(f"rows.explode: arrays {p.arrays} differ in extent along axes {p.axes}: {extents}")
    (extent,) = extents
    if p.bounds is not None:
        bounds = sample.meta.get(p.bounds)
        ok = isinstance(bounds, list) and all(
            isinstance(b, list | tuple)
            and len(b) == 2
            and all(isinstance(v, int | np.integer) for v in b)
            and 0 <= b[0] < b[1] <= extent[0]
            for b in bounds
        )
        if not ok or not bounds:
            raise ItemError(
                f"rows.explode: meta {p.bounds!r} is not a list of [start, stop) inside {extent[0]}"
            )
        extent = (len(bounds),)
    if p.labels_field is not None:
        import json

        try:
            sample.meta[FIELD_LABELS] = json.loads(sample.fields[p.labels_field])
        except KeyError:
            raise ItemError(
                f"rows.explode: no kept column {p.labels_field!r} (add it to index.keep)"
            ) from None
        except ValueError:
            raise ItemError(f"rows.explode: {p.labels_field} is not a JSON list") from None
        p = p.model_copy(update={"label_from": FIELD_LABELS, "labels_field": None})
    for key in [*p.meta, *([p.label_from] if p.label_from else [])]:
        value = sample.meta.get(key)
        if not isinstance(value, list | tuple | np.ndarray) or len(value) != extent[0]:
            got = len(value) if isinstance(value, list | tuple | np.ndarray) else type(value).__name__
            raise ItemError(f"rows.explode: meta {key!r} is not a list of {extent[0]} entries (got {got})")
    sample.meta[KEY] = p.model_dump()
    return sample


FIELD_LABELS = "_window_labels"  # labels_field parsed, handed to explode()


def _starts(extent: int, size: int, stride: int, partial: str) -> list[int]:
    """Window starts: whole windows only (drop), or until a window reaches the end (keep)."""
    if partial == "drop":
        return list(range(0, extent - size + 1, stride)) if extent >= size else []
    out = []
    for start in range(0, extent, stride):
        out.append(start)
        if start + size >= extent:
            break
    return out


def explode(sample: Sample) -> list[tuple[str, Sample, tuple[str, ...] | None]]:
    """(id suffix, sample, the row's labels or None for the item's) per row; one row with suffix ''
    when the recipe does not explode."""
    spec = sample.meta.get(KEY)
    if spec is None:
        return [("", sample, None)]
    p = ExplodeParams.model_validate(spec)
    if p.bounds is not None:
        return _explode_bounds(sample, p)
    assert p.size is not None
    stride = p.stride or p.size
    first = sample.arrays[p.arrays[0]]
    extent = [first.shape[a] for a in p.axes]
    starts = [_starts(e, s, st, p.partial) for e, s, st in zip(extent, p.size, stride, strict=True)]
    positions = list(itertools.product(*starts))
    if not positions:
        raise ItemError(f"rows.explode: no whole window of {p.size} in an extent of {extent}")
    per_window = set(p.meta) | ({p.label_from} if p.label_from else set()) | {FIELD_LABELS}
    meta = {k: v for k, v in sample.meta.items() if k != KEY and k not in per_window}
    out = []
    for n, pos in enumerate(positions):
        arrays = dict(sample.arrays)
        for name in p.arrays:
            arr = sample.arrays[name]
            index: list[slice | int] = [slice(None)] * arr.ndim
            for a, start, size in zip(p.axes, pos, p.size, strict=True):
                index[a] = start if (p.squeeze and size == 1) else slice(start, start + size)
            arrays[name] = np.ascontiguousarray(arr[tuple(index)])
        row_meta = dict(meta)
        for key in p.meta:
            v = sample.meta[key][pos[0]]
            row_meta[key] = v.item() if isinstance(v, np.generic) else v
        labels = _row_labels(sample.meta[p.label_from][pos[0]]) if p.label_from else None
        out.append((f"#{n}", replace(sample, arrays=arrays, meta=row_meta), labels))
    return out


def _row_labels(v: object) -> tuple[str, ...]:
    if isinstance(v, list | tuple):
        return tuple(str(x) for x in v)
    return () if v is None or str(v) == "" else (str(v),)


def _explode_bounds(sample: Sample, p: ExplodeParams) -> list[tuple[str, Sample, tuple[str, ...] | None]]:
    """One row per [start, stop) of the `bounds` meta list, cut along axis 0 of each named array."""
    assert p.bounds is not None
    bounds = [(int(a), int(b)) for a, b in sample.meta[p.bounds]]
    per_window = set(p.meta) | ({p.label_from} if p.label_from else set()) | {FIELD_LABELS, p.bounds}
    meta = {k: v for k, v in sample.meta.items() if k != KEY and k not in per_window}
    out = []
    for n, (a, b) in enumerate(bounds):
        arrays = dict(sample.arrays)
        for name in p.arrays:
            arrays[name] = np.ascontiguousarray(sample.arrays[name][a:b])
        row_meta = dict(meta)
        for key in p.meta:
            v = sample.meta[key][n]
            row_meta[key] = v.item() if isinstance(v, np.generic) else v
        labels = _row_labels(sample.meta[p.label_from][n]) if p.label_from else None
        out.append((f"#{n}", replace(sample, arrays=arrays, meta=row_meta), labels))
    return out
