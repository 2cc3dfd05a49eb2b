"""Split algorithms: climb's hash split (golden values: stable across machines and versions),
grouping and stratification, the exact reproductions of pandas' sample and scikit-learn's
train_test_split, ordered and membership splits, and CLIMB's few-shot subsets."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from climb_cli.errors import RecipeError
from climb_cli.recipe import FewShot, RandomSplit, SplitSpec, TableRef
from climb_cli.splits import Assigner, cut_points, draw, few_shot


def _assign(spec: dict, ids: list[str], rows: list[dict], labels=None, tables=None) -> list:
    labels = labels or [()] * len(ids)
    return Assigner(SplitSpec.model_validate(spec), lambda ref: tables[ref.path])(ids, rows, labels)


def test_draw_and_cuts_have_golden_values() -> None:
    # frozen: changing these changes every hash split ever made
    assert draw(0, "p1") == 7146519009471615860
    assert draw(0, "HAM_0000118") == 2279319418617880140
    assert draw(42, "p1") == 359996404952721023
    assert draw(0, "p1") == int.from_bytes(hashlib.sha256(b"climb-split-v1\x000\x00p1").digest()[:8], "big")
    assert cut_points(10, [0.7, 0.15, 0.15]) == [7, 9, 10]
    assert cut_points(5, [0.5, 0.5]) == [3, 5]  # half up, not banker's rounding
    assert cut_points(7, [0.8, 0.2], "floor") == [5, 7]
    assert cut_points(20, [0.7, 0.2, 0.1]) == [14, 18, 20]  # 0.7+0.2 is exactly 0.9 here


def test_hash_split_golden_grouped_and_stratified() -> None:
    ids = [f"img{i}" for i in range(12)]
    rows = [{"patient": f"p{i // 2}", "dx": "mel" if i < 6 else "nv"} for i in range(12)]
    spec = {
        "random": {
            "fractions": {"train": 0.67, "test": 0.33},
            "seed": 0,
            "group": "patient",
            "stratify": "dx",
        }
    }
    got = _assign(spec, ids, rows)
    assert got == ["train", "train", "test", "test", "train", "train",
                   "test", "test", "train", "train", "train", "train"]  # fmt: skip
    by_patient: dict[str, set] = {}
    for r, s in zip(rows, got, strict=True):
        by_patient.setdefault(r["patient"], set()).add(s)
    assert all(len(v) == 1 for v in by_patient.values())  # no patient spans two splits
    assert Counter((r["dx"], s) for r, s in zip(rows, got, strict=True))[("mel", "train")] == 4
    # another seed gives another split; the same seed, the same one
    assert _assign({**spec, "random": {**spec["random"], "seed": 1}}, ids, rows) != got
    assert _assign(spec, ids, rows) == got


def test_stratify_by_the_exact_label_combination() -> None:
    ids = [f"r{i}" for i in range(40)]
    labels = [("AF",) if i % 4 == 0 else ("AF", "RBBB") if i % 4 == 1 else () for i in range(40)]
    got = _assign(
        {"random": {"fractions": {"train": 0.5, "test": 0.5}, "stratify": "labels"}}, ids, [{}] * 40, labels
    )
    per = Counter((lab, s) for lab, s in zip(labels, got, strict=True))
    assert per[(("AF",), "train")] == 5 and per[(("AF", "RBBB"), "train")] == 5 and per[((), "train")] == 10


def test_pandas_sample_is_reproduced_exactly() -> None:
    rng = np.random.default_rng(5)
    df = pd.DataFrame(
        {"id_code": [f"a{i:03d}" for i in range(157)], "diagnosis": rng.integers(0, 5, 157).astype(str)}
    )
    spec = {"random": {"fractions": {"train": 0.8, "valid": 0.2}, "method": "pandas_sample",
                       "stratify": "diagnosis", "rounding": "floor"}}  # fmt: skip
    got = _assign(spec, list(df.id_code), df.to_dict("records"))
    want = set()
    for label, count in df.diagnosis.value_counts().items():  # CLIMB's aptos.py, verbatim logic
        want |= set(df.loc[df.diagnosis == label].sample(int(0.8 * count), random_state=0).id_code)
    assert {i for i, s in zip(df.id_code, got, strict=True) if s == "train"} == want
    # frac= (rounding nearest) is DataFrame.sample(frac=0.8, random_state=0) over the whole table
    spec = {"random": {"fractions": {"train": 0.8, "valid": 0.2}, "method": "pandas_sample"}}
    got = _assign(spec, list(df.id_code), df.to_dict("records"))
    assert {i for i, s in zip(df.id_code, got, strict=True) if s == "train"} == set(
        df.sample(frac=0.8, random_state=0).id_code
    )


def test_sklearn_train_test_split_over_unique_patients_is_reproduced() -> None:
    rows = [{"PatientNumber": f"{49 + (i * 7) % 75:03d}", "SliceNumber": str(i)} for i in range(300)]
    ids = [f"{r['PatientNumber']}_{r['SliceNumber']}" for r in rows]
    spec = {"random": {"fractions": {"train": 0.8, "test": 0.2}, "method": "sklearn_split", "seed": 42,
                       "group": "PatientNumber"}}  # fmt: skip
    got = _assign(spec, ids, rows)
    test_patients = {r["PatientNumber"] for r, s in zip(rows, got, strict=True) if s == "test"}
    # the same selection from RandomState's permutation, written out (no scikit-learn needed)
    patients = list(dict.fromkeys(r["PatientNumber"] for r in rows))
    perm = np.random.RandomState(42).permutation(len(patients))
    assert test_patients == {patients[i] for i in perm[: int(np.ceil(0.2 * len(patients)))]}
    sklearn = pytest.importorskip("sklearn.model_selection")
    _, test = sklearn.train_test_split(np.array(patients), test_size=0.2, random_state=42)
    assert test_patients == set(test)


def test_ordered_split_sorts_numbers_as_numbers() -> None:
    ids = [f"case_{i:05d}" for i in (10, 2, 1, 300, 7)]
    rows = [{"k": f"case_{i}"} for i in (10, 2, 1, 300, 7)]
    got = _assign(
        {"ordered": {"by": ["k"], "numeric": True, "fractions": {"train": 0.6, "test": 0.4}}}, ids, rows
    )
    assert got == ["test", "train", "train", "test", "train"]
    got = _assign({"ordered": {"by": ["k"], "fractions": {"train": 0.6, "test": 0.4}}}, ids, rows)
    assert got == ["train", "train", "train", "test", "test"]  # as text: case_1 < case_10 < case_2 < ...


def test_ordered_split_by_group_cuts_patients_not_items() -> None:
    # COVID-BLUES: sorted unique patient ids, the first 75 % of patients train, all their videos with them
    patients = [10, 2, 2, 2, 2, 2, 1, 3, 3, 3, 10]
    ids = [f"patient_{p}_v{i}" for i, p in enumerate(patients)]
    rows = [{"patient": str(p), "_row": str(i)} for i, p in enumerate(patients)]
    spec = {
        "ordered": {
            "by": ["_row"],
            "group": "patient",
            "numeric": True,
            "fractions": {"train": 0.75, "test": 0.25},
        }
    }
    got = _assign(spec, ids, rows)
    assert got == ["test" if p == 10 else "train" for p in patients]  # 1, 2, 3 | 10
    # cut per item, 75 % of 11 videos would split patient 3 between train and test
    items = _assign(
        {"ordered": {"by": ["patient"], "numeric": True, "fractions": {"train": 0.75, "test": 0.25}}},
        ids,
        rows,
    )
    assert items != got


def test_membership_files_and_a_default() -> None:
    tables = {"tr": pd.DataFrame({"0": ["0", "2"]}), "te": pd.DataFrame({"0": ["1"]})}
    rows = [{"_row": str(i)} for i in range(4)]
    spec = {"membership": {"files": {"train": {"path": "tr"}, "test": {"path": "te"}}}, "default": "extra"}
    assert _assign(spec, ["a", "b", "c", "d"], rows, tables=tables) == ["train", "test", "train", "extra"]
    tables["te"] = pd.DataFrame({"0": ["2"]})
    with pytest.raises(RecipeError, match="both list '2'"):
        _assign(spec, ["a", "b", "c", "d"], rows, tables=tables)
    spec = {"column": "fold", "map": {"train": ["1"]}, "default": "test"}
    assert _assign(spec, ["a", "b"], [{"fold": "1"}, {"fold": "9"}]) == ["train", "test"]
    assert TableRef(path="split/scaffold/train.csv.gz", header=False).header is False


def test_few_shot_is_climbs_finetune_size() -> None:
    rng = np.random.default_rng(1)
    df = pd.DataFrame({"id": [f"x{i}" for i in range(300)], "y": rng.integers(0, 3, 300).astype(str)})
    spec = {"random": {"fractions": {"train": 0.8, "valid": 0.2}, "method": "pandas_sample", "stratify": "y",
                       "rounding": "floor"}}  # fmt: skip
    labels = [(y,) for y in df.y]
    splits = _assign(spec, list(df.id), df.to_dict("records"), labels)
    keep = few_shot(FewShot(), "small", splits, labels)
    kept_train = {i for i, s, k in zip(df.id, splits, keep, strict=True) if k and s == "train"}
    want = set()
    for (
        label,
        count,
    ) in df.y.value_counts().items():  # CLIMB: sample(min(finetune_size, count), random_state=0)
        want |= set(df.loc[df.y == label].sample(min(8, count), random_state=0).id)
    assert kept_train == want and len(kept_train) == 24
    assert all(k for s, k in zip(splits, keep, strict=True) if s == "valid")  # other splits unchanged


def test_split_spec_refusals() -> None:
    with pytest.raises(ValueError, match="sum to 1"):
        SplitSpec.model_validate({"random": {"fractions": {"train": 0.8, "test": 0.3}}})
    with pytest.raises(ValueError, match="exactly two splits"):
        SplitSpec.model_validate(
            {"random": {"fractions": {"a": 0.5, "b": 0.3, "c": 0.2}, "method": "pandas_sample"}}
        )
    with pytest.raises(ValueError, match="exactly one of"):
        SplitSpec.model_validate(
            {"fixed": "train", "ordered": {"by": ["a"], "fractions": {"a": 0.5, "b": 0.5}}}
        )


def test_stratified_train_test_split_is_reproduced() -> None:
    """LC25000: train_test_split(paths, test_size=0.25, random_state=42, stratify=labels)."""
    rng = np.random.default_rng(4)
    folders = ["colon_aca", "colon_n", "lung_aca", "lung_n", "lung_scc"]
    rows = [
        {"path": f"{f}/{f}{i}.jpeg", "folder": f} for f in folders for i in range(int(rng.integers(5, 40)))
    ]
    ids = [r["path"] for r in rows]
    spec = {"random": {"fractions": {"train": 0.75, "test": 0.25}, "method": "sklearn_split", "seed": 42,
                       "stratify": "folder"}}  # fmt: skip
    got = _assign(spec, ids, rows)
    sklearn = pytest.importorskip("sklearn.model_selection")
    _, test = sklearn.train_test_split(
        np.array(ids), test_size=0.25, random_state=42, stratify=np.array([r["folder"] for r in rows])
    )
    assert {i for i, s in zip(ids, got, strict=True) if s == "test"} == set(test)
    some = rows[::3]  # other class sizes: ties in _approximate_mode are broken by the same draws
    for seed in range(6):
        spec["random"]["seed"] = seed
        got = _assign(spec, [r["path"] for r in some], some)
        _, test = sklearn.train_test_split(
            np.array([r["path"] for r in some]),
            test_size=0.25,
            random_state=seed,
            stratify=np.array([r["folder"] for r in some]),
        )
        assert {r["path"] for r, s in zip(some, got, strict=True) if s == "test"} == set(test)


def test_numpy_shuffle_and_a_per_class_ordered_split() -> None:
    """ChestX-ray8: RandomState(42).shuffle, 90/10; BUSI: per class, sorted by name, first 75 %."""
    ids = [f"{i:08d}_000.png" for i in range(53)]
    spec = {"random": {"fractions": {"train": 0.9, "test": 0.1}, "method": "numpy_shuffle", "seed": 42,
                       "rounding": "floor"}}  # fmt: skip
    got = _assign(spec, ids, [{}] * len(ids))
    shuffled = list(ids)
    np.random.RandomState(42).shuffle(shuffled)  # what CLIMB's xray8.py does, then [:int(0.9 n)]
    assert {i for i, s in zip(ids, got, strict=True) if s == "train"} == set(shuffled[: int(0.9 * len(ids))])
    rows = [{"name": f"{c} ({k}).png", "cls": c} for c in ("benign", "malignant") for k in (1, 2, 10, 3)]
    spec = {
        "ordered": {
            "by": ["name"],
            "numeric": True,
            "stratify": "cls",
            "fractions": {"train": 0.75, "test": 0.25},
        }
    }
    got = _assign(spec, [r["name"] for r in rows], rows)
    assert [r["name"] for r, s in zip(rows, got, strict=True) if s == "test"] == [
        "benign (10).png",
        "malignant (10).png",
    ]


def test_a_recipe_cannot_make_a_variant_its_default(tmp_path) -> None:  # noqa: ANN001
    from tests.test_index import _idx, _lang

    index = _idx("{path: t.csv}", "    kind: none", split="split: {fixed: train, few_shot: {}}")
    with pytest.raises(RecipeError, match=r"lang.yaml:\d+ variant: a variant is chosen with --variant"):
        _lang(tmp_path, "variant: small\n" + index, {})
    recipe, _ = _lang(tmp_path / "ok", index, {})
    assert recipe.variant is None and recipe.with_variant("small").variant == "small"
    assert recipe.with_variant("small").content_hash() != recipe.content_hash()


def test_three_way_sklearn_split_reproduces_lidc_train_test_split_twice() -> None:
    """LIDC: train_test_split(patients, test_size=0.3, rs=7), then the 0.3 part split 0.5 (rs=7),
    in the order the first call returned it."""
    patients = [f"LIDC-IDRI-{i:04d}" for i in (5, 1, 9, 3, 12, 7, 2, 8, 11, 4, 6, 10, 13, 14, 15, 16, 17)]
    rows = [{"PatientID": p} for p in patients for _ in range(2)]
    ids = [f"{r['PatientID']}_{i}" for i, r in enumerate(rows)]
    spec = {"random": {"fractions": {"train": 0.7, "valid": 0.15, "test": 0.15}, "method": "sklearn_split",
                       "seed": 7, "group": "PatientID"}}  # fmt: skip
    got = dict(zip((r["PatientID"] for r in rows), _assign(spec, ids, rows), strict=True))
    sklearn = pytest.importorskip("sklearn.model_selection")
    train, rest = sklearn.train_test_split(np.array(patients), test_size=0.15 + 0.15, random_state=7)
    valid, test = sklearn.train_test_split(rest, test_size=0.15 / (0.15 + 0.15), random_state=7)
    assert {p for p, s in got.items() if s == "train"} == set(train)
    assert {p for p, s in got.items() if s == "valid"} == set(valid)
    assert {p for p, s in got.items() if s == "test"} == set(test)


@pytest.mark.parametrize("n", [60, 101, 149])
def test_three_way_stratified_sklearn_split_reproduces_abide_stratified_shuffle_split(n: int) -> None:
    """models/graphs/brain_datasets.py (ABIDE): StratifiedShuffleSplit(test_size=1 - 0.7, rs=42) by
    site, then on that part StratifiedShuffleSplit(test_size=1 - 0.1 / (1 - 0.7), rs=42)."""
    sites = [["NYU", "UM_1", "USM", "PITT", "KKI"][(i * 7 + i // 3) % 5] for i in range(n)]
    rows = [{"site": s} for s in sites]
    ids = [str(i) for i in range(n)]
    sizes = [1 - 0.7, 1 - 0.1 / (1 - 0.7)]
    spec = {"random": {"fractions": {"train": 0.7, "valid": 0.1, "test": 0.2}, "method": "sklearn_split",
                       "seed": 42, "stratify": "site", "test_sizes": sizes}}  # fmt: skip
    got = _assign(spec, ids, rows)
    ms = pytest.importorskip("sklearn.model_selection")
    idx = np.arange(n)
    train, temp = next(ms.StratifiedShuffleSplit(1, test_size=1 - 0.7, random_state=42).split(idx, sites))
    split2 = ms.StratifiedShuffleSplit(1, test_size=1 - 0.1 / (1 - 0.7), random_state=42)
    val, test = next(split2.split(idx[temp], np.array(sites)[temp]))
    want = {**{int(i): "train" for i in train}, **{int(temp[i]): "valid" for i in val}}
    want.update({int(temp[i]): "test" for i in test})
    assert got == [want[i] for i in range(n)]


def test_three_way_split_is_only_for_sklearn_split() -> None:
    with pytest.raises(ValueError, match="exactly two splits"):
        RandomSplit(fractions={"a": 0.5, "b": 0.25, "c": 0.25}, method="numpy_shuffle")
    with pytest.raises(ValueError, match="test_sizes is for"):
        RandomSplit(fractions={"a": 0.5, "b": 0.5}, method="sklearn_split", test_sizes=(0.5, 0.5))
