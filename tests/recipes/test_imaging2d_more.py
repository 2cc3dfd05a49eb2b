"""The rest of issue 12's recipes on miniatures in their real layout, through their own sources (Kaggle
datasets, the ISIC and Mendeley buckets over HTTPS, AIMI, NBIA, manual placements): labels, splits, hooks
and stored pixels row by row. test_imaging2d.py covers one recipe per source kind in full."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from climb_cli.splits import cut_points, draw
from climb_cli.tensors import to_climb
from tests.conftest import fast_settings
from tests.fakes.bucket import FakeBucket
from tests.recipes.test_imaging2d import KAGGLE_TOKEN, _img, _pixels, _recipe, _run
from tests.sources.test_manual import _zip


@pytest.fixture
def kaggle_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)


def _kaggle_run(tmp_path: Path, key: str, slug: str, files: dict[str, bytes], subs: dict | None = None):  # noqa: ANN202
    from tests.fakes.kaggle import FakeKaggle, KaggleDataset, KaggleUser

    owner, name = slug.split("/")
    ds = KaggleDataset(owner, name, {1: files})
    with FakeKaggle(datasets=[ds], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = fast_settings(tmp_path, {"kaggle": kaggle.base_url})
        return _run(_recipe(key, subs, tmp_path), settings)


def _seeded_train(units_by_class: dict[str, list[str]]) -> set[str]:
    """climb's hash split: per class, units sorted by their draw (seed 0), the first round(0.8 n) train."""
    train = set()
    for units in units_by_class.values():
        ordered = sorted(set(units), key=lambda k: (draw(0, k), k))
        train |= set(ordered[: cut_points(len(ordered), [0.8, 0.2])[0]])
    return train


# ------------------------------------------------------------------------------------------------ Kaggle


def test_covid19_class_folders_and_official_split(tmp_path: Path, kaggle_env: None) -> None:
    rng = np.random.default_rng(1)
    files, truth = {}, {}
    for part in ("TrainData", "ValData"):
        for cls in ("Normal", "BacterialPneumonia", "ViralPneumonia", "COVID-19"):
            for k, ext in enumerate((".jpg", ".png", ".jpeg")):
                path = f"{part}/{cls}/img{k}{ext}"
                files[path] = _img(rng, 8, 6, ".jpg" if ext == ".jpeg" else ext, gray=True)[0]
                truth[path] = (cls, "train" if part == "TrainData" else "valid")
    files["TrainData/Normal/Thumbs.db"] = b"not an image"
    rows, manifest = _kaggle_run(
        tmp_path, "chest_xray/covid19", "darshan1504/covid19-detection-xray-dataset", files
    )
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert (r["labels"][0], r["split"]) == truth[r["id"]] and r["image_shape"] == [8, 6]
    assert to_climb(rows[0], manifest).shape == (1, 224, 224)


def test_coronahack_two_label_columns_by_rule(tmp_path: Path, kaggle_env: None) -> None:
    rng = np.random.default_rng(2)
    lines = [",X_ray_image_name,Label,Dataset_type,Label_2_Virus_category,Label_1_Virus_category"]
    cases = [
        ("Normal", "", "TRAIN", "Normal"),
        ("Pnemonia", "bacteria", "TRAIN", "BacterialPneumonia"),
        ("Pnemonia", "Virus", "TRAIN", "ViralPneumonia"),
        ("Pnemonia", "Virus", "TEST", "ViralPneumonia"),
        ("Normal", "", "TEST", "Normal"),
        ("Pnemonia", "Stress-Smoking", "TRAIN", None),  # no rule: dropped, counted
    ]
    files, truth = {}, {}
    for k, (label, cat, part, cls) in enumerate(cases):
        name = f"person{k}_{cat or 'normal'}.jpeg"
        lines.append(f"{k},{name},{label},{part},,{cat}")
        folder = "Coronahack-Chest-XRay-Dataset/Coronahack-Chest-XRay-Dataset"
        files[f"{folder}/{part.lower()}/{name}"] = _img(rng, 7, 9, ".jpg", gray=True)[0]
        if cls:
            truth[name] = (cls, part.lower())
    files["Chest_xray_Corona_Metadata.csv"] = "\n".join(lines).encode()
    rows, manifest = _kaggle_run(
        tmp_path, "chest_xray/coronahack", "praveengovi/coronahack-chest-xraydataset", files
    )
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert (r["labels"][0], r["split"]) == truth[r["id"]]
    assert sum(manifest["dropped"].values()) == 1


