"""Every packaged recipe: loads and validates, unique names and aliases, identity fields present, the
corpus fields (samples, raw_size) given, notes where CLIMB's definition was changed, and source
identifiers of the right shape."""

from __future__ import annotations

import re

import pytest

from climb_cli.catalog import Catalog, normalise_name
from climb_cli.steps import load_all
from climb_cli.steps.base import registry

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
