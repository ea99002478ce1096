"""The TextBrewer side of ``bench/vs_textbrewer.py``; runs in TextBrewer's own environment
(``bench/textbrewer_env.sh``) and never imports kdexam. Its helpers (data, batches, the BiLSTM,
evaluation, the optimizer) are shared with ``bench/trainer_peer.py``.

    .venv-tb/bin/python bench/textbrewer_peer.py --teacher TEACHER_DIR --student-init DIR --data DIR \\
        --padding fixed|bucketed --epochs 10 --batch-size 32 --lr 1e-4 --temperature 4 \\
        [--matches '[[3, 1], [6, 2]]'] --out result.json

``--data DIR`` holds ``train.jsonl``, ``validation.jsonl``, ``test.jsonl`` (``{"text", "label"}``,
the label an id of the teacher's head), written by the driver in kdexam's order.
``--student-init DIR``: the student's initial weights, built by the driver with kdexam's own
code (a Hugging Face model directory, or ``bilstm.json`` + ``bilstm.safetensors`` for
:class:`PeerBiLSTM`, which is kdexam's BiLSTM student written out in plain PyTorch).

What runs is TextBrewer's ``GeneralDistiller`` as its examples use it: the teacher's forward
pass on every training batch (``torch.no_grad``), the loss ``kd_loss_type='ce'`` at
``temperature`` with ``kd_loss_weight = T²`` (the gradient of kdexam's ``kl`` objective, which
carries T²), ``hard_label_weight=0``, and for ``--matches`` one
``{layer_T, layer_S, feature: hidden, loss: hidden_mse, weight: 1}`` per pair (masked by the
attention mask, as kdexam's ``hidden_mse``); AdamW without decay on biases and LayerNorm weights,
linear schedule with 10 % warmup, gradient clipping at 1.0; one checkpoint and one validation
evaluation per epoch (TextBrewer's callback), the best validation weights scored on test.

Batches: ``fixed`` — every input padded to ``--max-length`` (128) and shuffled with a
``RandomSampler`` (TextBrewer's examples); ``bucketed`` — the batches kdexam trains on, made by
:class:`LengthBucketSampler` (a copy of kdexam's), each padded to its longest input.

Printed and written (``--out``): ``seconds`` (from after the imports to the test score),
``train_seconds`` (TextBrewer's ``train`` call), ``peak_rss_mb`` (``VmHWM`` of this
process), ``test_accuracy``, ``best_validation_accuracy``, steps and versions; on a GPU
(``--device cuda``: both models there, fp32, as TextBrewer's examples run without apex)
also ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def pin_threads(threads: int) -> None:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS", "RAYON_RS_NUM_CPUS"):
        os.environ[var] = str(threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TQDM_DISABLE", "1")


def peak_rss_mb() -> float:
    """Peak resident memory of this process, MB: Linux ``VmHWM``, not ``ru_maxrss``, which the kernel
    carries over ``fork``/``exec`` from the benchmark's driver (which holds the teacher), so every
    child reported at least the driver's peak (as ``kdexam.evaluation.memory`` explains)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def read_jsonl(path: Path) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r["text"] for r in rows], [int(r["label"]) for r in rows]


# ---- batches ------------------------------------------------------------------------------------


class LengthBucketSampler:
    """kdexam's ``LengthBucketSampler`` (``kdexam.data.encode``), copied: after a shuffle seeded
    with ``seed + epoch``, examples are sorted by length within chunks of ``batch_size × 50``,
    cut into batches, and the batches shuffled. The epoch advances on every ``__iter__`` (kdexam's
    trainer calls ``set_epoch``; TextBrewer and the Trainer just iterate again)."""

    def __init__(self, lengths: list[int], batch_size: int, seed: int, bucket_mult: int = 50):
        self.lengths, self.batch_size, self.seed = lengths, batch_size, seed
        self.bucket = batch_size * bucket_mult
        self.epoch = 0

    def batches(self, epoch: int) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        rng = random.Random(self.seed + epoch)
        rng.shuffle(idx)
        out = []
        for s in range(0, len(idx), self.bucket):
            chunk = sorted(idx[s : s + self.bucket], key=lambda i: self.lengths[i])
            out += [chunk[i : i + self.batch_size] for i in range(0, len(chunk), self.batch_size)]
        rng.shuffle(out)
        return out

    def __iter__(self):
        batches = self.batches(self.epoch)
        self.epoch += 1
        return iter(batches)

    def __len__(self) -> int:
        return (len(self.lengths) + self.batch_size - 1) // self.batch_size


