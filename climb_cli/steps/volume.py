"""Volume steps (CT, MRI): read a DICOM series or a NIfTI/MHA/MHD/NRRD file, reorient, resample, crop/pad,
window and cut into CLIMB's slice windows, keeping the physical geometry exact at every step.

Storage convention (every step reads and writes it):
  `sample.arrays["volume"]` is shaped (z, y, x) — SimpleITK's GetArrayFromImage order, i.e. array index
  [k, j, i] for the ITK voxel index (i, j, k) — and `sample.meta["axes"] == "zyx"` says so.
  Geometry travels in meta in ITK's physical (x, y, z) order, in millimetres, in DICOM's LPS patient frame:
  `spacing` [sx, sy, sz] (sx is along the array's LAST axis), `origin` [x, y, z] of voxel (0, 0, 0),
  `direction` (9 floats, row-major 3x3 matrix whose columns are the directions of i, j, k), `size`
  [nx, ny, nz] and `orientation` (three letters, e.g. "LPS": i runs towards Left, j towards Posterior,
  k towards Superior). The physical point of array element [k, j, i] is
  origin + direction @ (spacing * [i, j, k]). Another array (a label map read with `array: label`) keeps its
  own geometry under prefixed keys (`label_spacing`, `label_origin`, ...).

CLIMB's CT choices, available by name (see the reference corpus notes, sections 1.2 and 3):
  window presets (centre/width in HU) pe 400/1000 (RSNA, RadFusion), lung -600/1500 (LIDC, LNDb),
  ctpa 80/700 ("window 700 / level 80": RSPECT JPGs, INSPECT and KiTS23 videos), plus brain 40/80 and
  bone 400/1800; the in-plane 256x256 INTER_AREA resize (`volume.resize_slices`); the 24-slice windows
  with stride 12 and CLIMB's count (N-24)//12 (`volume.slice_windows`). CLIMB never resampled spacing;
  `volume.resample` is offered for models that want physical units.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps import _nifti, _pixels
from climb_cli.steps._pixels import cv_interpolation
from climb_cli.steps.base import Sample, StepParams, item_errors, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import cv2
    import pydicom
    import SimpleITK as sitk
    from scipy import ndimage
else:
    cv2 = lazy("cv2")
    pydicom = lazy("pydicom")
    sitk = lazy("SimpleITK")
    ndimage = lazy("scipy.ndimage")

AXES = "zyx"

#: CLIMB's and common CT windows as (centre, width) in HU. "ctpa" is CLIMB's `apply_window_level(window=700,
#: level=80)`: it clips to [-270, 430].
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    name: _pixels.WINDOW_PRESETS[name] for name in ("pe", "lung", "ctpa", "brain", "bone")
}

VolumeDtype = Literal["float32", "int16", "uint16", "uint8", "keep"]

# --------------------------------------------------------------------------------------------- helpers


def _key(array: str, name: str) -> str:
    """The meta key of a geometry field: plain for `volume`, prefixed for any other array."""
    return name if array == "volume" else f"{array}_{name}"


def _cast(arr: np.ndarray, dtype: str, what: str) -> np.ndarray:
    """Cast to the stored dtype; narrowing to an integer type is checked, never clipped silently."""
    if dtype == "keep":
        if arr.dtype == np.float64:
            return arr.astype(np.float32)
        return arr
    target = np.dtype(dtype)
    if arr.dtype == target:
        return arr
    if np.issubdtype(target, np.integer) and np.issubdtype(arr.dtype, np.floating) and arr.size:
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise ItemError(f"{what}: {bad} NaN/inf voxels, which {dtype} cannot hold; use dtype float32")
    if np.issubdtype(target, np.integer) and arr.size:
        lo, hi = float(np.min(arr)), float(np.max(arr))
        info = np.iinfo(target)
        if lo < info.min or hi > info.max:
            raise ItemError(
                f"{what}: values {lo:g}..{hi:g} do not fit {dtype} ({info.min}..{info.max}); "
                "use dtype float32"
            )
        if np.issubdtype(arr.dtype, np.floating) and not np.array_equal(arr, np.round(arr)):
            raise ItemError(f"{what}: values are not integers; use dtype float32")
    return arr.astype(target)


def _image(sample: Sample, array: str) -> sitk.Image:
    """The sample's array as a SimpleITK image with the geometry from meta."""
    arr = sample.array(array)
    if arr.ndim != 3:
        raise ItemError(f"array {array!r} is {arr.ndim}-D {arr.shape}; a (z, y, x) volume is expected")
    try:
        spacing = [float(v) for v in sample.meta[_key(array, "spacing")]]
        origin = [float(v) for v in sample.meta[_key(array, "origin")]]
        direction = [float(v) for v in sample.meta[_key(array, "direction")]]
    except KeyError:
        raise ItemError(
            f"no geometry (spacing, origin, direction) for {array!r} in meta; a volume reader must come first"
        ) from None
    if sample.meta.get(_key(array, "axes"), AXES) != AXES:
        raise ItemError(f"array {array!r} is not stored as (z, y, x)")
    img = sitk.GetImageFromArray(np.ascontiguousarray(arr))
    img.SetSpacing(spacing)
    img.SetOrigin(origin)
    img.SetDirection(direction)
    return img


def _orientation(direction: tuple[float, ...] | list[float]) -> str:
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines([float(v) for v in direction])


