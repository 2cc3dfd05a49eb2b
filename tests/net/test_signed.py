"""climb_cli.net.signed: expiry from the URL, cache, and a fresh link after the byte host refuses one."""

from __future__ import annotations

import io
import time

import pytest
import requests

from climb_cli.net.signed import Refused, SignedUrls, deadline


def _resp(status: int) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.raw = io.BytesIO(b"")
    return r


def test_deadline_of_gcs_s3_and_cloudfront_links() -> None:
    assert deadline("https://s/x?X-Goog-Date=20260101T000000Z&X-Goog-Expires=60") == 1767225600 + 60
    assert deadline("https://s/x?X-Amz-Date=20260101T000000Z&X-Amz-Expires=300") == 1767225600 + 300
    assert deadline("https://cdn/x?Expires=1767225600&Signature=s") == 1767225600
    assert deadline("https://cdn/x") is None


def test_cached_until_near_expiry_then_re_resolved_on_refusal() -> None:
    s = SignedUrls(margin=30, tries=3)
    resolved: list[bool] = []
    soon = f"https://cdn/a?Expires={int(time.time()) + 10}"
    later = f"https://cdn/b?Expires={int(time.time()) + 3600}"
    links = iter([soon, later, later, later])

    def resolve(fresh: bool) -> str:
        resolved.append(fresh)
        return next(links)

    answers = {soon: 200, later: 200}
    assert s.open("k", resolve, lambda u: _resp(answers[u])).status_code == 200
    s.open("k", resolve, lambda u: _resp(answers[u]))  # `soon` expires within the margin: resolve again
    s.open("k", resolve, lambda u: _resp(answers[u]))  # `later` is cached
    assert resolved == [False, False]
    answers[later] = 403
    with pytest.raises(Refused) as e:
        s.open("k", resolve, lambda u: _resp(answers[u]))
    assert e.value.status == "403" and resolved == [False, False, True, True]  # 3 links in all
