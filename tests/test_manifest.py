"""The raw manifest: a truncated or garbled manifest.sqlite is moved aside (kept), rebuilt by re-hashing
the files on disk, and download, verify and preprocess go on (was: `internal error: DatabaseError`)."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from pathlib import Path

import pytest

from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.manifest import RawManifest
from tests.conftest import run_climb, small_filesystem, write_recipe

SOURCE = """  - id: data
    kind: physionet
    project: ptb-xl
    version: 1.0.3
    include: [records500/, ptbxl_database.csv, scp_statements.csv]
"""


def _truncate(p: Path) -> None:
    with open(p, "r+b") as f:
        f.truncate(p.stat().st_size // 2)


def _garble(p: Path) -> None:
    data = bytearray(p.read_bytes())
    data[100:4096] = os.urandom(3996)  # the header's tail and the first page's cells
    p.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_truncate, _garble])
def test_damaged_manifest_is_set_aside_and_rebuilt_for_download_verify_preprocess(
    tmp_path: Path, server: FakePhysioNet, damage: object
) -> None:
    recipes = write_recipe(tmp_path / "recipes", "toyecg", SOURCE).parent
    args = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes)]
    env = {"CLIMB_PHYSIONET_URL": server.base_url}
    assert run_climb(*args, "download", "toyecg", env=env).returncode == 0
    assert run_climb(*args, "preprocess", "toyecg", "--workers", "1", env=env).returncode == 0
    raw = tmp_path / "data" / "raw" / "toyecg"
    db = raw / ".climb" / "manifest.sqlite"
    for cmd in (["download", "toyecg"], ["verify", "toyecg"], ["preprocess", "toyecg", "--workers", "1"]):
        for old in (raw / ".climb").glob("manifest.sqlite.damaged-*"):
            old.unlink()
        damage(db)  # type: ignore[operator]
        before = len(server.log)
        r = run_climb(*args, *cmd, env=env)
        assert r.returncode == 0, (cmd, r.stdout + r.stderr)
        assert "internal error" not in r.stderr
        (line,) = [ln for ln in r.stderr.splitlines() if "was damaged" in ln]
        assert (
            "moved it to manifest.sqlite.damaged-" in line and "rebuilt it by re-hashing 63 file(s)" in line
        )
        assert (
            len(list((raw / ".climb").glob("manifest.sqlite.damaged-*[0-9]"))) == 1
        )  # kept for a post-mortem
        if cmd[0] == "download":
            assert "0 downloaded" in r.stdout and len(server.log) == before + 0  # nothing fetched again
        if cmd[0] == "preprocess":
            m = re.search(r"in (\d+) shards \((\d+) already committed\)", r.stdout)
            assert m and m[1] == m[2], r.stdout  # the rebuilt sums are the same: nothing redone
    with RawManifest.for_dataset(raw) as m:
        rows = m.load_index()
    dat = raw / "records500" / "00000" / "00001_hr.dat"
    assert rows["records500/00000/00001_hr.dat"][2] == hashlib.sha256(dat.read_bytes()).hexdigest()


def test_a_full_disk_while_writing_the_manifest_is_one_clear_line(tmp_path: Path) -> None:
    from climb_cli.errors import DiskFullError
    from climb_cli.manifest import Entry

    with small_filesystem(tmp_path / "small", "256k") as small:
        m = RawManifest(small / ".climb" / "manifest.sqlite")
        with pytest.raises(DiskFullError) as info:  # was: sqlite3.OperationalError (an internal error)
            for i in range(20_000):
                m.put(Entry(f"records/{i:08d}.dat", i, i, "ab" * 32, "data", f"https://h/{i}" * 4))
            m.flush()
        text = str(info.value)
        assert text.startswith(f"no space left on {small / '.climb'}: ") and "bytes needed for" in text
        with contextlib.suppress(DiskFullError):
            m.close()


def test_rows_index_and_entries_read_the_manifest_in_batches(tmp_path: Path) -> None:
    """`rows` answers exactly the keys that have a row across its 500-key queries (in any order, with
    absent and repeated keys); the `Index` view answers like the dict `load_index` returns; `entries`
    pages one source's rows in path order."""
    from climb_cli.manifest import Entry

    with RawManifest.for_dataset(tmp_path / "raw") as m:
        m.put_batch([Entry(f"d/{i:05d}", i, 10 * i, f"{i:064x}", "a" if i % 3 else "b") for i in range(1234)])
        m.put(Entry("pending", 1, 2, "0" * 64))  # not yet flushed: `rows` flushes first
        want = m.load_index()
        keys = [f"d/{i:05d}" for i in range(2000, -1, -7)] + ["d/00007", "nope", "pending"]
        assert m.rows(keys) == {k: want[k] for k in keys if k in want}
        assert m.rows([]) == {}
        index = m.index()
        assert len(index) == len(want) and set(index) == set(want)
        assert index.get("d/00042") == want["d/00042"] == index["d/00042"]
        assert index.get("nope") is None and "nope" not in index and "d/00042" in index
        with pytest.raises(KeyError):
            index["nope"]
        b = list(m.entries("b", page=100))
        assert [e.path for e in b] == sorted(k for k in want if k.startswith("d/") and int(k[2:]) % 3 == 0)
        assert b[1] == Entry("d/00003", 3, 30, f"{3:064x}", "b")
