"""Coreset selection strategies (method.md section 5) behind one registry.

Each strategy is a frozen dataclass: its constructor stores parameters,
``select(...)`` returns a :class:`~bioprune.selection.base.Selection` (sorted
positions, plus strata or clusters where they exist). Seeds become generators
inside ``select``, so a strategy holds no hidden state.

===========  ==========================  =====================================
name         class                       input of ``select``
===========  ==========================  =====================================
random       RandomSelection(seed)       ``n``, budget (random 10x: 10x budget)
topk         TopK()                      scores, budget
bottomk      BottomK()                   scores, budget
cci          CoverageCentric(beta,       scores, budget
             strata, seed, sampling)
cluster      ClusterSelection(...)       corpus, budget, work directory
cci-length   LengthStratifiedCCI(beta,   scores, budget, lengths
             strata, length_bins, seed)
cci-cluster  RedundancyAwareCCI(beta,    scores, budget, clusters (the
             strata, max_per_cluster,    representative of each example)
             clustering..., seed)
===========  ==========================  =====================================

A strategy's ``needs`` (a class attribute, empty when absent) names the
per-example arrays beyond the scores that the pipeline gives ``select`` as
keyword arguments: ``lengths`` (the corpus's residue counts) and ``clusters``
(from :func:`bioprune.selection.cluster.corpus_clusters`).

Every strategy takes keyword parameters only and validates them when built (a
:class:`~bioprune.errors.ConfigError` naming the parameter); ``select`` takes the
budget as a count, a fraction of the examples (``0.01``) or text (``"10%"``):

>>> import numpy as np
>>> from bioprune.selection import CoverageCentric
>>> scores = np.random.default_rng(0).random(1000)
>>> picks = CoverageCentric(beta=0.05, strata=50, seed=0).select(scores, budget=0.01)
>>> len(picks)
10

The names are imported on first use, so ``import bioprune.selection`` (and the CLI,
which parses budgets with :mod:`bioprune.selection.budget`) stays cheap.
"""

from __future__ import annotations

from bioprune._lazy import lazy_exports

__all__ = [
    "STRATEGIES",
    "BottomK",
    "ClusterSelection",
    "CoverageCentric",
    "LengthStratifiedCCI",
    "RandomSelection",
    "RedundancyAwareCCI",
    "Selection",
    "TopK",
    "as_count",
    "make_strategy",
    "parse_budget",
    "strategy_parameters",
]

#: public name -> the module that defines it
_WHERE = {
    "STRATEGIES": "registry",
    "make_strategy": "registry",
    "strategy_parameters": "registry",
    "Selection": "base",
    "CoverageCentric": "cci",
    "LengthStratifiedCCI": "cci_variants",
    "RedundancyAwareCCI": "cci_variants",
    "ClusterSelection": "cluster",
    "RandomSelection": "random_subset",
    "TopK": "topk",
    "BottomK": "topk",
    "as_count": "budget",
    "parse_budget": "budget",
}


__getattr__, __dir__ = lazy_exports(__name__, {k: "." + v for k, v in _WHERE.items()}, globals())
