"""The command line as a user runs it: listing, info, exit codes, dry runs, and the demo."""

from __future__ import annotations

import json
import os
from pathlib import Path

from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import run_climb, write_recipe


def test_list_and_info_json() -> None:
    r = run_climb("list", "--json")
    assert r.returncode == 0
    names = {d["name"]: d for d in json.loads(r.stdout)}
    assert names["ptbxl"]["sources"] == [
        {"id": "data", "kind": "physionet", "project": "ptb-xl", "version": "1.0.3"}
    ]
    r = run_climb("info", "ptbxl", "--json")
    info = json.loads(r.stdout)
    assert info["classes"] == ["NORM", "MI", "STTC", "CD", "HYP"] and len(info["recipe_hash"]) == 16


def test_exit_codes() -> None:
    r = run_climb("info", "no-such-dataset")
    assert (
        r.returncode == 2
        and r.stderr.strip() == "climb: error: no recipe named 'no-such-dataset' (see `climb list`)"
    )
    assert run_climb("download").returncode == 2  # nothing named
    assert run_climb("preprocess", "--workers", "0", "ptbxl").returncode == 2
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
    assert "toyecg: 60 files, " in r.stdout and f"({total} bytes)" in r.stdout
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
    assert r.stderr.startswith("climb: error: toyecg: needs ") and " more bytes but " in r.stderr


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
    r = run_climb("--data-dir", str(tmp_path / "demo"), "verify", "ptbxl", "--outputs")
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
    assert {"ptbxl", "labone", "labtwo"} <= set(listed) and "error" not in listed["labone"]
    assert listed["labtwo"]["error"].endswith("(YAML reads an unquoted 1.10 as the number 1.1)")
    assert r.stderr.strip().endswith(
        'labtwo.yaml:17 sources[0].version: quote it: version: "2.0" '
        "(YAML reads an unquoted 1.10 as the number 1.1)"
    )
    write_recipe(b, "labtwo", "  - kind: physionet\n    project: two\n    version: '2.0'\n")
    r = run_climb("list", "--json", env={"CLIMB_RECIPES": f"{a}{os.pathsep}{b}"})
    names = {d["name"] for d in json.loads(r.stdout)}
    assert {"ptbxl", "labone", "labtwo"} <= names
    r = run_climb("list", env={"CLIMB_RECIPES": str(tmp_path / "missing")})
    assert r.returncode == 2 and "recipe folder" in r.stderr and "does not exist" in r.stderr


def test_dataset_names_accept_climb_keys_and_usual_spellings(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog, normalise_name

    for spelling in ("mimic-cxr", "mimic_cxr", "MIMIC-CXR", "Mimic CXR", " mimic_cxr "):
        assert normalise_name(spelling) == "mimic-cxr"
    folder = tmp_path / "r"
    write_recipe(folder, "pad-ufes-20", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    cat = Catalog([folder])
    assert cat.load("pad_ufes_20").name == cat.load("PAD-UFES-20").name == "pad-ufes-20"
    assert [r.name for r in cat.resolve(["pad_ufes_20", "pad-ufes-20", "PTBXL"], False)] == [
        "pad-ufes-20",
        "ptbxl",
    ]


def test_an_unknown_variant_is_a_one_line_error(tmp_path: Path) -> None:
    r = run_climb("--data-dir", str(tmp_path), "preprocess", "ptbxl", "--variant", "small")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "ptbxl: unknown variant 'small' (variants: none)" in r.stderr


def test_climb_keys_as_aliases(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog

    folder = tmp_path / "r"
    path = write_recipe(folder, "cbis-ddsm", "  - kind: physionet\n    project: one\n    version: '1.0'\n")
    path.write_text(path.read_text().replace("name: cbis-ddsm\n", "name: cbis-ddsm\naliases: [cbis]\n"))
    cat = Catalog([folder])
    assert cat.load("CBIS").name == "cbis-ddsm" and cat.load("cbis_ddsm").name == "cbis-ddsm"
    assert cat.load("cbis").aliases == ["cbis"]
