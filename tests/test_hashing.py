"""hashing.py: digests equal hashlib's over every byte (empty, exactly one buffer, past it), several
algorithms in one read, and the size and mtime of the file that was read."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from climb_cli.hashing import BUFFER, hash_file, sha256_file, stat_and_hash


@pytest.mark.parametrize("size", [0, 1, BUFFER - 1, BUFFER, BUFFER + 1, 3 * BUFFER + 17])
def test_digests_cover_every_byte(tmp_path: Path, size: int) -> None:
    data = os.urandom(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hash_file(path, "sha256", "md5") == {
        "sha256": hashlib.sha256(data).hexdigest(),
        "md5": hashlib.md5(data).hexdigest(),
    }
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    size_seen, mtime_ns, digests = stat_and_hash(str(path))
    assert (size_seen, mtime_ns) == (size, path.stat().st_mtime_ns)
    assert digests == {"sha256": hashlib.sha256(data).hexdigest()}


def test_the_buffer_is_reused_across_files_without_leaking_bytes(tmp_path: Path) -> None:
    long, short = tmp_path / "long.bin", tmp_path / "short.bin"
    long.write_bytes(b"\xaa" * (BUFFER + 5))
    short.write_bytes(b"\x01\x02")
    hash_file(long)
    assert hash_file(short) == {"sha256": hashlib.sha256(b"\x01\x02").hexdigest()}


def test_a_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        stat_and_hash(str(tmp_path / "gone"))
