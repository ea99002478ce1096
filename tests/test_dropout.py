"""FastDropout: torch's dropout (rate, scale, gradient, eval identity) with a faster CPU mask."""

import torch
from torch import nn

from kdexam.training.dropout import LEVELS, FastDropout, use_fast_dropout


def test_keeps_one_minus_p_of_the_elements_and_scales_them_to_keep_the_mean():
    torch.manual_seed(0)
    y = FastDropout(0.1).train()(torch.ones(1000, 1000))
    kept = y != 0
    cut = round(0.1 * LEVELS)
    assert abs(kept.float().mean().item() - 0.9) < 0.0015  # 5 standard errors at n = 1e6
    assert torch.equal(y[kept], torch.full_like(y[kept], LEVELS / (LEVELS - cut)))
    assert abs(y.mean().item() - 1.0) < 0.002


def test_the_mask_follows_torchs_seed():
    x = torch.randn(64, 40, 256)
    drop = FastDropout(0.3).train()
    torch.manual_seed(7)
    a = drop(x)
    torch.manual_seed(7)
    b = drop(x)
    c = drop(x)
    assert torch.equal(a, b)
    assert not torch.equal(b, c)


def test_the_gradient_is_the_same_mask():
    x = torch.ones(50, 30, requires_grad=True)
    y = FastDropout(0.5).train()(x)
    (y * 3).sum().backward()
    assert torch.equal(x.grad, 3 * y.detach())


def test_eval_mode_and_rate_zero_pass_the_input_through():
    x = torch.randn(8, 16)
    assert torch.equal(FastDropout(0.4).eval()(x), x)
    assert torch.equal(FastDropout(0.0).train()(x), x)
    assert torch.equal(FastDropout(1.0).train()(x), torch.zeros_like(x))


def test_keeps_the_dtype_under_bf16():
    y = FastDropout(0.2).train()(torch.ones(4, 8, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16


def test_use_fast_dropout_swaps_plain_dropouts_only_and_keeps_their_rates():
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.25), nn.Sequential(nn.Dropout(0.1), nn.Dropout2d(0.5)))
    assert use_fast_dropout(model) == 2
    assert type(model[1]) is FastDropout and model[1].p == 0.25
    assert type(model[2][0]) is FastDropout and model[2][0].p == 0.1
    assert type(model[2][1]) is nn.Dropout2d
    assert use_fast_dropout(model) == 0  # already swapped
