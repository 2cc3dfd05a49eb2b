"""Archive extraction: a step of a source, run after the archive itself was downloaded and verified.

Formats: zip, tar (plain, .tar.gz/.tgz, .tar.bz2/.tbz2, .tar.xz/.txz), a single gzip-compressed file
(`x.csv.gz` -> `x.csv`), and RAR and 7z through the backends of `archive_formats`. An archive found
among the members of an extracted archive is extracted in turn (nested archives), up to NESTED_DEPTH
levels. Recipe fields (on source kinds that deliver archives; their Params inherit `ArchiveOptions`):

    extract: true | [globs]     extract every archive of this source, or those matching the globs
    keep_archive: true | false  keep the archive after a complete extraction (default true)
    strip_components: N        drop N leading folders of every member path (like tar)

Members are extracted beside the archive (the archive's own folder), one at a time and streaming, each
to a temporary file under `.climb/partial/extract/` that is renamed into place once whole; its sha256 is
computed while it is written and recorded in the raw manifest and in a per-archive state file
`.climb/extracted-<archive path, %-quoted; its sha256 when long>.json` (archive sha256, and each member's
size, mtime and sha256). A rerun whose archive sha256 is unchanged and whose members are intact (size
and mtime as recorded) does nothing; after a crash (even `kill -9`) it extracts only the members that were not
finished: each finished member is also appended to `.climb/extracted-<archive>.journal` at once, and
the state file is saved every few seconds.

Before any byte is written every member is checked, and the whole archive is REJECTED with one line
naming the archive and the member when a member is an absolute path, contains `..`, a drive letter or
a backslash, is a symlink, a hard link, a device or FIFO, is encrypted, overlaps another zip entry,
collides with another file of the dataset, or lands under a symlinked folder. Zip-bomb protection:
a member may not produce more bytes than it declares (zip central directory, tar header), the declared
total must fit on the disk leaving the run's reserve (--min-free) free, checked by space.shortfall like
every download, and a single .gz may not expand more than deflate's maximum ratio (1032:1).

The flow of `extract`: what an earlier run left (`_prior`: done, stale, or resumable), every member
checked (`_checked_members`), the space check (`_check_space`), then the members written one by one
(`_extract_members`, journaled) and the state marked complete.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import os
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import quote

from climb_cli import archive_formats, atomic, space
from climb_cli.errors import ClimbError, DiskFullError
from climb_cli.manifest import Entry, RawManifest
from climb_cli.sources.base import RemoteFile, Source, SourceParams, glob_match, safe_relpath

NESTED_DEPTH = 3  # archives inside extracted archives are extracted down to this many levels
GZIP_MAX_RATIO = 1032  # deflate cannot compress better than ~1032:1; more output than that is a bomb
_CHUNK = 1024 * 1024
_STATE_EVERY_S = 2.0  # save the extraction state at most this often...
_STATE_COST_FACTOR = 20  # ... and spend at most 1/20 of the time saving it (huge archives)


class ArchiveError(ClimbError):
    """An archive was rejected or could not be extracted; the message names the archive (and member)."""


class ArchiveOptions(SourceParams):
    """Kept for source kinds that name it: the archive fields (extract, keep_archive,
    strip_components) are fields of every source now (recipe.SourceSpec)."""


@dataclass(frozen=True)
class Policy:
    extract: bool | tuple[str, ...]
    keep_archive: bool = True
    strip_components: int = 0

    def wants(self, path: str) -> bool:
        """Whether the source file at `path` (relative to the source folder) is to be extracted."""
        if archive_kind(path) is None or not self.extract:
            return False
        if self.extract is True:
            return True
        return any(glob_match(path, g) for g in self.extract)  # type: ignore[union-attr]


def policy(source: Source) -> Policy | None:
    """The source's extraction policy (the recipe's extract / keep_archive / strip_components), or None."""
    spec = source.spec
    if not spec.extract:
        return None
    return Policy(
        spec.extract if isinstance(spec.extract, bool) else tuple(spec.extract),
        spec.keep_archive,
        spec.strip_components,
    )


#: the archive kinds climb extracts, for messages
KINDS_TEXT = "zip, tar, tar.gz/tgz, tar.bz2, tar.xz, gz, rar, 7z"


def archive_kind(name: str) -> str | None:
    """'zip', 'tar', 'gz', 'rar' or '7z' from the file name (case-insensitive); None for anything else."""
    n = name.lower()
    other = archive_formats.kind_of(n)
    if other is not None:
        return other
    if n.endswith(".zip"):
        return "zip"
    if n.endswith((".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")):
        return "tar"
    if n.endswith(".gz"):
        return "gz"
    return None


# ---------------------------------------------------------------------------------------------
# State


#: the longest %-quoted archive path used as is in a state file name (file names stop at 255 bytes)
_NAME_MAX = 200


def _state_name(key: str) -> str:
    """`extracted-<archive path, %-quoted>`; a longer path (TCIA: patient/study/series/series.zip, three
    64-character UIDs) by its sha256 instead: the state file holds the path itself."""
    quoted = quote(key, safe="")
    if len(quoted) > _NAME_MAX:
        quoted = "sha256-" + hashlib.sha256(key.encode("utf-8")).hexdigest()
    return f"extracted-{quoted}"


def state_path(raw_root: Path, key: str) -> Path:
    return raw_root / ".climb" / f"{_state_name(key)}.json"


def journal_path(raw_root: Path, key: str) -> Path:
    """One line per member extracted since the state file was last saved: what makes a rerun after
    `kill -9` redo only the members that were not finished (the state file is saved every few s)."""
    return raw_root / ".climb" / f"{_state_name(key)}.journal"


@dataclass
class State:
    archive: str
    archive_sha256: str
    strip_components: int = 0
    complete: bool = False
    archive_size: int = 0
    members: dict[str, list[Any]] = field(default_factory=dict)  # key -> [size, mtime_ns, sha256, name]
    journaled: set[str] = field(default_factory=set)  # members known only from the journal

    @classmethod
    def load(cls, raw_root: Path, key: str) -> State | None:
        try:
            data = json.loads(state_path(raw_root, key).read_text(encoding="utf-8"))
            state = cls(
                data["archive"],
                data["archive_sha256"],
                int(data.get("strip_components", 0)),
                bool(data.get("complete", False)),
                int(data.get("archive_size", 0)),
                {k: list(v) for k, v in data.get("members", {}).items()},
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        if not state.complete:
            state._replay(raw_root)
        return state

    def _replay(self, raw_root: Path) -> None:
        """Add the members the journal lists (written by a run of the same archive version)."""
        try:
            lines = journal_path(raw_root, self.archive).read_text(encoding="utf-8").splitlines()
        except OSError:
            return
        if not lines or lines[0] != json.dumps([self.archive_sha256, self.strip_components]):
            return
        for line in lines[1:]:
            try:
                mkey, row = json.loads(line)
                if isinstance(mkey, str) and isinstance(row, list) and len(row) == 4:
                    self.members[mkey] = row
                    self.journaled.add(mkey)
            except ValueError:
                break  # the last line, torn by the kill

    def save(self, raw_root: Path) -> None:
        path = state_path(raw_root, self.archive)
        atomic.write_text(
            path,
            json.dumps(
                {
                    "archive": self.archive,
                    "archive_sha256": self.archive_sha256,
                    "archive_size": self.archive_size,
                    "strip_components": self.strip_components,
                    "complete": self.complete,
                    "members": self.members,
                },
                indent=0,
                sort_keys=True,
            ),
        )

    def intact(
        self, raw_root: Path, known: Mapping[str, tuple[int, int, str]] | None = None
    ) -> dict[str, bool]:
        """member key -> whether the file on disk is still the one extracted (size and mtime as recorded,
        and, with `known` (the manifest index), a manifest row with the same sum)."""
        out = {}
        for key, (size, mtime_ns, digest, *_) in self.members.items():
            try:
                st = (raw_root / key).stat()
            except OSError:
                out[key] = False
                continue
            ok = st.st_size == size and st.st_mtime_ns == mtime_ns and stat.S_ISREG(st.st_mode)
            if ok and known is not None:
                ok = known.get(key) == (size, mtime_ns, digest)
            out[key] = ok
        return out

    def satisfied(
        self, raw_root: Path, sha256: str | None, known: Mapping[str, tuple[int, int, str]] | None = None
    ) -> bool:
        """Completely extracted from an archive with this sha256 (None: any), every member intact."""
        return (
            self.complete
            and (sha256 is None or sha256 == self.archive_sha256)
            and all(self.intact(raw_root, known).values())
        )


# ---------------------------------------------------------------------------------------------
# Members


@dataclass
class Member:
    name: str  # as stored in the archive
    key: str  # destination, relative to the dataset's raw folder
    size: int  # declared uncompressed size
    mtime: float | None
    ref: Any  # ZipInfo / TarInfo / None (gz)


def _reject(dataset: str, archive: str, member: str, why: str) -> ArchiveError:
    return ArchiveError(f"{dataset}: archive {archive}: member {member!r} rejected: {why}")


def _clean_member_path(name: str) -> str | None:
    """The member's relative path, or None when it is absolute, has '..', a drive letter or a backslash."""
    if len(name) >= 2 and name[1] == ":" and name[0].isalpha():
        return None
    body = name.rstrip("/")
    while body.startswith("./"):
        body = body[2:]
    if body in ("", "."):
        return ""
    return safe_relpath(body)


