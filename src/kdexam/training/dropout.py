"""Dropout with a faster mask on CPU.

Dropout (Srivastava et al., 2014) keeps each element with probability 1 − p and scales the kept
ones by 1 / (1 − p): ``y = x · m / (1 − p)``, ``m ~ Bernoulli(1 − p)``. torch draws ``m`` on CPU
with ``bernoulli_`` at about 10 ns an element; on one thread that was 10 % of a bert-mini training
step (14 dropout calls a step; torch profiler, ``bench/train_throughput.py --profile bert-mini``).

:class:`FastDropout` draws the same mask from 16-bit uniform integers ``u`` taken from NumPy's
SFC64 generator (four per 64-bit draw): ``m = [u ≥ round(p · 2¹⁶)]``, so the dropout rate is p
rounded to 1/65,536 (0.1 → 0.100006) and the scale is ``2¹⁶ / (2¹⁶ − round(p · 2¹⁶))``. Each call
seeds the generator with one draw from torch's default generator, so a run is reproducible under
``torch.manual_seed`` and a resumed run (whose checkpoint holds torch's RNG state) draws the masks
an uninterrupted one draws. On other devices, in eval mode, and while torch traces or compiles the
model, it is torch's own dropout.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

LEVELS = 1 << 16  # the mask's resolution: 16-bit uniform integers


def dropout_mask(shape: torch.Size, p: float, dtype: torch.dtype) -> torch.Tensor:
    """``m / (1 − p)`` for a mask ``m`` of the given ``shape`` that keeps each element with
    probability ``1 − round(p · 2¹⁶) / 2¹⁶``, drawn as the module docstring says."""
    cut = round(p * LEVELS)
    n = int(np.prod(shape))
    seed = int(torch.randint(0, 2**62, ()).item())
    raw = np.random.SFC64(seed).random_raw((n + 3) // 4)
    bits = raw.view(np.uint16)[:n].reshape(tuple(shape))
    scaled = (bits >= cut) * np.float32(LEVELS / (LEVELS - cut))
    return torch.from_numpy(scaled).to(dtype)


class FastDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training mask is :func:`dropout_mask` (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (not self.training or x.device.type != "cpu" or not 0 < round(self.p * LEVELS) < LEVELS
                or torch.jit.is_tracing() or torch.compiler.is_compiling()):
            return super().forward(x)
        return x * dropout_mask(x.shape, self.p, x.dtype)


def use_fast_dropout(model: nn.Module) -> int:
    """Swap every plain ``nn.Dropout`` in ``model`` for a :class:`FastDropout` of the same rate; return
    how many were swapped. Attention-probability dropout inside a fused attention kernel (which reads
    the module's ``p`` only) is left to the kernel."""
    plain = [(parent, name, child.p) for parent in model.modules() for name, child in parent.named_children()
             if type(child) is nn.Dropout]
    for parent, name, p in plain:
        setattr(parent, name, FastDropout(p))
    return len(plain)
