"""Downloading a recipe's raw files: plan (what, how big, will it fit), transfer, then the per-source
steps that follow a verified download (archive extraction, pinning sums).

The plan asks each source for its file list (PhysioNet: SHA256SUMS.txt filtered by the recipe's
include/exclude globs); the transfer engine does the rest. A source that cannot be listed (no
credentials, access not granted) does not stop the others; a manual source is checked for what a
person has placed instead of being downloaded. The report says, per dataset, whether everything is
there and if not, why — which `climb download --all` turns into its closing summary.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

import requests

from climb_cli import archives, redaction, space
from climb_cli.auth import DENIED, FAILED, MANUAL, NO_CREDENTIALS, access_reason
from climb_cli.errors import AccessError, ClimbError
from climb_cli.locks import LockedError, raw_lock
from climb_cli.manifest import RawManifest
from climb_cli.pins import Pins, mismatch_hint
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources import make_sources
from climb_cli.sources.base import RemoteFile, Source, nothing_selected
from climb_cli.transfer import Downloader, Outcome, Progress

__all__ = ["DENIED", "FAILED", "MANUAL", "NO_CREDENTIALS", "DownloadReport", "Plan", "download", "plan"]


@dataclass
class Plan:
    recipe: Recipe
    jobs: list[tuple[Source, RemoteFile]]
    present_bytes: int = 0
    present_files: int = 0
    size_note: str = ""  # why some sizes are unknown (e.g. the listing could not be fetched)

    @property
    def files(self) -> int:
        return len(self.jobs)

    @property
    def known_bytes(self) -> int:
        """The sum of the sizes that are known."""
        return sum(rf.size for _, rf in self.jobs if rf.size is not None)

    @property
    def unknown_files(self) -> int:
        """Files whose size neither the source nor the disk could tell (e.g. hidden from listings)."""
        return sum(1 for _, rf in self.jobs if rf.size is None)

    @property
    def total_bytes(self) -> int | None:
        return None if self.unknown_files else self.known_bytes

    def as_dict(self) -> dict:
        return {
            "dataset": self.recipe.name,
            "files": self.files,
            "bytes": self.known_bytes,
            "unknown_size_files": self.unknown_files,
            "present_files": self.present_files,
            "present_bytes": self.present_bytes,
        }


@dataclass
class Problem:
    category: str  # no credentials | access not granted | manual | failed
    source: str
    text: str  # one line, starting with the dataset name


@dataclass
class DownloadReport:
    recipe: Recipe
    outcomes: list[Outcome] = field(default_factory=list)
    error: str = ""  # the first source that could not be listed (kept for callers of the vertical slice)
    problems: list[Problem] = field(default_factory=list)
    manual: list = field(default_factory=list)  # sources.manual.Placement per manual source
    extracted: list[archives.Result] = field(default_factory=list)
    pinned: int = 0  # sums pinned by this run
    skipped_files: int = 0  # present and unchanged, with their upstream sum: counted, not in `outcomes`

    def count(self, status: str) -> int:
        n = sum(1 for o in self.outcomes if o.status == status)
        return n + self.skipped_files if status == "skipped" else n

    @property
    def ok(self) -> bool:
        return not self.problems and not self.error and self.count("failed") == 0

    @property
    def bytes(self) -> int:
        return sum(o.size for o in self.outcomes if o.status == "downloaded")

    @property
    def category(self) -> str:
        """ok, or why not: the first problem's category."""
        return self.problems[0].category if self.problems else "ok"

    @property
    def why(self) -> str:
        if not self.problems:
            return ""
        more = f" (+{len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        return self.problems[0].text + more

    def add(self, category: str, source: Source, text: str) -> None:
        name = self.recipe.name
        text = redaction.redact(text if text.startswith(f"{name}:") else f"{name}: {text}")
        self.problems.append(Problem(category, source.spec.id, text))
        if not self.error and category != MANUAL:
            self.error = text


def plan(recipe: Recipe, settings: Settings, *, with_sizes: bool = False) -> Plan:
    """What a download would fetch. With sizes: files already present and verified (their manifest
    row matches) count with their size on disk; only the others are asked of the source, so a
    complete folder needs no network. A source that cannot tell sizes leaves them unknown, with a note."""
    jobs: list[tuple[Source, RemoteFile]] = []
    pins = Pins(recipe, settings)
    raw_root = settings.raw_dir(recipe.name)
    out = Plan(recipe, jobs)
    with RawManifest.for_reading(raw_root, create=False) as manifest:
        for source in make_sources(recipe, settings):
            try:
                files = pins.apply(source, _selecting(source, source.list_files()))
            except requests.RequestException as e:
                why = f"listing {source.describe()} failed: {type(e).__name__}"
                raise ClimbError(f"{recipe.name}: {why}") from None
            present = _present(source, files, manifest, out, keep=with_sizes)
            if with_sizes:
                missing = [rf for rf in files if rf.path not in present]
                try:
                    sized = {rf.path: rf for rf in source.sizes(missing)} if missing else {}
                except requests.RequestException as e:
                    sized = {}
                    out.size_note = (
                        f"sizes unknown: {source.describe()} could not be reached ({type(e).__name__})"
                    )
                files = [
                    dataclasses.replace(rf, size=present[rf.path])
                    if rf.path in present
                    else sized.get(rf.path, rf)
                    for rf in files
                ]
            jobs.extend((source, rf) for rf in files)
    return out


