"""Torch-free predictor for exported models: ONNX Runtime, the Rust ``tokenizers`` library, numpy.

This module imports nothing but the standard library, numpy, onnxruntime and tokenizers
(never torch, transformers or the rest of kdexam), and ``kdexam export`` copies it into
every export folder as ``kdexam_serving.py``. A service then needs only the folder and
``pip install onnxruntime tokenizers numpy``::

    import sys; sys.path.insert(0, "runs/bilstm-ms/onnx")
    import kdexam_serving
    clf = kdexam_serving.load("runs/bilstm-ms/onnx", quantized=True, threads=1)
    clf.predict(["a gripping, funny film"])   # [{'label': 'positive', 'scores': {...}}]

``kdexam.load_student`` and ``kdexam predict`` use it whenever a current export exists.

What it does is what training did (:mod:`kdexam.data.encode`), written against the Rust
tokenizer directly: ``tokenizer.json`` is read with ``tokenizers.Tokenizer``; truncation to
the run's ``max_length`` (longest first, as ``transformers`` sets it for ``truncation=True``);
text pairs encoded as pairs; tagging input as pre-tokenized words. A batch is padded on the
right (``export.json`` ``padding_side``) with the pad id, attention mask 0 and token type 0,
as the PyTorch predictor pads. Several inputs are sorted by length and cut into batches of
at most ``batch_size`` inputs and ``max_tokens`` padded positions (default 512): a call's
memory grows with rows × width (a BiLSTM's gate buffers are 4 × hidden floats a position
and direction), and the cap keeps a serving process's peak the same whatever the inputs'
length; one input is one batch of one.

Decoding: classification → ``{"label", "scores"}`` (softmax); regression → ``{"value"}``;
tagging → ``{"tokens", "tags"}``, each word tagged at its first subword (argmax, or Viterbi
with the CRF transitions of ``crf.safetensors``); words cut off by truncation get ``O`` (or
the first tag) and the item ``"truncated": true``.

``python kdexam_serving.py EXPORT_DIR [--quantized] < texts.txt`` prints one JSON line per
input line; ``--rss TEXTS.json`` reports the process's peak memory instead (``kdexam bench``).
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

# ONNX Runtime >= 1.25 on Linux and macOS writes a device id and an event database under ~/.cache and a
# session file in $TMPDIR, and uploads usage events, unless this is set before it is imported (as
# kdexam/__init__.py does for the package; this file also runs alone, copied into an export folder)
os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"
EXPORT_FILE = "export.json"
CRF_FILE = "crf.safetensors"
TOKENIZER_FILE = "tokenizer.json"
MAX_TOKENS = 512
"""Padded positions (rows × longest row) per model call by default; see :func:`capped_batches`."""

if __name__ == "kdexam.inference.serving":  # inside kdexam: its error (the CLI's exit code 2) and Task
    from kdexam.errors import InputError
    from kdexam.tasks import Task
else:  # the copy in an export folder imports nothing of kdexam, installed or not
    class InputError(ValueError):
        """Bad input: the message is one sentence naming the input and the fix."""

    class Task:
        """What the predictor needs of a task: ``kind``, ``labels``, ``text_pair``."""

        def __init__(self, kind: str, labels: list | None = None, text_pair: bool = False, **_):
            self.kind, self.labels, self.text_pair = kind, labels, bool(text_pair)

        @classmethod
        def from_dict(cls, d: dict) -> "Task":
            return cls(**d)


# ---- small readers ---------------------------------------------------------------------------


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """The float32 tensors of a safetensors file (8-byte header length, JSON header, raw data)."""
    raw = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    data = raw[8 + n :]
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if meta["dtype"] != "F32":
            raise InputError(f"'{path}' holds {meta['dtype']} tensor '{name}'; export the model again with 'kdexam export'.")
        a, b = meta["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=np.float32).reshape(meta["shape"])
    return out


def viterbi(emissions: np.ndarray, transitions: np.ndarray, start: np.ndarray, end: np.ndarray) -> list[int]:
    """Best tag path of a linear-chain CRF for one sentence's emissions [W, C] (Lample et al. 2016):
    ``argmax_y start[y_1] + Σ e[i, y_i] + Σ transitions[y_{i-1}, y_i] + end[y_n]``."""
    n = len(emissions)
    if n == 0:
        return []
    score = start + emissions[0]
    back = np.zeros((n, emissions.shape[1]), dtype=np.int64)
    for i in range(1, n):
        cand = score[:, None] + transitions  # [from, to]
        back[i] = cand.argmax(0)
        score = cand.max(0) + emissions[i]
    best = [int((score + end).argmax())]
    for i in range(n - 1, 0, -1):
        best.append(int(back[i, best[-1]]))
    return best[::-1]


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def onnx_session(path: str | Path, threads: int | None = None):
    """An ONNX Runtime CPU session; ``threads`` sets intra-op threads (inter-op is 1, sequential)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.log_severity_level = 3
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def capped_batches(widths: list[int], batch_size: int, max_tokens: int | None = MAX_TOKENS) -> list[list[int]]:
    """Indices of length-sorted batches (longest first) of at most ``batch_size`` inputs and, when
    ``max_tokens`` is set, at most ``max_tokens`` padded positions (rows × longest row); an input
    longer than the cap is a batch of one."""
    if batch_size < 1:
        raise InputError(f"Batch size {batch_size} is not positive; use 1 or more.")
    if max_tokens is not None and max_tokens < 1:
        raise InputError(f"max_tokens {max_tokens} is not positive; use 1 or more, or None for no limit.")
    order = sorted(range(len(widths)), key=lambda i: -widths[i])
    out, s = [], 0
    while s < len(order):
        n = batch_size if max_tokens is None else max(1, min(batch_size, max_tokens // max(1, widths[order[s]])))
        out.append(order[s : s + n])
        s += n
    return out


# ---- inputs ------------------------------------------------------------------------------------


def space_before_words(tokenizer) -> bool:
    """Give each pre-split word (tagging input) the space it has inside a sentence, on a Rust
    ``tokenizers.Tokenizer`` in place; True when something changed.

    A byte-level BPE tokenizer (RoBERTa, GPT-2, BART) whose ``ByteLevel`` pre-tokenizer has
    ``add_prefix_space`` off encodes every pre-split word as if it began the text: 'good' becomes
    'go' + 'od' instead of the 'Ġgood' the model read in pretraining. transformers asks for
    ``add_prefix_space=True`` with ``is_split_into_words`` for these tokenizers; this sets it on the
    pre-tokenizer (also inside a ``Sequence``). Every other pre-tokenizer is left as it is (WordPiece
    and SentencePiece ones already treat each word as a word)."""
    pre = tokenizer.pre_tokenizer
    if pre is None:
        return False
    spec = json.loads(pre.__getstate__())

    def prefix(node: dict) -> bool:
        if node.get("type") == "ByteLevel" and not node.get("add_prefix_space", False):
            node["add_prefix_space"] = True
            return True
        return any([prefix(n) for n in node.get("pretokenizers", [])])  # every one, not the first

    if not prefix(spec):
        return False
    pre.__setstate__(json.dumps(spec).encode())
    tokenizer.pre_tokenizer = pre
    return True


def wordless(word_ids, n_words: int, full: bool) -> list[int]:
    """The words of a tagging input that got no subword although the input was not cut (``full``:
    shorter than ``max_length``) or a later word was kept: a word of format characters alone (a
    soft hyphen, a zero-width space) tokenises to nothing, and its tag would never reach the loss
    or the prediction. The caller encodes them as the tokenizer's unknown token instead."""
    have = {w for w in word_ids if w is not None and w >= 0}
    last = max(have, default=-1)
    return [w for w in range(n_words) if w not in have and (full or w < last)]


def upper_first(text: str) -> str:
    """``str.capitalize`` without lowercasing the rest (a file name keeps its case)."""
    return text[:1].upper() + text[1:]


def normalise(item, task, where: str):
    """One input as the tokenizer takes it: a string, a ``(text, text_pair)`` pair, or a word list."""
    if task.kind == "token-classification":
        words = item.get("tokens", item.get("text")) if isinstance(item, dict) else item
        if isinstance(words, str):
            words = words.split()
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) for w in words):
            raise InputError(f"{upper_first(where)} is not a list of words or a string; a tagger reads words, e.g. ['The', 'cat'] or 'The cat'.")
        if not words:
            raise InputError(f"{upper_first(where)} has no words; remove it or give it text.")
        if (empty := next((k for k, w in enumerate(words, start=1) if not w.strip()), None)) is not None:
            raise InputError(f"{upper_first(where)}'s word {empty} of {len(words)} is empty or whitespace; a tagger gives "
                             "one tag per word, so remove that word or give it text.")
        check_unicode(words, where)
        return words
    if isinstance(item, dict):
        if "text" not in item:
            raise InputError(f"{upper_first(where)} has no 'text' field; write objects like {{\"text\": ...}}.")
        text, pair = item["text"], item.get("text_pair")
    elif isinstance(item, (tuple, list)):
        if len(item) != 2:
            raise InputError(f"{upper_first(where)} is a sequence of {len(item)} items; give a string, or a (text, text_pair) pair.")
        text, pair = item
    else:
        text, pair = item, None
    if not isinstance(text, str) or (pair is not None and not isinstance(pair, str)):
        raise InputError(f"{upper_first(where)} is not text ({type(text).__name__}); give strings.")
    if task.text_pair and pair is None:
        raise InputError(f"The model reads text pairs but {where} has one text; give (text, text_pair) or a 'text_pair' field.")
    if not task.text_pair and pair is not None:
        raise InputError(f"The model reads single texts but {where} is a pair; give one text.")
    if not text.strip() or (pair is not None and not pair.strip()):
        raise InputError(f"{upper_first(where)} has an empty text; remove it or fill it in.")
    check_unicode([text] if pair is None else [text, pair], where)
    return (text, pair) if task.text_pair else text


