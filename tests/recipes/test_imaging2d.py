"""Issue 12's recipes (2D imaging hosted outside PhysioNet) run end to end, unmodified, against the fake of
each dataset's host, on miniatures in the real layout: download -> verify -> preprocess -> verify --outputs,
rows checked one by one for labels and splits, and CLIMB's tensor from a stored row. Source kinds: a Kaggle
competition (APTOS; rules accepted and not), a Grand Challenge archive (DRIVE), a TCIA collection behind the
fake NBIA (CBIS-DDSM), a Stanford AIMI container behind the fake Azure Blob endpoint with an expired SAS
(CheXpert), an ISIC zip over HTTPS with its ground-truth CSV (HAM10000), a figshare article (Jichi).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pydicom
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.pipeline import preprocess
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.splits import cut_points, draw
from climb_cli.tensors import to_climb
from climb_cli.verify import verify_outputs, verify_raw
from tests.conftest import fast_settings
from tests.sources.test_manual import _zip

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
KAGGLE_TOKEN = "KGAT_tok-Frob-4e7a-secret"


def _recipe(key: str, subs: dict[str, str] | None = None, tmp_path: Path | None = None) -> Recipe:
    """The real recipe recipes/<key>.yaml; with `subs`, a copy (and its hook) with host URLs replaced."""
    path = RECIPES / f"{key}.yaml"
    if not subs:
        return Catalog([path.parent]).load(path.stem)
    assert tmp_path is not None
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    text = path.read_text()
    for old, new in subs.items():
        assert old in text, old
        text = text.replace(old, new)
    (folder / path.name).write_text(text)
    if path.with_suffix(".py").exists():
        (folder / f"{path.stem}.py").write_text(path.with_suffix(".py").read_text())
    return Catalog([folder]).load(path.stem)


def _run(recipe: Recipe, settings: Settings) -> tuple[list[dict], dict]:
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    report = preprocess(recipe, settings, workers=1)
    assert report.errors == 0, report.rejected
    out = verify_outputs(recipe, settings)
    assert out.ok, out.problems
    rows = pq.read_table(report.out_dir / "data").to_pylist()
    manifest = json.loads((report.out_dir / "manifest.json").read_text())
    return sorted(rows, key=lambda r: r["id"]), manifest


def _img(
    rng: np.random.Generator, h: int, w: int, ext: str = ".png", gray: bool = False
) -> tuple[bytes, np.ndarray]:
    """An encoded image and its decoded pixels as climb stores them (RGB order, or gray)."""
    shape = (h, w) if gray else (h, w, 3)
    px = rng.integers(0, 255, shape, dtype=np.uint8)
    ok, buf = cv2.imencode(ext, px if gray else px[:, :, ::-1])
    assert ok
    decoded = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    return buf.tobytes(), decoded if gray else decoded[:, :, ::-1]


def _pixels(row: dict, name: str = "image") -> np.ndarray:
    return np.asarray(row[name], dtype=np.uint8).reshape(row[f"{name}_shape"])


# ------------------------------------------------------------------------------------------------
# APTOS 2019 behind the fake Kaggle: the competition with its rules accepted, and not


def _aptos_files(rng: np.random.Generator) -> tuple[dict[str, bytes], dict[str, np.ndarray], pd.DataFrame]:
    ids = [f"{int(x):012x}" for x in rng.integers(0, 2**47, 30)]
    grades = rng.choice(["0", "0", "1", "2", "2", "3", "4"], len(ids))
    df = pd.DataFrame({"id_code": ids, "diagnosis": grades})
    files = {"train.csv": df.to_csv(index=False).encode(), "test.csv": b"id_code\nffa47f6a7bf4\n"}
    pixels = {}
    for k, i in enumerate(ids):
        data, px = _img(rng, 12, 12 if k % 3 == 0 else 16)  # every third image square
        files[f"train_images/{i}.png"], pixels[i] = data, px
    files["test_images/ffa47f6a7bf4.png"] = _img(rng, 5, 5)[0]  # not fetched (include)
    return files, pixels, df


def test_aptos_competition_end_to_end_and_rules_not_accepted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.kaggle import FakeKaggle, KaggleCompetition, KaggleUser

    files, pixels, df = _aptos_files(np.random.default_rng(3))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)
    recipe = _recipe("fundus/aptos")
    comp = KaggleCompetition("aptos2019-blindness-detection", files, accepted=set())
    with FakeKaggle(competitions=[comp], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = fast_settings(tmp_path, {"kaggle": kaggle.base_url})
        # rules not accepted: `climb auth check` and the download both name the rules page
        (source,) = make_sources(recipe, settings)
        access = source.check_access()
        rules = "https://www.kaggle.com/competitions/aptos2019-blindness-detection/rules"
        assert not access.ok and access.next_step == rules
        report = download(recipe, settings)
        assert not report.ok and rules in report.error and "\n" not in report.error
        comp.accepted.add("alice")
        assert source.check_access().ok
        rows, manifest = _run(recipe, settings)
    assert not (settings.raw_dir("aptos") / "test_images").exists()
    names = ["No DR", "Mild", "Moderate", "Severe", "Proliferative"]
    train = set()
    for label, count in df["diagnosis"].value_counts().items():  # CLIMB's aptos.py build_index
        train |= set(df.loc[df["diagnosis"] == label].sample(int(0.8 * count), random_state=0)["id_code"])
    assert [r["id"] for r in rows] == sorted(df["id_code"])
    grade = dict(zip(df["id_code"], df["diagnosis"], strict=True))
    for r in rows:
        assert r["labels"] == [names[int(grade[r["id"]])]]
        assert r["split"] == ("train" if r["id"] in train else "valid")
        assert np.array_equal(_pixels(r), pixels[r["id"]])  # stored as decoded
        x = to_climb(r, manifest)
        assert x.shape == (3, 224, 224) and x.dtype == np.float32
        if r["image_shape"][0] == r["image_shape"][1]:  # square: Resize(224), no pad
            assert not np.any(np.all(x[:, 0, :] == 0, axis=1))
        else:  # 12 x 16 -> 168 x 224, top/bottom pad of 28 rows after Normalize
            assert np.all(x[:, :28] == 0) and np.all(x[:, -28:] == 0)
    assert manifest["climb_tensor"]["mean"] == [0.4210, 0.2238, 0.0725]


# ------------------------------------------------------------------------------------------------
# DRIVE: a Grand Challenge archive (items -> images -> TIFF files)


def test_drive_grand_challenge_archive_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.grand_challenge import (
        FakeGrandChallenge,
        GCArchive,
        GCImage,
        GCImageFile,
        GCItem,
        GCSocket,
        GCValue,
    )

    rng = np.random.default_rng(4)
    fundus, manual = GCSocket("retinal-fundus-image"), GCSocket("manual-vessel-segmentation")
    items, truth = [], {}
    for k in range(3):
        values = []
        for socket, gray in ((fundus, False), (manual, True)):
            data, px = _img(rng, 9, 8, ".tif", gray=gray)
            name = f"{k + 21}_{'training' if not gray else 'manual1'}.tif"
            mha = GCImageFile(name.replace(".tif", ".mha"), b"ObjectType = Image\n")  # not fetched
            values.append(GCValue(socket, image=GCImage(name, [GCImageFile(name, data, "TIFF"), mha])))
            truth[socket.slug, k] = px
        items.append(GCItem(values, title=f"{k + 21}"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("GRAND_CHALLENGE_TOKEN", "gc-tok-Frotz-5b2e-secret")
    archive = GCArchive("drive", items, viewers={"ada"})
    with FakeGrandChallenge(archives=[archive], tokens={"gc-tok-Frotz-5b2e-secret": "ada"}) as gc:
        settings = fast_settings(tmp_path, {"grand-challenge": gc.base_url})
        rows, manifest = _run(_recipe("retinal/drive"), settings)
    assert len(rows) == 6 and manifest["splits"] == {"train": 6}
    pk = {item.pk: k for k, item in enumerate(items)}
    for r in rows:
        assert r["id"] == f"{r['item']}_{r['socket']}" and r["labels"] == [] and r["split"] == "train"
        assert np.array_equal(_pixels(r), truth[r["socket"], pk[r["item"]]])
        x = to_climb(r, manifest)  # Resize((224, 224)) + ToTensor, no Normalize
        assert x.shape[1:] == (224, 224) and x.min() >= 0 and x.max() <= 1


# ------------------------------------------------------------------------------------------------
# CBIS-DDSM: a TCIA collection behind the fake NBIA, with the case description CSVs (manual)

CBIS_HEADER = (
    "patient_id,breast_density,left or right breast,image view,abnormality id,abnormality type,mass shape,"
    "mass margins,assessment,pathology,subtlety,image file path,cropped image file path,ROI mask file path\n"
)


def test_cbis_ddsm_tcia_collection_end_to_end(tmp_path: Path) -> None:
    from tests.fakes.nbia import FakeNBIA
    from tests.sources.test_tcia import _series

    # (csv, patient_id, side, view, assessment, series PatientID); the same image can have several rows
    cases = [
        ("mass_train", "P_00001", "LEFT", "CC", "4", "Mass-Training_P_00001_LEFT_CC"),
        ("mass_train", "P_00001", "LEFT", "CC", "3", "Mass-Training_P_00001_LEFT_CC"),  # a 2nd abnormality
        ("mass_train", "P_00001", "LEFT", "MLO", "4", "Mass-Training_P_00001_LEFT_MLO"),
        ("calc_train", "P_00005", "RIGHT", "CC", "2", "Calc-Training_P_00005_RIGHT_CC"),
        ("mass_train", "P_00005", "RIGHT", "CC", "5", "Mass-Training_P_00005_RIGHT_CC"),  # mass over calc
        ("calc_test", "P_00038", "LEFT", "CC", "0", "Calc-Test_P_00038_LEFT_CC"),  # BI-RADS 0: dropped
        ("mass_test", "P_00010", "RIGHT", "MLO", "1", "Mass-Test_P_00010_RIGHT_MLO"),
    ]
    series = {}
    for k, pid in enumerate(dict.fromkeys(c[5] for c in cases)):
        series[pid] = _series("CBIS-DDSM", pid, "MG", 1, 20 + k, side=10 + k)
    roi = _series("CBIS-DDSM", "Mass-Training_P_00001_LEFT_CC_1", "MG", 2, 40)  # ROI masks: fetched, unused
    csvs = {n: CBIS_HEADER for n in ("mass_train", "mass_test", "calc_train", "calc_test")}
    for n, (csv, patient, side, view, birads, pid) in enumerate(cases):
        s = series[pid]
        path = f"{pid}/{s.study}/{s.uid}/000000.dcm"
        csvs[csv] += (
            f"{patient},3,{side},{view},{n},{csv.split('_')[0]},OVAL,CIRCUMSCRIBED,{birads},BENIGN,4,"
            f'"{path}\n",{pid}_1/x/y/000000.dcm,"{pid}_1/x/z/000001.dcm\n"\n'  # quoted, with CBIS's newlines
        )
    settings = fast_settings(tmp_path)
    csv_dir = settings.raw_dir("cbis_ddsm") / "csv"
    csv_dir.mkdir(parents=True)
    names = {
        "mass_train": "mass_case_description_train_set.csv",
        "mass_test": "mass_case_description_test_set.csv",
    }
    names |= {
        "calc_train": "calc_case_description_train_set.csv",
        "calc_test": "calc_case_description_test_set.csv",
    }
    for key, text in csvs.items():
        (csv_dir / names[key]).write_text(text)
    with FakeNBIA([*series.values(), roi]) as nbia:
        settings = fast_settings(tmp_path, {"tcia": nbia.api})
        rows, manifest = _run(_recipe("mammo/cbis_ddsm"), settings)
    want = {  # id -> (class = BI-RADS - 1 of the highest row, split, the image's series)
        "P_00001_LEFT_CC": ("3", "train", "Mass-Training_P_00001_LEFT_CC"),
        "P_00001_LEFT_MLO": ("3", "train", "Mass-Training_P_00001_LEFT_MLO"),
        "P_00005_RIGHT_CC": ("4", "train", "Mass-Training_P_00005_RIGHT_CC"),
        "P_00010_RIGHT_MLO": ("0", "test", "Mass-Test_P_00010_RIGHT_MLO"),
    }
    assert [r["id"] for r in rows] == sorted(want)
    for r in rows:
        cls, split, pid = want[r["id"]]
        assert r["labels"] == [cls] and r["split"] == split
        (data,) = series[pid].instances.values()
        x = pydicom.dcmread(io.BytesIO(data)).pixel_array.astype(np.float64)
        climb = (np.maximum(x, 0) / x.max() * 255).astype(np.uint8)  # CLIMB's get_pixel_array
        assert np.abs(_pixels(r).astype(int) - climb).max() <= 1
        t = to_climb(r, manifest)
        assert t.shape == (1, 223, 224)  # a square image: 223 x 223, padded left and right only (as CLIMB)
    assert sum(manifest["dropped"].values()) == 1  # the BI-RADS 0 image, counted


def test_cbis_ddsm_index_is_the_same_over_nbia_and_idc(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The NBIA route (a ZIP per series, extracted beside it) and the IDC mirror (one .dcm per instance in a
    folder of its series, uuid names) lay the raw folder out differently: the recipe's index finds the same
    items, each with the image of its series."""
    from climb_cli.index import build_index
    from tests.fakes.nbia import FakeNBIA, idc_copy
    from tests.sources.test_tcia import _series

    cases = [
        (
            "mass_case_description_train_set.csv",
            "P_00001",
            "LEFT",
            "CC",
            "4",
            "Mass-Training_P_00001_LEFT_CC",
        ),
        ("mass_case_description_test_set.csv", "P_00002", "RIGHT", "MLO", "3", "Mass-Test_P_00002_RIGHT_MLO"),
    ]
    series = {c[5]: _series("CBIS-DDSM", c[5], "MG", 1, 60 + k, side=12) for k, c in enumerate(cases)}
    every = [*series.values(), _series("CBIS-DDSM", "Mass-Training_P_00001_LEFT_CC_1", "MG", 2, 70)]  # ROIs
    names = [
        *{c[0] for c in cases},
        "calc_case_description_train_set.csv",
        "calc_case_description_test_set.csv",
    ]
    csvs = dict.fromkeys(names, CBIS_HEADER)
    for n, (csv, patient, side, view, birads, pid) in enumerate(cases):
        s = series[pid]
        csvs[csv] += (
            f"{patient},3,{side},{view},{n},mass,OVAL,CIRCUMSCRIBED,{birads},BENIGN,4,"
            f"{pid}/{s.study}/{s.uid}/000000.dcm,{pid}_1/x/y/000000.dcm,{pid}_1/x/z/000001.dcm\n"
        )

    def index(settings: Settings, recipe: Recipe) -> list[tuple[str, str, tuple[str, ...], str]]:
        csv_dir = settings.raw_dir("cbis_ddsm") / "csv"
        csv_dir.mkdir(parents=True)
        for name, text in csvs.items():
            (csv_dir / name).write_text(text)
        report = download(recipe, settings)
        assert report.ok, (report.error, report.outcomes)
        items = build_index(recipe, settings).items
        raw = settings.raw_dir("cbis_ddsm")
        return [
            (i.id, i.split, i.labels, pydicom.dcmread(raw / str(i.inputs["image"])).SeriesInstanceUID)
            for i in items
        ]

    with FakeNBIA(every) as nbia:
        by_nbia = index(fast_settings(tmp_path / "nbia", {"tcia": nbia.api}), _recipe("mammo/cbis_ddsm"))
    monkeypatch.setenv("CLIMB_IDC_INDEX", str(tmp_path / "idc_index.parquet"))
    with idc_copy(every, tmp_path / "idc_index.parquet") as idc:
        recipe = _recipe(
            "mammo/cbis_ddsm", {"    modality: MG\n": "    modality: MG\n    mirror: idc\n"}, tmp_path
        )
        by_idc = index(fast_settings(tmp_path / "idc", {"idc": idc.base_url}), recipe)
    want = [
        ("P_00001_LEFT_CC", "train", ("3",), series["Mass-Training_P_00001_LEFT_CC"].uid),
        ("P_00002_RIGHT_MLO", "test", ("2",), series["Mass-Test_P_00002_RIGHT_MLO"].uid),
    ]
    assert by_nbia == want and by_idc == want


