# The two commands: `make demo` (the main job on the built-in default) and `make test`.
# Both create .venv when absent and install the CPU build of PyTorch first: a plain
# `torch` requirement would pull a multi-GB CUDA build.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch==2.13.0
# PyPI's Linux torch wheels are CUDA builds; PyTorch's own CPU index has the CPU build (empty it for a CUDA build)
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
BIN := $(VENV)/bin

.PHONY: demo test venv clean readme-results

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/python -m pip install -q $(TORCH) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

# The main job: the default exam (src/kdexam/exam/configs/default.yaml). Prepares the built-in
# data and model, fine-tunes the teacher once per dataset (movie-sentiment, trec6, id-pos
# subsets), distils bilstm, cnn, static, bert-mini and a 2-layer teacher-layers student (plus
# labels-only controls, the hidden-state recipe and a transfer set), measures each one's cost end
# to end, and writes exams/default/{leaderboard.md,report.html,...}. A rerun skips finished cells.
demo: venv
	$(BIN)/kdexam data prepare movie-sentiment
	$(BIN)/kdexam data prepare trec6
	$(BIN)/kdexam data prepare id-pos
	$(BIN)/kdexam data prepare movie-dialog
	$(BIN)/kdexam models prepare minilm-l6
	$(BIN)/kdexam exam --out exams/default

# The README's exam results, regenerated from exams/default.
readme-results:
	$(BIN)/python -m kdexam.exam.readme exams/default README.md

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