def check_unicode(texts, where: str) -> None:
    """Lone surrogates (a JSON escape of half an emoji, ``"\\ud83d"``; undecodable bytes read with
    ``surrogateescape``) cannot reach the Rust tokenizer: say so instead of its TypeError."""
    for t in texts:
        try:
            t.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(f"{upper_first(where)} is not valid Unicode (a lone surrogate such as a cut-off emoji escape, or "
                             "bytes that are not UTF-8); fix or drop it.") from None


# ---- the predictor -------------------------------------------------------------------------------


def _load(d: Path, name: str, read):
    """``read(d / name)``; a file that cannot be read (cut short, a Git LFS pointer checked out in
    its place, another file under its name) is an :class:`InputError` naming it."""
    try:
        return read(d / name)
    except Exception as e:  # (onnxruntime, tokenizers and json raise their own kinds)
        raise InputError(f"'{d / name}' is damaged or not the file the export wrote ({type(e).__name__}); export the "
                         "model again, or copy the whole export folder again (a Git LFS pointer is not the file).") from None


class ServingPredictor:
    """Predictions from an export folder (``model.onnx`` or ``model.int8.onnx``, ``tokenizer.json``,
    ``export.json``). Attributes as :class:`kdexam.inference.predictor.Predictor`: ``task``,
    ``backend`` (``"onnx"``), ``max_length``, ``quantized``, ``source``, ``crf``, ``name``."""

    backend = "onnx"

    def __init__(self, export_dir: str | Path, quantized: bool = False, threads: int | None = None, unchecked: bool = False):
        """``unchecked``: serve an export whose parity check has not run yet (the check itself does)."""
        from tokenizers import Tokenizer

        d = Path(export_dir)
        try:
            record = json.loads((d / EXPORT_FILE).read_text(encoding="utf-8"))
            self.task = Task.from_dict(record["task"])
            self.max_length = int(record["max_length"])
        except (OSError, ValueError, KeyError, TypeError):
            raise InputError(f"'{d}' has no readable {EXPORT_FILE}; export the model again with 'kdexam export'.") from None
        if "parity_ok" not in record and not unchecked:  # (written last: an export stopped before it looks whole)
            raise InputError(f"The export in '{d}' did not finish (its {EXPORT_FILE} has no parity check: the export "
                             "stopped before it); run 'kdexam export' on its run again.")
        path = d / (INT8_FILE if quantized else FP32_FILE)
        if not path.is_file():
            raise InputError(f"'{d}' has no {path.name}; run 'kdexam export RUN --format onnx --quantize int8' for an int8 model.")
        self.source, self.quantized, self.threads = str(path), quantized, threads
        self.name = (record.get("source") or {}).get("name", "")
        if not (d / TOKENIZER_FILE).is_file():
            raise InputError(f"'{d}' has no {TOKENIZER_FILE}; export the model again with 'kdexam export' (a fast tokenizer is needed).")
        self.tokenizer = _load(d, TOKENIZER_FILE, lambda f: Tokenizer.from_file(str(f)))
        if self.task.kind == "token-classification":
            space_before_words(self.tokenizer)  # as training encoded the words (kdexam.data.encode)
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_length, strategy="longest_first",
                                         direction=record.get("truncation_side", "right"))
        self.pad_id = int(record.get("pad_token_id") or 0)
        self.unk_token = record.get("unk_token") or getattr(self.tokenizer.model, "unk_token", None) or "[UNK]"
        """What a tagged word that tokenises to nothing is read as (training's :func:`kdexam.data.encode.unknown_word`)."""
        self.pad_left = record.get("padding_side", "right") == "left"
        self.session = _load(d, path.name, lambda f: onnx_session(f, threads))
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.crf = _load(d, CRF_FILE, read_safetensors) if (d / CRF_FILE).is_file() else None
        labels = self.task.labels or []
        self.fill = labels.index("O") if "O" in labels else 0

    def __repr__(self) -> str:
        return f"ServingPredictor({self.name or self.source!r}, task={self.task.kind}, onnx{', int8' if self.quantized else ''})"

    # the steps of a prediction, apart for timing: items, encode, feed, run, decode --------------

    def items(self, texts) -> list:
        """Inputs normalised for the tokenizer (a lone string, dict or pair is one input)."""
        if isinstance(texts, (str, dict)) or (self.task.text_pair and isinstance(texts, tuple)):
            texts = [texts]
        return [normalise(t, self.task, f"input {i}") for i, t in enumerate(texts)]

    def encode(self, items: list) -> list:
        """Tokenised inputs (``tokenizers.Encoding``), truncated, not padded. Sequence tasks use
        ``encode_batch_fast`` (no character offsets: about half the time of ``encode`` for one
        sentence); tagging needs the word ids, which only ``encode_batch`` keeps. With
        ``threads=1`` the inputs are encoded one by one in the calling thread: the tokenizer's
        own thread pool would otherwise use every core (and, one thread of it alone, is slower
        than the loop)."""
        tagging = self.task.kind == "token-classification"
        encode = self.tokenizer.encode_batch if tagging else getattr(self.tokenizer, "encode_batch_fast", self.tokenizer.encode_batch)
        if self.threads == 1 and len(items) > 1:  # one thread means no tokenizer thread pool either
            encodings = [encode([item], is_pretokenized=tagging)[0] for item in items]
        else:
            encodings = encode(items, is_pretokenized=tagging)
        if tagging:  # a word that tokenised to nothing is read as the unknown token, as training read it
            unk = self.unk_token
            for i, (item, e) in enumerate(zip(items, encodings)):
                if empty := wordless(e.word_ids, len(item), len(e.ids) < self.max_length):
                    encodings[i] = encode([[unk if w in empty else word for w, word in enumerate(item)]], is_pretokenized=True)[0]
        return encodings

    def feed(self, encodings: list) -> dict:
        """One padded batch of model inputs (int64 arrays) from encodings."""
        width = max(len(e.ids) for e in encodings)
        ids = np.full((len(encodings), width), self.pad_id, dtype=np.int64)
        mask = np.zeros_like(ids)
        types = np.zeros_like(ids)
        for b, e in enumerate(encodings):
            n = len(e.ids)
            cols = slice(width - n, width) if self.pad_left else slice(0, n)
            ids[b, cols], mask[b, cols], types[b, cols] = e.ids, e.attention_mask, e.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {n: arrays[n] for n in self.inputs}

    def run(self, feed: dict) -> np.ndarray:
        """The model's logits for one batch."""
        return self.session.run(["logits"], feed)[0]

    def decode(self, logits: np.ndarray, encodings: list, items: list) -> list[dict]:
        """One prediction dict per input of the batch."""
        kind = self.task.kind
        if kind == "regression":
            return [{"value": float(v)} for v in logits.reshape(len(encodings), -1)[:, 0]]
        labels = self.task.labels or []
        if kind == "classification":
            probs = softmax(logits.astype(np.float64))
            return [{"label": labels[int(p.argmax())], "scores": {l: float(s) for l, s in zip(labels, p)}} for p in probs]
        out = []
        for b, (e, words) in enumerate(zip(encodings, items)):
            row = self.row(logits, b, len(e.ids))
            first: dict[int, int] = {}
            for pos, w in enumerate(e.word_ids):
                if w is not None and w not in first:
                    first[w] = pos
            tags = [self.fill] * len(words)
            present = sorted(first)
            if self.crf is None:
                for w in present:
                    tags[w] = int(row[first[w]].argmax())
            else:
                path = viterbi(row[[first[w] for w in present]], self.crf["transitions"], self.crf["start"], self.crf["end"])
                for w, t in zip(present, path):
                    tags[w] = t
            item = {"tokens": list(words), "tags": [labels[t] for t in tags]}
            if len(e.ids) >= self.max_length and present and present[-1] < len(words) - 1:
                item["truncated"] = True  # (words that tokenize to nothing, such as U+200B, are not truncation)
            out.append(item)
        return out

    # whole predictions --------------------------------------------------------------------------

    def batches(self, items: list, batch_size: int, max_tokens: int | None = MAX_TOKENS):
        """``(indices, encodings)`` of :func:`capped_batches`."""
        encodings = self.encode(items)
        for idx in capped_batches([len(e.ids) for e in encodings], batch_size, max_tokens):
            yield idx, [encodings[i] for i in idx]

    def row(self, logits: np.ndarray, b: int, n: int) -> np.ndarray:
        """Row ``b`` of a batch's logits: [C], or its ``n`` real positions [n, C] for tagging."""
        if self.task.kind != "token-classification":
            return logits[b]
        return logits[b, -n:] if self.pad_left else logits[b, :n]

    def predict_with_logits(self, texts, batch_size: int = 32,
                            max_tokens: int | None = MAX_TOKENS) -> tuple[list[dict], list[np.ndarray]]:
        """Predictions and per-input logits from one pass of the model (batches as :meth:`batches`)."""
        items = self.items(texts)
        preds: list = [None] * len(items)
        logits: list = [None] * len(items)
        for idx, encs in self.batches(items, batch_size, max_tokens):
            out = self.run(self.feed(encs))
            for b, (i, pred) in enumerate(zip(idx, self.decode(out, encs, [items[i] for i in idx]))):
                preds[i], logits[i] = pred, self.row(out, b, len(encs[b].ids))
        return preds, logits

    def predict(self, texts, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS) -> list[dict]:
        """One dict per input: ``{"label", "scores"}``, ``{"value"}`` or ``{"tokens", "tags"}``."""
        return self.predict_with_logits(texts, batch_size, max_tokens)[0]

    def predict_logits(self, texts, batch_size: int = 32, max_tokens: int | None = MAX_TOKENS) -> list[np.ndarray]:
        """Per-input logits: [C] (classification), [1] (regression), [subwords, C] (tagging)."""
        return self.predict_with_logits(texts, batch_size, max_tokens)[1]


