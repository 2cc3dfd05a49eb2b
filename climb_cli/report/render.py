"""HTML rendering of a dataset page and the corpus index: one self-contained file each (inline CSS, SVG
and data: URI images, no JavaScript, no external requests).

Every value is escaped; paths are shown relative to the data dir; no clock time is written (only the
times recorded in the data, e.g. when files were verified), so the same data renders to the same bytes.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

from climb_cli import __version__
from climb_cli.report import charts
from climb_cli.report.gather import Count, DatasetFacts
from climb_cli.report.thumbs import MAX_SAMPLES, Samples, Thumb
from climb_cli.ui import human

PAPER_BYTES = 19.01e12  # CLIMB's README: 19.01 TB
PAPER_SAMPLES = 4.51e6  # and 4.51 M samples
MAX_SHARDS_LISTED = 12

CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f6f7f9;color:#1d2430;
 font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif}
main{max-width:1120px;margin:0 auto;padding:20px 32px 48px;background:#fff;min-height:100vh}
a{color:#2b5aa6;text-decoration:none}a:hover{text-decoration:underline}
h1{font-size:26px;line-height:1.25;margin:4px 0 6px;font-weight:650}
h2{font-size:17px;margin:30px 0 10px;padding-bottom:5px;border-bottom:1px solid #dfe3ea;font-weight:650}
h3{font-size:14px;margin:0 0 6px;font-weight:650}
code,.mono{font:12.5px/1.4 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
.crumbs{color:#6a7383;font-size:13px;margin:0}
.sub{margin:0 0 14px;color:#4a5362}
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;
 background:#e8edf5;color:#2b3d5c;margin-right:4px}
.badge.open{background:#e1f3e6;color:#1d6b36}.badge.registered{background:#fff2d6;color:#7a5300}
.badge.credentialed{background:#fde4e1;color:#8f2a1d}
.badge.processed{background:#e1f3e6;color:#1d6b36}.badge.verified,.badge.downloaded{background:#e6effc;color:#24518f}
.badge.not-downloaded{background:#eceef2;color:#5b6473}.badge.older{background:#fff2d6;color:#7a5300}
.cards{display:grid;grid-template-columns:repeat(4,1fr);gap:12px;margin:8px 0 4px}
.card{border:1px solid #dfe3ea;border-radius:8px;padding:10px 14px;background:#fbfcfd}
.card .k{color:#6a7383;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:22px;font-weight:650;margin:2px 0}
.card .d{color:#4a5362;font-size:12.5px}
.card.warn{border-color:#e8b4aa;background:#fdf6f4}.card.warn .v{color:#b03a24}
dl.facts{display:grid;grid-template-columns:150px 1fr;gap:4px 16px;margin:0}
dl.facts dt{color:#6a7383}dl.facts dd{margin:0;overflow-wrap:anywhere}
.two{display:grid;grid-template-columns:1fr 1fr;gap:28px}
table{border-collapse:collapse;width:100%}
th{text-align:left;font-weight:600;color:#4a5362;font-size:12.5px;border-bottom:1px solid #dfe3ea;
 padding:4px 8px}
td{padding:3px 8px;border-bottom:1px solid #eef0f4;vertical-align:middle}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.bar{padding:0 4px;width:158px}td.bar svg{display:block}
.off{color:#b03a24;font-weight:650}.ok{color:#1d6b36}.muted{color:#7a8393}
.legend{font-size:12px;color:#4a5362;margin:0 0 8px}.key{margin-right:14px;white-space:nowrap}
.key svg{vertical-align:-1px}
.note{color:#4a5362;font-size:13px;margin:6px 0 10px}
.samples{display:grid;grid-template-columns:repeat(3,1fr);gap:14px}
.samples.volume{grid-template-columns:repeat(2,1fr)}.samples.video{grid-template-columns:1fr}
figure{margin:0;border:1px solid #dfe3ea;border-radius:8px;padding:10px;background:#fbfcfd}
figure .pics{display:flex;gap:8px;align-items:flex-end;justify-content:center;flex-wrap:wrap;min-height:60px}
figure .pics span{display:flex;flex-direction:column;align-items:center;font-size:11px;color:#6a7383}
figure img{display:block;background:#000;border-radius:3px}
figcaption{margin-top:6px;font-size:12.5px;color:#4a5362;overflow-wrap:anywhere}
figcaption b{color:#1d2430}
svg.trace{background:#fff;border:1px solid #eef0f4;border-radius:3px;max-width:100%;height:auto}
svg.trace .grid{stroke:#eef0f4;stroke-width:1}
svg.trace .wave{fill:none;stroke:#1d4f9a;stroke-width:1}
svg.trace .lead{font:11px ui-monospace,"DejaVu Sans Mono",monospace;fill:#4a5362}
ol.steps{margin:0;padding-left:22px}ol.steps li{margin:3px 0}
.param{display:inline-block;background:#f0f2f6;border-radius:4px;padding:0 6px;margin:1px 2px;font-size:12px}
.totals{display:grid;grid-template-columns:max-content 430px max-content;gap:6px 14px;align-items:center}
footer{margin-top:36px;color:#7a8393;font-size:12px;border-top:1px solid #dfe3ea;padding-top:8px}
@media (max-width:900px){.cards{grid-template-columns:1fr 1fr}.two{grid-template-columns:1fr}
 .samples,.samples.volume{grid-template-columns:1fr}}
"""


