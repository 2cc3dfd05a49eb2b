"""GEO GDS: CLIMB's per-sample label (genom/geo.py get_classification_info) from the SOFT subsets.

A GDS SOFT file (`GDSxxxx.soft.gz`) has `^DATASET`, `^SUBSET` blocks (`!subset_description`,
`!subset_sample_id` comma-separated, `!subset_type`) and the dataset's `#<column> = <description>`
lines before its value table. As GEOparse builds `gds.columns`, each sample (a `#GSM...` column) gets,
per subset type, the description of the subset that lists it. CLIMB's label column is the first type
present: cell type > strain (stripped) > disease state > genotype/variation > tissue (with development
stage: "<tissue> (<stage>)", lower case; "embryo/fetus/fetal membrane (<stage>)" when the tissue names
one) > agent (with time: control / sham exposure / early / intermediate / late / other response, EHC-93's
time bands). One row per sample with a value in that column; a GDS with none of these types, or a file
that cannot be read, is one row without a label (dropped and counted, never lost). GEOparse's GDS drops
every row of gds.columns with a missing value (ID_REF, IDENTIFIER, and samples that some subset type
does not list), so CLIMB asks about those samples only; the others are rows without a label here.
"""

import gzip
import json
import re
import zlib

import pandas as pd

ORDER = ["cell type", "strain", "disease state", "genotype/variation", "tissue", "agent"]
TYPE_NAMES = {"genotype/variation": "genotype"}


def _entry(line):
    """GEOparse's __parse_entry: '!subset_sample_id = a,b' -> ('sample_id', 'a,b')."""
    line = re.sub(r"!\w*?_", "", line, count=1) if line.startswith("!") else line.strip()[1:]
    key, _, value = line.partition("=")
    return key.strip(), value.strip()


def parse_soft(lines):
    """(metadata, the '#' sample columns in order, {subset type: {sample: description}}) from the lines of
    a SOFT file (or its text); reading stops where the value table begins."""
    meta, columns, subsets, current, section = {}, [], [], None, None
    for raw in lines.splitlines() if isinstance(lines, str) else lines:
        line = raw.rstrip("\r\n")
        if line.startswith("!dataset_table_begin"):
            break
        if line.startswith("^"):
            kind, _ = _entry(line)
            current = {} if kind == "SUBSET" else None
            if current is not None:
                subsets.append(current)
            section = kind
        elif line.startswith("!") and "_table_" not in line:
            key, value = _entry(line)
            if current is not None:
                current.setdefault(key, value)
            elif section == "DATASET":
                meta.setdefault(key, value)
        elif line.startswith("#") and section == "DATASET":
            columns.append(_entry(line)[0])
    by_type = {}
    for sub in subsets:
        for sample in sub.get("sample_id", "").split(","):
            by_type.setdefault(sub.get("type"), {})[sample.strip()] = sub.get("description", "")
    samples = [c for c in columns if c not in ("ID_REF", "IDENTIFIER")]
    return meta, samples, by_type


def complete(samples, by_type):
    """The samples GEOparse keeps in gds.columns (its dropna): a value for every subset type."""
    return [s for s in samples if all(s in values for values in by_type.values())]


def _response(agent, time):
    if agent == "none":
        return "control response"
    if agent == "saline":
        return "sham exposure response"
    if agent == "EHC-93":
        t = str(time).lower()
        if any(x in t for x in ["2 to 6", "early"]):
            return "early response"
        if any(x in t for x in ["15 to 21", "intermediate"]):
            return "intermediate response"
        if any(x in t for x in ["23 to 40", "late"]):
            return "late response"
    return "other response"


def _tissue_stage(tissue, stage):
    tissue, stage = tissue.lower(), stage.lower()
    for word in ("embryo", "fetus", "fetal membrane"):
        if word in tissue:
            return f"{word} ({stage})"
    return f"{tissue} ({stage})"


def labels(by_type, samples):
    """(label type, {sample: label}, categories in CLIMB's order) or None when no type applies."""
    column = next((c for c in ORDER if c in by_type), None)
    if column is None:
        return None
    values = by_type[column]
    if column == "tissue" and "development stage" in by_type:
        stage = by_type["development stage"]
        got = {s: _tissue_stage(values[s], stage[s]) for s in samples if s in values and s in stage}
        kind, ordered = "tissue and development stage", True
    elif column == "agent" and "time" in by_type:
        got = {s: _response(values[s], by_type["time"].get(s)) for s in samples if s in values}
        kind, ordered = "response", True
    else:
        strip = column == "strain"
        got = {s: values[s].strip() if strip else values[s] for s in samples if s in values}
        kind, ordered = TYPE_NAMES.get(column, column), column in ("cell type", "strain", "disease state")
    seen = list(dict.fromkeys(got[s] for s in samples if s in got))
    return kind, got, sorted(seen) if ordered else seen


def rows(table, ctx):
    out = []
    for rec in table.to_dict("records"):
        blank = {**rec, "sample": "", "label": "", "label_type": "", "categories": "", "title": ""}
        try:
            with gzip.open(ctx.raw_dir / rec["path"], "rt", encoding="utf-8", errors="replace") as f:
                meta, samples, by_type = parse_soft(f)
        except (OSError, EOFError, zlib.error):  # a truncated or corrupt .gz
            out.append({**blank, "sample": "unreadable"})
            continue
        found = labels(by_type, complete(samples, by_type))
        if found is None:
            out.append({**blank, "sample": "no-label-column"})
            continue
        kind, got, categories = found
        for s in samples:  # a sample GEOparse's dropna removed: a row without a label
            out.append({**rec, "sample": s, "label": got.get(s, ""), "label_type": kind,
                        "categories": json.dumps(categories), "title": meta.get("title", "")})  # fmt: skip
    return pd.DataFrame(out, columns=[*table.columns, "sample", "label", "label_type", "categories", "title"])
