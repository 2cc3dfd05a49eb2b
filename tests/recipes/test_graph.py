"""OGB recipes end to end: OGB's zip in its real layout (mapping/, raw/, split/<scheme>/) over HTTP,
extracted, labels and the membership split checked row by row."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import fast_settings
from tests.fakes.bucket import FakeBucket
from tests.recipes.conftest import build, packaged, rewritten
from tests.sources.test_manual import _zip


@pytest.fixture
def store() -> Iterator[FakeBucket]:
    with FakeBucket() as s:
        yield s


def _gz(lines: list[str]) -> bytes:
    return gzip.compress("".join(f"{x}\n" for x in lines).encode())


def _graphs(
    rng: np.random.Generator, n: int, node_feat: int, edge_feat: int, prefix: str
) -> tuple[dict, list]:
    """OGB raw/ files for n random graphs, and each graph's (edges, node features, edge features)."""
    graphs, nodes, edges, nf, ef = [], [], [], [], []
    for _ in range(n):
        k = int(rng.integers(2, 6))
        e = rng.integers(0, k, (int(rng.integers(1, 5)), 2))
        x = rng.integers(0, 9, (k, node_feat))
        f = rng.integers(0, 4, (len(e), edge_feat))
        graphs.append((e, x, f))
        nodes.append(str(k))
        edges.append(str(len(e)))
        edges_rows = [f"{a},{b}" for a, b in e]
        nf += [",".join(map(str, r)) for r in x]
        ef += [",".join(map(str, r)) for r in f]
        graphs[-1] = (e, x, f, edges_rows)
    out = {
        f"{prefix}/raw/num-node-list.csv.gz": _gz(nodes),
        f"{prefix}/raw/num-edge-list.csv.gz": _gz(edges),
        f"{prefix}/raw/edge.csv.gz": _gz([r for g in graphs for r in g[3]]),
        f"{prefix}/raw/edge-feat.csv.gz": _gz(ef),
    }
    if node_feat:
        out[f"{prefix}/raw/node-feat.csv.gz"] = _gz(nf)
    return out, graphs


def _check_graph(r: dict, g: tuple, node_feat: bool) -> None:
    e, x, f, _ = g
    assert r["edge_index_shape"] == [2, len(e)] and r["edge_index"] == e.T.reshape(-1).tolist()
    assert r["edge_features"] == f.reshape(-1).astype(float).tolist() and r["num_nodes"] == len(x)
    if node_feat:
        assert r["node_features"] == x.reshape(-1).astype(float).tolist()


def _serve(store: FakeBucket, data: dict, key: str, members: dict[str, bytes]) -> None:
    store.put("snap", key, _zip(members))
    assert data["sources"][0]["files"][0]["url"] == f"http://snap.stanford.edu/{key}"
    data["sources"][0]["files"][0]["url"] = store.url("snap", key)


def test_ogbg_molhiv_zip(tmp_path: Path, store: FakeBucket) -> None:
    rng = np.random.default_rng(3)
    n = 12
    active = rng.integers(0, 2, n)
    order = rng.permutation(n)
    raw, graphs = _graphs(rng, n, 9, 3, "hiv")
    parts = {"train": order[:8], "valid": order[8:10], "test": order[10:]}
    members = {
        "hiv/mapping/mol.csv.gz": _gz(
            ["HIV_active,smiles,mol_id"] + [f"{a},C{'C' * i}N,{i}" for i, a in enumerate(active)]
        ),
        "hiv/raw/graph-label.csv.gz": _gz([str(a) for a in active]),
        **raw,
        **{f"hiv/split/scaffold/{s}.csv.gz": _gz([str(i) for i in idx]) for s, idx in parts.items()},
    }
    data = packaged("ogbg_molhiv")
    _serve(store, data, "ogb/data/graphproppred/csv_mol_download/hiv.zip", members)
    data.pop("expect")  # the full dataset's split sizes
    rows, manifest = build(rewritten(tmp_path, data), fast_settings(tmp_path))
    split_of = {int(i): s for s, idx in parts.items() for i in idx}
    assert [int(r["id"]) for r in sorted(rows, key=lambda r: int(r["id"]))] == list(range(n))
    for r in rows:
        i = int(r["id"])
        assert r["split"] == split_of[i] and r["labels"] == [["inactive", "active"][active[i]]]
        assert r["smiles"] == f"C{'C' * i}N" and r["mol_id"] == str(i)
        _check_graph(r, graphs[i], node_feat=True)
    assert manifest["splits"] == {"test": 2, "train": 8, "valid": 2}


def test_ogbg_ppa_zip(tmp_path: Path, store: FakeBucket) -> None:
    rng = np.random.default_rng(4)
    n = 10
    label = rng.integers(0, 37, n)
    raw, graphs = _graphs(rng, n, 0, 7, "ppa")
    parts = {"train": range(0, 6), "valid": range(6, 8), "test": range(8, 10)}
    members = {
        "ppa/raw/graph-label.csv.gz": _gz([str(v) for v in label]),
        **raw,
        **{f"ppa/split/species/{s}.csv.gz": _gz([str(i) for i in idx]) for s, idx in parts.items()},
    }
    data = packaged("ogbg_ppa")
    _serve(store, data, "ogb/data/graphproppred/ppa.zip", members)
    data.pop("expect")
    rows, _ = build(rewritten(tmp_path, data), fast_settings(tmp_path))
    assert len(rows) == n
    for r in rows:
        i = int(r["id"])
        assert r["labels"] == [str(label[i])] and r["split"] == next(
            s for s, idx in parts.items() if i in idx
        )
