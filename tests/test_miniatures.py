"""The recipe language end to end on miniatures of the datasets that need each feature: generated
files in the dataset's real layout and metadata columns, served by a fake of its host (the S3-like
bucket for ISIC, OGB, KiTS23 and TCIA's CMMD, whose hosts climb has no source kind for; the Kaggle
fake for APTOS), then download -> verify -> preprocess -> verify --outputs, rows checked one by one.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.pipeline import preprocess
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.splits import cut_points, draw
from climb_cli.tensors import to_climb
from climb_cli.verify import verify_outputs, verify_raw
from tests.conftest import fast_settings
from tests.fakes.bucket import FakeBucket
from tests.fakes.kaggle import FakeKaggle, KaggleCompetition, KaggleUser
from tests.sources.test_manual import _zip

KAGGLE_TOKEN = "KGAT_tok-Frob-4e7a-secret"


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _png(rng: np.random.Generator, ext: str = ".png") -> bytes:
    ok, buf = cv2.imencode(ext, rng.integers(0, 255, (6, 8, 3), dtype=np.uint8))
    assert ok
    return buf.tobytes()


def _recipe_text(name: str, modality: str, sources: str, rest: str) -> str:
    return (
        f"name: {name}\ntitle: {name} miniature\nmodality: {modality}\nlicense: test\naccess: open\n"
        f"sources:\n{sources.rstrip()}\nchecksums: upstream\n{rest}"
    )


def _http(bucket: FakeBucket, name: str, files: dict[str, bytes], extra: str = "") -> str:
    out = "  - id: web\n    kind: http\n    files:\n"
    for key, data in files.items():
        bucket.put(name, key, data)
        out += f"      - {{url: '{bucket.url(name, key)}', sha256: {_sha(data)}}}\n"
    return out + extra


def _run(
    tmp_path: Path, settings: Settings, text: str, name: str, hook: str | None = None
) -> tuple[Recipe, list[dict], dict]:
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    if hook is not None:
        (folder / f"{name}.py").write_text(hook)
    recipe = Catalog([folder]).load(name)
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    return recipe, *_build(recipe, settings)


def _npz_rows(folder: Path) -> list[dict]:
    """NPZ shards back into row dicts (stacked arrays flattened, JSON list columns parsed)."""
    rows = []
    for shard in sorted(folder.glob("*.npz")):
        with np.load(shard, allow_pickle=False) as z:
            cols = {k: z[k] for k in z.files}
        for i in range(len(cols["id"])):
            row = {}
            for k, v in cols.items():
                if k.endswith("_offsets"):
                    continue
                if f"{k}_shape" in cols:
                    row[k] = v[i].reshape(-1).tolist()
                elif k in ("labels", "source_files", "source_sha256"):
                    row[k] = json.loads(str(v[i]))
                else:
                    row[k] = v[i].tolist()
            rows.append(row)
    return rows


def _build(recipe: Recipe, settings: Settings) -> tuple[list[dict], dict]:
    report = preprocess(recipe, settings, workers=1)
    assert report.errors == 0, report.rejected
    out = verify_outputs(recipe, settings)
    assert out.ok, out.problems
    if recipe.output.format == "npz":
        rows = _npz_rows(report.out_dir / "data")
    else:
        rows = pq.read_table(report.out_dir / "data").to_pylist()
    return sorted(rows, key=lambda r: r["id"]), json.loads((report.out_dir / "manifest.json").read_text())


@pytest.fixture
def bucket() -> Iterator[FakeBucket]:
    with FakeBucket() as b:
        yield b


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path)


# ------------------------------------------------------------------------------------------------
# HAM10000: one-hot ground truth, OTHER = BKL|DF|VASC, grouped (lesion) stratified split

HAM_CLASSES = ["MEL", "NV", "BCC", "AKIEC", "BKL", "DF", "VASC"]


def _ham(bucket: FakeBucket) -> tuple[str, dict[str, tuple[str, str]]]:
    rng = np.random.default_rng(7)
    images, gt, meta, truth = (
        {},
        ["image," + ",".join(HAM_CLASSES)],
        ["lesion_id,image_id,dx,dx_type,age,sex"],
        {},
    )
    n = 0
    for lesion in range(40):
        dx = HAM_CLASSES[lesion % 7] if lesion % 3 else "NV"
        for _ in range(1 + lesion % 3):  # 1-3 images of one lesion
            image = f"ISIC_{24306 + n:07d}"
            n += 1
            images[f"ISIC2018_Task3_Training_Input/{image}.jpg"] = _png(rng, ".jpg")
            gt.append(image + "," + ",".join("1.0" if c == dx else "0.0" for c in HAM_CLASSES))
            meta.append(f"HAM_{lesion:07d},{image},{dx.lower()},histo,{40 + lesion},female")
            truth[image] = (f"HAM_{lesion:07d}", dx if dx in ("MEL", "NV", "BCC", "AKIEC") else "OTHER")
    files = {
        "2018/ISIC2018_Task3_Training_Input.zip": _zip(images),
        "2018/ISIC2018_Task3_Training_GroundTruth.csv": ("\n".join(gt) + "\n").encode(),
        "2018/HAM10000_metadata.csv": ("\n".join(meta) + "\n").encode(),
    }
    return _http(bucket, "isic-challenge-data", files, "    extract: true\n"), truth


HAM_RULES = """\
    rules:
      - {when: {MEL: ["1.0"]}, label: MEL}
      - {when: {NV: ["1.0"]}, label: NV}
      - {when: {BCC: ["1.0"]}, label: BCC}
      - {when: {AKIEC: ["1.0"]}, label: AKIEC}
      - {when: {BKL: ["1.0"]}, label: OTHER}
      - {when: {DF: ["1.0"]}, label: OTHER}
      - {when: {VASC: ["1.0"]}, label: OTHER}
