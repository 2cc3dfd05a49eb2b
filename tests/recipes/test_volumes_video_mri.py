"""Issue 13's CT / video / MRI recipes: every one validates with its identity and notes, and the
COVID-US recipe runs end to end on a videos.zip behind the fake Google Drive (extracted, labels from
the file names, `other` dropped and counted, CLIMB's stratified train_test_split)."""

from __future__ import annotations

import io
import re
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.fakes.gdrive import DriveFile, FakeDrive
from tests.test_miniatures import _build

ROOT = Path(__file__).resolve().parents[2] / "recipes"
MINE = {
    "ct": ["rspect", "rsna_pe_window", "inspect", "kits23"],
    "ultrasound": ["echonet_dynamic", "covid_us", "covid_blues"],
    "mri": ["tcp", "abcd", "ppmi", "isles22"],
    "endoscopic": ["cholec80"],
}


@pytest.mark.parametrize("folder,name", [(f, n) for f, names in MINE.items() for n in names])
def test_recipe_validates_with_identity_and_notes(folder: str, name: str) -> None:
    recipe = Catalog([ROOT / folder]).load(name)
    assert recipe.name == name and recipe.modality == folder
    for field in ("title", "license", "citation", "homepage", "access", "raw_size", "notes"):
        assert getattr(recipe, field), f"{name}: no {field}"
    assert "CLIMB" in recipe.notes  # every one says what CLIMB does and what changed
    for src in recipe.sources:
        extra = src.model_dump()
        if src.kind == "github":
            assert re.fullmatch(r"[0-9a-f]{40}", extra["commit"])
        if src.kind == "kaggle":
            assert extra["competition"] == "rsna-str-pulmonary-embolism-detection"


def test_covid_blues_pins_every_file_of_the_commit() -> None:
    recipe = Catalog([ROOT / "ultrasound"]).load("covid_blues")
    files = recipe.sources[0].model_dump()["files"]
    videos = [f["path"] for f in files if f["path"].startswith("lus_videos/")]
    assert len(videos) == 362 and len(set(videos)) == 362  # the README's count
    assert len({int(v.split("_")[2]) for v in videos}) == 63  # patients
    assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) and f["size"] > 0 for f in files)


def _mp4(rng: np.random.Generator, tmp: Path, frames: int) -> bytes:
    path = tmp / "v.mp4"
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 24))
    assert out.isOpened()
    for _ in range(frames):
        out.write(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8))
    out.release()
    return path.read_bytes()


def test_covid_us_end_to_end_behind_the_fake_drive(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    names = []
    for i in range(20):
        source = ["butterfly", "pocusatlas", "litfl"][i % 3]
        label = ["covid", "pneumonia", "normal", "other"][i % 4]
        names.append(f"{i}_{source}_{label}")
    # ids with underscores: the source and label are the last two parts
    names += ["21_a_grepmed_covid", "22_b_grepmed_normal", "23_c_grepmed_pneumonia"]
    buf = io.BytesIO()
    frames = {}
    with zipfile.ZipFile(buf, "w") as z:
        for n in names:
            frames[n] = int(rng.integers(3, 6))
            z.writestr(f"videos/{n}.mp4", _mp4(rng, tmp_path, frames[n]))
    folder = tmp_path / "recipes"
    folder.mkdir()
    shutil.copy(ROOT / "ultrasound" / "covid_us.yaml", folder)
    recipe = Catalog([folder]).load("covid_us")
    with FakeDrive([DriveFile("16HCezNef_bIyyHOgHqovkOYytpd4uPBM", "videos.zip", buf.getvalue())]) as drive:
        settings = fast_settings(tmp_path, {"gdrive": drive.base_url})
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
        raw, _ = verify_raw(recipe, settings)
        assert raw.ok, raw.as_dict()
    assert sorted(p.name for p in (settings.raw_dir("covid_us") / "videos").iterdir()) == sorted(
        f"{n}.mp4" for n in names
    )
    rows, manifest = _build(recipe, settings)
    kept = [n for n in sorted(names) if not n.endswith("_other")]
    assert [r["id"] for r in rows] == sorted(kept)
    assert manifest["dropped"] == {"label 'other' is dropped by the recipe": 5}
    # CLIMB: train_test_split(items, test_size=0.25, random_state=42, stratify=source) over the listing
    sklearn = pytest.importorskip("sklearn.model_selection")
    sources = [n.split("_")[-2] for n in kept]
    _, test = sklearn.train_test_split(np.array(kept), test_size=0.25, random_state=42, stratify=sources)
    for r in rows:
        assert r["labels"] == [r["id"].rsplit("_", 1)[1]]
        assert r["source"] == r["id"].split("_")[-2]
        assert r["split"] == ("test" if r["id"] in set(test) else "train"), r["id"]
        assert r["video_shape"] == [frames[r["id"]], 24, 32, 3]


# ------------------------------------------------------------------------------------------------
# The packaged MRI recipes on miniature files in their real layout (placed by hand, as their manual
# sources say; TCP's OpenNeuro files written where the source puts them)


def _packaged(tmp_path: Path, folder: str, name: str, files: dict[str, bytes]):
    recipes = tmp_path / "recipes"
    recipes.mkdir(parents=True, exist_ok=True)
    for ext in ("yaml", "py"):
        if (ROOT / folder / f"{name}.{ext}").exists():
            shutil.copy(ROOT / folder / f"{name}.{ext}", recipes)
    settings = fast_settings(tmp_path)
    raw = settings.raw_dir(name)
    for rel, data in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data)
    return Catalog([recipes]).load(name), settings


