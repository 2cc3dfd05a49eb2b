"""Engines: the same shards on serial, loky, a real Dask LocalCluster (127.0.0.1) and Ray (in a
loopback-only network namespace); one pool for several datasets; memory-aware item errors."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.engines import WORKER_BASE_BYTES, close_engine, make_engine
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.memory import input_bytes, measure_peak
from climb_cli.pipeline import EngineOptions, _Part, _plan, preprocess, preprocess_many
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.verify import verify_outputs, verify_raw
from tests.conftest import REPO, run_climb, write_recipe

SOURCE = """  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv, scp_statements.csv]
"""
HAS_DASK = importlib.util.find_spec("distributed") is not None
HAS_RAY = importlib.util.find_spec("ray") is not None


def _recipe(folder: Path, name: str = "toyecg", shard: str = "1MB") -> Recipe:
    path = write_recipe(folder, name, SOURCE)
    path.write_text(path.read_text().replace("shard_size: 256MB", f"shard_size: {shard}"))
    return Catalog([folder]).load(name)


def _outputs(out_dir: Path) -> dict[str, str]:
    """sha256 of every shard, errors.parquet and manifest.json: what must not depend on the engine."""
    files = sorted(out_dir.rglob("*.parquet")) + [out_dir / "manifest.json"]
    return {p.relative_to(out_dir).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _copy(raw: Settings, tmp_path: Path, name: str, dataset: str = "toyecg") -> Settings:
    other = raw.with_(data_dir=tmp_path / name)
    shutil.copytree(raw.raw_dir("toyecg"), other.raw_dir(dataset))
    return other


@pytest.fixture
def raw(tmp_path: Path, settings: Settings, server: FakePhysioNet) -> Settings:
    assert download(_recipe(tmp_path / "recipes"), settings).ok
    return settings


@pytest.fixture(scope="module")
def dask_cluster() -> Iterator[str]:
    """A real Dask LocalCluster: 2 worker processes, scheduler on 127.0.0.1."""
    if not HAS_DASK:
        pytest.skip("dask.distributed is not installed (pip install 'climb-cli[dask]')")
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=40
    ) as cluster:
        yield cluster.scheduler_address


def test_the_same_bytes_on_serial_loky_and_dask(tmp_path: Path, raw: Settings, dask_cluster: str) -> None:
    recipe = _recipe(tmp_path / "recipes")
    serial = preprocess(recipe, raw, workers=1)
    assert len(serial.units) > 2 and serial.rows == 30
    expected = _outputs(serial.out_dir)
    loky = preprocess(recipe, _copy(raw, tmp_path, "loky"), workers=2)
    assert loky.workers == 2 and _outputs(loky.out_dir) == expected
    on_cluster = EngineOptions("dask", scheduler=dask_cluster)
    dask = preprocess(recipe, _copy(raw, tmp_path, "dask"), workers=2, engine=on_cluster)
    assert _outputs(dask.out_dir) == expected
    local = EngineOptions("dask")  # no scheduler: a LocalCluster of its own for this run
    dask_local = preprocess(recipe, _copy(raw, tmp_path, "dask-local"), workers=2, engine=local)
    assert _outputs(dask_local.out_dir) == expected


def test_a_dask_run_killed_midway_is_finished_by_loky_byte_identically(
    tmp_path: Path, raw: Settings, dask_cluster: str
) -> None:
    """Commit markers are engine-neutral: shards a Dask run committed are reused by a loky rerun."""
    recipe = _recipe(tmp_path / "recipes")
    expected = _outputs(preprocess(recipe, _copy(raw, tmp_path, "clean"), workers=1).out_dir)
    first = preprocess(
        recipe, raw, workers=2, part=(0, 2), engine=EngineOptions("dask", scheduler=dask_cluster)
    )
    rerun = preprocess(recipe, raw, workers=2)
    assert rerun.skipped_units == len(first.units) > 0
    assert _outputs(rerun.out_dir) == expected


def test_verify_on_dask_finds_a_damaged_shard(tmp_path: Path, raw: Settings, dask_cluster: str) -> None:
    recipe = _recipe(tmp_path / "recipes")
    report = preprocess(recipe, raw, workers=1)
    pool = make_engine(2, "dask", scheduler=dask_cluster)
    try:
        rawrep, bad = verify_raw(recipe, raw, engine=pool)
        assert rawrep.ok and rawrep.checked > 60 and not bad
        assert verify_outputs(recipe, raw, engine=pool).ok
        shard = report.out_dir / "data" / report.units[1].name
        data = bytearray(shard.read_bytes())
        data[100] ^= 0xFF
        shard.write_bytes(bytes(data))
        problems = verify_outputs(recipe, raw, engine=pool).problems
        assert problems == [
            f"data/{report.units[1].name}: sha256 differs from the manifest (corrupt or replaced)"
        ]
        dat = next(raw.raw_dir("toyecg").rglob("*.dat"))
        dat.write_bytes(dat.read_bytes()[:-10])
        rawrep, bad = verify_raw(recipe, raw, engine=pool)
        assert rawrep.corrupt == [dat.relative_to(raw.raw_dir("toyecg")).as_posix()]
    finally:
        close_engine(pool)


def test_verify_metadata_on_dask_matches_local_threads(
    tmp_path: Path, raw: Settings, dask_cluster: str
) -> None:
    """verify --metadata on Dask workers: files whose size and mtime match the manifest are trusted, a
    touched file is hashed and reported; the same report as the local threads give."""
    import os

    recipe = _recipe(tmp_path / "recipes")
    pool = make_engine(2, "dask", scheduler=dask_cluster)
    try:
        rep, bad = verify_raw(recipe, raw, engine=pool, metadata=True)
        assert rep.ok and rep.checked > 60 and not bad
        dat = next(raw.raw_dir("toyecg").rglob("*.dat"))
        rel = dat.relative_to(raw.raw_dir("toyecg")).as_posix()
        data = bytearray(dat.read_bytes())
        data[0] ^= 0xFF  # same size, newer mtime: --metadata must hash it
        dat.write_bytes(bytes(data))
        st = dat.stat()
        os.utime(dat, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
        on_dask, bad = verify_raw(recipe, raw, engine=pool, metadata=True)
        assert on_dask.corrupt == [rel] and on_dask.checked == rep.checked
        assert [rf.path for _, rf in bad] == [rel]
    finally:
        close_engine(pool)
    dat.write_bytes(bytes(data))  # the local threads see the same (the corrupt row was dropped)
    local, _ = verify_raw(recipe, raw, metadata=True)
    assert local.as_dict() | {"seconds": 0} == on_dask.as_dict() | {"seconds": 0}


def test_the_cli_runs_on_a_dask_scheduler(tmp_path: Path, raw: Settings, dask_cluster: str) -> None:
    recipes = tmp_path / "recipes"
    args = ["--data-dir", str(raw.data_dir), "--recipes", str(recipes)]
    r = run_climb(*args, "preprocess", "toyecg", "--engine", "dask", "--scheduler", dask_cluster)
    assert r.returncode == 0, r.stderr
    assert "toyecg: 30 rows in" in r.stdout
    r = run_climb(*args, "verify", "toyecg", "--outputs", "--engine", "dask", "--scheduler", dask_cluster)
    assert r.returncode == 0 and "-> OK" in r.stdout, r.stderr
    r = run_climb(*args, "preprocess", "toyecg", "--engine", "spark")
    assert r.returncode == 2 and "--engine 'spark': use one of loky, dask, ray" in r.stderr
    r = run_climb(*args, "preprocess", "toyecg", "--scheduler", dask_cluster)
    assert r.returncode == 2 and "use it with --engine dask" in r.stderr


def test_an_unreachable_scheduler_is_one_line(tmp_path: Path, raw: Settings) -> None:
    if not HAS_DASK:
        pytest.skip("dask.distributed is not installed")
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ["--data-dir", str(raw.data_dir), "--recipes", str(tmp_path / "recipes")]
    r = run_climb(*args, "preprocess", "toyecg", "--engine", "dask", "--scheduler", f"tcp://127.0.0.1:{port}")
    assert r.returncode == 1
    assert f"cannot reach the scheduler tcp://127.0.0.1:{port}" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr


def _ray_namespace_ok() -> str | None:
    if not HAS_RAY:
        return "ray is not installed on this Python (pip install 'climb-cli[ray]')"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare/ip are not available"
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True)
    if probe.returncode != 0:
        return f"no unprivileged network namespace here: {probe.stderr.decode().strip()}"
    return None


def _climb_in_loopback_namespace(
    raw: Settings, recipes: Path, command: str
) -> subprocess.CompletedProcess[str]:
    """`climb <command>` in a new network namespace whose only interface is lo (checked before it runs)."""
    climb = [sys.executable, "-m", "climb_cli", "--data-dir", str(raw.data_dir), "--recipes", str(recipes)]
    script = 'ip link set lo up && test "$(ip -o link | wc -l)" = 1 && ' + " ".join(climb) + " " + command
    return subprocess.run(
        ["unshare", "-rn", "sh", "-c", script], capture_output=True, text=True, cwd=REPO, timeout=300
    )


def test_the_same_bytes_on_ray_in_a_loopback_only_namespace(tmp_path: Path, raw: Settings) -> None:
    """Ray binds every interface, so it runs only in a network namespace that has nothing but lo."""
    why = _ray_namespace_ok()
    if why:
        pytest.skip(why)
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes)
    expected = _outputs(preprocess(recipe, _copy(raw, tmp_path, "serial"), workers=1).out_dir)
    r = _climb_in_loopback_namespace(raw, recipes, "preprocess toyecg --engine ray --workers 2")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "toyecg: 30 rows in" in r.stdout
    assert _outputs(raw.processed_dir("toyecg") / recipe.content_hash()) == expected


def test_verify_metadata_on_ray_in_a_loopback_only_namespace(tmp_path: Path, raw: Settings) -> None:
    """`verify --metadata --engine ray` (Ray only inside a namespace that has nothing but lo)."""
    why = _ray_namespace_ok()
    if why:
        pytest.skip(why)
    recipes = tmp_path / "recipes"
    _recipe(recipes)
    dat = next(raw.raw_dir("toyecg").rglob("*.dat"))
    rel = dat.relative_to(raw.raw_dir("toyecg")).as_posix()
    dat.write_bytes(dat.read_bytes()[:-10])  # another size: --metadata hashes it and finds it corrupt
    r = _climb_in_loopback_namespace(raw, recipes, "verify toyecg --metadata --json --engine ray --workers 2")
    assert r.returncode == 1, r.stderr[-2000:]
    (rep,) = json.loads(r.stdout)
    assert rep["corrupt"] == [rel] and rep["checked"] > 60 and not rep["missing"]


def test_all_datasets_share_one_pool(tmp_path: Path, raw: Settings) -> None:
    """Two datasets of one shard per split: alone, a dataset keeps one worker per unit busy, more
    than its shards (its largest shard is cut into parts); together, twice as many; each gets the
    shards it gets alone."""
    recipes = tmp_path / "recipes"
    one, two = _recipe(recipes, "toyecg", shard="256MB"), _recipe(recipes, "toyecg2", shard="256MB")
    shutil.copytree(raw.raw_dir("toyecg"), raw.raw_dir("toyecg2"))
    alone = preprocess(one, _copy(raw, tmp_path, "alone"), workers=16)
    assert alone.workers > len(alone.units) == 3 and "work units" in alone.note  # was: 3 workers
    both = preprocess_many([one, two], raw, workers=16)
    assert [r.workers for r in both.values()] == [2 * alone.workers] * 2  # type: ignore[union-attr]
    assert _outputs(both["toyecg"].out_dir) == _outputs(alone.out_dir)  # type: ignore[union-attr]
    assert both["toyecg2"].rows == 30  # type: ignore[union-attr]


def test_a_dataset_that_cannot_be_planned_does_not_stop_the_others(tmp_path: Path, raw: Settings) -> None:
    recipes = tmp_path / "recipes"
    good, empty = _recipe(recipes, "toyecg"), _recipe(recipes, "toyempty")
    raw.raw_dir("toyempty").mkdir(parents=True)
    out = preprocess_many([empty, good], raw, workers=2)
    assert "toyempty" in str(out["toyempty"]) and out["toyecg"].rows == 30  # type: ignore[union-attr]


_HELD: list[np.ndarray] = []


def _hold(mib: int) -> int:
    """A unit that leaves `mib` MiB in its worker (what a large unit's row groups left in the allocator
    look like from outside), and the worker's PID."""
    import os

    _HELD.append(np.ones(mib * 2**20, dtype=np.uint8))
    return os.getpid()


