"""Data-parallel plumbing: one process per device under ``torchrun``.

``torchrun --nproc-per-node N bioprune pretrain ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; without them the run is a single process and no
process group is created. The backend is NCCL on CUDA and gloo on CPU.

Gradients are summed across ranks with one all-reduce of a flat buffer per
optimizer step (see :func:`all_reduce_gradients`) instead of wrapping the model
in ``DistributedDataParallel``: the loss is normalised by the masked-token
count of the whole *global* batch, so the summed gradient equals the
single-process gradient exactly (up to summation order), and a rank whose
share of the last, short batch of an epoch is empty simply contributes zeros —
DDP's wrapper would hang waiting for its backward.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["DistEnv", "all_reduce_gradients", "all_reduce_sum", "setup_distributed"]


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run."""

    rank: int
    world_size: int
    local_rank: int
    device: object  # torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(device: str, local_rank: int = 0):
    """``auto`` -> CUDA when available, else CPU; ``cuda`` picks ``cuda:LOCAL_RANK``."""
    import torch

    if device not in {"auto", "cpu", "cuda"}:
        raise ValueError(f"--device must be auto, cpu or cuda (got {device!r})")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but torch sees no CUDA device")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def setup_distributed(device: str = "auto") -> DistEnv:
    """Join the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``)."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device, local)
    if world > 1 and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        # A finite timeout ($BIOPRUNE_DIST_TIMEOUT_S, default 30 min): a stuck
        # rendezvous or collective fails with an error instead of hanging.
        from bioprune.influence.distributed import process_group_timeout

        dist.init_process_group(
            "nccl" if dev.type == "cuda" else "gloo", timeout=process_group_timeout()
        )
    return DistEnv(rank=rank, world_size=world, local_rank=local, device=dev)


def teardown_distributed() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_gradients(params, extra, env: DistEnv):
    """Sum every parameter's gradient and the scalars ``extra`` across ranks, in place.

    Parameters without a gradient (not reached by this rank's micro-batches)
    get a zero gradient first, so every rank reduces the same buffer layout.

    Returns
    -------
    the summed ``extra`` values (a float64 tensor on CPU).
    """
    import torch

    params = list(params)
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    extra_t = torch.tensor(extra, dtype=torch.float64)
    if not env.distributed:
        return extra_t
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in params]
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    for g, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        g.copy_(reduced)
    # float64 scalars go separately: the gradient buffer may be float32.
    extra_dev = extra_t.to(env.device)
    dist.all_reduce(extra_dev)
    return extra_dev.cpu()


def all_reduce_sum(values, env: DistEnv):
    """Sum a list of floats across ranks (float64); identity for one process."""
    import torch

    t = torch.tensor(values, dtype=torch.float64)
    if not env.distributed:
        return t
    import torch.distributed as dist

    t = t.to(env.device)
    dist.all_reduce(t)
    return t.cpu()


def broadcast_parameters(model, env: DistEnv) -> None:
    """Make every rank start from rank 0's weights."""
    if not env.distributed:
        return
    import torch.distributed as dist

    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        import torch.distributed as dist

        dist.barrier()
