"""Trimmed against untrimmed word embeddings, interleaved in one process (issue 16).

Builds each kind twice with bench/train_throughput.py's ``setup`` (as ``kdexam distill`` builds it:
same seed, same batches, cached teacher logits, fused AdamW, clipping), once with
``trim_vocab`` on and once off, then alternates their training steps — A, B, A, B, … —
so that load from other processes falls on both alike; reports the median and mean ms a step
and the median of each part. One thread.

    .venv/bin/python bench/trim_ab.py --teacher TEACHER --kinds bert-mini --steps 60
"""
import argparse, json, os, platform, statistics, sys, time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/
import train_throughput as tt  # noqa: E402
import kdexam.students.registry as registry  # noqa: E402


def build(teacher, kind, max_train, trim):
    original = registry.build_student

    def patched(spec, *a, **kw):
        return original(spec.model_copy(update={"trim_vocab": trim}), *a, **kw)

    registry.build_student = patched
    try:
        return tt.setup(teacher, kind, max_train, 32)
    finally:
        registry.build_student = original


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--kinds", nargs="+", default=["bert-mini"])
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--out", default="bench/results/trim_ab.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    for kind in a.kinds:
        variants = {"untrimmed": build(a.teacher, kind, a.max_train, False), "trimmed": build(a.teacher, kind, a.max_train, True)}
        gens = {name: tt.steps(m, loader, side, opt, sch, clip, a.warmup + a.steps) for name, (m, loader, side, opt, sch, clip, _) in variants.items()}
        times = {name: [] for name in variants}
        for i in range(a.warmup + a.steps):
            for name, g in gens.items():
                _, parts = next(g)
                if i >= a.warmup:
                    times[name].append(parts)
        for name, ts in times.items():
            total = [1000 * sum(p.values()) for p in ts]
            rows.append({"kind": kind, "variant": name, "parameters": variants[name][6], "steps": len(ts),
                         "ms_per_step_median": round(statistics.median(total), 1), "ms_per_step_mean": round(statistics.mean(total), 1),
                         "part_ms_median": {p: round(1000 * statistics.median(t[p] for t in ts), 2) for p in tt.PARTS}})
            print(json.dumps(rows[-1]), flush=True)
    report = {"benchmark": "trim_ab", "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_count": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows}
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
