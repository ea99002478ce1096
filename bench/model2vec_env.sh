#!/usr/bin/env bash
# model2vec's own environment for bench/vs_model2vec.py (model2vec is never a kdexam dependency).
#
#     bash bench/model2vec_env.sh [VENV_DIR]      # default: .venv-m2v at the repo root (git-ignored)
#
# Installs the CPU build of PyTorch first (a plain torch requirement would pull a multi-GB CUDA
# build) and keeps it with a constraint, then model2vec with the extras the peer needs:
# `distill` (transformers, skeletoken), `quantization` (scikit-learn: model2vec.distill imports it
# even without vocabulary quantization) and `train` (datasets; model2vec 0.10's trainer is plain
# torch, no lightning). The served form (StaticModelPipeline) needs numpy only.
# Idempotent: an environment that already imports the right versions is left as it is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-m2v}"
PYTHON="${PYTHON:-python3}"
M2V_VERSION=0.10.0
TORCH_VERSION=2.13.0

ready() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$M2V_VERSION" "$TORCH_VERSION" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
import model2vec.distill, model2vec.train  # noqa: F401  (fails without the extras)
sys.exit(not (version("model2vec") == sys.argv[1] and version("torch").split("+")[0] == sys.argv[2]))
EOF
}

if ready; then
  echo "model2vec environment already set up: $VENV"
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  constraints="$(mktemp)"
  trap 'rm -f "$constraints"' EXIT
  echo "torch==$TORCH_VERSION" >"$constraints"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  "$VENV/bin/python" -m pip install -q -c "$constraints" "model2vec[distill,quantization,train]==$M2V_VERSION"
  ready || { echo "model2vec environment in $VENV is not usable" >&2; exit 1; }
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print(' | '.join(f'{p} {m.version(p)}' for p in ('model2vec', 'torch', 'transformers', 'tokenizers', 'datasets', 'scikit-learn', 'numpy')))"
