"""Tests of the volume steps: DICOM series assembly (generated series with exact geometry, real pydicom
CT/J2K/12-bit JPEG/enhanced CT pixels), NIfTI/MHA/MHD/NRRD reading (generated and nibabel's real files),
reorientation, resampling, crop/pad, slice resize, HU windowing and CLIMB's slice windows.

The geometry tests place a sphere at known PHYSICAL coordinates in a volume with anisotropic spacing and a
permuted/flipped direction, write it as NIfTI, MHA and a DICOM series, and check after read -> reorient ->
resample that the sphere's centroid, computed from the output array and the output meta alone, is within
half a voxel of the true centre and that its volume is right.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydantic import ValidationError
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, registry

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
BG, FG = -1000.0, 1000.0
RADIUS = 9.0
SPACING = np.array([0.8, 1.1, 2.5])  # x, y, z (ITK order)
SIZE = (40, 30, 14)  # nx, ny, nz
ORIGIN = np.array([12.0, -30.0, 40.0])
CENTRE_INDEX = np.array([21.3, 15.7, 7.2])  # continuous (i, j, k) of the centre: off-centre on every axis
#: i runs Inferior, j Left, k Anterior (right-handed); and an axis-aligned left-handed one (k runs Inferior)
DIRECTIONS = {
    "ILA": np.array([[0.0, 1, 0], [0, 0, -1], [-1, 0, 0]]),
    "LPI": np.diag([1.0, 1, -1]),
}


def run(sample: Sample, name: str, **params: Any) -> Sample:
    """Validate `params` the way a recipe is validated, then run the step."""
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def sample_of(**inputs: Path) -> Sample:
    return Sample(id="item", inputs=dict(inputs))


# ------------------------------------------------------------------------------------- generated data


def sphere_volume(direction: np.ndarray, centre_index: np.ndarray = CENTRE_INDEX, sub: int = 4) -> np.ndarray:
    """(z, y, x) floats: BG outside, FG inside a RADIUS mm sphere, partial voxels by sub^3 supersampling."""
    centre = ORIGIN + direction @ (SPACING * centre_index)
    nx, ny, nz = SIZE
    fine = [(np.arange(n * sub) + 0.5) / sub - 0.5 for n in (nx, ny, nz)]  # voxel coordinates of sub-samples
    kk, jj, ii = np.meshgrid(fine[2], fine[1], fine[0], indexing="ij")
    ijk = np.stack([ii, jj, kk], axis=-1) * SPACING
    points = ORIGIN + ijk @ direction.T
    inside = (np.sum((points - centre) ** 2, axis=-1) <= RADIUS**2).astype(np.float64)
    frac = inside.reshape(nz, sub, ny, sub, nx, sub).mean(axis=(1, 3, 5))
    return BG + (FG - BG) * frac


def true_centre(direction: np.ndarray, centre_index: np.ndarray = CENTRE_INDEX) -> np.ndarray:
    return ORIGIN + direction @ (SPACING * centre_index)


def make_image(arr: np.ndarray, direction: np.ndarray) -> sitk.Image:
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING.tolist())
    img.SetOrigin(ORIGIN.tolist())
    img.SetDirection(direction.ravel().tolist())
    return img


def write_series(
    img: sitk.Image, folder: Path, series_uid: str | None = None, prefix: str = "s", modality: str = "CT"
) -> list[Path]:
    """Write a 3-D int16 image as a DICOM series, one file per slice, with position/orientation tags."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    paths = []
    for k in range(img.GetDepth()):
        sl = img[:, :, k : k + 1]
        for tag, value in {
            "0020|000e": series_uid,
            "0020|000d": study_uid,
            "0008|0018": generate_uid(),
            "0008|0060": modality,
            "0020|0013": str(k + 1),
            "0028|1052": "0",
            "0028|1053": "1",
        }.items():
            sl.SetMetaData(tag, value)
        path = folder / f"{prefix}{k:03d}.dcm"
        writer.SetFileName(str(path))
        writer.Execute(sl)
        paths.append(path)
    return paths


def sphere_stats(sample: Sample, array: str = "volume") -> tuple[np.ndarray, float]:
    """Physical centroid (LPS mm) and volume (mm^3) of the sphere, from the array and meta geometry only."""
    arr = sample.arrays[array].astype(np.float64)
    prefix = "" if array == "volume" else f"{array}_"
    assert sample.meta[f"{prefix}axes"] == "zyx"
    spacing = np.array(sample.meta[f"{prefix}spacing"])
    origin = np.array(sample.meta[f"{prefix}origin"])
    direction = np.array(sample.meta[f"{prefix}direction"]).reshape(3, 3)
    w = np.clip((arr - BG) / (FG - BG), 0, 1)
    k, j, i = np.indices(arr.shape)
    total = w.sum()
    mean_ijk = np.array([(w * i).sum(), (w * j).sum(), (w * k).sum()]) / total
    return origin + direction @ (spacing * mean_ijk), float(total * np.prod(spacing))


SPHERE_VOLUME = 4.0 / 3.0 * np.pi * RADIUS**3


@pytest.fixture(params=sorted(DIRECTIONS))
def oriented(request: pytest.FixtureRequest) -> tuple[str, np.ndarray, np.ndarray]:
    name = request.param
    direction = DIRECTIONS[name]
    return name, direction, np.rint(sphere_volume(direction)).astype(np.int16)


# ------------------------------------------------------------------------------------ geometry tests


