"""Unit tests of the server-agnostic fault layer: FaultPlan bookkeeping and nginx's Range parsing."""

from __future__ import annotations

import threading

import pytest

from climb_cli.fakes.faults import (
    HEAD_FAULT_KINDS,
    Fault,
    FaultPlan,
    RangeNotSatisfiable,
    http_date,
    nginx_error_page,
    nginx_etag,
    parse_http_date,
    parse_range,
)


def test_take_matches_glob_and_uses_faults_up() -> None:
    plan = FaultPlan()
    plan.add("status", path_glob="*/a.dat", times=2, status=429, retry_after="2")
    plan.add("drop", path_glob="*.csv", after_bytes=5)
    assert plan.pending() == 2
    assert plan.take("/files/x/1.0/b.txt") is None
    first = plan.take("/files/x/1.0/a.dat")
    assert first is not None and first.kind == "status" and first.status == 429 and first.retry_after == "2"
    assert plan.take("/files/x/1.0/a.dat") is first
    assert plan.take("/files/x/1.0/a.dat") is None  # used up after times=2
    assert plan.pending() == 1
    dropped = plan.take("/files/x/1.0/sub/t.csv")
    assert dropped is not None and dropped.kind == "drop" and dropped.hits == 1
    assert plan.pending() == 0


def test_take_is_ordered_and_respects_kinds() -> None:
    plan = FaultPlan([Fault("drop"), Fault("change")])
    assert plan.take("/x", kinds=HEAD_FAULT_KINDS).kind == "change"  # type: ignore[union-attr]
    assert plan.take("/x").kind == "drop"  # type: ignore[union-attr]
    assert plan.take("/x") is None


def test_negative_times_never_runs_out_and_clear() -> None:
    plan = FaultPlan()
    plan.add("ignore_range", times=-1)
    for _ in range(50):
        assert plan.take("/anything") is not None
    assert plan.pending() == 1
    plan.clear()
    assert plan.pending() == 0 and plan.take("/anything") is None


def test_unknown_kind_and_bad_throttle_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan().add("explode")
    with pytest.raises(ValueError, match="bytes_per_second"):
        Fault("throttle")


def test_take_is_thread_safe() -> None:
    plan = FaultPlan()
    plan.add("status", times=500)
    hits: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        n = sum(1 for _ in range(200) if plan.take("/f") is not None)
        with lock:
            hits.append(n)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(hits) == 500
    assert plan.pending() == 0


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=2-5", 42, (2, 6)),
        ("bytes=0-", 42, (0, 42)),
        ("bytes=40-", 42, (40, 42)),
        ("bytes=-10", 42, (32, 42)),
        ("bytes=-100", 42, (0, 42)),
        ("bytes=0-999", 42, (0, 42)),
        ("BYTES=1-1", 42, (1, 2)),
        ("bytes= 3 - 4", 42, (3, 5)),
        ("bytes=1-2,5-6", 42, None),  # multi-range: the fakes send 200 full
        ("items=1-2", 42, None),  # not a byte range: ignored
        (None, 42, None),
        ("bytes=0-", 0, None),  # nginx serves an empty file whole
        ("bytes=42-", 42, "416"),
        ("bytes=1000-", 42, "416"),
        ("bytes=5-2", 42, "416"),
        ("bytes=-0", 42, "416"),
        ("bytes=abc", 42, "416"),
        ("bytes=1-x", 42, "416"),
        ("bytes=-", 42, "416"),
    ],
)
def test_parse_range_like_nginx(header: str | None, size: int, expected: object) -> None:
    if expected == "416":
        with pytest.raises(RangeNotSatisfiable):
            parse_range(header, size)
    else:
        assert parse_range(header, size) == expected


def test_http_dates_and_etag() -> None:
    assert http_date(1795816313) == "Fri, 27 Nov 2026 21:51:53 GMT"
    assert parse_http_date("Fri, 27 Nov 2026 21:51:53 GMT") == 1795816313
    assert parse_http_date("Friday, 27-Nov-26 21:51:53 GMT") == 1795816313  # RFC 850 form
    assert parse_http_date("not a date") is None
    assert nginx_etag(0x6B09FB79, 42) == '"6b09fb79-2a"'
    page = nginx_error_page(404)
    assert page.startswith(b"<html>\r\n<head><title>404 Not Found</title></head>")
    assert b"<center>nginx/1.22.1</center>" in page
