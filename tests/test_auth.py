"""`climb auth status | check | login` against the fake PhysioNet, and the secret grep over a
representative set of commands (outputs, files written, process argv)."""

from __future__ import annotations

import contextlib
import io
import json
import netrc
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from climb_cli.auth import netrc_with_entry, read_secret, write_private
from climb_cli.errors import UsageError
from climb_cli.fakes.physionet import FakePhysioNet
from tests.conftest import REPO, SECRETS, TEST_PASSWORD, TEST_USER, WRONG_PASSWORD, write_recipe


def _secret(prefix: str) -> str:
    """A secret from conftest's leak-guarded list (the guard fails any test that prints it)."""
    return next(s for s in SECRETS if s.startswith(prefix))


KAGGLE_KEY = _secret("kgl-key-")
KAGGLE_TOKEN = _secret("KGAT_tok-")
KAGGLE_WRONG = _secret("KGAT_wrong-")
GC_TOKEN = _secret("gc-tok-")
GC_WRONG = _secret("gc-bad-")
NETRC_OTHER = _secret("gcf-oth-")  # any guarded value: a password of another machine in ~/.netrc
ALL_SECRETS = SECRETS


def _env(tmp_path: Path, server: FakePhysioNet | None = None, **extra: str) -> dict[str, str]:
    """A clean environment: HOME, NETRC, XDG_CONFIG_HOME, KAGGLE_CONFIG_DIR all under tmp_path."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("PHYSIONET_", "CLIMB_", "KAGGLE_", "GRAND_CHALLENGE", "ZENODO_", "HF_", "GITHUB_")
        )
        and k not in ("GH_TOKEN", "HUGGING_FACE_HUB_TOKEN", "NETRC", "XDG_CONFIG_HOME")
    }
    env.update(HOME=str(home), NETRC=str(home / ".netrc"), XDG_CONFIG_HOME=str(home / ".config"))
    env["HF_HOME"] = str(home / ".hf")
    if server is not None:
        env["CLIMB_PHYSIONET_URL"] = server.base_url
    env.update(extra)
    return env


class Run:
    def __init__(self, rc: int, stdout: str, stderr: str, argvs: list[str]) -> None:
        self.returncode, self.stdout, self.stderr, self.argvs = rc, stdout, stderr, argvs


def climb_in_process(*args: str, env: dict[str, str], stdin: str = "") -> Run:
    """Run the CLI's `main()` in this process (no import cost per run) with this environment, a
    non-terminal stdin holding `stdin`, captured stdout/stderr, and an empty secret registry (so a
    secret the command itself does not load is not redacted by luck)."""
    from climb_cli import cli, redaction

    with redaction._lock:
        saved = set(redaction._secrets)
        redaction._secrets.clear()
    old_env, old_streams, old_argv = dict(os.environ), (sys.stdin, sys.stdout, sys.stderr), sys.argv
    out, err = io.StringIO(), io.StringIO()
    os.environ.clear()
    os.environ.update(env)
    sys.stdin, sys.stdout, sys.stderr = io.StringIO(stdin), out, err
    sys.argv = ["climb", *args]
    code = 0
    try:
        cli.main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        os.environ.clear()
        os.environ.update(old_env)
        sys.stdin, sys.stdout, sys.stderr = old_streams
        sys.argv = old_argv
        with redaction._lock:
            redaction._secrets |= saved
    return Run(code, out.getvalue(), err.getvalue(), ["climb " + " ".join(args)])


def climb(*args: str, env: dict[str, str], stdin: str = "", timeout: float = 120) -> Run:
    """Run the CLI as a user does (a child process; stdin is a pipe, not a terminal) and record the
    argv of every process it runs (itself and its children) while it runs."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "climb_cli", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO,
    )
    argvs: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            pids = [proc.pid]
            try:
                for task in Path(f"/proc/{proc.pid}/task").iterdir():
                    pids += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
            for pid in pids:
                with contextlib.suppress(OSError):
                    argvs.append(Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"))
            done.wait(0.02)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    finally:
        done.set()
        t.join()
    return Run(proc.returncode, out, err, argvs)


def _recipes(tmp_path: Path) -> Path:
    folder = tmp_path / "recipes"
    src = "  - kind: physionet\n    project: secret-ecg\n    version: '1.0.3'\n    include: [LICENSE.txt]\n"
    write_recipe(folder, "toysecret", src, access="credentialed")
    src = "  - kind: physionet\n    project: ptb-xl\n    version: '1.0.3'\n    include: [LICENSE.txt]\n"
    write_recipe(folder, "toyopen", src)
    src = "  - kind: manual\n    url: https://bdsp.io/request\n    files: [{path: eeg.edf}]\n"
    write_recipe(folder, "toymanual", src)
    return folder


# ---------------------------------------------------------------------------------------------
# status


def test_status_says_where_each_secret_comes_from_without_showing_it(tmp_path: Path) -> None:
    env = _env(tmp_path, PHYSIONET_USERNAME=TEST_USER, PHYSIONET_PASSWORD=TEST_PASSWORD)
    kdir = tmp_path / "kaggle-config"
    kdir.mkdir()
    (kdir / "kaggle.json").write_text(json.dumps({"username": "kat", "key": KAGGLE_KEY}))
    env["KAGGLE_CONFIG_DIR"] = str(kdir)
    gc = Path(env["XDG_CONFIG_HOME"]) / "climb" / "grand-challenge-token"
    gc.parent.mkdir(parents=True)
    gc.write_text(GC_TOKEN + "\n")
    r = climb_in_process("auth", "status", "--json", env=env)
    assert r.returncode == 0, r.stderr
    rows = {row["service"]: row for row in json.loads(r.stdout)}
    assert rows["physionet"] == {
        "service": "physionet",
        "found": True,
        "origin": "env PHYSIONET_USERNAME/PHYSIONET_PASSWORD",
        "identity": TEST_USER,
    }
    assert rows["kaggle"] == {
        "service": "kaggle",
        "found": True,
        "origin": str(kdir / "kaggle.json"),
        "identity": "kat",
    }
    assert rows["grand-challenge"]["origin"] == str(gc) and rows["grand-challenge"]["found"]
    assert rows["zenodo"] == {"service": "zenodo", "found": False, "origin": "", "identity": ""}
    table = climb_in_process("auth", "status", env=env)
    assert table.returncode == 0
    assert any(
        [cell.strip() for cell in line.split("│")[1:4]]
        == ["physionet", "yes", "env PHYSIONET_USERNAME/PHYSIONET_PASSWORD"]
        for line in table.stdout.splitlines()
    )
    for text in (r.stdout, r.stderr, table.stdout, table.stderr):
        assert not any(s in text for s in ALL_SECRETS)


# ---------------------------------------------------------------------------------------------
# check


def test_check_gives_the_next_step_per_dataset(tmp_path: Path, server: FakePhysioNet) -> None:
    recipes = _recipes(tmp_path)
    base = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes), "auth", "check"]
    names = ["toysecret", "toyopen", "toymanual"]
    r = climb_in_process(*base, *names, "--json", env=_env(tmp_path, server))
    assert r.returncode == 1
    rows = {row["dataset"]: row for row in json.loads(r.stdout)}
    page = f"{server.base_url}/content/secret-ecg/1.0.3/"
    assert rows["toysecret"]["status"] == "no credentials" and not rows["toysecret"]["ok"]
    assert rows["toysecret"]["next_step"] == f"run `climb auth login physionet`; then see {page}"
    assert (
        rows["toyopen"]["ok"]
        and rows["toyopen"]["status"] == "ok"
        and rows["toyopen"]["detail"] == "HTTP 206"
    )
    assert (
        rows["toymanual"]["status"] == "manual"
        and rows["toymanual"]["detail"] == "manual: 0 of 1 files placed"
    )
    assert rows["toymanual"]["next_step"] == (
        f"place eeg.edf in {tmp_path / 'data' / 'raw' / 'toymanual'}/ (get them at https://bdsp.io/request)"
    )
    # an account without this version's DUA: access not granted, sign it there
    env = _env(tmp_path, server, PHYSIONET_USERNAME="cy", PHYSIONET_PASSWORD=TEST_PASSWORD)
    r = climb_in_process(*base, "toysecret", "--json", env=env)
    (row,) = json.loads(r.stdout)
    assert r.returncode == 1 and row["status"] == "access not granted" and row["next_step"] == f"see {page}"
    assert "sign it at " + page in row["detail"] and "signed in to PhysioNet as 'cy', but" in row["detail"]
    # a wrong password: its own category, and the access column agrees with the detail
    env = _env(tmp_path, server, PHYSIONET_USERNAME=TEST_USER, PHYSIONET_PASSWORD=WRONG_PASSWORD)
    r = climb_in_process(*base, "toysecret", "--json", env=env)
    (row,) = json.loads(r.stdout)
    assert row["status"] == "credentials rejected" and "rejected the username/password" in row["detail"]
    assert row["next_step"].startswith("fix the password: run `climb auth login physionet`")
    # the server failing at sign-in: failed, not a password problem
    server.login_faults.add("status", status=503, times=-1)
    r = climb_in_process(
        *base,
        "toysecret",
        "--json",
        env=_env(
            tmp_path,
            server,
            PHYSIONET_USERNAME=TEST_USER,
            PHYSIONET_PASSWORD=TEST_PASSWORD,
            CLIMB_RETRIES="1",
        ),
    )
    (row,) = json.loads(r.stdout)
    assert row["status"] == "failed" and "answered HTTP 503" in row["detail"]
    server.login_faults.clear()
    # the right account: exit 0, and no data was downloaded (a 1-byte range of SHA256SUMS.txt)
    env = _env(tmp_path, server, PHYSIONET_USERNAME=TEST_USER, PHYSIONET_PASSWORD=TEST_PASSWORD)
    r = climb(*base, "toysecret", "toyopen", env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "│ toysecret │ data (physionet) │ ok     │" in r.stdout
    assert not (tmp_path / "data" / "raw").exists()
    files = [x for x in server.log if x.path.startswith("/files/")]
    assert files and all(x.range == "bytes=0-0" and x.path.endswith("/SHA256SUMS.txt") for x in files)


# ---------------------------------------------------------------------------------------------
# login


def test_login_physionet_stores_netrc_0600_keeping_other_entries(
    tmp_path: Path, server: FakePhysioNet
) -> None:
    env = _env(tmp_path, server)
    rc = Path(env["NETRC"])
    original = (
        "# my machines\n"
        f"machine example.org login me password {NETRC_OTHER}\n"
        "machine 127.0.0.1\n  login old\n  password stale-one\n"
        "default login anonymous password guest\n"
    )
    rc.write_text(original)
    rc.chmod(0o644)
    r = climb("auth", "login", "physionet", "--username", TEST_USER, env=env, stdin=TEST_PASSWORD + "\n")
    assert r.returncode == 0, r.stderr
    assert f"physionet: signed in to {server.base_url} as 'ada'" in r.stdout
    assert f"physionet: stored in {rc} (mode 0600)" in r.stdout
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600
    text = rc.read_text()
    assert text == (
        "# my machines\n"
        f"machine example.org login me password {NETRC_OTHER}\n"
        f"machine 127.0.0.1 login ada password {TEST_PASSWORD}\n"
        "default login anonymous password guest\n"
    )
    entry = netrc.netrc(str(rc)).authenticators("127.0.0.1")
    assert entry is not None and entry[0::2] == (TEST_USER, TEST_PASSWORD)
    assert [x.status for x in server.requests_for("/login/", method="POST")] == [302]
    # a rejected password is not stored: the file stays as it was
    r = climb_in_process(
        "auth", "login", "physionet", "--username", TEST_USER, env=env, stdin=WRONG_PASSWORD + "\n"
    )
    assert r.returncode == 1 and rc.read_text() == text
    assert r.stderr.startswith("climb: error: not stored: PhysioNet rejected the username/password of 'ada'")
    for out in (r.stdout, r.stderr):
        assert not any(s in out for s in ALL_SECRETS)


def test_login_physionet_default_host_and_new_file(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = climb_in_process(
        "auth", "login", "physionet", "--username", "ada", "--no-check", env=env, stdin=TEST_PASSWORD
    )
    assert r.returncode == 0, r.stderr
    rc = Path(env["NETRC"])
    assert rc.read_text() == f"machine physionet.org login ada password {TEST_PASSWORD}\n"
    assert stat.S_IMODE(rc.stat().st_mode) == 0o600


def test_login_kaggle_token_and_legacy_key_and_gc_token(tmp_path: Path) -> None:
    env = _env(tmp_path)
    home = Path(env["HOME"])
    r = climb_in_process("auth", "login", "kaggle", "--no-check", env=env, stdin=KAGGLE_TOKEN + "\n")
    assert r.returncode == 0, r.stderr
    token = home / ".kaggle" / "access_token"
    assert token.read_text() == KAGGLE_TOKEN + "\n" and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    # legacy key, in KAGGLE_CONFIG_DIR, keeping the file's other settings
    kdir = tmp_path / "kcfg" / "nested"
    env["KAGGLE_CONFIG_DIR"] = str(kdir)
    kdir.mkdir(parents=True)
    (kdir / "kaggle.json").write_text(json.dumps({"username": "old", "key": "old", "path": "/data/kaggle"}))
    r = climb_in_process(
        "auth", "login", "kaggle", "--username", "kat", "--no-check", env=env, stdin=KAGGLE_KEY + "\n"
    )
    assert r.returncode == 0, r.stderr
    assert json.loads((kdir / "kaggle.json").read_text()) == {
        "username": "kat",
        "key": KAGGLE_KEY,
        "path": "/data/kaggle",
    }
    assert stat.S_IMODE((kdir / "kaggle.json").stat().st_mode) == 0o600
    assert "access_token exists and takes precedence over kaggle.json" in r.stderr
    r = climb_in_process(
        "auth", "login", "grand-challenge", "--no-check", env=env, stdin="Bearer " + GC_TOKEN + "\n"
    )
    assert r.returncode == 0, r.stderr
    gc = Path(env["XDG_CONFIG_HOME"]) / "climb" / "grand-challenge-token"
    assert gc.read_text() == GC_TOKEN + "\n" and stat.S_IMODE(gc.stat().st_mode) == 0o600
    assert stat.S_IMODE(gc.parent.stat().st_mode) == 0o700
    status = {
        row["service"]: row
        for row in json.loads(climb_in_process("auth", "status", "--json", env=env).stdout)
    }
    assert status["kaggle"]["origin"] == str(token) and status["grand-challenge"]["origin"] == str(gc)


def test_login_kaggle_and_grand_challenge_are_checked_before_they_are_stored(tmp_path: Path) -> None:
    from tests.fakes.grand_challenge import FakeGrandChallenge
    from tests.fakes.kaggle import FakeKaggle, KaggleUser

    with (
        FakeKaggle(users=[KaggleUser("kat", key=KAGGLE_KEY, tokens={KAGGLE_TOKEN})]) as kaggle,
        FakeGrandChallenge(tokens={GC_TOKEN: "ada"}) as gc,
    ):
        env = _env(tmp_path, CLIMB_KAGGLE_URL=kaggle.api_base, CLIMB_GRAND_CHALLENGE_URL=gc.base_url)
        home = Path(env["HOME"])
        r = climb_in_process("auth", "login", "kaggle", env=env, stdin=KAGGLE_WRONG + "\n")
        assert r.returncode == 1 and not (home / ".kaggle").exists()
        assert r.stderr.startswith("climb: error: not stored: Kaggle rejected the API token")
        r = climb_in_process("auth", "login", "kaggle", env=env, stdin=KAGGLE_TOKEN + "\n")
        assert r.returncode == 0 and "kaggle: Kaggle accepted the API token of 'kat'" in r.stdout
        r = climb_in_process(
            "auth", "login", "kaggle", "--username", "kat", env=env, stdin=KAGGLE_WRONG + "\n"
        )
        assert r.returncode == 1 and "Kaggle rejected the legacy API key of 'kat' (HTTP 401)" in r.stderr
        r = climb_in_process("auth", "login", "kaggle", "--username", "kat", env=env, stdin=KAGGLE_KEY + "\n")
        assert r.returncode == 0 and "Kaggle accepted the legacy API key of 'kat'" in r.stdout
        r = climb_in_process("auth", "login", "grand-challenge", env=env, stdin=GC_WRONG + "\n")
        assert r.returncode == 1 and "not stored: Grand Challenge rejected the token (HTTP 401)" in r.stderr
        r = climb_in_process("auth", "login", "grand-challenge", env=env, stdin=GC_TOKEN + "\n")
        assert r.returncode == 0 and "Grand Challenge accepted the token" in r.stdout
        introspections = kaggle.requests_for("/v1/security.OAuthService/IntrospectToken", method="POST")
        assert len(introspections) == 4 and all(x.had_authorization for x in introspections)
        assert [x.status for x in gc.requests_for("/api/v1/archives/")] == [401, 200]
    assert (home / ".kaggle" / "access_token").read_text() == KAGGLE_TOKEN + "\n"
    assert json.loads((home / ".kaggle" / "kaggle.json").read_text()) == {
        "username": "kat",
        "key": KAGGLE_KEY,
    }
    assert (Path(env["XDG_CONFIG_HOME"]) / "climb" / "grand-challenge-token").read_text() == GC_TOKEN + "\n"


def test_login_never_takes_the_secret_from_argv(tmp_path: Path) -> None:
    env = _env(tmp_path)
    r = climb_in_process("auth", "login", "physionet", "--username", "ada", "--password", "x", env=env)
    assert r.returncode == 2 and "No such option: --password" in r.stderr
    r = climb_in_process(
        "auth", "login", "physionet", env=env, stdin=TEST_PASSWORD + "\n"
    )  # no username, no terminal
    assert r.returncode == 2 and "give --username when the secret comes from stdin" in r.stderr
    r = climb_in_process("auth", "login", "physionet", "--username", "ada", env=env, stdin="")
    assert r.returncode == 2 and "no secret given" in r.stderr
    assert not Path(env["NETRC"]).exists()


def test_netrc_rewrite_keeps_everything_else() -> None:
    text = (
        "machine a.org login x password y\n"
        "machine h.org\n\tlogin old\n\tpassword old\n"
        "macdef init\ncd /pub\n\n"
        "machine b.org login z password w\n"
    )
    out = netrc_with_entry(text, "h.org", "new user", 'p w"#')
    assert out == (
        "machine a.org login x password y\n"
        'machine h.org login "new user" password "p w\\"#"\n'
        "macdef init\ncd /pub\n\n"
        "machine b.org login z password w\n"
    )
    assert netrc_with_entry("", "h", "u", "p") == "machine h login u password p\n"
    assert netrc_with_entry("machine a login b password c", "h", "u", "p").endswith(
        "c\nmachine h login u password p\n"
    )


def test_netrc_rewrite_parses_back(tmp_path: Path) -> None:
    path = tmp_path / "netrc"
    write_private(path, netrc_with_entry("machine a.org login x password y\n", "h.org", "u", 'sp ace"q'))
    parsed = netrc.netrc(str(path))
    entry = parsed.authenticators("h.org")
    assert entry is not None and entry[0::2] == ("u", 'sp ace"q') and parsed.authenticators("a.org")


def test_write_private_follows_a_symlinked_file(tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "netrc"
    real.parent.mkdir()
    real.write_text("old\n")
    link = tmp_path / ".netrc"
    link.symlink_to(real)
    write_private(link, "new\n")
    assert link.is_symlink() and real.read_text() == "new\n" and stat.S_IMODE(real.stat().st_mode) == 0o600


def test_read_secret_from_a_pipe() -> None:
    import io

    class Pipe(io.StringIO):
        def isatty(self) -> bool:
            return False

    assert read_secret("p: ", Pipe("s3cr3t-value\r\nmore\n")) == "s3cr3t-value"
    with pytest.raises(UsageError, match="no secret given"):
        read_secret("p: ", Pipe("\n"))


# ---------------------------------------------------------------------------------------------
# the secret grep


def test_no_secret_in_outputs_files_or_argv(tmp_path: Path, server: FakePhysioNet) -> None:
    """status, check, login, download with wrong and right credentials, verify: with test secrets in
    the environment, ~/.netrc and kaggle.json, none appears in any output, any file climb wrote
    (other than the credential files themselves), or any process argv."""
    recipes = _recipes(tmp_path)
    data = tmp_path / "data"
    env = _env(
        tmp_path, server, KAGGLE_API_TOKEN=KAGGLE_TOKEN, GRAND_CHALLENGE_TOKEN=GC_TOKEN, CLIMB_DEBUG="1"
    )
    home = Path(env["HOME"])
    kdir = home / ".kaggle"
    kdir.mkdir(mode=0o700)
    (kdir / "kaggle.json").write_text(json.dumps({"username": "kat", "key": KAGGLE_KEY}))
    Path(env["NETRC"]).write_text(f"machine example.org login me password {NETRC_OTHER}\n")
    credential_files = {Path(env["NETRC"]), kdir / "kaggle.json"}
    g = ["--data-dir", str(data), "--recipes", str(recipes)]
    runs = [
        climb_in_process("auth", "status", env=env),
        climb_in_process("auth", "status", "--json", env=env),
        climb_in_process(*g, "auth", "check", "--all", env=env),
        climb_in_process(*g, "download", "toysecret", env=env),  # no PhysioNet credentials yet
        climb_in_process(
            *g, "auth", "login", "physionet", "--username", TEST_USER, env=env, stdin=WRONG_PASSWORD
        ),
        climb(*g, "auth", "login", "physionet", "--username", TEST_USER, env=env, stdin=TEST_PASSWORD),
        climb_in_process(*g, "auth", "check", "toysecret", "--json", env=env),
        climb(*g, "download", "toysecret", "toyopen", env=env),
        climb_in_process(*g, "verify", "toysecret", "toyopen", "--json", env=env),
    ]
    wrong = {**env, "PHYSIONET_USERNAME": TEST_USER, "PHYSIONET_PASSWORD": WRONG_PASSWORD}
    runs.append(
        climb(
            "--data-dir", str(tmp_path / "d2"), "--recipes", str(recipes), "download", "toysecret", env=wrong
        )
    )
    codes = [r.returncode for r in runs]
    assert codes == [0, 0, 1, 1, 1, 0, 0, 0, 0, 1], [(r.returncode, r.stderr) for r in runs]
    assert "rejected the username/password of 'ada'" in runs[-1].stderr  # the wrong password was really tried
    assert (data / "raw" / "toysecret" / "LICENSE.txt").is_file()
    for r in runs:
        for text in (r.stdout, r.stderr, *r.argvs):
            leaked = [s for s in ALL_SECRETS if s in text]
            assert not leaked, f"{len(leaked)} secret(s) in the output or argv of a climb run"
    assert all(r.argvs for r in runs)
    credential_files.add(Path(env["NETRC"]))
    checked = 0
    for root in (tmp_path,):
        for p in root.rglob("*"):
            if p.is_file() and p not in credential_files and p.suffix != ".yaml":
                body = p.read_bytes()
                leaked = [s for s in ALL_SECRETS if s.encode() in body]
                assert not leaked, f"a secret was written to {p}"
                checked += 1
    assert checked > 10


def test_login_with_an_unwritable_home_says_which_path_and_what_to_set(tmp_path: Path) -> None:
    from tests.conftest import read_only_mount

    home = tmp_path / "home"
    cases = {
        ("physionet", "--username", "ada"): (home / ".netrc", "set NETRC to a file path you can write"),
        ("kaggle",): (home / ".kaggle" / "access_token", "set HOME to a folder you can write"),
        ("kaggle", "--username", "ada"): (home / ".kaggle" / "kaggle.json", "set KAGGLE_CONFIG_DIR"),
        ("grand-challenge",): (home / ".config" / "climb" / "grand-challenge-token", "set XDG_CONFIG_HOME"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NETRC", "KAGGLE", "XDG", "CLIMB_"))}
    with read_only_mount(home):
        for args, (path, hint) in cases.items():
            r = subprocess.run(
                [sys.executable, "-m", "climb_cli", "auth", "login", *args, "--no-check"],
                input="not-a-real-secret\n",
                capture_output=True,
                text=True,
                cwd=REPO,
                env={**env, "HOME": str(home)},
            )
            assert r.returncode == 1, args
            assert r.stderr.startswith(
                f"climb: error: cannot write to {path} (no write access there); {hint}"
            ), r.stderr


def test_login_refuses_to_write_through_a_dangling_or_foreign_symlink(tmp_path: Path) -> None:
    """`~/.netrc` -> a missing path, a FIFO, or another user's file: nothing is written or chmod'ed."""
    from climb_cli.errors import ClimbError

    home = tmp_path / "home"
    home.mkdir()
    netrc_link = home / ".netrc"
    dangling = tmp_path / "nowhere" / "deep" / "netrc"
    netrc_link.symlink_to(dangling)
    with pytest.raises(ClimbError, match="does not exist; not writing a secret"):
        write_private(netrc_link, "machine h login u password p\n")
    assert not (tmp_path / "nowhere").exists()

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    netrc_link.unlink()
    netrc_link.symlink_to(fifo)
    with pytest.raises(ClimbError, match="not a regular file"):
        write_private(netrc_link, "machine h login u password p\n")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)

    if os.getuid() == 0:  # root can make a file that belongs to someone else
        other = tmp_path / "someone-elses"
        other.write_text("their data\n")
        os.chmod(other, 0o644)
        os.chown(other, 65534, 65534)
        netrc_link.unlink()
        netrc_link.symlink_to(other)
        with pytest.raises(ClimbError, match="owned by another user"):
            write_private(netrc_link, "machine h login u password p\n")
        assert other.read_text() == "their data\n" and stat.S_IMODE(other.stat().st_mode) == 0o644


def test_cli_login_through_a_dangling_netrc_link_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path)
    link = Path(env["NETRC"])
    link.symlink_to(tmp_path / "missing-dir" / "netrc")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "climb_cli",
            "auth",
            "login",
            "physionet",
            "--username",
            TEST_USER,
            "--no-check",
        ],
        input=TEST_PASSWORD + "\n",
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 1, r.stderr
    assert "symlink" in r.stderr and "not writing a secret" in r.stderr and "internal error" not in r.stderr
    assert not (tmp_path / "missing-dir").exists()
