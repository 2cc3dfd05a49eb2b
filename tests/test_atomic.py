"""climb_cli.atomic: the final name holds the old bytes or the new, never half; temp files never stay."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from climb_cli import atomic


def test_write_replaces_whole_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "a" / "b.json"
    atomic.write_json(p, {"x": 1})
    atomic.write_text(p, "new")
    assert p.read_text() == "new" and [q.name for q in p.parent.iterdir()] == ["b.json"]


def test_failure_keeps_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "f.txt"
    p.write_text("old")
    with pytest.raises(RuntimeError), atomic.atomic_open(p) as f:
        f.write("half")
        raise RuntimeError("disk died")
    assert p.read_text() == "old" and [q.name for q in tmp_path.iterdir()] == ["f.txt"]


def test_perms_from_the_first_byte(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    atomic.write_bytes(p, b"s", perms=0o600)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_a_cache_written_without_fsync_is_still_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """durable=False (the download rates): no fsync of the file or its folder, and still the rename, so the
    final name holds the old bytes or the new; the default syncs both."""
    import os

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    p = tmp_path / "rates.json"
    atomic.write_json(p, {"x": 1}, durable=False)
    assert p.read_text() == '{"x": 1}' and [q.name for q in tmp_path.iterdir()] == ["rates.json"]
    assert synced == []
    atomic.write_json(p, {"x": 2})
    assert p.read_text() == '{"x": 2}' and len(synced) == 2
