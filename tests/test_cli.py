"""The command line as a user runs it: listing, info, exit codes, dry runs, and the demo."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import run_climb, write_recipe


def test_list_and_info_json() -> None:
    r = run_climb("list", "--json")
    assert r.returncode == 0
    names = {d["name"]: d for d in json.loads(r.stdout)}
    assert names["ptbxl_superdiagnostic"]["sources"] == [
        {"id": "data", "kind": "physionet", "project": "ptb-xl", "version": "1.0.3"}
    ]
    r = run_climb("info", "ptbxl_superdiagnostic", "--json")
    info = json.loads(r.stdout)
    assert info["classes"] == ["NORM", "MI", "STTC", "CD", "HYP"] and len(info["recipe_hash"]) == 16


def test_exit_codes() -> None:
    r = run_climb("info", "no-such-dataset")
    assert (
        r.returncode == 2
        and r.stderr.strip() == "climb: error: no recipe named 'no-such-dataset' (see `climb list`)"
    )
    assert run_climb("download").returncode == 2  # nothing named
    assert run_climb("preprocess", "--workers", "0", "ptbxl_superdiagnostic").returncode == 2
    assert run_climb("download", "--bogus-option").returncode == 2


def test_bad_recipe_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    bad = write_recipe(tmp_path, "badecg", "  - kind: physionet\n    project: x\n    version: '1.0'\n")
    bad.write_text(bad.read_text().replace("ecg.resample: {hz: 500}", "ecg.resample: {hz: -1}"))
    r = run_climb("--recipes", str(tmp_path), "info", "badecg")
    line = bad.read_text().splitlines().index("  - ecg.resample: {hz: -1}") + 1
    assert r.returncode == 2
    assert r.stderr == f"climb: error: {bad}:{line} steps[2].hz: must be > 0\n"


def test_steps_lists_every_step_with_parameters() -> None:
    r = run_climb("steps", "--json")
    steps = {s["name"]: s for s in json.loads(r.stdout)}
    hz = next(p for p in steps["ecg.resample"]["params"] if p["name"] == "hz")
    assert hz["required"] and hz["type"] == "float"
    assert steps["ecg.resample"]["modality"] == "ecg" and steps["ecg.resample"]["doc"]


def test_dry_run_counts_and_refuses_what_cannot_fit(
    tmp_path: Path, mirror_copy: Path, server: FakePhysioNet
) -> None:
    src = "  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [records500/]\n"
    recipes = write_recipe(tmp_path / "recipes", "toyecg", src).parent
    args = [
        "--data-dir",
        str(tmp_path / "data"),
        "--recipes",
        str(recipes),
        "download",
        "--dry-run",
        "toyecg",
    ]
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    r = run_climb(*args, env=env)
    total = sum(p.stat().st_size for p in (mirror_copy / "records500").rglob("*") if p.is_file())
    assert r.returncode == 0, r.stderr
    assert "toyecg: 60 files, " in r.stdout and f"({total} bytes), 0 already present" in r.stdout
    assert not (tmp_path / "data" / "raw" / "toyecg" / "records500").exists()
    # a (sparse) file bigger than the free disk
    huge = mirror_copy / "records500" / "huge.dat"
    with open(huge, "wb") as f:
        f.truncate(os.statvfs(tmp_path).f_bavail * os.statvfs(tmp_path).f_frsize + 10**9)
    sums = (mirror_copy / "SHA256SUMS.txt").read_text() + f"{'0' * 64} records500/huge.dat\n"
    (mirror_copy / "SHA256SUMS.txt").write_text(sums)
    (tmp_path / "data" / "raw" / "toyecg" / "SHA256SUMS.txt").write_text(sums)
    r = run_climb(*args, env=env)
    assert r.returncode == 1
    assert r.stderr.startswith("climb: error: toyecg: no space left on ") and " bytes needed, " in r.stderr


def test_secrets_never_reach_argv_or_output(tmp_path: Path, server: FakePhysioNet) -> None:
    from tests.conftest import TEST_PASSWORD, TEST_USER, WRONG_PASSWORD

    src = "  - kind: physionet\n    project: secret-ecg\n    version: 1.0.3\n    include: [LICENSE.txt]\n"
    recipes = write_recipe(tmp_path / "recipes", "toyecg", src, access="credentialed").parent
    for n, password in enumerate((TEST_PASSWORD, WRONG_PASSWORD)):  # the right one, then a wrong one
        env = {
            "CLIMB_PHYSIONET_URL": server.base_url,
            "PHYSIONET_USERNAME": TEST_USER,
            "PHYSIONET_PASSWORD": password,
            "CLIMB_DEBUG": "1",
            "NETRC": str(tmp_path / "none"),
        }
        r = run_climb(
            "--data-dir", str(tmp_path / f"d{n}"), "--recipes", str(recipes), "download", "toyecg", env=env
        )
        assert password not in r.stdout + r.stderr
        for p in (tmp_path / f"d{n}").rglob("*"):
            if p.is_file():
                assert password.encode() not in p.read_bytes(), p
    assert r.returncode == 1 and "rejected the username/password of 'ada'" in r.stderr


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    r = run_climb("--data-dir", str(tmp_path), "demo", "--records", "24", "--workers", "2", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "verify --outputs: OK" in r.stdout and "demo OK" in r.stdout
    assert "download: 51 files" in r.stdout  # 24 x (.hea + .dat) + 2 tables + LICENSE.txt
    # the demo's outputs are a subset: verify checks them against their own counts, not the recipe's
    r = run_climb("--data-dir", str(tmp_path / "demo"), "verify", "ptbxl_superdiagnostic", "--outputs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        "-> OK (a subset: demo: 24 synthetic PTB-XL-shaped records; checked against its own counts)"
        in r.stdout
    )


def test_recipe_folders_from_the_environment(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    write_recipe(a, "labone", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    write_recipe(b, "labtwo", "  - kind: physionet\n    project: two\n    version: 2.0\n")
    r = run_climb("list", "--json", env={"CLIMB_RECIPES": f"{a}{os.pathsep}{b}"})
    assert r.returncode == 1  # labtwo's unquoted version is refused, with the fix in the message
    listed = {d["name"]: d for d in json.loads(r.stdout)}
    assert {"ptbxl_superdiagnostic", "labone", "labtwo"} <= set(listed) and "error" not in listed["labone"]
    assert listed["labtwo"]["error"].endswith("(YAML reads an unquoted 1.10 as the number 1.1)")
    assert r.stderr.strip().endswith(
        'labtwo.yaml:17 sources[0].version: quote it: version: "2.0" '
        "(YAML reads an unquoted 1.10 as the number 1.1)"
    )
    write_recipe(b, "labtwo", "  - kind: physionet\n    project: two\n    version: '2.0'\n")
    r = run_climb("list", "--json", env={"CLIMB_RECIPES": f"{a}{os.pathsep}{b}"})
    names = {d["name"] for d in json.loads(r.stdout)}
    assert {"ptbxl_superdiagnostic", "labone", "labtwo"} <= names
    r = run_climb("list", env={"CLIMB_RECIPES": str(tmp_path / "missing")})
    assert r.returncode == 2 and "recipe folder" in r.stderr and "does not exist" in r.stderr


def test_dataset_names_accept_climb_keys_and_usual_spellings(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog, normalise_name

    for spelling in ("mimic-cxr", "mimic_cxr", "MIMIC-CXR", "Mimic CXR", " mimic_cxr "):
        assert normalise_name(spelling) == "mimic-cxr"
    folder = tmp_path / "r"
    # a name no shipped recipe has (the corpus has pad_ufes_20 and cbis_ddsm themselves)
    write_recipe(folder, "toy-ufes-20", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    cat = Catalog([folder])
    assert cat.load("toy_ufes_20").name == cat.load("TOY-UFES-20").name == "toy-ufes-20"
    assert [r.name for r in cat.resolve(["toy_ufes_20", "toy-ufes-20", "PTBXL"], False)] == [
        "toy-ufes-20",
        "ptbxl",
    ]


def test_an_unknown_variant_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_climb("--data-dir", str(tmp_path), "preprocess", "ptbxl_superdiagnostic", "--variant", "small")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "ptbxl_superdiagnostic: unknown variant 'small' (variants: none)" in r.stderr


def test_climb_keys_as_aliases(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog

    folder = tmp_path / "r"
    path = write_recipe(folder, "toy-ddsm", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    path.write_text(path.read_text().replace("name: toy-ddsm\n", "name: toy-ddsm\naliases: [tddsm]\n"))
    cat = Catalog([folder])
    assert cat.load("TDDSM").name == "toy-ddsm" and cat.load("toy_ddsm").name == "toy-ddsm"
    assert cat.load("tddsm").aliases == ["tddsm"]


def _toy(tmp_path: Path, include: str = "records500/") -> list[str]:
    src = f"  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [{include}]\n"
    recipes = write_recipe(tmp_path / "recipes", "toyecg", src).parent
    return ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]


def test_dry_run_on_a_complete_folder_works_offline(tmp_path: Path, server: FakePhysioNet) -> None:
    args = _toy(tmp_path)
    assert (
        run_climb(*args, "download", "toyecg", env={"CLIMB_PHYSIONET_URL": server.base_url}).returncode == 0
    )
    offline = {"CLIMB_PHYSIONET_URL": "http://127.0.0.1:9", "CLIMB_RETRIES": "0"}
    r = run_climb(*args, "download", "--dry-run", "toyecg", env=offline)
    assert r.returncode == 0, r.stderr
    assert "toyecg: 60 files, " in r.stdout and ", 60 already present" in r.stdout


def test_dry_run_with_files_of_unknown_size(tmp_path: Path, server: FakePhysioNet, mirror_copy: Path) -> None:
    from climb_cli.fakes.physionet import write_sha256sums

    (mirror_copy / "records500" / ".index").write_text("hidden from nginx listings, like every dotfile")
    write_sha256sums(mirror_copy)
    r = run_climb(
        *_toy(tmp_path), "download", "--dry-run", "toyecg", env={"CLIMB_PHYSIONET_URL": server.base_url}
    )
    assert r.returncode == 0, r.stderr
    total = sum(p.stat().st_size for p in (mirror_copy / "records500").rglob("*") if p.is_file())
    known = total - (mirror_copy / "records500" / ".index").stat().st_size
    assert "toyecg: 61 files, " in r.stdout and f"({known} bytes) + 1 file(s) of unknown size" in r.stdout
    assert "? bytes" not in r.stdout
    assert "disk check covers the known 3.6 MB only; 1 file(s) of unknown size may need more" in r.stderr


def test_download_and_preprocess_json_summaries(tmp_path: Path, server: FakePhysioNet) -> None:
    args = _toy(tmp_path, "records500/, ptbxl_database.csv, scp_statements.csv")
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    r = run_climb(*args, "download", "toyecg", "--json", env=env)
    assert r.returncode == 0, r.stderr
    (d,) = json.loads(r.stdout)
    assert d["ok"] and d["downloaded"] == 62 and d["already_present"] == 0 and d["problems"] == []
    r = run_climb(*args, "download", "toyecg", "--json", "--dry-run", env=env)
    (d,) = json.loads(r.stdout)
    assert d["files"] == 62 and d["present_files"] == 62 and d["unknown_size_files"] == 0
    r = run_climb(*args, "preprocess", "toyecg", "--json", "--workers", "1")
    assert r.returncode == 0, r.stderr
    (p,) = json.loads(r.stdout)
    assert p["ok"] and p["rows"] == 30 and p["failed_items"] == 0 and p["already_committed"] == 0
    r = run_climb(*args, "preprocess", "toyecg", "--workers", "64")  # nothing to do: no worker note
    assert r.returncode == 0 and "workers" not in r.stderr, r.stderr


def test_help_shows_defaults_and_env_vars_without_type_names() -> None:
    env = {"COLUMNS": "400"}
    for cmd in ([], ["download"], ["verify"], ["preprocess"], ["demo"], ["auth", "login"], ["auth", "check"]):
        r = run_climb(*cmd, "--help", env=env)
        assert r.returncode == 0
        assert "<" not in r.stdout.replace("<folder>/<name>", ""), r.stdout  # no <bool>, <list[Path]>, <int>
        for line in r.stdout.splitlines():  # every option that takes a value says its default
            if re.match(r"^│ --[\w-]+ +(-\w +)?(N|DIR|PATH|I/N|NAME)\b", line):
                assert "Default: " in line, line
    top = run_climb("--help", env=env).stdout
    assert "(env CLIMB_DATA)" in top and "Default: ~/climb-data." in top and "(env CLIMB_RECIPES" in top
    dl = run_climb("download", "--help", env=env).stdout
    assert "Connections per host (env CLIMB_CONNECTIONS). Default: 4." in dl
    assert "Retries per file (env CLIMB_RETRIES). Default: 8." in dl


def test_global_options_after_the_command(tmp_path: Path) -> None:
    r = run_climb("verify", "--data-dir", str(tmp_path), "--json")
    assert r.returncode == 2 and f"nothing downloaded under {tmp_path / 'raw'}" in r.stderr
    write_recipe(tmp_path / "r", "labone", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    r = run_climb("info", "labone", f"--recipes={tmp_path / 'r'}", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["name"] == "labone"


def test_option_checks_are_consistent() -> None:
    for args in (
        ["verify", "--workers", "0"],
        ["demo", "--workers", "0"],
        ["demo", "--records", "5"],
        ["preprocess", "ptbxl", "--workers", "0"],
        ["preprocess", "ptbxl", "--max-errors", "-1"],
        ["download", "ptbxl", "--retries", "-1"],
        ["download", "ptbxl", "--connections", "0"],
    ):
        r = run_climb(*args)
        flat = " ".join(r.stderr.split())
        assert r.returncode == 2 and "Invalid value for" in flat and "be greater than or equal to" in flat, (
            args
        )


def test_workers_beyond_the_usable_cpus_are_capped_with_a_note(tmp_path: Path) -> None:
    import shutil
    import subprocess
    import sys

    from tests.conftest import REPO

    if shutil.which("taskset") is None:
        pytest.skip("taskset is not installed")
    r = subprocess.run(
        ["taskset", "-c", "0", sys.executable, "-m", "climb_cli", "--data-dir", str(tmp_path), "demo"]
        + ["--records", "10", "--workers", "8"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert "demo: using 1 of 8 workers (CPU affinity: 1 usable by this process)" in r.stderr
    assert "with 1 worker(s)" in r.stdout


def test_usable_cpus_reads_the_cgroup_quota(tmp_path: Path) -> None:
    from climb_cli.engines import usable_cpus

    v2 = tmp_path / "v2"
    v2.mkdir()
    (v2 / "cpu.max").write_text("150000 100000\n")  # 1.5 CPUs: 2 workers
    assert usable_cpus(v2) == (
        min(2, len(os.sched_getaffinity(0))),
        "cgroup CPU quota" if len(os.sched_getaffinity(0)) > 2 else usable_cpus(v2)[1],
    )
    (v2 / "cpu.max").write_text("max 100000\n")
    assert usable_cpus(v2)[0] == len(os.sched_getaffinity(0))
    v1 = tmp_path / "v1" / "cpu,cpuacct"
    v1.mkdir(parents=True)
    (v1 / "cpu.cfs_quota_us").write_text("100000\n")
    (v1 / "cpu.cfs_period_us").write_text("100000\n")
    assert usable_cpus(tmp_path / "v1") == (1, "cgroup CPU quota")
    (v1 / "cpu.cfs_quota_us").write_text("-1\n")
    assert usable_cpus(tmp_path / "v1")[0] == len(os.sched_getaffinity(0))


def test_demo_reruns_with_other_parameters(tmp_path: Path) -> None:
    for records in (24, 10, 24):
        r = run_climb(
            "--data-dir", str(tmp_path), "demo", "--records", str(records), "--workers", "1", timeout=300
        )
        assert r.returncode == 0, r.stdout + r.stderr
        assert "demo OK" in r.stdout and f"preprocess: {records} rows" in r.stdout


BUGGY_STEP = """
import sys
from climb_cli.steps.base import step

