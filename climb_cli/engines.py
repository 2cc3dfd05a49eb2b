"""Where work units run. The unit function is the same everywhere; an engine only maps it.

`serial` runs in this process (debugging, one worker); `loky` (default) runs joblib's loky
process pool on this machine; an interrupted run (Ctrl-C, SIGTERM) kills the pool, and a worker
whose coordinator was killed outright exits on its own. A cluster engine (Dask, Ray) is one more
class with the same `map`, because a unit writes its shard itself to shared storage and returns
only small stats.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psutil

from climb_cli.errors import ClimbError

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
    candidates: list[tuple[Path, Path | None]] = [(root / "cpu.max", None)]  # v2: "<quota|max> <period>"
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


def memory_capped_workers(
    requested: int, unit_bytes: int, units: int, memory_per_worker: int | None = None
) -> tuple[int, str]:
    """How many workers fit in available memory: each costs its base plus one unit's working set,
    or `memory_per_worker` where that is given (and larger)."""
    available = psutil.virtual_memory().available
    per_worker = max(WORKER_BASE_BYTES + max(unit_bytes, 0), memory_per_worker or 0)
    fit = max(1, int(available * 0.8) // per_worker)
    workers = max(1, min(requested, units, fit))
    note = ""
    if workers < requested:
        why = "memory" if fit < min(requested, units) else "work units"
        note = f"using {workers} of {requested} workers ({why} limit: {available // 2**20:,} MiB available)"
    return workers, note


class SerialEngine:
    """Units in this process, one at a time: `submit` queues, `wait_any` runs the oldest."""

    name = "serial"
    workers = 1

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        for u in units:
            yield fn(u)

    def warm_up(self, modules: Iterable[str] = ()) -> None:
        """Nothing to start: the first unit imports what it needs."""

    def submit(self, fn: Callable[[Any], Any], arg: Any, unit_bytes: int = 0) -> _Call:
        return _Call(fn, arg)

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[Any]:
        if timeout is not None or not handles:
            return []  # nothing runs behind the caller's back
        handles[0].run()
        return [handles[0]]

    def result(self, handle: Any) -> Any:
        return handle.get()

    def cancel(self, handles: list[Any]) -> None:
        pass


class _Call:
    """A unit the serial engine runs when it is waited for."""

    __slots__ = ("fn", "arg", "value", "error", "ran")

    def __init__(self, fn: Callable[[Any], Any], arg: Any) -> None:
        self.fn, self.arg, self.ran = fn, arg, False
        self.value: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.value = self.fn(self.arg)
        except Exception as e:  # raised by `get`, like a pool's result
            self.error = e
        self.ran = True

    def get(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.value


# one thread per worker in every library that has its own pool (BLAS/OpenMP; ITK reads its own
# variable when a worker imports SimpleITK)
_ONE_THREAD = {
    v: "1"
    for v in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "BLIS_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    )
}
IDLE_WORKER_SECONDS = 300  # a loky worker with nothing to do for this long exits (joblib's default)


class LokyEngine:
    """Units on loky's reusable process pool: started once (`warm_up` starts it early), reused by
    every dataset of a run, killed on an interrupt or a failure."""

    name = "loky"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._executor: Any = None

    def _pool(self) -> Any:
        if self._executor is None:
            from joblib.externals.loky import get_reusable_executor

            self._executor = get_reusable_executor(
                max_workers=self.workers, timeout=IDLE_WORKER_SECONDS, env=_ONE_THREAD
            )
        return self._executor

    def warm_up(self, modules: Iterable[str] = ()) -> None:
        """Start the workers now, each importing the pipeline, the steps and `modules` (the
        libraries the run's steps use), so that their start-up overlaps the coordinator's planning."""
        modules = sorted(set(modules))
        for _ in range(self.workers):
            self.submit(_import_pipeline, modules)

    def wait(self) -> None:
        """Kept for callers of the old warm-up thread: the warm-up is queued work, nothing to join."""

    def submit(self, fn: Callable[[Any], Any], arg: Any, unit_bytes: int = 0) -> Any:
        try:
            return self._pool().submit(_Watched(fn, os.getpid()), arg)
        except BaseException:
            stop_pool()
            raise

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[Any]:
        from concurrent.futures import FIRST_COMPLETED, wait

        return list(wait(handles, timeout=timeout, return_when=FIRST_COMPLETED).done) if handles else []

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: list[Any]) -> None:
        for h in handles:
            h.cancel()

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        """fn over units, results as they complete; an interrupt or a failure kills the pool."""
        try:
            pending = [self.submit(fn, u) for u in units]
            while pending:
                for f in self.wait_any(pending):
                    pending.remove(f)
                    yield f.result()
        except BaseException:  # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt), a failure
            stop_pool()
            raise


def start_pool(workers: int, memory_per_worker: int | None = None) -> None:
    """Start loky's workers now (the CLI calls this before it loads the recipes): `preprocess_many`
    finds them started, importing climb's steps, and reuses them."""
    if workers > 1:
        LokyEngine(memory_capped_workers(workers, 0, workers, memory_per_worker)[0]).warm_up()


def step_modules(step_names: Iterable[str]) -> list[str]:
    """The heavy libraries (the `lazy` stand-ins) of the modules that define these steps: what a
    worker imports in its warm-up instead of in its first unit."""
    import sys

    from climb_cli.lazy import _Lazy
    from climb_cli.steps.base import registry

    known = registry()
    out: set[str] = set()
    for name in step_names:
        step = known.get(name)
        module = sys.modules.get(step.fn.__module__) if step is not None else None
        if module is None:
            continue
        helpers = [v for v in vars(module).values() if isinstance(v, ModuleType)]  # steps/_pixels.py...
        for m in [module, *(h for h in helpers if h.__name__.startswith("climb_cli.steps."))]:
            out.update(v._name for v in vars(m).values() if isinstance(v, _Lazy))
    return sorted(out)


def _import_pipeline(modules: list[str]) -> None:
    import importlib

    from climb_cli.steps.base import registry

    registry()
    for m in modules:
        with contextlib.suppress(Exception):
            importlib.import_module(m)


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
    _keep_worker()

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)  # the coordinator died: stop now (the unit in flight is redone on rerun)

    threading.Thread(target=watch, daemon=True, name="climb-parent-watch").start()


