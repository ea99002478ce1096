"""Run an exam: each teacher once per dataset, then every cell, each stored as it finishes.

``DIR/teachers/ID`` and ``DIR/runs/ID`` are ordinary kdexam run directories (``kdexam
predict``, ``export``, ``evaluate`` and ``report`` take them). A finished cell is never run
again; an interrupted one resumes from its checkpoint (kdexam's resume is exact); a failing
one is recorded with its error and the exam goes on.
"""

from __future__ import annotations

import os
import platform
import shutil
import tempfile
import time
import traceback
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from kdexam.config.exam import ExamBench, ExamConfig
from kdexam.errors import KdexamError
from kdexam.exam.grid import Cell, TeacherCell, cells, check_cells, teacher_cells
from kdexam.exam.store import Store
from kdexam.rundir import is_teacher_run, not_a_teacher_run

console = Console(stderr=True)
BACKEND_FILES = {"pytorch": "safetensors", "onnx": "onnx", "onnx-int8": "onnx-int8"}


def run_exam(cfg: ExamConfig, out: str | Path) -> dict:
    """Run every cell of ``cfg`` not yet finished in ``out``; return ``{"done", "failed", "cells",
    "seconds"}`` (:func:`kdexam.exam.report.render` then writes what the exam shows)."""
    out = Path(out).resolve()  # the store records run paths that must hold from any working directory
    if out.exists() and not out.is_dir():
        raise KdexamError(f"Exam output '{out}' is a file; pass a directory to --out.")
    teachers = teacher_cells(cfg)
    grid = cells(cfg, teachers)
    check_cells(teachers, grid)  # every run's config is valid before anything trains
    started = time.perf_counter()
    with Store(out / "results.sqlite") as store:
        backfill_bench_settings(store)
        store.put("config", cfg.model_dump(mode="json", exclude_none=True))
        store.put("cells", [t.id for t in teachers] + [c.id for c in grid])
        store.put("environment", environment(cfg))
        progress = Progress(store, teachers, grid)
        teacher_dirs: dict[str, Path | None] = {}
        stopped = True
        try:
            for t in teachers:
                teacher_dirs[t.id] = run_teacher(t, cfg, out, store, progress)
            for c in grid:
                run_cell(c, teacher_dirs.get(c.teacher_id), cfg, out, store, progress)
            stopped = False
        finally:  # an invocation stopped by Ctrl-C is recorded too: the README's wall time counts it
            summary = {**progress.summary(), "seconds": round(time.perf_counter() - started, 1), **({"stopped": True} if stopped else {})}
            store.put("invocations", [*store.get("invocations", []), {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), **summary}])
    return summary


# --- progress -----------------------------------------------------------------------------------


class Progress:
    """Cells done, failed and left, with a time estimate: each cell left is expected to take the
    mean time of the finished cells of its kind (student kind and role), else of all cells."""

    def __init__(self, store: Store, teachers: list[TeacherCell], grid: list[Cell]):
        self.store, self.ids = store, [t.id for t in teachers] + [c.id for c in grid]
        self.kinds = {t.id: ("teacher", t.dataset) for t in teachers} | {c.id: (c.kind, c.role) for c in grid}
        self.started = time.perf_counter()

    def _rows(self) -> dict[str, dict]:
        return {r["id"]: r for r in self.store.rows(self.ids)}

    def summary(self) -> dict:
        rows = self._rows()
        done = sum(1 for i in self.ids if rows.get(i, {}).get("status") == "done")
        failed = sum(1 for i in self.ids if rows.get(i, {}).get("status") == "failed")
        return {"cells": len(self.ids), "done": done, "failed": failed}

    def left_seconds(self, rows: dict[str, dict]) -> float | None:
        """Expected seconds of the cells left: the mean of the finished cells of the same kind, else
        of all finished cells of the same role; ``None`` until such a cell has finished."""
        times: dict = {}
        for r in rows.values():
            if r["status"] == "done" and r["seconds"] and r["id"] in self.kinds:
                times.setdefault(self.kinds[r["id"]], []).append(r["seconds"])
        mean = lambda v: sum(v) / len(v)  # noqa: E731
        left = 0.0
        for i in self.ids:
            if rows.get(i, {}).get("status") in ("done", "failed"):
                continue
            kind = self.kinds[i]
            same_role = [s for k, v in times.items() if (k[0] == "teacher") == (kind[0] == "teacher") for s in v]
            if not times.get(kind) and not same_role:
                return None
            left += mean(times.get(kind) or same_role)
        return left

    def show(self, what: str) -> None:
        rows = self._rows()
        s = self.summary()
        left = self.left_seconds(rows)
        eta = f", about {_minutes(left)} left" if left is not None else ""
        console.print(f"[bold cyan]exam[/] {s['done']}/{s['cells']} done, {s['failed']} failed, "
                      f"{s['cells'] - s['done'] - s['failed']} left ({_minutes(time.perf_counter() - self.started)} "
                      f"elapsed{eta}); now: [bold]{what}[/]", highlight=False)


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


