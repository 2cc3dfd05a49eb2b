"""ABIDE (BrainGB's ABIDE.npy, placed by hand): the pickled dict read without running code, CLIMB's
two StratifiedShuffleSplits by site, graphs with CLIMB's edges and node features."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import numpy as np
import pytest

from climb_cli.acquire import download
from climb_cli.errors import RecipeError
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.recipes.conftest import packaged, rewritten
from tests.recipes.test_volumes_video_mri import _packaged
from tests.test_miniatures import _build

SITES = ["NYU", "UM_1", "USM", "PITT", "KKI"]


def _abide(n: int, rng: np.random.Generator) -> tuple[bytes, dict]:
    corr = rng.uniform(-1, 1, (n, 6, 6))
    corr[:, 0, 1] = 0.0  # zero entries are not edges
    data = {
        "corr": corr,
        "label": np.array([i % 2 for i in range(n)]),
        "site": np.array([SITES[(i * 3 + i // 4) % 5] for i in range(n)]),
    }
    buf = io.BytesIO()
    np.save(buf, data)  # what BrainGB's script writes: a dict in a 0-d object array
    return buf.getvalue(), data


def test_abide_rows_labels_sites_split_and_graphs(tmp_path: Path) -> None:
    blob, data = _abide(60, np.random.default_rng(5))
    spec = packaged("abide")
    spec.pop("expect")  # CLIMB's counts are for BrainGB's 1,009 subjects (checked below)
    recipe, settings = rewritten(tmp_path, spec), fast_settings(tmp_path)
    settings.raw_dir("abide").mkdir(parents=True, exist_ok=True)
    (settings.raw_dir("abide") / "ABIDE.npy").write_bytes(blob)
    assert download(recipe, settings).ok
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    rows, _ = _build(recipe, settings)
    assert sorted(int(r["id"]) for r in rows) == list(range(60))
    ms = pytest.importorskip("sklearn.model_selection")  # CLIMB's split, run by scikit-learn itself
    idx, sites = np.arange(60), data["site"]
    train, temp = next(ms.StratifiedShuffleSplit(1, test_size=1 - 0.7, random_state=42).split(idx, sites))
    val, test = next(
        ms.StratifiedShuffleSplit(1, test_size=1 - 0.1 / (1 - 0.7), random_state=42).split(
            idx[temp], sites[temp]
        )
    )
    want = {**dict.fromkeys(train.tolist(), "train"), **dict.fromkeys(temp[val].tolist(), "val")}
    want.update(dict.fromkeys(temp[test].tolist(), "test"))
    for r in rows:
        i = int(r["id"])
        assert r["split"] == want[i], i
        assert r["labels"] == [["control", "asd"][data["label"][i]]]
        assert r["site"] == data["site"][i]
        m = data["corr"][i]
        edges = np.asarray(r["edge_index"]).reshape(r["edge_index_shape"])
        assert edges.shape == (2, 35)  # 36 entries, one zero
        assert np.array_equal(edges, np.stack(np.nonzero(m)))
        np.testing.assert_allclose(np.asarray(r["node_features"]).reshape(6, 6), m.astype(np.float32))


class _Evil:
    def __reduce__(self):  # noqa: ANN204 - what a malicious pickle does
        return (os.system, ("touch PWNED",))


def test_a_malicious_abide_npy_is_refused_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    arr = np.empty((), dtype=object)
    arr[()] = {"corr": np.zeros((2, 3, 3)), "label": np.array([0, 1]), "site": _Evil()}
    buf = io.BytesIO()
    np.save(buf, arr)
    recipe, settings = _packaged(tmp_path, "mri", "abide", {"ABIDE.npy": buf.getvalue()})
    from climb_cli.index import build_index

    with pytest.raises(RecipeError) as info:
        build_index(recipe, settings)
    msg = str(info.value)
    assert "\n" not in msg and "ABIDE.npy" in msg and re.search(r"refusing (posix|nt)\.system", msg)
    assert not (tmp_path / "PWNED").exists()


def test_climbs_split_of_1009_subjects_is_what_the_recipe_expects(tmp_path: Path) -> None:
    from collections import Counter

    from climb_cli.index import build_index

    rng = np.random.default_rng(9)
    sites = [f"SITE{k:02d}" for k in range(17)]
    data = {"corr": np.zeros((1009, 2, 2)), "label": rng.integers(0, 2, 1009),
            "site": np.array([sites[int(i)] for i in rng.integers(0, 17, 1009)])}  # fmt: skip
    buf = io.BytesIO()
    np.save(buf, data)
    recipe, settings = _packaged(tmp_path, "mri", "abide", {"ABIDE.npy": buf.getvalue()})
    counts = Counter(i.split for i in build_index(recipe, settings).items)
    assert counts == recipe.expect.splits == {"train": 706, "val": 100, "test": 203}
