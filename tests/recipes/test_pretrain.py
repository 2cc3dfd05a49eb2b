"""laion_medical end to end with the packaged recipe: a LAION-like Parquet (ReLAION's `url`, `caption`, ...)
in a gated dataset repository behind the fake Hugging Face Hub, a tiny BERT (written by transformers here)
as the pinned model repository standing in for PubMedBERT, both pinned on the first download; the caption
filter's scores checked against CLIMB's code; then the images stage against a fake image host with a dead
(404), a slow and a non-image URL: the run finishes, counts 3 dead, and a rerun fetches nothing new."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from climb_cli.acquire import download
from climb_cli.images import fetch_images
from climb_cli.steps.captions import CLIMB_MEDICAL_KEYWORDS
from climb_cli.verify import verify_raw
from tests.conftest import SECRETS, fast_settings
from tests.fakes.huggingface import FakeHub, HubFile, HubRepo
from tests.fakes.image_host import FakeImageHost
from tests.recipes.conftest import packaged, rewritten
from tests.test_miniatures import _build

torch = pytest.importorskip("torch", reason="torch is the optional extra climb-cli[laion]")
pytest.importorskip("transformers", reason="transformers is the optional extra climb-cli[laion]")

from tests.steps.test_captions import climb_scores, tiny_bert  # noqa: E402

TOKEN = SECRETS[0]
DATA_COMMIT, MODEL_COMMIT = "1" * 40, "2" * 40
PUBMEDBERT = "microsoft/BiomedNLP-PubMedBERT-base-uncased-abstract-fulltext"


def _model_files(tmp_path: Path) -> list[HubFile]:
    """The tiny BERT as the PubMedBERT repository holds it: config.json, vocab.txt, pytorch_model.bin."""
    from transformers import BertModel

    config = tiny_bert(tmp_path / "tiny")
    weights = tmp_path / "pytorch_model.bin"
    torch.save(BertModel.from_pretrained(str(config.parent)).state_dict(), weights)
    return [
        HubFile("config.json", config.read_bytes(), lfs=False),
        HubFile("vocab.txt", (config.parent / "vocab.txt").read_bytes(), lfs=False),
        HubFile("pytorch_model.bin", weights.read_bytes()),
    ]


def test_laion_medical_gated_parquet_pinned_model_caption_filter_and_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    jpeg = cv2.imencode(".jpg", np.full((6, 6, 3), 90, dtype=np.uint8))[1].tobytes()
    images = {f"/img/{i}.jpg": (200, "image/jpeg", jpeg) for i in range(3)}
    images["/ad.jpg"] = (200, "text/html", b"<html>not an image</html>")
    with FakeImageHost(images, slow={"/slow.jpg": jpeg}) as host:
        urls = [f"{host.base_url}/img/{i}.jpg" for i in range(3)]
        urls += [f"{host.base_url}/gone.jpg", f"{host.base_url}/slow.jpg", f"{host.base_url}/ad.jpg"]
        captions = ["chest x ray", "mri scan", "lung ct", "a cat", "sunset car", "red shoes"]
        shards = [(0, 4), (4, 6)]
        files = []
        for n, (a, b) in enumerate(shards):
            keys = [f"{i:09d}" for i in range(a, b)]
            table = pa.table({"url": urls[a:b], "caption": captions[a:b], "key": keys,
                              "width": [6] * (b - a), "height": [6] * (b - a)})  # fmt: skip
            sink = pa.BufferOutputStream()
            pq.write_table(table, sink)
            files.append(HubFile(f"data/part-{n:05d}.parquet", sink.getvalue().to_pybytes()))
        files.append(HubFile("README.md", b"# ReLAION-2B-en research-safe (miniature)\n", lfs=False))
        repos = [
            HubRepo("laion/relaion2B-en-research-safe", files, commit=DATA_COMMIT, gated=True),
            HubRepo(PUBMEDBERT, _model_files(tmp_path), repo_type="model", commit=MODEL_COMMIT),
        ]
        data = packaged("laion_medical")
        data["steps"][0]["text.caption_filter"]["threshold"] = -1.0  # a random tiny BERT: keep every caption
        data["images"].update(timeout=1.5, per_host=40)
        recipe = rewritten(tmp_path, data)
        with FakeHub(repos, tokens={TOKEN}) as hub:
            settings = fast_settings(tmp_path, {"huggingface": hub.base_url})
            monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
            monkeypatch.setenv("HF_TOKEN", TOKEN)
            denied = download(recipe, settings)  # the terms not accepted yet: one line saying what to do
            assert not denied.ok and "accept its terms at" in denied.error and TOKEN not in denied.error
            hub.repos[("dataset", "laion/relaion2B-en-research-safe")].approved.add(TOKEN)
            dl = download(recipe, settings)
            assert dl.ok, (dl.error, dl.outcomes)
            assert verify_raw(recipe, settings)[0].ok
        raw = settings.raw_dir("laion_medical")
        assert json.loads((raw / ".climb" / "hf-revision-data.json").read_text())["revision"] == DATA_COMMIT
        assert json.loads((raw / ".climb" / "hf-revision-model.json").read_text())["revision"] == MODEL_COMMIT
        assert (raw / "pubmedbert" / "pytorch_model.bin").is_file() and (
            raw / "data" / "part-00001.parquet"
        ).is_file()
        assert not (raw / "README.md").exists()  # not in `include`
        rows, manifest = _build(recipe, settings)
        assert [r["id"] for r in rows] == ["data/part-00000", "data/part-00001"]
        want = climb_scores(tmp_path / "tiny", captions, CLIMB_MEDICAL_KEYWORDS)
        for r, (a, b) in zip(rows, shards, strict=True):
            assert r["caption"] == captions[a:b] and r["url"] == urls[a:b]
            assert np.allclose(r["similarity"], want[a:b], atol=1e-5)
            assert r["captions_read"] == b - a and r["split"] == "train"
        rep = fetch_images(recipe, settings)
        assert (rep.wanted, rep.fetched) == (6, 3)
        assert dict(rep.dead) == {"HTTP 404": 1, "not an image": 1, "timeout": 1}
        assert "3 dead (HTTP 404: 1, not an image: 1, timeout: 1)" in rep.summary()
        assert not any(r.had_authorization for r in host.log)  # the HF token never reaches an image host
        assert verify_raw(recipe, settings)[0].ok  # the fetched images do not disturb the raw files' check
        before = len(host.log)
        again = fetch_images(recipe, settings)
        assert (again.fetched, again.already, sum(again.dead.values())) == (0, 3, 3) and len(
            host.log
        ) == before
