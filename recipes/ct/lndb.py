"""LNDb: CLIMB's window labels per scan, from trainNodules.csv and the radiologists' masks.

For each scan (LNDbID), as CLIMB's readNoduleList.joinNodules + LNDb.gen_series_df + process_window_df:
1. merge the radiologists' findings: a finding joins a merged one when it comes from another radiologist,
   has the same Nodule flag, and its distance to the merged centroid is < max(its radius, the merged one's,
   3 mm); a merged nodule's volume is the mean, a merged non-nodule gets the volume of a 3 mm sphere;
2. each merged nodule's slice range: the first and last slice of its voxels (value = the radiologist's
   FindingID) in masks/LNDb-XXXX_radR.mhd, over its radiologists; a nodule whose equivalent diameter is
   <= 3 mm gets its centre slice (world -> image with the scan's geometry, rounded) +-2 instead;
3. windows of 24 slices, stride 12, (N - 24) // 12 per scan (N from the scan's header); a window is
   `small` / `big` when at least 2 of its slices lie in the ranges of nodules of <= 3 mm / > 3 mm.

Fixed (said in the recipe's notes): a window's overlap counts its own 24 slices (CLIMB counted 25:
`range(start, end + 1)`), and a mask whose last voxel is on slice 0 gives 0 (CLIMB's find_last never
looked at slice 0). A scan whose header or a mask cannot be read gets no labels: its item fails with the
reason at rows.explode, never silently.
"""

import json
import math

import numpy as np
import SimpleITK as sitk

SIZE, STRIDE, MIN_SLICES = 24, 12, 2


def eq_diameter(volume):
    """CLIMB's nodEqDiam: the diameter of a sphere of this volume (mm^3 -> mm)."""
    return 2 * (volume * 3 / (4 * math.pi)) ** (1 / 3)


def merge(findings):
    """CLIMB's joinNodules for one scan: findings are dicts with rad, finding, x, y, z, nodule, volume."""
    merged = []  # each: lists of the joined findings' values, plus the running list of mean diameters
    for f in findings:
        r_self = eq_diameter(f["volume"]) / 2
        for m in merged:
            if f["rad"] not in m["rad"] and f["nodule"] in m["nodule"]:
                r_other = max(m["diam"]) / 2
                dist = math.dist(
                    (f["x"], f["y"], f["z"]), (np.mean(m["x"]), np.mean(m["y"]), np.mean(m["z"]))
                )
                if dist < max(max(r_self, r_other), 3):
                    for k in ("rad", "finding", "x", "y", "z", "nodule", "volume"):
                        m[k].append(f[k])
                    m["diam"].append(np.mean([eq_diameter(v) for v in m["volume"]]))
                    break
        else:
            m = {k: [f[k]] for k in ("rad", "finding", "x", "y", "z", "nodule", "volume")}
            m["diam"] = [np.mean([eq_diameter(v) for v in m["volume"]])]
            merged.append(m)
    out = []
    for m in merged:
        nodule = m["nodule"].count(1) > 0
        out.append({
            "rads": m["rad"], "findings": m["finding"], "nodule": nodule,
            "xyz": np.array([np.mean(m["x"]), np.mean(m["y"]), np.mean(m["z"])]),
            "volume": float(np.mean(m["volume"])) if nodule else 4 * math.pi * 1.5**3 / 3,
        })  # fmt: skip
    return out


def _slices_with(mask):
    """First and last slice (axis 0) holding any voxel of a boolean mask, or (-1, -1)."""
    hit = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    return (int(hit[0]), int(hit[-1])) if hit.size else (-1, -1)


def _to_slice(reader, xyz):
    """World (x, y, z) -> the rounded slice index, as CLIMB's convertToImgCoord with the scan's geometry."""
    spacing = np.array(reader.GetSpacing())
    direction = np.array(reader.GetDirection()).reshape(3, 3) * spacing  # columns scaled by the spacing
    ijk = np.round(np.linalg.inv(direction) @ (xyz - np.array(reader.GetOrigin())))
    return int(ijk[2])


def window_labels(n_slices, ranges):
    """CLIMB's process_window_df: per window, the multi-hot [small, big] as a list of class names."""
    labels = []
    for w in range(max(0, (n_slices - SIZE) // STRIDE)):
        window = set(range(w * STRIDE, min(w * STRIDE + SIZE, n_slices)))
        small = sum(len(window & set(range(a, b + 1))) for a, b, d in ranges if d <= 3)
        big = sum(len(window & set(range(a, b + 1))) for a, b, d in ranges if d > 3)
        labels.append([c for c, n in (("small", small), ("big", big)) if n >= MIN_SLICES])
    return labels


def scan_labels(raw_dir, lndb_id, rows):
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(raw_dir / "data" / f"LNDb-{lndb_id:04d}.mhd"))
    reader.ReadImageInformation()
    n_slices = reader.GetSize()[2]
    findings = [
        {"rad": int(r["RadID"]), "finding": int(r["FindingID"]), "x": float(r["x"]), "y": float(r["y"]),
         "z": float(r["z"]), "nodule": int(r["Nodule"]), "volume": float(r["Volume"])}
        for r in rows
    ]  # fmt: skip
    masks = {}
    ranges = []
    for m in merge(findings):
        if not m["nodule"]:
            continue  # non-nodules never label a window
        diameter = eq_diameter(m["volume"])
        if diameter <= 3:
            c = _to_slice(reader, m["xyz"])
            ranges.append((max(c - 2, 0), min(c + 2, n_slices), diameter))
            continue
        spans = []
        for rad, finding in zip(m["rads"], m["findings"], strict=True):
            if rad not in masks:
                path = raw_dir / "masks" / f"LNDb-{lndb_id:04d}_rad{rad}.mhd"
                masks[rad] = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
            spans.append(_slices_with(masks[rad] == finding))
        ranges.append((min(a for a, _ in spans), max(b for _, b in spans), diameter))
    return window_labels(n_slices, ranges)


def rows(table, ctx):
    labels = {}
    for lndb_id, group in table.groupby("LNDbID", sort=False):
        try:
            labels[lndb_id] = json.dumps(scan_labels(ctx.raw_dir, int(lndb_id), group.to_dict("records")))
        except (RuntimeError, OSError, ValueError, KeyError):
            labels[lndb_id] = ""  # the item fails with the reason at rows.explode
    table["window_labels"] = [labels[i] for i in table["LNDbID"]]
    return table
