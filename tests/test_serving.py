"""The torch-free predictor (kdexam.inference.serving): it runs where torch and transformers
cannot be imported, as kdexam.load_student and as the standalone copy in the export folder,
and agrees with the PyTorch student on every task kind."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from kdexam.errors import KdexamError
from kdexam.export.onnx import SERVING_FILE, export_onnx
from kdexam.inference.predictor import load_student
from run_factory import runs  # noqa: F401  (fixture)

pytestmark = pytest.mark.usefixtures("one_thread")

INPUTS = {
    "cls": ["the movie was good", "awful plot and dull actors", "the film was really quite lovely and the story was great",
            "good " * 200],
    "pair": [["good film", "bad plot"], ["the story", "the actors were fine"], ["a", "b c"], ["good " * 150, "dull " * 150]],
    "tag": [["the", "film", "was", "good"], "the story was dull", ["a", "movie"], ["word"] * 200,
            ["the", "\u00ad", "film"]],  # a word that tokenises to nothing (a soft hyphen) is tagged, as in training
    "reg": ["good", "dull film", "the plot was great and the actors were lovely", "lovely " * 300],
}

CASES = [("bilstm", t) for t in INPUTS] + [("cnn", "cls"), ("static", "pair"), ("static", "tag")]

BLOCK = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked in this test")
sys.meta_path.insert(0, Block())
"""


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):
    """BiLSTM student runs of every task kind (and CNN and static students), exported (fp32 + int8)."""
    root = tmp_path_factory.mktemp("serving")
    out = {}
    for kind, task_name in CASES:
        run = shutil.copytree(runs.student(kind, task_name), root / f"{kind}-{task_name}")
        export_onnx(run, quantize="int8")
        out[kind, task_name] = run
    return out


def _in_subprocess(code: str, blocked: tuple[str, ...], cwd=None) -> list:
    script = f"BLOCKED = {set(blocked)!r}\n{BLOCK}\n{code}"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, cwd=cwd)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def _same(task_name: str, got: list, want: list) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if task_name == "reg":
            assert g["value"] == pytest.approx(w["value"], abs=1e-4)
        elif task_name == "tag":
            assert g["tags"] == w["tags"] and g.get("truncated") == w.get("truncated")
        else:
            assert g["label"] == w["label"]
            assert g["scores"] == pytest.approx(w["scores"], abs=1e-4)


@pytest.mark.parametrize("kind,task_name", CASES)
def test_load_student_serves_without_torch_and_agrees_with_pytorch(kind, task_name, exported):
    run = exported[kind, task_name]
    want = load_student(run, backend="pytorch").predict(INPUTS[task_name], batch_size=2)
    code = (f"import json, kdexam\np = kdexam.load_student({str(run)!r})\n"
            f"assert type(p).__name__ == 'ServingPredictor', p\n"
            f"out = p.predict({INPUTS[task_name]!r}, batch_size=2)\n"
            "assert not {'torch', 'transformers'} & set(sys.modules)\nprint(json.dumps(out))")
    _same(task_name, _in_subprocess(code, ("torch", "transformers")), want)


@pytest.mark.parametrize("task_name", list(INPUTS))
def test_standalone_copy_needs_only_onnxruntime_tokenizers_numpy(task_name, exported, tmp_path):
    """The export folder alone, moved away, with torch, transformers and kdexam all unimportable."""
    folder = shutil.copytree(exported["bilstm", task_name] / "onnx", tmp_path / "service")
    assert (folder / SERVING_FILE).is_file()
    want = load_student(exported["bilstm", task_name], backend="pytorch").predict(INPUTS[task_name])
    code = ("import json, sys\nsys.path.insert(0, '.')\nimport kdexam_serving\n"
            f"p = kdexam_serving.load('.')\nout = p.predict({INPUTS[task_name]!r})\n"
            "mods = {m.split('.')[0] for m in sys.modules}\n"
            "assert not {'torch', 'transformers', 'kdexam', 'safetensors'} & mods, mods\nprint(json.dumps(out))")
    _same(task_name, _in_subprocess(code, ("torch", "transformers", "kdexam", "safetensors"), cwd=folder), want)


