"""Tests of the ECG steps: WFDB reading (synthetic and real PhysioNet records), leads, resampling, filters,
crop/pad, normalisation, casting and parameter validation. Offline; synthetic records are written with
wfdb.wrsamp into tmp_path, real ones are read in place from ../shared/fixtures/wfdb beside the repository.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.io
import wfdb
from pydantic import ValidationError

from climb_cli.errors import ItemError
from climb_cli.steps.base import Sample, registry

FIXTURES = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "wfdb"
LEADS_12 = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
FS = 500.0
N = 5000  # 10 s at 500 Hz


def run(sample: Sample, name: str, **params: Any) -> Sample:
    """Validate `params` the way a recipe is validated, then run the step."""
    definition = registry()[name]
    return definition.fn(sample, definition.params.model_validate(params))


def fixture(name: str) -> Path:
    if not (FIXTURES / f"{name}.hea").is_file():
        pytest.skip(f"WFDB fixture {name} not found in {FIXTURES} (the shared fixtures folder is absent)")
    return FIXTURES / name


def twelve_lead_signal(n: int = N, fs: float = FS) -> np.ndarray:
    """(n, 12) physical signal in mV: lead k is a (k+1) Hz sine of amplitude 0.2*(k+1) plus an offset."""
    t = np.arange(n) / fs
    return np.column_stack([0.2 * (k + 1) * np.sin(2 * np.pi * (k + 1) * t) + 0.05 * k for k in range(12)])


def write_record(directory: Path, name: str, signal: np.ndarray, fmt: str = "16", fs: float = FS) -> Path:
    names = LEADS_12[: signal.shape[1]]
    wfdb.wrsamp(
        name,
        fs,
        ["mV"] * len(names),
        names,
        p_signal=signal,
        fmt=[fmt] * len(names),
        write_dir=str(directory),
    )
    return directory / name


def quantum(record: Path) -> np.ndarray:
    """Half an ADC step per lead, in physical units: the largest error a write/read round trip may add."""
    header = wfdb.rdheader(str(record))
    return 0.5 / np.asarray(header.adc_gain) + 1e-9


def read(record: Path, **params: Any) -> Sample:
    return run(Sample(id=record.name, inputs={"record": record}), "ecg.read_wfdb", **params)


def with_signal(x: np.ndarray, fs: float = FS, names: list[str] | None = None) -> Sample:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    names = names or [f"L{i}" for i in range(x.shape[0])]
    meta = {"sampling_rate": fs, "lead_names": names, "units": ["mV"] * len(names)}
    return Sample(id="s", arrays={"signal": x}, meta=meta)


# --------------------------------------------------------------------------------------- registration


def test_every_step_is_registered_with_docs_and_described_params() -> None:
    steps = {k: v for k, v in registry().items() if k.startswith("ecg.")}
    assert set(steps) == {
        "ecg.read_wfdb",
        "ecg.select_leads",
        "ecg.resample",
        "ecg.bandpass",
        "ecg.highpass",
        "ecg.lowpass",
        "ecg.crop_or_pad",
        "ecg.normalize",
        "ecg.cast",
        "ecg.nan_to_num",
        "ecg.require_length",
    }
    for name, definition in steps.items():
        assert definition.doc, name
        for field_name, info in definition.params.model_fields.items():
            assert info.description, f"{name}.{field_name} has no description"


# ---------------------------------------------------------------------------------- read_wfdb: synthetic


@pytest.mark.parametrize("fmt", ["16", "212"])
def test_read_wfdb_round_trip(tmp_path: Path, fmt: str) -> None:
    written = twelve_lead_signal(n=N + 1 if fmt == "212" else N)  # odd length: 212 packs sample pairs
    record = write_record(tmp_path, "00001_hr", written, fmt=fmt)
    sample = read(record)

    x = sample.arrays["signal"]
    assert x.shape == (12, written.shape[0]) and x.dtype == np.float64
    assert np.all(np.abs(x - written.T) <= quantum(record)[:, None])
    assert sample.meta == {
        "sampling_rate": 500.0,
        "lead_names": LEADS_12,
        "units": ["mV"] * 12,
        "original_length": written.shape[0],
        "original_sampling_rate": 500.0,
        "original_lead_sampling_rates": [500.0] * 12,
    }
    assert isinstance(sample.meta["sampling_rate"], float)
    assert sample.sources == [tmp_path / "00001_hr.hea", tmp_path / "00001_hr.dat"]
    assert all(p.is_absolute() for p in sample.sources)


def test_read_wfdb_sources_are_deduplicated_and_appended(tmp_path: Path) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100))
    sample = Sample(id="r", inputs={"record": record}, sources=[tmp_path / "r.hea"])
    run(sample, "ecg.read_wfdb")
    run(sample, "ecg.read_wfdb")
    assert sample.sources == [tmp_path / "r.hea", tmp_path / "r.dat"]


def test_read_wfdb_accepts_a_hea_path_and_another_input_name(tmp_path: Path) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100))
    sample = Sample(id="r", inputs={"ecg": tmp_path / "r.hea"})
    run(sample, "ecg.read_wfdb", input="ecg")
    assert sample.arrays["signal"].shape == (12, 100)
    with pytest.raises(ItemError, match="no input named 'record'"):
        read_sample = Sample(id="r", inputs={"ecg": record})
        run(read_sample, "ecg.read_wfdb")


def test_read_wfdb_digital_values(tmp_path: Path) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=300))
    sample = read(record, physical=False)
    expected = wfdb.rdrecord(str(record), physical=False).d_signal.T
    np.testing.assert_array_equal(sample.arrays["signal"], expected)
    assert sample.meta["units"] == ["adu"] * 12


def test_read_wfdb_missing_samples_are_nan_and_nan_to_num_counts_them(tmp_path: Path) -> None:
    signal = twelve_lead_signal(n=200)
    signal[10, 0] = signal[20, 3] = signal[30, 3] = np.nan
    sample = read(write_record(tmp_path, "r", signal))
    assert np.isnan(sample.arrays["signal"]).sum() == 3
    assert np.isnan(sample.arrays["signal"][3, 20])
    digital = read(tmp_path / "r", physical=False)
    assert np.isnan(digital.arrays["signal"]).sum() == 3

    run(sample, "ecg.nan_to_num", value=-1.5)
    assert sample.meta["nan_count"] == 3
    assert not np.isnan(sample.arrays["signal"]).any()
    assert sample.arrays["signal"][0, 10] == -1.5
    run(sample, "ecg.nan_to_num")
    assert sample.meta["nan_count"] == 0


def test_read_wfdb_cinc_mat_record(tmp_path: Path) -> None:
    """PhysioNet/CinC Challenge 2020 layout: MATLAB v4 `val` (12 x N int16) + a header with `16+24`."""
    digital = np.round(twelve_lead_signal(n=1000).T * 1000).astype(np.int16)
    scipy.io.savemat(tmp_path / "A0001.mat", {"val": digital}, format="4")
    lines = [f"A0001.mat 16+24 1000/mV 16 0 {digital[i, 0]} 0 0 {lead}" for i, lead in enumerate(LEADS_12)]
    (tmp_path / "A0001.hea").write_text("A0001 12 500 1000 05-Jun-2004 11:04:33\n" + "\n".join(lines) + "\n")

    sample = read(tmp_path / "A0001")
    np.testing.assert_allclose(sample.arrays["signal"], digital / 1000.0)
    assert sample.meta["lead_names"] == LEADS_12
    assert sample.sources == [tmp_path / "A0001.hea", tmp_path / "A0001.mat"]
    # the same layout with the .mat cut short
    with open(tmp_path / "A0001.mat", "r+b") as f:
        f.truncate(24 + digital.size * 2 - 24)
    with pytest.raises(ItemError, match=r"A0001\.mat: truncated"):
        read(tmp_path / "A0001")


def test_read_wfdb_flac_record(tmp_path: Path) -> None:
    pytest.importorskip("soundfile")
    written = twelve_lead_signal(n=1000)[:, :3]
    record = write_record(tmp_path, "fl", written, fmt="516")
    sample = read(record)
    assert np.all(np.abs(sample.arrays["signal"] - written.T) <= quantum(record)[:, None])
    data = tmp_path / "fl.dat"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size // 2)
    with pytest.raises(ItemError, match=r"fl\.dat"):
        read(record)


def test_read_wfdb_same_rate_multi_frame_record(tmp_path: Path) -> None:
    """All channels with 2 samples per frame: one rate, fs * 2."""
    t = np.arange(2000) / 1000.0
    frames = [np.sin(2 * np.pi * 5 * t), np.cos(2 * np.pi * 5 * t)]
    wfdb.wrsamp(
        "mf", 500, ["mV", "mV"], ["I", "II"], e_p_signal=frames, samps_per_frame=[2, 2], fmt=["16", "16"],
        write_dir=str(tmp_path),
    )  # fmt: skip
    sample = read(tmp_path / "mf")
    assert sample.meta["sampling_rate"] == 1000.0
    assert sample.arrays["signal"].shape == (2, 2000)
    np.testing.assert_allclose(sample.arrays["signal"], np.stack(frames), atol=1e-4)


def _two_rate_record(directory: Path, name: str = "mf") -> list[np.ndarray]:
    """I at 1000 Hz (2 samples per frame), II at 500 Hz (1 per frame), written by wfdb."""
    t = np.arange(2000) / 1000.0
    channels = [np.sin(2 * np.pi * 3 * t), np.cos(2 * np.pi * 2 * t[::2])]
    wfdb.wrsamp(
        name, 500, ["mV", "mV"], ["I", "II"], e_p_signal=channels, samps_per_frame=[2, 1],
        fmt=["16", "16"], write_dir=str(directory),
    )  # fmt: skip
    return channels


def test_read_wfdb_multi_frequency_interpolates_the_slower_signals(tmp_path: Path) -> None:
    _two_rate_record(tmp_path)
    reference = wfdb.rdrecord(str(tmp_path / "mf"), smooth_frames=False).e_p_signal  # wfdb's own samples
    sample = read(tmp_path / "mf")
    x = sample.arrays["signal"]
    assert x.shape == (2, 2000) and sample.meta["sampling_rate"] == 1000.0
    assert sample.meta["original_lead_sampling_rates"] == [1000.0, 500.0]
    np.testing.assert_array_equal(x[0], reference[0])  # the fast signal as recorded, not averaged
    np.testing.assert_array_equal(x[1, ::2], reference[1])  # the slow one keeps every own sample
    np.testing.assert_allclose(x[1, 1:-1:2], (reference[1][:-1] + reference[1][1:]) / 2)  # and in between
    assert x[1, -1] == reference[1][-1]  # the last frame holds
    with pytest.raises(ItemError, match=r"mf\.hea: multi-frequency record \(I 1000 Hz, II 500 Hz\)"):
        read(tmp_path / "mf", mixed_rates="error")


def test_read_wfdb_multi_frequency_nan_stays_local(tmp_path: Path) -> None:
    t = np.arange(40) / 100.0
    slow = np.sin(t[::2])
    slow[5] = np.nan
    wfdb.wrsamp(
        "mf", 50, ["mV", "mV"], ["I", "II"], e_p_signal=[np.cos(t), slow], samps_per_frame=[2, 1],
        fmt=["16", "16"], write_dir=str(tmp_path),
    )  # fmt: skip
    x = read(tmp_path / "mf").arrays["signal"]
    assert np.flatnonzero(np.isnan(x[1])).tolist() == [9, 10, 11]  # sample 5 is at 10, its neighbours
    assert not np.isnan(x[0]).any()


def _format_61_copy(directory: Path, name: str, spf: list[int] | None = None) -> Path:
    """A format-16 record from wfdb rewritten as format 61 (the same samples, big-endian), as the WFDB
    spec defines it: wfdb-python writes 80/16/24/32/FLAC only."""
    if spf is None:
        record = write_record(directory, name, twelve_lead_signal(n=300)[:, :3])
        record.with_suffix(".hea").write_text(
            record.with_suffix(".hea").read_text().replace(f"{name}.dat 16 ", f"{name}.dat 61 ")
        )
    else:
        _two_rate_record(directory, name)
        record = directory / name
        text = record.with_suffix(".hea").read_text()
        record.with_suffix(".hea").write_text(
            text.replace(".dat 16x2 ", ".dat 61x2 ").replace(".dat 16x1 ", ".dat 61 ")
        )
    data = record.with_suffix(".dat")
    np.fromfile(data, dtype="<i2").astype(">i2").tofile(data)
    return record


def test_read_wfdb_format_61(tmp_path: Path) -> None:
    """wfdb's rdrecord(physical=False, smooth_frames=False) fails on format 61 ("invalid literal for
    int()"); plain rdrecord reads it and is the reference."""
    record = _format_61_copy(tmp_path, "p61")
    assert " 61 " in record.with_suffix(".hea").read_text()
    with pytest.raises(ValueError, match="invalid literal for int"):
        wfdb.rdrecord(str(record), physical=False, smooth_frames=False)  # the wfdb bug climb avoids
    reference = wfdb.rdrecord(str(record)).p_signal.T
    sample = read(record)
    np.testing.assert_array_equal(sample.arrays["signal"], reference)
    assert sample.meta["lead_names"] == LEADS_12[:3]
    header = wfdb.rdheader(str(record))
    gain, baseline = np.asarray(header.adc_gain)[:, None], np.asarray(header.baseline)[:, None]
    digital = read(record, physical=False).arrays["signal"]
    np.testing.assert_array_equal(digital, np.round(reference * gain + baseline))


