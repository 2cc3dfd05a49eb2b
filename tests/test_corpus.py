"""The whole corpus in one view: `climb list` (filters, local state), `climb info` (the card),
`climb download --all --dry-run`'s totals against the paper's, and the README's generated table."""

from __future__ import annotations

import json
import time
from pathlib import Path

from climb_cli.catalog import Catalog
from climb_cli.corpus import (
    PAPER_BYTES,
    TABLE_BEGIN,
    TABLE_END,
    local_state,
    markdown_table,
    readme_path,
    totals,
    update_readme,
)
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.manifest import Entry, RawManifest
from tests.conftest import fast_settings, write_recipe
from tests.test_auth import _env, climb_in_process

NOTES = "notes: >-\n  CLIMB maps N3 and R to the same class; here they are distinct.\n"


def test_readme_corpus_table_is_generated_from_the_recipes() -> None:
    recipes, broken = Catalog().load_each()
    assert not broken, broken
    text = readme_path().read_text(encoding="utf-8")
    inside = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip("\n")
    assert inside == markdown_table(recipes), (
        "README corpus table is stale: python tools/corpus_table.py --update-readme"
    )
    # one line per recipe, the totals line after the table
    assert sum(1 for line in inside.splitlines() if line.startswith("| `")) == len(recipes)


def test_update_readme_replaces_only_between_the_markers() -> None:
    text = f"a\n{TABLE_BEGIN}\nold\n{TABLE_END}\nb\n"
    assert update_readme(text, "NEW") == f"a\n{TABLE_BEGIN}\nNEW\n{TABLE_END}\nb\n"


def test_local_state_from_absent_to_preprocessed(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path)
    r = Catalog().load("ptbxl")
    raw = settings.raw_dir("ptbxl")
    assert local_state(r, settings) == "absent"
    (raw / "records500").mkdir(parents=True)
    (raw / "records500" / "a.dat").write_bytes(b"12")
    assert local_state(r, settings) == "partial"  # placed, never recorded
    st = (raw / "records500" / "a.dat").stat()
    with RawManifest.for_dataset(raw) as m:
        m.put_batch([Entry("records500/a.dat", 2, st.st_mtime_ns, "0" * 64)])
    assert local_state(r, settings) == "downloaded"
    part = raw / ".climb" / "partial" / "records500"
    part.mkdir(parents=True)
    (part / "b.dat").write_bytes(b"1")
    assert local_state(r, settings) == "partial"  # a transfer was interrupted
    (part / "b.dat").unlink()
    with RawManifest.for_dataset(raw) as m:
        m.touch_verified(["records500/a.dat"], time.time())
    assert local_state(r, settings) == "verified"
    out = settings.processed_dir("ptbxl") / r.content_hash()
    out.mkdir(parents=True)
    (out / "manifest.json").write_text("{}")
    assert local_state(r, settings) == "preprocessed"


def _corpus(tmp_path: Path) -> Path:
    folder = tmp_path / "recipes"
    pn = "  - kind: physionet\n    project: ptb-xl\n    version: '1.0.3'\n    include: [LICENSE.txt]\n"
    write_recipe(folder, "toyopen", pn, extra=NOTES + "samples: 21799\n")
    write_recipe(folder, "toysecret", pn, access="credentialed")
    manual = (
        "  - kind: manual\n    url: https://isip.example/tuh\n    instructions: sign the TUH form\n"
        "    files: [{path: edf.zip}]\n"
    )
    p = write_recipe(folder, "toymanual", manual, extra="samples: 100\n")
    p.write_text(p.read_text().replace("modality: ecg", "modality: eeg"))
    return folder


