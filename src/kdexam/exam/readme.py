"""Put an exam's results into a markdown file between two markers, so the README's results
section is generated from the exam's output, never copied by hand::

    python -m kdexam.exam.readme EXAM_DIR README.md

replaces what lies between ``<!-- exam-results:start -->`` and ``<!-- exam-results:end -->``
with the machine, the exam's wall time, each dataset's leaderboard, the warnings and the
recommendation (``make demo`` runs it after the default exam).
"""

from __future__ import annotations

import sys
from pathlib import Path

from kdexam.errors import KdexamError
from kdexam.exam import leaderboard
from kdexam.exam.recommend import budget_text, recommend
from kdexam.exam.store import Store
from kdexam.paths import atomic_write_text

START, END = "<!-- exam-results:start -->", "<!-- exam-results:end -->"


def section(exam_dir: Path) -> str:
    """The generated markdown for ``exam_dir``."""
    from kdexam.exam.report import exam_ids

    with Store(exam_dir / "results.sqlite") as store:
        summary = leaderboard.summarise(store.rows(exam_ids(store)))
        env, cfg = store.get("environment", {}), store.get("config", {})
        runs, budget = store.get("invocations", []), store.get("budget") or {}
    recs = recommend(summary, budget)
    if not runs:
        timing = "wall time not recorded"
    elif len(runs) == 1 and not runs[0].get("stopped"):
        r = runs[0]
        failed = f", {r['failed']} of them failed" if r.get("failed") else ""
        timing = f"one invocation ran all {r['cells']} cells{failed} in {r['seconds'] / 60:.1f} minutes"
    else:
        stopped = sum(bool(r.get("stopped")) for r in runs)
        timing = (f"{len(runs)} invocation{'s' if len(runs) > 1 else ''}{f' ({stopped} stopped before the end)' if stopped else ''}, "
                  f"{sum(r['seconds'] for r in runs) / 60:.1f} minutes in all")
    lines = [f"Generated from `{exam_dir}` (exam `{cfg.get('name')}`, {timing}) on {env.get('cpu')}, "
             f"{env.get('cpu_count')} CPUs, bench threads {env.get('bench_threads')}, torch {env.get('versions', {}).get('torch')}, "
             f"{env.get('date')}. `*`: Pareto-optimal in score against end-to-end latency; `s`: against file size.", ""]
    for name, ds in summary["datasets"].items():
        metric = (ds["teachers"] or ds["students"] or [{}])[0].get("primary_metric", "score")
        lines += [f"**{name}** ({metric}, test split)", "", leaderboard.md_table(*leaderboard.dataset_tables(ds)), ""]
        lines += [f"- Warning: {w}" for w in ds["warnings"]] + ([""] if ds["warnings"] else [])
    if summary["failed"]:
        lines += [f"- Failed: {f['dataset']} / {f['student'] or f['teacher']}: {f['error']}" for f in summary["failed"]] + [""]
    lines += [f"Recommendation (budget: {budget_text(budget)}; `kdexam exam DIR --max-latency-ms X` picks within another):", ""]
    lines += "\n>\n".join(f"> {r['text']}" for r in recs.values()).split("\n")  # one quoted paragraph per dataset
    return "\n".join(lines)


def update(exam_dir: str | Path, markdown_file: str | Path) -> None:
    path = Path(markdown_file)
    text = path.read_text(encoding="utf-8")
    if START not in text or END not in text:
        raise KdexamError(f"'{path}' has no {START} ... {END} markers; add them where the exam results go.")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    atomic_write_text(path, f"{head}{START}\n{section(Path(exam_dir))}\n{END}{tail}")


if __name__ == "__main__":  # pragma: no cover - used by make demo
    if len(sys.argv) != 3:
        sys.exit("usage: python -m kdexam.exam.readme EXAM_DIR README.md")
    update(sys.argv[1], sys.argv[2])