def test_read_wfdb_format_61_multi_frequency(tmp_path: Path) -> None:
    record = _format_61_copy(tmp_path, "m61", spf=[2, 1])
    reference = wfdb.rdrecord(str(record), smooth_frames=False).e_p_signal
    x = read(record).arrays["signal"]
    np.testing.assert_array_equal(x[0], reference[0])
    np.testing.assert_array_equal(x[1, ::2], reference[1])


def _segment(directory: Path, name: str, signal: np.ndarray, names: list[str], fmt: str) -> wfdb.Record:
    units = {"II": "mV", "V": "mV", "ABP": "mmHg", "PLETH": "NU", "CVP": "mmHg"}
    record = wfdb.Record(
        record_name=name, n_sig=signal.shape[1], fs=125, sig_len=signal.shape[0], p_signal=signal,
        sig_name=names, units=[units[n] for n in names], fmt=[fmt] * len(names),
        file_name=[f"{name}.dat"] * len(names),
    )  # fmt: skip
    record.set_d_features(do_adc=True)
    record.set_defaults()
    return record


def _waves(n: int, k: int) -> np.ndarray:
    t = np.arange(n) / 125.0
    return np.column_stack([np.sin(2 * np.pi * (j + 1) * t) * (j + 1) + 5 * j for j in range(k)])