_Entry = tuple[str, int, float | None, Any, bool]  # name, declared size, mtime, ref, is_dir


class _Reader:
    """Iterates an archive's members (validated) and opens each one for streaming."""

    def __init__(self, path: Path, kind: str, label: str, dataset: str) -> None:
        self.path, self.kind, self.label, self.dataset = path, kind, label, dataset
        self._zip: zipfile.ZipFile | None = None
        self._tar: tarfile.TarFile | None = None
        self._other: Any = None
        try:
            if kind in archive_formats.SUFFIXES:
                self._other = archive_formats.open_backend(path, kind)
            elif kind == "zip":
                self._zip = zipfile.ZipFile(path)
            elif kind == "tar":
                self._tar = tarfile.open(path, "r:*")  # noqa: SIM115 - closed by close()
        except archive_formats.FormatError as e:
            raise ArchiveError(f"{dataset}: archive {label}: {e}") from None
        except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as e:
            raise ArchiveError(f"{dataset}: archive {label}: cannot be read as {kind}: {e}") from None

    def close(self) -> None:
        for h in (self._zip, self._tar, self._other):
            if h is not None:
                h.close()

    def members(self) -> list[_Entry]:
        """(name, declared size, mtime, ref, is_dir) for every entry, after the type checks."""
        if self._other is not None:
            return list(self._other.members(self._reject))
        if self._zip is not None:
            return self._zip_members(self._zip)
        if self._tar is not None:
            return self._tar_members(self._tar)
        return self._gz_member()

    def _zip_members(self, zf: zipfile.ZipFile) -> list[_Entry]:
        reject = self._reject
        out: list[_Entry] = []
        infos = zf.infolist()
        for zi in infos:
            mode = zi.external_attr >> 16
            ftype = stat.S_IFMT(mode) if zi.create_system == 3 else 0
            if ftype == stat.S_IFLNK:
                raise reject(zi.filename, "symbolic link")
            if ftype and ftype not in (stat.S_IFREG, stat.S_IFDIR):
                raise reject(zi.filename, "device, FIFO or socket")
            if zi.flag_bits & 0x1:
                raise reject(zi.filename, "encrypted")
            try:
                mtime: float | None = time.mktime((*zi.date_time, 0, 0, -1))
            except (OverflowError, ValueError):
                mtime = None
            out.append((zi.filename, zi.file_size, mtime, zi, zi.is_dir()))
        # entries whose data overlap (the non-recursive zip bomb) or run past the archive
        spans = sorted((zi.header_offset, zi.compress_size, zi.filename) for zi in infos)
        archive_size = self.path.stat().st_size
        for (off, csize, name), nxt in zip(spans, [*spans[1:], None], strict=True):
            end = off + 30 + csize
            if end > archive_size or (nxt is not None and end > nxt[0]):
                raise reject(name, "its data overlaps another entry or runs past the end (zip bomb?)")
        return out

    def _tar_members(self, tf: tarfile.TarFile) -> list[_Entry]:
        reject = self._reject
        try:
            infos = tf.getmembers()
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise ArchiveError(f"{self.dataset}: archive {self.label}: corrupt tar: {e}") from None
        out: list[_Entry] = []
        for ti in infos:
            if ti.issym():
                raise reject(ti.name, "symbolic link")
            if ti.islnk():
                raise reject(ti.name, "hard link")
            if ti.ischr() or ti.isblk() or ti.isfifo():
                raise reject(ti.name, "device or FIFO")
            if not (ti.isreg() or ti.isdir()):
                raise reject(ti.name, f"unsupported member type {ti.type!r}")
            out.append((ti.name, ti.size, float(ti.mtime), ti, ti.isdir()))
        return out

    def _gz_member(self) -> list[_Entry]:
        """A single .gz file: one member, its declared size from the trailer, its ref the ratio cap."""
        name = self.path.name[: -len(".gz")]
        with open(self.path, "rb") as f:
            f.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", f.read(4))
        cap = self.path.stat().st_size * GZIP_MAX_RATIO
        return [(name, max(isize, 0), self.path.stat().st_mtime, cap, False)]

    def _reject(self, member: str, why: str) -> ArchiveError:
        return _reject(self.dataset, self.label, member, why)

    @contextlib.contextmanager
    def open(self, ref: Any) -> Iterator[IO[bytes]]:
        if self._other is not None:
            try:
                with self._other.open(ref) as member:
                    yield member
            except archive_formats.FormatError as e:
                raise ArchiveError(f"{self.dataset}: archive {self.label}: {e}") from None
            return
        fh: IO[bytes]
        if self._zip is not None:
            try:
                fh = self._zip.open(ref)
            except NotImplementedError as e:
                raise self._reject(ref.filename, f"unsupported compression ({e})") from None
        elif self._tar is not None:
            extracted = self._tar.extractfile(ref)
            assert extracted is not None
            fh = extracted
        else:
            fh = cast(IO[bytes], gzip.open(self.path, "rb"))  # noqa: SIM115 - closed below
        try:
            yield fh
        finally:
            fh.close()


