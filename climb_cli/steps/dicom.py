"""DICOM steps: decode any common transfer syntax, apply the modality LUT (e.g. HU), a VOI LUT or a named
window, invert MONOCHROME1, and keep the acquisition metadata a model or an audit needs.

A typical 2D recipe:  dicom.read -> dicom.modality_lut -> dicom.window (preset) or dicom.voi_lut (the
file's own window) -> image.resize -> image.pad_square -> image.to_dtype.

Decoding uses pydicom 3 with the pylibjpeg codecs: JPEG baseline and 12-bit extended, JPEG lossless,
JPEG-LS, JPEG 2000 / HTJ2K (pylibjpeg-libjpeg, pylibjpeg-openjpeg), RLE (numpy), deflate, explicit and
implicit little endian and big endian. YBR colour (YBR_FULL, YBR_FULL_422, YBR_ICT/RCT) comes out as RGB,
PALETTE COLOR is expanded to RGB; `photometric_interpretation` always describes the array as it is now.
A file that cannot be decoded is an ItemError naming the file and the transfer syntax or missing codec.

Metadata kept by dicom.read (for the array `image`; another array name `x` prefixes every key `x_`):
modality, photometric_interpretation, transfer_syntax, view_position, laterality, study/series/sop
instance UIDs, rows, columns, bits_stored, number_of_frames, frame_index (-1 = all frames), channels,
pixel_spacing [row, column] mm (from PixelSpacing, the functional groups or ImagerPixelSpacing; NaN if
none) and pixel_spacing_tag, rescale_slope/intercept (1 and 0 when absent), window_center/width (the file's
first window, NaN if none) and window_count. Every key is always written with the same type, so the
shard schema never depends on which item came first.

CLIMB's windows (../shared/reference/climb-datasets.md section 3 "CT" and 1.2), as presets of dicom.window,
given as centre/width:
  pe     400 / 1000  ([-100, 900])    RSNA PE 3D windows (rsna_pe_window), RadFusion
  lung  -600 / 1500  ([-1350, 150])   LNDb, LIDC-IDRI
  ctpa    80 / 700   ([-270, 430])    RSPECT JPGs, INSPECT and KiTS23 MP4s (CLIMB writes it "700/80" as
                                      window/level; nifti_to_video clips to [-270, 430])
  brixia 256 / 512   ([0, 512])       BrixIA (applied by CLIMB to get_pixel_array's 0-255 output)
plus two standard CT windows CLIMB itself does not use: brain 40 / 80 ([0, 80]) and bone 400 / 1800
([-500, 1300]). VinDr-CXR used the file's first WindowCenter/WindowWidth, falling back to (min+max)/2 and
max-min: dicom.voi_lut with source window, index 0, missing minmax, function linear_exact.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, model_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps import _pixels
from climb_cli.steps._pixels import OutputDtype, WindowFunction, meta_key
from climb_cli.steps.base import Sample, StepParams, item_errors, step, why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import pydicom
    import pydicom.errors as _errors
    import pydicom.pixels as _pixels_api
    import pydicom.uid as _uid
    from pydicom.dataset import Dataset
    from pydicom.uid import UID
else:
    pydicom = lazy("pydicom")
    _errors = lazy("pydicom.errors")
    _pixels_api = lazy("pydicom.pixels")
    _uid = lazy("pydicom.uid")

#: named windows (centre, width); see the module docstring for where CLIMB used each.
WINDOW_PRESETS: dict[str, tuple[float, float]] = _pixels.WINDOW_PRESETS
WindowPreset = Literal["pe", "lung", "ctpa", "brixia", "brain", "bone"]
Plugin = Literal["auto", "pylibjpeg", "pillow", "gdcm", "pyjpegls", "pydicom"]

#: which pip package brings a decoder plugin (for "missing codec" reasons).
_PLUGIN_PACKAGES = {
    "pylibjpeg": "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle",
    "gdcm": "python-gdcm",
    "pillow": "pillow",
    "pyjpegls": "pyjpegls",
}
_VOI_FUNCTIONS: dict[str, WindowFunction] = {
    "LINEAR": "linear",
    "LINEAR_EXACT": "linear_exact",
    "SIGMOID": "sigmoid",
}
#: Modality/VOI LUT module attributes that Enhanced multi-frame objects move into functional groups.
_FRAME_ATTRS = (
    "RescaleSlope",
    "RescaleIntercept",
    "RescaleType",
    "WindowCenter",
    "WindowWidth",
    "WindowCenterWidthExplanation",
    "VOILUTFunction",
    "PixelSpacing",
)
_FG_SEQUENCES = ("PixelValueTransformationSequence", "FrameVOILUTSequence", "PixelMeasuresSequence")


# --------------------------------------------------------------------------------------------- helpers


def _why(exc: BaseException) -> str:
    return why(exc, limit=200)


def _ts_label(ts: UID) -> str:
    return f"{ts.name} ({ts})" if ts.name != str(ts) else f"transfer syntax {ts}"


def _floats(value: Any) -> list[float]:
    """A DS/IS value or multi-value as a list of floats (empty for None, blank or unparsable values)."""
    if value is None:
        return []
    if isinstance(value, str | bytes):
        items: list[Any] = [value] if value.strip() else []
    elif isinstance(value, int | float):
        items = [value]
    else:
        try:
            items = list(value)
        except TypeError:
            items = [value]
    try:
        return [float(v) for v in items]
    except (TypeError, ValueError):
        return []


def _strings(value: Any) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if hasattr(value, "__iter__"):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _frame_attrs(ds: Dataset, frame: int) -> dict[str, Any]:
    """Modality/VOI/spacing attributes for one frame: top level, then shared, then per-frame groups."""
    out: dict[str, Any] = {kw: ds[kw].value for kw in _FRAME_ATTRS if kw in ds}
    groups = []
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        groups.append(shared[0])
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame and 0 <= frame < len(per_frame):
        groups.append(per_frame[frame])
    for group in groups:
        for seq in _FG_SEQUENCES:
            items = group.get(seq)
            if items:
                out.update({kw: items[0][kw].value for kw in _FRAME_ATTRS if kw in items[0]})
    return out


def _has_frame_groups(ds: Dataset) -> bool:
    return bool(ds.get("PerFrameFunctionalGroupsSequence"))


# ---------------------------------------------------------------------------------------------- header


def _header_key(input_name: str) -> str:
    """Private meta key (never an output column) under which dicom.read hands its header to later steps."""
    return f"_dicom_header:{input_name}"


def _header(sample: Sample, input_name: str) -> tuple[Path, Dataset]:
    """The DICOM header dicom.read kept for this input, or (if absent) the file's header read again."""
    path = sample.input(input_name)
    ds = sample.meta.get(_header_key(input_name))
    if isinstance(ds, pydicom.Dataset):
        return path, ds
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:
        raise ItemError(f"{path.name}: cannot read the DICOM header ({_why(exc)})") from None
    sample.meta[_header_key(input_name)] = ds
    return path, ds


