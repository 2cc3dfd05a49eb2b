"""`climb auth`: where credentials come from (status), whether each dataset is accessible (check),
and storing a secret where the service's own tools look for it (login).

login never takes a secret on the command line: it reads it from a hidden prompt (getpass) or, when
stdin is not a terminal, from the first line of stdin. It writes, atomically and with mode 0600
(parent folders 0700):

- physionet:       ~/.netrc (or $NETRC) `machine <host>` — physionet.org, or the mirror host of
                   CLIMB_PHYSIONET_URL — keeping every other entry of the file as it was;
- kaggle:          an API token -> ~/.kaggle/access_token; with --username, a legacy key ->
                   kaggle.json in $KAGGLE_CONFIG_DIR or ~/.kaggle (other keys of the file kept);
- grand-challenge: <climb config dir>/grand-challenge-token;
- nsrr:            <climb config dir>/nsrr-token (one line: the file `nsrr --token-file` reads);
- openneuro:       openneuro-py's config.json (`{"endpoint", "apikey"}`, other keys kept), where the
                   official client looks.

Before storing, the secret is tried with one cheap call (PhysioNet: its login form; Kaggle: the
IntrospectToken RPC; Grand Challenge: the archive list; NSRR: /list/access; a source kind's own
`check_login(settings, token)` is preferred when it has one; an OpenNeuro key is stored unchecked: its
client has no call that checks a key alone); a secret the service rejects is not stored, and one that could
not be checked (network) is stored with a note. `--no-check` skips the call.
"""

from __future__ import annotations

import getpass
import json
import os
import re
import stat
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlparse, urlsplit

import requests

from climb_cli import atomic, credentials, redaction
from climb_cli.errors import AccessError, ClimbError, UsageError
from climb_cli.recipe import Recipe, SourceSpec
from climb_cli.settings import Settings, require_writable
from climb_cli.sources import make_sources, source_class
from climb_cli.sources.base import AccessReport, Source

SERVICES = ("physionet", "kaggle", "grand-challenge", "nsrr", "openneuro", "aimi")
PHYSIONET_DEFAULT = "https://physionet.org"
KAGGLE_DEFAULT = "https://api.kaggle.com"  # the same defaults and mirror keys as the sources
GC_DEFAULT = "https://grand-challenge.org"
_NSRR_TOKEN_PAGE = "https://sleepdata.org/token"

NO_CREDENTIALS = "no credentials"
REJECTED = "credentials rejected"  # a wrong username/password (not a refusal of this dataset)
DENIED = "access not granted"
MANUAL = "manual"
FAILED = "failed"


# ---------------------------------------------------------------------------------------------
# Classifying refusals


def access_reason(source: Source | None, error: BaseException | str | None = None) -> str:
    """'no credentials' or 'access not granted' (or 'failed' for a not-found) for a refusal.

    An AccessError may carry `reason`; otherwise a source whose `credentials()` finds nothing is
    'no credentials', and anything else 'access not granted'."""
    reason = getattr(error, "reason", None)
    if reason in (NO_CREDENTIALS, REJECTED, DENIED, MANUAL, FAILED):
        return str(reason)
    if source is not None and getattr(source, "manual", False):
        return MANUAL
    text = str(error or "").lower()
    if "not found" in text:
        return FAILED
    creds = getattr(source, "credentials", None)
    if callable(creds):
        try:
            if creds() is None:
                return NO_CREDENTIALS
        except Exception:  # noqa: BLE001 - a broken credential file is still "no credentials"
            return NO_CREDENTIALS
    return DENIED


# ---------------------------------------------------------------------------------------------
# status


def physionet_host(settings: Settings) -> str:
    return urlparse(settings.base_url("physionet", PHYSIONET_DEFAULT)).hostname or "physionet.org"


def status(settings: Settings) -> list[dict[str, Any]]:
    """Per service: found?, from where (env var name or file path), identity. Never a secret."""
    return [asdict(f) for f in credentials.status(physionet_host(settings))]


# ---------------------------------------------------------------------------------------------
# check


@dataclass
class AccessRow:
    dataset: str
    source: str
    kind: str
    ok: bool
    status: str  # ok | no credentials | access not granted | manual | failed
    detail: str
    next_step: str