def encode(tokenizer, texts: list[str], max_length: int, fixed: bool) -> list[dict]:
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding="max_length" if fixed else False)
    keys = [k for k in MODEL_INPUTS if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


class Rows:
    """A map-style dataset of encoded rows (with ``labels`` when given)."""

    def __init__(self, rows: list[dict], labels: list[int] | None = None):
        self.rows = rows if labels is None else [dict(r, labels=y) for r, y in zip(rows, labels)]

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict:
        return self.rows[i]


def train_loader(tokenizer, texts, labels, batch_size: int, max_length: int, padding: str, seed: int, with_labels=False):
    """Training batches of model inputs: ``fixed`` (padded to max_length, RandomSampler) or
    ``bucketed`` (kdexam's length-bucketed batches, padded to each batch's longest input)."""
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    fixed = padding == "fixed"
    data = Rows(encode(tokenizer, texts, max_length, fixed), labels if with_labels else None)

    def collate(rows):
        if fixed:
            return {k: torch.tensor([r[k] for r in rows]) for k in rows[0]}
        return dict(tokenizer.pad(rows, return_tensors="pt"))

    if fixed:
        return DataLoader(data, batch_size=batch_size, sampler=RandomSampler(data, generator=torch.Generator().manual_seed(seed)),
                          collate_fn=collate)
    lengths = [len(r["input_ids"]) for r in data.rows]
    return DataLoader(data, batch_sampler=LengthBucketSampler(lengths, batch_size, seed), collate_fn=collate)


def eval_batches(tokenizer, texts: list[str], max_length: int, fixed: bool, batch_size: int = 64):
    """Evaluation batches in length order (longest first, as kdexam evaluates), or padded to max_length."""
    import torch

    rows = encode(tokenizer, texts, max_length, fixed)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i]["input_ids"])) if not fixed else list(range(len(rows)))
    out = []
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        chunk = [rows[i] for i in idx]
        batch = ({k: torch.tensor([r[k] for r in chunk]) for k in chunk[0]} if fixed
                 else dict(tokenizer.pad(chunk, return_tensors="pt")))
        out.append((idx, batch))
    return out


def accuracy(model, batches, labels: list[int]) -> float:
    """Accuracy of ``model`` on ``batches`` (moved to the model's device)."""
    import torch

    was = model.training
    model.eval()
    correct = 0
    device = next(model.parameters()).device
    with torch.inference_mode():
        for idx, batch in batches:
            out = model(**{k: v.to(device) for k, v in batch.items()})
            logits = out["logits"] if isinstance(out, dict) else out.logits
            pred = logits.argmax(-1).tolist()
            correct += sum(p == labels[i] for p, i in zip(pred, idx))
    model.train(was)
    return correct / len(labels)


# ---- students -----------------------------------------------------------------------------------


def peer_bilstm_class():
    """kdexam's BiLSTM student for single-text classification (``kdexam.students.bilstm``) in plain
    PyTorch, with the same parameter names, so the driver's initial weights load as they are:
    trimmed-vocabulary embeddings (``id_map``) → dropout → packed BiLSTM → masked max pooling →
    Linear–ReLU–Dropout–Linear."""
    import torch
    from torch import nn
    from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

    class Embeddings(nn.Module):
        def __init__(self, vocab_size, dim, source_vocab_size):
            super().__init__()
            if source_vocab_size:
                self.register_buffer("id_map", torch.zeros(source_vocab_size, dtype=torch.long))
            else:
                self.id_map = None
            self.word = nn.Embedding(vocab_size, dim)

        def forward(self, input_ids):
            return self.word(self.id_map[input_ids] if self.id_map is not None else input_ids)

    class PeerBiLSTM(nn.Module):
        def __init__(self, c: dict):
            super().__init__()
            if c.get("tagging") or c.get("pooling", "max") != "max" or c.get("num_layers", 1) != 1 or c.get("segment_embeddings"):
                raise ValueError("PeerBiLSTM covers kdexam's default single-text classifier only")
            h = c["hidden_size"]
            self.embeddings = Embeddings(c["vocab_size"], c["embedding_dim"], c.get("source_vocab_size"))
            self.dropout = nn.Dropout(c["dropout"])
            self.lstms = nn.ModuleList([nn.LSTM(c["embedding_dim"], h, batch_first=True, bidirectional=True)])
            self.head = nn.Sequential(nn.Linear(2 * h, h), nn.ReLU(), nn.Dropout(c["dropout"]), nn.Linear(h, c["num_labels"]))

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, labels=None):
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            lengths = attention_mask.sum(1).clamp(min=1)
            mask = torch.arange(input_ids.shape[1], device=input_ids.device)[None, :] < lengths[:, None]
            x = self.embeddings(input_ids)
            packed = pack_padded_sequence(self.dropout(x), lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.lstms[0](packed)
            h, _ = pad_packed_sequence(out, batch_first=True, total_length=input_ids.shape[1])
            pooled = h.masked_fill(~mask.unsqueeze(-1), float("-inf")).max(1).values
            return {"logits": self.head(self.dropout(pooled))}

    return PeerBiLSTM


def load_student(init: Path):
    """The student's initial weights: a Hugging Face directory, or a BiLSTM (``bilstm.json``)."""
    if (init / "bilstm.json").is_file():
        from safetensors.torch import load_file

        model = peer_bilstm_class()(json.loads((init / "bilstm.json").read_text()))
        model.load_state_dict(load_file(str(init / "bilstm.safetensors")))
        return model, "bilstm"
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(str(init)), "hf"


def make_optimizer(model, lr: float, weight_decay: float = 0.01):
    """kdexam's: AdamW, no decay on parameters of fewer than two dimensions (biases, LayerNorm)."""
    import torch

    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def common_args(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--teacher", required=True, help="the fine-tuned teacher (a Hugging Face model directory)")
    ap.add_argument("--student-init", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, required=True)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--matches", default="[]", help="JSON list of [teacher_layer, student_layer] hidden-state MSE pairs")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (the teacher and the student both there, fp32)")
    ap.add_argument("--out", required=True)


def gpu_memory() -> dict:
    """Peak GPU memory of this process and the GPU's name, when it used one (also kdexam's runs in
    ``bench/vs_textbrewer.py``)."""
    import torch

    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):
        return {}
    return {"peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1), "gpu": torch.cuda.get_device_name(0)}


def finish(out: str, result: dict) -> None:
    result["peak_rss_mb"] = round(peak_rss_mb(), 1)
    result.update(gpu_memory())
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not isinstance(v, (dict, list))}))