@pytest.mark.parametrize("fmt", ["nii.gz", "mha", "dicom"])
def test_sphere_stays_at_its_physical_place(
    oriented: tuple[str, np.ndarray, np.ndarray], fmt: str, tmp_path: Path
) -> None:
    name, direction, arr = oriented
    img = make_image(arr, direction)
    if fmt == "dicom":
        write_series(img, tmp_path / "series")
        s = run(sample_of(series=tmp_path / "series"), "volume.read_dicom_series")
        assert s.meta["modality"] == "CT" and len(s.sources) == SIZE[2]
    else:
        path = tmp_path / f"vol.{fmt}"
        sitk.WriteImage(img, str(path))
        s = run(sample_of(volume=path), "volume.read")
    assert s.arrays["volume"].dtype == np.float32
    centre = true_centre(direction)

    # as read: the file's own voxel order (a DICOM series is re-sorted along the normal)
    read_centre, read_vol = sphere_stats(s)
    assert np.allclose(read_centre, centre, atol=0.05), (read_centre, centre)
    if fmt != "dicom":
        assert s.meta["orientation"] == name
        np.testing.assert_array_equal(s.arrays["volume"], arr)
    assert s.meta["spacing"] == pytest.approx(
        list(SPACING) if name == "ILA" or fmt != "dicom" else list(SPACING)
    )

    s = run(s, "volume.reorient")  # default LPS
    assert s.meta["orientation"] == "LPS"
    assert np.allclose(np.array(s.meta["direction"]).reshape(3, 3), np.eye(3), atol=1e-6)
    s = run(s, "volume.resample", spacing=1.0, fill=BG)
    assert s.meta["spacing"] == pytest.approx([1.0, 1.0, 1.0])
    out_centre, out_vol = sphere_stats(s)
    assert np.all(np.abs(out_centre - centre) <= 0.5), (out_centre, centre)
    assert out_vol == pytest.approx(SPHERE_VOLUME, rel=0.02)
    assert read_vol == pytest.approx(SPHERE_VOLUME, rel=0.02)
    # thresholded voxel count agrees too (1 mm^3 voxels)
    assert int((s.arrays["volume"] > 0).sum()) == pytest.approx(SPHERE_VOLUME, rel=0.05)


def test_left_handed_series_is_resorted_along_the_normal(tmp_path: Path) -> None:
    direction = DIRECTIONS["LPI"]
    arr = np.rint(sphere_volume(direction)).astype(np.int16)
    write_series(make_image(arr, direction), tmp_path / "series")
    s = run(sample_of(series=tmp_path / "series"), "volume.read_dicom_series")
    # k ran Inferior in the image; slices come back ordered along the normal (Superior): z flipped
    assert s.meta["orientation"] == "LPS"
    np.testing.assert_array_equal(s.arrays["volume"], arr[::-1])
    assert s.meta["origin"] == pytest.approx(list(ORIGIN + direction @ (SPACING * [0, 0, SIZE[2] - 1])))


def test_slice_order_is_the_readers_stacking_order(tmp_path: Path) -> None:
    """volume.slice_order (for hooks that label slices from a table) lists the files in the order
    read_dicom_series stacks them: along the normal, not by file name."""
    from climb_cli.steps.volume import slice_order

    direction = DIRECTIONS["LPI"]
    arr = np.rint(sphere_volume(direction)).astype(np.int16)
    paths = write_series(make_image(arr, direction), tmp_path / "series")
    s = run(sample_of(series=tmp_path / "series"), "volume.read_dicom_series")
    order = slice_order(tmp_path / "series")
    assert order == [p.stem for p in s.sources] == [p.stem for p in paths[::-1]]
    paths[1].unlink()  # a lost slice: the reader's own error
    with pytest.raises(ItemError, match="uneven slice spacing"):
        slice_order(tmp_path / "series")


def test_reorient_to_ras_and_back_is_lossless(tmp_path: Path) -> None:
    direction = DIRECTIONS["ILA"]
    arr = np.rint(sphere_volume(direction)).astype(np.int16)
    path = tmp_path / "v.nii.gz"
    sitk.WriteImage(make_image(arr, direction), str(path))
    s = run(sample_of(volume=path), "volume.read", dtype="int16")
    s = run(s, "volume.reorient", orientation="ras")
    assert s.meta["orientation"] == "RAS"
    # i ran Inferior (nx), j Left (ny), k Anterior (nz): RAS takes x from j, y from k, z from i
    assert s.arrays["volume"].shape == (SIZE[0], SIZE[2], SIZE[1])
    centre, _ = sphere_stats(s)
    assert np.allclose(centre, true_centre(direction), atol=0.05)
    s = run(s, "volume.reorient", orientation="ILA")
    np.testing.assert_array_equal(s.arrays["volume"], arr)
    assert np.allclose(np.array(s.meta["direction"]).reshape(3, 3), direction, atol=1e-6)


def test_reorient_rejects_bad_codes() -> None:
    for bad in ["LPR", "XYZ", "LP", "LLS"]:
        with pytest.raises(ValidationError):
            registry()["volume.reorient"].params.model_validate({"orientation": bad})


