"""The one atomic write: a temporary file in the destination's folder, fsync, rename over the final name
(then fsync the folder), so a reader or a crash never sees half a file under the final name.

``atomic_path`` hands out the temporary path for writers that need one (pyarrow); ``atomic_open`` a file
object; ``write_text`` / ``write_bytes`` / ``write_json`` the common cases. ``perms`` sets the mode from
the first byte (0o600 for secrets). On any error the temporary file is removed and the old file stays.
``durable=False`` (a cache that may be lost, never torn: e.g. the remembered download rates) skips the two
fsyncs; the rename still means a reader sees the old file or the new one, whole.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

_counter = iter(range(1 << 62))


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.{next(_counter)}.tmp")


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: Path, *, perms: int | None = None, durable: bool = True) -> Iterator[Path]:
    """A fresh temporary path next to ``path``; when the block ends without error it is fsynced and renamed
    to ``path``. The folder is created if missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666 if perms is None else perms))
    try:
        yield tmp
        if perms is not None:
            os.chmod(tmp, perms)
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(
    path: Path, mode: str = "w", *, perms: int | None = None, durable: bool = True
) -> Iterator[IO[Any]]:
    """``open(tmp, mode)`` (text modes are UTF-8) that becomes ``path`` when the block ends without error."""
    encoding = None if "b" in mode else "utf-8"
    with atomic_path(path, perms=perms, durable=durable) as tmp, open(tmp, mode, encoding=encoding) as f:
        yield f


def write_text(path: Path, text: str, *, perms: int | None = None, durable: bool = True) -> None:
    with atomic_open(path, "w", perms=perms, durable=durable) as f:
        f.write(text)


def write_bytes(path: Path, data: bytes, *, perms: int | None = None) -> None:
    with atomic_open(path, "wb", perms=perms) as f:
        f.write(data)


def write_json(path: Path, data: Any, *, durable: bool = True, **dumps: Any) -> None:
    """``json.dumps(data, **dumps)`` written atomically."""
    write_text(path, json.dumps(data, **dumps), durable=durable)
