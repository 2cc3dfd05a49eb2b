"""Finding plug-ins: climb's own modules, and third-party packages declared by entry points.

Built-in: every module of a package (`climb_cli.sources`, `climb_cli.steps`; except `base` and
`_private` ones) is imported once, so adding a source kind or a step family is adding one file.

Third-party (docs/plugins.md): an installed distribution declares entry points in

- `climb.sources` / `climb.steps`: a module imported for its registrations (Source subclasses with
  a `kind`; functions decorated with `@step`), exactly as the built-in modules register themselves;
- `climb.recipes`: a package whose folder holds recipes (YAML), or a callable returning that folder.

They are loaded lazily (the first time source kinds, steps or recipes are needed), once per process
(worker processes load them the same way when they first resolve a step), after the built-ins, so a
name a plug-in takes twice is blamed on the plug-in. `CLIMB_PLUGINS=0` turns them all off.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from climb_cli.errors import PluginError

if TYPE_CHECKING:
    from importlib.metadata import EntryPoint

GROUPS = ("climb.sources", "climb.steps", "climb.recipes")

_loaded: set[str] = set()
_failed: dict[str, PluginError] = {}  # a group whose loading failed fails the same way every time
_recipe_dirs: list[tuple[Path, Plugin]] = []
_current: Plugin | None = None  # the plug-in being imported (what its registrations are owned by)
cli_process = False  # set by the `climb` command (cli.main): this process is climb's own, not a host's


@dataclass(frozen=True)
class Plugin:
    """One entry point of one installed distribution."""

    dist: str
    group: str
    name: str
    value: str

    def __str__(self) -> str:
        return f"plug-in {self.dist} (entry point {self.group} {self.name} = {self.value})"


def load_package_modules(package: str, paths: Iterable[str]) -> None:
    if package in _loaded:
        return
    for info in pkgutil.iter_modules(list(paths)):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"{package}.{info.name}")
    _loaded.add(package)


def enabled() -> bool:
    return os.environ.get("CLIMB_PLUGINS", "1") != "0"


def owner(module: str) -> str:
    """Who registers something defined in `module`: climb itself, the plug-in being loaded, or the
    module (code that registers without an entry point, e.g. a script)."""
    if module == "climb_cli" or module.startswith("climb_cli."):
        return f"climb ({module})"
    if _current is not None:
        return str(_current)
    return f"module {module}"


def conflict(what: str, name: str, new: str, old: str) -> PluginError:
    """The error for a name taken twice (never a silent override), blaming the plug-in: a built-in
    module imported after a plug-in took its name (source modules load by kind, on demand) is not
    the culprit."""
    if new.startswith("climb (") and old.startswith("plug-in "):
        new, old = old, new
    dist = new.split()[1] if new.startswith("plug-in ") else "<distribution>"
    return PluginError(
        f"{what} {name!r} of {new} is already registered by {old}; rename it in the plug-in, "
        f"or uninstall one of them (`pip uninstall {dist}`)"
    )


@functools.cache
def _installed() -> dict[str, list[EntryPoint]]:
    """climb's entry points, read once per process (one scan of the installed distributions, ~20 ms
    here, instead of one per group)."""
    from importlib.metadata import entry_points  # not at import: 35 ms of start-up, only for plug-ins

    found = entry_points()
    if cli_process and not found.select(group="pydantic"):
        # No pydantic plug-in is installed, so pydantic's own scan for them (the same walk over every
        # installed distribution, 10-20 ms, at the first model it builds: climb's models are built after
        # this) would find none: skip it with pydantic's documented switch. Only in the `climb` command's
        # own process (not in a program that imports climb), only when the user has not set it; processes
        # climb starts inherit it and see the same installation.
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    return {group: list(found.select(group=group)) for group in GROUPS}


def _entry_points(group: str) -> list[tuple[EntryPoint, str]]:
    found = []
    for ep in _installed()[group]:
        dist = ep.dist.name if ep.dist is not None else "?"
        found.append((ep, dist))
    return sorted(found, key=lambda x: (x[1], x[0].name))


@contextmanager
def _loading(plugin: Plugin) -> Iterator[None]:
    global _current
    previous, _current = _current, plugin
    try:
        yield
    finally:
        _current = previous


@contextmanager
def _third_party(plugin: Plugin) -> Iterator[None]:
    """Run a plug-in's code (its import, its recipe-folder callable): what it registers is owned by
    it, and any exception it raises becomes one line naming it and what to do."""
    try:
        with _loading(plugin):
            yield
    except PluginError:
        raise
    except Exception as e:  # any failure of third-party code: ImportError, SyntaxError, ...
        why = " ".join(f"{type(e).__name__}: {e}".split())[:300]
        raise PluginError(
            f"{plugin} failed to load ({why}); fix or reinstall it, or remove it with "
            f"`pip uninstall {plugin.dist}` (CLIMB_PLUGINS=0 runs climb without plug-ins)"
        ) from None


def _load(ep: EntryPoint, plugin: Plugin) -> object:
    with _third_party(plugin):
        obj = ep.load()
    return obj


def load_entry_points(group: str) -> None:
    """Import every installed entry point of `group` (climb.sources or climb.steps), once."""
    if group in _failed:
        raise _failed[group]
    if group in _loaded or not enabled():
        return
    try:
        for ep, dist in _entry_points(group):
            _load(ep, Plugin(dist, group, ep.name, ep.value))
    except PluginError as e:
        _failed[group] = e
        raise
    _loaded.add(group)


def _folder(obj: object, plugin: Plugin) -> Path:
    if isinstance(obj, ModuleType):
        paths = list(getattr(obj, "__path__", []))
        folder = Path(paths[0]) if paths else Path(obj.__file__ or "").parent
    else:
        if callable(obj):
            with _third_party(plugin):
                obj = obj()
        if not isinstance(obj, (str, os.PathLike)):
            what = type(obj).__name__
            raise PluginError(f"{plugin} gives a {what}, not a recipe folder; see docs/plugins.md")
        folder = Path(obj)
    if not folder.is_dir():
        raise PluginError(f"{plugin}: recipe folder {folder} does not exist; reinstall the plug-in")
    return folder


def recipe_dirs() -> list[tuple[Path, Plugin]]:
    """The recipe folders installed plug-ins add (climb.recipes), each with its plug-in; once."""
    group = "climb.recipes"
    if group in _failed:
        raise _failed[group]
    if group not in _loaded and enabled():
        try:
            found = []
            for ep, dist in _entry_points(group):
                plugin = Plugin(dist, group, ep.name, ep.value)
                found.append((_folder(_load(ep, plugin), plugin), plugin))
        except PluginError as e:
            _failed[group] = e
            raise
        _recipe_dirs[:] = found
        _loaded.add(group)
    return list(_recipe_dirs)
