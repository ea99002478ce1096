"""The leaderboard: each student's quality, loyalty and cost, mean ± std over seeds, per dataset
and overall, with its gain over the same student trained on labels alone and the Pareto front.

- **score**: the task's primary metric on the dataset's test split (mean ± sample std over seeds);
- **retention** = student score / teacher score; **loyalty** = agreement with the teacher's labels
  (``label``; for regression 1 − mean |teacher − student| / the teacher's range) on the same split
  (see :mod:`kdexam.evaluation.loyalty`);
- **KD gain** = score − the control's score (the control's − the student's where lower is better):
  the control is the same student, data and seeds trained on gold labels only (positive:
  distillation helped);
- **cost**, of the fastest CPU backend at batch 1 end to end (text in, prediction out):
  p50 latency at batch 1, latency per text at the largest batch, speedup over the teacher's
  PyTorch p50 (same run), model file size, serving peak memory; training minutes;
- **Pareto** (``*``): no other student of the dataset is at least as good in score and at least
  as fast (at batch 1) and better in one of them; ``s`` marks the same front against file size.
"""

from __future__ import annotations

import csv
import io
import math
import statistics
from collections import defaultdict
from pathlib import Path

from kdexam.paths import atomic_write_text

GROUP = ("dataset", "teacher", "student", "kind", "recipe", "transfer")


