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
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bioprune.selection.base import Selection
from bioprune.selection.cci import CoverageCentric
from bioprune.selection.cci_variants import LengthStratifiedCCI, RedundancyAwareCCI
from bioprune.selection.cluster import ClusterSelection
from bioprune.selection.random_subset import RandomSelection
from bioprune.selection.topk import BottomK, TopK

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
    "make_strategy",
    "strategy_parameters",
]

#: Registry: method name -> strategy class.
STRATEGIES: dict[str, type] = {
    cls.name: cls
    for cls in (
        RandomSelection,
        TopK,
        BottomK,
        CoverageCentric,
        ClusterSelection,
        LengthStratifiedCCI,
        RedundancyAwareCCI,
    )
}


def make_strategy(name: str, **params: Any):
    """The strategy ``name`` built from the subset of ``params`` it takes.

    Options that the strategy has no field for are ignored, so a caller (the
    CLI) may pass every option it knows; :func:`strategy_parameters` returns
    what was actually used, for the metadata.

    >>> make_strategy("cci", beta=0.1, strata=10, seed=3, min_seq_id=0.5)
    CoverageCentric(beta=0.1, strata=10, seed=3, sampling='keys')
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"unknown selection method {name!r}; choose one of {', '.join(STRATEGIES)}"
        )
    cls = STRATEGIES[name]
    fields = {f.name for f in dataclasses.fields(cls)}
    return cls(**{k: v for k, v in params.items() if k in fields})


def strategy_parameters(strategy) -> dict[str, Any]:
    """The parameters a strategy was built with (JSON-ready)."""
    return dataclasses.asdict(strategy)