def _store(sample: Sample, array: str, img: sitk.Image, arr: np.ndarray | None = None) -> None:
    """Put an image (or `arr` with the image's geometry) back into the sample, array and meta together."""
    data = sitk.GetArrayFromImage(img) if arr is None else arr
    sample.arrays[array] = np.ascontiguousarray(data)
    sample.meta[_key(array, "axes")] = AXES
    sample.meta[_key(array, "spacing")] = [float(v) for v in img.GetSpacing()]
    sample.meta[_key(array, "origin")] = [float(v) for v in img.GetOrigin()]
    sample.meta[_key(array, "direction")] = [float(v) for v in img.GetDirection()]
    sample.meta[_key(array, "size")] = [int(v) for v in data.shape[::-1]]
    sample.meta[_key(array, "orientation")] = _orientation(img.GetDirection())


def _add_sources(sample: Sample, paths: list[Path]) -> None:
    for path in paths:
        if path not in sample.sources:
            sample.sources.append(path)


def _fill_value(arr: np.ndarray, fill: float | None, label: bool = False) -> float:
    if fill is not None:
        return float(fill)
    if label or arr.size == 0:
        return 0.0
    if np.issubdtype(arr.dtype, np.floating):
        finite = arr[np.isfinite(arr)]  # NaN voxels (kept from a float NIfTI) are not the background
        return float(np.min(finite)) if finite.size else 0.0
    return float(np.min(arr))


def window_float(x: np.ndarray, center: float, width: float) -> np.ndarray:
    """(clip(x, c - w/2, c + w/2) - lower) / w as float32 in [0, 1] (CLIMB's base_ct.windowing)."""
    lower = center - width / 2.0
    out = np.clip(x.astype(np.float32, copy=False), lower, lower + width)
    out -= np.float32(lower)
    out /= np.float32(width)
    return out


def window_uint8(x: np.ndarray, center: float, width: float, block: int = 16) -> np.ndarray:
    """CLIMB's apply_window_level: clip to [c - w/2, c + w/2], (x - lower) / w * 255 in float64, then uint8.

    Computed in blocks of `block` slices along axis 0 so the float64 temporary stays small.
    """
    lower = center - width / 2.0
    out = np.empty(x.shape, dtype=np.uint8)
    flat_in = x.reshape((x.shape[0], -1)) if x.ndim > 1 else x.reshape((1, -1))
    flat_out = out.reshape(flat_in.shape)
    for start in range(0, flat_in.shape[0], block):
        chunk = np.clip(flat_in[start : start + block].astype(np.float64), lower, lower + width)
        np.nan_to_num(chunk, copy=False, nan=lower)  # NaN has no grey level: the window's floor, counted
        flat_out[start : start + block] = ((chunk - lower) / width * 255.0).astype(np.uint8)
    return out


def clahe_frames(frames: np.ndarray, clip: float, tiles: tuple[int, int]) -> np.ndarray:
    """OpenCV CLAHE on every uint8 frame of (n, H, W) (tiles as [rows, cols]); no frames give no frames."""
    if frames.shape[0] == 0:
        return np.empty_like(frames)
    return _pixels.clahe(frames, clip, tiles, channels=1)


def window_params(preset: str | None, center: float | None, width: float | None) -> tuple[str, float, float]:
    """(name, centre, width) from a preset name or an explicit centre/width."""
    if preset is not None:
        c, w = WINDOW_PRESETS[preset]
        return preset, c, w
    assert center is not None and width is not None
    return "custom", float(center), float(width)


class WindowChoice(StepParams):
    preset: Literal["pe", "lung", "ctpa", "brain", "bone"] | None = Field(
        None,
        description="named window (centre/width HU): pe 400/1000, lung -600/1500, ctpa 80/700 "
        "(CLIMB's 'window 700 / level 80'), brain 40/80, bone 400/1800",
    )
    center: float | None = Field(
        None, description="window centre (level) in HU, with width; instead of preset"
    )
    width: float | None = Field(None, gt=0, description="window width in HU, with center; instead of preset")

    @model_validator(mode="after")
    def _one_window(self) -> WindowChoice:
        explicit = self.center is not None or self.width is not None
        if self.preset is not None and explicit:
            raise ValueError("give either preset or center+width, not both")
        if self.preset is None and (self.center is None or self.width is None):
            raise ValueError("give a preset, or both center and width")
        return self


# ------------------------------------------------------------------------------------ DICOM series


#: Transfer syntaxes SimpleITK's bundled GDCM decodes correctly. JPEG Extended 12-bit (…4.51) decodes
#: with wrong pixels (checked on pydicom's JPGExtended.dcm) and HTJ2K is unknown to it: pydicom does those.
_SITK_SYNTAXES = {
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
}


@dataclass
class _Slice:
    """One 2-D plane of a series: a single-frame file, or one frame of an enhanced multi-frame file."""

    path: Path
    frame: int | None
    position: np.ndarray
    row: np.ndarray
    col: np.ndarray
    pixel_spacing: tuple[float, float]  # (between rows, between columns), as DICOM PixelSpacing
    shape: tuple[int, int]
    slope: float
    intercept: float
    syntax: str
    thickness: float | None = None  # SpacingBetweenSlices, else SliceThickness: the z spacing of a lone slice


def _floats(value: Any, n: int, what: str, where: str) -> np.ndarray:
    try:
        out = np.array([float(v) for v in value], dtype=np.float64)
    except (TypeError, ValueError):
        raise ItemError(f"{where}: {what} is missing or not numeric") from None
    if out.shape != (n,) or not np.all(np.isfinite(out)):
        raise ItemError(f"{where}: {what} should be {n} numbers, got {value!r}")
    return out


def _seq_item(ds: Any, *keywords: str) -> Any:
    """ds.<kw1>[0].<kw2>[0]... or None."""
    node = ds
    for kw in keywords:
        seq = node.get(kw) if node is not None else None
        if not seq:
            return None
        node = seq[0]
    return node


def _rescale(node: Any) -> tuple[float, float]:
    slope = node.get("RescaleSlope") if node is not None else None
    intercept = node.get("RescaleIntercept") if node is not None else None
    return (
        float(slope) if slope not in (None, "") else 1.0,
        float(intercept) if intercept not in (None, "") else 0.0,
    )