def _meta(sample: Sample, array: str, name: str, default: Any = None) -> Any:
    return sample.meta.get(meta_key(array, name), default)


def _channels(sample: Sample, array: str) -> int | None:
    value = _meta(sample, array, "channels")
    return int(value) if value is not None else None


def _is_colour(sample: Sample, array: str, x: np.ndarray) -> bool:
    return _pixels.layout(x, _channels(sample, array))[1]


def _require_modality_lut(sample: Sample, array: str, step_name: str) -> None:
    """Windows are in modality units (e.g. HU): refuse raw stored values whose rescale is not identity."""
    if _meta(sample, array, "modality_lut") is not None:
        return
    slope = _meta(sample, array, "rescale_slope")
    intercept = _meta(sample, array, "rescale_intercept")
    if slope is None or intercept is None:
        return  # not from dicom.read: nothing to check
    if float(slope) != 1.0 or float(intercept) != 0.0:
        raise ItemError(
            f"{step_name}: the pixels are stored values (rescale slope {float(slope):g}, intercept "
            f"{float(intercept):g}); put dicom.modality_lut before it so the window applies to "
            f"{_meta(sample, array, 'pixel_units', '') or 'modality'} values"
        )


# ---------------------------------------------------------------------------------------------- read


class ReadParams(StepParams):
    input: str = Field("image", description="sample input holding the DICOM file")
    array: str = Field(
        "image", description="array to write; metadata keys of another array name are prefixed '<array>_'"
    )
    frames: Literal["all", "first", "middle"] = Field(
        "all",
        description="multi-frame files: every frame as (F,H,W[,3]), or only the first / middle frame "
        "(only that frame is decoded)",
    )
    force: bool = Field(
        False,
        description="read files without the DICOM preamble/'DICM' prefix or file meta; a missing transfer "
        "syntax is then inferred from the encoding for uncompressed pixel data",
    )
    plugin: Plugin = Field(
        "auto",
        description="pydicom decoder plugin for compressed data; auto tries every installed one in "
        "pydicom's order (pylibjpeg first)",
    )


