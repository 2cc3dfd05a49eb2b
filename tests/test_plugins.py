"""Plug-ins: a real package declaring the climb.sources, climb.steps and climb.recipes entry points is
built and installed with pip (offline, --no-build-isolation) into a temporary folder, and climb runs
as a subprocess with that folder on PYTHONPATH: what a user gets after `pip install climb-toy`.
The package is docs/plugins.md's complete example, built from the page's code blocks."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, serve_bytes
from tests.conftest import REPO

# -- the example plug-in: built from the code blocks of docs/plugins.md --------------------------

DOC = REPO / "docs" / "plugins.md"
DOC_BASE = "http://127.0.0.1:8000"  # the server the example recipe names; the test's replaces it


def example_files() -> dict[str, str]:
    """The files of docs/plugins.md's example package: every fenced block with a `title="path"`."""
    blocks = re.findall(r'^```\w+ title="([^"]+)"\n(.*?)^```$', DOC.read_text(encoding="utf-8"), re.M | re.S)
    return dict(blocks)


PYPROJECT = """
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "{dist}"
version = "0.1.0"

{entry_points}

[tool.setuptools]
packages = {packages}

[tool.setuptools.package-data]
"*" = ["*.yaml", "**/*.yaml"]
"""


def pyproject(dist: str, files: dict[str, str], entry_points: dict[str, dict[str, str]]) -> str:
    packages = sorted(
        {str(Path(rel).parent).replace("/", ".") for rel in files if rel.endswith("/__init__.py")}
    )
    eps = "\n".join(
        f'[project.entry-points."{group}"]\n' + "".join(f'{k} = "{v}"\n' for k, v in names.items())
        for group, names in entry_points.items()
    )
    return PYPROJECT.format(dist=dist, entry_points=eps, packages=json.dumps(packages))


def install_plugin(
    root: Path, dist: str, files: dict[str, str], entry_points: dict[str, dict[str, str]] | None = None
) -> Path:
    """Write the package `dist` (files by path; a pyproject.toml made from `entry_points` unless given)
    and install it with pip into a folder of its own; returns that folder (what goes on PYTHONPATH)."""
    src, target = root / f"{dist}-src", root / f"{dist}-site"
    if "pyproject.toml" not in files:
        files = {**files, "pyproject.toml": pyproject(dist, files, entry_points or {})}
    for rel, text in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_text(textwrap.dedent(text).lstrip())
    r = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(target), str(src)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return target


def climb(
    *args: str, site: Path | list[Path], data: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    """The CLI in a subprocess with the plug-in folder(s) on PYTHONPATH (its pid is `args[0]`)."""
    sites = site if isinstance(site, list) else [site]
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("PHYSIONET_", "CLIMB_"))}
    full_env.update(env or {})
    full_env["PYTHONPATH"] = os.pathsep.join([*map(str, sites), str(REPO)])
    extra = ["--data-dir", str(data)] if data else []
    p = subprocess.Popen(
        [sys.executable, "-m", "climb_cli", *extra, *args],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env, cwd=REPO,
    )  # fmt: skip
    out, err = p.communicate(timeout=300)
    return subprocess.CompletedProcess([str(p.pid), *args], p.returncode, out, err)


# -- a server the toy source downloads from ---------------------------------------------------


class _Handler(BaseFakeHandler):
    def route(self) -> None:
        blob = self.fake.blobs.get(self.url_path.lstrip("/"))
        if blob is None:
            self.respond(404, b"no")
            return
        serve_bytes(self, blob, content_type="application/octet-stream", mtime=1_600_000_000)


class _Server(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self) -> None:
        super().__init__()
        self.blobs: dict[str, bytes] = {}
        for i in range(6):
            part, cls = ("train" if i < 4 else "test"), ("low" if i % 2 else "high")
            self.blobs[f"{part}/{cls}_{i}.txt"] = " ".join(str(i + k) for k in range(3)).encode()
        listing = [
            {"path": p, "size": len(b), "sha256": hashlib.sha256(b).hexdigest()}
            for p, b in self.blobs.items()
        ]
        self.blobs["index.json"] = json.dumps(listing).encode()


