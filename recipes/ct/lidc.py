"""LIDC-IDRI: CLIMB's per-slice nodule flags from the LIDC XML reading sessions, as per-window labels.

Each XML file (`LidcReadMessage`, namespace http://www.nih.gov) names its series in
ResponseHeader/SeriesInstanceUid and holds one `readingSession` per radiologist; an `unblindedReadNodule`
with `characteristics` is a nodule >= 3 mm (CLIMB: large), one without is a nodule < 3 mm (small); each
`roi` gives an `imageZposition`. A slice of a series is flagged large (small) when at least 3 readers
marked a large (small) nodule roi at its z (ImagePositionPatient[2]). Windows are CLIMB's: 24 slices,
non-overlapping, ceil(N / 24) per series in the reader's slice order (ascending z), positive when at
least 4 of their slices are flagged; labels [large, small] per window as a JSON list (`window_labels`).
A series whose slices cannot be read gets no labels, so it fails with the reason at rows.explode; an
XML file that does not parse stops the build with its name (a reader's marks would be missing).
"""

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path

import pydicom

from climb_cli.errors import ItemError
from climb_cli.steps.volume import slice_order

NS = "{http://www.nih.gov}"
READERS, SIZE, MIN_SLICES = 3, 24, 4


def _z(value):
    return round(float(value), 2)  # XML and DICOM spell the same position differently (-125.000000 / -125)


def parse_xml(path):
    """(SeriesInstanceUID, [(session index, 'large' | 'small', z), ...]); (None, []) for other messages."""
    root = ET.parse(path).getroot()
    series = root.find(f"{NS}ResponseHeader/{NS}SeriesInstanceUid")
    if root.tag != f"{NS}LidcReadMessage" or series is None or not (series.text or "").strip():
        return None, []
    marks = []
    for k, session in enumerate(root.iter(f"{NS}readingSession")):
        for nodule in session.iter(f"{NS}unblindedReadNodule"):
            kind = "large" if nodule.find(f"{NS}characteristics") is not None else "small"
            for roi in nodule.iter(f"{NS}roi"):
                z = roi.find(f"{NS}imageZposition")
                if z is not None and (z.text or "").strip():
                    marks.append((k, kind, _z(z.text)))
    return series.text.strip(), marks


def readers_by_slice(xml_dir):
    """{series: {(kind, z): {reader, ...}}}; a reader is one reading session of one XML file."""
    out = {}
    for path in sorted(Path(xml_dir).rglob("*.xml")):
        try:
            series, marks = parse_xml(path)
        except ET.ParseError as exc:  # a reader's marks missing would silently change the labels
            rel = path.relative_to(xml_dir).as_posix()
            raise ValueError(
                f"xml/{rel} is not readable XML ({exc}); download LIDC-XML-only.zip again"
            ) from None
        for session, kind, z in marks:
            out.setdefault(series, {}).setdefault((kind, z), set()).add((path.name, session))
    return out


def window_labels(zs, marks):
    flags = {kind: [len(marks.get((kind, z), ())) >= READERS for z in zs] for kind in ("large", "small")}
    labels = []
    for w in range(math.ceil(len(zs) / SIZE)):
        got = [
            f"{kind}_nodule"
            for kind in ("large", "small")
            if sum(flags[kind][w * SIZE : (w + 1) * SIZE]) >= MIN_SLICES
        ]
        labels.append(got)
    return labels, flags


def rows(table, ctx):
    table = table.drop_duplicates("series", ignore_index=True)  # one row per series folder, not per file
    marks = readers_by_slice(ctx.raw_dir / "xml")
    labels, counts = [], []
    for patient, study, series in zip(table["patient"], table["study"], table["series"], strict=True):
        folder = ctx.raw_dir / patient / study / series
        try:
            zs = [_z(pydicom.dcmread(folder / f"{stem}.dcm", stop_before_pixels=True).ImagePositionPatient[2])
                  for stem in slice_order(folder)]  # fmt: skip
        except (ItemError, OSError, AttributeError, IndexError, ValueError):
            labels.append("")
            counts.append("")
            continue
        windows, flags = window_labels(zs, marks.get(series, {}))
        labels.append(json.dumps(windows))
        counts.append(json.dumps({k: sum(v) for k, v in flags.items()}))
    table["window_labels"] = labels
    table["flagged_slices"] = counts
    return table
