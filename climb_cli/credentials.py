"""Where secrets come from: environment variables first, then the files each ecosystem's own
tools use (~/.netrc for PhysioNet). Every secret found is registered for redaction at once.

Nothing here prompts: a download never blocks on input.
"""

from __future__ import annotations

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
            redaction.register(auth[2])
            return UserPassword(auth[0], auth[2], f"{path} (machine {host})")
    return None


def physionet(host: str) -> UserPassword | None:
    """PHYSIONET_USERNAME/PHYSIONET_PASSWORD, else ~/.netrc for the server's host, else physionet.org."""
    user, pw = os.environ.get("PHYSIONET_USERNAME"), os.environ.get("PHYSIONET_PASSWORD")
    if user and pw:
        redaction.register(pw)
        return UserPassword(user, pw, "env PHYSIONET_USERNAME/PHYSIONET_PASSWORD")
    hosts = [h for h in (host, "physionet.org") if h]
    return from_netrc(*dict.fromkeys(hosts))
