"""The index: tables joined and filtered (MIMIC-CXR-shaped), labels from flag columns, lists and
mapped codes, splits, templates, and the errors a bad index gets."""

from __future__ import annotations

import gzip
import hashlib
import json
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


# ------------------------------------------------------------------------------------------------
# The recipe language: table formats, labels, rows, and paths that reach outside


def _lang(
    tmp_path: Path, index: str, files: dict[str, bytes | str], name: str = "lang", hook: str | None = None
):
    settings = Settings(data_dir=tmp_path / "data")
    raw = settings.raw_dir(name)
    for rel, data in files.items():
        (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        (raw / rel).write_bytes(data.encode() if isinstance(data, str) else data)
    text = (
        f"name: {name}\ntitle: t\nmodality: m\nlicense: l\naccess: open\n"
        "sources:\n  - {kind: manual, url: 'https://example.org', globs: [{pattern: '*', count: 1}]}\n"
        + index
    )
    folder = tmp_path / "recipes"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.yaml").write_text(text)
    if hook is not None:
        (folder / f"{name}.py").write_text(hook)
    from climb_cli.recipe import load_recipe

    return load_recipe(folder / f"{name}.yaml"), settings


def _idx(table: str, labels: str, split: str = "split: {fixed: train}", extra: str = "") -> str:
    return (
        f"index:\n  table: {table}\n  id: id\n  inputs: {{f: '{{id}}.png'}}\n{extra}"
        f"  labels:\n{labels}\n  {split}\n"
    )


def test_tables_in_every_format(tmp_path: Path) -> None:
    import pickle

    import pandas as pd

    rows = [{"id": "a", "y": "x", "meta": {"site": 1}}, {"id": "b", "y": "z", "meta": {"site": None}}]
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"id": ["a", "b"], "y": ["x", "z"], "n": [1.5, None]}).to_parquet(parquet)
    pick = pickle.dumps({"id": ["a", "b"], "y": ["x", "z"]})
    cases = {
        "{path: t.jsonl}": ("t.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n"),
        "{path: t.json, records: data.cases}": ("t.json", json.dumps({"data": {"cases": rows}})),
        "{path: t.tsv.gz}": ("t.tsv.gz", gzip.compress(b"id\ty\na\tx\nb\tz\n")),
        "{path: t.parquet}": ("t.parquet", parquet.read_bytes()),
        "{path: ids.txt, format: lines, columns: [id]}": ("ids.txt", "a\nb\n\n"),
        "{path: t.csv, header: false, columns: [id, y]}": ("t.csv", "a,x\nb,z\n"),
        "{path: dass01.csv, skip_rows: 1}": ("dass01.csv", "dass,01\nid,y\na,x\nb,z\n"),  # NDA: a form line
        f"{{path: t.pkl, format: pickle, sha256: {hashlib.sha256(pick).hexdigest()}}}": ("t.pkl", pick),
        "{path: u.pkl, format: pickle}": ("u.pkl", pick),
    }
    for table, (fname, data) in cases.items():
        recipe, settings = _lang(tmp_path / ("d-" + fname), _idx(table, "    kind: none"), {fname: data})
        items = build_index(recipe, settings).items
        assert [i.id for i in items] == ["a", "b"], table
    index = _idx("{path: t.jsonl}", "    kind: none", extra="  keep: [meta.site]\n")
    recipe, settings = _lang(tmp_path / "j", index, {"t.jsonl": "\n".join(json.dumps(r) for r in rows)})
    assert [i.extra["meta.site"] for i in build_index(recipe, settings).items] == ["1", ""]


