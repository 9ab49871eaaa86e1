"""``topk`` (Top I) and ``bottomk``: the examples with the largest / smallest influence.

Top I keeps the ``m`` examples with the largest self-influence ``I`` (method.md
section 5); Bottom I, its mirror, keeps the ``m`` smallest, i.e. the most
typical examples. Ties at the cut are broken by the smaller index, so the
result is a pure function of the scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np  # noqa: F401 - the doctests use it
from numpy.typing import ArrayLike

from bioprune.selection.base import Selection, check_budget, check_scores, extreme_k
from bioprune.selection.budget import as_count

__all__ = ["BottomK", "TopK"]


@dataclass(frozen=True, kw_only=True)
class _Extreme:
    """The ``budget`` largest (or smallest) scores, ties: smaller position first."""

    largest: ClassVar[bool]
    uses_scores: ClassVar[bool] = True

    def select(self, scores: ArrayLike, budget: int | float | str) -> Selection:
        """Choose ``budget`` (a count, a fraction or text) positions of ``scores``."""
        scores = check_scores(scores, self.name)
        budget = check_budget(as_count(budget, len(scores)), len(scores), self.name)
        return Selection(indices=extreme_k(scores, budget, largest=self.largest))


@dataclass(frozen=True, kw_only=True)
class TopK(_Extreme):
    """The ``budget`` largest scores (ties: smaller position first).

    Examples
    --------
    >>> TopK().select(np.array([0.1, 3.0, 2.0, 3.0]), 2).indices.tolist()
    [1, 3]
    """

    name: ClassVar[str] = "topk"
    largest: ClassVar[bool] = True


@dataclass(frozen=True, kw_only=True)
class BottomK(_Extreme):
    """The ``budget`` smallest scores (ties: smaller position first).

    Examples
    --------
    >>> BottomK().select(np.array([0.1, 3.0, 0.1, 2.0]), 2).indices.tolist()
    [0, 2]
    """

    name: ClassVar[str] = "bottomk"
    largest: ClassVar[bool] = False
