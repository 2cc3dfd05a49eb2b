"""NPZ shards: same rows give the same bytes; stacked arrays when shapes agree, offsets when not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from climb_cli.index import Item
from climb_cli.shards import NpzShardWriter, build_schema, shard_rows, to_row
from climb_cli.steps.base import Sample


def _write(path: Path, shapes: list[tuple[int, ...]]) -> tuple[int, int, str]:
    samples = [
        Sample(id=f"i{k}", arrays={"x": np.arange(np.prod(s), dtype=np.float32).reshape(s)}, meta={"hz": 100})
        for k, s in enumerate(shapes)
    ]
    items = [Item(f"i{k}", "train", ("a",), {}, {"site": "s"}) for k in range(len(shapes))]
    schema = build_schema(samples, items[0], ["a", "b"], False)
    w = NpzShardWriter(schema, path)
    for it, s in zip(items, samples, strict=True):
        w.add(to_row(schema, it, s, ["a", "b"], [("f.bin", "0" * 64)], "h"))
    return w.commit()


def test_npz_shards_are_deterministic_and_readable(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.npz", [(2, 3), (2, 3)])
    b = _write(tmp_path / "b.npz", [(2, 3), (2, 3)])
    assert a[0] == 2 and a[2] == b[2] and shard_rows(tmp_path / "a.npz") == 2
    with np.load(tmp_path / "a.npz", allow_pickle=False) as z:
        assert z["x"].shape == (2, 2, 3) and z["x_shape"].tolist() == [[2, 3], [2, 3]]
        assert z["target"].tolist() == [[1, 0], [1, 0]] and json.loads(str(z["labels"][0])) == ["a"]
        assert z["id"].tolist() == ["i0", "i1"] and z["hz"].tolist() == [100, 100] and z["site"][0] == "s"
    _write(tmp_path / "c.npz", [(2, 3), (4,)])
    with np.load(tmp_path / "c.npz", allow_pickle=False) as z:
        assert z["x"].shape == (10,) and z["x_offsets"].tolist() == [0, 6, 10]
        assert z["x_shape"].tolist() == [[2, 3], [4, -1]]  # -1 pads a shape with fewer axes


def test_an_npz_shard_whose_items_all_failed_is_written_empty(tmp_path: Path) -> None:
    # every item of a shard can fail (one CT series alone in its split, with a lost slice): the shard is
    # still committed, with zero rows, instead of the commit raising on reshaping the empty target
    sample = Sample(id="i0", arrays={"x": np.zeros((2, 3), dtype=np.float32)}, meta={})
    schema = build_schema([sample], Item("i0", "test", ("a",), {}, {}), ["a", "b"], False)
    rows, _, _ = NpzShardWriter(schema, tmp_path / "e.npz").commit()
    assert rows == 0 and shard_rows(tmp_path / "e.npz") == 0
    with np.load(tmp_path / "e.npz", allow_pickle=False) as z:
        assert z["target"].shape == (0, 0) and z["id"].shape == (0,)
