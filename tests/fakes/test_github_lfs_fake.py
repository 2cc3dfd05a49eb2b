"""The fake GitHub's Git LFS server against the official client, git-lfs (Debian's git-lfs package: a Go
binary, not on PyPI), unmodified: `git lfs pull` with lfs.url pointing at the fake fetches the objects of the
pointers in a commit and checks their oids."""

# ruff: noqa: F811  (fixtures imported from the source tests are parameters here)
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.fakes.github import FakeGitHub
from tests.sources.test_git_lfs import SIT, SIT_PATH, TREE, WALK, WALK_PATH, github  # noqa: F401


@pytest.mark.skipif(shutil.which("git-lfs") is None, reason="git-lfs not installed (apt-get install git-lfs)")
def test_git_lfs_client_fetches_from_the_same_fake(tmp_path: Path, github: FakeGitHub) -> None:
    repo = tmp_path / "clone"
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "HOME": str(home),
        "PATH": os.environ["PATH"],
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org",
    }  # fmt: skip

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    repo.mkdir()
    git("init", "-q")
    git("lfs", "install", "--local", "--skip-smudge")
    (repo / ".gitattributes").write_text("Data/** filter=lfs diff=lfs merge=lfs -text\n")
    (repo / "Data").mkdir()
    for path in (WALK_PATH, SIT_PATH):
        (repo / path).write_bytes(TREE[path])  # the pointers, as a clone without smudge has them
    git("add", ".gitattributes", "Data")
    git("commit", "-q", "-m", "pointers")
    git("config", "lfs.url", f"{github.web.base_url}/romanchereshnev/HuGaDB.git/info/lfs")
    git("lfs", "pull")
    assert (repo / WALK_PATH).read_bytes() == WALK and (repo / SIT_PATH).read_bytes() == SIT
    batches = github.web.requests_for("/romanchereshnev/HuGaDB.git/info/lfs/objects/batch", method="POST")
    assert batches and all(r.status == 200 for r in batches)
    assert len(github.objects.requests_for("/github-cloud/*")) == 2
