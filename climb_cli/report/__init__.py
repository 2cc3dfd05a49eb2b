"""`climb report`: a static HTML page per dataset and an index page for the corpus.

gather.py reads what climb recorded (recipe, raw manifest, manifest.json, errors.parquet), thumbs.py
draws a few samples from the shards, charts.py draws the bars, render.py writes the HTML. Each page
is one self-contained file (no server, no JavaScript, images as data: URIs) and is a pure function of
the data: the same data gives the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from climb_cli.errors import ClimbError
from climb_cli.recipe import Recipe
from climb_cli.redaction import redact
from climb_cli.settings import Settings


@dataclass
class Written:
    pages: dict[str, Path]  # dataset -> its page
    index: Path


def default_dir(settings: Settings) -> Path:
    return settings.data_dir / "reports"


def write_reports(
    recipes: list[Recipe],
    settings: Settings,
    out_dir: Path | None = None,
    *,
    corpus: list[Recipe] | None = None,
    samples: bool = True,
) -> Written:
    """Write `<name>.html` for each recipe and `index.html` for the corpus (default: the same recipes;
    the index links every page present in out_dir)."""
    from climb_cli.report import render, thumbs
    from climb_cli.report.gather import gather

    out = out_dir or default_dir(settings)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClimbError(
            f"cannot write reports into {out}: {e.strerror or e}; choose a folder with --out"
        ) from None
    pages: dict[str, Path] = {}
    by_name = {r.name: r for r in corpus or []}
    by_name.update({r.name: r for r in recipes})
    gathered = {}
    for r in recipes:
        facts = gathered[r.name] = gather(r, settings)
        shown = None
        if samples and facts.outputs.manifest is not None:
            shown = thumbs.samples(facts.outputs.dir, facts.outputs.shards, facts.outputs.rows)
        page = render.dataset_page(facts, shown, shown=samples, data_dir=settings.data_dir)
        pages[r.name] = _write(out / f"{r.name}.html", page)
    facts_all = [gathered.get(n) or gather(by_name[n], settings) for n in sorted(by_name)]
    links = {n: f"{n}.html" for n in sorted(by_name) if (out / f"{n}.html").is_file()}
    index = _write(out / "index.html", render.index_page(facts_all, links))
    return Written(pages, index)


def _write(path: Path, page: str) -> Path:
    from climb_cli.atomic import write_text

    try:
        write_text(path, redact(page))
    except OSError as e:
        raise ClimbError(f"cannot write {path}: {e.strerror or e}; choose a folder with --out") from None
    return path
