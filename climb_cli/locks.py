"""Per-dataset run locks, safe on a shared filesystem (a cluster's NFS/Lustre/GPFS).

fcntl/flock locks are unreliable across NFS clients, so a lock is a small file created with
O_CREAT|O_EXCL (atomic on NFSv3+ and every local filesystem) holding the holder's host, pid, the
pid's start time and the command. While held, a thread touches the file every HEARTBEAT seconds.
A lock is stale, and is taken over, when its holder is on this host and that process is gone (or
the pid now belongs to another process), or when it is on another host and has not been touched
for STALE_AFTER seconds. A second run meanwhile refuses with one line naming the holder.

Two locks per dataset: `raw/<name>/.climb/lock` (download, verify, repair) and
`processed/<name>/.lock` (preprocess, verify --outputs --repair). `preprocess --part I/N` takes no
lock: the parts of an array job work on disjoint shards whose commits are atomic, and the final run
without --part takes the lock to write the manifest. Where the folder is read-only (shared raw data
mounted read-only) no lock is needed, and none is taken.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

from climb_cli.errors import ClimbError

HEARTBEAT = 20.0  # seconds between touches of a held lock
STALE_AFTER = 300.0  # a lock of another host untouched this long is abandoned

_READ_ONLY = (errno.EROFS, errno.EACCES, errno.EPERM)
_held: dict[str, int] = {}  # lock path -> depth, for this process (a lock is reentrant)
_held_lock = threading.Lock()


class LockedError(ClimbError):
    """Another run holds the dataset's lock."""


def _start_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def _me(what: str) -> dict[str, object]:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": _start_time(os.getpid()),
        "what": what,
        "since": time.time(),
    }


def _stale(info: dict, mtime: float) -> bool:
    if info.get("host") == socket.gethostname():
        pid = info.get("pid")
        if not isinstance(pid, int):
            return True
        started = _start_time(pid)
        return started is None or (info.get("started") is not None and abs(started - info["started"]) > 1)
    return time.time() - mtime > STALE_AFTER


def _read(path: Path) -> tuple[dict, float] | None:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        info = json.loads(text)
    except ValueError:
        info = {}  # being written this instant, or garbage
    return (info if isinstance(info, dict) else {}), st.st_mtime


def _try_create(path: Path, what: str) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(_me(what), f)
        f.flush()
        os.fsync(f.fileno())
    return True


def _describe(info: dict) -> str:
    since = info.get("since")
    when = time.strftime("%H:%M:%S", time.localtime(since)) if isinstance(since, int | float) else "?"
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} ({info.get('what', '?')}, since {when})"


def _heartbeat(path: Path, stop: threading.Event) -> None:
    while not stop.wait(HEARTBEAT):
        with contextlib.suppress(OSError):
            os.utime(path)


def _take(path: Path, what: str, label: str) -> bool:
    """Create the lock file, taking over a stale one. False when the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        if e.errno in _READ_ONLY:
            return False  # nothing here can be changed, so there is nothing to guard
        raise
    for _ in range(50):
        try:
            if _try_create(path, what):
                return True
        except OSError as e:
            if e.errno in _READ_ONLY:
                return False
            raise
        seen = _read(path)
        if seen is None:
            continue  # released meanwhile
        info, mtime = seen
        if not info and time.time() - mtime < 5:
            time.sleep(0.05)  # its holder is still writing it
            continue
        if not _stale(info, mtime):
            raise LockedError(
                f"{label}: in use by {_describe(info)}; wait for it to finish "
                f"(if that process is gone, delete {path})"
            )
        aside = path.with_name(f"{path.name}.stale-{os.getpid()}")
        try:
            os.rename(path, aside)  # only one contender wins this rename
        except FileNotFoundError:
            continue
        aside.unlink(missing_ok=True)
        sys.stderr.write(f"{label}: took over the lock of {_describe(info)}, which is gone\n")
    raise LockedError(f"{label}: could not take the lock {path}")


@contextlib.contextmanager
def dataset_lock(path: Path, what: str, *, label: str = "", tidy: tuple[Path, ...] = ()) -> Iterator[None]:
    """Hold the lock file `path` for the block (reentrant within a process). Raises LockedError
    naming the holder when another live run has it. On release the folders in `tidy` are removed
    when empty (a lock taken for a dataset that was never downloaded leaves nothing behind)."""
    key = os.path.abspath(path)
    with _held_lock:
        depth = _held.get(key, 0)
        if depth:
            _held[key] = depth + 1
    if depth:
        try:
            yield
        finally:
            with _held_lock:
                _held[key] -= 1
        return
    if not _take(path, what, label or str(path.parent)):
        yield
        return
    with _held_lock:
        _held[key] = 1
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(path, stop), daemon=True, name="climb-lock")
    beat.start()
    try:
        yield
    finally:
        stop.set()
        with _held_lock:
            _held.pop(key, None)
        with contextlib.suppress(OSError):
            seen = _read(path)
            if seen is not None and seen[0].get("pid") == os.getpid():
                path.unlink()
            for d in tidy:
                d.rmdir()  # only when empty


def raw_lock(raw_root: Path, dataset: str, what: str) -> contextlib.AbstractContextManager[None]:
    return dataset_lock(
        raw_root / ".climb" / "lock",
        what,
        label=f"{dataset}: raw/{dataset}",
        tidy=(raw_root / ".climb", raw_root),
    )


def processed_lock(processed_root: Path, dataset: str, what: str) -> contextlib.AbstractContextManager[None]:
    return dataset_lock(
        processed_root / ".lock", what, label=f"{dataset}: processed/{dataset}", tidy=(processed_root,)
    )