@step("dicom.read", ReadParams)
def read(sample: Sample, p: ReadParams) -> Sample:
    """Decode a DICOM image (any common transfer syntax) into `image`, keeping modality/geometry metadata."""
    path = sample.input(p.input)
    with item_errors(f"{path.name}: cannot read the DICOM file", limit=200):
        return _read(sample, p, path)


def _open(path: Path, force: bool) -> Dataset:
    if not path.is_file():
        raise ItemError(f"{path.name}: file not found")
    try:
        return pydicom.dcmread(path, force=force)
    except _errors.InvalidDicomError:
        raise ItemError(
            f"{path.name}: not a DICOM file (no 'DICM' prefix after the preamble); force: true reads "
            "files written without one"
        ) from None
    except Exception as exc:
        raise ItemError(f"{path.name}: unreadable DICOM file ({_why(exc)})") from None


def _transfer_syntax(ds: Dataset, path: Path, force: bool) -> UID:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return _uid.UID(str(ts))
    elem = ds.get("PixelData") if "PixelData" in ds else None
    encapsulated = elem is not None and ds["PixelData"].is_undefined_length
    implicit, little = ds.original_encoding if hasattr(ds, "original_encoding") else (None, None)
    if not force or encapsulated or implicit is None or little is None:
        raise ItemError(
            f"{path.name}: no transfer syntax in the file meta"
            + ("" if force else "; force: true infers it for uncompressed pixel data")
        )
    ts = (
        _uid.ImplicitVRLittleEndian
        if implicit
        else (_uid.ExplicitVRLittleEndian if little else _uid.ExplicitVRBigEndian)
    )
    if meta is None:
        ds.file_meta = pydicom.dataset.FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ts


def _frame_index(n_frames: int, frames: str) -> int | None:
    if frames == "first" or n_frames <= 1:
        return 0 if n_frames > 1 else None
    if frames == "middle":
        return n_frames // 2
    return None


def _decode(ds: Dataset, path: Path, ts: UID, index: int | None, plugin: str) -> tuple[np.ndarray, str]:
    """(pixels, photometric interpretation of the returned pixels), or an ItemError naming the cause."""
    label = _ts_label(ts)
    try:
        decoder = _pixels_api.get_decoder(ts)
    except NotImplementedError:
        raise ItemError(f"{path.name}: no pixel decoder for {label} (not supported by pydicom)") from None
    if not decoder.is_available:
        missing = "; ".join(decoder.missing_dependencies) or "no plugin installed"
        raise ItemError(f"{path.name}: missing codec for {label}: {missing}")
    if plugin != "auto" and decoder.is_encapsulated and plugin not in decoder.available_plugins:
        have = ", ".join(decoder.available_plugins) or "none"
        need = _PLUGIN_PACKAGES.get(plugin, plugin)
        raise ItemError(
            f"{path.name}: decoder plugin {plugin!r} is not available for {label} (install {need}; "
            f"available: {have})"
        )
    try:
        opts = _pixels_api.as_pixel_options(ds)
    except Exception as exc:
        raise ItemError(f"{path.name}: incomplete Image Pixel module ({_why(exc)})") from None
    try:
        arr, info = decoder.as_array(
            ds,
            index=index,
            validate=True,
            raw=False,
            decoding_plugin="" if plugin == "auto" else plugin,
            **opts,
        )
    except Exception as exc:
        raise ItemError(f"{path.name}: cannot decode {label} pixel data ({_why(exc)})") from None
    return arr, str(info.get("photometric_interpretation", ds.get("PhotometricInterpretation", "")))


