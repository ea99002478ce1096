"""Why bf16 autocast slowed the transformer students' training steps on a GPU (issue 16): the same
model's steps under each variant in turn — fp32; bf16 with PyTorch's default choice of attention
kernel; bf16 with every kernel but cuDNN's; bf16 with the memory-efficient kernel alone; bf16 with
cuDNN's alone — on kdexam's length-bucketed batches (shapes change from step to step), batch 32.
Built with bench/train_throughput.py's ``setup`` (as ``kdexam distill`` builds a run); the variants
take turns, step by step, so they see batches of the same lengths; median ms a step after warm-up.

    python bench/gpu_attention_ab.py --teacher TEACHER --kinds bert-mini teacher-layers:2 --out gpu_attention_ab.json
"""
import argparse
import contextlib
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/
import train_throughput as tt  # noqa: E402

ALL = [SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH, SDPBackend.CUDNN_ATTENTION]
VARIANTS = {  # name: (bf16 autocast, attention kernels allowed; None: PyTorch's default)
    "fp32": (False, None),
    "bf16": (True, None),
    "bf16 without cuDNN attention": (True, [b for b in ALL if b != SDPBackend.CUDNN_ATTENTION]),
    "bf16 memory-efficient only": (True, [SDPBackend.EFFICIENT_ATTENTION]),
    "bf16 cuDNN only": (True, [SDPBackend.CUDNN_ATTENTION]),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--kinds", nargs="+", default=["bert-mini", "teacher-layers:2"])
    ap.add_argument("--max-train", type=int, default=2000)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default="bench/results/gpu_attention_ab.json")
    a = ap.parse_args()
    rows = []
    for kind in a.kinds:
        model, loader, side, opt, sch, clip, n_params = tt.setup(a.teacher, kind, a.max_train, a.batch_size, device=a.device)
        times = {name: [] for name in VARIANTS}
        gens = {name: tt.steps(model, loader, side, opt, sch, clip, a.warmup + a.steps, bf16=bf16, device=a.device)
                for name, (bf16, _) in VARIANTS.items()}
        for i in range(a.warmup + a.steps):
            for name, (_, kernels) in VARIANTS.items():
                if name not in gens:
                    continue
                with sdpa_kernel(kernels) if kernels else contextlib.nullcontext():
                    try:
                        _, parts = next(gens[name])
                    except RuntimeError as e:  # no allowed kernel runs these inputs
                        print(f"{kind} / {name}: {str(e).splitlines()[0][:200]}", flush=True)
                        del gens[name]
                        times[name] = []
                        continue
                if i >= a.warmup:
                    times[name].append(1000 * sum(parts.values()))
        row = {"kind": kind, "parameters": n_params, "batch_size": a.batch_size, "steps": a.steps,
               "ms_per_step_median": {k: (round(statistics.median(t), 1) if t else None) for k, t in times.items()}}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print("| student | " + " | ".join(VARIANTS) + " |")
    print("|---" * (len(VARIANTS) + 1) + "|")
    for r in rows:
        print(f"| {r['kind']} | " + " | ".join(str(r["ms_per_step_median"][k]) for k in VARIANTS) + " |")
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps({"benchmark": "gpu_attention_ab", "torch": torch.__version__,
                                       "gpu": torch.cuda.get_device_name(0) if a.device == "cuda" else None, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                       "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
