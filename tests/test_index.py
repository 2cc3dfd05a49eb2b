"""The index: tables joined and filtered (MIMIC-CXR-shaped), labels from flag columns, lists and
mapped codes, splits, templates, and the errors a bad index gets."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from climb_cli.errors import RecipeError
from climb_cli.index import build_index
from climb_cli.recipe import parse_recipe
from climb_cli.settings import Settings

HEAD = """\
name: cxr
title: MIMIC-CXR-shaped
modality: chest_xray
license: PhysioNet-credentialed
access: credentialed
sources:
  - {id: jpg, kind: physionet, project: mimic-cxr-jpg, version: "2.0.0"}
  - {id: cxr, kind: physionet, project: mimic-cxr, version: "2.0.0", into: mimic-cxr}
"""

INDEX = """\
index:
  table: {source: jpg, path: metadata.csv.gz}
  join:
    - {table: {source: jpg, path: chexpert.csv.gz}, on: [subject_id, study_id]}
    - {table: {source: jpg, path: split.csv.gz}, on: [dicom_id, study_id, subject_id]}
    - {table: {source: cxr, path: cxr-study-list.csv.gz}, on: [subject_id, study_id]}
  filter: {ViewPosition: [PA, AP]}
  id: dicom_id
  inputs: {image: "files/p{subject_id:.2}/p{subject_id}/s{study_id}/{dicom_id}.jpg"}
  labels:
    kind: multilabel
    columns: [Atelectasis, Cardiomegaly, No Finding]
    positive: ["1.0"]
  split: {column: split, map: {train: [train], test: [test, validate]}}
  keep: [ViewPosition, path]
"""


def _gz(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        f.write(text)


@pytest.fixture
def cxr(tmp_path: Path) -> Settings:
    settings = Settings(data_dir=tmp_path)
    raw = settings.raw_dir("cxr")
    _gz(
        raw / "metadata.csv.gz",
        "dicom_id,subject_id,study_id,ViewPosition\n"
        "d1,10000032,50414267,PA\nd2,10000032,50414267,LATERAL\nd3,10000764,57375967,AP\n"
        "d4,10000898,50771383,PA\n",
    )
    _gz(
        raw / "chexpert.csv.gz",
        "subject_id,study_id,Atelectasis,Cardiomegaly,No Finding\n"
        "10000032,50414267,,1.0,\n10000764,57375967,-1.0,,1.0\n10000898,50771383,1.0,1.0,\n",
    )
    _gz(
        raw / "split.csv.gz",
        "dicom_id,study_id,subject_id,split\n"
        "d1,50414267,10000032,train\nd2,50414267,10000032,train\nd3,57375967,10000764,validate\n"
        "d4,50771383,10000898,holdout\n",
    )
    _gz(
        raw / "mimic-cxr" / "cxr-study-list.csv.gz",
        "subject_id,study_id,path\n"
        "10000032,50414267,files/p10/p10000032/s50414267.txt\n10000764,57375967,files/p10/p10000764/s57375967.txt\n"
        "10000898,50771383,files/p10/p10000898/s50771383.txt\n",
    )
    return settings


def test_mimic_cxr_shaped_index_joins_four_tables_across_two_sources(cxr: Settings) -> None:
    recipe = parse_recipe(HEAD + INDEX, Path("cxr.yaml"))
    result = build_index(recipe, cxr)
    by_id = {i.id: i for i in result.items}
    assert set(by_id) == {"d1", "d3"}  # d2 is LATERAL (filtered); d4's split is not mapped
    assert result.rejected == [("d4", "split value 'holdout' is not mapped")]
    assert by_id["d1"].inputs == {"image": "files/p10/p10000032/s50414267/d1.jpg"}
    assert by_id["d1"].labels == ("Cardiomegaly",)
    assert by_id["d3"].labels == ("No Finding",)  # -1 (uncertain) is not positive
    assert by_id["d3"].split == "test"  # validate folds into test, as CLIMB did
    assert by_id["d1"].extra == {"ViewPosition": "PA", "path": "files/p10/p10000032/s50414267.txt"}


def test_unmapped_splits_can_be_dropped_quietly(cxr: Settings) -> None:
    text = HEAD + INDEX.replace(
        "map: {train: [train], test: [test, validate]}}",
        "map: {train: [train], test: [test, validate]}, unmapped: drop}",
    )
    result = build_index(parse_recipe(text, Path("cxr.yaml")), cxr)
    assert [i.id for i in result.items] == ["d1", "d3"] and result.rejected == []


def test_list_labels_through_a_map_and_unknown_labels(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    raw = settings.raw_dir("cxr")
    raw.mkdir(parents=True)
    (raw / "items.tsv").write_text("rid\tcodes\tfold\na\tX1;X2\ttr\nb\tX3\ttr\nc\t\tte\nd\tX1;ZZ\ttr\n")
    (raw / "codes.csv").write_text(
        "code,group,keep\nX1,alpha,y\nX2,beta,y\nX3,alpha,y\nZZ,omega,y\nQQ,alpha,n\n"
    )
    text = (
        HEAD
        + """\
index:
  table: {source: jpg, path: items.tsv}
  id: "item-{rid}"
  inputs: {x: "{rid}.bin"}
  labels:
    kind: multilabel
    column: codes
    parse: list
    map: {table: {source: jpg, path: codes.csv}, key: code, value: group, where: {keep: ["y"]}}
    classes: [alpha, beta]
  split: {column: fold, map: {train: [tr], test: [te]}}
"""
    )
    result = build_index(parse_recipe(text, Path("cxr.yaml")), settings)
    by_id = {i.id: i for i in result.items}
    assert by_id["item-a"].labels == ("alpha", "beta") and by_id["item-b"].labels == ("alpha",)
    assert by_id["item-c"].labels == () and by_id["item-c"].split == "test"
    assert result.rejected == [("item-d", "label(s) omega not in the recipe's classes")]
    ignore = text.replace("classes: [alpha, beta]", "classes: [alpha, beta]\n    others: ignore")
    by_id = {i.id: i for i in build_index(parse_recipe(ignore, Path("cxr.yaml")), settings).items}
    assert by_id["item-d"].labels == ("alpha",)


def test_index_errors_say_what_is_wrong(cxr: Settings) -> None:
    missing_col = HEAD + INDEX.replace("keep: [ViewPosition, path]", "keep: [ViewPosition, Nope]")
    with pytest.raises(RecipeError, match=r"cxr: the index table has no column\(s\) \['Nope'\]"):
        build_index(parse_recipe(missing_col, Path("cxr.yaml")), cxr)
    bad_join = HEAD + INDEX.replace(
        "on: [subject_id, study_id]}\n    - {table: {source: jpg, path: split",
        "on: [subject_id, visit]}\n    - {table: {source: jpg, path: split",
    )
    with pytest.raises(RecipeError, match=r"cannot join chexpert.csv.gz on missing column\(s\) \['visit'\]"):
        build_index(parse_recipe(bad_join, Path("cxr.yaml")), cxr)
    dup = HEAD + INDEX.replace("id: dicom_id", "id: subject_id").replace("{ViewPosition: [PA, AP]}", "{}")
    with pytest.raises(RecipeError, match=r"id '10000032' occurs twice in the index"):
        build_index(parse_recipe(dup, Path("cxr.yaml")), cxr)
    absent = HEAD + INDEX.replace("metadata.csv.gz", "metadata-v3.csv.gz")
    with pytest.raises(
        RecipeError, match=r"index table .*metadata-v3.csv.gz is missing; run `climb download cxr`"
    ):
        build_index(parse_recipe(absent, Path("cxr.yaml")), cxr)