def test_read_wfdb_fixed_layout_multi_segment(tmp_path: Path) -> None:
    """Written by wfdb.MultiRecord.wrsamp; two segments in different formats and gains."""
    segments = [
        _segment(tmp_path, "f_1", _waves(300, 2), ["II", "ABP"], "16"),
        _segment(tmp_path, "f_2", _waves(100, 2) * 3, ["II", "ABP"], "80"),
    ]
    wfdb.MultiRecord(
        segments=segments, layout="fixed", record_name="f", fs=125, n_sig=2, sig_len=400,
        seg_name=["f_1", "f_2"], seg_len=[300, 100],
    ).wrsamp(write_dir=str(tmp_path))  # fmt: skip
    reference = wfdb.rdrecord(str(tmp_path / "f"), m2s=True).p_signal.T
    sample = read(tmp_path / "f")
    np.testing.assert_array_equal(sample.arrays["signal"], reference)
    assert sample.meta["lead_names"] == ["II", "ABP"] and sample.meta["units"] == ["mV", "mmHg"]
    assert sample.meta["sampling_rate"] == 125.0
    assert [p.name for p in sample.sources] == ["f.hea", "f_1.hea", "f_1.dat", "f_2.hea", "f_2.dat"]
    with pytest.raises(ItemError, match="physical units only"):
        read(tmp_path / "f", physical=False)
    (tmp_path / "f_2.hea").unlink()
    with pytest.raises(ItemError, match=r"f_2\.hea: segment header missing \(named in f\.hea\)"):
        read(tmp_path / "f")


