"""The raw manifest: one row per downloaded file (path, size, mtime, sha256, source URL, ETag, times).

It lives in raw/<dataset>/.climb/manifest.sqlite (SQLite in WAL mode: transactional, safe to
update from many threads, and a primary-key lookup stays fast at millions of rows). It is what
lets a rerun skip files that are present and verified without hashing them again: a file whose
size and mtime still match its row is trusted; anything else is hashed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from climb_cli.errors import ClimbError, is_disk_full, no_space
from climb_cli.hashing import sha256_file
from climb_cli.settings import writable

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


def connect_readonly(path: Path) -> sqlite3.Connection:
    """Open a manifest for reading only: read access is all it needs. On a read-only copy (a shared
    lab mirror) SQLite cannot create the WAL index beside it, so the file is opened as immutable."""
    mode = "ro" if writable(path.parent) and writable(path) else "ro&immutable=1"
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode={mode}", uri=True, check_same_thread=False)


def walk_files(root: Path) -> list[str]:
    """Every regular file below root (relative POSIX paths), skipping climb's own .climb folder."""
    return list(iter_files(root))


def iter_files(root: Path) -> Iterator[str]:
    """`walk_files` one path at a time (a million files: no list of them)."""
    stack = [(root, "")]
    while stack:
        d, prefix = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            rel = prefix + e.name
            if e.is_dir(follow_symlinks=False):
                if rel != ".climb":
                    stack.append((Path(e.path), rel + "/"))
            elif e.is_file(follow_symlinks=False):
                yield rel


Row = tuple[int, int, str]  # a file's recorded (size, mtime_ns, sha256)
_BATCH = 500  # keys per lookup query (under SQLite's oldest limit of 999 bound parameters)


def rows_for(known: Mapping[str, Row], keys: Sequence[str]) -> Mapping[str, Row]:
    """The rows of `keys` from `known` (an `Index`: one query per 500 keys; a dict: itself), for a caller
    that checks many files in a row: a chunk of a million files costs ~1 us a file, not one query each."""
    many = getattr(known, "many", None)
    return many(keys) if many is not None else known


_INSERT = "INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?,?,?)"


def _row(e: Entry) -> tuple:
    return (e.path, e.size, e.mtime_ns, e.sha256, e.source, e.url, e.etag, e.fetched_at, e.verified_at)


_checked: set[tuple[str, int, int]] = set()  # manifests found sound by this process (path, size, mtime)
_checked_lock = threading.Lock()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute(_SCHEMA)
    return db


