"""Tests of the 2D image steps and pixel helpers: JPEG/PNG/TIFF/BMP written with OpenCV into tmp_path
(8/16-bit, gray/RGB/RGBA), gray/RGB conversion, resizing (aspect, INTER_AREA, torchvision's rule, spacing),
CLIMB's pad-to-square, CLAHE, dtype scaling, statistics, and a real radiograph through the 224 protocol.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.steps import _pixels
from climb_cli.steps.base import Sample, registry


def run(sample: Sample, name: str, **params: Any) -> Sample:
    """Validate `params` the way a recipe is validated, then run the step."""
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def image_sample(x: np.ndarray, channels: int | None = None, **meta: Any) -> Sample:
    s = Sample(id="x", arrays={"image": x})
    if channels is not None:
        s.meta["channels"] = channels
    s.meta.update(meta)
    return s


def gradient_rgb(h: int = 60, w: int = 90) -> np.ndarray:
    """An RGB uint8 image whose three channels differ (so a BGR/RGB mix-up shows)."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 255 // (w - 1)), (y * 255 // (h - 1)), ((x + y) % 256)], axis=-1).astype(np.uint8)


def write(path: Path, rgb_or_gray: np.ndarray, params: list[int] | None = None) -> Path:
    """Write with OpenCV (which wants BGR order)."""
    img = rgb_or_gray
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGBA2BGRA if img.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    assert cv2.imwrite(str(path), img, params or [])
    return path


def read(path: Path, **params: Any) -> Sample:
    return run(Sample(id=path.stem, inputs={"image": path}), "image.read", **params)


# ---------------------------------------------------------------------------------------------- read


@pytest.mark.parametrize("ext", ["png", "tiff", "bmp"])
def test_lossless_formats_round_trip_in_rgb_order(tmp_path: Path, ext: str) -> None:
    rgb = gradient_rgb()
    s = read(write(tmp_path / f"img.{ext}", rgb))
    np.testing.assert_array_equal(s.arrays["image"], rgb)
    assert s.meta == {"channels": 3, "original_shape": [60, 90]}
    assert s.sources == [tmp_path / f"img.{ext}"]


def test_pure_red_is_red(tmp_path: Path) -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    s = read(write(tmp_path / "red.png", red))
    assert s.arrays["image"][0, 0].tolist() == [255, 0, 0]


@pytest.mark.parametrize("ext", ["png", "tiff"])
def test_sixteen_bit_gray_is_kept(tmp_path: Path, ext: str) -> None:
    img = (np.arange(64 * 48, dtype=np.uint32).reshape(48, 64) * 21).astype(np.uint16)
    s = read(write(tmp_path / f"cr.{ext}", img))
    assert s.arrays["image"].dtype == np.uint16 and s.meta["channels"] == 1
    np.testing.assert_array_equal(s.arrays["image"], img)


def test_jpeg_reads_close_to_the_original(tmp_path: Path) -> None:
    rgb = gradient_rgb()
    s = read(write(tmp_path / "img.jpg", rgb, [cv2.IMWRITE_JPEG_QUALITY, 95]))
    assert s.arrays["image"].shape == rgb.shape
    assert np.abs(s.arrays["image"].astype(int) - rgb.astype(int)).mean() < 3


def test_modes_gray_rgb_keep(tmp_path: Path) -> None:
    rgba = np.dstack([gradient_rgb(), np.full((60, 90), 128, np.uint8)])
    path = write(tmp_path / "a.png", rgba)
    keep = read(path)
    np.testing.assert_array_equal(keep.arrays["image"], rgba)
    assert keep.meta["channels"] == 4
    rgb = read(path, mode="rgb")
    np.testing.assert_array_equal(
        rgb.arrays["image"], rgba[..., :3]
    )  # alpha dropped, as PIL's convert("RGB")
    gray = read(path, mode="gray")
    luma = 0.299 * rgba[..., 0] + 0.587 * rgba[..., 1] + 0.114 * rgba[..., 2]
    assert gray.arrays["image"].shape == (60, 90) and gray.meta["channels"] == 1
    assert np.abs(gray.arrays["image"].astype(float) - luma).max() <= 1.0  # BT.601, as PIL's convert("L")
    gray_file = read(write(tmp_path / "g.png", rgba[..., 1]), mode="rgb")
    np.testing.assert_array_equal(gray_file.arrays["image"], np.repeat(rgba[..., 1:2], 3, axis=2))