def test_a_worker_whose_memory_grew_is_not_restarted() -> None:
    """loky restarts a worker whose RSS grew 300 MB past its size after the first task (here the
    warm-up), which cost every worker a second start-up and import mid-run: climb's workers stay."""
    import time

    from climb_cli.engines import LokyEngine, stop_pool

    stop_pool()
    pool = LokyEngine(1)
    pool.warm_up()
    pids = [pool.result(pool.submit(_hold, 400))]
    for _ in range(3):
        time.sleep(1.2)  # loky looks at a worker's memory at most once a second, after a task
        pids.append(pool.result(pool.submit(_hold, 1)))
    stop_pool()
    assert len(set(pids)) == 1, pids


def test_peak_memory_is_measured() -> None:
    _, peak = measure_peak(lambda: np.ones(8_000_000).sum())  # 64 MB allocated, then freed
    assert peak is not None and 60e6 < peak < 200e6


def test_an_item_too_big_for_a_worker_fails_as_an_item(tmp_path: Path, raw: Settings) -> None:
    """One record 10x longer than the probes; a worker budget of 3x the probes' peak: that record is
    an item error naming the memory it needs, every other row is written, the pool survives."""
    import wfdb

    recipe = _recipe(tmp_path / "recipes", shard="256MB")
    root = raw.raw_dir("toyecg")
    big = sorted(root.rglob("*_hr.hea"))[-1]
    rec = wfdb.rdrecord(str(big.with_suffix("")))
    long = np.tile(rec.p_signal, (10, 1))
    wfdb.wrsamp(
        big.stem,
        fs=rec.fs,
        units=rec.units,
        sig_name=rec.sig_name,
        p_signal=long,
        fmt=rec.fmt,
        write_dir=str(big.parent),
    )
    assert input_bytes([big.with_suffix("")]) > 9 * input_bytes(
        [sorted(root.rglob("*_hr.hea"))[0].with_suffix("")]
    )
    plan = _plan(recipe, raw, None, None, _Part())
    item = plan.units[0].item_bytes
    working_set = plan.unit_bytes - item
    memory = WORKER_BASE_BYTES + working_set + 3 * item
    report = preprocess(recipe, raw, workers=2, engine=EngineOptions(memory_per_worker=memory))
    errors = pq.read_table(report.out_dir / "errors.parquet").to_pylist()
    assert [e["id"] for e in errors] == [big.stem.removesuffix("_hr").lstrip("0")]
    assert "MiB of memory" in errors[0]["reason"] and "--memory-per-worker" in errors[0]["reason"]
    assert report.rows == 29
    manifest = json.loads((report.out_dir / "manifest.json").read_text())
    assert manifest["errors"] == 1


