"""CT-ICH: one item per CT scan, with the per-slice labels of hemorrhage_diagnosis_raw_ct.csv as a JSON list.

rows.explode then cuts the scan into its slices, each slice a row with its own label (the id is
`<PatientNumber>#<z>`, z = SliceNumber - 1). Patients keep the order in which the CSV first lists them,
which is the order of CLIMB's `df.PatientNumber.unique()` that its train_test_split shuffles.
"""

from __future__ import annotations

import json


def rows(table, ctx):  # noqa: ANN001, ANN201 (the hook signature)
    order: list[str] = []
    slices: dict[str, dict[int, str]] = {}
    for patient, number, none in zip(
        table["PatientNumber"], table["SliceNumber"], table["No_Hemorrhage"], strict=True
    ):
        if patient not in slices:
            order.append(patient)
            slices[patient] = {}
        n = int(number)
        if n in slices[patient]:
            raise ValueError(f"patient {patient}: slice {n} is listed twice")
        # CLIMB: No_Hemorrhage == 1 -> class 0 (no hemorrhage), otherwise 1
        slices[patient][n] = "no_hemorrhage" if none.strip() in ("1", "1.0") else "hemorrhage"
    out = []
    for patient in order:
        numbers = sorted(slices[patient])
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"patient {patient}: slice numbers are not 1..{len(numbers)}")
        out.append(
            {
                "PatientNumber": patient,
                "slices": str(len(numbers)),
                "slice_labels": json.dumps([slices[patient][n] for n in numbers]),
            }
        )
    import pandas as pd

    return pd.DataFrame(out, columns=["PatientNumber", "slices", "slice_labels"])
