"""The one HTTP session every source uses: credentials bound to their origin, proxies and private CAs as
requests and pip users expect, and network failures that are not transient said at once.

Credentials are bound to the **origin** (scheme, host, port) of the URL a request starts at, on every hop:
:class:`ClimbSession` follows redirects itself and sends ``auth=``, ``cookies=`` and any ``Authorization`` /
``Cookie`` header only while the URL is on that origin. requests alone does less: its ``rebuild_auth``
strips only ``Authorization`` (and keeps it across an http -> https upgrade or a default-port change), and
cookies -- the per-request ``cookies=`` dict has no domain at all, and a jar's cookies follow by domain,
whatever the port -- go wherever the redirect goes. The session keeps no cookie jar: a source passes the
cookies it means to send. A redirect from https to http of a request that carries a credential is refused
(:class:`InsecureRedirect`). Signed URLs to a byte host go there without any credential.

Environment, honoured although ``trust_env`` stays False (so ``~/.netrc`` is never injected):
``HTTPS_PROXY`` / ``HTTP_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` (either case, as requests reads them), and
the CA bundle from ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE`` or ``SSL_CERT_FILE`` (first set wins; a folder
from ``SSL_CERT_DIR`` when none is).

Failures that retrying cannot fix raise a :class:`~climb_cli.errors.TransferError` subclass at once, so no
retry loop spends minutes on them: :class:`CertificateError` (TLS verification failed: names the host and
the CA settings) and :class:`UnknownHost` (the name does not resolve).
"""

from __future__ import annotations

import functools
import os
import socket
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests
import urllib3
from requests.cookies import RequestsCookieJar
from requests.utils import get_environ_proxies, requote_uri

from climb_cli import redaction
from climb_cli.errors import TransferError

if TYPE_CHECKING:
    from requests.sessions import _Settings  # a TypedDict of types-requests, not a run-time name

#: headers that carry a credential (only ever sent to their own origin).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie"})
MAX_REDIRECTS = 10
CA_SETTINGS = "REQUESTS_CA_BUNDLE or SSL_CERT_FILE"


class CertificateError(TransferError):
    """The server's TLS certificate could not be verified (not transient)."""


class UnknownHost(TransferError):
    """The host name does not resolve (not transient)."""


class InsecureRedirect(TransferError):
    """A credentialed request was redirected from https to http."""


def origin(url: str) -> tuple[str, str, int]:
    """(scheme, host, port) — credentials belong to one origin and never travel to another."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def ca_bundle() -> str | None:
    """The CA bundle (file or folder) the environment names, as requests/curl/OpenSSL users set it."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        value = os.environ.get(name)
        if value:
            return value
    return None


class _NoJar(RequestsCookieJar):
    """A cookie jar that keeps nothing: a cookie a server sets is never sent anywhere by itself (a source
    reads it from ``response.cookies`` and passes it, bound to its origin)."""

    def extract_cookies(self, response: Any, request: Any) -> None:
        return None

    def set_cookie(self, cookie: Any, *args: Any, **kwargs: Any) -> None:
        return None


# What decides the proxy of an http(s) URL: requests reads every environment variable twice per request for
# it (~0.7 ms, a third of the client's CPU per small file), so the answer is kept per origin and value set.
_PROXY_VARS = (
    *(n for s in ("http", "https", "all", "no") for n in (f"{s}_proxy", f"{s.upper()}_PROXY")),
    "REQUEST_METHOD",  # urllib ignores HTTP_PROXY in a CGI script
)


@functools.lru_cache(maxsize=256)
def _proxies_for(
    scheme: str, netloc: str, no_proxy: str | None, env: tuple[str | None, ...]
) -> dict[str, str]:
    return get_environ_proxies(f"{scheme}://{netloc}/", no_proxy=no_proxy)


def environ_proxies(url: str, no_proxy: str | None = None) -> dict[str, str]:
    """requests' ``get_environ_proxies(url)``, computed once per origin while the proxy variables stay."""
    parts = urlsplit(url)
    env = tuple(os.environ.get(n) for n in _PROXY_VARS)
    return dict(_proxies_for(parts.scheme, parts.netloc, no_proxy, env))


def _host_of(url: str) -> str:
    parts = urlsplit(url)
    return parts.hostname or parts.netloc or redaction.redact_url(url)


def _chain(e: BaseException) -> list[BaseException]:
    out, seen = [], set()
    stack: list[object] = [e]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, BaseException) or id(cur) in seen:
            continue
        seen.add(id(cur))
        out.append(cur)
        stack += [cur.__cause__, cur.__context__, getattr(cur, "reason", None), *getattr(cur, "args", ())]
    return out


