"""Graph steps: connectivity matrices (npy / npz / mat / text) to thresholded edge lists with node features.

The BrainGB connectomes CLIMB uses (climb-datasets.md section 1.11, abcd / abide / ppmi) hold many
subjects in one file; one item is one subject:
- ABCD: `abcd_rest-pearson-HCP2016.npy`, an (N, 360, 360) Pearson stack, subject IDs one per line in
  `ids_HCP2016.txt` (`ids_input`), labels (sex) in `id2sex.txt`. The stack is memory-mapped, so reading
  one subject reads one matrix, not the whole file.
- ABIDE: `ABIDE.npy`, a pickled dict with `corr`, `label`, `site` (`key: corr`, `allow_pickle: true`);
  read by climb_cli.safe_pickle, which rebuilds numpy arrays and containers and runs no other code.
- PPMI: `PPMI.mat` with `X` (N x 1 cells of (84, 84, views)) and `label` (-1 / 1, CLIMB maps -1 -> 0);
  CLIMB uses view 0 (`key: X`, `view: 0`).
CLIMB's graph (models/graphs/brain_datasets.py): edges = every non-zero matrix entry, diagonal included,
edge attribute = the entry, node features = the matrix rows. That is `graph.to_edges` with its defaults
and no `graph.threshold` step.

Arrays: `matrix` (N, N) float64 as read; `adjacency` (N, N) after `graph.threshold`; `graph.to_edges`
writes `edge_index` (2, E) int32, `edge_weight` (E,) float32 and `node_features` (N, F) float32 and drops
the dense matrices unless asked to keep them.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field, field_validator, model_validator

from climb_cli import safe_pickle
from climb_cli.errors import ItemError
from climb_cli.lazy import lazy
from climb_cli.steps.base import Sample, StepParams, id_part, item_errors, step
from climb_cli.steps.base import why as _why

if TYPE_CHECKING:  # the real modules for the type checker; at run time each loads on first use
    import scipy.io as scipy_io
else:
    scipy_io = lazy("scipy.io")

# ----------------------------------------------------------------------------------------------- cache

#: parsed container files kept per process (a .mat or pickled .npy is parsed whole; memory-mapped .npy
#: stacks cost no memory). At most this many files are held at once.
CACHE_FILES = 2
_cache: OrderedDict[tuple[Any, ...], Any] = OrderedDict()
_lock = threading.Lock()


def _cached(path: Path, what: str, load: Callable[[], Any], *extra: Any) -> Any:
    """`load()` once per (file version, what, extra); the file's size and mtime are part of the key."""
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns, what, *extra)
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


# ----------------------------------------------------------------------------------------- read_matrix


def _load_npy(path: Path, allow_pickle: bool) -> Any:
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        _, _, dtype = read_header(f)  # shape, fortran order, dtype
    if not dtype.hasobject:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    if not allow_pickle:
        raise ItemError(
            f"{path.name}: holds pickled Python objects (e.g. BrainGB's ABIDE.npy dict); "
            "set allow_pickle: true if you trust the file"
        )
    try:
        return safe_pickle.loads(path.read_bytes())  # numpy arrays and plain containers: runs no code
    except safe_pickle.UnsafePickle as exc:
        raise ItemError(f"{path.name}: {exc}") from None


def _load_mat(path: Path) -> dict[str, Any]:
    try:
        data = scipy_io.loadmat(str(path))
    except NotImplementedError:
        raise ItemError(f"{path.name}: MATLAB v7.3 (HDF5) files are not supported; save as -v7") from None
    return {k: v for k, v in data.items() if not k.startswith("__")}


def _load_container(path: Path, allow_pickle: bool, sep: str | None) -> Any:
    name = path.name.lower()
    if name.endswith(".npy"):
        return _cached(path, "npy", lambda: _load_npy(path, allow_pickle), allow_pickle)
    if name.endswith(".npz"):
        return _cached(path, "npz", lambda: dict(np.load(path, allow_pickle=allow_pickle)), allow_pickle)
    if name.endswith(".mat"):
        return _cached(path, "mat", lambda: _load_mat(path))
    if name.endswith((".csv", ".tsv", ".txt", ".csv.gz", ".tsv.gz", ".txt.gz")):
        delim = sep if sep is not None else ("," if ".csv" in name else "\t" if ".tsv" in name else None)
        return np.loadtxt(path, delimiter=delim, dtype=np.float64, ndmin=2)
    raise ItemError(f"{path.name}: unknown matrix file type (expected .npy, .npz, .mat, .csv, .tsv or .txt)")


