"""``cci``: coverage-centric influence selection (paper Algorithm 1, method.md section 5).

1. drop the ``floor(n * beta)`` examples with the largest influence (the
   hardest; ties at the cut: the smaller index is dropped first, as in Top I);
2. split the remaining score range ``[min, max]`` into ``strata`` equal-width
   bins with edges ``e_k = min + (max - min) * (k / strata)``, ``k = 0..strata``;
   bin ``b`` holds the scores in ``[e_b, e_{b+1})``, and the maximum belongs to
   the last bin (so when every remaining score is equal they all fall in the
   last bin);
3. visit the non-empty bins from fewest to most members -- bins of equal size
   in increasing bin index -- and let each take
   ``min(size, floor(remaining budget / bins left))`` members, sampled
   uniformly without replacement; subtract what it took;
4. the result has exactly ``m`` members whenever ``m <= n - floor(n * beta)``;
   a larger budget is an error.

Randomness (``sampling``): how each bin draws its ``t`` members.

* ``keys`` (the default; *coordinated sampling* with permanent random
  numbers): one uniform key per corpus position,
  ``u = numpy.random.default_rng(seed).random(n)`` (:func:`position_keys`),
  drawn before and independently of the scores; each bin takes the ``t``
  members with the smallest ``u`` (equal keys: the smaller position first).
  Given the allocation this is still uniform sampling without replacement
  within each bin, but whether an example is picked depends only on its own
  key, its bin's members and its bin's ``t``: a small change of the scores
  that moves a few examples across a bin edge changes only picks near the
  key cut-off of the bins it touches (and of the few whose ``t`` moves by
  one), not every bin visited after it.
* ``stream`` (bioprune's draws before ``sampling`` existed; kept to
  reproduce earlier selections): one ``numpy.random.default_rng(seed)``; each
  visited bin that takes ``t > 0`` members calls
  ``rng.choice(members, t, replace=False)`` once, in visiting order, with
  ``members`` its positions in ascending order. One example crossing an edge
  changes the draws of every bin visited after it, so a
  1e-4 perturbation of the scores redraws most of the coreset.

Both fix the random calls exactly, so a slow reference implementation making
the same calls picks the same set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import numpy as np
from numpy.typing import ArrayLike

from bioprune.errors import ConfigError, check_choice
from bioprune.selection.base import Selection, check_budget, check_count, check_scores
from bioprune.selection.budget import as_count

__all__ = [
    "SAMPLINGS",
    "CoverageCentric",
    "allocate_cells",
    "bin_scores",
    "hard_cutoff_count",
    "position_keys",
    "smallest_keys",
    "strata_edges",
]

#: Ways a stratum draws its members: coordinated keys (default) or one random stream.
SAMPLINGS = ("keys", "stream")

_MAX_STRATA = 65_534  # bin labels are uint16, with one value kept for the dropped hardest
_BIN_CHUNK = 1 << 16  # scores binned per step: 512 KiB of float64 stays in cache


def hard_cutoff_count(n: int, beta: float) -> int:
    """``floor(n * beta)``, the number of hardest examples CCI drops.

    ``beta`` is read as the decimal the user typed (``Fraction(repr(beta))``)
    so that e.g. ``n = 100, beta = 0.29`` drops 29, not the 28 that binary
    floating point (``100 * 0.29 = 28.999...``) would give.

    >>> hard_cutoff_count(100, 0.29), hard_cutoff_count(19, 0.05)
    (29, 0)
    """
    return math.floor(Fraction(repr(float(beta))) * int(n))


def position_keys(seed: int, n: int) -> np.ndarray:
    """The permanent random number of each of ``n`` positions: ``default_rng(seed).random(n)``.

    float64 in ``[0, 1)`` (53 random bits each, so equal keys are rare even at
    ``n = 10**8``); 8 bytes per position. Drawing them in chunks of the same
    generator gives the same keys, so a caller may stream them.

    >>> bool((position_keys(3, 5)[:2] == position_keys(3, 2)).all())
    True
    """
    return np.random.default_rng(seed).random(int(n))


def smallest_keys(members: np.ndarray, keys: np.ndarray, take: int) -> np.ndarray:
    """The ``take`` entries of ``members`` (ascending positions) with the smallest ``keys``.

    ``keys`` is indexed by position. Equal keys: the smaller position first. One
    ``partition`` of the members' keys, O(len(members)); the result is in
    ascending position order.

    >>> smallest_keys(np.array([2, 5, 7, 9]), np.array([0, 0, .9, 0, 0, .1, 0, .5, 0, .1]), 2)
    array([5, 9])
    """
    if take >= len(members):
        return members
    if take <= 0:
        return members[:0]
    k = keys[members]
    cut = np.partition(k, take - 1)[take - 1]
    below = k < cut
    at = np.flatnonzero(k == cut)[: take - int(np.count_nonzero(below))]
    below[at] = True
    return members[below]


def strata_edges(lo: float, hi: float, strata: int) -> np.ndarray:
    """``strata + 1`` bin edges ``lo + (hi - lo) * (k / strata)`` (float64); last edge is ``hi``."""
    edges = lo + (hi - lo) * (np.arange(strata + 1, dtype=np.float64) / strata)
    edges[0], edges[-1] = lo, hi
    return edges


def bin_scores(scores: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bin labels and per-bin counts of ``scores`` for non-decreasing ``edges`` (``strata + 1``).

    ``bins[i]`` is the last ``k`` with ``edges[k] <= scores[i]``, clipped to
    ``0..strata - 1`` -- exactly ``np.searchsorted(edges, s, "right") - 1``
    clipped, so bin ``b`` holds ``[e_b, e_{b+1})`` and the maximum lands in the
    last bin. Instead of a binary search per score, the bin is first guessed
    arithmetically, ``floor((s - e_0) * strata / (e_S - e_0))``, then moved
    until ``lower[b] <= s < upper[b]`` holds, where ``lower``/``upper`` are the
    edges with the outer ones opened to -inf/+inf (a guess is off by at most
    one bin except where rounding makes edges coincide; the loop handles any
    distance). Done in cache-sized chunks of :data:`_BIN_CHUNK`.

    Returns
    -------
    bins
        uint16, shape ``(n,)``.
    counts
        int64, shape ``(strata,)``: ``np.bincount(bins, minlength=strata)``.
    """
    strata = len(edges) - 1
    n = len(scores)
    bins = np.empty(n, dtype=np.uint16)
    counts = np.zeros(strata, dtype=np.int64)
    lo, hi = float(edges[0]), float(edges[-1])
    scale = strata / (hi - lo) if hi > lo else math.inf
    if not math.isfinite(scale):  # one value (or a sub-normal range): binary search per score
        for s in range(0, n, _BIN_CHUNK):  # a loop over chunks, not examples
            chunk = np.searchsorted(edges, scores[s : s + _BIN_CHUNK], side="right") - 1
            np.clip(chunk, 0, strata - 1, out=chunk)
            bins[s : s + _BIN_CHUNK] = chunk
            counts += np.bincount(chunk, minlength=strata)
        return bins, counts
    lower = np.concatenate([[-np.inf], edges[1:strata]])
    upper = np.concatenate([edges[1:strata], [np.inf]])
    for s in range(0, n, _BIN_CHUNK):  # a loop over chunks, not examples
        x = scores[s : s + _BIN_CHUNK]
        with np.errstate(over="ignore"):  # a huge dropped score guesses +inf: clipped
            guess = (x - lo) * scale
        np.clip(guess, 0, strata - 1, out=guess)
        b = guess.astype(np.intp)  # floor of a value in [0, strata - 1]
        below, above = x < lower[b], x >= upper[b]
        wrong = np.flatnonzero(below | above)
        while len(wrong):  # a loop over bins moved, usually zero or one pass
            xb, bb = x[wrong], b[wrong]
            bb = bb - (xb < lower[bb]) + (xb >= upper[bb])
            b[wrong] = bb
            still = (xb < lower[bb]) | (xb >= upper[bb])
            wrong = wrong[still]
        bins[s : s + _BIN_CHUNK] = b
        counts += np.bincount(b, minlength=strata)
    return bins, counts


