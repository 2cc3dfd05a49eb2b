"""Graphs from OGB's raw CSVs (ogbg-molhiv, ogbg-ppa): `graph.read_ogb`.

OGB's graph-property zips keep all graphs concatenated in `<name>/raw/`: `num-node-list.csv.gz` and
`num-edge-list.csv.gz` (one count per graph), `edge.csv.gz` (one `src,dst` row per edge, node numbers
local to the graph), and optionally `node-feat.csv.gz` / `edge-feat.csv.gz` (one row per node / edge).
Graph i is the i-th slice of each, found from the cumulative counts: what ogb's `read_csv_graph_raw`
does. The files are read once per worker process (cached by path, size and mtime), so a build over
158,100 graphs reads them once, not once per graph.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
from pydantic import Field

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, step

_CACHE: dict[tuple[str, int, int], dict[str, np.ndarray | None]] = {}
_LOCK = threading.Lock()


def _csv(path: Path, dtype: str) -> np.ndarray | None:
    import pandas as pd

    if not path.is_file():
        return None
    return pd.read_csv(path, header=None, compression="infer").to_numpy(dtype=dtype)


def _load(raw: Path) -> dict[str, np.ndarray | None]:
    st = (raw / "num-node-list.csv.gz").stat()
    key = (str(raw.resolve()), st.st_size, st.st_mtime_ns)
    with _LOCK:
        if key in _CACHE:
            return _CACHE[key]
        nodes = _csv(raw / "num-node-list.csv.gz", "int64")
        edges = _csv(raw / "num-edge-list.csv.gz", "int64")
        if nodes is None or edges is None:
            raise ItemError(f"{raw}: needs num-node-list.csv.gz and num-edge-list.csv.gz")
        n, e = nodes.reshape(-1), edges.reshape(-1)
        edge_start = np.concatenate([[0], np.cumsum(e)])
        edge = _csv(raw / "edge.csv.gz", "int64")
        data = {
            "node_start": np.concatenate([[0], np.cumsum(n)]),
            "edge_start": edge_start,
            "edge": edge,
            "node_feat": _csv(raw / "node-feat.csv.gz", "float32"),
            "edge_feat": _csv(raw / "edge-feat.csv.gz", "float32"),
        }
        if edge is None or len(edge) != edge_start[-1]:
            raise ItemError(f"{raw}: edge.csv.gz is missing or does not hold the {int(e.sum())} edges listed")
        _CACHE.clear()  # one dataset at a time per process
        _CACHE[key] = data
        return data


class ReadOgbParams(StepParams):
    input: str = Field("raw", description="sample input: the graph set's raw/num-node-list.csv.gz")
    index_column: str | None = Field(
        None, description="kept column holding the graph number (default: the item id, as with id: _row)"
    )


@step("graph.read_ogb", ReadOgbParams)
def read_ogb(sample: Sample, p: ReadOgbParams) -> Sample:
    """One graph of an OGB raw/ folder -> `edge_index` (2, E), `node_features`, `edge_features`."""
    path = sample.input(p.input)
    if not path.is_file():
        raise ItemError(f"{path.name}: not found")
    raw = path.parent
    value = sample.fields.get(p.index_column, "") if p.index_column else sample.id
    try:
        i = int(value)
    except ValueError:
        raise ItemError(f"graph number {value!r} is not an integer") from None
    d = _load(raw)
    ns, es = d["node_start"], d["edge_start"]
    assert ns is not None and es is not None
    if not 0 <= i < len(ns) - 1:
        raise ItemError(f"graph {i} is not in {raw} ({len(ns) - 1} graphs)")
    e0, e1, n0, n1 = int(es[i]), int(es[i + 1]), int(ns[i]), int(ns[i + 1])
    edge = d["edge"]
    assert edge is not None
    sample.arrays["edge_index"] = np.ascontiguousarray(edge[e0:e1].T)
    if d["node_feat"] is not None:
        sample.arrays["node_features"] = np.ascontiguousarray(d["node_feat"][n0:n1])
    if d["edge_feat"] is not None:
        sample.arrays["edge_features"] = np.ascontiguousarray(d["edge_feat"][e0:e1])
    sample.meta.update(num_nodes=n1 - n0, num_edges=e1 - e0)
    for name in ("num-node-list", "num-edge-list", "edge", "node-feat", "edge-feat"):
        f = raw / f"{name}.csv.gz"
        if f.is_file() and f not in sample.sources:
            sample.sources.append(f)
    return sample
