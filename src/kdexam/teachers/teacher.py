"""The teacher: a fine-tuned model that tokenizes raw examples itself and returns named outputs.

A :class:`Teacher` never sees a student's input ids: it takes :class:`Example`
objects, encodes them with its own tokenizer and gives named outputs
(:mod:`kdexam.outputs`) in their *stored form* per example:

- ``logits``: [C] per example (regression: [1]); tagging: [words, C], the logits at
  each word's first subword (so students with other tokenizers match word by word);
- ``cls.K`` / ``mean.K``: [H]; ``word.K`` (tagging): [words, H], NaN for a word cut off by
  truncation; ``hidden.K`` / ``query.K`` / ``key.K`` / ``value.K``: [L, H];
  ``attention.K``: [heads, L, L] — over the teacher's own L tokens.

:meth:`Teacher.outputs` serves them from the cache (:mod:`kdexam.teachers.cache`),
computing only what is missing in one pass, or online per batch when the cache is off
or would exceed its disk budget. :func:`to_batch` turns stored forms into tensors laid
out like the student's batch. The model itself loads only when something must be
computed, and counts its forward calls (a cache hit leaves the count at 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.markup import escape

from kdexam.data.encode import MODEL_INPUTS, Features, encode, first_subwords, make_loader
from kdexam.data.readers import Example
from kdexam.errors import KdexamError
from kdexam.outputs import encoder_outputs, model_shape, parse_name
from kdexam.parallel import attention_kernels, barrier, my_share, process_device, rank_and_world
from kdexam.tasks import Task
from kdexam.teachers.cache import (JoinedOutputs, Stored, TeacherOutputs, cache_dir, content_order_key, hub_commit, model_key,
                                   model_fingerprint, pack, read_output, write_output)
from kdexam.teachers.loader import remote_code

console = Console(stderr=True)
TOKEN_LEVEL = ("hidden", "query", "key", "value", "attention")
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
"""``teacher_precision``: the teacher's forward in fp32, or under bf16/fp16 autocast (cached apart)."""


