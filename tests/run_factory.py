"""Tiny run directories for the export, predictor and bench tests: a teacher run (random tiny
BERT with a task head) and untrained student runs of any kind, for each task kind, laid out as
'kdexam teacher' and 'kdexam distill' write them (model, task/student json, config.yaml,
metrics.json). No training: these tests check plumbing and numerics, not quality."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import FILLER, NEG_WORDS, POS_WORDS, build_tokenizer, sentiment_examples, tagging_sentences, write_conll, write_jsonl

TASK_NAMES = ("cls", "pair", "tag", "reg")
STUDENT_KINDS = ("bilstm", "cnn", "static", "bert-tiny", "teacher-layers:1")
SMALL = {"bilstm": dict(hidden_size=8, embedding_dim=16), "cnn": dict(num_filters=6, embedding_dim=16),
         "static": dict(embedding_dim=16, hidden_size=8, token_weights=True, ngram_buckets=64)}
LONG = "the movie was really quite good and the plot was great and the actors were lovely but the story was dull"


def _pairs(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        a = " ".join(rng.sample(FILLER, rng.randint(1, 8)) + [rng.choice(POS_WORDS)])
        b = " ".join(rng.sample(FILLER, rng.randint(1, 4)) + [rng.choice(POS_WORDS + NEG_WORDS)])
        rows.append({"text": a, "text_pair": b, "label": ["yes", "no", "maybe"][i % 3]})
    return rows


def _scores(n: int, seed: int) -> list[dict]:
    return [{"text": r["text"] + (" " + LONG if i % 4 == 0 else ""), "label": (1.5 if r["label"] == "pos" else -2.0) + 0.25 * (i % 3)}
            for i, r in enumerate(sentiment_examples(n, seed))]


def write_data(root: Path, task_name: str, n_val: int = 12) -> Path:
    """train/validation files of one synthetic task (lengths vary a lot, so batches are padded)."""
    d = root / f"data-{task_name}"
    d.mkdir(parents=True, exist_ok=True)
    if task_name == "tag":
        sents = tagging_sentences(40 + n_val, seed=4)
        write_conll(d / "train.conll", sents[:40])
        write_conll(d / "validation.conll", sents[40:] + [(LONG.split()[:12], ["DET"] * 12)])
        return d
    make = {"cls": lambda n, s: [dict(r, text=r["text"] + (" " + LONG if i % 5 == 0 else "")) for i, r in enumerate(sentiment_examples(n, s))],
            "pair": _pairs, "reg": _scores}[task_name]
    write_jsonl(d / "train.jsonl", make(40, 1))
    write_jsonl(d / "validation.jsonl", make(n_val, 2))
    return d


def _task(data: Path):
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data

    return load_data(DataConfig(name=str(data))).task


def make_teacher_run(root: Path, task_name: str) -> Path:
    """A 'kdexam teacher'-shaped run: tiny random BERT with the task's head."""
    import transformers
    from transformers import BertConfig

    from kdexam.config import DataConfig, TeacherRunConfig, save_config
    from kdexam.paths import atomic_write_json
    from kdexam.students.registry import count_parameters
    from kdexam.students.transformer import auto_class_name, head_kwargs

    data = write_data(root, task_name)
    task = _task(data)
    run = root / f"teacher-{task_name}"
    run.mkdir(parents=True, exist_ok=True)
    tok = build_tokenizer()
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=128, **head_kwargs(task))
    model = getattr(transformers, auto_class_name(task)).from_config(cfg)
    model.save_pretrained(run)
    tok.save_pretrained(run)
    atomic_write_json(run / "task.json", task.to_dict())
    save_config(TeacherRunConfig(data=DataConfig(name=str(data), max_length=64), model="tiny", out=str(run)), run / "config.yaml")
    atomic_write_json(run / "metrics.json", {"task": task.kind, "dataset": task.dataset, "split": "validation",
                                             "primary_metric": task.primary_metric,
                                             "teacher": {"name": "tiny", "params": count_parameters(model), "metrics": {}}})
    return run


def make_student_run(teacher: Path, kind: str, name: str | None = None, **spec_kw) -> Path:
    """A 'kdexam distill'-shaped run of an untrained student of ``kind`` (its padding row made
    non-zero, so any read of padding shows in the logits)."""
    from kdexam.config import DataConfig, DistillRunConfig, save_config
    from kdexam.data.splits import load_data
    from kdexam.paths import atomic_write_json
    from kdexam.students.registry import StudentSpec, build_student, count_parameters, save_student

    cfg = json.loads(json.dumps(__import__("yaml").safe_load((teacher / "config.yaml").read_text())))
    data = load_data(DataConfig(**cfg["data"]))
    spec = StudentSpec(kind=kind, **{**SMALL.get(kind, {}), **spec_kw})
    torch.manual_seed(1)
    model, tok = build_student(spec, data.task, teacher, train_texts=[e.text for e in data.train])
    with torch.no_grad():
        model.get_input_embeddings().weight[0] = 0.5  # row of [PAD] (trimmed tables keep specials first)
        for m in model.modules():
            if isinstance(m, torch.nn.Embedding) and m.num_embeddings == 2 and not m.weight.any():
                m.weight.normal_()  # segment embeddings start at zero; give pairs an effect
    run = teacher.parent / (name or f"{kind.replace(':', '')}-{teacher.name.split('-')[-1]}")
    save_student(model, tok, spec, data.task, run)
    save_config(DistillRunConfig(teacher=str(teacher), data=DataConfig(**cfg["data"]), student=spec, out=str(run)), run / "config.yaml")
    atomic_write_json(run / "metrics.json", {
        "task": data.task.kind, "dataset": data.name, "split": "validation", "primary_metric": data.task.primary_metric,
        "teacher": {"name": str(teacher), "params": 1, "metrics": {}},
        "student": {"name": kind, "params": count_parameters(model), "metrics": {}}, "retention": 1.0})
    return run


class Runs:
    """Teacher and student runs made on first use and shared by the tests of a session
    (tests that write into a run directory copy it first)."""

    def __init__(self, root: Path):
        self.root, self._made = root, {}

    def teacher(self, task_name: str) -> Path:
        key = ("teacher", task_name)
        if key not in self._made:
            self._made[key] = make_teacher_run(self.root, task_name)
        return self._made[key]

    def student(self, kind: str, task_name: str, **spec_kw) -> Path:
        key = (kind, task_name, tuple(sorted(spec_kw.items())))
        if key not in self._made:
            suffix = "".join(f"-{k}-{v}" for k, v in sorted(spec_kw.items()))
            name = f"{kind.replace(':', '')}{suffix}-{task_name}"
            self._made[key] = make_student_run(self.teacher(task_name), kind, name, **spec_kw)
        return self._made[key]

    def get(self, kind: str, task_name: str) -> Path:
        return self.teacher(task_name) if kind == "teacher" else self.student(kind, task_name)


@pytest.fixture(scope="session")
def runs(tmp_path_factory) -> Runs:
    return Runs(tmp_path_factory.mktemp("runs"))
