"""ECG path, in parts: the reader, the signal steps, and both together, each against its plain equivalent.

Records: 12-lead WFDB format-16 records at 360 Hz (MIT-BIH's rate) of 8-13 s each, written by
``wfdb.wrsamp``, so the PTB-XL recipe's ``ecg.resample {hz: 500}`` and ``ecg.crop_or_pad {length: 5000}``
do work on every record (360 -> 500 Hz; records longer than 10 s are cropped, shorter ones padded).

* reader: climb's ``ecg.read_wfdb`` (its own format-16 reader) vs ``wfdb.rdrecord(...).p_signal.T``;
* steps: ``ecg.resample`` + ``ecg.crop_or_pad`` on the signal already read vs
  ``scipy.signal.resample_poly(x, 25, 18)`` (trimmed to round(n x 25/18) samples, the length
  climb's resample promises) + slice / ``np.pad``;
* whole: the two together (read, resample, crop, as the recipe's steps run) vs the plain loop.

Every item's output is compared with its baseline's (exactly equal), not only the first. Timings are
per record, medians of interleaved runs after a warm-up, one process, one thread.

Run: python bench/ecg_path.py [--quick] [--runs N] [--records N]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

FS, TARGET_HZ, LENGTH = 360, 500, 5000
LEADS = ["I", "II", "III", "AVR", "AVL", "AVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_records(folder: Path, n: int, seed: int = 7) -> list[Path]:
    """n 12-lead format-16 records at 360 Hz, 8-13 s each (random walk + noise, in mV); their bases."""
    import numpy as np
    import wfdb

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    bases = []
    for i in range(n):
        samples = int(FS * rng.uniform(8, 13))
        sig = np.cumsum(rng.normal(0, 0.02, (samples, len(LEADS))), axis=0) + rng.normal(
            0, 0.05, (samples, 12)
        )
        name = f"rec{i:04d}"
        wfdb.wrsamp(
            name, fs=FS, units=["mV"] * 12, sig_name=LEADS, p_signal=sig, fmt=["16"] * 12,
            adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(folder),
        )  # fmt: skip
        bases.append(folder / name)
    return bases


def main(argv: list[str] | None = None) -> int:
    p = common.arg_parser(__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=None, help="records (default 200; --quick 40)")
    args = p.parse_args(argv)
    runs = common.runs_from(args)
    n = args.records or (40 if args.quick else 200)

    import numpy as np
    import wfdb
    from scipy import signal as ss

    from climb_cli.steps.base import Sample, registry

    reg = registry()

    def step(name: str, **params: object) -> Callable[[Sample], Sample]:
        d = reg[name]
        model = d.params.model_validate(params)
        return lambda s: d.fn(s, model)

    read = step("ecg.read_wfdb", input="record")
    resample = step("ecg.resample", hz=TARGET_HZ)
    crop = step("ecg.crop_or_pad", length=LENGTH)

    def plain_read(base: Path) -> np.ndarray:
        return np.ascontiguousarray(wfdb.rdrecord(str(base)).p_signal.T)

    def plain_steps(x: np.ndarray) -> np.ndarray:
        # 500/360 = 25/18; resample_poly gives ceil(n * 25/18) samples, climb's contract round(n * 25/18)
        y = ss.resample_poly(x, 25, 18, axis=-1)[:, : (x.shape[1] * 25 + 9) // 18]
        return y[:, :LENGTH] if y.shape[1] >= LENGTH else np.pad(y, ((0, 0), (0, LENGTH - y.shape[1])))

    with common.bench_tmpdir("ecg") as tmp:
        bases = write_records(tmp / "records", n)
        signals = [plain_read(b) for b in bases]  # the steps' input, read once

        def climb_read() -> list[np.ndarray]:
            return [read(Sample(id=b.name, inputs={"record": b})).arrays["signal"] for b in bases]

        def climb_steps() -> list[np.ndarray]:
            out = []
            for b, x in zip(bases, signals, strict=True):
                s = Sample(id=b.name, arrays={"signal": x.copy()}, meta={"sampling_rate": float(FS)})
                out.append(crop(resample(s)).arrays["signal"])
            return out

        def climb_whole() -> list[np.ndarray]:
            return [
                crop(resample(read(Sample(id=b.name, inputs={"record": b})))).arrays["signal"] for b in bases
            ]

        methods: dict[str, tuple[Callable[[], list[np.ndarray]], Callable[[], list[np.ndarray]]]] = {
            "reader": (climb_read, lambda: [plain_read(b) for b in bases]),
            "steps": (climb_steps, lambda: [plain_steps(x) for x in signals]),
            "whole": (climb_whole, lambda: [plain_steps(plain_read(b)) for b in bases]),
        }
        for part, (mine, plain) in methods.items():  # warm-up, and every item checked
            a, b = mine(), plain()
            bad = [
                i
                for i, (x, y) in enumerate(zip(a, b, strict=True))
                if x.shape != y.shape or not np.array_equal(x, y)
            ]
            if bad:
                raise SystemExit(
                    f"{part}: climb and the plain loop differ on {len(bad)} of {n} records (first: {bad[0]})"
                )
        series = {
            (part, who): common.Series(f"{part}/{who}") for part in methods for who in ("climb", "plain")
        }
        for run in range(runs):
            for part, (mine, plain) in methods.items():
                for who, fn in common.rotate([("climb", mine), ("plain", plain)], run):
                    t0 = time.perf_counter()
                    fn()
                    series[(part, who)].add(common.Timing((time.perf_counter() - t0) / n, 0.0))
        cropped = sum(1 for x in signals if round(x.shape[1] * TARGET_HZ / FS) > LENGTH)

    rows = []
    for part, label in (
        ("reader", "reader: ecg.read_wfdb vs wfdb.rdrecord"),
        ("steps", "steps: ecg.resample + ecg.crop_or_pad vs resample_poly + slice/pad"),
        ("whole", "whole: read + resample + crop"),
    ):
        c, b = series[(part, "climb")], series[(part, "plain")]
        rows.append(
            [label, f"{c.median * 1e3:.2f}", f"{b.median * 1e3:.2f}", common.fmt_ratio(b.median / c.median)]
        )
    common.print_table(
        f"ECG path: {n} records, 12 leads @ {FS} Hz, 8-13 s, format 16 -> {TARGET_HZ} Hz, {LENGTH} samples "
        f"({cropped} cropped, {n - cropped} padded); median of {runs} runs, ms per record",
        ["part", "climb ms", "plain ms", "plain/climb"],
        rows,
    )
    common.say(f"every record equal to its baseline in all three parts; {common.machine_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
