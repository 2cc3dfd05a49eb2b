"""The recipe schema (typed models), YAML loading, and validation errors that name file:line field.

A recipe is one YAML file per dataset. It says what the dataset is (identity, licence, access),
where its files live (sources), how to check them (checksum policy), how to enumerate samples
(index: tables, joins, ids, inputs, labels, splits), what to do to each sample (steps), what to
write (output), and what the result must look like (expect). Kind-specific source fields and step
parameters are validated by the pydantic model that the source class or step declares, so an
unknown step, an unknown source kind or a bad parameter is rejected before any work starts.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ByteSize, ConfigDict, Field, ValidationError, field_validator, model_validator

from climb_cli.errors import RecipeError

RECIPE_FORMAT = 2  # bump when the meaning of a recipe field changes: it is part of the recipe hash


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


# ---------------------------------------------------------------------------------------------
# Sources


class SourceSpec(BaseModel):
    """Where one part of a dataset comes from. `kind` picks the source class; its own fields
    (project/version for PhysioNet, dataset for Kaggle, ...) are validated by that class."""

    model_config = ConfigDict(extra="allow", frozen=True, defer_build=True)

    id: str = Field("data", pattern=r"^[a-z0-9][a-z0-9_-]*$", description="name used by the index")
    kind: str
    into: str = Field("", description="sub-folder of raw/<dataset>/ for this source's files")
    include: list[str] = Field(default_factory=list, description="globs of upstream paths to fetch")
    exclude: list[str] = Field(default_factory=list, description="globs of upstream paths to skip")
    extract: bool | list[str] = Field(
        False, description="extract archives after download: true (all), or globs of archive paths"
    )
    keep_archive: bool = Field(True, description="keep an archive once it is completely extracted")
    strip_components: int = Field(0, ge=0, description="leading folders to drop from member paths")

    @field_validator("extract")
    @classmethod
    def _openable(cls, v: bool | list[str]) -> bool | list[str]:
        """A glob whose last name ends in a literal extension must name an archive kind climb opens
        (`*.rar` once silently extracted nothing)."""
        from climb_cli.archives import KINDS_TEXT, archive_kind

        for glob in v if isinstance(v, list) else []:
            last = glob.rstrip("/").rpartition("/")[2]
            ext = last.rpartition(".")[2]
            if "." not in last or any(c in ext for c in "*?[]") or last.endswith("**"):
                continue
            probe = last.replace("**", "x").replace("*", "x").replace("?", "x")
            if archive_kind(probe) is None:
                raise ValueError(
                    f"{glob!r} names files climb cannot extract (.{ext}); archive kinds climb extracts: "
                    f"{KINDS_TEXT}"
                )
        return v

    @field_validator("into")
    @classmethod
    def _relative(cls, v: str) -> str:
        if v.startswith("/") or ".." in Path(v).parts:
            raise ValueError("must be a relative folder without '..'")
        return v.strip("/")

    @property
    def params(self) -> dict[str, Any]:
        """The kind-specific fields."""
        return dict(self.model_extra or {})


# ---------------------------------------------------------------------------------------------
# Index


def _inside(v: str) -> str:
    """A path inside the dataset's raw folder: relative, no '..' part, no '~'."""
    if v.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", v) or ".." in re.split(r"[/\\]", v):
        raise ValueError(f"{v!r} reaches outside the dataset's raw folder (absolute, '~' or '..')")
    return v


