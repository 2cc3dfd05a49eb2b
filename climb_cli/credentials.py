"""Where secrets come from, for every service: environment variables first, then the files each
ecosystem's own tools use (~/.netrc for PhysioNet, kaggle.json / access_token for Kaggle,
huggingface's token file, climb's own token files for Grand Challenge and Zenodo).

Every secret found is registered for redaction at once. Nothing here prompts: a download never
blocks on input. `status()` says what was found and where, without revealing any secret.
"""

from __future__ import annotations

import json
import netrc
import os
from dataclasses import dataclass
from pathlib import Path

from climb_cli import redaction


@dataclass(frozen=True)
class UserPassword:
    username: str
    password: str
    origin: str  # where it was found, for `climb auth status` ("env PHYSIONET_USERNAME", "~/.netrc")

    def __repr__(self) -> str:  # never show the password, even in a debugger or a traceback
        return f"UserPassword(username={self.username!r}, password=***, origin={self.origin!r})"


@dataclass(frozen=True)
class Token:
    value: str
    origin: str
    scheme: str = "Bearer"  # how it is sent: "Bearer" (Authorization header) or "Basic" (user:key)
    username: str = ""  # for Basic-style keys (Kaggle legacy), and for display

    def __repr__(self) -> str:
        return f"Token(value=***, origin={self.origin!r}, scheme={self.scheme!r}, username={self.username!r})"


def config_dir() -> Path:
    """climb's own config folder ($XDG_CONFIG_HOME/climb, default ~/.config/climb)."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "climb"


def _read_secret_file(path: Path) -> str | None:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return value or None


def _register(*values: str | None) -> None:
    for v in values:
        redaction.register(v)


# ---------------------------------------------------------------------------------------------
# PhysioNet


def netrc_path() -> Path:
    return Path(os.environ.get("NETRC") or Path.home() / ".netrc")


def from_netrc(*hosts: str) -> UserPassword | None:
    path = netrc_path()
    if not path.is_file():
        return None
    try:
        rc = netrc.netrc(str(path))
    except (netrc.NetrcParseError, OSError):
        return None
    for host in hosts:
        auth = rc.authenticators(host)
        if auth and auth[0] and auth[2]:
            _register(auth[2])
            return UserPassword(auth[0], auth[2], f"{path} (machine {host})")
    return None


def physionet(host: str = "physionet.org") -> UserPassword | None:
    """PHYSIONET_USERNAME/PHYSIONET_PASSWORD, else ~/.netrc for the server's host, else physionet.org."""
    user, pw = os.environ.get("PHYSIONET_USERNAME"), os.environ.get("PHYSIONET_PASSWORD")
    if user and pw:
        _register(pw)
        return UserPassword(user, pw, "env PHYSIONET_USERNAME/PHYSIONET_PASSWORD")
    hosts = [h for h in (host, "physionet.org") if h]
    return from_netrc(*dict.fromkeys(hosts))


# ---------------------------------------------------------------------------------------------
# Kaggle (the official client's order: access token, then the legacy username/key)


def kaggle_config_dir() -> Path:
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    home = Path.home() / ".kaggle"
    if home.is_dir():
        return home
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    return xdg if xdg.is_dir() else home


def kaggle() -> Token | None:
    """KAGGLE_API_TOKEN (value, or a path to a file) / ~/.kaggle/access_token[.txt] as Bearer; then
    KAGGLE_USERNAME+KAGGLE_KEY, then kaggle.json (KAGGLE_CONFIG_DIR, ~/.kaggle, ~/.config/kaggle) as Basic."""
    env_token = os.environ.get("KAGGLE_API_TOKEN")
    if env_token:
        as_file = Path(env_token)
        value = _read_secret_file(as_file) if as_file.is_file() else env_token
        if value:
            _register(value)
            return Token(value, "env KAGGLE_API_TOKEN" + (f" (file {as_file})" if as_file.is_file() else ""))
    for name in ("access_token", "access_token.txt"):
        path = Path.home() / ".kaggle" / name
        value = _read_secret_file(path)
        if value:
            _register(value)
            return Token(value, str(path))
    user, key = os.environ.get("KAGGLE_USERNAME"), os.environ.get("KAGGLE_KEY")
    if user and key:
        _register(key)
        return Token(key, "env KAGGLE_USERNAME/KAGGLE_KEY", "Basic", user)
    path = kaggle_config_dir() / "kaggle.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if isinstance(data, dict) and data.get("username") and data.get("key"):
        _register(str(data["key"]))
        return Token(str(data["key"]), str(path), "Basic", str(data["username"]))
    return None


# ---------------------------------------------------------------------------------------------
# Token services


def _token(service: str, env_names: tuple[str, ...], files: tuple[Path, ...]) -> Token | None:
    for name in env_names:
        value = os.environ.get(name)
        if value:
            value = value.strip()
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            _register(value)
            return Token(value, f"env {name}")
    for path in files:
        value = _read_secret_file(path)
        if value:
            if value.lower().startswith("bearer "):
                value = value[7:].strip()
            _register(value)
            return Token(value, str(path))
    return None


def grand_challenge() -> Token | None:
    """GRAND_CHALLENGE_TOKEN, gcapi's GRAND_CHALLENGE_AUTHORIZATION ('Bearer x' or 'x'), or the token file."""
    return _token(
        "grand-challenge",
        ("GRAND_CHALLENGE_TOKEN", "GRAND_CHALLENGE_AUTHORIZATION"),
        (config_dir() / "grand-challenge-token",),
    )


