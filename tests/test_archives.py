"""Archive extraction: formats, hostile members rejected, bombs capped, atomic and resumable, and the
extract step of a real download (over sockets) with keep_archive, verify and repair."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests

from climb_cli import archives, space
from climb_cli.acquire import download, repair
from climb_cli.archives import ArchiveError, ArchiveOptions, State, extract, state_path
from climb_cli.catalog import Catalog
from climb_cli.errors import DiskFullError
from climb_cli.fakes.faults import BaseFakeHandler, FakeHTTPServer, serve_bytes
from climb_cli.manifest import RawManifest
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings
from climb_cli.sources.base import RemoteFile, Source
from climb_cli.verify import verify_raw
from tests.conftest import small_filesystem, write_recipe

MEMBERS = {
    "data/a.csv": b"id,label\n1,x\n2,y\n",
    "data/sub/b.bin": os.urandom(200_000),
    "README.txt": b"hello\n",
}


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def make_zip(path: Path, members: dict[str, bytes] = MEMBERS) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("data/", b"")  # a folder entry
        for name, data in members.items():
            z.writestr(name, data)
    return path


def make_tar(path: Path, members: dict[str, bytes] = MEMBERS, mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as t:
        for name, data in members.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_600_000_000
            t.addfile(ti, io.BytesIO(data))
    return path


def run_extract(archive: Path, raw: Path, **kw: object) -> archives.Result:
    key = archive.relative_to(raw).as_posix()
    digest = sha(archive.read_bytes())
    with RawManifest.for_dataset(raw) as m:
        return extract(
            archive, raw_root=raw, key=key, sha256=digest, dataset="toy", source_id="data", manifest=m, **kw
        )  # type: ignore[arg-type]


def files_under(root: Path) -> set[str]:
    return {
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.is_file() and ".climb" not in p.relative_to(root).parts
    }


@pytest.mark.parametrize("kind", ["zip", "tar", "tar.gz", "tgz", "tar.xz"])
def test_formats_extract_beside_the_archive_with_sums_recorded(tmp_path: Path, kind: str) -> None:
    raw = tmp_path / "raw"
    (raw / "dl").mkdir(parents=True)
    archive = raw / "dl" / f"set.{kind}"
    if kind == "zip":
        make_zip(archive)
    else:
        make_tar(archive, mode={"tar": "w", "tar.gz": "w:gz", "tgz": "w:gz", "tar.xz": "w:xz"}[kind])
    res = run_extract(archive, raw)
    assert res.extracted == 3 and not res.skipped
    for name, data in MEMBERS.items():
        assert (raw / "dl" / name).read_bytes() == data
    with RawManifest.for_dataset(raw) as m:
        rows = m.load()
    assert {k: r.sha256 for k, r in rows.items()} == {f"dl/{n}": sha(d) for n, d in MEMBERS.items()}
    assert all(r.url.startswith(f"dl/set.{kind}!/") for r in rows.values())
    state = State.load(raw, f"dl/set.{kind}")
    assert state is not None and state.complete and state.archive_sha256 == sha(archive.read_bytes())
    assert state_path(raw, f"dl/set.{kind}").name == f"extracted-dl%2Fset.{kind}.json"
    assert not list((raw / ".climb" / "partial").rglob("*.part"))  # temporaries renamed away
    again = run_extract(archive, raw)
    assert again.skipped and again.extracted == 0 and again.intact == 3


def test_single_gz_file(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    body = b"col\n" + b"1\n" * 50_000
    (raw / "table.csv.gz").write_bytes(gzip.compress(body))
    res = run_extract(raw / "table.csv.gz", raw)
    assert res.extracted == 1 and (raw / "table.csv").read_bytes() == body


def _tar_with(member: tarfile.TarInfo, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        ok = tarfile.TarInfo("fine.txt")
        ok.size = 2
        t.addfile(ok, io.BytesIO(b"ok"))
        t.addfile(member, io.BytesIO(data) if data else None)
    return buf.getvalue()


def _tarinfo(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.size, ti.linkname = kind, size, link
    return ti


@pytest.mark.parametrize(
    ("member", "data", "why"),
    [
        (_tarinfo("/etc/evil"), b"", "absolute path, '..'"),
        (_tarinfo("../../evil", size=4), b"evil", "absolute path, '..'"),
        (_tarinfo("ok/../../evil", size=4), b"evil", "absolute path, '..'"),
        (_tarinfo("link", tarfile.SYMTYPE, link="/etc/passwd"), b"", "symbolic link"),
        (_tarinfo("hard", tarfile.LNKTYPE, link="fine.txt"), b"", "hard link"),
        (_tarinfo("dev", tarfile.CHRTYPE), b"", "device or FIFO"),
        (_tarinfo("fifo", tarfile.FIFOTYPE), b"", "device or FIFO"),
        (_tarinfo("C:evil", size=4), b"evil", "drive letter"),
        (_tarinfo(".climb/manifest.sqlite", size=4), b"evil", "climb's own .climb folder"),
    ],
    ids=[
        "absolute",
        "dotdot",
        "inner-dotdot",
        "symlink",
        "hardlink",
        "chardev",
        "fifo",
        "drive",
        "dot-climb",
    ],
)
def test_hostile_tar_members_reject_the_archive_in_one_line(
    tmp_path: Path, member: tarfile.TarInfo, data: bytes, why: str
) -> None:
    raw = tmp_path / "d" / "raw"
    raw.mkdir(parents=True)
    (raw / "x.tar").write_bytes(_tar_with(member, data))
    with pytest.raises(ArchiveError) as e:
        run_extract(raw / "x.tar", raw)
    msg = str(e.value)
    assert msg.startswith(f"toy: archive x.tar: member {member.name!r} rejected: ") and why in msg
    assert "\n" not in msg
    assert files_under(tmp_path) == {"d/raw/x.tar"}  # nothing extracted, not even the harmless member
    assert not (tmp_path / "evil").exists()


def _zip_bytes(entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for info, data in entries:
            z.writestr(info, data)
    return buf.getvalue()


def _symlink_info(name: str) -> zipfile.ZipInfo:
    zi = zipfile.ZipInfo(name)
    zi.create_system = 3
    zi.external_attr = (stat.S_IFLNK | 0o777) << 16
    return zi


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        ("../evil.txt", "absolute path, '..'"),
        ("/abs/evil.txt", "absolute path, '..'"),
        ("dir\\..\\..\\evil.txt", "backslash"),
        (_symlink_info("link"), "symbolic link"),
    ],
    ids=["zip-slip", "absolute", "backslash", "symlink"],
)
def test_hostile_zip_members(tmp_path: Path, entry: zipfile.ZipInfo | str, why: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "x.zip").write_bytes(_zip_bytes([("fine.txt", b"ok"), (entry, b"/etc/passwd")]))
    with pytest.raises(ArchiveError, match=r"^toy: archive x\.zip: member '.*' rejected: ") as e:
        run_extract(raw / "x.zip", raw)
    assert why in str(e.value)
    assert files_under(tmp_path) == {"raw/x.zip"}


def test_overlapping_zip_entries_are_a_bomb(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    data = bytearray(_zip_bytes([("a.txt", b"A" * 1000), ("b.txt", b"B" * 1000)]))
    central = [i for i in range(len(data)) if data[i : i + 4] == b"PK\x01\x02"]
    data[central[1] + 42 : central[1] + 46] = (0).to_bytes(4, "little")  # b's header offset -> a's
    (raw / "x.zip").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="overlaps another entry"):
        run_extract(raw / "x.zip", raw)


def test_member_larger_than_declared_never_lands(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    data = bytearray(_zip_bytes([("big.txt", b"Z" * 100_000)]))
    # shrink the declared size in the central directory (offset 24: uncompressed size)
    c = data.index(b"PK\x01\x02")
    data[c + 24 : c + 28] = (10).to_bytes(4, "little")
    (raw / "x.zip").write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match=r"^toy: archive x\.zip: member 'big.txt' (is corrupt|rejected)"):
        run_extract(raw / "x.zip", raw)
    assert not (raw / "big.txt").exists()


def test_declared_total_must_fit_on_disk(tmp_path: Path) -> None:
    """A real small disk (tmpfs): the members' declared 200 kB do not fit; nothing is extracted."""
    with small_filesystem(tmp_path / "disk", "256k") as raw:
        make_zip(raw / "x.zip")
        with pytest.raises(
            DiskFullError, match=r"^toy: archive x\.zip declares 200,\d+ bytes to extract: no space left"
        ):
            run_extract(raw / "x.zip", raw)
        assert files_under(raw) == {"x.zip"}