def test_read_wfdb_variable_layout_multi_segment_with_a_null_segment(tmp_path: Path) -> None:
    """MIMIC-style: a layout header naming every signal, segments holding some of them, a null `~` segment.
    The segments are written by wfdb; the master and layout headers by hand (wfdb refuses the `~` file
    name of a layout segment), per the WFDB header spec; wfdb's rdrecord(m2s=True) is the reference."""
    _segment(tmp_path, "v_0001", _waves(300, 2), ["II", "ABP"], "16").wrsamp(write_dir=str(tmp_path))
    _segment(tmp_path, "v_0003", _waves(200, 2) * 2, ["PLETH", "II"], "80").wrsamp(write_dir=str(tmp_path))
    (tmp_path / "v_layout.hea").write_text(
        "v_layout 4 125 0\n~ 0 200/mV 16 0 0 0 0 II\n~ 0 200/mV 16 0 0 0 0 V\n"
        "~ 0 100/mmHg 16 0 0 0 0 ABP\n~ 0 100/NU 16 0 0 0 0 PLETH\n"
    )
    (tmp_path / "v.hea").write_text("v/4 4 125 600\nv_layout 0\nv_0001 300\n~ 100\nv_0003 200\n")
    reference = wfdb.rdrecord(str(tmp_path / "v"), m2s=True).p_signal.T
    sample = read(tmp_path / "v")
    x = sample.arrays["signal"]
    assert x.shape == (4, 600)
    np.testing.assert_array_equal(x, reference)  # NaN where wfdb has NaN
    assert sample.meta["lead_names"] == ["II", "V", "ABP", "PLETH"]
    assert sample.meta["units"] == ["mV", "mV", "mmHg", "NU"]
    assert np.isnan(x[:, 300:400]).all()  # the null segment
    assert np.isnan(x[1]).all()  # V is in no segment
    assert np.isnan(x[3, :300]).all() and not np.isnan(x[3, 400:]).any()  # PLETH only in the last one
    assert [p.name for p in sample.sources] == [
        "v.hea", "v_layout.hea", "v_0001.hea", "v_0001.dat", "v_0003.hea", "v_0003.dat",
    ]  # fmt: skip


def test_read_wfdb_multi_segment_faults_name_the_segment(tmp_path: Path) -> None:
    _segment(tmp_path, "v_0001", _waves(300, 2), ["II", "CVP"], "16").wrsamp(write_dir=str(tmp_path))
    (tmp_path / "v_layout.hea").write_text("v_layout 1 125 0\n~ 0 200/mV 16 0 0 0 0 II\n")
    (tmp_path / "v.hea").write_text("v/3 1 125 400\nv_layout 0\nv_0001 300\n~ 100\n")
    with pytest.raises(ItemError, match=r"v_0001\.hea: signal 'CVP' is not in the layout \(II\)"):
        read(tmp_path / "v")
    (tmp_path / "v_layout.hea").write_text(
        "v_layout 2 125 0\n~ 0 200/mV 16 0 0 0 0 II\n~ 0 1/mmHg 16 0 0 0 0 CVP\n"
    )
    data = tmp_path / "v_0001.dat"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - 4)
    with pytest.raises(ItemError, match=r"v_0001\.dat: truncated signal file"):
        read(tmp_path / "v")
    (tmp_path / "n.hea").write_text("n/2 1 125 200\nv_layout 0\n~ 200\n")
    assert np.isnan(read(tmp_path / "n").arrays["signal"]).all()  # only a null segment: all NaN
    (tmp_path / "v.hea").write_text("v/3 1 125 400\nv_layout 0\nv_0009 300\n~ 100\n")
    with pytest.raises(ItemError, match=r"v_0009\.hea: segment header missing \(named in v\.hea\)"):
        read(tmp_path / "v")


def test_real_mimic3_segment_in_a_multi_segment_record(tmp_path: Path) -> None:
    """The real MIMIC-III segment 3000003_0003 (fmt 80) twice around a null segment, under a variable
    layout that also names ABP."""
    source = fixture("3000003_0003")
    for suffix in (".hea", ".dat"):
        shutil.copyfile(source.with_suffix(suffix), tmp_path / f"3000003_0003{suffix}")
    (tmp_path / "3000003_layout.hea").write_text(
        "3000003_layout 3 125 0\n~ 0 100/mV 8 0 0 0 0 II\n~ 0 100/mmHg 8 0 0 0 0 ABP\n"
        "~ 0 100/mV 8 0 0 0 0 V\n"
    )
    (tmp_path / "3000003.hea").write_text(
        "3000003/4 3 125 3084\n3000003_layout 0\n3000003_0003 1028\n~ 1028\n3000003_0003 1028\n"
    )
    reference = wfdb.rdrecord(str(tmp_path / "3000003"), m2s=True).p_signal.T
    x = read(tmp_path / "3000003").arrays["signal"]
    assert x.shape == (3, 3084)
    np.testing.assert_array_equal(x, reference)
    segment = wfdb.rdrecord(str(source)).p_signal.T
    np.testing.assert_array_equal(x[[0, 2], :1028], segment)
    np.testing.assert_array_equal(x[[0, 2], 2056:], segment)


# ----------------------------------------------------------------------------------- read_wfdb: failures


@pytest.mark.parametrize(
    ("fmt", "cut"),
    [
        ("16", 1),  # part of a sample
        ("16", 24),  # exactly one frame: wfdb could not tell from the array shape
        ("16", 12 * 2 * 2500),  # half the file
        ("212", 1),
        ("212", 18),  # one frame of 12 packed samples
    ],
)
def test_truncated_dat_is_an_item_error(tmp_path: Path, fmt: str, cut: int) -> None:
    record = write_record(tmp_path, "00001_hr", twelve_lead_signal(), fmt=fmt)
    data = tmp_path / "00001_hr.dat"
    with open(data, "r+b") as f:
        f.truncate(data.stat().st_size - cut)
    with pytest.raises(ItemError, match=r"00001_hr\.dat: truncated") as info:
        read(record)
    assert type(info.value) is ItemError