def test_messidor2_grades_from_kaggle_images_placed_by_hand(tmp_path: Path, kaggle_env: None) -> None:
    rng = np.random.default_rng(3)
    settings = fast_settings(tmp_path)
    images = settings.raw_dir("messidor2") / "images" / "IMAGES"
    images.mkdir(parents=True)
    lines, truth = ["image_id,adjudicated_dr_grade,adjudicated_dme,adjudicated_gradable"], {}
    for k in range(12):
        name = f"20051020_{k:05d}_0100_PP.jpg"
        on_disk = name.replace(".jpg", ".JPG") if k % 2 else name  # ADCIS ships some as .JPG
        (images / on_disk).write_bytes(_img(rng, 10, 15, ".jpg")[0])
        grade = "" if k == 5 else str(int(rng.integers(0, 5)))  # an ungradable image: dropped
        lines.append(f"{name},{grade},0,{0 if k == 5 else 1}")
        if grade:
            truth[name] = grade
    files = {"messidor_data.csv": "\n".join(lines).encode(), "messidor_readme.txt": b"grades\n"}
    subs = {"count: 1748": "count: 12"}
    rows, manifest = _kaggle_run(
        tmp_path, "fundus/messidor2", "google-brain/messidor2-dr-grades", files, subs
    )
    df = pd.DataFrame({"image_id": list(truth), "g": list(truth.values())})
    train = set()
    for g, n in df["g"].value_counts().items():
        train |= set(df.loc[df["g"] == g].sample(int(0.8 * n), random_state=0)["image_id"])
    names = ["No DR", "Mild", "Moderate", "Severe", "Proliferative"]
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert r["labels"] == [names[int(truth[r["id"]])]]
        assert r["split"] == ("train" if r["id"] in train else "test")
        assert to_climb(r, manifest).shape == (3, 224, 224)  # 149 x 224 + Pad((0, 37, 0, 38))
    assert sum(manifest["dropped"].values()) == 1


# ------------------------------------------------------------------------------------------------ HTTPS

ISIC19 = ["MEL", "NV", "BCC", "AK", "BKL", "DF", "VASC", "SCC", "UNK"]
ISIC19_CLASS = {"MEL": "MEL", "NV": "NV", "BCC": "BCC", "AK": "AKIEC", "SCC": "AKIEC"}


def test_isic2019_harmonised_classes_and_seeded_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    images, gt, meta, truth = {}, ["image," + ",".join(ISIC19)], ["image,age_approx,lesion_id,sex"], {}
    for k in range(40):
        dx = ISIC19[k % 8] if k != 39 else "UNK"
        image = f"ISIC_{k:07d}"
        images[f"ISIC_2019_Training_Input/{image}.jpg"] = _img(rng, 6, 6, ".jpg")[0]
        gt.append(image + "," + ",".join("1.0" if c == dx else "0.0" for c in ISIC19))
        meta.append(f"{image},50,,female")
        if dx != "UNK":
            truth[image] = ISIC19_CLASS.get(dx, "OTHER")
    with FakeBucket() as bucket:
        for key, data in {
            "2019/ISIC_2019_Training_Input.zip": _zip(images),
            "2019/ISIC_2019_Training_GroundTruth.csv": "\n".join(gt).encode(),
            "2019/ISIC_2019_Training_Metadata.csv": "\n".join(meta).encode(),
        }.items():
            bucket.put("isic-challenge-data", key, data)
        host = {"https://isic-challenge-data.s3.amazonaws.com/": bucket.url("isic-challenge-data", "")}
        rows, manifest = _run(_recipe("derm/isic2019", host, tmp_path), fast_settings(tmp_path))
    by_class: dict[str, list[str]] = {}
    for image, cls in truth.items():
        by_class.setdefault(cls, []).append(image)
    train = _seeded_train(by_class)
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert r["labels"] == [truth[r["id"]]] and r["split"] == ("train" if r["id"] in train else "valid")
    assert sum(manifest["dropped"].values()) == 1  # UNK


