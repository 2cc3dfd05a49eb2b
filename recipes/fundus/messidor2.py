"""Messidor-2: the grades CSV names images '.jpg' while ADCIS ships some as '.JPG' (CLIMB's messidor2.py
replaces the suffix); use the name as it is on disk."""


def rows(table, ctx):
    on_disk = {p.name.lower(): p.name for p in (ctx.raw_dir / "images" / "IMAGES").glob("*")}
    table["image_file"] = [on_disk.get(v.lower(), v) for v in table["image_id"]]
    return table