def test_header_longer_than_the_data_is_an_item_error(tmp_path: Path) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100))
    header = (tmp_path / "r.hea").read_text().splitlines()
    header[0] = "r 12 500 101"
    (tmp_path / "r.hea").write_text("\n".join(header) + "\n")
    with pytest.raises(
        ItemError, match=r"r\.dat: truncated signal file, 2400 bytes but the header needs 2424"
    ):
        read(record)


def test_missing_dat_is_an_item_error(tmp_path: Path) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100))
    (tmp_path / "r.dat").unlink()
    with pytest.raises(ItemError, match=r"r\.dat: signal file missing"):
        read(record)


def test_missing_header_is_an_item_error(tmp_path: Path) -> None:
    with pytest.raises(ItemError, match=r"nothing\.hea: header file not found"):
        read(tmp_path / "nothing")


@pytest.mark.parametrize(
    "text",
    [
        "this is not a header\n",
        "",
        "r 2 500 100\nr.dat 16 200/mV 16 0 0 0 0 I\n",  # says 2 signals, describes 1
        "r 1 500 100\nr.dat 999 200/mV 16 0 0 0 0 I\n",  # unknown format
        "r 1 abc 100\nr.dat 16 200/mV 16 0 0 0 0 I\n",
    ],
)
def test_garbage_header_is_an_item_error(tmp_path: Path, text: str) -> None:
    (tmp_path / "r.hea").write_text(text)
    (tmp_path / "r.dat").write_bytes(b"\0" * 400)
    with pytest.raises(ItemError, match=r"r\.hea|r\.dat") as info:
        read(tmp_path / "r")
    assert type(info.value) is ItemError


def test_wfdb_failure_while_reading_becomes_an_item_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # format 212: read by wfdb (format 16 takes climb's own fast reader)
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100), fmt="212")

    def broken(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk on fire")

    monkeypatch.setattr(wfdb, "rdrecord", broken)
    with pytest.raises(ItemError, match=r"r\.dat: cannot read signals of r\.hea \(OSError: disk on fire\)"):
        read(record)


# ---------------------------------------------------------------------------------------- select_leads


def test_select_leads_reorders_case_and_space_insensitively() -> None:
    x = np.arange(4.0)[:, None] * np.ones((4, 10))
    sample = with_signal(x, names=["I", "AVR", "v1", "ECG 4"])
    sample.meta["units"] = ["mV", "uV", "mV", "NU"]
    run(sample, "ecg.select_leads", leads=["ecg4", "aVR", "V1"])
    np.testing.assert_array_equal(sample.arrays["signal"][:, 0], [3, 1, 2])
    assert sample.meta["lead_names"] == ["ecg4", "aVR", "V1"]
    assert sample.meta["units"] == ["NU", "uV", "mV"]


def test_select_leads_missing_lead() -> None:
    sample = with_signal(np.ones((2, 10)), names=["I", "II"])
    with pytest.raises(ItemError, match="lead 'V1' not in the record"):
        run(sample, "ecg.select_leads", leads=["I", "V1"])
    run(sample, "ecg.select_leads", leads=["V1", "ii"], missing="zero")
    np.testing.assert_array_equal(sample.arrays["signal"], [np.zeros(10), np.ones(10)])
    assert sample.meta["units"] == ["", "mV"]
    assert sample.meta["missing_leads"] == ["V1"]


def test_select_leads_ambiguous_lead() -> None:
    sample = with_signal(np.ones((2, 10)), names=["ECG", "ecg"])
    with pytest.raises(ItemError, match="ambiguous"):
        run(sample, "ecg.select_leads", leads=["ECG"])


# ------------------------------------------------------------------------------------ resample, filters


def test_resample_step_updates_rate_and_keeps_the_tone() -> None:
    t = np.arange(5000) / 500.0
    sample = with_signal(np.sin(2 * np.pi * 10 * t))
    run(sample, "ecg.resample", hz=100)
    y = sample.arrays["signal"][0]
    assert y.shape == (1000,)
    assert sample.meta["sampling_rate"] == 100.0
    assert np.fft.rfftfreq(1000, 1 / 100)[np.argmax(np.abs(np.fft.rfft(y)))] == pytest.approx(10)


def test_resample_step_noop_decimate_and_nan() -> None:
    sample = with_signal(np.ones((1, 1000)), fs=500)
    before = sample.arrays["signal"]
    run(sample, "ecg.resample", hz=500)
    assert sample.arrays["signal"] is before
    with pytest.raises(ItemError, match="integer"):
        run(with_signal(np.ones((1, 1000)), fs=360), "ecg.resample", hz=250, method="decimate")
    run(sample := with_signal(np.ones((1, 1000)), fs=1000), "ecg.resample", hz=500, method="decimate")
    assert sample.arrays["signal"].shape == (1, 500)
    nan = with_signal(np.ones((1, 1000)), fs=1000)
    nan.arrays["signal"][0, 5] = np.nan
    with pytest.raises(ItemError, match="nan_to_num"):
        run(nan, "ecg.resample", hz=500)
    with pytest.raises(ItemError, match="sampling_rate"):
        run(Sample(id="x", arrays={"signal": np.ones((1, 10))}), "ecg.resample", hz=5)


def test_bandpass_step_and_cutoff_above_nyquist() -> None:
    t = np.arange(10000) / 500.0
    keep, drift, hum = (
        np.sin(2 * np.pi * 10 * t),
        2 * np.sin(2 * np.pi * 0.05 * t),
        np.sin(2 * np.pi * 100 * t),
    )
    sample = with_signal(keep + drift + hum)
    run(sample, "ecg.bandpass", low=0.5, high=45)
    inner = slice(1000, -1000)
    residual = sample.arrays["signal"][0, inner] - keep[inner]
    assert np.mean(residual**2) / np.mean((drift + hum)[inner] ** 2) < 1e-3
    with pytest.raises(ItemError, match="Nyquist frequency 50 Hz"):
        run(with_signal(np.ones((1, 1000)), fs=100), "ecg.bandpass", low=0.5, high=60)
    with pytest.raises(ItemError, match="Nyquist"):
        run(with_signal(np.ones((1, 1000)), fs=100), "ecg.lowpass", hz=50)
    with pytest.raises(ItemError, match="Nyquist"):
        run(with_signal(np.ones((1, 1000)), fs=100), "ecg.highpass", hz=70)


def test_highpass_lowpass_steps() -> None:
    t = np.arange(5000) / 500.0
    slow, fast = np.sin(2 * np.pi * 1 * t), np.sin(2 * np.pi * 40 * t)
    hp = run(with_signal(slow + fast), "ecg.highpass", hz=10, order=4).arrays["signal"][0]
    lp = run(with_signal(slow + fast), "ecg.lowpass", hz=10).arrays["signal"][0]
    np.testing.assert_allclose(hp[500:-500], fast[500:-500], atol=0.01)
    np.testing.assert_allclose(lp[500:-500], slow[500:-500], atol=0.01)


# ------------------------------------------------------------------------- crop/pad, normalise, cast


@pytest.mark.parametrize(
    ("length", "align", "pad", "first", "last", "padded"),
    [
        (4, "start", "zero", 0, 3, 0),
        (4, "center", "zero", 3, 6, 0),
        (4, "end", "zero", 6, 9, 0),
        (13, "start", "zero", 0, 0, 3),
        (13, "end", "edge", 0, 9, 3),
        (13, "center", "edge", 0, 9, 3),
    ],
)
def test_crop_or_pad_step(length: int, align: str, pad: str, first: float, last: float, padded: int) -> None:
    sample = with_signal(np.arange(10.0))
    run(sample, "ecg.crop_or_pad", length=length, align=align, pad=pad)
    x = sample.arrays["signal"][0]
    assert x.shape == (length,)
    assert (x[0], x[-1]) == (first, last)
    assert sample.meta["padded"] == padded


def test_require_length_drops_other_lengths_on_purpose() -> None:
    """CLIMB's CPSC/Georgia/Chapman loaders drop records not exactly 5000 samples long: a deliberate drop
    (ItemDropped, counted in the manifest), not an item error."""
    from climb_cli.errors import ItemDropped

    kept = with_signal(np.arange(10.0))
    assert run(kept, "ecg.require_length", length=10) is kept
    with pytest.raises(ItemDropped, match="not 10 samples long"):
        run(with_signal(np.arange(11.0)), "ecg.require_length", length=10)
    with pytest.raises(ValidationError):
        run(with_signal(np.arange(10.0)), "ecg.require_length", length=0)


def test_normalize_zscore_per_lead() -> None:
    rng = np.random.default_rng(3)
    sample = with_signal(rng.normal([[1.0], [50.0], [-4.0]], [[0.1], [20.0], [3.0]], size=(3, 2000)))
    run(sample, "ecg.normalize")
    x = sample.arrays["signal"]
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-12)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-12)


