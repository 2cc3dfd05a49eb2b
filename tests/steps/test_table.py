"""Tests of table.read and text.read on files written here: a small GEO GDS SOFT (gzipped, with subsets,
`null` values and a GDS "full" annotation column), clinical CSV rows, JSON / JSONL records, an Expression
Atlas-shaped TSV matrix, text files and a GENIA-shaped `;`-separated table.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.index import Item
from climb_cli.shards import build_schema, to_row
from climb_cli.steps.base import Sample, registry
from climb_cli.steps.table import geo_label, load_table

GENES = [("200000_s_at", "PRPF8"), ("200001_at", "CAPNS1"), ("200002_at", "RPL35"), ("200003_s_at", "RPL28")]
SAMPLES = ["GSM11815", "GSM11832", "GSM12069", "GSM12083"]
VALUES = np.array(
    [
        [4254.0, 5298.2, 4026.5, 3498.4],
        [17996.2, 12011.0, 10283.5, float("nan")],
        [41678.8, 39116.9, 38758.9, 31.1],
        [65.7, 19.8, 181.9, 84.4],
    ]
)


def run(sample: Sample, step_name: str, /, **params: Any) -> Sample:
    definition = registry()[step_name]
    return definition.fn(sample, definition.params.model_validate(params))


def write_gds(path: Path) -> Path:
    """A GDS 'full' SOFT file: dataset fields, three subsets, the table block with an annotation column."""
    lines = [
        "^DATABASE = Geo",
        "!Database_name = Gene Expression Omnibus (GEO)",
        "^DATASET = GDS507",
        "!dataset_title = Renal clear cell carcinoma (HG-U133B)",
        "!dataset_value_type = count",
        "!dataset_platform = GPL97",
        "^SUBSET = GDS507_1",
        "!subset_dataset_id = GDS507",
        "!subset_description = normal",
        "!subset_sample_id = GSM11815,GSM12069",
        "!subset_type = disease state",
        "^SUBSET = GDS507_2",
        "!subset_description = RCC",
        "!subset_sample_id = GSM11832, GSM12083",
        "!subset_type = disease state",
        "^SUBSET = GDS507_3",
        "!subset_description = 035",
        "!subset_sample_id = GSM11815,GSM11832",
        "!subset_type = individual",
        "^DATASET = GDS507",
        "#ID_REF = Platform reference identifier",
        "#IDENTIFIER = identifier",
        "!dataset_table_begin",
        "\t".join(["ID_REF", "IDENTIFIER", *SAMPLES, "Gene title"]),
    ]
    for (probe, gene), row in zip(GENES, VALUES, strict=True):
        cells = ["null" if math.isnan(v) else f"{v:g}" for v in row]
        lines.append("\t".join([probe, gene, *cells, f"{gene} protein"]))
    lines.append("!dataset_table_end")
    path.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    return path


def test_registered_with_docs() -> None:
    for name in ("table.read", "text.read"):
        definition = registry()[name]
        assert definition.doc, name
        assert all(f.description for f in definition.params.model_fields.values()), name


# ------------------------------------------------------------------------------------------------ GEO


def test_gds_soft_one_sample_per_item(tmp_path: Path) -> None:
    path = write_gds(tmp_path / "GDS507.soft.gz")
    s = Sample(id="GDS507_GSM11832", inputs={"table": path})
    out = run(s, "table.read", mode="column", key_pattern=r"_(GSM\d+)$")
    v = out.arrays["values"]
    assert v.dtype == np.float32 and v.shape == (4,)
    assert np.allclose(v, VALUES[:, 1].astype(np.float32), equal_nan=True)
    assert out.meta["feature_ids"] == [g for g, _ in GENES]
    assert out.meta["feature_names"] == [n for _, n in GENES]
    assert out.meta["num_features"] == 4
    assert out.meta["column_name"] == "GSM11832"
    assert out.meta["subset_types"] == ["disease state", "individual"]
    assert out.meta["subset_values"] == ["RCC", "035"]
    assert (out.meta["geo_label"], out.meta["geo_label_type"]) == ("RCC", "disease state")
    assert out.meta["dataset_title"] == "Renal clear cell carcinoma (HG-U133B)"
    assert out.meta["dataset_value_type"] == "count"
    missing = run(
        Sample(id="GDS507_GSM12083", inputs={"table": path}),
        "table.read",
        mode="column",
        key_pattern=r"_(GSM\d+)$",
    )
    assert np.isnan(missing.arrays["values"][1])
    with pytest.raises(ItemError, match="missing"):
        run(
            Sample(id="GDS507_GSM12083", inputs={"table": path}),
            "table.read",
            mode="column",
            key_pattern=r"_(GSM\d+)$",
            missing="error",
        )
    with pytest.raises(ItemError, match="no column 'GSM99'"):
        run(Sample(id="GSM99", inputs={"table": path}), "table.read", mode="column")


def test_gds_soft_shared_gene_list_hash_and_whole_matrix(tmp_path: Path) -> None:
    path = write_gds(tmp_path / "GDS507.soft.gz")
    hashed = run(
        Sample(id="GSM11815", inputs={"table": path}), "table.read", mode="column", feature_ids="hash"
    )
    ids = "\n".join(g for g, _ in GENES)
    assert hashed.meta["feature_ids_sha256"] == hashlib.sha256(ids.encode()).hexdigest()
    assert "feature_ids" not in hashed.meta and "feature_names" not in hashed.meta
    whole = run(Sample(id="GDS507", inputs={"table": path}), "table.read", mode="matrix")
    assert whole.meta["column_names"] == SAMPLES  # the "Gene title" annotation column is left out
    assert np.allclose(whole.arrays["values"], VALUES.astype(np.float32), equal_nan=True)
    truncated = tmp_path / "cut.soft"
    truncated.write_text(gzip.decompress(path.read_bytes()).decode().split("!dataset_table_end")[0])
    with pytest.raises(ItemError, match="without its table_end"):
        run(Sample(id="GSM11815", inputs={"table": truncated}), "table.read", mode="column")


def test_geo_label_follows_climb_priority() -> None:
    present = {"disease state", "cell type", "individual"}
    assert geo_label({"disease state": "RCC", "cell type": "T cell"}, present) == ("T cell", "cell type")
    assert geo_label({"strain": " C57BL/6 "}, {"strain", "tissue"}) == ("C57BL/6", "strain")
    tissue = {"tissue", "development stage"}
    assert geo_label({"tissue": "Whole Embryo", "development stage": "E10.5"}, tissue) == (
        "embryo (e10.5)",
        "tissue and development stage",
    )
    assert geo_label({"genotype/variation": "KO"}, {"genotype/variation"}) == ("KO", "genotype")
    agent = {"agent", "time"}
    assert geo_label({"agent": "none", "time": "2 h"}, agent) == ("control response", "response")
    assert geo_label({"agent": "EHC-93", "time": "15 to 21 h"}, agent) == (
        "intermediate response",
        "response",
    )
    assert geo_label({"individual": "035"}, {"individual"}) == ("", "")


# ------------------------------------------------------------------------------------- rows and records


def test_csv_row_mode_types_from_the_whole_table(tmp_path: Path) -> None:
    path = tmp_path / "clinical.csv"
    path.write_text('patient,age,weight,sex,note\np1,61,70.5,F,\np2,47,,M,smoker\np3,55,82,F,"a, b"\n')
    out = run(Sample(id="p2", inputs={"table": path}), "table.read")
    assert out.meta["age"] == 47 and isinstance(out.meta["age"], int)
    assert math.isnan(out.meta["weight"])
    assert (out.meta["sex"], out.meta["note"]) == ("M", "smoker")
    assert "patient" not in out.meta
    p3 = run(
        Sample(id="p3", inputs={"table": path}), "table.read", columns=["weight", "note"], prefix="clin_"
    )
    assert p3.meta == {"clin_weight": 82.0, "clin_note": "a, b"}
    assert isinstance(p3.meta["clin_weight"], float)  # same type in every row of the column
    with pytest.raises(ItemError, match="no row with patient = 'p9'"):
        run(Sample(id="p9", inputs={"table": path}), "table.read")
    clash = tmp_path / "clash.csv"
    clash.write_text("key,split\na,train\na2,test\n")
    with pytest.raises(ItemError, match="'split' clashes"):
        run(Sample(id="a", inputs={"table": clash}), "table.read")
    assert run(Sample(id="a", inputs={"table": clash}), "table.read", prefix="src_").meta == {
        "src_split": "train"
    }
    dup = tmp_path / "dup.csv"
    dup.write_text("key,v\na,1\na,2\n")
    with pytest.raises(ItemError, match="several rows"):
        run(Sample(id="a", inputs={"table": dup}), "table.read")


def test_json_jsonl_records_and_single_object(tmp_path: Path) -> None:
    records = [{"id": "a", "score": 1.5, "codes": ["I10", "E11"]}, {"id": "b", "score": 2, "extra": True}]
    (tmp_path / "r.json").write_text(json.dumps(records))
    out = run(Sample(id="a", inputs={"table": tmp_path / "r.json"}), "table.read", key_column="id")
    assert out.meta["score"] == 1.5
    assert json.loads(out.meta["codes"]) == ["I10", "E11"]
    assert out.meta["extra"] == ""
    (tmp_path / "r.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n\n")
    b = run(Sample(id="b", inputs={"table": tmp_path / "r.jsonl"}), "table.read", key_column="id")
    assert b.meta["score"] == 2.0 and b.meta["extra"] == "true"
    (tmp_path / "patient.json").write_text(json.dumps({"age": 70, "sex": "F"}))
    one = run(Sample(id="whatever", inputs={"table": tmp_path / "patient.json"}), "table.read")
    assert one.meta == {"age": 70, "sex": "F"}
    pinned = run(
        Sample(id="w", inputs={"table": tmp_path / "patient.json"}), "table.read", types={"age": "float"}
    )
    assert isinstance(pinned.meta["age"], float)
    with pytest.raises(ItemError, match="'sex' value 'F' is not int"):
        run(Sample(id="w", inputs={"table": tmp_path / "patient.json"}), "table.read", types={"sex": "int"})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ItemError, match="bad.json: cannot parse as json"):
        run(Sample(id="x", inputs={"table": tmp_path / "bad.json"}), "table.read")


def test_expression_atlas_tsv_matrix(tmp_path: Path) -> None:
    path = tmp_path / "E-MTAB-513-tpms.tsv"
    path.write_text(
        "Gene ID\tGene Name\tadipose\tbrain\tliver\nENSG1\tA1BG\t0.5\t3\t120\nENSG2\tTP53\t10\t\t7.25\n"
    )
    out = run(
        Sample(id="E-MTAB-513", inputs={"table": path}),
        "table.read",
        mode="matrix",
        index_column="Gene ID",
        name_column="Gene Name",
    )
    assert out.meta["column_names"] == ["adipose", "brain", "liver"]
    assert out.meta["feature_ids"] == ["ENSG1", "ENSG2"] and out.meta["feature_names"] == ["A1BG", "TP53"]
    assert np.allclose(out.arrays["values"], [[0.5, 3, 120], [10, np.nan, 7.25]], equal_nan=True)
    bad = tmp_path / "bad.tsv"
    bad.write_text("g\tx\nA\t1\nB\toops\n")
    with pytest.raises(ItemError, match="non-numeric value 'oops' at row 2"):
        run(
            Sample(id="x", inputs={"table": bad}),
            "table.read",
            mode="column",
            index_column="g",
        )


def test_parsed_tables_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("k,v\na,1\n")
    first = load_table(path)
    assert load_table(path) is first
    path.write_text("k,v\na,1\nb,2\n")
    os.utime(path, ns=(1, 1))
    assert len(load_table(path).df) == 2


def test_row_and_column_outputs_fit_a_parquet_row(tmp_path: Path) -> None:
    path = write_gds(tmp_path / "GDS507.soft.gz")
    s = run(Sample(id="GSM12083", inputs={"table": path}), "table.read", mode="column")
    item = Item(id="GSM12083", split="train", labels=(), inputs={"table": "GDS507.soft.gz"})
    schema = build_schema(s, item, [], False)
    table = pa.Table.from_pylist(
        [to_row(schema, item, s, [], [("GDS507.soft.gz", "0" * 64)], "h")], schema=schema
    )
    assert table.column("values_shape").to_pylist() == [[4]]
    assert table.column("geo_label").to_pylist() == ["RCC"]


# ------------------------------------------------------------------------------------------------ text


def test_text_file_encoding_gzip_and_truncation(tmp_path: Path) -> None:
    (tmp_path / "r.txt").write_bytes("\ufeff  FINDINGS: no acute disease.\n".encode())
    out = run(Sample(id="r", inputs={"text": tmp_path / "r.txt"}), "text.read")
    assert out.meta["text"] == "FINDINGS: no acute disease." and out.meta["text_truncated"] is False
    (tmp_path / "r.txt.gz").write_bytes(gzip.compress(b"IMPRESSION: normal"))
    cut = run(
        Sample(id="r", inputs={"text": tmp_path / "r.txt.gz"}), "text.read", max_chars=10, name="report"
    )
    assert cut.meta == {"report": "IMPRESSION", "report_truncated": True}
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ItemError, match="not utf-8 text"):
        run(Sample(id="l", inputs={"text": tmp_path / "latin.txt"}), "text.read")
    assert (
        run(Sample(id="l", inputs={"text": tmp_path / "latin.txt"}), "text.read", errors="replace").meta[
            "text"
        ]
        == "caf\ufffd"
    )
    assert (
        run(Sample(id="l", inputs={"text": tmp_path / "latin.txt"}), "text.read", encoding="latin-1").meta[
            "text"
        ]
        == "café"
    )
    with pytest.raises(ValidationError):
        registry()["text.read"].params.model_validate({"key_pattern": "("})


def test_text_from_a_genia_shaped_table_column(tmp_path: Path) -> None:
    path = tmp_path / "train_data.csv"
    path.write_text(
        "row;Sentence;EventType;TriggerWord\n"
        "0;IL-2 gene expression requires NF-kappa B.;Gene_expression;expression\n"
        "1;Tax activates the promoter.;Positive_regulation;activates\n"
    )
    out = run(
        Sample(id="genia-1", inputs={"text": path}),
        "text.read",
        column="Sentence",
        sep=";",
        key_pattern=r"(\d+)$",
    )
    assert out.meta["text"] == "Tax activates the promoter."
    assert out.sources == [path]
    with pytest.raises(ItemError, match="no column 'Text'"):
        run(
            Sample(id="genia-1", inputs={"text": path}),
            "text.read",
            column="Text",
            sep=";",
            key_pattern=r"(\d+)$",
        )
