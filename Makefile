# The two commands: `make demo` (the main job on the built-in default) and `make test`.
# Both create .venv when absent and install the CPU build of PyTorch first: a plain
# `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test venv clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The main job: fine-tune the teacher (reused when runs/teacher-ms exists), distil four
# students from it, export the bilstm and the static student to ONNX (fp32 + int8), measure
# every model's cost end to end against the teacher, and print one table. About 20 minutes
# on a 2-core CPU.
demo: venv
	$(BIN)/kdexam data prepare movie-sentiment
	$(BIN)/kdexam models prepare minilm-l6
	test -f runs/teacher-ms/metrics.json || $(BIN)/kdexam teacher --data movie-sentiment --model minilm-l6 --out runs/teacher-ms
	$(BIN)/kdexam distill --teacher runs/teacher-ms --data movie-sentiment --student bilstm --embedding-dim 192 --hidden-size 200 --out runs/bilstm-ms
	$(BIN)/kdexam distill --teacher runs/teacher-ms --data movie-sentiment --student cnn --embedding-dim 192 --out runs/cnn-ms
	$(BIN)/kdexam distill --teacher runs/teacher-ms --data movie-sentiment --student teacher-layers:2 --epochs 4 --out runs/tl2-ms
	$(BIN)/kdexam distill --teacher runs/teacher-ms --data movie-sentiment --student static --embedding-dim 256 --out runs/static-ms
	$(BIN)/kdexam export runs/bilstm-ms --format onnx --quantize int8
	$(BIN)/kdexam export runs/static-ms --format onnx --quantize int8
	$(BIN)/kdexam bench runs/teacher-ms runs/bilstm-ms runs/cnn-ms runs/tl2-ms runs/static-ms --threads 1
	$(BIN)/kdexam report runs/teacher-ms runs/bilstm-ms runs/cnn-ms runs/tl2-ms runs/static-ms

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