# ------------------------------------------------------------------------------------------------
# CheXpert: a Stanford AIMI container behind the fake Azure Blob endpoint; an expired SAS first

CHEXPERT = [
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
]  # fmt: skip


def test_chexpert_aimi_container_with_an_expired_sas_then_a_new_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.azure_blob import AzureBlob, FakeAzureBlob

    container = "chexpertchestxrays-u20210408"
    rng = np.random.default_rng(5)
    blobs, truth, pixels = [], {}, {}
    tables = {
        p: "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT) + "\n" for p in ("train", "valid")
    }
    for k in range(8):
        part = "train" if k < 6 else "valid"
        path = f"CheXpert-v1.0/{part}/patient{k + 1:05d}/study1/view1_frontal.jpg"
        data, px = _img(rng, 10, 8, ".jpg", gray=True)
        blobs.append(AzureBlob(path, data))
        raw = [str(rng.choice(["1.0", "0.0", "-1.0", ""])) for _ in CHEXPERT]
        tables[part] += f"{path},Female,{40 + k},Frontal,AP," + ",".join(raw) + "\n"
        truth[path], pixels[path] = (part, raw), px
    blobs += [AzureBlob(f"CheXpert-v1.0/{p}.csv", t.encode()) for p, t in tables.items()]
    blobs.append(AzureBlob("CheXpert-v1.0-small/train.csv", b"Path\n"))  # another prefix: not fetched
    monkeypatch.delenv("AIMI_SAS_URL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    sas = tmp_path / "xdg" / "climb" / "aimi" / f"{container}.sas"
    sas.parent.mkdir(parents=True)
    recipe = _recipe("chest_xray/chexpert")
    with FakeAzureBlob({container: blobs}) as azure:
        settings = fast_settings(tmp_path, {})
        sas.write_text(azure.container_url(container, ttl=3600) + "\n")
        azure.advance(7200)  # the SAS the site handed out has expired
        report = download(recipe, settings)
        assert not report.ok and "expired on " in report.error and "climb auth login aimi" in report.error
        assert "sig=" not in report.error and "\n" not in report.error
        sas.write_text(azure.container_url(container, ttl=3600) + "\n")
        rows, manifest = _run(recipe, settings)
    assert not (settings.raw_dir("chexpert") / "CheXpert-v1.0-small").exists()
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        part, raw = truth[r["id"]]
        assert r["split"] == part
        assert r["labels"] == [c for c, v in zip(CHEXPERT, raw, strict=True) if v == "1.0"]  # -1, blank -> 0
        assert r["target"] == [int(v == "1.0") for v in raw]
        assert "-1.0" not in raw or "-1.0" in r["labels_raw"]
        assert np.array_equal(_pixels(r), pixels[r["id"]])
        assert to_climb(r, manifest).shape == (1, 224, 224)


# ------------------------------------------------------------------------------------------------
# HAM10000: the ISIC zip over HTTPS (the fake bucket) with its ground-truth zip and lesion groupings

HAM = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def test_ham10000_isic_zip_with_ground_truth_end_to_end(tmp_path: Path) -> None:
    from tests.fakes.bucket import FakeBucket

    rng = np.random.default_rng(7)
    images, gt, groups, truth = {}, ["image," + ",".join(HAM)], ["image,lesion_id,diagnosis_confirm_type"], {}
    n = 0
    for lesion in range(24):
        dx = HAM[lesion % 7] if lesion % 3 else "NV"
        for _ in range(1 + lesion % 3):  # 1-3 images of one lesion
            image = f"ISIC_{24306 + n:07d}"
            n += 1
            images[f"ISIC2018_Task3_Training_Input/{image}.jpg"] = _img(rng, 6, 8, ".jpg")[0]
            gt.append(image + "," + ",".join("1.0" if c == dx else "0.0" for c in HAM))
            groups.append(f"{image},HAM_{lesion:07d},histopathology")
            truth[image] = (f"HAM_{lesion:07d}", dx if dx in HAM[:4] else "OTHER")
    gt_zip = _zip(
        {
            "ISIC2018_Task3_Training_GroundTruth/ISIC2018_Task3_Training_GroundTruth.csv": "\n".join(
                gt
            ).encode()
        }
    )
    with FakeBucket() as bucket:
        bucket.put("isic-challenge-data", "2018/ISIC2018_Task3_Training_Input.zip", _zip(images))
        bucket.put("isic-challenge-data", "2018/ISIC2018_Task3_Training_GroundTruth.zip", gt_zip)
        bucket.put(
            "isic-challenge-data",
            "2018/ISIC2018_Task3_Training_LesionGroupings.csv",
            "\n".join(groups).encode(),
        )
        host = {"https://isic-challenge-data.s3.amazonaws.com/": bucket.url("isic-challenge-data", "")}
        rows, manifest = _run(_recipe("derm/ham10000", host, tmp_path), fast_settings(tmp_path))
    assert [r["id"] for r in rows] == sorted(truth)
    by_class: dict[str, set[str]] = {}
    for lesion, cls in truth.values():
        by_class.setdefault(cls, set()).add(lesion)
    train = set()
    for lesions in by_class.values():  # climb's seeded split: per class, lesions by their draw, 80% train
        ordered = sorted(lesions, key=lambda k: (draw(0, k), k))
        train |= set(ordered[: cut_points(len(ordered), [0.8, 0.2])[0]])
    for r in rows:
        lesion, cls = truth[r["id"]]
        assert r["labels"] == [cls] and r["lesion_id"] == lesion
        assert r["split"] == ("train" if lesion in train else "valid")
        assert to_climb(r, manifest).shape == (3, 224, 224)
    assert set(manifest["classes"]) == {"MEL", "NV", "BCC", "AKIEC", "OTHER"}


# ------------------------------------------------------------------------------------------------
# Jichi: a figshare article (list.csv + an images archive)


def test_jinchi_figshare_article_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.fakes.figshare import FakeFigshare, FigshareArticle, FigshareFile

    rng = np.random.default_rng(9)
    grades = rng.choice(["ndr", "ndr", "sdr", "ppdr", "pdr"], 25)
    images, lines = {}, ["Image,Davis_grading_of_concatenated_figures,Davis_grading_of_one_figure"]
    for k, g in enumerate(grades):
        images[f"{k + 1}.jpg"] = _img(rng, 10, 14, ".jpg")[0]
        lines.append(f"{k + 1}.jpg,{g},{g}")
    files = [
        FigshareFile(8001, "list.csv", "\n".join(lines).encode()),
        FigshareFile(8002, "images.zip", _zip(images)),
    ]
    monkeypatch.delenv("FIGSHARE_TOKEN", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    with FakeFigshare(
        [FigshareArticle(4879853, {1: files, 2: [*files, FigshareFile(8003, "x.txt", b"x")]})]
    ) as fig:
        settings = fast_settings(tmp_path, {"figshare": fig.base_url})
        rows, manifest = _run(_recipe("fundus/jinchi"), settings)
    assert not (settings.raw_dir("jinchi") / "x.txt").exists()  # version 1 pinned
    df = pd.read_csv(io.StringIO("\n".join(lines)))
    train = set()
    for g, count in df["Davis_grading_of_one_figure"].value_counts().items():
        part = df.loc[df["Davis_grading_of_one_figure"] == g]
        train |= set(part.sample(int(0.8 * count), random_state=0)["Image"])
    assert [r["id"] for r in rows] == sorted(df["Image"])
    for r in rows:
        g = df.loc[df["Image"] == r["id"], "Davis_grading_of_one_figure"].iloc[0]
        assert r["labels"] == [g.upper()] and r["split"] == ("train" if r["id"] in train else "valid")
        assert to_climb(r, manifest).shape == (3, 224, 313)  # Resize(224) on the short side, no pad
