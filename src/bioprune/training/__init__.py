"""Masked-LM training: pretraining from scratch and subset adaptation.

For Python callers, in memory (files only with ``out=``)::

    model = pretrain_model(corpus, preset="tiny", steps=100, seed=0)
    model = adapt_model(model, corpus, subset_size=2000, seed=0)

The same recipe (:mod:`bioprune.training.recipe`) runs ``bioprune pretrain`` and
``bioprune adapt``. Importing this package imports no torch.
"""

from __future__ import annotations

from bioprune.training.adapt import adapt_model, adaptation_defaults
from bioprune.training.pretrain import pretrain_model
from bioprune.training.recipe import TrainingConfig

__all__ = ["TrainingConfig", "adapt_model", "adaptation_defaults", "pretrain_model"]
