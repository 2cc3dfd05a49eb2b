"""PAD-UFES-20: the Mendeley zip holds metadata.csv and images in nested zips (imgs_part_N); find where
each img_id landed after extraction. An img_id with no file keeps its bare name (the item then fails
with 'file not found', counted in errors.parquet)."""


def rows(table, ctx):
    found = {}
    for p in sorted(ctx.raw_dir.rglob("*.png")):
        rel = p.relative_to(ctx.raw_dir)
        if ".climb" not in rel.parts:
            found.setdefault(p.name, rel.as_posix())
    table["image_path"] = [found.get(v, v) for v in table["img_id"]]
    return table
