"""The static student: masked mean pooling (single texts, pairs), the tagging window, token
weights, the model2vec-style initialisation from the teacher's outputs, save/load."""

from __future__ import annotations

import pytest
import torch

from kdexam.errors import KdexamError
from kdexam.students.registry import StudentSpec, check_spec, load_student, save_student
from kdexam.students.static import StaticConfig, StaticStudent
from run_factory import runs  # noqa: F401  (fixture)

E = torch.tensor([[0.0, 0.0], [1.0, 2.0], [3.0, -1.0], [5.0, 5.0], [-2.0, 4.0]])  # 5 tokens, width 2


def _student(**kw) -> StaticStudent:
    cfg = StaticConfig(vocab_size=5, embedding_dim=2, num_labels=2, **kw)
    model = StaticStudent(cfg, E)
    head = model.head
    with torch.no_grad():  # the head copies its input (or the first 2 features) to the logits
        head.weight.zero_()
        head.weight[:, :2] = torch.eye(2)
        head.bias.zero_()
    return model.eval()


def test_mean_of_real_tokens_and_padding_changes_nothing():
    model = _student()
    ids = torch.tensor([[1, 2, 3, 0, 0], [4, 1, 0, 0, 0]])
    mask = (ids != 0).long()
    out = model(ids, mask, output_hidden_states=True)
    want = torch.stack([E[[1, 2, 3]].mean(0), E[[4, 1]].mean(0)])
    assert torch.allclose(out["pooled"], want) and torch.allclose(out["logits"], want)
    alone = model(ids[1:, :2], mask[1:, :2])["logits"]
    assert torch.allclose(alone, out["logits"][1:])


def test_max_and_mean_max_pooling_ignore_padding():
    model = _student(pooling="mean-max")
    ids = torch.tensor([[1, 2, 0]])
    with torch.no_grad():
        model.embeddings.word.weight[0] = 100.0  # padding would win every max
    pooled = model(ids, (ids != 0).long(), output_hidden_states=True)["pooled"][0]
    assert torch.allclose(pooled, torch.cat([E[[1, 2]].mean(0), E[[1, 2]].max(0).values]))
    with pytest.raises(KdexamError, match="not one of static's"):
        check_spec(StudentSpec(kind="static", pooling="attention"))
    with pytest.raises(KdexamError, match="not one of bilstm's"):
        check_spec(StudentSpec(kind="bilstm", pooling="mean-max"))


def test_pairs_pool_each_text_and_combine():
    model = _student(text_pair=True)
    ids = torch.tensor([[1, 2, 3, 4, 0]])
    types = torch.tensor([[0, 0, 1, 1, 0]])
    pooled = model(ids, (ids != 0).long(), types, output_hidden_states=True)["pooled"]
    u, v = E[[1, 2]].mean(0), E[[3, 4]].mean(0)
    assert torch.allclose(pooled[0], torch.cat([u, v, (u - v).abs(), u * v]))


def test_tagging_window_reads_neighbours_and_zeros_beyond_the_sentence():
    model = _student(tagging=True, window=1)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.weight[0, 0] = 1.0  # logit 0 = first feature of the left neighbour
        model.head.weight[1, 4] = 1.0  # logit 1 = first feature of the right neighbour
    ids = torch.tensor([[1, 2, 3, 0]])
    logits = model(ids, (ids != 0).long())["logits"][0]
    assert logits[:3, 0].tolist() == [0.0, 1.0, 3.0]  # left neighbours: none, token 1, token 2
    assert logits[:3, 1].tolist() == [3.0, 5.0, 0.0]  # right neighbours: token 2, token 3, padding (zero)


def test_token_weights_scale_each_token_in_the_mean():
    model = _student(token_weights=True)
    ids = torch.tensor([[1, 2]])
    assert torch.allclose(model(ids)["logits"][0], E[[1, 2]].mean(0))  # initialised to 1
    with torch.no_grad():
        model.token_weight.weight[2] = 0.0
    assert torch.allclose(model(ids)["logits"][0], E[1] / 2)  # still divided by the token count


