"""One distillation, run alone (``python ddp_job.py TEACHER DATA OUT``) or data-parallel
(``python -m torch.distributed.run --nproc_per_node 2 ddp_job.py TEACHER DATA OUT``): the
processes share each batch; the result must match the single process's."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from kdexam import api  # noqa: E402

teacher, data, out = sys.argv[1:4]
api.distill(teacher=teacher, data=data, student="cnn", out=out, epochs=2, batch_size=16, max_train=64,
            set=["train.num_threads=1", "train.checkpoint_every=2", "student.dropout=0.0"])  # no dropout: same arithmetic
print("done")
