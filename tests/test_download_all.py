"""`climb download --all`: every dataset that can be downloaded is, the others are listed at the end
with why (no credentials / access not granted / manual / failed), and the exit code is 1."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from climb_cli import catalog
from climb_cli.acquire import download
from climb_cli.catalog import Catalog, packaged_dir
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.settings import Settings
from tests.conftest import TEST_PASSWORD, write_recipe
from tests.test_auth import _env, climb_in_process


def _recipes(tmp_path: Path) -> Path:
    folder = tmp_path / "recipes"
    pn = "  - kind: physionet\n    project: {p}\n    version: '1.0.3'\n    include: [{f}]\n"
    write_recipe(folder, "toyopen", pn.format(p="ptb-xl", f="LICENSE.txt"))
    write_recipe(folder, "toybroken", pn.format(p="ptb-xl", f="RECORDS"))  # served with 503 forever
    write_recipe(folder, "toysecret", pn.format(p="secret-ecg", f="LICENSE.txt"), access="credentialed")
    manual = "  - kind: manual\n    url: https://nda.nih.gov/request\n    files: [{path: scans.zip}]\n"
    write_recipe(folder, "toymanual", manual)
    # only these and PTB-XL's own benchmark (served by the fake PhysioNet): the other packaged recipes' hosts
    # are not faked here (CLIMB_PACKAGED_RECIPES=0)
    superdiagnostic = packaged_dir() / "ecg" / "ptbxl_superdiagnostic.yaml"
    (folder / "ptbxl_superdiagnostic.yaml").write_text(superdiagnostic.read_text())
    return folder


def _rows(stdout: str) -> dict[str, tuple[str, str]]:
    """dataset -> (why not, what to do) from the closing table."""
    out = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) == 3 and cells[0] not in ("", "dataset"):
            out[cells[0]] = (cells[1], cells[2])
    return out


def test_download_all_continues_past_every_kind_of_failure_and_sums_up(
    tmp_path: Path, server: FakePhysioNet, mirror_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server.faults.add("status", path_glob="*/RECORDS", status=503, times=-1)
    # the shipped corpus reduced to ptbxl_superdiagnostic (served by the fake PhysioNet): --all over the
    # real corpus would reach Kaggle, TCIA, ISIC... (no network in tests)
    shipped = tmp_path / "shipped"
    (shipped / "ecg").mkdir(parents=True)
    shutil.copy(
        packaged_dir() / "ecg" / "ptbxl_superdiagnostic.yaml", shipped / "ecg" / "ptbxl_superdiagnostic.yaml"
    )
    monkeypatch.setattr(catalog, "packaged_dir", lambda: shipped)
    recipes = _recipes(tmp_path)
    data = tmp_path / "data"
    env = _env(tmp_path, server, CLIMB_RETRIES="1", CLIMB_BACKOFF="0.01", CLIMB_PACKAGED_RECIPES="0")
    r = climb_in_process("--data-dir", str(data), "--recipes", str(recipes), "download", "--all", env=env)
    assert r.returncode == 1
    rows = _rows(r.stdout)
    assert set(rows) == {"toybroken", "toymanual", "toysecret"}, r.stdout
    assert rows["toysecret"][0] == "no credentials"
    assert rows["toysecret"][1].startswith("PhysioNet needs you to sign in for secret-ecg/1.0.3")
    assert rows["toymanual"] == ("manual", "manual: 0 of 1 files placed (see `climb auth check toymanual`)")
    assert rows["toybroken"][0] == "failed"
    assert rows["toybroken"][1].startswith("1 file(s) failed; first: gave up on http://127.0.0.1:")
    assert "/RECORDS after 2 tries: HTTP 503" in rows["toybroken"][1]
    assert r.stderr.strip().endswith(
        "climb: error: 3 of 5 dataset(s) could not be downloaded completely (see the table above)"
    )
    # what could be downloaded was, including datasets after the failures (alphabetical order)
    assert (data / "raw" / "toyopen" / "LICENSE.txt").read_bytes() == (
        mirror_copy / "LICENSE.txt"
    ).read_bytes()
    assert len(list((data / "raw" / "ptbxl_superdiagnostic" / "records500").rglob("*.dat"))) == 30
    assert (
        "toymanual: manual: 0 of 1 files placed in " in r.stdout
        and "  from:  https://nda.nih.gov/request" in r.stdout
    )
    # with an account that lacks this version's DUA: access not granted, with where to sign it
    env.update(PHYSIONET_USERNAME="cy", PHYSIONET_PASSWORD=TEST_PASSWORD)
    r = climb_in_process("--data-dir", str(data), "--recipes", str(recipes), "download", "--all", env=env)
    rows = _rows(r.stdout)
    assert r.returncode == 1 and rows["toysecret"][0] == "access not granted"
    assert f"sign it at {server.base_url}/content/secret-ecg/1.0.3/" in rows["toysecret"][1]
    assert "toyopen: 0 downloaded (0 B), 1 already present, 0 failed" in r.stdout


def test_all_done_is_exit_0_without_a_table(tmp_path: Path, server: FakePhysioNet) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(
        recipes,
        "toyopen",
        "  - kind: physionet\n    project: ptb-xl\n    version: '1.0.3'\n    include: [LICENSE.txt]\n",
    )
    env = _env(tmp_path, server)
    args = (
        "--data-dir",
        str(tmp_path / "data"),
        "--recipes",
        str(recipes),
        "download",
        "toyopen",
        "ptbxl_superdiagnostic",
    )
    r = climb_in_process(*args, env=env)
    assert r.returncode == 0, r.stderr
    assert "not downloaded" not in r.stdout and r.stderr == ""


def test_report_categories_for_one_recipe_with_several_sources(
    tmp_path: Path, server: FakePhysioNet, no_credentials: None
) -> None:
    """One source refused does not stop the recipe's other sources; each problem is listed."""
    pn = "    kind: physionet\n    version: '1.0.3'\n    include: [LICENSE.txt]\n"
    src = (
        f"  - id: open\n    project: ptb-xl\n{pn}"
        f"  - id: secret\n    into: secret\n    project: secret-ecg\n{pn}"
        "  - id: forms\n    kind: manual\n    into: forms\n    files: [{path: a.csv}]\n"
    )
    recipe = Catalog([write_recipe(tmp_path / "r", "toymix", src).parent]).load("toymix")
    settings = Settings(data_dir=tmp_path / "data", mirrors={"physionet": server.base_url})
    report = download(recipe, settings)
    assert [(p.category, p.source) for p in report.problems] == [
        ("no credentials", "secret"),
        ("manual", "forms"),
    ]
    assert report.category == "no credentials" and report.why.endswith("(+1 more problem(s))")
    assert report.count("downloaded") == 1 and (settings.raw_dir("toymix") / "LICENSE.txt").is_file()