@pytest.fixture(scope="module")
def toy_server() -> Iterator[_Server]:
    with _Server() as srv:
        yield srv


@pytest.fixture(scope="module")
def toy_site(toy_server: _Server, tmp_path_factory: pytest.TempPathFactory) -> Path:
    files = example_files()
    assert set(files) == {
        "pyproject.toml",
        "climb_toy/__init__.py",
        "climb_toy/source.py",
        "climb_toy/steps.py",
        "climb_toy/recipes/__init__.py",
        "climb_toy/recipes/toy_numbers.yaml",
    }
    recipe = "climb_toy/recipes/toy_numbers.yaml"
    assert DOC_BASE in files[recipe]
    files[recipe] = files[recipe].replace(DOC_BASE, toy_server.base_url)
    return install_plugin(tmp_path_factory.mktemp("plugins"), "climb-toy", files)


# -- using it ---------------------------------------------------------------------------------


def test_an_installed_plugin_adds_a_source_kind_a_step_and_a_recipe(toy_site: Path, tmp_path: Path) -> None:
    r = climb("list", "--json", site=toy_site)
    assert r.returncode == 0, r.stderr
    rows = {row["name"]: row for row in json.loads(r.stdout)}
    assert rows["toy_numbers"]["origin"] == "plug-in climb-toy"
    assert rows["ptbxl"]["origin"] == "climb"
    table = climb("list", "--source", "toy-files", site=toy_site)
    assert "toy_numbers" in table.stdout and "plug-in climb-toy" in table.stdout, table.stdout
    info = climb("info", "toy_numbers", site=toy_site)
    assert info.returncode == 0, info.stderr
    assert "origin        plug-in climb-toy" in info.stdout, info.stdout
    steps = climb("steps", site=toy_site)
    assert "toy.read_numbers" in steps.stdout, steps.stdout + steps.stderr
    assert "from plug-in climb-toy (entry point climb.steps toy = climb_toy.steps)" in steps.stdout

    data = tmp_path / "data"
    dl = climb("download", "toy_numbers", site=toy_site, data=data)
    assert dl.returncode == 0, dl.stdout + dl.stderr
    assert (data / "raw" / "toy_numbers" / "train" / "low_1.txt").read_bytes() == b"1 2 3"
    pre = climb("preprocess", "toy_numbers", "--workers", "2", "--json", site=toy_site, data=data)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    summary = json.loads(pre.stdout)
    summary = summary[0] if isinstance(summary, list) else summary
    assert summary["workers"] == 2 and summary["shards"] >= 2, summary
    shards = sorted((data / "processed" / "toy_numbers").rglob("*.parquet"))
    table = pq.read_table(shards).to_pylist() if shards else []
    by_id = {row["id"]: row for row in table}
    assert len(by_id) == 6, by_id.keys()
    assert list(by_id["train/low_1.txt"]["signal"]) == [2.0, 4.0, 6.0]  # the plug-in step, scale 2
    # the step ran in loky's worker processes, which loaded the plug-in themselves
    assert all(row["worker_pid"] != int(pre.args[0]) for row in table)
    assert climb("verify", "toy_numbers", site=toy_site, data=data).returncode == 0


def test_a_plugin_step_runs_on_dask_workers(toy_site: Path, tmp_path: Path) -> None:
    """Dask's worker processes (a LocalCluster) resolve the plug-in step themselves too."""
    pytest.importorskip("distributed")
    data = tmp_path / "data"
    assert climb("download", "toy_numbers", site=toy_site, data=data).returncode == 0
    pre = climb("preprocess", "toy_numbers", "--engine", "dask", "--workers", "2", site=toy_site, data=data)
    assert pre.returncode == 0, pre.stdout + pre.stderr
    rows = pq.read_table(sorted((data / "processed" / "toy_numbers").rglob("*.parquet"))).to_pylist()
    assert len(rows) == 6 and all(row["worker_pid"] != int(pre.args[0]) for row in rows)
    assert [list(row["signal"]) for row in rows if row["id"] == "train/low_1.txt"] == [[2.0, 4.0, 6.0]]


