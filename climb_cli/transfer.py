"""The download engine: concurrent, resumable, verified transfers for every source.

- a thread pool with a per-host connection cap;
- connect/read timeouts, retries with exponential backoff and jitter on connection errors,
  5xx and 429 (Retry-After honoured);
- bytes go to raw/<dataset>/.climb/partial/<path>.part, resumed with Range + If-Range (206
  appends, a 200 restarts, 416 means the part is already whole or stale); a small body of declared length
  (<= SIDECAR_MIN) waits in memory and its commit writes the part, unless it is cut off (then the bytes
  received go to the part, to be resumed like any other);
- Accept-Encoding: identity, so the bytes hashed are the bytes upstream published;
- SHA-256 (and MD5 where that is the upstream sum) computed while streaming and checked before
  the atomic rename to the final name, so a partial or corrupt file never sits under a final name;
- files already present and recorded in the raw manifest are skipped without re-hashing;
- one file's flow (:meth:`Downloader.fetch`): resolve the partial file -> request or resume -> stream and
  hash -> verify -> commit (fsync, rename); in a run the commits go to a small pool of their own, so a
  connection fetches its next file while the disk syncs the last (the manifest row follows the rename);
- a run's order: files of known size largest first (unknown sizes before them); a fresh download looks at
  the disk only where it must (the partial files are scanned once per run);
- limits: a body longer than the size declared (Content-Length, else the listing's) fails that file at once;
  every run keeps ``min_free`` bytes free on the data disk (space.SpaceGuard: one statvfs per 16 MiB
  written by all transfers), and a full disk stops the run with one line (DiskFullError);
- stalls: a body slower than ``stall_speed`` bytes/s over ``stall_time`` seconds (curl's
  --speed-limit/--speed-time) is retried like a dropped connection (resumed), then fails with one line;
- every retry wait is reported through the retry policy (net.retry: the ``climb.net`` logger).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import urllib3

from climb_cli import redaction, space
from climb_cli.errors import AccessError, TransferError, is_disk_full
from climb_cli.events import Outcome, Progress
from climb_cli.hashing import hash_file
from climb_cli.manifest import Entry, RawManifest, Row, rows_for
from climb_cli.net.retry import (
    NETWORK_ERRORS,
    RETRY_STATUS,
    GiveUp,
    Retrier,
    RetryPolicy,
    retry_after_seconds,
)
from climb_cli.settings import Settings
from climb_cli.sources.base import RemoteFile, Source

SIDECAR_MIN = 1024 * 1024  # below this, a transfer killed mid-way restarts instead of resuming
MISMATCH_RETRIES = 2  # a whole body with the wrong sum is fetched afresh this many more times
COMMITTERS = 4  # threads that fsync and rename received files while the connections fetch the next ones
PENDING_COMMITS = 8 * COMMITTERS  # received files waiting for a committer (each <= SIDECAR_MIN in memory)
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes \*/(\d+)")
_NETWORK_ERRORS = NETWORK_ERRORS
__all__ = ["RETRY_STATUS", "Downloader", "fetch_one", "retry_after_seconds"]


_hash_file = hash_file  # the name other modules import


def _body_chunks(resp: requests.Response, size: int) -> Iterator[bytes]:
    """The raw body as it arrives (read1), so bytes received before a drop are kept, not discarded
    with a half-filled chunk; urllib3 errors surface as requests' own exception types."""
    raw = resp.raw
    while True:
        try:
            chunk = raw.read1(size)
        except urllib3.exceptions.ReadTimeoutError as e:
            raise requests.exceptions.ReadTimeout(e) from e
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise requests.exceptions.ChunkedEncodingError(e) from e
        if not chunk:
            return
        yield chunk


def _algos(rf: RemoteFile) -> list[str]:
    """sha256 always (the manifest keys on it); md5 too when that is the only upstream sum."""
    return ["sha256", "md5"] if rf.md5 and not rf.sha256 else ["sha256"]


def _refused(rf: RemoteFile, first: Outcome) -> Outcome:
    """The outcome of a file not attempted because its source already refused another (same error, reason)."""
    return Outcome(rf, "failed", error=first.error, access_denied=True, reason=first.reason)


class _Stalled(Exception):
    """The body arrived slower than the stall threshold over a whole window."""


