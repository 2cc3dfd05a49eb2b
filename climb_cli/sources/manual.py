"""Manual sources: data only a person can obtain (Stanford AIMI, restricted TCIA collections, NSRR,
Temple TUH, BDSP, NDA, request forms). climb cannot download them; it says exactly what to get, from
where and into which folder, then checks what was placed.

Recipe fields (`kind: manual`):

    url: https://...                 where to request / download the data
    instructions: "..."              what to do there (which files to pick, which form to sign)
    files:                           explicit files, relative to raw/<name>/<into>/
      - {path: CheXpert-v1.0-small.zip, sha256: <hex>, size: 11500000000}
    globs:                           or sets of files, with how many are expected
      - {pattern: "images/**/*.dcm", count: 1200}
    extract / keep_archive / strip_components   as for any archive-delivering source (archives.py)

`climb download` reports "manual: N of M files placed" (an explicit file counts when present and, with a
sha256 (inline or pinned), matching; a glob counts up to its expected number of matches) and prints
the instructions; `climb verify` hashes what was placed against the sums; `climb auth check` says
which files are still missing. `open()` is never used by climb: it raises AccessError with the
instructions.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import requests
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from climb_cli import redaction
from climb_cli.archives import ArchiveOptions, State, policy
from climb_cli.errors import AccessError
from climb_cli.manifest import Entry
from climb_cli.sources.base import AccessReport, RemoteFile, Source, glob_match, safe_relpath
from climb_cli.transfer import _hash_file

if TYPE_CHECKING:
    from climb_cli.manifest import RawManifest
    from climb_cli.pins import Pins


class ManualFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(description="path relative to the source folder")
    sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")
    size: int | None = Field(None, ge=0)

    @field_validator("path")
    @classmethod
    def _safe(cls, v: str) -> str:
        clean = safe_relpath(v)
        if clean is None:
            raise ValueError("must be a relative path without '..'")
        return clean

    @field_validator("sha256")
    @classmethod
    def _lower(cls, v: str | None) -> str | None:
        return v.lower() if v else v


class ManualGlob(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    pattern: str = Field(description="glob relative to the source folder (** crosses folders)")
    count: int = Field(ge=1, description="how many matching files are expected")


class ManualParams(ArchiveOptions):
    url: str = Field("", description="where to request or download the data")
    instructions: str = Field("", description="what to get there")
    files: list[ManualFile] = Field(default_factory=list)
    globs: list[ManualGlob] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> ManualParams:
        if not self.files and not self.globs:
            raise ValueError("a manual source lists 'files' or 'globs' (what the person must place)")
        return self


@dataclass
class Placement:
    """What a person has placed for one manual source."""

    dataset: str
    source: str
    folder: Path
    url: str
    instructions: str
    expected: int = 0
    placed: int = 0
    missing: list[str] = field(default_factory=list)  # explicit files not there
    wrong: list[str] = field(default_factory=list)  # present but not matching their sha256 / size
    short: list[str] = field(default_factory=list)  # globs with fewer matches than expected
    ok_files: list[tuple[RemoteFile, str, int]] = field(default_factory=list)  # placed: (file, sha256, size)

    @property
    def complete(self) -> bool:
        return self.placed >= self.expected and not self.wrong

    def summary(self) -> str:
        return f"manual: {self.placed} of {self.expected} files placed"

    def lines(self) -> list[str]:
        """What to get, from where, into which folder."""
        out = [f"{self.dataset}: {self.summary()} in {self.folder}/"]
        if self.complete:
            return out
        if self.url:
            out.append(f"  from:  {redaction.redact_url(self.url)}")
        if self.instructions:
            out.append(f"  what:  {' '.join(self.instructions.split())}")
        for m in self.missing:
            out.append(f"  place: {m}")
        for w in self.wrong:
            out.append(f"  replace: {w}")
        for s in self.short:
            out.append(f"  place: {s}")
        out.append(f"  into:  {self.folder}/   then run `climb download {self.dataset}` again")
        return out


class ManualSource(Source):
    kind = "manual"
    Params = ManualParams
    params: ManualParams
    manual = True  # acquire.py checks placement instead of downloading

    def describe(self) -> str:
        return "manual" + (f" ({redaction.redact_url(self.params.url)})" if self.params.url else "")

    def _remote(self, f: ManualFile) -> RemoteFile:
        return RemoteFile(f.path, f"manual:{f.path}", f.size, f.sha256)

    def _archive_members(self) -> set[str]:
        """Paths (relative to the source folder) of members extracted from placed archives."""
        pol = policy(self)
        if pol is None:
            return set()
        raw_root = self.settings.raw_dir(self.recipe.name)
        prefix = self.spec.into + "/" if self.spec.into else ""
        out: set[str] = set()
        for f in self.params.files:
            if pol.wants(f.path):
                key = prefix + f.path
                state = State.load(raw_root, key)
                if state is not None:
                    out.update(k[len(prefix) :] for k in state.members)
        return out

    def _present(self) -> list[str]:
        """Every file under the source folder (relative), skipping .climb."""
        root = self.raw_dir
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root):
            rel = os.path.relpath(dirpath, root)
            if rel == "." and not self.spec.into:
                dirnames[:] = [d for d in dirnames if d != ".climb"]
            prefix = "" if rel == "." else rel.replace(os.sep, "/") + "/"
            out.extend(prefix + n for n in filenames)
        return sorted(out)

    def _glob_matches(self) -> dict[str, list[str]]:
        explicit = {f.path for f in self.params.files}
        present = [p for p in self._present() if p not in explicit]
        return {g.pattern: [p for p in present if glob_match(p, g.pattern)] for g in self.params.globs}

    def explicit_files(self) -> list[RemoteFile]:
        """The files the recipe names one by one (not the glob matches)."""
        return [self._remote(f) for f in self.params.files]

    # -- the Source interface ------------------------------------------------------------------
    def list_files(self) -> list[RemoteFile]:
        """The explicit files (with their sums), plus the glob matches present now."""
        files = [self._remote(f) for f in self.params.files]
        seen = {f.path for f in files}
        for matches in self._glob_matches().values():
            for p in matches:
                if p not in seen:
                    seen.add(p)
                    files.append(RemoteFile(p, f"manual:{p}"))
        return files

    def expected_files(self) -> list[RemoteFile] | None:
        return self.list_files()

    def upstream_paths(self) -> set[str] | None:
        return {f.path for f in self.list_files()} | self._archive_members()

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        raise AccessError(self.instructions_line(file.path))

    def instructions_line(self, path: str | None = None) -> str:
        where = f" from {redaction.redact_url(self.params.url)}" if self.params.url else ""
        what = f" {path}" if path else " the files"
        return (
            f"{self.recipe.name}: climb cannot download this data: get{what}{where} and place it in "
            f"{self.raw_dir}/ (`climb auth check {self.recipe.name}` lists what is missing)"
        )

    def shortfalls(self) -> list[str]:
        """Globs with fewer matches than expected (for verify's report)."""
        prefix = self.spec.into + "/" if self.spec.into else ""
        out = []
        counts = self._glob_matches()
        for g in self.params.globs:
            found = len(counts[g.pattern])
            if found < g.count:
                out.append(f"{prefix}{g.pattern} ({found} of {g.count} files placed)")
        return out

    def check_access(self) -> AccessReport:
        """Files present? (Presence only: sums are checked by download and verify.)"""
        p = self.count_globs(self.placement(None, None, hash_files=False))
        if p.complete:
            return AccessReport(self.recipe.name, self.spec.id, True, p.summary())
        todo = p.missing + p.short
        more = f" (+{len(todo) - 3} more)" if len(todo) > 3 else ""
        where = f" (get them at {redaction.redact_url(self.params.url)})" if self.params.url else ""
        return AccessReport(
            self.recipe.name,
            self.spec.id,
            False,
            p.summary(),
            f"place {', '.join(todo[:3])}{more} in {self.raw_dir}/{where}",
        )

    # -- placement -----------------------------------------------------------------------------
    def placement(
        self,
        manifest: RawManifest | None,
        pins: Pins | None,
        *,
        hash_files: bool = True,
        known: Mapping[str, tuple[int, int, str]] | None = None,
    ) -> Placement:
        """Count what was placed; with `hash_files`, check each explicit file against its sha256
        (inline or pinned) and size, recording good ones in the manifest (a file whose size and mtime
        match its manifest row is not hashed again)."""
        raw_root = self.settings.raw_dir(self.recipe.name)
        prefix = self.spec.into + "/" if self.spec.into else ""
        files = [self._remote(f) for f in self.params.files]
        if pins is not None:
            files = pins.apply(self, files)
        pol = policy(self)
        p = Placement(
            self.recipe.name,
            self.spec.id,
            self.raw_dir,
            self.params.url,
            self.params.instructions,
            expected=len(files) + sum(g.count for g in self.params.globs),
        )
        for rf in files:
            key = prefix + rf.path
            path = raw_root / key
            try:
                st = path.stat()
            except OSError:
                st = None
            if st is None:
                # an archive extracted completely and removed on purpose still counts as placed
                state = State.load(raw_root, key) if (pol and not pol.keep_archive) else None
                if state is not None and state.satisfied(raw_root, rf.sha256):
                    p.placed += 1
                    continue
                p.missing.append(rf.path + (f" (sha256 {rf.sha256})" if rf.sha256 else ""))
                continue
            if rf.size is not None and st.st_size != rf.size:
                p.wrong.append(f"{rf.path}: {st.st_size:,} bytes, expected {rf.size:,}")
                continue
            if not hash_files:
                p.placed += 1
                continue
            problem = self._check_placed(rf, key, st, manifest, pins, known, p)
            if problem:
                p.wrong.append(problem)
            else:
                p.placed += 1
        if hash_files and pins is not None and pins.enabled:  # glob matches get pinned at first sight
            explicit = {rf.path for rf in files}
            for name in sorted({m for ms in self._glob_matches().values() for m in ms} - explicit):
                (rf,) = pins.apply(self, [RemoteFile(name, f"manual:{name}")])
                st = (raw_root / (prefix + name)).stat()
                problem = self._check_placed(rf, prefix + name, st, manifest, pins, known, p)
                if problem:
                    p.wrong.append(problem)
        return p

    def _check_placed(
        self,
        rf: RemoteFile,
        key: str,
        st: os.stat_result,
        manifest: RawManifest | None,
        pins: Pins | None,
        known: Mapping[str, tuple[int, int, str]] | None,
        p: Placement,
    ) -> str:
        """Hash a placed file (unless its manifest row vouches for it); '' if it matches its sum."""
        raw_root = self.settings.raw_dir(self.recipe.name)
        row = known.get(key) if known is not None else None
        if row and row[:2] == (st.st_size, st.st_mtime_ns) and rf.sha256 in (None, row[2]):
            digest = row[2]
        else:
            digest = _hash_file(raw_root / key, "sha256")["sha256"]
        if rf.sha256 and digest != rf.sha256:
            pin = pins.pinned_by(self, rf) if pins is not None else None
            origin = f" (pinned in {pin.origin})" if pin else ""
            return f"{rf.path}: sha256 {digest}, expected {rf.sha256}{origin}"
        p.ok_files.append((rf, digest, st.st_size))
        if manifest is not None:
            now = time.time()
            manifest.put(Entry(key, st.st_size, st.st_mtime_ns, digest, self.spec.id, rf.url, "", now, now))
        return ""

    def count_globs(self, p: Placement) -> Placement:
        """Add the glob counts to a placement (after any extraction, which may have produced them)."""
        counts = self._glob_matches()
        for g in self.params.globs:
            found = len(counts[g.pattern])
            p.placed += min(found, g.count)
            if found < g.count:
                prefix = self.spec.into + "/" if self.spec.into else ""
                p.short.append(f"{prefix}{g.pattern}: {found} of {g.count} files")
        return p


__all__ = ["ManualFile", "ManualGlob", "ManualParams", "ManualSource", "Placement"]
