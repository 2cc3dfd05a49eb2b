"""PhysioNet's cloud copy (`--mirror aws-open`): the file list and its sums come from PhysioNet, the
bytes from the public physionet-open bucket (moto's S3 server on 127.0.0.1, anonymous reads); every file
is checked against the same upstream SHA256SUMS.txt, so a wrong object in the bucket is caught."""

from __future__ import annotations

import json
from pathlib import Path

from climb_cli.acquire import download
from climb_cli.fakes.physionet import FakePhysioNet
from climb_cli.manifest import RawManifest
from climb_cli.settings import Settings
from tests.conftest import TEST_PASSWORD, run_climb, write_recipe
from tests.test_pipeline import SOURCE, _recipe

BUCKET = "physionet-open"


def _publish(s3, project: Path, prefix: str = "ptb-xl/1.0.3/") -> int:  # type: ignore[no-untyped-def]
    """The bucket as PhysioNet runs it: anonymous reads (a public-read bucket policy), <slug>/<version>/."""
    s3.create_bucket(Bucket=BUCKET)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": "*",
                "Action": "s3:GetObject",
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
            }
        ],
    }
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))
    n = 0
    for p in sorted(project.rglob("*")):
        if p.is_file():
            s3.put_object(Bucket=BUCKET, Key=prefix + p.relative_to(project).as_posix(), Body=p.read_bytes())
            n += 1
    return n


def test_bytes_from_the_bucket_sums_from_physionet(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path, s3, moto_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    _publish(s3, mirror_copy)
    recipe = _recipe(tmp_path / "recipes")
    mirrored = settings.with_(
        mirror="aws-open", mirrors={**settings.mirrors, "physionet-open": f"{moto_endpoint}/{BUCKET}"}
    )
    report = download(recipe, mirrored)
    assert report.ok and report.count("downloaded") > 30
    origin_files = [r.path for r in server.log if "/files/" in r.path and r.method == "GET"]
    assert [p.rsplit("/", 1)[1] for p in origin_files] == ["SHA256SUMS.txt"]  # only the sums from PhysioNet
    assert not [r for r in server.log if r.path.endswith((".dat", ".hea"))]
    rows = RawManifest.for_dataset(mirrored.raw_dir("toyecg")).load()
    assert rows and all(e.url.startswith(f"{moto_endpoint}/{BUCKET}/ptb-xl/1.0.3/") for e in rows.values())
    for rel in rows:  # the same files a PhysioNet download gives
        assert (mirror_copy / rel).read_bytes() == (mirrored.raw_dir("toyecg") / rel).read_bytes()


def test_a_wrong_object_in_the_bucket_fails_against_the_upstream_sums(
    tmp_path: Path, settings: Settings, server: FakePhysioNet, mirror_copy: Path, s3, moto_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    _publish(s3, mirror_copy)
    victim = sorted(mirror_copy.glob("records500/*/*.dat"))[0].relative_to(mirror_copy).as_posix()
    data = (mirror_copy / victim).read_bytes()
    s3.put_object(Bucket=BUCKET, Key=f"ptb-xl/1.0.3/{victim}", Body=data[:-1] + bytes([data[-1] ^ 1]))
    recipe = _recipe(tmp_path / "recipes")
    mirrored = settings.with_(
        mirror="aws-open", mirrors={**settings.mirrors, "physionet-open": f"{moto_endpoint}/{BUCKET}"}
    )
    report = download(recipe, mirrored)
    assert not report.ok and report.count("failed") == 1
    assert not (mirrored.raw_dir("toyecg") / victim).exists()  # never under its final name
    assert "sha256" in report.why.lower() or "checksum" in report.why.lower(), report.why


def test_a_project_missing_from_the_bucket_and_a_credentialed_one_are_one_line(
    tmp_path: Path, server: FakePhysioNet, mirror_copy: Path, s3, moto_endpoint: str
) -> None:  # type: ignore[no-untyped-def]
    _publish(s3, mirror_copy, prefix="some-other-project/1.0/")
    recipes = tmp_path / "recipes"
    _recipe(recipes)
    write_recipe(recipes, "secretecg", SOURCE.replace("ptb-xl", "secret-ecg"), access="credentialed")
    env = {
        "CLIMB_PHYSIONET_URL": server.base_url,
        "CLIMB_PHYSIONET_OPEN_URL": f"{moto_endpoint}/{BUCKET}",
        "CLIMB_BACKOFF": "0.01",
        "PHYSIONET_USERNAME": "ada",
        "PHYSIONET_PASSWORD": TEST_PASSWORD,
    }
    common = ["--data-dir", str(tmp_path / "data"), "--recipes", str(recipes), "download"]
    r = run_climb(*common, "toyecg", "--mirror", "aws-open", env=env)
    assert r.returncode == 1 and "is not in the aws-open mirror" in r.stderr and "--mirror origin" in r.stderr
    assert "Traceback" not in r.stderr
    r = run_climb(*common, "secretecg", "--mirror", "aws-open", env=env)
    assert r.returncode == 1 and "open projects only" in r.stderr, r.stderr
    assert not [x for x in server.log if x.path.endswith(".dat")]
    r = run_climb(*common, "toyecg", "--mirror", "azure", env=env)
    assert r.returncode == 2 and "origin, aws-open, aws, gcs" in r.stderr
