"""sources/base.py: which upstream paths are safe to place under a raw folder."""

from __future__ import annotations

import pytest

from climb_cli.sources.base import safe_relpath


@pytest.mark.parametrize(
    "path",
    [
        "",
        " ",
        "/",
        "/etc/passwd",
        "a//b",
        "a/",
        "..",
        "../a",
        "a/..",
        "a/../b",
        ".",
        "a/.",
        "a/./b",
        "./",
        "a\\b",
        "a\x00b",
        "./../a",
    ],
)
def test_unsafe_paths_are_refused(path: str) -> None:
    assert safe_relpath(path) is None


@pytest.mark.parametrize(
    ("path", "clean"),
    [
        ("a", "a"),
        ("./a/b.dat", "a/b.dat"),
        (" a/b ", "a/b"),
        ("...", "..."),
        ("a/..b/.c", "a/..b/.c"),
        ("a b/c", "a b/c"),
    ],
)
def test_safe_paths_are_kept(path: str, clean: str) -> None:
    assert safe_relpath(path) == clean
