"""Redaction: registered secrets and signed-URL parameters never reach an output."""

from __future__ import annotations

from climb_cli import redaction


def test_registered_secrets_are_masked_longest_first() -> None:
    redaction.register("abc-secret-value")
    redaction.register("abc")  # shorter than 3 characters would be ignored; 3 counts
    assert redaction.redact("x abc-secret-value y abc") == "x *** y ***"


def test_urls_lose_userinfo_and_signatures_but_keep_the_rest() -> None:
    url = "https://u:pw@h.example:8443/a/b?X-Amz-Signature=abc&X-Amz-Expires=300&name=x&access_token=zz"
    assert redaction.redact_url(url) == (
        "https://h.example:8443/a/b?X-Amz-Signature=***&X-Amz-Expires=***&name=x&access_token=***"
    )
    assert redaction.redact_url("https://h/x?Expires=1&Signature=s&Key-Pair-Id=k") == (
        "https://h/x?Expires=1&Signature=***&Key-Pair-Id=***"
    )
    assert redaction.redact_url("https://h/plain?page=2") == "https://h/plain?page=2"
