"""Post-hoc subset adaptation before scoring (paper Remark 1 and A.5, method.md section 6).

Exactly one epoch of MLM on a seeded random subset ``D_sub`` of ``M`` corpus
examples: AdamW lr 1e-5, weight decay 0.01, linear warmup over 50 steps, batch
16, every parameter trainable, seed 0. The paper names no decay after the
warmup; the default keeps the rate constant (``schedule="constant"``), and
``linear`` (HF ``Trainer``'s default decay to zero) or ``inverse-sqrt`` can be
chosen — the choice is recorded. The subset's corpus indices are saved as
``subset_indices.npy`` so that ``bioprune fisher --subset-from MODEL_DIR`` uses
exactly the same ``D_sub`` (eq. 9).

No validation split: the adapted model only feeds the scoring passes, which
need it well fitted to ``D_sub`` itself (Assumption 1); its training loss over
the epoch is in the curve.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.data.subsets import random_subset
from bioprune.errors import ConfigError
from bioprune.progress import ProgressCallback
from bioprune.training.recipe import TrainingConfig

__all__ = ["AdaptConfig", "adapt", "adapt_model", "adaptation_defaults", "random_subset"]


def adaptation_defaults() -> TrainingConfig:
    """Paper A.5's hyperparameters."""
    return TrainingConfig(
        lr=1e-5,
        weight_decay=0.01,
        warmup_steps=50,
        schedule="constant",
        batch_size=16,
        epochs=1,
        seed=0,
    )


@dataclass
class AdaptConfig:
    """What ``bioprune adapt`` was asked to do."""

    model: Path
    """Model directory to adapt."""
    corpus: Path
    """Prepared corpus directory."""
    out: Path
    """Adapted model directory to write."""
    subset_size: int
    """``M``: examples in the random subset (resolved from a count or fraction)."""
    training: TrainingConfig = field(default_factory=adaptation_defaults)

    def __post_init__(self) -> None:
        if self.subset_size < 1:
            raise ConfigError("subset_size", f"must be >= 1 (got {self.subset_size})")
        if self.training.epochs != 1:
            raise ConfigError("training", "adaptation is exactly one epoch (epochs=1, paper A.5)")


def adapt(
    config: AdaptConfig, *, should_stop=None, progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Adapt ``config.model`` for one epoch on a random subset; write ``config.out``.

    Returns the ``training.json`` record; the subset's indices are saved beside
    the model. ``should_stop``, ``progress`` and ``torchrun`` work as for
    :func:`~bioprune.training.pretrain.pretrain`.
    """
    from bioprune.data.corpus import Corpus
    from bioprune.models.loading import load_masked_lm
    from bioprune.training.recipe import check_training_output

    tc = config.training
    artifacts.check_not_input(config.out, (config.corpus, config.model))
    check_training_output(config.out, tc.overwrite, tc.resume)
    corpus = Corpus(config.corpus)
    model, alphabet = load_masked_lm(config.model)
    data = {
        "corpus": str(config.corpus),
        "corpus_checksum": corpus.checksum,
        "model": str(config.model),
        "model_checksum": artifacts.model_checksum(config.model),
    }
    _, record = _adapt_run(
        model, alphabet, corpus, config.subset_size, tc, data, config.out,
        should_stop=should_stop, progress=progress, name=config.model,
    )  # fmt: skip
    return record


def _adapt_run(
    model, alphabet, corpus, subset_size: int, tc: TrainingConfig, data: dict[str, Any],
    out: Path | None, *, should_stop=None, progress=None, name="model",
):  # fmt: skip
    """Draw the subset, train every parameter for one epoch on it; ``(model, record)``."""
    from bioprune.models.loading import check_model_fits_corpus
    from bioprune.models.presets import count_parameters
    from bioprune.training.recipe import MaskedLMRecipe, run_recipe

    subset = random_subset(len(corpus), subset_size, tc.seed)
    check_model_fits_corpus(model, alphabet, corpus, name)
    for p in model.parameters():
        p.requires_grad_(True)  # paper A.5: all parameters trainable
    data = {**data, "subset_size": int(subset_size), "subset_seed": tc.seed}
    extra = {
        **tc.extra,
        "command": "adapt",
        "parameters": count_parameters(model),
        "subset_file": artifacts.MODEL_SUBSET,
        "validation": "none: the adapted model only feeds scoring on the same subset",
    }
    make = partial(
        MaskedLMRecipe, replace(tc, extra=extra), model, corpus, subset, np.zeros(0, np.int64),
        out, recipe="adapt", data_fingerprint=data, progress=progress,
    )  # fmt: skip
    record = run_recipe(
        make, tc.device, should_stop=should_stop, extra_files={artifacts.MODEL_SUBSET: subset}
    )
    return model, {**record, "subset_indices": subset} if out is None else record


def adapt_model(
    model,
    corpus,
    *,
    subset_size: int,
    seed: int = 0,
    training: TrainingConfig | None = None,
    progress: ProgressCallback | None = None,
):
    """Adapt ``model`` in place for one epoch of MLM on a seeded random subset (paper A.5).

    ``training`` defaults to :func:`adaptation_defaults` (its ``seed`` is
    replaced by ``seed``; the object itself is never modified). Returns the
    model in eval mode; the subset's corpus indices (what ``diagonal_fisher``
    should use as ``D_sub``) are ``model.bioprune_training["subset_indices"]``.
    Nothing is written.
    """
    from bioprune.training.pretrain import corpus_record

    tc = replace(training or adaptation_defaults(), seed=seed)
    if not 1 <= subset_size <= len(corpus):
        raise ConfigError("subset_size", f"must lie in [1, {len(corpus)}] (got {subset_size})")
    if tc.epochs != 1:
        raise ConfigError("training", "adaptation is exactly one epoch (epochs=1, paper A.5)")
    data = corpus_record(corpus)
    model, record = _adapt_run(
        model, corpus.alphabet, corpus, subset_size, tc, data, None, progress=progress
    )
    model.eval()
    model.bioprune_training = record
    return model
