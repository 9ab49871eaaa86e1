"""Shared fixtures: tiny corpora and tiny models made in code (tests never download)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# torchrun tests: a stuck rendezvous or collective fails after 2 minutes, not hangs
# (child processes inherit it; see bioprune.runtime.process_group_timeout).
os.environ.setdefault("BIOPRUNE_DIST_TIMEOUT_S", "120")


def random_sequences(
    n: int, alphabet: str = "rna", *, seed: int = 0, min_len: int = 5, max_len: int = 60
) -> list[tuple[str, str, str]]:
    """``n`` random ``(id, description, sequence)`` records over the canonical residues."""
    from bioprune.data.alphabet import get_alphabet

    a = get_alphabet(alphabet)
    rng = np.random.default_rng(seed)
    letters = np.array(list(a.canonical))
    out = []
    for i in range(n):
        length = int(rng.integers(min_len, max_len + 1))
        out.append((f"seq{i}", f"random {alphabet} {i}", "".join(rng.choice(letters, length))))
    return out


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """A 48-sequence RNA corpus of mixed lengths (5..60 nt)."""
    from bioprune.data.corpus import write_corpus

    path = tmp_path_factory.mktemp("corpus") / "rna"
    return write_corpus(path, random_sequences(48, "rna"), "rna")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A randomly initialised ``tiny`` RNA model directory (seed 0)."""
    from bioprune.models.presets import init_model

    path = tmp_path_factory.mktemp("model") / "tiny"
    init_model("tiny", "rna", path, seed=0)
    return path


@pytest.fixture
def one_thread():
    """One torch thread for the test: the machine is shared (two threads on an
    oversubscribed CPU run several times slower than one), and reductions keep one
    order. Modules use it with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
