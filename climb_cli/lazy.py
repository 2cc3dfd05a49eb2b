"""Deferred imports of heavy libraries (scipy, wfdb, OpenCV, SimpleITK, pandas, pyedflib...).

Step modules are imported whenever a recipe is validated (`climb info`, `climb download`,
every worker), but each only needs its libraries when one of its steps runs. `lazy("cv2")`
returns a stand-in that imports the real module on first attribute access, so a CLI command
that never runs a step does not pay ~2 s of imports, and a worker imports only what its
recipe's steps use.

The stand-in is untyped, so a module that uses it names the real module for the type checker:

    if TYPE_CHECKING:
        import SimpleITK as sitk
    else:
        sitk = lazy("SimpleITK")

mypy then checks every `sitk.` call against SimpleITK's own types, while at run time nothing is
imported until the first attribute access.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class _Lazy:
    __slots__ = ("_name", "_module")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str) -> Any:
        module = self._module
        if module is None:
            module = self._module = importlib.import_module(self._name)
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}{' (loaded)' if self._module else ''}>"


def lazy(name: str) -> Any:
    """A module stand-in: `cv2 = lazy("cv2")`, then use `cv2.resize` as usual."""
    return _Lazy(name)