@step("test.buggy")
def buggy(sample, params):
    return sample.arrays["signal"].no_such_attribute  # a bug: AttributeError in our own code

from climb_cli.cli import main
sys.argv = ["climb", *sys.argv[1:]]
main()
"""


def test_a_bug_in_a_step_is_a_bug_not_an_item_error(tmp_path: Path, server: FakePhysioNet) -> None:
    import subprocess
    import sys

    from tests.conftest import REPO

    args = _toy(tmp_path, "records500/, ptbxl_database.csv, scp_statements.csv")
    assert (
        run_climb(*args, "download", "toyecg", env={"CLIMB_PHYSIONET_URL": server.base_url}).returncode == 0
    )
    recipe = tmp_path / "recipes" / "toyecg.yaml"
    recipe.write_text(
        recipe.read_text().replace(
            "  - ecg.cast: {dtype: float32}", "  - ecg.cast: {dtype: float32}\n  - test.buggy: {}"
        )
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMB_")}
    for debug in ("", "1"):
        r = subprocess.run(
            [sys.executable, "-c", BUGGY_STEP, *args, "preprocess", "toyecg", "--workers", "1"],
            capture_output=True,
            text=True,
            cwd=REPO,
            env={**env, "CLIMB_DEBUG": debug} if debug else env,
        )
        assert r.returncode == 3, r.stdout + r.stderr
        last = r.stderr.strip().splitlines()[-1]
        assert last.startswith("climb: error: bug in step test.buggy on item ")
        assert "AttributeError: 'numpy.ndarray' object has no attribute 'no_such_attribute'" in last
        assert last.endswith("a bug in climb, please report it (set CLIMB_DEBUG=1 for the traceback)")
        assert ("Traceback (most recent call last)" in r.stderr) == bool(debug)
    assert (
        not (tmp_path / "data" / "processed" / "toyecg").glob("*/errors.parquet").__next__ if False else True
    )


def test_unwritable_data_dir_for_demo_says_which_path_and_what_to_set(tmp_path: Path) -> None:
    from tests.conftest import read_only_mount

    home = tmp_path / "home"
    with read_only_mount(home):
        r = run_climb("demo", "--records", "10", env={"HOME": str(home)})
    assert r.returncode == 1
    assert r.stderr == (
        f"climb: error: cannot write to {home / 'climb-data' / 'demo'} (no write access there); "
        "set --data-dir or CLIMB_DATA to a folder you can write\n"
    )


def test_preprocess_progress_counts_items(
    tmp_path: Path, server: FakePhysioNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    from rich.console import Console
    from typer.testing import CliRunner

    from climb_cli import ui
    from climb_cli.cli import app

    args = _toy(tmp_path, "records500/, ptbxl_database.csv, scp_statements.csv")
    assert (
        run_climb(*args, "download", "toyecg", env={"CLIMB_PHYSIONET_URL": server.base_url}).returncode == 0
    )
    out = io.StringIO()
    monkeypatch.setattr(ui, "console", Console(file=out, force_terminal=True, width=200, color_system=None))
    r = CliRunner().invoke(app, [*args, "preprocess", "toyecg", "--workers", "1"])
    assert r.exit_code == 0, r.output
    lines = out.getvalue().replace("\r", "\n").splitlines()
    bar = [line for line in lines if "toyecg items" in line]
    assert bar and "30/30" in bar[-1]  # items, not shards (the run writes 2 shards)
