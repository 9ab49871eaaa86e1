"""``random``: a uniform sample without replacement (method.md section 5).

The "random 10x" baseline is this strategy with ten times the budget
(``--budget`` given as 10 m); there is no separate strategy for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bioprune.selection.base import Selection, check_budget
from bioprune.selection.budget import as_count

__all__ = ["RandomSelection"]


@dataclass(frozen=True, kw_only=True)
class RandomSelection:
    """``budget`` of ``n`` examples, uniformly without replacement.

    Parameters
    ----------
    seed
        Seed of ``numpy.random.default_rng``; the same seed gives the same set.

    Examples
    --------
    >>> RandomSelection(seed=0).select(10, 3).indices.tolist()
    [5, 6, 9]
    """

    seed: int = 0

    name: ClassVar[str] = "random"
    uses_scores: ClassVar[bool] = False

    def select(self, n: int, budget: int | float | str) -> Selection:
        """Choose ``budget`` (a count, a fraction of ``n`` or text) of the positions ``0..n-1``."""
        budget = check_budget(as_count(budget, int(n)), int(n), self.name)
        rng = np.random.default_rng(self.seed)
        picks = rng.choice(int(n), size=budget, replace=False) if budget else np.zeros(0)
        return Selection(indices=np.sort(picks).astype(np.int64, copy=False))