def _slice_step(*nodes: Any) -> float | None:
    """SpacingBetweenSlices, else SliceThickness, from the first node that has a positive one, else None."""
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        for node in nodes:
            value = node.get(keyword) if node is not None else None
            try:
                number = float(value) if value not in (None, "") else math.nan
            except (TypeError, ValueError):
                continue
            if math.isfinite(number) and number > 0:
                return number
    return None


def _slices_of(path: Path, ds: Any) -> list[_Slice]:
    """The planes of one DICOM file (headers only)."""
    where = path.name
    syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    shape = (int(ds.get("Rows") or 0), int(ds.get("Columns") or 0))
    if min(shape) < 1:
        raise ItemError(f"{where}: no image (Rows/Columns missing)")
    frames = int(ds.get("NumberOfFrames") or 1)
    if "PerFrameFunctionalGroupsSequence" in ds:  # enhanced multi-frame (Enhanced CT/MR, ...)
        shared = _seq_item(ds, "SharedFunctionalGroupsSequence")
        out = []
        per_frame = ds.PerFrameFunctionalGroupsSequence
        if len(per_frame) != frames:
            raise ItemError(f"{where}: {len(per_frame)} per-frame groups for {frames} frames")
        for i, group in enumerate(per_frame):
            pos = _seq_item(group, "PlanePositionSequence")
            ori = _seq_item(group, "PlaneOrientationSequence") or _seq_item(
                shared, "PlaneOrientationSequence"
            )
            meas = _seq_item(group, "PixelMeasuresSequence") or _seq_item(shared, "PixelMeasuresSequence")
            pvt = _seq_item(group, "PixelValueTransformationSequence") or _seq_item(
                shared, "PixelValueTransformationSequence"
            )
            if pos is None or ori is None or meas is None:
                raise ItemError(f"{where}: frame {i + 1} has no plane position/orientation/pixel spacing")
            iop = _floats(ori.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", where)
            ps = _floats(meas.get("PixelSpacing"), 2, "PixelSpacing", where)
            slope, intercept = _rescale(pvt if pvt is not None else ds)
            out.append(
                _Slice(
                    path,
                    i,
                    _floats(pos.get("ImagePositionPatient"), 3, "ImagePositionPatient", where),
                    iop[:3],
                    iop[3:],
                    (float(ps[0]), float(ps[1])),
                    shape,
                    slope,
                    intercept,
                    syntax,
                    _slice_step(meas, ds),
                )
            )
        return out
    if frames > 1:
        raise ItemError(
            f"{where}: a {frames}-frame file without per-frame geometry cannot be placed in a volume"
        )
    iop = _floats(ds.get("ImageOrientationPatient"), 6, "ImageOrientationPatient", where)
    ps = _floats(ds.get("PixelSpacing"), 2, "PixelSpacing", where)
    slope, intercept = _rescale(ds)
    return [
        _Slice(
            path,
            None,
            _floats(ds.get("ImagePositionPatient"), 3, "ImagePositionPatient", where),
            iop[:3],
            iop[3:],
            (float(ps[0]), float(ps[1])),
            shape,
            slope,
            intercept,
            syntax,
            _slice_step(ds),
        )
    ]


@dataclass
class _Geometry:
    slices: list[_Slice]  # sorted along the slice normal, ascending
    spacing: list[float]  # x, y, z
    origin: list[float]
    direction: list[float]  # row-major, columns = row, col, normal


def _geometry(slices: list[_Slice], where: str, tolerance: float) -> _Geometry:
    """Check that the planes form one regular volume and sort them along the slice normal."""
    first = slices[0]
    row = first.row / np.linalg.norm(first.row)
    col = first.col / np.linalg.norm(first.col)
    if abs(float(row @ col)) > 1e-3:
        raise ItemError(f"{where}: ImageOrientationPatient row and column are not orthogonal")
    for s in slices[1:]:
        if s.shape != first.shape:
            raise ItemError(f"{where}: slices of different sizes ({first.shape} and {s.shape}) in one series")
        if np.max(np.abs(s.row - first.row)) > 1e-3 or np.max(np.abs(s.col - first.col)) > 1e-3:
            raise ItemError(
                f"{where}: mixed slice orientations in one series ({s.path.name} differs from "
                f"{first.path.name}): localizer or several stacks?"
            )
        if max(abs(a - b) for a, b in zip(s.pixel_spacing, first.pixel_spacing, strict=True)) > 1e-3:
            raise ItemError(f"{where}: pixel spacing differs between slices ({s.path.name})")
    normal = np.cross(row, col)
    normal /= np.linalg.norm(normal)
    order = sorted(range(len(slices)), key=lambda i: float(slices[i].position @ normal))
    ordered = [slices[i] for i in order]
    depth = np.array([float(s.position @ normal) for s in ordered])
    in_plane = np.array([[float(s.position @ row), float(s.position @ col)] for s in ordered])
    if len(ordered) > 1:
        gaps = np.diff(depth)
        if float(np.min(gaps)) < 1e-3:
            k = int(np.argmin(gaps))
            raise ItemError(
                f"{where}: two slices at the same position ({ordered[k].path.name}, "
                f"{ordered[k + 1].path.name}): duplicates or several acquisitions in one series"
            )
        mean = float((depth[-1] - depth[0]) / (len(ordered) - 1))
        worst = float(np.max(np.abs(gaps - mean)))
        if worst > tolerance * mean:
            k = int(np.argmax(np.abs(gaps - mean)))
            raise ItemError(
                f"{where}: uneven slice spacing: gap of {gaps[k]:.3g} mm after {ordered[k].path.name} "
                f"where the mean is {mean:.3g} mm (missing slices?)"
            )
        drift = float(np.max(np.abs(in_plane - in_plane[0])))
        if drift > 0.1 * min(first.pixel_spacing):
            raise ItemError(
                f"{where}: slice positions drift {drift:.3g} mm across the image plane (gantry tilt or "
                "sheared stack): not a regular volume"
            )
    else:  # one plane: no gap to measure, so the header's slice spacing (1 mm when it has none)
        mean = first.thickness or 1.0
    direction = np.column_stack([row, col, normal])
    return _Geometry(
        ordered,
        [first.pixel_spacing[1], first.pixel_spacing[0], mean],
        [float(v) for v in ordered[0].position],
        [float(v) for v in direction.ravel()],
    )


def slice_order(folder: Path, tolerance: float = 0.1) -> list[str]:
    """File stems of a one-series folder of single-frame ``.dcm`` files in the order
    ``volume.read_dicom_series`` stacks them (along the slice normal); for hooks that label slices
    or windows from a per-slice table (RSNA PE). Raises ItemError where the reader would."""
    slices: list[_Slice] = []
    for path in sorted(folder.glob("*.dcm")):
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise ItemError(f"{path.name}: unreadable DICOM header ({_why(exc)})") from None
        slices.extend(_slices_of(path, ds))
    if not slices:
        raise ItemError(f"{folder.name}: no DICOM slices")
    return [s.path.stem for s in _geometry(slices, folder.name, tolerance).slices]


def _decode_pydicom(geom: _Geometry) -> np.ndarray:
    """Decode every plane with pydicom (pylibjpeg codecs) and apply each plane's own rescale."""
    planes: list[np.ndarray] = []
    cache: dict[Path, np.ndarray] = {}
    integer = all(float(s.slope).is_integer() and float(s.intercept).is_integer() for s in geom.slices)
    for s in geom.slices:
        data = cache.get(s.path)
        if data is None:
            try:
                data = pydicom.dcmread(s.path).pixel_array
            except Exception as exc:
                raise ItemError(f"{s.path.name}: cannot decode pixels ({s.syntax}; {_why(exc)})") from None
            if s.frame is not None:  # a multi-frame file serves several planes; a single frame is used once
                cache[s.path] = data
        plane = data[s.frame] if s.frame is not None else data
        if plane.ndim != 2:
            raise ItemError(f"{s.path.name}: pixel data is {plane.shape}, not one gray plane per frame")
        if integer:
            plane = plane.astype(np.int32) * int(s.slope) + int(s.intercept)
        else:
            plane = (plane.astype(np.float64) * s.slope + s.intercept).astype(np.float32)
        planes.append(plane)
    return np.stack(planes)


def _decode_sitk(geom: _Geometry) -> np.ndarray:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(s.path) for s in geom.slices])
    image = reader.Execute()
    arr = sitk.GetArrayFromImage(image)
    if arr.shape != (len(geom.slices), *geom.slices[0].shape):
        raise ItemError(f"SimpleITK read {arr.shape}, expected {(len(geom.slices), *geom.slices[0].shape)}")
    return arr


