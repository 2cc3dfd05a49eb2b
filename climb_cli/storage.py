"""Object storage: a data dir given as a URL (s3://bucket/prefix, gs://..., hdfs://..., or any fsspec URL).

The layout under the URL is the local one: raw/<dataset>/..., processed/<dataset>/<recipe hash>/
{data/*.parquet, .commits/*.json, errors.parquet, manifest.json}.

Commit protocol without rename. An object store makes each PUT atomic (an object is absent or complete; a
multipart upload that never completes leaves no object) but has no rename, so every output is written
straight to its final key and its commit marker after it, last:
  shard:  data/<name>        then  .commits/<name>.json   (digest, rows, bytes, sha256 of the shard)
  run:    errors.parquet     then  manifest.json          (every shard with its sha256)
A reader takes a shard as committed only when its marker exists and the object has the marker's size and
sha256, and a run only through manifest.json. A writer killed between an object and its marker leaves an
object that no marker vouches for; the rerun writes it again (shards are deterministic: same bytes), so
reruns are idempotent. Removing a shard deletes its marker first, then the object.

What stays local: the raw manifest is SQLite (file locks, random writes) and steps read raw files by path,
so with a remote data dir climb works in a local cache dir keyed by the URL (CLIMB_CACHE, default
~/.cache/climb/remote/<bucket-prefix>-<sha8 of the URL>): downloads stream to a local .part and are renamed
as on a local disk (every local guarantee holds), then `push_raw` uploads the files under raw/<dataset>/ and,
last, one consistent copy of the manifest (an SQLite backup, one PUT) as raw/<dataset>/.climb/manifest.sqlite;
`pull_raw` brings them into an empty cache on another machine. Shards are written to a local scratch file
($TMPDIR) and uploaded, so a worker needs no shared disk.

S3 settings are the AWS SDK's: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN or a profile,
AWS_DEFAULT_REGION, and AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL for S3-compatible stores (MinIO, Ceph).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import sqlite3
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from climb_cli import atomic
from climb_cli.errors import UsageError
from climb_cli.lazy import lazy

if TYPE_CHECKING:
    import pyarrow.fs as pafs
else:  # imported on first use: every command reads settings (is_url, cache_dir), few touch a bucket
    pafs = lazy("pyarrow.fs")

CHUNK = 8 * 1024 * 1024


def is_url(value: object) -> bool:
    """True for a storage URL (scheme://...), False for a local path (including Windows C:\\...)."""
    return isinstance(value, str) and re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]+://", value) is not None


def cache_dir(url: str) -> Path:
    """The local working dir for a remote data dir: CLIMB_CACHE, else ~/.cache/climb/remote/<name>-<sha8>."""
    base = Path(os.environ.get("CLIMB_CACHE") or Path.home() / ".cache" / "climb" / "remote").expanduser()
    parts = urlsplit(url)
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", f"{parts.netloc}{parts.path}").strip("-")[:60]
    return base / f"{slug}-{hashlib.sha256(url.rstrip('/').encode()).hexdigest()[:8]}"


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


def filesystem(url: str) -> tuple[pafs.FileSystem, str]:
    """The pyarrow filesystem for a URL and the path inside it. s3:// uses pyarrow's S3 client; other
    schemes pyarrow knows (gs, hdfs, file) likewise; anything else goes through fsspec."""
    parts = urlsplit(url)
    if parts.scheme == "s3":
        # allow_delayed_open: an object smaller than one part goes up in one PutObject
        fs = pafs.S3FileSystem(
            endpoint_override=_endpoint(),
            region=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or None,
            allow_delayed_open=True,
        )
        return fs, f"{parts.netloc}{parts.path}".rstrip("/")
    try:
        fs, path = pafs.FileSystem.from_uri(url)
        return fs, path.rstrip("/")
    except (pafs.ArrowInvalid, ValueError, OSError):
        pass
    try:
        import fsspec
    except ImportError:
        raise UsageError(f"{url}: no filesystem for {parts.scheme}:// (install fsspec)") from None
    try:
        ffs, path = fsspec.core.url_to_fs(url)
    except (ValueError, ImportError) as e:
        raise UsageError(f"{url}: no filesystem for {parts.scheme}:// ({e})") from None
    return pafs.PyFileSystem(pafs.FSSpecHandler(ffs)), path.rstrip("/")


