"""verify_dataset, the library call under `climb verify`: the report, the lines the CLI prints and the
one-line failure, for a hand-placed PhysioNet-shaped raw folder (no network: nothing is fetched)."""

from __future__ import annotations

from pathlib import Path

from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import write_sha256sums
from climb_cli.settings import Settings
from climb_cli.verify import RawReport
from climb_cli.verify_run import verify_dataset

RECIPE = (
    "name: placed\ntitle: placed by hand\nmodality: ecg\nlicense: CC0-1.0\naccess: open\n"
    "sources:\n  - id: data\n    kind: physionet\n    project: placed\n    version: 1.0.0\n"
)


def _setup(tmp_path: Path) -> tuple[Settings, Path]:
    raw = tmp_path / "data" / "raw" / "placed"
    (raw / "a").mkdir(parents=True)
    for i in range(12):
        (raw / "a" / f"{i:02d}.dat").write_bytes(bytes([i]) * (100 + i))
    write_sha256sums(raw)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "placed.yaml").write_text(RECIPE)
    settings = Settings.from_env(tmp_path / "data", [tmp_path / "recipes"]).with_(
        mirrors={"physionet": "http://127.0.0.1:9"}
    )
    return settings, raw


def test_a_clean_folder_gives_its_summary_line_and_no_failure(tmp_path: Path) -> None:
    settings, _ = _setup(tmp_path)
    recipe = Catalog(settings.recipe_dirs).load("placed")
    res = verify_dataset(recipe, settings, workers=2)
    assert isinstance(res.report, RawReport) and res.report.ok and res.report.checked == 12
    assert res.failure is None and not res.warnings
    assert res.lines[0].startswith("placed: 12 files, ") and res.lines[0].endswith("-> OK")


def test_a_corrupt_and_a_missing_file_are_listed_and_fail_with_the_repair_hint(tmp_path: Path) -> None:
    settings, raw = _setup(tmp_path)
    (raw / "a" / "03.dat").write_bytes(b"\xff" * 103)  # same size, other bytes
    (raw / "a" / "07.dat").unlink()
    recipe = Catalog(settings.recipe_dirs).load("placed")
    res = verify_dataset(recipe, settings, workers=2)
    assert res.failure == "1 missing, 1 corrupt, 0 unexpected (run with --repair)"
    assert "  missing: a/07.dat" in res.lines and "  corrupt: a/03.dat" in res.lines
    assert res.lines[0].endswith("1 missing, 1 corrupt, 0 unexpected -> PROBLEMS")


def test_outputs_never_built_is_a_failure_naming_the_command(tmp_path: Path) -> None:
    settings, _ = _setup(tmp_path)
    recipe = Catalog(settings.recipe_dirs).load("placed")
    res = verify_dataset(recipe, settings, outputs=True)
    assert res.failure is not None and "climb preprocess placed" in res.failure
