"""Which test predictions change when trimmed runs of bench/trim_posthoc.py are trimmed post hoc."""
import sys, torch
from pathlib import Path
from kdexam import api
from kdexam.data.encode import Collator, encode
from kdexam.data.splits import load_data
from kdexam.students.registry import load_student
from kdexam.students.transformer import trim_word_embeddings
from kdexam.training.run_checks import with_teacher_data
T = "exams/default/teachers/teacher-movie-sentiment-minilm-l6-dc2db290"
torch.set_num_threads(1)
cfg = with_teacher_data(api.distill_config(teacher=T, student="bert-mini", out="/x", max_train=1000, max_eval=500, seed=42), Path(T))
data = load_data(cfg.data.model_copy(update={"task": "classification"}), 42)
texts = [e.text for e in data.train]
for run in sys.argv[1:]:
    model, tok, spec, task = load_student(run)
    rows = encode(data.test, tok, task, cfg.data.max_length).rows
    coll = Collator(tok, task)
    def preds(m):
        out, gold = [], []
        with torch.inference_mode():
            for s in range(0, len(rows), 64):
                b = coll([dict(r, index=i) for i, r in enumerate(rows[s:s + 64])])
                out += m(**{k: v for k, v in b.items() if k in ("input_ids", "attention_mask", "token_type_ids")})["logits"].argmax(-1).tolist()
                gold += b["labels"].tolist()
        return out, gold
    full, gold = preds(model)
    trim_word_embeddings(model, tok, texts)
    trimmed, _ = preds(model)
    changed = [i for i in range(len(gold)) if full[i] != trimmed[i]]
    print(run, "changed", len(changed), "to right", sum(trimmed[i] == gold[i] for i in changed), "to wrong", sum(full[i] == gold[i] for i in changed),
          "acc full", sum(f == g for f, g in zip(full, gold)) / len(gold), "acc trimmed", sum(t == g for t, g in zip(trimmed, gold)) / len(gold))