# ---------------------------------------------------------------------------------------------
# Extraction


@dataclass
class Result:
    archive: str
    extracted: int = 0  # members written this time
    intact: int = 0  # members already in place
    removed_archive: bool = False
    skipped: bool = False  # nothing to do at all
    members: dict[str, list[Any]] = field(default_factory=dict)


def _check_parents(raw_root: Path, base: str, key: str, dataset: str, label: str, name: str) -> None:
    """No folder between the archive's folder (`base`) and the member may be a symlink or a file."""
    p = raw_root / base if base else raw_root
    for part in key[len(base) + 1 if base else 0 :].split("/")[:-1]:
        p = p / part
        if p.is_symlink():
            raise _reject(dataset, label, name, f"its folder {p.name!r} is a symbolic link on disk")
        if p.exists() and not p.is_dir():
            raise _reject(dataset, label, name, f"{p.relative_to(raw_root)} exists and is not a folder")
    dest = raw_root / key
    if dest.is_dir() and not dest.is_symlink():
        raise _reject(dataset, label, name, f"{key} exists and is a folder")


def _plan_members(
    reader: _Reader, key: str, strip: int, reserved: set[str], dataset: str
) -> tuple[list[Member], set[str]]:
    """Validate every entry and decide where it goes; returns file members and folders to create."""
    base = key.rpartition("/")[0]
    files: list[Member] = []
    dirs: set[str] = set()
    seen: dict[str, str] = {}
    for name, size, mtime, ref, is_dir in reader.members():
        clean = _clean_member_path(name)
        if clean is None:
            raise _reject(dataset, key, name, "absolute path, '..', drive letter or backslash")
        if clean == "":
            continue
        parts = clean.split("/")
        if len(parts) <= strip:
            continue
        rel = "/".join(parts[strip:])
        dest = f"{base}/{rel}" if base else rel
        if dest.split("/")[0] == ".climb":
            raise _reject(dataset, key, name, "would write into climb's own .climb folder")
        if is_dir:
            dirs.add(dest)
            continue
        if dest in seen:
            raise _reject(dataset, key, name, f"a second entry for {dest} (first: {seen[dest]!r})")
        if dest == key or dest in reserved:
            raise _reject(dataset, key, name, f"would overwrite {dest}, another file of the dataset")
        seen[dest] = name
        files.append(Member(name, dest, size, mtime, ref))
    file_keys = set(seen)
    for m in files:  # a file where another member needs a folder
        parts = m.key.split("/")
        for i in range(1, len(parts)):
            if "/".join(parts[:i]) in file_keys:
                raise _reject(dataset, key, m.name, f"needs {'/'.join(parts[:i])} as a folder, also a file")
    return files, dirs