def test_word_dropout_drops_whole_tokens_in_training_only():
    model = _student(dropout=0.5)
    ids = torch.tensor([[1, 2, 3, 4]])
    assert torch.allclose(model(ids)["logits"][0], E[[1, 2, 3, 4]].mean(0))  # eval: every token
    model.train()
    torch.manual_seed(0)
    means = {tuple(model(ids, output_hidden_states=True)["pooled"][0].tolist()) for _ in range(50)}
    subsets = {tuple(E[list(c)].mean(0).tolist()) for n in range(1, 5) for c in __import__("itertools").combinations([1, 2, 3, 4], n)}
    assert len(means) > 3 and all(any(torch.allclose(torch.tensor(m), torch.tensor(s)) for s in subsets) for m in means)


def test_word_dropout_keeps_a_token_of_each_text_of_a_pair():
    """Heavy word dropout on a pair whose second text is one token: that token always stays, so v is
    never the zero vector (one guard per row let a whole text leave the bag)."""
    model = _student(dropout=0.9, text_pair=True).train()
    ids, types = torch.tensor([[1, 2, 3, 4]]), torch.tensor([[0, 0, 0, 1]])
    torch.manual_seed(0)
    for _ in range(50):
        pooled = model(ids, torch.ones_like(ids), types, output_hidden_states=True)["pooled"][0]
        u, v = pooled[:2], pooled[2:4]
        assert torch.allclose(v, E[4]) and u.abs().sum() > 0


def test_hashed_bigrams_add_their_vector_at_the_second_token():
    from kdexam.students.static import bigram_ids

    ids = torch.tensor([[1, 2, 3, 0]])
    assert bigram_ids(ids, 7).tolist() == [[(1 * 1_000_003 + 2) % 7, (2 * 1_000_003 + 3) % 7, (3 * 1_000_003 + 0) % 7]]
    model = _student(ngram_buckets=7)
    mask = (ids != 0).long()
    assert torch.allclose(model(ids, mask)["logits"][0], E[[1, 2, 3]].mean(0))  # zero-initialised
    with torch.no_grad():
        model.bigram.weight[(2 * 1_000_003 + 3) % 7] = torch.tensor([3.0, 6.0])
    assert torch.allclose(model(ids, mask)["logits"][0], (E[1] + E[2] + E[3] + torch.tensor([3.0, 6.0])) / 3)


def test_the_bigram_table_trains_at_its_scaled_learning_rate():
    """AdamW's first step moves every parameter by about its learning rate (Adam's normalised step,
    sign(g) · lr): the bigram rows move a tenth as far as the token rows."""
    from kdexam.config import TrainConfig
    from kdexam.training.trainer import make_optimizer

    ids = torch.tensor([[1, 2, 3, 0]])
    model = _student(ngram_buckets=7, ngram_lr_scale=0.1)
    wrapper = torch.nn.ModuleDict({"student": model})  # (fit's model is the objective's wrapper)
    optimizer, _ = make_optimizer(wrapper, TrainConfig(learning_rate=1e-2, warmup_ratio=0.0, weight_decay=0.0), 10)
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-2, pytest.approx(1e-3)]
    assert optimizer.param_groups[2]["params"] == [model.bigram.weight]
    before = {"token": model.embeddings.word.weight.detach().clone(), "bigram": model.bigram.weight.detach().clone()}
    model(ids, (ids != 0).long())["logits"][0, 0].backward()
    optimizer.step()
    token_step = (model.embeddings.word.weight - before["token"]).abs()[2].max().item()
    bigram_step = (model.bigram.weight - before["bigram"]).abs()[(2 * 1_000_003 + 3) % 7].max().item()
    assert token_step == pytest.approx(1e-2, rel=1e-3) and bigram_step == pytest.approx(1e-3, rel=1e-3)
    plain, _ = make_optimizer(_student(), TrainConfig(learning_rate=1e-2, warmup_ratio=0.0), 10)
    assert [g["lr"] for g in plain.param_groups] == [1e-2, 1e-2]  # (no scaled module: the two groups as before)


def test_settings_that_do_not_apply_are_refused():
    with pytest.raises(KdexamError, match="does not apply to static"):
        check_spec(StudentSpec(kind="static", num_layers=2))
    with pytest.raises(KdexamError, match="does not apply to bilstm"):
        check_spec(StudentSpec(kind="bilstm", token_weights=True))