def _pixel_spacing(ds: Dataset, attrs: dict[str, Any]) -> tuple[list[float], str]:
    """[row, column] spacing in mm and the tag it came from; NaNs and '' when the file has none."""
    candidates = [("PixelSpacing", _floats(attrs.get("PixelSpacing")))]
    for kw in ("ImagerPixelSpacing", "NominalScannedPixelSpacing"):
        candidates.append((kw, _floats(ds.get(kw))))
    for tag, values in candidates:
        if len(values) == 2 and all(math.isfinite(v) and v > 0 for v in values):
            return values, tag
    return [math.nan, math.nan], ""


def _read(sample: Sample, p: ReadParams, path: Path) -> Sample:
    ds = _open(path, p.force)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = _text(ds, "SOPClassUID")
        kind = _uid.UID(sop).name if sop else "unknown SOP class"
        raise ItemError(f"{path.name}: no pixel data ({kind})")
    ts = _transfer_syntax(ds, path, p.force)
    n_frames = max(1, int((_floats(ds.get("NumberOfFrames")) or [1])[0]))
    index = _frame_index(n_frames, p.frames)
    arr, photometric = _decode(ds, path, ts, index, p.plugin)
    if photometric == "PALETTE COLOR":
        try:
            arr = _pixels_api.apply_color_lut(arr, ds)
        except Exception as exc:
            raise ItemError(f"{path.name}: cannot apply the palette colour LUT ({_why(exc)})") from None
        photometric = "RGB"
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    channels = arr.shape[-1] if samples > 1 or photometric == "RGB" else 1
    if channels > 1 and arr.ndim == 2:  # defensive: a colour decode always carries its channel axis
        channels = 1

    frame0 = index if index is not None else 0
    attrs = _frame_attrs(ds, frame0)
    slope = _floats(attrs.get("RescaleSlope"))
    intercept = _floats(attrs.get("RescaleIntercept"))
    centers = _floats(attrs.get("WindowCenter"))
    widths = _floats(attrs.get("WindowWidth"))
    spacing, spacing_tag = _pixel_spacing(ds, attrs)
    laterality = _text(ds, "ImageLaterality") or _text(ds, "Laterality")
    modality = _text(ds, "Modality")
    rescale_type = str(attrs.get("RescaleType") or "").strip()
    if rescale_type in ("", "US") and modality == "CT" and slope and intercept:
        rescale_type = "HU"  # the CT Image IOD's rescale output is HU even when the type is left blank

    k = lambda name: meta_key(p.array, name)  # noqa: E731
    sample.arrays[p.array] = arr
    sample.meta.update(
        {
            k("modality"): modality,
            k("photometric_interpretation"): photometric,
            k("transfer_syntax"): str(ts),
            k("view_position"): _text(ds, "ViewPosition"),
            k("laterality"): laterality,
            k("study_instance_uid"): _text(ds, "StudyInstanceUID"),
            k("series_instance_uid"): _text(ds, "SeriesInstanceUID"),
            k("sop_instance_uid"): _text(ds, "SOPInstanceUID"),
            k("rows"): int(ds.get("Rows", 0) or 0),
            k("columns"): int(ds.get("Columns", 0) or 0),
            k("bits_stored"): int(ds.get("BitsStored", 0) or 0),
            k("number_of_frames"): n_frames,
            k("frame_index"): -1 if index is None and n_frames > 1 else (index or 0),
            k("channels"): int(channels),
            k("pixel_spacing"): [float(v) for v in spacing],
            k("pixel_spacing_tag"): spacing_tag,
            k("rescale_slope"): slope[0] if slope else 1.0,
            k("rescale_intercept"): intercept[0] if intercept else 0.0,
            k("pixel_units"): rescale_type,
            k("window_center"): centers[0] if centers else math.nan,
            k("window_width"): widths[0] if widths else math.nan,
            k("window_count"): min(len(centers), len(widths)),
        }
    )
    if path not in sample.sources:
        sample.sources.append(path)
    for name in ("PixelData", "FloatPixelData", "DoubleFloatPixelData"):
        if name in ds:
            del ds[name]  # the header is kept for the LUT steps; the pixel bytes are not
    sample.meta[_header_key(p.input)] = ds
    return sample