class ReadDicomSeriesParams(StepParams):
    input: str = Field(
        "series", description="sample input: the series folder (or one file of it: its folder and series)"
    )
    series_uid: str | None = Field(
        None, description="SeriesInstanceUID to read when the folder holds several series"
    )
    array: str = Field("volume", description="array name to write")
    dtype: VolumeDtype = Field(
        "float32",
        description="stored dtype after rescale (HU for CT); integer types are range-checked, never clipped; "
        "keep = as decoded",
    )
    min_slices: int = Field(2, ge=1, description="fewer planes than this is an item error")
    spacing_tolerance: float = Field(
        0.1, gt=0, le=1, description="largest allowed |gap - mean gap| / mean gap between slices"
    )
    decoder: Literal["auto", "simpleitk", "pydicom"] = Field(
        "auto",
        description="auto: SimpleITK's series reader, pydicom (pylibjpeg) for 12-bit JPEG, HTJ2K, enhanced "
        "multi-frame files and per-slice rescale differences",
    )


@step("volume.read_dicom_series", ReadDicomSeriesParams)
def read_dicom_series(sample: Sample, p: ReadDicomSeriesParams) -> Sample:
    """Assemble a DICOM series into one (z, y, x) volume, slices sorted along the normal, geometry checked."""
    target = sample.input(p.input)
    with item_errors(f"{target.name}: cannot read the DICOM series"):
        return _read_dicom_series(sample, p, target)


