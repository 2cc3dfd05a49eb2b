"""Assigning items to splits: mapped column values, fixed, seeded random, ordered, membership files,
and CLIMB's few-shot subsets.

Algorithms (all deterministic; none depends on Python's hash(), set order or a library's RNG version
except where a recipe asks to reproduce one):

hash (climb's own, the default for `random:`)
    Each item has a key: its `group` column value, else its id. A key's draw is the first 8 bytes,
    big-endian, of sha256("climb-split-v1\\0<seed>\\0<key>") (UTF-8). Keys are put into strata (all one
    stratum without `stratify`; with `stratify: labels` a key's stratum is the exact label combination
    of its first row, with `stratify: <column>` that column's value in its first row). Within a
    stratum the keys are sorted by (draw, key) and cut into consecutive runs: the first
    `cut(F_1)` keys go to the first split, up to `cut(F_1 + F_2)` to the second, and so on, where F_i
    are the recipe's fractions (exact decimals) and cut(F) = floor(n*F + 1/2) (`rounding: nearest`)
    or floor(n*F) (`rounding: floor`); the last split takes the rest. The same seed and keys give
    the same split on any machine, Python, numpy or pandas version.

pandas_sample (reproduces CLIMB's `df[df.y == c].sample(k, random_state=seed)`)
    Per stratum (rows in table order), k = round(F_1*n) (pandas' `frac=`) or int(F_1*n) (`rounding:
    floor`, as CLIMB's int(0.8*count)), both in float arithmetic as they are; the first split takes
    the rows at positions numpy.random.RandomState(seed).permutation(n)[:k], which is what pandas'
    sample draws
    (RandomState.choice(n, k, replace=False)); the other split takes the rest. With `group`, the
    unit is the group (distinct values in order of first appearance).

sklearn_split (reproduces `train_test_split(units, test_size=F_2, random_state=seed[, stratify=y])`)
    Units are the distinct `group` values in order of first appearance (or the rows, in table
    order). n_test = ceil(F_2*n) (float arithmetic, as scikit-learn), n_train = n - n_test. Without
    `stratify`: perm = RandomState(seed).permutation(n); the second split takes perm[:n_test]
    (ShuffleSplit). With it, y is each unit's stratum as text and the draw is StratifiedShuffleSplit's
    (classes in np.unique order, _approximate_mode for per-class sizes, one permutation per class),
    re-implemented line for line. numpy's legacy RandomState stream is frozen by numpy's
    compatibility policy, so both reproductions are stable too. The unit order must be CLIMB's list
    order (a table's row order; a `files:` index is sorted by path). Three fractions are CLIMB's two
    successive calls (LIDC's train_test_split, ABIDE's StratifiedShuffleSplit): the first takes
    test_sizes[0] of the units off, the second splits that part, in the order the first call returned
    it (its permutation), with test_sizes[1] and the same seed: first part -> the second split, the
    rest -> the third. test_sizes default to (F_2 + F_3, F_3 / (F_2 + F_3)) in floats; a recipe gives
    them when the reproduced code computes them otherwise (ABIDE: 1 - 0.7 and 1 - 0.1 / (1 - 0.7)).

numpy_shuffle (reproduces `RandomState(seed).shuffle(units)` then the first int/round(F_1*n) units
    to the first split; `np.random.seed(s); np.random.shuffle(x)` is the same stream): the shuffled
    order is units[RandomState(seed).permutation(n)], the same draws.

ordered: items sorted by the `by` columns (digit runs compared as numbers with `numeric: true`, ties
    by id) and cut into runs as in `hash`; with `stratify`, each stratum on its own (BUSI: per class,
    sorted by name, the first 75 %).

membership: each split's file lists members: 0-based row numbers of the index table (`by: _row`,
    OGB) or values of an index column; a row listed by two files is an error.

few_shot (a variant, never the default): of the `split` items, `size` per class (fewer if the
    class has fewer) chosen as CLIMB's finetune_size: per class, pandas_sample with k = min(size,
    n) and RandomState(seed); the other splits are unchanged.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Sequence
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pandas as pd

from climb_cli.errors import RecipeError
from climb_cli.recipe import FewShot, MembershipSplit, OrderedSplit, RandomSplit, SplitSpec, TableRef


def draw(seed: int, key: str) -> int:
    """The 64-bit draw of a key under a seed (see the module docstring)."""
    digest = hashlib.sha256(f"climb-split-v1\0{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _exact(f: float) -> Fraction:
    return Fraction(Decimal(repr(f)))


def cut_points(n: int, fractions: Sequence[float], rounding: str = "nearest") -> list[int]:
    """End index of each split's run among n ordered units; the last is always n."""
    ends, acc = [], Fraction(0)
    for f in fractions[:-1]:
        acc += _exact(f)
        x = n * acc
        ends.append(math.floor(x + Fraction(1, 2)) if rounding == "nearest" else math.floor(x))
    return [*ends, n]


