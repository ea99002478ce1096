"""Which of several data-parallel processes this is, its device, and the few collective steps kdexam takes.

Under ``torchrun`` / ``accelerate launch`` the trainer's Accelerator joins the process group
(gloo on CPUs, NCCL on GPUs; :func:`kdexam.training.trainer.make_accelerator`). Work that is the
same in every process is then split by rank instead of repeated:

- the teacher's pass that fills the cache (:meth:`kdexam.teachers.teacher.Teacher.outputs`):
  each process computes every ``world``-th example and writes its shard; the main process merges
  the shards into the entry every process then reads;
- validation (:func:`kdexam.training.distill.distill`): each process predicts every ``world``-th
  example, and the predictions are gathered so that every process scores the whole split and
  takes the same early-stopping decision.

Outside a launch (no process group) every function is the single-process identity.
"""

from __future__ import annotations

import os
from contextlib import nullcontext

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, number of processes)``; ``(0, 1)`` when no process group is running."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def process_device() -> torch.device:
    """Where this process runs models it does not train (the teacher's pass): its own GPU when
    there is one (``LOCAL_RANK`` under a launch, else the first), else the CPU — the device the
    trainer's Accelerator gives the student."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return torch.device("cpu")


def attention_kernels(device: torch.device):
    """A context in which scaled-dot-product attention on a GPU may use every kernel left on but
    cuDNN's (a no-op on a CPU). cuDNN's builds a graph for each new input shape, and kdexam's
    length-bucketed and length-sorted batches bring new shapes batch after batch: on an H200 (PyTorch 2.11) a bf16
    training step of bert-mini took 143 ms with PyTorch's own choice, 17 ms without cuDNN's kernel,
    and 17 ms with cuDNN's alone once its graph for the shape was built (bench/gpu_attention_ab.py)."""
    if device.type != "cuda":
        return nullcontext()
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # PyTorch before 2.3, which has no cuDNN attention either
        return nullcontext()
    enabled = {SDPBackend.FLASH_ATTENTION: torch.backends.cuda.flash_sdp_enabled(),  # the kernels left on
               SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.mem_efficient_sdp_enabled(),
               SDPBackend.MATH: torch.backends.cuda.math_sdp_enabled()}
    return sdpa_kernel([backend for backend, on in enabled.items() if on])


def barrier() -> None:
    """Wait until every process gets here (nothing to wait for in one process)."""
    if rank_and_world()[1] > 1:
        dist.barrier()


def my_share(n: int) -> list[int]:
    """This process's items of ``range(n)``: every ``world``-th from its rank (all of them alone)."""
    rank, world = rank_and_world()
    return list(range(rank, n, world))


def gather_items(items: dict[int, object], n: int) -> list:
    """Each process's ``{index: value}`` (its :func:`my_share` of ``n`` items) → the whole list of
    ``n`` values, in index order, in every process (``all_gather_object``; one process: itself)."""
    world = rank_and_world()[1]
    if world > 1:
        parts: list = [None] * world
        dist.all_gather_object(parts, items)
        items = {i: v for part in parts for i, v in part.items()}
    missing = [i for i in range(n) if i not in items]
    if missing:
        raise RuntimeError(f"gather_items: no process gave items {missing[:5]} of {n}")
    return [items[i] for i in range(n)]