def _damage(path: Path) -> str | None:
    """Why the manifest at `path` is unusable (truncated, garbled), or None when it is sound. SQLite's
    quick_check reads every page (~1 s per million rows); a sound file is checked once per process."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key in _checked:
        return None
    db = None
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute("PRAGMA quick_check").fetchall()
        db.execute("SELECT path, size, mtime_ns, sha256, source, url FROM files LIMIT 1").fetchall()
    except sqlite3.DatabaseError as e:
        return str(e)
    finally:
        if db is not None:
            db.close()
    if rows != [("ok",)]:
        return "; ".join(str(r[0]) for r in rows[:3])
    with _checked_lock:
        _checked.add(key)
    return None


def _set_aside(path: Path, why: str) -> Path:
    """Move a damaged manifest (and its WAL/SHM files) aside, keeping it; returns where it went."""
    stamp = time.strftime("%Y%m%dT%H%M%S")
    aside = path.with_name(f"{path.name}.damaged-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.damaged-{stamp}-{n}")
    try:
        for suffix in ("-wal", "-shm", ""):
            part = path.with_name(path.name + suffix)
            if part.exists():
                os.replace(part, aside.with_name(aside.name + suffix))
    except OSError as e:
        raise ClimbError(
            f"{path} is damaged ({why}) and cannot be moved aside ({e.strerror}); ask whoever can write "
            f"there to run `climb verify` on this dataset, which rebuilds it"
        ) from None
    return aside


def rebuild(manifest: RawManifest, raw_root: Path, workers: int | None = None) -> int:
    """Fill an empty manifest by hashing every file under raw_root (archive members get their
    archive back from the extraction state files). Returns how many files were hashed."""
    files = walk_files(raw_root)
    members: dict[str, str] = {}
    for state in (raw_root / ".climb").glob("extracted-*.json"):
        try:
            data = json.loads(state.read_text(encoding="utf-8"))
            for mkey, row in data.get("members", {}).items():
                members[mkey] = f"{data['archive']}!/{row[3] if len(row) > 3 else mkey}"
        except (OSError, ValueError, KeyError, TypeError, AttributeError, IndexError):
            continue

    def one(rel: str) -> Entry | None:
        p = raw_root / rel
        try:
            st = p.stat()
            digest = sha256_file(p)
        except OSError:
            return None
        now = time.time()
        return Entry(rel, st.st_size, st.st_mtime_ns, digest, "", members.get(rel, ""), "", 0.0, now)

    with ThreadPoolExecutor(workers or os.cpu_count() or 2, thread_name_prefix="climb-rehash") as pool:
        entries = [e for e in pool.map(one, files) if e is not None]
    manifest.put_batch(entries)
    return len(entries)


class Index(Mapping[str, Row]):
    """path -> (size, mtime_ns, sha256), read from the manifest when asked instead of loaded whole
    (a million rows as a dict: ~350 MB). `many` reads a batch of keys at once; `get` one (~5 us). It reads
    the committed rows at the time of the lookup (rows still pending in this process are not seen)."""

    def __init__(self, manifest: RawManifest) -> None:
        self._m = manifest

    def many(self, keys: Sequence[str]) -> dict[str, Row]:
        return self._m.rows(keys, flush=False)

    def get(self, key: str, default: Row | None = None) -> Row | None:  # type: ignore[override]
        return self._m.rows([key], flush=False).get(key, default)

    def __getitem__(self, key: str) -> Row:
        row = self.get(key)
        if row is None:
            raise KeyError(key)
        return row

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._m.load_index()))

    def __len__(self) -> int:
        with self._m._lock:
            return int(self._m._db.execute("SELECT count(*) FROM files").fetchone()[0])


class RawManifest:
    """Thread-safe access to one dataset's manifest. Writes are batched and committed on flush/close.

    Opened with read_only=True (a raw folder this process may not write), every write is skipped
    and `read_only` says so; an absent manifest then reads as empty."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._lock = threading.Lock()
        self._pending: list[tuple] = []
        self._last_flush = time.monotonic()
        if read_only:
            self._db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
            if path.is_file():
                self._db = connect_readonly(path)
                self._db.isolation_level = None
            else:
                self._db.execute(_SCHEMA)
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        why = _damage(path)
        if why is None:
            try:
                self._db = _connect(path)
                return
            except sqlite3.DatabaseError as e:
                why = str(e)
        aside = _set_aside(path, why)
        self._db = _connect(path)
        raw_root = path.parent.parent
        n = rebuild(self, raw_root)
        sys.stderr.write(
            f"climb: {path} was damaged ({why}); moved it to {aside.name} and rebuilt it by re-hashing "
            f"{n:,} file(s) under {raw_root}\n"
        )

    @classmethod
    def for_dataset(cls, raw_dir: Path) -> RawManifest:
        return cls(raw_dir / ".climb" / "manifest.sqlite")

    @classmethod
    def for_reading(cls, raw_dir: Path, *, create: bool = True) -> RawManifest:
        """Read-only when this process may not write the manifest (or create it), else writable, so a
        damaged manifest is set aside and rebuilt. create=False: an absent manifest is read as empty
        and nothing is created (a dry run, a preprocess of files placed by hand)."""
        path = raw_dir / ".climb" / "manifest.sqlite"
        can_write = writable(path) and writable(path.parent) and (create or path.is_file())
        return cls(path, read_only=not can_write)

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

    def entries(self, source: str, page: int = 5000) -> Iterator[Entry]:
        """Every row of one source, in path order, read a page at a time (never the whole table)."""
        after = ""
        while True:
            with self._lock:
                self._flush_locked()
                rows = self._db.execute(
                    "SELECT * FROM files WHERE source = ? AND path > ? ORDER BY path LIMIT ?",
                    (source, after, page),
                ).fetchall()
            yield from (Entry(*r) for r in rows)
            if len(rows) < page:
                return
            after = rows[-1][0]

    def index(self) -> Index:
        """The light form a skip check needs (path -> (size, mtime_ns, sha256)), read on demand."""
        return Index(self)

    def rows(self, keys: Sequence[str], *, flush: bool = True) -> dict[str, Row]:
        """path -> (size, mtime_ns, sha256) of those of `keys` that have a row (one query per 500 keys)."""
        out: dict[str, Row] = {}
        with self._lock:
            if flush:
                self._flush_locked()
            for i in range(0, len(keys), _BATCH):
                part = keys[i : i + _BATCH]
                marks = ",".join("?" * len(part))
                sql = f"SELECT path, size, mtime_ns, sha256 FROM files WHERE path IN ({marks})"
                for path, size, mtime_ns, digest in self._db.execute(sql, part):
                    out[path] = (size, mtime_ns, digest)
        return out

    def put(self, e: Entry) -> None:
        if self.read_only:
            return
        with self._lock:
            self._pending.append(_row(e))
            if len(self._pending) >= 1000 or time.monotonic() - self._last_flush > 2.0:
                self._flush_locked()

    def put_many(self, entries: Iterable[Entry]) -> None:
        for e in entries:
            self.put(e)

    def put_batch(self, entries: list[Entry]) -> None:
        """Many rows in one transaction (verify's results)."""
        if self.read_only:
            return
        with self._lock:
            self._flush_locked()
            self._many(_INSERT, [_row(e) for e in entries])

    def touch_verified(self, paths: list[str], when: float) -> None:
        """Record that these rows were re-verified unchanged (one UPDATE per row, one transaction)."""
        if self.read_only:
            return
        with self._lock:
            self._flush_locked()
            self._many("UPDATE files SET verified_at = ? WHERE path = ?", [(when, p) for p in paths])

    def delete(self, paths: Iterable[str]) -> None:
        if self.read_only:
            return
        with self._lock:
            self._flush_locked()
            self._many("DELETE FROM files WHERE path = ?", [(p,) for p in paths])

    def flush(self) -> None:
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        if self._pending:
            self._many(_INSERT, self._pending)
            self._pending.clear()
        self._last_flush = time.monotonic()

    def _many(self, sql: str, rows: list[tuple]) -> None:
        """One transaction; a full disk is one clear line (the rows stay pending for a retry)."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany(sql, rows)
            self._db.execute("COMMIT")
        except sqlite3.OperationalError as e:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            if is_disk_full(e):
                need = sum(len(str(r)) for r in rows)
                raise no_space(self.path.parent, need, f"{len(rows):,} manifest row(s)") from None
            raise

    def close(self) -> None:
        with self._lock:
            try:
                self._flush_locked()
            finally:
                self._db.close()
