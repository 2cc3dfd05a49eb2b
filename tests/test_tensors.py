"""CLIMB's load-time transforms (climb_cli.tensors) against hand-computed sizes, pads and values, and
against torchvision itself where it is installed."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from climb_cli.recipe import ClimbTensorSpec
from climb_cli.tensors import _std2d, apply, row_array, to_climb


@pytest.mark.parametrize(
    ("hw", "want"),
    [
        (
            (400, 300),
            (224, 168),
        ),  # portrait: 223 x 297 would pass 224 -> long side 224, short int(224*223/297)
        ((300, 400), (168, 224)),  # landscape, the same turned
        ((500, 500), (223, 223)),  # square: 223 fits
        ((2000, 1900), (224, 213)),  # 223 x 234 -> int(224 * 223 / 234) = 213
        ((100, 80), (224, 179)),  # upsampling follows the same rule
    ],
)
def test_std2d_output_size_is_torchvisions_rule(hw: tuple[int, int], want: tuple[int, int]) -> None:
    assert _std2d(*hw, 224) == want


def test_square_image_is_padded_one_pixel_left_and_top_after_normalize() -> None:
    img = np.full((500, 500), 200, dtype=np.uint8)
    x = apply(img, {"transform": "std2d", "mean": [0.5], "std": [0.25], "pad": "center"})
    assert x.shape == (1, 224, 224) and x.dtype == np.float32
    value = (200 / 255 - 0.5) / 0.25
    assert np.all(x[0, 0, :] == 0) and np.all(
        x[0, :, 0] == 0
    )  # the pad: 0 (= the mean), first row and column
    np.testing.assert_allclose(x[0, 1:, 1:], value, rtol=1e-6)


def test_width_only_pad_leaves_a_landscape_image_short() -> None:
    img = np.full((300, 400), 10, dtype=np.uint8)
    x = apply(img, {"transform": "std2d", "mean": [0.1180], "std": [1.0], "pad": "width"})
    assert x.shape == (1, 168, 224)
    portrait = apply(np.full((400, 300), 10, dtype=np.uint8), {"transform": "std2d", "pad": "width"})
    assert portrait.shape == (1, 224, 224)
    assert np.all(portrait[0, :, :28] == 0) and np.all(portrait[0, :, -28:] == 0)


def test_fixed_pad_short_side_resize_and_square_resize() -> None:
    img = np.zeros((1000, 1500, 3), dtype=np.uint8)
    x = apply(img, {"transform": "std2d", "pad": "fixed", "pad_fixed": [0, 37, 0, 38]})
    assert x.shape == (3, 149 + 75, 224)  # Messidor-2: 224 x 149, then Pad((0, 37, 0, 38))
    assert apply(img, {"transform": "resize_short", "pad": "none"}).shape == (3, 224, 336)  # Jichi
    assert apply(img, {"transform": "resize_square", "pad": "none"}).shape == (3, 224, 224)  # ChestX-ray8


def test_aptos_square_images_fill_224_and_others_get_std2d_with_a_height_pad() -> None:
    spec = {"transform": "std2d_square", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5], "pad": "height"}
    square = apply(np.full((500, 500, 3), 255, dtype=np.uint8), spec)
    assert square.shape == (3, 224, 224) and np.all(square == 1.0)  # Resize(224): no pad, (1 - 0.5) / 0.5
    wide = apply(np.full((300, 400, 3), 255, dtype=np.uint8), spec)
    assert wide.shape == (3, 224, 224)  # 168 x 224, then 28 rows above and below
    assert np.all(wide[:, :28] == 0) and np.all(wide[:, -28:] == 0) and np.all(wide[:, 28:-28] == 1.0)
    # std2d itself would leave the square one 223 x 223 and pad it: the rule differs exactly there
    assert apply(np.full((500, 500, 3), 255, dtype=np.uint8), {**spec, "transform": "std2d"})[0, 0, 0] == 0


def test_resize_is_pils_bilinear_and_channels_are_converted() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (61, 47, 3), dtype=np.uint8)
    x = apply(img, {"transform": "std2d", "channels": "L", "pad": "none"})
    want_hw = _std2d(61, 47, 224)
    pil = Image.fromarray(img).convert("L").resize(want_hw[::-1], Image.BILINEAR)
    np.testing.assert_array_equal(x[0], np.asarray(pil, dtype=np.float32) / 255.0)


def test_row_and_manifest_and_refusals() -> None:
    img = np.arange(12, dtype=np.uint8).reshape(3, 4)
    row = {"image": img.ravel().tolist(), "image_shape": [3, 4]}
    np.testing.assert_array_equal(row_array(row), img)
    spec = ClimbTensorSpec(transform="none", pad="none").model_dump()
    manifest = {"climb_tensor": spec, "arrays": {"image": {"dtype": "uint8"}}}
    np.testing.assert_allclose(to_climb(row, manifest)[0], img / 255.0, rtol=1e-6)
    with pytest.raises(ValueError, match="records no climb_tensor"):
        to_climb(row, {"dataset": "x", "climb_tensor": None})
    with pytest.raises(ValueError, match="8-bit"):
        apply(img.astype(np.uint16), spec)
    with pytest.raises(ValueError, match="mean and std go together"):
        ClimbTensorSpec(mean=[0.5])
    with pytest.raises(ValueError, match="pad_fixed"):
        ClimbTensorSpec(pad="fixed")


def test_matches_torchvision_where_installed() -> None:
    tv = pytest.importorskip("torchvision.transforms")
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (300, 257), dtype=np.uint8)
    pil = Image.fromarray(img)
    t = tv.Compose([tv.Resize(223, max_size=224), tv.ToTensor(), tv.Normalize([0.4721], [0.3025])])(pil)
    h, w = t.shape[1:]
    t = torch.nn.functional.pad(
        t, ((224 - w) - (224 - w) // 2, (224 - w) // 2, (224 - h) - (224 - h) // 2, (224 - h) // 2)
    )
    x = apply(img, {"transform": "std2d", "mean": [0.4721], "std": [0.3025], "pad": "center"})
    np.testing.assert_allclose(x, t.numpy(), atol=1e-6)


def test_ct_window_is_climbs_windowing_as_a_channel_first_depth_last_tensor() -> None:
    # LNDb's -600/1500: lower -600 - 750 = -1350, upper 150; values by hand
    window = np.array([[[-2000, -1350], [-600, 150]], [[0, 1000], [-975, 149]]], dtype=np.int16)  # (z, y, x)
    row = {"windows": window.reshape(-1).tolist(), "windows_shape": [2, 2, 2]}
    manifest = {"climb_tensor": {"transform": "ct_window", "center": -600, "width": 1500, "array": "windows"},
                "arrays": {"windows": {"dtype": "int16"}}}  # fmt: skip
    x = to_climb(row, manifest)
    assert x.shape == (1, 2, 2, 2) and x.dtype == np.float32
    assert x[0, :, :, 0].tolist() == [[0.0, 0.0], [0.5, 1.0]]  # slice 0: clipped, clipped, centre, upper
    assert np.allclose(x[0, :, :, 1], [[0.9, 1.0], [0.25, 1499 / 1500]])  # 0 HU: 1350 / 1500
    with pytest.raises(ValueError, match="center and width go with transform: ct_window"):
        ClimbTensorSpec(transform="ct_window")
    with pytest.raises(ValueError, match="center and width go with transform: ct_window"):
        ClimbTensorSpec(transform="none", center=1, width=2)
