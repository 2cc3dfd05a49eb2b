"""Turning a recipe's index section into items: id, split, labels, input paths, kept columns.

Tables are read as strings (csv, tsv, .gz), joined and filtered as the recipe says; or items are
enumerated from files with a glob and a regex whose named groups become columns. Labels can be a
value, the keys of a {code: likelihood} literal (PTB-XL's scp_codes), a separated list, or flag
columns, optionally translated through a mapping table. Items that cannot be labelled or split are
reported with the reason, never silently dropped.
"""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from climb_cli.errors import RecipeError
from climb_cli.recipe import FilesSpec, LabelSpec, Recipe, SplitSpec, TableRef
from climb_cli.settings import Settings


@dataclass(frozen=True)
class Item:
    id: str
    split: str
    labels: tuple[str, ...]
    inputs: dict[str, str]  # input name -> path relative to raw/<dataset>/
    extra: dict[str, str] = field(default_factory=dict)
    target: float | None = None  # regression target


@dataclass
class IndexResult:
    items: list[Item]
    rejected: list[tuple[str, str]]  # (id, reason): items the index could not build


def _source_root(recipe: Recipe, settings: Settings, source_id: str | None) -> tuple[Path, str]:
    spec = recipe.source(source_id)
    root = settings.raw_dir(recipe.name)
    return (root / spec.into if spec.into else root), (spec.into + "/" if spec.into else "")


def read_table(recipe: Recipe, settings: Settings, ref: TableRef) -> pd.DataFrame:
    root, _ = _source_root(recipe, settings, ref.source)
    path = root / ref.path
    if not path.is_file():
        raise RecipeError(f"{recipe.name}: index table {path} is missing; run `climb download {recipe.name}`")
    name = path.name.removesuffix(".gz")
    sep = ref.sep or ("\t" if name.endswith((".tsv", ".tab")) else ",")
    try:
        df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[], compression="infer")
    except (ValueError, OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"{recipe.name}: cannot read table {path}: {e}") from None
    if ref.index_column and (str(df.columns[0]).startswith("Unnamed: 0") or df.columns[0] == ""):
        df = df.rename(columns={df.columns[0]: ref.index_column})
    return df


def _files_table(recipe: Recipe, settings: Settings, spec: FilesSpec) -> pd.DataFrame:
    root, _ = _source_root(recipe, settings, spec.source)
    rx = re.compile(spec.pattern) if spec.pattern else None
    rows = []
    for p in sorted(root.glob(spec.glob)):
        if not p.is_file() or ".climb" in p.relative_to(root).parts:
            continue
        rel = p.relative_to(root).as_posix()
        row = {
            "path": rel,
            "name": p.name,
            "stem": p.name.split(".")[0],
            "dir": p.parent.relative_to(root).as_posix(),
        }
        if rx:
            m = rx.search(rel)
            if not m:
                continue
            row.update({k: v or "" for k, v in m.groupdict().items()})
        rows.append(row)
    return pd.DataFrame(rows, dtype=str)


def _fields(template: str) -> set[str]:
    return {f.split(".")[0].split("[")[0] for _, f, _, _ in string.Formatter().parse(template) if f}


class _Labeler:
    def __init__(self, recipe: Recipe, settings: Settings, spec: LabelSpec) -> None:
        self.spec = spec
        self.classes = list(spec.classes or spec.columns or [])
        self.mapping: dict[str, list[str]] | None = None
        if spec.map:
            table = read_table(recipe, settings, spec.map.table)
            for col in [spec.map.key, spec.map.value, *spec.map.where]:
                if col not in table.columns:
                    raise RecipeError(f"{recipe.name}: label map table has no column {col!r}")
            for col, values in spec.map.where.items():
                table = table[table[col].isin(values)]
            self.mapping = {}
            for k, v in zip(table[spec.map.key], table[spec.map.value], strict=True):
                if v != "":
                    self.mapping.setdefault(k, []).append(v)

    def __call__(self, row: dict[str, str]) -> tuple[str, ...]:
        s = self.spec
        if s.kind in ("none", "regression"):
            return ()
        codes: list[str]
        if s.columns is not None:
            codes = [c for c in s.columns if row.get(c, "") in s.positive]
        else:
            raw = row[s.column or ""]
            if s.parse == "dict_keys":
                try:
                    parsed = ast.literal_eval(raw) if raw.strip() else {}
                except (ValueError, SyntaxError):
                    raise ValueError(f"{s.column} is not a {{code: value}} literal: {raw[:60]!r}") from None
                if not isinstance(parsed, dict):
                    raise ValueError(f"{s.column} is not a {{code: value}} literal: {raw[:60]!r}")
                codes = [str(k) for k, v in parsed.items() if s.min_value is None or float(v) >= s.min_value]
            elif s.parse == "list":
                codes = [c.strip() for c in raw.split(s.sep) if c.strip()]
            else:
                codes = [raw] if raw != "" else []
        if self.mapping is not None:
            codes = [m for c in codes for m in self.mapping.get(c, [])]
        unknown = sorted({c for c in codes if c not in self.classes})
        if unknown and s.others == "error":
            raise ValueError(f"label(s) {', '.join(unknown)} not in the recipe's classes")
        present = set(codes)
        labels = tuple(c for c in self.classes if c in present)
        if s.kind == "multiclass" and len(labels) > 1:
            raise ValueError(f"multiclass item has several labels: {', '.join(labels)}")
        return labels


