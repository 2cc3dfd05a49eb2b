"""Every recipe shipped in recipes/ validates (steps and their parameters exist, paths stay inside), names and
aliases are unique under climb's spelling rules, the identity fields are filled in, source identifiers have
the right shape, and the recipes that change CLIMB's definition say so in `notes`."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from climb_cli.catalog import Catalog, normalise_name
from climb_cli.recipe import Recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PATHS = sorted(RECIPES.glob("*/*.yaml"))

#: issue 12's recipes: each fixes or documents something in CLIMB's definition (notes), and each but CMMD
#: (no load-time transform in CLIMB) records CLIMB's tensor transform.
ISSUE12 = {
    "chexpert", "covid19", "coronahack", "brixia", "xray8", "cbis_ddsm", "cmmd", "ham10000", "isic2019",
    "isic2020", "pad_ufes_20", "ddi", "aptos", "jinchi", "messidor2", "drive",
}  # fmt: skip

SHAPES = {  # source kind -> field -> the shape of a real identifier
    "kaggle": {"dataset": r"^[a-z0-9][a-z0-9-]*/[a-z0-9][a-z0-9-]*$", "competition": r"^[a-z0-9][a-z0-9-]*$"},
    "tcia": {"collection": r"^[A-Za-z0-9][A-Za-z0-9_-]*$"},
    "aimi": {"container": r"^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$"},  # Azure container name rules
    "grand-challenge": {"archive": r"^[a-z0-9][a-z0-9-]*$"},
    "physionet": {"project": r"^[a-z0-9][a-z0-9-]*$", "version": r"^\d+(\.\d+)*$"},
}


def _load(path: Path) -> Recipe:
    return Catalog([path.parent]).load(path.stem)


@pytest.mark.parametrize("path", PATHS, ids=[p.stem for p in PATHS])
def test_recipe_validates_with_identity_and_identifiers(path: Path) -> None:
    r = _load(path)
    assert r.name == path.stem and path.parent.name
    for field in ("title", "license", "citation", "homepage"):
        assert getattr(r, field).strip(), f"{path}: {field} is empty"
    assert r.raw_size, f"{path}: raw_size (approximate) is missing"
    assert r.index is not None and (
        r.index.labels.kind == "none"
        or r.classes
        or r.index.labels.kind == "regression"
        or r.index.labels.discover  # classes found in the data (mimic_iv's ICD codes)
    )
    for s in r.sources:
        params = s.params
        for field, shape in SHAPES.get(s.kind, {}).items():
            if params.get(field) is not None:
                assert re.match(shape, str(params[field])), f"{path}: {s.kind} {field} {params[field]!r}"
        for f in params.get("files") or []:
            if isinstance(f, dict) and "url" in f:
                assert f["url"].startswith("https://"), f"{path}: {f['url']} is not https"
        if s.kind == "manual":
            assert params.get("url", "").startswith("https://") and params.get("instructions"), path
    if r.name in ISSUE12:
        assert len(r.notes) > 80, f"{path}: say what differs from CLIMB in notes"
        assert (r.climb_tensor is None) == (r.name == "cmmd"), f"{path}: climb_tensor"


def test_names_and_aliases_are_unique() -> None:
    seen: dict[str, Path] = {}
    for path in PATHS:
        r = _load(path)
        for name in [r.name, *r.aliases]:
            key = normalise_name(name)
            assert key not in seen, f"{name!r} of {path} is also {seen[key]}"
            seen[key] = path


def test_every_issue12_dataset_has_a_recipe() -> None:
    assert {p.stem for p in PATHS} >= ISSUE12


def test_climb_info_shows_the_notes_and_the_climb_tensor(tmp_path: Path) -> None:
    from tests.test_auth import climb_in_process

    env = {"CLIMB_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    run = climb_in_process("info", "cbis", env=env)
    assert run.returncode == 0, run.stderr
    assert "notes         As CLIMB: rows with BI-RADS 0 are dropped" in run.stdout
    assert "climb_tensor  {'transform': 'std2d'" in run.stdout