def _read_dicom_series(sample: Sample, p: ReadDicomSeriesParams, target: Path) -> Sample:
    wanted = p.series_uid
    if target.is_file():
        folder = target.parent
        if wanted is None:
            try:
                wanted = str(pydicom.dcmread(target, stop_before_pixels=True).SeriesInstanceUID)
            except Exception as exc:
                raise ItemError(f"{target.name}: not a readable DICOM file ({_why(exc)})") from None
    elif target.is_dir():
        folder = target
    else:
        raise ItemError(f"{target.name}: series folder not found")
    where = folder.name
    reader = sitk.ImageSeriesReader()
    uids = list(reader.GetGDCMSeriesIDs(str(folder)))
    if not uids:
        raise ItemError(f"{where}: no DICOM series in the folder")
    if wanted is None:
        if len(uids) > 1:
            raise ItemError(
                f"{where}: {len(uids)} series in one folder ({', '.join(sorted(uids))}); "
                "pick one with series_uid"
            )
        wanted = uids[0]
    elif wanted not in uids:
        raise ItemError(f"{where}: no series {wanted} (series: {', '.join(sorted(uids))})")
    files = [Path(f) for f in reader.GetGDCMSeriesFileNames(str(folder), wanted)]

    slices: list[_Slice] = []
    modality = ""
    for path in files:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:
            raise ItemError(f"{path.name}: unreadable DICOM header ({_why(exc)})") from None
        modality = modality or str(ds.get("Modality") or "")
        slices.extend(_slices_of(path, ds))
    if len(slices) < p.min_slices:
        raise ItemError(
            f"{where}: series {wanted} has {len(slices)} plane(s), fewer than min_slices={p.min_slices}"
        )
    multi = any(s.frame is not None for s in slices)
    if multi and len(files) > 1:
        raise ItemError(f"{where}: series {wanted} mixes multi-frame files with others; not supported")
    geom = _geometry(slices, where, p.spacing_tolerance)

    rescales = {(s.slope, s.intercept) for s in geom.slices}
    sitk_ok = not multi and len(rescales) == 1 and all(s.syntax in _SITK_SYNTAXES for s in geom.slices)
    if p.decoder == "simpleitk" and not sitk_ok:
        raise ItemError(
            f"{where}: SimpleITK cannot decode this series correctly (transfer syntax, multi-frame or "
            "per-slice rescale); use decoder auto or pydicom"
        )
    use_sitk = p.decoder == "simpleitk" or (p.decoder == "auto" and sitk_ok)
    if use_sitk:
        try:
            arr = _decode_sitk(geom)
        except ItemError:
            raise
        except Exception as exc:
            raise ItemError(f"{where}: SimpleITK cannot read the series ({_why(exc)})") from None
    else:
        arr = _decode_pydicom(geom)

    arr = _cast(arr, p.dtype, where)
    img = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # geometry carrier only
    img.SetSpacing(geom.spacing)
    img.SetOrigin(geom.origin)
    img.SetDirection(geom.direction)
    _store(sample, p.array, img, arr)
    sample.meta[_key(p.array, "modality")] = modality
    sample.meta[_key(p.array, "series_uid")] = wanted
    sample.meta[_key(p.array, "decoder")] = "simpleitk" if use_sitk else "pydicom"
    _add_sources(sample, [s.path for s in geom.slices])
    return sample


# ------------------------------------------------------------------------------------- read (files)


_READ_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".nhdr", ".hdr")


def _itk_why(exc: BaseException) -> str:
    """`why` without ITK's source-file prefix, which otherwise fills the line and cuts off the cause."""
    text = " ".join(str(exc).split())
    for marker in ("sitk::ERROR:", "ITK ERROR:"):
        if marker in text:
            text = text.rsplit(marker, 1)[1].strip()
    try:
        return _why(type(exc)(text)) if text else _why(exc)
    except Exception:  # an exception type that cannot be built from one message
        return _why(exc)


def _companion_files(path: Path) -> list[Path]:
    """Data files a header points to: MetaImage ElementDataFile, detached NRRD `data file`, Analyze .img."""
    name = path.name.lower()
    out: list[Path] = []
    if name.endswith((".mhd", ".nhdr")):
        try:
            text = path.read_bytes()[:65536].decode("latin-1")
        except OSError as exc:
            raise ItemError(f"{path.name}: unreadable header ({_why(exc)})") from None
        for line in text.splitlines():
            key, sep, value = line.partition("=" if name.endswith(".mhd") else ":")
            key = key.strip().lower()
            if not sep:
                continue
            if key in ("elementdatafile", "data file", "datafile"):
                value = value.strip()
                if value.upper() == "LOCAL" or value.upper().startswith("LIST") or "%" in value:
                    break
                data = path.parent / value
                if not data.is_file():
                    raise ItemError(f"{path.name}: data file {value} not found")
                out.append(data)
                break
    elif name.endswith(".hdr"):
        data = path.with_suffix(".img")
        if not data.is_file():
            raise ItemError(f"{path.name}: missing {data.name} beside {path.name} (a .hdr holds no voxels)")
        out.append(data)
    return out


class ReadParams(StepParams):
    input: str = Field(
        "volume",
        description="sample input: .nii/.nii.gz (NIfTI-1 or -2), .hdr (+ .img), .mha/.mhd, .nrrd/.nhdr file",
    )
    array: str = Field("volume", description="array name to write (e.g. label for a segmentation)")
    dtype: VolumeDtype = Field(
        "float32",
        description="stored dtype; integer types are range-checked, never clipped; keep = as in the file",
    )
    timepoint: int | None = Field(
        None, ge=0, description="for a 4-D file, the volume to take (0-based); a 4-D file without it fails"
    )


@step("volume.read", ReadParams)
def read(sample: Sample, p: ReadParams) -> Sample:
    """Read a NIfTI-1/2, Analyze, MHA/MHD or NRRD volume into (z, y, x) with spacing/origin/direction.

    SimpleITK reads it, except: float NIfTI voxels come from nibabel (ITK turns NaN/inf into 0.0, nibabel
    keeps them; the geometry stays ITK's) and NIfTI-2 files are read whole with nibabel (SimpleITK has no
    NIfTI-2 reader).
    """
    path = sample.input(p.input)
    with item_errors(f"{path.name}: cannot read the volume"):
        return _read(sample, p, path)


