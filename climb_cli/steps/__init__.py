"""Preprocessing steps, one module per modality family; each module registers its steps on import.

A new module in this package is found automatically: no registry file to edit. Installed plug-ins
add step families through the `climb.steps` entry point (plugins.py), loaded after the built-ins.
"""

from __future__ import annotations

from climb_cli.plugins import load_entry_points, load_package_modules


def load_all() -> None:
    load_package_modules(__name__, __path__)
    load_entry_points("climb.steps")
