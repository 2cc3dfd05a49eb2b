"""Requests signed with the user's own AWS credentials (SigV4), for cloud copies that need them.

PhysioNet shares a credentialed project's AWS copy with the AWS account a user links on the project
page; reading it takes that account's credentials. They come from the standard AWS chain as botocore
resolves it (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN, AWS_PROFILE,
~/.aws/credentials and ~/.aws/config, SSO, instance roles): never from argv, never logged. The
signature covers the method, the URL and the Range / If-Range / x-amz-* headers. Pass a `SigV4` as
`auth=` to a ClimbSession, which sends it only to the origin the request started at: a redirect to
another host carries no signature, and the PhysioNet session cookie is never sent to the bucket.
"""

from __future__ import annotations

import os
from typing import Any

import requests

from climb_cli.errors import UsageError

_SIGNED = ("range", "if-range")
_OUT = ("Authorization", "X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Security-Token")


def _botocore() -> Any:
    try:
        import botocore.session  # type: ignore[import-untyped]
    except ImportError:
        raise UsageError("--mirror aws signs requests with botocore: pip install 'climb-cli[aws]'") from None
    return botocore.session


class SigV4(requests.auth.AuthBase):
    """SigV4 for S3 with the credentials the AWS chain resolves; `None` from `resolve` when there are none."""

    def __init__(self, credentials: Any, region: str) -> None:
        self._credentials = credentials
        self.region = region

    @classmethod
    def resolve(cls) -> SigV4 | None:
        session = _botocore().Session()
        creds = session.get_credentials()
        if creds is None:
            return None
        region = (
            os.environ.get("AWS_REGION")
            or os.environ.get("AWS_DEFAULT_REGION")
            or session.get_config_variable("region")
            or "us-east-1"
        )
        return cls(creds, region)

    def __repr__(self) -> str:  # never the keys
        return f"SigV4(region={self.region!r})"

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        from botocore.auth import S3SigV4Auth  # type: ignore[import-untyped]
        from botocore.awsrequest import AWSRequest  # type: ignore[import-untyped]

        headers = {
            k: v for k, v in r.headers.items() if k.lower() in _SIGNED or k.lower().startswith("x-amz-")
        }
        req = AWSRequest(method=r.method, url=r.url, headers=headers)
        S3SigV4Auth(self._credentials.get_frozen_credentials(), "s3", self.region).add_auth(req)
        for k in _OUT:
            if k in req.headers:
                r.headers[k] = req.headers[k]
        return r