def test_label_resampling_keeps_only_label_values(tmp_path: Path) -> None:
    direction = DIRECTIONS["ILA"]
    frac = (sphere_volume(direction) - BG) / (FG - BG)
    small = (sphere_volume(direction, np.array([10.0, 8.0, 4.0])) - BG) / (FG - BG)
    labels = np.zeros(frac.shape, dtype=np.uint8)
    labels[frac > 0.5] = 3
    labels[small > 0.5] = 7
    path = tmp_path / "seg.nii.gz"
    sitk.WriteImage(make_image(labels, direction), str(path))
    s = run(sample_of(label=path), "volume.read", input="label", array="label", dtype="keep")
    assert s.arrays["label"].dtype == np.uint8 and "label_spacing" in s.meta and "spacing" not in s.meta
    image = run(
        Sample("x", arrays={"label": s.arrays["label"].copy()}, meta=dict(s.meta)),
        "volume.resample",
        spacing=1.0,
        array="label",
    )
    assert not set(np.unique(image.arrays["label"])) <= {
        0,
        3,
        7,
    }  # linear makes new values: the check can fail
    s = run(s, "volume.resample", spacing=[1.0, 1.0, 1.0], kind="label", array="label")
    assert s.arrays["label"].dtype == np.uint8
    assert set(np.unique(s.arrays["label"])) == {0, 3, 7}
    big = s.arrays["label"] == 3
    k, j, i = np.nonzero(big)
    centre = np.array(s.meta["label_origin"]) + np.array(s.meta["label_direction"]).reshape(3, 3) @ (
        np.array(s.meta["label_spacing"]) * np.array([i.mean(), j.mean(), k.mean()])
    )
    assert np.all(np.abs(centre - true_centre(direction)) <= 0.5)


def test_resample_keeps_an_axis_and_fills_outside() -> None:
    arr = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    meta = {
        "axes": "zyx",
        "spacing": [1.0, 1.0, 2.0],
        "origin": [0.0, 0.0, 0.0],
        "direction": list(np.eye(3).ravel()),
    }
    s = run(
        Sample("x", arrays={"volume": arr}, meta=dict(meta)), "volume.resample", spacing=[None, None, 1.0]
    )
    assert s.arrays["volume"].shape == (8, 5, 6)
    assert s.meta["spacing"] == [1.0, 1.0, 1.0] and s.meta["size"] == [6, 5, 8]
    np.testing.assert_allclose(s.arrays["volume"][2], (arr[1]), atol=1e-4)  # z=2 mm is slice 1
    np.testing.assert_allclose(s.arrays["volume"][1], (arr[0] + arr[1]) / 2, atol=1e-4)
    np.testing.assert_array_equal(s.arrays["volume"][7], 0.0)  # beyond the last slice: the minimum
    s3 = run(
        Sample("x", arrays={"volume": arr}, meta=dict(meta)),
        "volume.resample",
        spacing=[None, None, 1.0],
        fill=-7,
    )
    assert float(s3.arrays["volume"][7].max()) == pytest.approx(-7.0)
    with pytest.raises(ValidationError):
        registry()["volume.resample"].params.model_validate({"spacing": [1.0, 1.0]})
    with pytest.raises(ValidationError):
        registry()["volume.resample"].params.model_validate({"spacing": 0})


def test_steps_need_geometry() -> None:
    with pytest.raises(ItemError, match="no geometry"):
        run(Sample("x", arrays={"volume": np.zeros((2, 2, 2))}), "volume.resample", spacing=1.0)


# ----------------------------------------------------------------------------------- DICOM series


def series_sample(folder: Path, **params: Any) -> Sample:
    return run(sample_of(series=folder), "volume.read_dicom_series", **params)


@pytest.fixture
def small_series(tmp_path: Path) -> tuple[Path, np.ndarray]:
    arr = (np.arange(6 * 5 * 4).reshape(6, 5, 4) * 10 - 500).astype(np.int16)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 0.8, 2.5))
    img.SetOrigin((10.0, -20.0, 30.0))
    write_series(img, tmp_path / "ser")
    return tmp_path / "ser", arr


def test_series_meta_sources_and_dtypes(small_series: tuple[Path, np.ndarray]) -> None:
    folder, arr = small_series
    s = series_sample(folder, dtype="int16")
    np.testing.assert_array_equal(s.arrays["volume"], arr)
    assert s.arrays["volume"].dtype == np.int16
    assert s.meta["spacing"] == pytest.approx([0.7, 0.8, 2.5])
    assert s.meta["origin"] == pytest.approx([10.0, -20.0, 30.0])
    assert s.meta["size"] == [4, 5, 6] and s.meta["axes"] == "zyx" and s.meta["modality"] == "CT"
    assert s.meta["decoder"] == "simpleitk"
    assert sorted(s.sources) == sorted(folder.glob("*.dcm"))
    assert pydicom.dcmread(s.sources[0]).SeriesInstanceUID == s.meta["series_uid"]
    p = series_sample(folder, decoder="pydicom", dtype="int16")
    np.testing.assert_array_equal(p.arrays["volume"], arr)
    assert p.meta["decoder"] == "pydicom" and p.meta["origin"] == s.meta["origin"]
    # one file of the series as input: its folder and series
    one = run(sample_of(series=folder / "s002.dcm"), "volume.read_dicom_series", dtype="int16")
    np.testing.assert_array_equal(one.arrays["volume"], arr)
    with pytest.raises(ItemError, match="do not fit uint8"):
        series_sample(folder, dtype="uint8")


def test_mixed_series_folder_is_rejected_unless_one_is_chosen(tmp_path: Path) -> None:
    folder = tmp_path / "mixed"
    a = sitk.GetImageFromArray(np.zeros((4, 6, 6), np.int16))
    b = sitk.GetImageFromArray(np.ones((3, 6, 6), np.int16))
    write_series(a, folder, series_uid="1.2.3.100", prefix="a")
    write_series(b, folder, series_uid="1.2.3.200", prefix="b")
    with pytest.raises(ItemError, match=r"2 series.*1\.2\.3\.100.*1\.2\.3\.200.*series_uid"):
        series_sample(folder)
    s = series_sample(folder, series_uid="1.2.3.200")
    assert s.arrays["volume"].shape == (3, 6, 6) and float(s.arrays["volume"].min()) == 1.0
    assert all(p.name.startswith("b") for p in s.sources) and len(s.sources) == 3
    with pytest.raises(ItemError, match="no series 9.9"):
        series_sample(folder, series_uid="9.9")


