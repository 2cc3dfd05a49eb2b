"""RSPECT and RSNA PE windows end to end: pydicom-written CT series in the competition's layout
(train/<study>/<series>/<sop>.dcm, train.csv with its columns) behind the fake Kaggle, through
download -> verify -> preprocess -> verify --outputs with the packaged recipes; every row checked."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.fakes.kaggle import FakeKaggle, KaggleCompetition, KaggleUser
from tests.test_miniatures import KAGGLE_TOKEN, _build

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "ct"
COLUMNS = (
    "StudyInstanceUID,SeriesInstanceUID,SOPInstanceUID,pe_present_on_image,negative_exam_for_pe,qa_motion,"
    "qa_contrast,flow_artifact,rv_lv_ratio_gte_1,rv_lv_ratio_lt_1,leftsided_pe,chronic_pe,true_filling_defect_not_pe,"
    "rightsided_pe,acute_and_chronic_pe,central_pe,indeterminate"
)


def _slice(study: str, series: str, sop: str, z: float, hu: int) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = sop
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sop
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.Modality = study, series, "CT"
    ds.ImagePositionPatient = [-8.0, -8.0, z]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing, ds.SliceThickness = [1.0, 1.0], 2.5
    ds.Rows = ds.Columns = 16
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleSlope, ds.RescaleIntercept = 1, -1024
    ds.PixelData = np.full((16, 16), hu + 1024, dtype=np.int16).tobytes()
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


# (slices, slices with PE on the image (by z position, 0 = lowest), chronic study?)
SERIES = [(50, range(5, 9), False), (37, range(20, 23), True), (61, range(30, 45), True), (40, (), False)]


@pytest.fixture
def competition() -> tuple[dict[str, bytes], list[dict]]:
    rng = np.random.default_rng(13)
    files: dict[str, bytes] = {}
    truth, lines = [], [COLUMNS]
    for n, pe, chronic in SERIES:
        study, series = generate_uid(), generate_uid()
        sops = [generate_uid() for _ in range(n)]
        descending = len(truth) % 2 == 1  # half the series have z decreasing with instance order
        for k in rng.permutation(n):  # the table lists slices in no particular order
            z = 2.5 * ((n - 1 - k) if descending else k) - 100.0
            zi = int(round((z + 100.0) / 2.5))  # the slice's place along z
            files[f"train/{study}/{series}/{sops[k]}.dcm"] = _slice(study, series, sops[k], z, 10 * zi - 100)
            flag = int(zi in pe)
            lines.append(
                f"{study},{series},{sops[k]},{flag},0,0,0,0,0,0,0,{int(chronic)},0,0,0,{int(chronic)},0"
            )
        flags = [int(z in pe) for z in range(n)]
        truth.append({"study": study, "series": series, "n": n, "flags": flags, "chronic": chronic})
    files["train.csv"] = ("\n".join(lines) + "\n").encode()
    files["test.csv"] = (COLUMNS.split(",pe_present")[0] + "\n").encode()
    files["test/x/y/z.dcm"] = b"not in the recipe's include"
    files["sample_submission.csv"] = b"id,label\n"
    return files, truth


def _run(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, bytes]):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    for ext in ("yaml", "py"):
        shutil.copy(RECIPES / f"{name}.{ext}", folder / f"{name}.{ext}")
    comp = KaggleCompetition("rsna-str-pulmonary-embolism-detection", files, accepted={"alice"})
    with FakeKaggle(competitions=[comp], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = fast_settings(tmp_path).with_(mirrors={"kaggle": kaggle.base_url})
        recipe = Catalog([folder]).load(name)
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
        raw, _ = verify_raw(recipe, settings)
        assert raw.ok, raw.as_dict()
    got = sorted(
        p.relative_to(settings.raw_dir(name)).as_posix()
        for p in settings.raw_dir(name).rglob("*")
        if p.is_file() and ".climb" not in p.parts
    )
    assert got == sorted(k for k in files if k == "train.csv" or k.startswith("train/"))
    rows, manifest = _build(recipe, settings)
    return rows, manifest, settings.processed_dir(name)


def _video(out_dir: Path, row_id: str) -> np.ndarray:
    """One row's `video` from the NPZ shards (flat with offsets: the series differ in length)."""
    for shard in sorted(out_dir.glob("*/data/*.npz")):
        with np.load(shard, allow_pickle=False) as z:
            ids = [str(i) for i in z["id"]]
            if row_id in ids:
                i = ids.index(row_id)
                if "video_offsets" not in z.files:  # one shape in the shard: stacked
                    return z["video"][i]
                flat = z["video"][z["video_offsets"][i] : z["video_offsets"][i + 1]]
                return flat.reshape(z["video_shape"][i])
    raise AssertionError(row_id)


