"""Tests of the graph steps on BrainGB-shaped connectome files written here (ABCD .npy stack + ID list,
ABIDE pickled dict, PPMI .mat cells with views, per-subject CSV): subject selection, thresholds and the
edge list CLIMB builds (non-zero entries, rows as node features).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import scipy.io
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.index import Item
from climb_cli.shards import build_schema, to_row
from climb_cli.steps import graph
from climb_cli.steps.base import Sample, registry


def run(sample: Sample, name: str, **params: Any) -> Sample:
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def correlations(n_subjects: int, n_nodes: int, seed: int = 0) -> np.ndarray:
    """Pearson correlation matrices of random time series: symmetric, unit diagonal."""
    rng = np.random.default_rng(seed)
    return np.stack([np.corrcoef(rng.normal(size=(n_nodes, 50))) for _ in range(n_subjects)])


def sample_for(item_id: str, **inputs: Path) -> Sample:
    return Sample(id=item_id, inputs=dict(inputs))


def test_registered_with_docs() -> None:
    for name in ("graph.read_matrix", "graph.threshold", "graph.to_edges"):
        definition = registry()[name]
        assert definition.doc, name
        assert all(f.description for f in definition.params.model_fields.values()), name


def test_abcd_stack_by_subject_id_list_index_and_pattern(tmp_path: Path) -> None:
    stack = correlations(5, 12)
    np.save(tmp_path / "abcd_rest-pearson-HCP2016.npy", stack)
    ids = ["NDARINV001", "NDARINV002", "NDARINV003", "NDARINV004", "NDARINV005"]
    (tmp_path / "ids_HCP2016.txt").write_text("\n".join(ids) + "\n")
    inputs = {"matrix": tmp_path / "abcd_rest-pearson-HCP2016.npy", "ids": tmp_path / "ids_HCP2016.txt"}
    s = run(sample_for("NDARINV003", **inputs), "graph.read_matrix", ids_input="ids")
    assert np.array_equal(s.arrays["matrix"], stack[2])
    assert s.meta["subject_index"] == 2 and s.meta["subject_id"] == "NDARINV003"
    assert s.meta["num_nodes"] == 12
    assert s.sources == [inputs["ids"], inputs["matrix"]]
    # the stack is memory-mapped: one subject does not load the whole file
    assert any(isinstance(v, np.memmap) for v in graph._cache.values())
    by_pattern = run(sample_for("abcd-4", **inputs), "graph.read_matrix", subject_pattern=r"-(\d+)$")
    assert np.array_equal(by_pattern.arrays["matrix"], stack[4])
    fixed = run(sample_for("x", **inputs), "graph.read_matrix", subject=0)
    assert np.array_equal(fixed.arrays["matrix"], stack[0])
    with pytest.raises(ItemError, match="stack of 5 matrices"):
        run(sample_for("x", **inputs), "graph.read_matrix")
    with pytest.raises(ItemError, match="out of range"):
        run(sample_for("x", **inputs), "graph.read_matrix", subject=5)
    with pytest.raises(ItemError, match="'NDARINV999' is not in ids_HCP2016.txt"):
        run(sample_for("NDARINV999", **inputs), "graph.read_matrix", ids_input="ids")
    with pytest.raises(ValidationError, match="either subject"):
        registry()["graph.read_matrix"].params.model_validate({"subject": 1, "ids_input": "ids"})


def test_abide_pickled_dict_needs_allow_pickle(tmp_path: Path) -> None:
    stack = correlations(3, 8, seed=1)
    path = tmp_path / "ABIDE.npy"
    np.save(path, {"corr": stack, "label": np.array([0, 1, 1]), "site": np.array(["NYU", "UM", "NYU"])})
    s = sample_for("abide-1", matrix=path)
    with pytest.raises(ItemError, match="allow_pickle"):
        run(s, "graph.read_matrix", key="corr", subject_pattern=r"(\d+)$")
    out = run(s, "graph.read_matrix", key="corr", subject_pattern=r"(\d+)$", allow_pickle=True)
    assert np.array_equal(out.arrays["matrix"], stack[1])
    with pytest.raises(ItemError, match="holds.*corr.*set key"):
        run(sample_for("abide-1", matrix=path), "graph.read_matrix", subject=1, allow_pickle=True)


def test_ppmi_mat_cells_with_views(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    cells = np.empty((3, 1), dtype=object)
    for i in range(3):
        cells[i, 0] = rng.normal(size=(6, 6, 3))
    scipy.io.savemat(tmp_path / "PPMI.mat", {"X": cells, "label": np.array([[-1], [1], [1]])})
    s = sample_for("ppmi-2", matrix=tmp_path / "PPMI.mat")
    out = run(s, "graph.read_matrix", key="X", subject_pattern=r"(\d+)$", view=0)
    assert np.allclose(out.arrays["matrix"], cells[2, 0][:, :, 0])  # CLIMB: X[i][0][:, :, 0]
    with pytest.raises(ItemError, match="label.*X|X.*label"):
        run(sample_for("ppmi-2", matrix=tmp_path / "PPMI.mat"), "graph.read_matrix", subject=2)
    with pytest.raises(ItemError, match="expected a square matrix"):
        run(sample_for("ppmi-2", matrix=tmp_path / "PPMI.mat"), "graph.read_matrix", key="X", subject=2)


def test_per_subject_text_matrix_and_nan(tmp_path: Path) -> None:
    m = correlations(1, 5, seed=3)[0]
    m[1, 3] = m[3, 1] = np.nan
    np.savetxt(tmp_path / "sub-01.csv", m, delimiter=",")
    with pytest.raises(ItemError, match="2 NaN/inf"):
        run(sample_for("sub-01", matrix=tmp_path / "sub-01.csv"), "graph.read_matrix")
    out = run(sample_for("sub-01", matrix=tmp_path / "sub-01.csv"), "graph.read_matrix", nan="zero")
    assert out.arrays["matrix"][1, 3] == 0 and out.meta["nonfinite_entries"] == 2
    assert np.allclose(out.arrays["matrix"][0], m[0])
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ItemError, match="bad.npy"):
        run(sample_for("b", matrix=tmp_path / "bad.npy"), "graph.read_matrix")


def matrix_sample(m: np.ndarray) -> Sample:
    return Sample(id="g", arrays={"matrix": np.asarray(m, dtype=np.float64)}, meta={"num_nodes": len(m)})


def test_proportional_threshold_keeps_the_strongest_pairs() -> None:
    n = 6
    iu = np.triu_indices(n, 1)
    weights = np.linspace(0.05, 0.75, len(iu[0])) * np.where(np.arange(len(iu[0])) % 2, -1, 1)
    m = np.eye(n)
    m[iu] = weights
    m[iu[1], iu[0]] = weights
    out = run(matrix_sample(m), "graph.threshold", mode="proportional", value=0.2)
    a = out.arrays["adjacency"]
    kept = {(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(a, 1)), strict=True)}
    strongest = np.argsort(-np.abs(weights))[:3]  # 20% of 15 pairs
    assert kept == {(int(iu[0][k]), int(iu[1][k])) for k in strongest}
    assert np.array_equal(a, a.T) and not np.diag(a).any()
    assert out.meta["edge_density"] == pytest.approx(6 / 30)
    assert np.array_equal(out.arrays["matrix"], m)  # the raw matrix is kept for node features
    signed = run(matrix_sample(m), "graph.threshold", mode="proportional", value=0.2, use_abs=False)
    assert (signed.arrays["adjacency"] >= 0).all()


def test_absolute_and_knn_thresholds() -> None:
    m = correlations(1, 10, seed=4)[0]
    out = run(matrix_sample(m), "graph.threshold", mode="absolute", value=0.3)
    a = out.arrays["adjacency"]
    off = ~np.eye(10, dtype=bool)
    assert np.array_equal(a[off] != 0, np.abs(m[off]) >= 0.3)
    knn = run(matrix_sample(m), "graph.threshold", mode="knn", value=2).arrays["adjacency"]
    assert np.array_equal(knn != 0, (knn != 0).T)
    masked = np.where(off, np.abs(m), -1)
    for i in range(10):
        best = np.argsort(-masked[i])[:2]
        assert (knn[i, best] != 0).all()
    assert ((knn != 0).sum(axis=1) >= 2).all()
    with pytest.raises(ValidationError, match="0 < value <= 1"):
        registry()["graph.threshold"].params.model_validate({"mode": "proportional", "value": 5})


def test_to_edges_climb_defaults_all_nonzero_entries_and_matrix_rows() -> None:
    m = correlations(1, 7, seed=5)[0]
    m[0, 4] = m[4, 0] = 0.0
    out = run(matrix_sample(m), "graph.to_edges")
    ei, ew = out.arrays["edge_index"], out.arrays["edge_weight"]
    rows, cols = np.nonzero(m)  # CLIMB's _adj_to_edge_index
    assert ei.dtype == np.int32 and ei.shape == (2, 49 - 2)
    assert np.array_equal(ei, np.stack([rows, cols]))
    assert ew.dtype == np.float32 and np.allclose(ew, m[rows, cols])
    assert out.arrays["node_features"].dtype == np.float32
    assert np.allclose(out.arrays["node_features"], m)
    assert out.meta["num_edges"] == 47 and out.meta["num_nodes"] == 7
    assert out.meta["symmetric"] and out.meta["has_self_loops"]
    assert "matrix" not in out.arrays
    pairs = set(zip(ei[0].tolist(), ei[1].tolist(), strict=True))
    assert pairs == {(j, i) for i, j in pairs}


def test_to_edges_after_threshold_uses_adjacency_for_edges_and_raw_rows_for_features() -> None:
    m = correlations(1, 8, seed=6)[0]
    s = run(matrix_sample(m), "graph.threshold", mode="proportional", value=0.25)
    adjacency = s.arrays["adjacency"].copy()
    out = run(s, "graph.to_edges", self_loops=False)
    assert out.meta["num_edges"] == 2 * round(0.25 * 28)
    assert np.allclose(out.arrays["node_features"], m)
    upper = run(run(matrix_sample(m), "graph.threshold", value=0.25), "graph.to_edges", triangle="upper")
    assert upper.meta["num_edges"] == round(0.25 * 28)
    assert (upper.arrays["edge_index"][0] <= upper.arrays["edge_index"][1]).all()
    feats = run(
        run(matrix_sample(m), "graph.threshold", value=0.25), "graph.to_edges", features="adjacency_rows"
    )
    assert np.allclose(feats.arrays["node_features"], adjacency)
    deg = run(matrix_sample(m), "graph.to_edges", features="degree", keep_matrix=True)
    assert deg.arrays["node_features"].shape == (8, 1) and "matrix" in deg.arrays
    none = run(matrix_sample(m), "graph.to_edges", features="none")
    assert "node_features" not in none.arrays


def test_graph_output_fits_a_parquet_row(tmp_path: Path) -> None:
    np.save(tmp_path / "stack.npy", correlations(2, 5, seed=7))
    s = run(sample_for("s-1", matrix=tmp_path / "stack.npy"), "graph.read_matrix", subject_pattern=r"(\d+)$")
    s = run(run(s, "graph.threshold", value=0.3), "graph.to_edges")
    item = Item(id="s-1", split="train", labels=("F",), inputs={"matrix": "stack.npy"})
    schema = build_schema(s, item, ["M", "F"], False)
    row = to_row(schema, item, s, ["M", "F"], [("stack.npy", "0" * 64)], "h")
    table = pa.Table.from_pylist([row], schema=schema)
    assert table.column("edge_index_shape").to_pylist() == [[2, s.meta["num_edges"]]]
    assert table.column("node_features_shape").to_pylist() == [[5, 5]]
