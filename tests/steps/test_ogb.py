"""graph.read_ogb: graph i of OGB's concatenated raw CSVs (tests/recipes/test_graph.py builds whole
datasets with it); here the refusals."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample
from climb_cli.steps.ogb import ReadOgbParams, read_ogb


def _raw(tmp_path: Path, edges: list[str]) -> Path:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, lines in {"num-node-list": ["2", "3"], "num-edge-list": ["1", "2"], "edge": edges}.items():
        (raw / f"{name}.csv.gz").write_bytes(gzip.compress("".join(f"{x}\n" for x in lines).encode()))
    return raw / "num-node-list.csv.gz"


def test_slices_and_refusals(tmp_path: Path) -> None:
    path = _raw(tmp_path, ["0,1", "0,2", "2,1"])
    s = read_ogb(Sample(id="1", inputs={"raw": path}), ReadOgbParams())
    np.testing.assert_array_equal(s.arrays["edge_index"], [[0, 2], [2, 1]])
    assert s.meta == {"num_nodes": 3, "num_edges": 2} and "node_features" not in s.arrays
    with pytest.raises(ItemError, match=r"graph 2 is not in .* \(2 graphs\)"):
        read_ogb(Sample(id="2", inputs={"raw": path}), ReadOgbParams())
    with pytest.raises(ItemError, match="'x' is not an integer"):
        read_ogb(Sample(id="x", inputs={"raw": path}), ReadOgbParams())


def test_edge_count_must_match(tmp_path: Path) -> None:
    path = _raw(tmp_path, ["0,1"])
    with pytest.raises(ItemError, match="does not hold the 3 edges listed"):
        read_ogb(Sample(id="0", inputs={"raw": path}), ReadOgbParams())
