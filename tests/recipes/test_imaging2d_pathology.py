"""Issue 12's pathology and polyp recipes on miniatures placed by hand in their real layouts (their hosts give
no API): BCSS tiles as rows with their mask tiles and the site split, LC25000's stratified split, Kvasir-SEG
images with masks, QUILT-1M's list labels with Unknown removed."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split

from climb_cli.tensors import to_climb
from tests.conftest import fast_settings
from tests.recipes.test_imaging2d import _img, _pixels, _recipe, _run


def test_bcss_tiles_with_mask_tiles_and_site_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(21)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("bcss")
    (raw / "images").mkdir(parents=True)
    (raw / "masks").mkdir()
    names = [
        "TCGA-OL-A5D6-DX1_xmin115108_ymin40414_MPP-0.2500",
        "TCGA-A2-A0D0-DX1_xmin68482_ymin39071_MPP-0.2500",
        "TCGA-GM-A2DF-DX1_xmin27530_ymin60416_MPP-0.2500",
    ]
    images, masks = {}, {}
    for n in names:
        images[n] = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)
        masks[n] = rng.integers(0, 5, (9, 12), dtype=np.uint8)
        cv2.imwrite(str(raw / "images" / f"{n}.png"), images[n][:, :, ::-1])
        cv2.imwrite(str(raw / "masks" / f"{n}.png"), masks[n])
    subs = {
        "count: 151": "count: 3",
        "size: [1024, 1024], stride: [896, 896]": "size: [4, 4], stride: [4, 4]",
    }
    rows, manifest = _run(_recipe("pathology/bcss", subs, tmp_path), settings)
    assert len(rows) == 3 * 6 and manifest["splits"] == {"test": 12, "train": 6}
    for r in rows:
        stem, n = r["id"].split("#")
        y, x = divmod(int(n), 3)
        window = (slice(4 * y, 4 * y + 4), slice(4 * x, 4 * x + 4))
        assert np.array_equal(_pixels(r), images[stem][window])
        assert np.array_equal(_pixels(r, "mask"), masks[stem][window])
        assert r["split"] == ("test" if r["site"] in ("OL", "GM") else "train") and r["site"] == stem[5:7]
    assert to_climb(rows[0], manifest).shape == (3, 224, 224)


def test_lc25000_class_folders_and_stratified_sklearn_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(22)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("lc25000")
    truth = {}
    for group, classes in (
        ("colon_image_sets", ["colon_aca", "colon_n"]),
        ("lung_image_sets", ["lung_aca", "lung_n", "lung_scc"]),
    ):
        for cls in classes:
            folder = raw / "lung_colon_image_set" / group / cls
            folder.mkdir(parents=True)
            for k in range(1, 5):
                name = f"{cls.replace('_', '')}{k}.jpeg"
                (folder / name).write_bytes(_img(rng, 6, 6, ".jpg")[0])
                truth[f"lung_colon_image_set/{group}/{cls}/{name}"] = cls
    rows, _ = _run(_recipe("pathology/lc25000", {"count: 25000": "count: 20"}, tmp_path), settings)
    paths = sorted(
        truth
    )  # CLIMB: train_test_split(paths, labels, test_size=0.25, random_state=42, stratify=labels)
    train, _test = train_test_split(
        paths, test_size=0.25, random_state=42, stratify=[truth[p] for p in paths]
    )
    assert [r["id"] for r in rows] == paths
    for r in rows:
        assert r["labels"] == [truth[r["id"]]] and r["split"] == (
            "train" if r["id"] in set(train) else "test"
        )


def test_kvasir_images_with_their_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(23)
    settings = fast_settings(tmp_path)
    root = settings.raw_dir("kvasir") / "Kvasir-SEG"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    pixels = {}
    for name in ("cju0qkwl35piu0993l0dewei2", "cju0qoxqj9q6s0835b43399p4", "cju0roawvklrq0799vmjorwfv"):
        (root / "images" / f"{name}.jpg").write_bytes(_img(rng, 7, 9, ".jpg")[0])
        data, pixels[name] = _img(rng, 7, 9, ".jpg", gray=True)
        (root / "masks" / f"{name}.jpg").write_bytes(data)
    (root / "kavsir_bboxes.json").write_text("{}")
    rows, _ = _run(_recipe("polyp/kvasir", {"count: 1000": "count: 3"}, tmp_path), settings)
    assert [r["id"] for r in rows] == sorted(pixels)
    for r in rows:
        assert r["split"] == "train" and r["image_shape"] == [7, 9, 3]
        assert np.array_equal(_pixels(r, "mask"), pixels[r["id"]])


def test_quilt_1m_list_labels_unknown_removed_one_row_per_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(24)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("quilt_1m")
    (raw / "images").mkdir(parents=True)
    table = pd.DataFrame(
        {
            "image_path": ["a.jpg", "a.jpg", "b.jpg", "c.jpg", "d.jpg"],
            "caption": ["x", "y", "z", "w", "v"],
            "pathology": [
                "['Breast']",
                "['Breast', 'Unknown']",
                "['Lung', 'Breast']",
                "['Unknown']",
                "['Skin']",
            ],
        }
    )
    table.to_csv(raw / "quilt_1M_lookup.csv", index=False)
    for p in sorted(set(table["image_path"])):
        (raw / "images" / p).write_bytes(_img(rng, 5, 5, ".jpg")[0])
    rows, manifest = _run(_recipe("pathology/quilt_1m"), settings)
    labels = {r["id"]: sorted(r["labels"]) for r in rows}
    assert labels == {"a.jpg": ["Breast"], "b.jpg": ["Breast", "Lung"], "c.jpg": [], "d.jpg": ["Skin"]}
    assert sorted(manifest["classes"]) == ["Breast", "Lung", "Skin"]


def test_medpix_images_placed_with_their_descriptions(tmp_path: Path) -> None:
    rng = np.random.default_rng(25)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("medpix")
    (raw / "images").mkdir(parents=True)
    pixels = {}
    for name, gray in (("MPX1009_synpic46283", True), ("MPX1010_synpic46284", False)):
        data, pixels[name] = _img(rng, 6, 8, gray=gray)
        (raw / "images" / f"{name}.png").write_bytes(data)
    (raw / "Descriptions.json").write_text("[]")
    rows, _ = _run(_recipe("mri/medpix"), settings)
    assert [r["id"] for r in rows] == sorted(pixels)
    for r in rows:
        assert r["split"] == "train" and np.array_equal(_pixels(r), pixels[r["id"]])
