"""Memory per item: peak RSS measured around the probe items, and the budget check for each item.

On Linux the kernel's peak-RSS mark (VmHWM) can be reset by writing 5 to /proc/self/clear_refs, so
the peak of one item is exact: reset, process, read VmHWM, subtract the RSS before. Elsewhere the
measurement returns None and the pipeline falls back to its row-size estimate.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
MIB = 2**20


def _status(key: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_peak(fn: Callable[[], T]) -> tuple[T, int | None]:
    """fn()'s result and its peak memory: the larger of the rise of the process's peak RSS and
    the peak of Python and numpy allocations (tracemalloc; memory the allocator reuses does not
    raise RSS). None where neither can be measured."""
    import tracemalloc

    before = _status("VmRSS")
    ok = before is not None and _reset_peak()
    tracing = tracemalloc.is_tracing()
    if not tracing:
        tracemalloc.start()
    tracemalloc.reset_peak()
    try:
        result = fn()
        traced = tracemalloc.get_traced_memory()[1]
    finally:
        if not tracing:
            tracemalloc.stop()
    peak = _status("VmHWM") if ok else None
    rss = max(0, peak - before) if (before is not None and peak is not None) else 0
    return result, max(rss, traced) or None


def input_bytes(paths: Iterable[Path]) -> int:
    """Bytes of an item's input files: a folder counts every file under it, a record name with no
    file of its own (WFDB's `00001_hr`) the files beside it named `<name>.*`; a missing path 0."""
    total = 0
    for p in paths:
        try:
            if not p.exists():
                total += sum(
                    e.stat().st_size for e in os.scandir(p.parent) if e.name.startswith(p.name + ".")
                )
            elif p.is_dir():
                for root, _, files in os.walk(p):
                    for name in files:
                        total += os.path.getsize(os.path.join(root, name))
            else:
                total += p.stat().st_size
        except OSError:
            continue
    return total


def parse_size(text: str) -> int:
    """'4GB', '512MiB', '2GiB' -> bytes, read the way recipes read their sizes (pydantic's ByteSize)."""
    from pydantic import ByteSize, TypeAdapter, ValidationError

    try:
        value = int(TypeAdapter(ByteSize).validate_python(text))
    except ValidationError:
        raise ValueError(f"{text!r} is not a size (e.g. 4GB, 512MiB)") from None
    if value <= 0:
        raise ValueError(f"{text!r}: a size must be positive")
    return value