class TableRef(_Model):
    """A table file inside a source's raw folder, parsed as strings. The format comes from the
    extension (.csv/.tsv/.txt[.gz], .json, .jsonl, .xlsx, .parquet) unless `format` says it;
    `lines` is headerless text, one value per line (column `value`, or `columns`)."""

    source: str | None = Field(None, description="source id (default: the first source)")
    path: str
    format: Literal["csv", "tsv", "json", "jsonl", "xlsx", "parquet", "lines", "pickle", "mat"] | None = None
    sep: str | None = Field(None, description="column separator (default from the extension)")
    header: bool = Field(True, description="csv/tsv: false when the file has no header row")
    skip_rows: int = Field(0, ge=0, description="csv/tsv: lines before the header (NDA files: 1)")
    columns: list[str] | None = Field(None, description="names for the columns of a headerless table")
    sheet: str | int = Field(0, description="xlsx: sheet name or 0-based number")
    records: str | None = Field(None, description="json: key of the list of records (default: top level)")
    variables: list[str] | None = Field(
        None, description="mat / pickled dict: the per-subject vectors to read as columns (default: all 1-D)"
    )
    sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-f]{64}$",
        description="pickle: a sha256 it must match first (optional: no code runs)",
    )
    with_columns: dict[str, str] = Field(
        default_factory=dict, description="constant columns added to this table's rows (e.g. folder: train)"
    )
    derive: dict[str, str] = Field(
        default_factory=dict,
        description="new columns from templates over this table's columns, e.g. record: 'HR{ecg_id:0>5}'",
    )
    index_column: str | None = Field(
        None, description="name to give an unnamed first column (pandas writes it blank)"
    )

    @field_validator("path")
    @classmethod
    def _path_inside(cls, v: str) -> str:
        return _inside(v)

    @model_validator(mode="after")
    def _pickle_said(self) -> TableRef:
        if self.path.endswith((".pkl", ".pickle", ".npy")) and self.format != "pickle":
            raise ValueError(
                "a pickle is read only when the recipe says format: pickle (numpy arrays, dicts and lists; "
                "nothing that runs code)"
            )
        return self


class JoinSpec(_Model):
    table: TableRef
    on: list[str] = Field(min_length=1)
    right_on: list[str] | None = Field(None, description="the joined table's columns, when named otherwise")
    how: Literal["left", "inner"] = "inner"

    @model_validator(mode="before")
    @classmethod
    def _yaml_on(cls, data: Any) -> Any:
        """YAML 1.1 reads an unquoted `on:` key as the boolean true; take it as `on`."""
        if isinstance(data, dict) and True in data and "on" not in data:
            data = {("on" if k is True else k): v for k, v in data.items()}
        return data


class LabelMap(_Model):
    """Translate raw label codes through a second table (e.g. PTB-XL scp_statements.csv)."""

    table: TableRef
    key: str = Field(description="column of the mapping table holding the raw code")
    value: str = Field(description="column holding the class name")
    where: dict[str, list[str]] = Field(default_factory=dict, description="keep mapping rows matching")