def test_a_numeric_column_header_is_a_column_name_like_any_other(tmp_path: Path) -> None:
    """A spreadsheet header cell holding a number (a year) reaches pandas as the int 2019; the recipe names
    it as text ('2019'). It had been reported missing from a table whose column list showed it."""
    import io

    import openpyxl

    book = openpyxl.Workbook()
    sheet = book.active
    assert sheet is not None
    for row in (["id", 2019], ["a", "x"], ["b", "z"]):
        sheet.append(row)
    buf = io.BytesIO()
    book.save(buf)
    table = "{path: t.xlsx, derive: {stem: '{id}-scan'}}"
    index = _idx(table, "    kind: none", extra="  keep: ['2019', stem]\n")
    recipe, settings = _lang(tmp_path, index, {"t.xlsx": buf.getvalue()})
    items = build_index(recipe, settings).items
    assert [(i.extra["2019"], i.extra["stem"]) for i in items] == [("x", "a-scan"), ("z", "b-scan")]


def test_a_pickle_is_read_only_when_said_and_never_runs_code(tmp_path: Path) -> None:
    import pickle

    import pandas as pd

    with pytest.raises(RecipeError, match=r"lang.yaml:\d+ index.table: .*format: pickle"):
        _lang(tmp_path / "1", _idx("{path: t.pkl}", "    kind: none"), {})

    class Boom:
        def __reduce__(self):  # noqa: ANN204 - what an attacker's pickle does
            return (exec, ("open('PWNED', 'w').write('x')",))

    evil = pickle.dumps(Boom())
    pinned = "{path: t.pkl, format: pickle, sha256: '" + "0" * 64 + "'}"
    recipe, settings = _lang(tmp_path / "3", _idx(pinned, "    kind: none"), {"t.pkl": evil})
    with pytest.raises(RecipeError, match="has sha256 .* the recipe pins 0000"):
        build_index(recipe, settings)
    for i, data in enumerate([evil, pickle.dumps(pd.DataFrame({"id": ["a"]}))]):
        recipe, settings = _lang(
            tmp_path / f"4{i}", _idx("{path: t.pkl, format: pickle}", "    kind: none"), {"t.pkl": data}
        )
        with pytest.raises(
            RecipeError, match=r"t.pkl: refusing .*only numpy arrays, dicts and lists.*will not open"
        ):
            build_index(recipe, settings)
    assert not Path("PWNED").exists()


def test_label_bins_literal_lists_uncertain_and_drops(tmp_path: Path) -> None:
    csv = (
        "id,dass,tags,Edema,Effusion,birads\n"
        "a,3,\"['x', 'y']\",-1.0,1.0,0\nb,12,['y'],,1.0,3\nc,40,[],1.0,,5\n"
    )
    bins = (
        "    column: dass\n    bins: [0, 10, 14, 21, 28, 1000]\n"
        "    classes: [normal, mild, moderate, severe, extreme]"
    )
    recipe, settings = _lang(tmp_path / "1", _idx("{path: t.csv}", bins), {"t.csv": csv})
    assert [i.labels for i in build_index(recipe, settings).items] == [("normal",), ("mild",), ("extreme",)]
    lit = "    kind: multilabel\n    column: tags\n    parse: literal_list\n    classes: [x, y]"
    recipe, settings = _lang(tmp_path / "2", _idx("{path: t.csv}", lit), {"t.csv": csv})
    assert [i.labels for i in build_index(recipe, settings).items] == [("x", "y"), ("y",), ()]
    lit = "    kind: multilabel\n    column: tags\n    parse: literal_list\n"
    lit += "    values: {'y': ''}\n    discover: true"
    recipe, settings = _lang(tmp_path / "2b", _idx("{path: t.csv}", lit), {"t.csv": csv})
    result = build_index(recipe, settings)  # QUILT: 'Unknown' removed from the lists, the items kept
    assert result.classes == ["x"] and [i.labels for i in result.items] == [("x",), (), ()]
    unc = ("    kind: multilabel\n    columns: [Edema, Effusion]\n    uncertain: {values: ['-1.0', '']}\n"
           "    raw_column: labels_raw")  # fmt: skip
    recipe, settings = _lang(tmp_path / "3", _idx("{path: t.csv}", unc), {"t.csv": csv})
    items = build_index(recipe, settings).items
    assert [i.labels for i in items] == [("Effusion",), ("Effusion",), ("Edema",)]  # -1 and blank count as 0
    assert json.loads(items[0].extra["labels_raw"]) == {
        "Edema": "-1.0",
        "Effusion": "1.0",
    }  # the raw value kept
    # CBIS-DDSM: BI-RADS - 1, with 0 dropped (counted, not lost)
    cbis = ('    column: birads\n    values: {"0": null, "1": "0", "2": "1", "3": "2", "4": "3", "5": "4"}\n'
            '    classes: ["0", "1", "2", "3", "4"]')  # fmt: skip
    recipe, settings = _lang(tmp_path / "4", _idx("{path: t.csv}", cbis), {"t.csv": csv})
    result = build_index(recipe, settings)
    assert [(i.id, i.labels) for i in result.items] == [("b", ("2",)), ("c", ("4",))]
    assert result.dropped == {"label '0' is dropped by the recipe": 1}
    recipe, settings = _lang(
        tmp_path / "5", _idx("{path: t.csv}", "    kind: regression\n    column: dass"), {"t.csv": csv}
    )
    assert [i.target for i in build_index(recipe, settings).items] == [3.0, 12.0, 40.0]