def test_extraction_keeps_the_reserve(tmp_path: Path) -> None:
    """The one free-space check (space.shortfall): members that fit on the disk but would eat into the
    reserve (--min-free) are refused, with the line downloads give."""
    with small_filesystem(tmp_path / "disk", "4m") as raw:
        make_zip(raw / "x.zip")
        reserve = space.free_bytes(raw) - 100_000
        with pytest.raises(DiskFullError, match=r"declares 200,\d+ bytes to extract: .* --min-free keeps"):
            run_extract(raw / "x.zip", raw, reserve=reserve)
        assert files_under(raw) == {"x.zip"}
        assert run_extract(raw / "x.zip", raw, reserve=0).extracted == 3


def test_download_extracts_only_what_leaves_min_free(tmp_path: Path) -> None:
    """A download's extraction keeps the run's --min-free like its transfers: the archive (2 kB of
    compressed zeros) fits, its 1.8 MB member would leave less than the reserve on a 3 MB disk."""
    buf = io.BytesIO()
    make_zip(buf, {"zeros.bin": bytes(1_800_000)})  # type: ignore[arg-type]
    with (
        small_filesystem(tmp_path / "disk", "3m") as disk,
        _Server({"set.zip": buf.getvalue(), "notes.txt": b"n"}) as srv,
    ):
        settings = _settings(disk).with_(min_free=1_500_000)
        report = download(_recipe(tmp_path, srv.base_url), settings)
        raw = settings.raw_dir("toyzip")
        assert (raw / "dl" / "set.zip").is_file() and not (raw / "dl" / "zeros.bin").exists()
        assert not report.ok and "declares 1,800,000 bytes to extract: no space left" in report.why, (
            report.why
        )