def _read(sample: Sample, p: ReadParams, path: Path) -> Sample:
    if not path.is_file():
        raise ItemError(f"{path.name}: file not found")
    if not path.name.lower().endswith(_READ_SUFFIXES):
        raise ItemError(f"{path.name}: not a volume file ({', '.join(_READ_SUFFIXES)})")
    companions = _companion_files(path)
    nifti = _nifti.load(path)
    try:
        if nifti is not None and _nifti.is_nifti2(nifti):
            img = _nifti.read_nifti2(nifti, path.name)  # SimpleITK has no NIfTI-2 reader
        elif nifti is not None and _nifti.is_float(nifti):
            img = _nifti.with_itk_geometry(path, nifti)  # ITK would turn NaN/inf voxels into 0.0
        else:
            img = sitk.ReadImage(str(path))
    except ItemError:
        raise
    except Exception as exc:
        reader = "nibabel" if nifti is not None and _nifti.is_nifti2(nifti) else "SimpleITK"
        raise ItemError(f"{path.name}: {reader} cannot read it ({_itk_why(exc)})") from None
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise ItemError(f"{path.name}: {img.GetNumberOfComponentsPerPixel()} components per voxel; gray only")
    size = list(img.GetSize())
    dim = img.GetDimension()
    if dim == 4:
        if p.timepoint is None:
            if size[3] != 1:
                raise ItemError(
                    f"{path.name}: 4-D image {'x'.join(map(str, size))}; choose a volume with timepoint"
                )
            index = 0
        else:
            index = p.timepoint
            if index >= size[3]:
                raise ItemError(f"{path.name}: timepoint {index} but the file has {size[3]}")
        img = sitk.Extract(img, [size[0], size[1], size[2], 0], [0, 0, 0, index])
    elif dim != 3:
        raise ItemError(f"{path.name}: a {dim}-D image, not a volume")
    elif p.timepoint not in (None, 0):
        raise ItemError(f"{path.name}: timepoint {p.timepoint} asked of a 3-D image")
    arr = _cast(sitk.GetArrayFromImage(img), p.dtype, path.name)
    _store(sample, p.array, img, arr)
    _add_sources(sample, [path, *companions])
    return sample


# -------------------------------------------------------------------------------------- read_npy


class ReadNpyParams(StepParams):
    input: str = Field("volume", description="sample input: a .npy file holding one 3-D array (slice stack)")
    axes: str = Field(
        "zyx",
        description="what the file's axes are, in file order (a permutation of z, y, x); the array is "
        "transposed to (z, y, x). CLIMB's RadFusion indexes slices on axis 0 (zyx)",
    )
    array: str = Field("volume", description="array name to write")
    dtype: VolumeDtype = Field(
        "float32",
        description="stored dtype; integer types are range-checked, never clipped; keep = as in the file",
    )

    @field_validator("axes")
    @classmethod
    def _axes(cls, v: str) -> str:
        if sorted(v) != sorted(AXES):
            raise ValueError(f"{v!r} is not a permutation of zyx")
        return v