def test_tcp_dass_bands_per_scale_and_bids_subject_folders(tmp_path: Path) -> None:
    from climb_cli.index import build_index

    scores = {  # subjectkey: (depression, anxiety, stress)
        "NDAR_INVAAA111": (9, 7, 14),  # all normal
        "NDAR_INVBBB222": (10, 8, 15),  # each at its mild threshold
        "NDAR_INVCCC333": (27, 19, 33),  # just under extremely severe
        "NDAR_INVDDD444": (28, 20, 34),  # extremely severe
        "NDAR_INVEEE555": (999, 12, 999),  # unknown depression and stress
    }
    csv = '"dass01","1"\nsubjectkey,src_subject_id,dass_depr_sc,dass_anx_sc,dass_stress_sc\n' + "".join(
        f"{k},{k[-3:]},{d},{a},{s}\n" for k, (d, a, s) in scores.items()
    )
    recipe, settings = _packaged(tmp_path, "mri", "tcp", {"phenotype/dass01.csv": csv.encode()})
    items = {i.id: i for i in build_index(recipe, settings).items}
    assert sorted(items) == sorted(k.replace("_", "") for k in scores)
    expect = {
        "NDARINVAAA111": {"No Depression", "No Anxiety", "No Stress"},
        "NDARINVBBB222": {"Mild Depression", "Mild Anxiety", "Mild Stress"},
        "NDARINVCCC333": {"Severe Depression", "Severe Anxiety", "Severe Stress"},
        "NDARINVDDD444": {
            "Extremely Severe Depression",
            "Extremely Severe Anxiety",
            "Extremely Severe Stress",
        },
        "NDARINVEEE555": {"Moderate Anxiety"},
    }
    for sid, item in items.items():
        assert set(item.labels) == expect[sid], sid
        assert item.inputs["t1w"] == f"sub-{sid}/anat/sub-{sid}_run-01_T1w.nii.gz"
        assert item.split in ("train", "test")


def test_abcd_matrices_by_subject_id_and_sex_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    stack = rng.standard_normal((5, 6, 6)).astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, stack)
    ids = ["NDARINV5", "NDARINV1", "NDARINV4", "NDARINV2", "NDARINV3"]
    sex = "id,sex\nNDARINV1,M\nNDARINV2,F\nNDARINV3,F\nNDARINV5,M\n"  # NDARINV4 has none
    files = {
        "abcd_rest-pearson-HCP2016.npy": buf.getvalue(),
        "ids_HCP2016.txt": ("\n".join(ids) + "\n").encode(),
        "id2sex.txt": sex.encode(),
    }
    recipe, settings = _packaged(tmp_path, "mri", "abcd", files)
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    rows, manifest = _build(recipe, settings)
    assert [r["id"] for r in rows] == ["NDARINV1", "NDARINV2", "NDARINV3", "NDARINV5"]
    assert sum(manifest["dropped"].values()) == 1  # NDARINV4: no sex, counted
    for r in rows:
        assert r["labels"] == [{"NDARINV1": "M", "NDARINV2": "F", "NDARINV3": "F", "NDARINV5": "M"}[r["id"]]]
        m = np.asarray(r["matrix"], dtype=np.float32).reshape(r["matrix_shape"])
        assert np.array_equal(m, stack[ids.index(r["id"])])


