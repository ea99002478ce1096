"""Load encoders and tokenizers for a task, from a built-in name, a local directory or a hub id."""

from __future__ import annotations

import json
from pathlib import Path

from kdexam.errors import KdexamError
from kdexam.tasks import Task

AUTO_CLASSES = {
    "classification": "AutoModelForSequenceClassification",
    "regression": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
}


_REMOTE_CODE = {"trust": False}


def allow_remote_code(trust: bool) -> None:
    """``--trust-remote-code``: let models whose config names their own Python code (``auto_map``)
    load it (off by default: such code runs with the user's rights). Set per command."""
    _REMOTE_CODE["trust"] = bool(trust)


def remote_code() -> dict:
    """The keyword every ``from_pretrained`` of a user's model takes."""
    return {"trust_remote_code": _REMOTE_CODE["trust"]}


def quiet_transformers() -> None:
    """kdexam reports what matters itself; silence transformers' load reports and shard bars."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def _resolve(name_or_path: str) -> str:
    """A built-in model's folder, a local path, or a hub id (said at once when the hub cannot be reached)."""
    from kdexam.hub import unreachable
    from kdexam.teachers.builtin_models import resolve_model

    path = resolve_model(name_or_path)
    if not Path(path).exists() and (why := unreachable(path, "model")):
        raise KdexamError(f"Model '{name_or_path}' is not a built-in model or a local directory, and the Hugging Face Hub "
                          f"cannot be reached to look for it ({why}); see 'kdexam models list', or pass a local model "
                          "directory.")
    return path


def cannot_load(name: str, what: str, err: Exception) -> KdexamError:
    """The one sentence for a model, tokenizer or config that transformers cannot load."""
    first_line = (str(err).splitlines() or [""])[0][:160]
    if "trust_remote_code" in str(err):
        return KdexamError(f"The {what} of '{name}' come with their own Python code, which kdexam does not run unless "
                           "asked; pass --trust-remote-code (or trust_remote_code: true) if you trust its source.")
    if Path(name).is_dir():  # a local folder that is there: its files are the problem, not where it was looked for
        return KdexamError(f"Cannot load the {what} of '{name}' ({type(err).__name__}: {first_line}); its files are "
                           "damaged or incomplete: write the folder again (fine-tune the teacher again, or copy the model "
                           "anew).")
    return KdexamError(
        f"Cannot load the {what} of '{name}' ({type(err).__name__}: {first_line}); pass a built-in model "
        "(see 'kdexam models list'), a local Hugging Face model directory, or a hub id reachable from this machine."
    )


def config_int(model_dir: Path, key: str) -> int | None:
    """The integer ``key`` of a local model's ``config.json`` (read as JSON: no model code runs); None
    where the file or the key is missing or not an integer."""
    import json

    try:
        value = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8")).get(key)
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def config_positions(model_dir: Path) -> int | None:
    """``max_position_embeddings`` of a local model's ``config.json``."""
    return config_int(model_dir, "max_position_embeddings")


def input_limit(model_dir: str | Path) -> int | None:
    """The most tokens a local model folder's inputs can have, read from its JSON files alone (no
    model code runs): ``max_position_embeddings`` of ``config.json`` and the tokenizer's
    ``model_max_length`` where it states one (RoBERTa's 514 positions hold 512 tokens); None when
    neither says."""
    limits = [config_positions(Path(model_dir))]
    try:
        limits.append(json.loads((Path(model_dir) / "tokenizer_config.json").read_text(encoding="utf-8")).get("model_max_length"))
    except (OSError, ValueError, AttributeError):
        pass
    return smallest_limit(limits)


def smallest_limit(limits: list) -> int | None:
    """The smallest stated token limit (a tokenizer without one says 10³⁰, which is none)."""
    return min((n for n in limits if isinstance(n, int) and 0 < n < 1_000_000), default=None)


def only_special_tokens(tokenizer) -> bool:
    """What transformers builds from a folder without its tokenizer files: a vocabulary of the special
    tokens alone, which reads every word as ``[UNK]``."""
    return len(tokenizer) <= len(set(tokenizer.all_special_ids))


def load_tokenizer(name_or_path: str):
    """A fast tokenizer (needed for word alignment), padding on the right whatever the model's
    default (the collator, the teacher cache and the tagging predictions read each row's first
    ``n`` positions); custom code only with :func:`allow_remote_code`."""
    from transformers import AutoTokenizer

    quiet_transformers()
    path = _resolve(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path, use_fast=True, **remote_code())
    except Exception as e:  # transformers raises OSError, ValueError, … for a missing or broken model
        raise cannot_load(name_or_path, "tokenizer", e) from None
    if not getattr(tok, "is_fast", False):
        raise KdexamError(f"Model '{name_or_path}' has no fast tokenizer (tokenizer.json); kdexam needs one for subword alignment.")
    if only_special_tokens(tok):
        raise KdexamError(f"Model '{name_or_path}' has no tokenizer vocabulary (only its special tokens): its folder lacks "
                          "the tokenizer files (tokenizer.json, vocab.txt, …); save the tokenizer with the model.")
    if tok.pad_token is None:  # (a decoder-only model such as GPT-2: it loaded, then its first batch was a traceback)
        raise KdexamError(f"Model '{name_or_path}' has no padding token, as decoder-only models (GPT-2 and the like) do; "
                          "kdexam pads batches of texts, so pass an encoder (BERT-like) model, or save its tokenizer "
                          "with a pad_token.")
    tok.padding_side = "right"
    return tok


