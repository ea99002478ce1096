"""A two-stage distillation for the resume test: ``python stage_job.py TEACHER DATA OUT [--kill-at N]
[--checkpoint-every STEPS]`` (default 2).

Stage 1 distils with soft targets, stage 2 fine-tunes on gold labels; with ``--kill-at`` the
process SIGKILLs itself at the N-th training forward pass, as a crash would. Always runs with
``resume=True`` (a first run finds nothing to resume)."""

import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from kdexam import api  # noqa: E402
from kdexam.training import distiller  # noqa: E402

teacher, data, out = sys.argv[1:4]
kill_at = int(sys.argv[sys.argv.index("--kill-at") + 1]) if "--kill-at" in sys.argv else None
every = int(sys.argv[sys.argv.index("--checkpoint-every") + 1]) if "--checkpoint-every" in sys.argv else 2
if kill_at is not None:
    forward, calls = distiller.Distiller.forward, {"n": 0}

    def counted(self, *args, **kwargs):
        if self.training:
            calls["n"] += 1
            if calls["n"] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
        return forward(self, *args, **kwargs)

    distiller.Distiller.forward = counted
STAGES = ("stages=[{name: soft, objectives: [{name: kl}], epochs: 2}, "
          "{name: gold, data: gold, objectives: [{name: gold}], epochs: 2, learning_rate: 0.0005}]")
api.distill(teacher=teacher, data=data, student="cnn", out=out, resume=True, batch_size=16, max_train=64,
            set=[STAGES, f"train.checkpoint_every={every}"])
print("done")
