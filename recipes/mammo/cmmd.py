"""CMMD: pair each clinical XLSX row (patient, breast side) with that breast's CC and MLO DICOM files, read
from the headers (ImageLaterality, ViewPosition) of the files under <PatientID>/ in either route's layout
(NBIA's series ZIP extracted into <PatientID>/<StudyInstanceUID>/, or IDC's instances one folder deeper).
A breast with a view missing gets the path of the expected file name so the item fails with 'file not
found', counted."""

from pathlib import Path

import pydicom


def rows(table, ctx):
    views = {}
    raw = Path(ctx.raw_dir)  # NBIA: <Patient>/<Study>/1-01.dcm; IDC: <Patient>/<Study>/<Series>/<uuid>.dcm
    for path in sorted([*raw.glob("*/*/*.dcm"), *raw.glob("*/*/*/*.dcm")]):
        rel = path.relative_to(ctx.raw_dir)
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        side = str(getattr(ds, "ImageLaterality", "") or getattr(ds, "Laterality", "")).upper()
        view = str(getattr(ds, "ViewPosition", "")).upper()
        views.setdefault((rel.parts[0], side, view), rel.as_posix())
    for view in ("CC", "MLO"):
        table[view.lower()] = [
            views.get((pid, side.upper(), view), f"{pid}/missing-{side}-{view}.dcm")
            for pid, side in zip(table["ID1"], table["LeftRight"], strict=True)
        ]
    return table
