"""Where work units run. The unit function is the same everywhere; an engine only maps it.

`serial` runs in this process (debugging, one worker); `loky` (default) runs joblib's loky
process pool on this machine; an interrupted run (Ctrl-C, SIGTERM) kills the pool, and a worker
whose coordinator was killed outright exits on its own. A cluster engine (Dask, Ray) is one more
class with the same `map`, because a unit writes its shard itself to shared storage and returns
only small stats.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import psutil

# What one worker process costs before it holds any data (numpy, scipy, pyarrow, wfdb, pydicom
# imported), measured with psutil on this project's workers: ~180-250 MB; we budget generously.
WORKER_BASE_BYTES = 400 * 1024 * 1024


def usable_cpus(cgroup_root: Path = Path("/sys/fs/cgroup")) -> tuple[int, str]:
    """How many CPUs this process may use, and what limits it: the scheduler affinity (taskset,
    Slurm, numactl) and a cgroup v2 (`cpu.max`) or v1 (`cpu.cfs_quota_us`) CPU quota (containers,
    Kubernetes limits), not `os.cpu_count()`, which counts the machine."""
    try:
        n, why = len(os.sched_getaffinity(0)), "CPU affinity"
    except (AttributeError, OSError):
        n, why = os.cpu_count() or 1, "CPUs"
    quota = _cgroup_quota(cgroup_root)
    if quota is not None and quota < n:
        n, why = quota, "cgroup CPU quota"
    return max(1, n), why


def _cgroup_quota(root: Path) -> int | None:
    candidates = [(root / "cpu.max", None)]  # v2: "<quota|max> <period>"
    for d in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1
        candidates.append((root / d / "cpu.cfs_quota_us", root / d / "cpu.cfs_period_us"))
    for quota_file, period_file in candidates:
        try:
            text = quota_file.read_text().split()
            if period_file is not None:
                text.append(period_file.read_text().strip())
        except OSError:
            continue
        try:
            quota, period = (float(x) for x in text[:2])
        except ValueError:  # "max": no quota
            return None
        if quota <= 0 or period <= 0:  # v1 "-1": no quota
            return None
        return max(1, math.ceil(quota / period))
    return None


def cpu_capped_workers(requested: int | None) -> tuple[int, str]:
    """The workers to start: all usable CPUs by default; a request beyond them is cut to them
    (more would only contend for the same CPUs), with a note saying why."""
    cpus, why = usable_cpus()
    if requested is None:
        return cpus, ""
    if requested > cpus:
        return cpus, f"using {cpus} of {requested} workers ({why}: {cpus} usable by this process)"
    return requested, ""


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
        try:
            with parallel_config(backend="loky", inner_max_num_threads=1):
                yield from Parallel(n_jobs=self.workers, return_as="generator_unordered", batch_size=1)(
                    delayed(_Watched(fn, os.getpid()))(u) for u in units
                )
        except BaseException:  # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt), a failure
            stop_pool()
            raise


class _Watched:
    """The unit function, run in a worker that exits as soon as its parent is gone (a `kill -9` of
    the coordinator would otherwise leave loky's workers and resource tracker running under PID 1)."""

    def __init__(self, fn: Callable[[Any], Any], parent: int) -> None:
        self.fn, self.parent = fn, parent

    def __call__(self, unit: Any) -> Any:
        _watch_parent(self.parent)
        return self.fn(unit)


_watching: set[int] = set()


def _watch_parent(parent: int) -> None:
    if parent in _watching or os.getpid() == parent:
        return
    _watching.add(parent)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)  # the coordinator died: stop now (the unit in flight is redone on rerun)

    threading.Thread(target=watch, daemon=True, name="climb-parent-watch").start()


def stop_pool() -> None:
    """Kill loky's worker processes now (they are reused between runs and would outlive an
    interrupted one, reparented to PID 1); its resource tracker exits once nothing holds its pipe."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def make_engine(workers: int) -> SerialEngine | LokyEngine:
    return SerialEngine() if workers <= 1 else LokyEngine(workers)
