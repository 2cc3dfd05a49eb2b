"""Git LFS for sources that read files out of git repositories (GitHub): pointer files and the batch API.

A file tracked by Git LFS is stored in the repository as a small *pointer* (git-lfs docs/spec.md)::

    version https://git-lfs.github.com/spec/v1
    oid sha256:4d7a2146...
    size 12345

which is what raw.githubusercontent.com serves. The content comes from the repository's LFS server
(``<remote>.git/info/lfs``): ``POST <lfs>/objects/batch`` with ``{"operation": "download", "transfers":
["basic"], "objects": [{"oid", "size"}]}`` answers, per object, ``actions.download`` = ``{href, header?,
expires_in?, expires_at?}`` (or a per-object ``error``), and the bytes are a plain GET of ``href`` with those
headers (docs/api/batch.md, tq/basic_download.go). The oid is the SHA-256 of the content: climb checks it
like any upstream sum. (A module whose name starts with ``_`` is not loaded as a source kind.)
"""

from __future__ import annotations

import io
import json
import re
import time
from dataclasses import dataclass
from typing import Any

import requests

from climb_cli import redaction
from climb_cli.errors import AccessError, TransferError
from climb_cli.sources._api import send_with_retry
from climb_cli.sources.base import Source

#: pointers are "less than 1024 bytes" (spec); anything larger is content
POINTER_MAX = 1024
VERSIONS = ("https://git-lfs.github.com/spec/v1", "https://hawser.github.com/spec/v1")
MEDIA_TYPE = "application/vnd.git-lfs+json"
_OID = re.compile(r"^sha256:([0-9a-f]{64})$")


@dataclass(frozen=True)
class Pointer:
    oid: str  # sha256 hex of the content
    size: int


@dataclass(frozen=True)
class Action:
    href: str
    header: dict[str, str]
    expires: float | None  # time.time() after which the href is stale (None: not said)


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer in ``data``, or None when ``data`` is not a Git LFS pointer (ordinary content)."""
    if not data or len(data) >= POINTER_MAX or not data.startswith(b"version "):
        return None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    fields: dict[str, str] = {}
    lines = text.rstrip("\n").split("\n")
    for line in lines:
        key, sep, value = line.partition(" ")
        if not sep or key in fields:
            return None
        fields[key] = value
    if lines[0].partition(" ")[0] != "version" or fields.get("version") not in VERSIONS:
        return None
    m = _OID.match(fields.get("oid", ""))
    size = fields.get("size", "")
    if m is None or not size.isdigit():
        return None
    return Pointer(m.group(1), int(size))


def peek_pointer(resp: requests.Response) -> tuple[Pointer | None, requests.Response]:
    """For a 200 answer small enough to be a pointer: read it; returns the pointer (or None) and a response
    the transfer engine can still read from the start (the same bytes, replayed)."""
    length = resp.headers.get("Content-Length", "")
    if resp.status_code != 200 or not length.isdigit() or int(length) >= POINTER_MAX:
        return None, resp
    body = resp.raw.read(POINTER_MAX, decode_content=False) if resp.raw is not None else resp.content
    resp.close()
    pointer = parse_pointer(body)
    replay = requests.Response()
    replay.status_code, replay.headers, replay.url = resp.status_code, resp.headers, resp.url
    replay.reason, replay.request, replay.encoding = resp.reason, resp.request, resp.encoding
    replay.raw = io.BytesIO(body)
    return pointer, replay


def batch(source: Source, lfs_url: str, pointer: Pointer, auth: dict[str, str] | None, what: str) -> Action:
    """Ask the LFS server for one object's download action. Raises AccessError for refusals (credentials,
    quota, missing object) and TransferError for the rest, one line each."""
    name = source.recipe.name
    url = f"{lfs_url}/objects/batch"
    payload = json.dumps(
        {
            "operation": "download",
            "transfers": ["basic"],
            "objects": [{"oid": pointer.oid, "size": pointer.size}],
        }
    )
    headers = {"Accept": MEDIA_TYPE, "Content-Type": MEDIA_TYPE, **(auth or {})}

    def send() -> requests.Response:
        return source.session().post(
            url, data=payload, headers=headers, timeout=source.timeout, allow_redirects=False
        )

    resp = send_with_retry(source, send, f"{name}: cannot reach {redaction.redact_url(url)}", url)
    try:
        body: Any = resp.json()
    except ValueError:
        body = None
    message = str(body.get("message", "")) if isinstance(body, dict) else ""
    message = redaction.redact(message)[:200]
    status = resp.status_code
    resp.close()
    if status == 401:
        hint = "the token was refused" if auth else "set GITHUB_TOKEN (the repository may be private)"
        raise AccessError(f"{name}: the Git LFS server refused {what} (HTTP 401: {message}); {hint}")
    if status == 403:
        raise AccessError(f"{name}: the Git LFS server refused {what} (HTTP 403): {message}")
    if status == 404:
        raise AccessError(f"{name}: Git LFS: repository not found for {what} (HTTP 404)")
    if status != 200 or not isinstance(body, dict):
        raise TransferError(f"{name}: the Git LFS batch API answered HTTP {status} for {what}: {message}")
    transfer = body.get("transfer", "basic")
    objects = body.get("objects")
    obj = next((o for o in objects or [] if isinstance(o, dict) and o.get("oid") == pointer.oid), None)
    if transfer != "basic" or obj is None:
        raise TransferError(
            f"{name}: the Git LFS batch API did not answer for {what} (oid {pointer.oid[:12]}...)"
        )
    if "error" not in obj and obj.get("size") not in (None, pointer.size):
        raise TransferError(
            f"{name}: the Git LFS server gives size {obj.get('size')} for {what}, its pointer says "
            f"{pointer.size}"
        )
    if "error" in obj:
        err = obj.get("error") or {}
        raise AccessError(
            f"{name}: Git LFS object of {what} (oid {pointer.oid[:12]}...) unavailable: "
            f"{redaction.redact(str(err.get('message', '')))} (code {err.get('code')})"
        )
    action = (obj.get("actions") or {}).get("download")
    if not isinstance(action, dict) or not action.get("href"):
        raise TransferError(f"{name}: the Git LFS batch API gave no download action for {what}")
    expires = None
    if isinstance(action.get("expires_in"), int | float) and action["expires_in"] > 0:
        expires = time.time() + float(action["expires_in"])  # preferred over expires_at (tq/transfer.go)
    elif isinstance(action.get("expires_at"), str):
        try:
            expires = (
                time.mktime(time.strptime(action["expires_at"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
            )
        except ValueError:
            expires = None
    header = {str(k): str(v) for k, v in (action.get("header") or {}).items()}
    for v in header.values():
        redaction.register(v.partition(" ")[2] or v)
    return Action(str(action["href"]), header, expires)
