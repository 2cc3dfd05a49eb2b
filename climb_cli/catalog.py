"""Finding recipes: the packaged recipes/ folder, then user folders (CLIMB_RECIPES, --recipes).

A user folder's recipe with the same name as a packaged one wins, so a lab can override a recipe
(for example to select a subset) without forking climb.
"""

from __future__ import annotations

from pathlib import Path

from climb_cli.errors import UsageError
from climb_cli.recipe import Recipe, load_recipe


def packaged_dir() -> Path:
    """The recipes shipped with climb (the repository's recipes/ folder, installed as climb_cli.recipes)."""
    try:
        import climb_cli.recipes as pkg  # type: ignore[import-not-found]

        return Path(next(iter(pkg.__path__)))
    except (ImportError, StopIteration):
        return Path(__file__).resolve().parent.parent / "recipes"


class Catalog:
    def __init__(self, extra_dirs: tuple[Path, ...] | list[Path] = ()) -> None:
        self.dirs = [packaged_dir(), *extra_dirs]
        self._paths: dict[str, Path] | None = None

    def paths(self) -> dict[str, Path]:
        if self._paths is None:
            found: dict[str, Path] = {}
            for d in self.dirs:
                if not d.is_dir():
                    if d != self.dirs[0]:
                        raise UsageError(f"recipe folder {d} does not exist")
                    continue
                for p in sorted(d.rglob("*.yaml")):
                    found[p.stem] = p
            self._paths = dict(sorted(found.items()))
        return self._paths

    def names(self) -> list[str]:
        return list(self.paths())

    def load(self, name: str) -> Recipe:
        path = self.paths().get(name)
        if path is None:
            close = [n for n in self.names() if name.replace("_", "-") in n.replace("_", "-")]
            hint = f" (did you mean {', '.join(close[:3])}?)" if close else " (see `climb list`)"
            raise UsageError(f"no recipe named {name!r}{hint}")
        return load_recipe(path)

    def load_all(self) -> list[Recipe]:
        return [load_recipe(p) for p in self.paths().values()]

    def resolve(self, names: list[str], all_: bool) -> list[Recipe]:
        if all_ and names:
            raise UsageError("give dataset names or --all, not both")
        if all_:
            return self.load_all()
        if not names:
            raise UsageError("name at least one dataset, or use --all")
        return [self.load(n) for n in dict.fromkeys(names)]
