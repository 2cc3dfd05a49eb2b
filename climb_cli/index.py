"""Turning a recipe's index section into items: id, split, labels, input paths, kept columns.

Tables (csv, tsv, .gz, json, jsonl, xlsx, parquet, headerless text, and a pickle of numpy arrays,
dicts and lists, read without running code by climb_cli/safe_pickle.py) are read as strings, joined,
filtered and excluded as the recipe says, or items are enumerated from files with a glob and a regex
whose named groups become columns. A `<name>.py` hook beside the recipe may then rewrite the table
(climb_cli/hooks.py). Every table row
has a `_row` column: its 0-based row number in the index table. Rows can be aggregated into one
item per group. Labels can be a value, the keys of a {code: likelihood} literal (PTB-XL's
scp_codes), a separated list, a Python list literal, flag columns, rules over several columns or
numeric bins, translated through a mapping table or an inline map; splits come from
climb_cli/splits.py. Items that cannot be labelled or split are reported with the reason; items a
recipe drops on purpose are counted by reason. Nothing is silently lost.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import string
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import pandas as pd

from climb_cli.errors import RecipeError
from climb_cli.recipe import FilesSpec, IndexSpec, LabelSpec, Recipe, TableRef
from climb_cli.settings import Settings


@dataclass(frozen=True)
class Item:
    id: str
    split: str
    labels: tuple[str, ...]
    inputs: dict[str, str | tuple[str, ...]]  # input name -> path(s) relative to raw/<dataset>/
    extra: dict[str, str] = field(default_factory=dict)
    target: float | None = None  # regression target


@dataclass
class IndexResult:
    items: list[Item]
    rejected: list[tuple[str, str]]  # (id, reason): items the index could not build
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> items the recipe drops on purpose
    classes: list[str] = field(default_factory=list)  # the classes in output order (discovered ones too)


def _source_root(recipe: Recipe, settings: Settings, source_id: str | None) -> tuple[Path, str]:
    spec = recipe.source(source_id)
    root = settings.raw_dir(recipe.name)
    return (root / spec.into if spec.into else root), (spec.into + "/" if spec.into else "")


def check_inside(recipe: Recipe, settings: Settings, path: Path) -> Path:
    """Refuse a path that resolves (through symlinks) outside the dataset's raw folder."""
    root = settings.raw_dir(recipe.name).resolve()
    real = path.resolve()
    if real != root and root not in real.parents:
        raise RecipeError(
            f"{recipe.name}: {path} resolves to {real}, outside the dataset's raw folder {root}; "
            "remove the symlink or fix the recipe's path"
        )
    return path


