"""Verify: raw files against upstream sums (missing/corrupt/unexpected, --repair) and outputs against
their manifest and the recipe's expectations — through the CLI, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import fast_settings, read_only_mount, run_climb, write_recipe

SOURCE = """  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv, scp_statements.csv]
"""


@pytest.fixture
def downloaded(tmp_path: Path, server: FakePhysioNet) -> tuple[list[str], dict[str, str]]:
    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": server.base_url, "CLIMB_BACKOFF": "0.01"}
    r = run_climb(*args, "download", "toyecg", env=env)
    assert r.returncode == 0, r.stderr
    assert "toyecg: 62 downloaded" in r.stdout
    return args, env


def test_clean_tree_verifies(downloaded: tuple[list[str], dict[str, str]]) -> None:
    args, env = downloaded
    r = run_climb(*args, "verify", "toyecg", "--json", env=env)
    assert r.returncode == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    assert rep["ok"] and rep["checked"] == 62 and not rep["missing"] + rep["corrupt"] + rep["unexpected"]


def test_corrupt_missing_and_unexpected_are_reported_then_repaired(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]], server: FakePhysioNet
) -> None:
    args, env = downloaded
    raw = tmp_path / "data" / "raw" / "toyecg"
    victim = raw / "records500" / "00000" / "00007_hr.dat"
    good = victim.read_bytes()
    victim.write_bytes(good[:100] + bytes([good[100] ^ 0xFF]) + good[101:])  # one flipped byte, same size
    (raw / "records500" / "00000" / "00008_hr.hea").unlink()
    (raw / "notes.txt").write_text("mine")
    # a known upstream file outside the selection is not "unexpected"
    (raw / "RECORDS").write_text("x")
    r = run_climb(*args, "verify", "toyecg", env=env)
    assert r.returncode == 1
    assert "1 missing, 1 corrupt, 1 unexpected" in r.stdout
    assert "corrupt: records500/00000/00007_hr.dat" in r.stdout
    assert "missing: records500/00000/00008_hr.hea" in r.stdout
    assert "unexpected: notes.txt" in r.stdout and "unexpected: RECORDS" not in r.stdout
    assert r.stderr.strip().endswith("(run with --repair)")

    before = len(server.log)
    (raw / "notes.txt").unlink()
    r = run_climb(*args, "verify", "toyecg", "--repair", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 repaired" in r.stdout
    fetched = sorted(rec.path for rec in server.log[before:] if rec.method == "GET")
    assert fetched == [
        "/files/ptb-xl/1.0.3/records500/00000/00007_hr.dat",
        "/files/ptb-xl/1.0.3/records500/00000/00008_hr.hea",
    ]
    assert victim.read_bytes() == good


def test_never_downloaded_dataset_says_what_to_do(tmp_path: Path) -> None:
    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    r = run_climb("--data-dir", str(tmp_path / "d"), "--recipes", str(recipes), "verify", "toyecg")
    assert r.returncode == 1
    assert "source 'data' was never listed: run `climb download toyecg` first" in r.stdout


def test_outputs_are_checked_against_manifest_and_expectations(tmp_path: Path, server: FakePhysioNet) -> None:
    recipes = tmp_path / "recipes"
    write_recipe(recipes, "toyecg", SOURCE, extra="expect:\n  splits: {train: 1000}\n")
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    assert run_climb(*args, "download", "toyecg", env=env).returncode == 0
    r = run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env)
    assert r.returncode == 0, r.stderr
    r = run_climb(*args, "verify", "--outputs", "toyecg", "--json", env=env)
    (rep,) = json.loads(r.stdout)
    assert r.returncode == 1 and rep["rows"] == 30
    assert any(
        p.startswith("split train: ") and p.endswith("rows, recipe expects 1000") for p in rep["problems"]
    )

    # without the wrong expectation it passes; then a damaged shard is caught
    write_recipe(recipes, "toyecg", SOURCE)
    r = run_climb(*args, "verify", "--outputs", "toyecg", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    shard = sorted((tmp_path / "data" / "processed" / "toyecg").glob("*/data/train-*.parquet"))[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    r = run_climb(*args, "verify", "--outputs", "toyecg", env=env)
    assert r.returncode == 1
    assert f"{shard.name}: sha256 differs from the manifest (corrupt or replaced)" in r.stdout


def test_repair_that_cannot_repair_says_so_and_names_each_file_once(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]]
) -> None:
    args, env = downloaded
    raw = tmp_path / "data" / "raw" / "toyecg"
    (raw / "records500" / "00000" / "00008_hr.hea").unlink()
    offline = {**env, "CLIMB_PHYSIONET_URL": "http://127.0.0.1:9", "CLIMB_RETRIES": "0"}
    r = run_climb(*args, "verify", "toyecg", "--repair", env=offline)
    assert r.returncode == 1
    out = r.stdout + r.stderr
    assert sum("00008_hr.hea" in line for line in out.splitlines()) == 1, out
    assert "missing: records500/00000/00008_hr.hea (could not repair: " in r.stdout
    assert "(run with --repair)" not in out
    assert r.stderr.strip().endswith("(--repair could not fix them; why is listed above)")


def test_read_only_raw_data_with_a_writable_processed_folder(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]]
) -> None:
    args, env = downloaded
    with read_only_mount(tmp_path / "data" / "raw"):
        r = run_climb(*args, "verify", "toyecg", env=env)
        assert r.returncode == 0, r.stderr
        assert "62 files" in r.stdout and "is read-only: results were not recorded" in r.stderr
        r = run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env)
        assert r.returncode == 0, r.stderr
        assert "30 rows in" in r.stdout
        r = run_climb(*args, "download", "toyecg", env=env)
        assert r.returncode == 1
        assert r.stderr == (
            f"climb: error: toyecg: cannot write to {tmp_path / 'data' / 'raw' / 'toyecg'} (no write access "
            "there); set --data-dir or CLIMB_DATA to a folder you can write\n"
        )


def test_outputs_repair_rebuilds_a_replaced_shard(tmp_path: Path, server: FakePhysioNet) -> None:
    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    assert run_climb(*args, "download", "toyecg", env=env).returncode == 0
    assert run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env).returncode == 0
    shard = sorted((tmp_path / "data" / "processed" / "toyecg").glob("*/data/train-*.parquet"))[0]
    good = shard.read_bytes()
    shard.write_bytes(bytes(len(good)))  # same size, all zeros
    r = run_climb(*args, "verify", "--outputs", "toyecg", "--repair", "--workers", "1", env=env)
    assert r.returncode == 0, r.stdout + r.stderr  # was: exit 1, the shard left as it was
    assert "rebuilt the outputs" in r.stdout and shard.read_bytes() == good


def test_verify_without_sha256sums_checks_the_manifest_sums_and_repair_refetches_the_list(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]], server: FakePhysioNet
) -> None:
    args, env = downloaded
    raw = tmp_path / "data" / "raw" / "toyecg"
    (raw / "SHA256SUMS.txt").unlink()
    victim = raw / "records500" / "00000" / "00007_hr.dat"
    good = victim.read_bytes()
    victim.write_bytes(bytes(len(good)))
    r = run_climb(*args, "verify", "toyecg", "--json", env=env)
    (rep,) = json.loads(r.stdout)
    assert r.returncode == 1  # was: "0 files checked", exit 0 or "never listed"
    assert rep["checked"] == 62 and rep["corrupt"] == ["records500/00000/00007_hr.dat"]
    assert rep["lists_missing"] == ["data"]

    before = len(server.log)
    r = run_climb(*args, "verify", "toyecg", "--repair", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "fetched the file list of data again" in r.stdout and "1 repaired" in r.stdout
    fetched = sorted(rec.path for rec in server.log[before:] if rec.method == "GET")
    assert fetched == [
        "/files/ptb-xl/1.0.3/SHA256SUMS.txt",
        "/files/ptb-xl/1.0.3/records500/00000/00007_hr.dat",
    ]
    assert victim.read_bytes() == good and (raw / "SHA256SUMS.txt").is_file()


def test_metadata_verify_hashes_only_what_changed(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]]
) -> None:
    """verify --metadata: a file whose size or mtime changed is hashed (and found corrupt); one changed
    behind the manifest's back with its mtime put back is not (only a full verify catches it); the
    full verify's verified_at is left alone."""
    import os
    import sqlite3

    args, env = downloaded
    raw = tmp_path / "data" / "raw" / "toyecg"
    dats = sorted(raw.glob("records500/*/*.dat"))
    touched, sneaky = dats[0], dats[1]
    flip = lambda b: b[:-1] + bytes([b[-1] ^ 1])  # noqa: E731
    touched.write_bytes(flip(touched.read_bytes()))  # same size, new mtime
    st = sneaky.stat()
    sneaky.write_bytes(flip(sneaky.read_bytes()))
    os.utime(sneaky, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size, same mtime: metadata cannot tell
    db = raw / ".climb" / "manifest.sqlite"
    before = dict(sqlite3.connect(db).execute("SELECT path, verified_at FROM files"))
    r = run_climb(*args, "verify", "toyecg", "--metadata", "--json", env=env)
    (rep,) = json.loads(r.stdout)
    assert r.returncode == 1 and rep["checked"] == 62
    assert rep["corrupt"] == [touched.relative_to(raw).as_posix()]
    after = dict(sqlite3.connect(db).execute("SELECT path, verified_at FROM files"))
    assert {p: v for p, v in after.items() if p in before} == {
        p: v for p, v in before.items() if p != touched.relative_to(raw).as_posix()
    }
    r = run_climb(*args, "verify", "toyecg", "--json", env=env)
    (rep,) = json.loads(r.stdout)
    assert sorted(rep["corrupt"]) == sorted(p.relative_to(raw).as_posix() for p in (touched, sneaky))


def test_files_larger_than_a_task_are_hashed_across_tasks_and_a_corrupt_one_is_named(tmp_path: Path) -> None:
    """A PhysioNet-shaped raw folder placed by hand (files + SHA256SUMS.txt): three files each larger
    than a hashing task and 300 small ones, verified with 2 workers; a flipped byte in the middle of
    one large file and in one small file are both reported by path."""
    from climb_cli.fakes.physionet import write_sha256sums
    from climb_cli.hash_plan import MIN_TASK, plan_tasks

    raw = tmp_path / "data" / "raw" / "bigfiles"
    (raw / "large").mkdir(parents=True)
    big = MIN_TASK + 4096
    for i in range(3):
        (raw / "large" / f"part-{i}.bin").write_bytes(bytes([i + 1]) * big)
    for i in range(300):
        (raw / "small" / f"{i // 100}").mkdir(parents=True, exist_ok=True)
        (raw / "small" / f"{i // 100}" / f"{i:03d}.dat").write_bytes(i.to_bytes(2, "big") * (50 + i))
    write_sha256sums(raw)
    sizes = [big] * 3 + [2 * (50 + i) for i in range(300)]
    assert len(plan_tasks(sizes, 2)) >= 4  # each large file is a task of its own
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "bigfiles.yaml").write_text(
        "name: bigfiles\ntitle: large files\nmodality: ecg\nlicense: CC0-1.0\naccess: open\n"
        "sources:\n  - id: data\n    kind: physionet\n    project: big\n    version: 1.0.0\n"
    )
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": "http://127.0.0.1:9"}  # nothing is fetched
    r = run_climb(*args, "verify", "bigfiles", "--workers", "2", "--json", env=env)
    assert r.returncode == 0, r.stderr
    (rep,) = json.loads(r.stdout)
    assert rep["ok"] and rep["checked"] == 303 and rep["bytes"] == sum(sizes)  # SHA256SUMS.txt is the list

    victim = raw / "large" / "part-1.bin"
    with open(victim, "r+b") as f:
        f.seek(big // 2)
        f.write(b"\xff")
    small = raw / "small" / "2" / "250.dat"
    data = bytearray(small.read_bytes())
    data[7] ^= 0xFF
    small.write_bytes(bytes(data))
    r = run_climb(*args, "verify", "bigfiles", "--workers", "2", env=env)
    assert r.returncode == 1
    assert "0 missing, 2 corrupt, 0 unexpected" in r.stdout
    assert "corrupt: large/part-1.bin" in r.stdout and "corrupt: small/2/250.dat" in r.stdout


def test_metadata_verify_of_a_generated_tree_reports_exactly_the_planted_files(tmp_path: Path) -> None:
    """20,000 files in 40 folders (many manifest lookup batches and hashing tasks): `verify --metadata`
    reports exactly the planted missing, unexpected and changed files, the full verify the same, a file
    only touched is re-hashed and its row updated (keeping its URL), and the download plan counts as
    present exactly the files whose row matches."""
    import hashlib
    import os
    import sqlite3

    from climb_cli.acquire import plan
    from climb_cli.catalog import Catalog
    from climb_cli.manifest import Entry, RawManifest

    source = '  - id: data\n    kind: physionet\n    project: bigtree\n    version: "1.0"\n'
    recipes = write_recipe(tmp_path / "recipes", "bigtree", source).parent
    raw = tmp_path / "data" / "raw" / "bigtree"
    url = "http://127.0.0.1:9/files/bigtree/1.0/"
    lines, rows, paths = [], [], []
    for i in range(20_000):
        rel = f"p{i // 500:02d}/s{i:05d}.dat"
        if i % 500 == 0:
            (raw / rel).parent.mkdir(parents=True, exist_ok=True)
        data = f"{i}\n".encode()
        (raw / rel).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        st = (raw / rel).stat()
        lines.append(f"{digest} {rel}\n")
        rows.append(Entry(rel, st.st_size, st.st_mtime_ns, digest, "data", url + rel, "etag", 1.0, 1.0))
        paths.append(rel)
    (raw / "SHA256SUMS.txt").write_text("".join(lines))
    with RawManifest.for_dataset(raw) as m:
        m.put_batch(rows)

    missing = [paths[i] for i in (0, 1999, 2000, 7777, 19_999)]
    for rel in missing:
        (raw / rel).unlink()
    corrupt = [paths[i] for i in (3, 4500, 9000, 12_001, 15_000)]
    for rel in corrupt[:2] + corrupt[3:]:
        st = (raw / rel).stat()
        (raw / rel).write_bytes(b"1" * st.st_size if rel == paths[15_000] else b"changed\n")
        os.utime(raw / rel, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a new mtime for certain
    bad = raw / paths[9000]  # the manifest recorded a bad copy: its sum is not upstream's, so it is hashed
    bad.write_bytes(b"bad\n")
    st = bad.stat()
    with RawManifest.for_dataset(raw) as m:
        m.put(Entry(paths[9000], st.st_size, st.st_mtime_ns, hashlib.sha256(b"bad\n").hexdigest(), "data"))
    touched = raw / paths[5000]
    st = touched.stat()
    os.utime(touched, ns=(st.st_atime_ns, st.st_mtime_ns + 5 * 10**9))
    unexpected = ["newdir/x.bin", "p00/extra.dat", "p10/s05000.dat.tmp", "p39/s99999.dat"]
    for rel in unexpected:
        (raw / rel).parent.mkdir(exist_ok=True)
        (raw / rel).write_bytes(b"x")

    settings = fast_settings(tmp_path, {"physionet": "http://127.0.0.1:9"})
    p = plan(Catalog([recipes]).load("bigtree"), settings)
    assert p.files == 20_000
    assert p.present_files == 20_000 - len(missing) - len(corrupt) - 1
    assert p.present_bytes == sum((raw / rel).stat().st_size for rel in paths if (raw / rel).exists())

    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": "http://127.0.0.1:9"}
    for how in (["--metadata"], []):
        r = run_climb(*args, "verify", "bigtree", *how, "--json", env=env)
        (rep,) = json.loads(r.stdout)
        assert r.returncode == 1, r.stderr
        assert rep["checked"] == 20_000
        assert (rep["missing"], rep["corrupt"], rep["unexpected"]) == (missing, corrupt, unexpected), how
        assert rep["never_listed"] == rep["lists_missing"] == []
        if how:  # the touched file was re-hashed: its row has the new mtime and keeps where it came from
            db = sqlite3.connect(raw / ".climb" / "manifest.sqlite")
            row = db.execute(
                "SELECT mtime_ns, url, etag FROM files WHERE path = ?", (paths[5000],)
            ).fetchone()
            db.close()
            assert row == (touched.stat().st_mtime_ns, url + paths[5000], "etag")


def test_tasks_of_small_files_are_hashed_one_at_a_time_beside_large_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two threads hashing small files at once mostly hand the GIL to each other (hash_plan.gil_bound):
    with 2 workers, 400 small files (4 tasks, as each file also costs PER_FILE) are never hashed by
    two threads at the same moment, and every file is still checked. The real hash function runs; the
    spy only records when."""
    import threading
    import time

    from climb_cli import verify as verify_mod
    from climb_cli.catalog import Catalog
    from climb_cli.fakes.physionet import write_sha256sums
    from climb_cli.hash_plan import MIN_TASK
    from climb_cli.settings import Settings

    raw = tmp_path / "data" / "raw" / "smallfiles"
    for i in range(400):
        (raw / f"{i // 100}").mkdir(parents=True, exist_ok=True)
        (raw / f"{i // 100}" / f"{i:03d}.dat").write_bytes(i.to_bytes(2, "big") * (500 + i))
    (raw / "big.bin").write_bytes(b"\x01" * (MIN_TASK + 1))
    write_sha256sums(raw)
    recipes = tmp_path / "recipes"
    recipes.mkdir()
    (recipes / "smallfiles.yaml").write_text(
        "name: smallfiles\ntitle: small files\nmodality: ecg\nlicense: CC0-1.0\naccess: open\n"
        "sources:\n  - id: data\n    kind: physionet\n    project: small\n    version: 1.0.0\n"
    )
    settings = Settings.from_env(tmp_path / "data", [recipes]).with_(
        mirrors={"physionet": "http://127.0.0.1:9"}
    )
    recipe = Catalog(settings.recipe_dirs).load("smallfiles")

    real = verify_mod.stat_and_hash
    guard = threading.Lock()
    busy: set[int] = set()
    overlaps: list[str] = []

    def spy(path: str, *algos: str) -> tuple[int, int, dict[str, str]]:
        if path.endswith("big.bin"):
            return real(path, *algos)
        me = threading.get_ident()
        with guard:
            if busy - {me}:
                overlaps.append(path)
            busy.add(me)
        try:
            time.sleep(0.0005)  # room for another thread to start a small file, if it may
            return real(path, *algos)
        finally:
            with guard:
                busy.discard(me)

    monkeypatch.setattr(verify_mod, "stat_and_hash", spy)
    report, bad = verify_mod.verify_raw(recipe, settings, workers=2)
    assert report.ok and not bad and report.checked == 401
    assert overlaps == []


def test_a_folder_where_a_file_should_be_is_reported_missing_not_an_internal_error(
    tmp_path: Path, downloaded: tuple[list[str], dict[str, str]]
) -> None:
    args, env = downloaded
    raw = tmp_path / "data" / "raw" / "toyecg"
    victim = raw / "records500" / "00000" / "00008_hr.hea"
    victim.unlink()
    victim.mkdir()
    (victim / "mine.txt").write_text("a user's file")
    for extra in ([], ["--metadata"]):
        r = run_climb(*args, "verify", "toyecg", *extra, env=env)
        assert r.returncode == 1, r.stderr
        assert "internal error" not in r.stderr
        assert "missing: records500/00000/00008_hr.hea" in r.stdout
    r = run_climb(*args, "verify", "toyecg", "--repair", env=env)
    assert r.returncode != 0 and "internal error" not in r.stderr
    assert (
        "records500/00000/00008_hr.hea: a folder or other non-file is where this file goes"
        in r.stdout + r.stderr
    )
    assert (victim / "mine.txt").read_text() == "a user's file"