def _present(
    source: Source, files: list[RemoteFile], manifest: RawManifest, out: Plan, *, keep: bool
) -> dict[str, int]:
    """Count into `out` the files on disk (any regular file at the path) and those verified present (their
    manifest row matches); with `keep`, returns path -> size of the verified ones. One stat per file on
    string paths, the manifest read a chunk of rows at a time (a million files: no Path, no whole index)."""
    present: dict[str, int] = {}
    root = os.fspath(source.settings.raw_dir(source.recipe.name)) + "/"
    for start in range(0, len(files), 2000):
        chunk = files[start : start + 2000]
        keys = [archives.source_key(source, rf.path) for rf in chunk]
        rows = manifest.rows(keys)
        for rf, key in zip(chunk, keys, strict=True):
            try:
                st = os.stat(root + key)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            out.present_bytes += st.st_size
            row = rows.get(key)
            if row is not None and row[:2] == (st.st_size, st.st_mtime_ns) and rf.sha256 in (None, row[2]):
                out.present_files += 1
                if keep:
                    present[rf.path] = st.st_size
    return present


def check_disk(p: Plan, settings: Settings) -> str | None:
    """None if the raw folder's disk can hold what remains to download (and keep --min-free), else the
    reason. Files of unknown size count as zero here: the caller says how many there are."""
    need = max(0, p.known_bytes - p.present_bytes)
    line = space.shortfall(settings.data_dir, need, settings.min_free)
    return f"{p.recipe.name}: {line}" if line else None


def _selecting(source: Source, files: list[RemoteFile]) -> list[RemoteFile]:
    """The listing, or the one line for a source that selects no file (a manual one may have none yet)."""
    if not files and not getattr(source, "manual", False):
        raise ClimbError(nothing_selected(source))
    return files


def _list(source: Source, report: DownloadReport) -> list[RemoteFile] | None:
    try:
        return _selecting(source, source.list_files())
    except AccessError as e:
        report.add(access_reason(source, e), source, str(e))
    except ClimbError as e:
        report.add(FAILED, source, str(e))
    except requests.RequestException as e:
        report.add(FAILED, source, f"listing {source.describe()} failed: {type(e).__name__}: {e}")
    return None


def download(recipe: Recipe, settings: Settings, progress: Progress | None = None) -> DownloadReport:
    """Download every source of the recipe that can be downloaded; report the rest. Holds the
    dataset's raw lock: a second run at once refuses with one line naming this one. A full disk (a write's
    ENOSPC, sqlite's "database or disk is full", or the --min-free reserve reached) stops the run with one
    line (DiskFullError); files already committed stay valid."""
    report = DownloadReport(recipe)
    sources = make_sources(recipe, settings)
    try:
        with (
            space.said_when_full(settings.raw_dir(recipe.name)),
            raw_lock(settings.raw_dir(recipe.name), recipe.name, "climb download"),
        ):
            return _download(recipe, settings, sources, report, progress)
    except LockedError as e:
        report.add(FAILED, sources[0], str(e))
        return report