def test_missing_slice_is_rejected(small_series: tuple[Path, np.ndarray]) -> None:
    folder, _ = small_series
    (folder / "s003.dcm").unlink()
    with pytest.raises(ItemError, match="uneven slice spacing.*missing slices"):
        series_sample(folder)


def _edit(path: Path, **attrs: Any) -> None:
    ds = pydicom.dcmread(path)
    for k, v in attrs.items():
        setattr(ds, k, v)
    ds.save_as(path)


def test_mixed_orientation_is_rejected(small_series: tuple[Path, np.ndarray]) -> None:
    folder, _ = small_series
    _edit(folder / "s002.dcm", ImageOrientationPatient=[1, 0, 0, 0, 0, -1])
    with pytest.raises(ItemError, match="mixed slice orientations"):
        series_sample(folder)


def test_duplicate_position_is_rejected(small_series: tuple[Path, np.ndarray]) -> None:
    folder, _ = small_series
    pos = pydicom.dcmread(folder / "s002.dcm").ImagePositionPatient
    _edit(folder / "s003.dcm", ImagePositionPatient=list(pos))
    with pytest.raises(ItemError, match="same position"):
        series_sample(folder)


def test_gantry_tilt_is_rejected(small_series: tuple[Path, np.ndarray]) -> None:
    folder, _ = small_series
    for k, path in enumerate(sorted(folder.glob("*.dcm"))):
        ds = pydicom.dcmread(path)
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        _edit(path, ImagePositionPatient=[x, y + 0.5 * k, z])
    with pytest.raises(ItemError, match="drift"):
        series_sample(folder)


def test_empty_and_single_slice_folders(tmp_path: Path, small_series: tuple[Path, np.ndarray]) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no dicom here")
    with pytest.raises(ItemError, match="no DICOM series"):
        series_sample(tmp_path / "empty")
    with pytest.raises(ItemError, match="not found"):
        series_sample(tmp_path / "absent")
    folder, _ = small_series
    single = tmp_path / "single"
    single.mkdir()
    shutil.copy(folder / "s000.dcm", single)
    with pytest.raises(ItemError, match="fewer than min_slices"):
        series_sample(single)
    assert series_sample(single, min_slices=1).arrays["volume"].shape == (1, 5, 4)


def test_single_slice_takes_its_z_spacing_from_the_header(
    tmp_path: Path, small_series: tuple[Path, np.ndarray]
) -> None:
    """One plane has no gap to measure: SpacingBetweenSlices, else SliceThickness, else 1 mm."""
    folder, _ = small_series
    single = tmp_path / "single"
    single.mkdir()
    path = Path(shutil.copy(folder / "s000.dcm", single))
    ds = pydicom.dcmread(path)
    for keyword in ("SpacingBetweenSlices", "SliceThickness"):
        if keyword in ds:
            delattr(ds, keyword)
    ds.SliceThickness = "10"
    ds.save_as(path)
    s = series_sample(single, min_slices=1)
    assert s.meta["spacing"] == pytest.approx([0.7, 0.8, 10.0])  # was [0.7, 0.8, 1.0]
    _edit(path, SpacingBetweenSlices="12")
    assert series_sample(single, min_slices=1).meta["spacing"][2] == pytest.approx(12.0)
    ds = pydicom.dcmread(path)
    del ds.SpacingBetweenSlices, ds.SliceThickness
    ds.save_as(path)
    assert series_sample(single, min_slices=1).meta["spacing"][2] == 1.0


def copies_of(real: Path, folder: Path, n: int, step: float = 5.0, **extra: Any) -> list[Path]:
    """n copies of a real DICOM slice as one series: new UIDs, positions `step` mm apart along the normal."""
    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    out = []
    for k in range(n):
        ds = pydicom.dcmread(real)
        for key, value in extra.items():
            setattr(ds, key, value)
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        normal = np.cross(iop[:3], iop[3:])
        ds.ImagePositionPatient = [
            float(v) for v in np.array(ds.ImagePositionPatient, float) + k * step * normal
        ]
        ds.SeriesInstanceUID = series
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.InstanceNumber = k + 1
        path = folder / f"{k:02d}.dcm"
        ds.save_as(path)
        out.append(path)
    return out


def test_real_ct_pixels_with_rescale(tmp_path: Path) -> None:
    real = Path(get_testdata_file("CT_small.dcm"))
    copies_of(real, tmp_path / "ct", 4)
    ds = pydicom.dcmread(real)
    hu = ds.pixel_array.astype(np.int32) * int(ds.RescaleSlope) + int(ds.RescaleIntercept)
    for decoder in ("simpleitk", "pydicom"):
        s = series_sample(tmp_path / "ct", decoder=decoder, dtype="int16")
        assert s.arrays["volume"].shape == (4, 128, 128)
        for k in range(4):
            np.testing.assert_array_equal(s.arrays["volume"][k], hu)
        assert s.meta["spacing"] == pytest.approx([*(float(v) for v in ds.PixelSpacing[::-1]), 5.0])
        assert s.meta["origin"] == pytest.approx([float(v) for v in ds.ImagePositionPatient])


def _pydicom_data(name: str) -> Path:
    path = get_testdata_file(name)
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return Path(path)


def test_real_jpeg2000_ct_both_decoders_agree(tmp_path: Path) -> None:
    copies_of(_pydicom_data("693_J2KR.dcm"), tmp_path / "j2k", 3)
    a = series_sample(tmp_path / "j2k", decoder="simpleitk", dtype="int16")
    b = series_sample(tmp_path / "j2k", decoder="pydicom", dtype="int16")
    assert a.arrays["volume"].shape == (3, 512, 512)
    np.testing.assert_array_equal(a.arrays["volume"], b.arrays["volume"])
    assert a.meta["origin"] == b.meta["origin"] and a.meta["direction"] == b.meta["direction"]


