"""The recommendation: the best student within a budget, per dataset, said in one paragraph.

Among the students of a dataset (control cells excluded) whose end-to-end CPU latency at
batch 1 (p50), file size and retention are within ``max_latency_ms``, ``max_size_mb`` and
``min_retention``, the one with the best mean score wins (ties: the faster). The paragraph says
what it gives up to the teacher, what distillation gained over labels alone, what the next
best within the budget would cost, and what the best student outside it would give.
"""

from __future__ import annotations

from pathlib import Path

from kdexam.errors import KdexamError
from kdexam.exam import leaderboard


def amount(value: float, metric: str, greater_is_better: bool) -> str:
    """A difference of scores in words: points (× 100) of a bounded score such as accuracy or
    Pearson's r; the plain difference of an error such as mse, where points would mean nothing."""
    return f"{value * 100:.1f} points of {metric}" if greater_is_better else f"{value:.4g} of {metric}"


def _better(e: dict) -> tuple:
    s = e["score"] if e["greater_is_better"] else -e["score"]
    return (s, -(e.get("e2e_ms_b1") or float("inf")))


def within(e: dict, budget: dict) -> bool:
    """Does the student entry ``e`` meet every limit of ``budget`` (a limit it has no figure for fails it)?"""
    checks = (("max_latency_ms", "e2e_ms_b1", lambda v, lim: v <= lim), ("max_size_mb", "size_mb", lambda v, lim: v <= lim),
              ("min_retention", "retention", lambda v, lim: v >= lim))
    for key, figure, ok in checks:
        limit = budget.get(key)
        if limit is not None and (e.get(figure) is None or not ok(e[figure], limit)):
            return False
    return True


def _describe(e: dict) -> str:
    return e["student"] + ("" if e["recipe"] == "kd" else f" ({e['recipe']})") + ("" if e["transfer"] == "none" else f" with transfer set {e['transfer']}")


def _cost(e: dict) -> str:
    parts = []
    if e.get("e2e_ms_b1") is not None:
        parts.append(f"{e['e2e_ms_b1']:.3f} ms per text at batch 1 ({e.get('backend')}"
                     + (f", {e['speedup']:.0f}x faster than the teacher)" if e.get("speedup") else ")"))
    if e.get("size_mb") is not None:
        parts.append(f"{e['size_mb']:.1f} MB on disk")
    if e.get("peak_mb") is not None:
        parts.append(f"{e['peak_mb']:.0f} MB serving memory")
    return ", ".join(parts) or "cost not measured"


def budget_text(budget: dict) -> str:
    parts = [f"latency ≤ {budget['max_latency_ms']:g} ms" if budget.get("max_latency_ms") is not None else None,
             f"size ≤ {budget['max_size_mb']:g} MB" if budget.get("max_size_mb") is not None else None,
             f"retention ≥ {budget['min_retention']:g}" if budget.get("min_retention") is not None else None]
    return ", ".join(p for p in parts if p) or "no limits"


