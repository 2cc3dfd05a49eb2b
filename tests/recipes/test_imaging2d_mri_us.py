"""Issue 12's 2D MRI and ultrasound recipes behind the fake Kaggle, on miniatures in the real Kaggle layouts:
download -> verify -> preprocess -> verify --outputs, rows checked one by one for labels, splits, stored
pixels and CLIMB's tensor (Brain Tumor MRI 4-class, Brain MRI yes/no, BUSI)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from climb_cli.tensors import to_climb
from tests.recipes.test_imaging2d import _img, _pixels
from tests.recipes.test_imaging2d_more import _kaggle_run, kaggle_env  # noqa: F401

IMAGENET = ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])


def test_brain_tumor_class_folders_official_split_and_imagenet_tensor(
    tmp_path: Path,
    kaggle_env: None,  # noqa: F811
) -> None:
    rng = np.random.default_rng(12)
    files, truth, pixels = {}, {}, {}
    for part, prefix in (("Training", "gg"), ("Testing", "image")):
        for cls in ("no_tumor", "glioma_tumor", "meningioma_tumor", "pituitary_tumor"):
            for k in range(1, 4):
                path = (
                    f"{part}/{cls}/{prefix} ({k}).jpg"
                    if part == "Training"
                    else f"{part}/{cls}/{prefix}({k}).jpg"
                )
                files[path], pixels[path] = _img(rng, 10 + k, 7, ".jpg")
                truth[path] = (cls, "train" if part == "Training" else "test")
    files["Training/no_tumor/desktop.ini"] = b"[.ShellClassInfo]\n"  # not an image: not an item
    rows, manifest = _kaggle_run(
        tmp_path, "mri/brain_tumor", "sartajbhuvaji/brain-tumor-classification-mri", files
    )
    assert [r["id"] for r in rows] == sorted(truth)
    assert manifest["splits"] == {"train": 12, "test": 12}
    for r in rows:
        assert (r["labels"], r["split"]) == ([truth[r["id"]][0]], truth[r["id"]][1])
        assert np.array_equal(_pixels(r), pixels[r["id"]])  # stored decoded, RGB, original size
    # CLIMB's tensor: Resize((224,224)) (aspect not kept) + ImageNet Normalize; a flat image gives
    # (v/255 - mean)/std everywhere, computed by hand
    flat = dict(rows[0], image=[200, 100, 50] * 6, image_shape=[2, 3, 3])
    x = to_climb(flat, manifest)
    assert x.shape == (3, 224, 224)
    for c, v in enumerate((200, 100, 50)):
        assert np.allclose(x[c], (v / 255 - IMAGENET[0][c]) / IMAGENET[1][c], atol=1e-5)
    assert to_climb(rows[0], manifest).shape == (3, 224, 224)


def test_brain_tumor_2_yes_no_and_seeded_shuffle_split(tmp_path: Path, kaggle_env: None) -> None:  # noqa: F811
    rng = np.random.default_rng(13)
    files, truth = {}, {}
    for cls, names in (
        ("no", [f"No{k}.jpg" for k in range(11, 17)] + ["no 3.jpg"]),
        ("yes", [f"Y{k}.jpg" for k in range(1, 9)]),
    ):
        for n in names:
            files[f"{cls}/{n}"] = _img(rng, 9, 8, ".jpg")[0]
            truth[f"{cls}/{n}"] = cls
    rows, _ = _kaggle_run(
        tmp_path, "mri/brain_tumor_2", "jjprotube/brain-mri-images-for-brain-tumor-detection", files
    )
    order = sorted(truth)  # CLIMB's np.random.seed(42); np.random.shuffle(items); first int(0.8 n) train
    np.random.RandomState(42).shuffle(order)
    train = set(order[: int(0.8 * len(order))])
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert r["labels"] == [truth[r["id"]]]
        assert r["split"] == ("train" if r["id"] in train else "test")


def test_busi_masks_excluded_and_per_class_sorted_split(tmp_path: Path, kaggle_env: None) -> None:  # noqa: F811
    rng = np.random.default_rng(14)
    files, pixels = {}, {}
    counts = {"normal": 4, "benign": 11, "malignant": 5}
    for cls, n in counts.items():
        for k in range(1, n + 1):
            path = f"Dataset_BUSI_with_GT/{cls}/{cls} ({k}).png"
            files[path], pixels[path] = _img(rng, 6, 5, gray=True)
            files[f"Dataset_BUSI_with_GT/{cls}/{cls} ({k})_mask.png"] = _img(rng, 6, 5, gray=True)[0]
        files[f"Dataset_BUSI_with_GT/{cls}/{cls} (1)_mask_1.png"] = _img(rng, 6, 5, gray=True)[0]
    rows, manifest = _kaggle_run(
        tmp_path, "ultrasound/busi", "aryashah2k/breast-ultrasound-images-dataset", files
    )
    assert [r["id"] for r in rows] == sorted(pixels)
    train = set()
    for cls, n in counts.items():  # busi.py: names sorted as strings, the first int(0.75 n) train
        names = sorted(p for p in pixels if f"/{cls}/" in p)
        train |= set(names[: int(0.75 * n)])
    assert "Dataset_BUSI_with_GT/benign/benign (10).png" in train  # "(10)" sorts before "(2)"
    assert "Dataset_BUSI_with_GT/benign/benign (9).png" not in train
    for r in rows:
        assert r["labels"] == [r["id"].split("/")[1]]
        assert r["split"] == ("train" if r["id"] in train else "test")
        assert np.array_equal(_pixels(r), pixels[r["id"]])
    x = to_climb(rows[0], manifest)  # CLIMB returns paths: ToTensor only
    assert x.shape == (1, 6, 5) and np.allclose(x[0], _pixels(rows[0]) / 255)