class Range(_Model):
    """A numeric condition on a column (the cell is read as a number; text never matches)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, cell: str) -> bool:
        try:
            x = float(cell)
        except ValueError:
            return False
        return (
            (self.ge is None or x >= self.ge)
            and (self.gt is None or x > self.gt)
            and (self.le is None or x <= self.le)
            and (self.lt is None or x < self.lt)
        )


class LabelRule(_Model):
    """`label` applies when every column in `when` holds one of its values (an empty `when`: always,
    as the last multiclass rule it means "otherwise")."""

    when: dict[str, list[str] | Range] = Field(
        default_factory=dict, description="column -> raw values, or a range {ge, gt, le, lt}"
    )
    label: str

    def matches(self, row: dict[str, str]) -> bool:
        return all(
            cond.holds(row.get(c, "")) if isinstance(cond, Range) else row.get(c, "") in cond
            for c, cond in self.when.items()
        )


class UncertainSpec(_Model):
    """CheXpert-style uncertain labels: which raw values are uncertain and what they count as."""

    values: list[str] = Field(default_factory=lambda: ["-1", "-1.0"])
    count_as: Literal["negative", "positive", "drop"] = Field(
        "negative", description="CLIMB maps uncertain (-1) and blank to 0: negative"
    )


class LabelSpec(_Model):
    kind: Literal["multilabel", "multiclass", "regression", "none"] = "multiclass"
    column: str | None = Field(None, description="column holding the raw label(s)")
    parse: Literal["value", "dict_keys", "list", "literal_list"] = Field(
        "value",
        description="value: one label; dict_keys: keys of a {code: likelihood} literal; list: sep-split; "
        "literal_list: a Python list literal (ast.literal_eval, never eval)",
    )
    sep: str = ";"
    min_value: float | None = Field(None, description="dict_keys: keep codes whose value is >= this")
    columns: list[str] | None = Field(None, description="one flag column per class (positive values count)")
    rules: list[LabelRule] | None = Field(None, description="labels from conditions over several columns")
    bins: list[float] | None = Field(
        None, description="numeric column -> class i when bins[i] <= value < bins[i+1]"
    )
    positive: list[str] = Field(default_factory=lambda: ["1", "1.0"])
    uncertain: UncertainSpec | None = None
    raw_column: str | None = Field(
        None, description="output column keeping the raw label value(s) as JSON (e.g. CheXpert's -1)"
    )
    map: LabelMap | None = None
    values: dict[str, str | None] = Field(
        default_factory=dict,
        description="inline raw value -> class name (null: drop the item; '': remove just this label)",
    )
    classes: list[str] = Field(default_factory=list, description="class names in output order")
    discover: bool = Field(
        False, description="classes are the sorted distinct labels found (computed once, then locked)"
    )
    from_rows: bool = Field(
        False, description="labels come per row from rows.explode's label_from (sleep stages per epoch)"
    )
    others: Literal["ignore", "error", "drop"] = Field(
        "error", description="a (mapped) label not in classes: ignore it, reject the item, or drop the item"
    )
    empty: Literal["keep", "drop"] = Field("keep", description="items with no label: keep or drop")

    @model_validator(mode="after")
    def _one_way(self) -> LabelSpec:
        if self.kind == "none":
            return self
        if self.from_rows:
            if self.column or self.columns or self.rules or self.bins or self.discover or not self.classes:
                raise ValueError("'from_rows' takes only 'classes' (the labels come from the step)")
            if self.kind == "regression":
                raise ValueError("'from_rows' labels are classes")
            return self
        ways = [
            self.column is not None and self.bins is None,
            self.columns is not None,
            self.rules is not None,
        ]
        ways.append(self.bins is not None)
        if sum(ways) != 1:
            raise ValueError("give exactly one of 'column', 'columns', 'rules' or 'column' with 'bins'")
        if self.bins is not None:
            if self.column is None:
                raise ValueError("'bins' needs the numeric 'column'")
            if sorted(self.bins) != self.bins or len(self.bins) < 2:
                raise ValueError("'bins' are at least two increasing edges")
            if len(self.classes) != len(self.bins) - 1:
                raise ValueError(
                    f"{len(self.bins) - 1} bins need as many 'classes' ({len(self.classes)} given)"
                )
        if self.kind == "regression" and self.column is None:
            raise ValueError("a regression target needs 'column'")
        if self.discover and self.classes:
            raise ValueError("give 'classes' or 'discover: true', not both")
        needs = self.kind != "regression" and self.columns is None and not self.discover
        if needs and not self.classes:
            raise ValueError("'classes' is required for a classification task (or discover: true)")
        return self


class RandomSplit(_Model):
    """Seeded random split; see climb_cli/splits.py for the exact algorithms."""

    fractions: dict[str, float] = Field(min_length=2, description="split name -> fraction, in order")
    seed: int = 0
    group: str | None = Field(None, description="column: no value of it spans two splits")
    stratify: str | None = Field(None, description="'labels' (the exact label combination) or a column name")
    method: Literal["hash", "pandas_sample", "sklearn_split", "numpy_shuffle"] = Field(
        "hash",
        description="hash: climb's own (stable everywhere); pandas_sample: DataFrame.sample(n, "
        "random_state=seed) per stratum; sklearn_split: train_test_split(groups, random_state=seed); "
        "numpy_shuffle: RandomState(seed).shuffle(units), the first part to the first split",
    )
    rounding: Literal["nearest", "floor"] = Field(
        "nearest", description="first split's size: round(f*n) (pandas frac=) or int(f*n) (CLIMB's code)"
    )
    test_sizes: tuple[float, float] | None = Field(
        None,
        description="sklearn_split with three fractions: the test_size of the two successive "
        "train_test_split calls, as the reproduced code computes them in floats (default: "
        "F_2 + F_3, then F_3 / (F_2 + F_3))",
    )

    @model_validator(mode="after")
    def _fractions(self) -> RandomSplit:
        if any(f <= 0 for f in self.fractions.values()) or abs(sum(self.fractions.values()) - 1) > 1e-9:
            raise ValueError("fractions must be > 0 and sum to 1")
        three = self.method == "sklearn_split" and len(self.fractions) == 3
        if self.method != "hash" and len(self.fractions) != 2 and not three:
            raise ValueError(f"method {self.method} makes exactly two splits")
        if self.test_sizes is not None:
            if not three:
                raise ValueError("test_sizes is for sklearn_split with three fractions")
            if not all(0 < t < 1 for t in self.test_sizes):
                raise ValueError("test_sizes must be between 0 and 1")
        return self

    def sklearn_test_sizes(self) -> tuple[float, float]:
        """The two test_size values of a three-way sklearn_split."""
        if self.test_sizes is not None:
            return self.test_sizes
        _, f2, f3 = self.fractions.values()
        return (f2 + f3, f3 / (f2 + f3))


class OrderedSplit(_Model):
    """The first fraction of the items sorted by `by` go to the first split, and so on."""

    by: list[str] = Field(min_length=1, description="sort key columns")
    stratify: str | None = Field(
        None, description="cut each stratum ('labels' or a column) on its own (BUSI)"
    )
    numeric: bool = Field(False, description="compare digit runs as numbers (case_2 < case_10)")
    fractions: dict[str, float] = Field(min_length=2)
    rounding: Literal["nearest", "floor"] = "nearest"
    group: str | None = Field(
        None,
        description="cut the sorted distinct values of this column instead of the items (COVID-BLUES: "
        "the first 75 % of patients); an item goes where its group goes",
    )

    @model_validator(mode="after")
    def _fractions(self) -> OrderedSplit:
        if any(f <= 0 for f in self.fractions.values()) or abs(sum(self.fractions.values()) - 1) > 1e-9:
            raise ValueError("fractions must be > 0 and sum to 1")
        return self


class MembershipSplit(_Model):
    """Split files that list members: OGB's split/<scheme>/train.csv.gz (row numbers, no header)."""

    files: dict[str, TableRef] = Field(min_length=1, description="split name -> file listing its members")
    by: str = Field("_row", description="'_row' (0-based row numbers of the index table) or an index column")


