"""Every packaged recipe loads (steps and their parameters are checked at load), names and aliases are unique
under climb's name normalisation, identity fields are filled in, source identifiers have the right shape,
and the recipes that change CLIMB's definition say so in `notes`."""

from __future__ import annotations

import json
import re

import pytest

from climb_cli.catalog import Catalog, normalise_name
from climb_cli.recipe import Recipe

PATHS = Catalog().paths()

# PhysioNet-hosted CLIMB datasets (issue 11): each fixes or re-sources something of CLIMB's, said in notes
PHYSIONET_CLIMB = {
    "mimic_cxr": "chest_xray",
    "vindr_cxr": "chest_xray",
    "vindr_mammo": "mammo",
    "vindr_mammo_16bit": "mammo",
    "ptbxl": "ecg",
    "cpsc": "ecg",
    "georgia": "ecg",
    "chapman_shaoxing": "ecg",
    "mimic_iv_ecg": "ecg",
    "mimic_iv": "multimodal",
    "hemorrhage": "ct",
}


def _load(name: str) -> Recipe:
    return Catalog().load(name)


@pytest.mark.parametrize("name", sorted(PATHS))
def test_recipe_validates_with_its_identity(name: str) -> None:
    r = _load(name)
    assert r.name == name and PATHS[name].stem == name
    assert r.title and r.license and r.citation and r.homepage.startswith("https://"), name
    assert r.raw_size and r.raw_size > 0, name
    for s in r.sources:
        d = s.model_dump()
        if d.get("kind") == "physionet":
            assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", d["project"]), d
            assert re.fullmatch(r"\d+(\.\d+)+", str(d["version"])), d
        if d.get("kind") == "github":
            assert re.fullmatch(r"[0-9a-f]{40}", d["commit"]), d
            # files without a sha256 are pinned on the first download (checksums: pinned)
            assert all(
                re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in d.get("files") or [] if f.get("sha256")
            ), d


def test_names_and_aliases_are_unique() -> None:
    seen: dict[str, str] = {}
    for name in PATHS:
        for spelling in [name, *_load(name).aliases]:
            key = normalise_name(spelling)
            assert key not in seen or seen[key] == name, f"{spelling!r} names {seen.get(key)} and {name}"
            seen[key] = name


@pytest.mark.parametrize("name", sorted(PHYSIONET_CLIMB))
def test_physionet_climb_recipes_are_in_place_and_say_what_changed(name: str) -> None:
    r = _load(name)
    assert PATHS[name].parent.name == PHYSIONET_CLIMB[name]
    assert r.notes.strip(), f"{name}: no notes"
    assert all(s.model_dump()["kind"] in ("physionet", "github") for s in r.sources)
    assert r.access in ("open", "registered", "credentialed")


def test_few_shot_variants_of_the_cinc_sets() -> None:
    """Full sets by default; CLIMB's finetune_size defaults (Georgia large, Chapman small) as variants."""
    for name in ("ptbxl", "cpsc", "georgia", "chapman_shaoxing"):
        r = _load(name)
        assert r.variant is None
        assert r.index.split.few_shot.sizes == {"small": 8, "medium": 64, "large": 256}
        assert r.with_variant("large").content_hash() != r.content_hash()


def test_climb_tensor_constants_of_the_image_recipes() -> None:
    want = {"mimic_cxr": (0.4721, 0.3025, "center"), "vindr_cxr": (0.7635, 0.1404, "center"),
            "vindr_mammo": (0.1180, 1.0, "width")}  # fmt: skip
    for name, (mean, std, pad) in want.items():
        t = _load(name).climb_tensor
        assert (t.transform, t.channels, t.mean, t.std, t.pad) == ("std2d", "L", [mean], [std], pad), name


def test_climb_info_shows_where_a_recipe_departs_from_climb() -> None:
    from tests.conftest import run_climb

    r = run_climb("info", "mimic-cxr")
    assert r.returncode == 0, r.stderr
    notes = r.stdout.split("\n  notes ", 1)[1]  # the notes block comes after its heading line
    assert "cxr-study-list.csv.gz" in notes
    info = json.loads(run_climb("info", "vindr", "--json").stdout)
    assert info["name"] == "vindr_mammo" and "get_pixel_array" in info["notes"]
