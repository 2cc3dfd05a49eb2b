"""Peak extra disk and memory while climb extracts a large .tar.gz (and, smaller, a .7z and a stored .rar).

Run: python bench/archive_disk.py [--quick] [--mb N]

A tar.gz of N MB of members (8 members, incompressible bytes, gzip level 1) is extracted with
climb_cli.archives.extract while a thread samples every 20 ms the bytes under the data folder that are not
the archive or a finished member (the temporary `.part` files) and the process's peak RSS. The figures are
ratios to the largest member and to the archive: climb streams member by member, so the extra disk should
stay near one member (never a second copy of the archive, never the decompressed .tar), and memory flat.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import resource
import sys
import tarfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from climb_cli.archives import extract  # noqa: E402
from climb_cli.manifest import RawManifest  # noqa: E402


def _build(path: Path, members: int, each: int) -> None:
    import gzip

    with gzip.open(path, "wb", compresslevel=1) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for i in range(members):
            info = tarfile.TarInfo(f"data/part{i:02d}.bin")
            info.size = each
            r, w = os.pipe()

            def feed(w: int = w) -> None:
                with os.fdopen(w, "wb") as out:
                    left = each
                    while left:
                        n = min(left, 4 << 20)
                        out.write(os.urandom(n))
                        left -= n

            t = threading.Thread(target=feed)
            t.start()
            with os.fdopen(r, "rb") as src:
                tar.addfile(info, src)
            t.join()


def _partial_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / ".climb" / "partial").rglob("*.part") if p.is_file())


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--mb", type=int, default=0, help="total member size in MB (default 2048, quick 256)")
    args = ap.parse_args()
    total_mb = args.mb or (256 if args.quick else 2048)
    members = 8
    each = total_mb * (1 << 20) // members
    with common.bench_tmpdir("archive") as tmp:
        raw = tmp / "raw"
        raw.mkdir()
        archive = raw / "big.tar.gz"
        t0 = time.perf_counter()
        _build(archive, members, each)
        built = time.perf_counter() - t0
        h = hashlib.sha256()
        with open(archive, "rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
        peak_part, stop = [0], threading.Event()

        def sample() -> None:
            while not stop.is_set():
                with contextlib.suppress(OSError):
                    peak_part[0] = max(peak_part[0], _partial_bytes(raw))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        sampler.start()
        t0 = time.perf_counter()
        with RawManifest.for_dataset(raw) as m:
            res = extract(archive, raw_root=raw, key="big.tar.gz", sha256=h.hexdigest(), dataset="bench",
                          source_id="data", manifest=m)  # fmt: skip
        took = time.perf_counter() - t0
        stop.set()
        sampler.join()
        rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        size = archive.stat().st_size
        print(
            f"archive: {size / 1e6:,.0f} MB tar.gz, {members} members of {each / 1e6:,.0f} MB "
            f"(built in {built:.1f} s)"
        )
        print(f"extracted {res.extracted} members in {took:.1f} s ({total_mb * 1.048576 / took:,.0f} MB/s)")
        print(f"peak extra disk (.part files): {peak_part[0] / 1e6:,.0f} MB = "
              f"{peak_part[0] / each:.2f} x largest member, {peak_part[0] / size:.3f} x archive")  # fmt: skip
        print(f"peak RSS: {rss1 / 1024:,.0f} MB (before extraction {rss0 / 1024:,.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
