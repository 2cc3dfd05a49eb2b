"""Pinned checksums for files whose source publishes none (`checksums: pinned` in a recipe; under
`checksums: upstream`, the files that came without any upstream sum).

The first trusted download of such a file records its sha256 (and size); every later download and
`climb verify` checks the file against it, so a silently changed upstream file is caught.

Where a file's sum comes from, first match wins:

1. the recipe itself (inline `sha256:` of http/manual sources: it arrives in the file listing);
2. the recipe's lock file, `<name>.lock` beside `<name>.yaml` (committed with the recipe);
3. the user's lock, `raw/<name>/.climb/pins.tsv`, which climb writes after each first download.

Both lock files have the same format, so `climb download NAME --write-lock recipes/<modality>/` (or a
plain copy of pins.tsv) turns what one machine downloaded into a lock others check against:

    # climb pins v1: sha256<TAB>size<TAB>path (relative to raw/<name>/)
    3f1e...<TAB>1048576<TAB>images/train.zip

A mismatch against a pin is a clean one-line failure (the engine never renames the bytes into place).
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass, replace
from pathlib import Path

from climb_cli import atomic
from climb_cli.errors import RecipeError
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources.base import RemoteFile, Source

HEADER = "# climb pins v1: sha256\tsize\tpath (relative to raw/<name>/)\n"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Pin:
    sha256: str
    size: int | None
    origin: str  # the file it came from


def read_lock(path: Path) -> dict[str, Pin]:
    """Parse a lock file; a malformed line is an error naming file:line."""
    out: dict[str, Pin] = {}
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return out
    except OSError as e:
        raise RecipeError(f"{path}: cannot read lock file ({e.strerror})") from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not _HEX64.match(parts[0]) or not (parts[1] == "" or parts[1].isdigit()):
            raise RecipeError(f"{path}:{n}: expected 'sha256<TAB>size<TAB>path' (lowercase hex sha256)")
        out[parts[2]] = Pin(parts[0], int(parts[1]) if parts[1] else None, str(path))
    return out


def format_lock(pins: dict[str, Pin]) -> str:
    lines = [HEADER]
    for path in sorted(pins):
        p = pins[path]
        lines.append(f"{p.sha256}\t{'' if p.size is None else p.size}\t{path}\n")
    return "".join(lines)


def _atomic_write(path: Path, text: str) -> None:
    atomic.write_text(path, text)


def recipe_lock_path(recipe: Recipe) -> Path | None:
    return recipe.path.parent / f"{recipe.name}.lock" if recipe.path is not None else None


def user_lock_path(settings: Settings, name: str) -> Path:
    return settings.raw_dir(name) / ".climb" / "pins.tsv"


class Pins:
    """The pins of one recipe: lookups for download/verify, and new pins from first downloads."""

    def __init__(self, recipe: Recipe, settings: Settings) -> None:
        self.enabled = recipe.checksums == "pinned"
        # `checksums: upstream`: a file upstream gave no sum for (no sha256, no md5 in the listing or
        # the storage answer, e.g. a Kaggle composite object) is pinned too, so verify can check it
        self.unsummed = recipe.checksums == "upstream"
        self.recipe = recipe
        self.user_path = user_lock_path(settings, recipe.name)
        rpath = recipe_lock_path(recipe)
        active = self.enabled or self.unsummed
        self.recipe_pins = read_lock(rpath) if (active and rpath) else {}
        self.user_pins = read_lock(self.user_path) if active else {}
        self._new: dict[str, Pin] = {}
        self._lock = threading.Lock()
        self.applied: dict[str, Pin] = {}  # raw key -> the pin used for it in this run

    def lookup(self, key: str) -> Pin | None:
        return self.recipe_pins.get(key) or self.user_pins.get(key)

    def apply(self, source: Source, files: list[RemoteFile]) -> list[RemoteFile]:
        """Files with their pinned sha256 (and size) filled in where the listing had no sha256."""
        if not (self.enabled or self.unsummed):
            return files
        out = []
        for rf in files:
            key = _key(source, rf.path)
            upstream_sum = rf.sha256 or (rf.md5 and not self.enabled)
            pin = None if upstream_sum else self.lookup(key)
            if pin is not None:
                self.applied[key] = pin
                rf = replace(rf, sha256=pin.sha256, size=rf.size if rf.size is not None else pin.size)
            out.append(rf)
        return out

    def pinned_by(self, source: Source, rf: RemoteFile) -> Pin | None:
        """The pin that supplied rf's sha256 in this run, if any."""
        return self.applied.get(_key(source, rf.path))

    def record(
        self, source: Source, rf: RemoteFile, sha256: str, size: int, *, upstream_md5: bool = False
    ) -> bool:
        """Pin a file after its first trusted download (no-op if it has an upstream sum or a pin).
        Under `checksums: upstream` only a file with no upstream sum at all is pinned."""
        if not sha256 or not (self.enabled or (self.unsummed and not upstream_md5)):
            return False
        key = _key(source, rf.path)
        if "\t" in key or "\n" in key or self.lookup(key) is not None:
            return False
        with self._lock:
            if key in self._new:
                return False
            self._new[key] = Pin(sha256, size, str(self.user_path))
        return True

    def save(self) -> int:
        """Write the new pins into the user's lock (merged with what is there); returns how many."""
        with self._lock:
            if not self._new:
                return 0
            merged = {**read_lock(self.user_path), **self._new}
            _atomic_write(self.user_path, format_lock(merged))
            n = len(self._new)
            self.user_pins.update(self._new)
            self._new.clear()
            return n

    def write_lock(self, dest: Path) -> Path:
        """Write every pin of this dataset (recipe lock + user pins; the recipe lock wins) to `dest`
        (a folder gets `<name>.lock`)."""
        if dest.is_dir() or str(dest).endswith(os.sep):
            dest = dest / f"{self.recipe.name}.lock"
        merged = {**read_lock(self.user_path), **self.recipe_pins}
        _atomic_write(dest, format_lock({k: Pin(p.sha256, p.size, "") for k, p in merged.items()}))
        return dest


def _key(source: Source, path: str) -> str:
    return f"{source.spec.into}/{path}" if source.spec.into else path


def mismatch_hint(pin: Pin, key: str) -> str:
    return (
        f"; its sha256 is pinned in {pin.origin} — if upstream changed on purpose, delete the line for "
        f"{key} there and download again"
    )
