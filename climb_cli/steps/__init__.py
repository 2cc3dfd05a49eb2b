"""Preprocessing steps, one module per modality family; each module registers its steps on import.

A new module in this package is found automatically: no registry file to edit. Installed plug-ins
add step families through the `climb.steps` entry point (plugins.py), loaded after the built-ins.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import Iterable
from pathlib import Path

from climb_cli.plugins import load_entry_points, load_package_modules


def load_all() -> None:
    load_package_modules(__name__, __path__)
    load_entry_points("climb.steps")


@functools.cache
def _defined_in() -> dict[str, str]:
    """Which built-in module defines each step, read from the modules' `@step("name"` lines (~1 ms)
    instead of importing them all."""
    where: dict[str, str] = {}
    for folder in __path__:
        for path in sorted(Path(folder).glob("[!_]*.py")):
            for name in re.findall(r"""^@step\(\s*["']([^"']+)["']""", path.read_text("utf-8"), re.M):
                where.setdefault(name, path.stem)
    return where


def load_for(names: Iterable[str]) -> None:
    """Load what defines these steps: their built-in modules and the plug-ins' steps; every step
    module when one of the names is not found that way (an unknown name: its error lists them all).

    So validating a recipe imports the step modules it uses, not all of them."""
    from climb_cli.steps.base import registered

    names = list(names)
    where = _defined_in()
    for module in sorted({where[n] for n in names if n in where and n not in registered()}):
        importlib.import_module(f"{__name__}.{module}")
    load_entry_points("climb.steps")
    if any(n not in registered() for n in names):
        load_all()
