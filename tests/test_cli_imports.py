"""What each command imports: start-up is paid by every run, so a command imports only what it uses.

`climb --version` and `--help` build no recipe model (no pydantic, no YAML, no recipe modules; a
command's `--help` imports pydantic only because typer coerces options through it); `download`
and `verify` import the step modules of the recipe's own steps (their parameters are validated), never
the others, and none of the heavy libraries the steps use (numpy, pyarrow, pydicom, OpenCV, SimpleITK,
wfdb, scipy, pandas); `verify` of a PhysioNet recipe opens no HTTP client (requests); nothing draws a
progress bar (rich.progress) when stdout is not a terminal. Each case runs the real CLI in a subprocess
and reads its `sys.modules` at exit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import REPO, write_recipe

HEAVY = ("numpy", "pyarrow", "pydicom", "cv2", "SimpleITK", "wfdb", "scipy", "pandas", "PIL", "nibabel")

# The CLI as `climb` runs it, writing the names of the modules loaded at exit to $CLIMB_TEST_MODULES.
_RUN = (
    "import atexit, json, os, sys\n"
    "out = os.environ['CLIMB_TEST_MODULES']\n"
    "atexit.register(lambda: open(out, 'w').write(json.dumps(sorted(sys.modules))))\n"
    "from climb_cli.cli import main\n"
    "main()\n"
)


def _modules(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> set[str]:
    out = tmp_path / "modules.json"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHYSIONET_", "CLIMB_"))}
    full_env.update(env or {})
    full_env["CLIMB_TEST_MODULES"] = str(out)
    r = subprocess.run(
        [sys.executable, "-c", _RUN, *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=120,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return set(json.loads(out.read_text()))


def _loaded(modules: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if m in packages or m.startswith(tuple(p + "." for p in packages)))


@pytest.mark.parametrize("args", [["--version"], ["--help"], ["download", "--help"], ["verify", "--help"]])
def test_version_and_help_build_no_recipe_model(tmp_path: Path, args: list[str]) -> None:
    modules = _modules(tmp_path, *args)
    never = (
        "yaml",
        "climb_cli.recipe",
        "climb_cli.catalog",
        "climb_cli.sources",
        "climb_cli.steps",
        "requests",
    )
    assert _loaded(modules, never + HEAVY + ("rich.progress",)) == []
    if len(args) == 1:  # a command's options are coerced by typer through pydantic; the top level's are not
        assert _loaded(modules, ("pydantic",)) == []


def test_download_and_verify_import_only_what_they_use(tmp_path: Path, server: FakePhysioNet) -> None:
    src = "  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [RECORDS]\n"
    recipes = write_recipe(tmp_path / "recipes", "toyecg", src).parent  # PTB-XL's steps: ecg.*
    base = ("--data-dir", str(tmp_path / "d"), "--recipes", str(recipes))
    env = {"CLIMB_PHYSIONET_URL": server.base_url}

    download = _modules(tmp_path, *base, "download", "toyecg", env=env)
    assert (tmp_path / "d" / "raw" / "toyecg" / "RECORDS").is_file()
    verify = _modules(tmp_path, *base, "verify", "toyecg", env=env)
    for modules in (download, verify):
        assert _loaded(modules, HEAVY + ("rich.progress",)) == []
        steps = {m for m in _loaded(modules, ("climb_cli.steps",)) if not m.split(".")[-1].startswith("_")}
        assert steps == {"climb_cli.steps", "climb_cli.steps.base", "climb_cli.steps.ecg"}  # the recipe's own
    assert _loaded(verify, ("requests", "urllib3")) == []
