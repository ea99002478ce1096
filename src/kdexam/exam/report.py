"""Everything an exam directory shows, made from ``results.sqlite``: ``leaderboard.md`` and
``.csv``, ``plots/*.png``, ``recommendation.md`` and ``report.html`` — one self-contained page
(tables, plots embedded as data URIs, recommendation, warnings, the exam config, the environment,
and the methods and citations its cells actually used) that a person opens in a browser."""

from __future__ import annotations

import base64
import html
from pathlib import Path

import yaml

from kdexam.exam import leaderboard, plots
from kdexam.exam.recommend import recommend
from kdexam.exam.store import Store
from kdexam.paths import atomic_write_text

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1400px;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem} h2{border-bottom:1px solid #ddd;padding-bottom:.2rem;margin-top:2rem}
table{border-collapse:collapse;margin:.8rem 0;font-size:.86rem} th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child,td:nth-child(2),td:nth-child(3){text-align:left}
tr.teacher td{background:#fff8e1} tr.control td{color:#666;font-style:italic} tr.pareto td:first-child{font-weight:bold}
.rec{background:#eef7ee;border-left:4px solid #4a4;padding:.6rem 1rem;margin:.6rem 0}
.warn{background:#fff3f0;border-left:4px solid #d54;padding:.6rem 1rem;margin:.6rem 0}
pre{background:#f7f7f7;padding:.8rem;overflow-x:auto;font-size:.8rem} img{max-width:100%;border:1px solid #eee}
.small{color:#666;font-size:.85rem}
"""


def exam_ids(store: Store) -> list[str] | None:
    """The cells of the exam's current config (older cells stay in the database, out of the report)."""
    return store.get("cells")


def render(out: Path, store: Store, budget: dict | None = None) -> dict:
    """Write the leaderboard, plots, recommendation and report of the exam in ``out``; returns
    ``{"summary", "recommendations", "files"}``. ``budget`` (default: the config's) is stored."""
    cfg = store.get("config", {})
    if budget is None:
        budget = store.get("budget") or cfg.get("budget") or {}
    store.put("budget", budget)
    summary = leaderboard.summarise(store.rows(exam_ids(store)))
    files = leaderboard.write(out, summary)
    images = plots.plot_all(summary, out)
    files += list(images.values())
    recs = recommend(summary, budget)
    rec_md = "# Recommendation\n\n" + "\n\n".join(r["text"] for r in recs.values()) + "\n"
    atomic_write_text(out / "recommendation.md", rec_md)
    files.append(out / "recommendation.md")
    page = html_report(summary, recs, images, cfg, store.get("environment", {}), budget)
    atomic_write_text(out / "report.html", page)
    files.append(out / "report.html")
    return {"summary": summary, "recommendations": recs, "files": [str(f) for f in files]}


def _table(header: list[str], rows: list[list[str]], classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for i, r in enumerate(rows):
        cls = f' class="{classes[i]}"' if classes and classes[i] else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _md_bold(text: str) -> str:
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def _image(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<img alt="{html.escape(path.stem)} Pareto plots" src="data:image/png;base64,{data}">'


def html_report(summary: dict, recs: dict, images: dict, cfg: dict, env: dict, budget: dict) -> str:
    parts = [f"<h1>kdexam exam: {html.escape(str(cfg.get('name', 'exam')))}</h1>",
             f"<p class=small>{html.escape(env.get('date', ''))} · {html.escape(str(env.get('cpu', '')))} · "
             f"{env.get('cpu_count')} CPUs · bench threads {env.get('bench_threads')}</p>",
             "<h2>Recommendation</h2>"]
    parts += [f'<div class="rec">{_md_bold(r["text"])}</div>' for r in recs.values()]
    parts.append(f"<p class=small>Budget: {html.escape(str(budget or 'none'))}. Change it with "
                 "<code>kdexam exam DIR --max-latency-ms X --max-size-mb Y --min-retention R</code>; export the choice with "
                 "<code>--export-best</code>.</p>")
    for name, ds in summary["datasets"].items():
        metric = (ds["teachers"] or ds["students"] or [{}])[0].get("primary_metric", "score")
        parts.append(f"<h2>{html.escape(name)} <span class=small>({html.escape(metric)}, test split)</span></h2>")
        parts += [f'<div class="warn">{html.escape(w)}</div>' for w in ds["warnings"]]
        header, rows = leaderboard.dataset_tables(ds)
        classes = (["teacher"] * len(ds["teachers"])
                   + ["pareto" if e.get("pareto") else "" for e in sorted(
                       ds["students"], key=leaderboard.rank_key)]
                   + ["control"] * len(ds["controls"]))
        parts.append(_table(header, rows, classes))
        if name in images:
            parts.append(_image(images[name]))
    if summary["overall"]:
        parts += ["<h2>Overall</h2>", _table(*leaderboard.overall_rows(summary))]
    if summary["failed"]:
        parts.append("<h2>Failed cells</h2><ul>" + "".join(
            f"<li>{html.escape(str(f['role']))} {html.escape(str(f['dataset']))} / {html.escape(str(f['student'] or f['teacher']))}"
            f" / seed {f['seed']}: {html.escape(str(f['error']))}</li>" for f in summary["failed"]) + "</ul>")
    parts += ["<h2>How to read this</h2>", f"<p>{html.escape(' '.join((leaderboard.__doc__ or '').split()))}</p>"]
    citations = []
    for ds in summary["datasets"].values():
        for e in ds["students"] + ds["controls"]:
            citations += [c for c in e.get("citations", []) if c not in citations]
    methods = sorted({o for ds in summary["datasets"].values() for e in ds["students"] + ds["controls"] for o in e.get("objectives", [])})
    parts.append("<h2>Methods and citations</h2>")
    parts.append(f"<p>Objectives used by the cells: {html.escape(', '.join(methods) or 'none recorded')}.</p>")
    if citations:
        parts.append("<pre>" + html.escape("\n\n".join(citations)) + "</pre>")
    parts += ["<h2>Environment</h2>", "<pre>" + html.escape(yaml.safe_dump(env, sort_keys=False)) + "</pre>",
              "<h2>Exam config</h2>", "<pre>" + html.escape(yaml.safe_dump(cfg, sort_keys=False)) + "</pre>"]
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>kdexam exam: {html.escape(str(cfg.get('name', '')))}"
            f"</title><style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")