def _keep_worker() -> None:
    """Turn off loky's leak guard in this worker. It restarts a worker whose RSS grew 300 MB past its
    size after its first task; here the first task is the warm-up, before the decoders are imported
    and before any row group was held, so a worker was restarted after its first large unit and
    imported everything again (idle seconds in the middle of the run). A unit's memory is bounded by
    climb itself (the memory-aware cap and --memory-per-worker)."""
    from joblib.externals.loky import process_executor

    process_executor._USE_PSUTIL = False  # the guard runs only with psutil: the loop reads this each task


def stop_pool() -> None:
    """Kill loky's worker processes now (they are reused between runs and would outlive an
    interrupted one, reparented to PID 1); its resource tracker exits once nothing holds its pipe."""
    from joblib.externals.loky import reusable_executor

    executor = getattr(reusable_executor, "_executor", None)
    if executor is not None:
        executor.shutdown(wait=True, kill_workers=True)


def _one_thread_per_worker() -> None:
    os.environ.setdefault("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "1")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")


class DaskEngine:
    """Units as Dask futures: on the cluster at `scheduler` (tcp://host:port), else on a
    LocalCluster of `workers` processes bound to 127.0.0.1 that lives as long as this engine.

    Each unit asks for `unit_bytes` of every worker's `memory` resource (declared by the worker,
    else its memory limit less a worker's base cost), so a worker with several threads runs only as
    many units at once as fit in its memory."""

    name = "dask"

    def __init__(
        self,
        workers: int,
        scheduler: str | None = None,
        memory_per_worker: int | None = None,
        unit_bytes: int = 0,
    ) -> None:
        from distributed import Client, LocalCluster

        _one_thread_per_worker()
        self.cluster = None
        self.unit_bytes = unit_bytes
        self._memory: int | None = None  # the largest worker's `memory` resource
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
        else:
            import dask

            # the cluster is this run's own: no statistical profiler (a stack sample every 10 ms) and
            # no GIL monitor in its workers, whose CPU is the units'
            dask.config.set(
                {
                    "distributed.worker.profile.enabled": False,
                    "distributed.admin.system-monitor.gil.enabled": False,
                }
            )
            per_worker = memory_per_worker or max(
                WORKER_BASE_BYTES + unit_bytes, psutil.virtual_memory().available // max(1, workers)
            )
            self.cluster = LocalCluster(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address="127.0.0.1:0",
                memory_limit=per_worker,
                silence_logs=40,
            )
            self.client = Client(self.cluster)
        # a worker without a `memory` resource gets one: its memory limit (or its machine's
        # memory) less the base cost of a worker process
        self.client.run(_declare_memory)
        self.workers = len(self.client.scheduler_info()["workers"])

    def warm_up(self, modules: Iterable[str] = ()) -> None:
        """Every worker imports the pipeline, the steps and `modules` now (before its first unit)."""
        self.client.run(_import_pipeline, sorted(set(modules)))

    def _resources(self, unit_bytes: int) -> dict[str, int] | None:
        if not unit_bytes:
            return None
        if self._memory is None:  # never more than the largest worker has, or the units would wait forever
            have = [
                w.get("resources", {}).get("memory", 0)
                for w in self.client.scheduler_info()["workers"].values()
            ]
            self._memory = max(have, default=1)
        return {"memory": max(1, min(unit_bytes, self._memory))}

    def submit(self, fn: Callable[[Any], Any], arg: Any, unit_bytes: int = 0) -> Any:
        return self.client.submit(fn, arg, pure=False, resources=self._resources(unit_bytes))

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[Any]:
        from distributed import wait

        if not handles:
            return []
        if timeout is not None:
            return [f for f in handles if f.done()]
        return list(wait(handles, return_when="FIRST_COMPLETED").done)

    def result(self, handle: Any) -> Any:
        return handle.result()

    def cancel(self, handles: list[Any]) -> None:
        if handles:
            self.client.cancel(handles)

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        from distributed import as_completed

        units = list(units)
        if not units:
            return
        futures = self.client.map(fn, units, pure=False, resources=self._resources(self.unit_bytes))
        try:
            for f in as_completed(futures):
                yield f.result()
        finally:
            self.client.cancel(futures)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