def _splitter(spec: SplitSpec):  # type: ignore[no-untyped-def]
    reverse = {raw: name for name, raws in spec.map.items() for raw in raws}

    def split(row: dict[str, str]) -> str | None:
        if spec.fixed is not None:
            return spec.fixed
        return reverse.get(row[spec.column or ""])

    return split


def build_index(recipe: Recipe, settings: Settings) -> IndexResult:
    ix = recipe.index
    if ix is None:
        raise RecipeError(f"{recipe.name}: the recipe has no index section, so it cannot be preprocessed")
    df = read_table(recipe, settings, ix.table) if ix.table else _files_table(recipe, settings, ix.files)  # type: ignore[arg-type]
    for j in ix.join:
        other = read_table(recipe, settings, j.table)
        missing = [c for c in j.on if c not in df.columns or c not in other.columns]
        if missing:
            raise RecipeError(f"{recipe.name}: cannot join {j.table.path} on missing column(s) {missing}")
        df = df.merge(other, on=j.on, how=j.how, suffixes=("", f"__{Path(j.table.path).stem}"))
    for col, values in ix.filter.items():
        if col not in df.columns:
            raise RecipeError(f"{recipe.name}: index.filter names a missing column {col!r}")
        df = df[df[col].isin(values)]
    needed = set(ix.keep)
    needed |= _fields(ix.id) if "{" in ix.id else {ix.id}
    for t in ix.inputs.values():
        needed |= _fields(t)
    if ix.split.column:
        needed.add(ix.split.column)
    if ix.labels.column:
        needed.add(ix.labels.column)
    needed |= set(ix.labels.columns or [])
    absent = sorted(c for c in needed if c not in df.columns)
    if absent:
        raise RecipeError(
            f"{recipe.name}: the index table has no column(s) {absent} "
            f"(columns: {', '.join(map(str, df.columns[:12]))}...)"
        )
    labeler = _Labeler(recipe, settings, ix.labels)
    split_of = _splitter(ix.split)
    _, prefix = _source_root(recipe, settings, ix.inputs_source)
    items: list[Item] = []
    rejected: list[tuple[str, str]] = []
    seen: set[str] = set()
    for row in df.to_dict("records"):
        item_id = ix.id.format(**row) if "{" in ix.id else row[ix.id]
        if item_id in seen:
            raise RecipeError(f"{recipe.name}: id {item_id!r} occurs twice in the index (ids must be unique)")
        seen.add(item_id)
        split = split_of(row)
        if split is None:
            if ix.split.unmapped == "error":
                rejected.append(
                    (item_id, f"split value {row.get(ix.split.column or '', '')!r} is not mapped")
                )
            continue
        try:
            labels = labeler(row)
        except ValueError as e:
            rejected.append((item_id, str(e)))
            continue
        if not labels and ix.labels.kind in ("multilabel", "multiclass") and ix.labels.empty == "drop":
            continue
        target = None
        if ix.labels.kind == "regression":
            try:
                target = float(row[ix.labels.column or ""])
            except ValueError:
                rejected.append((item_id, f"target {row[ix.labels.column or '']!r} is not a number"))
                continue
        try:
            inputs = {name: prefix + t.format(**row) for name, t in ix.inputs.items()}
        except (ValueError, KeyError, IndexError) as e:
            rejected.append((item_id, f"cannot build input path: {e}"))
            continue
        items.append(Item(item_id, split, labels, inputs, {k: str(row[k]) for k in ix.keep}, target))
    return IndexResult(items, rejected)
