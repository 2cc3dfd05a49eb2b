"""The wheel that `pip install` builds: every module of the package is in it (an editable install hides a
subpackage missing from pyproject's list), and the test doubles are not (only the demo's fake ships)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel_names(tmp_path_factory: pytest.TempPathFactory) -> set[str]:
    out = tmp_path_factory.mktemp("wheel")
    build = tmp_path_factory.mktemp("build")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        cwd=build,
    )
    if proc.returncode != 0:
        pytest.fail(f"pip wheel failed: {proc.stderr[-2000:]}")
    (wheel,) = out.glob("climb*.whl")
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def test_every_module_of_the_package_is_in_the_wheel(wheel_names: set[str]) -> None:
    sources = {p.relative_to(ROOT).as_posix() for p in (ROOT / "climb_cli").rglob("*.py")}
    missing = sorted(sources - wheel_names)
    assert not missing, f"modules missing from the wheel (add their package to pyproject): {missing}"


def test_the_recipes_ship_inside_the_package(wheel_names: set[str]) -> None:
    recipes = {
        f"climb_cli/recipes/{p.relative_to(ROOT / 'recipes').as_posix()}"
        for p in (ROOT / "recipes").rglob("*.yaml")
    }
    assert recipes and not recipes - wheel_names


def test_only_the_demo_fake_ships(wheel_names: set[str]) -> None:
    fakes = sorted(n for n in wheel_names if n.startswith("climb_cli/fakes/"))
    assert fakes == [
        "climb_cli/fakes/__init__.py",
        "climb_cli/fakes/faults.py",
        "climb_cli/fakes/physionet.py",
    ]
    assert not [n for n in wheel_names if n.startswith("tests/")]
