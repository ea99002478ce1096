"""Tables trained with sparse gradients: an embedding built with ``sparse=True`` (the static
student's hashed bigram table) gets a gradient holding only the rows a batch used, and is stepped
by ``torch.optim.SparseAdam``. That optimizer is *lazy* (Adam as in Kingma & Ba 2015, but a row's
moments and weights move only at the steps whose batch used that row, the "LazyAdam" of
TensorFlow Addons): a 65,536 × 256 table costs the ~800 rows of a batch instead of all 16.8M
numbers, at every step, in the backward pass, the clipping and the update.

:class:`Optimizers` steps AdamW (every dense parameter) and SparseAdam as one optimizer, so ``fit``,
its LR scheduler, Accelerate and the checkpoints see a single object; :func:`clip_grad_norm` clips
dense and sparse gradients together, by their joint norm, as ``torch.nn.utils.clip_grad_norm_``
does for dense ones (it refuses sparse gradients).
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer


class Optimizers(Optimizer):
    """Several optimizers stepped as one. ``param_groups`` is theirs, in order (the same dicts, so one
    LR scheduler drives all); ``state_dict`` is one optimizer's format, the parameter ids of each
    optimizer after the ones before it, so a checkpoint stores it as it stores AdamW's."""

    def __init__(self, *optimizers: Optimizer):  # (Optimizer.__init__ is not called: nothing of its own to hold)
        self.optimizers = list(optimizers)
        self.defaults = self.optimizers[0].defaults
        self._optimizer_step_pre_hooks, self._optimizer_step_post_hooks = {}, {}

    @property
    def param_groups(self) -> list[dict]:  # (read each time: loading a state dict replaces an optimizer's group dicts)
        return [g for o in self.optimizers for g in o.param_groups]

    @property
    def state(self):
        return {p: s for o in self.optimizers for p, s in o.state.items()}

    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for o in self.optimizers:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.optimizers:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        state, groups, offset = {}, [], 0
        for o in self.optimizers:
            d = o.state_dict()
            state.update({offset + i: s for i, s in d["state"].items()})
            groups += [{**g, "params": [offset + i for i in g["params"]]} for g in d["param_groups"]]
            offset += sum(len(g["params"]) for g in o.param_groups)
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        groups, offset = list(state_dict["param_groups"]), 0
        for o in self.optimizers:
            mine, groups = groups[: len(o.param_groups)], groups[len(o.param_groups):]
            n = sum(len(g["params"]) for g in o.param_groups)
            o.load_state_dict({"state": {int(i) - offset: s for i, s in state_dict["state"].items() if offset <= int(i) < offset + n},
                               "param_groups": [{**g, "params": [i - offset for i in g["params"]]} for g in mine]})
            offset += n

    def __repr__(self) -> str:
        return f"Optimizers({', '.join(type(o).__name__ for o in self.optimizers)})"


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale every gradient by ``min(1, max_norm / (‖g‖ + 1e-6))``, ``‖g‖`` the L2 norm of all of them
    together (dense and sparse; a sparse gradient is coalesced first, so a row used twice counts once,
    summed); return ``‖g‖``. The same scale as ``torch.nn.utils.clip_grad_norm_`` on dense gradients."""
    params = [p for p in parameters if p.grad is not None]
    for p in params:
        if p.grad.is_sparse:
            p.grad = p.grad.coalesce()
    norms = [torch.linalg.vector_norm(p.grad.values() if p.grad.is_sparse else p.grad) for p in params]
    if not norms:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(norms))
    scale = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for p in params:
        p.grad.mul_(scale)
    return total