def test_normalize_range_is_climb_and_flat_leads_are_zero() -> None:
    raw = np.array([[0.0, 2.0, 4.0], [-1.0, 0.0, 1.0]])
    sample = with_signal(raw.copy())
    run(sample, "ecg.normalize", method="range", per_lead=False)
    np.testing.assert_allclose(sample.arrays["signal"], raw / 5.0)
    flat = with_signal(np.array([[3.0, 3.0, 3.0], [1.0, 2.0, 3.0]]))
    run(flat, "ecg.normalize", method="zscore")
    assert np.isfinite(flat.arrays["signal"]).all()
    np.testing.assert_array_equal(flat.arrays["signal"][0], 0)
    unchanged = with_signal(raw.copy())
    run(unchanged, "ecg.normalize", method="none")
    np.testing.assert_array_equal(unchanged.arrays["signal"], raw)
    run(minmax := with_signal(raw.copy()), "ecg.normalize", method="minmax")
    np.testing.assert_allclose(minmax.arrays["signal"], [[0, 0.5, 1], [0, 0.5, 1]])


def test_cast_int16_with_scale() -> None:
    sample = with_signal(np.array([[0.0012, -1.5, 40.0, -40.0, 0.0005]]))
    run(sample, "ecg.cast", dtype="int16", scale=1000)
    x = sample.arrays["signal"]
    assert x.dtype == np.int16
    np.testing.assert_array_equal(x, [[1, -1500, 32767, -32768, 0]])
    assert sample.meta["dtype"] == "int16" and sample.meta["scale"] == 1000.0
    nan = with_signal(np.array([[np.nan, 1.0]]))
    with pytest.raises(ItemError, match="NaN"):
        run(nan, "ecg.cast", dtype="int16", scale=1)


def test_cast_float_dtypes() -> None:
    sample = with_signal(np.array([[0.1, 2.0]]))
    run(sample, "ecg.cast")
    assert sample.arrays["signal"].dtype == np.float32 and sample.meta["dtype"] == "float32"
    assert "scale" not in sample.meta
    run(sample, "ecg.cast", dtype="float16")
    assert sample.arrays["signal"].dtype == np.float16
    with pytest.raises(ItemError, match="overflow float16"):
        run(with_signal(np.array([[1e6]])), "ecg.cast", dtype="float16")