def esc(v: Any) -> str:
    return html.escape(str(v), quote=True)


def num(v: int | None) -> str:
    return "—" if v is None else f"{v:,}"


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta name="generator" content="climb {esc(__version__)}">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n<main>\n{body}\n"
        f"<footer>Written by <code>climb report</code> {esc(__version__)} from the recipe and what climb "
        "recorded in the data dir (raw manifest, manifest.json, errors.parquet, shards). The same data "
        "gives the same file, so reports can be compared with <code>diff</code>.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _badge(text: str, cls: str = "") -> str:
    return f'<span class="badge {esc(cls)}">{esc(text)}</span>'


def _state_cls(state: str) -> str:
    return "older" if "older" in state else state.replace(" ", "-")


def _card(key: str, value: str, detail: str, warn: bool = False) -> str:
    return (
        f'<div class="card{" warn" if warn else ""}"><div class="k">{esc(key)}</div>'
        f'<div class="v">{value}</div><div class="d">{detail}</div></div>'
    )


def _value(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_value(x)}" for k, x in v.items()) + "}"
    return str(v)


def _params(params: dict[str, Any]) -> str:
    """Parameters as chips; those left unset (None) are not shown."""
    return " ".join(
        f'<span class="param">{esc(k)}: {esc(_value(v))}</span>' for k, v in params.items() if v is not None
    )


# ------------------------------------------------------------------------------------------ a dataset


def _cards(f: DatasetFacts) -> str:
    r, raw, out = f.recipe, f.raw, f.outputs
    if raw is None or raw.files == 0:
        expected = f"the recipe expects ~{human(int(r.raw_size))}" if r.raw_size else "nothing recorded"
        raw_card = _card("Raw on disk", "—", f"not downloaded; {esc(expected)}")
    elif not raw.recorded:
        raw_card = _card(
            "Raw on disk",
            esc(human(raw.bytes)),
            f"{raw.files:,} files, not recorded yet: <code>climb download {esc(r.name)}</code> checks "
            "and records them",
        )
    else:
        if raw.verified == raw.files:
            v = f"all verified, last {when(raw.last_verified)}"
        elif raw.verified:
            v = f"{raw.verified:,} verified (last {when(raw.last_verified)})"
        else:
            v = f"never re-verified: <code>climb verify {esc(r.name)}</code>"
        raw_card = _card("Raw on disk", esc(human(raw.bytes)), f"{raw.files:,} files; {v}")
    if out.manifest is None:
        proc = _card("Processed", "—", "not processed" + (" for this recipe" if out.other_hashes else ""))
    else:
        proc = _card(
            "Processed",
            f"{out.rows:,}",
            f"samples in {len(out.shards):,} shard(s), {esc(human(out.bytes))}",
        )
    err = f.errors.count
    failed = _card(
        "Failed items",
        f"{err:,}" if out.manifest is not None else "—",
        "listed below with reasons" if err else ("none" if out.manifest is not None else "not processed"),
        warn=bool(err),
    )
    split_sizes = [c.expected for c in f.splits if c.expected is not None]
    exp_total = sum(split_sizes) if split_sizes else None
    off = [c for c in (*f.splits, *f.classes) if c.differs]
    if exp_total is None:
        expect = _card("Expected", "—", "the recipe states no split sizes")
    else:
        detail = (
            f"{len(off)} count(s) differ (flagged below)"
            if off
            else ("all counts as expected" if out.manifest is not None else "samples per the recipe")
        )
        expect = _card("Expected", f"{exp_total:,}", esc(detail), warn=bool(off))
    return f'<div class="cards">{raw_card}{proc}{failed}{expect}</div>'