# -------------------------------------------------------------------------------------- modality LUT


class ModalityLutParams(StepParams):
    input: str = Field("image", description="sample input holding the DICOM file the array came from")
    array: str = Field("image", description="array to transform")


@step("dicom.modality_lut", ModalityLutParams)
def modality_lut(sample: Sample, p: ModalityLutParams) -> Sample:
    """Stored values -> modality values (e.g. HU), float32, by rescale or Modality LUT; colour untouched."""
    x = sample.array(p.array)
    path, ds = _header(sample, p.input)
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    if sample.meta.get(k("modality_lut")) is not None:
        raise ItemError(f"{path.name}: dicom.modality_lut applied twice to {p.array!r}")
    try:
        if _is_colour(sample, p.array, x):  # no modality LUT for colour: pixels pass through unchanged
            out, kind = x, "identity (colour)"
        elif ds.get("ModalityLUTSequence"):
            out, kind = _pixels_api.apply_modality_lut(x, ds).astype(np.float32), "lut"
        else:
            out, kind = _rescale(sample, p.array, x, ds)
    except ItemError:
        raise
    except Exception as exc:
        raise ItemError(f"{path.name}: cannot apply the modality LUT ({_why(exc)})") from None
    sample.arrays[p.array] = out
    sample.meta[k("modality_lut")] = kind
    return sample


def _rescale(sample: Sample, array: str, x: np.ndarray, ds: Dataset) -> tuple[np.ndarray, str]:
    index = int(_meta(sample, array, "frame_index", 0) or 0)
    stack = _pixels.layout(x, _channels(sample, array))[0]
    if stack and _has_frame_groups(ds):  # Enhanced multi-frame: each frame may have its own rescale
        pairs = [_slope_intercept(_frame_attrs(ds, i)) for i in range(x.shape[0])]
    else:
        pairs = [_slope_intercept(_frame_attrs(ds, max(index, 0)))] * (x.shape[0] if stack else 1)
    if all(s == 1.0 and b == 0.0 for s, b in pairs):
        return x.astype(np.float32), "identity"
    if not stack or len(set(pairs)) == 1:
        return _linear(x, *pairs[0]), "rescale"
    out = np.empty(x.shape, dtype=np.float32)
    for i, (s, b) in enumerate(pairs):
        out[i] = _linear(x[i], s, b)
    return out, "rescale"


def _linear(x: np.ndarray, slope: float, intercept: float) -> np.ndarray:
    """x * slope + intercept as float32; in float32 arithmetic when x converts exactly (<= 16-bit ints)."""
    if x.dtype.kind in "iub" and x.dtype.itemsize <= 2:
        y = x.astype(np.float32)
        if slope != 1.0:
            y *= np.float32(slope)
        if intercept != 0.0:
            y += np.float32(intercept)
        return y
    return (x.astype(np.float64) * slope + intercept).astype(np.float32)


