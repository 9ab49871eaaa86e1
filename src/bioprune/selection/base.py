"""What every selection strategy returns, and the checks they share.

A strategy is a small frozen dataclass (scikit-learn style): the constructor
only stores parameters, ``select(...)`` does the work and returns a
:class:`Selection`; the seed is turned into a generator inside ``select``, so
the same object called twice returns the same set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from bioprune.errors import ConfigError

__all__ = ["Selection", "check_budget", "check_count", "check_scores", "extreme_k"]


@dataclass
class Selection:
    """The chosen examples of one strategy run.

    Attributes
    ----------
    indices
        int64, shape ``(m,)``: positions of the chosen examples in the input
        the strategy was given, sorted ascending, without duplicates.
    stratum
        int32, shape ``(m,)``: CCI's bin of each chosen example (0-based), or
        ``None`` for strategies without strata.
    cluster
        int64, shape ``(m,)``: the cluster (its representative's position) of
        each chosen example for the ``cluster`` strategy, else ``None``.
    details
        JSON-ready, strategy-specific facts for ``selection.json`` (CCI's
        strata, the clustering command, ...).
    """

    indices: np.ndarray
    stratum: np.ndarray | None = None
    cluster: np.ndarray | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.indices)


def check_budget(budget: int, pool: int, method: str, pool_name: str = "examples") -> int:
    """Validate a count budget against the pool it is drawn from."""
    budget = int(budget)
    if budget < 0:
        raise ValueError(f"{method}: budget must be >= 0, got {budget}")
    if budget > pool:
        raise ValueError(
            f"{method}: budget of {budget:,} exceeds the pool of {pool:,} {pool_name}; "
            f"ask for at most {pool:,}"
        )
    return budget


def check_count(param: str, value: Any, low: int, high: int | None = None) -> None:
    """:class:`~bioprune.errors.ConfigError` unless ``value`` is an integer in ``low..high``."""
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if not ok and isinstance(value, (float, np.floating)):
        ok = float(value).is_integer()  # 10.0 is 10
    if not ok or value < low or (high is not None and value > high):
        where = f"{low}..{high}" if high is not None else f">= {low}"
        raise ConfigError(param, f"must be an integer {where}, got {value!r}")


def check_scores(scores: ArrayLike, method: str) -> np.ndarray:
    """A 1-D float64 view of ``scores``; non-finite values are an error here.

    The pipeline drops NaN scores (examples the influence engine could not
    score) before calling a strategy, and reports how many it dropped.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{method}: scores must be 1-D, got shape {scores.shape}")
    if not np.isfinite(scores).all():
        bad = int((~np.isfinite(scores)).sum())
        raise ValueError(
            f"{method}: {bad} score(s) are NaN or infinite; drop them before selecting"
        )
    return scores


def extreme_k(scores: np.ndarray, k: int, largest: bool) -> np.ndarray:
    """Positions of the ``k`` largest (or smallest) scores, ties broken by smaller position.

    O(n): one ``np.partition`` finds the k-th value ``t``; everything strictly
    beyond ``t`` is in, and the remaining places go to the scores equal to ``t``
    with the smallest positions. Returns int64 positions sorted ascending.

    >>> extreme_k(np.array([1.0, 5.0, 5.0, 5.0, 0.0]), 2, largest=True).tolist()
    [1, 2]
    """
    n = len(scores)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n:
        return np.arange(n, dtype=np.int64)
    if largest:
        t = np.partition(scores, n - k)[n - k]
        beyond = scores > t
    else:
        t = np.partition(scores, k - 1)[k - 1]
        beyond = scores < t
    ties = np.flatnonzero(scores == t)[: k - np.count_nonzero(beyond)]
    # Marking the ties in the mask and reading it back yields the positions
    # already sorted, in one O(n) pass (cheaper than sorting k positions).
    beyond[ties] = True
    return np.flatnonzero(beyond).astype(np.int64, copy=False)
