"""MIMIC-IV admissions linked to MIMIC-CXR images and MIMIC-IV-ECG records, as CLIMB's MIMIC_IV module.

CLIMB links by patient: every admission of a patient gets all of that patient's CXR images (study list x
split file) and ECG records (record_list.csv); an admission is kept when the patient has at least one of
each and the admission has at least one ICD diagnosis. Its labels are the admission's diagnoses; the
split is the sorted hadm_ids of the kept admissions, the first int(0.8 n) train, the rest test.

Rows that are not kept are not removed here: they get the split value `unlinked` (no CXR or no ECG for
the patient, or no diagnosis) and no labels (CLIMB's code list holds the kept admissions' codes only),
and the recipe drops them with a count (`empty: drop`, `unmapped: drop`).
"""

from __future__ import annotations

import json
from datetime import datetime


def _time(value: str) -> datetime | None:
    return datetime.strptime(value, "%Y-%m-%d %H:%M:%S") if value else None


def rows(table, ctx):  # noqa: ANN001, ANN201 (the hook signature)
    dx = ctx.read_table("hosp/diagnoses_icd.csv.gz")
    codes: dict[str, list[str]] = {}
    for hadm, version, code in zip(dx["hadm_id"], dx["icd_version"], dx["icd_code"], strict=True):
        label = f"ICD{version}:{code.strip()}"
        codes.setdefault(hadm, [])
        if label not in codes[hadm]:
            codes[hadm].append(label)

    studies = ctx.read_table("cxr-study-list.csv.gz", source="cxrlist")
    split = ctx.read_table("mimic-cxr-2.0.0-split.csv.gz", source="cxr")
    merged = studies.merge(split, on=["subject_id", "study_id"])  # CLIMB: pd.merge(study_list, split)
    images: dict[str, list[str]] = {}
    for subject, study, dicom in zip(
        merged["subject_id"], merged["study_id"], merged["dicom_id"], strict=True
    ):
        images.setdefault(subject, []).append(f"files/p{subject[:2]}/p{subject}/s{study}/{dicom}.jpg")

    records = ctx.read_table("record_list.csv", source="ecg")
    ecgs: dict[str, list[str]] = {}
    for subject, path in zip(records["subject_id"], records["path"], strict=True):
        ecgs.setdefault(subject, []).append(path.removesuffix(".hea"))

    out = table.copy()
    out["icd_codes"] = [";".join(codes.get(h, [])) for h in out["hadm_id"]]
    out["cxr_images"] = [json.dumps(images.get(s, [])) for s in out["subject_id"]]
    out["ecg_records"] = [json.dumps(ecgs.get(s, [])) for s in out["subject_id"]]
    survived, ihm, los = [], [], []
    for admit, disch, death in zip(out["admittime"], out["dischtime"], out["deathtime"], strict=True):
        a, d, dead = _time(admit), _time(disch), _time(death)
        survived.append("0" if dead else "1")
        # CLIMB's 48_ihm: 0 when the patient died within 2 days of admission, else 1
        ihm.append("0" if dead and (dead - a).total_seconds() < 2 * 86400 else "1")
        los.append(f"{(d - a).total_seconds() / 86400:.6f}" if a and d else "")
    out["survived"], out["ihm_48"], out["length_of_stay"] = survived, ihm, los

    linked = [
        bool(images.get(s)) and bool(ecgs.get(s)) and bool(codes.get(h))
        for s, h in zip(out["subject_id"], out["hadm_id"], strict=True)
    ]
    kept = sorted((int(h) for h, ok in zip(out["hadm_id"], linked, strict=True) if ok))
    train = set(kept[: int(0.8 * len(kept))])
    out["split"] = [
        ("train" if int(h) in train else "test") if ok else "unlinked"
        for h, ok in zip(out["hadm_id"], linked, strict=True)
    ]
    # CLIMB's code list holds the codes of kept admissions only: the others' codes are not labels
    out["icd_codes"] = [c if ok else "" for c, ok in zip(out["icd_codes"], linked, strict=True)]
    return out
