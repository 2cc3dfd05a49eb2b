"""`climb plan`: the work as numbers before it starts, from what is known without downloading.

Per dataset: files and bytes (the raw manifest when something is downloaded, else the upstream listing
with `--list`, else the recipe's `raw_size`), samples (the recipe's expected split counts, else the
processed manifest), disk at each stage (raw, extracted, processed) and what can be deleted when, and
hours to download, verify and preprocess at the rates climb measured on this machine (rates.json,
written after every download and preprocess run) or the documented defaults below, for a number of
workers and connections. Each figure says where it came from ("measured", "manifest", "listing",
"recipe", "estimate") so a guess never passes for a measurement.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from climb_cli import atomic
from climb_cli.recipe import Recipe
from climb_cli.settings import Settings

MB = 1024 * 1024
# Defaults when nothing was measured here (documented in the README's plan section):
DOWNLOAD_MBPS_PER_CONNECTION = {"physionet": 2.0}  # PhysioNet throttles single connections
DOWNLOAD_MBPS_DEFAULT = 10.0  # cloud-backed hosts (Kaggle/GCS, Zenodo, S3, Hugging Face, ...)
HASH_MBPS_PER_WORKER = 400.0  # sha256 on one core (hashlib), before the disk limits it
ITEMS_PER_SECOND_PER_WORKER = {  # preprocess, one worker, by modality
    "ecg": 40.0,
    "eeg": 2.0,
    "image": 20.0,
    "xray": 20.0,
    "volume": 0.5,
    "video": 0.5,
}
ITEMS_PER_SECOND_DEFAULT = 5.0
PROCESSED_PER_RAW = 1.0  # processed bytes per raw input byte when no shard was written yet


def rates_path(settings: Settings) -> Path:
    return settings.data_dir / ".climb" / "rates.json"


def load_rates(settings: Settings) -> dict[str, Any]:
    try:
        data = json.loads(rates_path(settings).read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _record(settings: Settings, section: str, key: str, value: dict[str, float]) -> None:
    data = load_rates(settings)
    data.setdefault(section, {})[key] = value
    with contextlib.suppress(OSError):  # a rate is a convenience: a read-only data dir must not fail a run
        # a convenience lost at worst, never torn: no fsync on the way out of every download
        atomic.write_json(rates_path(settings), data, durable=False, indent=2, sort_keys=True)


def record_download(settings: Settings, kind: str, nbytes: int, seconds: float, connections: int) -> None:
    """Remember a download's rate per connection (runs of at least 1 MB only)."""
    if nbytes >= MB and seconds > 0:
        per = nbytes / seconds / max(1, connections) / MB
        _record(settings, "download", kind, {"mb_per_s_per_connection": round(per, 3), "bytes": nbytes})


