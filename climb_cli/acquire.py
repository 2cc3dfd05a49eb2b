"""Downloading a recipe's raw files: plan (what, how big, will it fit), then transfer.

The plan asks each source for its file list (PhysioNet: SHA256SUMS.txt filtered by the recipe's
include/exclude globs); the transfer engine does the rest.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field

from climb_cli.errors import AccessError, ClimbError
from climb_cli.manifest import RawManifest
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.base import RemoteFile, Source
from climb_cli.transfer import Downloader, Outcome, Progress


@dataclass
class Plan:
    recipe: Recipe
    jobs: list[tuple[Source, RemoteFile]]
    present_bytes: int = 0

    @property
    def files(self) -> int:
        return len(self.jobs)

    @property
    def total_bytes(self) -> int | None:
        sizes = [rf.size for _, rf in self.jobs]
        return None if any(s is None for s in sizes) else sum(sizes)  # type: ignore[misc]


@dataclass
class DownloadReport:
    recipe: Recipe
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    @property
    def ok(self) -> bool:
        return not self.error and self.count("failed") == 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.outcomes if o.status == "downloaded")


def plan(recipe: Recipe, settings: Settings, *, with_sizes: bool = False) -> Plan:
    jobs: list[tuple[Source, RemoteFile]] = []
    for source in make_sources(recipe, settings):
        files = source.list_files()
        if with_sizes:
            files = source.sizes(files)
        jobs.extend((source, rf) for rf in files)
    present = 0
    for source, rf in jobs:
        p = source.raw_dir / rf.path
        if p.is_file():
            present += p.stat().st_size
    return Plan(recipe, jobs, present)


def check_disk(p: Plan, settings: Settings) -> str | None:
    """None if the raw folder's disk can hold what remains to download, else the reason."""
    total = p.total_bytes
    if total is None:
        return None
    need = max(0, total - p.present_bytes)
    target = settings.data_dir
    while not target.exists():
        target = target.parent
    free = shutil.disk_usage(target).free
    if need > free:
        return f"{p.recipe.name}: needs {need:,} more bytes but {target} has {free:,} free"
    return None


def download(recipe: Recipe, settings: Settings, progress: Progress | None = None) -> DownloadReport:
    report = DownloadReport(recipe)
    try:
        p = plan(recipe, settings)
    except AccessError as e:
        report.error = str(e)
        return report
    except ClimbError as e:
        report.error = str(e)
        return report
    with RawManifest.for_dataset(settings.raw_dir(recipe.name)) as manifest:
        report.outcomes = Downloader.from_settings(settings, progress).run(p.jobs, manifest)
    return report