def check_cci_parameters(strategy) -> None:
    """The checks every CCI variant makes of its ``beta``, ``strata`` and ``sampling``."""
    check_choice("sampling", strategy.sampling, SAMPLINGS)
    if not 0.0 <= float(strategy.beta) < 1.0:
        raise ConfigError("beta", f"must lie in [0, 1), got {strategy.beta}")
    check_count("strata", strategy.strata, 1, _MAX_STRATA)


def sampling_keys(
    name: str, sampling: str, seed: int, n: int, keys: np.ndarray | None
) -> np.ndarray | None:
    """The keys a ``sampling="keys"`` selection of ``n`` positions uses; ``None`` for ``stream``."""
    if sampling == "stream":
        if keys is not None:
            raise ValueError(f"{name}: keys are given but sampling is 'stream'")
        return None
    if keys is None:
        return position_keys(seed, n)
    keys = np.asarray(keys, dtype=np.float64)
    if keys.shape != (n,):
        raise ValueError(f"{name}: keys must have one value per score ({n}), got {keys.shape}")
    return keys


def visiting_order(counts: np.ndarray) -> np.ndarray:
    """The non-empty cells, fewest members first (equal counts: smaller cell first)."""
    nonempty = np.flatnonzero(counts)
    return nonempty[np.lexsort((nonempty, counts[nonempty]))]


