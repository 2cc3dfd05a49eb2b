"""Source kinds, one module each; a module's Source subclasses register themselves by `kind`.

A new module in this package is found automatically: no registry file to edit.
"""

from __future__ import annotations

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


def source_class(kind: str) -> type[Source] | None:
    _load_all()
    for c in _all_subclasses(Source):
        if getattr(c, "kind", None) == kind:
            return c
    return None


def make_sources(recipe, settings) -> list[Source]:  # type: ignore[no-untyped-def]
    out = []
    for spec in recipe.sources:
        cls = source_class(spec.kind)
        assert cls is not None, spec.kind  # recipe validation guarantees it
        out.append(cls(recipe, spec, settings))
    return out