def _slope_intercept(attrs: dict[str, Any]) -> tuple[float, float]:
    slope = _floats(attrs.get("RescaleSlope"))
    intercept = _floats(attrs.get("RescaleIntercept"))
    return (slope[0] if slope else 1.0), (intercept[0] if intercept else 0.0)


# ----------------------------------------------------------------------------------------- windowing


def _finish_voi(
    sample: Sample,
    array: str,
    y: np.ndarray,
    output: OutputDtype,
    invert_monochrome1: bool,
    source: str,
    center: float,
    width: float,
    function: str,
) -> Sample:
    """Common tail of the VOI steps: MONOCHROME1 -> bone bright, output dtype, metadata."""
    k = lambda name: meta_key(array, name)  # noqa: E731
    inverted = False
    if invert_monochrome1 and sample.meta.get(k("photometric_interpretation")) == "MONOCHROME1":
        y = 1.0 - y
        sample.meta[k("photometric_interpretation")] = "MONOCHROME2"
        inverted = True
    sample.arrays[array] = _pixels.unit_to_dtype(y, output)
    sample.meta.update(
        {
            k("voi_source"): source,
            k("voi_center"): float(center),
            k("voi_width"): float(width),
            k("voi_function"): function,
            k("monochrome1_inverted"): bool(sample.meta.get(k("monochrome1_inverted"), False) or inverted),
        }
    )
    return sample


class VoiLutParams(StepParams):
    input: str = Field("image", description="sample input holding the DICOM file the array came from")
    array: str = Field("image", description="array to transform")
    source: Literal["auto", "window", "lut"] = Field(
        "auto",
        description="auto: the VOI LUT Sequence if the file has one, else its window tags; window / lut: "
        "only that kind",
    )
    index: int = Field(0, ge=0, description="which window or LUT when the file has several (0 = first)")
    explanation: str | None = Field(
        None,
        description="pick the window whose WindowCenterWidthExplanation contains this text "
        "(case-insensitive) instead of `index`",
    )
    function: Literal["auto", "linear", "linear_exact", "sigmoid"] = Field(
        "auto", description="window function; auto: the file's VOILUTFunction (DICOM default LINEAR)"
    )
    missing: Literal["minmax", "error"] = Field(
        "minmax",
        description="no window/LUT in the file: minmax = centre (min+max)/2, width max-min, linear_exact "
        "(CLIMB's VinDr-CXR fallback), or fail the item",
    )
    invert_monochrome1: bool = Field(True, description="MONOCHROME1: output 1 - y so bone is bright")
    output: OutputDtype = Field(
        "float32", description="float32 in [0,1], or scaled to the full uint8 / uint16 range (rounded)"
    )


@step("dicom.voi_lut", VoiLutParams)
def voi_lut(sample: Sample, p: VoiLutParams) -> Sample:
    """The file's VOI LUT or window (choose which) to [0,1]; MONOCHROME1 is inverted so bone is bright."""
    x = sample.array(p.array)
    path, ds = _header(sample, p.input)
    if _is_colour(sample, p.array, x):
        lo, hi = _pixels.nominal_range(x)
        y = (x.astype(np.float32) - lo) / np.float32(hi - lo)
        return _finish_voi(sample, p.array, y, p.output, p.invert_monochrome1, "none (colour)", *_nan2, "")
    _require_modality_lut(sample, p.array, "dicom.voi_lut")
    try:
        return _voi(sample, p, x, path, ds)
    except ItemError:
        raise
    except ValueError as exc:
        raise ItemError(f"{path.name}: {exc}") from None
    except Exception as exc:
        raise ItemError(f"{path.name}: cannot apply the VOI LUT ({_why(exc)})") from None


_nan2 = (math.nan, math.nan)