def _about(f: DatasetFacts) -> str:
    r = f.recipe
    rows = [("Licence", esc(r.license)), ("Access", _badge(r.access, r.access))]
    if r.homepage:
        rows.append(("Homepage", f'<a href="{esc(r.homepage)}">{esc(r.homepage)}</a>'))
    if r.citation:
        rows.append(("Citation", esc(r.citation)))
    for s in r.sources:
        rows.append((f"Source <code>{esc(s.id)}</code>", f"<b>{esc(s.kind)}</b> {_params(s.params)}"))
    rows.append(("Checksums", esc(r.checksums)))
    if r.raw_size:
        rows.append(("Raw size (recipe)", esc(human(int(r.raw_size)))))
    if r.notes:
        rows.append(("Notes", esc(r.notes)))
    items = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    return f"<h2>About</h2><dl class='facts'>{items}</dl>"


def _diff(c: Count) -> str:
    if c.actual is None or c.expected is None:
        return '<span class="muted">—</span>'
    d = c.actual - c.expected
    if d == 0:
        return '<span class="ok">= expected</span>'
    pct = f" ({d / c.expected:+.1%})" if c.expected else ""
    if c.differs:
        return f'<span class="off">⚠ {d:+,}{pct}</span>'
    return f'<span class="muted">{d:+,}{pct}, within tolerance</span>'


def _count_table(title: str, counts: list[Count], what: str, processed: bool) -> str:
    if not counts:
        return f"<div><h3>{esc(title)}</h3><p class='note'>No {esc(what)} to show.</p></div>"
    scale = max((max(c.actual or 0, c.expected or 0) for c in counts), default=1)
    rows = "".join(
        f"<tr><td>{esc(c.name)}</td><td class='bar'>{charts.count_bar(c, scale)}</td>"
        f"<td class='n'>{num(c.actual)}</td><td class='n'>{num(c.expected)}</td>"
        f"<td class='n'>{_diff(c)}</td></tr>"
        for c in counts
    )
    note = "" if processed else "<p class='note'>Nothing processed yet: expected counts only.</p>"
    return (
        f"<div><h3>{esc(title)}</h3>{note}<table class='counts'><thead><tr><th>{esc(what)}</th><th></th>"
        "<th class='n'>on disk</th><th class='n'>expected</th><th class='n'>difference</th></tr></thead>"
        f"<tbody>{rows}</tbody></table></div>"
    )


def _counts(f: DatasetFacts) -> str:
    r = f.recipe
    processed = f.outputs.manifest is not None
    kind = getattr(getattr(getattr(r, "index", None), "labels", None), "kind", "")
    class_title = {
        "multilabel": "Class balance (items with each label)",
        "multiclass": "Class balance (items per class)",
    }.get(kind, "Class balance")
    counts = [*f.splits, *f.classes]
    tol = max((c.tolerance for c in counts), default=0.0)
    tol_note = (
        f"Counts off by more than {tol:.1%} (the recipe's tolerance) are flagged."
        if tol
        else "Any difference from the recipe's expected count is flagged."
    )
    if all(c.expected is None for c in counts):
        tol_note = "The recipe states no expected counts."
    return (
        f"<h2>Splits and classes</h2><p class='legend'>{charts.legend()}</p>"
        f"<div class='two'>{_count_table('Split sizes (samples)', f.splits, 'split', processed)}"
        f"{_count_table(class_title, f.classes, 'class', processed)}</div>"
        f"<p class='note'>{esc(tol_note)}</p>"
    )


