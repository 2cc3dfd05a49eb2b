"""CBIS-DDSM: the image of each row (the DICOM series named by its 'image file path',
<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/...) and the split of the row with the highest BI-RADS of
each (patient, side, view), given to every row of that group so the aggregated item has one image (CLIMB
keeps that row too).

The image is found on disk whichever route fetched it: NBIA's series ZIP extracted beside it
(<PatientID>/<StudyInstanceUID>/1-01.dcm, NBIA's NewFileNames), the same in a folder of the series
(`series_folders: true`), or IDC's instances (`mirror: idc`:
<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<instance uuid>.dcm). A full-mammogram series holds one
image; a missing one gets the expected NBIA path so the item fails with 'file not found', counted."""

from pathlib import Path


def image_of(raw_dir, patient, study, series):
    """The series' first DICOM file (sorted by name), relative to the raw folder."""
    for folder in (Path(raw_dir) / patient / study / series, Path(raw_dir) / patient / study):
        if folder.is_dir():
            found = sorted(p.name for p in folder.glob("*.dcm"))
            if found:
                return (folder / found[0]).relative_to(raw_dir).as_posix()
    return f"{patient}/{study}/1-01.dcm"


def rows(table, ctx):
    key = ["patient_id", "left or right breast", "image view"]
    parts = [p.strip().split("/") for p in table["image file path"]]
    table["_image"] = [image_of(ctx.raw_dir, *p[:3]) if len(p) >= 3 else "" for p in parts]
    table["_rank"] = [int(a) if a.strip().isdigit() else -1 for a in table["assessment"]]
    best = table.sort_values("_rank", ascending=False, kind="stable").drop_duplicates(key)
    chosen = {tuple(r[k] for k in key): (r["_image"], r["part"]) for _, r in best.iterrows()}
    table["image"] = [chosen[tuple(r[k] for k in key)][0] for _, r in table.iterrows()]
    table["image_part"] = [chosen[tuple(r[k] for k in key)][1] for _, r in table.iterrows()]
    return table.drop(columns=["_image", "_rank"])