# --- teachers and cells -------------------------------------------------------------------------


def run_teacher(t: TeacherCell, cfg: ExamConfig, out: Path, store: Store, progress: Progress) -> Path | None:
    """The teacher's run directory, fine-tuned (or checked) and measured once; ``None`` if it failed."""
    from kdexam import api

    run_dir = Path(t.run).resolve() if t.run else out / "teachers" / t.id  # (its students' configs hold it from anywhere)
    if store.status(t.id) == "done":
        try:
            if remeasure(t.id, run_dir, cfg, store, None, _trusted(cfg, t.flags), teacher=True, save=t.run is None, data=t.data):
                console.print(f"teacher {t.teacher} on {t.dataset}: measured with the exam's bench settings")
        except Exception as e:  # the trained teacher stands; its row says why it has no cost (measured again next time)
            remeasure_failed(t.id, f"teacher {t.teacher} on {t.dataset}", store, e)
        return run_dir
    progress.show(f"teacher {t.teacher} on {t.dataset}")
    store.start(t.id, "teacher", str(run_dir), dataset=t.dataset, teacher=t.teacher)
    started = time.perf_counter()
    try:
        trust = _trusted(cfg, t.flags)
        if t.run is None and not (run_dir / "metrics.json").is_file():
            api.finetune_teacher(out=str(run_dir), resume=True, **{**t.flags, "trust_remote_code": trust})
        elif t.run is not None and not is_teacher_run(run_dir):  # (a student run, say: refused here, not in each cell)
            raise not_a_teacher_run(t.run, "teachers: run:")
        elif t.run is not None and not (run_dir / "metrics.json").is_file():
            raise KdexamError(f"Teacher run '{t.run}' has no metrics.json; pass a directory written by 'kdexam teacher'.")
        bench = (measure(run_dir, cfg.bench, None, teacher=True, save=t.run is None, trust_remote_code=trust, data=t.data)
                 if cfg.bench.enabled else None)
        store.finish(t.id, {**cell_row(run_dir, bench), "bench_settings": bench_settings(cfg)}, time.perf_counter() - started)
        return run_dir
    except Exception as e:  # recorded; the cells of this teacher fail with a pointer to it
        store.fail(t.id, _error(e), time.perf_counter() - started)
        console.print(f"[red]teacher {t.teacher} on {t.dataset} failed:[/] {escape(_error(e))}")
        return None


def run_cell(c: Cell, teacher_dir: Path | None, cfg: ExamConfig, out: Path, store: Store, progress: Progress) -> None:
    from kdexam import api

    run_dir = out / "runs" / c.id
    if store.status(c.id) == "done":
        try:
            if c.role == "student" and remeasure(c.id, run_dir, cfg, store, c.teacher_id, _trusted(cfg, c.flags)):
                console.print(f"{c.label}: measured with the exam's bench settings")
        except Exception as e:
            remeasure_failed(c.id, c.label, store, e)
        return
    progress.show(c.label + (" (control: gold labels only)" if c.role == "control" else ""))
    store.start(c.id, c.role, str(run_dir), dataset=c.dataset, teacher=c.teacher, student=c.student, kind=c.kind,
                recipe=c.recipe, transfer=c.transfer, seed=c.seed)
    started = time.perf_counter()
    try:
        if teacher_dir is None:
            raise KdexamError(f"its teacher {c.teacher} on {c.dataset} failed; see that teacher's row")
        trust = _trusted(cfg, c.flags)
        if not (run_dir / "metrics.json").is_file():
            if run_dir.exists() and not any(run_dir.glob("checkpoint-stage*")) and not any(run_dir.glob("stage*-done")):
                shutil.rmtree(run_dir)  # a start with neither a checkpoint nor a finished stage: nothing to keep
            api.distill(teacher=str(teacher_dir), out=str(run_dir), resume=True, **{**c.flags, "trust_remote_code": trust})
        teacher_done = store.status(c.teacher_id) == "done"  # (not: its figures are of other settings, or none)
        teacher_bench = ((store.rows([c.teacher_id]) or [{}])[0].get("result") or {}) if teacher_done else {}
        bench = (measure(run_dir, cfg.bench, teacher_bench.get("bench"), trust_remote_code=trust)
                 if cfg.bench.enabled and c.role == "student" else None)
        settings = bench_settings(cfg) if teacher_done else None  # None: measured again once the teacher is
        store.finish(c.id, {**cell_row(run_dir, bench), "bench_settings": settings}, time.perf_counter() - started)
    except Exception as e:
        store.fail(c.id, _error(e), time.perf_counter() - started)
        console.print(f"[red]cell {c.label} failed:[/] {escape(_error(e))}")


