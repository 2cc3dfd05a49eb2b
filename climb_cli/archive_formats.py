"""Archive formats beyond the standard library's: RAR (``rarfile``) and 7z (``py7zr``).

Each backend lists members as ``(name, declared size, mtime, ref, is_dir)`` after rejecting what
climb never extracts (symbolic and hard links, RAR "file copy" redirects, devices, encrypted members),
and opens one member for streaming reads. :mod:`climb_cli.archives` does the rest (path checks, the
disk-space check, the bomb limit, temporary files, state), exactly as for zip and tar.

RAR: ``rarfile`` parses RAR4 and RAR5 headers in Python and reads stored (uncompressed) members itself;
compressed members are piped from an external tool's stdout, the first that works of ``unrar``,
``unar``, ``7z``/``7zz`` and ``bsdtar`` (Debian: ``unar``; ``.ci/run`` installs it). Solid archives are
decompressed from their start for every member (the tool is run once per member).

7z: ``py7zr`` (pure Python). A member is decompressed in a worker thread into a small bounded queue
that the extraction loop reads from, so memory does not grow with the member.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import queue
import shutil
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Protocol

#: kind -> file-name suffixes (lower case)
SUFFIXES = {"rar": (".rar",), "7z": (".7z",)}
#: the system tools rarfile can use for compressed RAR members, in its order of preference
RAR_TOOLS = ("unrar", "unar", "7z", "7zz", "bsdtar")

_PLAIN = (0, stat.S_IFREG, stat.S_IFDIR)
MemberRow = tuple[str, int, "float | None", Any, bool]
Reject = Callable[[str, str], Exception]


class FormatError(Exception):
    """The archive cannot be read (corrupt, or no backend); the message is one line."""


def kind_of(name: str) -> str | None:
    n = name.lower()
    for kind, suffixes in SUFFIXES.items():
        if n.endswith(suffixes):
            return kind
    return None


class Reader(Protocol):
    """What a backend's open() yields: a member's bytes by read(n), n < 0 meaning to the end."""

    def read(self, n: int = -1, /) -> bytes: ...


def open_backend(path: Path, kind: str) -> RarBackend | SevenZipBackend:
    return RarBackend(path) if kind == "rar" else SevenZipBackend(path)


# ------------------------------------------------------------------------------------------- RAR


class RarBackend:
    def __init__(self, path: Path) -> None:
        import rarfile

        self._mod = rarfile
        try:
            self._rar = rarfile.RarFile(str(path))
        except rarfile.NeedFirstVolume:
            raise FormatError(
                "is a later volume of a multi-volume RAR (give the first, .part1.rar)"
            ) from None
        except (rarfile.Error, OSError) as e:
            raise FormatError(f"cannot be read as RAR: {e}") from None

    def close(self) -> None:
        self._rar.close()

    def members(self, reject: Reject) -> list[MemberRow]:
        out: list[MemberRow] = []
        for inf in self._rar.infolist():
            name = inf.filename
            if inf.file_redir:  # RAR5: 1 unix symlink, 2 windows symlink, 3 junction, 4 hard link, 5 copy
                kind = {1: "symbolic link", 2: "symbolic link", 3: "junction", 4: "hard link"}
                raise reject(name, kind.get(inf.file_redir[0], "file copy (a link to another member)"))
            if inf.is_symlink():
                raise reject(name, "symbolic link")
            if inf.needs_password():
                raise reject(name, "encrypted")
            unix = inf.host_os == self._mod.RAR_OS_UNIX
            if not (inf.is_dir() or inf.is_file()) or (unix and stat.S_IFMT(inf.mode or 0) not in _PLAIN):
                raise reject(name, "device, FIFO or socket")
            mtime = None
            if isinstance(getattr(inf, "mtime", None), dt.datetime):
                mtime = inf.mtime.timestamp()
            elif inf.date_time:
                with contextlib.suppress(ValueError, OverflowError):
                    mtime = dt.datetime(*inf.date_time).timestamp()
            out.append((name, int(inf.file_size or 0), mtime, inf, inf.is_dir()))
        return out

    @contextlib.contextmanager
    def open(self, ref: Any) -> Iterator[Reader]:
        try:
            fh = self._rar.open(ref)
        except self._mod.RarCannotExec:
            raise FormatError(
                f"member {ref.filename!r} is compressed and no RAR tool is installed "
                f"(one of: {', '.join(RAR_TOOLS)}; on Debian: apt-get install unar)"
            ) from None
        except self._mod.Error as e:
            raise FormatError(f"member {ref.filename!r} cannot be read: {e}") from None
        try:
            yield _Translating(fh, self._mod.Error)
        finally:
            fh.close()

    @staticmethod
    def tool() -> str | None:
        """The first RAR tool found on PATH (None: only stored members can be read)."""
        return next((t for t in RAR_TOOLS if shutil.which(t)), None)


class _Translating:
    """A reader that turns a backend's own exceptions into OSError (the extraction loop's 'corrupt')."""

    def __init__(self, fh: IO[bytes], errors: type[BaseException] | tuple[type[BaseException], ...]) -> None:
        self._fh, self._errors = fh, errors

    def read(self, n: int = -1) -> bytes:
        try:
            return self._fh.read(n)
        except self._errors as e:
            raise OSError(str(e) or type(e).__name__) from None

    def close(self) -> None:
        self._fh.close()


# -------------------------------------------------------------------------------------------- 7z


class SevenZipBackend:
    def __init__(self, path: Path) -> None:
        import py7zr

        self._mod, self._path = py7zr, path
        try:
            self._z = py7zr.SevenZipFile(path, mode="r")
        except (py7zr.exceptions.ArchiveError, OSError, EOFError, ValueError) as e:
            raise FormatError(f"cannot be read as 7z: {e}") from None

    def close(self) -> None:
        self._z.close()

    def members(self, reject: Reject) -> list[MemberRow]:
        if self._z.needs_password():
            raise reject("(headers)", "encrypted")
        out: list[MemberRow] = []
        for f in self._z.files:
            name = f.filename
            if f.is_symlink or f.is_junction:
                raise reject(name, "symbolic link")
            if f.is_socket:
                raise reject(name, "device, FIFO or socket")
            mode = f.posix_mode
            if mode is not None and not (f.is_directory or (mode & 0o170000) in (0, 0o100000)):
                raise reject(name, "device, FIFO or socket")
            mtime = None
            with contextlib.suppress(Exception):
                mtime = f.lastwritetime.totimestamp() if f.lastwritetime else None
            size = 0 if f.is_directory else int(f.uncompressed or 0)
            out.append((name, size, mtime, name, bool(f.is_directory)))
        return out

    @contextlib.contextmanager
    def open(self, ref: Any) -> Iterator[Reader]:
        from py7zr.io import Py7zIO, WriterFactory

        pipe = _Pipe()

        class _Writer(Py7zIO):
            def write(self, s: bytes | bytearray) -> int:
                pipe.put(bytes(s))
                return len(s)

            def read(self, size: int | None = None) -> bytes:
                return b""

            def seek(self, offset: int, whence: int = 0) -> int:
                return 0

            def flush(self) -> None:
                pass

            def size(self) -> int:
                return 0

        class _Factory(WriterFactory):
            def create(self, filename: str) -> Any:
                return _Writer()

        def work() -> None:
            try:
                self._z.reset()
                self._z.extract(targets=[ref], factory=_Factory())
            except _Cancelled:
                pass
            except BaseException as e:  # noqa: BLE001 - handed to the reading thread
                pipe.fail(e)
            finally:
                pipe.close()

        t = threading.Thread(target=work, name="climb-7z", daemon=True)
        t.start()
        try:
            yield pipe
        finally:
            pipe.cancel()
            t.join()


class _Cancelled(Exception):
    pass


class _Pipe:
    """A bounded queue of chunks between the decompressing thread and the reader, with read(n)."""

    def __init__(self, depth: int = 8) -> None:
        self._q: queue.Queue[bytes | None] = queue.Queue(depth)
        self._buf = b""
        self._eof = False
        self._cancelled = threading.Event()
        self._error: BaseException | None = None

    # producer side
    def put(self, chunk: bytes) -> None:
        while not self._cancelled.is_set():
            try:
                self._q.put(chunk, timeout=0.1)
                return
            except queue.Full:
                continue
        raise _Cancelled

    def fail(self, e: BaseException) -> None:
        self._error = e

    def close(self) -> None:
        while not self._cancelled.is_set():
            try:
                self._q.put(None, timeout=0.1)
                return
            except queue.Full:
                continue

    # consumer side
    def cancel(self) -> None:
        self._cancelled.set()

    def read(self, n: int = -1) -> bytes:
        while not self._eof and (n < 0 or len(self._buf) < n):
            chunk = self._q.get()
            if chunk is None:
                self._eof = True
            else:
                self._buf += chunk
        if self._eof and self._error is not None:
            e, self._error = self._error, None
            raise OSError(f"{type(e).__name__}: {e}")
        if n < 0:
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        return out
