"""Per-dataset Python hooks: `<name>.py` beside the recipe's YAML, for what YAML cannot say.

The signature is fixed:

    def rows(table: pandas.DataFrame, ctx: climb_cli.hooks.HookContext) -> pandas.DataFrame

It is called once, after the index table is read, joined, filtered and excluded and before ids,
labels and splits are computed; it returns the table to index (it may add, drop or rewrite rows and
columns; every column is a string). `ctx.raw_dir` is the dataset's raw folder (read it, never write
it), `ctx.read_table(path, **fields)` reads another table as the index does, `ctx.dataset` is the
recipe name. The hook's source text is part of the recipe hash, so editing it makes a new output
version.

A hook that raises becomes a recipe error naming the hook's file:line and the exception, never a
traceback. While it runs, opening network connections, resolving names, binding sockets and
starting processes raise PermissionError (a Python audit hook on socket.connect, socket.bind,
socket.getaddrinfo, socket.sendto, subprocess.Popen, os.system, os.exec*, os.posix_spawn). Limits:
this is a guard against accidents in trusted code, not a sandbox: C extensions or ctypes calls can
reach the network without passing through Python's audit events, and the hook runs with the
user's file permissions.
"""

from __future__ import annotations

import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from climb_cli.errors import RecipeError

_BLOCKED = (
    "socket.connect",
    "socket.bind",
    "socket.getaddrinfo",
    "socket.gethostbyname",
    "socket.sendto",
    "subprocess.Popen",
    "os.system",
    "os.exec",
    "os.posix_spawn",
    "os.spawn",
)
_state = threading.local()
_installed = False


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if getattr(_state, "active", False) and event.startswith(_BLOCKED):
        raise PermissionError(f"recipe hooks cannot use the network or start processes ({event})")


def _guard() -> None:
    global _installed
    if not _installed:
        sys.addaudithook(_audit)
        _installed = True


@dataclass(frozen=True)
class HookContext:
    dataset: str
    raw_dir: Path
    read_table: Callable[..., pd.DataFrame]


def _where(e: BaseException, path: Path) -> str:
    line = None
    for fs in traceback.extract_tb(e.__traceback__):
        if Path(fs.filename) == path:
            line = fs.lineno
    return f"{path}:{line}" if line else str(path)


def run_rows_hook(source: str, path: Path, table: pd.DataFrame, ctx: HookContext) -> pd.DataFrame:
    """Compile and run the hook's rows(); any failure is a RecipeError with file:line."""
    _guard()
    namespace: dict[str, Any] = {"__name__": f"climb_hook_{ctx.dataset}", "__file__": str(path)}
    _state.active = True
    try:
        try:
            exec(compile(source, str(path), "exec"), namespace)  # the recipe's own, hashed hook
        except SyntaxError as e:
            raise RecipeError(f"{path}:{e.lineno}: hook does not compile: {e.msg}") from None
        except Exception as e:
            raise RecipeError(f"{_where(e, path)}: hook failed on import: {type(e).__name__}: {e}") from None
        fn = namespace.get("rows")
        if not callable(fn):
            raise RecipeError(f"{path}: a hook defines rows(table, ctx) -> table")
        try:
            out = fn(table.copy(), ctx)
        except RecipeError:
            raise
        except Exception as e:
            raise RecipeError(f"{_where(e, path)}: hook rows() raised {type(e).__name__}: {e}") from None
    finally:
        _state.active = False
    if not isinstance(out, pd.DataFrame):
        raise RecipeError(f"{path}: rows() returned {type(out).__name__}, not a pandas DataFrame")
    return out.fillna("").astype(str).reset_index(drop=True)
