"""The pages as a person sees them: each one opened from its file:// URL in a real headless Chromium
(Debian's package; .ci/run installs it) and screenshotted. A blank page, a page whose styles or
embedded images did not load, or one that lost its charts fails: the screenshot must not be uniform,
must have content all down its first screenful, and must show the colours of what it embeds (the
thumbnails' own pixels, the traces, the bars, the flagged difference) below the page header.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

from climb_cli.report import charts, write_reports
from tests.report.conftest import Demo, Mini

HEADER = 150  # px: the title block; what is checked below it is the page's own content
WIDTH, HEIGHT = 1280, 1800


def _browser() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed: .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (apt-get install chromium; .ci/run does)")


def screenshot(page: Path, tmp_path: Path) -> np.ndarray:
    """RGB pixels of the page in a 1280 x 1800 window."""
    png = tmp_path / f"{page.stem}.png"
    cmd = [
        _browser(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--screenshot={png}",
        f"--window-size={WIDTH},{HEIGHT}",
        page.as_uri(),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert png.is_file(), f"no screenshot (exit {proc.returncode}): {proc.stderr[-2000:]}"
    img = cv2.imread(str(png), cv2.IMREAD_COLOR)
    assert img is not None and img.shape[:2] == (HEIGHT, WIDTH)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def assert_looks_like_a_page(img: np.ndarray, content_height: int) -> None:
    """Not uniform, a white main column on the grey page background (the stylesheet applied), and
    something drawn in every 100 px band of the first `content_height` px."""
    assert img.std() > 5, "the screenshot is (nearly) uniform: a blank page"
    assert tuple(img[HEIGHT // 2, 5]) == (246, 247, 249), "page background: the stylesheet did not apply"
    main = img[:, WIDTH // 2 - 500 : WIDTH // 2 + 500]
    ink = (np.abs(main.astype(int) - 255).sum(axis=2) > 60).astype(np.uint8)
    for top in range(0, content_height, 100):
        assert ink[top : top + 100].mean() > 0.002, f"nothing drawn between y={top} and y={top + 100}"


def pixels(img: np.ndarray, rgb: tuple[int, int, int], tol: int = 6) -> np.ndarray:
    """(y, x) of the pixels within `tol` of a colour, below the header."""
    near = np.abs(img[HEADER:].astype(int) - np.array(rgb)).max(axis=2) <= tol
    ys, xs = np.nonzero(near)
    return np.stack([ys + HEADER, xs], axis=1)


def hex_rgb(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


@pytest.fixture(scope="module")
def written(minis: Mini, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = write_reports(list(minis.recipes.values()), minis.settings, tmp_path_factory.mktemp("shown"))
    return {**out.pages, "index": out.index}


def test_image_page_shows_its_thumbnails_bars_and_flag(written: dict[str, Path], tmp_path: Path) -> None:
    img = screenshot(written["mini-image"], tmp_path)
    assert_looks_like_a_page(img, HEIGHT - 200)
    assert len(pixels(img, (230, 180, 40), tol=20)) > 3 * 2000  # the three circles, decoded and drawn
    assert len(pixels(img, (40, 160, 230), tol=20)) > 2 * 2000  # the two squares
    assert len(pixels(img, hex_rgb(charts.ACTUAL), tol=2)) > 200  # count bars
    assert len(pixels(img, hex_rgb(charts.OFF), tol=2)) > 100  # the flagged class bar


def test_volume_page_shows_three_planes(written: dict[str, Path], tmp_path: Path) -> None:
    img = screenshot(written["mini-volume"], tmp_path)
    assert_looks_like_a_page(img, HEIGHT - 200)
    dark = pixels(img, (0, 0, 0), tol=12)  # the gradient's dark end, in every plane
    assert len(dark) > 3000
    # planes of one sample sit side by side: dark pixels spread over more than two plane widths
    assert np.ptp(dark[:, 1]) > 2 * 150


def test_video_page_shows_strips_of_frames(written: dict[str, Path], tmp_path: Path) -> None:
    img = screenshot(written["mini-video"], tmp_path)
    assert_looks_like_a_page(img, HEIGHT - 200)
    frames = pixels(img, (20, 20, 20), tol=8)  # the clips' background
    assert len(frames) > 3 * 5 * 10_000 and np.ptp(frames[:, 1]) > 700  # five frames across each strip


def test_demo_page_shows_ecg_traces(demo: Demo, tmp_path: Path) -> None:
    img = screenshot(demo.page, tmp_path)
    assert_looks_like_a_page(img, HEIGHT - 200)
    trace = pixels(img, (29, 79, 154), tol=40)
    assert len(trace) > 6 * 500 and np.ptp(trace[:, 1]) > 700  # six traced samples across the grid


def test_index_page_shows_the_corpus(written: dict[str, Path], tmp_path: Path) -> None:
    img = screenshot(written["index"], tmp_path)
    assert_looks_like_a_page(img, 600)
    assert len(pixels(img, (176, 58, 36), tol=30)) > 100  # the problems column and the warning card


def test_the_checks_fail_on_a_blank_or_broken_page(written: dict[str, Path], tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><title>blank</title>")
    with pytest.raises(AssertionError, match="uniform"):
        assert_looks_like_a_page(screenshot(blank, tmp_path), 600)
    broken = tmp_path / "broken.html"  # the same page with its stylesheet and embedded images damaged
    text = written["mini-image"].read_text().replace("<style>", "<style>x{").replace("base64,", "base64,AAAA")
    broken.write_text(text)
    img = screenshot(broken, tmp_path)
    with pytest.raises(AssertionError, match="stylesheet"):
        assert_looks_like_a_page(img, HEIGHT - 200)
    assert len(pixels(img, (230, 180, 40), tol=20)) < 100