"""
HAM_MAP = """\
    column: dx
    values: {mel: MEL, nv: NV, bcc: BCC, akiec: AKIEC, bkl: OTHER, df: OTHER, vasc: OTHER}
"""


@pytest.mark.parametrize("labels", [HAM_RULES, HAM_MAP], ids=["rules", "inline-map"])
def test_ham10000_grouped_stratified_split(
    tmp_path: Path, settings: Settings, bucket: FakeBucket, labels: str
) -> None:
    sources, truth = _ham(bucket)
    rest = f"""\
index:
  table: {{path: ISIC2018_Task3_Training_GroundTruth.csv}}
  join:
    - {{table: {{path: HAM10000_metadata.csv}}, on: [image], right_on: [image_id]}}
  id: image
  inputs: {{image: "ISIC2018_Task3_Training_Input/{{image}}.jpg"}}
  labels:
    kind: multiclass
{labels}    classes: [MEL, NV, BCC, AKIEC, OTHER]
  split:
    random: {{fractions: {{train: 0.8, valid: 0.2}}, seed: 0, group: lesion_id, stratify: labels}}
  keep: [lesion_id]
steps:
  - image.read: {{input: image, mode: rgb}}
climb_tensor: {{transform: std2d, channels: RGB, mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25]}}
"""
    _, rows, manifest = _run(tmp_path, settings, _recipe_text("ham10000", "derm", sources, rest), "ham10000")
    # CLIMB's load-time transform travels in the manifest; a row turns into CLIMB's tensor in one call
    assert manifest["climb_tensor"]["mean"] == [0.5, 0.5, 0.5]
    x = to_climb(rows[0], manifest)
    assert x.shape == (3, 224, 224) and x.dtype == np.float32
    assert len(rows) == len(truth) == 79
    # the split climb promises: per class, lesions sorted by their draw, the first round(0.8 n) train
    lesions: dict[str, dict[str, str]] = {}
    for lesion, cls in truth.values():
        lesions.setdefault(cls, {})[lesion] = cls
    want_train = set()
    for group in lesions.values():
        ordered = sorted(group, key=lambda k: (draw(0, k), k))
        want_train |= set(ordered[: cut_points(len(ordered), [0.8, 0.2])[0]])
    for r in rows:
        lesion, cls = truth[r["id"]]
        assert r["labels"] == [cls] and r["lesion_id"] == lesion
        assert r["split"] == ("train" if lesion in want_train else "valid"), r["id"]
        assert r["image_shape"] == [6, 8, 3]
    assert manifest["splits"] == {
        "train": sum(r["split"] == "train" for r in rows),
        "valid": sum(r["split"] == "valid" for r in rows),
    }


# ------------------------------------------------------------------------------------------------
# APTOS 2019 (Kaggle competition): CLIMB's per-class DataFrame.sample(int(0.8 n), random_state=0),
# inline grade names, and the few-shot variants


def test_aptos_reproduces_climbs_sample_and_few_shot(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(3)
    ids = [f"{int(x):012x}" for x in rng.integers(0, 2**47, 90)]
    grades = rng.choice(["0", "0", "0", "1", "2", "2", "3", "4"], 90)
    files = {
        "train.csv": (
            "id_code,diagnosis\n" + "".join(f"{i},{g}\n" for i, g in zip(ids, grades, strict=True))
        ).encode()
    }
    files["test.csv"] = b"id_code\nffa47f6a7bf4\n"
    files.update({f"train_images/{i}.png": _png(rng) for i in ids})
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)
    rest = """\
