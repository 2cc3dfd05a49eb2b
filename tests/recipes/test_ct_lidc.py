"""LIDC-IDRI: CT series behind the fake NBIA (TCIA) and reading-session XML in LIDC's schema written here
-> CLIMB's 24-slice windows with large / small nodule labels and its 70/15/15 patient split."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom.uid import generate_uid

from climb_cli.acquire import download
from climb_cli.verify import verify_raw
from tests.conftest import fast_settings
from tests.fakes.nbia import FakeNBIA, NbiaSeries, idc_copy
from tests.recipes.conftest import packaged, rewritten
from tests.recipes.test_ct_rsna import _slice
from tests.test_miniatures import _build

NS = "http://www.nih.gov"


def _roi(z: float, sop: str) -> str:
    return (f"<roi><imageZposition>{z:.6f} </imageZposition><imageSOP_UID>{sop}</imageSOP_UID>"
            "<inclusion>TRUE</inclusion><edgeMap><xCoord>7</xCoord><yCoord>8</yCoord></edgeMap>"
            "<edgeMap><xCoord>8</xCoord><yCoord>8</yCoord></edgeMap></roi>")  # fmt: skip


CHARACTERISTICS = ("<characteristics><subtlety>5</subtlety><internalStructure>1</internalStructure>"
                   "<calcification>6</calcification><sphericity>3</sphericity><margin>3</margin>"
                   "<lobulation>3</lobulation><spiculation>4</spiculation><texture>5</texture>"
                   "<malignancy>4</malignancy></characteristics>")  # fmt: skip


def lidc_xml(study: str, series: str, sessions: list[list[tuple[str, list[float]]]]) -> str:
    """A LidcReadMessage as the LIDC-XML-only release has them: one readingSession per radiologist with
    unblindedReadNodule (characteristics only for nodules >= 3 mm) and nonNodule marks."""
    out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<LidcReadMessage uid="{generate_uid()}" xmlns="{NS}" '
           'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
           'xsi:schemaLocation="http://www.nih.gov http://troll.rad.med.umich.edu/lidc/LidcReadMessage.xsd">',
           "<ResponseHeader><Version>1.8.1</Version><MessageId>-421198203</MessageId>"
           "<DateRequest>2007-11-01</DateRequest><TimeRequest>12:30:51</TimeRequest>"
           "<RequestingSite>removed</RequestingSite><ServicingSite>removed</ServicingSite>"
           "<TaskDescription>Second unblinded read</TaskDescription><CtImageFile>removed</CtImageFile>"
           f"<SeriesInstanceUid>{series}</SeriesInstanceUid><DateService>2007-11-01</DateService>"
           "<TimeService>12:30:51</TimeService>"
           "<ResponseDescription>1 - Reading complete</ResponseDescription>"
           f"<StudyInstanceUID>{study}</StudyInstanceUID></ResponseHeader>"]  # fmt: skip
    for r, marks in enumerate(sessions):
        out.append(f"<readingSession><annotationVersion>3.12</annotationVersion>"
                   f"<servicingRadiologistID>{540461523 + r}</servicingRadiologistID>")  # fmt: skip
        for n, (kind, zs) in enumerate(marks):
            chars = CHARACTERISTICS if kind == "large" else ""
            out.append(f"<unblindedReadNodule><noduleID>Nodule {n:03d}</noduleID>{chars}"
                       + "".join(_roi(z, generate_uid()) for z in zs) + "</unblindedReadNodule>")  # fmt: skip
        out.append(f"<nonNodule><nonNoduleID>{r}</nonNoduleID><imageZposition>-100.0</imageZposition>"
                   f"<imageSOP_UID>{generate_uid()}</imageSOP_UID><locus><xCoord>3</xCoord><yCoord>4</yCoord>"
                   "</locus></nonNodule></readingSession>")  # fmt: skip
    out.append("</LidcReadMessage>\n")
    return "\n".join(out)


def _z(i: int) -> float:
    return -200.0 + 2.5 * i


# per patient: slices, large-nodule z runs (slice indices) per reader, small-nodule runs per reader
PATIENTS = {
    1: (
        30,
        [range(3, 9)] * 3 + [range(3, 5)],
        [range(25, 30)] * 2,
    ),  # large in window 0 (6 slices, 3 readers)
    2: (30, [range(20, 26)] * 2, [range(26, 30)] * 4),  # large: 2 readers only; small in window 1 (4 slices)
    3: (24, [], []),
    4: (26, [range(22, 25)] * 4, [range(0, 3)] * 3),  # large: 3 slices only; small: 3 slices only
    5: (30, [range(24, 28)] * 3, [range(26, 30)] * 3),  # window 1 both
    6: (25, [], []),
    7: (25, [range(0, 4)] * 3, []),
}
WANT = {
    1: [["large_nodule"], []],
    2: [[], ["small_nodule"]],
    3: [[]],
    4: [[], []],
    5: [[], ["large_nodule", "small_nodule"]],
    6: [[], []],
    7: [["large_nodule"], []],
}


@pytest.mark.parametrize("route", ["nbia", "idc"])
def test_lidc_windows_labels_and_patient_split_end_to_end(
    tmp_path: Path, route: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Either route (NBIA's series ZIPs, or `mirror: idc`: IDC's instances) gives the same items."""
    settings = fast_settings(tmp_path)
    xml = settings.raw_dir("lidc") / "xml" / "tcia-lidc-xml" / "185"
    xml.mkdir(parents=True)
    series_list, uids = [], {}
    for p, (n, large, small) in PATIENTS.items():
        pid, study, uid = f"LIDC-IDRI-{p:04d}", generate_uid(), generate_uid()
        uids[uid] = p
        instances = {}
        for i in range(n):
            sop = generate_uid()
            instances[sop] = _slice(study, uid, sop, _z(i), -800 + 10 * i)
        series_list.append(NbiaSeries(uid, pid, study, "LIDC-IDRI", "CT", instances, body_part="CHEST"))
        readers = max(len(large), len(small), 1)
        sessions = [[("large", [_z(i) for i in large[r]])] if r < len(large) else [] for r in range(readers)]
        for r in range(len(small)):
            sessions[r] = [*sessions[r], ("small", [_z(i) for i in small[r]])]
        (xml / f"{68 + p:03d}.xml").write_text(lidc_xml(study, uid, sessions))
    # patient 3's study holds a second CT series: its slices must not clash with the first one's
    study3 = next(s for s in series_list if s.patient == "LIDC-IDRI-0003").study
    second = generate_uid()
    uids[second] = 3
    extra = {(sop := generate_uid()): _slice(study3, second, sop, _z(i), -500) for i in range(24)}
    series_list.append(
        NbiaSeries(second, "LIDC-IDRI-0003", study3, "LIDC-IDRI", "CT", extra, body_part="CHEST")
    )
    cr = NbiaSeries(
        generate_uid(), "LIDC-IDRI-0001", generate_uid(), "LIDC-IDRI", "CR", {}, body_part="CHEST"
    )
    data = packaged("lidc")
    data["sources"][1]["globs"][0]["count"] = 7
    index = tmp_path / "idc_index.parquet"
    monkeypatch.setenv("CLIMB_IDC_INDEX", str(index))
    if route == "idc":
        data["sources"][0]["mirror"] = "idc"
    with FakeNBIA([*series_list, cr]) as nbia, idc_copy([*series_list, cr], index) as idc:
        recipe, settings = (
            rewritten(tmp_path, data, hook_from="lidc"),
            fast_settings(tmp_path, {"tcia": nbia.api, "idc": idc.base_url}),
        )
        dl = download(recipe, settings)
        assert dl.ok, (dl.error, dl.outcomes)
        assert bool(nbia.log) == (route == "nbia") and bool(idc.log) == (route == "idc")
    raw, _ = verify_raw(recipe, settings)
    assert raw.ok, raw.as_dict()
    rows, _ = _build(recipe, settings)  # the NPZ shards, read back
    got: dict[int, list] = {}
    assert len({r["id"].split("#")[0] for r in rows}) == 8  # 7 patients, patient 3 with two series
    for r in rows:
        series, n = r["id"].split("#")
        if series == second:
            assert (
                r["labels"] == []
                and r["split"]
                == next(x for x in rows if x["patient"] == r["patient"] and x["id"] != r["id"])["split"]
            )
            continue
        got.setdefault(uids[series], []).append((int(n), sorted(r["labels"]), r["window_starts"], r["split"]))
    for p, windows in got.items():
        windows.sort()
        assert [w[1] for w in windows] == WANT[p], p
        assert [w[2] for w in windows] == [24 * k for k in range(len(WANT[p]))]
    ms = pytest.importorskip("sklearn.model_selection")
    patients = [f"LIDC-IDRI-{p:04d}" for p in sorted(PATIENTS)]
    train, rest = ms.train_test_split(np.array(patients), test_size=0.15 + 0.15, random_state=7)
    valid, test = ms.train_test_split(rest, test_size=0.15 / (0.15 + 0.15), random_state=7)
    want_split = {
        **dict.fromkeys(train, "train"),
        **dict.fromkeys(valid, "valid"),
        **dict.fromkeys(test, "test"),
    }
    for p, windows in got.items():
        assert {w[3] for w in windows} == {want_split[f"LIDC-IDRI-{p:04d}"]}
    first = next(r for r in rows if uids[r["id"].split("#")[0]] == 6 and r["id"].endswith("#1"))
    win = np.asarray(first["windows"], dtype=np.float32).reshape(first["windows_shape"])
    assert win.shape == (24, 256, 256)
    hu = -800 + 10 * 24  # slice 24 of patient 6: the only real slice of its padded last window
    assert np.allclose(win[0], (hu - (-600 - 750)) / 1500, atol=1e-6) and not win[1:].any()


