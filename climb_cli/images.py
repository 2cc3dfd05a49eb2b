"""Images fetched from URLs in a dataset's outputs (LAION): `climb download NAME --stage images`.

The recipe's `images:` block names the output column of URLs and the column to rank them by; the stage reads
the processed shards of the current recipe hash, ranks the distinct URLs by score (highest first, ties by
URL), keeps the `top` N (CLIMB's medical LAION subset: 1,000,000), and fetches them:

- bounded concurrency (`connections`) and a per-host rate limit (`per_host` requests per second);
- never a credential: a fresh session without auth, cookies or ~/.netrc, and any `user:pass@` in a URL
  dropped before the request (proxies and private CAs from the environment still apply);
- each image's bytes are capped at `max_bytes` while streaming, checked to be an image by its magic bytes
  (JPEG, PNG, GIF, WebP, BMP, TIFF), and written atomically under `raw/<name>/<into>/<aa>/<sha256(url)>.<ext>`
  (no part of the URL becomes a path);
- dead links (HTTP 404/410 and other 4xx, DNS failure, timeout, refused connection, not an image, too large)
  are counted by reason and listed in `<into>/dead.tsv`, never fatal; 429/5xx and dropped connections are
  `failed` and tried again on the next run;
- resumable: every outcome is appended to `raw/<name>/.climb/images.jsonl` as it happens; a rerun skips
  URLs already fetched (their file present) or dead (unless `retry_dead`), so it fetches nothing new when
  nothing changed;
- the counts go into `<into>/manifest.json` and one summary line.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests
import urllib3

from climb_cli import atomic, redaction, space
from climb_cli.errors import ClimbError, RecipeError
from climb_cli.net.session import ClimbSession, UnknownHost
from climb_cli.recipe import ImagesSpec, Recipe
from climb_cli.settings import Settings
from climb_cli.sources.base import USER_AGENT

_MAGIC: list[tuple[bytes, int, str]] = [  # (bytes, offset, extension)
    (b"\xff\xd8\xff", 0, "jpg"),
    (b"\x89PNG\r\n\x1a\n", 0, "png"),
    (b"GIF87a", 0, "gif"),
    (b"GIF89a", 0, "gif"),
    (b"WEBP", 8, "webp"),
    (b"BM", 0, "bmp"),
    (b"II*\x00", 0, "tif"),
    (b"MM\x00*", 0, "tif"),
]
DEAD_STATUSES = "dead"
FAILED = "failed"


def image_kind(data: bytes) -> str | None:
    """The file extension of an image by its magic bytes, or None."""
    for magic, offset, ext in _MAGIC:
        if data[offset : offset + len(magic)] == magic and (ext != "webp" or data[:4] == b"RIFF"):
            return ext
    return None


def without_userinfo(url: str) -> str:
    """The URL with any `user:password@` removed: no credential ever reaches an image host."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def url_key(url: str) -> str:
    return hashlib.sha256(url.encode("utf-8")).hexdigest()


@dataclass
class ImagesReport:
    dataset: str
    wanted: int = 0
    fetched: int = 0
    already: int = 0
    bytes: int = 0
    dead: Counter[str] = field(default_factory=Counter)
    failed: Counter[str] = field(default_factory=Counter)
    dead_list: Path | None = None

    def summary(self) -> str:
        def counts(c: Counter[str]) -> str:
            return f" ({', '.join(f'{k}: {v}' for k, v in sorted(c.items()))})" if c else ""

        dead, failed = sum(self.dead.values()), sum(self.failed.values())
        line = (
            f"{self.dataset} images: {self.wanted} wanted, {self.fetched} fetched, {self.already} already "
            f"there, {dead} dead{counts(self.dead)}, {failed} failed{counts(self.failed)}"
        )
        if self.failed:
            line += " (tried again on the next run)"
        if self.dead and self.dead_list is not None:
            line += f"; dead links listed in {self.dead_list}"
        return line


class _HostPacer:
    """At most `rate` request starts per second per host."""

    def __init__(self, rate: float) -> None:
        self.gap = 1.0 / rate
        self.next: dict[str, float] = {}
        self.lock = threading.Lock()

    def wait(self, host: str) -> None:
        with self.lock:
            now = time.monotonic()
            at = max(now, self.next.get(host, now))
            self.next[host] = at + self.gap
        if at > now:
            time.sleep(at - now)