index:
  table: {path: train.csv}
  id: id_code
  inputs: {image: "train_images/{id_code}.png"}
  labels:
    column: diagnosis
    values: {"0": No DR, "1": Mild, "2": Moderate, "3": Severe, "4": Proliferative}
    classes: [No DR, Mild, Moderate, Severe, Proliferative]
  split:
    random:
      fractions: {train: 0.8, valid: 0.2}
      method: pandas_sample
      seed: 0
      stratify: diagnosis
      rounding: floor
    few_shot: {}
steps:
  - image.read: {input: image, mode: rgb}
"""
    comp = KaggleCompetition("aptos2019-blindness-detection", files, accepted={"alice"})
    with FakeKaggle(competitions=[comp], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = settings.with_(mirrors={"kaggle": kaggle.base_url})
        src = "  - kind: kaggle\n    competition: aptos2019-blindness-detection\n"
        recipe, rows, _ = _run(tmp_path, settings, _recipe_text("aptos", "fundus", src, rest), "aptos")
    df = pd.read_csv(tmp_path / "data" / "raw" / "aptos" / "train.csv", header=0, usecols=[0, 1])
    names = dict(enumerate(["No DR", "Mild", "Moderate", "Severe", "Proliferative"]))
    train, small = set(), set()
    for label, count in df["diagnosis"].value_counts().items():  # CLIMB's aptos.py build_index
        train |= set(df.loc[df["diagnosis"] == label].sample(int(0.8 * count), random_state=0)["id_code"])
        small |= set(df.loc[df["diagnosis"] == label].sample(min(8, count), random_state=0)["id_code"])
    assert [r["id"] for r in rows] == sorted(ids)
    for r in rows:
        grade = int(df.loc[df.id_code == r["id"], "diagnosis"].iloc[0])
        assert r["labels"] == [names[grade]] and r["split"] == ("train" if r["id"] in train else "valid")
    # the few-shot variant is named, separate, and never the default
    rows_small, manifest = _build(recipe.with_variant("small"), settings)
    assert {r["id"] for r in rows_small if r["split"] == "train"} == small & train
    assert {r["id"] for r in rows_small if r["split"] == "valid"} == set(ids) - train
    assert manifest["variant"] == "small" and manifest["dropped"] == {
        "not in the small few-shot subset": len(train - small)
    }


# ------------------------------------------------------------------------------------------------
# OGB (ogbg-molhiv): gzipped CSVs in a zip, membership split files of row numbers, row-number ids


def test_ogb_membership_splits_and_row_number_ids(
    tmp_path: Path, settings: Settings, bucket: FakeBucket
) -> None:
    rng = np.random.default_rng(11)
    n = 30
    active = rng.integers(0, 2, n)
    mol = "HIV_active,smiles,mol_id\n" + "".join(f"{a},C{'C' * i}O,{i}\n" for i, a in enumerate(active))
    order = rng.permutation(n)
    parts = {"train": order[:20], "valid": order[20:25], "test": order[25:]}
    members = {"hiv/mapping/mol.csv.gz": gzip.compress(mol.encode())}
    for split, rows_ in parts.items():
        members[f"hiv/split/scaffold/{split}.csv.gz"] = gzip.compress(
            "".join(f"{i}\n" for i in rows_).encode()
        )
    members["hiv/raw/graph-label.csv.gz"] = gzip.compress("".join(f"{a}\n" for a in active).encode())
    sources = _http(
        bucket,
        "snap",
        {"ogb/data/graphproppred/csv_mol_download/hiv.zip": _zip(members)},
        "    extract: true\n",
    )
    rest = """\
index:
  table: {path: hiv/mapping/mol.csv.gz}
  id: _row
  inputs: {smiles: hiv/mapping/mol.csv.gz}
  labels:
    column: HIV_active
    values: {"0": inactive, "1": active}
    classes: [inactive, active]
  split:
    membership:
      files:
        train: {path: hiv/split/scaffold/train.csv.gz, header: false}
        valid: {path: hiv/split/scaffold/valid.csv.gz, header: false}
        test: {path: hiv/split/scaffold/test.csv.gz, header: false}
  keep: [smiles]
steps:
  - text.read: {input: smiles, column: smiles, key_column: mol_id}