def test_the_xml_parser_reads_the_lidc_schema_and_names_a_broken_file(tmp_path: Path) -> None:
    from climb_cli.catalog import Catalog

    hook = Catalog().paths()["lidc"].with_suffix(".py")
    ns: dict = {}
    exec(compile(hook.read_text(), str(hook), "exec"), ns)  # noqa: S102 - the packaged hook's own source
    (tmp_path / "x" / "157").mkdir(parents=True)
    sessions = [[("large", [-10.0, -12.5]), ("small", [-20.0])], [("small", [-20.0])], []]
    (tmp_path / "x" / "157" / "001.xml").write_text(lidc_xml("1.2.3", "1.2.3.4", sessions))
    (tmp_path / "x" / "157" / "002.xml").write_text(
        '<?xml version="1.0"?><IdriReadMessage xmlns="http://www.nih.gov"/>'
    )
    marks = ns["readers_by_slice"](tmp_path / "x")
    assert marks == {"1.2.3.4": {("large", -10.0): {("001.xml", 0)}, ("large", -12.5): {("001.xml", 0)},
                                 ("small", -20.0): {("001.xml", 0), ("001.xml", 1)}}}  # fmt: skip
    (tmp_path / "x" / "157" / "003.xml").write_text("<LidcReadMessage><readingSession>")
    with pytest.raises(ValueError, match=r"xml/157/003.xml is not readable XML"):
        ns["readers_by_slice"](tmp_path / "x")
