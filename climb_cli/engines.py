"""Where work units run. The unit function is the same everywhere; an engine only maps it.

`serial` runs in this process (debugging, one worker); `loky` (default) runs joblib's loky
process pool on this machine. A cluster engine (Dask, Ray) is one more class with the same `map`,
because a unit writes its shard itself to shared storage and returns only small stats.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import psutil

# What one worker process costs before it holds any data (numpy, scipy, pyarrow, wfdb, pydicom
# imported), measured with psutil on this project's workers: ~180-250 MB; we budget generously.
WORKER_BASE_BYTES = 400 * 1024 * 1024


def memory_capped_workers(requested: int, unit_bytes: int, units: int) -> tuple[int, str]:
    """How many workers fit in available memory (base cost + one unit's working set each)."""
    available = psutil.virtual_memory().available
    per_worker = WORKER_BASE_BYTES + max(unit_bytes, 0)
    fit = max(1, int(available * 0.8) // per_worker)
    workers = max(1, min(requested, units, fit))
    note = ""
    if workers < requested:
        why = "memory" if fit < min(requested, units) else "work units"
        note = f"using {workers} of {requested} workers ({why} limit: {available // 2**20:,} MiB available)"
    return workers, note


class SerialEngine:
    name = "serial"

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        for u in units:
            yield fn(u)


class LokyEngine:
    name = "loky"

    def __init__(self, workers: int) -> None:
        self.workers = workers

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        from joblib import Parallel, delayed, parallel_config

        # one thread per worker in every library that has its own pool (BLAS/OpenMP via joblib;
        # ITK reads its own variable when a worker imports SimpleITK)
        os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
        with parallel_config(backend="loky", inner_max_num_threads=1):
            yield from Parallel(n_jobs=self.workers, return_as="generator_unordered", batch_size=1)(
                delayed(fn)(u) for u in units
            )


def make_engine(workers: int) -> SerialEngine | LokyEngine:
    return SerialEngine() if workers <= 1 else LokyEngine(workers)
