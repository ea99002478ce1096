"""The moving average of the weights (``train.ema_decay``): its formula, the swap for evaluation, and
fit() evaluating, selecting and keeping the averaged weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdexam.training.trainer import WeightAverage


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(2))
        self.register_buffer("id_map", torch.tensor([0, 1, 2]))


def test_the_average_follows_its_formula_with_the_warm_up_and_copies_integer_buffers():
    model = Tiny()
    avg = WeightAverage(model, decay=0.5)
    want = torch.zeros(2)
    for t, value in enumerate([4.0, -2.0, 10.0, 1.0], start=1):
        with torch.no_grad():
            model.w.fill_(value)
            model.id_map[0] = t
        avg.update(model)
        d = min(0.5, (1 + t) / (10 + t))  # 2/11, 3/12, 4/13, then the decay 0.5 caps 5/14
        want = d * want + (1 - d) * value
        assert torch.allclose(avg.state["w"], want, atol=1e-6), t
        assert avg.state["id_map"].tolist() == [t, 1, 2]
    assert avg.updates == 4 and not torch.allclose(avg.state["w"], model.w.detach())


def test_applied_swaps_the_average_in_and_the_weights_back():
    model = Tiny()
    avg = WeightAverage(model, decay=0.9)
    with torch.no_grad():
        model.w.fill_(3.0)
    avg.update(model)  # d_1 = 2/11: the average is 9/11 · 0 + 2/11 · 3
    with avg.applied(model):
        assert torch.allclose(model.w.detach(), torch.full((2,), 3.0 * 9 / 11))
    assert torch.equal(model.w.detach(), torch.full((2,), 3.0))
    with pytest.raises(RuntimeError), avg.applied(model):
        raise RuntimeError("an evaluation that fails")
    assert torch.equal(model.w.detach(), torch.full((2,), 3.0))  # restored anyway


def test_fit_evaluates_selects_and_keeps_the_averaged_weights(tmp_path):
    """Each evaluation sees the average of the weights after every step so far; the run ends with the
    average of the best evaluation, not with the last weights."""
    from conftest import build_tokenizer, sentiment_examples
    from transformers import BertConfig, BertForSequenceClassification

    from kdexam.config import TrainConfig
    from kdexam.data.encode import encode, make_loader
    from kdexam.data.readers import Example
    from kdexam.tasks import Task
    from kdexam.training.trainer import fit, make_accelerator

    torch.manual_seed(0)
    tok, task = build_tokenizer(), Task("classification", ["neg", "pos"])
    train = [Example(r["text"], None, r["label"]) for r in sentiment_examples(32, seed=1)]
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=16, max_position_embeddings=32, num_labels=2))
    cfg = TrainConfig(epochs=3, batch_size=8, learning_rate=1e-2, ema_decay=0.8, patience=5, checkpoint_every=0)
    after_steps, seen, scores = [], [], iter([0.5, 0.9, 0.7])  # the second evaluation is the best

    def snapshot(m):
        return {k: v.detach().clone() for k, v in m.state_dict().items()}

    def loss_fn(m, batch):
        after_steps.append(snapshot(m))  # the weights after the previous step
        return m(**{k: v for k, v in batch.items() if k != "index"}).loss

    def evaluate(m):
        seen.append(snapshot(m))
        return {"accuracy": next(scores)}

    loader = make_loader(encode(train, tok, task, 32), tok, task, cfg.batch_size, shuffle=True, seed=3)
    fit(model, loader, loss_fn, evaluate, cfg, make_accelerator(cfg), "accuracy", checkpoint_dir=tmp_path / "ck")
    key = "classifier.weight"
    trajectory = [s[key] for s in after_steps[1:]]  # weights after steps 1, 2, …
    want, averages = after_steps[0][key].clone(), []
    for t, w in enumerate(trajectory, start=1):
        d = min(0.8, (1 + t) / (10 + t))
        want = d * want + (1 - d) * w
        averages.append(want.clone())
    assert torch.allclose(seen[0][key], averages[3], atol=1e-6)  # epoch 1: 4 steps
    assert torch.allclose(seen[1][key], averages[7], atol=1e-6)  # epoch 2: 8 steps
    assert torch.allclose(model.state_dict()[key], seen[1][key])  # the best evaluation's average is kept
    assert not torch.allclose(seen[1][key], trajectory[7], atol=1e-4)  # … which is not the raw weights


def _tiny_fit_setup(n: int = 40, batch_size: int = 8):
    from conftest import build_tokenizer, sentiment_examples
    from transformers import BertConfig, BertForSequenceClassification

    from kdexam.data.encode import encode, make_loader
    from kdexam.data.readers import Example
    from kdexam.tasks import Task

    torch.manual_seed(0)
    tok, task = build_tokenizer(), Task("classification", ["neg", "pos"])
    train = [Example(r["text"], None, r["label"]) for r in sentiment_examples(n, seed=1)]
    model = BertForSequenceClassification(BertConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                                     intermediate_size=16, max_position_embeddings=32, num_labels=2))
    return model, make_loader(encode(train, tok, task, 32), tok, task, batch_size, shuffle=True, seed=3)


def test_accumulation_windows_stay_in_their_epoch_and_finish_the_schedule(tmp_path):
    """5 batches an epoch in windows of 2: steps after batches 2, 4 and 5 of every epoch, each on the
    mean loss of its window, and the linear schedule reaches 0 at the last step."""
    from kdexam.config import TrainConfig
    from kdexam.training.trainer import fit, make_accelerator

    model, loader = _tiny_fit_setup()
    assert len(loader) == 5
    cfg = TrainConfig(epochs=2, batch_size=8, learning_rate=1e-2, warmup_ratio=0.0, gradient_accumulation_steps=2,
                      patience=5, checkpoint_every=0)
    weights, lrs = [], []

    def loss_fn(m, batch):
        weights.append(m.classifier.weight.detach().clone())
        return m(**{k: v for k, v in batch.items() if k != "index"}).loss

    accelerator = make_accelerator(cfg)
    original = torch.optim.AdamW.step

    def step(self, *a, **k):
        lrs.append(self.param_groups[0]["lr"])
        return original(self, *a, **k)

    torch.optim.AdamW.step = step
    try:
        fit(model, loader, loss_fn, lambda m: {"accuracy": 0.5}, cfg, accelerator, "accuracy", checkpoint_dir=tmp_path / "ck")
    finally:
        torch.optim.AdamW.step = original
    moved = [not torch.equal(a, b) for a, b in zip(weights, weights[1:])]  # did the weights change before batch i+2?
    assert moved == [False, True, False, True, True, False, True, False, True]  # steps after batches 2, 4, 5, 7, 9
    assert len(lrs) == 6 and lrs[-1] == pytest.approx(1e-2 / 6)  # six windows; the last step's lr is the schedule's last


def test_a_non_finite_validation_score_is_never_the_best(tmp_path):
    from kdexam.config import TrainConfig
    from kdexam.training.trainer import fit, make_accelerator

    model, loader = _tiny_fit_setup(16)
    cfg = TrainConfig(epochs=4, batch_size=8, learning_rate=1e-2, patience=2, checkpoint_every=0)
    scores = iter([float("nan"), 0.5, 0.3, 0.4])

    def loss_fn(m, batch):
        return m(**{k: v for k, v in batch.items() if k != "index"}).loss

    summary = fit(model, loader, loss_fn, lambda m: {"mse": next(scores)}, cfg, make_accelerator(cfg), "mse",
                  greater_is_better=False, checkpoint_dir=tmp_path / "ck")
    assert summary["best_validation"] == pytest.approx(0.3) and summary["best_at"]["epoch"] == 3


def test_unfreezing_more_groups_than_the_model_has_trains_them_all():
    from kdexam.training.stages import apply_unfreeze, layer_groups

    model, _ = _tiny_fit_setup(8)
    total = sum(p.numel() for p in model.parameters())
    n = len(layer_groups(model))
    assert apply_unfreeze(model, n + 1) == apply_unfreeze(model, "all") == total
    assert apply_unfreeze(model, 1) < total