"""
    _, rows, manifest = _run(
        tmp_path, settings, _recipe_text("ogbg-molhiv", "protein", sources, rest), "ogbg-molhiv"
    )
    split_of = {int(i): s for s, idx in parts.items() for i in idx}
    assert sorted(int(r["id"]) for r in rows) == list(range(n))
    for r in rows:
        i = int(r["id"])
        assert r["split"] == split_of[i] and r["labels"] == [["inactive", "active"][active[i]]]
        assert r["smiles"] == f"C{'C' * i}O"
    assert manifest["splits"] == {"test": 5, "train": 20, "valid": 5}


# ------------------------------------------------------------------------------------------------
# KiTS23: kits23.json, the first 75 % of its entries train, malignant -> class, exclusions


@pytest.mark.parametrize("fmt", ["parquet", "npz"])
def test_kits23_json_ordered_split_and_exclusions(
    tmp_path: Path, settings: Settings, bucket: FakeBucket, fmt: str
) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(5)
    cases, files = [], {}
    for k in range(10):
        case = f"case_{k:05d}"
        entry = {"case_id": case, "age_at_nephrectomy": 40 + k, "tumor_histologic_subtype": "clear_cell_rcc"}
        if k != 4:  # one case without the field (CLIMB skips those)
            entry["malignant"] = bool(k % 3)
        cases.append(entry)
        img = sitk.GetImageFromArray(rng.integers(-1000, 1000, (3, 4, 5)).astype(np.int16))
        path = tmp_path / "gen" / f"{case}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        sitk.WriteImage(img, str(path))
        files[f"kits23/dataset/{case}/imaging.nii.gz"] = path.read_bytes()
    files["kits23/dataset/kits23.json"] = json.dumps(cases, indent=2).encode()
    http = "  - id: web\n    kind: http\n    files:\n"
    for key, data in files.items():
        bucket.put("kits", key, data)
        dest = key.removeprefix("kits23/")
        http += f"      - {{url: '{bucket.url('kits', key)}', path: '{dest}', sha256: {_sha(data)}}}\n"
    rest = """\
index:
  table: {path: dataset/kits23.json}
  exclude: {case_id: [case_00007]}
  id: case_id
  inputs: {volume: "dataset/{case_id}/imaging.nii.gz"}
  labels:
    column: malignant
    values: {"true": malignant, "false": benign}
    classes: [benign, malignant]
    empty: drop
  split:
    ordered: {by: [_row], numeric: true, fractions: {train: 0.75, test: 0.25}, rounding: floor}
  keep: [age_at_nephrectomy]
steps:
  - volume.read: {input: volume}
output: {format: FMT}
""".replace("FMT", fmt)
    recipe, rows, manifest = _run(tmp_path, settings, _recipe_text("kits23", "ct", http, rest), "kits23")
    kept = [c for c in cases if c["case_id"] != "case_00007"]
    train_ids = {c["case_id"] for c in kept[: int(0.75 * len(kept))]}
    assert [r["id"] for r in rows] == [c["case_id"] for c in kept if "malignant" in c]
    for r in rows:
        c = next(c for c in cases if c["case_id"] == r["id"])
        assert r["labels"] == ["malignant" if c["malignant"] else "benign"]
        assert r["split"] == ("train" if r["id"] in train_ids else "test")
        assert r["age_at_nephrectomy"] == str(c["age_at_nephrectomy"]) and r["volume_shape"] == [3, 4, 5]
        img = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "gen" / f"{r['id']}.nii.gz")))
        assert np.array_equal(np.asarray(r["volume"], dtype=np.float32), img.reshape(-1).astype(np.float32))
    assert manifest["dropped"] == {"excluded by case_id": 1, "no label": 1}
    shards = sorted((settings.processed_dir("kits23") / recipe.content_hash() / "data").iterdir())
    assert {p.suffix for p in shards} == {f".{fmt}"} and manifest["format"] == fmt
    data = bytearray(shards[0].read_bytes())
    data[len(data) // 2] ^= 0xFF  # a damaged shard is found
    shards[0].write_bytes(bytes(data))
    assert any("sha256 differs" in p for p in verify_outputs(recipe, settings).problems)


# ------------------------------------------------------------------------------------------------
# CMMD (TCIA): the clinical XLSX, two rows (left, right) per patient aggregated, the highest class


def test_cmmd_xlsx_aggregated_per_patient(tmp_path: Path, settings: Settings, bucket: FakeBucket) -> None:
    from openpyxl import Workbook

    from climb_cli.index import build_index

    rng = np.random.default_rng(9)
    wb = Workbook()
    ws = wb.active
    ws.append(["ID1", "LeftRight", "Age", "number", "abnormality", "classification", "subtype"])
    truth: dict[str, tuple[str, list[str], str]] = {}
    files = {}
    for p in range(8):
        pid = f"D1-{p + 1:04d}"
        sides = ["L", "R"] if p % 2 == 0 else ["L"]
        series = f"07-18-2010-NA-NA-{79377 + p}/1.000000-NA-{70244 + p}"  # TCIA's study/series folders
        classes = []
        for k, side in enumerate(sides):
            cls = "Malignant" if (p + k) % 3 == 0 else "Benign"
            classes.append(cls)
            ws.append(
                [pid, side, 50 + p, 2, "calcification", cls, "Luminal A" if cls == "Malignant" else None]
            )
            files[f"CMMD/{pid}/{series}/1-{k + 1}.png"] = _png(rng)
        truth[pid] = ("Malignant" if "Malignant" in classes else "Benign", sides, series)
    buf = io.BytesIO()
    wb.save(buf)
    files["CMMD_clinicaldata_revision.xlsx"] = buf.getvalue()
    sources = "  - id: web\n    kind: http\n    files:\n"
    for key, data in files.items():
        bucket.put("tcia", key, data)
        sources += f"      - {{url: '{bucket.url('tcia', key)}', path: '{key}', sha256: {_sha(data)}}}\n"
    rest = """\
