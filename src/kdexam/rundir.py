"""What a run's ``--out`` may be: checked before any work, so that nothing already written is lost.

- A run never writes into one of its own inputs (the teacher's run directory, the model it
  fine-tunes, an ``--init-from`` encoder, the data), nor into a folder that holds one of them.
- An ``--out`` that already holds a run (its ``config.yaml``, ``metrics.json`` or model files)
  is the same run again only when its ``config.yaml`` says so (every key but ``out``); a
  different run there is refused, naming the keys that differ, unless ``overwrite`` is given:
  then the old run directory is removed as a whole (:func:`clear_replaced`) once the new run is set
  up and about to write — not before, so that a typo in the new run's flags never costs the old
  run. A folder with no run file but ``config.yaml`` (a config a user keeps there) is never
  removed, and ``--overwrite`` of a run folder that also holds files no run writes
  (:func:`not_run_files`: a user's own) is refused instead of deleting them. A ``--config`` file inside
  ``--out`` is refused (:func:`check_config_file`): the run would replace it with its resolved config.
- ``resume`` continues the run in ``--out``; with a different config it is refused the same way.
  The same config again without ``resume`` or ``overwrite`` is refused when the run there is
  finished or has a checkpoint (:func:`same_run_again`): a plain rerun never silently drops either.
- Inputs given as relative paths are recorded absolute (:func:`with_absolute_paths`), so that
  ``export``, ``bench`` and ``evaluate`` find a run's data and teacher from any folder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from pydantic import BaseModel
from rich.console import Console

from kdexam.errors import KdexamError
from kdexam.paths import check_writable_folder, read_run_config, sweep_stale

RUN_FILES = ("config.yaml", "metrics.json", "student.json", "task.json", "model.safetensors")
RUN_OUTPUTS = RUN_FILES[1:] + ("train_log.jsonl", "checkpoint", "checkpoint-stage1", "checkpoint-general", "stage1-done")
"""What only a run writes: a folder holding none of these is not removed by ``--overwrite``."""
IGNORED_KEYS = {"out"}
PATH_KEYS = ("teacher", "teachers", "model", "init_from", "data.name", "student.vectors_file", "transfer.unlabelled",
             "transfer.augment_vectors", "transfer.augment_mlm_model")
"""Config keys that may name a local file or folder (each may also be a built-in name or a hub id)."""


MODEL_MARKERS = RUN_FILES + ("config.json", "export.json", "tokenizer.json")
"""Files that make a folder a run, a model or an export."""
OWN_FILES = set(MODEL_MARKERS) | {"tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json", "merges.txt",
                                  "train_log.jsonl", "transfer.jsonl", "README.md", "kdexam_serving.py", "kdexam_model.json",
                                  "inputs.json"}
OWN_SUFFIXES = (".safetensors", ".onnx", ".bin", ".model")
"""What such a folder needs: an output file never replaces one of these."""


def check_output_file(path: str | Path | None, inputs: list[str | Path], flag: str) -> None:
    """Refuse an output file (``predict --output``, ``report --out``, ``evaluate --out``) that is one
    of the command's ``inputs``, or a file a run, model or export folder needs (:data:`OWN_FILES`: its
    ``config.json``, ``metrics.json``, weights…): it replaced it, and the command still succeeded.
    Any other file there (``RUN/eval-test.json``, written again by the same command) is fine."""
    if path is None:
        return
    target = Path(path).resolve()
    for given in inputs:
        if given is not None and Path(given).exists() and Path(given).resolve() == target:
            raise KdexamError(f"{flag} '{path}' is an input of this command; writing there would replace it — name another file.")
    folder = target.parent
    own = target.name in OWN_FILES or target.name.endswith(OWN_SUFFIXES)
    if own and any((folder / m).exists() for m in MODEL_MARKERS):
        raise KdexamError(f"{flag} '{path}' is a file of the run or model folder '{folder}'; writing there would replace "
                          "it — name a new file.")
    if target.is_dir():
        raise KdexamError(f"Cannot write {flag} '{path}': it is a folder; name the file to write.")
    check_writable_folder(folder, flag, shown=path)  # (before the work, not after it)


def check_out(cfg: BaseModel, out: Path, inputs: dict[str, str | Path | None], resume: bool = False,
              overwrite: bool = False) -> bool:
    """Refuse an ``out`` that is an input of the run or holds a different run (see the module doc).
    ``inputs``: what each input is called -> its path. Returns whether ``overwrite`` is to replace
    a run there: the caller removes it with :func:`clear_replaced` just before its first write."""
    if out.exists() and not out.is_dir():
        raise KdexamError(f"Output path '{out}' is a file; pass a directory to --out.")
    check_writable_folder(out, "--out")
    here = out.resolve()
    for what, path in inputs.items():
        path = builtin_folder(str(path)) if path and is_builtin_name(str(path)) else path
        if not path or not Path(path).exists():
            continue
        there = Path(path).resolve()
        if there == here or here in there.parents:
            where = "is" if there == here else "holds"
            raise KdexamError(f"--out '{out}' {where} the {what} of this run ('{path}'); writing there would destroy it — "
                              "pass another --out.")
    if resume and overwrite:
        raise KdexamError("--resume continues the run in --out and --overwrite replaces it; pass one of them.")
    for d in [out, *out.glob("checkpoint*")] if out.is_dir() else []:
        sweep_stale(d)  # temporary files of a run that was killed mid-write
    if not holds_run(out):
        return False
    recorded = _recorded(out, type(cfg))
    differ = (differing_keys(_absolute_recorded(recorded), cfg.model_dump(mode="json")) if recorded is not None
              else ["config.yaml (missing)"])
    if overwrite:  # (the same config or another: replaced as a whole)
        replace = any((out / f).exists() for f in RUN_OUTPUTS)
        foreign = not_run_files(out) if replace else []
        if foreign:
            raise KdexamError(f"--overwrite removes the run folder '{out}' as a whole, and it also holds files no run "
                              f"writes ({_names(foreign)}); move them out of it, or pass another --out.")
        return replace
    if not differ:
        same_run_again(out, resume)
        return False
    keys = ", ".join(differ[:4]) + (f" and {len(differ) - 4} more" if len(differ) > 4 else "")
    if resume:
        raise KdexamError(f"--resume: the run in '{out}' was started with another config ({keys} differ); pass only "
                          "--out and --resume to continue it with its own config, or start a new run with another --out.")
    raise KdexamError(f"'{out}' already holds a different run ({keys} differ); pass another --out, --resume with its "
                      "config to continue it, or --overwrite to replace it.")


def same_run_again(out: Path, resume: bool) -> None:
    """``out`` holds a run of the same config, and ``--overwrite`` was not given. ``--resume``
    continues it. Without it, a run there that has something to lose — a checkpoint or a finished
    stage to resume from, or its finished ``metrics.json`` (which ``kdexam bench`` may have added
    to) — is refused, saying which; a run killed before its first checkpoint is simply trained again."""
    if resume:
        return
    if (out / "metrics.json").is_file():  # (a finished run may keep its checkpoint: train.keep_checkpoint)
        raise KdexamError(f"'{out}' already holds this run, finished (metrics.json); pass --overwrite to train it again, "
                          "or another --out.")
    if any(out.glob("checkpoint*")) or any(out.glob("stage*-done")):
        raise KdexamError(f"'{out}' holds an interrupted run of this config (a checkpoint); pass --resume to continue it, "
                          "or --overwrite to train it again from the start.")


def finished_run(out: Path, resume: bool) -> dict | None:
    """``--resume`` of a run that finished (its ``metrics.json``, written last, is there; a run that
    kept its checkpoint, ``train.keep_checkpoint``, finished too): its metrics, said on the console,
    instead of scoring it again and rewriting what ``kdexam bench`` added."""
    if not resume or not (out / "metrics.json").is_file():
        return None
    try:
        metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    Console(stderr=True).print(f"--resume: the run in {out} is finished (metrics.json); nothing to do. "
                               "Pass --overwrite to train it again.")
    return metrics if isinstance(metrics, dict) else None


INPUTS_FILE = "inputs.json"
"""A run's record of what it trains on (:func:`check_same_inputs`)."""