@dataclass
class _Job:
    """One extraction: the archive, where its members go, and what to record."""

    archive: Path
    raw_root: Path
    key: str  # the archive, relative to raw_root
    sha256: str
    dataset: str
    source_id: str
    strip_components: int
    manifest: RawManifest | None
    known: dict[str, tuple[int, int, str]] | None

    def entry(self, mkey: str, row: list[Any], name: str) -> Entry:
        """The raw manifest row of an extracted member (its origin: `<archive>!/<member>`)."""
        now = time.time()
        return Entry(mkey, row[0], row[1], row[2], self.source_id, f"{self.key}!/{name}", "", now, now)


@dataclass
class _Prior:
    """What an earlier extraction of the same archive key left: its state, whether that state is of
    another version of the archive (`stale`), and the members still intact from it (`done`)."""

    state: State | None = None
    stale: bool = False
    done: dict[str, list[Any]] = field(default_factory=dict)
    finished: bool = False  # complete and every member intact: nothing to do


def _prior(job: _Job) -> _Prior:
    state = State.load(job.raw_root, job.key)
    if state is None:
        return _Prior()
    if state.archive_sha256 != job.sha256 or state.strip_components != job.strip_components:
        return _Prior(state, stale=True)  # another version of the archive: its members are replaced
    intact = state.intact(job.raw_root, job.known)
    # a member the journal lists was finished by a run that was killed before its manifest rows
    # were flushed: its size and mtime as recorded are enough
    unchecked = state.intact(job.raw_root) if state.journaled else {}
    intact.update({k: unchecked[k] for k in state.journaled})
    done = {k: v for k, v in state.members.items() if intact.get(k)}
    return _Prior(state, done=done, finished=state.complete and all(intact.values()))