index:
  table: {path: CMMD_clinicaldata_revision.xlsx}
  aggregate: {by: [ID1], labels: max}
  id: ID1
  inputs:
    first: "CMMD/{ID1}/{series}/1-1.png"
    images: "CMMD/{ID1}/{series}/1-{side}.png"
  labels:
    column: classification
    classes: [Benign, Malignant]
  split:
    ordered: {by: [_row], numeric: true, fractions: {train: 0.75, test: 0.25}, rounding: floor}
  keep: [LeftRight, Age]
steps:
  - image.read: {input: first}
"""
    # the hook finds each patient's TCIA study/series folder (the XLSX does not name it)
    hook = (
        "def rows(table, ctx):\n"
        "    found = {}\n"
        "    for p in sorted((ctx.raw_dir / 'CMMD').glob('*/*/*/1-1.png')):\n"
        "        found[p.parts[-4]] = '/'.join(p.parts[-3:-1])\n"
        "    table['series'] = [found[v] for v in table['ID1']]\n"
        "    table['side'] = ['1' if s == 'L' else '2' for s in table['LeftRight']]\n"
        "    return table\n"
    )
    recipe, rows, _ = _run(
        tmp_path, settings, _recipe_text("cmmd", "mammo", sources, rest), "cmmd", hook=hook
    )
    assert [r["id"] for r in rows] == sorted(truth)
    patients = list(truth)
    train = set(patients[: int(0.75 * len(patients))])
    for r in rows:
        cls, sides, _ = truth[r["id"]]
        assert r["labels"] == [cls] and r["split"] == ("train" if r["id"] in train else "test")
        assert r["LeftRight"] == (sides[0] if len(sides) == 1 else json.dumps(sides))
        assert r["image_shape"] == [6, 8, 3]
    for item in build_index(recipe, settings).items:  # list-valued inputs: one path per row of the group
        _, sides, series = truth[item.id]
        want = tuple(f"CMMD/{item.id}/{series}/1-{k + 1}.png" for k in range(len(sides)))
        assert item.inputs["images"] == (want[0] if len(want) == 1 else want)


# ------------------------------------------------------------------------------------------------
# BCSS: images/ enumerated by a regex, split by TCGA site code with a default, tiles as rows


def test_bcss_site_split_with_a_default_and_tiles_as_rows(
    tmp_path: Path, settings: Settings, bucket: FakeBucket
) -> None:
    rng = np.random.default_rng(2)
    names = [
        "TCGA-OL-A5D6-DX1_xmin115108_ymin40414_MPP-0.2500",
        "TCGA-A2-A0D0-DX1_xmin68482_ymin39071_MPP-0.2500",
        "TCGA-E2-A14N-DX1_xmin21383_ymin66838_MPP-0.2500",
        "TCGA-AR-A1AR-DX1_xmin41994_ymin23016_MPP-0.2500",
    ]
    images = {}
    files = {}
    for n in names:
        img = rng.integers(0, 255, (9, 12, 3), dtype=np.uint8)  # 2 x 3 whole 4x4 tiles, a partial row dropped
        images[n] = img
        files[f"images/{n}.png"] = cv2.imencode(".png", img[:, :, ::-1])[1].tobytes()
        files[f"masks/{n}.png"] = cv2.imencode(".png", np.zeros((9, 12), np.uint8))[1].tobytes()
    sources = "  - id: web\n    kind: http\n    files:\n"
    for key, data in files.items():
        bucket.put("bcss", key, data)
        sources += f"      - {{url: '{bucket.url('bcss', key)}', path: '{key}', sha256: {_sha(data)}}}\n"
    rest = r"""
