"""text.caption_filter with a tiny BERT written by transformers in the test (2 layers, a small vocabulary)
standing in for PubMedBERT: the scores are CLIMB's (normalised CLS embeddings, cosine to one embedding of the
keywords joined with ", "), the kept rows are those above the threshold in shard order, null captions are
counted, and a missing extra is one line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, registry

torch = pytest.importorskip("torch", reason="torch is the optional extra climb-cli[laion]")
pytest.importorskip("transformers", reason="transformers is the optional extra climb-cli[laion]")

WORDS = (
    "x ray chest pneumonia fracture mri ct scan ultrasound fundus melanoma nevus a cat dog on the beach "
    "sunset car for sale shoes red blue , / ecg eeg mammo dermoscopy retinal polyp pet endoscopic lung"
)


def tiny_bert(folder: Path, seed: int = 0) -> Path:
    """A 2-layer BERT and its WordPiece tokenizer saved with save_pretrained; returns config.json."""
    from transformers import BertConfig, BertModel, BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(WORDS.split()))]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(str(folder / "vocab.txt"), do_lower_case=True).save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512)  # fmt: skip
    BertModel(config).eval().save_pretrained(str(folder))
    return folder / "config.json"


def climb_scores(folder: Path, captions: list[str], keywords: list[str]) -> np.ndarray:
    """CLIMB's laion.py as written: get_embeddings (batch 64, max_length 512), normalise, cosine."""
    from transformers import AutoModel, AutoTokenizer

    tok, model = AutoTokenizer.from_pretrained(str(folder)), AutoModel.from_pretrained(str(folder))

    def emb(texts: list[str]) -> Any:
        out = []
        for i in range(0, len(texts), 64):
            enc = tok(texts[i : i + 64], padding=True, truncation=True, max_length=512, return_tensors="pt")
            with torch.no_grad():
                out.append(model(**enc).last_hidden_state[:, 0, :])
        return torch.cat(out, dim=0)

    f = torch.nn.functional
    k = f.normalize(emb([", ".join(keywords)]), p=2, dim=1)
    return f.cosine_similarity(f.normalize(emb(captions), p=2, dim=1), k).numpy()


def run(sample: Sample, **params: Any) -> Sample:
    definition = registry()["text.caption_filter"]
    return definition.fn(sample, definition.params.model_validate(params))


def _shard(path: Path, captions: list[str | None]) -> Path:
    n = len(captions)
    table = pa.table({
        "url": [f"http://img.example/{i}.jpg" for i in range(n)],
        "caption": captions,
        "key": [f"{i:09d}" for i in range(n)],
        "width": list(range(100, 100 + n)),
    })  # fmt: skip
    pq.write_table(table, path)
    return path


CAPTIONS = [
    "chest x ray pneumonia", "a cat on the beach", "mri ct scan", "red shoes for sale", "fundus retinal",
    "dog", "ecg eeg", "sunset car", "melanoma nevus dermoscopy", "blue car for sale", "lung ct scan",
]  # fmt: skip


def test_scores_and_kept_rows_are_climbs(tmp_path: Path) -> None:
    config = tiny_bert(tmp_path / "model")
    from climb_cli.steps.captions import CLIMB_MEDICAL_KEYWORDS

    want = climb_scores(config.parent, CAPTIONS, CLIMB_MEDICAL_KEYWORDS)
    threshold = float(np.median(want))
    shard = _shard(tmp_path / "part-00000.parquet", [*CAPTIONS[:5], None, *CAPTIONS[5:]])
    s = run(Sample("part-00000", inputs={"table": shard, "model": config}), threshold=threshold,
            keep=["key", "width"], read_batch=4, batch_size=3)  # fmt: skip
    keep = [i for i, v in enumerate(want) if v > threshold]
    assert 0 < len(keep) < len(CAPTIONS)
    assert s.meta["caption"] == [CAPTIONS[i] for i in keep]
    row_of = [i if i < 5 else i + 1 for i in range(len(CAPTIONS))]  # the null caption sits at row 5
    assert s.meta["url"] == [f"http://img.example/{row_of[i]}.jpg" for i in keep]
    assert s.meta["key"] == [f"{row_of[i]:09d}" for i in keep] and s.meta["width"] == [
        100 + row_of[i] for i in keep
    ]
    assert np.allclose(s.arrays["similarity"], want[keep], atol=1e-5)
    assert s.arrays["similarity"].dtype == np.float32
    assert (s.meta["captions_read"], s.meta["captions_kept"], s.meta["captions_null"]) == (12, len(keep), 1)


def test_a_shard_with_nothing_medical_is_a_row_of_none_and_bad_inputs_are_one_line(tmp_path: Path) -> None:
    config = tiny_bert(tmp_path / "model")
    shard = _shard(tmp_path / "p.parquet", ["a cat", "sunset"])
    s = run(Sample("p", inputs={"table": shard, "model": config}), threshold=1.0)
    assert s.meta["caption"] == [] and s.arrays["similarity"].shape == (0,) and s.meta["captions_read"] == 2
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "q.parquet")
    with pytest.raises(ItemError, match="q.parquet: no column 'caption'"):
        run(Sample("q", inputs={"table": tmp_path / "q.parquet", "model": config}))
    (tmp_path / "r.parquet").write_bytes(b"not parquet")
    with pytest.raises(ItemError, match="r.parquet: not a readable Parquet file"):
        run(Sample("r", inputs={"table": tmp_path / "r.parquet", "model": config}))
    with pytest.raises(ItemError, match="config.json is not there"):
        run(Sample("p", inputs={"table": shard, "model": tmp_path / "nomodel" / "config.json"}))