def test_ppmi_view_zero_and_minus_one_negative(tmp_path: Path) -> None:
    import scipy.io

    rng = np.random.default_rng(4)
    mats = [rng.standard_normal((5, 5, 3)) for _ in range(4)]
    cells = np.empty((4, 1), dtype=object)
    for i, m in enumerate(mats):
        cells[i, 0] = m
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": cells, "label": np.array([[1], [-1], [-1], [1]])})
    recipe, settings = _packaged(tmp_path, "mri", "ppmi", {"PPMI.mat": buf.getvalue()})
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    rows, _ = _build(recipe, settings)
    assert [r["id"] for r in rows] == ["0", "1", "2", "3"]
    for r in rows:
        i = int(r["id"])
        assert r["labels"] == [["Positive", "Negative", "Negative", "Positive"][i]]
        m = np.asarray(r["matrix"]).reshape(r["matrix_shape"])
        assert np.allclose(m, mats[i][:, :, 0])


def _climb_sample_intervals(data: dict, num_intervals: int) -> dict:
    """CLIMB's Cholec.sample_intervals, as written there (the oracle)."""
    sorted_data = dict(sorted(data.items()))
    timestamps = list(sorted_data.keys())
    values = [val[1] for val in list(sorted_data.values())]
    interval_size = len(timestamps) // num_intervals
    results = {}
    for i in range(num_intervals):
        start_idx = i * interval_size
        end_idx = (i + 1) * interval_size if i != num_intervals - 1 else len(timestamps)
        interval_values = [item for sublist in values[start_idx:end_idx] for item in sublist]
        results[(timestamps[start_idx], timestamps[end_idx - 1])] = set(interval_values)
    return results


def test_cholec80_sorted_listing_climbs_sample_and_90_intervals(tmp_path: Path) -> None:
    import json
    import random

    from climb_cli.index import build_index

    phases = ["Preparation", "CalotTriangleDissection", "ClippingCutting", "GallbladderDissection"]
    tools = ["Grasper", "Bipolar", "Hook", "Scissors", "Clipper", "Irrigator", "SpecimenBag"]
    rng = np.random.default_rng(8)
    files, truth = {}, {}
    for v in ["video03", "video01", "video06", "video02", "video05", "video04"]:
        n = int(rng.integers(2300, 2600))  # annotation rows at 25 fps (tools at 1 fps: >= 90 of them)
        cuts = sorted(rng.choice(np.arange(1, n), 3, replace=False))
        ph = [phases[int(np.searchsorted(cuts, i, side="right"))] for i in range(n)]
        if v in ("video01", "video04"):  # numeric stamps: CLIMB's pandas sorts them as numbers
            stamps = [str(i) for i in range(n)]
        else:
            stamps = [f"00:{i // 60:02d}:{i % 60:02d}.{i % 25:02d}" for i in range(n)]
        files[f"phase_annotations/{v}-phase.txt"] = (
            "Frame\tPhase\n" + "".join(f"{i}\t{p}\n" for i, p in enumerate(ph))
        ).encode()
        tool_rows = {i: rng.integers(0, 2, 7) for i in range(0, n, 25)}
        files[f"tool_annotations/{v}-tool.txt"] = (
            "Frame\t"
            + "\t".join(tools)
            + "\n"
            + "".join(f"{i}\t" + "\t".join(map(str, t)) + "\n" for i, t in tool_rows.items())
        ).encode()
        files[f"videos/{v}-timestamp.txt"] = ("Frame\n" + "".join(f"{s}\n" for s in stamps)).encode()
        key = (lambda s: int(s)) if stamps[0].isdigit() else (lambda s: s)  # noqa: E731
        truth[v] = (
            {key(stamps[i]): [i, [ph[i]]] for i in range(n)},
            {
                key(stamps[i]): [i, [t for t, x in zip(tools, tool_rows[i], strict=True) if x == 1]]
                for i in tool_rows
            },
        )
    recipe, settings = _packaged(tmp_path, "endoscopic", "cholec80", files)
    items = {i.id: i for i in build_index(recipe, settings).items}
    names = sorted(truth)
    random.seed(0)
    train = set(random.sample(names, int(0.8 * len(names))))  # CLIMB's call, on the sorted list
    assert sorted(items) == names
    for v, item in items.items():
        assert item.split == ("train" if v in train else "valid")
        for column, oracle in (("phase_intervals", truth[v][0]), ("tool_intervals", truth[v][1])):
            got = json.loads(item.extra[column])
            want = _climb_sample_intervals(oracle, 90)
            assert [(g["start"], g["end"]) for g in got] == [(str(a), str(b)) for a, b in want], (v, column)
            assert [set(g["labels"]) for g in got] == list(want.values()), (v, column)
        assert item.inputs["video"] == f"videos/{v}.mp4"


