"""CBIS-DDSM: the DICOM folder (<PatientID>/<StudyInstanceUID>, from 'image file path') and the split of the
row with the highest BI-RADS of each (patient, side, view), given to every row of that group so the
aggregated item has one image (CLIMB keeps that row too)."""


def rows(table, ctx):
    key = ["patient_id", "left or right breast", "image view"]
    parts = [p.strip().split("/") for p in table["image file path"]]
    table["_dir"] = ["/".join(p[:2]) for p in parts]
    table["_rank"] = [int(a) if a.strip().isdigit() else -1 for a in table["assessment"]]
    best = table.sort_values("_rank", ascending=False, kind="stable").drop_duplicates(key)
    chosen = {tuple(r[k] for k in key): (r["_dir"], r["part"]) for _, r in best.iterrows()}
    table["image_dir"] = [chosen[tuple(r[k] for k in key)][0] for _, r in table.iterrows()]
    table["image_part"] = [chosen[tuple(r[k] for k in key)][1] for _, r in table.iterrows()]
    return table.drop(columns=["_dir", "_rank"])
