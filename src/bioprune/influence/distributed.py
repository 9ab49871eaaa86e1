"""Sharing a run across processes started by ``torchrun`` (or one process alone).

``torchrun --nproc-per-node N bioprune fisher|score ...`` sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; the process group uses gloo on CPU and NCCL on
GPU. Work is split by *parts* (groups of consecutive length-sorted batches):
part ``j`` belongs to rank ``j % world``, so the split depends on nothing but
the plan and the world size.

Every process group is created with a finite timeout
(:func:`process_group_timeout`: ``BIOPRUNE_DIST_TIMEOUT_S`` seconds, default
30 minutes), so a rank that never arrives at the rendezvous or at a collective
makes the others fail with an error instead of hanging forever.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch

__all__ = ["DIST_TIMEOUT_ENV", "Distributed", "init_distributed", "process_group_timeout"]

#: Environment variable: seconds a process group waits for a rendezvous or collective.
DIST_TIMEOUT_ENV = "BIOPRUNE_DIST_TIMEOUT_S"
#: Default of :data:`DIST_TIMEOUT_ENV`: long enough for a slow rank's batch on a real run.
DEFAULT_DIST_TIMEOUT_S = 30 * 60


def process_group_timeout() -> datetime.timedelta:
    """The ``timeout=`` of ``init_process_group``: ``$BIOPRUNE_DIST_TIMEOUT_S`` seconds.

    Raises
    ------
    ValueError : the variable is set but is not a positive number of seconds.
    """
    text = os.environ.get(DIST_TIMEOUT_ENV, "").strip()
    if not text:
        return datetime.timedelta(seconds=DEFAULT_DIST_TIMEOUT_S)
    try:
        seconds = float(text)
    except ValueError:
        seconds = float("nan")
    if not seconds > 0 or seconds == float("inf"):
        raise ValueError(f"{DIST_TIMEOUT_ENV}={text!r}: expected a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


@dataclass
class Distributed:
    """Rank, world size and whether a process group is up."""

    rank: int = 0
    world: int = 1
    active: bool = False
    owned: bool = False  # this module created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def owns(self, part: int) -> bool:
        """Whether part ``part`` is this rank's."""
        return part % self.world == self.rank

    def all_reduce_sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """In-place sum over ranks (no-op alone)."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_int(self, value: int, device: torch.device) -> int:
        t = torch.tensor([int(value)], dtype=torch.float64, device=device)
        return int(self.all_reduce_sum_(t).item())

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        if self.active and self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()
            self.active = False


def init_distributed(device: torch.device) -> tuple[Distributed, torch.device]:
    """Join the process group when launched by torchrun; returns the context and device.

    On CUDA each rank uses ``cuda:LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Distributed(), device
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
        backend = "nccl"
    else:
        backend = "gloo"
    if dist.is_initialized():
        # A caller (a pipeline running several stages) owns the group: use it, keep it.
        return Distributed(rank=dist.get_rank(), world=dist.get_world_size(), active=True), device
    timeout = process_group_timeout()
    if device.type == "cuda":
        dist.init_process_group(backend, device_id=device, timeout=timeout)
    else:
        dist.init_process_group(backend, timeout=timeout)
    return Distributed(rank=rank, world=world, active=True, owned=True), device