def _slice_class(flag: int, chronic: bool) -> str:
    return "No PE" if not flag else ("Chronic PE" if chronic else "Acute PE")


def test_rspect_one_row_per_series_with_slice_labels_in_volume_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, competition
) -> None:
    files, truth = competition
    rows, manifest, out = _run("rspect", tmp_path, monkeypatch, files)
    assert [r["id"] for r in rows] == sorted(t["series"] for t in truth)
    for t in truth:
        (r,) = [r for r in rows if r["id"] == t["series"]]
        classes = [_slice_class(f, t["chronic"]) for f in t["flags"]]
        assert json.loads(r["slice_labels"]) == classes
        series_class = max(classes, key=["No PE", "Chronic PE", "Acute PE"].index)
        assert r["labels"] == [series_class]
        assert r["StudyInstanceUID"] == t["study"]
        video = _video(out, r["id"])
        assert video.shape == (t["n"], 16, 16) and video.dtype == np.uint8
        # frames in z order: a constant slice of HU 10 z - 100 windowed at 80 / 700 (-270 .. 430)
        means = video.reshape(t["n"], -1).mean(axis=1)
        assert np.all(np.diff(means) >= 0) and means[-1] > means[0]
        assert r["split"] in ("train", "test")
    assert manifest["climb_tensor"]["transform"] == "none"


def test_rsna_pe_windows_labels_from_slices_split_by_study(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, competition
) -> None:
    files, truth = competition
    rows, manifest, _ = _run("rsna_pe_window", tmp_path, monkeypatch, files)
    expected = {}
    for t in truth:
        for w in range((t["n"] - 24) // 12):
            pe = sum(t["flags"][12 * w : 12 * w + 24]) >= 4
            expected[f"{t['series']}#{w}"] = (t, w, "PE" if pe else "No PE")
    assert sorted(r["id"] for r in rows) == sorted(expected)
    # the chronic study with central_pe on every slice: CLIMB would call all its windows PE
    assert {expected[k][2] for k in expected if k.startswith(truth[2]["series"])} == {"PE", "No PE"}
    splits: dict[str, set[str]] = {}
    for r in rows:
        t, w, label = expected[r["id"]]
        assert r["labels"] == [label], r["id"]
        win = np.asarray(r["windows"], dtype=np.float32).reshape(r["windows_shape"])
        assert win.shape == (24, 256, 256)
        # slice z has HU 10 z - 100; window 400 / 1000 maps it to (HU + 100) / 1000 = z / 100
        assert np.allclose(win[:, 0, 0], (12 * w + np.arange(24)) / 100, atol=1e-6)
        splits.setdefault(t["study"], set()).add(r["split"])
    assert all(len(s) == 1 for s in splits.values())
    assert {s for v in splits.values() for s in v} <= {"train", "valid", "test"}


@pytest.mark.parametrize("name", ["rspect", "rsna_pe_window"])
def test_a_series_with_a_missing_slice_is_an_item_error_not_a_silent_loss(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, competition
) -> None:
    from climb_cli.pipeline import preprocess

    files, truth = competition
    series = truth[0]["series"]
    middle = next(
        k
        for k, v in files.items()
        if f"/{series}/" in k
        and float(pydicom.dcmread(io.BytesIO(v)).ImagePositionPatient[2]) == 2.5 * 20 - 100.0
    )
    del files[middle]  # train.csv still lists it: an incomplete download or a lost file
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("KAGGLE_CONFIG_DIR", str(tmp_path / "no-kaggle"))
    monkeypatch.setenv("KAGGLE_API_TOKEN", KAGGLE_TOKEN)
    folder = tmp_path / "recipes"
    folder.mkdir()
    for ext in ("yaml", "py"):
        shutil.copy(RECIPES / f"{name}.{ext}", folder / f"{name}.{ext}")
    comp = KaggleCompetition("rsna-str-pulmonary-embolism-detection", files, accepted={"alice"})
    with FakeKaggle(competitions=[comp], users=[KaggleUser("alice", tokens={KAGGLE_TOKEN})]) as kaggle:
        settings = fast_settings(tmp_path).with_(mirrors={"kaggle": kaggle.base_url})
        recipe = Catalog([folder]).load(name)
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
    report = preprocess(recipe, settings, workers=1)
    errors = [e for u in report.units for e in u.errors]
    assert [(e[0], "uneven slice spacing" in e[2]) for e in errors] == [(series, True)], errors
    assert report.rows > 0  # the other series are written
