"""Full training checkpoints: model, best-so-far weights, optimizer, scheduler, RNG
states and position — everything needed for a resumed run to equal an
uninterrupted one. Tensors go to safetensors, the rest to JSON (no pickle).

A checkpoint is written to ``<dir>.new`` and swapped in by renames, so a kill at
any moment leaves either the old or the new checkpoint whole.

A finished stage of a multi-stage run leaves a *stage record* (:func:`save_stage`): the
weights it ended with, its summary and the RNG states at its end, so that a resumed run
skips it and the next stage starts exactly as it did in the uninterrupted run.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from kdexam.paths import atomic_write_json


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "state": {}}
    for pid, entries in state["state"].items():
        meta["state"][str(pid)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{pid}.{name}"] = value.detach().cpu().contiguous()
                meta["state"][str(pid)][name] = "tensor"
            else:
                meta["state"][str(pid)][name] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state = {}
    for pid, entries in meta["state"].items():
        state[int(pid)] = {n: tensors[f"{pid}.{n}"] if v == "tensor" else v for n, v in entries.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def _state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    # clone breaks shared storage (tied weights), which safetensors refuses to save twice
    return {k: v.detach().cpu().clone().contiguous() for k, v in model.state_dict().items()}


def save_checkpoint(directory: Path, model, optimizer, scheduler, position: dict, best_state: dict | None,
                    average: dict | None = None, scaler=None) -> None:
    """Write a whole checkpoint; ``average``: the weight average of ``train.ema_decay``, when on;
    ``scaler``: fp16 training's loss scaler (its scale and growth counter, plain numbers), when on."""
    directory = Path(directory)
    new, old = directory.with_name(directory.name + ".new"), directory.with_name(directory.name + ".old")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    save_file(_state_dict(model), new / "model.safetensors")
    if best_state is not None:
        save_file({k: v.contiguous() for k, v in best_state.items()}, new / "best.safetensors")
    if average is not None:
        save_file({k: v.detach().cpu().contiguous() for k, v in average.items()}, new / "average.safetensors")
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    rng, rng_meta = _rng_state()
    save_file({**opt_tensors, **rng}, new / "optimizer.safetensors")
    scaling = {"scaler": scaler.state_dict()} if scaler is not None and scaler.is_enabled() else {}
    atomic_write_json(new / "state.json", {"position": position, "optimizer": opt_meta, "scheduler": scheduler.state_dict(),
                                           **scaling, **rng_meta})
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        directory.rename(old)
    new.rename(directory)
    shutil.rmtree(old, ignore_errors=True)


def find_checkpoint(directory: Path) -> Path | None:
    """The whole checkpoint at ``directory`` (or the previous one if a swap was interrupted)."""
    directory = Path(directory)
    for d in (directory, directory.with_name(directory.name + ".old")):
        if (d / "state.json").is_file():
            return d
    return None


def load_checkpoint(directory: Path, model, optimizer, scheduler, scaler=None) -> tuple[dict, dict | None, dict | None]:
    """Restore everything in place (``scaler`` too, when given and saved); returns (position,
    best_state, weight average or None)."""
    state = json.loads((directory / "state.json").read_text())
    model.load_state_dict(load_file(directory / "model.safetensors"))
    tensors = load_file(directory / "optimizer.safetensors")
    rng = {k: tensors.pop(k) for k in list(tensors) if k.startswith("__")}  # the RNG states saved beside the optimizer's
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"]))
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    _set_rng_state(rng, state)
    best = load_file(directory / "best.safetensors") if (directory / "best.safetensors").is_file() else None
    average = load_file(directory / "average.safetensors") if (directory / "average.safetensors").is_file() else None
    return state["position"], best, average


def _rng_state() -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {"__torch_rng__": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"__cuda_rng_{i}__"] = s
    np_state = np.random.get_state()
    return tensors, {"python_rng": [list(x) if isinstance(x, tuple) else x for x in random.getstate()],
                     "numpy_rng": [np_state[0], np_state[1].tolist(), *np_state[2:]]}


def _set_rng_state(tensors: dict[str, torch.Tensor], state: dict) -> None:
    torch.set_rng_state(tensors["__torch_rng__"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("__cuda_rng_"))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    py = state["python_rng"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy_rng"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), *n[2:]))


def save_stage(directory: Path, model: torch.nn.Module, summary: dict, log_bytes: int | None = None) -> None:
    """Record a finished stage (weights, summary, RNG states; ``log_bytes``, the run's log size at the
    stage's end, where the next stage's lines begin) in ``directory``, written whole or not at all."""
    directory = Path(directory)
    new = directory.with_name(directory.name + ".new")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir(parents=True)
    rng, rng_meta = _rng_state()
    save_file(_state_dict(model), new / "model.safetensors")
    save_file(rng, new / "rng.safetensors")
    atomic_write_json(new / "stage.json", {"summary": summary, "log_bytes": log_bytes, **rng_meta})
    shutil.rmtree(directory, ignore_errors=True)
    new.rename(directory)


def stage_log_bytes(directory: Path) -> int | None:
    """The run's log size when the stage recorded in ``directory`` finished (None: not recorded)."""
    try:
        value = json.loads((Path(directory) / "stage.json").read_text(encoding="utf-8")).get("log_bytes")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


def load_stage(directory: Path, model: torch.nn.Module) -> dict | None:
    """The summary of a finished stage recorded in ``directory``, with ``model`` and the RNG
    states restored to the stage's end; ``None`` when there is no whole record."""
    directory = Path(directory)
    if not (directory / "stage.json").is_file():
        return None
    state = json.loads((directory / "stage.json").read_text(encoding="utf-8"))
    model.load_state_dict(load_file(directory / "model.safetensors"))
    _set_rng_state(load_file(directory / "rng.safetensors"), state)
    return state["summary"]