class _StallClock:
    """Throughput over consecutive windows of ``window`` seconds (curl's --speed-limit/--speed-time):
    :meth:`tick` after each chunk raises _Stalled when a finished window averaged under ``speed``."""

    def __init__(self, speed: float | None, window: float | None) -> None:
        self.speed, self.window = speed, window
        self.start, self.bytes = time.monotonic(), 0

    def tick(self, n: int, written: int) -> None:
        if not self.speed or not self.window:
            return
        self.bytes += n
        now = time.monotonic()
        elapsed = now - self.start
        if elapsed < self.window:
            return
        rate = self.bytes / elapsed
        if rate < self.speed:
            raise _Stalled(
                f"stalled: {rate:.1f} bytes/s over {elapsed:.1f}s (below {self.speed:.0f} bytes/s) "
                f"after {written} bytes"
            )
        self.start, self.bytes = now, 0


@dataclass
class _Part:
    """The partial file of one transfer and what we know about the bytes already in it."""

    path: Path
    meta_path: Path
    validator: str = ""  # ETag (or Last-Modified) of the response the bytes came from
    url: str = ""
    fresh: bool = False  # known absent (nothing written yet): no stat needed to know its size is 0
    meta_maybe: bool = True  # the .part.json may exist (False: known absent)

    @classmethod
    def for_file(cls, raw_root: Path, rel: str, *, fresh: bool = False) -> _Part:
        """The partial file of rel; ``fresh``: the caller knows neither file exists (no look at the disk)."""
        base = raw_root / ".climb" / "partial" / rel
        part = cls(base.with_name(base.name + ".part"), base.with_name(base.name + ".part.json"))
        if fresh:
            part.fresh = True
            part.meta_maybe = False
        elif part.meta_path.is_file():
            try:
                meta = json.loads(part.meta_path.read_text())
                part.validator, part.url = meta.get("validator", ""), meta.get("url", "")
            except (ValueError, OSError):
                pass
        return part

    def size(self) -> int:
        if self.fresh:
            return 0
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def save_meta(self) -> None:
        self.meta_maybe = True
        self.meta_path.write_text(
            json.dumps({"validator": self.validator, "url": redaction.redact_url(self.url)})
        )

    def discard(self) -> None:
        for p in (self.path, self.meta_path):
            p.unlink(missing_ok=True)
        self.fresh, self.meta_maybe = True, False

    def unlink_meta(self) -> None:
        if self.meta_maybe:
            self.meta_path.unlink(missing_ok=True)
            self.meta_maybe = False


def _partial_files(raw_root: Path) -> set[str]:
    """The files (relative to raw_root, without .part / .part.json) that have partial bytes or a sidecar under
    raw_root/.climb/partial: one walk per run, so that a file not among them needs no look for its part."""
    root = raw_root / ".climb" / "partial"
    found: set[str] = set()
    for folder, _dirs, names in os.walk(root):
        rel = os.path.relpath(folder, root)
        for name in names:
            for suffix in (".part", ".part.json"):
                if name.endswith(suffix):
                    found.add(os.path.normpath(os.path.join(rel, name.removesuffix(suffix))))
    return found


_FLAGS = {"wb": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "ab": os.O_WRONLY | os.O_CREAT | os.O_APPEND}


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _write_part(path: Path, chunks: list[bytes]) -> None:
    """A small body kept in memory, written to its part file and synced (the commit's first step)."""
    fd = os.open(path, _FLAGS["wb"] | os.O_CLOEXEC, 0o666)
    try:
        for chunk in chunks:
            _write_all(fd, chunk)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        path.unlink(missing_ok=True)
        raise
    os.close(fd)


class _Body:
    """Where a body's bytes go as they arrive: the part file (raw fd writes), or for a small fresh body of
    declared length (at most SIDECAR_MIN: one that would restart rather than resume after kill -9) memory,
    which the commit writes, so the connection goes on to its next file without creating one first.
    :meth:`spill` puts the bytes kept so far into the part (a drop, a short body: the next try resumes)."""

    def __init__(self, part: _Part, mode: str, keep: bool) -> None:
        self.part, self.mode = part, mode
        self.chunks: list[bytes] | None = [] if keep else None
        self.fd: int | None = None
        if not keep:
            self._open()

    def _open(self) -> None:
        self.part.fresh = False
        self.fd = os.open(self.part.path, _FLAGS[self.mode] | os.O_CLOEXEC, 0o666)

    def write(self, chunk: bytes) -> None:
        if self.chunks is not None:
            self.chunks.append(chunk)
        elif self.fd is not None:
            _write_all(self.fd, chunk)

    def spill(self) -> None:
        if self.chunks is None:
            return
        chunks, self.chunks = self.chunks, None
        self._open()
        for chunk in chunks:
            self.write(chunk)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class _Transfer:
    """One file on its way: what the steps of :meth:`Downloader.fetch` share across attempts."""

    source: Source
    rf: RemoteFile  # may learn a sum from the response (response_checksum)
    dest: Path
    part: _Part
    policy: RetryPolicy
    attempt: Retrier
    guard: space.SpaceGuard
    mismatches: list[str] = field(default_factory=list)  # sums of whole fresh bodies that did not match
    asked: RemoteFile = field(init=False)  # rf as the caller gave it (outcomes name this object)

    def __post_init__(self) -> None:
        self.asked = self.rf