def test_model2vec_init_is_the_sif_weighted_mean_output_of_each_token_alone(runs):
    """Without PCA: row(t) = a / (a + p(t)) · mean_i h_i([CLS] t [SEP]), p from the training texts."""
    from transformers import AutoModel

    from kdexam.students.embeddings import teacher_output_embeddings, token_counts

    teacher = runs.teacher("cls")
    texts = ["the movie was good", "the plot was dull"]
    init = teacher_output_embeddings(teacher, None, texts, only_used=True, sif=1e-3)
    tok = init.tokenizer
    counts = token_counts(tok, texts)
    total = sum(counts.values())
    encoder = AutoModel.from_pretrained(teacher).eval()
    for t in list(counts)[:3]:
        with torch.no_grad():
            h = encoder(input_ids=torch.tensor([[tok.cls_token_id, t, tok.sep_token_id]])).last_hidden_state[0].mean(0)
        want = h * (1e-3 / (1e-3 + counts[t] / total))
        assert torch.allclose(init.weight[t], want, atol=1e-5)
    unused = next(i for i in range(init.weight.shape[0]) if i not in counts and i not in tok.all_special_ids)
    assert not init.weight[unused].any()  # not passed through the teacher: dropped by trimming
    assert init.info["source"] == "model2vec" and init.info["frequencies"] == "transfer set"


def test_contextual_init_is_the_sif_weighted_mean_state_of_each_token_over_its_occurrences(runs):
    """Without PCA: row(t) = a / (a + p(t)) · mean over every occurrence (s, i) of t of h(s)_i,
    each text encoded once as [CLS] text [SEP]; a special token gets its model2vec vector."""
    from transformers import AutoModel

    from kdexam.students.contextual import teacher_context_embeddings
    from kdexam.students.embeddings import teacher_output_embeddings, token_counts

    teacher = runs.teacher("cls")
    texts = ["the movie was good", "the plot was dull", ("the end", "was good")]
    init = teacher_context_embeddings(teacher, None, texts, sif=1e-3, batch_size=2, progress=False)
    tok = init.tokenizer
    strings = ["the movie was good", "the plot was dull", "the end", "was good"]
    counts = token_counts(tok, strings)
    total = sum(counts.values())
    encoder = AutoModel.from_pretrained(teacher).eval()
    states: dict[int, list] = {}
    for text in strings:
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            h = encoder(input_ids=torch.tensor([ids])).last_hidden_state[0]
        for i, t in enumerate(ids):
            if t not in tok.all_special_ids:
                states.setdefault(t, []).append(h[i])
    the = tok.convert_tokens_to_ids("the")
    assert len(states[the]) == 3  # three contexts, averaged
    for t, hs in states.items():
        want = torch.stack(hs).mean(0) * (1e-3 / (1e-3 + counts[t] / total))
        assert torch.allclose(init.weight[t], want, atol=1e-5), tok.convert_ids_to_tokens(t)
    alone = teacher_output_embeddings(teacher, None, texts, only_used=True, sif=1e-3)
    assert torch.allclose(init.weight[tok.cls_token_id], alone.weight[tok.cls_token_id], atol=1e-6)
    assert not torch.allclose(init.weight[the], alone.weight[the], atol=1e-3)  # context changes the vector
    assert init.info["source"] == "contextual" and init.info["tokens_in_context"] == len(states)
    with pytest.raises(KdexamError, match="training texts"):
        teacher_context_embeddings(teacher, None, [])


