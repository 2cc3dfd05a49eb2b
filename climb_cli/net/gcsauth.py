"""Google OAuth 2.0 bearer tokens for Cloud Storage reads (`--mirror gcs`), from the user's Google account.

PhysioNet copies a project to a requester-pays bucket `gs://<slug>-<version>.physionet.org` and lets the
Google account a user links on the project page read it (through the project's Google group). The
credentials are found the way Google's own tools find them, by google-auth's Application Default
Credentials: `GOOGLE_APPLICATION_CREDENTIALS` (a service-account key file, or the authorized-user file
`gcloud auth application-default login` writes), then gcloud's own ADC file, then the metadata server of a
Google Cloud VM. Requester pays: every request names the project billed, `CLIMB_GCS_BILLING_PROJECT`, else
the project of the credentials (`GOOGLE_CLOUD_PROJECT`, the key file's project, the ADC file's quota project).

Tokens are refreshed by google-auth at the credentials' own token endpoint (`token_uri` of the file) through
a climb session (environment proxies and CA bundle); the token is registered with `redaction`, never logged
and never on a command line. Pass a `GoogleBearer` as `auth=` to a ClimbSession, which sends it only to the
origin the request started at: a redirect to another host carries no token.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any
from urllib.parse import urlsplit

import requests

from climb_cli import redaction
from climb_cli.errors import AccessError, UsageError

SCOPE = "https://www.googleapis.com/auth/devstorage.read_only"
BILLING_ENV = "CLIMB_GCS_BILLING_PROJECT"
LOGIN_HINT = (
    "run `gcloud auth application-default login` with the Google account linked on PhysioNet, or set "
    "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file"
)


def _google_auth() -> Any:
    try:
        import google.auth
        import google.auth.transport.requests  # noqa: F401 - the refresh transport
    except ImportError:
        raise UsageError(
            "--mirror gcs gets Google access tokens with google-auth: pip install 'climb-cli[gcs]'"
        ) from None
    return google.auth


class GoogleBearer(requests.auth.AuthBase):
    """`Authorization: Bearer <token>` from Application Default Credentials, refreshed when it expires or when
    the server refuses it (:meth:`refused`); `resolve` gives None when no credentials are found."""

    def __init__(self, credentials: Any, project: str | None, session: requests.Session) -> None:
        self._credentials = credentials
        self._session = session
        self._lock = threading.Lock()
        self.billing_project = (
            os.environ.get(BILLING_ENV, "").strip()
            or project
            or getattr(credentials, "quota_project_id", None)
        )

    @classmethod
    def resolve(cls, session: requests.Session) -> GoogleBearer | None:
        """The user's Google credentials, or None when there are none; a file that is named but unusable is an
        AccessError saying which (its path, never its content)."""
        google_auth = _google_auth()
        from google.auth.exceptions import DefaultCredentialsError

        named = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        try:
            with warnings.catch_warnings():  # "end user credentials without a quota project": said our way
                warnings.simplefilter("ignore")
                credentials, project = google_auth.default(scopes=[SCOPE])
        except DefaultCredentialsError as e:
            if named:
                raise AccessError(
                    f"GOOGLE_APPLICATION_CREDENTIALS={named}: not a usable Google credentials file "
                    f"({redaction.redact(str(e).splitlines()[0])}); {LOGIN_HINT}",
                    reason="no credentials",
                ) from None
            return None
        return cls(credentials, project, session)

    def __repr__(self) -> str:  # never the token
        return f"GoogleBearer(account={self.account!r}, billing_project={self.billing_project!r})"

    @property
    def account(self) -> str:
        """The Google account the credentials are (for messages), '' when google-auth does not say."""
        c = self._credentials
        return str(getattr(c, "service_account_email", None) or getattr(c, "account", None) or "")

    @property
    def token_host(self) -> str:
        uri = getattr(self._credentials, "token_uri", None) or getattr(self._credentials, "_token_uri", None)
        return urlsplit(str(uri)).netloc if uri else "Google's token endpoint"

    def _refresh(self) -> None:
        from google.auth.exceptions import RefreshError, TransportError
        from google.auth.transport.requests import Request

        try:
            self._credentials.refresh(Request(self._session))
        except RefreshError as e:
            why = e.args[0] if e.args and isinstance(e.args[0], str) else type(e).__name__
            raise AccessError(
                f"--mirror gcs: {self.token_host} refused to give {self.account or 'these credentials'} "
                f"an access token ({redaction.redact(why)}); {LOGIN_HINT}",
                reason="credentials rejected",
            ) from None
        except TransportError as e:
            raise AccessError(
                f"--mirror gcs: cannot reach {self.token_host} for a Google access token "
                f"({type(e.__cause__ or e).__name__}); check the network or proxy",
                reason="failed",
            ) from None
        redaction.register(self._credentials.token)

    def token(self) -> str:
        with self._lock:
            if not self._credentials.valid:
                self._refresh()
            return str(self._credentials.token)

    def refused(self, token: str) -> None:
        """The server answered 401 to `token`: get a new one (once, however many threads saw the 401)."""
        with self._lock:
            if self._credentials.token == token:
                self._refresh()

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        r.headers["Authorization"] = f"Bearer {self.token()}"
        return r