def remeasure(cell_id: str, run_dir: Path, cfg: ExamConfig, store: Store, teacher_id: str | None, trust: bool,
              teacher: bool = False, save: bool = True, data: dict | None = None) -> bool:
    """Measure a finished cell when it was measured with other bench settings than the exam's now
    (threads, batch sizes, texts…), or not at all (an earlier invocation had ``bench.enabled: false``),
    so that every cost and speedup of the report comes from the settings it states; teachers come
    first, so a student's speedup is against its teacher's new figures. Returns whether it measured."""
    row = (store.rows([cell_id]) or [{}])[0]
    result = row.get("result") or {}
    if not cfg.bench.enabled or (result.get("cost") and result.get("bench_settings") == bench_settings(cfg)):
        return False
    if teacher_id and store.status(teacher_id) != "done":  # its speedups wait for the teacher's new figures
        return False
    reference = ((store.rows([teacher_id]) or [{}])[0].get("result") or {}).get("bench") if teacher_id else None
    bench = measure(run_dir, cfg.bench, reference, teacher=teacher, save=save, trust_remote_code=trust, data=data)
    store.finish(cell_id, {**cell_row(run_dir, bench), "bench_settings": bench_settings(cfg)}, row.get("seconds") or 0.0)
    return True


def remeasure_failed(cell_id: str, label: str, store: Store, e: Exception) -> None:
    """A finished cell whose measuring failed: marked failed with the reason (the next invocation
    measures it again, without training), and the exam goes on."""
    seconds = (store.rows([cell_id]) or [{}])[0].get("seconds") or 0.0
    store.fail(cell_id, f"measuring with the exam's bench settings failed: {_error(e)}", seconds)
    console.print(f"[red]{label}: measuring with the exam's bench settings failed:[/] {escape(_error(e))}")


def backfill_bench_settings(store: Store) -> None:
    """Rows measured before the settings were stored with them get the settings of the exam's
    previous invocation (they were measured with those), so that a rerun re-measures only what changed."""
    from kdexam.config.exam import ExamBench

    previous = (store.get("config") or {}).get("bench")
    if previous is None:
        return
    settings = ExamBench.model_validate(previous).model_dump(exclude={"enabled"})
    for row in store.rows():
        if row["status"] == "done" and (row["result"] or {}).get("cost") and "bench_settings" not in row["result"]:
            store.finish(row["id"], {**row["result"], "bench_settings": settings}, row["seconds"] or 0.0)


def bench_settings(cfg: ExamConfig) -> dict:
    """What a cell's cost figures depend on (stored with them)."""
    return cfg.bench.model_dump(exclude={"enabled"})


def _trusted(cfg: ExamConfig, flags: dict) -> bool:
    """Whether a run may execute its model's own code: the exam's ``trust_remote_code``, or the run's flag."""
    return bool(cfg.trust_remote_code or flags.get("trust_remote_code"))


def _error(e: Exception) -> str:
    if isinstance(e, KdexamError):
        return str(e)
    tb = traceback.extract_tb(e.__traceback__)
    where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
    return f"{type(e).__name__}: {e}{where}"


# --- measuring and the stored row ---------------------------------------------------------------


