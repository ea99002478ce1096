"""Mixed precision (bf16 autocast) against fp32 training steps on a CPU or a GPU, interleaved in one process (issue 16).

First the teacher's forward over the training sentences (the cache fill's work), fp32 and bf16
alternated. Then it builds each kind twice with bench/train_throughput.py's ``setup`` (as ``kdexam distill`` builds it:
same seed, so the same initial weights and batches; cached teacher logits, fused AdamW, clipping),
then alternates their training steps — fp32, bf16, fp32, bf16, … — so that load from other
processes falls on both alike. The bf16 twin runs its forward and loss under
``torch.autocast("cpu", dtype=torch.bfloat16)``, which is what ``kdexam distill --set
train.mixed_precision=bf16`` gives on a CPU (Accelerate's autocast around the model); weights,
gradients and AdamW stay fp32. Reports the median ms a step of each and the speedup. One thread.
Accuracy is not measured here (the twins drift apart as bf16 rounds); docs/benchmarks.md has whole runs.

A CPU without native bf16 arithmetic (AVX512-BF16 or AMX) emulates it and is usually slower in bf16.

``--device cuda``: the same on a GPU (the issue's "the same with AMP"): the twins and the teacher
there, ``torch.autocast("cuda", dtype=torch.bfloat16)`` as ``--mixed-precision bf16`` runs it there
(PyTorch's own choice of attention kernel: bench/gpu_attention_ab.py shows what that costs); each part
of a step ends with a device synchronisation (bench/train_throughput.py).
``--batch-size``: 32 is the recipe's; a GPU is far from full at 32 for these students.

    .venv/bin/python bench/amp_ab.py --teacher TEACHER --kinds bilstm cnn static bert-mini teacher-layers:2 --steps 40
    python bench/amp_ab.py --teacher TEACHER --device cuda --batch-size 32 --steps 100 --out amp_ab_cuda.json
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/
import train_throughput as tt  # noqa: E402


def cpu_flags() -> list[str]:
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    except (OSError, StopIteration):
        return []
    return sorted(f for f in flags if "bf16" in f or f.startswith("amx"))


def teacher_pass(teacher_dir: str, max_train: int, repeats: int, device: str = "cpu") -> dict:
    """The teacher's forward over the first ``max_train`` training sentences (length-sorted batches of
    64, as the cache fill runs it), fp32 and bf16 autocast alternated ``repeats`` times; with how far
    the bf16 logits are from the fp32 ones. kdexam's cache fill itself stays fp32."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from kdexam.data.builtin import prepare_dataset

    data = prepare_dataset("movie-sentiment")
    texts = [json.loads(line)["text"] for line in (data / "train.jsonl").read_text(encoding="utf-8").splitlines()[:max_train]]
    tok = AutoTokenizer.from_pretrained(teacher_dir)
    model = AutoModelForSequenceClassification.from_pretrained(teacher_dir).eval().to(device)
    texts.sort(key=lambda t: len(tok(t)["input_ids"]))
    batches = [tok(texts[i:i + 64], padding=True, truncation=True, max_length=128, return_tensors="pt")
               for i in range(0, len(texts), 64)]
    dev = torch.device(device)

    def run(bf16: bool) -> tuple[float, torch.Tensor]:
        started = time.perf_counter()
        with torch.inference_mode(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
            logits = torch.cat([model(**{k: v.to(dev) for k, v in b.items()}).logits.float() for b in batches]).cpu()
        return time.perf_counter() - started, logits

    seconds = {"fp32": [], "bf16": []}
    for _ in range(repeats):
        for name in seconds:
            t, logits = run(name == "bf16")
            seconds[name].append(t)
            if name == "fp32":
                ref = logits
            else:
                diff = (logits - ref).abs().max().item()
                agree = (logits.argmax(-1) == ref.argmax(-1)).float().mean().item()
    med = {name: round(statistics.median(t), 2) for name, t in seconds.items()}
    return {"kind": f"teacher forward ({len(texts)} sentences, inference)", "seconds_median": med,
            "bf16_speedup": round(med["fp32"] / med["bf16"], 2), "max_abs_logit_difference": round(diff, 5),
            "argmax_agreement": agree}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--kinds", nargs="+", default=list(tt.KINDS))
    ap.add_argument("--max-train", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--teacher-repeats", type=int, default=3, help="teacher passes of each precision (0: none)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default="bench/results/amp_ab.json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    rows = []
    teacher = teacher_pass(a.teacher, a.max_train, a.teacher_repeats, a.device) if a.teacher_repeats else None
    if teacher:
        print(json.dumps(teacher), flush=True)
    for kind in a.kinds:
        twins = {name: tt.setup(a.teacher, kind, a.max_train, a.batch_size, device=a.device) for name in ("fp32", "bf16")}
        gens = {name: tt.steps(m, loader, side, opt, sch, clip, a.warmup + a.steps, bf16=name == "bf16", device=a.device)
                for name, (m, loader, side, opt, sch, clip, _) in twins.items()}
        times = {name: [] for name in twins}
        for i in range(a.warmup + a.steps):
            for name, g in gens.items():
                _, parts = next(g)
                if i >= a.warmup:
                    times[name].append(1000 * sum(parts.values()))
        row = {"kind": kind, "parameters": twins["fp32"][6], "steps": a.steps, "batch_size": a.batch_size,
               "ms_per_step_median": {name: round(statistics.median(t), 1) for name, t in times.items()},
               "ms_per_step_mean": {name: round(statistics.mean(t), 1) for name, t in times.items()}}
        row["bf16_speedup"] = round(row["ms_per_step_median"]["fp32"] / row["ms_per_step_median"]["bf16"], 2)
        row["examples_per_second_median"] = {name: round(1000 * a.batch_size / ms, 1) for name, ms in row["ms_per_step_median"].items()}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{a.device}, batch {a.batch_size}:")
    print("| student | parameters | fp32 ms/step | bf16 ms/step | fp32 examples/s | bf16 examples/s | bf16 speedup |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m, e = r["ms_per_step_median"], r["examples_per_second_median"]
        print(f"| {r['kind']} | {r['parameters'] / 1e6:.2f}M | {m['fp32']} | {m['bf16']} | {e['fp32']:.0f} | {e['bf16']:.0f} | {r['bf16_speedup']}× |")
    if teacher:
        print(f"teacher forward: {teacher['seconds_median']['fp32']} s fp32, {teacher['seconds_median']['bf16']} s bf16 "
              f"({teacher['bf16_speedup']}×); bf16 logits within {teacher['max_abs_logit_difference']} of fp32, "
              f"argmax agreement {teacher['argmax_agreement']:.4f}")
    report = {"benchmark": "amp_ab", "device": a.device, "batch_size": a.batch_size,
              "gpu": torch.cuda.get_device_name(0) if a.device.startswith("cuda") else None,
              "torch": torch.__version__, "cpu": platform.processor() or platform.machine(),
              "cpu_bf16_flags": cpu_flags(), "cpu_count": os.cpu_count(), "threads": 1,
              "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rows": rows, "teacher_forward": teacher}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
