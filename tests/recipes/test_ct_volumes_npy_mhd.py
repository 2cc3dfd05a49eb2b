"""RadFusion and LNDb end to end with the packaged recipes: RadFusion's `.npy` slice stacks and Labels.csv in
the AIMI container's layout behind the fake Azure Blob endpoint; LNDb's SimpleITK-written .mhd/.raw scans,
radiologist masks and trainNodules.csv placed by hand (its Zenodo record is not known). download -> verify ->
preprocess -> verify --outputs, every window checked for its voxels, labels and split, and CLIMB's tensor
from a stored row."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.pipeline import preprocess
from climb_cli.tensors import to_climb
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.test_miniatures import _build

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "ct"

# ------------------------------------------------------------------------------------------------
# RadFusion: Labels.csv + 0..7/{idx}.npy behind the fake AIMI container

RADFUSION_CONTAINER = "multimodalpulmonaryembolismdataset"
# idx, label, pe_type, split, slices, folder
STUDIES = [
    ("1001", "1", "central", "train", 50, "0"),
    ("1002", "0", "", "train", 37, "3"),
    ("1003", "1", "segmental", "test", 61, "7"),
    ("1004", "0", "", "test", 48, "3"),
]


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _copy_recipe(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    for ext in ("yaml", "py"):
        shutil.copy(RECIPES / f"{name}.{ext}", folder / f"{name}.{ext}")
    return folder


def test_radfusion_npy_stacks_behind_aimi_windows_labels_split_and_tensor(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.azure_blob import AzureBlob, FakeAzureBlob

    rng = np.random.default_rng(13)
    blobs, stacks = [], {}
    table = "idx,label,pe_type,split\n"
    for idx, label, pe_type, split, n, folder in STUDIES:
        stack = rng.integers(-1024, 1500, size=(n, 20, 18)).astype(np.int16)
        stacks[idx] = stack
        blobs.append(AzureBlob(f"{folder}/{idx}.npy", _npy(stack)))
        table += f"{idx},{label},{pe_type},{split}\n"
    blobs.append(AzureBlob("Labels.csv", table.encode()))
    monkeypatch.delenv("AIMI_SAS_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    sas = tmp_path / "xdg" / "climb" / "aimi" / f"{RADFUSION_CONTAINER}.sas"
    sas.parent.mkdir(parents=True)
    recipe = Catalog([_copy_recipe(tmp_path, "radfusion")]).load("radfusion")
    with FakeAzureBlob({RADFUSION_CONTAINER: blobs}) as azure:
        settings = fast_settings(tmp_path, {})
        sas.write_text(azure.container_url(RADFUSION_CONTAINER, ttl=3600) + "\n")
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
        raw, _ = verify_raw(recipe, settings)
        assert raw.ok, raw.as_dict()
    rows, manifest = _build(recipe, settings)
    expected = {}
    for idx, label, pe_type, split, n, _ in STUDIES:
        resized = np.stack([cv2.resize(s, (256, 256), interpolation=cv2.INTER_CUBIC) for s in stacks[idx]])
        for w in range((n - 24) // 12):
            expected[f"{idx}#{w}"] = (resized[12 * w : 12 * w + 24], label, pe_type, split)
    assert [r["id"] for r in rows] == sorted(expected)
    assert len(rows) == 2 + 1 + 3 + 2
    assert manifest["arrays"]["windows"]["dtype"] == "int16"
    for r in rows:
        window, label, pe_type, split = expected[r["id"]]
        got = np.asarray(r["windows"], dtype=np.int16).reshape(r["windows_shape"])
        assert np.array_equal(got, window)
        assert r["labels"] == ["PE" if label == "1" else "No PE"]
        assert r["split"] == split and r["pe_type"] == pe_type
        x = to_climb(r, manifest)  # CLIMB: window 400/1000 -> [0, 1], (1, 256, 256, 24)
        assert x.shape == (1, 256, 256, 24) and x.dtype == np.float32
        want = (np.clip(window.astype(np.float64), -100, 900) + 100) / 1000
        assert np.allclose(x[0], np.transpose(want, (1, 2, 0)), atol=1e-6)


def test_radfusion_missing_stack_is_an_item_error_and_a_pickled_npy_is_refused(tmp_path: Path) -> None:
    recipe = Catalog([_copy_recipe(tmp_path, "radfusion")]).load("radfusion")  # files placed, not downloaded
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("radfusion")
    (raw / "0").mkdir(parents=True)
    (raw / "Labels.csv").write_text("idx,label,pe_type,split\n1,1,x,train\n2,0,,test\n3,0,,test\n")
    np.save(raw / "0" / "1.npy", np.zeros((40, 8, 8), dtype=np.int16))
    np.save(raw / "0" / "3.npy", np.array([{"a": 1}] * 2, dtype=object), allow_pickle=True)
    report = preprocess(recipe, settings, workers=1)
    assert report.errors == 2
    why = {i: reason for u in report.units for i, _, reason in u.errors}
    assert why["2"] == "2.npy: file not found"
    assert "3.npy" in why["3"] and "pickle" in why["3"].lower()


# ------------------------------------------------------------------------------------------------
# LNDb: SimpleITK-written scans and radiologist masks, trainNodules.csv, placed by hand (manual source)

SPACING, ORIGIN = (0.7, 0.7, 1.25), (-10.0, -8.0, -60.0)  # x, y, z
NY, NX = 18, 20


def _world(i: float, j: float, k: float) -> tuple[float, float, float]:
    return ORIGIN[0] + i * SPACING[0], ORIGIN[1] + j * SPACING[1], ORIGIN[2] + k * SPACING[2]


def _mhd(path: Path, arr: np.ndarray) -> None:
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(arr)
    img.SetSpacing(SPACING)
    img.SetOrigin(ORIGIN)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(img, str(path))  # LNDb-XXXX.mhd + LNDb-XXXX.raw


# per scan: slices, findings (rad, finding, voxel (i, j, k), nodule, volume, mask slices or None), windows'
# expected labels
BIG, SMALL = 500.0, 10.0  # mm^3: equivalent diameters 9.8 mm and 2.7 mm
LNDB = {
    1: (60, [(1, 1, (10, 9, 31.5), 1, BIG, range(30, 34)), (2, 1, (10.7, 9, 33), 1, BIG, range(31, 36)),
             (1, 2, (3, 3, 5), 0, 0.0, None)],
        [[], ["big"], ["big"]]),
    2: (50, [(1, 1, (8, 8, 25), 1, SMALL, range(25, 26))],  # centre slice 25: range 23..27
        [[], ["small"]]),  # CLIMB's 25-slice overlap would make window 0 (0..23, +24) small too
    3: (40, [(1, 1, (10, 9, 0.5), 1, BIG, range(0, 2)), (2, 1, (10, 9, 21), 1, BIG, range(20, 23))],
        [["big"]]),
    4: (38, [(3, 1, (5, 5, 10), 0, 0.0, None)], [[]]),
}  # fmt: skip


def test_lndb_mhd_scans_and_masks_merged_findings_windows_split_and_tensor(tmp_path: Path) -> None:
    from scipy.ndimage import zoom

    from tests.recipes.conftest import packaged, rewritten

    data = packaged("lndb")
    data["sources"][0]["globs"][0]["count"] = len(LNDB)
    recipe = rewritten(tmp_path, data, hook_from="lndb")
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("lndb")
    rng = np.random.default_rng(21)
    scans = {}
    lines = ["LNDbID,RadID,FindingID,x,y,z,Nodule,Volume,Text"]
    for lndb_id, (n, findings, _) in LNDB.items():
        scans[lndb_id] = rng.integers(-1200, 400, size=(n, NY, NX)).astype(np.int16)
        _mhd(raw / "data" / f"LNDb-{lndb_id:04d}.mhd", scans[lndb_id])
        masks: dict[int, np.ndarray] = {}
        for rad, finding, (i, j, k), nodule, volume, slices in findings:
            x, y, z = _world(i, j, k)
            lines.append(f"{lndb_id},{rad},{finding},{x},{y},{z},{nodule},{volume},{3 if nodule else 0}")
            mask = masks.setdefault(rad, np.zeros((n, NY, NX), dtype=np.uint8))
            if slices is not None:
                mask[slices.start : slices.stop, 4:7, 5:8] = finding
        for rad, mask in masks.items():
            _mhd(raw / "masks" / f"LNDb-{lndb_id:04d}_rad{rad}.mhd", mask)
    (raw / "trainNodules.csv").write_text("\n".join(lines) + "\n")
    dl = download(recipe, settings)  # the manual source: checks and pins what was placed
    assert dl.ok, (dl.error, dl.problems)
    rows, manifest = _build(recipe, settings)
    expected = {}
    for lndb_id, (n, _, windows) in LNDB.items():
        assert len(windows) == (n - 24) // 12
        for w, labels in enumerate(windows):
            expected[f"LNDb-{lndb_id:04d}#{w}"] = (lndb_id, w, labels)
    assert [r["id"] for r in rows] == sorted(expected)
    for r in rows:
        lndb_id, w, labels = expected[r["id"]]
        assert r["labels"] == labels, r["id"]
        assert r["target"] == [int("small" in labels), int("big" in labels)]
        assert r["split"] == ("test" if lndb_id == 4 else "train")  # sorted ids: the first 75 % train
        got = np.asarray(r["windows"], dtype=np.int16).reshape(r["windows_shape"])
        assert got.shape == (24, 256, 256)
        if w == 0 and lndb_id in (1, 2):  # CLIMB's __getitem__ (a 3-D zoom: slow, so two windows)
            climb = zoom(scans[lndb_id][12 * w : 12 * w + 24], (1, 256 / NY, 256 / NX))
            assert np.abs(got.astype(int) - climb.astype(int)).max() <= 1
        x = to_climb(r, manifest)
        lower, upper = -600 - 750, -600 + 750
        want = (np.clip(got.astype(np.float64), lower, upper) - lower) / (upper - lower)
        assert x.shape == (1, 256, 256, 24) and np.allclose(x[0], np.transpose(want, (1, 2, 0)), atol=1e-6)