# ------------------------------------------------------------------------------------ param validation


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("ecg.resample", {"hz": 0}),
        ("ecg.resample", {"hz": -5}),
        ("ecg.resample", {"hz": 500, "method": "linear"}),
        ("ecg.resample", {"hz": 500, "rate": 3}),  # unknown key
        ("ecg.resample", {}),
        ("ecg.bandpass", {"low": 45, "high": 0.5}),
        ("ecg.bandpass", {"low": 5, "high": 5}),
        ("ecg.bandpass", {"low": 0.5, "high": 45, "order": 9}),
        ("ecg.bandpass", {"low": 0.5, "high": 45, "order": 0}),
        ("ecg.highpass", {"hz": 0}),
        ("ecg.lowpass", {"hz": 40, "typo": 1}),
        ("ecg.select_leads", {"leads": []}),
        ("ecg.select_leads", {"leads": ["aVR", "AVR"]}),
        ("ecg.select_leads", {"leads": ["I"], "missing": "skip"}),
        ("ecg.crop_or_pad", {"length": 0}),
        ("ecg.crop_or_pad", {"length": 10, "align": "middle"}),
        ("ecg.normalize", {"method": "l2"}),
        ("ecg.cast", {"dtype": "int16"}),  # needs a scale
        ("ecg.cast", {"dtype": "int8"}),
        ("ecg.cast", {"dtype": "float32", "scale": 0}),
        ("ecg.read_wfdb", {"path": "x"}),
    ],
)
def test_bad_params_are_validation_errors(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        registry()[name].params.model_validate(params)


def test_good_params_and_defaults() -> None:
    steps = registry()
    assert steps["ecg.bandpass"].params.model_validate({"low": 0.5, "high": 45}).order == 3
    assert steps["ecg.read_wfdb"].params().model_dump() == {
        "input": "record",
        "physical": True,
        "mixed_rates": "interpolate",
    }
    assert steps["ecg.normalize"].params().model_dump() == {"method": "zscore", "per_lead": True, "eps": 1e-8}
    assert steps["ecg.cast"].params.model_validate({"dtype": "int16", "scale": 1000}).scale == 1000.0


# --------------------------------------------------------------------------- real PhysioNet records


PTB_LEADS = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]


def test_ptb_s0010_re_full_pipeline() -> None:
    record = fixture("s0010_re")
    sample = read(record)
    assert sample.arrays["signal"].shape == (15, 38400)
    assert sample.meta["sampling_rate"] == 1000.0
    assert sample.meta["lead_names"] == [*PTB_LEADS, "vx", "vy", "vz"]
    assert sample.sources == [
        record.with_suffix(".hea"),
        record.with_suffix(".dat"),
        record.with_suffix(".xyz"),
    ]
    reference = wfdb.rdrecord(str(record)).p_signal.T
    np.testing.assert_array_equal(sample.arrays["signal"], reference)

    run(sample, "ecg.select_leads", leads=LEADS_12)  # header says i, avr, v1...: case-insensitive match
    run(sample, "ecg.resample", hz=500)
    run(sample, "ecg.bandpass", low=0.5, high=45)
    run(sample, "ecg.crop_or_pad", length=5000)
    run(sample, "ecg.normalize")
    run(sample, "ecg.cast", dtype="float32")

    x = sample.arrays["signal"]
    assert x.shape == (12, 5000) and x.dtype == np.float32
    assert np.isfinite(x).all()
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(x.std(axis=1), 1, atol=1e-4)
    assert sample.meta["lead_names"] == LEADS_12
    assert sample.meta["units"] == ["mV"] * 12
    assert sample.meta["sampling_rate"] == 500.0
    assert sample.meta["original_sampling_rate"] == 1000.0
    assert sample.meta["original_length"] == 38400
    assert sample.meta["padded"] == 0
    assert sample.meta["dtype"] == "float32"


def test_ptb_s0010_re_decimated_like_climb() -> None:
    sample = read(fixture("s0010_re"))
    run(sample, "ecg.select_leads", leads=PTB_LEADS)
    run(sample, "ecg.resample", hz=500, method="decimate")
    run(sample, "ecg.crop_or_pad", length=5000)
    run(sample, "ecg.normalize", method="range", per_lead=False)
    x = sample.arrays["signal"]
    assert x.shape == (12, 5000)
    assert x.max() - x.min() == pytest.approx(1.0)


def test_truncated_copy_of_a_real_record(tmp_path: Path) -> None:
    source = fixture("s0010_re")
    for suffix in (".hea", ".dat", ".xyz"):
        shutil.copyfile(source.with_suffix(suffix), tmp_path / f"s0010_re{suffix}")
    with open(tmp_path / "s0010_re.xyz", "r+b") as f:
        f.truncate(230400 - 6)  # one frame of the 3 Frank leads
    with pytest.raises(ItemError, match=r"s0010_re\.xyz: truncated"):
        read(tmp_path / "s0010_re")
    (tmp_path / "s0010_re.xyz").unlink()
    with pytest.raises(ItemError, match=r"s0010_re\.xyz: signal file missing"):
        read(tmp_path / "s0010_re")


def test_macecgdb_test01_00s() -> None:
    sample = read(fixture("test01_00s"))
    assert sample.arrays["signal"].shape == (4, 4000)
    assert sample.meta["sampling_rate"] == 500.0
    assert sample.meta["lead_names"] == ["ECG 1", "ECG 2", "ECG 3", "ECG 4"]
    run(sample, "ecg.select_leads", leads=["ecg2", "ECG 1"])
    run(sample, "ecg.bandpass", low=0.5, high=45)
    run(sample, "ecg.crop_or_pad", length=5000, align="center")
    assert sample.arrays["signal"].shape == (2, 5000)
    assert sample.meta["padded"] == 1000
    assert np.isfinite(sample.arrays["signal"]).all()


