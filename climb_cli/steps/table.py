"""Table and text steps: CSV / TSV / GEO SOFT / JSON / JSONL rows, columns or matrices, and text, as columns.

`table.read` parses a file into a table of strings and then takes, for the item:
- mode `row`: the row whose `key_column` equals the item's key -> one output column per table column
  (typed from the whole table, so every row gets the same schema: int, float with NaN for blanks, or
  string with "" for blanks). Clinical tables, per-patient JSON records.
- mode `column`: the column named by the item's key -> a float32 vector `values` (one value per table row)
  with the row identifiers in meta `feature_ids`. A GEO GDS is a genes x samples table: one item per
  sample (GSM), giving that sample's expression vector; `feature_ids: hash` stores only a sha256 of the
  gene list (`feature_ids_sha256`) when every row shares it, instead of repeating 20,000+ IDs per row.
- mode `matrix`: every numeric value column -> a float32 (rows, columns) matrix `values` with
  `feature_ids` and `column_names`: one item per file (an Expression Atlas `-tpms.tsv`, a GDS as a whole).
The item's key is its id, or the part a `key_pattern` regex extracts from it (`GDS507_GSM11815` with
`_(GSM\\d+)$` -> `GSM11815`).

GEO SOFT (`.soft` / `.soft.gz`): the `!dataset_table_begin` ... `!dataset_table_end` block (also
`!series_matrix_table_*`) becomes the table (`null` = missing) and the `^SUBSET` records give each sample
its annotations: meta `subset_types` / `subset_values`, and `geo_label` / `geo_label_type` chosen the way
CLIMB's geo.py does (climb-datasets.md section 1.9): cell type > strain > disease state >
genotype/variation > tissue (with development stage: "tissue (stage)") > agent (with time: CLIMB's
control / sham / early / intermediate / late / other response categories).

`text.read` gives a `text` string column from a text file (a report) or from one column of a table row
(GENIA's `;`-separated `Sentence`).

Parsed files are cached per process (at most `CACHE_FILES`), so a table shared by many items is parsed
once per worker, not once per item.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator

from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps.base import Sample, StepParams, id_part, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import pandas as pd
else:
    pd = lazy("pandas")

Format = Literal["auto", "csv", "tsv", "soft", "json", "jsonl"]

#: column names the Parquet writer reserves; a table column with one of these names needs a `prefix`.
RESERVED = {"id", "split", "labels", "target", "source_files", "source_sha256", "recipe_hash"}

#: CLIMB's order of GDS subset types for the classification label (geo.py get_classification_info).
GEO_LABEL_PRIORITY = ("cell type", "strain", "disease state", "genotype/variation", "tissue", "agent")

CACHE_FILES = 2
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_lock = threading.Lock()


def _cached(path: Path, what: tuple[Any, ...], load: Callable[[], Any]) -> Any:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, *what)
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = load()
    with _lock:
        _cache[key] = value
        while len(_cache) > CACHE_FILES:
            _cache.popitem(last=False)
    return value


# --------------------------------------------------------------------------------------------- parsing


@dataclass
class Parsed:
    """A parsed table (all cells as strings) plus what a format adds (SOFT subsets, dataset fields)."""

    df: pd.DataFrame
    subsets: list[dict[str, Any]] = field(default_factory=list)  # {"type", "description", "samples"}
    header: dict[str, str] = field(default_factory=dict)
    kinds: dict[str, str] = field(default_factory=dict)  # column -> int / float / str (filled lazily)
    rows_by: dict[str, dict[str, int]] = field(default_factory=dict)  # key column -> key -> row


def _detect(path: Path, fmt: Format) -> str:
    if fmt != "auto":
        return fmt
    name = path.name.lower().removesuffix(".gz")
    for ext, kind in (
        (".soft", "soft"),
        (".tsv", "tsv"),
        (".tab", "tsv"),
        (".jsonl", "jsonl"),
        (".ndjson", "jsonl"),
    ):
        if name.endswith(ext):
            return kind
    if name.endswith(".json"):
        return "json"
    if name.endswith((".csv", ".txt")):
        return "csv" if name.endswith(".csv") else "tsv"
    raise ItemError(f"{path.name}: cannot tell the table format from the name; set format")


def _text(path: Path, encoding: str = "utf-8") -> str:
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    return raw.decode(encoding if encoding.lower() not in ("utf-8", "utf8") else "utf-8-sig")


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, dict | list):
        return json.dumps(v, ensure_ascii=False, sort_keys=True)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _records_frame(records: list[Any], path: Path) -> pd.DataFrame:
    if not all(isinstance(r, dict) for r in records):
        raise ItemError(f"{path.name}: expected JSON objects (records), got {type(records[0]).__name__}")
    columns = list(dict.fromkeys(k for r in records for k in r))
    return pd.DataFrame([[_cell(r.get(c)) for c in columns] for r in records], columns=columns, dtype=str)


def _parse_json(text: str, path: Path) -> pd.DataFrame:
    data = json.loads(text)
    if isinstance(data, list):
        return _records_frame(data, path) if data else pd.DataFrame()
    if isinstance(data, dict):
        values = list(data.values())
        if values and all(isinstance(v, list) for v in values) and len({len(v) for v in values}) == 1:
            return pd.DataFrame({k: [_cell(x) for x in v] for k, v in data.items()}, dtype=str)  # columns
        return _records_frame([data], path)  # one record
    raise ItemError(f"{path.name}: JSON holds a {type(data).__name__}, not records")


def _parse_soft(text: str, path: Path) -> Parsed:
    lines = text.splitlines()
    subsets: list[dict[str, Any]] = []
    header: dict[str, str] = {}
    current: dict[str, Any] | None = None
    start = end = -1
    for i, line in enumerate(lines):
        if line.startswith("^"):
            current = {"type": "", "description": "", "samples": []} if line.startswith("^SUBSET") else None
            if current is not None:
                subsets.append(current)
            continue
        if re.match(r"!\w*table_begin", line):
            start = i + 1
            end = next((j for j in range(start, len(lines)) if re.match(r"!\w*table_end", lines[j])), -1)
            if end < 0:
                raise ItemError(f"{path.name}: {line.strip()} without its table_end line (truncated file?)")
            break
        if not line.startswith("!") or "=" not in line:
            continue
        key, value = (s.strip() for s in line[1:].split("=", 1))
        if current is not None:
            if key == "subset_type":
                current["type"] = value
            elif key == "subset_description":
                current["description"] = value
            elif key == "subset_sample_id":
                current["samples"] = [s.strip() for s in value.split(",") if s.strip()]
        elif key.startswith(("dataset_", "Series_", "series_")):
            header.setdefault(key, value)
    if start < 0:
        raise ItemError(f"{path.name}: no !dataset_table_begin block (not a GDS SOFT or series matrix file?)")
    body = "\n".join(line for line in lines[start:end] if line and not line.startswith("#"))
    df = pd.read_csv(io.StringIO(body), sep="\t", dtype=str, keep_default_na=False, quoting=0)
    df.columns = [str(c).strip().strip('"') for c in df.columns]
    return Parsed(df=df.map(lambda v: v.strip('"')), subsets=subsets, header=header)


def load_table(path: Path, fmt: Format = "auto", sep: str | None = None) -> Parsed:
    """Parse `path` (cached per process): a table of strings, blanks as ''."""
    kind = _detect(path, fmt)

    def load() -> Parsed:
        try:
            text = _text(path)
            if kind == "soft":
                return _parse_soft(text, path)
            if kind == "json":
                df = _parse_json(text, path)
            elif kind == "jsonl":
                records = [json.loads(line) for line in text.splitlines() if line.strip()]
                df = _records_frame(records, path) if records else pd.DataFrame()
            else:
                delim = sep if sep is not None else ("," if kind == "csv" else "\t")
                df = pd.read_csv(io.StringIO(text), sep=delim, dtype=str, keep_default_na=False, na_values=[])
        except ItemError:
            raise
        except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
            raise ItemError(f"{path.name}: cannot parse as {kind} ({_why(exc)})") from None
        df.columns = [str(c).strip() for c in df.columns]
        return Parsed(df=df)

    return _cached(path, ("table", kind, sep), load)


def _kind(parsed: Parsed, column: str) -> str:
    """int / float / str for a whole column, decided once per table."""
    if column not in parsed.kinds:
        values = parsed.df[column]
        filled = values[values.str.strip() != ""]
        nums = pd.to_numeric(filled, errors="coerce")
        if len(filled) == 0 or nums.isna().any():
            parsed.kinds[column] = "str" if len(filled) else "float"
        elif (nums == nums.round()).all() and len(filled) == len(values) and nums.abs().max() < 2**53:
            integral = filled.str.fullmatch(r"\s*[-+]?\d+\s*").all()
            parsed.kinds[column] = "int" if integral else "float"
        else:
            parsed.kinds[column] = "float"
    return parsed.kinds[column]


def _typed(value: str, kind: str) -> Any:
    if kind == "int":
        return int(value.strip())
    if kind == "float":
        v = value.strip()
        return float(v) if v and v.lower() not in ("null", "nan", "na") else float("nan")
    return value


def _numbers(values: pd.Series, what: str, missing: str, path: Path) -> np.ndarray:
    cleaned = values.str.strip().replace({"null": "", "NULL": "", "NA": "", "NaN": "", "nan": ""})
    nums = pd.to_numeric(cleaned.mask(cleaned == ""), errors="coerce")
    bad = nums.isna() & (cleaned != "")
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ItemError(
            f"{path.name}: {what} has non-numeric value {values.iloc[first]!r} at row {first + 1}"
        )
    out = nums.to_numpy(dtype=np.float64)
    if missing == "error" and np.isnan(out).any():
        raise ItemError(f"{path.name}: {what} has {int(np.isnan(out).sum())} missing value(s)")
    return out


def item_key(sample_id: str, pattern: str | None) -> str:
    """The item's key: its id, or the group `key` (else group 1, else the match) of `pattern` in it."""
    return id_part(sample_id, pattern, "key", "key_pattern")


