"""Model presets (HF ``EsmForMaskedLM``; ESM-C in ``esmc``), loading, describe, convert.

The two entry points for Python callers::

    model = load_model("reference/")             # a bioprune/HF model directory, eval mode
    model = new_model("tiny", "rna", seed=0)     # a preset, randomly initialised

Both import torch and transformers only when called, so ``import bioprune.models``
stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["load_model", "new_model"]


def load_model(path: str | Path, *, device: Any = None, dtype: Any = None):
    """The masked LM of a model directory, in eval mode, loaded strictly.

    Every tensor must come from the weights file and the vocabulary must match
    the directory's ``bioprune_alphabet.json``; otherwise
    :class:`~bioprune.errors.InputError` names the file and the reason (see
    :func:`bioprune.models.loading.load_masked_lm`, which also returns the alphabet).
    """
    from bioprune.models.loading import load_masked_lm

    model, _ = load_masked_lm(path, device=device, dtype=dtype)
    return model


def new_model(preset: str, alphabet: Any = "rna", seed: int = 0, *, dropout: float = 0.0):
    """A randomly initialised preset model (``tiny``, ``small``, ``esm2-8m``...).

    ``alphabet`` is a name (``"rna"``, ``"protein"``) or an
    :class:`~bioprune.data.alphabet.Alphabet` (``corpus.alphabet``).
    The weights depend only on ``(preset, alphabet, seed, dropout)``; the
    caller's torch random state is left unchanged.
    """
    from bioprune.models.presets import new_model as build

    return build(preset, alphabet, seed, dropout=dropout)
