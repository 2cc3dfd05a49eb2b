"""Object storage (--data-dir s3://...) against a real S3 API on 127.0.0.1 (moto's server), with pyarrow's
S3 client: shards, commit markers, errors.parquet and manifest.json land on the bucket; reruns are
idempotent; an object without its marker (a writer killed between the two) is never taken as committed."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from climb_cli.acquire import download
from climb_cli.catalog import Catalog
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.pipeline import preprocess
from climb_cli.settings import Settings
from climb_cli.storage import Remote, cache_dir, is_url, push_raw
from climb_cli.verify import verify_outputs
from tests.conftest import run_climb
from tests.test_pipeline import _hashes, _recipe

BUCKET = "climb-lab"


@pytest.fixture
def raw(tmp_path: Path, settings: Settings, server: FakePhysioNet) -> Settings:
    """The toy ECG set downloaded from the fake PhysioNet into a local data dir."""
    assert download(_recipe(tmp_path / "recipes"), settings).ok
    return settings


def _objects(s3, prefix: str = "") -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def _remote_settings(raw: Settings, tmp_path: Path) -> Settings:
    """The same raw files, with the data dir on the bucket (raw in the URL's local cache)."""
    url = f"s3://{BUCKET}/corpus"
    remote = raw.with_(remote=url, data_dir=tmp_path / "cache")
    import shutil

    shutil.copytree(raw.raw_dir("toyecg"), remote.raw_dir("toyecg"))
    return remote


def test_is_url_and_cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_url("s3://b/p") and is_url("gs://b") and not is_url("/data/x") and not is_url("C:\\x")
    monkeypatch.setenv("CLIMB_CACHE", str(tmp_path))
    a, b = cache_dir("s3://b/p"), cache_dir("s3://b/q")
    assert a != b and a.parent == tmp_path and a == cache_dir("s3://b/p/")
    s = Settings.from_env("s3://b/p/")
    assert s.remote == "s3://b/p" and s.data_dir == a and s.processed_url("x") == "s3://b/p/processed/x"


def test_preprocess_to_s3_is_byte_identical_to_local_and_reruns_skip(
    tmp_path: Path, raw: Settings, s3
) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=BUCKET)
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    local = preprocess(recipe, raw, workers=1)
    expected = _hashes(local.out_dir)
    remote = _remote_settings(raw, tmp_path)
    report = preprocess(recipe, remote, workers=2)
    assert report.rows == local.rows and report.skipped_units == 0
    prefix = f"corpus/processed/toyecg/{recipe.content_hash()}/"
    objs = _objects(s3, prefix)
    shards = {
        k.rsplit("/", 1)[1]: hashlib.sha256(v).hexdigest() for k, v in objs.items() if k.endswith(".parquet")
    }
    assert shards == expected  # the same bytes as on a local disk (shards and errors.parquet)
    names = {k[len(prefix) :] for k in objs}
    assert {"manifest.json", "errors.parquet"} <= names
    units = {u.name for u in report.units}
    assert {n for n in names if n.startswith(".commits/")} == {f".commits/{n}.json" for n in units}
    manifest = json.loads(objs[prefix + "manifest.json"])
    assert manifest == json.loads((local.out_dir / "manifest.json").read_text())
    assert not list((remote.processed_dir("toyecg") / recipe.content_hash()).glob("data/*.parquet"))
    # rerun: every unit committed, nothing written
    again = preprocess(recipe, remote, workers=1)
    assert again.skipped_units == len(again.units) == len(units)
    assert _objects(s3, prefix) == objs
    rep = verify_outputs(recipe, remote)
    assert rep.ok, rep.problems
    assert rep.rows == local.rows


