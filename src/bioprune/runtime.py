"""Processes and devices: one place for rank, world, device, dtype and thread count.

Influence (``fisher``, ``score``) and training (``pretrain``, ``adapt``) both run
as one process or as one rank of a ``torchrun`` launch. ``torchrun`` sets
``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK``; :func:`start_process` reads them,
resolves the device (each rank of a multi-process CUDA run takes
``cuda:LOCAL_RANK``) and joins the process group (NCCL on CUDA, gloo otherwise).

Ownership: a process group that already exists when a run starts belongs to
the caller (a script or pipeline running several stages in one launch); the
run uses it and leaves it up. Only a group the run created is destroyed by
:meth:`Process.close` (or on leaving :func:`process_group`).

Every process group is created with a finite timeout
(:func:`process_group_timeout`: ``BIOPRUNE_DIST_TIMEOUT_S`` seconds, default
30 minutes), so a rank that never arrives at the rendezvous or at a collective
makes the others fail with an error instead of hanging forever.

Work split: parts (groups of consecutive length-sorted batches) go round-robin,
part ``j`` to rank ``j % world`` (:meth:`Process.owns`), so the split depends on
nothing but the plan and the world size.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "DIST_TIMEOUT_ENV",
    "DTYPES",
    "Process",
    "all_reduce_gradients",
    "all_reduce_sum",
    "autocast_dtype",
    "broadcast_parameters",
    "cpu_threads",
    "exclusive_lock",
    "launch_env",
    "process_group",
    "process_group_timeout",
    "resolve_device",
    "start_process",
]

#: Environment variable: seconds a process group waits for a rendezvous or collective.
DIST_TIMEOUT_ENV = "BIOPRUNE_DIST_TIMEOUT_S"
#: Default of :data:`DIST_TIMEOUT_ENV`: long enough for a slow rank's batch on a real run.
DEFAULT_DIST_TIMEOUT_S = 30 * 60
#: Names accepted by :func:`autocast_dtype`.
DTYPES = ("auto", "float32", "bfloat16")
_CUDA_INDEX = re.compile(r"cuda:(\d+)")


def launch_env() -> tuple[int, int, int]:
    """``(rank, world, local_rank)`` from torchrun's variables (``(0, 1, 0)`` alone)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


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


def resolve_device(device: str, local_rank: int | None = None):
    """The ``torch.device`` a run computes on.

    ``auto``: CUDA when available, else CPU. ``cpu``. ``cuda``: ``cuda:0``, or
    ``cuda:LOCAL_RANK`` (modulo the device count) when ``local_rank`` is given.
    ``cuda:N``: that device (under a multi-process launch, pass ``local_rank``:
    each rank then takes its own). ``mps``: Apple's GPU.

    Raises
    ------
    ValueError : an unknown name, or a device this machine does not have
        (the message names ``--device``).

    >>> resolve_device("cpu")
    device(type='cpu')
    """
    import torch

    name = str(device)
    indexed = _CUDA_INDEX.fullmatch(name)
    if name not in ("auto", "cpu", "cuda", "mps") and indexed is None:
        raise ValueError(f"--device {name!r}: choose auto, cpu, cuda, cuda:N or mps")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        if not torch.backends.mps.is_available():
            raise ValueError("--device mps: torch sees no MPS device here; use --device cpu")
        return torch.device("mps")
    if not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
    count = torch.cuda.device_count()
    if local_rank is not None:
        return torch.device("cuda", local_rank % count)
    index = int(indexed.group(1)) if indexed else 0
    if index >= count:
        raise ValueError(f"--device {name}: this machine has {count} CUDA device(s)")
    return torch.device("cuda", index)


def autocast_dtype(dtype: str, device):
    """The autocast dtype of ``--dtype``: ``None`` (plain float32) or ``torch.bfloat16``.

    ``auto`` is bfloat16 on CUDA and float32 elsewhere. Statistics (losses,
    Fisher sums, scores) accumulate in float32/float64 either way.

    >>> import torch
    >>> autocast_dtype("auto", torch.device("cpu")) is None, autocast_dtype("bfloat16", None)
    (True, torch.bfloat16)
    """
    import torch

    if dtype not in DTYPES:
        raise ValueError(f"--dtype {dtype!r}: choose {', '.join(DTYPES)}")
    if dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def cpu_threads(device) -> int | None:
    """``torch.get_num_threads()`` when computing on CPU, else None (recorded, compared on resume).

    PyTorch's CPU kernels round differently with the thread count for some shapes
    (measured on torch 2.13: the flash-attention kernel of
    ``scaled_dot_product_attention`` and softmax's backward, both used by HF's ESM
    layers and the gathered last layer), so scores change by ~1e-7 relative and
    Fisher sums by as much between thread counts. Each file records the count it
    was made with, and ``--resume`` refuses another, so that a resumed run still
    ends with the file of an uninterrupted one.
    """
    import torch

    return int(torch.get_num_threads()) if device.type == "cpu" else None


