"""The plan verify hashes by: tasks of about equal bytes, large files alone, largest first."""

from __future__ import annotations

from climb_cli.hash_plan import MIN_TASK, PER_FILE, plan_tasks

GiB, KiB = 2**30, 2**10


def _flat(plan: list[list[int]]) -> list[int]:
    return sorted(i for task in plan for i in task)


def test_four_large_files_are_four_tasks_so_two_workers_share_them() -> None:
    plan = plan_tasks([GiB] * 4, 2)
    assert plan == [[0], [1], [2], [3]]


def test_large_files_alone_largest_first_small_ones_grouped_in_order() -> None:
    sizes = [16 * KiB] * 10 + [3 * GiB] + [16 * KiB] * 10 + [GiB]
    plan = plan_tasks(sizes, 2)
    assert plan[0] == [10] and plan[1] == [21]  # the 3 GiB file, then the 1 GiB one
    assert plan[2:] == [[*range(10), *range(11, 21)]]  # the small ones, in order, one task
    assert _flat(plan) == list(range(len(sizes)))


def test_small_files_are_cut_by_bytes_not_by_count() -> None:
    sizes = [30 * KiB] * 2000  # 2,000 files, ~60 MiB with the per-file cost
    plan = plan_tasks(sizes, 2)
    target = max(MIN_TASK, -(-sum(s + PER_FILE for s in sizes) // 8))
    assert _flat(plan) == list(range(2000))
    assert len(plan) == 8  # workers x TASKS_PER_WORKER
    assert all(sum(sizes[i] + PER_FILE for i in t) <= target for t in plan)
    assert [len(t) for t in plan] == [250] * 8


def test_uneven_small_files_give_tasks_of_similar_bytes() -> None:
    sizes = [(i * 7919) % (512 * KiB) for i in range(5000)]
    plan = plan_tasks(sizes, 4)
    totals = [sum(sizes[i] + PER_FILE for i in t) for t in plan]
    assert _flat(plan) == list(range(5000))
    assert totals == sorted(totals, reverse=True)
    assert min(totals[:-1]) > 0.9 * max(totals)  # every task but the remainder is near the target


def test_a_small_tree_is_not_split_below_the_minimum_task() -> None:
    plan = plan_tasks([KiB] * 50, 8)  # 50 files, 3.2 MiB with the per-file cost: one task
    assert plan == [list(range(50))]


def test_file_count_cap_and_empty_input() -> None:
    plan = plan_tasks([0] * 10, 2, per_file=0, max_files=4)
    assert plan == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert plan_tasks([], 2) == []


def test_the_plan_is_deterministic() -> None:
    sizes = [(i * 104729) % (3 * 2**20) for i in range(3000)] + [GiB, GiB]
    assert plan_tasks(sizes, 2) == plan_tasks(list(sizes), 2)


def test_tasks_of_small_files_are_gil_bound_tasks_of_large_ones_are_not() -> None:
    from climb_cli.hash_plan import SMALL_MEAN, gil_bound

    small, large = [16 * KiB] * 2000, [128 * KiB] * 300 + [GiB, GiB]
    assert all(gil_bound(small, t) for t in plan_tasks(small, 2))
    assert not any(gil_bound(large, t) for t in plan_tasks(large, 2))
    assert gil_bound([SMALL_MEAN - 1, SMALL_MEAN], [0, 1]) and not gil_bound([SMALL_MEAN] * 2, [0, 1])
    assert not gil_bound([], [])
