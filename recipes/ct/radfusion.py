"""RadFusion: which of the folders 0..7 holds each study's `{idx}.npy` slice stack (Labels.csv does not say).

A study found in no folder gets `npy_folder = "missing"`, so the item fails with "<idx>.npy: file not found"
(counted in errors.parquet); one found in two folders gets "ambiguous" and fails the same way."""

from collections import defaultdict


def rows(table, ctx):
    found = defaultdict(list)
    for path in sorted(ctx.raw_dir.glob("[0-9]/*.npy")):
        found[path.stem].append(path.parent.name)
    table["npy_folder"] = [
        found[i][0] if len(found[i]) == 1 else ("ambiguous" if found[i] else "missing") for i in table["idx"]
    ]
    return table
