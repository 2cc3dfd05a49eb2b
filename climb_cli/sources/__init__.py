"""Source kinds, one module each; a module's Source subclasses register themselves by `kind`.

A new module in this package is found automatically: no registry file to edit. Installed plug-ins
add kinds through the `climb.sources` entry point (plugins.py), loaded after the built-ins.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING

from climb_cli.plugins import load_entry_points, load_package_modules
from climb_cli.sources.base import Source, registered_kinds

if TYPE_CHECKING:
    from climb_cli.recipe import Recipe
    from climb_cli.settings import Settings


def _load_all() -> None:
    load_package_modules(__name__, __path__)
    load_entry_points("climb.sources")


def source_kinds() -> list[str]:
    _load_all()
    return sorted(registered_kinds())


def source_class(kind: str) -> type[Source] | None:
    """The class of a source kind. The module named after the kind is tried first (`grand-challenge`
    -> grand_challenge.py), so a command on one recipe imports what its sources use, not every
    source module; installed plug-ins are loaded either way (a plug-in claiming the kind is an
    error, never ignored); a kind defined elsewhere is found by loading them all."""
    module = kind.replace("-", "_")
    if module.isidentifier() and module != "base" and not module.startswith("_"):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"{__name__}.{module}")
            load_entry_points("climb.sources")
            if (cls := registered_kinds().get(kind)) is not None:
                return cls
    _load_all()
    return registered_kinds().get(kind)


def make_sources(recipe: Recipe, settings: Settings) -> list[Source]:
    out: list[Source] = []
    for spec in recipe.sources:
        cls = source_class(spec.kind)
        assert cls is not None, spec.kind  # recipe validation guarantees it
        out.append(cls(recipe, spec, settings))
    return out