index:
  files: {glob: "images/*.png", pattern: '^images/(?P<image>TCGA-(?P<site>[A-Z0-9]{2})-.*)\.png$'}
  id: image
  inputs: {image: "{path}"}
  split: {column: site, map: {test: [OL, LL, E2, EW, GM, S3]}, default: train}
  keep: [site]
steps:
  - image.read: {input: image, mode: rgb}
  - rows.explode: {arrays: [image], axes: [0, 1], size: [4, 4]}
"""
    _, rows, manifest = _run(tmp_path, settings, _recipe_text("bcss", "pathology", sources, rest), "bcss")
    assert len(rows) == 4 * 6 and manifest["splits"] == {"test": 12, "train": 12}
    for r in rows:
        stem, n = r["id"].split("#")
        y, x = divmod(int(n), 3)
        tile = np.asarray(r["image"], dtype=np.uint8).reshape(r["image_shape"])
        assert (
            r["image_shape"] == [4, 4, 3]
            and (tile == images[stem][4 * y : 4 * y + 4, 4 * x : 4 * x + 4]).all()
        )
        assert r["split"] == ("test" if r["site"] in ("OL", "E2") else "train")


# ------------------------------------------------------------------------------------------------
# VinDr-CXR (PhysioNet, credentialed): train labels are three radiologists' rows per image; one item
# per image with the union of their findings; train and test label tables concatenated; DICOM


VINDR = ["Aortic enlargement", "Cardiomegaly", "Pleural effusion", "No finding"]


def test_vindr_cxr_three_radiologists_aggregated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from climb_cli.fakes.physionet import FakePhysioNet, FakeProject, FakeUser, write_sha256sums
    from tests.conftest import TEST_EMAIL, TEST_PASSWORD, TEST_USER
    from tests.steps.test_dicom import write_dicom

    rng = np.random.default_rng(8)
    root = tmp_path / "mirror" / "vindr-cxr" / "1.0.0"
    (root / "annotations").mkdir(parents=True)
    truth: dict[str, tuple[str, set[str]]] = {}
    header = "image_id,rad_id," + ",".join(VINDR) + "\n"
    tables = {"train": header, "test": header}
    for k in range(9):
        split = "train" if k < 6 else "test"
        image_id = f"{int(rng.integers(16**11, 16**12)):032x}"[-32:]
        (root / split).mkdir(exist_ok=True)
        write_dicom(root / split / f"{image_id}.dicom", rng.integers(0, 4095, (6, 5)).astype(np.uint16))
        found: set[str] = set()
        for rad in ["R8", "R9", "R10"] if split == "train" else ["R1"]:  # the test set: one consensus row
            flags = [int(rng.random() < 0.3) for _ in VINDR]
            found |= {c for c, f in zip(VINDR, flags, strict=True) if f}
            tables[split] += f"{image_id},{rad}," + ",".join(map(str, flags)) + "\n"
        truth[image_id] = (split, found)
    for split, text in tables.items():
        (root / "annotations" / f"image_labels_{split}.csv").write_text(text)
    (root / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0\n")
    write_sha256sums(root)
    monkeypatch.setenv("PHYSIONET_USERNAME", TEST_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", TEST_PASSWORD)
    rest = """\
index:
  table:
    - {path: annotations/image_labels_train.csv, with_columns: {folder: train}}
    - {path: annotations/image_labels_test.csv, with_columns: {folder: test}}
  aggregate: {by: [image_id], labels: union}
  id: image_id
  inputs: {image: "{folder}/{image_id}.dicom"}
  labels:
    kind: multilabel
    columns: [Aortic enlargement, Cardiomegaly, Pleural effusion, No finding]
    positive: ["1"]
  split: {column: folder, map: {train: [train], test: [test]}}
  keep: [rad_id]
steps:
  - dicom.read: {input: image}