def test_gray_matches_pil_convert_l(tmp_path: Path) -> None:
    pil = pytest.importorskip("PIL.Image")
    rgb = gradient_rgb()
    ours = read(write(tmp_path / "a.png", rgb), mode="gray").arrays["image"]
    theirs = np.asarray(pil.fromarray(rgb).convert("L"))
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1


def test_unreadable_images_are_item_errors(tmp_path: Path) -> None:
    (tmp_path / "junk.png").write_bytes(b"\x89PNG but not really" * 20)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ItemError, match=r"junk\.png: not a decodable image"):
        read(tmp_path / "junk.png")
    with pytest.raises(ItemError, match=r"empty\.jpg: empty file"):
        read(tmp_path / "empty.jpg")
    with pytest.raises(ItemError, match=r"none\.png: file not found"):
        read(tmp_path / "none.png")


# ---------------------------------------------------------------------------------------------- colour


def test_color_step_converts_both_ways_and_keeps_frames_apart() -> None:
    rgb = gradient_rgb(10, 12)
    s = run(image_sample(rgb.copy(), 3, photometric_interpretation="RGB"), "image.color", mode="gray")
    assert s.arrays["image"].shape == (10, 12) and s.meta["channels"] == 1
    assert s.meta["photometric_interpretation"] == "MONOCHROME2"
    stack = np.stack([rgb[..., 0], rgb[..., 1], rgb[..., 2]])  # (3, H, W): three gray frames, not RGB
    s = run(image_sample(stack, 1), "image.color", mode="rgb")
    assert s.arrays["image"].shape == (3, 10, 12, 3)
    np.testing.assert_array_equal(s.arrays["image"][1, ..., 2], rgb[..., 1])


# ---------------------------------------------------------------------------------------------- resize


def test_resize_long_side_keeps_the_aspect_and_scales_spacing() -> None:
    img = np.zeros((300, 200), np.uint16)
    s = run(image_sample(img, 1, pixel_spacing=[0.5, 0.5]), "image.resize", long_side=100)
    assert s.arrays["image"].shape == (100, 67)  # 200 * 100 / 300 = 66.7
    assert s.arrays["image"].dtype == np.uint16
    assert s.meta["resize_scale"] == pytest.approx([1 / 3, 67 / 200])
    assert s.meta["pixel_spacing"] == pytest.approx([1.5, 0.5 * 200 / 67])
    wide = run(image_sample(np.zeros((120, 481, 3), np.uint8), 3), "image.resize", long_side=224)
    assert wide.arrays["image"].shape == (56, 224, 3)  # 120 * 224 / 481 = 55.9


def test_downscaling_uses_area_averaging() -> None:
    board = (np.indices((64, 64)).sum(axis=0) % 2 * 255).astype(np.float32)  # 0/255 checkerboard
    s = run(image_sample(board, 1), "image.resize", long_side=32)
    np.testing.assert_allclose(s.arrays["image"], 127.5)  # INTER_AREA averages each 2x2 block
    nearest = run(image_sample(board, 1), "image.resize", long_side=32, interpolation="nearest")
    assert set(np.unique(nearest.arrays["image"])) <= {0.0, 255.0}


def test_resize_short_side_follows_torchvision_and_climbs_std_transform() -> None:
    cases = {
        (1000, 800): (224, 179),
        (800, 1000): (179, 224),
        (500, 500): (223, 223),
        (2048, 2500): (183, 224),
    }
    for (h, w), expected in cases.items():
        s = run(image_sample(np.zeros((h, w), np.uint8), 1), "image.resize", short_side=223, max_size=224)
        assert s.arrays["image"].shape == expected, (h, w)
    jichi = run(image_sample(np.zeros((300, 400), np.uint8), 1), "image.resize", short_side=224)
    assert jichi.arrays["image"].shape == (224, 298)  # int(224 * 400 / 300)


def test_resize_exact_size_and_no_upscale() -> None:
    s = run(image_sample(np.zeros((30, 50, 3), np.uint8), 3), "image.resize", size=[224, 224])
    assert s.arrays["image"].shape == (224, 224, 3)
    small = run(image_sample(np.ones((30, 50), np.float32), 1), "image.resize", long_side=100, upscale=False)
    assert small.arrays["image"].shape == (30, 50)


