"""Helpers for the recipe tests: the packaged recipe as YAML data, rewritten for a test (its sources
pointed at a fake), then built end to end: download -> verify raw -> preprocess -> verify outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.pipeline import preprocess
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.verify import verify_outputs, verify_raw


def packaged(name: str) -> dict[str, Any]:
    """The packaged recipe `name` as YAML data."""
    return yaml.safe_load(Catalog().paths()[name].read_text(encoding="utf-8"))


def rewritten(tmp_path: Path, data: dict[str, Any], hook_from: str | None = None) -> Recipe:
    """`data` written as a user recipe (it overrides the packaged one of the same name) and loaded."""
    folder = tmp_path / "recipes"
    folder.mkdir(exist_ok=True)
    (folder / f"{data['name']}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    if hook_from is not None:
        hook = Catalog().paths()[hook_from].with_suffix(".py")
        (folder / f"{data['name']}.py").write_text(hook.read_text())
    return Catalog([folder]).load(data["name"])


def build(recipe: Recipe, settings: Settings) -> tuple[list[dict], dict]:
    """download -> verify raw -> preprocess -> verify outputs; the rows (sorted by id) and the manifest."""
    dl = download(recipe, settings)
    assert dl.ok, (dl.error, dl.outcomes)
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    report = preprocess(recipe, settings, workers=1)
    assert report.errors == 0, report.rejected
    out = verify_outputs(recipe, settings)
    assert out.ok, out.problems
    rows = pq.read_table(report.out_dir / "data").to_pylist()
    return sorted(rows, key=lambda r: r["id"]), json.loads((report.out_dir / "manifest.json").read_text())