def test_list_filters_and_state(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    env = _env(tmp_path, CLIMB_PACKAGED_RECIPES="0")  # only the toy recipes
    base = ("--data-dir", str(tmp_path / "data"), "--recipes", str(folder), "list", "--json")
    rows = {d["name"]: d for d in json.loads(climb_in_process(*base, env=env).stdout)}
    assert set(rows) == {"toyopen", "toysecret", "toymanual"}
    assert rows["toyopen"]["state"] == "absent" and rows["toyopen"]["samples"] == 21799
    assert rows["toyopen"]["source"] == "physionet ptb-xl/1.0.3"
    r = climb_in_process(*base, "--modality", "eeg", env=env)
    assert [(d["name"], d["modality"]) for d in json.loads(r.stdout)] == [("toymanual", "eeg")]
    r = climb_in_process(*base, "--access", "credentialed", env=env)
    assert [d["name"] for d in json.loads(r.stdout)] == ["toysecret"]
    r = climb_in_process(*base, "--source", "manual,nsrr", env=env)
    assert [d["name"] for d in json.loads(r.stdout)] == ["toymanual"]
    # the table form shows the state and samples columns
    r = climb_in_process(*base[:-1], "--modality", "eeg", env=env)
    line = next(x for x in r.stdout.splitlines() if "toymanual" in x)
    assert "manual" in line and "100" in line and "absent" in line and r.returncode == 0
    # a broken recipe is still listed, with its error, and the exit code is 1
    (folder / "toybad.yaml").write_text("name: toybad\n")
    r = climb_in_process(*base, env=env)
    assert r.returncode == 1
    bad = next(d for d in json.loads(r.stdout) if d["name"] == "toybad")
    assert "toybad.yaml" in bad["error"]


def test_info_is_the_full_card(tmp_path: Path) -> None:
    folder = _corpus(tmp_path)
    env = _env(tmp_path)
    args = ("--data-dir", str(tmp_path / "data"), "--recipes", str(folder), "info")
    r = climb_in_process(*args, "toyopen", env=env)
    assert r.returncode == 0, r.stderr
    for want in (
        "license       CC-BY-4.0",
        "citation      Wagner P",
        "access steps  none: open access",
        "files         data (physionet): LICENSE.txt",
        "labels        multilabel from scp_codes: NORM, MI, STTC, CD, HYP",
        "splits        column strat_fold:",
        "state         absent",
        "samples       21,799",
        "notes (where CLIMB's definition was changed, and why):",
        "    CLIMB maps N3 and R to the same class; here they are distinct.",
    ):
        assert want in r.stdout, (want, r.stdout)
    card = json.loads(climb_in_process(*args, "toymanual", "--json", env=env).stdout)
    assert card["access_steps"] == ["manual source data: sign the TUH form (https://isip.example/tuh)"]


def test_totals_against_the_paper() -> None:
    recipes = Catalog().load_all()
    t = totals(recipes)
    assert t["raw_bytes"] == sum(int(r.raw_size or 0) for r in recipes)
    assert t["bytes_ratio"] == t["raw_bytes"] / PAPER_BYTES and PAPER_BYTES == 19_010_000_000_000
    assert t["paper_samples"] == 4_510_000


def test_download_all_dry_run_adds_up_the_corpus(tmp_path: Path, server: FakePhysioNet) -> None:
    folder = tmp_path / "recipes"
    pn = "  - kind: physionet\n    project: ptb-xl\n    version: '1.0.3'\n    include: [LICENSE.txt]\n"
    write_recipe(folder, "toyopen", pn)
    env = _env(tmp_path, server, CLIMB_PACKAGED_RECIPES="0")  # the packaged recipes' hosts are not faked
    r = climb_in_process(
        "--data-dir",
        str(tmp_path / "data"),
        "--recipes",
        str(folder),
        "download",
        "--all",
        "--dry-run",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    t = totals([Catalog([folder]).load("toyopen")])  # CLIMB_PACKAGED_RECIPES=0: the one toy recipe
    lines = r.stdout.splitlines()
    head = next(x for x in lines if x.startswith("corpus: "))
    assert head.startswith(f"corpus: {t['recipes']} recipe(s): ")
    assert f"{t['samples']:,} samples ({t['samples_ratio']:.1%} of the paper's 4,510,000)" in head
    assert "of the paper's 19.0 TB" in head
    disk = next(x for x in lines if x.startswith("  disk: "))
    assert "still to download" in disk and disk.endswith("fits")