def _checked_members(job: _Job, reader: _Reader, reserved: set[str]) -> tuple[list[Member], set[str]]:
    """Every member validated (paths, types, collisions, folders on disk) before any byte is written."""
    members, dirs = _plan_members(reader, job.key, job.strip_components, reserved, job.dataset)
    base = job.key.rpartition("/")[0]
    for m in members:
        _check_parents(job.raw_root, base, m.key, job.dataset, job.key, m.name)
    return members, dirs


def _check_space(job: _Job, todo: list[Member], reserve: int) -> None:
    """The declared bytes still to extract must fit on the disk, keeping `reserve` free (space.py's
    check, the one downloads use)."""
    need = sum(m.size for m in todo)
    line = space.shortfall(job.raw_root, need, reserve)
    if line:
        raise DiskFullError(f"{job.dataset}: archive {job.key} declares {need:,} bytes to extract: {line}")


def _drop_stale(job: _Job, stale: State, members: list[Member]) -> None:
    """Remove the members of an older version of the archive that the new one no longer has."""
    keep = {m.key for m in members}
    gone = [k for k in stale.members if k not in keep]
    for k in gone:
        with contextlib.suppress(OSError):
            (job.raw_root / k).unlink()
    if job.manifest is not None and gone:
        job.manifest.delete(gone)


def _record_journaled(job: _Job, state: State, new: State) -> None:
    """Manifest rows for members a killed run finished (journaled) but whose rows were not flushed."""
    if job.manifest is None:
        return
    for mkey in sorted(state.journaled & set(new.members)):
        row = new.members[mkey]
        if (job.known or {}).get(mkey) != tuple(row[:3]):
            job.manifest.put(job.entry(mkey, row, row[3]))
    job.manifest.flush()


