"""bioprune.runtime: device and dtype resolution, and process-group ownership."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from bioprune import runtime
from bioprune.runtime import autocast_dtype, process_group, resolve_device, start_process


@pytest.fixture
def two_gpus(monkeypatch):
    """Pretend this machine has two CUDA devices (resolution only; nothing runs on them)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


@pytest.fixture
def alone(monkeypatch):
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)


@pytest.mark.parametrize(
    ("name", "local_rank", "want"),
    [
        ("auto", None, "cuda:0"),
        ("cuda", None, "cuda:0"),
        ("cuda:1", None, "cuda:1"),
        ("cpu", None, "cpu"),
        ("cuda", 3, "cuda:1"),  # rank 3 of a launch: its own device, modulo the count
        ("cuda:0", 1, "cuda:1"),  # under torchrun every rank takes cuda:LOCAL_RANK
    ],
)
def test_device_rules_with_gpus(two_gpus, name, local_rank, want):
    assert resolve_device(name, local_rank=local_rank) == torch.device(want)


def test_device_rules_without_gpu(no_gpu):
    assert resolve_device("auto") == torch.device("cpu")
    for name in ("cuda", "cuda:1"):
        with pytest.raises(ValueError, match=f"--device {name}: no CUDA device"):
            resolve_device(name)
    with pytest.raises(ValueError, match="--device mps"):
        resolve_device("mps")


def test_unknown_and_missing_devices_are_refused(two_gpus):
    with pytest.raises(ValueError, match="has 2 CUDA device"):
        resolve_device("cuda:2")
    for bad in ("gpu", "cuda:x", "cuda1", ""):
        with pytest.raises(ValueError, match="choose auto, cpu, cuda, cuda:N or mps"):
            resolve_device(bad)


def test_training_and_influence_resolve_cuda_n_alike(two_gpus, alone):
    """``--device cuda:1`` in a single process: cuda:1 for every stage (training included)."""
    proc = start_process("cuda:1")
    assert proc.device == torch.device("cuda", 1)
    assert not proc.active and proc.is_main and proc.world == 1


def test_autocast_dtype():
    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    assert autocast_dtype("float32", gpu) is None
    assert autocast_dtype("bfloat16", cpu) is torch.bfloat16
    assert autocast_dtype("auto", cpu) is None
    assert autocast_dtype("auto", gpu) is torch.bfloat16
    with pytest.raises(ValueError, match="--dtype 'float16'"):
        autocast_dtype("float16", cpu)


def test_cpu_threads_only_on_cpu():
    assert runtime.cpu_threads(torch.device("cpu")) == torch.get_num_threads()
    assert runtime.cpu_threads(torch.device("cuda", 0)) is None


def _launch(monkeypatch):
    """Environment of rank 0 of a two-process torchrun."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")


def test_a_callers_process_group_is_left_alone(tmp_path, monkeypatch):
    _launch(monkeypatch)
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        with process_group("cpu") as proc:
            assert proc.active and not proc.owned
            assert proc.world == 1  # the group's size, not the environment's
            assert proc.sum_int(3) == 3
        assert dist.is_initialized()  # still the caller's
    finally:
        dist.destroy_process_group()


def test_a_process_group_the_run_created_is_destroyed(tmp_path, monkeypatch):
    _launch(monkeypatch)
    real = dist.init_process_group
    calls = []

    def one_process_group(backend, **kwargs):  # a world of one instead of waiting for rank 1
        calls.append((backend, kwargs["timeout"]))
        real(backend, init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)

    monkeypatch.setattr(dist, "init_process_group", one_process_group)
    with process_group("cpu") as proc:
        assert proc.active and proc.owned and dist.is_initialized()
    assert not dist.is_initialized()
    assert calls == [("gloo", runtime.process_group_timeout())]
    proc.close()  # closing twice is harmless