def test_plugins_load_only_when_needed(toy_site: Path, tmp_path: Path) -> None:
    """A broken plug-in does not stop commands that need no sources, steps or recipes."""
    broken = install_plugin(
        tmp_path, "climb-broken", {"climb_broken/__init__.py": "import no_such_module_anywhere\n"},
        {"climb.steps": {"broken": "climb_broken"}},
    )  # fmt: skip
    assert climb("--help", site=[broken]).returncode == 0
    r = climb("steps", site=[broken])
    assert r.returncode == 2
    line = r.stderr.strip()
    assert "\n" not in line, line
    assert "plug-in climb-broken (entry point climb.steps broken = climb_broken) failed to load" in line
    assert "ModuleNotFoundError" in line and "pip uninstall climb-broken" in line
    assert "CLIMB_PLUGINS=0" in line
    r = climb("list", "--json", site=[broken])
    assert r.returncode == 2 and "climb-broken" in r.stderr
    # the way out the message gives: climb without plug-ins
    r = climb("steps", site=[broken], env={"CLIMB_PLUGINS": "0"})
    assert r.returncode == 0 and "ecg.resample" in r.stdout, r.stderr


# -- names taken twice: an error naming both, never a silent override ---------------------------


CLASH_STEP = """
from climb_cli.steps.base import Sample, StepParams, step


@step("{name}", StepParams)
def again(sample: Sample, p: StepParams) -> Sample:
    return sample
"""

CLASH_SOURCE = """
from climb_cli.sources.base import Source


class Again(Source):
    kind = "{kind}"
"""


def _one_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    line = r.stderr.strip()
    assert line.startswith("climb: error: ") and "\n" not in line, line
    return line


def test_a_plugin_step_with_a_built_in_name_is_an_error_naming_both(tmp_path: Path) -> None:
    site = install_plugin(
        tmp_path, "climb-clash", {"climb_clash/__init__.py": CLASH_STEP.format(name="ecg.resample")},
        {"climb.steps": {"clash": "climb_clash"}},
    )  # fmt: skip
    line = _one_line(climb("steps", site=site))
    assert "step 'ecg.resample' of plug-in climb-clash (entry point climb.steps clash = climb_clash)" in line
    assert (
        "already registered by climb (climb_cli.steps.ecg)" in line and "`pip uninstall climb-clash`" in line
    )
    # every later need of the steps in the same process fails the same way (not once, then silently)
    line = _one_line(climb("info", "ptbxl", site=site))
    assert "climb-clash" in line, line


def test_two_plugins_with_one_step_name_is_an_error_naming_both(tmp_path: Path) -> None:
    a = install_plugin(
        tmp_path, "climb-a", {"climb_a/__init__.py": CLASH_STEP.format(name="toy.same")},
        {"climb.steps": {"a": "climb_a"}},
    )  # fmt: skip
    b = install_plugin(
        tmp_path, "climb-b", {"climb_b/__init__.py": CLASH_STEP.format(name="toy.same")},
        {"climb.steps": {"b": "climb_b"}},
    )  # fmt: skip
    line = _one_line(climb("steps", site=[a, b]))
    assert "step 'toy.same' of plug-in climb-b" in line and "already registered by plug-in climb-a" in line


def test_a_plugin_source_kind_with_a_built_in_name_is_an_error_naming_both(tmp_path: Path) -> None:
    site = install_plugin(
        tmp_path, "climb-kinds", {"climb_kinds/__init__.py": CLASH_SOURCE.format(kind="physionet")},
        {"climb.sources": {"kinds": "climb_kinds"}},
    )  # fmt: skip
    line = _one_line(climb("info", "ptbxl", site=site))
    assert (
        "source kind 'physionet' of plug-in climb-kinds (entry point climb.sources kinds = climb_kinds)"
        in line
    )
    assert "already registered by climb (climb_cli.sources.physionet)" in line


