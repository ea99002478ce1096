"""Does kdexam's training loop do the arithmetic of a plain distillation loop? (issue 16's accuracy gap)

bert-mini from scratch with dropout off (``student.dropout=0``), the same initial weights (built by
kdexam's code from the same seed), the same length-bucketed batches, loss (TextBrewer's
``kd_loss_type='ce'`` at T = 4 with weight T², whose gradient is that of kdexam's ``kl``), AdamW
groups, linear warmup (10 %) and decay, and clipping at 1.0:

1. ``kdexam distill`` (``api.distill``; the teacher's logits come from its cache);
2. the loop TextBrewer's ``GeneralDistiller`` runs, written out here in plain PyTorch with the teacher
   run on every batch (``bench/textbrewer_peer.py``'s sampler and optimizer).

Then the largest absolute difference between the two students' weights after the epoch whose
weights kdexam kept (its best validation epoch), beside how far the plain loop moved them from
their initial values. With dropout on, the two loops draw different dropout
masks, which is what is left to tell their accuracies apart.

    python bench/loop_equivalence.py --teacher exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290 \\
        --max-train 1000 --epochs 1 --out bench/results/loop_equivalence.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--data", default="movie-sentiment")
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--fused", action="store_true", help="the plain loop's AdamW fused, as kdexam's")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    import torch
    from safetensors.torch import load_file
    from textbrewer_peer import LengthBucketSampler, make_optimizer
    from transformers import AutoModelForSequenceClassification, get_linear_schedule_with_warmup

    from kdexam import api
    from kdexam.data.builtin import BUILTIN_DATASETS, prepare_dataset
    from kdexam.data.splits import load_data
    from kdexam.data.transfer import build_transfer_set
    from kdexam.students.registry import build_student
    from kdexam.teachers.teacher import Teacher
    from kdexam.training.run_checks import check_data_fits_teacher, with_teacher_data

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="loop-eq-"))
    data_path = str(prepare_dataset(a.data)) if a.data in BUILTIN_DATASETS else a.data
    common = dict(teacher=a.teacher, data=data_path, student="bert-mini", max_train=a.max_train, max_eval=500, seed=a.seed,
                  set=["student.dropout=0"])
    cfg = with_teacher_data(api.distill_config(out=str(work / "cfg"), **common), Path(a.teacher))
    teacher = Teacher(a.teacher, max_length=cfg.data.max_length)
    data = load_data(cfg.data.model_copy(update={"task": teacher.task.kind}), a.seed)
    task = check_data_fits_teacher(data, teacher.task, Path(a.teacher))
    transfer = build_transfer_set(cfg.transfer, data, task, a.seed, cfg.data, a.teacher, teacher.tokenizer.mask_token)
    torch.manual_seed(a.seed)  # as api.distill does before it builds the student
    student, tok = build_student(cfg.student, task, a.teacher, train_texts=[e.text for e in transfer.examples])
    init = {k: v.clone() for k, v in student.model.state_dict().items()}

    out = work / "kdexam"  # 1. kdexam (patience past the last epoch: it keeps the last epoch's weights or a better one)
    r = api.distill(out=str(out), epochs=a.epochs, batch_size=32, patience=a.epochs + 1, num_threads=1,
                    objective=["kl:temperature=4"], **common)
    ours = load_file(str(out / "model.safetensors"))
    kept_epoch = r["stages"][-1]["best_at"]["epoch"]  # the epoch whose weights kdexam kept (best validation)

    model = student.model  # 2. the plain loop, on the same batches
    model.train()
    live_teacher = AutoModelForSequenceClassification.from_pretrained(a.teacher).eval()
    rows = [tok(e.text, truncation=True, max_length=cfg.data.max_length) for e in transfer.examples]
    sampler = LengthBucketSampler([len(r["input_ids"]) for r in rows], 32, a.seed)
    optimizer = make_optimizer(model, cfg.train.learning_rate)
    if a.fused:
        optimizer = torch.optim.AdamW(optimizer.param_groups, lr=cfg.train.learning_rate, fused=True)
    steps = len(sampler) * a.epochs
    scheduler = get_linear_schedule_with_warmup(optimizer, int(0.1 * steps), steps)
    for epoch in range(1, a.epochs + 1):
        for idx in sampler:
            batch = dict(tok.pad([rows[i] for i in idx], return_tensors="pt"))
            with torch.no_grad():
                p = torch.softmax(live_teacher(**batch).logits / 4, -1)
            loss = -(p * torch.log_softmax(model(**batch).logits / 4, -1)).sum(-1).mean() * 16
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        if epoch == kept_epoch:
            plain = {k: v.clone() for k, v in model.state_dict().items()}

    diffs = []
    for name, value in plain.items():
        mine = next((k for k in ours if k.endswith(name)), None)
        if mine is not None:
            diffs.append({"weight": name, "kdexam_minus_plain": float((ours[mine].float() - value).abs().max()),
                          "moved_from_init": float((value - init[name]).abs().max())})
    diffs.sort(key=lambda d: -d["kdexam_minus_plain"])
    result = {"benchmark": "loop_equivalence", "student": "bert-mini (dropout 0)", "max_train": a.max_train, "epochs": a.epochs,
              "steps": steps, "compared_after_epoch": kept_epoch, "seed": a.seed, "plain_adamw_fused": a.fused,
              "max_abs_difference": diffs[0]["kdexam_minus_plain"], "max_moved_from_init": max(d["moved_from_init"] for d in diffs),
              "largest": diffs[:5]}
    print(json.dumps(result, indent=2))
    if a.out:
        Path(a.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
