"""A RAR 4.x writer for *stored* (uncompressed) members, byte by byte from the RAR 1.5-4.x format notes
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


def member(name: str, data: bytes, *, mode: int = 0o100644, flags: int = 0, host: int = HOST_UNIX) -> bytes:
    """One stored member (file header + data). ``mode`` is the Unix mode (host Unix) or DOS attributes."""
    raw = name.replace("/", "\\").encode()  # RAR 1.5-4 stores the path separator as a backslash
    body = struct.pack(
        "<IIBIIBBHI",
        len(data),  # PACK_SIZE
        len(data),  # UNP_SIZE
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