@step("volume.read_npy", ReadNpyParams)
def read_npy(sample: Sample, p: ReadNpyParams) -> Sample:
    """Read a 3-D NumPy `.npy` slice stack (`np.load(allow_pickle=False)`: a pickled object array is refused)
    into (z, y, x). A `.npy` has no geometry: spacing 1 mm, origin 0 and identity direction are recorded,
    with meta `geometry: none` saying so."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: file not found")
    try:
        arr = np.load(path, mmap_mode=None, allow_pickle=False)
    except ValueError as exc:  # object arrays need pickle: refused
        raise ItemError(f"{path.name}: not a plain .npy array ({_why(exc)})") from None
    except (OSError, EOFError) as exc:
        raise ItemError(f"{path.name}: cannot read the .npy file ({_why(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.ndim != 3:
        ndim, shape = getattr(arr, "ndim", "?"), getattr(arr, "shape", "?")
        raise ItemError(f"{path.name}: a {ndim}-D array {shape}; a 3-D slice stack is expected")
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ItemError(f"{path.name}: dtype {arr.dtype} is not numeric")
    arr = np.transpose(arr, [p.axes.index(a) for a in AXES])
    arr = _cast(np.ascontiguousarray(arr), p.dtype, path.name)
    img = sitk.Image([1, 1, 1], sitk.sitkUInt8)  # geometry carrier only: unit spacing, origin 0, identity
    _store(sample, p.array, img, arr)
    sample.meta[_key(p.array, "geometry")] = "none"
    _add_sources(sample, [path])
    return sample


# ------------------------------------------------------------------------------------------ reorient


class ReorientParams(StepParams):
    orientation: str = Field(
        "LPS",
        description="three letters, one of L/R, P/A, S/I each: the directions i, j, k run towards. LPS (the "
        "default, DICOM/ITK's frame) gives an identity direction for axis-aligned scans; RAS matches "
        "nibabel's canonical",
    )
    array: str = Field("volume", description="array to reorient")

    @field_validator("orientation")
    @classmethod
    def _code(cls, v: str) -> str:
        code = v.upper()
        pairs = [{"L", "R"}, {"P", "A"}, {"S", "I"}]
        if len(code) != 3 or any(sum(c in pair for c in code) != 1 for pair in pairs):
            raise ValueError(f"{v!r} is not an orientation code like LPS or RAS")
        return code


@step("volume.reorient", ReorientParams)
def reorient(sample: Sample, p: ReorientParams) -> Sample:
    """Permute/flip axes (no interpolation) to the orientation code, default LPS; geometry follows."""
    img = _image(sample, p.array)
    try:
        out = sitk.DICOMOrient(img, p.orientation)
    except Exception as exc:
        raise ItemError(f"volume.reorient: {_why(exc)}") from None
    _store(sample, p.array, out)
    return sample


# ------------------------------------------------------------------------------------------ resample


class ResampleParams(StepParams):
    spacing: float | list[float | None] = Field(
        description="target spacing in mm: one number (isotropic) or [x, y, z] (ITK order; null keeps "
        "that axis)"
    )
    kind: Literal["image", "label"] = Field(
        "image", description="image: linear interpolation, float32 out; label: nearest neighbour, dtype kept"
    )
    fill: float | None = Field(
        None, description="value outside the input (e.g. -1024 for CT); null: the minimum (0 for labels)"
    )
    array: str = Field("volume", description="array to resample")

    @field_validator("spacing")
    @classmethod
    def _spacing(cls, v: float | list[float | None]) -> float | list[float | None]:
        values = [v] if isinstance(v, int | float) else v
        if not isinstance(v, int | float) and len(values) != 3:
            raise ValueError("give one number or three [x, y, z]")
        if any(x is not None and not x > 0 for x in values):
            raise ValueError("spacing must be > 0")
        return v


@step("volume.resample", ResampleParams)
def resample(sample: Sample, p: ResampleParams) -> Sample:
    """Resample to a spacing in mm (linear for images, nearest for label maps); origin and direction kept."""
    img = _image(sample, p.array)
    old_spacing = np.array(img.GetSpacing())
    old_size = np.array(img.GetSize())
    wanted = [p.spacing] * 3 if isinstance(p.spacing, int | float) else p.spacing
    new_spacing = np.array([o if w is None else float(w) for o, w in zip(old_spacing, wanted, strict=True)])
    new_size = np.maximum(1, np.round(old_size * old_spacing / new_spacing)).astype(int)
    if np.allclose(new_spacing, old_spacing, rtol=1e-9, atol=0) and np.array_equal(new_size, old_size):
        return sample
    label = p.kind == "label"
    fill = _fill_value(sample.arrays[p.array], p.fill, label)
    out_type = img.GetPixelID() if label else sitk.sitkFloat32
    out = sitk.Resample(
        img,
        [int(v) for v in new_size],
        sitk.Transform(),
        sitk.sitkNearestNeighbor if label else sitk.sitkLinear,
        img.GetOrigin(),
        [float(v) for v in new_spacing],
        img.GetDirection(),
        fill,
        out_type,
    )
    _store(sample, p.array, out)
    return sample


# ------------------------------------------------------------------------------------ resize_slices


class ResizeSlicesParams(StepParams):
    size: list[int] = Field(
        [256, 256], min_length=2, max_length=2, description="in-plane [height, width] (y, x) in pixels"
    )
    interpolation: Literal["area", "linear", "cubic", "nearest", "spline3"] = Field(
        "area",
        description="OpenCV interpolation: area (CLIMB: RSNA, LIDC), cubic (RadFusion), nearest for labels; "
        "spline3: scipy.ndimage.zoom with order 3 and the input's dtype (CLIMB's LNDb)",
    )
    array: str = Field("volume", description="array to resize")

    @field_validator("size")
    @classmethod
    def _positive(cls, v: list[int]) -> list[int]:
        if any(n < 1 for n in v):
            raise ValueError("sizes must be >= 1")
        return v


def _spline_zoom(arr: np.ndarray, h: int, w: int) -> np.ndarray:
    """CLIMB's LNDb resize, scipy.ndimage.zoom(window, (1, h / ny, w / nx)) (order 3, the input's dtype), done
    slice by slice: along z a factor of 1 puts every output sample on an input slice, where the cubic spline
    reproduces the slice exactly, so the 2-D zoom of each slice equals CLIMB's 3-D call up to float rounding
    (at most 1 in an integer output; tests/recipes compares them) at a quarter of the cost."""
    factors = (h / arr.shape[1], w / arr.shape[2])
    out = np.empty((arr.shape[0], h, w), dtype=arr.dtype)
    for k in range(arr.shape[0]):
        sl = ndimage.zoom(arr[k], factors)
        if sl.shape != (h, w):  # scipy rounds the output shape; these factors give h, w exactly
            raise ItemError(f"scipy zoom gave {sl.shape} instead of {(h, w)}")
        out[k] = sl
    return out


@step("volume.resize_slices", ResizeSlicesParams)
def resize_slices(sample: Sample, p: ResizeSlicesParams) -> Sample:
    """Resize every slice in-plane to [height, width] with OpenCV (CLIMB's 256x256 INTER_AREA); z kept."""
    img = _image(sample, p.array)
    arr = sample.arrays[p.array]
    h, w = p.size
    ny, nx = arr.shape[1], arr.shape[2]
    if (ny, nx) == (h, w):
        return sample
    src = (
        arr
        if arr.dtype in (np.uint8, np.uint16, np.int16, np.float32, np.float64)
        else arr.astype(np.float32)
    )
    if p.interpolation == "spline3":
        out = _spline_zoom(arr, h, w)  # CLIMB's LNDb: zoom(window, (1, 256 / sy, 256 / sx))
    else:
        out = np.empty((arr.shape[0], h, w), dtype=src.dtype)
        for k in range(arr.shape[0]):
            out[k] = cv2.resize(src[k], (w, h), interpolation=cv_interpolation(p.interpolation))
    # pixel centres: new index u maps to old (u + 0.5) * scale - 0.5, so the image edges stay in place
    scale = np.array([nx / w, ny / h, 1.0])
    spacing = np.array(img.GetSpacing())
    direction = np.array(img.GetDirection()).reshape(3, 3)
    origin = np.array(img.GetOrigin()) + direction @ (spacing * (scale - 1.0) / 2.0)
    geo = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    geo.SetSpacing([float(v) for v in spacing * scale])
    geo.SetOrigin([float(v) for v in origin])
    geo.SetDirection(img.GetDirection())
    _store(sample, p.array, geo, out)
    return sample


# -------------------------------------------------------------------------------------- crop_or_pad


class CropOrPadParams(StepParams):
    shape: list[int | None] = Field(
        min_length=3, max_length=3, description="target [z, y, x] in ARRAY order; null keeps that axis"
    )
    fill: float | None = Field(
        None, description="pad value (e.g. -1024 for CT); null: the minimum (0 for labels)"
    )
    kind: Literal["image", "label"] = Field("image", description="label: the default fill is 0")
    array: str = Field("volume", description="array to crop or pad")

    @field_validator("shape")
    @classmethod
    def _positive(cls, v: list[int | None]) -> list[int | None]:
        if any(n is not None and n < 1 for n in v):
            raise ValueError("sizes must be >= 1")
        return v


@step("volume.crop_or_pad", CropOrPadParams)
def crop_or_pad(sample: Sample, p: CropOrPadParams) -> Sample:
    """Centre-crop or pad to [z, y, x]; the origin moves so every voxel keeps its physical position."""
    img = _image(sample, p.array)
    arr = sample.arrays[p.array]
    target = [n if t is None else int(t) for n, t in zip(arr.shape, p.shape, strict=True)]
    if list(arr.shape) == target:
        return sample
    fill = _fill_value(arr, p.fill, p.kind == "label")
    out = np.full(target, fill, dtype=arr.dtype)
    src_sl, dst_sl, shift = [], [], []  # shift: output index 0 is input index `shift` (array order)
    for n, t in zip(arr.shape, target, strict=True):
        if t <= n:
            start = (n - t) // 2
            src_sl.append(slice(start, start + t))
            dst_sl.append(slice(0, t))
            shift.append(start)
        else:
            before = (t - n) // 2
            src_sl.append(slice(0, n))
            dst_sl.append(slice(before, before + n))
            shift.append(-before)
    out[tuple(dst_sl)] = arr[tuple(src_sl)]
    spacing = np.array(img.GetSpacing())
    direction = np.array(img.GetDirection()).reshape(3, 3)
    ijk = np.array(shift[::-1], dtype=float)  # array (z, y, x) -> ITK (i, j, k)
    geo = sitk.Image([1, 1, 1], sitk.sitkUInt8)
    geo.SetSpacing(img.GetSpacing())
    geo.SetOrigin([float(v) for v in np.array(img.GetOrigin()) + direction @ (spacing * ijk)])
    geo.SetDirection(img.GetDirection())
    _store(sample, p.array, geo, out)
    return sample


# -------------------------------------------------------------------------------------------- window


class WindowParams(WindowChoice):
    output: Literal["float32", "uint8"] = Field(
        "float32",
        description="float32: (clip - lower) / width in [0, 1] (CLIMB's windowing); uint8: the same * 255 "
        "truncated (CLIMB's apply_window_level)",
    )
    array: str = Field("volume", description="array to window (HU)")


@step("volume.window", WindowParams)
def window(sample: Sample, p: WindowParams) -> Sample:
    """HU windowing by preset (pe, lung, ctpa, brain, bone) or centre/width, to float32 [0, 1] or uint8.

    NaN voxels stay NaN in float32 output and become 0 in uint8 output; meta `nan_voxels` counts them."""
    name, center, width = window_params(p.preset, p.center, p.width)
    arr = sample.array(p.array)
    if np.issubdtype(arr.dtype, np.floating):
        nan = int(np.count_nonzero(np.isnan(arr)))
        if nan:  # float output keeps NaN; uint8 output puts it at 0
            sample.meta[_key(p.array, "nan_voxels")] = nan
    if p.output == "uint8":
        sample.arrays[p.array] = window_uint8(arr, center, width)
    else:
        sample.arrays[p.array] = window_float(arr, center, width)
    sample.meta[_key(p.array, "window_preset")] = name
    sample.meta[_key(p.array, "window_center")] = center
    sample.meta[_key(p.array, "window_width")] = width
    return sample


# ------------------------------------------------------------------------------------- slice_windows


class SliceWindowsParams(StepParams):
    size: int = Field(24, ge=1, description="slices per window (CLIMB: 24)")
    stride: int = Field(12, ge=1, description="step between window starts (CLIMB: 12; LIDC: 24)")
    count: Literal["climb", "full", "pad"] = Field(
        "climb",
        description="climb: (N - size) // stride windows, as CLIMB's RSNA/RadFusion/LNDb code (the last full "
        "window is left out); full: every window that fits; pad: windows until the end is covered, the last "
        "padded with fill (LIDC: stride 24 gives ceil(N/24))",
    )
    output: Literal["index", "array"] = Field(
        "index",
        description="index: keep the volume, record window_starts (no duplicated voxels); array: replace "
        "it by `windows` shaped (n, size, y, x)",
    )
    fill: float | None = Field(None, description="pad value for count=pad; null: the minimum")
    array: str = Field("volume", description="array to cut along axis 0 (z)")


@step("volume.slice_windows", SliceWindowsParams)
def slice_windows(sample: Sample, p: SliceWindowsParams) -> Sample:
    """CLIMB's windows of 24 slices, stride 12, along z: start indices in meta, or an (n, 24, y, x) array."""
    arr = sample.array(p.array)
    n = int(arr.shape[0])
    if p.count == "climb":
        starts = [i * p.stride for i in range(max(0, (n - p.size) // p.stride))]
    elif p.count == "full":
        starts = list(range(0, n - p.size + 1, p.stride)) if n >= p.size else []
    else:
        count = 1 + max(0, math.ceil((n - p.size) / p.stride))
        starts = [i * p.stride for i in range(count)]
    if not starts:
        raise ItemError(f"{n} slices give no {p.size}-slice window with stride {p.stride} (count={p.count})")
    sample.meta[_key(p.array, "window_starts")] = starts
    sample.meta[_key(p.array, "window_size")] = p.size
    if p.output == "array":
        fill = _fill_value(arr, p.fill)
        out = np.full((len(starts), p.size, *arr.shape[1:]), fill, dtype=arr.dtype)
        for w, s in enumerate(starts):
            part = arr[s : s + p.size]
            out[w, : part.shape[0]] = part
        del sample.arrays[p.array]
        sample.arrays["windows" if p.array == "volume" else f"{p.array}_windows"] = out
    return sample