def test_mimic_03700181_multi_frequency() -> None:
    """MCL1 has 4 samples per frame (500 Hz), ABP and RESP 1 (125 Hz, RESP skewed): read at 500 Hz."""
    record = fixture("03700181")
    reference = wfdb.rdrecord(str(record), smooth_frames=False).e_p_signal
    sample = read(record)
    x = sample.arrays["signal"]
    assert x.shape == (3, 300000) and sample.meta["sampling_rate"] == 500.0
    assert sample.meta["original_lead_sampling_rates"] == [500.0, 125.0, 125.0]
    np.testing.assert_array_equal(x[0], reference[0])
    np.testing.assert_array_equal(x[1, ::4], reference[1])
    np.testing.assert_array_equal(x[2, ::4], reference[2])
    with pytest.raises(ItemError, match=r"03700181\.hea: multi-frequency record \(MCL1 500 Hz, ABP 125 Hz"):
        read(record, mixed_rates="error")
    run(sample, "ecg.select_leads", leads=["RESP", "MCL1", "V1"], missing="zero")
    assert sample.meta["original_lead_sampling_rates"] == [125.0, 500.0, 0.0]


def test_flac_mixedsignals_multi_rate() -> None:
    pytest.importorskip("soundfile")
    record = fixture("mixedsignals")
    reference = wfdb.rdrecord(str(record), smooth_frames=False).e_p_signal
    sample = read(record)
    x = sample.arrays["signal"]
    assert x.shape == (6, 14400 * 4)
    assert sample.meta["sampling_rate"] == pytest.approx(62.4725 * 4)
    for c, k in enumerate([4, 4, 4, 2, 2, 1]):
        np.testing.assert_array_equal(x[c, :: 4 // k], reference[c])


def test_mimic3_fmt80_3000003_0003() -> None:
    record = fixture("3000003_0003")
    sample = read(record)
    assert sample.arrays["signal"].shape == (2, 1028)
    assert sample.meta["sampling_rate"] == 125.0
    assert sample.meta["lead_names"] == ["II", "V"]
    np.testing.assert_array_equal(sample.arrays["signal"], wfdb.rdrecord(str(record)).p_signal.T)
    run(sample, "ecg.resample", hz=500)
    assert sample.arrays["signal"].shape == (2, 4112)


def test_any_unexpected_failure_is_an_item_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = write_record(tmp_path, "r", twelve_lead_signal(n=100), fmt="212")  # read by wfdb

    def broken(*args: Any, **kwargs: Any) -> None:
        raise KeyError("surprise")

    monkeypatch.setattr(wfdb, "rdheader", broken)
    with pytest.raises(ItemError, match=r"r\.hea: unreadable WFDB header \(KeyError") as info:
        read(record)
    assert type(info.value) is ItemError
    monkeypatch.undo()
    monkeypatch.setattr(Path, "stat", broken)  # fails outside wfdb's own calls
    with pytest.raises(ItemError, match=r"r\.hea: cannot read the record \(KeyError"):
        read(record)
    monkeypatch.undo()


# ------------------------------------------------------------------------------ the format-16 fast path


def _via_wfdb(record: Path) -> np.ndarray:
    rec = wfdb.rdrecord(str(record), physical=False, smooth_frames=False)
    return np.stack(rec.dac(expanded=True, return_res=64))


def test_fast_reader_equals_wfdb_on_generated_records_with_invalid_samples(tmp_path: Path) -> None:
    from climb_cli.steps import _wfdb_fast

    signal = twelve_lead_signal(n=700)
    signal[10, 3] = np.nan  # written as format 16's invalid value, read back as NaN
    record = write_record(tmp_path, "r", signal)
    fast = _wfdb_fast.read(record.with_suffix(".hea"))
    assert fast is not None and fast.fs == FS and fast.names == LEADS_12 and fast.units == ["mV"] * 12
    np.testing.assert_array_equal(np.stack(fast.channels), _via_wfdb(record))  # NaN positions included
    assert np.isnan(fast.channels[3][10])
    assert read(record).arrays["signal"].tobytes() == np.stack(fast.channels).tobytes()


@pytest.mark.skipif(not FIXTURES.is_dir(), reason="../shared/fixtures/wfdb is not present")
@pytest.mark.parametrize("name", ["test01_00s", "s0010_re"])
def test_fast_reader_equals_wfdb_on_real_records(name: str) -> None:
    """test01_00s: gain without baseline; s0010_re: no units, two signal files (.dat and .xyz)."""
    from climb_cli.steps import _wfdb_fast

    fast = _wfdb_fast.read(FIXTURES / f"{name}.hea")
    assert fast is not None
    np.testing.assert_array_equal(np.stack(fast.channels), _via_wfdb(FIXTURES / name))
    rec = wfdb.rdheader(str(FIXTURES / name))
    assert fast.names == rec.sig_name and fast.units == rec.units and fast.fs == rec.fs


def test_fast_reader_declines_what_it_does_not_know(tmp_path: Path) -> None:
    from climb_cli.steps import _wfdb_fast

    assert (
        _wfdb_fast.read(write_record(tmp_path, "a", twelve_lead_signal(n=50), fmt="212").with_suffix(".hea"))
        is None
    )
    assert (
        _wfdb_fast.read(write_record(tmp_path, "b", twelve_lead_signal(n=50), fmt="80").with_suffix(".hea"))
        is None
    )
