"""The download engine under network faults, against the fake PhysioNet over real sockets.

For each fault: the download completes with a byte-identical file, or fails with one clear line
and leaves nothing under the final name (the partial file stays resumable).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet, write_sha256sums
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from tests.conftest import fast_settings, run_climb, small_filesystem, write_recipe

BIG = 3 * 1024 * 1024 + 17


@pytest.fixture
def big(mirror_copy: Path) -> bytes:
    data = os.urandom(BIG)
    (mirror_copy / "big.bin").write_bytes(data)
    write_sha256sums(mirror_copy)
    return data


def _recipe(tmp_path: Path, include: str = "big.bin") -> Recipe:
    src = f"  - kind: physionet\n    project: ptb-xl\n    version: 1.0.3\n    include: [{include}]\n"
    return Catalog([write_recipe(tmp_path / "recipes", "toyecg", src).parent]).load("toyecg")


def _final(settings: Settings) -> Path:
    return settings.raw_dir("toyecg") / "big.bin"


def _part(settings: Settings) -> Path:
    return settings.raw_dir("toyecg") / ".climb" / "partial" / "big.bin.part"


def _file_requests(server: FakePhysioNet) -> list:
    """The logged GETs of big.bin; the fake logs a request after its last byte, so wait a moment."""
    seen, deadline = -1, time.monotonic() + 2.0
    while time.monotonic() < deadline:
        reqs = server.requests_for("/files/ptb-xl/1.0.3/big.bin", method="GET")
        if len(reqs) == seen:
            return reqs
        seen = len(reqs)
        time.sleep(0.1)
    return reqs


def test_resume_after_a_dropped_connection_is_byte_identical(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("drop", path_glob="*/big.bin", after_bytes=1_000_000)
    report = download(_recipe(tmp_path), settings)
    assert report.ok, report.outcomes
    assert _final(settings).read_bytes() == big
    first, second = _file_requests(server)
    assert first.fault == "drop" and second.status == 206
    assert second.range == f"bytes={first.bytes_sent}-" and second.if_range  # resumed, validated
    assert second.bytes_sent == BIG - first.bytes_sent
    assert not _part(settings).exists()


def test_resume_of_a_part_left_by_a_killed_run(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    # a previous run died after 1 MiB: the part file and its validator are on disk
    part = _part(settings)
    part.parent.mkdir(parents=True)
    part.write_bytes(big[: 1 << 20])
    etag = server.faults  # noqa: F841 - the validator comes from a HEAD of the live file
    import requests

    head = requests.head(f"{server.base_url}/files/ptb-xl/1.0.3/big.bin", timeout=5)
    part.with_name("big.bin.part.json").write_text(
        json.dumps({"validator": head.headers["ETag"], "url": head.url})
    )
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    (req,) = _file_requests(server)
    assert req.status == 206 and req.range == f"bytes={1 << 20}-" and req.bytes_sent == BIG - (1 << 20)


def test_a_part_with_a_stale_validator_is_refetched_whole(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    part = _part(settings)
    part.parent.mkdir(parents=True)
    part.write_bytes(b"x" * 5000)  # bytes of an older version of the file
    part.with_name("big.bin.part.json").write_text(json.dumps({"validator": '"0-0"', "url": ""}))
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    (req,) = _file_requests(server)
    assert req.if_range == '"0-0"' and req.status == 200  # If-Range failed: the server sent it whole


@pytest.mark.parametrize("kind", ["ignore_range", "change"])
def test_server_that_restarts_the_body_gives_an_identical_file(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes, kind: str
) -> None:
    server.faults.add("drop", path_glob="*/big.bin", after_bytes=700_000)
    server.faults.add(kind, path_glob="*/big.bin")
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    reqs = _file_requests(server)
    assert [r.status for r in reqs] == [200, 200] and reqs[1].range  # asked to resume, got a restart


def test_503_and_429_bursts_with_retry_after(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("status", path_glob="*/big.bin", status=503, times=2, retry_after="0")
    server.faults.add("status", path_glob="*/big.bin", status=429, retry_after="1")
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    reqs = _file_requests(server)
    assert [r.status for r in reqs] == [503, 503, 429, 200]
    assert reqs[3].started - reqs[2].started >= 0.95  # Retry-After: 1 was honoured (backoff_max is 0.2)


def test_stall_past_the_read_timeout_is_retried(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("stall", path_glob="*/big.bin", after_bytes=200_000, seconds=4)
    assert download(_recipe(tmp_path), settings.with_(read_timeout=0.5)).ok
    assert _final(settings).read_bytes() == big
    assert _file_requests(server)[-1].status == 206


def test_persistent_failure_is_one_line_and_leaves_no_final_file(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("drop", path_glob="*/big.bin", after_bytes=300_000)
    server.faults.add("status", path_glob="*/big.bin", status=503, times=-1)
    report = download(_recipe(tmp_path), settings)
    (out,) = report.outcomes
    assert out.status == "failed" and "\n" not in out.error
    assert (
        out.error.startswith("gave up on http://127.0.0.1:")
        and "/big.bin after 5 tries: HTTP 503" in out.error
    )
    assert not _final(settings).exists()
    assert _part(settings).stat().st_size == 300_000  # kept for the next run
    server.faults.clear()
    assert download(_recipe(tmp_path), settings).ok  # ... which resumes it
    assert _final(settings).read_bytes() == big
    assert _file_requests(server)[-1].range == "bytes=300000-"


def test_upstream_bytes_that_do_not_match_the_sum_are_refused(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path, big: bytes
) -> None:
    (mirror_copy / "big.bin").write_bytes(big[:-1] + b"!")  # changed after SHA256SUMS.txt was written
    report = download(_recipe(tmp_path), settings)
    (out,) = report.outcomes
    assert out.status == "failed" and out.error.startswith(
        "toyecg: checksum mismatch for big.bin from http://"
    )
    assert not _final(settings).exists() and not _part(settings).exists()
    assert out.error.endswith("3 fresh downloads, the same bytes each time: upstream differs)")
    assert [r.range for r in _file_requests(server)] == [None, None, None]  # whole, never resumed


def test_a_byte_flipped_in_transit_is_fetched_again_whole_within_the_run(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("flip", path_glob="*/big.bin", after_bytes=2_000_000, times=2)
    report = download(_recipe(tmp_path), settings)
    assert report.ok, report.outcomes
    assert _final(settings).read_bytes() == big
    reqs = _file_requests(server)
    assert [(r.fault, r.range) for r in reqs] == [("flip", None), ("flip", None), (None, None)]


def test_a_corrupt_file_under_the_final_name_is_replaced(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    assert download(_recipe(tmp_path), settings).ok
    with open(_final(settings), "r+b") as f:
        f.seek(12345)
        f.write(b"\x00\xff")
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    assert len(_file_requests(server)) == 2


def test_per_host_connection_cap(tmp_path: Path, settings: Settings, mirror_copy: Path) -> None:
    with FakePhysioNet(
        [
            __import__("climb_cli.fakes.physionet", fromlist=["FakeProject"]).FakeProject(
                "ptb-xl", "1.0.3", mirror_copy
            )
        ],
        latency=0.05,
    ) as slow:
        s = settings.with_(mirrors={"physionet": slow.base_url}, connections_per_host=2)
        assert download(_recipe(tmp_path, include="records500/"), s).ok
        reqs = slow.requests_for("/files/ptb-xl/1.0.3/records500/*")
    assert len(reqs) == 60
    events = sorted([(r.started, 1) for r in reqs] + [(r.started + 0.05, -1) for r in reqs])
    live = peak = 0
    for _, d in events:
        live += d
        peak = max(peak, live)
    assert peak <= 2
    assert len({r.client_port for r in reqs}) <= 4  # keep-alive connections are reused


def test_short_body_closed_cleanly_is_resumed(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("short", path_glob="*/big.bin", after_bytes=1_000_000)
    assert download(_recipe(tmp_path), settings).ok
    assert _final(settings).read_bytes() == big
    first, second = _file_requests(server)
    assert first.fault == "short" and second.status == 206
    assert second.range == f"bytes={first.bytes_sent}-"


def _requests_settled(server: FakePhysioNet, glob: str, n: int) -> list:
    """The logged GETs of glob, once there are n (the fake logs a cut-off request a moment later)."""
    deadline = time.monotonic() + 5
    while len(reqs := server.requests_for(glob, method="GET")) < n and time.monotonic() < deadline:
        time.sleep(0.05)
    return sorted(reqs, key=lambda r: r.started)


@pytest.mark.parametrize("fault", ["short", "drop"])
def test_a_small_body_cut_off_is_resumed_from_the_bytes_received(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path, fault: str
) -> None:
    """A small file's body is kept in memory until its commit writes it; cut off, the bytes received still go
    to the part file, and the next try asks for the rest only (Range), as for a large file."""
    data = os.urandom(200_000)
    (mirror_copy / "small.bin").write_bytes(data)
    write_sha256sums(mirror_copy)
    server.faults.add(fault, path_glob="*/small.bin", after_bytes=50_000)
    assert download(_recipe(tmp_path, include="small.bin"), settings).ok
    assert (settings.raw_dir("toyecg") / "small.bin").read_bytes() == data
    first, second = _requests_settled(server, "*/small.bin", 2)
    assert first.fault == fault and second.status == 206
    assert second.range == f"bytes={first.bytes_sent}-" and 0 < first.bytes_sent < len(data)
    assert not list((settings.raw_dir("toyecg") / ".climb" / "partial").rglob("*.part*"))


def test_a_full_disk_while_small_files_are_committed_is_one_line(
    tmp_path: Path, server: FakePhysioNet, mirror_copy: Path, tmpfs: Callable[[int], Path]
) -> None:
    """Many small files onto a disk that fills up: their bodies wait in memory and the commit writes them, so
    the ENOSPC comes from the commit: one line, every file under its final name whole, no part file left."""
    from climb_cli.errors import DiskFullError

    many = mirror_copy / "many"
    many.mkdir()
    for i in range(60):
        (many / f"f{i:02d}.dat").write_bytes(os.urandom(20_000))
    write_sha256sums(mirror_copy)
    disk = tmpfs(512 << 10)
    settings = fast_settings(tmp_path, {"physionet": server.base_url}, data_dir=disk / "data", min_free=0)
    with pytest.raises(DiskFullError, match=f"^no space left on {disk}"):
        download(_recipe(tmp_path, include="many/*"), settings)
    raw = settings.raw_dir("toyecg")
    done = sorted((raw / "many").glob("*.dat"))
    assert 0 < len(done) < 60
    assert all(p.read_bytes() == (many / p.name).read_bytes() for p in done)
    assert not list((raw / ".climb" / "partial").rglob("*.part"))


def test_files_of_known_size_are_fetched_largest_first(
    tmp_path: Path, server: FakePhysioNet, mirror_copy: Path
) -> None:
    """Files whose sizes the recipe (or listing) declares go largest first, so that a run does not end on one
    connection busy with a large file while the others idle; the order of the recipe does not matter."""
    import hashlib

    sizes = {"a.bin": 1_000, "b.bin": 300_000, "c.bin": 20_000, "d.bin": 90_000}
    rows = []
    for name, size in sizes.items():
        data = os.urandom(size)
        (mirror_copy / name).write_bytes(data)
        url = f"{server.base_url}/files/ptb-xl/1.0.3/{name}"
        rows.append(f"      - {{url: '{url}', sha256: {hashlib.sha256(data).hexdigest()}, size: {size}}}\n")
    recipe = Catalog(
        [write_recipe(tmp_path / "recipes", "toyecg", "  - kind: http\n    files:\n" + "".join(rows)).parent]
    ).load("toyecg")
    settings = fast_settings(tmp_path, {"physionet": server.base_url}, connections_per_host=1)
    assert download(recipe, settings).ok
    reqs = sorted(server.requests_for("/files/ptb-xl/1.0.3/*.bin", method="GET"), key=lambda r: r.started)
    assert [r.path.rpartition("/")[2] for r in reqs] == ["b.bin", "d.bin", "c.bin", "a.bin"]


def test_the_bytes_total_counts_files_already_present(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    from climb_cli.events import Progress

    class Totals(Progress):
        def start(self, total_files: int, total_bytes: int | None) -> None:
            self.totals = (total_files, total_bytes)

    first, again = Totals(), Totals()
    assert download(_recipe(tmp_path), settings, first).ok
    assert first.totals == (1, None)  # PhysioNet lists no sizes in SHA256SUMS.txt
    assert download(_recipe(tmp_path), settings, again).ok
    assert again.totals == (1, BIG)  # present files count with their size: not "?"


# ------------------------------------------------------------------ servers that never end (issue 7)
def _free(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int], Path]]:
    """Mount small tmpfs folders (a real disk that fills up); skipped where mount is not permitted."""
    with contextlib.ExitStack() as stack:
        yield lambda size: stack.enter_context(small_filesystem(tmp_path / f"tmpfs{size}", str(size)))


def test_endless_body_stops_at_the_declared_size(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    import hashlib

    # a recipe that declares the file's size (as Zenodo, Kaggle, Hugging Face and bucket listings do)
    url = f"{server.base_url}/files/ptb-xl/1.0.3/big.bin"
    sha = hashlib.sha256(big).hexdigest()
    src = f"  - kind: http\n    files:\n      - {{url: '{url}', sha256: {sha}, size: {BIG}}}\n"
    recipe = Catalog([write_recipe(tmp_path / "recipes", "toyecg", src).parent]).load("toyecg")
    server.faults.add("endless", path_glob="*/big.bin", after_bytes=64 << 20)
    report = download(recipe, settings)
    (out,) = report.outcomes
    assert out.status == "failed" and "\n" not in out.error
    assert out.error.endswith(f"sent more than the {BIG:,} bytes declared for big.bin; stopped")
    assert not _final(settings).exists() and not _part(settings).exists()
    (req,) = _file_requests(server)
    assert req.fault == "endless" and req.bytes_sent < 64 << 20  # the client hung up, not the cap


def test_endless_body_of_unknown_size_stops_at_the_min_free_reserve(
    tmp_path: Path, server: FakePhysioNet, big: bytes, tmpfs: Callable[[int], Path]
) -> None:
    from climb_cli.errors import DiskFullError
    from climb_cli.space import CHECK_EVERY

    disk = tmpfs(64 << 20)
    reserve = 40 << 20
    settings = fast_settings(
        tmp_path, {"physionet": server.base_url}, data_dir=disk / "data", min_free=reserve
    )
    server.faults.add("endless", path_glob="*/big.bin", after_bytes=256 << 20)
    with pytest.raises(DiskFullError) as e:
        download(_recipe(tmp_path), settings)
    assert str(e.value).startswith(f"no space left on {disk}")
    assert f"free of which --min-free keeps {reserve:,}; " in str(e.value)
    # stopped within one check interval of the reserve, far from filling the disk
    assert _free(disk) >= reserve - CHECK_EVERY - settings.chunk_size
    assert not _final(settings).exists()


def test_a_full_disk_is_one_line_and_what_was_downloaded_stays_valid(
    tmp_path: Path, server: FakePhysioNet, mirror_copy: Path, big: bytes, tmpfs: Callable[[int], Path]
) -> None:
    from climb_cli.errors import DiskFullError

    disk = tmpfs(2 << 20)  # smaller than big.bin, whose size the listing does not give
    settings = fast_settings(tmp_path, {"physionet": server.base_url}, data_dir=disk / "data", min_free=0)
    with pytest.raises(DiskFullError, match=f"^no space left on {disk}/data/raw/toyecg"):
        download(_recipe(tmp_path), settings)  # ENOSPC from a write
    env = {"CLIMB_PHYSIONET_URL": server.base_url, "CLIMB_MIN_FREE": "0", "CLIMB_RETRIES": "1"}
    recipes = str(tmp_path / "recipes")
    _recipe(tmp_path, include="RECORDS")
    base = ("--data-dir", str(disk / "data"), "--recipes", recipes)
    assert run_climb(*base, "download", "toyecg", env=env).returncode == 0
    _recipe(tmp_path, include="big.bin")
    r = run_climb(*base, "download", "toyecg", env=env)
    assert r.returncode == 1, r.stderr
    line = r.stderr.strip()
    assert line.startswith(f"climb: error: no space left on {disk}") and "\n" not in line, r.stderr
    assert "bytes needed" in line and "internal error" not in line
    assert not (disk / "data" / "raw" / "toyecg" / "big.bin").exists()
    _recipe(tmp_path, include="RECORDS")
    v = run_climb(*base, "verify", "toyecg", env=env)
    assert v.returncode == 0 and "0 missing, 0 corrupt" in v.stdout, v.stdout + v.stderr


def test_a_real_download_checks_free_space_before_it_starts(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    reserve = _free(tmp_path) + (1 << 30)  # more than the disk has free
    report = download(_recipe(tmp_path), settings.with_(min_free=reserve))
    assert not report.ok and report.outcomes == []
    assert report.why.startswith(f"toyecg: no space left on {settings.data_dir.parent}")
    assert not server.requests_for("*/big.bin", method="GET")


# ------------------------------------------------------------------ a trickling server (issue 7)
def test_trickle_is_detected_as_a_stall_retried_then_failed(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path
) -> None:
    (mirror_copy / "small.bin").write_bytes(os.urandom(40))
    write_sha256sums(mirror_copy)
    server.faults.add("trickle", path_glob="*/small.bin", seconds=0.1, times=-1)
    fast = settings.with_(stall_speed=1000, stall_time=0.5, retries=1)
    report = download(_recipe(tmp_path, include="small.bin"), fast)
    (out,) = report.outcomes
    assert out.status == "failed" and "\n" not in out.error
    assert "after 2 tries: stalled: " in out.error and "(below 1000 bytes/s)" in out.error
    deadline = time.monotonic() + 5
    while len(reqs := server.requests_for("*/small.bin", method="GET")) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # the fake logs a cut-off request when its next write fails
    assert len(reqs) == 2 and reqs[1].range  # the retry resumed the bytes already received


def test_trickle_then_a_good_answer_completes(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, big: bytes
) -> None:
    server.faults.add("trickle", path_glob="*/big.bin", seconds=0.1)
    report = download(_recipe(tmp_path), settings.with_(stall_speed=1000, stall_time=0.5))
    assert report.ok, report.outcomes
    assert _final(settings).read_bytes() == big
    time.sleep(0.5)  # the fake logs the cut-off request when its next write fails
    first, second = sorted(_file_requests(server), key=lambda r: r.started)
    assert first.fault == "trickle" and second.status == 206


def test_many_files_reuse_their_connections(tmp_path: Path, server: FakePhysioNet, mirror_copy: Path) -> None:
    """40 files over 4 connections per host: one GET per file and one for SHA256SUMS.txt (no HEAD, no
    listing), on at most 4 kept-alive connections for the files plus the one that fetched the list
    (counted at the server); every file committed and recorded, no partial file left behind."""
    many = mirror_copy / "many"
    many.mkdir()
    for i in range(40):
        (many / f"f{i:02d}.dat").write_bytes(os.urandom(1000 + i))
    write_sha256sums(mirror_copy)
    settings = fast_settings(tmp_path, {"physionet": server.base_url}, connections_per_host=4)
    before = server.connections
    report = download(_recipe(tmp_path, include="many/*"), settings)
    assert report.ok and report.count("downloaded") == 40, report.error
    reqs = server.requests_for("/files/ptb-xl/1.0.3/*")
    assert len(reqs) == 41 and {r.method for r in reqs} == {"GET"}
    assert server.connections - before <= 4 + 1
    assert len({r.client_port for r in reqs}) <= 4 + 1
    raw = settings.raw_dir("toyecg")
    assert not list((raw / ".climb" / "partial").rglob("*.part"))
    from climb_cli.manifest import RawManifest

    with RawManifest.for_reading(raw) as manifest:
        rows = manifest.load_index()
    assert {k for k in rows if k.startswith("many/")} == {f"many/f{i:02d}.dat" for i in range(40)}
    for i in (0, 39):
        assert (raw / f"many/f{i:02d}.dat").read_bytes() == (many / f"f{i:02d}.dat").read_bytes()


def test_a_file_reused_by_its_hash_is_recorded_with_its_url_redacted(
    tmp_path: Path, settings: Settings
) -> None:
    """A file already on disk but not in the manifest is hashed and reused; its manifest row keeps the URL
    without the signature, as a downloaded file's row does (it had kept the signed URL whole)."""
    import hashlib
    import sqlite3

    from climb_cli.manifest import RawManifest
    from climb_cli.sources import make_sources
    from climb_cli.sources.base import RemoteFile
    from climb_cli.transfer import Downloader

    source = make_sources(_recipe(tmp_path), settings)[0]
    data = b"already here\n"
    (source.raw_dir / "kept.dat").parent.mkdir(parents=True, exist_ok=True)
    (source.raw_dir / "kept.dat").write_bytes(data)
    signed = "https://bucket.example/kept.dat?X-Amz-Signature=sig-Wumpus-5e8d-secret&X-Amz-Expires=60"
    rf = RemoteFile("kept.dat", signed, sha256=hashlib.sha256(data).hexdigest())
    with RawManifest.for_dataset(settings.raw_dir("toyecg")) as manifest:
        out = Downloader.from_settings(settings).download_one(source, rf, manifest, {})
    assert out.status == "skipped"
    db = sqlite3.connect(settings.raw_dir("toyecg") / ".climb" / "manifest.sqlite")
    (url,) = db.execute("SELECT url FROM files WHERE path = 'kept.dat'").fetchone()
    db.close()
    assert "sig-Wumpus" not in url and url.startswith("https://bucket.example/kept.dat?")