def ranked_urls(recipe: Recipe, settings: Settings, spec: ImagesSpec) -> list[tuple[str, float]]:
    """(url, score) of the current outputs: distinct URLs, highest score first (ties by URL), top N."""
    import pyarrow.parquet as pq

    data = settings.processed_dir(recipe.name) / recipe.content_hash() / "data"
    shards = sorted(data.glob("*.parquet")) if data.is_dir() else []
    if not shards:
        raise ClimbError(
            f"{recipe.name}: no outputs of this recipe to read URLs from ({data}); run `climb preprocess "
            f"{recipe.name}` first"
        )
    best: dict[str, float] = {}
    for shard in shards:
        names = pq.ParquetFile(shard).schema_arrow.names
        for col in (spec.url_column, spec.rank_by):
            if col not in names:
                field_name = "url_column" if col == spec.url_column else "rank_by"
                raise RecipeError(
                    f"{recipe.name}: images.{field_name} {col!r} is not an output column "
                    f"({shard.name}: {', '.join(names)})"
                )
        t = pq.read_table(shard, columns=[spec.url_column, spec.rank_by])
        for urls, ranks in zip(t.column(0).to_pylist(), t.column(1).to_pylist(), strict=True):
            urls = urls if isinstance(urls, list) else [urls]
            ranks = ranks if isinstance(ranks, list) else [ranks] * len(urls)
            for url, rank in zip(urls, ranks, strict=True):
                if isinstance(url, str) and url and rank is not None:
                    best[url] = max(float(rank), best.get(url, float("-inf")))
    order = sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))
    return order[: spec.top] if spec.top else order


def _load_state(path: Path) -> dict[str, dict[str, Any]]:
    """url key -> the last outcome recorded (a torn last line from a crash is ignored)."""
    state: dict[str, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return state
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and isinstance(rec.get("key"), str):
            state[rec["key"]] = rec
    return state


def _fetch_one(session: requests.Session, url: str, spec: ImagesSpec) -> tuple[str, str, bytes]:
    """(status, reason or extension, bytes): status is ok, dead or failed."""
    target = without_userinfo(url)
    if urlsplit(target).scheme not in ("http", "https"):
        return DEAD_STATUSES, "not an http(s) URL", b""
    start = time.monotonic()
    try:
        resp = session.get(target, stream=True, timeout=(spec.timeout, spec.timeout))
    except UnknownHost:
        return DEAD_STATUSES, "DNS failure", b""
    except requests.Timeout:
        return DEAD_STATUSES, "timeout", b""
    except requests.ConnectionError:
        return FAILED, "connection failed", b""
    except (requests.RequestException, ClimbError) as e:
        return DEAD_STATUSES, type(e).__name__, b""
    try:
        return _read_image(resp, spec, start)
    finally:
        resp.close()


def _read_image(resp: requests.Response, spec: ImagesSpec, start: float) -> tuple[str, str, bytes]:
    """The body, read as it arrives (urllib3's read1), so a body that trickles in is cut at `timeout`."""
    with resp:
        if resp.status_code == 429 or resp.status_code >= 500:
            return FAILED, f"HTTP {resp.status_code}", b""
        if resp.status_code != 200:
            return DEAD_STATUSES, f"HTTP {resp.status_code}", b""
        length = resp.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > spec.max_bytes:
            return DEAD_STATUSES, "too large", b""
        buf = bytearray()
        try:
            while True:
                chunk = resp.raw.read1(64 * 1024)
                if not chunk:
                    break
                buf += chunk
                if len(buf) > spec.max_bytes:
                    return DEAD_STATUSES, "too large", b""
                if time.monotonic() - start > spec.timeout:
                    return DEAD_STATUSES, "timeout", b""
        except (requests.Timeout, urllib3.exceptions.TimeoutError, TimeoutError):
            return DEAD_STATUSES, "timeout", b""
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError):
            return FAILED, "connection dropped", b""
    data = bytes(buf)
    ext = image_kind(data)
    if ext is None:
        return DEAD_STATUSES, "not an image", b""
    return "ok", ext, data


