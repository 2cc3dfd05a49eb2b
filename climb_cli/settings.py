"""Run-wide settings: where data goes, where recipes are found, network policy, and mirrors.

Every value has an environment variable so that a cluster job or a CI run can set it once:
CLIMB_DATA, CLIMB_RECIPES (path-separated), CLIMB_CONNECTIONS (per host), CLIMB_RETRIES,
CLIMB_BACKOFF (first retry delay, seconds), CLIMB_CONNECT_TIMEOUT, CLIMB_READ_TIMEOUT,
CLIMB_MIN_FREE (the free space a download keeps on the data disk, e.g. 2G), CLIMB_STALL_SPEED and
CLIMB_STALL_TIME (a body slower than SPEED bytes/s over TIME seconds is a stall, retried), and
CLIMB_<KIND>_URL to point a source kind at a mirror (CLIMB_PHYSIONET_URL=https://mirror.lab/),
CLIMB_MIRROR (the cloud copy PhysioNet files come from: origin | aws-open | aws | gcs).
A data dir given as a URL (s3://bucket/prefix) is object storage: `remote` holds it and `data_dir` is the
local cache dir keyed by it (storage.py says what lives where).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

from climb_cli.errors import ClimbError, UsageError
from climb_cli.space import DEFAULT_MIN_FREE, parse_size


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise UsageError(f"{name}={raw!r}: must be a number") from None


def _env_int(name: str, default: int) -> int:
    value = _env_float(name, default)
    if value != int(value) or value < 0:
        raise UsageError(f"{name}: must be a whole number >= 0")
    return int(value)


def writable(path: Path) -> bool:
    """Whether this process may write `path` (an existing file or folder), or create it (its
    nearest existing ancestor is writable). False on a read-only mount, even for root."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return os.access(path, os.W_OK)


def require_writable(path: Path, hint: str) -> None:
    """Raise a one-line ClimbError naming `path` and what to set (`hint`) when it cannot be written."""
    if not writable(path):
        raise ClimbError(f"cannot write to {path} (no write access there); {hint}")


DATA_DIR_HINT = "set --data-dir or CLIMB_DATA to a folder you can write"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    recipe_dirs: tuple[Path, ...] = ()
    connections_per_host: int = 4
    retries: int = 8
    backoff: float = 1.0
    backoff_max: float = 120.0
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    chunk_size: int = 1024 * 1024
    min_free: int = DEFAULT_MIN_FREE
    stall_speed: float = 1000.0
    stall_time: float = 30.0
    mirrors: dict[str, str] = field(default_factory=dict)
    mirror: str = (
        "origin"  # where PhysioNet file bytes come from: origin | aws-open | aws | gcs (sources/physionet.py)
    )
    remote: str | None = None  # the data dir's URL when it is object storage; data_dir is then its cache

    @classmethod
    def from_env(cls, data_dir: Path | str | None = None, recipe_dirs: list[Path] | None = None) -> Settings:
        from climb_cli.storage import cache_dir, is_url

        given = data_dir or os.environ.get("CLIMB_DATA") or Path.home() / "climb-data"
        remote = str(given).rstrip("/") if is_url(str(given)) else None
        data = cache_dir(remote) if remote else Path(given)
        dirs = list(recipe_dirs or [])
        for part in (os.environ.get("CLIMB_RECIPES") or "").split(os.pathsep):
            if part:
                dirs.append(Path(part))
        mirrors = {
            k[len("CLIMB_") : -len("_URL")].lower().replace("_", "-"): v
            for k, v in os.environ.items()
            if k.startswith("CLIMB_") and k.endswith("_URL") and v
        }
        return cls(
            data_dir=data.expanduser(),
            recipe_dirs=tuple(d.expanduser() for d in dirs),
            connections_per_host=max(1, _env_int("CLIMB_CONNECTIONS", 4)),
            retries=_env_int("CLIMB_RETRIES", 8),
            backoff=_env_float("CLIMB_BACKOFF", 1.0),
            connect_timeout=_env_float("CLIMB_CONNECT_TIMEOUT", 10.0),
            read_timeout=_env_float("CLIMB_READ_TIMEOUT", 60.0),
            min_free=parse_size(os.environ["CLIMB_MIN_FREE"], "CLIMB_MIN_FREE")
            if os.environ.get("CLIMB_MIN_FREE")
            else DEFAULT_MIN_FREE,
            stall_speed=_env_float("CLIMB_STALL_SPEED", 1000.0),
            stall_time=_env_float("CLIMB_STALL_TIME", 30.0),
            mirrors=mirrors,
            remote=remote,
            mirror=os.environ.get("CLIMB_MIRROR") or "origin",
        )

    def with_(self, **kw: object) -> Settings:
        return replace(self, **kw)  # type: ignore[arg-type]

    def base_url(self, kind: str, default: str) -> str:
        """The base URL for a source kind: a configured mirror, else the service's own."""
        return (self.mirrors.get(kind) or default).rstrip("/")

    def raw_dir(self, dataset: str) -> Path:
        return self.data_dir / "raw" / dataset

    def processed_dir(self, dataset: str) -> Path:
        return self.data_dir / "processed" / dataset

    def raw_url(self, dataset: str) -> str | None:
        return f"{self.remote}/raw/{dataset}" if self.remote else None

    def processed_url(self, dataset: str) -> str | None:
        return f"{self.remote}/processed/{dataset}" if self.remote else None
