"""A tiny training job for the resume test: ``python resume_job.py OUT [--kill-at STEP] [--resume] [--ema]
[--accumulate K] [--checkpoint-every N]`` (``--accumulate``: windows of K batches, a checkpoint at every
window's end). It logs its evaluations to ``OUT/train_log.jsonl``.

With ``--kill-at`` the process SIGKILLs itself in the middle of that step's loss, as
a crash would; the checkpoint written before it must be enough to finish the run."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertConfig, BertForSequenceClassification  # noqa: E402

from conftest import build_tokenizer, sentiment_examples  # noqa: E402
from kdexam.config import TrainConfig  # noqa: E402
from kdexam.data.encode import encode, make_loader  # noqa: E402
from kdexam.data.readers import Example  # noqa: E402
from kdexam.evaluation.predict import evaluate  # noqa: E402
from kdexam.tasks import Task  # noqa: E402
from kdexam.training.trainer import fit, make_accelerator  # noqa: E402

out = Path(sys.argv[1])
kill_at = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
torch.manual_seed(0)
tok = build_tokenizer()
task = Task("classification", ["neg", "pos"])
train = [Example(r["text"], None, r["label"]) for r in sentiment_examples(96, seed=1)]
val = [Example(r["text"], None, r["label"]) for r in sentiment_examples(16, seed=2)]
model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                                 intermediate_size=32, max_position_embeddings=32, num_labels=2))
ftrain, fval = encode(train, tok, task, 32), encode(val, tok, task, 32)
accumulate = int(sys.argv[sys.argv.index("--accumulate") + 1]) if "--accumulate" in sys.argv else 1
every = int(sys.argv[sys.argv.index("--checkpoint-every") + 1]) if "--checkpoint-every" in sys.argv else 4 if accumulate == 1 else 1
cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-3, checkpoint_every=every, patience=5,
                  ema_decay=0.9 if "--ema" in sys.argv else None, gradient_accumulation_steps=accumulate)
calls = {"n": 0}


def loss_fn(m, batch):
    calls["n"] += 1
    if kill_at is not None and calls["n"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return m(**{k: v for k, v in batch.items() if k != "index"}).loss


out.mkdir(parents=True, exist_ok=True)
result = fit(model, make_loader(ftrain, tok, task, cfg.batch_size, shuffle=True, seed=3), loss_fn,
             lambda m: evaluate(m, fval, val, tok, task)[0], cfg, make_accelerator(cfg), "accuracy",
             log_path=out / "train_log.jsonl", checkpoint_dir=out / "checkpoint", resume="--resume" in sys.argv)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "final.safetensors")
print("steps", result["steps"])
