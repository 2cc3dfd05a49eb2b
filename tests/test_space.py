"""The one free-space check: sizes as users write them, the reserve, the streaming guard, and a disk that
really fills up (a small tmpfs; skipped where mount is not permitted)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from climb_cli import space
from climb_cli.errors import DiskFullError, UsageError
from tests.conftest import small_filesystem


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "1m") as d:
        yield d


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1 << 20),
        ("2G", 2 << 30),
        ("500M", 500 << 20),
        ("1.5GiB", 3 << 29),
        ("64k", 64 << 10),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert space.parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "2X"])
def test_parse_size_refuses_nonsense_with_the_option_name(text: str) -> None:
    with pytest.raises(UsageError, match=r"^--min-free "):
        space.parse_size(text)


def test_shortfall_counts_the_reserve_and_names_the_nearest_existing_folder(tmp_path: Path) -> None:
    reserve = space.free_bytes(tmp_path) + (1 << 30)  # more than the disk has (other runs share it)
    assert space.shortfall(tmp_path / "not" / "yet", 1, 0) is None
    line = space.shortfall(tmp_path / "not" / "yet", 1000, reserve)
    assert line is not None and line.startswith(f"no space left on {tmp_path}: 1,000 bytes needed, ")
    assert f"of which --min-free keeps {reserve:,}; free some space (or lower --min-free) and rerun" in line


def test_the_guard_looks_at_the_disk_once_per_interval(tmp_path: Path) -> None:
    guard = space.SpaceGuard(tmp_path, reserve=space.free_bytes(tmp_path) + (1 << 30), every=1000)
    guard.wrote(999)  # no check yet: statvfs is not called per chunk
    with pytest.raises(DiskFullError, match="of which --min-free keeps "):
        guard.wrote(1)


def test_the_guard_checks_many_small_files_with_one_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run of many small files: one statvfs for all their up-front checks (the last look, less what was
    written since, still leaves room), a new look once `every` bytes were written or the look is old, and a
    need that does not fit in what the last look saw is looked at again (then refused)."""
    import shutil

    looks: list[str] = []
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: looks.append(str(p)) or real(p))
    free = space.free_bytes(tmp_path)
    looks.clear()
    guard = space.SpaceGuard(tmp_path, reserve=0, every=1 << 20, max_age=60)
    for _ in range(100):
        guard.check(1000)
        guard.wrote(1000, 0)
    assert len(looks) == 1
    guard.wrote(1 << 20)  # past the interval: a look
    assert len(looks) == 2
    guard.check(1000)
    assert len(looks) == 2
    with pytest.raises(DiskFullError, match=r"bytes needed"):
        guard.check(free + (1 << 40))  # more than the last look saw: looked at again, and refused
    assert len(looks) == 3
    stale = space.SpaceGuard(tmp_path, reserve=0, every=1 << 20, max_age=0)
    stale.check(1000)
    stale.check(1000)
    assert len(looks) == 5


def test_sqlite_disk_full_and_enospc_become_one_line(small_disk: Path) -> None:
    db = sqlite3.connect(small_disk / "m.sqlite")
    db.execute("CREATE TABLE t (b BLOB)")
    db.commit()
    (small_disk / "filler").write_bytes(os.urandom(900_000))
    with pytest.raises(sqlite3.OperationalError, match="database or disk is full"), db:  # sqlite says ...
        db.execute("INSERT INTO t VALUES (?)", (os.urandom(400_000),))
    line = rf"^no space left on {small_disk}: more bytes needed, [\d,]+ free; free some space and rerun \("
    with pytest.raises(DiskFullError, match=line), space.said_when_full(small_disk), db:  # ... climb says
        db.execute("INSERT INTO t VALUES (?)", (os.urandom(400_000),))
    db.close()
    with pytest.raises(DiskFullError), space.said_when_full(small_disk):
        (small_disk / "more").write_bytes(os.urandom(400_000))  # ENOSPC from a plain write
    with (
        pytest.raises(sqlite3.OperationalError, match="no such table"),  # other errors pass through
        space.said_when_full(small_disk),
    ):
        sqlite3.connect(small_disk / "m.sqlite").execute("SELECT * FROM missing")
