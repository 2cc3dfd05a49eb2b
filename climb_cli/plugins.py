"""Finding plug-in modules: every module of a package (except `base` and `_private` ones) is
imported once, so adding a source kind or a step family is adding one file — no registry to edit."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterable

_loaded: set[str] = set()


def load_package_modules(package: str, paths: Iterable[str]) -> None:
    if package in _loaded:
        return
    for info in pkgutil.iter_modules(list(paths)):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _loaded.add(package)
