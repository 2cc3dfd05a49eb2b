"""Recipe hooks (`<name>.py` beside the YAML): the fixed signature, part of the recipe hash, failures as
one-line recipe errors with the hook's file:line, and no network or processes while a hook runs."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from climb_cli.errors import RecipeError
from climb_cli.index import build_index
from tests.test_index import _idx, _lang

CSV = {"t.csv": "id,y\na,x\nb,z\n"}
INDEX = _idx("{path: t.csv}", "    kind: multiclass\n    column: y\n    classes: [x, z, w]")


def test_a_hook_rewrites_the_table_and_is_part_of_the_hash(tmp_path: Path) -> None:
    hook = (
        "def rows(table, ctx):\n    table.loc[table.id == 'b', 'y'] = 'w'\n"
        "    return table[table.id != 'zz']\n"
    )
    recipe, settings = _lang(tmp_path, INDEX, CSV, hook=hook)
    assert [(i.id, i.labels) for i in build_index(recipe, settings).items] == [("a", ("x",)), ("b", ("w",))]
    without, _ = _lang(tmp_path / "2", INDEX, CSV)
    edited, _ = _lang(tmp_path / "3", INDEX, CSV, hook=hook.replace("'w'", "'x'"))
    assert len({recipe.content_hash(), without.content_hash(), edited.content_hash()}) == 3


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (
            "def rows(table, ctx):\n    x = 1\n    return table['nope']\n",
            r"lang.py:3: hook rows\(\) raised KeyError: 'nope'",
        ),
        ("def rows(table, ctx:\n    return table\n", r"lang.py:1: hook does not compile"),
        ("import json\nraise ValueError('bad')\n", r"lang.py:2: hook failed on import: ValueError: bad"),
        ("def row(table, ctx):\n    return table\n", r"lang.py: a hook defines rows\(table, ctx\) -> table"),
        ("def rows(table, ctx):\n    return 3\n", r"lang.py: rows\(\) returned int, not a pandas DataFrame"),
    ],
    ids=["raises", "syntax", "import", "no-rows", "not-a-table"],
)
def test_a_failing_hook_is_one_line_with_file_and_line(tmp_path: Path, hook: str, message: str) -> None:
    recipe, settings = _lang(tmp_path, INDEX, CSV, hook=hook)
    with pytest.raises(RecipeError, match=message) as e:
        build_index(recipe, settings)
    assert "\n" not in str(e.value) and "Traceback" not in str(e.value)


def test_a_hook_cannot_reach_the_network_or_start_processes(tmp_path: Path) -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        net = (
            "import socket\ndef rows(table, ctx):\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n    return table\n"
        )
        recipe, settings = _lang(tmp_path, INDEX, CSV, hook=net)
        with pytest.raises(
            RecipeError, match=r"lang.py:3: .*PermissionError: recipe hooks cannot use the network"
        ):
            build_index(recipe, settings)
        server.settimeout(0.2)
        with pytest.raises(TimeoutError):
            server.accept()  # nothing connected
    proc = "import subprocess\ndef rows(table, ctx):\n    subprocess.run(['true'])\n    return table\n"
    recipe, settings = _lang(tmp_path / "p", INDEX, CSV, hook=proc)
    with pytest.raises(RecipeError, match=r"lang.py:3: .*start processes \(subprocess.Popen\)"):
        build_index(recipe, settings)
    # outside a hook, climb itself still can
    socket.getaddrinfo("127.0.0.1", 80)