def _runs(units: Sequence[str], names: list[str], fractions: list[float], rounding: str) -> dict[str, str]:
    out, start = {}, 0
    for name, end in zip(names, cut_points(len(units), fractions, rounding), strict=True):
        for u in units[start:end]:
            out[u] = name
        start = max(start, end)
    return out


def _first_k(n: int, k: int, seed: int) -> np.ndarray:
    """Positions pandas' DataFrame.sample(k, random_state=seed) takes from n rows."""
    return np.random.RandomState(seed).permutation(n)[:k]


def _size(n: int, f: float, rounding: str) -> int:
    """pandas' round(frac * n), or CLIMB's int(f * n): float arithmetic, exactly as they do it."""
    x = f * n
    return int(x) if rounding == "floor" else round(x)


def _approximate_mode(counts: np.ndarray, n_draws: int, rng: np.random.RandomState) -> np.ndarray:
    """scikit-learn's _approximate_mode (StratifiedShuffleSplit): per-class sizes, ties broken by rng."""
    continuous = counts / counts.sum() * n_draws
    floored = np.floor(continuous)
    need = int(n_draws - floored.sum())
    if need > 0:
        remainder = continuous - floored
        for value in np.sort(np.unique(remainder))[::-1]:
            (inds,) = np.where(remainder == value)
            add_now = min(len(inds), need)
            inds = rng.choice(inds, size=add_now, replace=False)
            floored[inds] += 1
            need -= add_now
            if need == 0:
                break
    return floored.astype(int)


def sklearn_shuffle_split(
    n: int, test_size: float, seed: int, y: list[str] | None
) -> tuple[list[int], list[int]]:
    """(train, test) positions in the order train_test_split(range(n), test_size=test_size,
    random_state=seed, stratify=y) returns them (ShuffleSplit / StratifiedShuffleSplit, numpy's legacy
    RandomState): the order matters when the test part is split again."""
    n_test = math.ceil(test_size * n)
    n_train = n - n_test
    rng = np.random.RandomState(seed)
    if y is None:
        perm = rng.permutation(n)
        return perm[n_test : n_test + n_train].tolist(), perm[:n_test].tolist()
    classes, y_idx, counts = np.unique(np.array(y, dtype=str), return_inverse=True, return_counts=True)
    if counts.min() < 2 or n_train < len(classes) or n_test < len(classes):
        raise RecipeError(
            f"stratified sklearn_split: {len(classes)} classes, the smallest with {counts.min()} unit(s), "
            f"{n_train} train / {n_test} test: scikit-learn refuses this split too"
        )
    class_indices = np.split(np.argsort(y_idx, kind="stable"), np.cumsum(counts)[:-1])
    n_i = _approximate_mode(counts, n_train, rng)
    t_i = _approximate_mode(counts - n_i, n_test, rng)
    train: list[int] = []
    test: list[int] = []
    for i in range(len(classes)):
        members = class_indices[i].take(rng.permutation(counts[i]), mode="clip")
        train.extend(members[: n_i[i]].tolist())
        test.extend(members[n_i[i] : n_i[i] + t_i[i]].tolist())
    train_order = rng.permutation(np.array(train, dtype=np.int64)).tolist()
    test_order = rng.permutation(np.array(test, dtype=np.int64)).tolist()
    return train_order, test_order


