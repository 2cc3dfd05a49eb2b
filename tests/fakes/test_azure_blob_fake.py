"""The fake Azure Blob endpoint (Stanford AIMI) against the official client, azure-storage-blob 12.31.1,
unmodified: paged listing with Content-MD5, whole and ranged downloads, the SDK's If-Match-pinned chunked
download, SAS tokens the SDK signs itself, and expired or forged SAS refused as the service does."""

# ruff: noqa: F811  (fixtures imported from the source tests are parameters here)
from __future__ import annotations

import pytest

from tests.fakes.azure_blob import FakeAzureBlob
from tests.sources.test_aimi import BIG, BLOBS, CONTAINER, azure  # noqa: F401  (the fixture)


def test_azure_storage_blob_against_the_fake(azure: FakeAzureBlob) -> None:
    blob_mod = pytest.importorskip("azure.storage.blob")
    from azure.core.exceptions import ClientAuthenticationError, HttpResponseError

    azure.page_size = 2
    client = blob_mod.ContainerClient.from_container_url(azure.container_url(CONTAINER))
    listed = {b.name: b for b in client.list_blobs(name_starts_with="CheXpert-v1.0-small/")}
    assert set(listed) == set(BLOBS)
    import hashlib

    for name, data in BLOBS.items():
        assert listed[name].size == len(data)
        assert bytes(listed[name].content_settings.content_md5) == hashlib.md5(data).digest()
    big_name = next(n for n in BLOBS if n.endswith("view1_frontal.jpg"))
    assert client.download_blob(big_name).readall() == BIG
    assert client.download_blob(big_name, offset=1000, length=5000).readall() == BIG[1000:6000]
    # small chunks: the SDK's If-Match-pinned chunked download
    chunked = blob_mod.ContainerClient.from_container_url(
        azure.container_url(CONTAINER), max_single_get_size=100_000, max_chunk_get_size=100_000
    )
    assert chunked.download_blob(big_name, max_concurrency=2).readall() == BIG
    gets = [r for r in azure.requests_for("*/view1_frontal.jpg") if r.status == 206]
    assert len(gets) >= 8
    # a SAS the SDK signs with the account key is accepted: the fake checks signatures as Azure does
    import datetime as dt

    sas = blob_mod.generate_container_sas(
        azure.account, CONTAINER, account_key=azure.account_key,
        permission=blob_mod.ContainerSasPermissions(read=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )  # fmt: skip
    own = blob_mod.ContainerClient(f"{azure.base_url}/{azure.account}", CONTAINER, credential=sas)
    assert own.download_blob("CheXpert-v1.0-small/README.md").readall() == b"# readme\n"
    forged = sas.replace("sp=rl", "sp=rwl")
    with pytest.raises(ClientAuthenticationError):
        blob_mod.ContainerClient.from_container_url(
            f"{azure.base_url}/{azure.account}/{CONTAINER}?{forged}"
        ).download_blob("CheXpert-v1.0-small/README.md").readall()
    azure.advance(2 * 86400)
    with pytest.raises(ClientAuthenticationError) as e:
        list(client.list_blobs())
    assert getattr(e.value, "error_code", None) == "AuthenticationFailed"  # set by azure-core at runtime
    assert isinstance(e.value, HttpResponseError)