class FewShot(_Model):
    """CLIMB's finetune_size: a named variant keeps `size` items per class of one split."""

    sizes: dict[str, int] = Field(default_factory=lambda: {"small": 8, "medium": 64, "large": 256})
    split: str = "train"
    seed: int = 0


class SplitSpec(_Model):
    column: str | None = Field(None, description="column holding the raw split value")
    map: dict[str, list[str]] = Field(default_factory=dict, description="split name -> raw values")
    default: str | None = Field(None, description="split for values the map does not name")
    fixed: str | None = Field(None, description="every item goes to this split")
    random: RandomSplit | None = None
    ordered: OrderedSplit | None = None
    membership: MembershipSplit | None = None
    few_shot: FewShot | None = Field(None, description="variants `--variant small|medium|large`")
    unmapped: Literal["drop", "error"] = "error"

    @model_validator(mode="after")
    def _one_way(self) -> SplitSpec:
        given = [self.column, self.fixed, self.random, self.ordered, self.membership]
        if sum(g is not None for g in given) != 1:
            raise ValueError(
                "give exactly one of 'column' (with 'map'), 'fixed', 'random', 'ordered', 'membership'"
            )
        if self.column is not None and not self.map:
            raise ValueError("'map' is required with 'column'")
        return self


class FilesSpec(_Model):
    """Enumerate items from files instead of a table: a glob, plus a regex whose named groups are columns."""

    source: str | None = None
    glob: str
    pattern: str | None = Field(None, description="regex on the relative path; named groups become columns")

    @field_validator("glob")
    @classmethod
    def _glob_inside(cls, v: str) -> str:
        return _inside(v)

    @field_validator("pattern")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as e:
                raise ValueError(f"not a valid regular expression: {e}") from None
        return v


class AggregateSpec(_Model):
    """One item per group of rows (series, study, patient): inputs become lists of distinct paths."""

    by: list[str] = Field(min_length=1, description="columns whose values identify a group")
    labels: Literal["union", "max", "first"] = Field(
        "union", description="union of the rows' labels, the highest class (classes order), or the first"
    )


class IndexSpec(_Model):
    table: TableRef | list[TableRef] | None = Field(
        None, description="a table, or a list of tables whose rows are concatenated (columns by name)"
    )
    files: FilesSpec | None = None
    join: list[JoinSpec] = Field(default_factory=list)
    filter: dict[str, list[str]] = Field(
        default_factory=dict, description="keep rows whose column is in values"
    )
    exclude: dict[str, list[str]] = Field(
        default_factory=dict, description="drop rows whose column is in values (counted in the manifest)"
    )
    aggregate: AggregateSpec | None = None
    id: str = Field(description="column name, or a template like '{subject_id}_{study_id}'")
    inputs: dict[str, str] = Field(description="input name -> path template relative to the source folder")
    inputs_source: str | None = Field(None, description="source id the input paths live in (default: first)")
    labels: LabelSpec = Field(default_factory=lambda: LabelSpec(kind="none"))
    split: SplitSpec
    keep: list[str] = Field(default_factory=list, description="extra columns copied into the output")

    @field_validator("inputs")
    @classmethod
    def _inputs_inside(cls, v: dict[str, str]) -> dict[str, str]:
        for t in v.values():
            _inside(t)
        return v

    @model_validator(mode="after")
    def _one_way(self) -> IndexSpec:
        if (self.table is None) == (self.files is None):
            raise ValueError("give exactly one of 'table' or 'files'")
        return self