def test_isic2020_ground_truth_and_patient_grouped_split(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    images, truth = {}, {}
    gt = [
        "image_name,patient_id,lesion_id,sex,age_approx,anatom_site_general_challenge,diagnosis,benign_malignant,target"
    ]
    for k in range(30):
        image, patient = f"ISIC_{2637011 + k:07d}", f"IP_{k % 9:07d}"
        bm = "malignant" if k % 5 == 0 else "benign"
        images[f"train/{image}.jpg"] = _img(rng, 6, 9, ".jpg")[0]
        gt.append(f"{image},{patient},IL_{k},male,45.0,torso,unknown,{bm},{int(bm == 'malignant')}")
        truth[image] = (bm, patient)
    with FakeBucket() as bucket:
        bucket.put("isic-challenge-data", "2020/ISIC_2020_Training_JPEG.zip", _zip(images))
        bucket.put("isic-challenge-data", "2020/ISIC_2020_Training_GroundTruth.csv", "\n".join(gt).encode())
        host = {"https://isic-challenge-data.s3.amazonaws.com/": bucket.url("isic-challenge-data", "")}
        rows, _ = _run(_recipe("derm/isic2020", host, tmp_path), fast_settings(tmp_path))
    splits: dict[str, set[str]] = {}
    for r in rows:
        bm, patient = truth[r["id"]]
        assert r["labels"] == [bm] and r["patient_id"] == patient
        splits.setdefault(patient, set()).add(r["split"])
    assert len(rows) == 30 and all(len(s) == 1 for s in splits.values())  # no patient in both


def test_pad_ufes_20_nested_zips_and_harmonised_classes(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    diag = {"MEL": "MEL", "NEV": "NEV", "BCC": "BCC", "ACK": "AKIEC", "SCC": "AKIEC", "SEK": "OTHER"}
    lines = ["patient_id,lesion_id,smoke,age,img_id,diagnostic,biopsed,region,gender"]
    parts: dict[int, dict[str, bytes]] = {1: {}, 2: {}}
    truth = {}
    for k in range(40):
        d, patient = list(diag)[k % 6], f"PAT_{k // 2}"
        img_id = f"{patient}_{k}_{100 + k}.png"
        parts[1 + k % 2][f"imgs_part_{1 + k % 2}/{img_id}"] = _img(rng, 5, 7)[0]
        lines.append(f"{patient},{k},False,50,{img_id},{d},True,FACE,FEMALE")
        truth[img_id] = (diag[d], patient)
    outer = {"metadata.csv": "\n".join(lines).encode()}
    outer |= {f"images/imgs_part_{i}.zip": _zip(m) for i, m in parts.items()}
    with FakeBucket() as bucket:
        bucket.put("prod-dcd-datasets-cache-zipfiles", "zr7vgbcyr2-1.zip", _zip(outer))
        host = {
            "https://prod-dcd-datasets-cache-zipfiles.s3.eu-west-1.amazonaws.com/": bucket.url(
                "prod-dcd-datasets-cache-zipfiles", ""
            )
        }
        rows, _ = _run(_recipe("derm/pad_ufes_20", host, tmp_path), fast_settings(tmp_path))
    splits: dict[str, set[str]] = {}
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:  # each img_id found in its nested zip, classes harmonised, no patient in both splits
        cls, patient = truth[r["id"]]
        assert r["labels"] == [cls] and r["image_shape"] == [5, 7, 3] and r["patient_id"] == patient
        splits.setdefault(patient, set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values()) and {"train", "valid"} <= set().union(*splits.values())


# ------------------------------------------------------------------------------------ AIMI, NBIA, manual


def test_ddi_aimi_container_one_seeded_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.azure_blob import AzureBlob, FakeAzureBlob

    rng = np.random.default_rng(7)
    lines, blobs, truth = ["DDI_ID,DDI_file,skin_tone,malignant,disease"], [], {}
    for k in range(20):
        name, mal = f"{k:06d}.png", k % 4 == 0
        blobs.append(AzureBlob(name, _img(rng, 6, 6)[0]))
        lines.append(
            f"{k},{name},{12 if k % 2 else 56},{mal},melanoma-in-situ" if mal else f"{k},{name},34,{mal},scar"
        )
        truth[name] = "malignant" if mal else "benign"
    blobs.append(AzureBlob("ddi_metadata.csv", "\n".join(lines).encode()))
    monkeypatch.delenv("AIMI_SAS_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with FakeAzureBlob({"ddidiversedermatologyimages": blobs}) as azure:
        sas = tmp_path / "xdg" / "climb" / "aimi" / "ddidiversedermatologyimages.sas"
        sas.parent.mkdir(parents=True)
        sas.write_text(azure.container_url("ddidiversedermatologyimages") + "\n")
        rows, _ = _run(_recipe("derm/ddi"), fast_settings(tmp_path))
    by_class: dict[str, list[str]] = {}
    for name, cls in truth.items():
        by_class.setdefault(cls, []).append(name)
    train = _seeded_train(by_class)
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:  # one split: train and valid complementary (CLIMB's two draws overlapped)
        assert r["labels"] == [truth[r["id"]]] and r["split"] == ("train" if r["id"] in train else "valid")


def _mg(patient: str, study: str, series: str, side: str, view: str, seed: int) -> tuple[str, bytes]:
    from tests.sources.test_tcia import _dicom

    ds = pydicom.dcmread(io.BytesIO(_dicom(patient, study, series, "MG", seed, side=8)))
    ds.ImageLaterality, ds.ViewPosition = side, view
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return ds.SOPInstanceUID, buf.getvalue()


def test_cmmd_xlsx_rows_get_their_breasts_two_views(tmp_path: Path) -> None:
    from openpyxl import Workbook
    from pydicom.uid import generate_uid

    from tests.fakes.nbia import FakeNBIA, NbiaSeries

    wb = Workbook()
    ws = wb.active
    ws.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    series, truth, views = [], {}, {}
    for p in range(6):
        pid, study, uid = f"D1-{p + 1:04d}", generate_uid(), generate_uid()
        instances = {}
        for side in ("L", "R") if p % 2 == 0 else ("R",):
            cls = "Malignant" if (p + len(side)) % 3 == 0 or side == "L" else "Benign"
            ws.append([pid, side, 50 + p, 1, "mass", cls, "Luminal A" if cls == "Malignant" else None])
            truth[f"{pid}_{side}"] = cls
            for view in ("CC", "MLO"):
                sop, data = _mg(pid, study, uid, side, view, 10 * p + len(instances))
                instances[sop] = data
                views[f"{pid}_{side}", view] = data
        series.append(NbiaSeries(uid, pid, study, "CMMD", "MG", instances))
    settings = fast_settings(tmp_path)
    clinical = settings.raw_dir("cmmd") / "clinical"
    clinical.mkdir(parents=True)
    wb.save(clinical / "CMMD_clinicaldata_revision.xlsx")
    with FakeNBIA(series) as nbia:
        rows, _ = _run(_recipe("mammo/cmmd"), fast_settings(tmp_path, {"tcia": nbia.api}))
    order = list(truth)  # XLSX row order: the first 75% train
    train = set(order[: int(0.75 * len(order))])
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        assert r["labels"] == [truth[r["id"]]] and r["split"] == ("train" if r["id"] in train else "test")
        for view in ("CC", "MLO"):
            x = pydicom.dcmread(io.BytesIO(views[r["id"], view])).pixel_array.astype(np.float64)
            want = (np.maximum(x, 0) / x.max() * 255).astype(np.uint8)
            assert np.abs(_pixels(r, view.lower()).astype(int) - want).max() <= 1


def test_brixia_score_regression_and_consensus_test_split(tmp_path: Path) -> None:
    from tests.steps.test_dicom import write_dicom

    rng = np.random.default_rng(8)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir("brixia")
    (raw / "dicom_clean").mkdir(parents=True)
    lines, truth = (
        [
            "Filename;StudyDate;Sex;AgeAtStudyDateFiveYear;Manufacturer;BrixiaScore;BrixiaScoreGlobal;ConsensusTestset"
        ],
        {},
    )
    for k in range(6):
        name = f"{1012423059290443148 + k}"
        photometric = "MONOCHROME1" if k % 2 else "MONOCHROME2"
        write_dicom(
            raw / "dicom_clean" / f"{name}.dcm",
            rng.integers(0, 4095, (12, 10)).astype(np.uint16),
            photometric,
        )
        score = int(rng.integers(0, 19))
        lines.append(f"{name};20200311;M;65;Carestream;{score:06d};{score};{1 if k >= 4 else 0}")
        truth[name] = (score, "test" if k >= 4 else "train")
    (raw / "metadata_global_v2.csv").write_text("\n".join(lines) + "\n")
    rows, manifest = _run(_recipe("chest_xray/brixia", {"count: 4703": "count: 6"}, tmp_path), settings)
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        score, split = truth[r["id"]]
        assert float(r["target"]) == score and r["split"] == split and r["image_shape"] == [12, 10]
        assert to_climb(r, manifest).shape == (1, 224, 224)  # portrait 224 x 187, padded left/right only


def test_xray8_patient_split_and_exact_finding_labels(tmp_path: Path) -> None:
    from tests.fakes.bucket import FakeBucket

    rng = np.random.default_rng(9)
    findings = [
        "Atelectasis",
        "Effusion|Infiltration",
        "No Finding",
        "Hernia",
        "Mass|Nodule|Pleural_Thickening",
    ]
    lines = ["Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position"]
    members: list[dict[str, bytes]] = [{}, {}]
    truth = {}
    for k in range(20):
        patient = f"{k // 3 + 1:05d}"
        name = f"{patient}_{k % 3:03d}.png"
        f = findings[k % 5]
        members[k % 2][f"images/{name}"] = _img(rng, 9, 9, gray=True)[0]
        lines.append(f"{name},{f},{k % 3},{patient},58,M,PA")
        truth[name] = (
            [x for x in f.split("|") if x in ("Atelectasis", "Effusion", "Infiltration", "Mass", "Nodule")],
            patient,
        )
    settings = fast_settings(tmp_path)
    meta = settings.raw_dir("xray8") / "metadata"
    meta.mkdir(parents=True)
    (meta / "Data_Entry_2017_v2020.csv").write_text("\n".join(lines) + "\n")
    subs = {}
    with FakeBucket() as bucket:
        for i, m in enumerate(members):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w:gz") as tar:
                for n, data in m.items():
                    info = tarfile.TarInfo(n)
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
            key = ["vfk49d74nhbxq3nqjg0900w5nvkorp5c.gz", "i28rlmbvmfjbl8p2n3ril0pptcmcu9d1.gz"][i]
            bucket.put("nihcc", f"shared/static/{key}", buf.getvalue())
        recipe_text = (Path(__file__).resolve().parents[2] / "recipes/chest_xray/xray8.yaml").read_text()
        for line in recipe_text.splitlines():  # the other ten archives are not in this miniature
            if "nihcc.box.com" in line and "vfk49d74" not in line and "i28rlmbv" not in line:
                subs[line + "\n"] = ""
        subs["https://nihcc.box.com/"] = bucket.url("nihcc", "")
        rows, manifest = _run(_recipe("chest_xray/xray8", subs, tmp_path), settings)
    patients = list(dict.fromkeys(p for _, p in truth.values()))
    perm = np.random.RandomState(42).permutation(len(patients))  # RandomState(42).shuffle, over patients
    train = {patients[i] for i in perm[: int(0.9 * len(patients))]}
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        labels, patient = truth[r["id"]]
        classes = [
            "Atelectasis",
            "Cardiomegaly",
            "Effusion",
            "Infiltration",
            "Mass",
            "Nodule",
            "Pneumonia",
            "Pneumothorax",
        ]
        assert r["labels"] == [c for c in classes if c in labels]
        assert r["split"] == ("train" if patient in train else "test")
        x = to_climb(r, manifest)
        assert x.shape == (3, 224, 224) and np.array_equal(x[0], x[2])  # RGB of a gray image, no Normalize
