"""RAR 4.x and 5.0 writers for *stored* (uncompressed) members, byte by byte from the RAR 1.5-4.x format notes
(technote.txt shipped with RARLAB's unrar sources), because no tool that creates RAR archives exists in
Debian main (``rar`` is non-free). Compressed members cannot be made here; stored ones exercise every
header climb looks at (names, sizes, times, host OS and mode, the directory and password flags, CRC32).

Blocks: marker ``Rar!\\x1a\\x07\\x00``; main header (0x73); one file header (0x74) + data per member;
end of archive (0x7b). Each header starts with CRC16 = the low 16 bits of CRC32 over the header from
its type byte on.
"""

from __future__ import annotations

import struct
import zlib

MARKER = b"Rar!\x1a\x07\x00"
HOST_WIN32, HOST_UNIX = 2, 3
METHOD_STORE = 0x30
LONG_BLOCK = 0x8000
FLAG_PASSWORD = 0x04
FLAG_DIRECTORY = 0xE0


def _block(head_type: int, flags: int, body: bytes) -> bytes:
    rest = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
    return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest


def _dos_time(year: int = 2020, month: int = 1, day: int = 2, hour: int = 3, minute: int = 4) -> int:
    return ((year - 1980) << 25) | (month << 21) | (day << 16) | (hour << 11) | (minute << 5)


def member(
    name: str,
    data: bytes,
    *,
    mode: int = 0o100644,
    flags: int = 0,
    host: int = HOST_UNIX,
    declared: int | None = None,
) -> bytes:
    """One stored member (file header + data). ``mode`` is the Unix mode (host Unix) or DOS attributes;
    ``declared`` overrides the unpacked size in the header (a member that lies about its size)."""
    raw = name.replace("/", "\\").encode()  # RAR 1.5-4 stores the path separator as a backslash
    body = struct.pack(
        "<IIBIIBBHI",
        len(data),  # PACK_SIZE
        len(data) if declared is None else declared,  # UNP_SIZE
        host,
        zlib.crc32(data),  # FILE_CRC
        _dos_time(),
        29,  # UNP_VER 2.9
        METHOD_STORE,
        len(raw),
        mode,
    )
    return _block(0x74, LONG_BLOCK | flags, body + raw) + data


def archive(members: list[bytes]) -> bytes:
    main = _block(0x73, 0, b"\x00\x00" + b"\x00\x00\x00\x00")
    end = _block(0x7B, 0x4000, b"")
    return MARKER + main + b"".join(members) + end


# ----------------------------------------------------------------------------------------------- RAR 5
# From the RAR 5.0 archive format notes (rarlab.com/technote.htm): signature ``Rar!\x1a\x07\x01\x00``; every
# header = CRC32 (of everything after it) + vint header size (from the type on) + vint type + vint flags
# (+ extra area size if 0x01, + data size if 0x02) + type fields (+ extra area). Integers are "vint": 7 bits
# a byte, low group first, high bit = more.

MARKER5 = b"Rar!\x1a\x07\x01\x00"
REDIR_UNIX_SYMLINK, REDIR_HARDLINK, REDIR_COPY = 1, 4, 5


def _vint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _block5(head_type: int, fields: bytes, *, extra: bytes = b"", data_size: int | None = None) -> bytes:
    flags = (0x01 if extra else 0) | (0x02 if data_size is not None else 0)
    body = _vint(head_type) + _vint(flags)
    if extra:
        body += _vint(len(extra))
    if data_size is not None:
        body += _vint(data_size)
    body += fields + extra
    sized = _vint(len(body)) + body
    return struct.pack("<I", zlib.crc32(sized)) + sized


def member5(
    name: str, data: bytes, *, mode: int = 0o100644, redirect: tuple[int, str] | None = None
) -> bytes:
    """One stored RAR 5 member (host Unix); ``redirect`` = (type, target) adds a file system redirection
    record (symlink, hard link, file copy)."""
    raw = name.encode()
    fields = (
        _vint(0x02 | 0x04)  # file flags: mtime and CRC32 present
        + _vint(len(data))
        + _vint(mode)  # attributes: the Unix mode
        + struct.pack("<I", 1_600_000_000)
        + struct.pack("<I", zlib.crc32(data))
        + _vint(0)  # compression: version 0, not solid, method 0 (store)
        + _vint(1)  # host OS: Unix
        + _vint(len(raw))
        + raw
    )
    extra = b""
    if redirect is not None:
        target = redirect[1].encode()
        rec = _vint(5) + _vint(redirect[0]) + _vint(0) + _vint(len(target)) + target
        extra = _vint(len(rec)) + rec
    return _block5(2, fields, extra=extra, data_size=len(data)) + data


def archive5(members: list[bytes]) -> bytes:
    return MARKER5 + _block5(1, _vint(0)) + b"".join(members) + _block5(5, _vint(0))