def check_images(recipe: Recipe, settings: Settings) -> tuple[list[str], list[str], int]:
    """`climb verify` for the images stage: (missing, corrupt, checked) of the images it recorded as fetched,
    each file's sha256 against the one recorded when it was written."""
    raw = settings.raw_dir(recipe.name)
    missing, corrupt, checked = [], [], 0
    for rec in _load_state(raw / ".climb" / "images.jsonl").values():
        if rec.get("status") != "ok":
            continue
        rel = str(rec.get("file", ""))
        checked += 1
        try:
            digest = hashlib.sha256((raw / rel).read_bytes()).hexdigest()
        except FileNotFoundError:
            missing.append(rel)
            continue
        if digest != rec.get("sha256"):
            corrupt.append(rel)
    return sorted(missing), sorted(corrupt), checked


def fetch_images(
    recipe: Recipe, settings: Settings, *, retry_dead: bool = False, limit: int | None = None
) -> ImagesReport:
    """Fetch the recipe's image URLs (see the module docstring); returns the counts."""
    spec = recipe.images
    if spec is None:
        raise RecipeError(f"{recipe.name}: the recipe has no `images:` stage")
    report = ImagesReport(recipe.name)
    urls = ranked_urls(recipe, settings, spec)
    if limit is not None:
        urls = urls[:limit]
    report.wanted = len(urls)
    raw = settings.raw_dir(recipe.name)
    folder = raw / spec.into
    folder.mkdir(parents=True, exist_ok=True)
    state_path = raw / ".climb" / "images.jsonl"
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state = _load_state(state_path)
    todo: list[tuple[str, str]] = []
    for url, _ in urls:
        key = url_key(url)
        rec = state.get(key)
        if rec and rec.get("status") == "ok" and (raw / str(rec.get("file", ""))).is_file():
            report.already += 1
        elif rec and rec.get("status") == DEAD_STATUSES and not retry_dead:
            report.dead[str(rec.get("reason"))] += 1
        else:
            todo.append((url, key))
    session = ClimbSession(USER_AGENT, pool_maxsize=spec.connections)
    pacer = _HostPacer(spec.per_host)
    write_lock = threading.Lock()

    def work(item: tuple[str, str]) -> None:
        url, key = item
        pacer.wait(urlsplit(without_userinfo(url)).netloc.lower())
        status, what, data = _fetch_one(session, url, spec)
        rec: dict[str, Any] = {"key": key, "url": redaction.redact_url(url), "status": status}
        if status == "ok":
            rel = f"{spec.into}/{key[:2]}/{key}.{what}"
            short = space.shortfall(raw, len(data), settings.min_free)
            if short:
                raise space.full_line(raw, len(data))
            (raw / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic.write_bytes(raw / rel, data)
            rec.update(file=rel, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        else:
            rec["reason"] = what
        with write_lock:
            with state_path.open("a", encoding="utf-8") as fh:
                fh.write(json.dumps(rec, sort_keys=True) + "\n")
            if status == "ok":
                report.fetched += 1
                report.bytes += len(data)
            elif status == DEAD_STATUSES:
                report.dead[what] += 1
            else:
                report.failed[what] += 1

    step = spec.connections * 64  # futures in flight stay bounded, whatever `top` is
    with space.said_when_full(raw), ThreadPoolExecutor(max_workers=spec.connections) as pool:
        for start in range(0, len(todo), step):
            for future in [pool.submit(work, item) for item in todo[start : start + step]]:
                future.result()
    final = _load_state(state_path)
    dead = sorted(
        (str(final[url_key(u)].get("reason")), redaction.redact_url(u))
        for u, _ in urls
        if final.get(url_key(u), {}).get("status") == DEAD_STATUSES
    )
    report.dead_list = folder / "dead.tsv"
    atomic.write_text(report.dead_list, "reason\turl\n" + "".join(f"{r}\t{u}\n" for r, u in dead))
    atomic.write_json(
        folder / "manifest.json",
        {
            "dataset": recipe.name,
            "recipe_hash": recipe.content_hash(),
            "wanted": report.wanted,
            "fetched_now": report.fetched,
            "present": sum(1 for u, _ in urls if final.get(url_key(u), {}).get("status") == "ok"),
            "dead": dict(sorted(Counter(r for r, _ in dead).items())),
            "failed": dict(sorted(report.failed.items())),
            "top": spec.top,
            "rank_by": spec.rank_by,
        },
        indent=1,
        sort_keys=True,
    )
    return report