def test_resize_every_frame_of_a_stack() -> None:
    frames = np.stack([np.full((40, 60), v, np.int16) for v in (-1000, 0, 3)])
    s = run(image_sample(frames, 1), "image.resize", long_side=30)
    assert s.arrays["image"].shape == (3, 20, 30) and s.arrays["image"].dtype == np.int16
    assert [int(f.min()) for f in s.arrays["image"]] == [-1000, 0, 3]


def test_resize_keeps_unusual_integer_dtypes() -> None:
    img = (np.arange(16, dtype=np.uint32).reshape(4, 4) * 100000).astype(np.uint32)
    s = run(image_sample(img, 1), "image.resize", long_side=2)
    assert s.arrays["image"].dtype == np.uint32
    assert s.arrays["image"][0, 0] == round(img[:2, :2].mean())


def test_resize_parameters_are_validated() -> None:
    params = registry()["image.resize"].params
    for bad in ({}, {"long_side": 10, "size": [5, 5]}, {"size": [5]}, {"long_side": 10, "max_size": 20}):
        with pytest.raises(ValidationError):
            params.model_validate(bad)
    with pytest.raises(ValidationError):
        params.model_validate({"short_side": 224, "max_size": 224})


# ------------------------------------------------------------------------------------------ pad_square


def test_pad_square_centres_the_image() -> None:
    img = np.full((224, 179), 7, np.uint8)
    s = run(image_sample(img, 1), "image.pad_square", size=224)
    out = s.arrays["image"]
    assert out.shape == (224, 224) and s.meta["padding"] == [0, 0, 22, 23]
    assert (out[:, 22:201] == 7).all() and (out[:, :22] == 0).all() and (out[:, 201:] == 0).all()
    land = run(image_sample(np.ones((149, 224, 3), np.float32), 3), "image.pad_square", value=0.5)
    assert land.meta["padding"] == [37, 38, 0, 0]  # Messidor-2's fixed Pad((0, 37, 0, 38))
    assert land.arrays["image"].shape == (224, 224, 3) and land.arrays["image"][0, 0, 0] == 0.5


def test_pad_square_climb_puts_the_odd_pixel_top_left_for_squares() -> None:
    s = run(image_sample(np.ones((223, 223), np.float32), 1), "image.pad_square", size=224, align="climb")
    assert s.meta["padding"] == [1, 0, 1, 0]
    assert s.arrays["image"][0].sum() == 0 and s.arrays["image"][:, 0].sum() == 0
    assert s.arrays["image"][1:, 1:].min() == 1
    centre = run(image_sample(np.ones((223, 223), np.float32), 1), "image.pad_square", size=224)
    assert centre.meta["padding"] == [0, 1, 0, 1]
    portrait = run(
        image_sample(np.ones((224, 179), np.float32), 1), "image.pad_square", size=224, align="climb"
    )
    assert portrait.meta["padding"] == [0, 0, 22, 23]  # CLIMB: pad1 = gap // 2 left, the rest right


def test_resize_after_padding_scales_the_recorded_padding() -> None:
    s = run(image_sample(np.ones((400, 300), np.float32), 1), "image.pad_square")
    assert s.meta["padding"] == [0, 0, 50, 50]
    s = run(s, "image.resize", long_side=200)
    assert s.arrays["image"].shape == (200, 200) and s.meta["padding"] == [0, 0, 25, 25]
    assert s.arrays["image"][:, :24].max() == 0 and s.arrays["image"][:, 26:174].min() == 1


def test_pad_square_refuses_an_image_larger_than_the_square() -> None:
    with pytest.raises(ItemError, match="larger than the padded size"):
        run(image_sample(np.ones((300, 200), np.uint8), 1), "image.pad_square", size=224)


def test_climbs_224_protocol_on_a_real_radiograph() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pydicom.data import get_testdata_file

        path = get_testdata_file("RG1_UNCR.dcm")
    if path is None:
        pytest.skip("RG1_UNCR.dcm (pydicom-data) is not installed")
    s = Sample(id="cr", inputs={"image": Path(path)})
    for name, params in [
        ("dicom.read", {}),
        ("dicom.modality_lut", {}),
        ("dicom.voi_lut", {}),
        ("image.resize", {"short_side": 223, "max_size": 224}),
        ("image.pad_square", {"size": 224, "align": "climb"}),
        ("image.to_dtype", {"dtype": "uint8"}),
        ("image.stats", {}),
    ]:
        s = run(s, name, **params)
    assert s.arrays["image"].shape == (224, 224) and s.arrays["image"].dtype == np.uint8
    assert s.meta["padding"] == [0, 0, 6, 7]  # 1955x1841 -> 224x211 (torchvision), gap 13: 6 left, 7 right
    assert s.meta["pixel_count"] == 224 * 211
    assert 0 < s.meta["pixel_mean"][0] < 1 and s.meta["photometric_interpretation"] == "MONOCHROME2"