def test_standalone_errors_are_sentences_with_exit_code_2(exported, tmp_path):
    folder = exported["bilstm", "pair"] / "onnx"
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input="no tab here\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "reads text pairs" in done.stderr and "Traceback" not in done.stderr
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input="good film\tbad plot\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and set(json.loads(done.stdout)) == {"label", "scores"}
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input=b"\n\na\tb\nno tab here\n",
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and b"Input line 4 has no tab" in done.stderr
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input=b"g\xffood\tbad\n",
                          capture_output=True, timeout=120)
    assert done.returncode == 2 and b"not valid UTF-8" in done.stderr and b"Traceback" not in done.stderr
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(tmp_path)], input="x\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "export.json" in done.stderr
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input="good\tbad plot\tdiff\n",
                          capture_output=True, text=True, timeout=120)  # a label column joined the pair
    assert done.returncode == 2 and "Input line 1 has more than one tab" in done.stderr
    single = exported["bilstm", "cls"] / "onnx"
    done = subprocess.run([sys.executable, str(single / SERVING_FILE), str(single)], input="one\rtwo\n",
                          capture_output=True, text=True, timeout=120)  # a lone CR ends a line, as in 'kdexam predict'
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2
    for name, text in (("model.onnx", "version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 3340000\n"),
                       ("tokenizer.json", '{"truncated'), ("crf.safetensors", "short")):  # damaged files: one sentence
        damaged = shutil.copytree(exported["bilstm", "tag"] / "onnx", tmp_path / f"damaged-{name}")
        (damaged / name).write_text(text, encoding="utf-8")
        done = subprocess.run([sys.executable, str(damaged / SERVING_FILE), str(damaged)], input="a b\n",
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2 and f"{name}' is damaged" in done.stderr and "Traceback" not in done.stderr, done.stderr
        with pytest.raises(KdexamError, match=f"{name}' is damaged"):
            load_student(damaged)
    broken = shutil.copytree(folder, tmp_path / "no-tokenizer")
    (broken / "tokenizer.json").unlink()
    done = subprocess.run([sys.executable, str(broken / SERVING_FILE), str(broken)], input="x\tb\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "tokenizer.json" in done.stderr and "Traceback" not in done.stderr


def test_export_records_serving_parity(exported):
    record = json.loads((exported["bilstm", "tag"] / "onnx" / "export.json").read_text())
    assert record["parity_ok"] and set(record["serving"]) == {"onnx", "onnx-int8"}
    assert record["serving"]["onnx"]["max_abs_logit_diff"] < 1e-4 and record["serving"]["onnx"]["prediction_agreement"] == 1.0


def test_logits_equal_the_onnx_runner_on_padded_batches(exported):
    """Padding on the right with the pad id gives the logits of the PyTorch predictor's batches."""
    run = exported["bilstm", "cls"]
    served = load_student(run).predict_logits(INPUTS["cls"], batch_size=4)
    torch_side = load_student(run, backend="pytorch").predict_logits(INPUTS["cls"], batch_size=4)
    assert max(float(np.abs(a - b).max()) for a, b in zip(served, torch_side)) < 1e-4


def test_token_cap_splits_batches_and_keeps_predictions(exported):
    """``max_tokens`` bounds each model call's padded size (rows × longest row); an input longer
    than the cap is a batch of one; the logits are those of uncapped batches."""
    p = load_student(exported["bilstm", "cls"])
    texts = [" ".join(["good"] * n) for n in (1, 3, 5, 7, 9, 11, 2, 4)] + INPUTS["cls"]
    items = p.items(texts)
    widths = [len(e.ids) for e in p.encode(items)]
    calls = list(p.batches(items, batch_size=4, max_tokens=20))
    assert sorted(i for idx, _ in calls for i in idx) == list(range(len(texts)))
    for idx, encs in calls:
        assert len(idx) <= 4
        assert len(idx) == 1 or len(idx) * max(widths[i] for i in idx) <= 20
    assert any(len(idx) == 1 and widths[idx[0]] > 20 for idx, _ in calls), "the long input is a call of its own"
    assert len(calls) > len(list(p.batches(items, batch_size=4, max_tokens=None)))
    capped, whole = p.predict_logits(texts, 32, max_tokens=20), p.predict_logits(texts, 32, max_tokens=None)
    assert max(float(np.abs(a - b).max()) for a, b in zip(capped, whole)) < 1e-5
    with pytest.raises(KdexamError, match="max_tokens 0 is not positive"):
        p.predict(texts, max_tokens=0)


def test_pytorch_predictor_takes_the_same_token_cap(exported):
    run = exported["bilstm", "tag"]
    p = load_student(run, backend="pytorch")
    calls, runner = [], p.runner
    p.runner = lambda inputs: calls.append(inputs["input_ids"].shape) or runner(inputs)
    capped = p.predict(INPUTS["tag"], 32, max_tokens=8)
    assert len(calls) == len(INPUTS["tag"]) and all(rows * width <= 8 or rows == 1 for rows, width in calls)
    calls.clear()
    whole = p.predict(INPUTS["tag"], 32, max_tokens=None)
    assert len(calls) == 1
    assert [c["tags"] for c in capped] == [w["tags"] for w in whole]
    logits = p.predict_logits(INPUTS["tag"], 32, max_tokens=8), p.predict_logits(INPUTS["tag"], 32, max_tokens=None)
    assert max(float(np.abs(a - b).max()) for a, b in zip(*logits)) < 1e-5


def test_serving_audit_cases(exported, tmp_path):
    """Four defects an audit of export and serving found (2026-12-04):
    - a tagger's empty or whitespace word was dropped, so the tags no longer lined up with the words;
    - an export stopped before its parity check (export.json written, no verdict) was served unchecked
      (by kdexam, and since the next session by the folder's own kdexam_serving.py);
    - ``predict --output out.csv`` wrote JSON Lines under a .csv name;
    - the standalone script refused a pair line ending in a tab, which 'kdexam predict' reads."""
    from kdexam.inference.inputs import predict_file

    tagger = exported["bilstm", "tag"]
    for backend in ("pytorch", "onnx"):
        with pytest.raises(KdexamError, match="word 2 of 3 is empty or whitespace; a tagger gives one tag per word"):
            load_student(tagger, backend=backend).predict([["the", "\u00a0", "film"]])
    stopped = shutil.copytree(exported["bilstm", "cls"], tmp_path / "stopped")
    record = json.loads((stopped / "onnx" / "export.json").read_text())
    (stopped / "onnx" / "export.json").write_text(json.dumps({k: v for k, v in record.items() if k not in ("parity_ok", "parity")}))
    for path, backend in ((stopped / "onnx", "auto"), (stopped, "onnx")):
        with pytest.raises(KdexamError, match="did not finish \\(its export.json has no parity check"):
            load_student(path, backend=backend)
    assert load_student(stopped).backend == "pytorch"  # auto: no finished export, so PyTorch
    # the folder's own script refuses it too (exit 2, the sentence), as a service would be started
    refused = subprocess.run([sys.executable, str(stopped / "onnx" / SERVING_FILE), str(stopped / "onnx")],
                             input="a good film\n", capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "did not finish (its export.json has no parity check" in refused.stderr
    texts = tmp_path / "in.txt"
    texts.write_text("a good film\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="would be JSON Lines under a '.csv' name; name it .jsonl"):
        predict_file(exported["bilstm", "cls"], texts, output=tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()
    folder = exported["bilstm", "pair"] / "onnx"
    done = subprocess.run([sys.executable, str(folder / SERVING_FILE), str(folder)], input="Where?\tHome.\nWho\tme\t\n",
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 2, done.stderr