# ---------------------------------------------------------------------------------------------
# Steps, output, expectations


class StepCall(_Model):
    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class OutputSpec(_Model):
    format: Literal["parquet", "npz"] = "parquet"
    shard_size: ByteSize = Field(ByteSize(256 * 1024 * 1024), description="target bytes per shard")
    row_group_size: ByteSize = Field(ByteSize(32 * 1024 * 1024), description="target bytes per row group")
    compression: Literal["zstd", "snappy", "none"] = "zstd"
    array_encoding: Literal["byte_stream_split", "plain"] = Field(
        "byte_stream_split",
        description="numeric arrays: byte_stream_split (best for images and processed floats) or plain "
        "(better for floats that are scaled integers, e.g. raw ECG in mV)",
    )

    @model_validator(mode="after")
    def _sizes(self) -> OutputSpec:
        if self.shard_size <= 0 or self.row_group_size <= 0:
            raise ValueError("sizes must be > 0")
        return self


class ClimbTensorSpec(_Model):
    """How CLIMB turns a stored row into its model input at load time (applied by climb_cli.tensors).

    The shards keep the decoded data; this block records CLIMB's load-time transform and constants so a
    loader reproduces CLIMB's tensors exactly (`climb_cli.tensors.to_climb(row, manifest)`)."""

    transform: Literal["std2d", "std2d_square", "resize_short", "resize_square", "none", "ct_window"] = Field(
        "std2d",
        description="std2d: Resize(223, max_size=224) (the 'Std 2D transform'); std2d_square: Resize(size) "
        "for a square image, else std2d (APTOS); resize_short: Resize(size) on the short side; "
        "resize_square: Resize((size, size)); none: no resize; ct_window: CLIMB's base_ct.windowing of a "
        "stored (z, y, x) HU window (center/width) to [0, 1], as CLIMB's 3-D loaders' (1, y, x, z) tensor",
    )
    center: float | None = Field(None, description="ct_window: window centre, HU (RadFusion 400, LNDb -600)")
    width: int | None = Field(None, gt=0, description="ct_window: width, HU (RadFusion 1000, LNDb 1500)")
    size: int = Field(224, gt=1, description="the target size of the resize and the pad")
    channels: Literal["L", "RGB"] | None = Field(None, description="PIL mode the image is converted to first")
    mean: list[float] | None = Field(None, description="Normalize mean per channel (None: no Normalize)")
    std: list[float] | None = Field(None, description="Normalize std per channel")
    pad: Literal["center", "width", "height", "fixed", "none"] = Field(
        "center",
        description="zero pad after Normalize to size x size: both sides (center), left/right only (width), "
        "top/bottom only (height), a fixed (left, top, right, bottom) pad, or none",
    )
    pad_fixed: list[int] | None = Field(None, description="(left, top, right, bottom) for pad: fixed")
    array: str = Field("image", description="the array column the transform reads")

    @model_validator(mode="after")
    def _consistent(self) -> ClimbTensorSpec:
        if (self.transform == "ct_window") != (self.center is not None and self.width is not None):
            raise ValueError("center and width go with transform: ct_window (and it needs both)")
        if (self.mean is None) != (self.std is None):
            raise ValueError("mean and std go together")
        if self.mean is not None and self.std is not None and len(self.mean) != len(self.std):
            raise ValueError("mean and std must have one value per channel each")
        if self.std is not None and any(v <= 0 for v in self.std):
            raise ValueError("std values must be > 0")
        if (self.pad == "fixed") != (self.pad_fixed is not None):
            raise ValueError("pad_fixed goes with pad: fixed (left, top, right, bottom)")
        if self.pad_fixed is not None and (len(self.pad_fixed) != 4 or min(self.pad_fixed) < 0):
            raise ValueError("pad_fixed is four non-negative numbers: left, top, right, bottom")
        return self


class ExpectSpec(_Model):
    splits: dict[str, int] = Field(default_factory=dict, description="rows per split")
    class_counts: dict[str, int] = Field(default_factory=dict, description="positive items per class")
    tolerance: float = Field(0.0, ge=0, le=1, description="allowed relative deviation")


