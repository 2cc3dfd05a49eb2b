"""Finding recipes: the packaged recipes/ folder, the folders installed plug-ins add (the
`climb.recipes` entry point, plugins.py), then user folders (CLIMB_RECIPES, --recipes).

A user folder's recipe with the same name as a packaged or plug-in one wins, so a lab can override a
recipe (for example to select a subset) without forking climb. A plug-in's recipe with the name of a
packaged or another plug-in's recipe is an error naming both folders: installing a package never
silently replaces a recipe.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path

from climb_cli import plugins
from climb_cli.errors import PluginError, RecipeError, UsageError
from climb_cli.recipe import Recipe, load_recipe


def normalise_name(name: str) -> str:
    """The one spelling used to match dataset names: lower case, '_', ' ' and '.' as '-'.

    So CLIMB's keys (`mimic_cxr`, `pad_ufes_20`) and the usual spellings (`MIMIC-CXR`, `mimic-cxr`)
    all name the recipe `mimic-cxr` or `mimic_cxr`.
    """
    return "-".join(name.strip().lower().replace("_", "-").replace(" ", "-").replace(".", "-").split("-"))


def packaged_dir() -> Path:
    """The recipes shipped with climb (the repository's recipes/ folder, installed as climb_cli.recipes)."""
    try:
        import climb_cli.recipes as pkg  # type: ignore[import-not-found]

        return Path(next(iter(pkg.__path__)))
    except (ImportError, StopIteration):
        return Path(__file__).resolve().parent.parent / "recipes"


def _fold(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def suggest(name: str, names: list[str], limit: int = 3) -> list[str]:
    """Known names close to a mistyped one: same letters ignoring case and separators (`PTB-XL`),
    one containing the other (`ptb` -> `ptbxl`), or a small edit away (`ptbxll`), best first."""
    folded = {n: _fold(n) for n in names}
    want = _fold(name)
    if not want:
        return []
    exact = [n for n, f in folded.items() if f == want]
    contains = [n for n, f in folded.items() if n not in exact and (want in f or (len(f) >= 3 and f in want))]
    by_fold = {f: n for n, f in folded.items()}
    fuzzy = [by_fold[f] for f in difflib.get_close_matches(want, list(by_fold), n=limit, cutoff=0.75)]
    return list(dict.fromkeys([*exact, *contains, *fuzzy]))[:limit]


def origin(path: Path | None) -> str:
    """Where a recipe file comes from: `climb` (packaged), `plug-in <distribution>`, or `folder <dir>`."""
    if path is None:
        return "?"
    if path.is_relative_to(packaged_dir()):
        return "climb"
    for folder, plugin in plugins.recipe_dirs():
        if path.is_relative_to(folder):
            return f"plug-in {plugin.dist}"
    return f"folder {path.parent}"


def _recipe_files(folder: Path) -> dict[str, Path]:
    return {p.stem: p for p in sorted(folder.rglob("*.yaml"))}


class Catalog:
    def __init__(self, extra_dirs: tuple[Path, ...] | list[Path] = ()) -> None:
        # CLIMB_PACKAGED_RECIPES=0: no packaged recipes (a lab's own catalogue; tests of `--all`); plug-ins
        # still add theirs (CLIMB_PLUGINS=0 turns those off)
        self.packaged = os.environ.get("CLIMB_PACKAGED_RECIPES", "1") != "0"
        self.extra_dirs = list(extra_dirs)
        self._paths: dict[str, Path] | None = None

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            found: dict[str, Path] = {}
            if self.packaged and packaged_dir().is_dir():
                found.update(_recipe_files(packaged_dir()))
            for folder, plugin in plugins.recipe_dirs():  # loaded here: when recipes are first needed
                for name, p in _recipe_files(folder).items():
                    if name in found:
                        raise PluginError(
                            f"recipe {name!r} of {plugin} ({p}) has the name of the recipe {found[name]} "
                            f"({origin(found[name])}); rename it in the plug-in, "
                            f"or `pip uninstall {plugin.dist}`"
                        )
                    found[name] = p
            for d in self.extra_dirs:  # the user's own folders override
                if not d.is_dir():
                    raise UsageError(f"recipe folder {d} does not exist")
                found.update(_recipe_files(d))
            self._paths = dict(sorted(found.items()))
        return self._paths

    def names(self) -> list[str]:
        return list(self.paths())

    def lookup(self, name: str) -> str | None:
        """The recipe a user's name refers to: the exact name, else the one whose name or one of whose
        `aliases` (CLIMB's keys) matches once normalised (normalise_name)."""
        if name in self.paths():
            return name
        want = normalise_name(name)
        hits = [n for n in self.paths() if normalise_name(n) == want]
        if not hits:
            hits = [
                n for n, aliases in self._aliases().items() if want in {normalise_name(a) for a in aliases}
            ]
        if len(hits) > 1:
            raise UsageError(f"{name!r} names several recipes ({', '.join(hits)}); use the full name")
        return hits[0] if hits else None

    def _aliases(self) -> dict[str, list[str]]:
        """Each recipe's `aliases`, read from its YAML without validating it (a broken one has none)."""
        import yaml

        out: dict[str, list[str]] = {}
        for n, p in self.paths().items():
            try:
                data = yaml.safe_load(p.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, yaml.YAMLError):
                continue
            aliases = data.get("aliases") if isinstance(data, dict) else None
            if isinstance(aliases, list):
                out[n] = [str(a) for a in aliases]
        return out

    def load(self, name: str) -> Recipe:
        found = self.lookup(name)
        path = self.paths().get(found) if found else None
        if path is None:
            close = suggest(name, self.names())
            hint = f" (did you mean {', '.join(close)}?)" if close else " (see `climb list`)"
            raise UsageError(f"no recipe named {name!r}{hint}")
        return load_recipe(path)

    def load_all(self) -> list[Recipe]:
        return [load_recipe(p) for p in self.paths().values()]

    def load_each(self) -> tuple[list[Recipe], dict[str, str]]:
        """Every recipe that loads, and the error of each that does not (by name)."""
        ok, broken = [], {}
        for name, p in self.paths().items():
            try:
                ok.append(load_recipe(p))
            except RecipeError as e:
                broken[name] = str(e)
        return ok, broken

    def resolve(self, names: list[str], all_: bool) -> list[Recipe]:
        if all_ and names:
            raise UsageError("give dataset names or --all, not both")
        if all_:
            return self.load_all()
        if not names:
            raise UsageError("name at least one dataset, or use --all")
        loaded: dict[str, Recipe] = {}
        for n in names:
            r = self.load(n)
            loaded.setdefault(r.name, r)
        return list(loaded.values())
