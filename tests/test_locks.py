"""Per-dataset locks: a second run refuses with one line naming the holder; stale locks (dead pid on
this host, an untouched lock of another host) are taken over; `--part` runs never block each other."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.locks import STALE_AFTER, LockedError, dataset_lock, processed_lock, raw_lock
from tests.conftest import run_climb, write_recipe

SOURCE = """  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv, scp_statements.csv]
"""


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_second_holder_is_refused_naming_pid_and_host(tmp_path: Path) -> None:
    lock = tmp_path / "raw" / "x" / ".climb" / "lock"
    with dataset_lock(lock, "climb download", label="x: raw/x", tidy=(lock.parent, lock.parent.parent)):
        info = json.loads(lock.read_text())
        assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
        with dataset_lock(lock, "again"):  # reentrant within one process
            pass
        assert lock.exists()
        code = (
            "import sys; from pathlib import Path; from climb_cli.locks import dataset_lock\n"
            f"with dataset_lock(Path({str(lock)!r}), 'climb verify', label='x: raw/x'): pass\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "LockedError" in r.stderr
        assert f"x: raw/x: in use by pid {os.getpid()} on {socket.gethostname()} (climb download" in r.stderr
    assert not lock.exists() and not lock.parent.exists()  # released, no folder left behind


def test_stale_locks_are_taken_over(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lock = tmp_path / "d" / ".lock"
    lock.parent.mkdir()
    # this host, a process that is gone
    lock.write_text(json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "what": "climb x"}))
    with dataset_lock(lock, "climb preprocess"):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert "took over the lock of pid" in capsys.readouterr().err
    # another host (a cluster node), touched recently: held; untouched for longer than STALE_AFTER: taken
    lock.parent.mkdir(exist_ok=True)
    lock.write_text(json.dumps({"host": "node-17", "pid": 4242, "what": "climb download", "since": 0}))
    with pytest.raises(LockedError, match="in use by pid 4242 on node-17"), dataset_lock(lock, "climb x"):
        pass
    old = time.time() - STALE_AFTER - 60
    os.utime(lock, (old, old))
    with dataset_lock(lock, "climb download"):
        assert json.loads(lock.read_text())["host"] == socket.gethostname()


def test_download_verify_and_preprocess_refuse_while_another_run_holds_the_dataset(
    tmp_path: Path, server: FakePhysioNet
) -> None:
    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    assert run_climb(*args, "download", "toyecg", env=env).returncode == 0
    holder = f"pid {os.getpid()} on {socket.gethostname()}"
    with raw_lock(data / "raw" / "toyecg", "toyecg", "climb download"):
        before = len(server.log)
        for cmd in (["download", "toyecg"], ["verify", "toyecg", "--repair"]):
            r = run_climb(*args, *cmd, env=env)
            assert r.returncode == 1, r.stdout + r.stderr
            lines = [ln for ln in r.stderr.splitlines() if "in use by" in ln]
            assert len(lines) == 1 and holder in lines[0] and "internal error" not in r.stderr
        assert len(server.log) == before  # nothing fetched while the other run holds the dataset
    with processed_lock(data / "processed" / "toyecg", "toyecg", "climb preprocess"):
        r = run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env)
        assert r.returncode == 1 and f"toyecg: processed/toyecg: in use by {holder}" in r.stderr
        # the parts of an array job take no lock: they never block each other nor wait for this one
        for i in range(2):
            r = run_climb(*args, "preprocess", "toyecg", "--workers", "1", "--part", f"{i}/2", env=env)
            assert r.returncode == 0, r.stderr
    r = run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env)
    assert r.returncode == 0 and "already committed" in r.stdout


def test_two_downloads_of_one_dataset_at_once(tmp_path: Path, server: FakePhysioNet) -> None:
    """The issue's repro: a second `climb download` while the first is mid-transfer refuses in one line
    naming the first's pid; the first completes (was: both failed with `No such file or directory: …part`)."""
    import os as _os

    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--recipes", str(recipes), "download", "toyecg"]
    env = {k: v for k, v in _os.environ.items() if not k.startswith(("CLIMB_", "PHYSIONET_"))}
    env["CLIMB_PHYSIONET_URL"] = server.base_url
    # ~10 s for this 120 KB file: the second process (slow to start on a loaded machine) still finds the lock
    server.faults.add("throttle", path_glob="*/00002_hr.dat", bytes_per_second=12_000, times=-1)
    first = subprocess.Popen(
        [sys.executable, "-m", "climb_cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = data / "raw" / "toyecg" / ".climb" / "lock"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (data / "raw" / "toyecg" / "SHA256SUMS.txt").exists():
        time.sleep(0.01)
    assert lock.exists() and first.poll() is None
    second = run_climb(*args, env={"CLIMB_PHYSIONET_URL": server.base_url})
    out, err = first.communicate(timeout=60)
    assert first.returncode == 0, out + err
    assert "62 downloaded" in out
    assert second.returncode == 1
    (line,) = [ln for ln in second.stderr.splitlines() if ln.strip()]
    assert f"toyecg: raw/toyecg: in use by pid {first.pid} on {socket.gethostname()} (climb download" in line