def check_same_inputs(out: Path, fingerprint: str, resume: bool) -> None:
    """``--resume`` of a run whose teacher or data changed since it was interrupted is refused: its
    first part was trained on other inputs than its rest would be, and ``config.yaml`` (which names
    them by path) cannot tell. ``fingerprint``: the inputs' key, recorded in ``inputs.json``."""
    if not resume:
        return
    try:
        recorded = json.loads((out / INPUTS_FILE).read_text(encoding="utf-8")).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        return  # (a run of an older kdexam, or a new run)
    if recorded != fingerprint:
        raise KdexamError(f"--resume: the teacher or the data of the run in '{out}' changed since it was interrupted "
                          "(the teacher's files or the training or validation examples differ); restore them to continue "
                          "it, or pass --overwrite to train it again from the start.")


RUN_FOLDERS = ("onnx", "checkpoint")
"""Name prefixes of the folders a run writes: its export, its checkpoints (``checkpoint-stage2``, …)."""


def not_run_files(folder: Path) -> list[str]:
    """The entries of ``folder`` that no run writes (a user's own files, which ``--overwrite`` would delete
    with the run, so it is refused while they are there); none for a missing folder."""
    from kdexam.paths import _TEMP

    if not folder.is_dir():
        return []
    own = OWN_FILES | set(RUN_OUTPUTS) | {"encoder.json", "added_tokens.json"}

    def a_runs(p: Path) -> bool:
        return (p.name in own or p.suffix in OWN_SUFFIXES or bool(_TEMP.match(p.name))
                or (p.is_dir() and p.name.startswith(RUN_FOLDERS))
                or (p.name.startswith("stage") and p.name.endswith("-done")))

    return sorted(p.name for p in folder.iterdir() if not a_runs(p))


