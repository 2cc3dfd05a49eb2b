"""Tests of the video steps: decoding AVI (MJPG) and MP4 (mp4v) written with OpenCV in tmp_path, uniform and
fps frame sampling checked frame by frame (each frame carries its index as 8 black/white blocks, which
survive lossy codecs), colour order, resizing, corrupt/truncated files, and CLIMB's CT-to-video reproduced
exactly on nibabel's bundled real NIfTI.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, registry
from climb_cli.steps.video import fps_indices, uniform_indices

NIB_DATA = Path(nib.__file__).parent / "tests" / "data"
H, W = 64, 128  # 2 rows x 4 columns of 32x32 blocks, one bit each


def run(sample: Sample, name: str, **params: Any) -> Sample:
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def coded_frame(index: int) -> np.ndarray:
    """A BGR frame whose 8 blocks spell `index` in binary (bit b = block b, row-major, white = 1)."""
    frame = np.zeros((H, W, 3), np.uint8)
    for b in range(8):
        if index >> b & 1:
            r, c = divmod(b, 4)
            frame[r * 32 : (r + 1) * 32, c * 32 : (c + 1) * 32] = 255
    return frame


def decode_index(frame: np.ndarray) -> int:
    gray = frame if frame.ndim == 2 else frame.mean(axis=2)
    value = 0
    for b in range(8):
        r, c = divmod(b, 4)
        block = gray[r * 32 + 8 : (r + 1) * 32 - 8, c * 32 + 8 : (c + 1) * 32 - 8]  # centre: away from edges
        value |= int(block.mean() > 127) << b
    return value


def write_video(path: Path, n: int, fourcc: str, fps: float = 25.0) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (W, H), True)
    assert writer.isOpened(), f"OpenCV cannot write {fourcc}"
    for i in range(n):
        writer.write(coded_frame(i))
    writer.release()
    return path


@pytest.fixture(params=[("avi", "MJPG"), ("mp4", "mp4v")], ids=["avi-mjpg", "mp4-mp4v"])
def video(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    suffix, fourcc = request.param
    return write_video(tmp_path / f"clip.{suffix}", 50, fourcc)


def read(path: Path, **params: Any) -> Sample:
    return run(Sample("v", inputs={"video": path}), "video.read", **params)


def indices_in(s: Sample) -> list[int]:
    return [decode_index(f) for f in s.arrays["video"]]


def test_all_frames(video: Path) -> None:
    s = read(video)
    assert s.arrays["video"].shape == (50, H, W, 3) and s.arrays["video"].dtype == np.uint8
    assert indices_in(s) == list(range(50)) == s.meta["frame_indices"]
    assert s.meta["source_fps"] == pytest.approx(25.0) and s.meta["fps"] == pytest.approx(25.0)
    assert s.meta["frame_count"] == s.meta["source_frame_count"] == 50
    assert s.meta["duration"] == pytest.approx(2.0)
    assert s.sources == [video]


def test_uniform_frames(video: Path) -> None:
    s = read(video, frames=8, color="gray")
    assert s.arrays["video"].shape == (8, H, W)
    assert s.meta["frame_indices"] == [0, 7, 14, 21, 28, 35, 42, 49]
    assert indices_in(s) == s.meta["frame_indices"]
    assert s.meta["fps"] == pytest.approx(8 / 2.0) and s.meta["color"] == "gray"


def test_target_fps(video: Path) -> None:
    s = read(video, fps=5.0)
    assert s.meta["frame_indices"] == list(range(0, 50, 5))
    assert indices_in(s) == list(range(0, 50, 5))
    assert s.meta["fps"] == 5.0 and s.meta["frame_count"] == 10


def test_sampling_rules() -> None:
    assert uniform_indices(10, 1) == [4]
    assert uniform_indices(3, 5) == [0, 0, 1, 2, 2]  # more frames than the video: repeats, length kept
    assert fps_indices(50, 25.0, 10.0) == [
        0,
        2,
        5,
        7,
        10,
        12,
        15,
        17,
        20,
        22,
        25,
        27,
        30,
        32,
        35,
        37,
        40,
        42,
        45,
        47,
    ]
    assert fps_indices(31, 30.0, 10.0) == list(range(0, 31, 3))  # 11 frames cover 31 source frames
    assert fps_indices(4, 10.0, 20.0) == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValidationError):
        registry()["video.read"].params.model_validate({"frames": 4, "fps": 2.0})


def test_rgb_channel_order(tmp_path: Path) -> None:
    path = tmp_path / "red.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H), True)
    red_bgr = np.zeros((H, W, 3), np.uint8)
    red_bgr[..., 2] = 255
    for _ in range(3):
        writer.write(red_bgr)
    writer.release()
    frame = read(path).arrays["video"][0].astype(int)
    assert frame[..., 0].mean() > 200 and frame[..., 2].mean() < 50  # R first, not OpenCV's BGR
    gray = read(path, color="gray").arrays["video"][0]
    assert 60 < gray.mean() < 90  # 0.299 * 255


def test_corrupt_and_truncated_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(ItemError, match="junk.mp4: OpenCV/FFmpeg cannot open"):
        read(junk)
    good = write_video(tmp_path / "full.avi", 40, "MJPG")
    data = good.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ItemError, match=r"cut.avi: decoded \d+ frames but the container says 40"):
        read(cut, frames=4)
    s = read(cut, frames=4, allow_short=True)  # replanned on the frames really there
    n = s.meta["source_frame_count"]
    assert 0 < n < 40 and s.meta["frame_indices"] == uniform_indices(n, 4)
    assert indices_in(s) == s.meta["frame_indices"]
    mp4 = write_video(tmp_path / "full.mp4", 40, "mp4v")
    half = tmp_path / "half.mp4"
    half.write_bytes(mp4.read_bytes()[: mp4.stat().st_size // 2])
    with pytest.raises(ItemError, match="half.mp4"):
        read(half)
    with pytest.raises(ItemError, match="not found"):
        read(tmp_path / "absent.mp4")


def test_memory_cap(video: Path) -> None:
    with pytest.raises(ItemError, match="over max_bytes"):
        read(video, max_bytes=10 * H * W * 3)
    assert read(video, frames=10, max_bytes=10 * H * W * 3).arrays["video"].shape[0] == 10


def test_resize(video: Path) -> None:
    s = read(video, frames=3)
    exact = run(Sample("v", arrays={"video": s.arrays["video"].copy()}), "video.resize", size=[32, 40])
    assert exact.arrays["video"].shape == (3, 32, 40, 3)
    np.testing.assert_array_equal(
        exact.arrays["video"][1], cv2.resize(s.arrays["video"][1], (40, 32), interpolation=cv2.INTER_AREA)
    )
    sq = run(
        Sample("v", arrays={"video": s.arrays["video"].copy()}), "video.resize", long_side=64, pad_square=True
    )
    assert sq.arrays["video"].shape == (3, 64, 64, 3) and sq.meta["pad_offset"] == [16, 0]
    assert sq.arrays["video"][:, :16].max() == 0 and sq.arrays["video"][:, 48:].max() == 0
    with pytest.raises(ValidationError):
        registry()["video.resize"].params.model_validate({"size": [2, 2], "long_side": 4})


# ------------------------------------------------------------------------------------------ from_volume


def climb_nifti_to_frames(path: Path) -> np.ndarray:
    """CLIMB's nifti_to_video (ct/nifti_utils.py as documented), frames kept instead of written to MP4."""
    data = nib.load(str(path)).get_fdata()
    clahe = cv2.createCLAHE(clipLimit=1.5, tileGridSize=(8, 8))
    frames = []
    for i in range(data.shape[0]):  # array axis 0, no reorientation
        x = data[i]
        lower, upper = 80 - 700 / 2, 80 + 700 / 2
        x = ((np.clip(x, lower, upper) - lower) / 700 * 255).astype(np.uint8)
        frames.append(cv2.cvtColor(clahe.apply(x), cv2.COLOR_GRAY2BGR))
    return np.stack(frames)


