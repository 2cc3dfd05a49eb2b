"""Redaction: registered secrets and signed-URL parameters never reach an output."""

from __future__ import annotations

from climb_cli import redaction


def test_registered_secrets_are_masked_longest_first() -> None:
    redaction.register("tok-Zq9-unique-long")
    redaction.register("tok-Zq9")  # a prefix of the other: the longer one is masked whole first
    redaction.register("zq")  # too short to be a secret: ignored, or every 'zq' would vanish
    assert redaction.redact("x tok-Zq9-unique-long y tok-Zq9 zq") == "x *** y *** zq"


def test_urls_lose_userinfo_and_signatures_but_keep_the_rest() -> None:
    url = "https://u:pw@h.example:8443/a/b?X-Amz-Signature=abc&X-Amz-Expires=300&name=x&access_token=zz"
    assert redaction.redact_url(url) == (
        "https://h.example:8443/a/b?X-Amz-Signature=***&X-Amz-Expires=***&name=x&access_token=***"
    )
    assert redaction.redact_url("https://h/x?Expires=1&Signature=s&Key-Pair-Id=k") == (
        "https://h/x?Expires=1&Signature=***&Key-Pair-Id=***"
    )
    assert redaction.redact_url("https://h/plain?page=2") == "https://h/plain?page=2"
