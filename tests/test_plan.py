"""`climb plan`: figures from the recipe before anything is downloaded, from the raw manifest and the
measured rates after, and the arithmetic of hours for given workers and connections."""

from __future__ import annotations

import json
from pathlib import Path

from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.plan import (
    DOWNLOAD_MBPS_PER_CONNECTION,
    MB,
    load_rates,
    plan_dataset,
    record_download,
    record_preprocess,
)
from climb_cli.settings import Settings
from tests.conftest import run_climb
from tests.test_pipeline import SOURCE, write_recipe


def test_before_anything_is_downloaded_the_recipe_gives_the_figures(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    recipe = Catalog().load("ptbxl")
    p = plan_dataset(recipe, settings, workers=4, connections=2)
    assert (p.raw_bytes.value, p.raw_bytes.source) == (int(recipe.raw_size), "recipe")
    assert p.files.value is None and p.files.source == "unknown"
    assert (p.samples.value, p.samples.source) == (sum(recipe.expect.splits.values()), "recipe")
    per_s = DOWNLOAD_MBPS_PER_CONNECTION["physionet"] * MB * 2
    assert p.download_hours.value == round(int(recipe.raw_size) / per_s / 3600, 3)
    assert p.download_hours.source == "default"
    assert p.peak_bytes == p.raw_bytes.value + p.extracted_bytes.value + p.processed_bytes.value


def test_measured_rates_replace_the_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    record_download(settings, "physionet", 100 * MB, 10.0, 4)  # 2.5 MB/s per connection
    record_preprocess(settings, "ecg", 1000, 10.0, 2, 50 * MB)  # 50 items/s per worker, 52 kB/item
    rates = load_rates(settings)
    assert rates["download"]["physionet"]["mb_per_s_per_connection"] == 2.5
    recipe = Catalog().load("ptbxl")
    p = plan_dataset(recipe, settings, workers=4, connections=8)
    assert p.download_hours.source == p.preprocess_hours.source == p.processed_bytes.source == "measured"
    assert p.download_hours.value == round(int(recipe.raw_size) / (2.5 * MB * 8) / 3600, 3)
    n = sum(recipe.expect.splits.values())
    assert p.preprocess_hours.value == round(n / (50 * 4) / 3600, 3)
    assert p.processed_bytes.value == n * (50 * MB // 1000)


def test_plan_after_a_download_counts_the_manifest_and_records_the_rate(
    tmp_path: Path, server: FakePhysioNet
) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, "toyecg", SOURCE)
    data = tmp_path / "data"
    env = {"CLIMB_PHYSIONET_URL": server.base_url, "CLIMB_BACKOFF": "0.01"}
    common = ["--data-dir", str(data), "--recipes", str(recipes)]
    before = run_climb(*common, "plan", "toyecg", "--json", env=env)
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout)["datasets"][0]["files"]["source"] == "unknown"
    assert run_climb(*common, "download", "toyecg", env=env).returncode == 0
    r = run_climb(*common, "plan", "toyecg", "--workers", "3", "--connections", "2", "--json", env=env)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    d = out["datasets"][0]
    raw = data / "raw" / "toyecg"
    files = [  # what was downloaded (not climb's own state, nor the stored upstream sum list)
        p for p in raw.rglob("*") if p.is_file() and ".climb" not in p.parts and p.name != "SHA256SUMS.txt"
    ]
    assert (d["files"]["value"], d["files"]["source"]) == (len(files), "manifest")
    assert d["raw_bytes"]["value"] == sum(p.stat().st_size for p in files)
    assert out["workers"] == 3 and out["connections"] == 2
    assert d["download_hours"]["source"] == "measured"  # the download recorded its rate
    assert out["total"]["files"] == {"value": len(files), "unknown": 0}
    table = run_climb(*common, "plan", "toyecg", env=env)
    assert table.returncode == 0 and "toyecg" in table.stdout and "(manifest)" in table.stdout
    assert "deletable: raw files" in table.stdout
