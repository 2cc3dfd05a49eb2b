"""Tests of the DICOM steps on real files (pydicom's bundled test files and pydicom-data's `data_store`) and
on small DICOMs written with pydicom into tmp_path: every transfer syntax, compressed == uncompressed where
both exist, HU, windows, VOI/modality LUT sequences, MONOCHROME1, colour, multi-frame, every failure path.
A test whose file is not installed is skipped with the file's name.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pydicom
import pytest
from pydantic import ValidationError
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder, pixel_array
from pydicom.uid import (
    UID,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from climb_cli.errors import ItemError
from climb_cli.steps import dicom as dicom_steps
from climb_cli.steps.base import Sample, registry

# ------------------------------------------------------------------------------------------- helpers


def run(sample: Sample, name: str, **params: Any) -> Sample:
    """Validate `params` the way a recipe is validated, then run the step."""
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def dcm_file(name: str) -> Path:
    """A real DICOM from pydicom or pydicom-data, or skip the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns when it cannot download a file it does not ship
        from pydicom.data import get_testdata_file

        found = get_testdata_file(name)
    if found is None:
        pytest.skip(
            f"DICOM test file {name} is not installed (pydicom-data provides it: pip install pydicom-data)"
        )
    return Path(found)


def stored(name: str, **kw: Any) -> np.ndarray:
    """What pydicom itself decodes (native byte order): the reference for climb's output."""
    arr = pixel_array(pydicom.dcmread(dcm_file(name)), **kw)  # a Dataset: also handles deflate
    return arr.astype(arr.dtype.newbyteorder("="))


def sample_for(path: Path) -> Sample:
    return Sample(id=path.stem, inputs={"image": path})