def test_contextual_averages_are_cached_and_a_second_init_skips_the_teacher_pass(runs, monkeypatch):
    """The second init on the same texts reads the averages from the cache (the teacher's encoder is
    called only for the special tokens' vectors) and gives the identical table; other texts miss."""
    from transformers import BertModel

    from kdexam.students.contextual import context_cache_file, teacher_context_embeddings

    teacher = runs.teacher("cls")
    texts = ["the movie was good", "the plot was dull", "good"]
    first = teacher_context_embeddings(teacher, 4, texts, progress=False)
    cache = context_cache_file(teacher, sorted(set(texts), key=lambda x: (len(x), x)), 128)
    assert cache.is_file() and first.info["context_cache"] == str(cache)
    rows = []
    original = BertModel.forward
    monkeypatch.setattr(BertModel, "forward", lambda self, input_ids=None, **kw: rows.append(len(input_ids)) or original(self, input_ids=input_ids, **kw))
    second = teacher_context_embeddings(teacher, 4, texts, progress=False)
    assert torch.equal(first.weight, second.weight)
    assert sum(rows) == first.info["tokens_alone"]  # only the special tokens, each encoded alone
    rows.clear()
    teacher_context_embeddings(teacher, 4, texts[:2], progress=False)
    assert sum(rows) > first.info["tokens_alone"]  # other texts: the teacher pass again
    cache.write_bytes(b"damaged")
    rows.clear()
    third = teacher_context_embeddings(teacher, 4, texts, progress=False)  # a damaged file: computed again
    assert sum(rows) > first.info["tokens_alone"] and torch.equal(third.weight, first.weight) and cache.stat().st_size > 7
    # bits flipped inside the tensor (the file still loads, shapes agree): caught by the checksum, computed again
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(cache), "pt") as f:
        metadata = f.metadata()  # (the checksum of the tensors as written)
    stored = load_file(str(cache))
    stored["means"][0, 0] = stored["means"][0, 0] * 1e6
    save_file(stored, str(cache), metadata=metadata)
    rows.clear()
    fourth = teacher_context_embeddings(teacher, 4, texts, progress=False)
    assert sum(rows) > first.info["tokens_alone"] and torch.equal(fourth.weight, first.weight)


def test_contextual_embeddings_build_a_trimmed_student_of_every_embedding_kind(runs):
    from kdexam.students.registry import build_student
    from kdexam.tasks import Task

    teacher = runs.teacher("cls")
    texts = ["the movie was good", "the plot was dull"]
    for kind in ("static", "cnn"):
        model, tok = build_student(StudentSpec(kind=kind, embeddings="contextual", embedding_dim=4),
                                   Task("classification", ["neg", "pos"]), teacher, train_texts=texts)
        info = model.kdexam_info["embeddings"]
        assert info["source"] == "contextual" and info["dim"] == 4 and info["pca"] is True
        used = {t for s in texts for t in tok(s, add_special_tokens=False)["input_ids"]}
        assert info["trimmed_vocab"] == len(used | set(tok.all_special_ids))