def _pick_key(container: Any, key: str | None, path: Path) -> Any:
    if not isinstance(container, dict):
        if key is not None:
            raise ItemError(f"{path.name}: key {key!r} given, but the file holds a single array")
        return container
    if key is None:
        if len(container) != 1:
            raise ItemError(f"{path.name}: holds {sorted(map(str, container))}; set key to one of them")
        return next(iter(container.values()))
    if key not in container:
        raise ItemError(f"{path.name}: no key {key!r} (keys: {', '.join(sorted(map(str, container)))})")
    return container[key]


def _unwrap(a: Any) -> Any:
    """Strip MATLAB cell wrappers: object arrays holding one element become that element."""
    while isinstance(a, np.ndarray) and a.dtype == object and a.size == 1:
        a = a.reshape(-1)[0]
    return a


def _read_ids(path: Path) -> dict[str, int]:
    def load() -> dict[str, int]:
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ItemError(f"{path.name}: unreadable subject list ({_why(exc)})") from None
        out: dict[str, int] = {}
        for i, line in enumerate(lines):
            token = line.strip()
            if token and token not in out:
                out[token] = i
        return out

    return _cached(path, "ids", load)


class ReadMatrixParams(StepParams):
    input: str = Field(
        "matrix", description="sample input holding the matrix file (.npy .npz .mat .csv .tsv .txt)"
    )
    key: str | None = Field(
        None,
        description="variable of a .mat (PPMI: X), member of a .npz, or key of a pickled dict (ABIDE: corr); "
        "needed when the file holds several",
    )
    subject: int | None = Field(
        None, ge=0, description="fixed index along the first axis of a stack of matrices"
    )
    subject_pattern: str | None = Field(
        None,
        description="regex searched in the item id; its group 'subject' (or group 1, or the whole match) is "
        "the subject: a 0-based index, or an ID looked up in ids_input",
    )
    ids_input: str | None = Field(
        None,
        description="sample input of a text file with one subject ID per line, in stack order "
        "(ABCD: ids_HCP2016.txt); the item's subject ID gives the row",
    )
    view: int | None = Field(None, ge=0, description="for (N, N, views) matrices, the view to take (PPMI: 0)")
    allow_pickle: bool = Field(
        False,
        description="allow pickled .npy content (ABIDE.npy; climb_cli.safe_pickle: no code runs) and .npz",
    )
    sep: str | None = Field(None, description="column separator of text matrices (default: by extension)")
    nan: Literal["error", "zero"] = Field(
        "error", description="NaN/inf entries (constant ROI time series): fail the item, or set them to 0"
    )

    @field_validator("subject_pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"subject_pattern is not a valid regex: {exc}") from None
        return pattern

    @model_validator(mode="after")
    def _one_selector(self) -> ReadMatrixParams:
        if self.subject is not None and (self.subject_pattern is not None or self.ids_input is not None):
            raise ValueError("give either subject, or subject_pattern / ids_input, not both")
        return self


def _subject_token(sample_id: str, pattern: str | None) -> str:
    return id_part(sample_id, pattern, "subject", "subject_pattern")


@step("graph.read_matrix", ReadMatrixParams)
def read_matrix(sample: Sample, p: ReadMatrixParams) -> Sample:
    """Read one (N, N) connectivity matrix (one subject of a stack by index, id pattern or ID list)."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: matrix file not found")
    with item_errors(f"{path.name}: cannot read the matrix"):
        return _read_matrix(sample, p, path)


def _read_matrix(sample: Sample, p: ReadMatrixParams, path: Path) -> Sample:
    data = _pick_key(_load_container(path, p.allow_pickle, p.sep), p.key, path)
    data = _unwrap(data)
    index: int | None = p.subject
    subject_id = ""
    if p.ids_input is not None:
        ids_path = sample.input(p.ids_input)
        if not ids_path.is_file():
            raise ItemError(f"{ids_path.name}: subject list not found")
        subject_id = _subject_token(sample.id, p.subject_pattern)
        rows = _read_ids(ids_path)
        if subject_id not in rows:
            raise ItemError(f"subject {subject_id!r} is not in {ids_path.name} ({len(rows)} IDs)")
        index = rows[subject_id]
        if ids_path not in sample.sources:
            sample.sources.append(ids_path)
    elif p.subject_pattern is not None:
        token = _subject_token(sample.id, p.subject_pattern)
        if not token.isdigit():
            raise ItemError(f"subject {token!r} from item id {sample.id!r} is not an index; give ids_input")
        index = int(token)
    if not isinstance(data, np.ndarray):
        raise ItemError(f"{path.name}: the selected content is a {type(data).__name__}, not an array")
    if index is not None:
        if data.ndim < 1 or index >= data.shape[0]:
            raise ItemError(
                f"{path.name}: subject index {index} is out of range (the file holds {len(data)})"
            )
        data = _unwrap(data[index])
        if not isinstance(data, np.ndarray):
            raise ItemError(f"{path.name}: subject {index} is a {type(data).__name__}, not an array")
    if data.ndim == 3 and p.view is not None:
        if p.view >= data.shape[2]:
            raise ItemError(f"{path.name}: view {p.view} out of range ({data.shape[2]} views)")
        data = data[:, :, p.view]
    if data.ndim == 3 and data.shape[1] == data.shape[2] and index is None:
        raise ItemError(
            f"{path.name}: holds a stack of {data.shape[0]} matrices; select one with subject, "
            "subject_pattern or ids_input"
        )
    if data.ndim != 2 or data.shape[0] != data.shape[1] or data.shape[0] == 0:
        raise ItemError(f"{path.name}: expected a square matrix, got shape {tuple(data.shape)}")
    if data.dtype.kind not in "biuf":
        raise ItemError(f"{path.name}: matrix has non-numeric dtype {data.dtype}")
    matrix = np.array(data, dtype=np.float64)  # a copy: never hand out the memory map or the cached array
    bad = ~np.isfinite(matrix)
    if bad.any():
        if p.nan == "error":
            raise ItemError(f"{path.name}: {int(bad.sum())} NaN/inf entries; set nan: zero to replace them")
        matrix[bad] = 0.0
    sample.arrays["matrix"] = matrix
    sample.meta.update(
        num_nodes=int(matrix.shape[0]),
        subject_index=int(index) if index is not None else -1,
        subject_id=subject_id,
        nonfinite_entries=int(bad.sum()),
    )
    if path not in sample.sources:
        sample.sources.append(path)
    return sample


# ------------------------------------------------------------------------------------------- threshold


class ThresholdParams(StepParams):
    mode: Literal["proportional", "absolute", "knn"] = Field(
        "proportional",
        description="proportional: keep the strongest `value` fraction of off-diagonal entries (top-k%); "
        "absolute: keep entries with strength >= value; knn: keep each node's `value` strongest "
        "neighbours (union, so the result stays symmetric for a symmetric matrix)",
    )
    value: float = Field(gt=0, description="fraction in (0, 1] (proportional), strength (absolute), k (knn)")
    use_abs: bool = Field(True, description="rank by |weight| (negative correlations count as strong)")
    keep_diagonal: bool = Field(False, description="keep the diagonal (self-loops); by default it is zeroed")

    @model_validator(mode="after")
    def _value_range(self) -> ThresholdParams:
        if self.mode == "proportional" and self.value > 1:
            raise ValueError("proportional threshold needs 0 < value <= 1")
        if self.mode == "knn" and self.value != int(self.value):
            raise ValueError("knn needs a whole number of neighbours")
        return self


def _is_symmetric(a: np.ndarray) -> bool:
    """Symmetric up to floating-point noise (np.corrcoef output differs from its transpose by ~1e-16)."""
    return bool(np.allclose(a, a.T, rtol=1e-9, atol=1e-12))


def _current(sample: Sample) -> np.ndarray:
    if "adjacency" in sample.arrays:
        return sample.arrays["adjacency"]
    if "matrix" in sample.arrays:
        return sample.arrays["matrix"]
    raise ItemError("no matrix yet; graph.read_matrix must come first")


@step("graph.threshold", ThresholdParams)
def threshold(sample: Sample, p: ThresholdParams) -> Sample:
    """Sparsify into `adjacency`: top fraction (top-k%), absolute strength or k nearest neighbours."""
    a = np.array(_current(sample), dtype=np.float64)
    n = a.shape[0]
    strength = np.abs(a) if p.use_abs else a.copy()
    off = ~np.eye(n, dtype=bool)
    symmetric = _is_symmetric(a)
    keep = np.zeros_like(off)
    if p.mode == "absolute":
        keep = off & (strength >= p.value)
    elif p.mode == "proportional":
        if symmetric:
            iu = np.triu_indices(n, k=1)
            order = np.argsort(-strength[iu], kind="stable")
            k = int(round(p.value * len(order)))
            rows, cols = iu[0][order[:k]], iu[1][order[:k]]
            keep[rows, cols] = True
            keep[cols, rows] = True
        else:
            ri, ci = np.nonzero(off)
            order = np.argsort(-strength[ri, ci], kind="stable")
            k = int(round(p.value * len(order)))
            keep[ri[order[:k]], ci[order[:k]]] = True
    else:
        k = min(int(p.value), n - 1)
        masked = np.where(off, strength, -np.inf)
        nearest = np.argsort(-masked, axis=1, kind="stable")[:, :k]
        keep[np.repeat(np.arange(n), k), nearest.reshape(-1)] = True
        if symmetric:
            keep |= keep.T
    if p.keep_diagonal:
        keep |= ~off
    out = np.where(keep, a, 0.0)
    sample.arrays["adjacency"] = out
    kept = int(np.count_nonzero(out[off]))
    sample.meta.update(
        threshold_mode=p.mode,
        threshold_value=float(p.value),
        edge_density=float(kept / max(1, n * (n - 1))),
    )
    return sample


# -------------------------------------------------------------------------------------------- to_edges


class ToEdgesParams(StepParams):
    features: Literal["rows", "adjacency_rows", "identity", "degree", "none"] = Field(
        "rows",
        description="node features: rows = rows of the unthresholded `matrix` (CLIMB/BrainGB); "
        "adjacency_rows = rows after thresholding; identity = one-hot (N, N); degree = weighted degree "
        "(N, 1); none = no node_features array",
    )
    self_loops: bool = Field(True, description="keep non-zero diagonal entries as edges (CLIMB keeps them)")
    triangle: Literal["full", "upper"] = Field(
        "full", description="full: both directions of every edge (PyG style); upper: i <= j only"
    )
    keep_matrix: bool = Field(False, description="keep the dense `matrix` / `adjacency` arrays in the output")


@step("graph.to_edges", ToEdgesParams)
def to_edges(sample: Sample, p: ToEdgesParams) -> Sample:
    """Non-zero entries -> `edge_index` (2,E) int32 + `edge_weight` (E,) float32, plus `node_features`."""
    a = _current(sample)
    n = a.shape[0]
    mask = (a != 0) & np.isfinite(a)
    if not p.self_loops:
        np.fill_diagonal(mask, False)
    if p.triangle == "upper":
        mask &= np.triu(np.ones((n, n), dtype=bool))
    rows, cols = np.nonzero(mask)  # row-major order, as CLIMB's np.nonzero
    sample.arrays["edge_index"] = np.stack([rows, cols]).astype(np.int32)
    sample.arrays["edge_weight"] = a[rows, cols].astype(np.float32)
    base = sample.arrays.get("matrix", a)
    if p.features == "rows":
        feats: np.ndarray | None = base
    elif p.features == "adjacency_rows":
        feats = a
    elif p.features == "identity":
        feats = np.eye(n)
    elif p.features == "degree":
        feats = a.sum(axis=1, keepdims=True)
    else:
        feats = None
    if feats is not None:
        sample.arrays["node_features"] = np.ascontiguousarray(feats, dtype=np.float32)
    if not p.keep_matrix:
        sample.arrays.pop("matrix", None)
        sample.arrays.pop("adjacency", None)
    sample.meta.update(
        num_nodes=int(n),
        num_edges=int(len(rows)),
        symmetric=_is_symmetric(a),
        has_self_loops=bool(np.any(rows == cols)),
    )
    return sample
