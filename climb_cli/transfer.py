"""The download engine: concurrent, resumable, verified transfers for every source.

- a thread pool with a per-host connection cap;
- connect/read timeouts, retries with exponential backoff and jitter on connection errors,
  5xx and 429 (Retry-After honoured);
- bytes go to raw/<dataset>/.climb/partial/<path>.part, resumed with Range + If-Range (206
  appends, a 200 restarts, 416 means the part is already whole or stale);
- Accept-Encoding: identity, so the bytes hashed are the bytes upstream published;
- SHA-256 (and MD5 where that is the upstream sum) computed while streaming and checked before
  the atomic rename to the final name, so a partial or corrupt file never sits under a final name;
- files already present and recorded in the raw manifest are skipped without re-hashing;
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
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import requests
import urllib3

from climb_cli import redaction, space
from climb_cli.errors import AccessError, TransferError, is_disk_full
from climb_cli.events import Outcome, Progress
from climb_cli.hashing import hash_file
from climb_cli.manifest import Entry, RawManifest
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

    @classmethod
    def for_file(cls, raw_root: Path, rel: str) -> _Part:
        base = raw_root / ".climb" / "partial" / rel
        part = cls(base.with_name(base.name + ".part"), base.with_name(base.name + ".part.json"))
        if part.meta_path.is_file():
            try:
                meta = json.loads(part.meta_path.read_text())
                part.validator, part.url = meta.get("validator", ""), meta.get("url", "")
            except (ValueError, OSError):
                pass
        return part

    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0

    def save_meta(self) -> None:
        self.meta_path.write_text(
            json.dumps({"validator": self.validator, "url": redaction.redact_url(self.url)})
        )

    def discard(self) -> None:
        for p in (self.path, self.meta_path):
            p.unlink(missing_ok=True)


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
    _dirs: set[Path] = field(default_factory=set, repr=False)
    _guards: dict[Path, space.SpaceGuard] = field(default_factory=dict, repr=False)

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
        """Download rf to dest through a .part file; returns (size, sha256, etag). Raises on failure."""
        part = _Part.for_file(raw_root, os.path.relpath(dest, raw_root))
        self._ensure_dir(part.path.parent)
        if (part.url and part.url != redaction.redact_url(rf.url)) or (not part.validator and part.size()):
            part.discard()  # bytes of some other URL, or of an unknown version: never mix them
        policy = self.policy
        attempt = policy.start(f"{source.recipe.name}: {rf.path} from {urlsplit(rf.url).netloc}")
        mismatches: list[str] = []  # sums of whole fresh bodies that did not match
        guard = self._guard(raw_root)
        while True:
            offset = part.size()
            headers = {"Accept-Encoding": "identity"}
            if offset:
                headers["Range"] = f"bytes={offset}-"
                if part.validator:
                    headers["If-Range"] = part.validator
            try:
                resp = source.open(rf, headers)
            except AccessError:
                raise
            except _NETWORK_ERRORS as e:
                attempt = self._retry_or_raise(attempt, rf, f"{type(e).__name__}", None)
                continue
            try:
                status = resp.status_code
                if status in RETRY_STATUS:
                    ra = retry_after_seconds(resp.headers.get("Retry-After"))
                    attempt = self._retry_or_raise(attempt, rf, f"HTTP {status}", ra)
                    continue
                if status == 416:
                    m = _UNSATISFIED_RANGE.match(resp.headers.get("Content-Range", ""))
                    if m and offset and int(m.group(1)) == offset:
                        hashes = _hash_file(part.path, *_algos(rf))  # the part is already whole
                        return self._commit(part, rf, dest, hashes, offset, part.validator)
                    part.discard()  # stale part larger than the file: start again
                    attempt = self._retry_or_raise(attempt, rf, "HTTP 416 for a stale partial file", 0.0)
                    continue
                if status not in (200, 206):
                    raise TransferError(
                        f"{source.recipe.name}: HTTP {status} for {redaction.redact_url(rf.url)}"
                    )
                if status in (200, 206) and not (rf.sha256 or rf.md5):
                    rf = source.response_checksum(rf, resp)  # e.g. GCS x-goog-hash md5
                validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
                if resp.headers.get("Content-Encoding", "identity") not in ("identity", ""):
                    raise TransferError(
                        f"{source.recipe.name}: server sent {resp.headers['Content-Encoding']}-encoded bytes "
                        f"for {redaction.redact_url(rf.url)} despite Accept-Encoding: identity"
                    )
                hashers = {a: hashlib.new(a) for a in _algos(rf)}
                if status == 206:
                    m = _CONTENT_RANGE.match(resp.headers.get("Content-Range", ""))
                    if not m or int(m.group(1)) != offset:
                        part.discard()
                        attempt = self._retry_or_raise(attempt, rf, "bad Content-Range", 0.0)
                        continue
                    with open(part.path, "rb") as f:  # re-hash the bytes we already have
                        while chunk := f.read(self.chunk_size):
                            for h in hashers.values():
                                h.update(chunk)
                    mode, expected_total = "ab", int(m.group(3)) if m.group(3) != "*" else None
                else:
                    offset, mode = 0, "wb"
                    cl = resp.headers.get("Content-Length")
                    expected_total = int(cl) if cl and cl.isdigit() else None
                part.validator, part.url = validator, redaction.redact_url(rf.url)
                if expected_total is None or expected_total - offset > SIDECAR_MIN:
                    part.save_meta()  # a large transfer: make it resumable even after kill -9
                # the bound: Content-Length (or the Content-Range total) when the server gives one, else
                # the size the listing / recipe declares (a changed file is caught by its sum, not here)
                declared = expected_total if expected_total is not None else rf.size
                guard.check(declared - offset if declared is not None else None)
                written = offset
                stall = _StallClock(policy.stall_bytes_per_s, policy.stall_window_s)
                with open(part.path, mode) as out:
                    try:
                        for chunk in _body_chunks(resp, self.chunk_size):
                            if declared is not None and written + len(chunk) > declared:
                                out.close()
                                part.discard()
                                url = redaction.redact_url(rf.url)
                                raise TransferError(
                                    f"{source.recipe.name}: {url} sent more than the {declared:,} bytes "
                                    f"declared for {rf.path}; stopped"
                                )
                            out.write(chunk)
                            for h in hashers.values():
                                h.update(chunk)
                            written += len(chunk)
                            self.progress.advance(len(chunk))
                            guard.wrote(len(chunk), declared - written if declared is not None else None)
                            stall.tick(len(chunk), written)
                    except _NETWORK_ERRORS + (_Stalled,) as e:
                        out.flush()
                        part.save_meta()
                        why = (
                            str(e) if isinstance(e, _Stalled) else f"{type(e).__name__} after {written} bytes"
                        )
                        attempt = self._retry_or_raise(attempt, rf, why, None)
                        continue
                if expected_total is not None and written != expected_total:
                    attempt = self._retry_or_raise(
                        attempt, rf, f"short body ({written}/{expected_total} bytes)", None
                    )
                    continue
                hashes = {a: h.hexdigest() for a, h in hashers.items()}
                ok = (rf.sha256 is None or hashes["sha256"] == rf.sha256) and (
                    rf.md5 is None or rf.sha256 is not None or hashes.get("md5") == rf.md5
                )
                if not ok:
                    part.discard()
                    if offset == 0:
                        # a whole fresh body that does not match: bytes damaged in transit (retry it
                        # whole, a few times) or an upstream that differs (the same sum every time)
                        got = hashes["sha256"] if rf.sha256 else hashes.get("md5", "")
                        mismatches.append(got)
                        if len(mismatches) > MISMATCH_RETRIES:
                            same = len(set(mismatches)) == 1
                            how = "the same bytes each time: upstream differs" if same else "each different"
                            raise TransferError(
                                f"{source.recipe.name}: checksum mismatch for {rf.path} from "
                                f"{redaction.redact_url(rf.url)} (expected {rf.sha256 or rf.md5}, got "
                                f"{got}; {len(mismatches)} fresh downloads, {how})"
                            )
                        self.progress.message(
                            f"retrying {rf.path} from the start: checksum mismatch "
                            f"(fresh download {len(mismatches) + 1} of {MISMATCH_RETRIES + 1})"
                        )
                        continue
                    attempt = self._retry_or_raise(attempt, rf, "checksum mismatch of resumed bytes", 0.0)
                    continue  # resumed bytes may have been stale: fetch it whole
                return self._commit(part, rf, dest, hashes, written, validator)
            finally:
                resp.close()

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

    def _commit(
        self, part: _Part, rf: RemoteFile, dest: Path, hashes: dict[str, str], size: int, validator: str
    ) -> tuple[int, str, str]:
        if rf.size is not None and size != rf.size:
            part.discard()
            raise TransferError(f"size mismatch for {rf.path}: expected {rf.size}, got {size}")
        self._ensure_dir(dest.parent)
        with open(part.path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(part.path, dest)
        part.meta_path.unlink(missing_ok=True)
        return size, hashes["sha256"], validator

    # -- many files -------------------------------------------------------------------------------
    def download_one(
        self, source: Source, rf: RemoteFile, manifest: RawManifest, known: dict[str, tuple[int, int, str]]
    ) -> Outcome:
        raw_root = source.settings.raw_dir(source.recipe.name)
        dest = source.raw_dir / rf.path
        key = os.path.relpath(dest, raw_root)
        try:
            st = dest.stat()
        except FileNotFoundError:
            st = None
        if st is not None:
            row = known.get(key)
            if row and row[:2] == (st.st_size, st.st_mtime_ns) and rf.sha256 in (None, row[2]):
                return Outcome(rf, "skipped", st.st_size, row[2])
            if rf.sha256 or rf.md5:
                hashes = _hash_file(dest, "sha256", "md5")
                if (rf.sha256 or hashes["sha256"]) == hashes["sha256"] and (
                    rf.md5 or hashes["md5"]
                ) == hashes["md5"]:
                    manifest.put(
                        Entry(
                            key,
                            st.st_size,
                            st.st_mtime_ns,
                            hashes["sha256"],
                            source.spec.id,
                            rf.url,
                            "",
                            time.time(),
                            time.time(),
                        )
                    )
                    return Outcome(rf, "skipped", st.st_size, hashes["sha256"])
        try:
            size, digest, etag = self.fetch(source, rf, dest, raw_root)
        except AccessError as e:
            return Outcome(rf, "failed", error=str(e), access_denied=True)
        except OSError as e:
            if is_disk_full(e):
                raise space.full_line(dest.parent, rf.size) from None
            return Outcome(rf, "failed", error=redaction.redact(str(e)))
        except TransferError as e:
            return Outcome(rf, "failed", error=redaction.redact(str(e)))
        st = dest.stat()
        now = time.time()
        manifest.put(
            Entry(
                key,
                size,
                st.st_mtime_ns,
                digest,
                source.spec.id,
                redaction.redact_url(rf.url),
                etag,
                now,
                now,
            )
        )
        return Outcome(rf, "downloaded", size, digest)

    @staticmethod
    def _skip_unchanged(
        jobs: list[tuple[Source, RemoteFile]], known: dict[str, tuple[int, int, str]]
    ) -> tuple[list[Outcome], list[tuple[Source, RemoteFile]]]:
        """The files already present as the manifest recorded them (size, mtime, and the expected sum):
        `download_one`'s first check, done here in one pass so that they cost no thread-pool task."""
        skipped: list[Outcome] = []
        rest: list[tuple[Source, RemoteFile]] = []
        for source, rf in jobs:
            raw_root = source.settings.raw_dir(source.recipe.name)
            key = os.path.relpath(source.raw_dir / rf.path, raw_root)
            row = known.get(key)
            if row is not None:
                try:
                    st = os.stat(source.raw_dir / rf.path)
                except OSError:
                    st = None
                if st is not None and row[:2] == (st.st_size, st.st_mtime_ns) and rf.sha256 in (None, row[2]):
                    skipped.append(Outcome(rf, "skipped", st.st_size, row[2]))
                    continue
            rest.append((source, rf))
        return skipped, rest

    def run(self, jobs: list[tuple[Source, RemoteFile]], manifest: RawManifest) -> list[Outcome]:
        """Download every job concurrently: at most `per_host` at once to each host.

        After the first access refusal for a source, its remaining files are not attempted
        (they would all be refused the same way)."""
        known = manifest.load_index()
        sizes = [
            rf.size if rf.size is not None else _present_size(source.raw_dir / rf.path) for source, rf in jobs
        ]
        self.progress.start(len(jobs), sum(sizes) if all(s is not None for s in sizes) else None)  # type: ignore[arg-type]
        skipped, jobs = self._skip_unchanged(jobs, known)  # a rerun over a corpus: no task per file
        hosts: dict[str, threading.Semaphore] = {}
        for _, rf in jobs:
            hosts.setdefault(urlsplit(rf.url).netloc, threading.Semaphore(self.per_host))
        denied: dict[int, str] = {}

        def work(job: tuple[Source, RemoteFile]) -> Outcome:
            source, rf = job
            if id(source) in denied:
                return Outcome(rf, "failed", error=denied[id(source)], access_denied=True)
            with hosts[urlsplit(rf.url).netloc]:
                if id(source) in denied:
                    return Outcome(rf, "failed", error=denied[id(source)], access_denied=True)
                out = self.download_one(source, rf, manifest, known)
            if out.access_denied:
                denied[id(source)] = out.error
            return out

        outcomes: list[Outcome] = skipped
        for out in skipped:
            self.progress.file_done(out)
        if not jobs:
            return outcomes
        workers = max(1, min(len(jobs), self.per_host * len(hosts), 64))
        with ThreadPoolExecutor(workers, thread_name_prefix="climb-dl") as pool:
            futures = [pool.submit(work, j) for j in jobs]
            try:
                for fut in as_completed(futures):
                    out = fut.result()
                    outcomes.append(out)
                    self.progress.file_done(out)
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
            finally:
                manifest.flush()
        return outcomes


def _present_size(path: Path) -> int | None:
    """The size of a file already on disk (what a skip will count), else None (not known yet)."""
    try:
        return path.stat().st_size
    except OSError:
        return None


def fetch_one(source: Source, rf: RemoteFile, dest: Path) -> None:
    """Download one small file (e.g. a checksum list) with the engine's retries and atomic commit."""
    d = Downloader.from_settings(source.settings)
    d.fetch(source, rf, dest, source.settings.raw_dir(source.recipe.name))