"""
    src = "  - kind: physionet\n    project: vindr-cxr\n    version: 1.0.0\n"
    users = [FakeUser(TEST_USER, TEST_EMAIL, TEST_PASSWORD, dua_signed={"vindr-cxr"})]  # a credentialed user
    with FakePhysioNet([FakeProject("vindr-cxr", "1.0.0", root, access="credentialed")], users) as server:
        settings = fast_settings(tmp_path, {"physionet": server.base_url})
        text = _recipe_text("vindr-cxr", "chest_xray", src, rest).replace(
            "access: open", "access: credentialed"
        )
        _, rows, manifest = _run(tmp_path, settings, text, "vindr-cxr")
    assert [r["id"] for r in rows] == sorted(truth)
    for r in rows:
        split, found = truth[r["id"]]
        assert r["split"] == split and r["labels"] == [c for c in VINDR if c in found]
        assert r["rad_id"] == ('["R8", "R9", "R10"]' if split == "train" else "R1")
        assert r["image_shape"] == [6, 5]
    assert manifest["splits"] == {"test": 3, "train": 6}


# ------------------------------------------------------------------------------------------------
# PTB-XL with CLIMB's frozen split file: a second, pinned source (raw.githubusercontent.com) joined
# on a derived record key; CLIMB's 7 classes by index


ECG7 = ["normal", "cd", "mi", "sttc", "other", "afib", "hyp"]


def test_ptbxl_with_climbs_frozen_split_file(tmp_path: Path, server, bucket: FakeBucket) -> None:  # noqa: ANN001
    settings = fast_settings(tmp_path, {"physionet": server.base_url})
    rng = np.random.default_rng(6)
    db = pd.read_csv(server.projects[0].root / "ptbxl_database.csv", dtype=str)
    lines = [",Unnamed: 0,file_name," + ",".join(ECG7) + ",patient,split,label"]
    truth = {}
    for k, ecg_id in enumerate(db["ecg_id"]):
        record, label = f"HR{int(ecg_id):05d}", int(rng.integers(0, 7))
        split = "train" if rng.random() < 0.8 else "val"
        flags = ",".join("1.0" if i == label else "0.0" for i in range(7))
        lines.append(f"{k},{k},/home/ubuntu/raw/ecg/WFDB_PTBXL/{record}.hea,{flags},{record},{split},{label}")
        truth[ecg_id] = (split, ECG7[label])
    frozen = ("\n".join(lines) + "\n").encode()
    key = "DDVD233/CLIMB/0f767b1ea168810b998981078dc27e7f9a4e4675/src/datasets/ecg/ptbxl_splits.csv"
    bucket.put("raw.githubusercontent.com", key, frozen, content_type="text/plain")
    sources = f"""\
  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv]
  - id: climb
    kind: http
    into: climb-splits
    files:
      - {{url: '{bucket.url("raw.githubusercontent.com", key)}', sha256: {_sha(frozen)}}}
"""
    rest = """\
index:
  table: {path: ptbxl_database.csv, derive: {record: "HR{ecg_id:0>5}"}}
  join:
    - {table: {source: climb, path: ptbxl_splits.csv}, on: [record], right_on: [patient]}
  id: ecg_id
  inputs: {record: "{filename_hr}"}
  labels:
    column: label
    values: {"0": normal, "1": cd, "2": mi, "3": sttc, "4": other, "5": afib, "6": hyp}
    classes: [normal, cd, mi, sttc, other, afib, hyp]
  split: {column: split, map: {train: [train], val: [val]}}
  keep: [record]
steps:
  - ecg.read_wfdb: {input: record}
"""
    _, rows, _ = _run(tmp_path, settings, _recipe_text("ptbxl-climb", "ecg", sources, rest), "ptbxl-climb")
    assert sorted(r["id"] for r in rows) == sorted(truth)
    for r in rows:
        assert (r["split"], r["labels"]) == (truth[r["id"]][0], [truth[r["id"]][1]])
        assert r["record"] == f"HR{int(r['id']):05d}"


# ------------------------------------------------------------------------------------------------
# ISRUC-Sleep subgroup I: subjects 8 and 18 excluded, a seeded patient split, one row per 30 s epoch
# with its own sleep stage (the recordings as unpacked from the .rar: <pid>/<pid>.rec, <pid>_1.txt)


def test_isruc_epochs_as_rows_with_their_stages(
    tmp_path: Path, settings: Settings, bucket: FakeBucket
) -> None:
    from tests.steps.test_eeg import write_edf

    rng = np.random.default_rng(12)
    files, stages = {}, {}
    for pid in [1, 2, 3, 4, 5, 8]:
        n = 4 + pid % 3
        x = rng.normal(0, 20, (2, n * 30 * 2))
        path = write_edf(tmp_path / f"{pid}.edf", [("C3-A2", 2, x[0]), ("C4-A1", 2, x[1])])
        codes = rng.choice(["0", "1", "2", "3", "5"], n)
        files[f"{pid}/{pid}.rec"] = path.read_bytes()
        files[f"{pid}/{pid}_1.txt"] = ("\n".join(codes) + "\n").encode()
        stages[str(pid)] = [{"0": "W", "1": "N1", "2": "N2", "3": "N3", "5": "R"}[c] for c in codes]
    sources = "  - id: web\n    kind: http\n    files:\n"
    for key, data in files.items():
        bucket.put("isruc", f"ISRUC_Sleep/subgroupI/{key}", data)
        url = bucket.url("isruc", f"ISRUC_Sleep/subgroupI/{key}")
        sources += f"      - {{url: '{url}', path: '{key}', sha256: {_sha(data)}}}\n"
    rest = r"""
