"""The raw manifest: one row per downloaded file (path, size, mtime, sha256, source URL, ETag, times).

It lives in raw/<dataset>/.climb/manifest.sqlite (SQLite in WAL mode: transactional, safe to
update from many threads, and a primary-key lookup stays fast at millions of rows). It is what
lets a rerun skip files that are present and verified without hashing them again: a file whose
size and mtime still match its row is trusted; anything else is hashed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    source TEXT NOT NULL DEFAULT '',
    url TEXT NOT NULL DEFAULT '',
    etag TEXT NOT NULL DEFAULT '',
    fetched_at REAL NOT NULL DEFAULT 0,
    verified_at REAL NOT NULL DEFAULT 0
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    mtime_ns: int
    sha256: str
    source: str = ""
    url: str = ""
    etag: str = ""
    fetched_at: float = 0.0
    verified_at: float = 0.0

    def matches(self, st: os.stat_result) -> bool:
        """The file on disk is the one this row describes (same size and modification time)."""
        return st.st_size == self.size and st.st_mtime_ns == self.mtime_ns


class RawManifest:
    """Thread-safe access to one dataset's manifest. Writes are batched and committed on flush/close."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self._pending: list[tuple] = []
        self._last_flush = time.monotonic()

    @classmethod
    def for_dataset(cls, raw_dir: Path) -> RawManifest:
        return cls(raw_dir / ".climb" / "manifest.sqlite")

    def __enter__(self) -> RawManifest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str) -> Entry | None:
        with self._lock:
            self._flush_locked()
            row = self._db.execute("SELECT * FROM files WHERE path = ?", (path,)).fetchone()
        return Entry(*row) if row else None

    def load(self) -> dict[str, Entry]:
        """Every row at once (one scan: ~1 s per million rows), for bulk skip checks."""
        with self._lock:
            self._flush_locked()
            return {r[0]: Entry(*r) for r in self._db.execute("SELECT * FROM files")}

    def load_index(self) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, sha256) for every row: the light form a skip check needs."""
        with self._lock:
            self._flush_locked()
            return {
                r[0]: (r[1], r[2], r[3])
                for r in self._db.execute("SELECT path, size, mtime_ns, sha256 FROM files")
            }

    def put(self, e: Entry) -> None:
        with self._lock:
            self._pending.append(
                (e.path, e.size, e.mtime_ns, e.sha256, e.source, e.url, e.etag, e.fetched_at, e.verified_at)
            )
            if len(self._pending) >= 1000 or time.monotonic() - self._last_flush > 2.0:
                self._flush_locked()

    def put_many(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.put(e)

    def put_batch(self, entries: list[Entry]) -> None:
        """Many rows in one transaction (verify's results)."""
        with self._lock:
            self._flush_locked()
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)",
                [
                    (
                        e.path,
                        e.size,
                        e.mtime_ns,
                        e.sha256,
                        e.source,
                        e.url,
                        e.etag,
                        e.fetched_at,
                        e.verified_at,
                    )
                    for e in entries
                ],
            )
            self._db.execute("COMMIT")

    def touch_verified(self, paths: list[str], when: float) -> None:
        """Record that these rows were re-verified unchanged (one UPDATE per row, one transaction)."""
        with self._lock:
            self._flush_locked()
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE files SET verified_at = ? WHERE path = ?", [(when, p) for p in paths]
            )
            self._db.execute("COMMIT")

    def delete(self, paths: Iterable[str]) -> None:
        with self._lock:
            self._flush_locked()
            self._db.execute("BEGIN")
            self._db.executemany("DELETE FROM files WHERE path = ?", [(p,) for p in paths])
            self._db.execute("COMMIT")

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)", self._pending)
            self._db.execute("COMMIT")
            self._pending.clear()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        with self._lock:
            self._flush_locked()
            self._db.close()