def _format(ref: TableRef, name: str) -> str:
    if ref.format:
        return ref.format
    name = name.removesuffix(".gz").removesuffix(".bz2").removesuffix(".zst")
    for ext, fmt in (
        (".tsv", "tsv"),
        (".tab", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
        (".json", "json"),
        (".xlsx", "xlsx"),
        (".parquet", "parquet"),
        (".mat", "mat"),
    ):
        if name.endswith(ext):
            return fmt
    return "csv"


def _cell(v: object) -> str:
    """A JSON value as the index's string: text as is, null as '', true/false, numbers and nested
    values as their JSON text."""
    if v is None:
        return ""
    return v if isinstance(v, str) else json.dumps(v)


def _records(data: list, where: str) -> pd.DataFrame:
    """JSON records (nested objects flattened with '.') as a table of strings, without type guessing."""
    rows = []
    for k, rec in enumerate(data):
        if not isinstance(rec, dict):
            raise ValueError(f"{where}: record {k} is a {type(rec).__name__}, not an object")
        flat: dict[str, str] = {}
        stack = [("", rec)]
        while stack:
            prefix, obj = stack.pop()
            for key, v in obj.items():
                if isinstance(v, dict):
                    stack.append((f"{prefix}{key}.", v))
                else:
                    flat[f"{prefix}{key}"] = _cell(v)
        rows.append(flat)
    cols = list(dict.fromkeys(c for r in rows for c in r))
    return pd.DataFrame([[r.get(c, "") for c in cols] for r in rows], columns=cols, dtype=str)


def _strings(df: pd.DataFrame) -> pd.DataFrame:
    """Every cell a string; missing values are ''. Floats that are integers keep their text form."""
    out = df.astype(object).where(df.notna(), "")
    return out.map(
        lambda v: v if isinstance(v, str) else json.dumps(v) if isinstance(v, list | dict) else str(v)
    )


def read_table(recipe: Recipe, settings: Settings, ref: TableRef) -> pd.DataFrame:
    root, _ = _source_root(recipe, settings, ref.source)
    path = root / ref.path
    if not path.is_file():
        raise RecipeError(f"{recipe.name}: index table {path} is missing; run `climb download {recipe.name}`")
    check_inside(recipe, settings, path)
    fmt = _format(ref, path.name)
    try:
        if fmt in ("csv", "tsv", "lines"):
            sep = ref.sep or ("\t" if fmt == "tsv" else ",")
            if fmt == "lines":
                with open(path, "rb") as fh:
                    head = fh.read(2)
                import gzip

                opener = gzip.open if head == b"\x1f\x8b" else open
                with opener(path, "rt", encoding="utf-8") as fh:
                    values = [ln.rstrip("\r\n") for ln in fh]
                values = [v for v in values if v.strip() != ""]
                cols = ref.columns or ["value"]
                df = pd.DataFrame(
                    [v.split(ref.sep) if ref.sep else [v] for v in values], columns=cols, dtype=str
                )
            else:
                df = pd.read_csv(
                    path,
                    sep=sep,
                    dtype=str,
                    keep_default_na=False,
                    na_values=[],
                    compression="infer",
                    header=0 if ref.header else None,
                    names=ref.columns,
                    skiprows=ref.skip_rows,
                )
                if not ref.header and ref.columns is None:
                    df.columns = [str(c) for c in df.columns]
        elif fmt == "jsonl":
            lines = _read_bytes(path).decode("utf-8").splitlines()
            df = _records([json.loads(ln) for ln in lines if ln.strip()], str(path))
        elif fmt == "json":
            data = json.loads(_read_bytes(path))
            if ref.records:
                for k in ref.records.split("."):
                    data = data[k]
            if not isinstance(data, list):
                raise ValueError("expected a list of records (set `records:` to the key holding it)")
            df = _records(data, str(path))
        elif fmt == "xlsx":
            df = _strings(pd.read_excel(path, sheet_name=ref.sheet, dtype=object, engine="openpyxl"))
        elif fmt == "parquet":
            df = _strings(pd.read_parquet(path))
        elif fmt == "mat":
            df = _vectors_table(_load_mat(path), ref.variables, str(path))
        else:  # pickle: read by a restricted unpickler (numpy arrays and containers only)
            df = _read_pickle(recipe, path, ref)
    except ImportError as e:
        raise RecipeError(f"{recipe.name}: reading {path} needs {e.name} (pip install {e.name})") from None
    except (ValueError, OSError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise RecipeError(f"{recipe.name}: cannot read table {path} as {fmt}: {e}") from None
    df.columns = [str(c) for c in df.columns]  # a recipe names columns as text, also a header cell 2019
    if ref.index_column and (str(df.columns[0]).startswith("Unnamed: 0") or df.columns[0] == ""):
        df = df.rename(columns={df.columns[0]: ref.index_column})
    for col, value in ref.with_columns.items():
        df[col] = value
    for col, template in ref.derive.items():
        try:
            df[col] = [template.format(**r) for r in _records_of(df)] if len(df) else []
        except (KeyError, ValueError, IndexError) as e:
            raise RecipeError(
                f"{recipe.name}: {ref.path}: derive {col}: {template!r} fails ({e!r})"
            ) from None
    return df


def _records_of(df: pd.DataFrame) -> list[dict[str, str]]:
    """The rows of a table from read_table (text labels, text cells) as dicts."""
    return cast("list[dict[str, str]]", df.to_dict("records"))


def _read_bytes(path: Path) -> bytes:
    import gzip

    data = path.read_bytes()
    return gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data


def _read_pickle(recipe: Recipe, path: Path, ref: TableRef) -> pd.DataFrame:
    from climb_cli import safe_pickle

    data = path.read_bytes()
    if ref.sha256 is not None and (got := hashlib.sha256(data).hexdigest()) != ref.sha256:
        raise RecipeError(f"{recipe.name}: {path} has sha256 {got}, the recipe pins {ref.sha256}")
    try:
        obj = safe_pickle.loads(data)  # numpy arrays and plain containers only: runs no code
    except safe_pickle.UnsafePickle as exc:
        raise RecipeError(f"{recipe.name}: {path}: {exc}; climb will not open it") from None
    if isinstance(obj, dict) and (ref.variables is not None or _has_arrays(obj)):
        return _vectors_table(obj, ref.variables, str(path))
    if isinstance(obj, dict):
        return _strings(pd.DataFrame(obj))
    if isinstance(obj, list):
        return _strings(pd.DataFrame(obj))
    raise ValueError(f"the pickle holds a {type(obj).__name__}, not a table (a hook can read it)")


def _has_arrays(obj: object) -> bool:
    import numpy as np

    return isinstance(obj, dict) and any(isinstance(v, np.ndarray) and v.ndim > 1 for v in obj.values())


def _load_mat(path: Path) -> dict:
    """A MATLAB file's variables (v5 with scipy; v7.3 is HDF5 and not read here)."""
    import scipy.io

    return {k: v for k, v in scipy.io.loadmat(path).items() if not k.startswith("__")}


def _vectors_table(obj: dict, variables: list[str] | None, where: str) -> pd.DataFrame:
    """Per-subject vectors of a dict of arrays (PPMI.mat `label`, ABIDE.npy `label`, `site`) as columns;
    matrices stay in the file for a step (graph.read_matrix) to read by row number."""
    import numpy as np

    cols: dict[str, list[str]] = {}
    names = variables if variables is not None else sorted(obj)
    for name in names:
        if name not in obj:
            raise ValueError(f"{where} has no variable {name!r} (has: {', '.join(sorted(map(str, obj)))})")
        arr = np.asarray(obj[name])
        if arr.ndim == 2 and 1 in arr.shape:
            arr = arr.reshape(-1)
        if arr.ndim != 1:
            if variables is not None:
                raise ValueError(
                    f"{where}: variable {name!r} has shape {arr.shape}, not one value per subject"
                )
            continue
        cols[name] = [v if isinstance(v, str) else str(v.item() if hasattr(v, "item") else v) for v in arr]
    lengths = {len(v) for v in cols.values()}
    if len(lengths) > 1:
        raise ValueError(f"{where}: variables differ in length ({lengths})")
    return pd.DataFrame(cols, dtype=str)


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


class Drop(Exception):
    """The recipe drops this item on purpose (counted by reason, not an error)."""


class _Labeler:
    def __init__(self, recipe: Recipe, settings: Settings, spec: LabelSpec, classes: list[str]) -> None:
        self.spec = spec
        self.classes = classes
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

    def raw(self, row: dict[str, str]) -> dict[str, str]:
        s = self.spec
        cols = (
            s.columns
            or ([s.column] if s.column else [])
            or sorted({c for r in s.rules or [] for c in r.when})
        )
        return {c: row.get(c, "") for c in cols}

    def codes(self, row: dict[str, str]) -> list[str]:
        """The raw label codes of a row, before the class list is applied."""
        s = self.spec
        if s.columns is not None:
            positive = set(s.positive)
            if s.uncertain is not None:
                hit = [c for c in s.columns if row.get(c, "") in s.uncertain.values]
                if hit and s.uncertain.count_as == "drop":
                    raise Drop("uncertain label")
                if s.uncertain.count_as == "positive":
                    positive |= set(s.uncertain.values)
            return [c for c in s.columns if row.get(c, "") in positive]
        if s.rules is not None:
            hits = [r.label for r in s.rules if r.matches(row)]
            return hits[:1] if s.kind == "multiclass" else hits  # multiclass: the first rule that matches
        raw = row[s.column or ""]
        if s.bins is not None:
            if raw.strip() == "":
                return []
            try:
                x = float(raw)
            except ValueError:
                raise ValueError(f"{s.column} is not a number: {raw[:60]!r}") from None
            for i in range(len(s.bins) - 1):
                if s.bins[i] <= x < s.bins[i + 1]:
                    return [self.classes[i]]
            raise Drop(f"{s.column} outside the bins")
        if s.parse == "dict_keys":
            try:
                parsed = ast.literal_eval(raw) if raw.strip() else {}
            except (ValueError, SyntaxError):
                raise ValueError(f"{s.column} is not a {{code: value}} literal: {raw[:60]!r}") from None
            if not isinstance(parsed, dict):
                raise ValueError(f"{s.column} is not a {{code: value}} literal: {raw[:60]!r}")
            return [str(k) for k, v in parsed.items() if s.min_value is None or float(v) >= s.min_value]
        if s.parse == "literal_list":
            try:
                parsed = ast.literal_eval(raw) if raw.strip() else []
            except (ValueError, SyntaxError):
                raise ValueError(f"{s.column} is not a list literal: {raw[:60]!r}") from None
            if not isinstance(parsed, list | tuple):
                raise ValueError(f"{s.column} is not a list literal: {raw[:60]!r}")
            return [str(v) for v in parsed]
        if s.parse == "list":
            return [c.strip() for c in raw.split(s.sep) if c.strip()]
        return [raw] if raw != "" else []

    def translate(self, codes: list[str]) -> list[str]:
        s = self.spec
        if self.mapping is not None:
            codes = [m for c in codes for m in self.mapping.get(c, [])]
        if s.values:
            out = []
            for c in codes:
                if c in s.values:
                    mapped = s.values[c]
                    if mapped is None:
                        raise Drop(f"label {c!r} is dropped by the recipe")
                    if mapped != "":  # "": this label is removed, the item stays (QUILT's Unknown)
                        out.append(mapped)
                else:
                    out.append(c)
            codes = out
        return codes

    def __call__(self, row: dict[str, str]) -> tuple[str, ...]:
        s = self.spec
        if s.kind in ("none", "regression") or s.from_rows:
            return ()
        codes = self.translate(self.codes(row))
        unknown = sorted({c for c in codes if c not in self.classes})
        if unknown and s.others == "error":
            raise ValueError(f"label(s) {', '.join(unknown)} not in the recipe's classes")
        if unknown and s.others == "drop":
            raise Drop("label not in the recipe's classes")
        present = set(codes)
        labels = tuple(c for c in self.classes if c in present)
        if s.kind == "multiclass" and len(labels) > 1:
            raise ValueError(f"multiclass item has several labels: {', '.join(labels)}")
        return labels


def _discover(recipe: Recipe, settings: Settings, labeler: _Labeler, rows: list[dict[str, str]]) -> list[str]:
    """Discovered classes: read from the raw folder's lock (`.climb/classes.json`) when it was written
    for the same label spec, else computed once (sorted distinct labels) and written there."""
    from climb_cli import atomic

    assert recipe.index is not None
    spec = hashlib.sha256(recipe.index.labels.model_dump_json().encode()).hexdigest()[:16]
    lock = settings.raw_dir(recipe.name) / ".climb" / "classes.json"
    if lock.is_file():
        try:
            saved = json.loads(lock.read_text())
            if saved.get("labels_spec") == spec:
                return list(saved["classes"])
        except (ValueError, KeyError, OSError, AttributeError) as e:
            raise RecipeError(
                f"{recipe.name}: {lock} is damaged ({e}); delete it to discover again"
            ) from None
    vocab: set[str] = set()
    for row in rows:
        try:
            vocab.update(labeler.translate(labeler.codes(row)))
        except (ValueError, Drop, KeyError):
            continue
    classes = sorted(vocab)
    try:
        atomic.write_json(lock, {"dataset": recipe.name, "labels_spec": spec, "classes": classes}, indent=2)
    except OSError as e:
        raise RecipeError(
            f"{recipe.name}: cannot write the discovered classes to {lock} ({e.strerror}); "
            "a read-only raw folder needs them written once by someone who may write there"
        ) from None
    return classes


def _aggregate(
    rows: list[dict[str, str]], labels: list[tuple[str, ...]], by: list[str], how: str, classes: list[str]
) -> tuple[list[dict[str, str]], list[tuple[str, ...]], list[list[dict[str, str]]]]:
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(tuple(r[c] for c in by), []).append(i)
    out_rows, out_labels, members = [], [], []
    for idx in groups.values():
        out_rows.append(rows[idx[0]])
        members.append([rows[i] for i in idx])
        labs = [labels[i] for i in idx]
        if how == "first":
            out_labels.append(labs[0])
        elif how == "max":
            pos = [classes.index(c) for lab in labs for c in lab]
            out_labels.append((classes[max(pos)],) if pos else ())
        else:
            present = {c for lab in labs for c in lab}
            out_labels.append(tuple(c for c in classes if c in present))
    return out_rows, out_labels, members


def load_table(recipe: Recipe, settings: Settings, where: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """The index table after join, filter, exclude and the hook; with `_row` (0-based) and
    `_excluded` counts in df.attrs."""
    ix = recipe.index
    if ix is None:
        raise RecipeError(f"{recipe.name}: the recipe has no index section, so it cannot be preprocessed")
    if ix.table is None:
        df = _files_table(recipe, settings, ix.files)  # type: ignore[arg-type]
    else:
        parts = [
            read_table(recipe, settings, t) for t in (ix.table if isinstance(ix.table, list) else [ix.table])
        ]
        df = pd.concat(parts, ignore_index=True).fillna("") if len(parts) > 1 else parts[0]
    df.insert(0, "_row", [str(i) for i in range(len(df))])
    for j in ix.join:
        other = read_table(recipe, settings, j.table)
        right = j.right_on or j.on
        missing = [c for c in j.on if c not in df.columns]
        missing += [c for c in right if c not in other.columns and c not in missing]
        if missing or len(right) != len(j.on):
            raise RecipeError(f"{recipe.name}: cannot join {j.table.path} on missing column(s) {missing}")
        if j.right_on:
            other = other.rename(columns=dict(zip(j.right_on, j.on, strict=True)))
        df = df.merge(other, on=j.on, how=j.how, suffixes=("", f"__{Path(j.table.path).stem}"))
        df = df.fillna("")
    for col, values in ix.filter.items():
        if col not in df.columns:
            raise RecipeError(f"{recipe.name}: index.filter names a missing column {col!r}")
        df = df[df[col].isin(values)]
    for col, values in (where or {}).items():  # a subset build (`--where`): not part of the recipe
        if col not in df.columns:
            raise RecipeError(f"{recipe.name}: --where names a missing column {col!r}")
        df = df[df[col].isin(values)]
    excluded: dict[str, int] = {}
    for col, values in ix.exclude.items():
        if col not in df.columns:
            raise RecipeError(f"{recipe.name}: index.exclude names a missing column {col!r}")
        hit = df[col].isin(values)
        if hit.any():
            excluded[f"excluded by {col}"] = int(hit.sum())
        df = df[~hit]
    if recipe.hook_source is not None and recipe.path is not None:
        from climb_cli.hooks import HookContext, run_rows_hook

        ctx = HookContext(
            recipe.name,
            settings.raw_dir(recipe.name),
            lambda path, **kw: read_table(recipe, settings, TableRef(path=path, **kw)),
        )
        df = run_rows_hook(recipe.hook_source, recipe.path.with_suffix(".py"), df, ctx)
        if "_row" not in df.columns:
            df.insert(0, "_row", [str(i) for i in range(len(df))])
    df.attrs["excluded"] = excluded
    return df


def build_index(recipe: Recipe, settings: Settings, where: dict[str, list[str]] | None = None) -> IndexResult:
    """The items of a recipe; `where` keeps only rows whose column has one of the values (a subset).
    The flow: load the table, check its columns, label each row, aggregate rows into items, check the
    ids, assign splits (and the few-shot subset), then build each item's inputs and kept columns."""
    ix = recipe.index
    assert ix is not None
    df = load_table(recipe, settings, where)
    dropped: Counter[str] = Counter(df.attrs.get("excluded", {}))
    _check_columns(recipe, df, _needed_columns(ix))
    rows = _records_of(df)
    classes = list(ix.labels.classes or ix.labels.columns or [])
    labeler = _Labeler(recipe, settings, ix.labels, classes)
    if ix.labels.discover:
        classes[:] = _discover(recipe, settings, labeler, rows)
    rejected: list[tuple[str, str]] = []
    kept_rows, kept_labels = _label_rows(ix, labeler, rows, dropped, rejected)
    members: list[list[dict[str, str]]] = [[r] for r in kept_rows]
    if ix.aggregate:
        kept_rows, kept_labels, members = _aggregate(
            kept_rows, kept_labels, ix.aggregate.by, ix.aggregate.labels, classes
        )
    ids = [_ident(ix, r) for r in kept_rows]
    _check_unique(recipe, ids)
    splits = _assign_splits(recipe, settings, ids, kept_rows, kept_labels, dropped)
    _, prefix = _source_root(recipe, settings, ix.inputs_source)
    items: list[Item] = []
    for item_id, row, labels, split, group in zip(ids, kept_rows, kept_labels, splits, members, strict=True):
        if split == "":  # left out of the few-shot subset (already counted)
            continue
        try:
            items.append(_build_item(ix, labeler, prefix, item_id, row, labels, split, group))
        except Drop as e:
            dropped[str(e)] += 1
        except _Rejected as e:
            rejected.append((item_id, str(e)))
    return IndexResult(items, rejected, dict(sorted(dropped.items())), classes)


class _Rejected(Exception):
    """The index cannot build this item (reported with its id, unlike a Drop)."""


def _needed_columns(ix: IndexSpec) -> set[str]:
    """Every table column the index spec reads: id, inputs, kept columns, split, aggregation, labels."""
    needed = set(ix.keep)
    needed |= _fields(ix.id) if "{" in ix.id else {ix.id}
    for t in ix.inputs.values():
        needed |= _fields(t)
    sp = ix.split
    needed |= {c for c in [sp.column, sp.random and sp.random.group] if c}
    if sp.random and sp.random.stratify and sp.random.stratify != "labels":
        needed.add(sp.random.stratify)
    needed |= set(sp.ordered.by if sp.ordered else [])
    if sp.ordered and sp.ordered.stratify and sp.ordered.stratify != "labels":
        needed.add(sp.ordered.stratify)
    if sp.ordered and sp.ordered.group:
        needed.add(sp.ordered.group)
    if sp.membership:
        needed.add(sp.membership.by)
    needed |= set(ix.aggregate.by if ix.aggregate else [])
    if ix.labels.column:
        needed.add(ix.labels.column)
    needed |= set(ix.labels.columns or [])
    needed |= {c for r in ix.labels.rules or [] for c in r.when}
    return needed


def _check_columns(recipe: Recipe, df: pd.DataFrame, needed: set[str]) -> None:
    absent = sorted(c for c in needed if c not in df.columns)
    if absent:
        raise RecipeError(
            f"{recipe.name}: the index table has no column(s) {absent} "
            f"(columns: {', '.join(map(str, df.columns[:12]))}...)"
        )


def _ident(ix: IndexSpec, row: dict[str, str]) -> str:
    return ix.id.format(**row) if "{" in ix.id else row[ix.id]


def _label_rows(
    ix: IndexSpec,
    labeler: _Labeler,
    rows: list[dict[str, str]],
    dropped: Counter[str],
    rejected: list[tuple[str, str]],
) -> tuple[list[dict[str, str]], list[tuple[str, ...]]]:
    """Labels per row (before aggregation); rows the labeler drops or rejects are counted or reported."""
    kept_rows, kept_labels = [], []
    for row in rows:
        try:
            labels = labeler(row)
        except Drop as e:
            dropped[str(e)] += 1
            continue
        except ValueError as e:
            rejected.append((_ident(ix, row), str(e)))
            continue
        kept_rows.append(row)
        kept_labels.append(labels)
    return kept_rows, kept_labels


def _check_unique(recipe: Recipe, ids: list[str]) -> None:
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise RecipeError(f"{recipe.name}: id {item_id!r} occurs twice in the index (ids must be unique)")
        seen.add(item_id)


def _assign_splits(
    recipe: Recipe,
    settings: Settings,
    ids: list[str],
    rows: list[dict[str, str]],
    labels: list[tuple[str, ...]],
    dropped: Counter[str],
) -> list[str | None]:
    """Each item's split: a name, None when its split value is not mapped, "" when the few-shot
    subset leaves it out (counted in `dropped` here)."""
    from climb_cli.splits import Assigner, few_shot

    assert recipe.index is not None
    sp = recipe.index.split
    splits = Assigner(sp, lambda ref: read_table(recipe, settings, ref))(ids, rows, labels)
    if sp.few_shot and recipe.variant:
        keep = few_shot(sp.few_shot, recipe.variant, [s or "" for s in splits], labels)
        for k, ok in enumerate(keep):
            if not ok:
                dropped[f"not in the {recipe.variant} few-shot subset"] += 1
                splits[k] = None if splits[k] is None else ""
    return splits


def _build_item(
    ix: IndexSpec,
    labeler: _Labeler,
    prefix: str,
    item_id: str,
    row: dict[str, str],
    labels: tuple[str, ...],
    split: str | None,
    group: list[dict[str, str]],
) -> Item:
    """One item from its (aggregated) row and member rows. Raises Drop for an item the recipe leaves
    out on purpose, _Rejected for one it cannot build."""
    sp = ix.split
    if split is None:
        value = (
            row.get(sp.column or "", "")
            if sp.column
            else row.get(sp.membership.by, "")
            if sp.membership
            else ""
        )
        if sp.unmapped == "error":
            raise _Rejected(f"split value {value!r} is not mapped")
        raise Drop("split value not mapped")
    if not labels and ix.labels.kind in ("multilabel", "multiclass") and ix.labels.empty == "drop":
        raise Drop("no label")
    target = None
    if ix.labels.kind == "regression":
        try:
            target = float(row[ix.labels.column or ""])
        except ValueError:
            raise _Rejected(f"target {row[ix.labels.column or '']!r} is not a number") from None
    try:
        inputs: dict[str, str | tuple[str, ...]] = {}
        for name, t in ix.inputs.items():
            paths = tuple(dict.fromkeys(prefix + t.format(**r) for r in group))
            inputs[name] = paths[0] if len(paths) == 1 else paths
    except (ValueError, KeyError, IndexError) as e:
        raise _Rejected(f"cannot build input path: {e}") from None
    extra = {}
    for k in ix.keep:
        vals = list(dict.fromkeys(str(r[k]) for r in group))
        extra[k] = vals[0] if len(vals) == 1 else json.dumps(vals)
    if ix.labels.raw_column:
        raw = [labeler.raw(r) for r in group]
        extra[ix.labels.raw_column] = json.dumps(raw[0] if len(raw) == 1 else raw, sort_keys=True)
    return Item(item_id, split, labels, inputs, extra, target)