def test_discovered_classes_are_computed_once_and_reused(tmp_path: Path) -> None:
    csv = "id,icd\na,I10|E11\nb,I10\n"
    lab = "    kind: multilabel\n    column: icd\n    parse: list\n    sep: '|'\n    discover: true"
    recipe, settings = _lang(tmp_path, _idx("{path: t.csv}", lab), {"t.csv": csv})
    result = build_index(recipe, settings)
    assert result.classes == ["E11", "I10"] and result.items[0].labels == ("E11", "I10")
    lock = settings.raw_dir("lang") / ".climb" / "classes.json"
    assert json.loads(lock.read_text())["classes"] == ["E11", "I10"]
    (settings.raw_dir("lang") / "t.csv").write_text(csv + "c,Z99\n")  # a rebuild keeps the vocabulary
    result = build_index(recipe, settings)
    assert result.classes == ["E11", "I10"] and [i.id for i in result.items] == ["a", "b"]
    assert result.rejected == [("c", "label(s) Z99 not in the recipe's classes")]
    # another label spec discovers again
    recipe2, _ = _lang(tmp_path / "2", _idx("{path: t.csv}", lab + "\n    values: {I10: ''}"), {})
    assert build_index(recipe2, settings).classes == ["E11", "Z99"]
    assert json.loads(lock.read_text())["classes"] == ["E11", "Z99"]


def test_paths_that_reach_outside_are_refused(tmp_path: Path) -> None:
    for bad, loc in [
        ("{path: ../../etc/passwd}", "index.table.path"),
        ("{path: /etc/passwd}", "index.table.path"),
    ]:
        with pytest.raises(RecipeError, match=rf"lang.yaml:\d+ {loc}: .*reaches outside"):
            _lang(tmp_path, _idx(bad, "    kind: none"), {})
    text = _idx("{path: t.csv}", "    kind: none").replace("'{id}.png'", "'../{id}.png'")
    with pytest.raises(RecipeError, match=r"lang.yaml:11 index.inputs: .*reaches outside"):
        _lang(tmp_path, text, {})
    # a symlink out of the raw folder is refused at run time
    outside = tmp_path / "outside.csv"
    outside.write_text("id\na\n")
    recipe, settings = _lang(tmp_path / "s", _idx("{path: t.csv}", "    kind: none"), {})
    settings.raw_dir("lang").mkdir(parents=True)
    (settings.raw_dir("lang") / "t.csv").symlink_to(outside)
    with pytest.raises(RecipeError, match="resolves to .*outside the dataset's raw folder"):
        build_index(recipe, settings)