def _extract_members(job: _Job, reader: _Reader, todo: list[Member], new: State) -> int:
    """Extract `todo` one by one, journaling each finished member at once and saving the state every
    few seconds (at most 1/_STATE_COST_FACTOR of the time); returns how many were written."""
    tmp_root = job.raw_root / ".climb" / "partial" / "extract"
    last_save, every = time.monotonic(), _STATE_EVERY_S
    with open(journal_path(job.raw_root, job.key), "w", encoding="utf-8") as log:
        log.write(json.dumps([job.sha256, job.strip_components]) + "\n")
        for m in todo:
            row = _extract_member(reader, m, job.raw_root, tmp_root, job.dataset, job.key)
            new.members[m.key] = row
            log.write(json.dumps([m.key, row]) + "\n")
            log.flush()  # in the OS's hands: survives a kill -9 of this process
            if job.manifest is not None:
                job.manifest.put(job.entry(m.key, row, m.name))
            if time.monotonic() - last_save > every:
                t0 = time.monotonic()
                new.save(job.raw_root)
                last_save = time.monotonic()
                every = max(_STATE_EVERY_S, _STATE_COST_FACTOR * (last_save - t0))
    return len(todo)


def extract(
    archive: Path,
    *,
    raw_root: Path,
    key: str,
    sha256: str,
    dataset: str,
    source_id: str,
    strip_components: int = 0,
    reserved: set[str] | None = None,
    manifest: RawManifest | None = None,
    known: dict[str, tuple[int, int, str]] | None = None,
    reserve: int = 0,
) -> Result:
    """Extract `archive` (at raw_root/key, already verified to have `sha256`) beside itself, keeping
    `reserve` bytes free on the disk (--min-free).

    Raises ArchiveError (one line) when the archive is rejected or unreadable, DiskFullError when its
    declared members do not fit; nothing is written then.
    """
    kind = archive_kind(key)
    if kind is None:
        raise ArchiveError(f"{dataset}: {key} is not an archive climb can extract ({KINDS_TEXT})")
    job = _Job(archive, raw_root, key, sha256, dataset, source_id, strip_components, manifest, known)
    prior = _prior(job)
    if prior.finished and prior.state is not None:
        members_done = dict(prior.state.members)
        return Result(key, intact=len(members_done), skipped=True, members=members_done)
    reader = _Reader(archive, kind, key, dataset)
    try:
        members, dirs = _checked_members(job, reader, reserved or set())
        todo = [m for m in members if not (m.key in prior.done and prior.done[m.key][0] == m.size)]
        _check_space(job, todo, reserve)
        new = State(key, sha256, strip_components, False, archive.stat().st_size)
        new.members = {m.key: prior.done[m.key] for m in members if m.key in prior.done}
        if prior.stale and prior.state is not None:
            _drop_stale(job, prior.state, members)
        if prior.state is not None:
            _record_journaled(job, prior.state, new)
        new.save(raw_root)
        for d in sorted(dirs):
            (raw_root / d).mkdir(parents=True, exist_ok=True)
        result = Result(key, intact=len(members) - len(todo))
        result.extracted = _extract_members(job, reader, todo, new)
        new.complete = True
        new.save(raw_root)
        journal_path(raw_root, key).unlink(missing_ok=True)
        result.members = dict(new.members)
        return result
    finally:
        reader.close()


def _extract_member(
    reader: _Reader, m: Member, raw_root: Path, tmp_root: Path, dataset: str, label: str
) -> list[Any]:
    """Stream one member to a temporary file, hashing it, then rename it into place."""
    tmp = tmp_root / (m.key + ".part")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    dest = raw_root / m.key
    h = hashlib.sha256()
    limit = m.ref if reader.kind == "gz" else m.size  # gz: the ratio cap; others: the declared size
    written = 0
    try:
        with reader.open(m.ref) as src, open(tmp, "wb") as out:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > limit:
                    raise _reject(
                        dataset,
                        label,
                        m.name,
                        f"expands beyond its declared size ({limit:,} bytes; zip bomb?)",
                    )
                h.update(chunk)
                out.write(chunk)
    except ArchiveError:
        tmp.unlink(missing_ok=True)
        raise
    except (zipfile.BadZipFile, tarfile.TarError, gzip.BadGzipFile, EOFError, zlib.error, OSError) as e:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{dataset}: archive {label}: member {m.name!r} is corrupt: {e}") from None
    if reader.kind == "tar" and written != m.size:
        tmp.unlink(missing_ok=True)
        raise ArchiveError(f"{dataset}: archive {label}: member {m.name!r} is truncated")
    if m.mtime is not None and m.mtime > 0:
        with contextlib.suppress(OSError, OverflowError, ValueError):
            os.utime(tmp, (m.mtime, m.mtime))
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_symlink():
        dest.unlink()
    os.replace(tmp, dest)
    st = dest.stat()
    return [written, st.st_mtime_ns, h.hexdigest(), m.name]


