"""RSPECT: each slice's CLIMB class, listed per series in the order volume.read_dicom_series stacks
the slices (read from the DICOM headers), as the JSON column `slice_labels`."""

import json

from climb_cli.errors import ItemError
from climb_cli.steps.volume import slice_order


def _cls(pe: str, chronic: str) -> str:
    if pe == "0":
        return "No PE"
    return "Chronic PE" if chronic == "1" else "Acute PE"


def rows(table, ctx):
    by_sop = {
        sop: _cls(pe, ch)
        for sop, pe, ch in zip(
            table["SOPInstanceUID"], table["pe_present_on_image"], table["chronic_pe"], strict=True
        )
    }
    lists = {}
    for study, series in sorted(set(zip(table["StudyInstanceUID"], table["SeriesInstanceUID"], strict=True))):
        try:
            order = slice_order(ctx.raw_dir / "train" / study / series)
            lists[series] = json.dumps([by_sop[sop] for sop in order])
        except (ItemError, KeyError):
            lists[series] = ""  # no usable slice list: the item keeps no slice labels
    table["slice_labels"] = [lists[s] for s in table["SeriesInstanceUID"]]
    return table
