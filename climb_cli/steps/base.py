"""The Step interface: a named, validated, pure transform of one Sample.

A step is a plain function `fn(sample, params) -> sample` registered under a dotted name
(`ecg.resample`). Its parameters are a pydantic model, so a recipe is validated before any work
starts and `climb steps` can list every step with its parameters, types and defaults.
"""

from __future__ import annotations

import re
import sys
import sysconfig
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from climb_cli import plugins
from climb_cli.errors import ItemError, StepBug

if TYPE_CHECKING:  # annotations only: importing a step module (to validate a recipe) loads no numpy
    import numpy as np


class StepParams(BaseModel):
    """Base class of every step's parameters: unknown keys are rejected."""

    # defer_build: a step's model is built when a recipe using it is first validated
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


@dataclass
class Sample:
    """One item travelling through the steps of a recipe.

    inputs:  named raw files (absolute paths) the index resolved for this item.
    arrays:  the data being transformed, by name (`signal`, `image`, `volume`, ...).
    meta:    modality metadata that becomes output columns (sampling_rate, lead_names, spacing...).
    sources: the raw files actually read, for provenance (their sha256 goes into the row).
    fields:  the item's kept index columns (recipe `index.keep`), for steps that need them.
    Meta keys starting with "_" are private hand-overs between steps and never become columns.
    """

    id: str
    inputs: dict[str, Path] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    sources: list[Path] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)

    def input(self, name: str) -> Path:
        try:
            path = self.inputs[name]
        except KeyError:
            raise ItemError(f"no input named {name!r} (inputs: {', '.join(self.inputs) or 'none'})") from None
        if isinstance(path, list):  # an aggregated item's input with one file per row
            raise ItemError(f"input {name!r} holds {len(path)} files (aggregated rows); this step reads one")
        return path

    def array(self, name: str) -> np.ndarray:
        try:
            return self.arrays[name]
        except KeyError:
            raise ItemError(f"no array named {name!r} yet; a reader step must come first") from None


def why(exc: BaseException, limit: int = 160) -> str:
    """A short, one-line description of an exception, for an ItemError reason."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


# Exceptions that no input file can legitimately cause when climb's own code raises them.
BUG_TYPES = (TypeError, AttributeError, NameError, AssertionError, ImportError, NotImplementedError)
_PACKAGE_DIR = str(Path(__file__).resolve().parent.parent)
_LIBRARY_DIRS = tuple(
    {
        str(Path(p).resolve())
        for k in ("stdlib", "platstdlib", "purelib", "platlib")
        if (p := sysconfig.get_path(k))
    }
    | {str(Path(p).resolve()) for p in sys.path if "-packages" in p}
)


def is_bug(exc: BaseException) -> bool:
    """True for MemoryError, and for a BUG_TYPES exception raised in climb's (or a plug-in step's)
    own code; False when a library raised it while reading a file (a bad input: an item error)."""
    if isinstance(exc, MemoryError):
        return True
    if not isinstance(exc, BUG_TYPES):
        return False
    tb = exc.__traceback__
    if tb is None:
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    where = str(Path(tb.tb_frame.f_code.co_filename).resolve())
    return where.startswith(_PACKAGE_DIR) or not where.startswith(_LIBRARY_DIRS)


def bug(step: str, item_id: str, exc: BaseException) -> StepBug:
    """The StepBug for `exc` raised by `step` on one item (the one line the CLI prints)."""
    if isinstance(exc, MemoryError):
        return StepBug(f"{step} ran out of memory on item {item_id!r}; run with fewer --workers")
    return StepBug(f"bug in step {step} on item {item_id!r}: {why(exc)}")


@contextmanager
def item_errors(reason: str, limit: int = 160) -> Iterator[None]:
    """Any exception other than ItemError inside becomes ItemError("<reason> (<Type>: <message>)"):
    one bad file is one failed item, with a reason naming the file, whatever the library raised."""
    try:
        yield
    except ItemError:
        raise
    except Exception as exc:
        if is_bug(exc):
            raise
        raise ItemError(f"{reason} ({why(exc, limit)})") from None


def id_part(sample_id: str, pattern: str | None, group: str, param: str) -> str:
    """The part of an item id that `pattern` picks: its named `group`, else group 1, else the match
    (the whole id when there is no pattern). `param` names the recipe field in the error."""
    if pattern is None:
        return sample_id
    m = re.search(pattern, sample_id)
    if m is None:
        raise ItemError(f"item id {sample_id!r} does not match {param} {pattern!r}")
    if group in m.re.groupindex:
        return m.group(group)
    return m.group(1) if m.re.groups else m.group(0)


StepFn = Callable[[Sample, Any], Sample]


@dataclass(frozen=True)
class StepDef:
    name: str
    fn: StepFn
    params: type[StepParams]
    doc: str
    origin: str = "climb"  # who registered it: climb (module) or a plug-in (plugins.owner)

    @property
    def modality(self) -> str:
        return self.name.split(".", 1)[0]


_REGISTRY: dict[str, StepDef] = {}


def step(name: str, params: type[StepParams] = StepParams) -> Callable[[StepFn], StepFn]:
    """Register `fn` as the step `name` with parameter model `params`."""

    def register(fn: StepFn) -> StepFn:
        who = plugins.owner(fn.__module__)
        old = _REGISTRY.get(name)
        if old is not None and old.fn is not fn:  # taken twice: an error naming both, never an override
            raise plugins.conflict("step", name, who, old.origin)
        doc = (fn.__doc__ or "").strip().splitlines()[0] if fn.__doc__ else ""
        _REGISTRY[name] = StepDef(name=name, fn=fn, params=params, doc=doc, origin=who)
        return fn

    return register


def registered() -> dict[str, StepDef]:
    """The steps registered so far (modules loaded by `registry` or `steps.load_for`), unsorted."""
    return _REGISTRY


def registry() -> dict[str, StepDef]:
    """Every registered step, loading all step modules first."""
    from climb_cli import steps as _pkg

    _pkg.load_all()
    return dict(sorted(_REGISTRY.items()))


def get_step(name: str) -> StepDef | None:
    return registry().get(name)