# ---------------------------------------------------------------------------------------------
# For acquire and verify


def source_key(source: Source, path: str) -> str:
    """A source file's key relative to the dataset's raw folder."""
    return f"{source.spec.into}/{path}" if source.spec.into else path


def nested_archives(source: Source, pol: Policy, res: Result, depth: int) -> list[str]:
    """Members of the archive just extracted (`res`) that are archives to extract in turn: with
    `extract: true` every zip/tar/rar/7z member (a single `.gz` member, often a data file read as is, only
    when a glob names it), with globs those the globs match (paths relative to the source folder). Nested
    archives are kept (they are members of their parent) and go at most NESTED_DEPTH levels deep."""
    if depth + 1 > NESTED_DEPTH:
        return []
    prefix = source.spec.into + "/" if source.spec.into else ""
    out = []
    for key in sorted(res.members):
        rel = key[len(prefix) :] if key.startswith(prefix) else key
        kind = archive_kind(rel)
        if kind is None or (pol.extract is True and kind == "gz"):
            continue
        if pol.wants(rel):
            out.append(key)
    return out


def removed_archive_state(
    source: Source, rf: RemoteFile, known: Mapping[str, tuple[int, int, str]] | None
) -> State | None:
    """The extraction state when `rf` is an archive that was extracted completely and then removed on
    purpose (keep_archive: false) and whose members are all intact: nothing to download."""
    pol = policy(source)
    if pol is None or pol.keep_archive or not pol.wants(rf.path):
        return None
    raw_root = source.settings.raw_dir(source.recipe.name)
    key = source_key(source, rf.path)
    if (raw_root / key).exists():
        return None
    state = State.load(raw_root, key)
    if state is None or not state.satisfied(raw_root, rf.sha256, known):
        return None
    return state


def expected_members(
    source: Source, files: list[RemoteFile]
) -> tuple[list[tuple[RemoteFile, RemoteFile]], set[str]]:
    """For verify: (member file, its archive) pairs from the recorded extractions of this source's
    archives (member paths relative to the source folder, with their recorded sha256), and the paths
    of archives that were removed on purpose after a complete extraction (not to be reported missing)."""
    pol = policy(source)
    if pol is None:
        return [], set()
    raw_root = source.settings.raw_dir(source.recipe.name)
    prefix = source.spec.into + "/" if source.spec.into else ""
    members: list[tuple[RemoteFile, RemoteFile]] = []
    removed: set[str] = set()
    for rf in files:
        if not pol.wants(rf.path):
            continue
        key = source_key(source, rf.path)
        state = State.load(raw_root, key)
        if state is None:
            continue
        stack, seen = [(key, state, 0)], {key}
        while stack:  # the archive's members, and those of archives nested in it
            akey, astate, depth = stack.pop()
            for mkey, (size, _mtime, digest, *rest) in sorted(astate.members.items()):
                name = rest[0] if rest else mkey
                members.append((RemoteFile(mkey[len(prefix) :], f"{akey}!/{name}", size, digest), rf))
                inner = State.load(raw_root, mkey) if depth < NESTED_DEPTH and archive_kind(mkey) else None
                if inner is not None and mkey not in seen:
                    seen.add(mkey)
                    stack.append((mkey, inner, depth + 1))
        if state.complete and not pol.keep_archive and not (raw_root / key).exists():
            removed.add(rf.path)
    return members, removed
