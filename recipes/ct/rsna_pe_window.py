"""RSNA PE windows: per series, the label of each of CLIMB's 24-slice windows (stride 12,
(N - 24) // 12 of them) from the per-slice table, in the order volume.read_dicom_series stacks the
slices; a window is PE when at least 4 of its slices have pe_present_on_image = 1."""

import json

from climb_cli.errors import ItemError
from climb_cli.steps.volume import slice_order

SIZE, STRIDE, MIN_SLICES = 24, 12, 4


def rows(table, ctx):
    pe = dict(zip(table["SOPInstanceUID"], table["pe_present_on_image"], strict=True))
    labels = {}
    for study, series in sorted(set(zip(table["StudyInstanceUID"], table["SeriesInstanceUID"], strict=True))):
        try:
            flags = [pe[sop] == "1" for sop in slice_order(ctx.raw_dir / "train" / study / series)]
        except (ItemError, KeyError):
            labels[series] = ""  # no usable slice list: the item fails with the reason at rows.explode
            continue
        starts = [i * STRIDE for i in range(max(0, (len(flags) - SIZE) // STRIDE))]
        labels[series] = json.dumps(
            ["PE" if sum(flags[s : s + SIZE]) >= MIN_SLICES else "No PE" for s in starts]
        )
    table["window_labels"] = [labels[s] for s in table["SeriesInstanceUID"]]
    return table
