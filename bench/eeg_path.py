"""EEG path: climb's eeg.read_edf -> resample 125 -> epoch 30 s (annotation labels) -> scale isruc -> cast,
against a bare pyedflib + scipy loop doing the same work. Medians of 7 interleaved runs after a warm-up
(--quick: a 1 h recording, 3 runs), one process. Run: python bench/eeg_path.py [--quick] [--runs N]."""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
import pyedflib  # noqa: E402
from scipy import signal as ss  # noqa: E402

from climb_cli.steps.base import Sample, registry  # noqa: E402

HOURS, FS = 2, 200
CH = ["EEG F3-A2", "EEG F4-A1", "EEG C3-A2", "EEG C4-A1", "EEG O1-A2", "EEG O2-A1", "EOG E1-M2", "EMG chin"]


def make(path: Path) -> None:
    n = HOURS * 3600 * FS
    rng = np.random.default_rng(0)
    w = pyedflib.EdfWriter(str(path), len(CH), file_type=pyedflib.FILETYPE_EDFPLUS)
    w.setSignalHeaders(
        [
            dict(
                label=c,
                dimension="uV",
                sample_frequency=FS,
                physical_min=-500,
                physical_max=500,
                digital_min=-32768,
                digital_max=32767,
            )
            for c in CH
        ]
    )
    w.writeSamples([rng.normal(0, 30, n) for _ in CH])
    stages = ["Sleep stage W", "Sleep stage N1", "Sleep stage N2", "Sleep stage N3", "Sleep stage R"]
    for k in range(HOURS * 120):
        w.writeAnnotation(30 * k, 30, stages[k % 5])
    w.close()


def climb(path: Path) -> np.ndarray:
    reg = registry()
    s = Sample(id="x", inputs={"edf": path})
    for name, params in [
        ("eeg.read_edf", {"channels": ["C3", "C4"]}),
        ("eeg.resample", {"hz": 125}),
        ("eeg.epoch", {"window": 30}),
        ("eeg.scale", {"preset": "isruc"}),
        ("eeg.cast", {}),
    ]:
        d = reg[name]
        s = d.fn(s, d.params.model_validate(params))
    return s.arrays["epochs"]


def bare(path: Path) -> np.ndarray:
    with pyedflib.EdfReader(str(path)) as r:
        labels = r.getSignalLabels()
        x = np.stack([r.readSignal(labels.index(c)) for c in ("EEG C3-A2", "EEG C4-A1")])
        _, _, texts = r.readAnnotations()
    y = ss.resample_poly(x, 5, 8, axis=-1)
    n = y.shape[1] // 3750
    ep = y[:, : n * 3750].reshape(2, n, 3750).transpose(1, 0, 2)
    return ((ep + 25) / 50).astype(np.float32)


def timed(path: Path, runs: int = 7) -> tuple[float, float]:
    """Interleaved runs (climb, bare, climb, bare...) so machine noise hits both alike; medians."""
    climb(path), bare(path)
    tc, tb = [], []
    for _ in range(runs):
        t = time.perf_counter()
        climb(path)
        tc.append(time.perf_counter() - t)
        t = time.perf_counter()
        bare(path)
        tb.append(time.perf_counter() - t)
    return statistics.median(tc), statistics.median(tb)


def main(argv: list[str] | None = None) -> None:
    global HOURS
    args = common.arg_parser(__doc__.splitlines()[0]).parse_args(argv)
    runs = args.runs if args.runs is not None else (3 if args.quick else 7)
    HOURS = 1 if args.quick else HOURS
    with common.bench_tmpdir("eeg") as d:
        path = d / "psg.edf"
        make(path)
        a, b = climb(path), bare(path)
        assert a.shape == b.shape and np.allclose(a, b, atol=1e-5), (a.shape, b.shape)
        tc, tb = timed(path, runs)
        mb = path.stat().st_size / 1e6
        print(
            f"recording: {HOURS} h, {len(CH)} ch @ {FS} Hz, {mb:.0f} MB EDF+, {a.shape[0]} epochs of 2x3750"
        )
        print(f"bare pyedflib+scipy loop: median {tb:.3f} s")
        print(f"climb eeg steps:          median {tc:.3f} s")
        print(f"ratio climb / bare:       {tc / tb:.2f}")


if __name__ == "__main__":
    main()