def _figure(t: Thumb) -> str:
    labels = ", ".join(t.labels) if t.labels else "no label"
    if t.svg:
        body = t.svg
    else:
        body = "".join(
            f'<span><img src="{p.uri}" width="{p.width}" height="{p.height}" alt="{esc(p.alt)}">'
            f"{esc(p.alt) if t.kind in ('volume', 'video') else ''}</span>"
            for p in t.pictures
        )
    return (
        f'<figure class="{esc(t.kind)}"><div class="pics">{body}</div>'
        f"<figcaption><b>{esc(t.id)}</b> · {esc(t.split)} · {esc(labels)}"
        f"{'<br>' + esc(t.caption) if t.caption else ''}</figcaption></figure>"
    )


def _rows_table(thumbs: list[Thumb]) -> str:
    cols: list[str] = []
    for t in thumbs:
        cols += [k for k in t.cells if k not in cols]
    cols = cols[:8]
    head = "".join(f"<th>{esc(c)}</th>" for c in ["id", "split", "labels", *cols])
    body = "".join(
        "<tr>"
        + f"<td><code>{esc(t.id)}</code></td><td>{esc(t.split)}</td><td>{esc(', '.join(t.labels))}</td>"
        + "".join(f"<td>{esc(t.cells.get(c, ''))}</td>" for c in cols)
        + "</tr>"
        for t in thumbs
    )
    return f"<table class='rows'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _samples(f: DatasetFacts, s: Samples | None, shown: bool) -> str:
    head = "<h2>Samples</h2>"
    if not shown:
        return head + (
            "<p class='note'>Samples are not shown: this report was written with <code>--no-samples</code> "
            "(for data whose agreement forbids showing it outside the secure machine).</p>"
        )
    broken = (
        f"<p class='note off'>The shards could not be read ({esc(s.error)}): run "
        f"<code>climb verify --outputs {esc(f.name)}</code>.</p>"
        if s is not None and s.error
        else ""
    )
    if s is None or not s.thumbs:
        return head + (broken or "<p class='note'>No processed samples yet.</p>")
    note = (
        f"<p class='note'>Showing {len(s.thumbs)} of {s.total:,} samples: the first rows of each split's "
        f"first shard, taking the splits in turn. A report never shows more than {MAX_SAMPLES}.</p>"
    )
    note += broken
    if all(t.kind in ("table", "text") for t in s.thumbs):
        return head + note + _rows_table(s.thumbs)
    kinds = {t.kind for t in s.thumbs}
    grid = f"samples {kinds.pop()}" if len(kinds) == 1 else "samples"
    return head + note + f'<div class="{esc(grid)}">' + "".join(_figure(t) for t in s.thumbs) + "</div>"


def _errors(f: DatasetFacts) -> str:
    e = f.errors
    head = "<h2>Failed items</h2>"
    if f.outputs.manifest is None:
        return head + "<p class='note'>Not processed yet.</p>"
    if not e.count:
        return head + "<p class='note ok'>Every item was processed.</p>"
    reasons = "".join(
        f"<tr><td>{esc(r)}</td><td class='n'>{n:,}</td><td><code>{esc(i)}</code></td></tr>"
        for r, n, i in e.reasons[:20]
    )
    more = f" ({len(e.reasons) - 20} more kinds)" if len(e.reasons) > 20 else ""
    listed = "".join(
        f"<tr><td><code>{esc(i)}</code></td><td>{esc(s)}</td><td>{esc(r)}</td></tr>" for i, s, r in e.listed
    )
    rest = (
        f"<p class='note'>The first {len(e.listed)} of {e.count:,} are listed; all are in "
        "<code>errors.parquet</code>.</p>"
        if e.count > len(e.listed)
        else ""
    )
    return (
        f"{head}<p class='note'><span class='off'>{e.count:,} item(s) failed</span>, "
        f"in {len(e.reasons)} kind(s){more}.</p>"
        "<table><thead><tr><th>kind of failure (first example)</th><th class='n'>items</th><th>e.g.</th>"
        "</tr></thead>"
        f"<tbody>{reasons}</tbody></table><h3 style='margin-top:14px'>Items</h3>"
        f"<table><thead><tr><th>id</th><th>split</th><th>reason</th></tr></thead><tbody>{listed}</tbody></table>"
        f"{rest}"
    )


