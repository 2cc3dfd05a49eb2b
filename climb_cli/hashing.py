"""Hashing files: hashlib (OpenSSL, SHA-NI: ~1.9 GB/s per core) with one reusable buffer per
thread, so hashing many small files costs no allocation each."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

_local = threading.local()
BUFFER = 1024 * 1024


def hash_file(path: Path, *algos: str) -> dict[str, str]:
    """Hex digests of `path` for each algorithm (e.g. "sha256", "md5"), in one read."""
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(BUFFER)
    view = memoryview(buf)
    hashers = {a: hashlib.new(a) for a in algos or ("sha256",)}
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            chunk = view[:n]
            for h in hashers.values():
                h.update(chunk)
    return {a: h.hexdigest() for a, h in hashers.items()}


def sha256_file(path: Path) -> str:
    return hash_file(path, "sha256")["sha256"]
