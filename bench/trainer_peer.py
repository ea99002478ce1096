"""The common recipe for ``bench/vs_textbrewer.py``: a Hugging Face ``Trainer`` subclass whose
``compute_loss`` runs the teacher on every batch (the pattern of most distillation tutorials and
of the transformers distillation examples). Needs transformers + accelerate (kdexam's own
environment has both); never imports kdexam. Same arguments as ``bench/textbrewer_peer.py``.

    .venv/bin/python bench/trainer_peer.py --teacher TEACHER_DIR --student-init DIR --data DIR \\
        --epochs 10 --batch-size 32 --lr 1e-4 --temperature 4 [--matches '[[3, 1], [6, 2]]'] --out result.json

The recipe as tutorials write it: a tokenized dataset without padding, ``DataCollatorWithPadding``
(each random batch padded to its longest input), ``TrainingArguments`` with the run's epochs, batch
size, learning rate, weight decay 0.01, linear schedule with 10 % warmup, clipping at 1.0 (the
Trainer's AdamW leaves biases and LayerNorm weights undecayed, as kdexam does), no checkpoints,
no reporting. Loss: T² · KL(p_T ‖ p_S) at ``--temperature`` (kdexam's ``kl``), plus for ``--matches``
the masked hidden-state MSE per pair. Validation accuracy (student only) once an epoch from a
callback, the best weights kept in memory and scored on test, as for the other systems.
``--device cuda``: the Trainer on the GPU, fp32 (no ``bf16``/``fp16`` argument: the recipe's default).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from textbrewer_peer import (  # noqa: F401
    Rows,
    accuracy,
    common_args,
    encode,
    eval_batches,
    finish,
    load_student,
    peak_rss_mb,
    pin_threads,
    read_jsonl,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common_args(ap)
    a = ap.parse_args()
    pin_threads(a.threads)

    import torch
    import torch.nn.functional as F
    import transformers
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    torch.set_num_threads(a.threads)
    started = time.perf_counter()
    data = Path(a.data)
    train_x, train_y = read_jsonl(data / "train.jsonl")
    val_x, val_y = read_jsonl(data / "validation.jsonl")
    test_x, test_y = read_jsonl(data / "test.jsonl")
    tokenizer = AutoTokenizer.from_pretrained(a.teacher)
    train = Rows(encode(tokenizer, train_x, a.max_length, False), train_y)
    val_batches = eval_batches(tokenizer, val_x, a.max_length, False)
    teacher = AutoModelForSequenceClassification.from_pretrained(a.teacher).eval().to(a.device)  # the Trainer moves the student
    student, family = load_student(Path(a.student_init))
    matches = [tuple(m) for m in json.loads(a.matches)]
    T = a.temperature

    class DistillationTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            inputs = {k: v for k, v in inputs.items() if k != "labels"}
            extra = {"output_hidden_states": True} if matches else {}
            out_s = model(**inputs, **extra)
            with torch.no_grad():
                out_t = teacher(**inputs, **extra)
            logits_s = out_s["logits"] if isinstance(out_s, dict) else out_s.logits
            loss = F.kl_div(F.log_softmax(logits_s / T, -1), F.log_softmax(out_t.logits / T, -1), reduction="batchmean",
                            log_target=True) * T * T
            if matches:
                mask = inputs["attention_mask"].unsqueeze(-1).float()
                for t, s in matches:
                    diff = (out_s.hidden_states[s] - out_t.hidden_states[t]) ** 2 * mask
                    loss = loss + diff.sum() / (mask.sum() * diff.shape[-1])
            return (loss, out_s) if return_outputs else loss

    best = {"accuracy": -1.0, "state": None, "history": []}

    class KeepBest(TrainerCallback):
        def on_epoch_end(self, args, state, control, model=None, **kw):
            acc = accuracy(model, val_batches, val_y)
            best["history"].append({"step": state.global_step, "validation_accuracy": acc,
                                    "seconds": round(time.perf_counter() - started, 2)})
            if acc > best["accuracy"]:
                best.update(accuracy=acc, state={k: v.detach().clone() for k, v in model.state_dict().items()})

    work = tempfile.mkdtemp(prefix="trainer-peer-")
    steps_per_epoch = (len(train) + a.batch_size - 1) // a.batch_size
    args = TrainingArguments(
        output_dir=work, num_train_epochs=a.epochs, per_device_train_batch_size=a.batch_size, learning_rate=a.lr,
        weight_decay=0.01, lr_scheduler_type="linear", warmup_steps=int(a.warmup_ratio * steps_per_epoch * a.epochs),
        max_grad_norm=1.0, eval_strategy="no", save_strategy="no", logging_strategy="epoch", report_to="none", use_cpu=a.device == "cpu",
        seed=a.seed, dataloader_num_workers=0, remove_unused_columns=False, disable_tqdm=True)
    trainer = DistillationTrainer(model=student, args=args, train_dataset=train, data_collator=DataCollatorWithPadding(tokenizer),
                                  callbacks=[KeepBest()])
    t0 = time.perf_counter()
    trainer.train()
    train_seconds = time.perf_counter() - t0
    student.load_state_dict(best["state"])
    test_acc = accuracy(student, eval_batches(tokenizer, test_x, a.max_length, False), test_y)
    finish(a.out, {
        "system": "hf-trainer", "student": family, "seconds": round(time.perf_counter() - started, 2),
        "train_seconds": round(train_seconds, 2), "steps": trainer.state.global_step, "test_accuracy": test_acc,
        "best_validation_accuracy": best["accuracy"], "history": best["history"], "examples": len(train_x),
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0]},
    })


if __name__ == "__main__":
    main()
