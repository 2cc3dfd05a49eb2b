"""The download engine under network faults, against the fake PhysioNet over real sockets.

For each fault: the download completes with a byte-identical file, or fails with one clear line
and leaves nothing under the final name (the partial file stays resumable).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet, write_sha256sums
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from tests.conftest import write_recipe

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