def test_a_memory_cap_of_one_unit_runs_one_unit_at_a_time(tmp_path: Path, raw: Settings) -> None:
    """--memory-per-worker such that one worker fits and two do not: the units (all of one loky pool
    of 2 started before the cap was known) run one after another, never two at once."""
    import psutil

    recipe = _recipe(tmp_path / "recipes", shard="256MB")
    memory = int(psutil.virtual_memory().available * 0.6)
    seen: list = []
    opts = EngineOptions(memory_per_worker=memory, unit_items=3)
    report = preprocess(recipe, raw, workers=2, engine=opts, on_unit=seen.append)
    assert report.workers == 1 and "memory" in report.note and report.rows == 30
    spans = sorted((u.started, u.ended) for u in seen if u.started)
    assert len(spans) > 3 and all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False)), spans


def test_engine_options_are_checked_before_any_work(tmp_path: Path, raw: Settings) -> None:
    args = ["--data-dir", str(raw.data_dir), "--recipes", str(tmp_path / "recipes"), "preprocess", "toyecg"]
    r = run_climb(*args, "--memory-per-worker", "lots")
    assert r.returncode == 2 and "--memory-per-worker: 'lots' is not a size (e.g. 4GB, 512MiB)" in r.stderr
    r = run_climb(*args, "--engine", "ray", "--scheduler", "tcp://127.0.0.1:1")
    assert r.returncode == 2 and "use it with --engine dask" in r.stderr
    r = run_climb(*args, "--engine", "dask", "--address", "127.0.0.1:1")
    assert r.returncode == 2 and "use it with --engine ray" in r.stderr
    assert not raw.processed_dir("toyecg").exists()