def exclusive_lock(path, busy):
    """Hold an exclusive, non-blocking ``flock`` on ``path`` (created if missing).

    Returns the open file: the lock lasts until it is closed or the process ends.
    The file holds the holder's pid; when another process holds the lock, raises
    ``FileExistsError(busy(pid_text))``.
    """
    import fcntl

    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise FileExistsError(busy(holder)) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


@dataclass
class Process:
    """This process's place in a run: rank, world size, device and its process group."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: object = None  # torch.device
    active: bool = False  # a process group is up
    owned: bool = False  # this run created the process group (and destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def world_size(self) -> int:
        return self.world

    @property
    def distributed(self) -> bool:
        return self.active

    def owns(self, part: int) -> bool:
        """Whether part ``part`` is this rank's (round-robin over the ranks).

        >>> [j for j in range(6) if Process(rank=1, world=2).owns(j)]
        [1, 3, 5]
        """
        return part % self.world == self.rank

    def all_reduce_sum_(self, tensor):
        """In-place sum over ranks (no-op alone)."""
        if self.active:
            import torch.distributed as dist

            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    def sum_int(self, value: int) -> int:
        """An integer summed over ranks."""
        import torch

        t = torch.tensor([int(value)], dtype=torch.float64, device=self.device)
        return int(self.all_reduce_sum_(t).item())

    def gather_lists(self, values: list) -> list:
        """Every rank's list, concatenated in rank order (this list alone)."""
        if not self.active:
            return list(values)
        import torch.distributed as dist

        gathered: list = [None] * self.world
        dist.all_gather_object(gathered, list(values))
        return [v for part in gathered for v in part]

    def barrier(self) -> None:
        if self.active:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this run created it; a caller's group stays up."""
        if self.active and self.owned:
            import torch.distributed as dist

            dist.destroy_process_group()
        self.active = False
        self.owned = False


def start_process(device: str = "auto") -> Process:
    """Resolve the device and, under a multi-process ``torchrun``, join the process group.

    Uses a group that already exists (it stays the caller's); creates one
    otherwise (then :meth:`Process.close` destroys it). Prefer
    :func:`process_group`, which closes for you.
    """
    rank, world, local = launch_env()
    if world <= 1:
        return Process(device=resolve_device(device))
    import torch
    import torch.distributed as dist

    dev = resolve_device(device, local_rank=local if str(device) != "cpu" else None)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if dist.is_initialized():
        rank, world = dist.get_rank(), dist.get_world_size()
        return Process(rank=rank, world=world, local_rank=local, device=dev, active=True)
    timeout = process_group_timeout()
    if dev.type == "cuda":
        dist.init_process_group("nccl", device_id=dev, timeout=timeout)
    else:
        dist.init_process_group("gloo", timeout=timeout)
    return Process(rank=rank, world=world, local_rank=local, device=dev, active=True, owned=True)


@contextlib.contextmanager
def process_group(device: str = "auto") -> Iterator[Process]:
    """:func:`start_process` for a ``with`` block; leaves only a group it created."""
    proc = start_process(device)
    try:
        yield proc
    finally:
        proc.close()


def all_reduce_gradients(params, extra, env: Process):
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
    return all_reduce_sum(extra, env)


def all_reduce_sum(values, env: Process):
    """Sum a list of floats across ranks (float64, on CPU); identity for one process."""
    import torch

    t = torch.tensor(values, dtype=torch.float64)
    if not env.distributed:
        return t
    return env.all_reduce_sum_(t.to(env.device)).cpu()


def broadcast_parameters(model, env: Process) -> None:
    """Make every rank start from rank 0's weights."""
    if not env.distributed:
        return
    import torch.distributed as dist

    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)