def test_multiclass_rules_take_the_first_match(tmp_path: Path) -> None:
    """RSPECT per slice: no PE if pe_present_on_image is 0; else chronic if chronic_pe; else acute."""
    csv = "id,pe_present_on_image,chronic_pe\na,0,1\nb,1,1\nc,1,0\n"
    rules = (
        "    kind: multiclass\n    rules:\n"
        "      - {when: {pe_present_on_image: ['0']}, label: no_pe}\n"
        "      - {when: {chronic_pe: ['1']}, label: chronic}\n"
        "      - {when: {pe_present_on_image: ['1'], chronic_pe: ['0']}, label: acute}\n"
        "      - {label: other}\n"  # INSPECT's "otherwise"
        "    classes: [no_pe, chronic, acute, other]"
    )
    csv += "d,,\n"
    recipe, settings = _lang(tmp_path, _idx("{path: t.csv}", rules), {"t.csv": csv})
    got = [i.labels for i in build_index(recipe, settings).items]
    assert got == [("no_pe",), ("chronic",), ("acute",), ("other",)]


def test_rules_with_numeric_ranges_over_several_scales(tmp_path: Path) -> None:
    """TCP: DASS depression and anxiety bands as one multilabel set (999 = unknown)."""
    csv = "id,dass_depr,dass_anx\na,30,3\nb,12,999\nc,x,16\n"
    rules = (
        "    kind: multilabel\n    rules:\n"
        "      - {when: {dass_depr: {ge: 28}}, label: depression_extremely_severe}\n"
        "      - {when: {dass_depr: {ge: 10, lt: 14}}, label: depression_mild}\n"
        "      - {when: {dass_anx: {lt: 8}}, label: anxiety_normal}\n"
        "      - {when: {dass_anx: {ge: 15, lt: 20}}, label: anxiety_severe}\n"
        "      - {when: {dass_anx: ['999']}, label: anxiety_unknown}\n"
        "    classes: [depression_extremely_severe, depression_mild,\n"
        "              anxiety_normal, anxiety_severe, anxiety_unknown]"
    )
    recipe, settings = _lang(tmp_path, _idx("{path: t.csv}", rules), {"t.csv": csv})
    assert [i.labels for i in build_index(recipe, settings).items] == [
        ("depression_extremely_severe", "anxiety_normal"),
        ("depression_mild", "anxiety_unknown"),
        ("anxiety_severe",),
    ]


def test_values_inside_data_files_mat_and_an_npy_dict(tmp_path: Path) -> None:
    """PPMI.mat (X, label) and ABIDE.npy (a pickled dict: corr, label, site): labels per subject row."""
    import io

    import numpy as np
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"X": np.zeros((3, 4, 4)), "label": np.array([[1], [-1], [1]])})
    lab = '    column: label\n    values: {"-1": control, "1": pd}\n    classes: [control, pd]'
    index = _idx("{path: PPMI.mat, variables: [label]}", lab).replace("id: id", "id: _row")
    index = index.replace("'{id}.png'", "PPMI.mat")
    recipe, settings = _lang(tmp_path / "m", index, {"PPMI.mat": buf.getvalue()})
    assert [(i.id, i.labels) for i in build_index(recipe, settings).items] == [
        ("0", ("pd",)), ("1", ("control",)), ("2", ("pd",))
    ]  # fmt: skip
    buf = io.BytesIO()
    np.save(buf, {"corr": np.zeros((2, 3, 3)), "label": np.array([0, 1]), "site": np.array(["NYU", "UM"])})
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    lab = '    column: label\n    values: {"0": control, "1": asd}\n    classes: [control, asd]'
    index = _idx(f"{{path: ABIDE.npy, format: pickle, sha256: '{sha}'}}", lab, extra="  keep: [site]\n")
    index = index.replace("id: id", "id: _row").replace("'{id}.png'", "ABIDE.npy")
    recipe, settings = _lang(tmp_path / "a", index, {"ABIDE.npy": buf.getvalue()})
    items = build_index(recipe, settings).items
    assert [(i.labels, i.extra["site"]) for i in items] == [(("control",), "NYU"), (("asd",), "UM")]
    with pytest.raises(RecipeError, match="format: pickle"):
        _lang(tmp_path / "b", _idx("{path: ABIDE.npy}", lab), {})