def test_an_object_without_its_marker_is_not_committed(tmp_path: Path, raw: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    """A writer killed after the shard's PUT and before its marker's: the rerun redoes that shard; a
    shard replaced under its marker (same size, other bytes) is redone too; verify catches both."""
    s3.create_bucket(Bucket=BUCKET)
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    remote = _remote_settings(raw, tmp_path)
    first = preprocess(recipe, remote, workers=1)
    prefix = f"corpus/processed/toyecg/{recipe.content_hash()}/"
    good = _objects(s3, prefix)
    names = sorted(u.name for u in first.units)
    s3.delete_object(Bucket=BUCKET, Key=f"{prefix}.commits/{names[0]}.json")  # the marker never made it
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}data/{names[0]}", Body=b"half")  # nor all of the object
    key1 = f"{prefix}data/{names[1]}"
    s3.put_object(Bucket=BUCKET, Key=key1, Body=bytes(len(good[key1])))  # same size, other bytes
    assert not verify_outputs(recipe, remote).ok
    again = preprocess(recipe, remote, workers=1)
    assert again.skipped_units == len(names) - 2
    assert _objects(s3, prefix) == good
    assert verify_outputs(recipe, remote).ok


class _Requests(logging.Handler):
    """The moto server's request lines (werkzeug logs each one) in the order they arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.extend(re.findall(r'"([A-Z]+ \S+) HTTP/', record.getMessage()))


def test_a_shard_above_the_part_size_goes_up_in_parts_then_its_marker(
    tmp_path: Path, raw: Settings, s3
) -> None:  # type: ignore[no-untyped-def]
    """Arrow's S3 client sends an object larger than its part size (10 MB, fixed in Arrow: not settable from
    Python) as a multipart upload. One shard of the whole toy set is larger than that: its parts, then the
    completion, then its commit marker, and the marker vouches for the assembled object."""
    s3.create_bucket(Bucket=BUCKET)
    recipe = _recipe(tmp_path / "recipes", shard="256MB")
    path = tmp_path / "recipes" / "toyecg.yaml"  # rows of 12 x 10,000 float64, uncompressed: ~1 MB each
    text = path.read_text().replace("{hz: 500}", "{hz: 1000}").replace("{length: 5000}", "{length: 10000}")
    text = text.replace("{dtype: float32}", "{dtype: float64}").replace(
        "format: parquet", "format: parquet\n  compression: none"
    )
    path.write_text(text)
    recipe = Catalog([tmp_path / "recipes"]).load("toyecg")
    remote = _remote_settings(raw, tmp_path)
    seen = _Requests()
    log = logging.getLogger("werkzeug")
    log.addHandler(seen)
    old_level = log.level
    log.setLevel(logging.INFO)
    try:
        report = preprocess(recipe, remote, workers=1)
    finally:
        log.removeHandler(seen)
        log.setLevel(old_level)
    prefix = f"corpus/processed/toyecg/{recipe.content_hash()}/"
    big = [u for u in report.units if u.bytes > 10 * 1024 * 1024]
    assert big, f"no shard above 10 MB: {[u.bytes for u in report.units]}"
    name = big[0].name
    key = f"/{BUCKET}/{prefix}data/{name}"
    head = s3.head_object(Bucket=BUCKET, Key=f"{prefix}data/{name}")
    assert re.fullmatch(r'"[0-9a-f]{32}-[0-9]+"', head["ETag"]), head["ETag"]  # assembled from parts
    order = [i for i, line in enumerate(seen.lines) if line.split(" ", 1)[1].split("?")[0] == key]
    marker = [
        i
        for i, line in enumerate(seen.lines)
        if line.startswith(f"PUT /{BUCKET}/{prefix}.commits/{name}.json")
    ]
    steps = [seen.lines[i].split(" ", 1)[0] + ("uploadId=" in seen.lines[i]) * " part" for i in order]
    assert "POST" in steps[0] and steps[-1] == "POST part", steps  # created, parts, completed
    assert "PUT part" in steps
    assert marker and marker[0] > order[-1]  # the marker after the completion
    done = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{prefix}.commits/{name}.json")["Body"].read())
    body = s3.get_object(Bucket=BUCKET, Key=f"{prefix}data/{name}")["Body"].read()
    assert done["bytes"] == len(body) and done["sha256"] == hashlib.sha256(body).hexdigest()
    assert verify_outputs(recipe, remote).ok


def test_stale_shards_go_marker_first(tmp_path: Path, raw: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    s3.create_bucket(Bucket=BUCKET)
    recipe = _recipe(tmp_path / "recipes", shard="1MB")
    remote = _remote_settings(raw, tmp_path)
    preprocess(recipe, remote, workers=1)
    prefix = f"corpus/processed/toyecg/{recipe.content_hash()}/"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}data/train-09999.parquet", Body=b"old")
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}.commits/train-09999.parquet.json", Body=b"{}")
    preprocess(recipe, remote, workers=1)
    assert not [k for k in _objects(s3, prefix) if "09999" in k]


def test_raw_push_then_pull_on_another_machine_then_preprocess_via_the_cli(
    tmp_path: Path, raw: Settings, s3, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Machine A pushes its raw files and, last, its manifest; machine B (an empty cache) runs
    `climb --data-dir s3://... preprocess`, which pulls them, and `verify --outputs` reads the bucket."""
    s3.create_bucket(Bucket=BUCKET)
    url = f"s3://{BUCKET}/corpus"
    sent, nbytes = push_raw(raw.raw_dir("toyecg"), Remote(f"{url}/raw/toyecg"))
    files = [p for p in raw.raw_dir("toyecg").rglob("*") if p.is_file() and ".climb" not in p.parts]
    assert sent == len(files) and nbytes == sum(p.stat().st_size for p in files)
    keys = set(_objects(s3, "corpus/raw/toyecg/"))
    assert "corpus/raw/toyecg/.climb/manifest.sqlite" in keys
    assert push_raw(raw.raw_dir("toyecg"), Remote(f"{url}/raw/toyecg"))[0] == 0  # idempotent
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, shard="1MB")
    env = {"CLIMB_CACHE": str(tmp_path / "machine-b")}
    r = run_climb(
        "--data-dir", url, "--recipes", str(recipes), "preprocess", "toyecg", "--workers", "1", env=env
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"-> {url}/processed/toyecg/" in r.stdout.replace("\n", "")
    r = run_climb("--data-dir", url, "--recipes", str(recipes), "verify", "--outputs", "toyecg", env=env)
    assert r.returncode == 0 and "-> OK" in r.stdout, r.stdout + r.stderr
    data = f"{BUCKET}/corpus/processed/toyecg/{recipe.content_hash()}/data"
    table = pq.read_table(data, filesystem=Remote(url).fs)  # the shards read straight off the bucket
    assert table.num_rows == 30


def test_verify_outputs_on_s3_with_dask_via_the_cli(tmp_path: Path, raw: Settings, s3) -> None:  # type: ignore[no-untyped-def]
    """`climb --data-dir s3://... verify --outputs --engine dask`: the Dask workers read the shards off the
    bucket (each opens its own client from the AWS settings) and find a shard replaced under its marker."""
    pytest.importorskip("distributed", reason="dask.distributed is in the dask extra")
    from distributed import LocalCluster

    s3.create_bucket(Bucket=BUCKET)
    recipes = tmp_path / "recipes"
    recipe = _recipe(recipes, shard="1MB")
    remote = _remote_settings(raw, tmp_path)
    report = preprocess(recipe, remote, workers=1)
    url = f"s3://{BUCKET}/corpus"
    env = {"CLIMB_CACHE": str(tmp_path / "other-machine")}  # nothing local: every byte from the bucket
    # started after the s3 fixture set the AWS settings: the worker processes inherit them
    with LocalCluster(
        n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address="127.0.0.1:0", silence_logs=40
    ) as cluster:
        args = ["--data-dir", url, "--recipes", str(recipes), "verify", "--outputs", "toyecg"]
        dask = ["--engine", "dask", "--scheduler", cluster.scheduler_address]
        r = run_climb(*args, *dask, env=env)
        assert r.returncode == 0 and "-> OK" in r.stdout, r.stdout + r.stderr
        name = sorted(u.name for u in report.units)[1]
        key = f"corpus/processed/toyecg/{recipe.content_hash()}/data/{name}"
        size = len(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
        s3.put_object(Bucket=BUCKET, Key=key, Body=bytes(size))  # same size, other bytes
        r = run_climb(*args, *dask, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"data/{name}: sha256 differs from the manifest (corrupt or replaced)" in r.stdout + r.stderr