index:
  files: {glob: "*/*.rec", pattern: '^(?P<pid>\d+)/'}
  exclude: {pid: ["8", "18"]}
  id: pid
  inputs: {edf: "{pid}/{pid}.rec", hypnogram: "{pid}/{pid}_1.txt"}
  labels: {kind: multiclass, from_rows: true, classes: [W, N1, N2, N3, R]}
  split: {random: {fractions: {train: 0.8, test: 0.2}, seed: 0}}
steps:
  - eeg.read_edf: {input: edf, channels: [C3, C4]}
  - eeg.epoch: {window: 30, labels: hypnogram}
  - rows.explode: {arrays: [epochs], size: [1], squeeze: true, meta: [epoch_onsets], label_from: epoch_labels}
"""
    _, rows, manifest = _run(tmp_path, settings, _recipe_text("isruc", "eeg", sources, rest), "isruc")
    assert {r["id"].split("#")[0] for r in rows} == {"1", "2", "3", "4", "5"}  # subject 8 excluded
    assert manifest["dropped"] == {"excluded by pid": 1}
    splits = {}
    for r in rows:
        pid, n = r["id"].split("#")
        assert r["labels"] == [stages[pid][int(n)]] and r["epochs_shape"] == [2, 60]
        assert r["epoch_onsets"] == 30.0 * int(n)
        splits.setdefault(pid, set()).add(r["split"])
    assert all(len(v) == 1 for v in splits.values()) and len(rows) == sum(len(stages[p]) for p in splits)
    assert sum(manifest["classes"].values()) == len(rows)


# ------------------------------------------------------------------------------------------------
# GENIA (Kaggle dataset): event types discovered from the data (computed once, locked, reused),
# ';'-separated lists, train and test tables concatenated, text only (no steps)


def test_genia_discovered_event_types(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.kaggle import KaggleDataset

    header = "Sentence,EventType,TriggerWordLoc,TriggerWord\n"
    train = header + (
        '"IL-2 gene expression requires NF-kappa B.",'
        "Gene_expression;Positive_regulation,2;4,expression;requires\n"
        '"TCF-1 binds the promoter.",Binding,1,binds\n'
        '"No event here.",,,\n'
    )
    test = (
        header
        + '"CD28 induces phosphorylation.",Positive_regulation;Phosphorylation,1;2,induces;phosphorylation\n'
    )
    files = {"train_data.csv": train.encode(), "test_data.csv": test.encode()}
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)
    rest = """\
index:
  table:
    - {path: train_data.csv, with_columns: {part: train}}
    - {path: test_data.csv, with_columns: {part: test}}
  id: "{part}-{_row}"
  inputs: {}
  labels: {kind: multilabel, column: EventType, parse: list, sep: ";", discover: true}
  split: {column: part, map: {train: [train], test: [test]}}
  keep: [Sentence]
"""
    ds = KaggleDataset("nishanthsalian", "genia-biomedical-event-dataset", {1: files})
    with FakeKaggle(datasets=[ds], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = settings.with_(mirrors={"kaggle": kaggle.base_url})
        src = "  - kind: kaggle\n    dataset: nishanthsalian/genia-biomedical-event-dataset\n"
        recipe, rows, manifest = _run(tmp_path, settings, _recipe_text("genia", "text", src, rest), "genia")
    vocab = ["Binding", "Gene_expression", "Phosphorylation", "Positive_regulation"]
    assert manifest["classes"] == {
        "Binding": 1,
        "Gene_expression": 1,
        "Phosphorylation": 1,
        "Positive_regulation": 2,
    }
    assert manifest["classes_discovered"] is True
    got = {r["id"]: (r["split"], r["labels"], r["target"]) for r in rows}
    assert got["train-0"] == ("train", ["Gene_expression", "Positive_regulation"], [0, 1, 0, 1])
    assert got["train-2"] == ("train", [], [0, 0, 0, 0]) and got["test-3"][1] == [
        "Phosphorylation",
        "Positive_regulation",
    ]
    # a rebuild reuses the locked vocabulary; a new event type is an item error, not a new class
    lock = settings.raw_dir("genia") / ".climb" / "classes.json"
    assert json.loads(lock.read_text())["classes"] == vocab
    raw = settings.raw_dir("genia") / "test_data.csv"
    raw.write_text(test + '"X.",Localization,1,X\n')
    report = preprocess(recipe, settings, workers=1)
    assert report.rejected == [("test-4", "label(s) Localization not in the recipe's classes")]