def _download(
    recipe: Recipe,
    settings: Settings,
    sources: list[Source],
    report: DownloadReport,
    progress: Progress | None,
) -> DownloadReport:
    try:
        pins = Pins(recipe, settings)
    except ClimbError as e:
        report.add(FAILED, sources[0], str(e))
        return report
    listed: list[tuple[Source, list[RemoteFile]]] = []
    manual: list[Source] = []
    raw_root = settings.raw_dir(recipe.name)
    opening = _open_manifest(raw_root)  # while the sources list (PhysioNet: one request for SHA256SUMS.txt)
    try:
        for source in sources:
            if getattr(source, "manual", False):
                manual.append(source)
                continue
            files = _list(source, report)
            if files is not None:
                listed.append((source, pins.apply(source, files)))
    except BaseException:
        _close_opened(opening)
        raise
    if not listed and not manual:
        _close_opened(opening)
        return report
    with opening.result() as manifest:
        known = manifest.index()  # rows read as needed: a million of them are never held at once
        jobs: list[tuple[Source, RemoteFile]] = []
        for source, files in listed:
            for rf in files:
                state = archives.removed_archive_state(source, rf, known)
                if state is not None:  # extracted, archive removed on purpose, members intact
                    report.outcomes.append(Outcome(rf, "skipped", state.archive_size, state.archive_sha256))
                else:
                    jobs.append((source, rf))
        short = space.shortfall(raw_root, _still_needed(jobs), settings.min_free) if jobs else None
        if short:  # the check --dry-run makes, before a byte is written
            report.add(FAILED, jobs[0][0], short)
        elif jobs:
            d = Downloader.from_settings(settings, progress)
            report.outcomes.extend(d.run(jobs, manifest, known, count_skips=True))
            report.skipped_files += d.skipped_files
        _after_transfer(report, listed, pins)
        placements = {}
        for source in manual:
            placements[source.spec.id] = source.placement(manifest, pins, known=known)  # type: ignore[attr-defined]
            for rf, digest, size in placements[source.spec.id].ok_files:
                pins.record(source, rf, digest, size)
        _extract_all(report, [*listed, *((s, s.explicit_files()) for s in manual)], manifest)  # type: ignore[attr-defined]
        for source in manual:
            p = source.count_globs(placements[source.spec.id])  # type: ignore[attr-defined]
            report.manual.append(p)
            if not p.complete:
                report.add(MANUAL, source, p.summary() + f" (see `climb auth check {recipe.name}`)")
        report.pinned = pins.save()
    return report


def _open_manifest(raw_root: Path) -> Future[RawManifest]:
    """The dataset's manifest, opened (created, its WAL set up) in a thread of its own."""
    future: Future[RawManifest] = Future()

    def opening() -> None:
        try:
            future.set_result(RawManifest.for_dataset(raw_root))
        except BaseException as e:  # noqa: BLE001 - raised where the result is taken
            future.set_exception(e)

    threading.Thread(target=opening, name="climb-manifest", daemon=True).start()
    return future


def _close_opened(opening: Future[RawManifest]) -> None:
    """Close a manifest opened for a download that found nothing to fetch (an error opening it is moot)."""
    with contextlib.suppress(Exception):
        opening.result().close()


def _still_needed(jobs: list[tuple[Source, RemoteFile]]) -> int:
    """Bytes of the jobs' files not yet present at their declared size (unknown sizes count 0)."""
    need = 0
    for source, rf in jobs:
        if rf.size:
            try:
                present = (source.raw_dir / rf.path).stat().st_size == rf.size
            except OSError:
                present = False
            need += 0 if present else rf.size
    return need


def _after_transfer(
    report: DownloadReport, listed: list[tuple[Source, list[RemoteFile]]], pins: Pins
) -> None:
    """Pin first downloads, explain pin mismatches, and turn failed files into problems. Which source
    a file came from is mapped only when an outcome needs it (a rerun over a million files with
    upstream sums, all present, needs no per-file map)."""
    owner: dict[int, Source] = {}

    def owner_of(rf: RemoteFile) -> Source | None:
        if not owner:
            owner.update((id(f), source) for source, files in listed for f in files)
        return owner.get(id(rf))

    failed: dict[str, list[Outcome]] = {}
    sources: dict[str, Source] = {}
    learned: dict[str, dict[str, RemoteFile]] = {}  # per source: its files with sums learned on the way
    for o in report.outcomes:
        needs_pin = o.status in ("downloaded", "skipped") and not o.file.sha256
        if not needs_pin and o.status != "failed":
            continue
        source = owner_of(o.file)
        if source is None:
            continue
        if needs_pin:
            md5 = bool(o.file.md5)
            if not md5 and pins.unsummed:  # a sum the storage answer carried (Kaggle x-goog-hash md5)
                if source.spec.id not in learned:
                    learned[source.spec.id] = {f.path: f for f in source.expected_files() or []}
                seen = learned[source.spec.id].get(o.file.path)
                md5 = bool(seen and (seen.md5 or seen.sha256))
            pins.record(source, o.file, o.sha256, o.size, upstream_md5=md5)
        elif o.status == "failed":
            pin = pins.pinned_by(source, o.file)
            if pin is not None and "checksum mismatch" in o.error:
                o.error += mismatch_hint(pin, archives.source_key(source, o.file.path))
            failed.setdefault(source.spec.id, []).append(o)
            sources[source.spec.id] = source
    for sid, outs in failed.items():
        source = sources[sid]
        denied = [o for o in outs if o.access_denied]
        if denied:
            refusal = AccessError(denied[0].error, denied[0].reason or None)  # its reason, not just the text
            report.add(access_reason(source, refusal), source, denied[0].error)
        other = [o for o in outs if not o.access_denied]
        if other:
            report.add(FAILED, source, f"{len(other)} file(s) failed; first: {other[0].error}")