def recommend(summary: dict, budget: dict) -> dict[str, dict]:
    """``{dataset: {"choice": entry or None, "text": paragraph}}``."""
    out = {}
    for name, ds in summary["datasets"].items():
        students = [e for e in ds["students"] if e.get("score") is not None]
        ok = sorted((e for e in students if within(e, budget)), key=_better, reverse=True)
        best_any = max(students, key=_better, default=None)
        metric = students[0]["primary_metric"] if students else "score"
        if not students:
            out[name] = {"choice": None, "text": f"On {name}, no student finished; the failed cells below say why."}
            continue
        if not ok:
            text = f"On {name}, no student meets the budget ({budget_text(budget)})."
            if best_any:
                text += (f" The best student overall is {_describe(best_any)}: {metric} {best_any['score']:.4f}"
                         + (f" (retention {best_any['retention']:.3f})" if best_any.get("retention") is not None else "")
                         + f", {_cost(best_any)}.")
            out[name] = {"choice": None, "text": text}
            continue
        c = ok[0]
        teacher = next((t for t in ds["teachers"] if t["teacher"] == c["teacher"]), None)  # its own teacher
        text = (f"On {name}, choose **{_describe(c)}** (budget: {budget_text(budget)}): {metric} {c['score']:.4f}"
                + (f" ± {c['score_std']:.4f} over {c['n']} seeds" if c["n"] > 1 else "")
                + (f", retention {c['retention']:.3f}" if c.get("retention") is not None else "")
                + (f", label loyalty {c['label_loyalty']:.3f}" if c.get("label_loyalty") is not None else "")
                + f"; {_cost(c)}.")
        if teacher and teacher.get("score") is not None:
            gap = (teacher["score"] - c["score"]) * (1 if c["greater_is_better"] else -1)
            up = c["greater_is_better"]
            text += (f" It gives up {amount(gap, metric, up)} to the teacher {teacher['teacher']} ({teacher['score']:.4f})."
                     if gap >= 0 else f" It beats the teacher {teacher['teacher']} ({teacher['score']:.4f}) by "
                     f"{amount(-gap, metric, up)}: the teacher is weak here.")
        if c.get("kd_gain") is not None:
            if c["kd_gain"] >= 0:
                text += (f" Distillation gained {amount(c['kd_gain'], metric, c['greater_is_better'])} over the same student "
                         "trained on labels alone.")
            else:
                text += (f" But distillation cost it {amount(-c['kd_gain'], metric, c['greater_is_better'])}: the same student "
                         f"trained on labels alone scores {c['control_score']:.4f}{leaderboard.on_seeds(c)} at the same cost, so "
                         "train that one (or a better teacher) instead.")
        if len(ok) > 1:
            n2 = ok[1]
            text += f" The next best within the budget, {_describe(n2)}, scores {n2['score']:.4f} at {_cost(n2)}."
        if best_any is not None and best_any is not c:
            text += f" Outside the budget, {_describe(best_any)} would score {best_any['score']:.4f} at {_cost(best_any)}."
        out[name] = {"choice": c, "text": text}
    return out


def best_run(entry: dict) -> str:
    """The run directory of the entry's best seed (its metrics.json score)."""
    from kdexam.evaluation.results import read_result

    runs = [(read_result(d).score, d) for d in entry["run_dirs"]]
    scored = [r for r in runs if r[0] is not None] or runs  # (a seed without a score, diverged, is never the best)
    sign = 1 if entry["greater_is_better"] else -1
    return max(scored, key=lambda r: sign * r[0] if r[0] is not None else 0.0)[1]


def export_best(recommendations: dict[str, dict], out: Path, trust_remote_code: bool = False) -> list[dict]:
    """Export each dataset's choice (its best seed) to ``out/best/DATASET`` (ONNX; int8 too when
    int8 was its fastest backend); returns what was exported and the command to predict with it."""
    from kdexam import api
    from kdexam.exam.grid import dataset_slugs

    done, slugs = [], dataset_slugs(recommendations)
    for name, rec in recommendations.items():
        c = rec["choice"]
        if c is None:
            continue
        run = best_run(c)
        backends = dict(zip(c["run_dirs"], c.get("run_backends") or []))
        int8 = (backends.get(run) or c.get("backend")) == "onnx-int8"  # the exported seed's own fastest backend
        target = out / "best" / slugs[name]
        info = api.export(run, quantize="int8" if int8 else None, out=target, trust_remote_code=trust_remote_code)
        done.append({"dataset": name, "run": run, "export": str(target), "int8": int8, "parity_ok": info.get("parity_ok"),
                     "command": f"kdexam predict {target} --input texts.txt" + (" --quantized" if int8 else "")})
    if not done:
        raise KdexamError("No student meets the budget on any dataset, so there is nothing to export; loosen the budget.")
    return done
