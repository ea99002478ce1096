"""A distillation with a learned projection, for the resume test:
``python knowledge_job.py TEACHER OUT [--kill-at STEP] [--resume] [--static-bigrams]``.

bert-tiny (width 128) matches the tiny teacher's hidden states (width 32) through projections;
with ``--static-bigrams``, a static student with a hashed bigram table (sparse gradients) instead.
With ``--kill-at`` the process SIGKILLs itself inside that training step, as a crash would."""

import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch  # noqa: E402

from kdexam import api  # noqa: E402
from kdexam.training import distiller  # noqa: E402

teacher, out = sys.argv[1], sys.argv[2]
kill_at = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
torch.set_num_threads(1)
calls = {"n": 0}
forward = distiller.Distiller.forward


def counted(self, batch, teacher_out):
    calls["n"] += 1
    if kill_at is not None and calls["n"] == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
    return forward(self, batch, teacher_out)


distiller.Distiller.forward = counted
objectives = [{"name": "kl", "temperature": 2.0, "weight": 0.5}, {"name": "gold", "weight": 0.5},
              {"name": "hidden_mse", "weight": 1.0, "layers": "uniform"}]
checkpoints = ["train.keep_checkpoint=true", "train.checkpoint_every=4", "train.patience=5"]
if "--static-bigrams" in sys.argv:  # a bigram table with sparse gradients: SparseAdam beside AdamW
    cfg = api.distill_config(teacher=teacher, student="static", out=out, epochs=2, batch_size=16, embedding_dim=16,
                             ngram_buckets=64, set=checkpoints)
else:
    cfg = api.distill_config(teacher=teacher, student="bert-tiny", out=out, epochs=2, batch_size=16,
                             set=["objectives=" + json.dumps(objectives), *checkpoints])
api.distill(cfg, resume="--resume" in sys.argv)