class Remote:
    """A folder on a (remote) filesystem, addressed by relative keys ("data/train-00000.parquet")."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.fs, self.root = filesystem(self.url)

    def __reduce__(self) -> tuple[type, tuple[str]]:  # pickles by URL (a worker opens its own client)
        return (Remote, (self.url,))

    def child(self, rel: str) -> Remote:
        return Remote(f"{self.url}/{rel.strip('/')}")

    def path(self, rel: str) -> str:
        return f"{self.root}/{rel.lstrip('/')}" if rel else self.root

    def where(self, rel: str) -> str:
        """The object's URL, for messages."""
        return f"{self.url}/{rel.lstrip('/')}"

    def size(self, rel: str) -> int | None:
        info = self.fs.get_file_info(self.path(rel))
        return info.size if info.type == pafs.FileType.File else None

    def read_bytes(self, rel: str) -> bytes | None:
        try:
            with self.fs.open_input_stream(self.path(rel)) as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write_bytes(self, rel: str, data: bytes) -> None:
        """One PUT: the object appears complete or not at all."""
        with self.fs.open_output_stream(self.path(rel)) as f:
            f.write(data)

    def upload(self, local: Path, rel: str) -> None:
        with open(local, "rb") as src, self.fs.open_output_stream(self.path(rel)) as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)

    def download(self, rel: str, local: Path) -> None:
        """Copy an object to a local file (atomic: never half a file under the final name)."""
        with self.fs.open_input_stream(self.path(rel)) as src, atomic.atomic_open(local, "wb") as dst:
            while chunk := src.read(CHUNK):
                dst.write(chunk)

    def sha256(self, rel: str) -> str:
        h = hashlib.sha256()
        with self.fs.open_input_stream(self.path(rel)) as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        return h.hexdigest()

    def delete(self, rel: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.path(rel))

    def files(self, rel: str = "", recursive: bool = False) -> dict[str, int]:
        """Files under a folder: relative key (to that folder) -> size."""
        base = self.path(rel)
        sel = pafs.FileSelector(base, allow_not_found=True, recursive=recursive)
        return {
            i.path[len(base) + 1 :]: i.size
            for i in self.fs.get_file_info(sel)
            if i.type == pafs.FileType.File
        }

    def open_input_file(self, rel: str) -> pafs.NativeFile:
        return self.fs.open_input_file(self.path(rel))


def scratch_dir() -> Path:
    """Local scratch for a shard on its way to object storage ($TMPDIR, a node's local disk on clusters)."""
    d = Path(tempfile.gettempdir()) / "climb-scratch"
    d.mkdir(parents=True, exist_ok=True)
    return d


MANIFEST_KEY = ".climb/manifest.sqlite"


def push_raw(raw_dir: Path, remote: Remote) -> tuple[int, int]:
    """Upload a dataset's raw files (those not already there with the same size), then, last, one
    consistent copy of its raw manifest. Returns (files uploaded, bytes uploaded)."""
    there = remote.files(recursive=True)
    sent = nbytes = 0
    for p in sorted(raw_dir.rglob("*")):
        rel = p.relative_to(raw_dir).as_posix()
        if not p.is_file() or rel.startswith(".climb/") or p.name.endswith(".part"):
            continue
        size = p.stat().st_size
        if there.get(rel) == size:
            continue
        remote.upload(p, rel)
        sent, nbytes = sent + 1, nbytes + size
    db = raw_dir / MANIFEST_KEY
    if db.is_file():
        with tempfile.TemporaryDirectory(dir=scratch_dir()) as tmp:
            snap = Path(tmp) / "manifest.sqlite"
            src, dst = sqlite3.connect(db), sqlite3.connect(snap)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            remote.upload(snap, MANIFEST_KEY)
    return sent, nbytes


def pull_raw(remote: Remote, raw_dir: Path) -> int:
    """Bring a dataset's raw files and manifest from object storage into the local cache (missing or
    different-size files only). Only a dataset whose manifest was uploaded (its push finished) is pulled."""
    objects = remote.files(recursive=True)
    if MANIFEST_KEY not in objects:
        return 0
    got = 0
    for rel, size in sorted(objects.items()):
        local = raw_dir / rel
        if rel != MANIFEST_KEY and local.is_file() and local.stat().st_size == size:
            continue
        remote.download(rel, local)
        got += 1
    return got
