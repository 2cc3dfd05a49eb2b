"""The PhysioNet-hosted CLIMB recipes (issue 11) end to end: miniatures in the real layouts served by the
fake PhysioNet (and CLIMB's frozen split files by the fake GitHub), download -> verify -> preprocess ->
verify --outputs, rows checked one by one. The real recipes are used; only the pins of CLIMB's split files
are swapped in a test copy of the recipe, because the files served here are generated."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import scipy.io

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet, FakeProject, FakeUser, write_sha256sums
from climb_cli.pipeline import preprocess
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.verify import verify_outputs, verify_raw
from tests.conftest import TEST_EMAIL, TEST_PASSWORD, TEST_USER, fast_settings
from tests.fakes.github import FakeGitHub, FakeRepo

CLIMB_COMMIT = "0f767b1ea168810b998981078dc27e7f9a4e4675"
ECG7 = ["normal", "cd", "mi", "sttc", "other", "afib", "hyp"]
LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def creds(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PHYSIONET_USERNAME", TEST_USER)
    monkeypatch.setenv("PHYSIONET_PASSWORD", TEST_PASSWORD)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    monkeypatch.delenv("GH_TOKEN", raising=False)


def _user(*slugs: str) -> FakeUser:
    return FakeUser(TEST_USER, TEST_EMAIL, TEST_PASSWORD, dua_signed=set(slugs))


def _test_copy(tmp_path: Path, name: str, pins: dict[str, bytes] | None = None) -> Recipe:
    """The packaged recipe, copied with the pins of CLIMB's split files replaced by the served files' and
    without its `expect` block (the full dataset's counts; a miniature has its own, checked row by row)."""
    text = Catalog().paths()[name].read_text()
    text = text.split("\nexpect:")[0] + "\n"
    for path, data in (pins or {}).items():
        text, n = re.subn(
            r"\{path: " + re.escape(path) + r", sha256: [0-9a-f]{64}, size: [0-9]+\}",
            f"{{path: {path}, sha256: {_sha(data)}, size: {len(data)}}}",
            text,
        )
        assert n == 1, path
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    hook = Catalog().paths()[name].with_suffix(".py")
    if hook.is_file():
        (folder / hook.name).write_text(hook.read_text())
    return Catalog([folder]).load(name)


def _run(recipe: Recipe, settings: Settings) -> tuple[list[dict], dict]:
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    report = preprocess(recipe, settings, workers=1)
    assert report.errors == 0, [u.errors for u in report.units]
    out = verify_outputs(recipe, settings)
    assert out.ok, out.problems
    rows = pq.read_table(report.out_dir / "data").to_pylist()
    return sorted(rows, key=lambda r: r["id"]), json.loads((report.out_dir / "manifest.json").read_text())


def _serve_and_build(
    tmp_path: Path, root: Path, slug: str, version: str, access: str, *names: str
) -> tuple[Settings, list[tuple[list[dict], dict]]]:
    """Serve one generated project (with its SHA256SUMS.txt) to a user who signed its DUA; build `names`."""
    write_sha256sums(root)
    project = FakeProject(slug, version, root, access=access, title=slug)
    with FakePhysioNet([project], [_user(slug)]) as pn:
        settings = fast_settings(tmp_path, {"physionet": pn.base_url})
        return settings, [_run(_test_copy(tmp_path, name), settings) for name in names]


# ------------------------------------------------------------------------------------------------
# CinC Challenge 2021 ECGs (cpsc): .hea + MATLAB v4 .mat in training/cpsc_2018/g<N>/, CLIMB's split CSV


def _cinc_record(folder: Path, record: str, n: int, dx: str, rng: np.random.Generator) -> np.ndarray:
    """A Challenge-format record: `val` (12 x n int16) in a MATLAB v4 file, and its WFDB header."""
    folder.mkdir(parents=True, exist_ok=True)
    val = rng.integers(-2000, 2000, (12, n)).astype(np.int16)
    scipy.io.savemat(folder / f"{record}.mat", {"val": val}, format="4")
    lines = [f"{record} 12 500 {n} 05-May-2020 14:50:55"]
    for k, lead in enumerate(LEADS):
        lines.append(
            f"{record}.mat 16+24 1000/mV 16 0 {val[k, 0]} {int(val[k].astype(np.int64).sum()) % 65536} "
            f"0 {lead}"
        )
    lines += ["#Age: 53", "#Sex: Male", f"#Dx: {dx}", "#Rx: Unknown", "#Hx: Unknown", "#Sx: Unknown"]
    (folder / f"{record}.hea").write_text("\n".join(lines) + "\n")
    return val.astype(np.float64)


def test_cpsc_challenge_layout_with_climbs_split_file(tmp_path: Path, creds: None) -> None:
    rng = np.random.default_rng(11)
    root = tmp_path / "mirror" / "challenge-2021" / "1.0.3"
    # (record, folder, samples, label, split); A0003 is 15 s (CLIMB drops it); A1001 is not in CLIMB's file
    plan = [
        ("A0001", "g1", 5000, 1, "train"),
        ("A0002", "g1", 5000, 5, "val"),
        ("A0003", "g1", 7500, 0, "train"),
        ("A1001", "g2", 5000, 3, "train"),
        ("A1002", "g2", 5000, 3, "train"),
    ]
    signals, lines = {}, [",Unnamed: 0,file_name," + ",".join(ECG7) + ",patient,split,label"]
    for k, (record, folder, n, label, split) in enumerate(plan):
        signals[record] = _cinc_record(root / "training" / "cpsc_2018" / folder, record, n, "426783006", rng)
        if record == "A1001":
            continue
        flags = ",".join("1.0" if i == label else "0.0" for i in range(7))
        lines.append(
            f"{k},{k},/home/ubuntu/raw/ecg/WFDB_CPSC2018/{record}.hea,{flags},{record},{split},{label}"
        )
    (root / "training" / "georgia" / "g1").mkdir(parents=True)  # another set: not downloaded
    (root / "training" / "georgia" / "g1" / "E00001.hea").write_text("E00001 12 500 5000\n")
    (root / "LICENSE.txt").write_text("CC BY 4.0 (generated test data)\n")
    write_sha256sums(root)
    split_csv = ("\n".join(lines) + "\n").encode()
    csv_path = "src/datasets/ecg/CPSC_splits.csv"
    repo = FakeRepo("DDVD233", "CLIMB", {CLIMB_COMMIT: {csv_path: split_csv}})
    project = FakeProject("challenge-2021", "1.0.3", root, access="open", title="Challenge 2021")
    with FakePhysioNet([project], [_user()]) as pn, FakeGitHub([repo]) as gh:
        settings = fast_settings(
            tmp_path, {"physionet": pn.base_url, "github": gh.api.base_url, "github-raw": gh.raw.base_url}
        )
        recipe = _test_copy(tmp_path, "cpsc", {csv_path: split_csv})
        rows, manifest = _run(recipe, settings)
    again = preprocess(recipe, settings, workers=1)  # every shard committed: skipped, drops still counted
    assert again.skipped_units == len(again.units) and again.dropped == manifest["dropped"]
    assert not (settings.raw_dir("cpsc") / "training" / "georgia").exists()
    assert [r["id"] for r in rows] == ["A0001", "A0002", "A1002"]
    want = {r[0]: r for r in plan}
    for r in rows:
        _, _, _, label, split = want[r["id"]]
        assert (r["split"], r["labels"]) == (split, [ECG7[label]])
        assert r[ECG7[label]] == "1.0" and sum(r[c] == "1.0" for c in ECG7) == 1
        x = signals[r["id"]]
        expected = (x / (x.max() - x.min()))[:, :5000].astype(np.float32)
        got = np.asarray(r["signal"], dtype=np.float32).reshape(r["signal_shape"])
        assert got.shape == (12, 5000)
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    assert manifest["dropped"].get("ecg.require_length: not 5000 samples long") == 1
    assert sum(manifest["dropped"].values()) == 2, manifest["dropped"]  # A0003 (length), A1001 (not CLIMB's)


def test_the_real_recipes_keep_climbs_pins() -> None:
    pins = {
        "ptbxl": "e48f07e91d6b2616707483bfff3863d4c3bd02866274ccf935d8363269713ba9",
        "cpsc": "e008e2ba52280c568d986fa34e4a46c751c633cb67afb73e367ce890015440b1",
        "georgia": "6e47ca14de188d0a5086e2759f8019d5560a529516c39f1ad3183722c3ec306a",
        "chapman_shaoxing": "b3ec97578d4f780c7f01c61383194a8780734b286523c8411e2c685795406be9",
    }
    for name, sha in pins.items():
        (source,) = [s for s in Catalog().load(name).sources if s.id == "climb"]
        assert source.model_dump()["files"][0]["sha256"] == sha
        assert source.model_dump()["commit"] == CLIMB_COMMIT


# ------------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG 2.0.0 (credentialed): three studies, the four metadata CSVs, and cxr-study-list.csv.gz
# from the separate mimic-cxr project

CHEXPERT = [
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Enlarged Cardiomediastinum",
    "Fracture",
    "Lung Lesion",
    "Lung Opacity",
    "No Finding",
    "Pleural Effusion",
    "Pleural Other",
    "Pneumonia",
    "Pneumothorax",
    "Support Devices",
]


def _gz_csv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    import gzip

    path.parent.mkdir(parents=True, exist_ok=True)
    text = ",".join(header) + "\n" + "".join(",".join(r) + "\n" for r in rows)
    with gzip.open(path, "wt", newline="") as f:
        f.write(text)


def test_mimic_cxr_jpg_with_the_study_list_from_mimic_cxr(tmp_path: Path, creds: None) -> None:
    import cv2

    rng = np.random.default_rng(3)
    jpg_root = tmp_path / "mirror" / "mimic-cxr-jpg" / "2.0.0"
    cxr_root = tmp_path / "mirror" / "mimic-cxr" / "2.0.0"
    # (subject, study, [dicom ids], split, {label: raw value}); blanks are ''
    studies = [
        (
            "10000032",
            "50414267",
            ["02aa804e-bde0afdd-112c0b34-7bc16630-4e381014", "174413ec-4ec4c1f7"],
            "train",
            {"Cardiomegaly": "1.0", "Edema": "-1.0", "No Finding": ""},
        ),
        (
            "10000764",
            "57375967",
            ["096052b7-d256dc40-453a102b"],
            "validate",
            {"Pneumonia": "1.0", "Atelectasis": "0.0"},
        ),
        ("11000183", "51967845", ["3f4ab3c4-22a6f1e3"], "test", {"No Finding": "1.0"}),
    ]
    split_rows, chex_rows, meta_rows, list_rows, images, truth = [], [], [], [], {}, {}
    for subject, study, dicoms, split, raw in studies:
        chex_rows.append([subject, study] + [raw.get(c, "") for c in CHEXPERT])
        list_rows.append([subject, study, f"files/p{subject[:2]}/p{subject}/s{study}.txt"])
        for d in dicoms:
            split_rows.append([d, study, subject, split])
            meta_rows.append(
                [
                    d,
                    subject,
                    study,
                    "CHEST (PA AND LAT)",
                    "PA",
                    "6",
                    "8",
                    "21800506",
                    "213014.531",
                    "",
                    "",
                    "",
                ]
            )
            img = rng.integers(0, 255, (6, 8), dtype=np.uint8)
            path = jpg_root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{d}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            ok, buf = cv2.imencode(".jpg", img)
            path.write_bytes(buf.tobytes())
            images[d] = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
            truth[d] = (
                "train" if split == "train" else "test",
                [c for c in CHEXPERT if raw.get(c) == "1.0"],
                raw,
            )
    # a study in the split file without a chexpert row: not part of CLIMB's merged table
    split_rows.append(["deadbeef-00000000", "59999999", "19999999", "train"])
    _gz_csv(
        jpg_root / "mimic-cxr-2.0.0-split.csv.gz", ["dicom_id", "study_id", "subject_id", "split"], split_rows
    )
    _gz_csv(jpg_root / "mimic-cxr-2.0.0-chexpert.csv.gz", ["subject_id", "study_id", *CHEXPERT], chex_rows)
    _gz_csv(jpg_root / "mimic-cxr-2.0.0-negbio.csv.gz", ["subject_id", "study_id", *CHEXPERT], chex_rows)
    meta_header = [
        "dicom_id",
        "subject_id",
        "study_id",
        "PerformedProcedureStepDescription",
        "ViewPosition",
        "Rows",
        "Columns",
        "StudyDate",
        "StudyTime",
        "ProcedureCodeSequence_CodeMeaning",
        "ViewCodeSequence_CodeMeaning",
        "PatientOrientationCodeSequence_CodeMeaning",
    ]
    _gz_csv(jpg_root / "mimic-cxr-2.0.0-metadata.csv.gz", meta_header, meta_rows)
    (jpg_root / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0 (test)\n")
    _gz_csv(cxr_root / "cxr-study-list.csv.gz", ["subject_id", "study_id", "path"], list_rows)
    (cxr_root / "cxr-record-list.csv.gz").write_bytes(b"not fetched")
    write_sha256sums(jpg_root)
    write_sha256sums(cxr_root)
    projects = [
        FakeProject("mimic-cxr-jpg", "2.0.0", jpg_root, access="credentialed", title="MIMIC-CXR-JPG"),
        FakeProject("mimic-cxr", "2.0.0", cxr_root, access="credentialed", title="MIMIC-CXR"),
    ]
    with FakePhysioNet(projects, [_user("mimic-cxr")]) as pn:  # no DUA for mimic-cxr-jpg yet
        settings = fast_settings(tmp_path, {"physionet": pn.base_url})
        recipe = _test_copy(tmp_path, "mimic_cxr")
        dl = download(recipe, settings)
        assert not dl.ok and "mimic-cxr-jpg" in str(dl.error)
        pn.users[0].dua_signed.add("mimic-cxr-jpg")
        rows, manifest = _run(recipe, settings)
    assert (settings.raw_dir("mimic_cxr") / "mimic-cxr" / "cxr-study-list.csv.gz").is_file()
    assert not (settings.raw_dir("mimic_cxr") / "mimic-cxr" / "cxr-record-list.csv.gz").exists()
    assert sorted(r["id"] for r in rows) == sorted(truth)
    for r in rows:
        split, labels, raw = truth[r["id"]]
        assert (r["split"], r["labels"]) == (split, labels), r["id"]
        assert json.loads(r["labels_raw"]) == {c: raw.get(c, "") for c in CHEXPERT}
        got = np.asarray(r["image"], dtype=np.uint8).reshape(r["image_shape"])
        np.testing.assert_array_equal(got, images[r["id"]])
    assert manifest["splits"] == {"test": 2, "train": 2}
    assert manifest["climb_tensor"]["mean"] == [0.4721]


# ------------------------------------------------------------------------------------------------
# VinDr-CXR (credentialed): DICOMs with their three radiologists' rows; VinDr-Mammo (restricted): BI-RADS


def _dicom(path: Path, pixels: np.ndarray, photometric: str = "MONOCHROME2", **tags: object) -> None:
    from tests.steps.test_dicom import write_dicom

    path.parent.mkdir(parents=True, exist_ok=True)
    write_dicom(path, pixels, photometric, **tags)


VINDR = [
    "Aortic enlargement",
    "Atelectasis",
    "Calcification",
    "Cardiomegaly",
    "Clavicle fracture",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Enlarged PA",
    "ILD",
    "Infiltration",
    "Lung cavity",
    "Lung cyst",
    "Lung Opacity",
    "Mediastinal shift",
    "Nodule/Mass",
    "Pulmonary fibrosis",
    "Pneumothorax",
    "Pleural effusion",
    "Pleural thickening",
    "Rib fracture",
    "Other lesion",
    "COPD",
    "Lung tumor",
    "Pneumonia",
    "Tuberculosis",
    "Other diseases",
    "No finding",
]


def test_vindr_cxr_three_radiologists_become_one_item(tmp_path: Path, creds: None) -> None:
    rng = np.random.default_rng(5)
    root = tmp_path / "mirror" / "vindr-cxr" / "1.0.0"
    # image -> (folder, rows of positive findings per radiologist, photometric, window or None)
    images = {
        "000434271f63a053c4128a0ba6352c7f": (
            "train",
            [["No finding"], ["Cardiomegaly"], ["Cardiomegaly", "ILD"]],
            "MONOCHROME2",
            (900.0, 1200.0),
        ),
        "00053190460d56c53cc3e57321387478": (
            "train",
            [["No finding"], ["No finding"], ["No finding"]],
            "MONOCHROME1",
            (2000.0, 3001.0),
        ),
        "002a34c58c5b758217ed1f584ccbcfe9": (
            "test",
            [["Pleural effusion", "Nodule/Mass"]],
            "MONOCHROME2",
            None,
        ),
    }
    lines = {"train": [], "test": []}
    expected = {}
    for image_id, (folder, readers, photometric, window) in images.items():
        stored = rng.integers(0, 4095, (10, 12)).astype(np.uint16)
        tags = {"RescaleSlope": "1", "RescaleIntercept": "-1024"}
        if window:
            tags.update(WindowCenter=str(window[0]), WindowWidth=str(window[1]))
        _dicom(root / folder / f"{image_id}.dicom", stored, photometric, **tags)
        for k, findings in enumerate(readers):
            rad = f"R{8 + k}" if folder == "train" else "R1"
            lines[folder].append(",".join([image_id, rad] + ["1" if c in findings else "0" for c in VINDR]))
        x = stored.astype(np.float64) - 1024
        lo, hi = (window[0] - window[1] / 2, window[0] + window[1] / 2) if window else (x.min(), x.max())
        u = np.clip(x, lo, hi)
        u = (u - u.min()) / (u.max() - u.min())
        if photometric == "MONOCHROME1":
            u = 1 - u
        labels = [c for c in VINDR if any(c in f for f in readers)]
        rads = [f"R{8 + k}" for k in range(len(readers))] if folder == "train" else "R1"
        expected[image_id] = (folder, labels, np.floor(u * 255), rads)
    ann = root / "annotations"
    ann.mkdir(parents=True)
    for folder, rows in lines.items():
        header = "image_id,rad_id," + ",".join(VINDR)
        (ann / f"image_labels_{folder}.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
        (ann / f"annotations_{folder}.csv").write_text("image_id,rad_id,class_name,x_min,y_min,x_max,y_max\n")
    (root / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0 (test)\n")
    (root / "supplemental_file_DICOM_tags.pdf").write_bytes(b"%PDF-1.4 not fetched\n")
    settings, [(rows, manifest)] = _serve_and_build(
        tmp_path, root, "vindr-cxr", "1.0.0", "credentialed", "vindr_cxr"
    )
    assert not (settings.raw_dir("vindr_cxr") / "supplemental_file_DICOM_tags.pdf").exists()
    assert [r["id"] for r in rows] == sorted(images)
    for r in rows:
        folder, labels, pixels, rads = expected[r["id"]]
        assert (r["split"], r["labels"]) == (folder, labels), r["id"]
        assert r["rad_id"] == (json.dumps(rads) if isinstance(rads, list) else rads)
        got = np.asarray(r["image"], dtype=np.float64).reshape(r["image_shape"])
        assert np.abs(got - pixels).max() <= 1, r["id"]  # float32 window arithmetic vs float64 here
    assert manifest["splits"] == {"test": 1, "train": 2}
    assert manifest["climb_tensor"]["mean"] == [0.7635]


def test_vindr_mammo_pixels_as_climbs_get_pixel_array(tmp_path: Path, creds: None) -> None:
    rng = np.random.default_rng(9)
    root = tmp_path / "mirror" / "vindr-mammo" / "1.0.0"
    plan = [  # study, image, laterality, view, birads, split, photometric
        (
            "b8d273e6f3f5bd3b5c6b3b8a2b3c2a11",
            "d8125545210c08e1b1793a5af6458ee2",
            "L",
            "CC",
            "BI-RADS 2",
            "training",
            "MONOCHROME2",
        ),
        (
            "b8d273e6f3f5bd3b5c6b3b8a2b3c2a11",
            "8a0f4f8e8e7e2d2c1b0a9f8e7d6c5b4a",
            "R",
            "MLO",
            "BI-RADS 5",
            "training",
            "MONOCHROME1",
        ),
        (
            "4e3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c",
            "1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f",
            "L",
            "MLO",
            "BI-RADS 1",
            "test",
            "MONOCHROME2",
        ),
    ]
    header = (
        "study_id,series_id,image_id,laterality,view_position,height,width,breast_birads,breast_density,split"
    )
    lines, expected = [header], {}
    for study, image, lat, view, birads, split, photometric in plan:
        stored = rng.integers(0, 3000, (8, 6)).astype(np.uint16)
        _dicom(
            root / "images" / study / f"{image}.dicom",
            stored,
            photometric,
            RescaleSlope="2",
            RescaleIntercept="-100",
        )
        lines.append(f"{study},s{study[:6]},{image},{lat},{view},8,6,{birads},DENSITY C,{split}")
        x = stored.astype(np.float64) * 2 - 100
        y = (np.maximum(x, 0) / x.max() * 255).astype(np.uint8)
        if photometric == "MONOCHROME1":
            y = np.invert(y)
        expected[image] = ("train" if split == "training" else "test", birads, y, lat)
    (root / "breast-level_annotations.csv").write_text("\n".join(lines) + "\n")
    (root / "finding_annotations.csv").write_text("study_id,series_id,image_id,finding_categories\n")
    (root / "metadata.csv").write_text("SOP Instance UID,Series Instance UID\n")
    (root / "LICENSE.txt").write_text("PhysioNet Restricted Health Data License 1.5.0 (test)\n")
    _, [(rows, manifest), (rows16, _)] = _serve_and_build(
        tmp_path, root, "vindr-mammo", "1.0.0", "restricted", "vindr_mammo", "vindr_mammo_16bit"
    )
    assert sorted(r["id"] for r in rows) == sorted(expected)
    for r in rows:
        split, birads, pixels, lat = expected[r["id"]]
        assert (r["split"], r["labels"], r["breast"]) == (split, [birads], lat)
        np.testing.assert_array_equal(
            np.asarray(r["image"], dtype=np.uint8).reshape(r["image_shape"]), pixels
        )
    assert manifest["climb_tensor"]["pad"] == "width"
    for r in rows16:
        got = np.asarray(r["image"]).reshape(r["image_shape"])
        assert got.max() == 65535 and abs(got.astype(float) / 257 - expected[r["id"]][2]).max() <= 1.01


# ------------------------------------------------------------------------------------------------
# MIMIC-IV-ECG (open) and MIMIC-IV (credentialed): two admissions linked to a CXR study and ECG records

ADMISSIONS = [  # hadm, subject, admit, discharge, death, diagnoses (version, code)
    (
        "22595853",
        "10000032",
        "2180-05-06 22:23:00",
        "2180-05-07 17:15:00",
        "2180-05-07 17:15:00",
        [("9", "5723"), ("9", "78959")],
    ),
    (
        "22841357",
        "10000032",
        "2180-06-26 18:27:00",
        "2180-06-27 18:49:00",
        "",
        [("10", "I10"), ("9", "5723")],
    ),
    ("25742920", "10000764", "2132-10-14 23:31:00", "2132-10-19 16:30:00", "", [("9", "4019")]),  # no ECG
    ("27897940", "10001217", "2157-11-18 22:56:00", "2157-11-25 18:00:00", "", []),  # no diagnosis
]
ECGS = [("10000032", "40689238"), ("10000032", "41234567"), ("10001217", "45512345")]
CXRS = [
    ("10000032", "50414267", "02aa804e-bde0afdd"),
    ("10000764", "57375967", "096052b7-d256dc40"),
    ("10001217", "58913004", "3f4ab3c4-22a6f1e3"),
]


def _mimic_iv_projects(tmp_path: Path, rng: np.random.Generator) -> tuple[list[FakeProject], dict]:
    import wfdb

    m = tmp_path / "mirror"
    ecg_root, hosp_root = m / "mimic-iv-ecg" / "1.0", m / "mimiciv" / "3.1"
    jpg_root, cxr_root = m / "mimic-cxr-jpg" / "2.0.0", m / "mimic-cxr" / "2.0.0"
    signals, rec_rows = {}, []
    for k, (subject, study) in enumerate(ECGS):
        rel = f"files/p{subject[:4]}/p{subject}/s{study}"
        (ecg_root / rel).mkdir(parents=True)
        t = np.arange(5000) / 500
        sig = np.stack(
            [np.sin(2 * np.pi * (1 + i) * t) + 0.3 * t + rng.normal(0, 0.05, 5000) for i in range(12)]
        )
        wfdb.wrsamp(
            study,
            fs=500,
            units=["mV"] * 12,
            sig_name=LEADS,
            p_signal=sig.T,
            fmt=["16"] * 12,
            adc_gain=[200.0] * 12,
            baseline=[0] * 12,
            write_dir=str(ecg_root / rel),
        )
        signals[study] = wfdb.rdrecord(str(ecg_root / rel / study)).p_signal.T
        rec_rows.append([subject, study, study, f"2180-05-0{k + 1} 09:00:00", f"{rel}/{study}"])
    (ecg_root / "record_list.csv").write_text(
        "subject_id,study_id,file_name,ecg_time,path\n" + "".join(",".join(r) + "\n" for r in rec_rows)
    )
    (ecg_root / "machine_measurements.csv").write_text(
        "subject_id,study_id,cart_id,ecg_time,report_0\n"
        + "".join(f"{s},{st},6848296,2180-05-01 09:00:00,Sinus rhythm\n" for s, st in ECGS)
    )
    (ecg_root / "waveform_note_links.csv").write_text(
        "subject_id,study_id,waveform_path,note_id,note_seq,charttime\n"
    )
    (ecg_root / "LICENSE.txt").write_text("ODbL (test)\n")
    adm, dx = [], []
    for hadm, subject, admit, disch, death, codes in ADMISSIONS:
        adm.append([subject, hadm, admit, disch, death, "URGENT"])
        dx += [[subject, hadm, str(i + 1), code, version] for i, (version, code) in enumerate(codes)]
    _gz_csv(
        hosp_root / "hosp" / "admissions.csv.gz",
        ["subject_id", "hadm_id", "admittime", "dischtime", "deathtime", "admission_type"],
        adm,
    )
    _gz_csv(
        hosp_root / "hosp" / "patients.csv.gz",
        ["subject_id", "gender", "anchor_age"],
        [["10000032", "F", "52"], ["10000764", "M", "86"], ["10001217", "F", "55"]],
    )
    _gz_csv(
        hosp_root / "hosp" / "diagnoses_icd.csv.gz",
        ["subject_id", "hadm_id", "seq_num", "icd_code", "icd_version"],
        dx,
    )
    _gz_csv(
        hosp_root / "hosp" / "d_icd_diagnoses.csv.gz",
        ["icd_code", "icd_version", "long_title"],
        [["5723", "9", "Portal hypertension"], ["I10", "10", "Essential (primary) hypertension"]],
    )
    _gz_csv(hosp_root / "hosp" / "omr.csv.gz", ["subject_id"], [["10000032"]])  # not fetched
    _gz_csv(hosp_root / "icu" / "d_items.csv.gz", ["itemid", "label"], [["220045", "Heart Rate"]])
    (hosp_root / "LICENSE.txt").write_text("PhysioNet Credentialed Health Data License 1.5.0 (test)\n")
    _gz_csv(
        jpg_root / "mimic-cxr-2.0.0-split.csv.gz",
        ["dicom_id", "study_id", "subject_id", "split"],
        [[d, st, s, "train"] for s, st, d in CXRS],
    )
    _gz_csv(
        cxr_root / "cxr-study-list.csv.gz",
        ["subject_id", "study_id", "path"],
        [[s, st, f"files/p{s[:2]}/p{s}/s{st}.txt"] for s, st, _ in CXRS],
    )
    for root in (ecg_root, hosp_root, jpg_root, cxr_root):
        write_sha256sums(root)
    projects = [
        FakeProject("mimic-iv-ecg", "1.0", ecg_root, access="open", title="MIMIC-IV-ECG"),
        FakeProject("mimiciv", "3.1", hosp_root, access="credentialed", title="MIMIC-IV"),
        FakeProject("mimic-cxr-jpg", "2.0.0", jpg_root, access="credentialed", title="MIMIC-CXR-JPG"),
        FakeProject("mimic-cxr", "2.0.0", cxr_root, access="credentialed", title="MIMIC-CXR"),
    ]
    return projects, signals


def test_mimic_iv_ecg_filters_and_mimic_iv_admission_linking(tmp_path: Path, creds: None) -> None:
    from scipy.signal import butter, filtfilt

    projects, signals = _mimic_iv_projects(tmp_path, np.random.default_rng(21))
    with FakePhysioNet(projects, [_user("mimiciv", "mimic-cxr-jpg", "mimic-cxr")]) as pn:
        settings = fast_settings(tmp_path, {"physionet": pn.base_url})
        ecg_rows, _ = _run(_test_copy(tmp_path, "mimic_iv_ecg"), settings)
        rows, manifest = _run(_test_copy(tmp_path, "mimic_iv"), settings)
    # MIMIC-IV-ECG: CLIMB's processors (filtfilt order-3 HP 0.5 Hz, LP 45 Hz, per-lead z-score)
    assert [r["id"] for r in ecg_rows] == sorted(s for _, s in ECGS)
    bh, ah = butter(3, 0.5 / 250, btype="highpass")
    bl, al = butter(3, 45 / 250, btype="lowpass")
    for r in ecg_rows:
        x = filtfilt(bl, al, filtfilt(bh, ah, signals[r["id"]], axis=1), axis=1)
        x = (x - x.mean(axis=1, keepdims=True)) / x.std(axis=1, keepdims=True)
        got = np.asarray(r["signal"], dtype=np.float64).reshape(r["signal_shape"])
        np.testing.assert_allclose(got, x, atol=1e-4)
        assert r["split"] == "train" and r["subject_id"] == dict((b, a) for a, b in ECGS)[r["id"]]
    # MIMIC-IV: the two admissions of the patient with a CXR study and ECG records
    assert not (settings.raw_dir("mimic_iv") / "hosp" / "omr.csv.gz").exists()
    assert [r["id"] for r in rows] == ["22595853", "22841357"]
    first, second = rows
    assert (first["split"], second["split"]) == ("train", "test")  # sorted hadm_ids, first int(0.8 n)
    assert first["labels"] == ["ICD9:5723", "ICD9:78959"] and second["labels"] == ["ICD10:I10", "ICD9:5723"]
    assert (first["survived"], first["ihm_48"], second["survived"], second["ihm_48"]) == ("0", "0", "1", "1")
    assert float(first["length_of_stay"]) == pytest.approx((18 * 60 + 52) / 1440)
    for r in rows:
        assert json.loads(r["cxr_images"]) == ["files/p10/p10000032/s50414267/02aa804e-bde0afdd.jpg"]
        assert json.loads(r["ecg_records"]) == [
            "files/p1000/p10000032/s40689238/40689238",
            "files/p1000/p10000032/s41234567/41234567",
        ]
    assert manifest["classes"] == {"ICD10:I10": 1, "ICD9:5723": 2, "ICD9:78959": 1}
    assert sum(manifest["dropped"].values()) == 2, manifest["dropped"]  # no ECG; no diagnosis


# ------------------------------------------------------------------------------------------------
# CT-ICH 1.3.1: NIfTI scans + the per-slice diagnosis CSV; brain and bone windows per slice, patient split


def test_ct_ich_slices_with_brain_and_bone_windows_and_climbs_patient_split(
    tmp_path: Path, creds: None
) -> None:
    import SimpleITK as sitk
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(17)
    root = tmp_path / "mirror" / "ct-ich" / "1.3.1"
    (root / "ct_scans").mkdir(parents=True)
    patients = ["49", "50", "51", "52", "53", "58", "66"]
    lines, volumes, truth = (
        ["PatientNumber,SliceNumber,Intraventricular,No_Hemorrhage,Fracture_Yes_No"],
        {},
        {},
    )
    for k, patient in enumerate(patients):
        vol = rng.integers(-1024, 2500, (2 + k % 2, 6, 5)).astype(np.int16)  # (z, y, x)
        sitk.WriteImage(sitk.GetImageFromArray(vol), str(root / "ct_scans" / f"{int(patient):03d}.nii"))
        volumes[patient] = vol.astype(np.float64)
        for z in range(vol.shape[0]):
            none = "0" if (k + z) % 3 == 0 else "1"
            lines.append(f"{patient},{z + 1},{1 - int(none)},{none},0")
            truth[f"{patient}#{z}"] = "no_hemorrhage" if none == "1" else "hemorrhage"
    (root / "hemorrhage_diagnosis_raw_ct.csv").write_text("\n".join(lines) + "\n")
    (root / "Patient_demographics.csv").write_text("Patient Number,Gender\n49,Male\n")
    (root / "LICENSE.txt").write_text("test\n")
    _, [(rows, _)] = _serve_and_build(tmp_path, root, "ct-ich", "1.3.1", "restricted", "hemorrhage")
    train, test = train_test_split(np.array(patients), test_size=0.2, random_state=42)
    split_of = {**{p: "train" for p in train}, **{p: "test" for p in test}}
    assert sorted(r["id"] for r in rows) == sorted(truth)
    for r in rows:
        patient, z = r["id"].split("#")
        assert (r["split"], r["labels"]) == (split_of[patient], [truth[r["id"]]]), r["id"]
        hu = volumes[patient][int(z)]
        for array, (c, w) in {"brain": (40, 120), "bone": (700, 3200)}.items():
            lo = c - w / 2
            expected = np.floor((np.clip(hu, lo, lo + w) - lo) / w * 255)
            got = np.asarray(r[array], dtype=np.float64).reshape(r[f"{array}_shape"])
            np.testing.assert_array_equal(got, expected)
