#!/usr/bin/env bash
# The GPU checks of issue 16 in one call, for a machine with an NVIDIA GPU (a lent one has minutes):
# training steps of every student kind in fp32 and under bf16 autocast (bench/amp_ab.py --device
# cuda), what the attention kernel costs in bf16 (bench/gpu_attention_ab.py), then kdexam against
# TextBrewer on the GPU (bench/vs_textbrewer.py --device cuda), kdexam in its default precision
# (fp32 for students) and in bf16. Each part has a time limit and writes its JSON as it goes, so
# what finished comes back when a later part runs out of time.
#
#     bash bench/gpu_checks.sh TEACHER_DIR OUT_DIR [SECONDS]
#
# SECONDS (default 420) bounds the whole script; each part has its own limit too, sized for an
# H200, where all of them took 330 s: a slower GPU cuts the later parts short. The script exits 1
# when a part failed or was cut or skipped for time. SKIP="amp_b32 ..." leaves parts out;
# MAX_TRAIN (default 2000; 0: all 8,483) sizes the TextBrewer comparison's training set
# (validation and test are whole). Runs from anywhere (it changes to the repository's root).
# Needs kdexam importable (installed, or src/ on PYTHONPATH), TextBrewer and tensorboard in the same
# Python (the peers run with it), and movie-sentiment prepared under $KDEXAM_HOME.
set -uo pipefail
if (( $# < 2 )); then echo "usage: bash bench/gpu_checks.sh TEACHER_DIR OUT_DIR [SECONDS]" >&2; exit 2; fi
mkdir -p "$2"
TEACHER="$(cd "$1" && pwd)" || exit 2
OUT="$(cd "$2" && pwd)"; BUDGET="${3:-420}"; SKIP="${SKIP:-}"; MAX_TRAIN="${MAX_TRAIN:-2000}"
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
PY="${PYTHON:-python3}"
START=$(date +%s)
FAILED=0
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
part() {  # part NAME LIMIT_SECONDS CMD...: run CMD with at most LIMIT (and what is left), log to $OUT/log.txt
  local name="$1" limit="$2"; shift 2
  if [[ " $SKIP " == *" $name "* ]]; then echo "== $name: skipped (SKIP)" | tee -a "$OUT/log.txt"; return; fi
  local l; l=$(left); (( l < limit )) && limit=$l
  if (( limit < 20 )); then echo "== $name: skipped, ${l}s left" | tee -a "$OUT/log.txt"; FAILED=1; return; fi
  echo "== $name (limit ${limit}s, $(date +%T)): $*" | tee -a "$OUT/log.txt"
  timeout "$limit" "$@" >>"$OUT/log.txt" 2>&1
  local rc=$?
  (( rc == 0 )) || FAILED=1
  echo "== $name: exit $rc after $(( $(date +%s) - START ))s in all" | tee -a "$OUT/log.txt"
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv; "$PY" -c \
  "import torch, transformers, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.get_device_name(0))"; } \
  >>"$OUT/log.txt" 2>&1
part amp_b32 150 "$PY" bench/amp_ab.py --teacher "$TEACHER" --device cuda --batch-size 32 --max-train 2000 \
  --warmup 10 --steps 60 --teacher-repeats 3 --out "$OUT/amp_ab_cuda_b32.json"
part attention 80 "$PY" bench/gpu_attention_ab.py --teacher "$TEACHER" --kinds bert-mini teacher-layers:2 \
  --out "$OUT/gpu_attention_ab.json"
VS=("$PY" bench/vs_textbrewer.py --teacher "$TEACHER" --device cuda --max-train "$MAX_TRAIN" --max-eval 0 --epochs 10 --peer-python "$PY")
part vs 160 "${VS[@]}" --students bert-mini bilstm --systems kdexam textbrewer-fixed --out "$OUT/vs_textbrewer_cuda.json"
part vs_bf16 80 "${VS[@]}" --students bert-mini bilstm --systems kdexam --kdexam-set train.mixed_precision=bf16 \
  --out "$OUT/vs_textbrewer_cuda_kdexam_bf16.json"
part vs_bucketed 60 "${VS[@]}" --students bert-mini --systems textbrewer-bucketed --out "$OUT/vs_textbrewer_cuda_bucketed.json"
echo "== done after $(( $(date +%s) - START ))s$( ((FAILED)) && echo ', a part failed or was cut')" | tee -a "$OUT/log.txt"
exit "$FAILED"