# ---------------------------------------------------------------------------------------------- clahe


def test_clahe_matches_opencv_and_raises_contrast() -> None:
    rng = np.random.default_rng(0)
    img = (100 + rng.integers(0, 20, size=(128, 128))).astype(np.uint8)
    s = run(image_sample(img.copy(), 1), "image.clahe")
    expected = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(8, 8)).apply(img)
    np.testing.assert_array_equal(s.arrays["image"], expected)
    assert s.arrays["image"].std() > img.std()
    brixia = run(image_sample(img.copy(), 1), "image.clahe", clip_limit=3.0)
    np.testing.assert_array_equal(brixia.arrays["image"], cv2.createCLAHE(3.0, (8, 8)).apply(img))


def test_clahe_on_colour_uint16_and_floats() -> None:
    rgb = gradient_rgb(64, 64)
    s = run(image_sample(rgb.copy(), 3), "image.clahe")
    assert s.arrays["image"].shape == rgb.shape and s.arrays["image"].dtype == np.uint8
    wide = (np.arange(64 * 64, dtype=np.uint16).reshape(64, 64) * 3).astype(np.uint16)
    assert run(image_sample(wide, 1), "image.clahe").arrays["image"].dtype == np.uint16
    with pytest.raises(ItemError, match="uint8 or uint16"):
        run(image_sample(np.zeros((8, 8), np.float32), 1), "image.clahe")


# ------------------------------------------------------------------------------------------- to_dtype


def test_to_dtype_auto_scales_nominal_ranges() -> None:
    y = np.array([[0.0, 0.5], [0.998, 1.0]], np.float32)
    s = run(image_sample(y, 1), "image.to_dtype", dtype="uint8")
    np.testing.assert_array_equal(s.arrays["image"], [[0, 128], [254, 255]])
    assert s.meta["value_range"] == [0.0, 1.0]
    u16 = run(image_sample(np.array([[0, 255]], np.uint8), 1), "image.to_dtype", dtype="uint16")
    np.testing.assert_array_equal(u16.arrays["image"], [[0, 65535]])
    back = run(image_sample(np.array([[0, 65535, 32768]], np.uint16), 1), "image.to_dtype", dtype="float32")
    np.testing.assert_allclose(back.arrays["image"], [[0, 1, 32768 / 65535]])
    with pytest.raises(ItemError, match="not \\[0, 1\\]"):
        run(image_sample(np.array([[0.0, 3.0]], np.float32), 1), "image.to_dtype", dtype="uint8")
    with pytest.raises(ItemError, match="signed"):
        run(image_sample(np.array([[-5, 3]], np.int16), 1), "image.to_dtype", dtype="uint8")


def test_to_dtype_minmax_and_climbs_get_pixel_array_scaling() -> None:
    x = np.array([[-1024.0, 0.0], [500.0, 1976.0]], np.float32)
    mm = run(image_sample(x.copy(), 1), "image.to_dtype", dtype="float32", scale="minmax")
    np.testing.assert_allclose(mm.arrays["image"], (x + 1024) / 3000)
    assert mm.meta["value_range"] == [-1024.0, 1976.0]
    climb = run(image_sample(x.copy(), 1), "image.to_dtype", dtype="uint8", scale="max", rounding="floor")
    expected = np.uint8(np.maximum(x.astype(float), 0) / x.max() * 255.0)  # CLIMB's get_pixel_array
    np.testing.assert_array_equal(climb.arrays["image"], expected)
    flat = run(
        image_sample(np.full((2, 2), 7.0, np.float32), 1), "image.to_dtype", dtype="uint8", scale="minmax"
    )
    assert flat.arrays["image"].max() == 0
    cast = run(
        image_sample(np.array([[-3.0, 12.6, 300.0]]), 1), "image.to_dtype", dtype="uint8", scale="none"
    )
    np.testing.assert_array_equal(cast.arrays["image"], [[0, 13, 255]])


