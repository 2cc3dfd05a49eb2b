"""HuGaDB: the recipe's pinned LFS object identity, and its index and steps on a miniature of the archive
(HGD_v1_<activity>_<participant>_<counter>.txt files, 4 metadata lines + a 39-column table)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from tests.conftest import fast_settings
from tests.fakes.bucket import FakeBucket
from tests.recipes.conftest import build, packaged, rewritten
from tests.sources.test_manual import _zip

COLUMNS = [
    f"{s}_{k}_{a}" for s in ("RF", "RS", "RT", "LF", "LS", "LT") for k in ("acc", "gyro") for a in "xyz"
]
COLUMNS += ["EMG_r", "EMG_l", "act"]


def _file(rng: np.random.Generator, acts: list[int]) -> bytes:
    head = "#Activity\twalking\tstanding\n#ActivityID\t1\t8\n#Date\t10-19-15-11\n"
    body = "\t".join(COLUMNS) + "\n"
    for a in acts:
        body += "\t".join(str(v) for v in rng.integers(-300, 300, 38)) + f"\t{a}\n"
    return (head + body).encode()


def test_hugadb_pins_the_lfs_object_not_its_pointer() -> None:
    src = packaged("hugadb")["sources"][0]
    assert src["kind"] == "github" and src["repo"] == "romanchereshnev/HuGaDB"
    (f,) = src["files"]
    assert f["path"] == "HumanGaitDataBase.zip" and f["size"] == 162827155 > 1024  # not a pointer's size


def test_hugadb_index_and_steps_on_a_miniature(tmp_path: Path) -> None:
    rng = np.random.default_rng(9)
    acts = {"HGD_v1_walking_01_00.txt": [1, 1, 8], "HGD_v1_sitting_in_car_17_02.txt": [12, 12]}
    archive = _zip({f"Data/{k}": _file(rng, v) for k, v in acts.items()})
    data = packaged("hugadb")
    with FakeBucket() as store:
        store.put("gh", "HumanGaitDataBase.zip", archive)
        data["sources"] = [
            {
                "id": "data",
                "kind": "http",
                "extract": True,
                "files": [{"url": store.url("gh", "HumanGaitDataBase.zip"), "path": "HumanGaitDataBase.zip",
                           "sha256": hashlib.sha256(archive).hexdigest()}],
            }
        ]  # fmt: skip
        rows, manifest = build(rewritten(tmp_path, data), fast_settings(tmp_path))
    by_id = {r["id"]: r for r in rows}
    assert set(by_id) == {"HGD_v1_walking_01_00", "HGD_v1_sitting_in_car_17_02"}
    r = by_id["HGD_v1_sitting_in_car_17_02"]
    assert (r["file_activity"], r["participant"], r["counter"], r["split"]) == (
        "sitting_in_car",
        "17",
        "02",
        "train",
    )
    assert by_id["HGD_v1_walking_01_00"]["file_activity"] == "walking"
    # per-sample activity indices into gait.read_tsv's 12 classes (12 = Sitting in Car -> 11)
    assert r["activity"] == [11, 11] and r["signal_shape"] == [38, 2]
    assert by_id["HGD_v1_walking_01_00"]["activity"] == [0, 0, 7]
    assert manifest["splits"] == {"train": 2}
