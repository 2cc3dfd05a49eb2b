"""Every packaged recipe: loads and validates, unique names and aliases, identity fields present, the
corpus fields (samples, raw_size) given, notes where CLIMB's definition was changed, and source
identifiers of the right shape."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from climb_cli.catalog import Catalog, normalise_name
from climb_cli.recipe import Recipe
from climb_cli.steps import load_all
from climb_cli.steps.base import registry

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
PATHS = sorted(RECIPES.glob("*/*.yaml"))

#: issue 12's recipes: each fixes or documents something in CLIMB's definition (notes), and each but CMMD
#: (no load-time transform in CLIMB) records CLIMB's tensor transform.
ISSUE12 = {
    "chexpert", "covid19", "coronahack", "brixia", "xray8", "cbis_ddsm", "cmmd", "ham10000", "isic2019",
    "isic2020", "pad_ufes_20", "ddi", "aptos", "jinchi", "messidor2", "drive", "bcss", "lc25000", "quilt_1m",
    "kvasir", "busi", "brain_tumor", "brain_tumor_2", "medpix",
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


ISSUE12_PATHS = [p for p in PATHS if p.stem in ISSUE12]


@pytest.mark.parametrize("path", ISSUE12_PATHS, ids=[p.stem for p in ISSUE12_PATHS])
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
            assert seen.get(key, path) == path, f"{name!r} of {path} is also {seen[key]}"
            seen[key] = path


def test_every_issue12_dataset_has_a_recipe() -> None:
    assert {p.stem for p in PATHS} >= ISSUE12


def test_climb_info_shows_the_notes_and_the_climb_tensor(tmp_path: Path) -> None:
    from tests.test_auth import climb_in_process

    env = {"CLIMB_DATA_DIR": str(tmp_path / "data"), "HOME": str(tmp_path)}
    run = climb_in_process("info", "cbis", env=env)
    assert run.returncode == 0, run.stderr
    assert "notes (where CLIMB's definition was changed" in run.stdout
    assert "As CLIMB: rows with BI-RADS 0 are dropped" in run.stdout
    assert "climb_tensor  {'transform': 'std2d'" in run.stdout


CATALOG = Catalog()
NAMES = CATALOG.names()


def test_every_recipe_loads() -> None:
    recipes, broken = CATALOG.load_each()
    assert not broken, broken
    spellings: dict[str, str] = {}
    for r in recipes:
        for n in [r.name, *r.aliases]:
            key = normalise_name(n)
            assert spellings.setdefault(key, r.name) == r.name, f"{n} names {spellings[key]} and {r.name}"


@pytest.mark.parametrize("name", NAMES)
def test_recipe_identity(name: str) -> None:
    r = CATALOG.load(name)
    assert r.path is not None and r.path.parent.parent.name == "recipes" and r.path.stem == r.name
    assert r.title and r.license and r.citation and r.homepage.startswith("https://"), name
    assert r.raw_size and r.samples, f"{name}: raw_size and samples are part of the corpus view"
    for s in r.sources:
        p = s.params
        if s.kind == "github" and p.get("commit"):
            assert re.fullmatch(r"[0-9a-f]{40}", p["commit"])
        for f in p.get("files", []) or []:
            if f.get("sha256"):
                assert re.fullmatch(r"[0-9a-f]{64}", f["sha256"]), name
        if s.kind == "manual":
            assert p.get("url", "").startswith("https://") and p.get("instructions"), name
    load_all()
    for step in r.steps:
        assert step.name in registry(), f"{name}: unknown step {step.name}"


# recipes whose task differs from CLIMB's code (a fix or a gap): they must say so in `notes`
CHANGED = {"shhs", "isruc", "ogbg_molhiv", "ogbg_ppa", "hugadb", "genia", "geo", "expression_atlas", "tuab",
           "tuev", "iiic", "auditory_oddball", "bciciv2a", "faced"}  # fmt: skip


@pytest.mark.parametrize("name", sorted(CHANGED & set(NAMES)))
def test_notes_where_climb_was_changed(name: str) -> None:
    assert len(CATALOG.load(name).notes.strip()) > 40