@pytest.mark.parametrize("task_name", ["cls", "pair", "tag", "reg"])
def test_build_save_load_identical_predictions(task_name, runs, tmp_path):
    run = runs.student("static", task_name)
    model, tok, spec, task = load_student(run)
    assert spec.embeddings is None and model.kdexam_info["embeddings"]["source"] == "model2vec"
    ids = torch.tensor([[tok.cls_token_id, 5, 6, 7, tok.sep_token_id]])
    types = torch.tensor([[0, 0, 0, 1, 1]]) if task.text_pair else None
    with torch.no_grad():
        before = model(ids, torch.ones_like(ids), types)["logits"]
    save_student(model, tok, spec, task, tmp_path / "again")
    again, *_ = load_student(tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(again(ids, torch.ones_like(ids), types)["logits"], before)


def test_default_embeddings_are_model2vec_for_static_and_teacher_otherwise():
    from kdexam.students.registry import embedding_source

    assert embedding_source(StudentSpec(kind="static")) == "model2vec"
    assert embedding_source(StudentSpec(kind="cnn")) == "teacher"
    assert embedding_source(StudentSpec(kind="static", embeddings="random")) == "random"


def test_static_student_trains_by_distillation(runs, tmp_path):
    """End to end through distill(): the student is saved, scored and loyal to its teacher."""
    from kdexam.api import distill

    teacher = runs.teacher("cls")
    import yaml

    data = yaml.safe_load((teacher / "config.yaml").read_text())["data"]["name"]
    result = distill(teacher=str(teacher), data=data, student="static", embedding_dim=8, epochs=2, batch_size=8,
                     out=str(tmp_path / "static"), num_threads=1)
    assert (tmp_path / "static" / "student.json").is_file()
    student = result["student"]
    assert student["name"] == "static" and student["params"] > 0 and result["split"] == "validation"
    # the saved student reproduces the score distill() reported
    from kdexam.config import DataConfig
    from kdexam.data.splits import load_data
    from kdexam.inference.predictor import load_student as serve

    examples = load_data(DataConfig(name=data)).validation
    preds = serve(tmp_path / "static", backend="pytorch").predict([e.text for e in examples])
    accuracy = sum(p["label"] == e.label for p, e in zip(preds, examples)) / len(examples)
    assert accuracy == pytest.approx(student["metrics"]["accuracy"])


@pytest.mark.parametrize("pooling", ["max", "mean-max"])
def test_max_pooling_exports_with_parity_and_serves(pooling, runs, tmp_path):
    import shutil

    from kdexam.export.onnx import export_onnx
    from kdexam.inference.predictor import load_student as serve

    run = shutil.copytree(runs.student("static", "pair", pooling=pooling), tmp_path / "run")
    record = export_onnx(run, quantize="int8")
    assert record["parity_ok"] and record["serving"]["onnx"]["prediction_agreement"] == 1.0
    items = [("good film", "bad plot"), ("the story", "the actors were fine")]
    assert [p["label"] for p in serve(run).predict(items)] == [p["label"] for p in serve(run, backend="pytorch").predict(items)]


def test_a_linear_head_folds_into_a_table_of_per_token_logits_with_the_same_logits():
    """logits = W · mean(w_t E_t) + b = mean(w_t E_t W^T) + b: the folded student (C columns, identity
    head) gives the same logits, trimmed id map and token weights included."""
    from kdexam.students.static import fold_linear_head

    torch.manual_seed(0)
    for buckets in (0, 11):  # (with hashed bigrams: their table folds too, G W^T)
        cfg = StaticConfig(vocab_size=6, embedding_dim=8, num_labels=3, token_weights=True, source_vocab_size=20,
                           ngram_buckets=buckets)
        model = StaticStudent(cfg, torch.randn(6, 8)).eval()
        with torch.no_grad():
            model.embeddings.id_map.copy_(torch.randint(0, 6, (20,)))
            model.token_weight.weight.uniform_(0.5, 2.0)
            if buckets:
                model.bigram.weight.normal_()
        ids = torch.randint(0, 20, (4, 7))
        mask = torch.ones_like(ids)
        mask[1, 3:] = 0
        mask[2, 1:] = 0
        folded = fold_linear_head(model)
        assert folded.embeddings.word.weight.shape == (6, 3) and folded.kdexam_info["folded_head"] is True
        assert buckets == 0 or folded.bigram.weight.shape == (11, 3)
        with torch.no_grad():
            assert torch.allclose(folded(ids, mask)["logits"], model(ids, mask)["logits"], atol=1e-5)
    for kw in ({"hidden_size": 4}, {"pooling": "max"}, {"text_pair": True}, {"tagging": True}):
        other = StaticStudent(StaticConfig(vocab_size=6, embedding_dim=8, num_labels=3, **kw), torch.randn(6, 8))
        assert fold_linear_head(other) is None, kw


def test_export_folds_the_static_student_and_keeps_parity(runs, tmp_path):
    import json

    from kdexam.export.onnx import export_onnx

    run = runs.student("static", "cls", hidden_size=None, ngram_buckets=0)  # mean pooling, linear head, token weights
    record = export_onnx(run, tmp_path / "onnx")
    assert record["folded_head"] is True and record["parity_ok"] is True
    assert json.loads((tmp_path / "onnx" / "export.json").read_text())["folded_head"] is True
    import onnx

    rows = load_student(run)[0].embeddings.word.weight.shape[0]
    shapes = [list(t.dims) for t in onnx.load(str(tmp_path / "onnx" / "model.onnx")).graph.initializer]
    assert [rows, 2] in shapes and [rows, 16] not in shapes  # one logit per label per token, not 16-d vectors
    assert export_onnx(runs.student("static", "cls"), tmp_path / "mlp")["folded_head"] is False  # an MLP head stays
    bigrams = runs.student("static", "cls", hidden_size=None)  # hashed bigrams (64 buckets): folded, hashed in the graph
    record = export_onnx(bigrams, tmp_path / "bigrams")
    assert record["folded_head"] is True and record["parity_ok"] is True
    shapes = [list(t.dims) for t in onnx.load(str(tmp_path / "bigrams" / "model.onnx")).graph.initializer]
    assert [64, 2] in shapes and [64, 16] not in shapes