def check(recipes: list[Recipe], settings: Settings) -> list[AccessRow]:
    """For each dataset and source, without downloading data: credentials present? access granted?"""
    rows: list[AccessRow] = []
    for recipe in recipes:
        for source in make_sources(recipe, settings):
            try:
                rep = source.check_access()
            except AccessError as e:
                rep = AccessReport(recipe.name, source.spec.id, False, str(e), reason=e.reason or "")
            except ClimbError as e:
                rep = AccessReport(recipe.name, source.spec.id, False, str(e))
            except requests.RequestException as e:
                rep = AccessReport(recipe.name, source.spec.id, False, f"network error: {type(e).__name__}")
            if rep.ok:
                state = "ok"
            elif getattr(source, "manual", False):
                state = MANUAL
            elif rep.detail.startswith("network error"):
                state = FAILED
            elif rep.reason:
                state = access_reason(source, AccessError(rep.detail, reason=rep.reason))
            else:
                state = access_reason(source, rep.detail)
            rows.append(
                AccessRow(
                    recipe.name,
                    source.spec.id,
                    source.kind,
                    rep.ok,
                    state,
                    redaction.redact(rep.detail),
                    redaction.redact(_next_step(source, rep, state)),
                )
            )
    return rows


def _next_step(source: Source, rep: AccessReport, state: str) -> str:
    if rep.ok:
        return ""
    step = rep.next_step
    if state == REJECTED and source.kind in SERVICES:
        what = "password" if source.kind == "physionet" else "token"
        return f"fix the {what}: run `climb auth login {source.kind}` (or correct the environment variables)"
    if state == NO_CREDENTIALS and source.kind in SERVICES:
        login = f"run `climb auth login {source.kind}`"
        return f"{login}; then {_as_step(step)}" if step else login
    return _as_step(step) if step else ""


def _as_step(step: str) -> str:
    """A bare URL becomes 'see <url>'; a sentence is kept."""
    return f"see {step}" if re.match(r"^https?://\S+$", step) else step


# ---------------------------------------------------------------------------------------------
# login: reading the secret


def read_secret(prompt: str, stdin: Any = None) -> str:
    """A hidden prompt on a terminal; otherwise the first line of stdin. Never argv."""
    stream = stdin if stdin is not None else sys.stdin
    value = (getpass.getpass(prompt) if stream.isatty() else stream.readline()).rstrip("\r\n")
    if not value:
        raise UsageError("no secret given (type it at the prompt, or pipe it on stdin)")
    if "\n" in value or "\r" in value or "\x00" in value:
        raise UsageError("the secret must be one line")
    redaction.register(value)
    return value


def read_line(prompt: str, stdin: Any = None) -> str:
    stream = stdin if stdin is not None else sys.stdin
    if not stream.isatty():
        raise UsageError("give --username when the secret comes from stdin")
    sys.stderr.write(prompt)
    sys.stderr.flush()
    return stream.readline().strip()


# ---------------------------------------------------------------------------------------------
# login: writing files


def _mkdir_private(path: Path) -> None:
    """Create missing parents with mode 0700 (existing folders are left alone)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700)
        os.chmod(d, 0o700)  # regardless of the umask


def _store(path: Path, text: str, hint: str) -> Path:
    """write_private, with a failure to write said as such: the path, the reason, what to set."""
    try:
        return write_private(path, text)
    except OSError as e:
        raise ClimbError(f"cannot write {path}: {e.strerror or e}; {hint}") from None


def private_target(path: Path) -> Path:
    """Where writing `path` lands. A symlink is followed only to an existing regular file owned by
    this user (a dotfiles setup); a dangling link, a link to a device, FIFO or folder, or to someone
    else's file is refused, as is `path` itself being anything but a regular file."""
    if path.is_symlink():
        real = Path(os.path.realpath(path))
        try:
            st = os.stat(real)
        except OSError:
            raise ClimbError(
                f"{path} is a symlink to {real}, which does not exist; not writing a secret through it "
                f"(remove the link or point it at your own file)"
            ) from None
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
            what = "not a regular file" if not stat.S_ISREG(st.st_mode) else "owned by another user"
            raise ClimbError(
                f"{path} is a symlink to {real}, which is {what}; not writing a secret through it "
                f"(remove the link or point it at your own file)"
            )
        return real
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return path
    if not stat.S_ISREG(st.st_mode):
        raise ClimbError(f"{path} exists and is not a regular file; not writing a secret there")
    return path


