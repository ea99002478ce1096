"""Train a transformer student untrimmed (trim_vocab off), then score the test split with its full
table and with the same weights trimmed post hoc to the transfer set (unseen ids -> [UNK] row)."""
import json, sys, torch
from pathlib import Path
from kdexam import api
from kdexam.data.encode import Collator, encode
from kdexam.data.splits import load_data
from kdexam.students.registry import load_student
from kdexam.students.transformer import trim_word_embeddings
from kdexam.training.run_checks import with_teacher_data

T = "exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290"
kind, out = sys.argv[1], Path(sys.argv[2])
torch.set_num_threads(1)
kw = dict(teacher=T, student=kind, max_train=1000, max_eval=500, epochs=10, batch_size=32, patience=11, seed=42,
          num_threads=1, objective=["kl:temperature=4"], set=["student.trim_vocab=false"])
r = api.distill(out=str(out), **kw)
cfg = with_teacher_data(api.distill_config(out="/x", **{k: v for k, v in kw.items() if k != "set"}), Path(T))
data = load_data(cfg.data.model_copy(update={"task": "classification"}), 42)
model, tok, spec, task = load_student(out)
texts = [e.text for e in data.train]
def acc(m):
    rows = encode(data.test, tok, task, cfg.data.max_length).rows
    coll = Collator(tok, task)
    right = 0
    with torch.inference_mode():
        for s in range(0, len(rows), 64):
            b = coll([dict(r, index=i) for i, r in enumerate(rows[s:s + 64])])
            logits = m(**{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")})["logits"]
            right += int((logits.argmax(-1) == b["labels"]).sum())
    return right / len(rows)
full = acc(model)
info = trim_word_embeddings(model, tok, texts)
trimmed = acc(model)
print("RESULT", json.dumps({"kind": kind, "run_metrics_accuracy": r["student"]["metrics"]["accuracy"], "test_acc_full_table": full,
                            "test_acc_trimmed_post_hoc": trimmed, **info, "train_texts": len(texts)}))