def load_saved_tokenizer(d: Path):
    """The tokenizer saved with a student run, as it was saved. transformers builds an empty one (special
    tokens only, every word ``[UNK]``) from a folder that lacks ``tokenizer.json``, and one without a pad
    token from a folder that lacks ``tokenizer_config.json``: the student would predict from garbage."""
    from transformers import AutoTokenizer

    missing = [f for f in ("tokenizer.json", "tokenizer_config.json") if not (d / f).is_file()]
    what = f"lacks {' and '.join(missing)}" if missing else "holds a tokenizer that cannot be read"
    fix = "the student was not saved completely; copy the tokenizer files from its teacher, or distil the student again."
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(d))
    except Exception as e:  # transformers raises OSError, ValueError, … for missing or broken files
        raise KdexamError(f"'{d}' {what} ({type(e).__name__}): {fix}") from None
    if only_special_tokens(tokenizer) or tokenizer.pad_token is None:
        raise KdexamError(f"'{d}' {what if missing else 'holds an incomplete tokenizer'}: {fix}")
    return tokenizer


def fit_max_length(max_length: int, positions: int | None, tokenizer, name: str) -> int:
    """``max_length`` cut to what the model has ``positions`` for (its ``max_position_embeddings``), and
    to the tokenizer's ``model_max_length`` where it states one (RoBERTa's 514 positions hold 512
    tokens), with a note when cut: a longer input would crash the model's forward pass."""
    limit = smallest_limit([positions, getattr(tokenizer, "model_max_length", None)]) or max_length
    if limit < max_length:
        from rich.console import Console

        Console(stderr=True).print(f"[dim]note:[/] max_length {max_length} is more than model '{name}' has positions "
                                   f"for; its inputs are cut at {limit} tokens.")
    return min(max_length, limit)


def load_for_task(name_or_path: str, task: Task, fine_tuned: bool = False):
    """An ``AutoModelFor…`` for ``task``.

    ``fine_tuned=False`` (starting a fine-tuning): the encoder's weights must all be there; the
    head is new (a head of another size is replaced) and a missing pooler is initialised.
    ``fine_tuned=True`` (a teacher run, a model to distil from or serve): every weight must be
    there with its shape. Weights that do not match are an error that names them, never a
    model loaded half random (transformers would only log it)."""
    import transformers

    quiet_transformers()
    path = _resolve(name_or_path)
    cls = getattr(transformers, AUTO_CLASSES[task.kind])
    kwargs = {"num_labels": task.num_labels}
    if task.kind == "regression":
        kwargs["problem_type"] = "regression"
    else:
        kwargs["id2label"] = dict(enumerate(task.labels))
        kwargs["label2id"] = task.label2id
        if task.kind == "classification":
            kwargs["problem_type"] = "single_label_classification"
    try:
        # weights of another shape are loaded as missing and reported in ``info``; check_loaded decides
        model, info = cls.from_pretrained(path, ignore_mismatched_sizes=True, output_loading_info=True, **kwargs, **remote_code())
    except Exception as e:
        raise cannot_load(name_or_path, "weights", e) from None
    check_loaded(model, info, name_or_path, fine_tuned)
    return model


def check_loaded(model, info: dict, name: str, fine_tuned: bool) -> None:
    """Raise when ``from_pretrained`` left weights random: any missing or reshaped weight of a
    fine-tuned model; of a model to fine-tune, any of its encoder (its head and pooler are new)."""
    prefix = (getattr(model, "base_model_prefix", "") or "") + "."
    new_ok = lambda k: not fine_tuned and (not k.startswith(prefix) or k.startswith(prefix + "pooler."))  # noqa: E731
    missing = [k for k in info.get("missing_keys", ()) if not new_ok(k)]
    mismatched = [m[0] if isinstance(m, (tuple, list)) else m for m in info.get("mismatched_keys", ())]
    mismatched = [k for k in mismatched if not new_ok(k)]
    if missing or mismatched:
        what = (f"{len(missing)} weight(s) missing ({', '.join(missing[:2])}{', …' if len(missing) > 2 else ''})" if missing else
                f"{len(mismatched)} weight(s) of another shape ({', '.join(mismatched[:2])})")
        fix = ("the directory was overwritten or damaged: fine-tune the teacher again" if fine_tuned else
               "pass a complete model directory (config.json with its model.safetensors)")
        raise KdexamError(f"The weights of '{name}' do not match its config: {what}; {fix}.")


def read_task(run_dir: str | Path) -> Task:
    """The task a fine-tuned teacher (or student) run was trained for (``task.json``)."""
    p = Path(run_dir) / "task.json"
    if not p.is_file():
        raise KdexamError(f"'{run_dir}' has no task.json; pass a directory written by 'kdexam teacher'.")
    try:
        return Task.from_dict(json.loads(p.read_text(encoding="utf-8")))
    except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
        raise KdexamError(f"'{p}' is not a valid task description ({str(e).splitlines()[0][:120]}); restore it, "
                          "or fine-tune the teacher again.") from None