def sklearn_test_positions(n: int, test_size: float, seed: int, y: list[str] | None) -> set[int]:
    """Positions train_test_split(range(n), test_size=test_size, random_state=seed, stratify=y)
    puts in the test set (ShuffleSplit / StratifiedShuffleSplit, numpy's legacy RandomState)."""
    return set(sklearn_shuffle_split(n, test_size, seed, y)[1])


def sklearn_three_way(
    n: int, test_sizes: tuple[float, float], seed: int, y: list[str] | None
) -> tuple[list[int], list[int], list[int]]:
    """CLIMB's two successive train_test_split calls (LIDC, ABIDE's StratifiedShuffleSplit): the first
    splits off test_sizes[0] of the units, the second splits that part (in the order the first call
    returned it) with test_sizes[1]; the same random_state both times."""
    first, rest = sklearn_shuffle_split(n, test_sizes[0], seed, y)
    sub_y = [y[i] for i in rest] if y is not None else None
    second_a, second_b = sklearn_shuffle_split(len(rest), test_sizes[1], seed, sub_y)
    return first, [rest[i] for i in second_a], [rest[i] for i in second_b]


def natural_key(value: str) -> tuple:
    return tuple((0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", value) if t)


class Assigner:
    """Splits for a list of candidate items (ids, their index rows, their labels)."""

    def __init__(self, spec: SplitSpec, read_table: Callable[[TableRef], pd.DataFrame]) -> None:
        self.spec = spec
        self.read_table = read_table

    def __call__(
        self, ids: list[str], rows: list[dict[str, str]], labels: list[tuple[str, ...]]
    ) -> list[str | None]:
        s = self.spec
        if s.fixed is not None:
            return [s.fixed] * len(ids)
        if s.column is not None:
            reverse = {raw: name for name, raws in s.map.items() for raw in raws}
            return [reverse.get(r[s.column], s.default) for r in rows]
        if s.random is not None:
            return self._random(s.random, ids, rows, labels)
        if s.ordered is not None:
            return self._ordered(s.ordered, ids, rows, labels)
        assert s.membership is not None
        return self._membership(s.membership, rows)

    # -- random ---------------------------------------------------------------------------------

    def _random(
        self, r: RandomSplit, ids: list[str], rows: list[dict[str, str]], labels: list[tuple[str, ...]]
    ) -> list[str | None]:
        keys = [row[r.group] for row in rows] if r.group else ids
        strata: dict[str, str] = {}  # unit key -> stratum (its first row's)
        for k, row, lab in zip(keys, rows, labels, strict=True):
            if k not in strata:
                if r.stratify is None:
                    strata[k] = ""
                elif r.stratify == "labels":
                    strata[k] = "\0".join(lab)
                else:
                    strata[k] = row[r.stratify]
        by_stratum: dict[str, list[str]] = {}
        for k, st in strata.items():  # dict order: first appearance
            by_stratum.setdefault(st, []).append(k)
        names, fractions = list(r.fractions), list(r.fractions.values())
        assigned: dict[str, str] = {}
        if r.method == "sklearn_split":
            units = list(strata)  # first appearance
            y = [strata[u] for u in units] if r.stratify else None
            pos = {u: k for k, u in enumerate(units)}
            if len(fractions) == 2:
                test = sklearn_test_positions(len(units), fractions[1], r.seed, y)
                return [names[1] if pos[k] in test else names[0] for k in keys]
            parts = sklearn_three_way(len(units), r.sklearn_test_sizes(), r.seed, y)
            where = {p: names[j] for j, part in enumerate(parts) for p in part}
            return [where[pos[k]] for k in keys]
        for units in by_stratum.values():
            if r.method == "hash":
                ordered = sorted(units, key=lambda u: (draw(r.seed, u), u))
                assigned.update(_runs(ordered, names, fractions, r.rounding))
            elif r.method == "numpy_shuffle":
                order = np.random.RandomState(r.seed).permutation(len(units))
                first = {units[i] for i in order[: _size(len(units), fractions[0], r.rounding)].tolist()}
                assigned.update({u: names[0] if u in first else names[1] for u in units})
            else:  # pandas_sample
                take = set(_first_k(len(units), _size(len(units), fractions[0], r.rounding), r.seed).tolist())
                assigned.update({u: names[0] if i in take else names[1] for i, u in enumerate(units)})
        return [assigned[k] for k in keys]

    # -- ordered --------------------------------------------------------------------------------

    def _ordered(
        self, o: OrderedSplit, ids: list[str], rows: list[dict[str, str]], labels: list[tuple[str, ...]]
    ) -> list[str | None]:
        def key(i: int) -> tuple:
            vals = [rows[i][c] for c in o.by]
            return (tuple(natural_key(v) for v in vals) if o.numeric else tuple(vals), ids[i])

        strata: dict[str, list[int]] = {}
        for i in range(len(ids)):
            st = (
                ""
                if o.stratify is None
                else "\0".join(labels[i])
                if o.stratify == "labels"
                else rows[i][o.stratify]
            )
            strata.setdefault(st, []).append(i)
        got: dict[str, str] = {}
        for members in strata.values():
            if o.group is not None:  # cut the distinct groups, each sorted by its own value
                groups = sorted({rows[i][o.group] for i in members}, key=natural_key if o.numeric else None)
                cut = _runs(groups, list(o.fractions), list(o.fractions.values()), o.rounding)
                got.update({str(i): cut[rows[i][o.group]] for i in members})
                continue
            order = [str(i) for i in sorted(members, key=key)]
            got.update(_runs(order, list(o.fractions), list(o.fractions.values()), o.rounding))
        return [got[str(i)] for i in range(len(ids))]

    # -- membership -----------------------------------------------------------------------------

    def _membership(self, m: MembershipSplit, rows: list[dict[str, str]]) -> list[str | None]:
        member: dict[str, str] = {}
        for name, ref in m.files.items():
            table = self.read_table(ref)
            col = table.columns[0]
            for v in table[col]:
                v = str(v).strip()
                if v == "":
                    continue
                if m.by == "_row":
                    try:
                        v = str(int(v))
                    except ValueError:
                        raise RecipeError(f"split file {ref.path}: {v!r} is not a row number") from None
                if member.get(v, name) != name:
                    raise RecipeError(f"split files {ref.path} and the {member[v]} file both list {v!r}")
                member[v] = name
        return [member.get(r[m.by], self.spec.default) for r in rows]


def few_shot(fs: FewShot, variant: str, splits: list[str], labels: list[tuple[str, ...]]) -> list[bool]:
    """Which items stay in the few-shot variant: up to `size` per class (label combination) of fs.split.

    As CLIMB's finetune_size: per class, the items (all splits, table order) at positions
    RandomState(seed).permutation(n) in turn, keeping those in fs.split until `size` are kept. When
    the split itself came from pandas_sample with the same seed this is exactly CLIMB's
    `sample(min(size, n), random_state=seed)`; where CLIMB's draw would reach into the other split
    (a class with fewer than `size` training items) only training items are kept.
    """
    size = fs.sizes[variant]
    keep = [s != fs.split for s in splits]
    by_class: dict[tuple[str, ...], list[int]] = {}
    for i, lab in enumerate(labels):
        by_class.setdefault(lab, []).append(i)
    for members in by_class.values():
        taken = 0
        for p in np.random.RandomState(fs.seed).permutation(len(members)).tolist():
            if taken == size:
                break
            if splits[members[p]] == fs.split:
                keep[members[p]] = True
                taken += 1
    return keep
