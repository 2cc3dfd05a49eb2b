"""The fake auto-index server: nginx's exact layout, Apache's two layouts, folder redirects and 404s."""

from __future__ import annotations

import re

import requests

from tests.fakes.dirindex import FakeDirIndex

FILES = {"b.txt": b"x" * 2000, "a/c.tar": b"y" * 5000, "z.gz": b"z"}


def test_nginx_layout_is_exact() -> None:
    with FakeDirIndex(FILES, style="nginx", root="/pub/") as fake:
        page = requests.get(fake.url, timeout=5).text
    assert '<hr><pre><a href="../">../</a>\r\n<a href="a/">a/</a>' in page  # folders first
    row = next(line for line in page.split("\r\n") if line.startswith('<a href="b.txt">'))
    assert re.fullmatch(r'<a href="b.txt">b.txt</a> {45} \d\d-\w{3}-\d{4} \d\d:\d\d {16}2000', row), row
    assert page.endswith("</pre><hr></body>\r\n</html>\r\n")


def test_apache_layouts_round_sizes_and_redirect_folders() -> None:
    for style in ("apache-pre", "apache-table"):
        with FakeDirIndex(FILES, style=style, root="/pub/") as fake:
            page = requests.get(fake.url, timeout=5).text
            assert "?C=N;O=D" in page and 'href="/">Parent Directory</a>' in page
            assert "2.0K" in page and "4.9K" in requests.get(f"{fake.url}a/", timeout=5).text
            r = requests.get(f"{fake.base_url}/pub/a", allow_redirects=False, timeout=5)
            assert r.status_code == 301 and r.headers["Location"] == "/pub/a/"
            assert requests.get(f"{fake.base_url}/pub/nope/", timeout=5).status_code == 404
            assert requests.get(
                f"{fake.base_url}/pub/a/c.tar", headers={"Range": "bytes=0-9"}, timeout=5
            ).content == (b"y" * 10)