@dataclass
class _Received:
    """Verified bytes still under the .part name, ready to commit."""

    part: _Part
    rf: RemoteFile
    dest: Path
    hashes: dict[str, str]
    size: int
    validator: str
    asked: RemoteFile  # the file as the caller gave it (rf may have learned a sum on the way)
    data: list[bytes] | None = None  # a small body kept in memory: the commit writes it to the part


@dataclass
class Downloader:
    """Downloads RemoteFiles of sources into their raw folders, recording each in the manifest."""

    settings_retries: int = 8
    backoff: float = 1.0
    backoff_max: float = 120.0
    chunk_size: int = 1024 * 1024
    per_host: int = 4
    progress: Progress = field(default_factory=Progress)
    sleep: Callable[[float], None] = time.sleep
    min_free: int = 0  # bytes kept free on the data disk while streaming
    free_check_every: int = space.CHECK_EVERY
    stall_speed: float | None = None  # bytes/s; a body slower than this over stall_time is a stall
    stall_time: float | None = None
    skipped_files: int = 0  # the last run's files only counted as skipped (run(count_skips=True))
    skipped_bytes: int = 0
    _dirs: set[Path] = field(default_factory=set, repr=False)
    _guards: dict[Path, space.SpaceGuard] = field(default_factory=dict, repr=False)
    # a run's knowledge, so that a fresh download looks at the disk no more than it must: the partial files
    # of each raw folder (scanned once), and the files found absent by the skip check
    _partials: dict[Path, set[str]] = field(default_factory=dict, repr=False)
    _absent: set[int] = field(default_factory=set, repr=False)  # id() of RemoteFiles of this run

    def _ensure_dir(self, path: Path) -> None:
        """mkdir -p, once per folder per run (a folder of 10,000 files costs one call, not 10,000)."""
        if path not in self._dirs:
            path.mkdir(parents=True, exist_ok=True)
            self._dirs.add(path)

    @classmethod
    def from_settings(cls, settings: Settings, progress: Progress | None = None) -> Downloader:
        return cls(
            settings_retries=settings.retries,
            backoff=settings.backoff,
            backoff_max=settings.backoff_max,
            chunk_size=settings.chunk_size,
            per_host=settings.connections_per_host,
            progress=progress or Progress(),
            min_free=settings.min_free,
            stall_speed=settings.stall_speed or None,
            stall_time=settings.stall_time or None,
        )

    # -- one file ---------------------------------------------------------------------------------
    @property
    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            retries=self.settings_retries,
            backoff=self.backoff,
            backoff_max=self.backoff_max,
            stall_bytes_per_s=self.stall_speed,
            stall_window_s=self.stall_time,
            sleep=self.sleep,
        )

    def _guard(self, raw_root: Path) -> space.SpaceGuard:
        if raw_root not in self._guards:
            self._guards[raw_root] = space.SpaceGuard(raw_root, self.min_free, self.free_check_every)
        return self._guards[raw_root]

    def fetch(self, source: Source, rf: RemoteFile, dest: Path, raw_root: Path) -> tuple[int, str, str]:
        """Download rf to dest through a .part file; returns (size, sha256, etag). Raises on failure.

        The flow: resolve the partial file (:meth:`_begin`), then attempts until one yields verified bytes
        (:meth:`_attempt`: request or resume, stream and hash, verify), then the commit (fsync, rename)."""
        return self._commit(self.receive(source, rf, dest, raw_root))

    def receive(self, source: Source, rf: RemoteFile, dest: Path, raw_root: Path) -> _Received:
        """Every step of :meth:`fetch` but the commit: the verified bytes, still under the .part name."""
        t = self._begin(source, rf, dest, raw_root)
        while True:
            got = self._attempt(t)
            if got is not None:
                return got

    def _begin(self, source: Source, rf: RemoteFile, dest: Path, raw_root: Path) -> _Transfer:
        """Resolve: the partial file of dest, kept only when its bytes came from this URL with a validator."""
        rel = os.path.relpath(dest, raw_root)
        partials = self._partials.get(raw_root)
        part = _Part.for_file(raw_root, rel, fresh=partials is not None and rel not in partials)
        self._ensure_dir(part.path.parent)
        if (part.url and part.url != redaction.redact_url(rf.url)) or (not part.validator and part.size()):
            part.discard()  # bytes of some other URL, or of an unknown version: never mix them
        policy = self.policy
        attempt = policy.start(f"{source.recipe.name}: {rf.path} from {urlsplit(rf.url).netloc}")
        return _Transfer(source, rf, dest, part, policy, attempt, self._guard(raw_root))

    def _attempt(self, t: _Transfer) -> _Received | None:
        """One request: the verified bytes, or None to try again (after the retry policy's wait)."""
        offset = t.part.size()
        resp = self._request(t, offset)
        if resp is None:
            return None
        try:
            if not self._usable(t, resp, offset):
                return None
            if resp.status_code == 416:  # the part holds the whole file already
                hashes = _hash_file(t.part.path, *_algos(t.rf))
                return _Received(t.part, t.rf, t.dest, hashes, offset, t.part.validator, t.asked)
            body = self._body_start(t, resp, offset)
            if body is None:
                return None
            hashers, mode, offset, expected_total = body  # offset 0 unless a 206 appends
            streamed = self._stream(t, resp, hashers, mode, offset, expected_total)
            if streamed is None:
                return None
            written, data = streamed
            return self._verify(t, hashers, offset, written, expected_total, data)
        finally:
            resp.close()

    def _request(self, t: _Transfer, offset: int) -> requests.Response | None:
        """Request (or resume from offset, If-Range the part's validator); None after a network error."""
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if t.part.validator:
                headers["If-Range"] = t.part.validator
        try:
            return t.source.open(t.rf, headers)
        except AccessError:
            raise
        except _NETWORK_ERRORS as e:
            self._retry_or_raise(t.attempt, t.rf, f"{type(e).__name__}", None)
            return None

    def _usable(self, t: _Transfer, resp: requests.Response, offset: int) -> bool:
        """The status: 200/206 go on, as does a 416 that says the part is whole; a retryable status or a stale
        part waits for the next attempt (False); anything else fails the file."""
        status = resp.status_code
        if status in RETRY_STATUS:
            ra = retry_after_seconds(resp.headers.get("Retry-After"))
            self._retry_or_raise(t.attempt, t.rf, f"HTTP {status}", ra)
            return False
        if status == 416:
            m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
            if m and offset and int(m.group(1)) == offset:
                return True
            t.part.discard()  # stale part larger than the file: start again
            self._retry_or_raise(t.attempt, t.rf, "HTTP 416 for a stale partial file", 0.0)
            return False
        if status not in (200, 206):
            raise TransferError(f"{t.source.recipe.name}: HTTP {status} for {redaction.redact_url(t.rf.url)}")
        return True

    def _body_start(
        self, t: _Transfer, resp: requests.Response, offset: int
    ) -> tuple[dict[str, Any], str, int, int | None] | None:
        """Before the body: the hashers (fed the part's bytes on a 206), the file mode, where the body starts
        in the file, and the total size the response declares; None when a 206 does not start where the part
        ends (the part is dropped)."""
        if not (t.rf.sha256 or t.rf.md5):
            t.rf = t.source.response_checksum(t.rf, resp)  # e.g. GCS x-goog-hash md5
        encoding = resp.headers.get("Content-Encoding", "identity")
        if encoding not in ("identity", ""):
            raise TransferError(
                f"{t.source.recipe.name}: server sent {encoding}-encoded bytes "
                f"for {redaction.redact_url(t.rf.url)} despite Accept-Encoding: identity"
            )
        hashers = {a: hashlib.new(a) for a in _algos(t.rf)}
        if resp.status_code == 206:
            m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != offset:
                t.part.discard()
                self._retry_or_raise(t.attempt, t.rf, "bad Content-Range", 0.0)
                return None
            with open(t.part.path, "rb") as f:  # re-hash the bytes we already have
                while chunk := f.read(self.chunk_size):
                    for h in hashers.values():
                        h.update(chunk)
            return hashers, "ab", offset, int(m.group(3)) if m.group(3) != "*" else None
        cl = resp.headers.get("Content-Length")
        return hashers, "wb", 0, int(cl) if cl and cl.isdigit() else None

    def _stream(
        self,
        t: _Transfer,
        resp: requests.Response,
        hashers: dict[str, Any],
        mode: str,
        offset: int,
        expected_total: int | None,
    ) -> tuple[int, list[bytes] | None] | None:
        """Stream the body into the part (or memory: :class:`_Body`), hashing as it arrives; the bytes
        received and the body when it was kept in memory, or None after a drop or a stall (the part is kept,
        with its validator, for the next attempt to resume)."""
        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
        t.part.validator, t.part.url = validator, redaction.redact_url(t.rf.url)
        if expected_total is None or expected_total - offset > SIDECAR_MIN:
            t.part.save_meta()  # a large transfer: make it resumable even after kill -9
        # the bound: Content-Length (or the Content-Range total) when the server gives one, else
        # the size the listing / recipe declares (a changed file is caught by its sum, not here)
        declared = expected_total if expected_total is not None else t.rf.size
        t.guard.check(declared - offset if declared is not None else None)
        written = offset
        stall = _StallClock(t.policy.stall_bytes_per_s, t.policy.stall_window_s)
        updates = [h.update for h in hashers.values()]
        keep = mode == "wb" and expected_total is not None and expected_total <= SIDECAR_MIN
        out = _Body(t.part, mode, keep)
        try:
            for chunk in _body_chunks(resp, self.chunk_size):
                n = len(chunk)
                if declared is not None and written + n > declared:
                    out.close()
                    t.part.discard()
                    raise TransferError(
                        f"{t.source.recipe.name}: {redaction.redact_url(t.rf.url)} sent more than the "
                        f"{declared:,} bytes declared for {t.rf.path}; stopped"
                    )
                out.write(chunk)
                for update in updates:
                    update(chunk)
                written += n
                self.progress.advance(n)
                t.guard.wrote(n, declared - written if declared is not None else None)
                stall.tick(n, written)
        except _NETWORK_ERRORS + (_Stalled,) as e:
            out.spill()
            out.close()
            t.part.save_meta()
            why = str(e) if isinstance(e, _Stalled) else f"{type(e).__name__} after {written} bytes"
            self._retry_or_raise(t.attempt, t.rf, why, None)
            return None
        finally:
            out.close()
        if expected_total is not None and written != expected_total:
            out.spill()  # a short body: the next attempt resumes from the part
            out.close()
        return written, out.chunks

    def _verify(
        self,
        t: _Transfer,
        hashers: dict[str, Any],
        offset: int,
        written: int,
        expected_total: int | None,
        data: list[bytes] | None = None,
    ) -> _Received | None:
        """The whole body, with the expected sum: the received file, else None to fetch it again (a fresh body
        that mismatched, a few times: then it fails saying whether upstream differs)."""
        if expected_total is not None and written != expected_total:
            self._retry_or_raise(t.attempt, t.rf, f"short body ({written}/{expected_total} bytes)", None)
            return None
        hashes = {a: h.hexdigest() for a, h in hashers.items()}
        rf = t.rf
        ok = (rf.sha256 is None or hashes["sha256"] == rf.sha256) and (
            rf.md5 is None or rf.sha256 is not None or hashes.get("md5") == rf.md5
        )
        if ok:
            return _Received(t.part, rf, t.dest, hashes, written, t.part.validator, t.asked, data)
        t.part.discard()
        if offset:  # resumed bytes may have been stale: fetch it whole
            self._retry_or_raise(t.attempt, rf, "checksum mismatch of resumed bytes", 0.0)
            return None
        # a whole fresh body that does not match: bytes damaged in transit (retry it whole, a few
        # times) or an upstream that differs (the same sum every time)
        got = hashes["sha256"] if rf.sha256 else hashes.get("md5", "")
        t.mismatches.append(got)
        if len(t.mismatches) > MISMATCH_RETRIES:
            how = (
                "the same bytes each time: upstream differs"
                if len(set(t.mismatches)) == 1
                else "each different"
            )
            raise TransferError(
                f"{t.source.recipe.name}: checksum mismatch for {rf.path} from "
                f"{redaction.redact_url(rf.url)} (expected {rf.sha256 or rf.md5}, got "
                f"{got}; {len(t.mismatches)} fresh downloads, {how})"
            )
        self.progress.message(
            f"retrying {rf.path} from the start: checksum mismatch "
            f"(fresh download {len(t.mismatches) + 1} of {MISMATCH_RETRIES + 1})"
        )
        return None

    def _retry_or_raise(
        self, attempt: Retrier, rf: RemoteFile, why: str, retry_after: float | None
    ) -> Retrier:
        """Wait before the next try (retry_after 0.0: at once), or raise TransferError when none is left."""
        try:
            attempt.wait(why, retry_after, immediate=retry_after == 0.0)
        except GiveUp as e:
            line = str(e)
            url = redaction.redact_url(rf.url)
            raise TransferError(
                line.replace("gave up", f"gave up on {url}", 1)
                if line.startswith("gave up")
                else f"{url}: {line}"
            ) from None
        return attempt

    def _commit(self, got: _Received) -> tuple[int, str, str]:
        """The received bytes under their final name: size checked, fsync, then the atomic rename."""
        part, rf = got.part, got.rf
        if rf.size is not None and got.size != rf.size:
            part.discard()
            raise TransferError(f"size mismatch for {rf.path}: expected {rf.size}, got {got.size}")
        self._ensure_dir(got.dest.parent)
        if got.data is not None:
            _write_part(part.path, got.data)
        else:
            fd = os.open(part.path, os.O_RDWR | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(part.path, got.dest)
        part.unlink_meta()
        return got.size, got.hashes["sha256"], got.validator

    # -- many files -------------------------------------------------------------------------------
    def download_one(
        self, source: Source, rf: RemoteFile, manifest: RawManifest, known: Mapping[str, Row]
    ) -> Outcome:
        """One file: reused when present and verified, else received and committed, and recorded."""
        got = self._reuse_or_receive(source, rf, manifest, known)
        return got if isinstance(got, Outcome) else self._commit_and_record(source, got, manifest)

    def _reuse_or_receive(
        self, source: Source, rf: RemoteFile, manifest: RawManifest, known: Mapping[str, Row]
    ) -> Outcome | _Received:
        """The outcome of a file already present (skipped) or that failed, else its verified bytes, received
        but not yet committed (the network part of a download: what holds a connection)."""
        raw_root = source.settings.raw_dir(source.recipe.name)
        dest = source.raw_dir / rf.path
        reused = self._reuse(source, rf, dest, os.path.relpath(dest, raw_root), manifest, known)
        if reused is not None:
            return reused
        try:
            return self.receive(source, rf, dest, raw_root)
        except Exception as e:  # noqa: BLE001 - every failure becomes the file's outcome (or stops the run)
            return self._failed(rf, dest, e)

    def _reuse(
        self,
        source: Source,
        rf: RemoteFile,
        dest: Path,
        key: str,
        manifest: RawManifest,
        known: Mapping[str, Row],
    ) -> Outcome | None:
        """Skipped: the file is present as its manifest row says, or it hashes to the expected sums (then
        recorded). None: it must be downloaded."""
        if id(rf) in self._absent:
            return None  # the skip check of this run found nothing there
        try:
            st = dest.stat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode):  # a user's folder (or a device, a FIFO) in the file's place: keep it
            return Outcome(
                rf,
                "failed",
                error=f"{key}: a folder or other non-file is where this file goes; move it away and rerun",
            )
        row = known.get(key)
        if row and row[:2] == (st.st_size, st.st_mtime_ns) and rf.sha256 in (None, row[2]):
            return Outcome(rf, "skipped", st.st_size, row[2])
        if not (rf.sha256 or rf.md5):
            return None
        hashes = _hash_file(dest, "sha256", "md5")
        if (rf.sha256 or hashes["sha256"]) != hashes["sha256"] or (rf.md5 or hashes["md5"]) != hashes["md5"]:
            return None
        now = time.time()
        url = redaction.redact_url(rf.url)
        manifest.put(
            Entry(key, st.st_size, st.st_mtime_ns, hashes["sha256"], source.spec.id, url, "", now, now)
        )
        return Outcome(rf, "skipped", st.st_size, hashes["sha256"])

    @staticmethod
    def _failed(rf: RemoteFile, dest: Path, e: Exception) -> Outcome:
        """A download's exception as the file's outcome; a full disk stops the whole run instead."""
        if isinstance(e, AccessError):
            return Outcome(rf, "failed", error=str(e), access_denied=True, reason=e.reason or "")
        if isinstance(e, OSError) and is_disk_full(e):
            raise space.full_line(dest.parent, rf.size) from None
        if isinstance(e, OSError | TransferError):
            return Outcome(rf, "failed", error=redaction.redact(str(e)))
        raise e

    def _commit_and_record(self, source: Source, got: _Received, manifest: RawManifest) -> Outcome:
        """Commit received bytes under their final name, then record them in the manifest."""
        try:
            size, digest, etag = self._commit(got)
        except Exception as e:  # noqa: BLE001 - as in _reuse_or_receive
            return self._failed(got.asked, got.dest, e)
        st = got.dest.stat()
        now = time.time()
        raw_root = source.settings.raw_dir(source.recipe.name)
        key = os.path.relpath(got.dest, raw_root)
        url = redaction.redact_url(got.asked.url)
        manifest.put(Entry(key, size, st.st_mtime_ns, digest, source.spec.id, url, etag, now, now))
        return Outcome(got.asked, "downloaded", size, digest)

    @staticmethod
    def _skip_unchanged(
        jobs: list[tuple[Source, RemoteFile]],
        known: Mapping[str, Row],
        count: bool = False,
        absent: set[int] | None = None,
    ) -> tuple[list[Outcome], tuple[int, int], list[tuple[Source, RemoteFile]], int | None]:
        """The files already present as the manifest recorded them (size, mtime, and the expected sum):
        `download_one`'s first check, done here in one pass so that they cost no thread-pool task, with
        one stat per file at most (none for a file of known size without a manifest row). Returns the
        skipped ones, the (files, bytes) of those only counted, the rest, and the bytes total for the
        progress bar (None if a size is unknown). With `count`, a skipped file that has its upstream sum
        is counted rather than given an Outcome (nothing is pinned for it: a million of them cost nothing).
        ``absent`` collects id() of the files found missing (their download needs no second look)."""
        skipped: list[Outcome] = []
        counted = counted_bytes = 0
        rest: list[tuple[Source, RemoteFile]] = []
        total: int | None = 0
        where: dict[int, tuple[str, str]] = {}  # id(source) -> (its folder + "/", its manifest key prefix)

        def place(source: Source) -> tuple[str, str]:
            return where.get(id(source)) or where.setdefault(
                id(source),
                (os.fspath(source.raw_dir) + "/", source.spec.into + "/" if source.spec.into else ""),
            )

        for start in range(0, len(jobs), 2000):  # the manifest's rows read a chunk at a time, not held
            chunk = jobs[start : start + 2000]
            keys = [place(source)[1] + rf.path for source, rf in chunk]
            rows = rows_for(known, keys)
            for (source, rf), key in zip(chunk, keys, strict=True):
                folder = place(source)[0]
                row = rows.get(key)
                st = None
                if row is not None or rf.size is None:
                    try:
                        st = os.stat(folder + rf.path)
                    except FileNotFoundError:
                        st = None
                        if absent is not None:
                            absent.add(id(rf))
                    except OSError:
                        st = None
                size = rf.size if rf.size is not None else (st.st_size if st is not None else None)
                total = None if total is None or size is None else total + size
                if (
                    row is not None
                    and st is not None
                    and row[:2] == (st.st_size, st.st_mtime_ns)
                    and rf.sha256 in (None, row[2])
                ):
                    if count and rf.sha256:
                        counted, counted_bytes = counted + 1, counted_bytes + st.st_size
                    else:
                        skipped.append(Outcome(rf, "skipped", st.st_size, row[2]))
                    continue
                rest.append((source, rf))
        return skipped, (counted, counted_bytes), rest, total

    def run(
        self,
        jobs: list[tuple[Source, RemoteFile]],
        manifest: RawManifest,
        known: Mapping[str, Row] | None = None,
        *,
        count_skips: bool = False,
    ) -> list[Outcome]:
        """Download every job concurrently: at most `per_host` at once to each host. `known` is the
        manifest's index when the caller has just loaded it (else it is loaded here). With
        `count_skips`, files present and unchanged that have their upstream sum are only counted, in
        `skipped_files` and `skipped_bytes`, not returned as outcomes.

        After the first access refusal for a source, its remaining files are not attempted
        (they would all be refused the same way)."""
        if known is None:
            known = manifest.index()
        n = len(jobs)
        self._partials, self._absent = {}, set()
        skipped, (self.skipped_files, self.skipped_bytes), jobs, total = self._skip_unchanged(
            jobs, known, count_skips, self._absent
        )  # a rerun over a corpus: no task per file
        # largest first (files of unknown size before them: they may be the largest), so that the run does not
        # end on one connection still busy with a large file while the others idle
        jobs.sort(key=lambda job: (job[1].size is not None, -(job[1].size or 0)))
        for source in {id(s): s for s, _ in jobs}.values():
            root = source.settings.raw_dir(source.recipe.name)
            if root not in self._partials:
                self._partials[root] = _partial_files(root)
        self.progress.start(n, total)
        hosts: dict[str, threading.Semaphore] = {}
        for _, rf in jobs:
            hosts.setdefault(urlsplit(rf.url).netloc, threading.Semaphore(self.per_host))
        denied: dict[int, Outcome] = {}  # per source: its first refusal, given to its remaining files

        def work(job: tuple[Source, RemoteFile]) -> Outcome | _Received:
            source, rf = job
            if id(source) in denied:
                return _refused(rf, denied[id(source)])
            with hosts[urlsplit(rf.url).netloc]:
                if id(source) in denied:
                    return _refused(rf, denied[id(source)])
                out = self._reuse_or_receive(source, rf, manifest, known)
            if isinstance(out, Outcome) and out.access_denied:
                denied[id(source)] = out
            return out

        outcomes: list[Outcome] = skipped
        self.progress.skipped(
            self.skipped_files + len(skipped), self.skipped_bytes + sum(o.size for o in skipped)
        )
        if not jobs:
            return outcomes
        workers = max(1, min(len(jobs), self.per_host * len(hosts), 64))
        try:
            outcomes += self._transfer_all(jobs, work, workers, manifest)
        finally:
            self._partials, self._absent = {}, set()  # true of this run only
        return outcomes

    def _transfer_all(
        self,
        jobs: list[tuple[Source, RemoteFile]],
        work: Callable[[tuple[Source, RemoteFile]], Outcome | _Received],
        workers: int,
        manifest: RawManifest,
    ) -> list[Outcome]:
        """`work` on every job from `workers` connection threads, each taking the next job when done with
        one, and each received file's commit (the write of a body kept in memory, fsync, rename, manifest row)
        in a small pool beside them, handed over by the connection itself: it goes on to its next file while
        the disk syncs the last one (~5-10 ms per file on ext4: a sixth of a 50 ms request), and no thread in
        between wakes per file. At most PENDING_COMMITS commits wait (a slow disk holds the connections back
        rather than filling memory). Outcomes in completion order; the first exception stops the run (the
        files being fetched finish, no new one starts) and is raised."""
        outcomes: list[Outcome] = []
        lock = threading.Lock()
        all_done = threading.Event()
        errors: list[BaseException] = []
        todo = iter(jobs)
        pending = threading.BoundedSemaphore(PENDING_COMMITS)

        def finish(out: Outcome) -> None:
            with lock:
                outcomes.append(out)
                self.progress.file_done(out)
                if len(outcomes) == len(jobs):
                    all_done.set()

        def stop(e: BaseException) -> None:
            with lock:
                errors.append(e)
            all_done.set()

        def commit(source: Source, got: _Received) -> None:
            try:
                finish(self._commit_and_record(source, got, manifest))
            except BaseException as e:  # noqa: BLE001 - raised by the caller's thread
                stop(e)
            finally:
                pending.release()

        def connection(committer: ThreadPoolExecutor) -> None:
            while not errors:
                with lock:
                    job = next(todo, None)
                if job is None:
                    return
                try:
                    out = work(job)
                    if isinstance(out, _Received):  # received: its commit follows
                        pending.acquire()
                        committer.submit(commit, job[0], out)
                    else:
                        finish(out)
                except BaseException as e:  # noqa: BLE001 - raised by the caller's thread
                    stop(e)
                    return

        try:
            with (
                ThreadPoolExecutor(min(workers, COMMITTERS), thread_name_prefix="climb-commit") as committer,
                ThreadPoolExecutor(workers, thread_name_prefix="climb-dl") as pool,
            ):
                for _ in range(workers):
                    pool.submit(connection, committer)
                try:
                    all_done.wait()
                except BaseException as e:  # e.g. KeyboardInterrupt: no new file starts
                    stop(e)
                    raise
        finally:
            manifest.flush()
        if errors:
            raise errors[0]
        return outcomes


def fetch_one(source: Source, rf: RemoteFile, dest: Path) -> None:
    """Download one small file (e.g. a checksum list) with the engine's retries and atomic commit."""
    d = Downloader.from_settings(source.settings)
    d.fetch(source, rf, dest, source.settings.raw_dir(source.recipe.name))