def load(export_dir: str | Path, quantized: bool = False, threads: int | None = None) -> ServingPredictor:
    """A :class:`ServingPredictor` for an export folder (``quantized``: the int8 model)."""
    return ServingPredictor(export_dir, quantized, threads)


# ---- command line: predict stdin lines, or measure peak memory --------------------------------------


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux ``VmHWM``; else ``ru_maxrss``), in MB (2^20 bytes).
    Not ``ru_maxrss`` on Linux: the kernel carries a parent's peak over ``fork``/``exec`` into it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Predict with a kdexam export folder (no PyTorch needed).")
    ap.add_argument("export_dir")
    ap.add_argument("--quantized", action="store_true", help="use model.int8.onnx")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-tokens", type=int, default=MAX_TOKENS,
                    help=f"padded positions per model call (default {MAX_TOKENS}; 0: no limit)")
    ap.add_argument("--rss", metavar="TEXTS_JSON", help="predict the inputs of this JSON list and print peak memory")
    ap.add_argument("--unchecked", action="store_true", help="serve an export stopped before its parity check")
    a = ap.parse_args(argv)
    import onnxruntime  # noqa: F401  (counted in the baseline, as any service imports it)
    import tokenizers  # noqa: F401

    baseline = peak_rss_mb()
    max_tokens = a.max_tokens or None
    try:
        clf = ServingPredictor(a.export_dir, a.quantized, a.threads, unchecked=a.unchecked)
        if a.rss:
            loaded = peak_rss_mb()
            clf.predict(json.loads(Path(a.rss).read_text(encoding="utf-8")), a.batch_size, max_tokens)
            heavy = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "transformers", "kdexam"})
            print(json.dumps({"baseline_mb": baseline, "loaded_mb": loaded, "peak_mb": peak_rss_mb(), "imported": heavy}))
            return 0
        try:
            raw = sys.stdin.buffer.read().decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(f"The input is not valid UTF-8 (byte {e.start}); send UTF-8 text.") from None
        lines = raw.replace("\r\n", "\n").replace("\r", "\n").split("\n")  # (line ends as 'kdexam predict' reads them)
        numbered = [(i, l) for i, l in enumerate(lines, start=1) if l.strip()]
        if clf.task.text_pair:  # (a spreadsheet's empty trailing column is none, as 'kdexam predict' reads it)
            numbered = [(i, l.rstrip("\t")) for i, l in numbered]
            for i, line in numbered:
                if (tabs := line.count("\t")) != 1:
                    raise InputError(f"Input line {i} has {'no tab' if tabs == 0 else 'more than one tab'}; the model reads "
                                     "text pairs, write 'text<TAB>text_pair' (no label column).")
        lines = [tuple(l.split("\t", 1)) if clf.task.text_pair else l for _, l in numbered]
        for pred in clf.predict(lines, a.batch_size, max_tokens):
            print(json.dumps(pred, ensure_ascii=False))
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