def _steps(f: DatasetFacts) -> str:
    steps = f.recipe.steps
    if not steps:
        return "<h2>Steps</h2><p class='note'>The recipe has no preprocessing steps.</p>"
    items = "".join(f"<li><code>{esc(s.name)}</code> " + _params(s.params) + "</li>" for s in steps)
    out = f.recipe.output
    shard = human(int(out.shard_size))
    return (
        f"<h2>Steps</h2><ol class='steps'>{items}</ol><p class='note'>Output: {esc(out.format)}, "
        f"shards of ~{esc(shard)}, {esc(out.compression)}, arrays {esc(out.array_encoding)}.</p>"
    )


def _provenance(f: DatasetFacts, data_dir: Any) -> str:
    r, out = f.recipe, f.outputs
    m = out.manifest or {}

    def rel(p: Any) -> str:
        try:
            return p.relative_to(data_dir).as_posix()
        except ValueError:
            return str(p)

    rows = [
        ("Recipe hash", f"<code>{esc(r.content_hash())}</code>"),
        ("Recipe file", esc("/".join(r.path.parts[-2:])) if r.path else "—"),
        ("climb version", esc(m.get("climb_version", "—")) + " (wrote the outputs)"),
        ("Input digest", f"<code>{esc(m.get('input_digest', '—'))}</code>"),
        ("Raw folder", f"<code>{esc(rel(f.raw_dir))}</code> in the data dir"),
        ("Outputs", f"<code>{esc(rel(out.dir))}</code>" + ("" if m else " (not written yet)")),
    ]
    if out.other_hashes:
        rows.append(("Older outputs", ", ".join(f"<code>{esc(h)}</code>" for h in out.other_hashes)))
    facts = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows)
    shards = out.shards
    table = ""
    if shards:
        body = "".join(
            f"<tr><td><code>{esc(s.get('name'))}</code></td><td>{esc(s.get('split'))}</td>"
            f"<td class='n'>{num(s.get('rows'))}</td><td class='n'>{esc(human(s.get('bytes')))}</td>"
            f"<td><code>{esc(str(s.get('sha256', ''))[:16])}…</code></td></tr>"
            for s in shards[:MAX_SHARDS_LISTED]
        )
        more = (
            f"<p class='note'>{len(shards) - MAX_SHARDS_LISTED:,} more shards are listed in "
            "manifest.json.</p>"
            if len(shards) > MAX_SHARDS_LISTED
            else ""
        )
        table = (
            "<h3 style='margin-top:14px'>Shards</h3><table><thead><tr><th>shard</th><th>split</th>"
            "<th class='n'>rows</th><th class='n'>bytes</th><th>sha256</th></tr></thead>"
            f"<tbody>{body}</tbody></table>{more}"
        )
    return f"<h2>Provenance</h2><dl class='facts'>{facts}</dl>{table}"


def dataset_page(f: DatasetFacts, samples: Samples | None, *, shown: bool, data_dir: Any) -> str:
    r = f.recipe
    head = (
        f"<p class='crumbs'><a href='index.html'>Corpus index</a> › {esc(r.name)}</p>"
        f"<h1>{esc(r.title)}</h1><p class='sub'><code>{esc(r.name)}</code> · {_badge(r.modality)}"
        f"{_badge(r.access, r.access)}{_badge(f.state, _state_cls(f.state))}</p>"
    )
    body = (
        head
        + _cards(f)
        + _counts(f)
        + _samples(f, samples, shown)
        + _errors(f)
        + _about(f)
        + _steps(f)
        + _provenance(f, data_dir)
    )
    return _page(f"{r.name}: {r.title} — climb report", body)


# ---------------------------------------------------------------------------------------- the corpus


