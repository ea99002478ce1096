#!/usr/bin/env bash
# model2vec's own environment for bench/vs_model2vec.py (model2vec is never a kdexam dependency).
# The CPU build of PyTorch goes in first: a plain torch requirement would pull a multi-GB CUDA build.
set -euo pipefail
VENV="${1:-.venv-m2v}"
PYTHON="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
fi
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q "model2vec[distill,train,quantization]==0.10.0" "torch==2.13.0"
"$VENV/bin/python" -c "import model2vec, torch, transformers, tokenizers; print('model2vec', model2vec.__version__, '| torch', torch.__version__, '| transformers', transformers.__version__, '| tokenizers', tokenizers.__version__)"