def ct_like_nifti(path: Path) -> Path:
    """An int16 NIfTI with scl_slope/inter and an oblique-free but flipped affine, HU from -1000 to 1000."""
    rng = np.random.default_rng(2)
    x, y, z = np.meshgrid(
        np.linspace(-1, 1, 30), np.linspace(-1, 1, 36), np.linspace(-1, 1, 12), indexing="ij"
    )
    hu = 900 * np.cos(3 * x) * np.sin(2 * y + z) + rng.normal(0, 40, x.shape)
    affine = np.array([[-0.8, 0, 0, 50], [0, 0.7, 0, -20], [0, 0, 2.5, 10], [0, 0, 0, 1]])
    img = nib.Nifti1Image(np.rint(hu + 1024).astype(np.int16), affine)
    img.header.set_slope_inter(1.0, -1024.0)
    nib.save(img, str(path))
    return path


@pytest.mark.parametrize("real", [True, False], ids=["nibabel-anatomical", "generated-ct"])
def test_from_volume_reproduces_climb_exactly(real: bool, tmp_path: Path) -> None:
    path = NIB_DATA / "anatomical.nii" if real else ct_like_nifti(tmp_path / "ct.nii.gz")
    s = run(Sample("ct", inputs={"volume": path}), "volume.read")
    s = run(s, "video.from_volume", along="x", transpose=True, channels=3)
    expected = climb_nifti_to_frames(path)
    assert s.arrays["video"].shape == expected.shape == ((33, 41, 25, 3) if real else (30, 36, 12, 3))
    np.testing.assert_array_equal(s.arrays["video"], expected)
    if not real:
        assert len(np.unique(expected)) > 100  # real contrast, not a saturated window
    assert "volume" not in s.arrays
    assert s.meta["fps"] == 10.0 and s.meta["frame_count"] == expected.shape[0]
    assert (s.meta["window_center"], s.meta["window_width"], s.meta["clahe_clip_limit"]) == (80.0, 700.0, 1.5)


def test_from_volume_axial_default() -> None:
    rng = np.random.default_rng(1)
    vol = rng.normal(0, 300, size=(5, 40, 48)).astype(np.float32)
    s = run(Sample("ct", arrays={"volume": vol}), "video.from_volume", clahe=False, keep_volume=True)
    assert s.arrays["video"].shape == (5, 40, 48) and s.arrays["video"].dtype == np.uint8
    lower = 80 - 350
    np.testing.assert_array_equal(
        s.arrays["video"],
        ((np.clip(vol.astype(np.float64), lower, lower + 700) - lower) / 700 * 255).astype(np.uint8),
    )
    assert "volume" in s.arrays and s.meta["clahe_clip_limit"] == 0.0
    lung = run(Sample("ct", arrays={"volume": vol}), "video.from_volume", preset="lung", along="y")
    assert lung.arrays["video"].shape == (40, 5, 48) and lung.meta["window_center"] == -600.0
    custom = run(Sample("ct", arrays={"volume": vol}), "video.from_volume", center=0, width=100, clahe=False)
    assert custom.meta["window_preset"] == "custom" and custom.meta["window_width"] == 100.0
    for bad in ({"preset": "pe", "center": 0, "width": 10}, {"center": 0}):
        with pytest.raises(ValidationError):
            registry()["video.from_volume"].params.model_validate(bad)