class Teacher:
    """A teacher run directory (or, for task-agnostic distillation, any encoder: a built-in name,
    a local HF directory or a hub id). ``task`` defaults to the run's ``task.json``; ``None`` with
    ``general=True`` loads the bare encoder (no head, no logits)."""

    def __init__(self, source: str | Path, task: Task | None = None, max_length: int = 128, general: bool = False):
        from kdexam.teachers.builtin_models import resolve_model
        from kdexam.teachers.loader import config_positions, fit_max_length, load_tokenizer, read_task

        self.name = str(source)
        self.dir = Path(resolve_model(str(source)))
        self.general = general
        self.task = None if general else (task or read_task(self.dir))
        self._key: str | None = None
        self._model = None
        self._params: int | None = None
        self.tokenizer = load_tokenizer(str(self.dir))
        self.max_length = fit_max_length(max_length, config_positions(self.dir), self.tokenizer, self.name)
        self.forward_calls = 0
        self.examples_computed = 0
        """Examples this process ran the teacher on (a cache hit adds none; a parallel fill, its share)."""

    @property
    def key(self) -> str:
        if self._key is None:
            if not self.dir.is_dir() and hub_commit(self.name) is None:
                _ = self.model  # a hub id with no local copy: downloaded first, so that its key names a commit
            self._key = model_key(self.dir, self.name)
        return self._key

    @property
    def model(self) -> torch.nn.Module:
        if self._model is None:
            if self.general:
                from transformers import AutoModel

                from kdexam.teachers.loader import cannot_load, quiet_transformers

                quiet_transformers()
                try:
                    self._model = AutoModel.from_pretrained(str(self.dir), **remote_code())
                except Exception as e:
                    raise cannot_load(self.name, "weights", e) from None
            else:
                from kdexam.teachers.loader import load_for_task

                self._model = load_for_task(str(self.dir), self.task, fine_tuned=True)
            self._model.to(process_device()).eval()  # (the process's GPU where there is one)
            self._model.register_forward_pre_hook(self._count)
        return self._model

    def release(self) -> None:
        """Drop the loaded model (its weights and, on a GPU, its memory); the next use of
        :attr:`model` loads it again. ``distill`` calls it once every output it needs is at hand."""
        if self._model is not None and self._params is None and not (self.dir / "model.safetensors").is_file():
            # (counted now, as params would count them, so that it does not load the model again just for that)
            self._params = sum(p.numel() for p in self._model.parameters())
        self._model = None

    def _count(self, module, _args) -> None:
        self.forward_calls += 1

    @property
    def config(self):
        from transformers import AutoConfig

        return self._model.config if self._model is not None else AutoConfig.from_pretrained(str(self.dir), **remote_code())

    @property
    def shape(self):
        """Layers, width and heads (:class:`kdexam.objectives.ModelShape`), read without loading weights."""
        return model_shape(self.config)

    @property
    def params(self) -> int:
        from safetensors import safe_open

        f_path = self.dir / "model.safetensors"
        if self._params is not None:
            return self._params
        if not f_path.is_file():
            return sum(p.numel() for p in self.model.parameters())
        with safe_open(str(f_path), "pt") as f:
            return int(sum(np.prod(f.get_slice(k).get_shape()) for k in f.keys()))

    def encode(self, examples: list[Example]) -> Features:
        return encode(examples, self.tokenizer, self.task or Task("classification", ["-"], False, "accuracy", ""), self.max_length)

    # ---- computing -------------------------------------------------------------------------------

    @torch.inference_mode()
    def compute(self, examples: list[Example], names, batch_size: int = 64, features: Features | None = None,
                progress: bool = False, indices: list[int] | None = None, precision: str = "fp32") -> dict[str, list[np.ndarray]]:
        """Stored forms of ``names`` for every example (only those at ``indices``, the others left
        ``None``, when given), in one teacher pass (length-sorted batches); ``precision`` ``bf16`` or
        ``fp16`` runs the forward under autocast (the stored forms are fp32/fp16 as always)."""
        names = list(names)
        features = features or self.encode(examples)
        model = self.model
        device = next(model.parameters()).device
        out: dict[str, list] = {n: [None] * len(examples) for n in names}
        task = self.task or Task("classification", ["-"], False, "accuracy", "")
        loader = make_loader(features, self.tokenizer, task, batch_size, shuffle=False, indices=indices)
        self.examples_computed += len(loader.dataset)
        low = PRECISIONS[precision]  # None: fp32, no autocast
        with attention_kernels(device):
            for batch in with_progress(loader, progress, f"teacher outputs ({', '.join(names)})"):
                inputs = {k: v.to(device) for k, v in batch.items() if k in MODEL_INPUTS}
                with torch.autocast(device.type, dtype=low or torch.bfloat16, enabled=low is not None):
                    result = encoder_outputs(model, inputs, names)
                for row, i in enumerate(batch["index"].tolist()):
                    for n in names:
                        out[n][i] = stored_form(n, result[n][row], features.rows[i], self.task)
        return out

    def outputs_of_segments(self, segments: list[list[Example]], names, cache: bool = True,
                            budget_gb: float = 8.0, precision: str = "fp32") -> TeacherOutputs:
        """:meth:`outputs` of each segment (each cached under its own content key; the budget shared),
        joined into one list of examples (:class:`~kdexam.teachers.cache.JoinedOutputs`)."""
        parts, used = [], 0
        for segment in segments:
            part = self.outputs(segment, names, cache, budget_gb, used_bytes=used, precision=precision)
            used += sum(s.data.nbytes for s in part.stored.values())
            parts.append(part)
        return parts[0] if len(parts) == 1 else JoinedOutputs(parts, [len(s) for s in segments])

    def outputs(self, examples: list[Example], names, cache: bool = True, budget_gb: float = 8.0,
                used_bytes: int = 0, precision: str = "fp32") -> TeacherOutputs:
        """The teacher's ``names`` on ``examples``: read from the cache, computed once and cached, or
        (``cache=False``, or beyond ``budget_gb`` of disk, ``used_bytes`` of it already taken) computed
        online for each batch; by a forward in ``precision`` (outputs of a bf16/fp16 forward are cached
        under their own key)."""
        if precision not in PRECISIONS:
            raise KdexamError(f"Teacher precision '{precision}' is not one of {', '.join(PRECISIONS)}.")
        names = sorted(set(names))
        # keyed and stored by content: the same examples in another order (another seed's shuffle) hit
        order, key = content_order_key(self.key if precision == "fp32" else f"{self.key}+{precision}", examples, self.task,
                                       self.max_length)
        examples = [examples[i] for i in order]
        rows = np.empty(len(order), dtype=np.int64)
        rows[order] = np.arange(len(order))
        d = cache_dir(key)
        stored = {n: s for n in names if cache and (s := read_output(d, n)) is not None}
        missing = [n for n in names if n not in stored]
        online: list[str] = [] if cache else missing
        notes: list[str] = []
        features = None
        if cache and missing:
            features = self.encode(examples)
            sizes = {n: self.estimate_bytes(n, features) for n in missing}
            have = used_bytes + sum(s.data.nbytes for s in stored.values())
            budget = budget_gb * 1e9
            for n in sorted(missing, key=lambda n: -sizes[n]):  # the largest go online first
                if have + sum(sizes[m] for m in missing if m not in online) <= budget:
                    break
                if n != "logits":
                    online.append(n)
            if online:
                msg = (f"teacher outputs {', '.join(online)} ({sum(sizes[n] for n in online) / 1e9:.2f} GB) are computed "
                       f"online for each batch: caching them would exceed the {budget_gb:g} GB cache budget (cache_budget_gb)")
                console.print(f"[yellow]{escape(msg)}[/]")
                notes.append(msg)
        to_cache = [n for n in missing if n not in online]
        if to_cache:
            console.print(f"teacher: computing {', '.join(to_cache)} for {len(examples)} examples (cached for later runs)")
            if rank_and_world()[1] > 1:
                stored.update(self.fill_sharded(d, examples, to_cache, features, precision))
            else:
                computed = self.compute(examples, to_cache, features=features, progress=True, precision=precision)
                for n in to_cache:
                    write_output(d, n, pack(n, computed.pop(n)))
                    stored[n] = read_output(d, n)

        def compute_online(indices: list[int], wanted: list[str]) -> dict[str, list[np.ndarray]]:
            return self.compute([examples[i] for i in indices], wanted, precision=precision)

        return TeacherOutputs(stored, d if cache else None, from_cache=bool(cache and stored and not to_cache), online=tuple(online),
                              compute=compute_online, notes=notes, rows=rows)

    def fill_sharded(self, d: Path, examples: list[Example], names: list[str], features: Features,
                     precision: str = "fp32") -> dict[str, Stored]:
        """The cache fill of one of several data-parallel processes (:mod:`kdexam.parallel`): this
        process computes its share of the examples (every ``world``-th, from its rank) and writes it
        as the output ``NAME.shard-R-of-W``; the main process merges the shards, in example order,
        into ``NAME`` and removes them; then every process reads ``NAME``. A shard already written
        (a run killed after writing it) is read, not recomputed."""
        rank, world = rank_and_world()
        mine = my_share(len(examples))
        shard = {n: f"{n}.shard-{rank}-of-{world}" for n in names}
        todo = [n for n in names if read_output(d, shard[n]) is None]
        if todo:
            computed = self.compute(examples, todo, features=features, progress=True, indices=mine, precision=precision)
            for n in todo:
                write_output(d, shard[n], pack(n, [computed[n][i] for i in mine]))
            del computed
        barrier()
        if rank == 0:
            for n in names:
                parts = [read_output(d, f"{n}.shard-{r}-of-{world}") for r in range(world)]
                if any(p is None for p in parts):
                    break  # (raised below, after the barrier, by every process: none is left waiting)
                write_output(d, n, pack(n, [parts[i % world].example(i // world) for i in range(len(examples))]))
                for f in d.glob(f"{n}.shard-*"):
                    f.unlink(missing_ok=True)
        barrier()
        merged = {n: read_output(d, n) for n in names}
        if missing := [n for n, out in merged.items() if out is None]:
            raise KdexamError(f"teacher cache {d}: a process's share of '{missing[0]}' is missing or damaged after the "
                              "parallel fill (separate kdexam homes? see docs/scaling.md); run again (the whole shares "
                              "are kept and reused).")
        return merged

    def estimate_bytes(self, name: str, features: Features) -> int:
        """Disk size of one output on ``features`` (the teacher's own encoding)."""
        kind, _ = parse_name(name)
        shape = self.shape
        lengths = np.asarray(features.lengths, dtype=np.int64)
        h, heads = shape.hidden_size or 0, shape.num_heads or 0
        if kind == "logits":
            c = self.task.num_labels if self.task else 1
            rows = sum(r["n_words"] for r in features.rows) if self.task and self.task.kind == "token-classification" else len(lengths)
            return int(rows * c * 4)
        if kind in ("cls", "mean"):
            return int(len(lengths) * h * 2)
        if kind == "word":
            return int(sum(r["n_words"] for r in features.rows) * h * 2)
        if kind == "attention":
            return int((lengths ** 2).sum() * heads * 2)
        return int(lengths.sum() * h * 2)


def with_progress(loader, show: bool, desc: str):
    """The items of ``loader`` with a progress bar named ``desc`` when ``show`` (plain lines in a log file)."""
    if not show:
        yield from loader
        return
    from kdexam.training.trainer import progress_bar

    with progress_bar() as bar:
        job = bar.add_task(desc, total=len(loader), info="")
        every = max(1, len(loader) // 10)
        for i, batch in enumerate(loader, 1):
            yield batch
            bar.update(job, advance=1)
            if not bar.console.is_terminal and i % every == 0:  # a log file gets plain lines
                bar.console.print(f"{desc}: batch {i}/{len(loader)}")


def per_word(t: np.ndarray, row: dict, fill: float, dtype) -> np.ndarray:
    """[words, D]: each word's row of ``t`` [L, D] at its first subword; ``fill`` for a word cut off by truncation."""
    words = np.full((row["n_words"], t.shape[-1]), fill, dtype=dtype)
    for w, pos in enumerate(first_subwords(row["word_ids"], row["n_words"])):
        if pos >= 0:
            words[w] = t[pos]
    return words


def stored_form(name: str, tensor: torch.Tensor, row: dict, task: Task | None) -> np.ndarray:
    """One example's output (``tensor`` is its row of the padded batch) cut to its real length."""
    kind, _ = parse_name(name)
    n = len(row["input_ids"])
    t = tensor.float().cpu().numpy()
    if kind == "logits":
        if task is not None and task.kind == "token-classification":
            return per_word(t, row, 0.0, np.float32)  # words cut by truncation keep zeros: a uniform distribution
        return t.astype(np.float32)
    if kind == "word":
        if "word_ids" not in row:
            raise KdexamError(f"Output '{name}' holds one state per word, for token classification only.")
        return per_word(t, row, np.nan, np.float16)  # words cut by truncation stay NaN: no target
    if kind in ("cls", "mean"):
        return t.astype(np.float16)
    if kind == "attention":
        return t[:, :n, :n].astype(np.float16)
    return t[:n].astype(np.float16)


def store_scored_logits(run_dir: Path, examples: list[Example], features: Features, logits: list[np.ndarray],
                        task: Task, max_length: int) -> Path:
    """A fine-tuned teacher's logits on the split it was scored on (fp32, ``features`` encoded with
    its tokenizer at ``max_length``), written to the cache under the key :meth:`Teacher.outputs`
    computes for the same examples: a student run of this teacher reads them for its loyalty and
    retention instead of running the teacher on that split again. Call it once the run's files
    are written (the key is their fingerprint). Returns the cache folder."""
    order, key = content_order_key(model_fingerprint(Path(run_dir)), examples, task, max_length)
    d = cache_dir(key)
    if read_output(d, "logits") is None:
        write_output(d, "logits", pack("logits", [stored_form("logits", torch.from_numpy(np.asarray(logits[i])),
                                                              features.rows[i], task) for i in order]))
    return d


# ---- laying teacher outputs out like the student's batch ------------------------------------------------


def to_batch(stored: dict[str, list[np.ndarray]], batch: dict, task: Task | None,
             positions: list[np.ndarray] | None = None) -> dict[str, torch.Tensor]:
    """Stored forms of the batch's examples → tensors shaped like the student's batch.

    Token-level outputs are padded to the batch length (they are only requested when the
    student shares the teacher's tokenization); tagging logits and ``word.K`` go on the student's
    own first subwords (``positions``: each example's first-subword positions, by example index;
    ``word.K`` is NaN wherever no teacher word lands)."""
    b, length = batch["input_ids"].shape
    out: dict[str, torch.Tensor] = {}
    for name, rows in stored.items():
        kind, _ = parse_name(name.partition("@")[0])  # an ensemble member's output: NAME@member
        if (kind == "logits" and task is not None and task.kind == "token-classification") or kind == "word":
            t = torch.zeros(b, length, rows[0].shape[-1]) if kind == "logits" else torch.full((b, length, rows[0].shape[-1]), float("nan"))
            for r, i in enumerate(batch["index"].tolist()):
                pos = positions[i]
                keep = pos >= 0
                t[r, torch.from_numpy(pos[keep])] = torch.from_numpy(np.array(rows[r][keep], dtype=np.float32))
        elif kind in ("hidden", "query", "key", "value"):
            t = torch.zeros(b, length, rows[0].shape[-1], dtype=torch.float16)
            for r, a in enumerate(rows):
                t[r, : len(a)] = torch.from_numpy(np.array(a))
        elif kind == "attention":
            t = torch.zeros(b, rows[0].shape[0], length, length, dtype=torch.float16)
            for r, a in enumerate(rows):
                n = a.shape[-1]
                t[r, :, :n, :n] = torch.from_numpy(np.array(a))
        else:
            t = torch.from_numpy(np.stack(rows))
        out[name] = t
    return out


def check_same_tokenization(teacher: Teacher, examples: list[Example], student_features: Features, names) -> None:
    """Token-level matches need the student to see exactly the teacher's tokens."""
    token_level = sorted(n for n in names if parse_name(n)[0] in TOKEN_LEVEL)
    if not token_level:
        return
    teacher_features = teacher.encode(examples)
    for i, (t, s) in enumerate(zip(teacher_features.rows, student_features.rows)):
        if t["input_ids"] != s["input_ids"]:
            raise KdexamError(f"Teacher outputs {', '.join(token_level)} are compared token by token, but the student "
                              f"tokenizes example {i} differently from the teacher; use a student on the teacher's "
                              "tokenizer (a bert-* preset or teacher-layers:K) or sentence-level objectives.")
