"""climb_cli.lazy: step modules import their heavy libraries on first use, and the stand-in is the module."""

from __future__ import annotations

import subprocess
import sys

from climb_cli.lazy import lazy

HEAVY = ("cv2", "SimpleITK", "pyedflib", "wfdb", "scipy.signal", "scipy.io", "nibabel", "pydicom", "pandas")


def test_importing_every_step_module_loads_none_of_the_heavy_libraries() -> None:
    code = (
        "import importlib, pkgutil, sys, climb_cli.steps as s\n"
        "for m in pkgutil.iter_modules(s.__path__): importlib.import_module('climb_cli.steps.' + m.name)\n"
        "import climb_cli.cli\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "[]"


def test_the_stand_in_loads_the_module_on_first_attribute() -> None:
    import colorsys

    stand_in = lazy("colorsys")
    assert "(loaded)" not in repr(stand_in)
    assert stand_in.rgb_to_hsv is colorsys.rgb_to_hsv
    assert "(loaded)" in repr(stand_in)
