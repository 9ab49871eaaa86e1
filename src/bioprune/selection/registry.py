"""The registry of selection strategies: method name -> class, built from keyword options."""

from __future__ import annotations

import dataclasses
from typing import Any

from bioprune.errors import ConfigError
from bioprune.selection.cci import CoverageCentric
from bioprune.selection.cci_variants import LengthStratifiedCCI, RedundancyAwareCCI
from bioprune.selection.cluster import ClusterSelection
from bioprune.selection.random_subset import RandomSelection
from bioprune.selection.topk import BottomK, TopK

__all__ = ["STRATEGIES", "make_strategy", "strategy_parameters"]

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


def _parameters(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def make_strategy(name: str, **params: Any):
    """The strategy ``name`` built from the subset of ``params`` it takes.

    A caller (the CLI, a study) may pass options of other strategies too (``min_seq_id``
    to ``cci``): they are not this strategy's and are left out (:func:`strategy_parameters`
    says what was used). A name that no strategy takes is a mistake:
    :class:`~bioprune.errors.ConfigError` naming it.

    >>> make_strategy("cci", beta=0.1, strata=10, seed=3, min_seq_id=0.5)
    CoverageCentric(beta=0.1, strata=10, seed=3, sampling='keys')
    >>> make_strategy("cci", bta=0.5)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bioprune.errors.ConfigError: bta: no selection method takes this parameter; cci takes beta, ...
    """
    if name not in STRATEGIES:
        raise ValueError(
            f"unknown selection method {name!r}; choose one of {', '.join(STRATEGIES)}"
        )
    cls = STRATEGIES[name]
    own = _parameters(cls)
    known = {p for c in STRATEGIES.values() for p in _parameters(c)}
    for key in params:
        if key not in known:
            takes = ", ".join(own) if own else "no parameters"
            raise ConfigError(
                key, f"no selection method takes this parameter; {name} takes {takes}"
            )
    return cls(**{k: v for k, v in params.items() if k in own})


def strategy_parameters(strategy) -> dict[str, Any]:
    """The parameters a strategy was built with (JSON-ready)."""
    return dataclasses.asdict(strategy)