def test_to_dtype_max_equals_climbs_get_pixel_array_on_every_value() -> None:
    """Every value from -100 to a maximum of 1035: float64 max(x,0)/max*255 then the uint8 cast, exactly
    (a float32 reciprocal product floored 69, 138, 207, ... one grey level low: 16 instead of 17)."""
    x = np.arange(-100, 1036, dtype=np.float64).reshape(16, 71)
    expected = (np.maximum(x, 0) / x.max() * 255).astype(np.uint8)
    got = run(image_sample(x.copy(), 1), "image.to_dtype", dtype="uint8", scale="max", rounding="floor")
    np.testing.assert_array_equal(got.arrays["image"], expected)
    f32 = run(image_sample(x.copy(), 1), "image.to_dtype", dtype="float32", scale="max")
    np.testing.assert_allclose(f32.arrays["image"], np.maximum(x, 0) / x.max(), rtol=1e-6)


def test_convert_scale_abs_is_brixias_enhancement() -> None:
    img = np.arange(0, 256, dtype=np.uint8).reshape(16, 16)
    s = run(image_sample(img.copy(), 1), "image.convert_scale_abs", alpha=1.2, beta=30)
    np.testing.assert_array_equal(s.arrays["image"], cv2.convertScaleAbs(img, alpha=1.2, beta=30))
    assert s.arrays["image"][0, 0] == 30 and s.arrays["image"][-1, -1] == 255


# ---------------------------------------------------------------------------------------------- stats


def test_stats_per_channel_in_tensor_units_and_dataset_combination() -> None:
    a, b = gradient_rgb(20, 30), gradient_rgb(40, 10)
    sa = run(image_sample(a, 3), "image.stats")
    sb = run(image_sample(b, 3), "image.stats")
    np.testing.assert_allclose(sa.meta["pixel_mean"], a.reshape(-1, 3).mean(axis=0) / 255)
    np.testing.assert_allclose(sa.meta["pixel_std"], a.reshape(-1, 3).std(axis=0) / 255)
    assert sa.meta["pixel_count"] == 600
    # dataset statistics from the per-image columns, as documented in _pixels.channel_stats
    n = np.array([sa.meta["pixel_count"], sb.meta["pixel_count"]], float)[:, None]
    m = np.array([sa.meta["pixel_mean"], sb.meta["pixel_mean"]])
    sd = np.array([sa.meta["pixel_std"], sb.meta["pixel_std"]])
    mean = (n * m).sum(axis=0) / n.sum()
    std = np.sqrt((n * (sd**2 + m**2)).sum(axis=0) / n.sum() - mean**2)
    both = np.concatenate([a.reshape(-1, 3), b.reshape(-1, 3)]) / 255
    np.testing.assert_allclose(mean, both.mean(axis=0))
    np.testing.assert_allclose(std, both.std(axis=0))


def test_stats_leave_out_padding_and_keep_raw_values_on_request() -> None:
    img = np.full((10, 6), 0.8, np.float32)
    s = run(image_sample(img, 1), "image.pad_square", value=0.0)
    s = run(s, "image.stats")
    assert s.meta["pixel_mean"] == pytest.approx([0.8]) and s.meta["pixel_std"] == pytest.approx(
        [0.0], abs=1e-7
    )
    assert s.meta["pixel_count"] == 60
    with_pad = run(s, "image.stats", exclude_padding=False)
    assert with_pad.meta["pixel_mean"] == pytest.approx([0.8 * 60 / 100])
    raw = run(image_sample(np.array([[100, 300]], np.uint16), 1), "image.stats", scale="none")
    assert raw.meta["pixel_mean"] == [200.0]


# --------------------------------------------------------------------------------------- pixel helpers


def test_layout_tells_frames_from_colour() -> None:
    assert _pixels.layout(np.zeros((3, 3, 3)), channels=1) == (True, False)
    assert _pixels.layout(np.zeros((3, 3, 3)), channels=3) == (False, True)
    assert _pixels.layout(np.zeros((3, 3, 3))) == (False, True)
    assert _pixels.layout(np.zeros((5, 7, 7))) == (True, False)
    with pytest.raises(ValueError):
        _pixels.layout(np.zeros(5))


def test_pad_amounts_and_long_side_size() -> None:
    assert _pixels.pad_amounts(10, 7, 10, 10, "center") == (0, 0, 1, 2)
    assert _pixels.pad_amounts(10, 7, 10, 10, "start") == (0, 0, 0, 3)
    assert _pixels.pad_amounts(10, 7, 10, 10, "end") == (0, 0, 3, 0)
    assert _pixels.long_side_size(1955, 1841, 256) == (256, 241)
    assert _pixels.long_side_size(1, 1000, 10) == (1, 10)