def _mean_std(values: list) -> tuple[float | None, float | None]:
    v = [float(x) for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not v:
        return None, None
    return statistics.fmean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def summarise(rows: list[dict]) -> dict:
    """Group the finished cells (``Store.rows``) into leaderboard entries.

    Returns ``{"datasets": {name: {"teachers": [...], "students": [...], "warnings": [...]}},
    "overall": [...], "failed": [...]}``; each student entry has mean/std of every figure."""
    groups: dict[tuple, list[dict]] = defaultdict(list)
    controls: dict[tuple, list[dict]] = defaultdict(list)
    out: dict = {"datasets": {}, "overall": [], "failed": []}
    for r in rows:
        if r["status"] == "failed":
            out["failed"].append({k: r[k] for k in ("role", "dataset", "teacher", "student", "recipe", "transfer", "seed", "error")})
        if r["status"] != "done" or not r["result"]:
            continue
        ds = out["datasets"].setdefault(r["dataset"], {"teachers": [], "students": [], "controls": [], "warnings": []})
        if r["role"] == "teacher":
            ds["teachers"].append(_teacher_entry(r))
        elif r["role"] == "control":
            controls[(r["dataset"], r["teacher"], r["student"])].append(r)
        else:
            groups[tuple(r[k] for k in GROUP)].append(r)
    for ds in out["datasets"].values():
        for t in ds["teachers"]:
            scored_with(t, rows)
    for key, members in controls.items():
        out["datasets"][key[0]]["controls"].append(_entry(dict(zip(GROUP, (*key, members[0]["kind"], "gold", "none"))), members))
    for key, members in groups.items():
        entry = _entry(dict(zip(GROUP, key)), members)
        control = [m for m in controls.get((entry["dataset"], entry["teacher"], entry["student"]), []) if m["seed"] in entry["seeds"]]
        if control:  # the gain is paired: the student's and the control's scores on the seeds both ran
            seeds = {m["seed"] for m in control}
            c_mean, c_std = _mean_std([m["result"]["score"] for m in control])
            s_mean, _ = _mean_std([m["result"]["score"] for m in members if m["seed"] in seeds])
            sign = 1 if entry["greater_is_better"] else -1
            entry["control_score"], entry["control_std"], entry["control_n"] = c_mean, c_std, len(control)
            entry["paired_score"] = s_mean  # (the student's mean over the seeds its control ran)
            entry["kd_gain"] = None if c_mean is None or s_mean is None else sign * (s_mean - c_mean)
        out["datasets"][entry["dataset"]]["students"].append(entry)
    for ds in out["datasets"].values():
        mark_pareto(ds["students"])
        ds["warnings"] = warnings(ds)
    out["overall"] = overall(out["datasets"])
    return out


def _teacher_entry(r: dict) -> dict:
    res = r["result"]
    cost = res.get("cost") or {}
    return {"dataset": r["dataset"], "teacher": r["teacher"], "model": res["model"], "run_dir": r["run_dir"],
            "own_data": res.get("data"),
            "primary_metric": res["primary_metric"], "greater_is_better": res["greater_is_better"], "score": res["score"],
            "params": res["params"], "e2e_ms_b1": cost.get("e2e_ms_b1"), "e2e_ms_per_text": cost.get("e2e_ms_per_text"),
            "size_mb": cost.get("size_mb"), "peak_mb": cost.get("peak_mb"), "train_minutes": _minutes(res.get("train_seconds"))}


def scored_with(teacher: dict, rows: list[dict]) -> None:
    """The teacher's score on the split its students were scored on, when they all were scored on
    one (the teacher score their runs recorded agrees). A given teacher run (``{run: DIR}``) scored
    itself on its own split, e.g. the whole test file where the exam's ``max_eval`` keeps 500, so
    its own figure would not be comparable with the students' or their retention; it stays as
    ``own_score`` where it differs. Students scored on different examples (a student's own
    ``max_eval``) leave the teacher's own score: no one figure is theirs."""
    seen = [r["result"]["teacher_score"] for r in rows
            if r["status"] == "done" and r["role"] != "teacher" and r["result"]
            and (r["dataset"], r["teacher"]) == (teacher["dataset"], teacher["teacher"])
            and r["result"].get("teacher_score") is not None]
    if not seen and not same_dataset(teacher.get("own_data"), teacher["dataset"]):
        # a given teacher run of other data, and no student scored it on this one: its own score is not this dataset's
        teacher["own_score"], teacher["score"] = teacher["score"], None
        return
    if not seen or max(seen) - min(seen) > 1e-9:
        return
    if teacher["score"] is None or abs(seen[0] - teacher["score"]) > 1e-9:
        teacher["own_score"] = teacher["score"]
    teacher["score"] = seen[0]


def same_dataset(recorded: str | None, exam_name: str) -> bool:
    """Whether the data a run's ``config.yaml`` records (a built-in name, or a path) is the exam's
    dataset ``exam_name`` (a name, or a path from where the exam runs): the same name, or paths to the
    same file or folder. Unknown counts as the same."""
    if recorded is None or recorded == exam_name:
        return True
    a, b = Path(recorded).expanduser(), Path(exam_name).expanduser()
    return a.exists() and b.exists() and a.resolve() == b.resolve()


def _minutes(seconds) -> float | None:
    return None if seconds is None else seconds / 60


def _entry(key: dict, members: list[dict]) -> dict:
    res = [m["result"] for m in members]
    first = res[0]
    by_seed = sorted(members, key=lambda m: m["seed"])
    entry = {**key, "seeds": [m["seed"] for m in by_seed], "n": len(members), "run_dirs": [m["run_dir"] for m in by_seed],
             "primary_metric": first["primary_metric"], "greater_is_better": first["greater_is_better"],
             "params": first["params"], "objectives": first.get("objectives", []),
             "citations": [c for r in res for c in r.get("citations", [])]}
    figures = {
        "score": [r["score"] for r in res], "retention": [r["retention"] for r in res],
        "label_loyalty": [r["loyalty"].get("label", r["loyalty"].get("regression")) for r in res],
        "probability_loyalty": [r["loyalty"].get("probability") for r in res],
        "train_minutes": [_minutes(r.get("train_seconds")) for r in res],
        "e2e_ms_b1": [(r.get("cost") or {}).get("e2e_ms_b1") for r in res],
        "e2e_ms_per_text": [(r.get("cost") or {}).get("e2e_ms_per_text") for r in res],
        "speedup": [(r.get("cost") or {}).get("speedup") for r in res],
        "size_mb": [(r.get("cost") or {}).get("size_mb") for r in res],
        "peak_mb": [(r.get("cost") or {}).get("peak_mb") for r in res],
    }
    for name, values in figures.items():
        entry[name], entry[name + "_std"] = _mean_std(values)
    entry["cost_batch"] = next((r["cost"]["batch"] for r in res if (r.get("cost") or {}).get("batch")), None)
    entry["run_backends"] = [((m["result"] or {}).get("cost") or {}).get("backend") for m in by_seed]  # (as run_dirs)
    backends = [b for b in entry["run_backends"] if b]
    # the seeds' most frequent fastest backend; a tie goes to the first seed's (not to a set's order, which varied by run)
    entry["backend"] = max(dict.fromkeys(backends), key=backends.count) if backends else None
    return entry


def rank_key(e: dict) -> tuple:
    """Sort key of an entry: best score first in the metric's direction; an entry without a score
    (every seed diverged, its NaN written as null) last, whichever way the metric points."""
    s = e.get("score")
    return (s is None, 0.0 if s is None else (-s if e["greater_is_better"] else s))


def _dominates(a: dict, b: dict, cost: str) -> bool:
    """``a`` is at least as good as ``b`` in score and cost, and better in one."""
    sa, sb = (a["score"], b["score"]) if a["greater_is_better"] else (-a["score"], -b["score"])
    return sa >= sb and a[cost] <= b[cost] and (sa > sb or a[cost] < b[cost])


def mark_pareto(entries: list[dict]) -> None:
    """``pareto`` (score vs batch-1 latency) and ``pareto_size`` (score vs file size) on each entry."""
    for cost, flag in (("e2e_ms_b1", "pareto"), ("size_mb", "pareto_size")):
        known = [e for e in entries if e.get(cost) is not None and e.get("score") is not None]
        for e in entries:
            e[flag] = e in known and not any(_dominates(o, e, cost) for o in known if o is not e)


SINGLE_SEED_NOISE = 0.01
"""A loss to the labels-only control smaller than this (one point of the primary metric) is not
called a loss when either side ran one seed: seeds alone move a small student by about that much."""


def noise(e: dict) -> float:
    """How much the KD gain of entry ``e`` moves by chance: the seeds' spread of the student and its
    control combined (at least half a point), or one point when either side ran a single seed."""
    if e.get("n", 1) < 2 or e.get("control_n", 1) < 2:
        return SINGLE_SEED_NOISE
    return max(0.005, ((e.get("score_std") or 0.0) ** 2 + (e.get("control_std") or 0.0) ** 2) ** 0.5)


def on_seeds(e: dict) -> str:
    """`` on the N seeds both ran`` where the control ran fewer seeds than the student (the KD gain is paired)."""
    return f" on the {e['control_n']} seeds both ran" if e.get("control_n", e["n"]) != e["n"] else ""


def warnings(ds: dict) -> list[str]:
    """Plain sentences: where distillation hurt (beyond :func:`noise`), and where the teacher is
    barely better than a student trained on labels alone (within one point of the primary metric);
    a given teacher run whose own score (on other examples) is not the one its row shows."""
    out = []
    for e in ds["students"]:
        gain = e.get("kd_gain")
        if gain is not None and gain < -noise(e) - 1e-9:  # (a loss of exactly the noise is not beyond it)
            out.append(f"Distillation hurt {e['student']} ({e['recipe']}, transfer {e['transfer']}) on {e['dataset']}: "
                       f"{_fmt(e['paired_score'])} against {_fmt(e['control_score'])} for the same student trained on labels alone"
                       f"{on_seeds(e)} ({gain:+.4f}); prefer the labels-only student or another recipe.")
    for t in ds["teachers"]:
        if t.get("own_score") is not None and t["score"] is None:
            out.append(f"The teacher {t['teacher']} on {t['dataset']} scored {_fmt(t['own_score'])} in its own run, on its "
                       f"own data ({t.get('own_data')}); no student finished on {t['dataset']} to score it there, so its "
                       "row gives no score.")
        elif t.get("own_score") is not None:
            out.append(f"The teacher {t['teacher']} on {t['dataset']} scored {_fmt(t['own_score'])} in its own run, on "
                       f"other examples than the exam's (its whole evaluation split, say, where the exam's max_eval keeps "
                       f"fewer); its row gives {_fmt(t['score'])}, its score on the examples its students were scored on.")
        best = max((c for c in ds["controls"] if c.get("score") is not None and c["teacher"] == t["teacher"]),
                   key=lambda c: c["score"] if c["greater_is_better"] else -c["score"], default=None)
        if best is None or t["score"] is None:
            continue
        margin = (t["score"] - best["score"]) * (1 if t["greater_is_better"] else -1)
        if margin < 0.01:
            where = (f"is no better than {best['student']} trained on labels alone ({_fmt(best['score'])})" if margin <= 0 else
                     f"is only {margin * 100:.1f} points above {best['student']} trained on labels alone ({_fmt(best['score'])})")
            out.append(f"The teacher {t['teacher']} on {t['dataset']} ({_fmt(t['score'])}) {where}: there is little for "
                       "distillation to transfer; fine-tune the teacher longer or use a stronger one.")
    return out


def overall(datasets: dict) -> list[dict]:
    """Per (student, recipe, transfer) across datasets: mean retention, KD gain, speedup and
    latency over the datasets it ran on."""
    by: dict[tuple, list[dict]] = defaultdict(list)
    for ds in datasets.values():
        for e in ds["students"]:
            by[(e["student"], e["recipe"], e["transfer"])].append(e)
    rows = []
    for (student, recipe, transfer), es in by.items():
        row = {"student": student, "recipe": recipe, "transfer": transfer, "datasets": len({e["dataset"] for e in es})}
        for name in ("retention", "kd_gain", "speedup", "e2e_ms_b1", "size_mb", "train_minutes"):
            row[name], _ = _mean_std([e.get(name) for e in es])
        rows.append(row)
    return sorted(rows, key=lambda r: (r["retention"] is None, -(r["retention"] or 0)))  # (no retention: last)


# --- writing ----------------------------------------------------------------------------------------


def _fmt(v, spec: str = ".4f") -> str:
    return "" if v is None else format(v, spec)


def _size(mb) -> str:
    return "" if mb is None else format(mb, ".1f" if mb >= 10 else ".2f")


def _pm(e: dict, name: str, spec: str = ".4f") -> str:
    if e.get(name) is None:
        return ""
    std = e.get(name + "_std")
    return _fmt(e[name], spec) + (f" ± {_fmt(std, spec)}" if std and e.get("n", 1) > 1 else "")


STUDENT_COLUMNS = [
    ("student", "student", lambda e: e["student"] + (" *" if e.get("pareto") else "") + (" s" if e.get("pareto_size") else "")),
    ("recipe", "recipe", lambda e: e["recipe"]),
    ("transfer", "transfer", lambda e: e["transfer"]),
    ("score", "score", lambda e: _pm(e, "score")),
    ("retention", "retention", lambda e: _pm(e, "retention", ".3f")),
    ("KD gain", "kd_gain", lambda e: "" if e.get("kd_gain") is None else f"{e['kd_gain']:+.4f}"),
    ("label loyalty", "label_loyalty", lambda e: _pm(e, "label_loyalty", ".3f")),
    ("params", "params", lambda e: f"{e['params'] / 1e6:.2f}M"),
    ("size MB", "size_mb", lambda e: _size(e.get("size_mb"))),
    ("backend", "backend", lambda e: e.get("backend") or ""),
    ("ms/text b1", "e2e_ms_b1", lambda e: _pm(e, "e2e_ms_b1", ".3f")),
    ("ms/text b32", "e2e_ms_per_text", lambda e: _fmt(e.get("e2e_ms_per_text"), ".3f")),
    ("speedup", "speedup", lambda e: "" if e.get("speedup") is None else f"{e['speedup']:.1f}x"),
    ("memory MB", "peak_mb", lambda e: _fmt(e.get("peak_mb"), ".0f")),
    ("train min", "train_minutes", lambda e: _fmt(e.get("train_minutes"), ".1f")),
    ("seeds", "n", lambda e: str(e["n"])),
]


def md_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def dataset_tables(ds: dict) -> tuple[list[str], list[list[str]]]:
    """The header and rows of one dataset's table: the teachers first, students by score, controls last;
    with a teacher column when students of several teachers share the table."""
    batch = next((e["cost_batch"] for e in ds["students"] if e.get("cost_batch")), 32)
    header = [c[0] if c[1] != "e2e_ms_per_text" else f"ms/text b{batch}" for c in STUDENT_COLUMNS]
    rows = []
    for t in ds["teachers"]:
        rows.append([f"teacher {t['teacher']}", "", "", _fmt(t["score"]), "" if t["score"] is None else "1.000", "", "", f"{t['params'] / 1e6:.2f}M",
                     _size(t.get("size_mb")), "pytorch" if t.get("e2e_ms_b1") else "", _fmt(t.get("e2e_ms_b1"), ".3f"),
                     _fmt(t.get("e2e_ms_per_text"), ".3f"), "1.0x" if t.get("e2e_ms_b1") else "", _fmt(t.get("peak_mb"), ".0f"),
                     _fmt(t.get("train_minutes"), ".1f"), "1"])
    key = rank_key
    for e in sorted(ds["students"], key=key):
        rows.append([f(e) for _, _, f in STUDENT_COLUMNS])
    for e in sorted(ds["controls"], key=key):
        rows.append([f"{e['student']} (labels only)", "gold", "none", _pm(e, "score"), _pm(e, "retention", ".3f"), "",
                     _pm(e, "label_loyalty", ".3f"), f"{e['params'] / 1e6:.2f}M", "", "", "", "", "", "",
                     _fmt(e.get("train_minutes"), ".1f"), str(e["n"])])
    if len({t["teacher"] for t in ds["teachers"]} | {e["teacher"] for e in ds["students"] + ds["controls"]}) > 1:
        teachers = [t["teacher"] for t in ds["teachers"]] + [e["teacher"] for e in sorted(ds["students"], key=key)] + \
                   [e["teacher"] for e in sorted(ds["controls"], key=key)]
        header.insert(1, "teacher")
        rows = [[r[0], t, *r[1:]] for r, t in zip(rows, teachers)]
    return header, rows


OVERALL_COLUMNS = [("student", "student"), ("recipe", "recipe"), ("transfer", "transfer"), ("datasets", "datasets"),
                   ("mean retention", "retention"), ("mean KD gain", "kd_gain"), ("mean speedup", "speedup"),
                   ("mean ms/text b1", "e2e_ms_b1"), ("mean size MB", "size_mb"), ("mean train min", "train_minutes")]


def overall_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    specs = {"retention": ".3f", "kd_gain": "+.4f", "speedup": ".1f", "e2e_ms_b1": ".3f", "size_mb": ".1f", "train_minutes": ".1f"}
    rows = [[str(r[k]) if k not in specs else _fmt(r[k], specs[k]) for _, k in OVERALL_COLUMNS] for r in summary["overall"]]
    return [c for c, _ in OVERALL_COLUMNS], rows


def markdown(summary: dict) -> str:
    parts = ["# Leaderboard", "",
             "Score: the primary metric on the test split, mean ± std over seeds. `*`: Pareto-optimal in score against "
             "end-to-end CPU latency at batch 1; `s`: against file size. KD gain: how much better than the same student "
             "trained on labels alone (score minus its score; its score minus score where lower is better). Latency, size and memory are of the fastest CPU backend (text in, prediction out).", ""]
    for name, ds in summary["datasets"].items():
        metric = (ds["teachers"] or ds["students"] or [{}])[0].get("primary_metric", "score")
        parts += [f"## {name} ({metric})", "", md_table(*dataset_tables(ds)), ""]
        parts += [f"- **Warning:** {w}" for w in ds["warnings"]] + ([""] if ds["warnings"] else [])
    if summary["overall"]:
        parts += ["## Overall", "", md_table(*overall_rows(summary)), ""]
    if summary["failed"]:
        parts += ["## Failed cells", ""]
        parts += [f"- {f['role']} {f['dataset']} / {f['student'] or f['teacher']} / {f['recipe'] or ''} / seed {f['seed']}: "
                  f"{f['error']}" for f in summary["failed"]]
        parts.append("")
    return "\n".join(parts)


CSV_FIELDS = ["dataset", "teacher", "role", "student", "kind", "recipe", "transfer", "n", "primary_metric", "score",
              "score_std", "retention", "retention_std", "kd_gain", "control_score", "label_loyalty", "probability_loyalty",
              "params", "backend", "size_mb", "e2e_ms_b1", "e2e_ms_b1_std", "e2e_ms_per_text", "speedup", "peak_mb",
              "train_minutes", "pareto", "pareto_size"]


def csv_text(summary: dict) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for ds in summary["datasets"].values():
        for t in ds["teachers"]:
            w.writerow({**t, "role": "teacher", "student": t["model"], "n": 1, "retention": None if t["score"] is None else 1.0})
        for e in ds["students"]:
            w.writerow({**e, "role": "student"})
        for e in ds["controls"]:
            w.writerow({**e, "role": "control"})
    for r in summary["overall"]:
        w.writerow({**r, "dataset": "overall", "role": "student", "n": r["datasets"]})
    return buf.getvalue()


def write(out: Path, summary: dict) -> list[Path]:
    md, cs = out / "leaderboard.md", out / "leaderboard.csv"
    atomic_write_text(md, markdown(summary))
    atomic_write_text(cs, csv_text(summary))
    return [md, cs]
