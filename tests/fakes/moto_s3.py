"""moto's S3 server made to answer CompleteMultipartUpload as S3 does, and one that checks signatures.

S3 answers a completed multipart upload with a ``<CompleteMultipartUploadResult>`` document
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html). moto 5.2's generic
serializer names the root ``<CompleteMultipartUploadResponse>``. Arrow's S3 client (what climb writes
object storage with) checks that root name, because S3 can report a failed completion inside a 200
(arrow/cpp/src/arrow/filesystem/s3fs.cc, CompleteMultipartUploadWithErrorFixup): any other root is an
error, so against unpatched moto every object above Arrow's 10 MB part size fails to commit, while the
same upload to S3 succeeds. botocore does not check the root, which is why boto3 tests never saw it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

_WRONG, _RIGHT = "CompleteMultipartUploadResponse", "CompleteMultipartUploadResult"


def complete_multipart_as_s3() -> None:
    """Patch moto's S3 serializer (in this process: ThreadedMotoServer serves from it). Idempotent."""
    from moto.core.serialize import S3Serializer

    original = S3Serializer._serialized_result_to_response
    if getattr(original, "climb_fixed", False):
        return

    def fixed(self: Any, resp: Any, result: Any, shape: Any, serialized: Any) -> Any:
        out = original(self, resp, result, shape, serialized)
        if self.operation_model.name == "CompleteMultipartUpload" and isinstance(out.get("body"), str):
            out["body"] = out["body"].replace(_WRONG, _RIGHT)
        return out

    fixed.climb_fixed = True  # type: ignore[attr-defined]
    S3Serializer._serialized_result_to_response = fixed  # type: ignore[method-assign,assignment]


@dataclass
class SignedS3:
    """A moto S3 server that checks signatures, with one IAM user allowed to read and write S3."""

    endpoint: str
    key_id: str
    secret: str
    client: Any  # boto3 S3 client signed as that user


@contextlib.contextmanager
def signed_s3() -> Iterator[SignedS3]:
    """moto's S3 server in its own process with request authentication on (INITIAL_NO_AUTH_ACTION_COUNT:
    the first 3 actions make the IAM user, its key and its policy; every later request is checked): an
    unsigned GET gets 403, a wrong secret 403 SignatureDoesNotMatch, as a bucket that PhysioNet shares only
    with the user's linked AWS account. A process of its own, because the switch is process-wide and the
    session's moto server (conftest.py) serves the tests that sign with made-up keys."""
    import boto3
    import requests

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, INITIAL_NO_AUTH_ACTION_COUNT="3")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                requests.get(f"{endpoint}/moto-api/", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        boot = {"endpoint_url": endpoint, "region_name": "us-east-1"}
        iam = boto3.client("iam", aws_access_key_id="boot", aws_secret_access_key="boot", **boot)
        iam.create_user(UserName="reader")
        key = iam.create_access_key(UserName="reader")["AccessKey"]
        policy = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'
        iam.put_user_policy(UserName="reader", PolicyName="s3", PolicyDocument=policy)
        kid, secret = key["AccessKeyId"], key["SecretAccessKey"]
        client = boto3.client("s3", aws_access_key_id=kid, aws_secret_access_key=secret, **boot)
        yield SignedS3(endpoint, kid, secret, client)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