async def _declare_memory(dask_worker: Any) -> None:
    if "memory" in dask_worker.state.total_resources:
        return
    limit = dask_worker.memory_manager.memory_limit or psutil.virtual_memory().total
    await dask_worker.set_resources(memory=max(1, limit - WORKER_BASE_BYTES))


class RayEngine:
    """Units as Ray tasks: on the cluster at `address` (ray://host:port or host:port), else on a
    local Ray started for this run. Each task reserves `unit_bytes` of Ray's `memory` resource."""

    name = "ray"

    def __init__(self, workers: int, address: str | None = None, unit_bytes: int = 0) -> None:
        import ray

        _one_thread_per_worker()
        self.ray = ray
        self.unit_bytes = unit_bytes
        if address:
            ray.init(address=address, log_to_driver=False)  # a cluster's own settings stand
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        self.workers = int(ray.cluster_resources().get("CPU", workers))

    def warm_up(self, modules: Iterable[str] = ()) -> None:
        """Nothing ahead of time: Ray starts its workers with the first tasks."""

    def submit(self, fn: Callable[[Any], Any], arg: Any, unit_bytes: int = 0) -> Any:
        opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if unit_bytes:
            opts["memory"] = unit_bytes
        return self.ray.remote(_apply).options(**opts).remote(fn, arg)

    def wait_any(self, handles: list[Any], timeout: float | None = None) -> list[Any]:
        if not handles:
            return []
        done, _ = self.ray.wait(handles, num_returns=1, timeout=timeout)
        return list(done)

    def result(self, handle: Any) -> Any:
        return self.ray.get(handle)

    def cancel(self, handles: list[Any]) -> None:
        for ref in handles:
            self.ray.cancel(ref, force=True)

    def map(self, fn: Callable[[Any], Any], units: Iterable[Any]) -> Iterator[Any]:
        ray = self.ray
        opts: dict[str, Any] = {"num_cpus": 1, "max_retries": 0}
        if self.unit_bytes:
            opts["memory"] = self.unit_bytes
        remote = ray.remote(_apply).options(**opts)
        pending = [remote.remote(fn, u) for u in units]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        self.ray.shutdown()


def _apply(fn: Callable[[Any], Any], unit: Any) -> Any:
    return fn(unit)


ENGINES = ("loky", "dask", "ray")


def make_engine(
    workers: int,
    kind: str = "loky",
    *,
    scheduler: str | None = None,
    address: str | None = None,
    memory_per_worker: int | None = None,
    unit_bytes: int = 0,
) -> SerialEngine | LokyEngine | DaskEngine | RayEngine:
    """The engine for a run; call `close_engine` on it when the run is over."""
    if kind == "dask":
        try:
            return DaskEngine(workers, scheduler, memory_per_worker, unit_bytes)
        except ImportError:
            raise ClimbError("--engine dask needs dask.distributed: pip install 'climb-cli[dask]'") from None
        except OSError as e:
            raise ClimbError(f"--engine dask: cannot reach the scheduler {scheduler}: {e}") from None
    if kind == "ray":
        try:
            return RayEngine(workers, address, unit_bytes)
        except ImportError:
            raise ClimbError("--engine ray needs ray: pip install 'climb-cli[ray]'") from None
        except ConnectionError as e:
            raise ClimbError(f"--engine ray: cannot reach the cluster at {address}: {e}") from None
    if kind != "loky":
        raise ClimbError(f"unknown engine {kind!r}; use one of {', '.join(ENGINES)}")
    return SerialEngine() if workers <= 1 else LokyEngine(workers)


def close_engine(engine: Any) -> None:
    close = getattr(engine, "close", None)
    if close is not None:
        close()