def record_preprocess(
    settings: Settings, modality: str, items: int, seconds: float, workers: int, out_bytes: int
) -> None:
    """Remember a preprocess run's items per second per worker and output bytes per item (full runs)."""
    if items and seconds > 0:
        per = items / seconds / max(1, workers)
        _record(
            settings,
            "preprocess",
            modality,
            {"items_per_s_per_worker": round(per, 3), "bytes_per_item": out_bytes // items, "items": items},
        )


@dataclass
class Figure:
    value: float | None
    source: str  # measured | manifest | listing | recipe | estimate | default | unknown


@dataclass
class DatasetPlan:
    name: str
    modality: str
    files: Figure
    raw_bytes: Figure
    extracted_bytes: Figure
    processed_bytes: Figure
    samples: Figure
    download_hours: Figure
    verify_hours: Figure
    preprocess_hours: Figure
    deletable: list[str] = field(default_factory=list)

    @property
    def peak_bytes(self) -> float | None:
        parts = [self.raw_bytes.value, self.extracted_bytes.value, self.processed_bytes.value]
        return None if any(p is None for p in parts) else sum(parts)  # type: ignore[arg-type]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["peak_bytes"] = self.peak_bytes
        return d


def _manifest_totals(raw_dir: Path) -> tuple[int, int, int] | None:
    """(files, bytes, bytes of extracted archive members) from the raw manifest, in one SQL scan."""
    db = raw_dir / ".climb" / "manifest.sqlite"
    if not db.is_file():
        return None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            n, total, members = con.execute(
                "SELECT count(*), coalesce(sum(size), 0), "
                "coalesce(sum(CASE WHEN instr(url, '!/') > 0 THEN size ELSE 0 END), 0) FROM files"
            ).fetchone()
        finally:
            con.close()
    except sqlite3.DatabaseError:
        return None
    return int(n), int(total), int(members)


def _processed(settings: Settings, recipe: Recipe) -> tuple[int, int] | None:
    """(rows, bytes) of this recipe version's committed outputs, when present locally."""
    path = settings.processed_dir(recipe.name) / recipe.content_hash() / "manifest.json"
    try:
        m = json.loads(path.read_text())
        return sum(s["rows"] for s in m["shards"]), sum(s["bytes"] for s in m["shards"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _hours(amount: float | None, per_second: float) -> float | None:
    return None if amount is None or per_second <= 0 else round(amount / per_second / 3600, 3)


def plan_dataset(
    recipe: Recipe,
    settings: Settings,
    *,
    workers: int,
    connections: int,
    listing: tuple[int, int | None] | None = None,
    rates: dict[str, Any] | None = None,
) -> DatasetPlan:
    rates = load_rates(settings) if rates is None else rates
    known = _manifest_totals(settings.raw_dir(recipe.name))
    archives = any(s.extract for s in recipe.sources)
    if known is not None and known[0]:
        files, raw_bytes = Figure(known[0], "manifest"), Figure(known[1] - known[2], "manifest")
        extracted = Figure(known[2], "manifest") if archives else Figure(0, "manifest")
    elif listing is not None:
        files, raw_bytes = Figure(listing[0], "listing"), Figure(listing[1], "listing")
        extracted = Figure(listing[1], "estimate") if archives else Figure(0, "listing")
    else:
        size = int(recipe.raw_size) if recipe.raw_size else None
        files, raw_bytes = Figure(None, "unknown"), Figure(size, "recipe" if size else "unknown")
        extracted = Figure(size if archives else 0, "estimate" if archives else "recipe")
    done = _processed(settings, recipe)
    expected = sum(recipe.expect.splits.values()) if recipe.expect.splits else None
    if done:  # what was processed here beats the recipe's expectation (a subset, a smaller copy)
        samples = Figure(done[0], "manifest")
    elif expected:
        samples = Figure(expected, "recipe")
    else:
        samples = Figure(None, "unknown")
    per_item_bytes = rates.get("preprocess", {}).get(recipe.modality, {}).get("bytes_per_item")
    if done:
        processed = Figure(done[1], "measured")
    elif per_item_bytes and samples.value:
        processed = Figure(samples.value * per_item_bytes, "measured")
    else:
        inputs = (extracted.value or 0) + (raw_bytes.value or 0) if raw_bytes.value is not None else None
        processed = Figure(None if inputs is None else inputs * PROCESSED_PER_RAW, "estimate")

    kind = recipe.sources[0].kind if recipe.sources else ""
    measured = rates.get("download", {}).get(kind, {}).get("mb_per_s_per_connection")
    per_conn = measured or DOWNLOAD_MBPS_PER_CONNECTION.get(kind, DOWNLOAD_MBPS_DEFAULT)
    streams = max(1, min(connections, int(files.value) if files.value else connections))
    download = Figure(_hours(raw_bytes.value, per_conn * MB * streams), "measured" if measured else "default")
    verify = Figure(
        _hours(
            (raw_bytes.value or 0) + (extracted.value or 0) if raw_bytes.value is not None else None,
            HASH_MBPS_PER_WORKER * MB * workers,
        ),
        "default",
    )
    measured_items = rates.get("preprocess", {}).get(recipe.modality, {}).get("items_per_s_per_worker")
    per_item = measured_items or ITEMS_PER_SECOND_PER_WORKER.get(recipe.modality, ITEMS_PER_SECOND_DEFAULT)
    preprocess = Figure(
        _hours(samples.value, per_item * workers), "measured" if measured_items else "default"
    )

    deletable = []
    if archives:
        keep = [s.id for s in recipe.sources if s.extract and s.keep_archive]
        deletable.append(
            "archives, once extracted and verified"
            + (
                f" (sources {', '.join(keep)} keep them: set keep_archive: false)"
                if keep
                else " (done by climb)"
            )
        )
    deletable.append("raw files, once `climb verify --outputs` passes (only if you will not rebuild)")
    return DatasetPlan(
        recipe.name,
        recipe.modality,
        files,
        raw_bytes,
        extracted,
        processed,
        samples,
        download,
        verify,
        preprocess,
        deletable,
    )


def totals(plans: list[DatasetPlan]) -> dict[str, Any]:
    def add(attr: str) -> tuple[float, int]:
        vals = [getattr(p, attr).value for p in plans]
        return sum(v for v in vals if v is not None), sum(1 for v in vals if v is None)

    out: dict[str, Any] = {"datasets": len(plans)}
    for attr in (
        "files",
        "raw_bytes",
        "extracted_bytes",
        "processed_bytes",
        "samples",
        "download_hours",
        "verify_hours",
        "preprocess_hours",
    ):
        value, unknown = add(attr)
        out[attr] = {"value": value, "unknown": unknown}
    peaks = [p.peak_bytes for p in plans]
    out["peak_bytes"] = {"value": sum(v for v in peaks if v is not None), "unknown": peaks.count(None)}
    return out