def _pct(value: float, total: float) -> str:
    frac = value / total
    return "0%" if value == 0 else ("< 0.01%" if frac < 1e-4 else f"{frac:.2%}")


def index_page(facts: list[DatasetFacts], pages: dict[str, str]) -> str:
    raw_bytes = sum(f.raw.bytes for f in facts if f.raw)
    samples = sum(f.outputs.rows for f in facts)
    expected_bytes = sum(int(f.recipe.raw_size) for f in facts if f.recipe.raw_size)
    downloaded = sum(1 for f in facts if f.raw and f.raw.files)
    processed = sum(1 for f in facts if f.outputs.manifest is not None)
    problems = sum(1 for f in facts if f.problems)
    sized = [f for f in facts if f.recipe.raw_size]
    declared = (
        f"The {len(sized)} recipe(s) that give a raw size add up to ~{human(expected_bytes)}."
        if sized
        else "No recipe gives a raw size."
    )
    cards = (
        '<div class="cards">'
        + _card("Datasets", f"{len(facts):,}", "with a recipe")
        + _card("Downloaded", f"{downloaded:,}", "have raw files on disk")
        + _card("Processed", f"{processed:,}", "have shards for their current recipe")
        + _card("With problems", f"{problems:,}", "see the last column", warn=bool(problems))
        + "</div>"
    )
    totals = (
        "<h2>Against the paper</h2><div class='totals'>"
        f"<span>Raw on disk</span>{charts.progress(raw_bytes, PAPER_BYTES, 'raw bytes')}"
        f"<span><b>{esc(human(raw_bytes))}</b> of 19.01 TB ({esc(_pct(raw_bytes, PAPER_BYTES))})</span>"
        f"<span>Samples processed</span>{charts.progress(samples, PAPER_SAMPLES, 'samples')}"
        f"<span><b>{samples:,}</b> of 4.51 M ({esc(_pct(samples, PAPER_SAMPLES))})</span></div>"
        f"<p class='note'>{esc(declared)} 19.01 TB and 4.51 M samples are the totals in CLIMB's README.</p>"
    )
    rows = []
    for f in facts:
        r = f.recipe
        name = f'<a href="{esc(pages[r.name])}">{esc(r.name)}</a>' if r.name in pages else esc(r.name)
        if f.raw and f.raw.files:
            size = esc(human(f.raw.bytes))
        else:
            size = f"<span class='muted'>~{esc(human(int(r.raw_size)))}</span>" if r.raw_size else "—"
        if f.outputs.manifest is not None:
            size += f"<br><span class='muted'>{esc(human(f.outputs.bytes))} processed</span>"
        done = f.outputs.manifest is not None
        probs = "<br>".join(f"<span class='off'>{esc(p)}</span>" for p in f.problems) or (
            "<span class='ok'>none</span>" if done else "<span class='muted'>—</span>"
        )
        rows.append(
            f"<tr><td>{name}<br><span class='muted'>{esc(r.title)}</span></td><td>{esc(r.modality)}</td>"
            f"<td>{esc(', '.join(dict.fromkeys(s.kind for s in r.sources)))}</td>"
            f"<td>{_badge(r.access, r.access)}</td><td>{_badge(f.state, _state_cls(f.state))}</td>"
            f"<td class='n'>{size}</td><td class='n'>{num(f.outputs.rows) if done else '—'}</td>"
            f"<td>{probs}</td></tr>"
        )
    table = (
        "<h2>Datasets</h2><table class='corpus'><thead><tr><th>dataset</th><th>modality</th><th>source</th>"
        "<th>access</th><th>state</th><th class='n'>size</th><th class='n'>samples</th><th>problems</th>"
        f"</tr></thead><tbody>{''.join(rows)}</tbody>"
        f"<tfoot><tr><th>total</th><th></th><th></th><th></th><th></th><th class='n'>{esc(human(raw_bytes))}"
        f"</th><th class='n'>{samples:,}</th><th></th></tr></tfoot></table>"
    )
    head = "<h1>CLIMB corpus</h1><p class='sub'>What is on disk, per dataset, and how far the corpus is.</p>"
    return _page("CLIMB corpus — climb report", head + cards + totals + table)
