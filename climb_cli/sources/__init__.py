"""Source kinds, one module each; a module's Source subclasses register themselves by `kind`.

A new module in this package is found automatically: no registry file to edit.
"""

from __future__ import annotations

import importlib

from climb_cli.plugins import load_package_modules
from climb_cli.sources.base import Source


def _load_all() -> None:
    load_package_modules(__name__, __path__)


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_all_subclasses(sub))
    return out


def source_kinds() -> list[str]:
    _load_all()
    return sorted({c.kind for c in _all_subclasses(Source) if getattr(c, "kind", None)})


def _loaded_class(kind: str) -> type[Source] | None:
    for c in _all_subclasses(Source):
        if getattr(c, "kind", None) == kind:
            return c
    return None


def source_class(kind: str) -> type[Source] | None:
    """The class of a source kind. The module named after it (grand-challenge: grand_challenge.py) is tried
    first, so a command whose recipe uses one kind imports one source module, not all of them."""
    found = _loaded_class(kind)
    if found is None and kind.replace("-", "_").isidentifier():
        try:
            importlib.import_module(f"{__name__}.{kind.replace('-', '_')}")
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{kind.replace('-', '_')}":
                raise
        found = _loaded_class(kind)
    if found is None:
        _load_all()
        found = _loaded_class(kind)
    return found


def make_sources(recipe, settings) -> list[Source]:  # type: ignore[no-untyped-def]
    out = []
    for spec in recipe.sources:
        cls = source_class(spec.kind)
        assert cls is not None, spec.kind  # recipe validation guarantees it
        out.append(cls(recipe, spec, settings))
    return out