def allocate_cells(
    cell: np.ndarray,
    n_cells: int,
    budget: int,
    rng: np.random.Generator | None,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CCI's fewest-first allocation of ``budget`` over cells (Algorithm 1, step 3).

    ``cell[i]`` is example ``i``'s cell in ``0..n_cells - 1``; any other value (``-1``,
    ``n_cells``) is outside the pool. The non-empty cells are visited fewest members
    first; each takes ``min(size, floor(remaining / cells left))`` members: with
    ``rng.choice(members, take, replace=False)`` (``stream``; members in ascending
    position order) or, when ``keys`` is given (``rng`` then unused), the members with
    the smallest keys. Returns the chosen positions (sorted), each one's cell, the pool
    size of every cell and the picks of every cell. The budget must not exceed the pool
    (checked by the caller).
    """
    n = len(cell)
    in_pool = np.flatnonzero((cell >= 0) & (cell < n_cells))
    c = cell[in_pool]
    counts = np.bincount(c, minlength=n_cells).astype(np.int64)
    # by cell, positions ascending; 16-bit keys get NumPy's O(n) radix sort
    key = c.astype(np.uint16) if n_cells <= 1 << 16 else c
    grouped = in_pool[np.argsort(key, kind="stable")]
    del c, key, in_pool
    starts = np.concatenate([[0], np.cumsum(counts)])
    visit = visiting_order(counts)
    remaining = int(budget)
    taken = np.zeros(n_cells, dtype=np.int64)
    # Picks are distinct positions: marking them in an n-long mask and reading it back
    # orders them in O(n) (cheaper than sorting the picks).
    chosen = np.zeros(n, dtype=bool)
    for j, b in enumerate(visit):  # a loop over cells, never over examples
        take = min(int(counts[b]), remaining // (len(visit) - j))
        if take:
            members = grouped[starts[b] : starts[b + 1]]
            if keys is not None:
                chosen[smallest_keys(members, keys, take)] = True
            else:
                chosen[rng.choice(members, size=take, replace=False)] = True
            taken[b] = take
            remaining -= take
    if remaining:  # impossible by CCI's allocation argument (method.md); guard it
        raise RuntimeError(f"allocation left {remaining} of the budget unassigned")
    picks = np.flatnonzero(chosen).astype(np.int64)
    return picks, cell[picks], counts, taken


def drop_hardest(scores: np.ndarray, n_hard: int) -> tuple[np.ndarray, float]:
    """The positions of the ``n_hard`` largest scores (ties at the cut: the smaller
    position is dropped first) and the largest score left (NaN when none is).

    One partition finds both the hard cut ``t`` (the ``n_hard``-th largest score) and the
    pool's maximum (the next one).
    """
    n = len(scores)
    pool = n - n_hard
    if not n_hard:
        return np.zeros(0, dtype=np.int64), float(np.max(scores)) if n else math.nan
    if not pool:
        return np.arange(n, dtype=np.int64), math.nan
    cut = np.partition(scores, [pool - 1, pool])
    t, hi = float(cut[pool]), float(cut[pool - 1])
    del cut
    # everything above t is dropped, then the ties at t with the smallest positions
    strict = np.flatnonzero(scores > t)
    ties = np.flatnonzero(scores == t)[: n_hard - len(strict)]
    return np.concatenate([strict, ties]), hi


def strata_table(edges: np.ndarray, counts: np.ndarray, taken: np.ndarray) -> list[dict]:
    """One row per stratum for ``selection.json``: its edges, pool, picks and visit order."""
    strata = len(counts)
    visit_rank = np.full(strata, -1, dtype=np.int64)
    visit = visiting_order(counts)
    visit_rank[visit] = np.arange(len(visit))
    return [
        {
            "stratum": b,
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "upper_inclusive": b == strata - 1,
            "pool": int(counts[b]),
            "picks": int(taken[b]),
            "visit_order": int(visit_rank[b]) if counts[b] else None,
        }
        for b in range(strata)
    ]


@dataclass(frozen=True, kw_only=True)
class CoverageCentric:
    """Coverage-centric influence selection (Algorithm 1).

    Parameters
    ----------
    beta
        Fraction of the hardest (largest-influence) examples dropped first, in [0, 1).
    strata
        Number of equal-width score bins, >= 1.
    seed
        Seed of the per-bin uniform sampling.
    sampling
        ``keys`` (coordinated: the members with the smallest permanent random
        keys; the default) or ``stream`` (one ``rng.choice`` per bin in
        visiting order, as before; for reproducing earlier selections). See the
        module docstring.

    Examples
    --------
    >>> s = CoverageCentric(beta=0.1, strata=2).select(np.arange(10.0), 4)
    >>> len(s), 9 in s.indices, s.stratum.tolist()
    (4, False, [0, 0, 1, 1])
    """

    beta: float = 0.05
    strata: int = 50
    seed: int = 0
    sampling: str = "keys"

    name: ClassVar[str] = "cci"
    uses_scores: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_cci_parameters(self)

    def select(
        self, scores: ArrayLike, budget: int | float | str, *, keys: np.ndarray | None = None
    ) -> Selection:
        """Choose ``budget`` positions of ``scores`` (shape ``(n,)``, all finite).

        ``budget``: a count, a fraction of ``n`` or text (:func:`~bioprune.selection.
        budget.as_count`). ``keys`` (``sampling="keys"`` only): the positions' permanent
        random numbers, by default :func:`position_keys` ``(seed, n)``; a caller that
        selects from a subset of a corpus passes the corpus keys of that subset so that
        picks stay tied to corpus positions.
        """
        scores = check_scores(scores, self.name)
        n, strata = len(scores), int(self.strata)
        keys = sampling_keys(self.name, self.sampling, self.seed, n, keys)
        n_hard = hard_cutoff_count(n, self.beta)
        budget = check_budget(
            as_count(budget, n),
            n - n_hard,
            self.name,
            f"examples left after dropping the floor(n*beta) = floor({n}*{self.beta}) = "
            f"{n_hard} hardest",
        )
        details: dict = {"n": n, "beta": float(self.beta), "strata": strata,
                         "dropped_hardest": n_hard, "sampling": self.sampling}  # fmt: skip
        hard, hi = drop_hardest(scores, n_hard)
        details["hard_cutoff_score"] = float(scores[hard].min()) if n_hard else None
        if n_hard == n:
            empty = np.zeros(0, dtype=np.int64)
            return Selection(empty, np.zeros(0, np.int32), details={**details, "strata_table": []})
        # the pool's minimum is the global minimum: only the largest scores are dropped
        lo = float(np.min(scores))
        if not math.isfinite(hi - lo):
            raise ValueError(f"cci: the score range [{lo}, {hi}] is too wide to bin in float64")
        edges = strata_edges(lo, hi, strata)
        bins, _ = bin_scores(scores, edges)
        bins[hard] = strata  # a cell after the real ones: outside the pool
        del hard
        rng = np.random.default_rng(self.seed) if keys is None else None
        chosen, stratum, counts, taken = allocate_cells(bins, strata, budget, rng, keys)
        details.update(score_min=lo, score_max=hi, edges=edges.tolist(),
                       strata_table=strata_table(edges, counts, taken))  # fmt: skip
        return Selection(indices=chosen, stratum=stratum.astype(np.int32), details=details)
