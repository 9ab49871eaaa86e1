"""``topk`` (Top I) and ``bottomk``: the examples with the largest / smallest influence.

Top I keeps the ``m`` examples with the largest self-influence ``I`` (method.md
section 5); Bottom I, its mirror, keeps the ``m`` smallest, i.e. the most
typical examples. Ties at the cut are broken by the smaller index, so the
result is a pure function of the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bioprune.selection.base import Selection, check_budget, check_scores, extreme_k

__all__ = ["BottomK", "TopK"]


@dataclass(frozen=True)
class TopK:
    """The ``budget`` largest scores (ties: smaller position first).

    Examples
    --------
    >>> TopK().select(np.array([0.1, 3.0, 2.0, 3.0]), 2).indices.tolist()
    [1, 3]
    """

    name: ClassVar[str] = "topk"
    uses_scores: ClassVar[bool] = True

    def select(self, scores: np.ndarray, budget: int) -> Selection:
        scores = check_scores(scores, self.name)
        budget = check_budget(budget, len(scores), self.name)
        return Selection(indices=extreme_k(scores, budget, largest=True))


@dataclass(frozen=True)
class BottomK:
    """The ``budget`` smallest scores (ties: smaller position first).

    Examples
    --------
    >>> BottomK().select(np.array([0.1, 3.0, 0.1, 2.0]), 2).indices.tolist()
    [0, 2]
    """

    name: ClassVar[str] = "bottomk"
    uses_scores: ClassVar[bool] = True

    def select(self, scores: np.ndarray, budget: int) -> Selection:
        scores = check_scores(scores, self.name)
        budget = check_budget(budget, len(scores), self.name)
        return Selection(indices=extreme_k(scores, budget, largest=False))
