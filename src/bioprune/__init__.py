"""bioprune: self-influence data pruning for biological foundation models.

Stages (each a module with one public function, and a CLI command):
prepare -> init -> adapt -> fisher -> score -> select -> pretrain -> evaluate.

The same stages work in memory from Python (``docs/api.md``)::

    import bioprune as bp

    corpus = bp.Corpus.from_sequences(sequences, alphabet="rna")
    model = bp.pretrain_model(corpus, preset="tiny", steps=100, seed=0)
    fisher = bp.diagonal_fisher(model, corpus, subset=2000, seed=0)
    scores = bp.self_influence(model, corpus, fisher, seed=0)
    picks = bp.CoverageCentric(beta=0.05, strata=50, seed=0).select(scores.score, 100)

The names below are imported on first use, so ``import bioprune`` stays cheap
(no torch). The library never prints: it logs through the ``bioprune`` logger
(silent unless the application configures logging) and reports progress
through optional ``progress=`` callbacks (:class:`ProgressEvent`).
"""

from __future__ import annotations

import logging

from bioprune._lazy import lazy_exports

__version__ = "0.1.0"

# The library logs through one ``bioprune`` logger and never configures
# logging itself: without this, Python's last-resort handler would print its
# warnings on stderr. The CLI installs its own handler (bioprune.cli.progress).
logging.getLogger("bioprune").addHandler(logging.NullHandler())

#: Public name -> the module that defines it (imported on first access).
_EXPORTS: dict[str, str] = {
    # data
    "Corpus": "bioprune.data.corpus",
    # models and training
    "load_model": "bioprune.models",
    "new_model": "bioprune.models",
    "adapt_model": "bioprune.training",
    "pretrain_model": "bioprune.training",
    # influence
    "Fisher": "bioprune.influence",
    "Scores": "bioprune.influence",
    "diagonal_fisher": "bioprune.influence",
    "load_fisher": "bioprune.influence",
    "self_influence": "bioprune.influence",
    # selection
    "BottomK": "bioprune.selection",
    "ClusterSelection": "bioprune.selection",
    "CoverageCentric": "bioprune.selection",
    "LengthStratifiedCCI": "bioprune.selection",
    "RandomSelection": "bioprune.selection",
    "RedundancyAwareCCI": "bioprune.selection",
    "Selection": "bioprune.selection",
    "TopK": "bioprune.selection",
    "make_strategy": "bioprune.selection",
    # evaluation
    "EvaluationResult": "bioprune.evaluation",
    "Task": "bioprune.evaluation",
    "evaluate": "bioprune.evaluation",
    # errors and progress
    "BioPruneError": "bioprune.errors",
    "ConfigError": "bioprune.errors",
    "InputError": "bioprune.errors",
    "ProgressCallback": "bioprune.progress",
    "ProgressEvent": "bioprune.progress",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