class ImagesSpec(_Model):
    """Images fetched from the URLs a preprocess wrote (LAION): `climb download NAME --stage images`
    (climb_cli/images.py). Not part of the recipe hash: the stage writes under raw/<name>/<into>/."""

    url_column: str = Field("url", description="the output column holding each row's image URL(s)")
    rank_by: str = Field(
        "similarity", description="the output column (number or list) to rank by, highest first"
    )
    top: int | None = Field(None, ge=1, description="fetch only the top N URLs by rank_by (CLIMB: 1,000,000)")
    into: str = Field(
        "images", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$", description="folder under raw/<name>/"
    )
    max_bytes: ByteSize = Field(ByteSize(20 * 1024 * 1024), description="larger answers are dead (too large)")
    connections: int = Field(16, ge=1, le=256, description="images fetched at once")
    per_host: float = Field(2.0, gt=0, description="requests per second to any one host")
    timeout: float = Field(20.0, gt=0, description="seconds to connect, between bytes, and for a whole image")


class Recipe(_Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    aliases: list[str] = Field(
        default_factory=list,
        description="other names it answers to (CLIMB's keys: cbis, brain_ct_hemorrhage)",
    )
    title: str
    modality: str
    license: str
    citation: str = ""
    homepage: str = ""
    access: Literal["open", "registered", "credentialed"]
    raw_size: ByteSize | None = Field(None, description="approximate raw size")
    samples: int | None = Field(None, ge=0, description="approximate number of samples (CLIMB's count)")
    description: str = Field("", description="what the dataset is, in a sentence or two")
    access_steps: str = Field("", description="what access takes (account, training, agreement, form)")
    sources: list[SourceSpec] = Field(min_length=1)
    checksums: Literal["upstream", "pinned", "none"] = "upstream"
    index: IndexSpec | None = None
    steps: list[StepCall] = Field(default_factory=list)
    output: OutputSpec = Field(default_factory=OutputSpec)
    expect: ExpectSpec = Field(default_factory=ExpectSpec)
    climb_tensor: ClimbTensorSpec | None = Field(
        None, description="CLIMB's load-time transform and constants, carried into manifest.json"
    )
    images: ImagesSpec | None = Field(
        None,
        description="a stage that fetches images from URLs in the outputs (LAION): download --stage images",
    )
    notes: str = ""
    variant: str | None = Field(None, description="a named variant (few-shot size); set by --variant")

    # where it was loaded from (not part of the hash)
    path: Path | None = Field(None, exclude=True)
    hook_source: str | None = Field(None, exclude=True, description="text of <name>.py beside the YAML")

    @model_validator(mode="after")
    def _sources_distinct(self) -> Recipe:
        ids = [s.id for s in self.sources]
        if len(set(ids)) != len(ids):
            raise ValueError(f"source ids must be distinct: {ids}")
        intos = [s.into for s in self.sources]
        if len(set(intos)) != len(intos):
            raise ValueError("two sources write into the same folder: give each an 'into'")
        fs = self.index.split.few_shot if self.index else None
        if self.variant is not None and (fs is None or self.variant not in fs.sizes):
            known = ", ".join(fs.sizes) if fs else "none"
            raise ValueError(f"unknown variant {self.variant!r} (this recipe's variants: {known})")
        return self

    def with_variant(self, variant: str | None) -> Recipe:
        """This recipe with a named variant selected (validated against index.split.few_shot)."""
        if variant is None:
            return self
        fs = self.index.split.few_shot if self.index else None
        if fs is None or variant not in fs.sizes:
            known = ", ".join(fs.sizes) if fs else "none"
            raise RecipeError(f"{self.name}: unknown variant {variant!r} (variants: {known})")
        return self.model_copy(update={"variant": variant})

    def source(self, source_id: str | None) -> SourceSpec:
        if source_id is None:
            return self.sources[0]
        for s in self.sources:
            if s.id == source_id:
                return s
        raise RecipeError(f"{self.name}: no source with id {source_id!r}")

    @property
    def classes(self) -> list[str]:
        if self.index is None:
            return []
        lab = self.index.labels
        return list(lab.classes or lab.columns or [])

    def content_hash(self) -> str:
        """A stable hash of what determines the processed output (not title, notes or expectations)."""
        body = self.model_dump(mode="json", include={"name", "sources", "index", "steps", "output"})
        body["format"] = RECIPE_FORMAT
        if self.variant is not None:
            body["variant"] = self.variant
        if self.hook_source is not None:
            body["hook"] = hashlib.sha256(self.hook_source.encode()).hexdigest()
        text = json.dumps(body, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------------------
# Loading with file:line errors


def _node_line(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along a pydantic loc; return the 1-based line of the deepest match."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and k.value == str(part):
                    node, line = v, (k.start_mark.line + 1)
                    if not isinstance(v, yaml.ScalarNode):
                        line = k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _fmt_loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top)"


def _fmt_msg(err: Mapping[str, Any]) -> str:
    t, ctx = err.get("type", ""), err.get("ctx") or {}
    simple = {
        "greater_than": "must be > {gt}",
        "greater_than_equal": "must be >= {ge}",
        "less_than": "must be < {lt}",
        "less_than_equal": "must be <= {le}",
        "missing": "is required",
        "extra_forbidden": "unknown field",
        "string_type": "must be a string",
        "int_type": "must be an integer",
        "int_parsing": "must be an integer",
        "float_type": "must be a number",
        "float_parsing": "must be a number",
        "bool_type": "must be true or false",
        "bool_parsing": "must be true or false",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "too_short": "must have at least {min_length} item(s)",
        "literal_error": "must be one of {expected}",
        "string_pattern_mismatch": "must match {pattern}",
    }
    if t in simple:
        ctx = {k: (int(v) if isinstance(v, float) and v.is_integer() else v) for k, v in ctx.items()}
        try:
            return simple[t].format(**ctx)
        except (KeyError, IndexError):
            pass
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _did_you_mean(name: str, parent: tuple[Any, ...], errors: list[Any], fields: Iterable[str]) -> str:
    """' (did you mean 'hz'?)' for a mistyped field: among the fields the model has at that level
    (given for the top level) and those reported missing beside it."""
    from climb_cli.catalog import suggest

    known = set(fields) if not parent else set()
    known |= {
        str(x["loc"][-1]) for x in errors if x.get("type") == "missing" and tuple(x["loc"][:-1]) == parent
    }
    close = suggest(name, sorted(known), limit=1)
    return f" — did you mean {close[0]!r}?" if close else ""


class _Located:
    """Turns pydantic errors into 'file:line path: message' using the composed YAML tree."""

    def __init__(self, path: Path, root: yaml.Node | None) -> None:
        self.path, self.root = path, root

    def error(
        self, loc: tuple[Any, ...], msg: str, *, node_loc: tuple[Any, ...] | None = None
    ) -> RecipeError:
        line = _node_line(self.root, node_loc if node_loc is not None else loc)
        where = f"{self.path}:{line}" if line else str(self.path)
        return RecipeError(f"{where} {_fmt_loc(loc)}: {msg}" if loc else f"{where} {msg}")

    def from_validation(
        self,
        e: ValidationError,
        prefix: tuple[Any, ...] = (),
        node_prefix: tuple[Any, ...] | None = None,
        fields: Iterable[str] = (),
    ) -> RecipeError:
        errors = e.errors()
        unknown = [x for x in errors if x.get("type") == "extra_forbidden"]
        err = unknown[0] if unknown else errors[0]  # a typo first: it is what the other errors follow from
        loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        np = node_prefix if node_prefix is not None else prefix
        extra = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        msg = _fmt_msg(err)
        if unknown and loc:
            msg = f"unknown field {loc[-1]!r}" + _did_you_mean(str(loc[-1]), loc[:-1], errors, fields)
            loc = loc[:-1]
        return self.error(prefix + loc, msg + extra, node_loc=np + err["loc"])


def _parse_steps(raw: Any, where: _Located) -> list[dict[str, Any]]:
    if raw is None:
        return []
    from climb_cli.steps import load_for
    from climb_cli.steps.base import registered

    if not isinstance(raw, list):
        raise where.error(("steps",), "must be a list of steps")
    # the step modules these steps come from (all of them when a name is unknown), not every step module
    load_for(e if isinstance(e, str) else next(iter(e)) for e in raw if isinstance(e, str | dict) and e)
    known = dict(sorted(registered().items()))
    out: list[dict[str, Any]] = []
    for i, entry in enumerate(raw):
        params: Any
        if isinstance(entry, str):
            name, params = entry, {}
        elif isinstance(entry, dict) and len(entry) == 1:
            name, params = next(iter(entry.items()))
            params = params or {}
        else:
            raise where.error(("steps", i), "each step is a name, or a mapping {name: {params}}")
        if name not in known:
            hint = [n for n in known if n.split(".")[-1] == str(name).split(".")[-1]]
            raise where.error(
                ("steps", i),
                f"unknown step {name!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "; see `climb steps`"),
            )
        if not isinstance(params, dict):
            raise where.error(("steps", i), f"parameters of {name} must be a mapping")
        try:
            model = known[name].params.model_validate(params)
        except ValidationError as e:
            raise where.from_validation(
                e, prefix=("steps", i), node_prefix=("steps", i, name), fields=known[name].params.model_fields
            ) from None
        out.append({"name": name, "params": model.model_dump(mode="json")})
    return out


def _check_sources(raw: Any, where: _Located) -> None:
    from climb_cli.sources import source_class, source_kinds

    if not isinstance(raw, list):
        return
    for i, entry in enumerate(raw):
        if not isinstance(entry, dict) or "kind" not in entry:
            continue
        cls = source_class(str(entry["kind"]))
        if cls is None:
            raise where.error(
                ("sources", i, "kind"),
                f"unknown source kind {entry['kind']!r} (known: {', '.join(source_kinds())})",
            )
        base_fields = set(SourceSpec.model_fields)
        specific = {k: v for k, v in entry.items() if k not in base_fields}
        try:
            cls.Params.model_validate(specific)
        except ValidationError as e:
            raise where.from_validation(
                e, prefix=("sources", i), fields=[*cls.Params.model_fields, *base_fields]
            ) from None


def parse_recipe(text: str, path: Path) -> Recipe:
    """Validate recipe text; raises RecipeError naming path:line and the field."""
    where = _Located(path, None)
    try:
        # libyaml's parser where PyYAML has it: the same nodes and data, ~10x less CPU (`--all`
        # parses every recipe before any work starts)
        # one parse: the node tree (for error lines) and the data constructed from it (yaml.load's two
        # steps; construct_document only flattens `<<` merge keys in the tree)
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)  # a safe loader (C or Python)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise RecipeError(f"{path}{line} (yaml): {problem}") from None
    where.root = root
    if not isinstance(data, dict):
        raise RecipeError(f"{path}:1 (top): a recipe is a mapping of fields")
    if "variant" in data:
        raise where.error(("variant",), "a variant is chosen with --variant, never by the recipe itself")
    data["steps"] = _parse_steps(data.get("steps"), where)
    _check_sources(data.get("sources"), where)
    try:
        recipe = Recipe.model_validate({**data, "path": path})
    except ValidationError as e:
        raise where.from_validation(e, fields=[f for f in Recipe.model_fields if f != "path"]) from None
    stem = path.name.removesuffix(".yaml").removesuffix(".yml")
    if stem != recipe.name:
        raise where.error(("name",), f"must match the file name ({stem!r})")
    _check_references(recipe, where)
    hook = path.with_suffix(".py")
    if hook.is_file():
        try:
            recipe = recipe.model_copy(update={"hook_source": hook.read_text(encoding="utf-8")})
        except (OSError, UnicodeDecodeError) as e:
            raise RecipeError(f"{hook}: cannot read the recipe's hook ({e})") from None
    return recipe


def _check_references(recipe: Recipe, where: _Located) -> None:
    """Source ids named by the index must exist."""
    if recipe.index is None:
        return
    ids = {s.id for s in recipe.sources}
    refs: list[tuple[tuple[Any, ...], str | None]] = []
    ix = recipe.index
    if isinstance(ix.table, list):
        for k, t in enumerate(ix.table):
            refs.append((("index", "table", k, "source"), t.source))
    elif ix.table:
        refs.append((("index", "table", "source"), ix.table.source))
    if ix.files:
        refs.append((("index", "files", "source"), ix.files.source))
    for j, join in enumerate(ix.join):
        refs.append((("index", "join", j, "table", "source"), join.table.source))
    if ix.split.membership:
        for name, table in ix.split.membership.files.items():
            refs.append((("index", "split", "membership", "files", name, "source"), table.source))
    if ix.labels.map:
        refs.append((("index", "labels", "map", "table", "source"), ix.labels.map.table.source))
    refs.append((("index", "inputs_source"), ix.inputs_source))
    for loc, ref in refs:
        if ref is not None and ref not in ids:
            raise where.error(loc, f"no source with id {ref!r} (sources: {', '.join(sorted(ids))})")


def load_recipe(path: Path) -> Recipe:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise RecipeError(f"{path}: cannot read recipe ({e.strerror})") from None
    return parse_recipe(text, path)
