"""How verify splits hashing into tasks: by bytes, not by file count.

A task is a list of file indices hashed one after another by one worker (a local thread or a
cluster worker). Tasks have about equal byte totals (a file also costs `PER_FILE` bytes' worth of
open/stat work), a file at least as large as a task is a task of its own, and the largest tasks come
first, so 4 large files on 2 cores keep both busy and a run of small files is not one future each.
The plan depends only on the sizes and the worker count: the same input gives the same tasks.

A task of small files (`gil_bound`) is mostly per-file Python work between system calls, each of which
hands the GIL over: two threads doing it at once pass the GIL back and forth about 7 times a file. On
the 2-vCPU VM, 2,000 files of 16 KiB took 2.5x the wall and 4x the CPU on 2 threads that they took on
one; files of 128 KiB and more gain from a second thread (1.6x at 128 KiB, 2x at 1 MiB). So local
threads run gil_bound tasks one at a time, beside any tasks of large files.
"""

from __future__ import annotations

from collections.abc import Sequence

PER_FILE = 64 * 1024  # what opening, stat'ing and closing a file costs, in bytes hashed meanwhile
MIN_TASK = 8 * 2**20  # below this a task's bookkeeping shows against its hashing
TASKS_PER_WORKER = 4  # slack so a worker that finishes early takes another task
MAX_FILES = 4096  # a task stays a modest message for a cluster worker
SMALL_MEAN = 64 * 1024  # a task whose files average fewer bytes is GIL-bound (see above)


def plan_tasks(
    sizes: Sequence[int],
    workers: int,
    *,
    per_file: int = PER_FILE,
    min_task: int = MIN_TASK,
    max_files: int = MAX_FILES,
) -> list[list[int]]:
    """Indices into `sizes` grouped into tasks of about equal bytes, largest task first.

    Neighbouring files stay together (they usually share a folder); a task closes when the next file
    would take it past the target (total / (workers x TASKS_PER_WORKER), at least `min_task`) or past
    `max_files`. Every index appears in exactly one task."""
    costs = [max(0, s) + per_file for s in sizes]
    target = max(min_task, -(-sum(costs) // (max(1, workers) * TASKS_PER_WORKER)))
    tasks: list[tuple[int, list[int]]] = []
    run: list[int] = []
    run_bytes = 0
    for i, cost in enumerate(costs):
        if cost >= target:  # a large file: a task of its own
            tasks.append((cost, [i]))
            continue
        if run and (run_bytes + cost > target or len(run) >= max_files):
            tasks.append((run_bytes, run))
            run, run_bytes = [], 0
        run.append(i)
        run_bytes += cost
    if run:
        tasks.append((run_bytes, run))
    tasks.sort(key=lambda t: -t[0])  # stable: equal tasks keep their order
    return [indices for _, indices in tasks]


def gil_bound(sizes: Sequence[int], task: Sequence[int], *, small_mean: int = SMALL_MEAN) -> bool:
    """True when the task's files average under `small_mean` bytes: threads would spend it passing
    the GIL to each other, so it is better hashed by one thread at a time."""
    return bool(task) and sum(max(0, sizes[i]) for i in task) < small_mean * len(task)