def _voi(sample: Sample, p: VoiLutParams, x: np.ndarray, path: Path, ds: Dataset) -> Sample:
    index = int(_meta(sample, p.array, "frame_index", 0) or 0)
    attrs = _frame_attrs(ds, max(index, 0))
    luts = [
        item for item in (ds.get("VOILUTSequence") or []) if "LUTDescriptor" in item and "LUTData" in item
    ]
    centers, widths = _floats(attrs.get("WindowCenter")), _floats(attrs.get("WindowWidth"))
    n_windows = min(len(centers), len(widths))
    if luts and p.source in ("auto", "lut") and p.explanation is None:
        if p.index >= len(luts):
            raise ItemError(f"{path.name}: VOI LUT {p.index} asked for, the file has {len(luts)}")
        y = _apply_voi_sequence(x, ds, p.index)
        return _finish_voi(
            sample, p.array, y, p.output, p.invert_monochrome1, f"lut {p.index}", *_nan2, "lut"
        )
    if n_windows and p.source in ("auto", "window"):
        i = _choose_window(attrs, n_windows, p, path)
        function = p.function
        if function == "auto":
            name = str(attrs.get("VOILUTFunction") or "LINEAR").strip().upper()
            function = _VOI_FUNCTIONS.get(name, "linear")
        frames = _frame_windows(sample, p.array, x, ds, i)
        if frames is not None:  # Enhanced multi-frame with per-frame windows
            y = np.stack([_pixels.window(x[f], c, w, function) for f, (c, w) in enumerate(frames)])
        else:
            y = _pixels.window(x, centers[i], widths[i], function)
        return _finish_voi(
            sample, p.array, y, p.output, p.invert_monochrome1, f"window {i}", centers[i], widths[i], function
        )
    if p.missing == "error":
        what = {"auto": "VOI LUT or window", "window": "window", "lut": "VOI LUT"}[p.source]
        raise ItemError(f"{path.name}: the file has no {what}")
    center, width = _pixels.minmax_window(x)
    y = _pixels.window(x, center, width, "linear_exact")
    return _finish_voi(
        sample, p.array, y, p.output, p.invert_monochrome1, "minmax", center, width, "linear_exact"
    )


def _choose_window(attrs: dict[str, Any], n: int, p: VoiLutParams, path: Path) -> int:
    if p.explanation is None:
        if p.index >= n:
            raise ItemError(f"{path.name}: window {p.index} asked for, the file has {n}")
        return p.index
    names = _strings(attrs.get("WindowCenterWidthExplanation"))
    want = p.explanation.casefold()
    for i, name in enumerate(names[:n]):
        if want in name.casefold():
            return i
    raise ItemError(
        f"{path.name}: no window explanation contains {p.explanation!r} (explanations: {names or 'none'})"
    )


def _frame_windows(
    sample: Sample, array: str, x: np.ndarray, ds: Dataset, i: int
) -> list[tuple[float, float]] | None:
    if not (_pixels.layout(x, _channels(sample, array))[0] and _has_frame_groups(ds)):
        return None
    out = []
    for f in range(x.shape[0]):
        a = _frame_attrs(ds, f)
        c, w = _floats(a.get("WindowCenter")), _floats(a.get("WindowWidth"))
        if len(c) <= i or len(w) <= i:
            return None
        out.append((c[i], w[i]))
    return out if len(set(out)) > 1 else None