def _row_index(parsed: Parsed, column: str, key: str, path: Path) -> int:
    if column not in parsed.df.columns:
        raise ItemError(
            f"{path.name}: no key column {column!r} (columns: {', '.join(parsed.df.columns[:10])})"
        )
    if column not in parsed.rows_by:
        index: dict[str, int] = {}
        duplicates: set[str] = set()
        for i, v in enumerate(parsed.df[column].tolist()):
            k = v.strip()
            if k in index:
                duplicates.add(k)
            index.setdefault(k, i)
        for k in duplicates:
            index[k] = -1
        parsed.rows_by[column] = index
    row = parsed.rows_by[column].get(key.strip())
    if row is None:
        raise ItemError(f"{path.name}: no row with {column} = {key!r}")
    if row < 0:
        raise ItemError(f"{path.name}: several rows have {column} = {key!r}")
    return row


def _check_regex(pattern: str | None) -> str | None:
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"not a valid regex: {exc}") from None
    return pattern


# ---------------------------------------------------------------------------------------------- GEO


def _geo_annotations(parsed: Parsed, sample_id: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for subset in parsed.subsets:
        if sample_id in subset["samples"] and subset["type"]:
            out.setdefault(subset["type"], subset["description"])
    return out


def _response(agent: str, time: str) -> str:
    if agent == "none":
        return "control response"
    if agent == "saline":
        return "sham exposure response"
    if agent == "EHC-93":
        t = time.lower()
        if any(x in t for x in ("2 to 6", "early")):
            return "early response"
        if any(x in t for x in ("15 to 21", "intermediate")):
            return "intermediate response"
        if any(x in t for x in ("23 to 40", "late")):
            return "late response"
    return "other response"


def geo_label(annotations: dict[str, str], present: set[str]) -> tuple[str, str]:
    """(label, label type) the way CLIMB's geo.py picks it; `present` = subset types of the whole dataset."""
    for kind in GEO_LABEL_PRIORITY:
        if kind not in present:
            continue
        value = annotations.get(kind, "")
        if kind == "strain":
            return value.strip(), "strain"
        if kind == "tissue" and "development stage" in present:
            tissue, stage = value.lower(), annotations.get("development stage", "").lower()
            for prefix in ("embryo", "fetal membrane", "fetus"):
                if prefix in tissue:
                    tissue = prefix
                    break
            return (f"{tissue} ({stage})" if value else ""), "tissue and development stage"
        if kind == "agent" and "time" in present:
            return (_response(value, annotations.get("time", "")) if value else ""), "response"
        return value, "genotype" if kind == "genotype/variation" else kind
    return "", ""


# ------------------------------------------------------------------------------------------ table.read


class ReadTableParams(StepParams):
    input: str = Field(
        "table", description="sample input holding the table file (.csv .tsv .soft .json .jsonl, .gz)"
    )
    format: Format = Field("auto", description="file format; auto decides from the extension")
    sep: str | None = Field(None, description="column separator for csv/tsv (GENIA: ';'); default by format")
    mode: Literal["row", "column", "matrix"] = Field(
        "row",
        description="row: the item's row -> one output column per table column; column: the item's column "
        "-> float32 vector `values` (GEO: one sample); matrix: all value columns -> float32 matrix",
    )
    key_column: str | None = Field(
        None,
        description="row mode: column holding the item key (default: the first column; a one-row file "
        "needs none)",
    )
    key_pattern: str | None = Field(
        None, description="regex on the item id giving its key (group 'key' or 1); default: the whole id"
    )
    columns: list[str] | None = Field(
        None, description="row mode: columns to output; matrix mode: value columns (default: all)"
    )
    prefix: str = Field("", description="row mode: prefix for the output column names (avoids clashes)")
    types: dict[str, Literal["int", "float", "str"]] = Field(
        default_factory=dict,
        description="row mode: pin column types (otherwise inferred from the whole table); needed when each "
        "item has its own file (per-patient JSON), so every row gets the same column types",
    )
    index_column: str | None = Field(
        None,
        description="column/matrix mode: row identifiers, e.g. genes (default: ID_REF or the first column)",
    )
    name_column: str | None = Field(
        None,
        description="column/matrix mode: row names kept as meta feature_names (SOFT default: IDENTIFIER)",
    )
    feature_ids: Literal["list", "hash", "none"] = Field(
        "list",
        description="column/matrix mode: list = meta feature_ids (one entry per row); hash = only its "
        "sha256 (feature_ids_sha256) when every item shares the list; none = neither",
    )
    array: str = Field("values", description="column/matrix mode: name of the output array")
    missing: Literal["nan", "error"] = Field(
        "nan", description="column/matrix mode: blank / null values become NaN, or fail the item"
    )

    @field_validator("key_pattern")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        return _check_regex(pattern)


@step("table.read", ReadTableParams)
def read_table(sample: Sample, p: ReadTableParams) -> Sample:
    """Read a CSV/TSV/SOFT/JSON/JSONL table: the item's row -> columns, or column(s) -> float32 array."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: table file not found")
    parsed = load_table(path, p.format, p.sep)
    if parsed.df.shape[1] == 0:
        raise ItemError(f"{path.name}: the table has no columns")
    if path not in sample.sources:
        sample.sources.append(path)
    if p.mode == "row":
        return _row_mode(sample, p, parsed, path)
    return _array_mode(sample, p, parsed, path)


def _row_mode(sample: Sample, p: ReadTableParams, parsed: Parsed, path: Path) -> Sample:
    df = parsed.df
    if p.key_column is None and len(df) == 1 and p.key_pattern is None:
        row, key_col = 0, None
    else:
        key_col = p.key_column or str(df.columns[0])
        row = _row_index(parsed, key_col, item_key(sample.id, p.key_pattern), path)
    wanted = p.columns if p.columns is not None else [c for c in df.columns if c != key_col]
    absent = [c for c in wanted if c not in df.columns]
    if absent:
        raise ItemError(f"{path.name}: no column(s) {absent}")
    for col in wanted:
        name = p.prefix + col
        if name in RESERVED:
            raise ItemError(
                f"{path.name}: column {col!r} clashes with a reserved output column; set a prefix"
            )
        value = str(df[col].iat[row])  # every cell of a loaded table is a str
        kind = p.types.get(col) or _kind(parsed, col)
        try:
            sample.meta[name] = _typed(value, kind)
        except ValueError:
            raise ItemError(f"{path.name}: column {col!r} value {value!r} is not {kind}") from None
    return sample


def _id_column(p: ReadTableParams, parsed: Parsed, path: Path) -> str:
    df = parsed.df
    col = p.index_column or ("ID_REF" if "ID_REF" in df.columns else str(df.columns[0]))
    if col not in df.columns:
        raise ItemError(f"{path.name}: no index column {col!r}")
    return col


def _features(sample: Sample, p: ReadTableParams, parsed: Parsed, id_col: str) -> None:
    ids = [v.strip() for v in parsed.df[id_col].tolist()]
    sample.meta["num_features"] = len(ids)
    if p.feature_ids == "list":
        sample.meta["feature_ids"] = ids
    elif p.feature_ids == "hash":
        sample.meta["feature_ids_sha256"] = hashlib.sha256("\n".join(ids).encode()).hexdigest()
    name_col = p.name_column or ("IDENTIFIER" if "IDENTIFIER" in parsed.df.columns else None)
    if name_col is not None and p.feature_ids == "list":
        if name_col not in parsed.df.columns:
            raise ItemError(f"no name column {name_col!r}")
        sample.meta["feature_names"] = [v.strip() for v in parsed.df[name_col].tolist()]


def _value_columns(p: ReadTableParams, parsed: Parsed, skip: set[str]) -> list[str]:
    if p.columns is not None:
        return list(p.columns)
    samples = {s for subset in parsed.subsets for s in subset["samples"]}
    if samples:  # SOFT: the sample columns; GDS "full" files add annotation columns after them
        return [c for c in parsed.df.columns if c in samples]
    return [c for c in parsed.df.columns if c not in skip and _kind(parsed, c) != "str"]


def _array_mode(sample: Sample, p: ReadTableParams, parsed: Parsed, path: Path) -> Sample:
    df = parsed.df
    id_col = _id_column(p, parsed, path)
    if p.mode == "column":
        key = item_key(sample.id, p.key_pattern)
        if key not in df.columns:
            raise ItemError(f"{path.name}: no column {key!r} for item {sample.id!r}")
        values = _numbers(df[key], f"column {key!r}", p.missing, path)
        sample.arrays[p.array] = values.astype(np.float32)
        sample.meta["column_name"] = key
        if parsed.subsets:
            ann = _geo_annotations(parsed, key)
            present = {s["type"] for s in parsed.subsets if s["type"]}
            label, label_type = geo_label(ann, present)
            sample.meta.update(
                subset_types=sorted(ann),
                subset_values=[ann[k] for k in sorted(ann)],
                geo_label=label,
                geo_label_type=label_type,
            )
    else:
        skip = {id_col, p.name_column or "IDENTIFIER"}
        cols = _value_columns(p, parsed, skip)
        absent = [c for c in cols if c not in df.columns]
        if absent or not cols:
            raise ItemError(f"{path.name}: value column(s) {absent or 'none'} not found")
        matrix = np.stack([_numbers(df[c], f"column {c!r}", p.missing, path) for c in cols], axis=1)
        sample.arrays[p.array] = matrix.astype(np.float32)
        sample.meta["column_names"] = cols
    for k, v in parsed.header.items():
        if k in ("dataset_title", "dataset_value_type", "dataset_platform", "dataset_id"):
            sample.meta[k] = v
    _features(sample, p, parsed, id_col)
    return sample


# ------------------------------------------------------------------------------------------- text.read


class ReadTextParams(StepParams):
    input: str = Field("text", description="sample input holding the text file, or the table (with column)")
    column: str | None = Field(
        None, description="take the text from this column of the item's row in a table (GENIA: Sentence)"
    )
    format: Format = Field(
        "auto", description="table format when column is set; auto decides from the extension"
    )
    sep: str | None = Field(None, description="table column separator (GENIA: ';')")
    key_column: str | None = Field(None, description="table column holding the item key (default: the first)")
    key_pattern: str | None = Field(
        None, description="regex on the item id giving its key (group 'key' or 1); default: the whole id"
    )
    encoding: str = Field("utf-8", description="text file encoding (a BOM is skipped; .gz is decompressed)")
    errors: Literal["strict", "replace"] = Field(
        "strict", description="undecodable bytes: fail the item, or replace them with U+FFFD"
    )
    strip: bool = Field(True, description="trim surrounding whitespace")
    max_chars: int | None = Field(
        None, gt=0, description="cut the text to this many characters (meta text_truncated)"
    )
    name: str = Field("text", description="name of the output column")

    @field_validator("key_pattern")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        return _check_regex(pattern)


@step("text.read", ReadTextParams)
def read_text(sample: Sample, p: ReadTextParams) -> Sample:
    """Read a text file, or one column of the item's table row, into a string column `text`."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: text file not found")
    if p.column is None:
        try:
            raw = path.read_bytes()
            if raw[:2] == b"\x1f\x8b":
                raw = gzip.decompress(raw)
            enc = "utf-8-sig" if p.encoding.lower() in ("utf-8", "utf8") else p.encoding
            text = raw.decode(enc, errors=p.errors)
        except UnicodeDecodeError as exc:
            raise ItemError(
                f"{path.name}: not {p.encoding} text ({_why(exc)}); set errors: replace"
            ) from None
        except (OSError, LookupError, EOFError, gzip.BadGzipFile) as exc:
            raise ItemError(f"{path.name}: unreadable text ({_why(exc)})") from None
    else:
        parsed = load_table(path, p.format, p.sep)
        if p.column not in parsed.df.columns:
            raise ItemError(f"{path.name}: no column {p.column!r}")
        if p.key_column is None and len(parsed.df) == 1 and p.key_pattern is None:
            row = 0
        else:
            key_col = p.key_column or str(parsed.df.columns[0])
            row = _row_index(parsed, key_col, item_key(sample.id, p.key_pattern), path)
        text = str(parsed.df[p.column].iat[row])
    if p.strip:
        text = text.strip()
    truncated = p.max_chars is not None and len(text) > p.max_chars
    if truncated:
        text = text[: p.max_chars]
    if p.name in RESERVED:
        raise ItemError(f"output name {p.name!r} is reserved")
    sample.meta[p.name] = text
    sample.meta[f"{p.name}_truncated"] = bool(truncated)
    if path not in sample.sources:
        sample.sources.append(path)
    return sample
