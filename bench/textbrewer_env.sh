#!/usr/bin/env bash
# TextBrewer's own environment for bench/vs_textbrewer.py (TextBrewer is never a kdexam dependency).
#
#     bash bench/textbrewer_env.sh [VENV_DIR]      # default: .venv-tb at the repo root (git-ignored)
#
# Installs the CPU build of PyTorch first (a plain torch requirement would pull a multi-GB CUDA
# build) and keeps it with a constraint, then TextBrewer 0.2.1.post1 with tensorboard (its
# distillers import torch.utils.tensorboard) and transformers for the models. TextBrewer itself
# only needs numpy, torch, tensorboard and tqdm (it imports transformers for one scheduler helper),
# so nothing older has to be pinned: transformers is pinned to the release kdexam's own environment
# was measured with, so both sides run the same BERT code.
# Idempotent: an environment that already imports the right versions is left as it is.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${1:-$ROOT/.venv-tb}"
PYTHON="${PYTHON:-python3}"
TB_VERSION=0.2.1.post1
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION="${TRANSFORMERS_VERSION:-5.24.0}"

ready() {
  [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$TB_VERSION" "$TORCH_VERSION" "$TRANSFORMERS_VERSION" 2>/dev/null <<'PY'
import sys
from importlib.metadata import version
import textbrewer, transformers, torch.utils.tensorboard  # noqa: F401
sys.exit(not (version("textbrewer") == sys.argv[1] and version("torch").split("+")[0] == sys.argv[2]
              and version("transformers") == sys.argv[3]))
PY
}

if ready; then
  echo "TextBrewer environment already set up: $VENV"
else
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  constraints="$(mktemp)"
  trap 'rm -f "$constraints"' EXIT
  echo "torch==$TORCH_VERSION" >"$constraints"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q "torch==$TORCH_VERSION"
  "$VENV/bin/python" -m pip install -q -c "$constraints" "textbrewer==$TB_VERSION" tensorboard "transformers==$TRANSFORMERS_VERSION"
  ready || { echo "TextBrewer environment in $VENV is not usable" >&2; exit 1; }
fi
"$VENV/bin/python" -c "import importlib.metadata as m; print(' | '.join(f'{p} {m.version(p)}' for p in ('textbrewer', 'torch', 'transformers', 'tokenizers', 'tensorboard', 'numpy')))"
