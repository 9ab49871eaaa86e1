"""The seeded random subset ``D_sub`` shared by adaptation and the Fisher.

One rule in one place: ``bioprune adapt --subset-size M --seed s`` and
``bioprune fisher --subset-size M --seed s`` draw the same examples, as the
paper uses one subset for both (method.md section 4).
"""

from __future__ import annotations

import numpy as np

__all__ = ["random_subset"]


def random_subset(n: int, size: int, seed: int) -> np.ndarray:
    """``size`` of ``n`` corpus indices, uniformly without replacement, sorted (int64).

    Drawn as ``numpy.random.default_rng(seed).choice(n, size, replace=False)``.

    >>> random_subset(10, 3, seed=0).tolist()
    [5, 6, 9]
    """
    if not 0 <= size <= n:
        raise ValueError(f"subset size {size} must lie between 0 and the corpus size {n}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)