def test_a_plugin_recipe_with_a_built_in_name_is_an_error_naming_both_folders(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog

    ptbxl = Catalog().paths()["ptbxl"]
    site = install_plugin(
        tmp_path, "climb-recipes",
        {"climb_recipes/__init__.py": "", "climb_recipes/ptbxl.yaml": ptbxl.read_text()},
        {"climb.recipes": {"mine": "climb_recipes"}},
    )  # fmt: skip
    line = _one_line(climb("list", site=site))
    assert "recipe 'ptbxl' of plug-in climb-recipes (entry point climb.recipes mine = climb_recipes) " in line
    assert str(site / "climb_recipes" / "ptbxl.yaml") in line and f"the recipe {ptbxl} (climb)" in line
    # a user's own folder still overrides on purpose (--recipes): no error
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "ptbxl.yaml").write_text(ptbxl.read_text())
    assert climb("--recipes", str(mine), "info", "ptbxl", site=[]).returncode == 0


RECIPES_FN = '''
"""Recipes from a callable: the folder it returns."""

from pathlib import Path


def recipes_dir() -> Path:
    return Path(__file__).parent / "{folder}"
'''


def test_recipes_from_a_callable_and_two_plugins_with_one_recipe_name(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog

    text = Catalog().paths()["ptbxl"].read_text().replace("name: ptbxl\n", "name: toy_a\n")
    a = install_plugin(
        tmp_path, "climb-fn",
        {"climb_fn/__init__.py": RECIPES_FN.format(folder="yaml"), "climb_fn/yaml/toy_a.yaml": text},
        {"climb.recipes": {"fn": "climb_fn:recipes_dir"}},
    )  # fmt: skip
    r = climb("list", "--json", site=a)
    assert r.returncode == 0, r.stderr
    assert {row["name"]: row["origin"] for row in json.loads(r.stdout)}["toy_a"] == "plug-in climb-fn"
    b = install_plugin(
        tmp_path, "climb-pkg", {"climb_pkg/__init__.py": "", "climb_pkg/toy_a.yaml": text},
        {"climb.recipes": {"pkg": "climb_pkg"}},
    )  # fmt: skip
    line = _one_line(climb("info", "ptbxl", site=[a, b]))
    assert f"recipe 'toy_a' of plug-in climb-pkg (entry point climb.recipes pkg = climb_pkg) ({b}" in line
    assert f"the recipe {a / 'climb_fn' / 'yaml' / 'toy_a.yaml'} (plug-in climb-fn)" in line
    # a callable giving a folder that is not there
    c = install_plugin(
        tmp_path, "climb-nofolder", {"climb_nofolder/__init__.py": RECIPES_FN.format(folder="missing")},
        {"climb.recipes": {"gone": "climb_nofolder:recipes_dir"}},
    )  # fmt: skip
    line = _one_line(climb("list", site=c))
    assert (
        "plug-in climb-nofolder (entry point climb.recipes gone = climb_nofolder:recipes_dir): recipe folder"
        in line
    )
    assert "does not exist; reinstall the plug-in" in line
    # a callable that raises: the same line as an import that fails
    raises = "def recipes_dir():\n    raise RuntimeError('no config')\n"
    d = install_plugin(
        tmp_path, "climb-raises", {"climb_raises/__init__.py": raises},
        {"climb.recipes": {"raises": "climb_raises:recipes_dir"}},
    )  # fmt: skip
    line = _one_line(climb("list", site=d))
    assert (
        "plug-in climb-raises (entry point climb.recipes raises = climb_raises:recipes_dir) failed to load"
        in line
    )
    assert "(RuntimeError: no config)" in line and "`pip uninstall climb-raises`" in line
