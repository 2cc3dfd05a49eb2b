"""Preprocessing: deterministic shards, crash-safe reruns, item errors, worker caps, real records."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet, write_sha256sums
from climb_cli.pipeline import preprocess
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from tests.conftest import REPO, SHARED_WFDB, run_climb, write_recipe

SOURCE = """  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv, scp_statements.csv]
"""


def _recipe(folder: Path, shard: str = "256MB") -> Recipe:
    path = write_recipe(folder, "toyecg", SOURCE)
    path.write_text(path.read_text().replace("shard_size: 256MB", f"shard_size: {shard}"))
    return Catalog([folder]).load("toyecg")


def _hashes(out_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out_dir.rglob("*.parquet"))}


@pytest.fixture
def raw(tmp_path: Path, settings: Settings, server: FakePhysioNet) -> Settings:
    recipe = _recipe(tmp_path / "recipes")
    assert download(recipe, settings).ok
    return settings


def test_rows_labels_and_arrays_are_right(tmp_path: Path, raw: Settings, mirror_copy: Path) -> None:
    recipe = _recipe(tmp_path / "recipes", shard="2MB")
    report = preprocess(recipe, raw, workers=1)
    assert report.rows == 30 and report.errors == 0 and len(report.units) > 3
    table = pq.read_table(report.out_dir / "data")  # the shards read as one table with plain pyarrow
    df = table.to_pandas().set_index("id")
    db = __import__("pandas").read_csv(mirror_copy / "ptbxl_database.csv", dtype=str).set_index("ecg_id")
    import ast

    from climb_cli.demo import SUPERCLASS

    for ecg_id, row in db.iterrows():
        want = {SUPERCLASS[c] for c in ast.literal_eval(row.scp_codes) if c in SUPERCLASS}
        got = df.loc[ecg_id]
        assert set(got["labels"]) == want
        assert list(got["target"]) == [int(c in want) for c in recipe.classes]
        fold = int(row.strat_fold)
        assert got["split"] == ("train" if fold <= 8 else "val" if fold == 9 else "test")
        assert got["patient_id"] == row.patient_id
    first = df.iloc[0]
    signal_ = np.asarray(first["signal"], dtype=np.float32).reshape(first["signal_shape"])
    assert signal_.shape == (12, 5000) and first["sampling_rate"] == 500.0
    import wfdb

    rec = wfdb.rdrecord(str(raw.raw_dir("toyecg") / first["source_files"][0].removesuffix(".hea")))
    np.testing.assert_allclose(signal_, rec.p_signal.T.astype(np.float32), atol=1e-6)
    assert (
        first["source_sha256"][0]
        == hashlib.sha256((raw.raw_dir("toyecg") / first["source_files"][0]).read_bytes()).hexdigest()
    )


def test_same_inputs_give_the_same_bytes_and_reruns_skip(tmp_path: Path, raw: Settings) -> None:
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    first = preprocess(recipe, raw, workers=2)
    h1 = _hashes(first.out_dir)
    other = raw.with_(data_dir=tmp_path / "other")
    shutil.copytree(raw.raw_dir("toyecg"), other.raw_dir("toyecg"))
    h2 = _hashes(preprocess(recipe, other, workers=1).out_dir)
    assert h1 == h2 and len(h1) == len(first.units) + 1  # + errors.parquet
    again = preprocess(recipe, raw, workers=2)
    assert again.skipped_units == len(again.units) and _hashes(again.out_dir) == h1


def test_kill_9_during_preprocess_then_rerun_is_byte_identical(tmp_path: Path, raw: Settings) -> None:
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, shard="100KB")  # about one record per shard: many commits to interrupt
    clean = raw.with_(data_dir=tmp_path / "clean")
    shutil.copytree(raw.raw_dir("toyecg"), clean.raw_dir("toyecg"))
    expected = _hashes(preprocess(recipe, clean, workers=1).out_dir)

    out_dir = raw.processed_dir("toyecg") / recipe.content_hash()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMB_")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "climb_cli",
            "--data-dir",
            str(raw.data_dir),
            "--recipes",
            str(recipes),
            "preprocess",
            "toyecg",
            "--workers",
            "2",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    import psutil

    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 180  # a loaded machine starts the pool slowly
    while (
        time.monotonic() < deadline
        and proc.poll() is None
        and not list((out_dir / ".commits").glob("*.json"))
    ):
        time.sleep(0.02)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else proc.returncode
    children = parent.children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, "loky workers outlived their killed coordinator"
    committed = len(list((out_dir / ".commits").glob("*.json")))
    assert 1 <= committed < len(expected) - 1, "the kill should land mid-run"
    assert not (out_dir / "manifest.json").exists()
    time.sleep(0.5)  # orphaned workers notice their parent is gone
    report = preprocess(recipe, raw, workers=2)
    assert report.skipped_units >= 1
    assert _hashes(out_dir) == expected


def test_a_truncated_record_goes_to_the_errors_file(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path
) -> None:
    dat = mirror_copy / "records500" / "00000" / "00005_hr.dat"
    dat.write_bytes(dat.read_bytes()[:50_000])
    write_sha256sums(mirror_copy)  # upstream itself ships the short file
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes)
    assert download(recipe, settings).ok
    args = ["--data-dir", str(settings.data_dir), "--recipes", str(recipes), "preprocess", "toyecg"]
    r = run_climb(*args, "--workers", "1")
    assert r.returncode == 1
    assert "29 rows in" in r.stdout and "1 failed item(s)" in r.stdout
    assert "toyecg: 1 item(s) failed (more than --max-errors 0)" in r.stderr
    out_dir = settings.processed_dir("toyecg") / recipe.content_hash()
    errors = pq.read_table(out_dir / "errors.parquet").to_pylist()
    assert len(errors) == 1 and errors[0]["id"] == "5"
    assert "00005_hr.dat" in errors[0]["reason"] and "truncated" in errors[0]["reason"]
    assert run_climb(*args, "--max-errors", "1").returncode == 0


def test_many_workers_on_a_small_machine(tmp_path: Path, raw: Settings) -> None:
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    report = preprocess(recipe, raw, workers=64)
    assert report.rows == 30
    assert report.workers <= len(report.units) < 64
    assert report.note.startswith(f"using {report.workers} of 64 workers")


@pytest.mark.skipif(not SHARED_WFDB.is_dir(), reason="../shared/fixtures/wfdb is not present")
def test_real_physionet_records_through_the_pipeline(tmp_path: Path) -> None:
    """Real PTB (s0010_re, 15 leads @1000 Hz) and MACECGDB records, enumerated from files."""
    settings = Settings(data_dir=tmp_path / "data")
    raw = settings.raw_dir("realecg")
    raw.parent.mkdir(parents=True)
    # shared read-only raw data: the dataset's raw folder is a link to it (read in place, never
    # copied); links of single files out of the raw folder are refused (test_index, test_pipeline)
    os.symlink(SHARED_WFDB, raw)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "realecg.yaml").write_text(
        """name: realecg