def _extract_all(
    report: DownloadReport, listed: list[tuple[Source, list[RemoteFile]]], manifest: RawManifest
) -> None:
    """Extract every archive the recipe asks to extract that is present and verified (its manifest
    row matches the file). Members may not overwrite another file of the dataset."""
    if not any(archives.policy(source) for source, _ in listed):
        return  # nothing to extract: no set of every file's key (a million of them) is made
    raw_root = None
    reserved: set[str] = set()
    for source, files in listed:
        raw_root = source.settings.raw_dir(source.recipe.name)
        reserved.update(archives.source_key(source, rf.path) for rf in files)
    if raw_root is None:
        return
    claimed: set[str] = set()
    for source, files in listed:
        pol = archives.policy(source)
        if pol is None:
            continue
        known = manifest.load_index()
        # (key, depth): the source's archives, then archives found among their members (nested)
        todo = [(archives.source_key(source, rf.path), 0, rf.sha256) for rf in files if pol.wants(rf.path)]
        while todo:
            key, depth, want = todo.pop(0)
            path = raw_root / key
            row = known.get(key)
            try:
                st = path.stat()
            except OSError:
                continue  # not there (failed, or extracted and removed on purpose)
            if row is None or row[:2] != (st.st_size, st.st_mtime_ns) or want not in (None, row[2]):
                continue  # not verified: never extract unverified bytes
            try:
                res = archives.extract(
                    path,
                    raw_root=raw_root,
                    key=key,
                    sha256=row[2],
                    dataset=source.recipe.name,
                    source_id=source.spec.id,
                    strip_components=pol.strip_components if depth == 0 else 0,
                    reserved=(reserved | claimed) - {key},
                    manifest=manifest,
                    known=known,
                    reserve=source.settings.min_free,
                )
            except ClimbError as e:
                report.add(FAILED, source, str(e))
                continue
            except OSError as e:
                report.add(FAILED, source, f"extracting {key}: {e.strerror or e}")
                continue
            claimed.update(res.members)
            report.extracted.append(res)
            nested = archives.nested_archives(source, pol, res, depth)
            if nested:
                known = manifest.load_index()
                todo.extend((k, depth + 1, None) for k in nested)
            if depth == 0 and not pol.keep_archive:
                path.unlink()
                manifest.delete([key])
                res.removed_archive = True


def relist(recipe: Recipe, settings: Settings, source_ids: list[str]) -> list[str]:
    """Fetch the file lists of these sources again (e.g. a deleted SHA256SUMS.txt); returns the
    problems, one line each, of those that could not be listed."""
    report = DownloadReport(recipe)
    with raw_lock(settings.raw_dir(recipe.name), recipe.name, "climb verify --repair"):
        for source in make_sources(recipe, settings):
            if source.spec.id in source_ids:
                _list(source, report)
    return [p.text for p in report.problems]


def repair(
    recipe: Recipe, settings: Settings, bad: list[tuple[Source, RemoteFile]], progress: Progress | None = None
) -> list[Outcome]:
    """Re-download the given (missing/corrupt) files, then redo extraction where members are damaged.
    Files of manual sources cannot be re-downloaded: they come back as failed with the instructions."""
    with space.said_when_full(settings.raw_dir(recipe.name)):
        return _repair(recipe, settings, bad, progress)


def _repair(
    recipe: Recipe, settings: Settings, bad: list[tuple[Source, RemoteFile]], progress: Progress | None = None
) -> list[Outcome]:
    outcomes: list[Outcome] = []
    jobs: list[tuple[Source, RemoteFile]] = []
    seen: set[tuple[int, str]] = set()
    for source, rf in bad:
        if (id(source), rf.path) in seen:
            continue
        seen.add((id(source), rf.path))
        if getattr(source, "manual", False):
            if not (source.settings.raw_dir(recipe.name) / archives.source_key(source, rf.path)).is_file():
                outcomes.append(Outcome(rf, "failed", error=source.instructions_line(rf.path)))  # type: ignore[attr-defined]
            continue
        jobs.append((source, rf))
    with (
        raw_lock(settings.raw_dir(recipe.name), recipe.name, "climb verify --repair"),
        RawManifest.for_dataset(settings.raw_dir(recipe.name)) as manifest,
    ):
        if jobs:
            outcomes.extend(Downloader.from_settings(settings, progress).run(jobs, manifest))
        by_source: dict[int, tuple[Source, list[RemoteFile]]] = {}
        pins = Pins(recipe, settings)
        for source, _ in bad:
            if id(source) not in by_source:
                if getattr(source, "manual", False):
                    files = source.explicit_files()  # type: ignore[attr-defined]
                else:
                    files = source.expected_files() or []
                by_source[id(source)] = (source, pins.apply(source, files))
        report = DownloadReport(recipe)
        _extract_all(report, list(by_source.values()), manifest)
        for p in report.problems:
            outcomes.append(Outcome(RemoteFile(p.source, ""), "failed", error=p.text))
    return outcomes
