"""Recipe validation: every error names file:line and the field path; the hash keys outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from climb_cli.catalog import Catalog
from climb_cli.errors import RecipeError
from climb_cli.recipe import load_recipe, parse_recipe

PTBXL = Catalog().paths()["ptbxl_superdiagnostic"]


def _write(tmp_path: Path, text: str, name: str = "toy") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(text)
    return p


BASE = """\
name: toy
title: Toy
modality: ecg
license: CC0
access: open
sources:
  - kind: physionet
    project: toy
    version: 1.0.0
index:
  table: {path: db.csv}
  id: rid
  inputs: {record: "{path}"}
  split: {fixed: train}
steps:
  - ecg.read_wfdb: {input: record}
  - ecg.resample: {hz: 500}
"""


def test_packaged_ptbxl_recipe_is_valid() -> None:
    r = load_recipe(PTBXL)
    assert r.name == "ptbxl_superdiagnostic" and r.access == "open"
    assert r.classes == ["NORM", "MI", "STTC", "CD", "HYP"]
    assert r.sources[0].params == {"project": "ptb-xl", "version": "1.0.3"}
    assert sum(r.expect.splits.values()) == 21799


def test_bad_step_parameter_names_file_line_and_field(tmp_path: Path) -> None:
    text = BASE.replace("{hz: 500}", "{hz: 0}")
    p = _write(tmp_path, text)
    with pytest.raises(RecipeError) as e:
        load_recipe(p)
    line = text.splitlines().index("  - ecg.resample: {hz: 0}") + 1
    assert str(e.value) == f"{p}:{line} steps[1].hz: must be > 0"


def test_bad_step_parameter_in_block_style_points_at_the_key(tmp_path: Path) -> None:
    text = BASE.replace(
        "  - ecg.resample: {hz: 500}\n", "  - ecg.resample:\n      method: poly\n      hz: -3\n"
    )
    p = _write(tmp_path, text)
    with pytest.raises(RecipeError, match=r":19 steps\[1\]\.hz: must be > 0$"):
        load_recipe(p)


def test_unknown_step_is_rejected_before_work(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE.replace("ecg.resample", "ecg.resampel"))
    with pytest.raises(RecipeError, match=r"toy.yaml:17 steps\[1\]: unknown step 'ecg.resampel'"):
        load_recipe(p)


def test_unknown_source_kind_is_rejected(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE.replace("kind: physionet", "kind: ftp-of-doom"))
    with pytest.raises(
        RecipeError, match=r"toy.yaml:7 sources\[0\]\.kind: unknown source kind 'ftp-of-doom'"
    ):
        load_recipe(p)


def test_source_specific_fields_are_validated(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE.replace("version: 1.0.0", "version: latest"))
    with pytest.raises(RecipeError, match=r"toy.yaml:9 sources\[0\]\.version: must match"):
        load_recipe(p)
    p = _write(tmp_path, BASE.replace("    version: 1.0.0\n", "    version: 1.0.0\n    colour: red\n"))
    with pytest.raises(RecipeError, match=r"toy.yaml:10 sources\[0\]: unknown field 'colour'"):
        load_recipe(p)


def test_unknown_and_missing_top_level_fields(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"toy.yaml:1 unknown field 'licence' — did you mean 'license'\?"):
        load_recipe(_write(tmp_path, "licence: x\n" + BASE))
    with pytest.raises(RecipeError, match=r"toy.yaml:\d+ access: is required"):
        load_recipe(_write(tmp_path, BASE.replace("access: open\n", "")))
    with pytest.raises(RecipeError, match=r"access: must be one of 'open', 'registered' or 'credentialed'"):
        load_recipe(_write(tmp_path, BASE.replace("access: open", "access: public")))


def test_yaml_syntax_error_has_a_line(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"toy.yaml:3 \(yaml\)"):
        load_recipe(_write(tmp_path, "name: toy\ntitle: [unclosed\nmodality: ecg\n"))


def test_index_must_reference_a_known_source(tmp_path: Path) -> None:
    p = _write(tmp_path, BASE.replace("{path: db.csv}", "{source: nope, path: db.csv}"))
    with pytest.raises(RecipeError, match=r"toy.yaml:11 index.table.source: no source with id 'nope'"):
        load_recipe(p)


def test_name_must_match_file(tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match="name: must match the file name"):
        load_recipe(_write(tmp_path, BASE, name="other"))


def test_hash_ignores_descriptions_but_not_processing() -> None:
    text = PTBXL.read_text()
    h = parse_recipe(text, PTBXL).content_hash()
    assert parse_recipe(text, PTBXL).content_hash() == h
    assert parse_recipe(text.replace('title: "PTB-XL', 'title: "Renamed PTB-XL'), PTBXL).content_hash() == h
    assert parse_recipe(text.replace("length: 5000", "length: 2500"), PTBXL).content_hash() != h
    assert (
        parse_recipe(
            text.replace('val: ["9"]', 'val: ["10"]').replace('test: ["10"]', 'test: ["9"]'), PTBXL
        ).content_hash()
        != h
    )


def test_user_recipe_folder_overrides_and_extends(tmp_path: Path) -> None:
    (tmp_path / "toy.yaml").write_text(BASE)
    (tmp_path / "ptbxl_superdiagnostic.yaml").write_text(
        PTBXL.read_text().replace("length: 5000", "length: 1000")
    )
    cat = Catalog([tmp_path])
    assert "toy" in cat.names()
    assert cat.load("ptbxl_superdiagnostic").steps[-2].params["length"] == 1000


def test_a_mistyped_field_is_said_first_with_the_close_name(tmp_path: Path) -> None:
    from tests.conftest import run_climb, write_recipe

    src = "  - kind: physionet\n    project: x\n    version: '1.0'\n"
    cases = {
        "bad1": (
            "ecg.resample: {hz: 500}",
            "ecg.resample: {hzz: 500}",
            "steps[2]: unknown field 'hzz' — did you mean 'hz'?",
        ),
        "bad2": ("modality:", "modalty:", "unknown field 'modalty' — did you mean 'modality'?"),
        "bad3": (
            "    project: x",
            "    projct: x",
            "sources[0]: unknown field 'projct' — did you mean 'project'?",
        ),
    }
    for name, (old, new, want) in cases.items():
        p = write_recipe(tmp_path, name, src)
        p.write_text(p.read_text().replace(old, new, 1))
        line = p.read_text().splitlines().index(next(x for x in p.read_text().splitlines() if new in x)) + 1
        r = run_climb("--recipes", str(tmp_path), "info", name)
        assert r.returncode == 2
        assert r.stderr == f"climb: error: {p}:{line} {want} (and 1 more)\n", r.stderr
        p.unlink()
