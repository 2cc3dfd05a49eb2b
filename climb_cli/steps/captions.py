"""CLIMB's medical caption filter for LAION (`text.caption_filter`): score every caption of a Parquet shard
by the cosine similarity of its BERT CLS embedding to one embedding of CLIMB's medical keywords joined
with ", ", and keep the captions above a threshold.

CLIMB's `pretrain/laion.py`: PubMedBERT (`microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext`),
tokenizer with padding, truncation, max_length 512; `last_hidden_state[:, 0, :]`; both embeddings
L2-normalised, then `torch.nn.functional.cosine_similarity`; keep `similarity > 0.3`; captions embedded 64 at
a time inside dataset batches of 1024. The model is read from a local folder (a pinned Hugging Face source
of the recipe, `local_files_only`): no download at run time. `transformers` and `torch` are the optional extra
`climb-cli[laion]`; without them the step fails with one line saying so.

Output (one row per shard, so a shard with no medical caption is a row, not an error): the float32 array
`similarity` (one score per kept caption, in the shard's row order), meta lists `caption`, `url` (and any
`keep` columns) of the kept rows, and the counts `captions_read`, `captions_kept`, `captions_null` (a null
caption cannot be embedded: counted, never kept). CLIMB's global "top 1,000,000 by score" is taken over all
shards by the images stage (`climb download laion_medical --stage images`).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, StepParams, item_errors, step

#: CLIMB's `medical_keywords` (pretrain/laion.py), in its order; joined with ", " into one query.
CLIMB_MEDICAL_KEYWORDS = [
    "akiec", "atelectasis", "basal cell carcinoma", "benign",
    "birad 1", "birad 2", "birad 3", "birad 4", "birad 5",
    "cardiomegaly", "consolidation", "edema", "enlarged cardiomediastinum",
    "fracture", "has nodule", "lung lesion", "lung opacity", "malignant",
    "melanoma", "mild", "moderate", "nevus", "no nodule", "pleural effusion",
    "pleural other", "pneumonia", "pneumothorax", "proliferative",
    "support devices", "EHR", "Radiology Reports", "ECG", "EEG",
    "Vital Sign", "CXR", "X-ray", "Mammo", "Dermoscopy", "Fundus",
    "Ultrasound", "Retinal", "Polyp", "CT Scan", "MRI", "PET/CT", "Endoscopic",
]  # fmt: skip

_MODELS: dict[str, tuple[Any, Any, Any]] = {}  # model folder -> (tokenizer, model, keyword embedding)
_LOCK = threading.Lock()


class CaptionFilterParams(StepParams):
    input: str = Field("table", description="sample input: a Parquet file of captions (a LAION shard)")
    model: str = Field(
        "model",
        description="sample input: the model's config.json (its folder holds the tokenizer and weights)",
    )
    text_column: str = Field("caption", description="the caption column (ReLAION: caption)")
    url_column: str = Field("url", description="the image URL column (ReLAION: url)")
    keep: list[str] = Field(default_factory=list, description="more columns of the kept rows, as meta lists")
    keywords: list[str] = Field(
        default_factory=lambda: list(CLIMB_MEDICAL_KEYWORDS),
        min_length=1,
        description="joined with ', ' into the one query CLIMB embeds (default: CLIMB's medical keywords)",
    )
    threshold: float = Field(0.3, description="keep captions whose cosine similarity is > this (CLIMB: 0.3)")
    max_length: int = Field(512, ge=8, description="tokenizer truncation (CLIMB: 512)")
    batch_size: int = Field(64, ge=1, description="captions per forward pass (CLIMB's get_embeddings: 64)")
    read_batch: int = Field(
        1024, ge=1, description="Parquet rows read at a time (CLIMB: dataset batches of 1024)"
    )


def _load(folder: Path, max_length: int, keywords: list[str]) -> tuple[Any, Any, Any]:
    try:
        import torch  # type: ignore[import-not-found,unused-ignore]
        from transformers import AutoModel, AutoTokenizer  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        raise ItemError(
            "text.caption_filter needs transformers and torch: pip install 'climb-cli[laion]'"
        ) from None
    key = f"{folder.resolve()}\0{max_length}\0{', '.join(keywords)}"
    with _LOCK:
        if key not in _MODELS:
            try:
                tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                model = AutoModel.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ItemError(
                    f"{folder.name}: cannot load the model ({' '.join(str(exc).split())[:160]})"
                ) from None
            model.eval()
            query = _embed(tok, model, [", ".join(keywords)], max_length, 1)
            _MODELS[key] = (tok, model, torch.nn.functional.normalize(query, p=2, dim=1))
        return _MODELS[key]


def _embed(tok: Any, model: Any, texts: list[str], max_length: int, batch_size: int) -> Any:
    """CLS embeddings of `texts`, `batch_size` at a time (CLIMB's get_embeddings)."""
    import torch  # type: ignore[import-not-found,unused-ignore]

    parts = []
    for i in range(0, len(texts), batch_size):
        enc = tok(texts[i : i + batch_size], padding=True, truncation=True, max_length=max_length,
                  return_tensors="pt")  # fmt: skip
        with torch.no_grad():
            parts.append(model(**enc).last_hidden_state[:, 0, :])
    return torch.cat(parts, dim=0)


def scores(
    tok: Any, model: Any, query: Any, texts: list[str], max_length: int, batch_size: int
) -> np.ndarray:
    """Cosine similarity of each text's normalised CLS embedding to the normalised query embedding."""
    import torch  # type: ignore[import-not-found,unused-ignore]

    if not texts:
        return np.zeros(0, dtype=np.float32)
    emb = torch.nn.functional.normalize(_embed(tok, model, texts, max_length, batch_size), p=2, dim=1)
    return torch.nn.functional.cosine_similarity(emb, query).numpy().astype(np.float32)


@step("text.caption_filter", CaptionFilterParams)
def caption_filter(sample: Sample, p: CaptionFilterParams) -> Sample:
    """Score a Parquet shard's captions against CLIMB's medical keywords; keep those above the threshold."""
    import pyarrow.parquet as pq

    path, config = sample.input(p.input), sample.input(p.model)
    if not config.is_file():
        raise ItemError(f"{config.name}: the model's config.json is not there (download the model source)")
    tok, model, query = _load(config.parent, p.max_length, p.keywords)
    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - any pyarrow failure is this file's fault
        raise ItemError(
            f"{path.name}: not a readable Parquet file ({' '.join(str(exc).split())[:160]})"
        ) from None
    columns = [p.text_column, p.url_column, *p.keep]
    missing = [c for c in columns if c not in pf.schema_arrow.names]
    if missing:
        raise ItemError(
            f"{path.name}: no column {missing[0]!r} (columns: {', '.join(pf.schema_arrow.names)})"
        )
    kept: dict[str, list[Any]] = {c: [] for c in columns}
    sims: list[np.ndarray] = []
    read = nulls = 0
    for batch in pf.iter_batches(batch_size=p.read_batch, columns=columns):
        cols = {c: batch.column(c).to_pylist() for c in columns}
        texts = cols[p.text_column]
        read += len(texts)
        ok = [i for i, t in enumerate(texts) if isinstance(t, str)]
        nulls += len(texts) - len(ok)
        with item_errors(f"{path.name}: the model failed on rows {read - len(texts)}..{read - 1}"):
            s = scores(tok, model, query, [texts[i] for i in ok], p.max_length, p.batch_size)
        for i, score in zip(ok, s, strict=True):
            if score > p.threshold:
                for c in columns:
                    kept[c].append(cols[c][i])
                sims.append(score)
    sample.arrays["similarity"] = np.asarray(sims, dtype=np.float32)
    sample.meta["caption"] = kept.pop(p.text_column)
    sample.meta["url"] = kept.pop(p.url_column)
    for c, values in kept.items():
        sample.meta[c] = values
    sample.meta["captions_read"] = read
    sample.meta["captions_kept"] = len(sims)
    sample.meta["captions_null"] = nulls
    sample.meta["similarity_threshold"] = p.threshold
    sample.sources.append(path)
    return sample