def test_kits23_json_from_the_pinned_commit_and_climbs_first_75_percent(tmp_path: Path) -> None:
    import json

    import SimpleITK as sitk

    from tests.fakes.github import FakeGitHub, FakeRepo

    commit = "e2822085ffddefb73652ebf78802e6134ebe0566"
    cases = [
        {"case_id": f"case_{i:05d}", "malignant": i % 3 != 1, "gender": "male", "age_at_nephrectomy": 40 + i,
         "tumor_histologic_subtype": "clear_cell_rcc"}
        for i in range(8)
    ]  # fmt: skip
    cases[2].pop("malignant")  # no label: skipped, but still counted in CLIMB's 75 % cut
    cases[5]["malignant"] = None
    kits_json = json.dumps(cases, indent=4).encode()
    rng = np.random.default_rng(9)
    images = {}
    for c in cases:
        vol = rng.integers(-1000, 1500, (4, 6, 5)).astype(np.int16)  # (x, y, z) as nibabel's array axis 0
        img = sitk.GetImageFromArray(np.ascontiguousarray(vol.transpose(2, 1, 0)))  # ITK (z, y, x) order
        path = tmp_path / "gen" / f"{c['case_id']}.nii.gz"
        path.parent.mkdir(exist_ok=True)
        sitk.WriteImage(img, str(path))
        images[f"images/{c['case_id']}/imaging.nii.gz"] = path.read_bytes()
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    text = (ROOT / "ct" / "kits23.yaml").read_text().replace("count: 489", f"count: {len(cases)}")
    (recipes / "kits23.yaml").write_text(text)
    repo = FakeRepo(
        "neheller", "kits23", {commit: {"dataset/kits23.json": kits_json, "README.md": b"# KiTS23\n"}}
    )
    with FakeGitHub([repo]) as gh:
        settings = fast_settings(tmp_path, {"github": gh.api.base_url, "github-raw": gh.raw.base_url})
        raw = settings.raw_dir("kits23")
        for rel, data in images.items():
            (raw / rel).parent.mkdir(parents=True, exist_ok=True)
            (raw / rel).write_bytes(data)
        recipe = Catalog([recipes]).load("kits23")
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
        assert verify_raw(recipe, settings)[0].ok
    assert (raw / "dataset" / "kits23.json").read_bytes() == kits_json
    rows, manifest = _build(recipe, settings)
    train = {c["case_id"] for c in cases[: int(0.75 * len(cases))]}  # CLIMB: metadata[:int(0.75 n)]
    labelled = [c for c in cases if c.get("malignant") is not None]
    assert [r["id"] for r in rows] == [c["case_id"] for c in labelled]
    assert sum(manifest["dropped"].values()) == 2
    for r in rows:
        c = next(c for c in cases if c["case_id"] == r["id"])
        assert r["labels"] == ["Malignant" if c["malignant"] else "Benign"]
        assert r["split"] == ("train" if r["id"] in train else "test"), r["id"]
        assert r["video_shape"][0] == 4  # CLIMB's frames: nibabel's array axis 0 (x here)


def test_echonet_val_is_val_ef_regression_and_frames(tmp_path: Path) -> None:
    rng = np.random.default_rng(12)
    names = [f"0X{i:016X}" for i in range(6)]
    splits = ["TRAIN", "VAL", "TEST", "TRAIN", "VAL", "TRAIN"]
    head = "FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split\n"
    table = head + "".join(
        f"{n},{50 + i * 2.5},{30 + i},{70 + i},16,16,50,4,{s}\n"
        for i, (n, s) in enumerate(zip(names, splits, strict=True))
    )
    files = {"FileList.csv": table.encode(), "VolumeTracings.csv": b"FileName,X1,Y1,X2,Y2,Frame\n"}
    for n in names:
        path = tmp_path / "v.avi"
        out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50, (16, 16))
        for _ in range(4):
            out.write(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8))
        out.release()
        files[f"Videos/{n}.avi"] = path.read_bytes()
    text = (ROOT / "ultrasound" / "echonet_dynamic.yaml").read_text().replace("count: 10030", "count: 6")
    text = text.replace(
        "  splits: {train: 7465, val: 1288, test: 1277}\n", ""
    )  # a miniature: not the published counts
    text = text.replace("expect:\n", "")
    recipe, settings = _packaged(tmp_path, "ultrasound", "echonet_dynamic", files)
    (tmp_path / "recipes" / "echonet_dynamic.yaml").write_text(text)
    recipe = Catalog([tmp_path / "recipes"]).load("echonet_dynamic")
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    rows, _ = _build(recipe, settings)
    assert [r["id"] for r in rows] == sorted(names)
    for r in rows:
        i = names.index(r["id"])
        assert r["split"] == {"TRAIN": "train", "VAL": "val", "TEST": "test"}[splits[i]]
        assert r["target"] == pytest.approx(50 + i * 2.5)
        assert r["video_shape"] == [4, 16, 16, 3]


