"""One distillation, run alone (``python ddp_job.py TEACHER DATA OUT [KIND]``) or data-parallel
(``python -m torch.distributed.run --nproc_per_node 2 ddp_job.py TEACHER DATA OUT [KIND]``): the
processes share each batch, the teacher's cache fill and validation; the result must match the
single process's. ``KIND`` ``general`` runs task-agnostic distillation of TEACHER (an encoder) on
DATA (a text file) instead. Each process prints ``done rank R examples N``: N is how many examples
its teacher ran on."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import torch.distributed as dist  # noqa: E402

from kdexam import api  # noqa: E402

teacher, data, out = sys.argv[1:4]
kind = sys.argv[4] if len(sys.argv) > 4 else "task"
no_dropout = ["train.num_threads=1", "train.checkpoint_every=2", "student.dropout=0.0"]  # no dropout: same arithmetic
if kind == "general":
    result = api.distill(teacher=teacher, data=data, student="teacher-layers:1", layers="random", out=out, general=True,
                         epochs=1, batch_size=8, learning_rate=1e-12, set=["train.num_threads=1"])
else:
    result = api.distill(teacher=teacher, data=data, student="cnn", out=out, epochs=2, batch_size=16, max_train=64, set=no_dropout)
rank = dist.get_rank() if dist.is_initialized() else 0
print(f"done rank {rank} examples {result['teacher_cache']['teacher_examples']}")