def _markers(out_dir: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((out_dir / ".commits").glob("*.json"))}


def test_units_smaller_than_shards_give_the_same_bytes_on_every_engine(
    tmp_path: Path, raw: Settings, dask_cluster: str
) -> None:
    """One unit per shard (serial) vs shards cut into parts of 3 items (loky, 2 workers) and of 5
    (Dask): the same shards, markers, errors.parquet and manifest, byte for byte; no part is left;
    the failed items and rows are counted the same whatever the cut."""
    recipe = _recipe(tmp_path / "recipes", shard="256MB")
    gone = sorted(raw.raw_dir("toyecg").rglob("0000[2-4]_hr.dat"))
    for p in gone:  # three failed items, in the middle of the largest shard
        p.unlink()
    whole: list[int] = []
    one_each = EngineOptions(unit_items=1000)  # more than a shard holds: one unit per shard
    serial = preprocess(recipe, raw, workers=1, engine=one_each, on_unit=lambda u: whole.append(u.parts))
    assert set(whole) == {1} and serial.rows == 27 and serial.errors == 3
    expected, markers = _outputs(serial.out_dir), _markers(serial.out_dir)
    for name, opts in [
        ("loky", EngineOptions(unit_items=3)),
        ("dask", EngineOptions("dask", scheduler=dask_cluster, unit_items=5)),
    ]:
        parts: list[int] = []
        report = preprocess(
            recipe,
            _copy(raw, tmp_path, name),
            workers=2,
            engine=opts,
            on_unit=lambda u, parts=parts: parts.append(u.parts),
        )
        assert max(parts) > 2, name  # the largest shard was cut into several units
        assert report.rows == 27 and report.errors == 3
        assert _outputs(report.out_dir) == expected, name
        assert _markers(report.out_dir) == markers, name
        assert not (report.out_dir / ".parts").exists()
    manifest = json.loads((serial.out_dir / "manifest.json").read_text())
    assert manifest["errors"] == 3 and sum(manifest["splits"].values()) == 27


def test_workers_are_started_once_for_every_dataset_and_assembly(tmp_path: Path, raw: Settings) -> None:
    """`preprocess --all` with 2 workers: every part and every assembled shard of both datasets ran
    in the same 2 loky worker processes."""
    recipes = tmp_path / "recipes"
    one, two = _recipe(recipes, "toyecg", shard="256MB"), _recipe(recipes, "toyecg2", shard="256MB")
    shutil.copytree(raw.raw_dir("toyecg"), raw.raw_dir("toyecg2"))
    pids: list[int] = []
    out = preprocess_many(
        [one, two],
        raw,
        workers=2,
        engine=EngineOptions(unit_items=3),
        on_unit=lambda u: pids.append(u.worker),
    )
    assembled = [u.worker for r in out.values() for u in r.units]  # type: ignore[union-attr]
    assert len(pids) > 10 and len(set(pids)) == 2 and set(assembled) <= set(pids)
    assert all(r.rows == 30 for r in out.values())  # type: ignore[union-attr]
