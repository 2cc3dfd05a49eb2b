"""RAR and 7z archives (climb_cli.archive_formats), nested archives, and extract globs naming a kind climb
cannot open. RAR archives are written byte by byte (tests/rar4.py: stored members; nothing in Debian main
creates RAR), and checked against an independent reader (`lsar` from unar) when it is installed; 7z archives
are written by py7zr."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from climb_cli.acquire import download
from climb_cli.archives import ArchiveError, State, archive_kind
from climb_cli.catalog import Catalog
from climb_cli.errors import RecipeError
from climb_cli.manifest import RawManifest
from climb_cli.verify import verify_raw
from tests import rar4
from tests.conftest import write_recipe
from tests.test_archives import MEMBERS, _Server, _settings, files_under, run_extract, sha


def _rar(path: Path, members: dict[str, bytes] = MEMBERS) -> Path:
    path.write_bytes(rar4.archive([rar4.member(n, d) for n, d in members.items()]))
    return path


def _rar5(path: Path, members: dict[str, bytes] = MEMBERS) -> Path:
    path.write_bytes(rar4.archive5([rar4.member5(n, d) for n, d in members.items()]))
    return path


def _7z(path: Path, members: dict[str, bytes] = MEMBERS) -> Path:
    with py7zr.SevenZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(data, name)
    return path


def test_kinds() -> None:
    assert [archive_kind(n) for n in ("a.RAR", "s01.rar", "a.7z", "a.part1.rar", "a.zst")] == [
        "rar", "rar", "7z", "rar", None,
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["rar", "rar5", "7z"])
def test_rar_and_7z_extract_beside_the_archive(tmp_path: Path, kind: str) -> None:
    raw = tmp_path / "raw"
    (raw / "dl").mkdir(parents=True)
    make = {"rar": _rar, "rar5": _rar5, "7z": _7z}[kind]
    archive = make(raw / "dl" / f"subject1.{kind.removesuffix('5')}")
    res = run_extract(archive, raw)
    assert res.extracted == 3 and not res.skipped
    for name, data in MEMBERS.items():
        assert (raw / "dl" / name).read_bytes() == data
    with RawManifest.for_dataset(raw) as m:
        rows = m.load()
    assert {k: r.sha256 for k, r in rows.items()} == {f"dl/{n}": sha(d) for n, d in MEMBERS.items()}
    assert not list((raw / ".climb" / "partial").rglob("*.part"))
    assert run_extract(archive, raw).skipped
    # a damaged member is extracted again, alone
    (raw / "dl" / "README.txt").write_bytes(b"tampered")
    again = run_extract(archive, raw)
    assert again.extracted == 1 and (raw / "dl" / "README.txt").read_bytes() == MEMBERS["README.txt"]


@pytest.mark.skipif(shutil.which("lsar") is None, reason="lsar (Debian unar) not installed")
@pytest.mark.parametrize("make", [_rar, _rar5])
def test_generated_rar_is_read_alike_by_an_independent_reader(tmp_path: Path, make: object) -> None:
    archive = make(tmp_path / "x.rar")  # type: ignore[operator]
    out = subprocess.run(["lsar", str(archive)], capture_output=True, text=True, check=True).stdout
    assert "RAR" in out.splitlines()[0]
    assert {line.strip() for line in out.splitlines()[1:]} == set(MEMBERS)
    dest = tmp_path / "unar"
    subprocess.run(["unar", "-q", "-D", "-o", str(dest), str(archive)], check=True, capture_output=True)
    for name, data in MEMBERS.items():
        assert (dest / name).read_bytes() == data


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (rar4.member("ok/../../escape.txt", b"x"), "absolute path, '..', drive letter or backslash"),
        (rar4.member("/etc/passwd", b"x"), "absolute path, '..', drive letter or backslash"),
        (rar4.member("link", b"/etc/passwd", mode=0o120777), "symbolic link"),
        (rar4.member("secret.bin", b"x", flags=rar4.FLAG_PASSWORD), "encrypted"),
        (rar4.member("fifo", b"", mode=0o010644), "device, FIFO or socket"),
    ],
)
def test_hostile_rar_members_reject_the_whole_archive(tmp_path: Path, member: bytes, why: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = raw / "evil.rar"
    archive.write_bytes(rar4.archive([rar4.member("ok.txt", b"fine"), member]))
    with pytest.raises(ArchiveError) as e:
        run_extract(archive, raw)
    assert str(e.value).startswith("toy: archive evil.rar: member ") and str(e.value).endswith(why)
    assert files_under(raw) == {"evil.rar"}


@pytest.mark.parametrize(
    ("redirect", "why"),
    [
        ((rar4.REDIR_UNIX_SYMLINK, "/etc/passwd"), "symbolic link"),
        ((rar4.REDIR_HARDLINK, "ok.txt"), "hard link"),
        ((rar4.REDIR_COPY, "ok.txt"), "file copy (a link to another member)"),
    ],
)
def test_rar5_redirects_reject_the_whole_archive(tmp_path: Path, redirect: tuple[int, str], why: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = raw / "evil.rar"
    bad = rar4.member5("link", b"", mode=0o120777 if redirect[0] == 1 else 0o100644, redirect=redirect)
    archive.write_bytes(rar4.archive5([rar4.member5("ok.txt", b"fine"), bad]))
    with pytest.raises(
        ArchiveError, match=rf"^toy: archive evil.rar: member 'link' rejected: {re.escape(why)}$"
    ):
        run_extract(archive, raw)
    assert files_under(raw) == {"evil.rar"}


def test_rar_member_larger_than_declared_never_lands(tmp_path: Path) -> None:
    """The header declares 10 bytes, the member holds 100 000: reading stops at 10 and the CRC fails."""
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = raw / "bomb.rar"
    archive.write_bytes(rar4.archive([rar4.member("bomb.bin", b"A" * 100_000, declared=10)]))
    with pytest.raises(ArchiveError, match=r"^toy: archive bomb.rar: member 'bomb.bin' is corrupt: .*CRC"):
        run_extract(archive, raw)
    assert files_under(raw) == {"bomb.rar"} and not list(raw.rglob("*.part"))


@pytest.mark.skipif(shutil.which("7zz") is None, reason="7zz (Debian 7zip) not installed")
@pytest.mark.parametrize("how", ["absolute", "dotdot"])
def test_7z_member_outside_the_folder_is_rejected(tmp_path: Path, how: str) -> None:
    """py7zr refuses to write such names; 7-Zip stores them with -spf (full paths)."""
    work = tmp_path / "work" / "sub"
    work.mkdir(parents=True)
    (work.parent / "escape.txt").write_bytes(b"x")
    (work / "ok.txt").write_bytes(b"ok")
    raw = tmp_path / "raw"
    raw.mkdir()
    target = str(work.parent / "escape.txt") if how == "absolute" else "../escape.txt"
    for name in ("ok.txt", target):
        subprocess.run(
            ["7zz", "a", "-spf", str(raw / "evil.7z"), name], cwd=work, check=True, capture_output=True
        )
    with pytest.raises(ArchiveError, match=r"rejected: absolute path, '\.\.', drive letter or backslash$"):
        run_extract(raw / "evil.7z", raw)
    assert files_under(raw) == {"evil.7z"}


def test_7z_symlink_member_is_rejected(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a")
    os.symlink("/etc/passwd", src / "link")
    raw = tmp_path / "raw"
    raw.mkdir()
    with py7zr.SevenZipFile(raw / "evil.7z", "w") as z:
        z.write(src / "a.txt", "a.txt")
        z.write(src / "link", "link")
    with pytest.raises(ArchiveError, match=r"^toy: archive evil.7z: member 'link' rejected: symbolic link$"):
        run_extract(raw / "evil.7z", raw)
    assert files_under(raw) == {"evil.7z"}


@pytest.mark.parametrize("kind", ["rar", "7z"])
def test_corrupt_archive_is_one_line(tmp_path: Path, kind: str) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    archive = (_rar if kind == "rar" else _7z)(raw / f"x.{kind}")
    data = bytearray(archive.read_bytes())
    # rar: a flipped byte in a member's data (its CRC32 check fails); 7z: in the LZMA2 stream
    i = data.index(MEMBERS["data/sub/b.bin"][:64]) + 1000 if kind == "rar" else 100
    data[i] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError) as e:
        run_extract(archive, raw)
    msg = str(e.value)
    assert msg.startswith(f"toy: archive x.{kind}: ") and "\n" not in msg
    assert not list(raw.rglob("*.part"))
    assert "data/sub/b.bin" not in files_under(raw)


# ---------------------------------------------------------------------------------------------
# Nested archives and the recipe check, through a real download


def _nested_zip() -> bytes:
    inner_tar = io.BytesIO()
    with tarfile.open(fileobj=inner_tar, mode="w:gz") as t:
        for name, data in {"deep/x.csv": b"a,b\n1,2\n", "deep/y.bin": os.urandom(5000)}.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
    inner_7z = io.BytesIO()
    with py7zr.SevenZipFile(inner_7z, "w") as z:
        z.writestr(b"seven", "s7/notes.txt")
    inner_rar = rar4.archive(
        [rar4.member("subject1/1.rec", b"EDF" * 1000), rar4.member("subject1/1_1.txt", b"W\nN1\n")]
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("top.txt", b"top")
        z.writestr("inner/deep.tar.gz", inner_tar.getvalue())
        z.writestr("inner/s.7z", inner_7z.getvalue())
        z.writestr("inner/1.rar", inner_rar)
        z.writestr("inner/table.csv.gz", b"\x1f\x8b not extracted with extract: true")
    return buf.getvalue()


def _recipe(tmp_path: Path, base: str, extract: str) -> object:
    src = (
        f"  - kind: test-archive-files\n    into: dl\n    base: {base}\n    names: [set.zip]\n"
        f"    extract: {extract}\n"
    )
    path = write_recipe(tmp_path / "recipes", "toynest", src)
    path.write_text(path.read_text().replace("checksums: upstream", "checksums: pinned"))
    return Catalog([path.parent]).load("toynest")


def test_nested_archives_are_extracted_and_verified(tmp_path: Path) -> None:
    with _Server({"set.zip": _nested_zip()}) as srv:
        settings = _settings(tmp_path)
        recipe = _recipe(tmp_path, srv.base_url, "true")
        report = download(recipe, settings)
        assert report.ok, report.why
        raw = settings.raw_dir("toynest") / "dl"
        assert (raw / "inner" / "deep" / "x.csv").read_bytes() == b"a,b\n1,2\n"
        assert (raw / "inner" / "s7" / "notes.txt").read_bytes() == b"seven"
        assert (raw / "inner" / "subject1" / "1.rec").read_bytes() == b"EDF" * 1000
        assert (raw / "inner" / "table.csv.gz").is_file()  # a single .gz member is data, kept as is
        assert {r.archive for r in report.extracted} == {
            "dl/set.zip", "dl/inner/deep.tar.gz", "dl/inner/s.7z", "dl/inner/1.rar",
        }  # fmt: skip
        rep, _ = verify_raw(recipe, settings)
        assert rep.ok and rep.checked == 1 + 5 + 2 + 1 + 2, rep.as_dict()
        (raw / "inner" / "deep" / "y.bin").write_bytes(b"tampered")
        rep, _ = verify_raw(recipe, settings)
        assert rep.corrupt == ["dl/inner/deep/y.bin"]
        again = download(recipe, settings)
        assert again.ok and (raw / "inner" / "deep" / "y.bin").stat().st_size == 5000
        assert State.load(settings.raw_dir("toynest"), "dl/inner/1.rar") is not None


def test_nested_only_where_the_globs_say(tmp_path: Path) -> None:
    with _Server({"set.zip": _nested_zip()}) as srv:
        settings = _settings(tmp_path)
        report = download(_recipe(tmp_path, srv.base_url, '["*.zip", "**/*.rar"]'), settings)
        assert report.ok, report.why
        raw = settings.raw_dir("toynest") / "dl"
        assert (raw / "inner" / "subject1" / "1_1.txt").is_file()
        assert not (raw / "inner" / "deep").exists() and not (raw / "inner" / "s7").exists()


@pytest.mark.parametrize("glob", ["*.zst", "data/*.csv", "**/*.cab"])
def test_extract_glob_naming_an_unknown_kind_is_a_recipe_error(tmp_path: Path, glob: str) -> None:
    path = write_recipe(
        tmp_path / "recipes",
        "toybad",
        f"  - kind: http\n    files: [{{url: 'https://example.org/a.zip'}}]\n    extract: ['{glob}']\n",
    )
    with pytest.raises(RecipeError) as e:
        Catalog([path.parent]).load("toybad")
    msg = str(e.value)
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "extract:" in t)
    assert msg.startswith(f"{path}:{line} ") and f"'{glob}' names files climb cannot extract" in msg


@pytest.mark.parametrize("glob", ["*.rar", "*.7z", "data/*", "**/*.tar.gz", "S*.part1.rar"])
def test_extract_globs_climb_can_open(tmp_path: Path, glob: str) -> None:
    path = write_recipe(
        tmp_path / "recipes",
        "toyok",
        f"  - kind: http\n    files: [{{url: 'https://example.org/a.rar'}}]\n    extract: ['{glob}']\n",
    )
    assert Catalog([path.parent]).load("toyok").sources[0].extract == [glob]