def read(name_or_path: str | Path, **params: Any) -> Sample:
    path = name_or_path if isinstance(name_or_path, Path) else dcm_file(name_or_path)
    return run(sample_for(path), "dicom.read", **params)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    transfer_syntax: UID = ExplicitVRLittleEndian,
    **tags: Any,
) -> Path:
    """A minimal single-frame Secondary Capture DICOM holding `pixels` (uint8/uint16/int16, 2-D)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.Modality = "OT"
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = pixels.dtype.itemsize * 8
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    for key, value in tags.items():
        setattr(ds, key, value)
    ds.PixelData = np.ascontiguousarray(pixels).tobytes()
    if transfer_syntax.is_encapsulated:
        from pydicom.encaps import encapsulate

        ds.PixelData = encapsulate([ds.PixelData])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    ds.save_as(path, enforce_file_format=True)
    return path


# ------------------------------------------------------------------------------------- transfer syntaxes


MR_VARIANTS = [
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_jp2klossless.dcm",
]


@pytest.mark.parametrize("name", MR_VARIANTS)
def test_mr_small_decodes_identically_in_every_transfer_syntax(name: str) -> None:
    reference = stored("MR_small.dcm")
    s = read(name)
    image = s.arrays["image"]
    assert image.dtype.isnative and image.dtype == np.int16
    np.testing.assert_array_equal(image, reference)
    assert s.meta["transfer_syntax"] == str(pydicom.dcmread(dcm_file(name)).file_meta.TransferSyntaxUID)
    assert s.meta["pixel_spacing"] == pytest.approx([0.3125, 0.3125])
    assert s.sources == [dcm_file(name)]


@pytest.mark.parametrize(
    ("compressed", "uncompressed"),
    [
        ("emri_small_RLE.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
        ("emri_small_jpeg_ls_lossless.dcm", "emri_small.dcm"),
        ("emri_small_big_endian.dcm", "emri_small.dcm"),
        ("693_J2KR.dcm", "693_UNCR.dcm"),
        ("US1_J2KR.dcm", "US1_UNCR.dcm"),
        ("SC_rgb_rle.dcm", "SC_rgb.dcm"),
        ("SC_rgb_jpeg_gdcm.dcm", "SC_rgb.dcm"),
        ("SC_rgb_gdcm_KY.dcm", "SC_rgb.dcm"),
    ],
)
def test_lossless_compressed_equals_uncompressed(compressed: str, uncompressed: str) -> None:
    a = read(compressed).arrays["image"]
    b = read(uncompressed).arrays["image"]
    assert a.shape == b.shape
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    ("name", "shape", "dtype"),
    [
        ("JPGExtended.dcm", (1024, 256), np.uint16),  # JPEG extended 12-bit: only pylibjpeg decodes it
        ("JPEG-LL.dcm", (1024, 256), np.int16),  # JPEG lossless SV1
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", (768, 1024), np.uint8),
        ("JPEG2000.dcm", (1024, 256), np.int16),
        ("JPEGLSNearLossless_16.dcm", None, None),
        ("SC_rgb_jpeg_dcmtk.dcm", (100, 100, 3), np.uint8),  # JPEG baseline, YBR_FULL
        ("image_dfl.dcm", (512, 512), np.uint8),  # deflated explicit VR little endian
    ],
)
def test_compressed_syntaxes_decode_like_pydicom(name: str, shape: tuple | None, dtype: type | None) -> None:
    s = read(name)
    image = s.arrays["image"]
    if shape is not None:
        assert image.shape == shape and image.dtype == dtype
    np.testing.assert_array_equal(image, stored(name))


def test_jpeg_ybr_422_comes_out_rgb_matching_dcmtks_decode() -> None:
    s = read("SC_rgb_dcmtk_+eb+cy+np.dcm")  # JPEG baseline, YBR_FULL_422
    reference = stored("SC_rgb_dcmtk_ebcynp_dcmd.dcm")  # the same JPEG decompressed by dcmtk, stored as RGB
    assert s.meta["photometric_interpretation"] == "RGB" and s.meta["channels"] == 3
    assert np.abs(s.arrays["image"].astype(int) - reference.astype(int)).max() <= 2


def test_uncompressed_ybr_full_is_converted_to_rgb() -> None:
    s = read("SC_ybr_full_uncompressed.dcm")
    rgb = stored("SC_rgb.dcm")
    assert s.meta["photometric_interpretation"] == "RGB"
    assert np.abs(s.arrays["image"].astype(int) - rgb.astype(int)).max() <= 6  # YCbCr rounding only
    assert np.abs(s.arrays["image"].astype(int) - rgb.astype(int)).mean() < 1.0


def test_palette_colour_is_expanded_to_rgb() -> None:
    path = dcm_file("examples_palette.dcm")
    s = read(path)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(s.arrays["image"], apply_color_lut(ds.pixel_array, ds))
    assert s.meta["photometric_interpretation"] == "RGB" and s.meta["channels"] == 3


# ------------------------------------------------------------------------------------------ modality LUT


def test_ct_hu_equals_stored_times_slope_plus_intercept() -> None:
    raw = stored("CT_small.dcm")
    s = read("CT_small.dcm")
    assert s.meta["rescale_slope"] == 1.0 and s.meta["rescale_intercept"] == -1024.0
    s = run(s, "dicom.modality_lut")
    hu = s.arrays["image"]
    assert hu.dtype == np.float32
    np.testing.assert_array_equal(hu, raw.astype(np.float64) * 1.0 - 1024.0)
    assert s.meta["modality_lut"] == "rescale" and s.meta["pixel_units"] == "HU"
    assert s.meta["modality"] == "CT"
    assert s.meta["pixel_spacing"] == pytest.approx([0.661468, 0.661468])
    assert s.meta["pixel_spacing_tag"] == "PixelSpacing"


def test_fractional_slope_is_applied(tmp_path: Path) -> None:
    raw = stored("MR2_UNCI.dcm")  # RescaleSlope 3.774114, RescaleIntercept 0.000061
    s = run(read("MR2_UNCI.dcm"), "dicom.modality_lut")
    expected = raw.astype(np.float64) * 3.774114 + 0.000061
    np.testing.assert_allclose(s.arrays["image"], expected, rtol=1e-6)


def test_modality_lut_sequence_matches_pydicom() -> None:
    path = dcm_file("mlut_18.dcm")
    ds = pydicom.dcmread(path)
    s = run(read(path), "dicom.modality_lut")
    np.testing.assert_array_equal(
        s.arrays["image"], apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    )
    assert s.meta["modality_lut"] == "lut"


def test_enhanced_ct_takes_rescale_and_spacing_from_functional_groups() -> None:
    raw = stored("eCT_Supplemental.dcm")  # 2 frames, rescale only in the shared functional groups
    s = read("eCT_Supplemental.dcm")
    assert s.arrays["image"].shape == (2, 512, 512) and s.meta["frame_index"] == -1
    assert s.meta["pixel_spacing"] == pytest.approx([0.388672, 0.388672])
    assert s.meta["rescale_intercept"] == -1024.0 and s.meta["window_center"] == 49.0
    s = run(s, "dicom.modality_lut")
    np.testing.assert_array_equal(s.arrays["image"], raw.astype(np.float32) - 1024.0)


def test_modality_lut_twice_is_an_error() -> None:
    s = run(read("CT_small.dcm"), "dicom.modality_lut")
    with pytest.raises(ItemError, match="twice"):
        run(s, "dicom.modality_lut")


def test_later_steps_reread_the_header_when_not_cached() -> None:
    s = read("CT_small.dcm")
    del s.meta["_dicom_header:image"]  # the private hand-over is gone: the header is read again
    s = run(s, "dicom.modality_lut")
    assert s.arrays["image"].min() == stored("CT_small.dcm").min() - 1024


# -------------------------------------------------------------------------------------------- windows


def test_window_presets_carry_climbs_values() -> None:
    assert dicom_steps.WINDOW_PRESETS["pe"] == (400.0, 1000.0)  # RSNA PE, RadFusion: [-100, 900]
    assert dicom_steps.WINDOW_PRESETS["lung"] == (-600.0, 1500.0)  # LNDb, LIDC: [-1350, 150]
    assert dicom_steps.WINDOW_PRESETS["ctpa"] == (80.0, 700.0)  # RSPECT / INSPECT "700/80": [-270, 430]
    assert dicom_steps.WINDOW_PRESETS["brain"] == (40.0, 80.0)
    assert dicom_steps.WINDOW_PRESETS["bone"] == (400.0, 1800.0)


@pytest.mark.parametrize(
    ("preset", "low", "high"), [("pe", -100, 900), ("lung", -1350, 150), ("ctpa", -270, 430)]
)
def test_ct_window_clamps_exactly(preset: str, low: float, high: float) -> None:
    s = run(read("CT_small.dcm"), "dicom.modality_lut")
    hu = s.arrays["image"].astype(np.float64)
    assert (hu >= high).any() and ((hu <= low).any() or preset == "lung")  # CT_small's HU: -896..1167
    s = run(s, "dicom.window", preset=preset)
    y = s.arrays["image"]
    assert y.dtype == np.float32
    assert np.all(y[hu <= low] == 0.0)
    assert np.all(y[hu >= high] == 1.0)
    inside = (hu > low) & (hu < high)
    assert inside.any()
    np.testing.assert_allclose(y[inside], (hu[inside] - low) / (high - low), atol=1e-6)
    assert s.meta["voi_source"] == f"preset {preset}"
    assert (s.meta["voi_center"], s.meta["voi_width"]) == dicom_steps.WINDOW_PRESETS[preset]


def test_window_on_stored_values_needs_the_modality_lut_first() -> None:
    with pytest.raises(ItemError, match="dicom.modality_lut"):
        run(read("CT_small.dcm"), "dicom.window", preset="pe")


def test_window_output_dtypes() -> None:
    s = run(read("CT_small.dcm"), "dicom.modality_lut")
    hu = s.arrays["image"].copy()
    s8 = run(
        Sample("a", s.inputs, {"image": hu.copy()}, dict(s.meta)), "dicom.window", preset="pe", output="uint8"
    )
    s16 = run(
        Sample("b", s.inputs, {"image": hu.copy()}, dict(s.meta)),
        "dicom.window",
        preset="pe",
        output="uint16",
    )
    expected = np.clip((hu.astype(np.float64) + 100) / 1000, 0, 1)
    assert s8.arrays["image"].dtype == np.uint8 and s16.arrays["image"].dtype == np.uint16
    assert np.abs(s8.arrays["image"] - np.rint(expected * 255)).max() <= 1
    assert np.abs(s16.arrays["image"].astype(int) - np.rint(expected * 65535)).max() <= 1
    assert s8.arrays["image"].min() == 0 and s8.arrays["image"].max() == 255


def test_dicom_window_functions_follow_the_standard() -> None:
    x = np.array([-10.0, 0.0, 0.5, 1.0, 39.5, 40.0, 79.0, 79.5, 80.0, 200.0], dtype=np.float32)
    meta = {"modality_lut": "identity"}
    lin = run(
        Sample("a", {}, {"image": x.copy()}, dict(meta)),
        "dicom.window",
        center=40,
        width=80,
        function="linear",
    )
    exact = run(Sample("b", {}, {"image": x.copy()}, dict(meta)), "dicom.window", center=40, width=80)
    sig = run(
        Sample("c", {}, {"image": x.copy()}, dict(meta)),
        "dicom.window",
        center=40,
        width=80,
        function="sigmoid",
    )
    # LINEAR (PS3.3 C.11.2.1.2.1): 0 at x <= c - 0.5 - (w-1)/2 = 0, 1 at x > c - 0.5 + (w-1)/2 = 79
    expected = np.clip((x.astype(np.float64) - 39.5) / 79 + 0.5, 0, 1)
    np.testing.assert_allclose(lin.arrays["image"], expected, atol=1e-6)
    assert lin.arrays["image"][1] == 0.0 and lin.arrays["image"][6] == 1.0
    np.testing.assert_allclose(exact.arrays["image"], np.clip(x / 80.0, 0, 1), atol=1e-7)
    np.testing.assert_allclose(sig.arrays["image"], 1 / (1 + np.exp(-4 * (x - 40.0) / 80)), rtol=1e-6)
    assert sig.arrays["image"][5] == pytest.approx(0.5)


def test_window_parameters_are_validated() -> None:
    params = registry()["dicom.window"].params
    with pytest.raises(ValidationError):
        params.model_validate({"preset": "pe", "center": 40, "width": 80})
    with pytest.raises(ValidationError):
        params.model_validate({"center": 40})
    with pytest.raises(ValidationError):
        params.model_validate({"preset": "abdomen"})
    with pytest.raises(ValidationError):
        params.model_validate({"center": 0, "width": 0})


def test_voi_lut_uses_the_files_window_with_linear_by_default() -> None:
    raw = stored("MR_small.dcm").astype(np.float64)  # WindowCenter 600, WindowWidth 1600
    s = run(run(read("MR_small.dcm"), "dicom.modality_lut"), "dicom.voi_lut")
    assert s.meta["voi_source"] == "window 0" and s.meta["voi_function"] == "linear"
    assert (s.meta["voi_center"], s.meta["voi_width"]) == (600.0, 1600.0)
    np.testing.assert_allclose(s.arrays["image"], np.clip((raw - 599.5) / 1599 + 0.5, 0, 1), atol=1e-6)


def test_voi_lut_falls_back_to_climbs_minmax_window() -> None:
    raw = stored("CT_small.dcm").astype(np.float64) - 1024  # CT_small has no window tags
    s = run(run(read("CT_small.dcm"), "dicom.modality_lut"), "dicom.voi_lut")
    assert s.meta["voi_source"] == "minmax"
    np.testing.assert_allclose(s.arrays["image"], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-6)
    with pytest.raises(ItemError, match="no VOI LUT or window"):
        run(run(read("CT_small.dcm"), "dicom.modality_lut"), "dicom.voi_lut", missing="error")


def test_voi_lut_sequence_matches_pydicom() -> None:
    path = dcm_file("vlut_04.dcm")
    ds = pydicom.dcmread(path)
    s = run(run(read(path), "dicom.modality_lut"), "dicom.voi_lut")
    bits = int(ds.VOILUTSequence[0].LUTDescriptor[2])
    expected = apply_voi(ds.pixel_array, ds, 0).astype(np.float64) / (2**bits - 1)
    np.testing.assert_allclose(s.arrays["image"], expected, atol=1e-6)
    assert s.meta["voi_source"] == "lut 0"


def test_voi_lut_chooses_among_several_windows(tmp_path: Path) -> None:
    pixels = np.arange(-1200, 1200, 10, dtype=np.int16).reshape(16, 15)
    path = write_dicom(
        tmp_path / "two_windows.dcm",
        pixels,
        WindowCenter=[40, -600],
        WindowWidth=[400, 1500],
        WindowCenterWidthExplanation=["SOFT TISSUE", "LUNG"],
        RescaleSlope=1,
        RescaleIntercept=0,
    )
    base = run(read(path), "dicom.modality_lut")
    assert base.meta["window_count"] == 2 and base.meta["window_center"] == 40.0
    by_name = run(base, "dicom.voi_lut", explanation="lung", function="linear_exact")
    assert (by_name.meta["voi_center"], by_name.meta["voi_width"]) == (-600.0, 1500.0)
    np.testing.assert_allclose(by_name.arrays["image"], np.clip((pixels + 1350) / 1500, 0, 1), atol=1e-6)
    by_index = run(run(read(path), "dicom.modality_lut"), "dicom.voi_lut", index=1)
    assert by_index.meta["voi_source"] == "window 1"
    with pytest.raises(ItemError, match="window 2 asked for, the file has 2"):
        run(run(read(path), "dicom.modality_lut"), "dicom.voi_lut", index=2)
    with pytest.raises(ItemError, match="no window explanation contains 'bone'"):
        run(run(read(path), "dicom.modality_lut"), "dicom.voi_lut", explanation="bone")


# ----------------------------------------------------------------------------------------- MONOCHROME1


def test_monochrome1_cr_comes_out_with_bone_bright() -> None:
    raw = stored("RG3_UNCR.dcm").astype(np.float64)  # real CR, MONOCHROME1, WindowCenter/Width in the file
    s = read("RG3_UNCR.dcm")
    assert s.meta["photometric_interpretation"] == "MONOCHROME1" and s.meta["modality"] == "CR"
    c, w = s.meta["window_center"], s.meta["window_width"]
    s = run(run(s, "dicom.modality_lut"), "dicom.voi_lut", function="linear_exact")
    y = s.arrays["image"]
    np.testing.assert_allclose(y, 1 - np.clip((raw - (c - w / 2)) / w, 0, 1), atol=1e-6)
    assert s.meta["photometric_interpretation"] == "MONOCHROME2" and s.meta["monochrome1_inverted"] is True
    # the brightest output is where the stored value was lowest (MONOCHROME1: low = white)
    assert y.flat[np.argmin(raw)] == y.max() and y.flat[np.argmax(raw)] == y.min()


def test_monochrome1_j2k_lossless_equals_uncompressed_after_windowing() -> None:
    a = run(run(read("RG3_J2KR.dcm"), "dicom.modality_lut"), "dicom.voi_lut", output="uint8")
    b = run(run(read("RG3_UNCR.dcm"), "dicom.modality_lut"), "dicom.voi_lut", output="uint8")
    np.testing.assert_array_equal(a.arrays["image"], b.arrays["image"])


def test_invert_monochrome1_can_be_turned_off() -> None:
    s = run(
        run(read("RG1_UNCR.dcm", frames="first"), "dicom.modality_lut"),
        "dicom.voi_lut",
        invert_monochrome1=False,
    )
    assert s.meta["photometric_interpretation"] == "MONOCHROME1" and s.meta["monochrome1_inverted"] is False


def test_monochrome1_step_inverts_stored_values_within_bits_stored(tmp_path: Path) -> None:
    pixels = (np.arange(200, dtype=np.uint16).reshape(10, 20) * 100).astype(np.uint16)
    path = write_dicom(tmp_path / "m1.dcm", pixels, photometric="MONOCHROME1", BitsStored=15, HighBit=14)
    s = run(read(path), "dicom.monochrome1")
    np.testing.assert_array_equal(s.arrays["image"], (2**15 - 1) - pixels.astype(np.int64))
    assert s.meta["photometric_interpretation"] == "MONOCHROME2" and s.meta["monochrome1_inverted"] is True
    again = run(s, "dicom.monochrome1")  # now MONOCHROME2: left alone
    np.testing.assert_array_equal(again.arrays["image"], s.arrays["image"])
    assert again.meta["monochrome1_inverted"] is True


def test_monochrome1_step_on_unit_floats_and_on_monochrome2() -> None:
    s = Sample("a", {}, {"image": np.array([[0.0, 0.25], [0.5, 1.0]], np.float32)})
    s.meta["photometric_interpretation"] = "MONOCHROME1"
    s = run(s, "dicom.monochrome1")
    np.testing.assert_array_equal(s.arrays["image"], [[1.0, 0.75], [0.5, 0.0]])
    m2 = run(read("CT_small.dcm"), "dicom.monochrome1")
    np.testing.assert_array_equal(m2.arrays["image"], stored("CT_small.dcm"))
    assert m2.meta["monochrome1_inverted"] is False


# ----------------------------------------------------------------------------------------- multi-frame


def test_multiframe_all_first_middle() -> None:
    frames = stored("emri_small.dcm")  # Enhanced MR, 10 frames
    s = read("emri_small.dcm")
    np.testing.assert_array_equal(s.arrays["image"], frames)
    assert s.meta["number_of_frames"] == 10 and s.meta["frame_index"] == -1
    first = read("emri_small.dcm", frames="first")
    np.testing.assert_array_equal(first.arrays["image"], frames[0])
    assert first.meta["frame_index"] == 0
    middle = read("emri_small_RLE.dcm", frames="middle")
    np.testing.assert_array_equal(middle.arrays["image"], frames[5])
    assert middle.meta["frame_index"] == 5


def test_multiframe_ultrasound_decodes_only_the_asked_frame() -> None:
    path = dcm_file("color3d_jpeg_baseline.dcm")  # real US, 120 frames, JPEG baseline YBR_FULL_422
    s = read(path, frames="middle")
    assert s.arrays["image"].shape == (480, 640, 3) and s.meta["frame_index"] == 60
    np.testing.assert_array_equal(s.arrays["image"], pixel_array(path, index=60))
    assert s.meta["modality"] == "US" and s.meta["photometric_interpretation"] == "RGB"


def test_multiframe_window_applies_to_every_frame() -> None:
    path = dcm_file("examples_ybr_color.dcm")  # 30 colour frames: the VOI step scales colour to [0,1]
    s = run(run(read(path), "dicom.modality_lut"), "dicom.voi_lut", output="uint8")
    assert s.arrays["image"].shape == (30, 240, 320, 3)
    np.testing.assert_array_equal(s.arrays["image"], pixel_array(path))
    assert s.meta["voi_source"] == "none (colour)"


# -------------------------------------------------------------------------------------------- metadata


def test_metadata_is_kept_with_stable_types() -> None:
    ct = read("CT_small.dcm").meta
    cr = read("RG1_UNCR.dcm").meta
    us = read("US1_UNCR.dcm").meta
    assert ct.keys() == cr.keys() == us.keys()
    for key in ct:
        assert type(ct[key]) is type(cr[key]) is type(us[key]), key
    assert cr["view_position"] == "PA" and cr["bits_stored"] == 15
    assert math.isnan(cr["pixel_spacing"][0]) and cr["pixel_spacing_tag"] == ""  # the file says 0\0
    assert ct["study_instance_uid"] == pydicom.dcmread(dcm_file("CT_small.dcm")).StudyInstanceUID
    assert (ct["rows"], ct["columns"], ct["number_of_frames"]) == (128, 128, 1)
    assert us["channels"] == 3 and ct["channels"] == 1
    assert math.isnan(ct["window_center"]) and ct["window_count"] == 0


def test_another_array_name_prefixes_its_metadata(tmp_path: Path) -> None:
    s = Sample("x", {"brain": dcm_file("CT_small.dcm")})
    s = run(s, "dicom.read", input="brain", array="brain")
    s = run(
        run(s, "dicom.modality_lut", input="brain", array="brain"),
        "dicom.window",
        array="brain",
        preset="brain",
    )
    assert set(s.arrays) == {"brain"}
    assert s.meta["brain_modality"] == "CT" and s.meta["brain_voi_source"] == "preset brain"
    assert not any(k == "modality" for k in s.meta)


def test_dicom_rows_round_trip_through_a_shard(tmp_path: Path) -> None:
    from climb_cli.index import Item
    from climb_cli.shards import ShardWriter, build_schema, to_row

    items, samples = [], []
    for name in ("CT_small.dcm", "693_UNCI.dcm"):
        s = run(run(read(name), "dicom.modality_lut"), "dicom.window", preset="pe")
        s = run(s, "image.resize", long_side=64)
        items.append(Item(id=name, split="train", labels=(), inputs={"image": name}))
        samples.append(s)
    schema = build_schema(samples[0], items[0], [], False)
    writer = ShardWriter(schema, tmp_path / "train-00000.parquet", 10, "zstd")
    for item, s in zip(items, samples, strict=True):
        writer.add(to_row(schema, item, s, [], [], "h"))
    writer.commit()
    table = pq.read_table(tmp_path / "train-00000.parquet")
    for i, s in enumerate(samples):
        image = np.asarray(table.column("image")[i].values).reshape(table.column("image_shape")[i].as_py())
        np.testing.assert_array_equal(image, s.arrays["image"])
        assert table.column("voi_source")[i].as_py() == "preset pe"
    spacing = table.column("pixel_spacing")[1].as_py()
    assert spacing == pytest.approx([0.478516 * 8, 0.478516 * 8])  # 512 -> 64: spacing follows the resize


# ---------------------------------------------------------------------------------------------- errors


def test_garbage_is_an_item_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.dcm"
    path.write_bytes(b"this is not a DICOM file at all " * 40)
    with pytest.raises(ItemError, match=r"scan\.dcm: not a DICOM file.*force"):
        read(path)
    with pytest.raises(ItemError, match=r"scan\.dcm: no pixel data"):
        read(path, force=True)


def test_missing_file_is_an_item_error(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match=r"gone\.dcm: file not found"):
        read(tmp_path / "gone.dcm")


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (
            "MR_truncated.dcm",
            r"MR_truncated\.dcm: cannot decode Explicit VR Little Endian.*less than expected",
        ),
        ("JPEG-lossy.dcm", r"JPEG-lossy\.dcm: cannot decode JPEG Extended"),
        ("rtplan.dcm", r"rtplan\.dcm: no pixel data \(RT Plan Storage\)"),
        ("meta_missing_tsyntax.dcm", r"meta_missing_tsyntax\.dcm: no transfer syntax"),
    ],
)
def test_broken_real_files_are_item_errors(name: str, reason: str) -> None:
    with pytest.raises(ItemError, match=reason):
        read(name)


def test_force_reads_a_file_without_preamble_and_infers_the_transfer_syntax() -> None:
    path = dcm_file("OT-PAL-8-face.dcm")  # no file meta, no 'DICM': real palette image
    with pytest.raises(ItemError, match="not a DICOM file"):
        read(path)
    s = read(path, force=True)
    assert s.arrays["image"].shape == (480, 640, 3) and s.meta["transfer_syntax"] == "1.2.840.10008.1.2"


def test_unsupported_transfer_syntax_names_it(tmp_path: Path) -> None:
    path = write_dicom(
        tmp_path / "video.dcm", np.zeros((8, 8), np.uint8), transfer_syntax=UID("1.2.840.10008.1.2.4.100")
    )
    with pytest.raises(ItemError, match=r"video\.dcm: no pixel decoder for MPEG2 Main Profile / Main Level"):
        read(path)


def test_missing_codec_names_the_transfer_syntax_and_package(monkeypatch: pytest.MonkeyPatch) -> None:
    decoder = get_decoder(JPEG2000Lossless)
    monkeypatch.setattr(decoder, "_available", {})
    monkeypatch.setattr(decoder, "_unavailable", {"pylibjpeg": ("pylibjpeg>=2.0", "pylibjpeg-openjpeg>=2.0")})
    with pytest.raises(
        ItemError, match=r"MR_small_jp2klossless\.dcm: missing codec for JPEG 2000.*pylibjpeg-openjpeg"
    ):
        read("MR_small_jp2klossless.dcm")


def test_asking_for_an_absent_plugin_is_an_item_error() -> None:
    if "gdcm" in get_decoder(JPEG2000Lossless).available_plugins:
        pytest.skip("python-gdcm is installed here")
    with pytest.raises(ItemError, match=r"plugin 'gdcm' is not available .*python-gdcm"):
        read("MR_small_jp2klossless.dcm", plugin="gdcm")
    s = read("MR_small_jp2klossless.dcm", plugin="pylibjpeg")
    np.testing.assert_array_equal(s.arrays["image"], stored("MR_small.dcm"))