def _names(names: list[str]) -> str:
    return ", ".join(f"'{n}'" for n in names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def is_teacher_run(path: str | Path) -> bool:
    """Whether ``path`` holds a model that can teach: its weights and its Hugging Face ``config.json``
    (a BiLSTM, CNN or static student run has weights but no such config). One check for ``distill
    --teacher`` and ``evaluate --teacher``, so both take the same folders."""
    p = Path(path)
    return (p / "model.safetensors").is_file() and (p / "config.json").is_file()


def not_a_teacher_run(path: str | Path, flag: str = "--teacher") -> KdexamError:
    """The sentence for a ``--teacher`` that holds no fine-tuned teacher (no ``model.safetensors``), saying
    what it is instead: missing, a built-in base model's name, a file, a student run, a general encoder."""
    from kdexam.teachers.builtin_models import BUILTIN_MODELS

    p = Path(path)
    run = "pass a directory written by 'kdexam teacher'"
    if str(path) in BUILTIN_MODELS and not p.exists():
        return KdexamError(f"{flag} '{path}' is a built-in base model, not a fine-tuned teacher: fine-tune it first "
                           f"(kdexam teacher --model {path} --data DATA --out DIR) and pass DIR, or distil it "
                           "task-agnostically with --general.")
    if not p.exists():
        return KdexamError(f"{flag} '{path}' does not exist; {run}.")
    if not p.is_dir():
        return KdexamError(f"{flag} '{path}' is a file; {run}.")
    if (p / "student.json").is_file():
        return KdexamError(f"{flag} '{path}' is a student run (student.json), not a teacher; pass the teacher it was "
                           "distilled from (its config.yaml names it), or another directory written by 'kdexam teacher'.")
    if (p / "encoder.json").is_file():
        return KdexamError(f"{flag} '{path}' is an encoder of task-agnostic distillation, not a fine-tuned teacher; "
                           "fine-tune it (kdexam teacher --model DIR) or start a student from it with --init-from.")
    missing = "model.safetensors" if not (p / "model.safetensors").is_file() else "config.json"
    return KdexamError(f"{flag} '{path}' has no {missing}; {run}.")


def holds_run(folder: Path) -> bool:
    """Whether ``folder`` holds a run: one of its :data:`RUN_FILES`."""
    return folder.is_dir() and any((folder / f).exists() for f in RUN_FILES)


def note_nothing_to_resume(out: str | Path | None, resume: bool) -> None:
    """A user's ``--resume`` whose ``--out`` holds no run starts a new one there (scripts and exams
    rely on that); say so, with the closest run folder beside it, since a mistyped ``--out``
    would otherwise retrain from scratch in silence."""
    if not resume or out is None:
        return
    out = Path(out)
    if holds_run(out):
        return
    import difflib

    try:
        runs = [d.name for d in (out.parent.iterdir() if out.parent.is_dir() else []) if holds_run(d)]
    except OSError:  # (a folder beside it this user may not read: /tmp's systemd-private-*)
        runs = []
    close = difflib.get_close_matches(out.name, runs, n=1, cutoff=0.6)
    hint = f" Did you mean '{out.parent / close[0]}'?" if close else ""
    Console(stderr=True).print(f"[yellow]--resume:[/] '{out}' holds no run to continue; starting a new run there.{hint}")


def clear_replaced(out: Path, replace: bool, accelerator=None) -> None:
    """``--overwrite``: remove the old run in ``out`` (``replace``, from :func:`check_out`) now that
    the new run is set up; in a parallel launch the main process removes it and the others wait."""
    if not replace:
        return
    if accelerator is None or accelerator.is_main_process:
        Console(stderr=True).print(f"[yellow]--overwrite:[/] removing the run in {out}")
        shutil.rmtree(out, ignore_errors=True)
    if accelerator is not None:
        accelerator.wait_for_everyone()


def own_config_to_resume(config: str | Path | None, out: str | Path | None, resume: bool) -> str | Path | None:
    """``--resume --out DIR`` without ``--config`` reads the run's own ``DIR/config.yaml``: the run
    continues with the config it was started with, and any flag given overrides it."""
    if resume and config is None and out is not None and (Path(out) / "config.yaml").is_file():
        return Path(out) / "config.yaml"
    return config


def check_config_file(config: str | Path | None, out: str | Path | None, resume: bool = False) -> None:
    """A ``--config`` file inside ``--out`` is only the run's own ``config.yaml``, for ``--resume``:
    a new run there would replace the user's file with its resolved config (comments and all)."""
    if config is None or out is None or resume or not Path(config).is_file():
        return
    here, there = Path(out).resolve(), Path(config).resolve()
    if here in there.parents:
        raise KdexamError(f"--config '{config}' is inside --out '{out}': the run writes its own config.yaml there and "
                          "would replace yours. Keep your config outside the run's folder, or pass --resume to continue "
                          "the run it belongs to.")


def is_builtin_name(name: str) -> bool:
    """A built-in dataset or model name, which kdexam reads from its home, not from a folder of that name."""
    from kdexam.data.builtin import BUILTIN_DATASETS
    from kdexam.teachers.builtin_models import BUILTIN_MODELS

    return name in BUILTIN_DATASETS or name in BUILTIN_MODELS


def builtin_folder(name: str) -> Path:
    """Where kdexam keeps the built-in dataset or model ``name`` (in its home)."""
    from kdexam.data.builtin import BUILTIN_DATASETS, dataset_dir
    from kdexam.teachers.builtin_models import model_dir

    return dataset_dir(name) if name in BUILTIN_DATASETS else model_dir(name)


def absolute_path(value):
    """``value`` (a string or a list of them) with each one that names an existing local file or folder
    made absolute; a built-in name, a hub id or a path that does not exist is kept as given."""
    if isinstance(value, list):
        return [absolute_path(v) for v in value]
    if not isinstance(value, str) or not value or is_builtin_name(value):
        return value
    path = Path(value).expanduser()
    return str(path.resolve()) if path.exists() else value


def with_absolute_paths(cfg: BaseModel) -> BaseModel:
    """``cfg`` with the local paths among its :data:`PATH_KEYS` made absolute (:func:`absolute_path`):
    the run's ``config.yaml`` is read later from other folders, where a relative path would name
    nothing (or, for data, fall through to a hub lookup)."""
    sections: dict[str, dict] = {}
    top: dict = {}
    for key in PATH_KEYS:
        section, _, field = key.rpartition(".")
        owner = getattr(cfg, section, None) if section else cfg
        if owner is None or field not in type(owner).model_fields:
            continue
        value = getattr(owner, field)
        if (new := absolute_path(value)) != value:
            (sections.setdefault(section, {}) if section else top)[field] = new
    for section, fields in sections.items():
        top[section] = getattr(cfg, section).model_copy(update=fields)
    return cfg.model_copy(update=top) if top else cfg


def _absolute_recorded(d: dict) -> dict:
    """A recorded config dump with :data:`PATH_KEYS` made absolute, as :func:`with_absolute_paths` does
    (a run written before paths were recorded absolute, resumed from the folder it was started in)."""
    for key in PATH_KEYS:
        section, _, field = key.rpartition(".")
        owner = d.get(section) if section else d
        if isinstance(owner, dict) and field in owner:
            owner[field] = absolute_path(owner[field])
    return d


def _recorded(out: Path, model: type[BaseModel]) -> dict | None:
    """The run's config.yaml, with the defaults of keys it does not name filled in (as this version writes it)."""
    data = read_run_config(out, strict=False)
    if not data:
        return None
    try:
        return model.model_validate(data).model_dump(mode="json")
    except ValueError:
        return data


def differing_keys(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two config dumps (``out`` ignored)."""
    keys = []
    for k in sorted(set(old) | set(new), key=str):
        if not prefix and k in IGNORED_KEYS:
            continue
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += differing_keys(a, b, f"{prefix}{k}.")
        elif a != b:
            keys.append(f"{prefix}{k}")
    return keys