def test_12bit_jpeg_goes_to_pydicom(tmp_path: Path) -> None:
    real = Path(get_testdata_file("JPGExtended.dcm"))
    geometry = dict(
        ImageOrientationPatient=[1, 0, 0, 0, 1, 0], ImagePositionPatient=[0, 0, 0], PixelSpacing=[1, 1]
    )
    copies_of(real, tmp_path / "jx", 2, **geometry)
    with pytest.raises(ItemError, match="SimpleITK cannot decode"):
        series_sample(tmp_path / "jx", decoder="simpleitk")
    s = series_sample(tmp_path / "jx", dtype="keep")
    assert s.meta["decoder"] == "pydicom"
    np.testing.assert_array_equal(s.arrays["volume"][1], pydicom.dcmread(real).pixel_array)


def test_enhanced_multiframe_ct(tmp_path: Path) -> None:
    real = _pydicom_data("eCT_Supplemental.dcm")
    folder = tmp_path / "ect"
    folder.mkdir()
    shutil.copy(real, folder)
    s = series_sample(folder, dtype="int16")
    assert s.arrays["volume"].shape == (2, 512, 512) and s.meta["decoder"] == "pydicom"
    assert s.meta["spacing"] == pytest.approx([0.388672, 0.388672, 10.0])
    # every voxel at the same physical place as SimpleITK's own reading of the file, with the same HU value
    ref = sitk.ReadImage(str(real))
    ref_arr = sitk.GetArrayFromImage(ref)
    origin = np.array(s.meta["origin"])
    direction = np.array(s.meta["direction"]).reshape(3, 3)
    for k, j, i in [(0, 0, 0), (1, 100, 400), (0, 511, 3)]:
        point = origin + direction @ (np.array(s.meta["spacing"]) * [i, j, k])
        ri, rj, rk = ref.TransformPhysicalPointToIndex(point.tolist())
        assert ref_arr[rk, rj, ri] == s.arrays["volume"][k, j, i]


# ----------------------------------------------------------------------------- files, real and made


def test_nibabel_anatomical_geometry_matches_nibabel() -> None:
    path = NIB_DATA / "anatomical.nii"
    s = run(sample_of(volume=path), "volume.read", dtype="keep")
    nii = nib.load(path)
    data = np.asanyarray(nii.dataobj)
    np.testing.assert_array_equal(s.arrays["volume"], data.transpose(2, 1, 0))
    origin = np.array(s.meta["origin"])
    direction = np.array(s.meta["direction"]).reshape(3, 3)
    spacing = np.array(s.meta["spacing"])
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    for ijk in [(0, 0, 0), (32, 40, 24), (5, 17, 11)]:
        ras = nii.affine @ [*ijk, 1]
        ours = lps_to_ras @ (origin + direction @ (spacing * np.array(ijk)))
        np.testing.assert_allclose(ours, ras[:3], atol=1e-3)
    # reorientation to RAS equals nibabel's closest canonical
    s = run(s, "volume.reorient", orientation="RAS")
    canon = nib.as_closest_canonical(nii)
    np.testing.assert_array_equal(s.arrays["volume"], np.asanyarray(canon.dataobj).transpose(2, 1, 0))
    assert "".join(nib.aff2axcodes(canon.affine)) == s.meta["orientation"] == "RAS"
    assert s.sources == [path]


def test_nibabel_4d_needs_a_timepoint() -> None:
    path = NIB_DATA / "example4d.nii.gz"
    with pytest.raises(ItemError, match=r"4-D image 128x96x24x2.*timepoint"):
        run(sample_of(volume=path), "volume.read")
    s = run(sample_of(volume=path), "volume.read", timepoint=1, dtype="int16")
    data = np.asanyarray(nib.load(path).dataobj)
    np.testing.assert_array_equal(s.arrays["volume"], data[..., 1].transpose(2, 1, 0))
    assert len(s.meta["direction"]) == 9
    with pytest.raises(ItemError, match="timepoint 2 but the file has 2"):
        run(sample_of(volume=path), "volume.read", timepoint=2)


@pytest.mark.parametrize("suffix", [".mhd", ".nrrd", ".nhdr"])
def test_mhd_nrrd_roundtrip_and_sources(suffix: str, tmp_path: Path) -> None:
    src = sitk.ReadImage(str(NIB_DATA / "anatomical.nii"))
    path = tmp_path / f"anat{suffix}"
    sitk.WriteImage(src, str(path))
    s = run(sample_of(volume=path), "volume.read", dtype="int16")
    np.testing.assert_array_equal(s.arrays["volume"], sitk.GetArrayFromImage(src))
    assert s.meta["spacing"] == pytest.approx(list(src.GetSpacing()))
    assert s.sources[0] == path
    if suffix in (".mhd", ".nhdr"):
        assert len(s.sources) == 2 and s.sources[1].is_file() and s.sources[1] != path
        s.sources[1].unlink()
        with pytest.raises(ItemError, match="not found"):
            run(sample_of(volume=path), "volume.read")
    else:
        assert len(s.sources) == 1