def measure(run_dir: Path, bench: ExamBench, reference: dict | None, teacher: bool = False, save: bool = True,
            trust_remote_code: bool = False, data: dict | None = None) -> dict:
    """``kdexam bench`` figures of one model (:func:`kdexam.evaluation.efficiency.measure_model`),
    with ratios to its teacher's stored figures (measured once per dataset); saved into the run's
    metrics.json when ``save`` (not into a teacher run the exam was given: an input is never
    written; its figures are in results.sqlite). A teacher is timed in PyTorch only. ``data``: the
    data settings whose validation texts it is timed on (a given teacher run trained on other
    data is timed on the exam dataset's texts, as its students are); else its own run's."""
    from kdexam.evaluation.efficiency import BenchConfig, add_ratios, bench_threads, measure_model, save_efficiency, settings
    from kdexam.export.onnx import run_examples
    from kdexam.teachers.loader import allow_remote_code

    cfg = BenchConfig(models=[str(run_dir)], threads=bench.threads, batch_sizes=bench.batch_sizes, n_texts=bench.n_texts,
                      repeats=bench.repeats, warmup=bench.warmup, onnx=bench.onnx and not teacher, rss=bench.rss,
                      gpu=False)
    allow_remote_code(trust_remote_code)
    examples, data_task = run_examples(run_dir, None, cfg.n_texts, settings=data or None)
    with bench_threads(cfg.threads), tempfile.TemporaryDirectory(prefix="kdexam-exam-bench-") as tmp:
        model = measure_model(run_dir, examples, data_task, cfg, Path(tmp), console)
    models = [model] + ([reference] if reference else [])
    add_ratios(models, {model["run"]: reference["run"] if reference else None})
    if save:  # into this run only (its teacher's figures go in as a reference; the teacher's run is not written)
        save_efficiency({"settings": settings(cfg, data_task.dataset, len(examples)), "models": models}, only=[model["run"]])
    return model


def _mb(n: int | None) -> float | None:
    return None if n is None else n / 1e6


def run_data(run_dir: Path) -> str | None:
    """The data a run was trained on, as its ``config.yaml`` records it (a built-in name, or a local path
    made absolute); ``None`` where that cannot be read."""
    from kdexam.paths import read_run_config

    data = read_run_config(run_dir, strict=False).get("data")
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None


def cell_row(run_dir: Path, bench: dict | None) -> dict:
    """What the leaderboard needs from a finished run: its scores, loyalty and cost (the
    fastest CPU backend end to end at batch 1, its p50 at batch 1 and per text at the largest
    batch, its file size and serving peak memory), its training time, objectives and citations."""
    from kdexam.evaluation.results import read_result
    from kdexam.tasks import HIGHER_IS_BETTER

    r = read_result(run_dir)
    side = r.student or r.teacher
    row = {
        "model": side.name, "task": r.task, "data": run_data(run_dir), "primary_metric": r.primary_metric,
        "greater_is_better": HIGHER_IS_BETTER.get(r.primary_metric or "", True),
        "score": r.score, "metrics": side.metrics, "teacher_score": r.teacher.metrics.get(r.primary_metric or ""),
        "retention": r.retention, "loyalty": side.loyalty or {}, "params": side.params,
        "train_seconds": r.seconds or side.extra.get("total_seconds"),
        "objectives": sorted({o for s in r.extra.get("stages", []) for o in s.get("objectives", [])}),
        "stages": [s.get("stage") for s in r.extra.get("stages", [])],
        "citations": r.extra.get("citations", []), "transfer": r.extra.get("transfer"),
    }
    if bench:
        row["bench"] = bench
        rows = [x for x in bench["latency"] if x["device"] == "cpu"]
        b1 = [x for x in rows if x["batch_size"] == 1]  # (bench.batch_sizes always holds 1)
        best = min(b1, key=lambda x: x["e2e_ms"]["p50"])
        big = max((x for x in rows if x["backend"] == best["backend"]), key=lambda x: x["batch_size"])
        row["cost"] = {
            "backend": best["backend"], "e2e_ms_b1": best["e2e_ms"]["p50"], "e2e_ms_b1_p95": best["e2e_ms"]["p95"],
            "batch": big["batch_size"], "e2e_ms_per_text": big["e2e_ms"]["p50"] / big["batch_size"],
            "speedup": best.get("speedup"), "size_mb": _mb(bench["disk_bytes"].get(BACKEND_FILES[best["backend"]])),
            "peak_mb": (bench.get("peak_rss_mb") or {}).get(best["backend"], {}).get("peak_mb"),
        }
    return row


def environment(cfg: ExamConfig) -> dict:
    """The machine and libraries the exam ran on (for the report)."""
    import importlib.metadata as md

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in ("kdexam", "torch", "transformers", "tokenizers", "onnxruntime", "numpy", "accelerate"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "bench_threads": cfg.bench.threads, "train_threads": cfg.train.get("num_threads"), "versions": versions,
            "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
