"""Tables with sparse gradients (the static student's bigram table): clipping, the lazy SparseAdam
beside AdamW as one optimizer, and its checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdexam.config import TrainConfig
from kdexam.training.checkpoint import load_checkpoint, save_checkpoint
from kdexam.training.sparse import Optimizers, clip_grad_norm
from kdexam.training.trainer import make_optimizer


class Bag(nn.Module):
    """A sparse table (at a tenth of the learning rate, as the bigram table) beside dense layers."""

    def __init__(self):
        super().__init__()
        self.table = nn.Embedding(50, 4, sparse=True)
        self.table.lr_scale = 0.1
        self.dense = nn.Embedding(50, 4)
        self.head = nn.Linear(4, 2)

    def forward(self, ids):
        return self.head(self.table(ids).mean(1) + self.dense(ids).mean(1))


def _loss(model, seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (8, 5), generator=g)
    return nn.functional.cross_entropy(model(ids), torch.randint(0, 2, (8,), generator=g))


def test_clipping_sparse_and_dense_gradients_matches_torch_on_their_dense_form():
    """A row used twice in the batch appears twice in the uncoalesced sparse gradient; its norm is that
    of the summed row, as torch's clipping computes it on the dense gradient."""
    torch.manual_seed(0)
    model = Bag()
    twin = Bag()
    twin.load_state_dict(model.state_dict())
    twin.table.sparse = False
    _loss(model, 1).backward()
    _loss(twin, 1).backward()
    assert model.table.weight.grad.is_sparse and not model.table.weight.grad.is_coalesced()
    expected = torch.nn.utils.clip_grad_norm_(twin.parameters(), 0.05)
    total = clip_grad_norm(model.parameters(), 0.05)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6) and total.item() > 0.05  # (it did clip)
    for (name, p), q in zip(model.named_parameters(), twin.parameters()):
        got = p.grad.to_dense() if p.grad.is_sparse else p.grad
        assert torch.allclose(got, q.grad, atol=1e-7), name


def test_a_sparse_table_is_stepped_lazily_by_sparse_adam_at_its_scale():
    model = Bag()
    optimizer, scheduler = make_optimizer(model, TrainConfig(learning_rate=1e-2, warmup_ratio=0.0, weight_decay=0.0), 10)
    assert isinstance(optimizer, Optimizers)
    assert [type(o).__name__ for o in optimizer.optimizers] == ["AdamW", "SparseAdam"]
    assert [g["lr"] for g in optimizer.param_groups] == [1e-2, 1e-2, pytest.approx(1e-3)]
    assert optimizer.param_groups[2]["params"] == [model.table.weight]
    before = model.table.weight.detach().clone()
    ids = torch.tensor([[3, 7]])
    model(ids).sum().backward()
    optimizer.step()
    moved = (model.table.weight - before).abs().amax(1)
    assert moved[[3, 7]].tolist() == pytest.approx([1e-3, 1e-3], rel=1e-3)  # Adam's first step: lr · sign(g)
    assert moved[[0, 1, 2, 4, 5, 6, 8]].eq(0).all()  # rows the batch did not use stay where they are
    scheduler.step()
    assert [g["lr"] for g in optimizer.optimizers[1].param_groups] == [pytest.approx(1e-3 * 9 / 10)]  # one schedule for all


def test_a_checkpoint_of_both_optimizers_resumes_to_the_same_weights(tmp_path):
    config = TrainConfig(learning_rate=1e-2, warmup_ratio=0.2)
    torch.manual_seed(0)
    start = Bag().state_dict()

    def trained(steps, model, optimizer, scheduler):
        for s in steps:
            optimizer.zero_grad()
            _loss(model, s).backward()
            clip_grad_norm(model.parameters(), 1.0)
            optimizer.step()
            scheduler.step()

    model = Bag()
    model.load_state_dict(start)
    optimizer, scheduler = make_optimizer(model, config, 10)
    trained(range(4), model, optimizer, scheduler)
    save_checkpoint(tmp_path / "ckpt", model, optimizer, scheduler, {"step": 4}, None)
    trained(range(4, 8), model, optimizer, scheduler)

    resumed = Bag()
    resumed.load_state_dict(start)
    optimizer2, scheduler2 = make_optimizer(resumed, config, 10)
    position, _, _ = load_checkpoint(tmp_path / "ckpt", resumed, optimizer2, scheduler2)
    assert position == {"step": 4}
    assert optimizer2.optimizers[1].state[resumed.table.weight]["exp_avg"].shape == (50, 4)
    trained(range(4, 8), resumed, optimizer2, scheduler2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


def test_the_schedule_reaches_both_optimizers_once_accelerate_has_them():
    """Accelerate reloads an optimizer's state when it wraps it, which replaces its group dicts: the
    scheduler must set the learning rate of the groups the optimizers step with."""
    from kdexam.training.trainer import make_accelerator

    config = TrainConfig(learning_rate=1e-2, warmup_ratio=0.5)
    model = Bag()
    optimizer, scheduler = make_optimizer(model, config, 4)
    model, optimizer, scheduler = make_accelerator(config).prepare(model, optimizer, scheduler)
    _loss(model, 0).backward()
    optimizer.step()
    scheduler.step()
    adamw, sparse_adam = optimizer.optimizer.optimizers
    assert [g["lr"] for g in adamw.param_groups] == [pytest.approx(5e-3)] * 2  # warmup: half way after 1 of 2 steps
    assert [g["lr"] for g in sparse_adam.param_groups] == [pytest.approx(5e-4)]