title: real records
modality: ecg
license: ODC-By-1.0
access: open
sources: [{kind: physionet, project: ptbdb, version: 1.0.0}]
index:
  files: {glob: "*.hea", pattern: "^(?P<record>s0010_re|test01_00s)\\\\.hea$"}
  id: record
  inputs: {record: "{record}"}
  split: {fixed: test}
steps:
  - ecg.read_wfdb: {input: record}
  - ecg.select_leads: {leads: [I, II, V1], missing: zero}
  - ecg.resample: {hz: 500}
  - ecg.bandpass: {low: 0.5, high: 45}
  - ecg.crop_or_pad: {length: 5000}
  - ecg.normalize: {method: zscore}
  - ecg.cast: {dtype: float32}
"""
    )
    recipe = Catalog([recipes]).load("realecg")
    report = preprocess(recipe, settings, workers=1)
    assert report.rows == 2 and report.errors == 0
    rows = {r["id"]: r for r in pq.read_table(report.out_dir / "data").to_pylist()}
    assert rows["s0010_re"]["original_sampling_rate"] == 1000.0
    assert rows["s0010_re"]["signal_shape"] == [3, 5000]
    sig = np.asarray(rows["s0010_re"]["signal"]).reshape(3, 5000)
    assert np.all(np.isfinite(sig)) and abs(sig[0].std() - 1) < 0.05
    assert rows["test01_00s"]["source_files"][0] == "test01_00s.hea"


def test_cluster_parts_then_a_final_commit(tmp_path: Path, raw: Settings) -> None:
    """An array job of 3 tasks (--part i/3) shares the work; a final plain run only commits."""
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    parts = [preprocess(recipe, raw, workers=1, part=(i, 3)) for i in range(3)]
    assert all(p.partial for p in parts)
    assert sum(len(p.units) for p in parts) == len({u.name for p in parts for u in p.units})
    out_dir = parts[0].out_dir
    assert not (out_dir / "manifest.json").exists()
    final = preprocess(recipe, raw, workers=1)
    assert final.skipped_units == len(final.units) == sum(len(p.units) for p in parts)
    assert (out_dir / "manifest.json").is_file() and final.rows == 30


def test_items_that_failed_are_redone_once_their_inputs_come_back(tmp_path: Path, raw: Settings) -> None:
    """Delete raw files, preprocess (those items fail), repair them, preprocess: every row is back."""
    from climb_cli.acquire import repair
    from climb_cli.verify import verify_raw

    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    gone = sorted((raw.raw_dir("toyecg") / "records500" / "00000").glob("0000[1-6]_hr.dat"))
    for p in gone:
        p.unlink()
    first = preprocess(recipe, raw, workers=1)
    assert first.errors == len(gone) == 6 and first.rows == 24
    report, bad = verify_raw(recipe, raw)
    assert len(report.missing) == 6
    assert all(o.status == "downloaded" for o in repair(recipe, raw, bad))
    again = preprocess(recipe, raw, workers=1)
    assert again.rows == 30 and again.errors == 0  # was: 24 rows, 6 failed, until processed/ was deleted
    assert again.skipped_units >= 1  # shards without failed items are still reused
    third = preprocess(recipe, raw, workers=1)
    assert third.skipped_units == len(third.units) and third.rows == 30


def test_a_committed_shard_replaced_by_same_size_garbage_is_rebuilt(tmp_path: Path, raw: Settings) -> None:
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    first = preprocess(recipe, raw, workers=1)
    expected = _hashes(first.out_dir)
    shard = sorted((first.out_dir / "data").glob("*.parquet"))[0]
    shard.write_bytes(os.urandom(shard.stat().st_size))
    again = preprocess(recipe, raw, workers=1)
    assert again.skipped_units == len(again.units) - 1  # was: every unit "already committed"
    assert _hashes(first.out_dir) == expected


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_preprocess_stops_the_whole_pool(tmp_path: Path, raw: Settings, sig: int) -> None:
    """SIGTERM/SIGINT to `climb preprocess --workers 2`: one line, non-zero exit, and no loky worker or
    resource tracker left behind (was: both workers and the tracker alive, reparented to PID 1)."""
    import psutil

    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, shard="100KB")  # about one record a shard: many units, so the run is mid-way
    out_dir = raw.processed_dir("toyecg") / recipe.content_hash()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLIMB_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "climb_cli", "--data-dir", str(raw.data_dir), "--recipes", str(recipes)]
        + ["preprocess", "toyecg", "--workers", "2"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 60
    children: list[psutil.Process] = []
    while time.monotonic() < deadline and not list((out_dir / ".commits").glob("*.json")):
        children = parent.children(recursive=True) or children
        time.sleep(0.02)
    children = parent.children(recursive=True) or children
    assert len(children) >= 2, "the pool should be running"
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, proc.returncode
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert lines, (proc.returncode, out)
    assert lines[-1].endswith("interrupted; rerun to continue") and "Traceback" not in err, err
    gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, [(p.pid, p.cmdline()[:3]) for p in alive]
    report = preprocess(recipe, raw, workers=2)
    assert report.rows == 30 and report.errors == 0


def test_a_full_disk_during_preprocess_is_one_clear_line(tmp_path: Path, raw: Settings) -> None:
    """processed/ on a 1 MB filesystem: the shards (~7 MB) do not fit. One line naming the folder and
    the bytes needed, exit 1 (was: `internal error: OSError: [Errno 28] ...`)."""
    from tests.conftest import small_filesystem

    recipes = tmp_path / "recipes"
    _recipe(recipes, shard="1MB")
    with small_filesystem(raw.data_dir / "processed", "1m"):
        args = ["--data-dir", str(raw.data_dir), "--recipes", str(recipes), "preprocess", "toyecg"]
        r = run_climb(*args, "--workers", "1")
        assert r.returncode == 1
        assert "internal error" not in r.stderr and "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and "no space left on " in lines[0], r.stderr
        assert str(raw.data_dir / "processed" / "toyecg") in lines[0] and "bytes needed" in lines[0]


def test_a_limited_build_is_a_subset_verified_against_its_own_counts(tmp_path: Path, raw: Settings) -> None:
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes)
    recipe = recipe.model_copy(update={"expect": recipe.expect.model_copy(update={"splits": {"train": 24}})})
    args = ["--data-dir", str(raw.data_dir), "--recipes", str(recipes)]
    r = run_climb(*args, "preprocess", "TOYECG", "--limit", "7", "--workers", "1")  # names: any case
    assert r.returncode == 0, r.stderr
    out_dir = raw.processed_dir("toyecg") / recipe.content_hash()
    manifest = __import__("json").loads((out_dir / "manifest.json").read_text())
    assert manifest["subset"]["why"] == "--limit 7: the first 7 items of the index"
    assert sum(manifest["splits"].values()) == 7
    r = run_climb(*args, "verify", "toyecg", "--outputs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(a subset: --limit 7: the first 7 items of the index; checked against its own counts)" in r.stdout
    r = run_climb(*args, "preprocess", "toyecg", "--where", "strat_fold=9,10", "--workers", "1")
    assert r.returncode == 0, r.stderr
    manifest = __import__("json").loads((out_dir / "manifest.json").read_text())
    assert manifest["subset"]["why"] == "--where strat_fold=9,10" and set(manifest["splits"]) <= {
        "val",
        "test",
    }
    r = run_climb(*args, "verify", "toyecg", "--outputs")
    assert r.returncode == 0 and "(a subset: --where strat_fold=9,10;" in r.stdout


def test_an_input_symlinked_out_of_the_raw_folder_is_an_item_error(tmp_path: Path, raw: Settings) -> None:
    recipe = _recipe(tmp_path / "recipes")
    rec = raw.raw_dir("toyecg") / "records500" / "00000"
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for f in rec.glob("00003_hr.*"):
        shutil.move(f, outside / f.name)
        f.symlink_to(outside / f.name)
    report = preprocess(recipe, raw, workers=1)
    reasons = [r for u in report.units for (i, _, r) in u.errors]
    assert report.rows == 29 and len(reasons) == 1 and "resolves outside the raw folder" in reasons[0]


def test_a_crash_between_parts_and_assembly_reuses_the_parts(tmp_path: Path, raw: Settings) -> None:
    """The state a crash leaves after the units of a cut shard committed their parts but before the
    shard was assembled (parts and their markers, a half-written shard under .tmp, no shard, no
    marker): a rerun reuses the committed parts, redoes a part that was in flight, assembles the
    same bytes as a clean run and leaves no part behind."""
    from climb_cli.pipeline import EngineOptions, UnitResult, _Part, _plan, cut_units, run_unit

    recipe = _recipe(tmp_path / "recipes")
    clean = raw.with_(data_dir=tmp_path / "clean")
    shutil.copytree(raw.raw_dir("toyecg"), clean.raw_dir("toyecg"))
    expected = _hashes(preprocess(recipe, clean, workers=1).out_dir)

    plan = _plan(recipe, raw, None, None, _Part())
    units = cut_units(plan.units, 2, 3)
    cut = [u for u in units if u.parts > 1]
    assert len(cut) > 3
    for u in cut[:-1]:  # the last part was in flight
        run_unit(u)
    out_dir = plan.report.out_dir
    (out_dir / "data" / ".tmp").mkdir(parents=True)
    (out_dir / "data" / ".tmp" / f"{cut[0].name}.999").write_bytes(b"PAR1 half a shard")
    assert not list((out_dir / "data").glob("*.parquet")) and not (out_dir / ".commits").exists()

    seen: list[UnitResult] = []
    report = preprocess(recipe, raw, workers=2, engine=EngineOptions(unit_items=3), on_unit=seen.append)
    parts = [u for u in seen if u.parts > 1]
    assert sum(u.skipped for u in parts) == len(cut) - 1 and len(parts) == len(cut)
    assert _hashes(out_dir) == expected and report.rows == 30
    assert not (out_dir / ".parts").exists() and not (out_dir / "data" / ".tmp").exists()


def test_a_guided_cut_assembles_the_same_bytes(tmp_path: Path, raw: Settings) -> None:
    """Units that shrink as the work runs out (the guided cut, here down to one item) build the same
    shards and commit markers as one unit per shard; the parts of a shard cover its items once, in
    order; one worker gets whole shards."""
    import json
    from dataclasses import replace

    from climb_cli.pipeline import MIN_UNIT_BYTES, Assembly, _Part, _plan, assemble_shard, cut_units, run_unit

    recipe = _recipe(tmp_path / "recipes")
    clean = raw.with_(data_dir=tmp_path / "clean")
    shutil.copytree(raw.raw_dir("toyecg"), clean.raw_dir("toyecg"))
    serial = preprocess(recipe, clean, workers=1)
    markers = {p.name: json.loads(p.read_text()) for p in (serial.out_dir / ".commits").glob("*.json")}

    plan = _plan(recipe, raw, None, None, _Part())
    shards = [replace(u, row_bytes=MIN_UNIT_BYTES) for u in plan.units]  # a unit may be one item
    assert cut_units(shards, 1) == shards
    units = cut_units(shards, 2)
    big = max(shards, key=lambda u: len(u.items))
    sizes = [len(u.items) for u in units if u.digest == big.digest]
    assert sizes[0] >= 4 * sizes[-1] and len(set(sizes)) > 3, sizes  # e.g. 8, 6, 4, 3, 2, 1, 1
    for shard in shards:
        parts = [u for u in units if u.digest == shard.digest]
        assert [it.id for u in parts for it in u.items] == [it.id for it in shard.items]
        assert [u.part for u in parts] == list(range(len(parts)))
        assert all(len(a.items) >= len(b.items) for a, b in zip(parts, parts[1:-1], strict=False))
    assert max(u.parts for u in units) > 3
    results = [run_unit(u) for u in reversed(units)]  # in any order
    for shard in shards:
        got = sorted((r for r in results if r.digest == shard.digest and r.parts > 1), key=lambda r: r.part)
        if got:
            assemble_shard(Assembly(shard, got))
    out_dir = plan.report.out_dir
    assert _hashes(out_dir / "data") == _hashes(serial.out_dir / "data") and not any(
        (out_dir / ".parts").rglob("*.*")
    )
    assert {p.name: json.loads(p.read_text()) for p in (out_dir / ".commits").glob("*.json")} == markers


def test_the_coordinator_leaves_the_steps_to_the_workers(tmp_path: Path, raw: Settings) -> None:
    """With 2 workers the probe items run on a worker: the coordinator never imports the libraries
    the steps use (wfdb here), and the shards are those of one worker."""
    recipe = _recipe(tmp_path / "recipes")
    clean = raw.with_(data_dir=tmp_path / "clean")
    shutil.copytree(raw.raw_dir("toyecg"), clean.raw_dir("toyecg"))
    expected = _hashes(preprocess(recipe, clean, workers=1).out_dir)
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from climb_cli.catalog import Catalog\n"
        "from climb_cli.pipeline import preprocess\n"
        "from climb_cli.settings import Settings\n"
        f"recipe = Catalog([Path({str(tmp_path / 'recipes')!r})]).load('toyecg')\n"
        f"report = preprocess(recipe, Settings.from_env(Path({str(raw.data_dir)!r})), workers=2)\n"
        "print(report.rows, report.workers, 'wfdb' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["30", "2", "False"]
    assert _hashes(raw.processed_dir("toyecg")) == expected