def _apply_voi_sequence(x: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    """VOI LUT Sequence item `index` applied, scaled to [0,1] by the LUT's bit depth (LUT Descriptor)."""
    item = ds.VOILUTSequence[index]
    bits = int(item.LUTDescriptor[2])
    work = x
    if x.dtype.kind == "f":  # LUT input must be integer: modality output rounded
        work = np.rint(x).astype(np.int64)
    out = _pixels_api.apply_voi(work, ds, index)
    return (out.astype(np.float32) / np.float32(2**bits - 1)).clip(0, 1)


class WindowParams(StepParams):
    array: str = Field("image", description="array to window (modality values, e.g. HU)")
    preset: WindowPreset | None = Field(
        None,
        description="named window (centre/width): pe 400/1000, lung -600/1500, ctpa 80/700, brixia 256/512, "
        "brain 40/80, bone 400/1800",
    )
    center: float | None = Field(None, description="window centre, with `width`, instead of a preset")
    width: float | None = Field(None, gt=0, description="window width, with `center`, instead of a preset")
    function: WindowFunction = Field(
        "linear_exact",
        description="linear_exact: clip((x-(c-w/2))/w), as CLIMB; linear: DICOM's default (c-0.5, w-1); "
        "sigmoid",
    )
    invert_monochrome1: bool = Field(True, description="MONOCHROME1: output 1 - y so bone is bright")
    output: OutputDtype = Field(
        "float32", description="float32 in [0,1], or scaled to the full uint8 / uint16 range (rounded)"
    )

    @model_validator(mode="after")
    def _one_window(self) -> WindowParams:
        explicit = self.center is not None or self.width is not None
        if self.preset is not None and explicit:
            raise ValueError("give either a preset or center/width, not both")
        if self.preset is None and (self.center is None or self.width is None):
            raise ValueError("give a preset or both center and width")
        if self.function == "linear" and self.width is not None and self.width < 1:
            raise ValueError("the linear window function needs width >= 1")
        return self


@step("dicom.window", WindowParams)
def window(sample: Sample, p: WindowParams) -> Sample:
    """Explicit window (CLIMB's pe/lung/ctpa presets, brain, bone, or centre/width) to [0,1] or uint8/16."""
    x = sample.array(p.array)
    _require_modality_lut(sample, p.array, "dicom.window")
    center, width = WINDOW_PRESETS[p.preset] if p.preset else (float(p.center), float(p.width))  # type: ignore[arg-type]
    try:
        y = _pixels.window(x, center, width, p.function)
    except ValueError as exc:
        raise ItemError(f"dicom.window: {exc}") from None
    source = f"preset {p.preset}" if p.preset else "explicit"
    return _finish_voi(sample, p.array, y, p.output, p.invert_monochrome1, source, center, width, p.function)


# --------------------------------------------------------------------------------------- monochrome1


class Monochrome1Params(StepParams):
    array: str = Field("image", description="array to invert")
    range: Literal["auto", "data"] = Field(
        "auto",
        description="auto: floats in [0,1] -> 1-x, uint8 -> 255-x, raw stored integers -> within the "
        "bits_stored range, anything else min+max-x; data: always min+max-x",
    )


@step("dicom.monochrome1", Monochrome1Params)
def monochrome1(sample: Sample, p: Monochrome1Params) -> Sample:
    """Invert a MONOCHROME1 image (min shown white) so bone is bright; MONOCHROME2 images are left alone."""
    k = lambda name: meta_key(p.array, name)  # noqa: E731
    x = sample.array(p.array)
    inverted = False
    if sample.meta.get(k("photometric_interpretation")) == "MONOCHROME1":
        lo, hi = _invert_range(sample, p, x)
        sample.arrays[p.array] = _pixels.invert(x, lo, hi)
        sample.meta[k("photometric_interpretation")] = "MONOCHROME2"
        inverted = True
    sample.meta[k("monochrome1_inverted")] = bool(
        sample.meta.get(k("monochrome1_inverted"), False) or inverted
    )
    return sample


def _invert_range(sample: Sample, p: Monochrome1Params, x: np.ndarray) -> tuple[float, float]:
    lo, hi = float(np.min(x)), float(np.max(x))
    if p.range == "data":
        return lo, hi
    if x.dtype.kind == "f" and lo >= 0.0 and hi <= 1.0:
        return 0.0, 1.0
    if x.dtype == np.uint8:
        return 0.0, 255.0
    bits = int(_meta(sample, p.array, "bits_stored", 0) or 0)
    raw = _meta(sample, p.array, "modality_lut") is None and x.dtype.kind in "iu"
    if raw and 0 < bits <= 8 * x.dtype.itemsize:
        if x.dtype.kind == "u":
            return 0.0, float(2**bits - 1)
        return float(-(2 ** (bits - 1))), float(2 ** (bits - 1) - 1)
    return lo, hi
