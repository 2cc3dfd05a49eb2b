"""Source kinds, one module each; a module's Source subclasses register themselves by `kind`.

A new module in this package is found automatically: no registry file to edit.
"""

from __future__ import annotations

import contextlib
import importlib
from typing import TYPE_CHECKING, cast

from climb_cli.plugins import load_package_modules
from climb_cli.sources.base import Source

if TYPE_CHECKING:
    from climb_cli.recipe import Recipe
    from climb_cli.settings import Settings


def _load_all() -> None:
    load_package_modules(__name__, __path__)


def _all_subclasses(cls: type[object]) -> list[type]:
    out: list[type] = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def source_kinds() -> list[str]:
    _load_all()
    return sorted({kind for c in _all_subclasses(Source) if (kind := getattr(c, "kind", None))})


def _registered(kind: str) -> type[Source] | None:
    for c in _all_subclasses(Source):
        if getattr(c, "kind", None) == kind:
            return cast("type[Source]", c)
    return None


def source_class(kind: str) -> type[Source] | None:
    """The class of a source kind. The module named after the kind is tried first (`grand-challenge`
    -> grand_challenge.py), so a command on one recipe imports what its sources use, not every
    source module; a kind defined elsewhere is found by loading them all."""
    module = kind.replace("-", "_")
    if module.isidentifier() and module != "base" and not module.startswith("_"):
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"{__name__}.{module}")
            if (cls := _registered(kind)) is not None:
                return cls
    _load_all()
    return _registered(kind)


def make_sources(recipe: Recipe, settings: Settings) -> list[Source]:
    out: list[Source] = []
    for spec in recipe.sources:
        cls = source_class(spec.kind)
        assert cls is not None, spec.kind  # recipe validation guarantees it
        out.append(cls(recipe, spec, settings))
    return out
