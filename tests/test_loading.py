"""The loading recipes of docs/recipes.md: Parquet shards into a torch Dataset (where torch installs;
it is not a climb dependency), and NPZ shards with plain numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from climb_cli.pipeline import preprocess
from tests.test_index import _lang


def _built(tmp_path: Path, fmt: str) -> Path:
    import cv2

    rng = np.random.default_rng(0)
    files: dict[str, bytes | str] = {"t.csv": "id,y\n" + "".join(f"i{k},{'ab'[k % 2]}\n" for k in range(8))}
    for k in range(8):
        files[f"i{k}.png"] = cv2.imencode(".png", rng.integers(0, 255, (4, 5), dtype=np.uint8))[1].tobytes()
    index = (
        "index:\n  table: {path: t.csv}\n  id: id\n  inputs: {image: '{id}.png'}\n"
        "  labels: {column: y, classes: [a, b]}\n"
        "  split: {random: {fractions: {train: 0.5, test: 0.5}, stratify: labels}}\n"
        f"steps:\n  - image.read: {{input: image}}\noutput: {{format: {fmt}}}\n"
    )
    recipe, settings = _lang(tmp_path, index, files)
    return preprocess(recipe, settings, workers=1).out_dir / "data"


def test_parquet_shards_into_a_torch_dataset(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    import pyarrow.dataset as pads

    class ClimbShards(torch.utils.data.Dataset):  # as in docs/recipes.md
        def __init__(self, folder, split, array="signal"):  # noqa: ANN001
            t = pads.dataset(folder, format="parquet").to_table(filter=pads.field("split") == split)
            self.x, self.shape, self.y = t.column(array), t.column(f"{array}_shape"), t.column("target")

        def __len__(self):  # noqa: ANN204
            return len(self.x)

        def __getitem__(self, i):  # noqa: ANN001, ANN204
            x = np.asarray(self.x[i].as_py(), dtype=np.float32).reshape(self.shape[i].as_py())
            return torch.from_numpy(x), torch.tensor(self.y[i].as_py())

    ds = ClimbShards(_built(tmp_path, "parquet"), "train", array="image")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert len(ds) == 4 and batch[0].shape == (4, 4, 5) and batch[0].dtype == torch.float32
    assert sorted(batch[1].argmax(1).tolist()) == [0, 0, 1, 1]  # two of each class (stratified)


def test_npz_shards_with_numpy(tmp_path: Path) -> None:
    shards = sorted(_built(tmp_path, "npz").glob("train-*.npz"))
    with np.load(shards[0]) as z:
        assert z["image"].shape == (4, 4, 5) and z["target"].shape == (4, 2) and len(z["id"]) == 4