# ---- TextBrewer ---------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap)
    ap.add_argument("--padding", choices=("fixed", "bucketed"), default="fixed")
    a = ap.parse_args()
    pin_threads(a.threads)

    import textbrewer
    import torch
    import transformers
    from textbrewer import DistillationConfig, GeneralDistiller, TrainingConfig
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        get_linear_schedule_with_warmup,
    )

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    random.seed(a.seed)
    torch.manual_seed(a.seed)
    data = Path(a.data)
    train_x, train_y = read_jsonl(data / "train.jsonl")
    val_x, val_y = read_jsonl(data / "validation.jsonl")
    test_x, test_y = read_jsonl(data / "test.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(a.teacher)
    tokenizer.padding_side = "right"
    fixed = a.padding == "fixed"
    loader = train_loader(tokenizer, train_x, train_y, a.batch_size, a.max_length, a.padding, a.seed)
    val_batches = eval_batches(tokenizer, val_x, a.max_length, fixed)
    teacher = AutoModelForSequenceClassification.from_pretrained(a.teacher).to(a.device)
    student, family = load_student(Path(a.student_init))
    student.to(a.device)  # TextBrewer moves batches, not models (its examples call .to(device))
    matches = [tuple(m) for m in json.loads(a.matches)]
    hidden = bool(matches)

    def adaptor(batch, out):
        d = {"logits": out["logits"] if isinstance(out, dict) else out.logits}
        if hidden:
            d["hidden"] = out.hidden_states
            d["inputs_mask"] = batch["attention_mask"]
        return d

    distill_config = DistillationConfig(
        temperature=a.temperature, kd_loss_type="ce", kd_loss_weight=a.temperature ** 2, hard_label_weight=0,
        intermediate_matches=[{"layer_T": t, "layer_S": s, "feature": "hidden", "loss": "hidden_mse", "weight": 1}
                              for t, s in matches])
    work = Path(tempfile.mkdtemp(prefix="tb-peer-"))
    train_config = TrainingConfig(device=a.device, output_dir=str(work / "saved"), log_dir=str(work / "log"), ckpt_frequency=1)
    (work / "saved").mkdir(exist_ok=True)
    distiller = GeneralDistiller(train_config=train_config, distill_config=distill_config, model_T=teacher, model_S=student,
                                 adaptor_T=adaptor, adaptor_S=adaptor)
    optimizer = make_optimizer(student, a.lr)
    total = len(loader) * a.epochs
    best = {"accuracy": -1.0, "state": None, "history": []}

    def callback(model, step):
        acc = accuracy(model, val_batches, val_y)
        best["history"].append({"step": step, "validation_accuracy": acc, "seconds": round(time.perf_counter() - started, 2)})
        if acc > best["accuracy"]:
            best.update(accuracy=acc, state={k: v.detach().clone() for k, v in model.state_dict().items()})

    extra = {"output_hidden_states": True} if hidden else {}
    t0 = time.perf_counter()
    with distiller:
        distiller.train(optimizer, loader, num_epochs=a.epochs, scheduler_class=get_linear_schedule_with_warmup,
                        scheduler_args={"num_warmup_steps": int(a.warmup_ratio * total), "num_training_steps": total},
                        max_grad_norm=1.0, callback=callback, **extra)
    train_seconds = time.perf_counter() - t0
    student.load_state_dict(best["state"])
    test_acc = accuracy(student, eval_batches(tokenizer, test_x, a.max_length, fixed), test_y)
    finish(a.out, {
        "system": f"textbrewer-{a.padding}", "student": family, "seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(train_seconds, 2), "steps": total, "test_accuracy": test_acc,
        "best_validation_accuracy": best["accuracy"], "history": best["history"], "examples": len(train_x),
        "versions": {"textbrewer": textbrewer.__version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": sys.version.split()[0]},
    })


if __name__ == "__main__":
    main()
