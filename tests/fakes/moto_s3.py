"""moto's S3 server made to answer CompleteMultipartUpload as S3 does.

S3 answers a completed multipart upload with a ``<CompleteMultipartUploadResult>`` document
(https://docs.aws.amazon.com/AmazonS3/latest/API/API_CompleteMultipartUpload.html). moto 5.2's generic
serializer names the root ``<CompleteMultipartUploadResponse>``. Arrow's S3 client (what climb writes
object storage with) checks that root name, because S3 can report a failed completion inside a 200
(arrow/cpp/src/arrow/filesystem/s3fs.cc, CompleteMultipartUploadWithErrorFixup): any other root is an
error, so against unpatched moto every object above Arrow's 10 MB part size fails to commit, while the
same upload to S3 succeeds. botocore does not check the root, which is why boto3 tests never saw it.
"""

from __future__ import annotations

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
    S3Serializer._serialized_result_to_response = fixed  # type: ignore[method-assign]