def write_private(path: Path, text: str) -> Path:
    """Atomically replace `path` with `text`, mode 0600 from the first byte (a symlink is followed
    only as `private_target` allows)."""
    target = private_target(path)
    _mkdir_private(target.parent)
    atomic.write_text(target, text, perms=0o600)
    return target


_NETRC_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|\S+')


def _netrc_quote(value: str) -> str:
    if value and not re.search(r'[\s"\\#]', value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def netrc_with_entry(text: str, host: str, login: str, password: str) -> str:
    """`text` with the `machine <host>` entry replaced (or appended); everything else kept as it was
    (other machines, `default`, `macdef` bodies, comments)."""
    spans: list[tuple[int, int]] = []  # [start, end) of existing entries for host
    tokens: list[tuple[str, int, int]] = []
    pos, n = 0, len(text)
    while pos < n:
        m = _NETRC_TOKEN.search(text, pos)
        if m is None:
            break
        tok = m.group(0)
        if tok.startswith("#") and (m.start() == 0 or text[m.start() - 1] in "\n\r \t"):
            line_end = text.find("\n", m.start())
            pos = n if line_end < 0 else line_end + 1
            continue
        tokens.append((tok, m.start(), m.end()))
        pos = m.end()
        if tok == "macdef":  # skip the macro body: up to the next empty line
            blank = re.search(r"\n[ \t]*\n", text[pos:])
            pos = n if blank is None else pos + blank.end()
    i = 0
    while i < len(tokens):
        tok = tokens[i][0]
        if tok in ("machine", "default"):
            start = tokens[i][1]
            name = tokens[i + 1][0].strip('"') if tok == "machine" and i + 1 < len(tokens) else None
            j = i + (2 if tok == "machine" else 1)
            while j < len(tokens) and tokens[j][0] not in ("machine", "default", "macdef"):
                j += 1
            end = tokens[j][1] if j < len(tokens) else len(text)
            if name == host:
                spans.append((start, end))
            i = j
        else:
            i += 1
    entry = f"machine {host} login {_netrc_quote(login)} password {_netrc_quote(password)}\n"
    if not spans:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + entry
    out, last = [], 0
    for k, (start, end) in enumerate(spans):
        out.append(text[last:start])
        if k == 0:
            out.append(entry)
        last = end
    out.append(text[last:])
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# login: the services


@dataclass
class LoginResult:
    service: str
    path: Path
    identity: str
    checked: str  # what the check said ("" when it could not run)
    notes: list[str]


def _check_physionet(settings: Settings, creds: credentials.UserPassword) -> str:
    """Sign in through the (mirror's) login form with these credentials; raise AccessError if rejected."""
    from climb_cli.sources.physionet import PhysioNetSource

    recipe = Recipe(
        name="climb-auth-login",
        title="",
        modality="",
        license="",
        access="credentialed",
        sources=[SourceSpec(kind="physionet", project="login-check", version="1")],
    )
    src = PhysioNetSource(recipe, recipe.sources[0], settings)
    src.credentials = lambda: creds  # type: ignore[method-assign]
    try:
        src._login(src._generation)
    except AccessError as e:
        msg = str(e).removeprefix("climb-auth-login: ")
        raise AccessError(f"not stored: {msg}") from None
    return f"signed in to {redaction.redact_url(src.base)} as {creds.username!r}"


def _check_with_source(kind: str, settings: Settings, secret: credentials.Token) -> str | None:
    """A source kind's own login check, `check_login(settings, token) -> str`, when it provides one."""
    cls = source_class(kind)
    fn: Callable[..., str] | None = getattr(cls, "check_login", None) if cls else None
    return None if fn is None else fn(settings, secret)


def _session() -> requests.Session:
    from climb_cli.net.session import ClimbSession
    from climb_cli.sources.base import USER_AGENT

    return ClimbSession(USER_AGENT)  # exactly the secret being tried, bound to its origin; env proxies/CAs


def _check_kaggle(settings: Settings, token: credentials.Token) -> str:
    """One cheap authenticated RPC: IntrospectToken (an API token is checked for `active`; a legacy
    key is accepted unless the API answers 401/403)."""
    base = settings.base_url("kaggle", KAGGLE_DEFAULT)
    url = f"{base}/v1/security.OAuthService/IntrospectToken"
    timeout = (settings.connect_timeout, settings.read_timeout)
    with _session() as s:
        if token.scheme == "Basic":
            r = s.post(url, json={"token": ""}, auth=(token.username, token.value), timeout=timeout)
            if r.status_code in (401, 403):
                raise AccessError(
                    f"Kaggle rejected the legacy API key of {token.username!r} (HTTP {r.status_code})"
                )
            if r.status_code >= 500:
                raise requests.HTTPError(f"HTTP {r.status_code}")
            return f"Kaggle accepted the legacy API key of {token.username!r}"
        r = s.post(
            url,
            json={"token": token.value},
            headers={"Authorization": f"Bearer {token.value}"},
            timeout=timeout,
        )
        if r.status_code >= 500:
            raise requests.HTTPError(f"HTTP {r.status_code}")
        try:
            data = r.json() if r.status_code == 200 else {}
        except ValueError:
            data = {}
        if not (isinstance(data, dict) and data.get("active")):
            raise AccessError(f"Kaggle rejected the API token (HTTP {r.status_code}, not an active token)")
        who = data.get("username")
        return "Kaggle accepted the API token" + (f" of {who!r}" if who else "")


def _check_grand_challenge(settings: Settings, token: credentials.Token) -> str:
    """One cheap authenticated API call (the first archive visible to the token)."""
    base = settings.base_url("grand-challenge", GC_DEFAULT)
    with _session() as s:
        r = s.get(
            f"{base}/api/v1/archives/",
            params={"limit": 1},
            headers={"Authorization": f"Bearer {token.value}", "Accept": "application/json"},
            timeout=(settings.connect_timeout, settings.read_timeout),
        )
    if r.status_code in (401, 403):
        raise AccessError(f"Grand Challenge rejected the token (HTTP {r.status_code})")
    if r.status_code != 200:
        raise requests.HTTPError(f"HTTP {r.status_code}")
    return "Grand Challenge accepted the token"


def login(
    service: str,
    settings: Settings,
    *,
    username: str | None = None,
    check: bool = True,
    stdin: Any = None,
) -> LoginResult:
    """Read a secret (hidden prompt or stdin), try it, store it where the ecosystem looks."""
    if service not in SERVICES:
        raise UsageError(f"unknown service {service!r} (choose from {', '.join(SERVICES)})")
    notes: list[str] = []
    if service == "physionet":
        host = physionet_host(settings)
        user = username or read_line(f"PhysioNet username for {host}: ", stdin)
        if not user:
            raise UsageError("a PhysioNet username is required")
        path = credentials.netrc_path()
        hint = "set NETRC to a file path you can write (or use PHYSIONET_USERNAME/PHYSIONET_PASSWORD)"
        require_writable(path, hint)
        password = read_secret(f"PhysioNet password for {user}@{host}: ", stdin)
        creds = credentials.UserPassword(user, password, "what you typed")
        checked = ""
        if check:
            try:
                checked = _check_physionet(settings, creds)
            except requests.RequestException as e:
                notes.append(
                    f"could not reach {host} to check the password ({type(e).__name__}); stored anyway"
                )
        old = private_target(path).read_text(encoding="utf-8") if path.is_file() else ""
        written = _store(path, netrc_with_entry(old, host, user, password), hint)
        if os.environ.get("PHYSIONET_USERNAME") and os.environ.get("PHYSIONET_PASSWORD"):
            notes.append("PHYSIONET_USERNAME/PHYSIONET_PASSWORD are set and take precedence over ~/.netrc")
        return LoginResult(service, written, user, checked, notes)
    if service == "kaggle":
        if username:
            path = credentials.kaggle_config_dir() / "kaggle.json"
            hint = "set KAGGLE_CONFIG_DIR to a folder you can write (or use KAGGLE_USERNAME/KAGGLE_KEY)"
            require_writable(path, hint)
            key = read_secret(f"Kaggle legacy API key for {username}: ", stdin)
            token = credentials.Token(key, "", "Basic", username)
        else:
            path = Path.home() / ".kaggle" / "access_token"
            hint = "set HOME to a folder you can write, or KAGGLE_API_TOKEN to the token or a file holding it"
            require_writable(path, hint)
            key = read_secret("Kaggle API token (Settings > API > Generate New Token): ", stdin)
            token = credentials.Token(key, "")
        checked = _try(service, settings, token, check, notes)
        if username:
            try:
                data = json.loads(private_target(path).read_text(encoding="utf-8")) if path.is_file() else {}
            except ValueError:
                data = {}
            data = data if isinstance(data, dict) else {}
            data.update({"username": username, "key": key})
            written = _store(path, json.dumps(data, indent=2) + "\n", hint)
        else:
            written = _store(path, key + "\n", hint)
        if os.environ.get("KAGGLE_API_TOKEN") or (
            os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY")
        ):
            notes.append("KAGGLE_* environment variables are set and take precedence over the stored file")
        elif username and (Path.home() / ".kaggle" / "access_token").is_file():
            notes.append("~/.kaggle/access_token exists and takes precedence over kaggle.json")
        return LoginResult(service, written, username or "", checked, notes)
    if service == "nsrr":
        value = read_secret(f"NSRR token ({_NSRR_TOKEN_PAGE}): ", stdin)
        token = credentials.Token(value, "")
        checked = _try(service, settings, token, check, notes)
        written = write_private(credentials.nsrr_token_path(), value + "\n")
        if os.environ.get("NSRR_TOKEN"):
            notes.append("NSRR_TOKEN is set and takes precedence over the token file")
        return LoginResult(service, written, "", checked, notes)
    if service == "openneuro":
        value = read_secret("OpenNeuro API key (openneuro.org > My Account > Obtain an API Key): ", stdin)
        path = credentials.openneuro_config_path()
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        except ValueError:
            data = {}
        data = data if isinstance(data, dict) else {}
        data.setdefault("endpoint", "https://openneuro.org/")
        data["apikey"] = value
        written = write_private(path, json.dumps(data, indent=2))
        if os.environ.get("OPENNEURO_API_KEY"):
            notes.append("OPENNEURO_API_KEY is set and takes precedence over openneuro-py's config.json")
        return LoginResult(service, written, "", "", notes)
    if service == "aimi":
        return _login_aimi(settings, check, stdin, notes)
    # grand-challenge
    path = credentials.config_dir() / "grand-challenge-token"
    hint = "set XDG_CONFIG_HOME to a folder you can write (or use GRAND_CHALLENGE_TOKEN)"
    require_writable(path, hint)
    value = read_secret("Grand Challenge API token (grand-challenge.org > profile > API tokens): ", stdin)
    if value.lower().startswith("bearer "):
        value = value[7:].strip()
    token = credentials.Token(value, "")
    checked = _try(service, settings, token, check, notes)
    written = _store(path, value + "\n", hint)
    if os.environ.get("GRAND_CHALLENGE_TOKEN") or os.environ.get("GRAND_CHALLENGE_AUTHORIZATION"):
        notes.append("GRAND_CHALLENGE_TOKEN/AUTHORIZATION are set and take precedence over the token file")
    return LoginResult(service, written, "", checked, notes)


def _login_aimi(settings: Settings, check: bool, stdin: Any, notes: list[str]) -> LoginResult:
    """Stanford AIMI: the Azure container URL with its SAS query, stored per container."""
    url = read_secret(
        "Stanford AIMI container URL (https://<account>.blob.core.windows.net/<container>?sv=...): ", stdin
    )
    credentials.register_sas_url(url)
    parts = urlsplit(url)
    container = credentials.aimi_container(url)
    query = dict(parse_qsl(parts.query))
    if parts.scheme not in ("https", "http") or not container or "sig" not in query or "se" not in query:
        raise UsageError(
            "not an Azure container URL with a SAS (expected https://<account>.blob.core.windows.net/<container>"
            "?sv=...&se=...&sp=...&sig=...); copy the whole URL from the dataset's AIMI page"
        )
    token = credentials.Token(url, "", "SAS")
    checked = _try("aimi", settings, token, check, notes)
    written = write_private(credentials.aimi_dir() / f"{container}.sas", url + "\n")
    env = os.environ.get(credentials.AIMI_ENV, "")
    if env and credentials.aimi_container(env) == container:
        notes.append(
            f"{credentials.AIMI_ENV} is set for this container and takes precedence over the stored file"
        )
    return LoginResult("aimi", written, container, checked, notes)


def _try(service: str, settings: Settings, token: credentials.Token, check: bool, notes: list[str]) -> str:
    """Try the secret; AccessError('not stored: ...') when the service rejects it."""
    if not check:
        return ""
    try:
        said = _check_with_source(service, settings, token)
        if said is None:
            said = (_check_kaggle if service == "kaggle" else _check_grand_challenge)(settings, token)
    except AccessError as e:
        raise AccessError(f"not stored: {e}") from None
    except requests.RequestException as e:
        notes.append(f"could not check the secret with {service} ({type(e).__name__}); stored anyway")
        return ""
    return said