def test_read_rejects_bad_files(tmp_path: Path) -> None:
    bad = tmp_path / "broken.nii.gz"
    bad.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(ItemError, match="broken.nii.gz"):
        run(sample_of(volume=bad), "volume.read")
    txt = tmp_path / "notes.txt"
    txt.write_text("x")
    with pytest.raises(ItemError, match="not a volume file"):
        run(sample_of(volume=txt), "volume.read")
    flat = tmp_path / "flat.mha"
    sitk.WriteImage(sitk.Image(5, 6, sitk.sitkInt16), str(flat))
    with pytest.raises(ItemError, match="2-D image"):
        run(sample_of(volume=flat), "volume.read")
    rgb = tmp_path / "rgb.mha"
    sitk.WriteImage(sitk.Image([4, 4, 4], sitk.sitkVectorUInt8, 3), str(rgb))
    with pytest.raises(ItemError, match="3 components"):
        run(sample_of(volume=rgb), "volume.read")
    frac = tmp_path / "frac.mha"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 2, 2), 0.5, np.float32)), str(frac))
    with pytest.raises(ItemError, match="not integers"):
        run(sample_of(volume=frac), "volume.read", dtype="int16")


# --------------------------------------------------------------------------- crop/pad, resize, window


def _meta(spacing: list[float], direction: np.ndarray, origin: list[float]) -> dict[str, Any]:
    return {"axes": "zyx", "spacing": spacing, "origin": origin, "direction": list(direction.ravel())}


def _point(s: Sample, k: int, j: int, i: int) -> np.ndarray:
    return np.array(s.meta["origin"]) + np.array(s.meta["direction"]).reshape(3, 3) @ (
        np.array(s.meta["spacing"]) * [i, j, k]
    )


def test_crop_or_pad_keeps_physical_positions() -> None:
    arr = np.zeros((10, 7, 9), np.int16)
    arr[6, 2, 5] = 99
    meta = _meta([0.5, 0.7, 2.0], DIRECTIONS["ILA"], [1.0, 2.0, 3.0])
    before = _point(Sample("x", meta=meta), 6, 2, 5)
    s = run(
        Sample("x", arrays={"volume": arr}, meta=dict(meta)),
        "volume.crop_or_pad",
        shape=[6, 12, None],
        fill=-5,
    )
    out = s.arrays["volume"]
    assert out.shape == (6, 12, 9) and s.meta["size"] == [9, 12, 6]
    (k,), (j,), (i,) = np.nonzero(out == 99)
    assert (k, j, i) == (6 - 2, 2 + 2, 5)  # crop 2 slices off the front, pad 2 rows before
    np.testing.assert_allclose(_point(s, k, j, i), before)
    assert out[0, 0, 0] == -5 and out.dtype == np.int16
    lab = run(
        Sample("x", arrays={"volume": arr + 1}, meta=dict(meta)),
        "volume.crop_or_pad",
        shape=[12, 7, 9],
        kind="label",
    )
    assert lab.arrays["volume"][0, 0, 0] == 0  # labels pad with 0, not the minimum (1)


def test_resize_slices_like_climb() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(-1000, 1000, size=(3, 64, 48)).astype(np.float32)
    meta = _meta([0.5, 0.6, 2.0], np.eye(3), [0.0, 0.0, 0.0])
    s = run(Sample("x", arrays={"volume": arr}, meta=dict(meta)), "volume.resize_slices", size=[32, 32])
    import cv2

    expected = np.stack([cv2.resize(arr[k], (32, 32), interpolation=cv2.INTER_AREA) for k in range(3)])
    np.testing.assert_array_equal(s.arrays["volume"], expected)
    assert s.meta["spacing"] == pytest.approx([0.5 * 48 / 32, 0.6 * 64 / 32, 2.0])
    # the slice's outer edges stay put: first-pixel centre moves by half the new minus half the old pixel
    assert s.meta["origin"] == pytest.approx([(0.75 - 0.5) / 2, (1.2 - 0.6) / 2, 0.0])
    assert s.meta["size"] == [32, 32, 3]


def climb_apply_window_level(x: np.ndarray, window: float, level: float) -> np.ndarray:
    """CLIMB's ct/nifti_utils.apply_window_level, as documented: clip, (x - lower) / window * 255, uint8."""
    lower, upper = level - window / 2, level + window / 2
    return ((np.clip(x, lower, upper) - lower) / window * 255).astype(np.uint8)