def test_covid_blues_and_inspect_index_on_their_real_columns(tmp_path: Path) -> None:
    from climb_cli.index import build_index

    patients = [1, 2, 3, 4, 10, 11, 12, 20]
    cov = {p: str(p % 2) for p in patients}
    files = {
        "clinical_variables.csv": (
            "patient_id,cov_test,number_video_files,pat_age\n"
            + "".join(f"{p},{cov[p]},2,{50 + p}.0\n" for p in patients)
        ).encode()
    }
    for p in patients:
        for point in ("L1", "R2"):
            files[f"lus_videos/patient_{p}_{point}.mp4"] = b"\0"
    files["lus_videos/patient_3_L1_2.mp4"] = b"\0"  # a second recording of one point
    recipe, settings = _packaged(tmp_path / "blues", "ultrasound", "covid_blues", files)
    items = build_index(recipe, settings).items
    train_patients = set(sorted(patients)[: int(0.75 * len(patients))])  # 1 2 3 4 10 11 | 12 20
    assert len(items) == 17
    for it in items:
        p = int(it.id.split("_")[1])
        assert it.labels == (("Has COVID",) if cov[p] == "1" else ("No COVID",))
        assert it.split == ("train" if p in train_patients else "test"), it.id
    rows = [
        ("a1", "0", "0", "0", "No PE"),
        ("a2", "1", "1", "1", "Acute Subsegmental-only PE"),
        ("a3", "1", "1", "0", "Acute PE"),
        ("a4", "1", "0", "1", "Subsegmental-only PE"),
        ("a5", "1", "0", "0", "Chronic PE"),
        ("a6", "0.0", "1.0", "1.0", "No PE"),
        ("a7", "1.0", "1.0", "0.0", "Acute PE"),
        ("a8", "1", "0", "0", "Chronic PE"),
    ]
    csv = "impression_id,pe_positive,pe_acute,pe_subsegmentalonly\n" + "".join(
        ",".join(r[:4]) + "\n" for r in rows
    )
    recipe, settings = _packaged(
        tmp_path / "inspect", "ct", "inspect", {"Final_Impressions_labels.csv": csv.encode()}
    )
    items = {i.id: i for i in build_index(recipe, settings).items}
    for k, (iid, *_, label) in enumerate(rows):
        assert items[iid].labels == (label,)
        assert items[iid].split == (
            "train" if k < int(0.75 * len(rows)) else "test"
        )  # CLIMB: iloc[:int(0.75 n)]
        assert items[iid].inputs["volume"] == f"CTPA/{iid}.nii.gz"


def test_isles22_three_sequences_per_bids_case(tmp_path: Path) -> None:
    import SimpleITK as sitk

    rng = np.random.default_rng(21)
    files, truth = {}, {}
    for sub in ("sub-strokecase0002", "sub-strokecase0001"):
        for rel, shape in (
            (f"{sub}/ses-0001/dwi/{sub}_ses-0001_dwi.nii.gz", (3, 4, 5)),
            (f"{sub}/ses-0001/dwi/{sub}_ses-0001_adc.nii.gz", (3, 4, 5)),
            (f"{sub}/ses-0001/anat/{sub}_ses-0001_FLAIR.nii.gz", (6, 7, 8)),
        ):
            arr = rng.integers(0, 3000, shape).astype(np.int16)
            path = tmp_path / "gen.nii.gz"
            sitk.WriteImage(sitk.GetImageFromArray(arr), str(path))
            files[rel] = path.read_bytes()
            truth[(sub, rel.rsplit("_", 1)[1].split(".")[0].lower())] = arr
    files["participants.tsv"] = b"participant_id\n"
    recipe, settings = _packaged(tmp_path, "mri", "isles22", files)
    text = (ROOT / "mri" / "isles22.yaml").read_text().replace("count: 250", "count: 2")
    (tmp_path / "recipes" / "isles22.yaml").write_text(text)
    recipe = Catalog([tmp_path / "recipes"]).load("isles22")
    assert download(recipe, settings).ok
    rows, _ = _build(recipe, settings)
    assert [r["id"] for r in rows] == ["sub-strokecase0001", "sub-strokecase0002"]
    for r in rows:
        assert r["split"] == "train" and r["labels"] == []
        for seq in ("dwi", "adc", "flair"):
            want = truth[(r["id"], seq)]
            assert np.array_equal(np.asarray(r[seq]).reshape(r[f"{seq}_shape"]), want), (r["id"], seq)