def classify(e: requests.RequestException, url: str) -> TransferError | None:
    """The one-line, non-transient error for a TLS verification failure or an unknown host, else None."""
    chain = _chain(e)
    host = _host_of(url)
    text = " ".join(str(x) for x in chain)
    if isinstance(e, requests.exceptions.SSLError) and (
        "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text or "doesn't match" in text
    ):
        messages = (getattr(x, "verify_message", None) for x in chain)
        why = next((str(m) for m in messages if m), "verify failed")
        return CertificateError(
            f"the TLS certificate of {host} could not be verified ({why}); if your network uses a private "
            f"CA or a TLS-intercepting proxy, set {CA_SETTINGS} to its CA bundle"
        )
    if isinstance(e, requests.exceptions.ProxyError):
        return None
    name_error = getattr(urllib3.exceptions, "NameResolutionError", ())
    if any(isinstance(x, socket.gaierror) or (name_error and isinstance(x, name_error)) for x in chain):
        return UnknownHost(
            f"cannot resolve the host name {host}: check the URL (or the CLIMB_<KIND>_URL mirror), your DNS, "
            "or set HTTPS_PROXY if this network reaches the internet through a proxy"
        )
    return None


class ClimbSession(requests.Session):
    """requests.Session with origin-bound credentials on every redirect hop, environment proxies and CA
    bundle (but no ~/.netrc), and no cookie jar. See the module docstring."""

    def __init__(self, user_agent: str | None = None, pool_maxsize: int = 16) -> None:
        super().__init__()
        self.trust_env = False  # no ~/.netrc injection: credentials are explicit
        self.cookies = _NoJar()
        if user_agent:
            self.headers["User-Agent"] = user_agent
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=pool_maxsize, max_retries=0)
        self.mount("http://", adapter)
        self.mount("https://", adapter)

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        proxies = dict(proxies or {})
        target = url.decode() if isinstance(url, bytes) else (url or "")
        for scheme, proxy in environ_proxies(target, no_proxy=proxies.get("no_proxy")).items():
            proxies.setdefault(scheme, proxy)
        plain = target.startswith("http:") and not any(str(p).startswith("https:") for p in proxies.values())
        if (verify is None or verify is True) and not plain:  # (no TLS at all: no look at the bundle)
            verify = ca_bundle() or verify
        return super().merge_environment_settings(url, proxies, stream, verify, cert)

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        params: Any = None,
        data: Any = None,
        headers: Mapping[str, str] | None = None,
        cookies: Any = None,
        files: Any = None,
        auth: Any = None,
        timeout: Any = None,
        allow_redirects: bool = True,
        proxies: Any = None,
        hooks: Any = None,
        stream: Any = None,
        verify: Any = None,
        cert: Any = None,
        json: Any = None,
    ) -> requests.Response:
        home = origin(url)
        secret = {k: v for k, v in (headers or {}).items() if k.lower() in CREDENTIAL_HEADERS}
        plain = {k: v for k, v in (headers or {}).items() if k.lower() not in CREDENTIAL_HEADERS}
        credentialed = bool(secret or auth or cookies)
        history: list[requests.Response] = []
        while True:
            mine = origin(url) == home
            try:
                resp = super().request(
                    method, url, params=params, data=data, headers={**plain, **(secret if mine else {})},
                    cookies=cookies if mine else None, files=files, auth=auth if mine else None,
                    timeout=timeout, allow_redirects=False, proxies=proxies, hooks=hooks, stream=stream,
                    verify=verify, cert=cert, json=json,
                )  # fmt: skip
            except requests.RequestException as e:
                clear = classify(e, url)
                if clear is not None:
                    raise clear from None
                raise
            if not (allow_redirects and resp.is_redirect):
                resp.history = history
                return resp
            nxt = requote_uri(urljoin(resp.url, resp.headers["Location"]))
            resp.close()
            if credentialed and urlsplit(resp.url).scheme == "https" and urlsplit(nxt).scheme == "http":
                raise InsecureRedirect(
                    f"refused a redirect from {redaction.redact_url(resp.url)} to plain http "
                    f"({redaction.redact_url(nxt)}): a request with credentials must stay on https"
                )
            history.append(resp)
            if len(history) > MAX_REDIRECTS:
                raise requests.TooManyRedirects(
                    f"more than {MAX_REDIRECTS} redirects from {redaction.redact_url(history[0].url)}",
                    response=resp,
                )
            if (
                resp.status_code == 303
                and method != "HEAD"
                or resp.status_code in (301, 302)
                and method == "POST"
            ):
                method, data, json, files = "GET", None, None, None
                plain = {
                    k: v for k, v in plain.items() if k.lower() not in ("content-type", "content-length")
                }
            url, params = nxt, None