def test_window_presets_match_climb() -> None:
    hu = np.arange(-2000, 3001, dtype=np.float32).reshape(1, 1, -1)
    s = run(Sample("x", arrays={"volume": hu.copy()}), "volume.window", preset="ctpa", output="uint8")
    np.testing.assert_array_equal(
        s.arrays["volume"], climb_apply_window_level(hu.astype(np.float64), 700, 80)
    )
    assert (s.meta["window_center"], s.meta["window_width"], s.meta["window_preset"]) == (80.0, 700.0, "ctpa")
    flat = s.arrays["volume"].ravel()
    assert (
        flat[hu.ravel() == -270][0] == 0
        and flat[hu.ravel() == 430][0] == 255
        and flat[hu.ravel() == 429][0] == 254
    )

    expected = {"pe": (-100, 900), "lung": (-1350, 150), "brain": (0, 80), "bone": (-500, 1300)}
    for preset, (lo, hi) in expected.items():
        out = run(Sample("x", arrays={"volume": hu.copy()}), "volume.window", preset=preset).arrays["volume"]
        assert out.dtype == np.float32
        v = out.ravel()
        h = hu.ravel()
        assert (
            v[h == lo][0] == 0.0
            and v[h == hi][0] == 1.0
            and v[h == lo - 1][0] == 0.0
            and v[h == hi + 1][0] == 1.0
        )
        assert v[h == (lo + hi) // 2][0] == pytest.approx(0.5)
    custom = run(Sample("x", arrays={"volume": hu.copy()}), "volume.window", center=0, width=200).arrays[
        "volume"
    ]
    assert custom.ravel()[hu.ravel() == 50][0] == pytest.approx(0.75)


@pytest.mark.parametrize("bad", [{"preset": "pe", "center": 1}, {"center": 1}, {}, {"preset": "liver"}])
def test_window_params_need_one_choice(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        registry()["volume.window"].params.model_validate(bad)


# ------------------------------------------------------------------------------------- slice windows


def _slices(n: int) -> Sample:
    vol = np.broadcast_to(np.arange(n, dtype=np.float32)[:, None, None], (n, 2, 3)).copy()
    return Sample("x", arrays={"volume": vol})


def test_slice_windows_climb_count_and_modes() -> None:
    s = run(_slices(60), "volume.slice_windows")
    assert s.meta["window_starts"] == [0, 12, 24] and s.meta["window_size"] == 24  # (60-24)//12 = 3
    assert s.arrays["volume"].shape == (60, 2, 3)
    assert run(_slices(60), "volume.slice_windows", count="full").meta["window_starts"] == [0, 12, 24, 36]
    a = run(_slices(60), "volume.slice_windows", output="array")
    assert "volume" not in a.arrays and a.arrays["windows"].shape == (3, 24, 2, 3)
    np.testing.assert_array_equal(a.arrays["windows"][2, :, 0, 0], np.arange(24, 48))
    # LIDC: non-overlapping, ceil(N/24) windows, the last one padded
    p = run(_slices(60), "volume.slice_windows", stride=24, count="pad", output="array", fill=-1)
    assert p.meta["window_starts"] == [0, 24, 48]
    np.testing.assert_array_equal(p.arrays["windows"][2, :, 0, 0], [*range(48, 60)] + [-1] * 12)


def test_slice_windows_too_few_slices() -> None:
    with pytest.raises(ItemError, match="no 24-slice window"):
        run(_slices(35), "volume.slice_windows")  # (35-24)//12 = 0: CLIMB would drop this study
    assert run(_slices(35), "volume.slice_windows", count="full").meta["window_starts"] == [0]
    assert run(_slices(10), "volume.slice_windows", count="pad").meta["window_starts"] == [0]


# ------------------------------------------------------------------------------------- into a shard


def test_volume_row_reads_back_with_plain_pyarrow(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    from climb_cli.index import Item
    from climb_cli.shards import ShardWriter, build_schema, to_row

    direction = DIRECTIONS["ILA"]
    path = tmp_path / "v.mha"
    sitk.WriteImage(make_image(np.rint(sphere_volume(direction)).astype(np.int16), direction), str(path))
    s = run(sample_of(volume=path), "volume.read")
    s = run(s, "volume.resample", spacing=1.5, fill=BG)
    s = run(s, "volume.slice_windows", size=4, stride=2)
    item = Item("v1", "train", (), {"volume": "v.mha"})
    schema = build_schema(s, item, [], False)
    writer = ShardWriter(schema, tmp_path / "shard.parquet", 1, "zstd")
    writer.add(to_row(schema, item, s, [], [("v.mha", "0" * 64)], "hash"))
    writer.commit()
    row = pq.read_table(tmp_path / "shard.parquet").to_pylist()[0]
    back = np.array(row["volume"], dtype=np.float32).reshape(row["volume_shape"])
    np.testing.assert_array_equal(back, s.arrays["volume"])
    rebuilt = Sample(
        "r", arrays={"volume": back}, meta={k: row[k] for k in ("axes", "spacing", "origin", "direction")}
    )
    centre, volume = sphere_stats(rebuilt)
    assert np.all(np.abs(centre - true_centre(direction)) <= 0.75)
    assert volume == pytest.approx(SPHERE_VOLUME, rel=0.03)
    assert row["orientation"] == "ILA" and row["window_starts"] == s.meta["window_starts"]
    assert row["size"] == list(back.shape[::-1])


# ------------------------------------------------------------------ NIfTI: NaN voxels, NIfTI-2, Analyze


def _rotated_affine() -> np.ndarray:
    """A RAS affine with spacing (0.9, 1.1, 2.5), a rotation about z and an offset."""
    c, s = np.cos(0.3), np.sin(0.3)
    affine = np.eye(4)
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ np.diag([0.9, 1.1, 2.5])
    affine[:3, 3] = [-12.0, 30.5, 7.0]
    return affine


def _float_data() -> np.ndarray:
    data = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6) - 50  # nibabel order (i, j, k)
    data[1, 2, 3] = np.nan
    data[0, 0, 0] = np.inf
    data[3, 4, 5] = -np.inf
    return data


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".hdr"])
def test_float_nifti_keeps_nan_and_inf_voxels(tmp_path: Path, suffix: str) -> None:
    """SimpleITK (niftilib) reads NaN and inf as 0.0; nibabel, the reference here, keeps them."""
    data = _float_data()
    path = tmp_path / f"f{suffix}"
    kind = nib.Nifti1Pair if suffix == ".hdr" else nib.Nifti1Image
    nib.save(kind(data, _rotated_affine()), path)
    s = run(sample_of(volume=path), "volume.read")
    out = s.arrays["volume"]
    assert out.dtype == np.float32 and out.shape == (6, 5, 4)
    np.testing.assert_array_equal(out, nib.load(path).get_fdata().transpose(2, 1, 0))  # NaN == NaN here
    assert np.isnan(out[3, 2, 1]) and out[0, 0, 0] == np.inf and out[5, 4, 3] == -np.inf
    itk = sitk.ReadImage(str(path))
    assert sitk.GetArrayFromImage(itk)[3, 2, 1] == 0.0  # what SimpleITK alone gives
    finite = np.isfinite(out)
    np.testing.assert_array_equal(out[finite], sitk.GetArrayFromImage(itk)[finite])
    assert s.meta["spacing"] == pytest.approx(list(itk.GetSpacing()))
    assert s.meta["origin"] == pytest.approx(list(itk.GetOrigin()))
    assert s.meta["direction"] == pytest.approx(list(itk.GetDirection()))
    with pytest.raises(ItemError, match="3 NaN/inf voxels, which int16 cannot hold"):
        run(sample_of(volume=path), "volume.read", dtype="int16")