def zenodo() -> Token | None:
    """ZENODO_TOKEN / ZENODO_ACCESS_TOKEN, or the token file (needed for restricted records only)."""
    return _token("zenodo", ("ZENODO_TOKEN", "ZENODO_ACCESS_TOKEN"), (config_dir() / "zenodo-token",))


def huggingface() -> Token | None:
    """HF_TOKEN, or huggingface_hub's token file ($HF_TOKEN_PATH, or $HF_HOME/token)."""
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    files = tuple(Path(p) for p in filter(None, [os.environ.get("HF_TOKEN_PATH")])) + (hf_home / "token",)
    return _token("huggingface", ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"), files)


def github() -> Token | None:
    """GITHUB_TOKEN / GH_TOKEN (raises the API rate limit; needed for private repositories)."""
    return _token("github", ("GITHUB_TOKEN", "GH_TOKEN"), ())


def figshare() -> Token | None:
    """FIGSHARE_TOKEN, or the token file (private articles only)."""
    return _token("figshare", ("FIGSHARE_TOKEN",), (config_dir() / "figshare-token",))


def nsrr_token_path() -> Path:
    """Where `climb auth login nsrr` stores the token: one line, the format of the `nsrr` client's
    ``--token-file`` (it has no default location of its own; ``nsrr -t <this file>`` reads it)."""
    return config_dir() / "nsrr-token"


def nsrr() -> Token | None:
    """NSRR_TOKEN, or the token file (first line, as the official client's ``--token-file`` reads it)."""
    return _token("nsrr", ("NSRR_TOKEN",), (nsrr_token_path(),))


def openneuro_config_path() -> Path:
    """openneuro-py's config.json: ``platformdirs.user_config_dir("openneuro-py", appauthor=False,
    roaming=True)`` (on Linux $XDG_CONFIG_HOME/openneuro-py, default ~/.config/openneuro-py)."""
    import platformdirs

    return Path(platformdirs.user_config_dir(appname="openneuro-py", appauthor=False, roaming=True)) / (
        "config.json"
    )


def openneuro() -> Token | None:
    """OPENNEURO_API_KEY, or openneuro-py's config.json ``apikey`` (what `openneuro login` writes)."""
    value = os.environ.get("OPENNEURO_API_KEY", "").strip()
    if value:
        _register(value)
        return Token(value, "env OPENNEURO_API_KEY")
    path = openneuro_config_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    key = data.get("apikey") if isinstance(data, dict) else None
    if isinstance(key, str) and key.strip():
        _register(key.strip())
        return Token(key.strip(), str(path))
    return None


# ---------------------------------------------------------------------------------------------
# Stanford AIMI: an Azure Blob container URL with a SAS query, one per dataset (container)

AIMI_ENV = "AIMI_SAS_URL"


def aimi_dir() -> Path:
    return config_dir() / "aimi"


def aimi_container(url: str) -> str:
    """The container name of an Azure container URL (last path segment; path-style URLs on 127.0.0.1 carry the
    account first)."""
    from urllib.parse import unquote, urlsplit

    return unquote(urlsplit(url).path.rstrip("/").rpartition("/")[2])


def register_sas_url(url: str) -> None:
    """Register a SAS URL, its query and its signature for redaction."""
    from urllib.parse import parse_qsl, urlsplit

    query = urlsplit(url).query
    _register(url, query, *(v for k, v in parse_qsl(query) if k == "sig"))


def aimi(container: str) -> Token | None:
    """The SAS URL for `container`: AIMI_SAS_URL when it names that container, else
    ~/.config/climb/aimi/<container>.sas (written by `climb auth login aimi`)."""
    value = (os.environ.get(AIMI_ENV) or "").strip()
    if value:
        register_sas_url(value)
        if aimi_container(value) == container:
            return Token(value, f"env {AIMI_ENV}", "SAS")
    path = aimi_dir() / f"{container}.sas"
    stored = _read_secret_file(path)
    if stored:
        register_sas_url(stored)
        return Token(stored, str(path), "SAS")
    return None


def _aimi_status() -> Found:
    """Found if AIMI_SAS_URL is set or any container URL is stored; identity: the container names."""
    names = []
    value = (os.environ.get(AIMI_ENV) or "").strip()
    if value:
        register_sas_url(value)
        names.append(aimi_container(value))
    files = sorted(aimi_dir().glob("*.sas")) if aimi_dir().is_dir() else []
    for f in files:
        stored = _read_secret_file(f)
        if stored:
            register_sas_url(stored)
    names += [f.name[: -len(".sas")] for f in files]
    origin = f"env {AIMI_ENV}" if value else (str(aimi_dir()) if files else "")
    return Found("aimi", bool(names), origin, ", ".join(names))


@dataclass(frozen=True)
class Found:
    service: str
    found: bool
    origin: str = ""
    identity: str = ""  # a username where there is one; never a secret


def status(physionet_host: str = "physionet.org") -> list[Found]:
    """What climb would use for each service, and from where — no secret values."""
    out = []
    pn = physionet(physionet_host)
    out.append(Found("physionet", pn is not None, pn.origin if pn else "", pn.username if pn else ""))
    for service, fn in (
        ("kaggle", kaggle),
        ("grand-challenge", grand_challenge),
        ("zenodo", zenodo),
        ("huggingface", huggingface),
        ("github", github),
        ("nsrr", nsrr),
        ("openneuro", openneuro),
        ("figshare", figshare),
    ):
        tok = fn()
        out.append(Found(service, tok is not None, tok.origin if tok else "", tok.username if tok else ""))
    out.append(_aimi_status())
    return out
