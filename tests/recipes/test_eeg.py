"""EEG recipes end to end on miniatures in the real layouts: SHHS behind the fake NSRR (EDF + profusion
XML), ISRUC as .rar archives over HTTP; every row checked for its stage, epoch and split."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from climb_cli.catalog import Catalog
from tests import rar4
from tests.conftest import fast_settings
from tests.fakes.bucket import FakeBucket
from tests.fakes.nsrr import FakeNsrr, NsrrDataset
from tests.recipes.conftest import build, packaged, rewritten
from tests.steps.test_eeg import write_edf

NSRR_TOKEN = "nsrr-tok-Rezrov-51c2-secret"
STAGE = {"0": "W", "1": "N1", "2": "N2", "3": "N3", "4": "N3", "5": "R"}  # 6, 9: unscored -> dropped


@pytest.fixture
def store() -> Iterator[FakeBucket]:
    with FakeBucket() as s:
        yield s


def _profusion(codes: list[str]) -> bytes:
    stages = "".join(f"<SleepStage>{c}</SleepStage>" for c in codes)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<CMPStudyConfig><EpochLength>30</EpochLength>'
        f"<ScoredEvents></ScoredEvents><SleepStages>{stages}</SleepStages></CMPStudyConfig>\n"
    ).encode()


def test_shhs_behind_the_fake_nsrr(
    tmp_path: Path, store: FakeBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(5)
    files, truth = {}, {}
    for pid, codes in {"200001": ["0", "1", "4", "9", "5"], "200002": ["2", "3", "5", "6"]}.items():
        n = len(codes)
        c3, c4 = rng.normal(0, 30, (2, n * 30 * 125))
        sao2 = rng.uniform(90, 99, n * 30)
        edf = write_edf(
            tmp_path / f"{pid}.edf",
            [
                ("SaO2", 1, sao2),
                ("EEG(sec)", 125, c3),
                ("EOG(L)", 50, rng.normal(0, 5, n * 30 * 50)),
                ("EEG", 125, c4),
            ],
        )
        files[f"polysomnography/edfs/shhs1/shhs1-{pid}.edf"] = edf.read_bytes()
        files[f"polysomnography/annotations-events-profusion/shhs1/shhs1-{pid}-profusion.xml"] = _profusion(
            codes
        )
        truth[pid] = codes
    open_files = {"datasets/shhs1-dataset-0.21.0.csv": b"nsrrid\n200001\n200002\n"}  # not included
    monkeypatch.setenv("NSRR_TOKEN", NSRR_TOKEN)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    ds = NsrrDataset("shhs", open_files, files)
    with FakeNsrr([ds], store, users={NSRR_TOKEN: "ada"}, grants={"ada": {"shhs"}}) as nsrr:
        settings = fast_settings(tmp_path, {"nsrr": nsrr.api})
        recipe = Catalog().load("shhs")
        rows, manifest = build(recipe, settings)
    raw = settings.raw_dir("shhs")
    assert not (raw / "datasets").exists()  # only the include lists' folders
    by_id = {r["id"]: r for r in rows}
    want = {}
    for pid, codes in truth.items():
        for n, c in enumerate(codes):
            if c in STAGE:
                want[f"{pid}#{len([x for x in codes[:n] if x in STAGE])}"] = (STAGE[c], 30.0 * n)
    assert set(by_id) == set(want)
    for rid, (stage, onset) in want.items():
        r = by_id[rid]
        assert r["labels"] == [stage] and r["epoch_onsets"] == onset, rid
        assert r["epochs_shape"] == [2, 3750]
        x = np.asarray(r["epochs"], dtype=np.float32).reshape(2, 3750)
        assert 0.0 < float(x.mean()) < 1.0  # +-125 uV -> [0, 1]
    # the stage-4 epoch is N3, not R (CLIMB's collision), and unscored epochs are dropped
    assert by_id["200001#2"]["labels"] == ["N3"]
    assert {r["split"] for r in rows} <= {"train", "val"}
    for pid in truth:
        assert len({r["split"] for r in rows if r["id"].startswith(pid)}) == 1
    assert sum(manifest["classes"].values()) == len(rows) == 7


def test_isruc_from_rar_archives(tmp_path: Path, store: FakeBucket) -> None:
    rng = np.random.default_rng(7)
    data = packaged("isruc")
    files, truth = [], {}
    for pid, codes in {1: ["0", "1", "2", "3", "5"], 2: ["5", "2", "2"], 8: ["0", "0"]}.items():
        n = len(codes)
        x = rng.normal(0, 20, (3, n * 30 * 200))
        edf = write_edf(
            tmp_path / f"{pid}.edf", [("F3-A2", 200, x[0]), ("C3-A2", 200, x[1]), ("C4-A1", 200, x[2])]
        )
        members = [
            rar4.member(f"{pid}/{pid}.rec", edf.read_bytes()),
            rar4.member(f"{pid}/{pid}_1.txt", ("\n".join(codes) + "\n").encode()),
            rar4.member(f"{pid}/{pid}_2.txt", ("\n".join("0" for _ in codes) + "\n").encode()),
        ]
        store.put("isr", f"ISRUC_Sleep/subgroupI/{pid}.rar", rar4.archive(members))
        files.append({"url": store.url("isr", f"ISRUC_Sleep/subgroupI/{pid}.rar"), "path": f"{pid}.rar"})
        truth[str(pid)] = codes
    listed = [f["url"] for f in data["sources"][0]["files"]]
    assert listed[0] == "http://dataset.isr.uc.pt/ISRUC_Sleep/subgroupI/1.rar" and len(listed) == 100
    data["sources"][0]["files"] = files
    recipe = rewritten(tmp_path, data)
    settings = fast_settings(tmp_path)
    rows, manifest = build(recipe, settings)
    raw = settings.raw_dir("isruc")
    assert not list(raw.glob("*.rar"))  # keep_archive: false, extracted
    assert (raw / "1" / "1_2.txt").is_file()
    assert manifest["dropped"] == {"excluded by pid": 1}  # subject 8
    assert {r["id"].split("#")[0] for r in rows} == {"1", "2"}
    for r in rows:
        pid, n = r["id"].split("#")
        assert r["labels"] == [STAGE[truth[pid][int(n)]]] and r["epoch_onsets"] == 30.0 * int(n)
        assert r["epochs_shape"] == [2, 3750]  # C3, C4 at 125 Hz
    assert len(rows) == 8 and sum(manifest["classes"].values()) == 8


def test_auditory_oddball_openneuro_snapshot(
    tmp_path: Path, store: FakeBucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.fakes.openneuro import FakeOpenNeuro, OpenNeuroDataset
    from tests.steps.test_eeglab import write_set

    monkeypatch.delenv("OPENNEURO_API_KEY", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    rng = np.random.default_rng(8)
    files: dict[str, bytes] = {
        "participants.tsv": b"participant_id\nsub-001\nsub-002\n",
        "dataset_description.json": b'{"Name": "auditory oddball"}\n',
        "README": b"not included\n",
    }
    truth = {}
    for sub, fdt in (("001", True), ("002", False)):
        stem = f"sub-{sub}_task-P300_run-1"
        x = rng.normal(0, 10, (4, 5 * 512))
        folder = tmp_path / sub
        folder.mkdir()
        write_set(folder / f"{stem}_eeg.set", x, 512.0, ["Fz", "Cz", "Pz", "Oz"], [], fdt)
        events = [(0.5, "2", "standard"), (1.5, "8", "oddball_with_reponse"), (2.5, "1", "noise"),
                  (3.5, "2", "standard"), (4.95, "2", "standard")]  # fmt: skip  # the last runs past the end
        tsv = "onset\tduration\tvalue\ttrial_type\n" + "".join(f"{o}\t0\t{v}\t{t}\n" for o, v, t in events)
        for p in folder.iterdir():
            files[f"sub-{sub}/eeg/{p.name}"] = p.read_bytes()
        files[f"sub-{sub}/eeg/{stem}_events.tsv"] = tsv.encode()
        truth[stem] = [("standard", 0.5), ("oddball", 1.5), ("standard", 3.5)]
    with FakeOpenNeuro([OpenNeuroDataset("ds003061", {"1.1.2": files})], store) as on:
        settings = fast_settings(tmp_path, {"openneuro": on.base_url})
        rows, manifest = build(Catalog().load("auditory_oddball"), settings)
    assert not (settings.raw_dir("auditory_oddball") / "README").exists()  # not in the include list
    want = {f"{stem}#{n}": ev for stem, evs in truth.items() for n, ev in enumerate(evs)}
    assert {r["id"]: (r["labels"][0], r["epoch_onsets"]) for r in rows} == want
    for r in rows:
        assert r["epochs_shape"] == [4, 225] and r["sampling_rate"] == 250.0  # -0.1 .. 0.796 s at 250 Hz
        x = np.asarray(r["epochs"]).reshape(4, 225)
        np.testing.assert_allclose(x.mean(axis=0), 0, atol=1e-3)  # average reference
        np.testing.assert_allclose(x[:, :26].mean(axis=1), 0, atol=1e-3)  # baseline -0.1 .. 0 s
    assert manifest["classes"] == {"standard": 4, "oddball": 2}
    assert len({r["split"] for r in rows if r["subject"] == "001"}) == 1


def test_bciciv2a_bnci_mat_files(tmp_path: Path, store: FakeBucket) -> None:
    from tests.steps.test_bnci import write_bnci

    rng = np.random.default_rng(6)
    data = packaged("bciciv2a")
    assert len(data["sources"][0]["files"]) == 18
    files, truth = [], {}
    for rec, cues in (("A01T", [(501, 1, 0), (1701, 2, 1), (2901, 4, 0)]), ("A01E", [(301, 3, 0)])):
        trial, y, art = ([c[i] for c in cues] for i in range(3))
        runs = [(rng.normal(0, 5, (400, 25)), [], [], []), (rng.normal(0, 5, (4000, 25)), trial, y, art)]
        path = write_bnci(tmp_path / f"{rec}.mat", runs)
        store.put("bnci", f"database/data-sets/001-2014/{rec}.mat", path.read_bytes())
        files.append(
            {"url": store.url("bnci", f"database/data-sets/001-2014/{rec}.mat"), "path": f"{rec}.mat"}
        )
        truth[rec] = [c for c in cues if not c[2]]
    data["sources"][0]["files"] = files
    rows, manifest = build(rewritten(tmp_path, data), fast_settings(tmp_path))
    classes = ["left_hand", "right_hand", "feet", "tongue"]
    want = {
        f"{rec}#{n}": (
            classes[c[1] - 1],
            (c[0] - 1) / 250,  # the EOG-only run is not read
            "train" if rec.endswith("T") else "test",
        )
        for rec, cues in truth.items()
        for n, c in enumerate(cues)
    }
    assert {r["id"]: (r["labels"][0], r["epoch_onsets"], r["split"]) for r in rows} == want
    assert all(r["epochs_shape"] == [22, 1000] for r in rows)  # 0 .. 3.996 s at 250 Hz, EEG only
    assert {r["id"].split("#")[0]: r["artifact_trials"] for r in rows} == {"A01T": 1, "A01E": 0}
    assert manifest["splits"] == {"train": 2, "test": 1}


def test_faced_placed_by_hand(tmp_path: Path) -> None:
    import pickle

    rng = np.random.default_rng(10)
    settings = fast_settings(tmp_path)
    data = packaged("faced")
    data["sources"][0]["globs"][0]["count"] = 2  # two subjects placed, not 123
    raw = settings.raw_dir("faced")
    (raw / "Processed_data").mkdir(parents=True)
    (raw / "Recording_info.csv").write_text("sub,Age\nsub000,22\nsub001,23\n")
    for s in ("sub000", "sub001"):
        (raw / "Processed_data" / f"{s}.pkl").write_bytes(pickle.dumps(rng.normal(0, 1, (28, 2, 500))))
    rows, manifest = build(rewritten(tmp_path, data), settings)
    assert len(rows) == 2 * 24 * 2 and manifest["classes"]["Anger"] == 2 * 3 * 2
    by_id = {r["id"]: r for r in rows}
    r = by_id["sub001#24"]  # the 25th window: video 16 (the first after the neutral ones), second 0
    assert r["labels"] == ["Amusement"] and r["epoch_videos"] == 16
    assert r["epoch_onsets"] == 0.0 and r["epochs_shape"] == [2, 250]
    assert len({r["split"] for r in rows if r["id"].startswith("sub001")}) == 1