def test_scaled_float_nifti_matches_simpleitk_where_finite(tmp_path: Path) -> None:
    data = _float_data()
    img = nib.Nifti1Image(data, _rotated_affine())
    img.header.set_slope_inter(2.0, -3.0)
    nib.save(img, tmp_path / "scaled.nii")
    out = run(sample_of(volume=tmp_path / "scaled.nii"), "volume.read", dtype="keep").arrays["volume"]
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "scaled.nii")))
    assert out.dtype == ref.dtype
    finite = np.isfinite(out)
    assert finite.sum() == data.size - 3
    np.testing.assert_allclose(out[finite], ref[finite], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_nifti2_reads_like_the_same_nifti1(tmp_path: Path, dtype: type) -> None:
    """NIfTI-2 (SimpleITK: "Unable to determine ImageIO reader") equals the NIfTI-1 copy SimpleITK reads."""
    data = (np.arange(4 * 5 * 6).reshape(4, 5, 6) - 50).astype(dtype)
    nib.save(nib.Nifti1Image(data, _rotated_affine()), tmp_path / "one.nii")
    nib.save(nib.Nifti2Image(data, _rotated_affine()), tmp_path / "two.nii")
    one = run(sample_of(volume=tmp_path / "one.nii"), "volume.read", dtype="keep")
    two = run(sample_of(volume=tmp_path / "two.nii"), "volume.read", dtype="keep")
    np.testing.assert_array_equal(two.arrays["volume"], one.arrays["volume"])
    assert two.arrays["volume"].dtype == one.arrays["volume"].dtype
    for key in ("spacing", "origin", "direction"):
        assert two.meta[key] == pytest.approx(one.meta[key], abs=1e-5), key
    assert two.meta["orientation"] == one.meta["orientation"]
    assert two.sources == [tmp_path / "two.nii"]


def test_nifti2_4d_timepoint(tmp_path: Path) -> None:
    data = np.arange(3 * 4 * 5 * 2, dtype=np.int16).reshape(3, 4, 5, 2)
    nib.save(nib.Nifti2Image(data, _rotated_affine()), tmp_path / "four.nii.gz")
    with pytest.raises(ItemError, match=r"4-D image 3x4x5x2.*timepoint"):
        run(sample_of(volume=tmp_path / "four.nii.gz"), "volume.read")
    s = run(sample_of(volume=tmp_path / "four.nii.gz"), "volume.read", timepoint=1, dtype="int16")
    np.testing.assert_array_equal(s.arrays["volume"], data[..., 1].transpose(2, 1, 0))
    assert len(s.meta["direction"]) == 9 and s.meta["spacing"] == pytest.approx([0.9, 1.1, 2.5])


def test_hdr_without_its_img_says_so(tmp_path: Path) -> None:
    nib.save(nib.Nifti1Pair(_float_data(), np.eye(4)), tmp_path / "pair.hdr")
    nib.save(nib.AnalyzeImage(np.zeros((2, 3, 4), np.int16), np.eye(4)), tmp_path / "ana.hdr")
    assert run(sample_of(volume=tmp_path / "ana.hdr"), "volume.read").sources == [
        tmp_path / "ana.hdr",
        tmp_path / "ana.img",
    ]
    for name in ("pair", "ana"):
        (tmp_path / f"{name}.img").unlink()
        with pytest.raises(ItemError, match=rf"^{name}\.hdr: missing {name}\.img beside {name}\.hdr"):
            run(sample_of(volume=tmp_path / f"{name}.hdr"), "volume.read")


def test_nan_voxels_after_reading_window_and_padding(tmp_path: Path) -> None:
    """Kept NaN voxels are said, not turned into numbers silently: uint8 windows put them at 0 and count
    them; float windows keep them; padding takes the smallest finite value, not NaN."""
    nib.save(nib.Nifti1Image(_float_data(), np.eye(4)), tmp_path / "f.nii")
    s = run(sample_of(volume=tmp_path / "f.nii"), "volume.read")
    padded = run(s, "volume.crop_or_pad", shape=[8, None, None]).arrays["volume"]
    assert padded.shape == (8, 5, 4)
    assert np.isnan(padded).sum() == 1  # the voxel of the file, no NaN padding
    assert np.count_nonzero(padded == -49.0) == 2 * 5 * 4 + 1  # the smallest finite value, and its voxel
    s = run(sample_of(volume=tmp_path / "f.nii"), "volume.read")
    with np.errstate(invalid="raise"):
        out = run(s, "volume.window", center=0, width=100, output="uint8")
    assert out.meta["nan_voxels"] == 1 and out.arrays["volume"][3, 2, 1] == 0
    s = run(sample_of(volume=tmp_path / "f.nii"), "volume.read")
    out = run(s, "volume.window", center=0, width=100)
    assert out.meta["nan_voxels"] == 1 and np.isnan(out.arrays["volume"][3, 2, 1])


def test_itk_failure_says_the_cause_not_the_source_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.nii"
    bad.write_bytes(b"\x5c\x01\x00\x00" + b"\0" * 400)  # sizeof_hdr 348, nothing else
    with pytest.raises(ItemError) as info:
        run(sample_of(volume=bad), "volume.read")
    message = str(info.value)
    assert message.startswith("bad.nii: SimpleITK cannot read it (RuntimeError: ")
    assert "not recognized as a NIFTI file" in message and ".cxx" not in message