def test_gz_expansion_beyond_the_deflate_ratio_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "zeros.bin.gz").write_bytes(gzip.compress(b"\0" * 2_000_000))
    monkeypatch.setattr(archives, "GZIP_MAX_RATIO", 50)  # real deflate tops out at 1032:1
    with pytest.raises(ArchiveError, match="expands beyond its declared size"):
        run_extract(raw / "zeros.bin.gz", raw)
    assert not (raw / "zeros.bin").exists()


def test_member_under_a_symlinked_folder_is_rejected(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (raw / "data").symlink_to(outside)  # planted earlier
    make_zip(raw / "x.zip")
    with pytest.raises(ArchiveError, match="its folder 'data' is a symbolic link on disk"):
        run_extract(raw / "x.zip", raw)
    assert not list(outside.iterdir())


def test_member_may_not_overwrite_another_file_of_the_dataset(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    make_zip(raw / "x.zip")
    with pytest.raises(ArchiveError, match="'README.txt' rejected: would overwrite README.txt"):
        run_extract(raw / "x.zip", raw, reserved={"README.txt"})


def test_crash_mid_extraction_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    make_tar(raw / "x.tar.gz")
    real = archives._extract_member
    calls = {"n": 0}

    def dying(*a: object, **kw: object) -> list:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the process is killed while writing the third member
        return real(*a, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(archives, "_extract_member", dying)
    monkeypatch.setattr(archives, "_STATE_EVERY_S", 0.0)  # save the state after every member
    monkeypatch.setattr(archives, "_STATE_COST_FACTOR", 0)
    with pytest.raises(KeyboardInterrupt):
        run_extract(raw / "x.tar.gz", raw)
    state = State.load(raw, "x.tar.gz")
    assert state is not None and not state.complete and len(state.members) == 2
    monkeypatch.setattr(archives, "_extract_member", real)
    res = run_extract(raw / "x.tar.gz", raw)
    assert (res.extracted, res.intact) == (1, 2)
    assert all((raw / n).read_bytes() == d for n, d in MEMBERS.items())


def test_damaged_member_is_re_extracted_alone_and_a_new_archive_replaces_old_members(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    make_zip(raw / "x.zip")
    run_extract(raw / "x.zip", raw)
    (raw / "data" / "a.csv").unlink()
    res = run_extract(raw / "x.zip", raw)
    assert (res.extracted, res.intact) == (1, 2) and (raw / "data" / "a.csv").read_bytes() == MEMBERS[
        "data/a.csv"
    ]
    # upstream publishes a new archive without README.txt: the old member goes away with it
    make_zip(raw / "x.zip", {"data/a.csv": b"new\n"})
    res = run_extract(raw / "x.zip", raw)
    assert res.extracted == 1 and (raw / "data" / "a.csv").read_bytes() == b"new\n"
    assert not (raw / "README.txt").exists() and not (raw / "data" / "sub" / "b.bin").exists()


def test_strip_components(tmp_path: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    make_tar(raw / "repo.tar.gz", {"repo-abc123/src/x.py": b"x = 1\n", "repo-abc123/README": b"r"})
    run_extract(raw / "repo.tar.gz", raw, strip_components=1)
    assert files_under(raw) == {"repo.tar.gz", "src/x.py", "README"}


def test_archive_kinds() -> None:
    kinds = {
        n: archives.archive_kind(n) for n in ["a.ZIP", "a.tgz", "a.tar.bz2", "a.csv.gz", "a.csv", "a.7z"]
    }
    assert kinds == {
        "a.ZIP": "zip",
        "a.tgz": "tar",
        "a.tar.bz2": "tar",
        "a.csv.gz": "gz",
        "a.csv": None,
        "a.7z": "7z",
    }


# ---------------------------------------------------------------------------------------------
# The extract step of a download, over real sockets (a test-only source kind serving files)


class _Files(ArchiveOptions):
    base: str
    names: list[str]


class _FilesSource(Source):
    """Files at <base>/<name>; no upstream sums (the recipe pins them)."""

    kind = "test-archive-files"
    Params = _Files
    params: _Files

    def list_files(self) -> list[RemoteFile]:
        return [RemoteFile(n, f"{self.params.base}/{n}") for n in self.params.names]

    def expected_files(self) -> list[RemoteFile] | None:
        return self.list_files()

    def open(self, file: RemoteFile, headers: dict[str, str]) -> requests.Response:
        return self.session().get(file.url, headers=headers, stream=True, timeout=self.timeout)


class _Handler(BaseFakeHandler):
    def route(self) -> None:
        name = self.url_path.lstrip("/")
        blob = self.fake.blobs.get(name)
        if blob is None:
            self.respond(404, b"no")
            return
        serve_bytes(
            self,
            blob,
            content_type="application/octet-stream",
            mtime=1_600_000_000,
            fault=self.fake.faults.take(self.url_path),
        )


class _Server(FakeHTTPServer):
    handler_class = _Handler

    def __init__(self, blobs: dict[str, bytes]) -> None:
        super().__init__()
        self.blobs = blobs


@pytest.fixture
def zip_server() -> object:
    buf = io.BytesIO()
    make_zip(buf)  # type: ignore[arg-type]
    with _Server({"set.zip": buf.getvalue(), "notes.txt": b"n"}) as srv:
        yield srv


def _settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", retries=3, backoff=0.01, backoff_max=0.05, read_timeout=2.0)


def _recipe(tmp_path: Path, base: str, extra: str = "", checksums: str = "upstream") -> Recipe:
    src = (
        f"  - kind: test-archive-files\n    into: dl\n    base: {base}\n    names: [set.zip, notes.txt]\n"
        f"    extract: true\n{extra}"
    )
    path = write_recipe(tmp_path / "recipes", "toyzip", src)
    path.write_text(path.read_text().replace("checksums: upstream", f"checksums: {checksums}"))
    return Catalog([path.parent]).load("toyzip")


def test_download_extracts_once_and_verify_expects_the_members(tmp_path: Path, zip_server: _Server) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path, zip_server.base_url)
    zip_server.faults.add("short", path_glob="/set.zip", after_bytes=50_000)  # a clean close mid-body
    report = download(recipe, settings)
    assert report.ok, report.why
    raw = settings.raw_dir("toyzip")
    for name, data in MEMBERS.items():
        assert (raw / "dl" / name).read_bytes() == data
    assert (raw / "dl" / "set.zip").read_bytes() == zip_server.blobs["set.zip"]
    assert [r.fault for r in zip_server.requests_for("/set.zip")] == ["short", None]
    assert sum(x.extracted for x in report.extracted) == 3
    rep, bad = verify_raw(recipe, settings)
    assert rep.ok and rep.checked == 5 and not rep.unexpected, rep.as_dict()
    again = download(recipe, settings)
    assert again.ok and again.count("skipped") == 2 and all(x.skipped for x in again.extracted)
    # a corrupted member: verify says so, repair re-extracts it from the kept archive (no download)
    (raw / "dl" / "data" / "a.csv").write_bytes(b"tampered")
    rep, bad = verify_raw(recipe, settings)
    assert rep.corrupt == ["dl/data/a.csv"] and [rf.path for _, rf in bad] == ["set.zip"]
    before = len(zip_server.log)
    outs = repair(recipe, settings, bad)
    assert all(o.status != "failed" for o in outs) and len(zip_server.log) == before
    assert (raw / "dl" / "data" / "a.csv").read_bytes() == MEMBERS["data/a.csv"]
    assert verify_raw(recipe, settings)[0].ok


def test_keep_archive_false_removes_it_and_reruns_do_not_download_it_again(
    tmp_path: Path, zip_server: _Server
) -> None:
    settings = _settings(tmp_path)
    recipe = _recipe(tmp_path, zip_server.base_url, "    keep_archive: false\n")
    assert download(recipe, settings).ok
    raw = settings.raw_dir("toyzip")
    assert not (raw / "dl" / "set.zip").exists() and (raw / "dl" / "README.txt").is_file()
    n = len(zip_server.requests_for("/set.zip"))
    again = download(recipe, settings)
    assert again.ok and len(zip_server.requests_for("/set.zip")) == n
    rep, _ = verify_raw(recipe, settings)
    assert rep.ok and not rep.missing, rep.as_dict()  # the removed archive is not "missing"
    # a lost member brings the archive back (download, extract, remove again)
    (raw / "dl" / "data" / "sub" / "b.bin").unlink()
    assert download(recipe, settings).ok
    assert (raw / "dl" / "data" / "sub" / "b.bin").read_bytes() == MEMBERS["data/sub/b.bin"]
    assert len(zip_server.requests_for("/set.zip")) == n + 1 and not (raw / "dl" / "set.zip").exists()


def test_a_rejected_archive_is_one_failure_line_and_nothing_lands(tmp_path: Path) -> None:
    evil = _zip_bytes([("ok.txt", b"ok"), ("../../escape.txt", b"x")])
    with _Server({"set.zip": evil, "notes.txt": b"n"}) as srv:
        settings = _settings(tmp_path)
        report = download(_recipe(tmp_path, srv.base_url), settings)
    assert not report.ok and report.category == "failed"
    assert report.why == (
        "toyzip: archive dl/set.zip: member '../../escape.txt' rejected: "
        "absolute path, '..', drive letter or backslash"
    )
    assert not (tmp_path / "data" / "raw" / "escape.txt").exists()
    assert not (settings.raw_dir("toyzip") / "dl" / "ok.txt").exists()


def test_kill_9_mid_extraction_redoes_only_unfinished_members(tmp_path: Path) -> None:
    """400 members; the extracting process is killed with SIGKILL part-way (before its state file's
    first save): the rerun extracts only the members that were not finished (was: all 400)."""
    import signal
    import subprocess
    import sys
    import time

    raw = tmp_path / "raw"
    raw.mkdir()
    rnd = __import__("random").Random(7)
    members = {f"m/{i:03d}.bin": rnd.randbytes(64 * 1024) for i in range(400)}
    with zipfile.ZipFile(raw / "x.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, data in members.items():
            z.writestr(name, data)
    code = (
        "import sys, time; from pathlib import Path; from climb_cli import archives\n"
        "from tests.test_archives import run_extract\n"
        "orig = archives._extract_member\n"
        "def slow(*a, **k):\n"
        "    time.sleep(0.002)\n"
        "    return orig(*a, **k)\n"
        "archives._extract_member = slow\n"
        f"run_extract(Path({str(raw / 'x.zip')!r}), Path({str(raw)!r}))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((raw / "m").glob("*.bin"))) < 100:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(list((raw / "m").glob("*.bin")))
    assert 100 <= finished < 400, "the kill should land mid-extraction"
    res = run_extract(raw / "x.zip", raw)
    assert res.extracted <= 400 - finished + 1  # at most the member in flight is redone as well
    assert res.extracted + res.intact == 400
    assert all((raw / n).read_bytes() == d for n, d in members.items())
    with RawManifest.for_dataset(raw) as m:
        rows = m.load_index()
    assert all(rows[n][2] == sha(d) for n, d in members.items())  # every member has its manifest row
    again = run_extract(raw / "x.zip", raw)
    assert again.skipped and again.extracted == 0


def test_a_long_archive_path_gets_a_state_file_name_the_filesystem_takes(tmp_path: Path) -> None:
    """TCIA with series_folders: patient/study/series/series.zip, three 64-character UIDs."""
    from climb_cli.archives import journal_path, state_path

    uid = "1.3.6.1.4.1.14519.5.2.1.6279.6001." + "1" * 30
    long_key, other = f"LIDC-IDRI-0001/{uid}0/{uid}1/{uid}1.zip", f"LIDC-IDRI-0001/{uid}0/{uid}2/{uid}2.zip"
    for key in (long_key, other):
        for path in (state_path(tmp_path, key), journal_path(tmp_path, key)):
            assert len(path.name) <= 255
            path.parent.mkdir(exist_ok=True)
            path.write_text("{}")  # the filesystem takes the name
    assert state_path(tmp_path, long_key) != state_path(tmp_path, other)
    assert state_path(tmp_path, "a/b.zip").name == "extracted-a%2Fb.zip.json"  # short keys as before
