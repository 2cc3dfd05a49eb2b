"""GEO: GDS SOFT files in NCBI's format, crawled from the fake FTP tree, one row per sample with CLIMB's
label column rule (recipes/genomics/geo.py), checked against GEOparse where it is installed."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from climb_cli.catalog import Catalog
from tests.conftest import fast_settings
from tests.fakes.dirindex import FakeDirIndex
from tests.recipes.conftest import build, packaged, rewritten

HEADER = """^DATABASE = Geo
!Database_name = Gene Expression Omnibus (GEO)
!Database_institute = NCBI NLM NIH
!Database_web_link = http://www.ncbi.nlm.nih.gov/geo
!Database_email = geo@ncbi.nlm.nih.gov
"""


def soft(gds: str, title: str, subsets: list[tuple[str, str, list[str]]], samples: list[str]) -> bytes:
    """A GDS SOFT file as NCBI writes it: DATASET metadata, SUBSETs, then the DATASET's columns and table."""
    out = [HEADER, f"^DATASET = {gds}\n!dataset_title = {title}\n",
           f"!dataset_description = A miniature of {gds}.\n!dataset_type = Expression profiling by array\n",
           f"!dataset_platform = GPL96\n!dataset_sample_count = {len(samples)}\n",
           "!dataset_value_type = count\n"]  # fmt: skip
    for i, (kind, desc, members) in enumerate(subsets, 1):
        out.append(f"^SUBSET = {gds}_{i}\n!subset_dataset_id = {gds}\n!subset_description = {desc}\n")
        out.append(f"!subset_sample_id = {','.join(members)}\n!subset_type = {kind}\n")
    out.append(f"^DATASET = {gds}\n#ID_REF = Platform reference identifier\n#IDENTIFIER = identifier\n")
    out += [f"#{s} = Value for {s}: sample {s}; src: tissue\n" for s in samples]
    out.append("!dataset_table_begin\nID_REF\tIDENTIFIER\t" + "\t".join(samples) + "\n")
    for g in range(3):
        out.append(
            f"20000{g}_at\tGENE{g}\t"
            + "\t".join(f"{10.5 * (g + 1) + k:.1f}" for k in range(len(samples)))
            + "\n"
        )
    out.append("!dataset_table_end\n")
    return gzip.compress("".join(out).encode())


GDS = {
    # cell type wins over disease state
    "GDS1001": ("T cells", [("disease state", "control", ["GSM1", "GSM2"]), ("cell type", "CD4+", ["GSM1"]),
                            ("cell type", "CD8+", ["GSM2", "GSM3"])], ["GSM1", "GSM2", "GSM3", "GSM4"]),
    # strain, stripped
    "GDS1002": ("Mouse strains", [("strain", " C57BL/6 ", ["GSM5"]), ("strain", "BALB/c", ["GSM6"])],
                ["GSM5", "GSM6"]),
    # tissue + development stage
    "GDS1003": ("Development", [("tissue", "Embryo head", ["GSM7"]), ("tissue", "Liver", ["GSM8"]),
                                ("development stage", "E10.5", ["GSM7"]),
                                ("development stage", "Adult", ["GSM8"])],
                ["GSM7", "GSM8"]),
    # agent + time (CLIMB's EHC-93 bands)
    "GDS1004": ("Particles", [("agent", "none", ["GSM9"]), ("agent", "saline", ["GSM10"]),
                              ("agent", "EHC-93", ["GSM11", "GSM12"]), ("time", "2 to 6 h", ["GSM11"]),
                              ("time", "0 h", ["GSM9", "GSM10"]), ("time", "23 to 40 h", ["GSM12"])],
                ["GSM9", "GSM10", "GSM11", "GSM12"]),
    # no label column: one row without a label
    "GDS1005": ("Individuals", [("individual", "patient A", ["GSM13"])], ["GSM13"]),
}  # fmt: skip

WANT = {
    # GDS1001's GSM3 and GSM4 have no disease state: GEOparse drops them
    "GDS1001_GSM1": ("CD4+", "cell type"), "GDS1001_GSM2": ("CD8+", "cell type"),
    "GDS1002_GSM5": ("C57BL/6", "strain"), "GDS1002_GSM6": ("BALB/c", "strain"),
    "GDS1003_GSM7": ("embryo (e10.5)", "tissue and development stage"),
    "GDS1003_GSM8": ("liver (adult)", "tissue and development stage"),
    "GDS1004_GSM9": ("control response", "response"), "GDS1004_GSM10": ("sham exposure response", "response"),
    "GDS1004_GSM11": ("early response", "response"), "GDS1004_GSM12": ("late response", "response"),
}  # fmt: skip


def _tree() -> dict[str, bytes]:
    tree = {f"GDS1nnn/{g}/soft/{g}.soft.gz": soft(g, *spec) for g, spec in GDS.items()}
    tree["GDS1nnn/GDS1006/soft/GDS1006.soft.gz"] = soft("GDS1006", *GDS["GDS1002"])[
        :120
    ]  # cut short upstream
    return tree


def test_geo_crawled_soft_files_give_one_row_per_sample_with_climbs_label(tmp_path: Path) -> None:
    with FakeDirIndex(_tree(), root="/geo/datasets/") as fake:
        data = packaged("geo")
        data["sources"][0]["url"] = fake.url
        recipe = rewritten(tmp_path, data, hook_from="geo")
        rows, manifest = build(recipe, fast_settings(tmp_path))
    got = {r["id"]: (r["labels"][0], r["label_type"]) for r in rows}
    assert got == WANT
    # GDS1001's GSM3, GSM4 (GEOparse's dropna), GDS1005 (no label column), GDS1006 (unreadable)
    assert sum(manifest["dropped"].values()) == 4
    by_id = {r["id"]: r for r in rows}
    assert json.loads(by_id["GDS1001_GSM1"]["categories"]) == ["CD4+", "CD8+"]
    assert json.loads(by_id["GDS1004_GSM9"]["categories"]) == [
        "control response", "early response", "late response", "sham exposure response"
    ]  # fmt: skip
    assert by_id["GDS1002_GSM5"]["title"] == "Mouse strains" and all(r["split"] == "train" for r in rows)


def test_the_soft_parser_agrees_with_geoparse(tmp_path: Path) -> None:
    geoparse = pytest.importorskip("GEOparse")
    hook = Catalog().paths()["geo"].with_suffix(".py")
    ns: dict = {}
    exec(compile(hook.read_text(), str(hook), "exec"), ns)  # noqa: S102 - the packaged hook's own source
    for gds, spec in GDS.items():
        path = tmp_path / f"{gds}.soft.gz"
        path.write_bytes(soft(gds, *spec))
        ref = geoparse.get_GEO(filepath=str(path), silent=True)
        meta, samples, by_type = ns["parse_soft"](gzip.decompress(path.read_bytes()).decode())
        kept = ns["complete"](samples, by_type)
        assert meta["title"] == ref.metadata["title"][0]
        assert kept == list(ref.columns.index), gds
        for kind in ref.columns.columns.drop("description"):
            assert {s: by_type[kind][s] for s in kept} == ref.columns[kind].to_dict(), (gds, kind)
