"""The Source interface: one class per kind of host (PhysioNet, Kaggle, Zenodo, ...).

A source knows three things about its host: which files a recipe asks for (`list_files`, online,
and `expected_files`, offline from what was stored), how to open one file for streaming with the
right credentials (`open`), and how to turn a refusal into one actionable line. Everything else
— concurrency, retries, resume, hashing, atomic commits — belongs to the transfer engine, so every
source gets the same guarantees.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from climb_cli import __version__, plugins
from climb_cli.recipe import Recipe, SourceSpec
from climb_cli.settings import Settings

if TYPE_CHECKING:  # verify and plan read stored lists and never need requests
    import requests

USER_AGENT = f"climb/{__version__} (+https://github.com/climb-corpus/climb)"


class SourceParams(BaseModel):
    """Base of each source kind's own recipe fields; unknown fields are rejected."""

    # defer_build: a kind's model is built when a recipe of that kind is first validated
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass(frozen=True, slots=True)
class RemoteFile:
    """One upstream file: where it goes (path relative to the source's raw folder) and how to check it."""

    path: str
    url: str
    size: int | None = None
    sha256: str | None = None
    md5: str | None = None


@dataclass(frozen=True)
class AccessReport:
    dataset: str
    source: str
    ok: bool
    detail: str
    next_step: str = ""
    reason: str = ""  # when known: no credentials | credentials rejected | access not granted | failed


@lru_cache(maxsize=4096)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """fnmatch-like glob where ** crosses folders and * does not; a trailing / means 'everything under'."""
    if pattern.endswith("/"):
        pattern += "**"
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif c == "*":
            out, i = out + "[^/]*", i + 1
        elif c == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(c), i + 1
    return re.compile(out + r"\Z")


def glob_match(path: str, pattern: str) -> bool:
    return bool(_glob_regex(pattern).match(path))


def selected(path: str, spec: SourceSpec) -> bool:
    """Whether an upstream path is part of what the recipe asks for (include/exclude globs)."""
    if spec.include and not any(glob_match(path, p) for p in spec.include):
        return False
    return not any(glob_match(path, p) for p in spec.exclude)


def nothing_selected(source: Source) -> str:
    """The one line for a listing that yields no file. Every source of a recipe is there to fetch something,
    so an empty one is an error, never an "ok" with 0 files: the globs (or the recipe) are wrong, or upstream
    has changed."""
    spec, recipe = source.spec, source.recipe
    where = f" in {recipe.path}" if recipe.path else ""
    head = f"{recipe.name}: source {spec.id!r} ({source.describe()})"
    if not spec.include and not spec.exclude:
        return f"{head} lists no files; check the source{where} against the upstream listing"
    globs = f"include {spec.include}" if spec.include else ""
    if spec.exclude:
        globs += f"{', ' if globs else ''}exclude {spec.exclude}"
    return f"{head}: no upstream file matches {globs}; check these globs{where} against the upstream listing"


def safe_relpath(path: str) -> str | None:
    """A clean relative POSIX path, or None for absolute paths, '..', empty or odd names."""
    path = path.strip().removeprefix("./")
    if not path or "\\" in path or "\x00" in path:
        return None
    framed = f"/{path}/"  # an empty, "." or ".." part (a leading "/" included) shows as "//", "/./", "/../"
    if "//" in framed or "/./" in framed or "/../" in framed:
        return None
    return path


_KINDS: dict[str, tuple[type[Source], str]] = {}  # kind -> (class, who registered it)


def registered_kinds() -> dict[str, type[Source]]:
    """Every source kind registered so far (sources.source_kinds loads the modules first)."""
    return {k: cls for k, (cls, _) in _KINDS.items()}


class Source(ABC):
    """A configured source of one recipe. Subclasses set `kind` and `Params`; a subclass that sets
    its own `kind` registers it (a kind taken twice is an error naming both, never an override)."""

    kind: ClassVar[str]
    Params: ClassVar[type[SourceParams]] = SourceParams

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        kind = cls.__dict__.get("kind")
        if not kind:
            return
        who = plugins.owner(cls.__module__)
        old = _KINDS.get(kind)
        # a module imported again (reload) re-registers its own class; anything else is a clash
        if old is not None and (old[0].__module__, old[0].__qualname__) != (cls.__module__, cls.__qualname__):
            raise plugins.conflict("source kind", kind, who, old[1])
        _KINDS[kind] = (cls, who)

    def __init__(self, recipe: Recipe, spec: SourceSpec, settings: Settings) -> None:
        self.recipe, self.spec, self.settings = recipe, spec, settings
        self.params = self.Params.model_validate(spec.params)
        self._local = threading.local()

    # -- where things go ---------------------------------------------------------------------
    @property
    def raw_dir(self) -> Path:
        """The folder this source's files land in: raw/<dataset>/<into>/."""
        base = self.settings.raw_dir(self.recipe.name)
        return base / self.spec.into if self.spec.into else base

    @property
    def label(self) -> str:
        return f"{self.recipe.name}/{self.spec.id}"

    # -- HTTP -------------------------------------------------------------------------------
    def session(self) -> requests.Session:
        """A session per thread (sessions are not thread-safe), identifying as climb: credentials bound to
        their origin on every hop, environment proxies and CA bundle (net.session)."""
        s = getattr(self._local, "session", None)
        if s is None:
            from climb_cli.net.session import ClimbSession  # requests: imported when a source goes online

            s = ClimbSession(USER_AGENT)
            self._local.session = s
        return s

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.settings.connect_timeout, self.settings.read_timeout)

    # -- the interface ------------------------------------------------------------------------
    @abstractmethod
    def list_files(self) -> list[RemoteFile]:
        """Online: every file the recipe asks for from this source, with checksums where known."""

    @abstractmethod
    def expected_files(self) -> list[RemoteFile] | None:
        """Offline: the expected files from what is stored locally (None if never listed)."""

    @abstractmethod
    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        """Start a streaming GET of `file` with extra headers (Range, If-Range). Raises AccessError
        for a refusal; returns any other response (the engine handles 2xx/416/429/5xx)."""

    def response_checksum(self, file: RemoteFile, resp: requests.Response) -> RemoteFile:
        """A checksum the response itself carries (GCS x-goog-hash md5, Zenodo Content-MD5, HF
        X-Linked-Etag sha256), merged into `file` when the listing had none. Default: none."""
        return file

    def check_access(self) -> AccessReport:
        """Without downloading the data: are credentials present and is access granted?"""
        return AccessReport(self.recipe.name, self.spec.id, True, "no check implemented")

    def sizes(self, files: list[RemoteFile]) -> list[RemoteFile]:
        """Fill in sizes where the source can learn them cheaply (for --dry-run); default: as is."""
        return files

    def describe(self) -> str:
        return f"{self.kind}"

    def params_dict(self) -> dict[str, Any]:
        return self.params.model_dump()
