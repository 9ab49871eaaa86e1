"""Two CCI variants beyond the paper: ``cci-length`` and ``cci-cluster``.

Self-influence with the paper's mean masked loss falls roughly as 1/length,
so CCI's equal-width score strata are, in effect, length strata with the long
families at the bottom; and a near-duplicate scores about like its original,
so CCI keeps duplicates at the corpus rate. Each variant removes one of these
biases and keeps the rest of Algorithm 1 (method.md section 5) unchanged.

``cci-length`` -- CCI stratified jointly by length and score
--------------------------------------------------------------

1. **length bins** over all ``n`` examples, by ``length_binning``:

   * ``quantile`` (default): equal-count bins -- the examples sorted by
     ``(length, index)``, the one of rank ``r`` (0-based) goes to bin
     ``floor(r * length_bins / n)``; every bin holds ``n / length_bins``
     examples up to one, so the budget follows the length distribution and
     only the score is stratified within each length range (ties in length
     may be split between neighbouring bins, by index);
   * ``log``: ``length_bins`` equal-width bins of ``log(max(length, 1))``,
     edges and membership exactly as CCI's score strata
     (:func:`~bioprune.selection.cci.strata_edges`, bin ``b`` holds
     ``[e_b, e_{b+1})``, the longest sequence in the last bin); the budget is
     then spread evenly over the length *range*, so rare lengths (very short
     or very long sequences) get a share far above their population;
2. **hard cutoff per length bin**: in each length bin of ``n_b`` members the
   ``floor(n_b * beta)`` largest scores are dropped (ties: the smaller index
   first), so a length bin is judged against its own lengths, not against the
   short sequences whose scores are large because they are short;
3. **score strata per length bin**: the rest of each length bin is split into
   ``strata`` equal-width bins over *that bin's* remaining score range;
4. **cells**: cell ``c = length_bin * strata + score_stratum``; CCI's allocation
   runs over the non-empty cells -- visited from fewest to most members (equal
   sizes: smaller cell index first), each takes
   ``min(size, floor(remaining budget / cells left))`` members uniformly
   without replacement -- so the result has exactly ``m`` members whenever
   ``m`` is at most the pool (all examples minus the dropped ones).

Randomness, by ``sampling`` as for CCI (:mod:`bioprune.selection.cci`):
``keys`` (default) -- each cell takes its ``t`` members with the smallest
permanent random keys ``numpy.random.default_rng(seed).random(n)`` (equal
keys: smaller position first); ``stream`` -- one
``numpy.random.default_rng(seed)``, each visited cell that takes ``t > 0``
members calls ``rng.choice(members, t, replace=False)`` once, in visiting
order, with ``members`` its positions in ascending order.
``Selection.stratum`` holds each pick's cell ``c``.

``cci-cluster`` -- redundancy-aware CCI (at most ``m`` picks per cluster)
--------------------------------------------------------------------------

1. drop the ``floor(n * beta)`` largest scores, exactly as CCI;
2. **thin the pool**: each example gets a priority ``p_i``, the random
   permutation ``numpy.random.default_rng([seed, 1]).permutation(n)`` (one
   entry for every position, dropped or not; all distinct); within each
   sequence-identity cluster the ``max_per_cluster`` remaining members with
   the smallest ``p_i`` are kept and the others leave the pool;
3. run CCI with ``beta = 0`` (and the same ``strata``, ``seed`` and
   ``sampling``) on the thinned pool: its strata span the thinned pool's
   score range. Under ``sampling="keys"`` the keys are those of the corpus
   positions (``default_rng(seed).random(n)`` restricted to the thinned
   pool), so a pick depends on its corpus position's key, not on its rank
   in the thinned pool.

So no cluster contributes more than ``max_per_cluster`` examples, and a
near-duplicate and its original (one cluster at high identity) are never both
picked with the default ``max_per_cluster = 1``. Clusters come from MMseqs2 or
CD-HIT as for the ``cluster`` baseline (:mod:`bioprune.selection.cluster`),
computed once per corpus and clustering parameters and cached
(:func:`bioprune.selection.cluster.corpus_clusters`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bioprune.selection.base import Selection, check_budget, check_scores, extreme_k
from bioprune.selection.cci import (
    _MAX_STRATA,
    CoverageCentric,
    bin_scores,
    check_sampling,
    hard_cutoff_count,
    sampling_keys,
    smallest_keys,
    strata_edges,
)

__all__ = ["LENGTH_BINNINGS", "LengthStratifiedCCI", "RedundancyAwareCCI", "allocate_cells"]

LENGTH_BINNINGS = ("quantile", "log")


def allocate_cells(
    cell: np.ndarray,
    n_cells: int,
    budget: int,
    rng: np.random.Generator | None,
    keys: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CCI's fewest-first allocation of ``budget`` over cells.

    ``cell[i]`` is example ``i``'s cell in ``0..n_cells - 1``, or ``-1`` outside
    the pool. Each cell samples with ``rng.choice`` (``stream``) or, when
    ``keys`` is given (``rng`` then unused), takes its members with the
    smallest keys. Returns the chosen positions (sorted), each one's cell, the pool
    size of every cell and the picks of every cell. The budget must not exceed
    the pool (checked by the caller).
    """
    n = len(cell)
    in_pool = np.flatnonzero(cell >= 0)
    c = cell[in_pool]
    counts = np.bincount(c, minlength=n_cells).astype(np.int64)
    # by cell, positions ascending; 16-bit keys get NumPy's O(n) radix sort
    key = c.astype(np.uint16) if n_cells <= 1 << 16 else c
    grouped = in_pool[np.argsort(key, kind="stable")]
    starts = np.concatenate([[0], np.cumsum(counts)])
    nonempty = np.flatnonzero(counts)
    visit = nonempty[np.lexsort((nonempty, counts[nonempty]))]
    remaining = int(budget)
    taken = np.zeros(n_cells, dtype=np.int64)
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
    if remaining:  # impossible by CCI's allocation argument; guard it
        raise RuntimeError(f"allocation left {remaining} of the budget unassigned")
    picks = np.flatnonzero(chosen).astype(np.int64)
    return picks, cell[picks], counts, taken


def _distinct(labels: np.ndarray) -> int:
    """Number of distinct labels (one sort; cheaper than ``np.unique``'s hashing here)."""
    if not len(labels):
        return 0
    x = np.sort(labels)
    return int(np.count_nonzero(x[1:] != x[:-1])) + 1


def _check_cci_params(name: str, beta: float, strata: int, sampling: str) -> None:
    check_sampling(name, sampling)
    if not 0.0 <= float(beta) < 1.0:
        raise ValueError(f"{name}: beta must lie in [0, 1), got {beta}")
    if int(strata) != strata or not 1 <= strata <= _MAX_STRATA:
        raise ValueError(f"{name}: strata must be an integer in 1..{_MAX_STRATA}, got {strata}")


def _side_array(values, n: int, name: str, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"{name}: {what} must have one value per score ({n}), got {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name}: {what} must be integers, got {values.dtype}")
    return values.astype(np.int64, copy=False)


@dataclass(frozen=True)
class LengthStratifiedCCI:
    """CCI with strata over score within log-length bins (``--stratify length``).

    Parameters
    ----------
    beta
        Fraction of each length bin's hardest (largest-influence) examples dropped, in [0, 1).
    strata
        Equal-width score bins inside each length bin (cells: ``length_bins * strata``).
    length_bins
        Number of length bins.
    length_binning
        ``quantile`` (equal-count bins) or ``log`` (equal-width bins of log length).
    seed
        Seed of the per-cell uniform sampling.
    sampling
        ``keys`` (coordinated, the default) or ``stream``, as for
        :class:`~bioprune.selection.cci.CoverageCentric`.

    Examples
    --------
    >>> lengths = np.array([10, 10, 10, 10, 1000, 1000, 1000, 1000])
    >>> scores = np.array([8.0, 9.0, 10.0, 11.0, 0.1, 0.2, 0.3, 0.4])
    >>> s = LengthStratifiedCCI(beta=0.0, strata=1, length_bins=2).select(scores, 4, lengths)
    >>> int((lengths[s.indices] == 1000).sum())  # half from each length bin
    2
    """

    beta: float = 0.05
    strata: int = 10
    length_bins: int = 5
    length_binning: str = "quantile"
    seed: int = 0
    sampling: str = "keys"

    name: ClassVar[str] = "cci-length"
    uses_scores: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ("lengths",)

    def __post_init__(self) -> None:
        _check_cci_params(self.name, self.beta, self.strata, self.sampling)
        if int(self.length_bins) != self.length_bins or not 1 <= self.length_bins <= _MAX_STRATA:
            raise ValueError(
                f"{self.name}: length_bins must be an integer in 1..{_MAX_STRATA}, "
                f"got {self.length_bins}"
            )
        if self.length_binning not in LENGTH_BINNINGS:
            raise ValueError(
                f"{self.name}: length_binning must be one of {', '.join(LENGTH_BINNINGS)}, "
                f"got {self.length_binning!r}"
            )
        if int(self.length_bins) * int(self.strata) > 1 << 24:
            raise ValueError(f"{self.name}: length_bins x strata must be at most {1 << 24}")

    def select(
        self,
        scores: np.ndarray,
        budget: int,
        lengths: np.ndarray,
        *,
        keys: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``budget`` positions; ``lengths[i]`` is example ``i``'s residue count.

        ``keys``: as for :meth:`bioprune.selection.cci.CoverageCentric.select`.
        """
        scores = check_scores(scores, self.name)
        n, strata, nl = len(scores), int(self.strata), int(self.length_bins)
        keys = sampling_keys(self.name, self.sampling, self.seed, n, keys)
        lengths = _side_array(lengths, n, self.name, "lengths")
        if n and lengths.min() < 0:
            raise ValueError(f"{self.name}: lengths must be >= 0")
        cell = np.full(n, -1, dtype=np.int64)
        log_len = np.log(np.maximum(lengths, 1).astype(np.float64))
        details: dict = {
            "n": n,
            "beta": float(self.beta),
            "strata": strata,
            "length_bins": nl,
            "length_binning": self.length_binning,
            "sampling": self.sampling,
        }
        if n == 0:
            check_budget(budget, 0, self.name)
            return Selection(np.zeros(0, np.int64), np.zeros(0, np.int32), details=details)
        if self.length_binning == "log":
            length_edges = strata_edges(float(log_len.min()), float(log_len.max()), nl)
            lbin, lcounts = bin_scores(log_len, length_edges)
        else:
            rank = np.empty(n, dtype=np.int64)
            short = lengths.max() < 1 << 16  # 16-bit keys: radix sort, O(n)
            by_length = np.argsort(lengths.astype(np.uint16) if short else lengths, kind="stable")
            rank[by_length] = np.arange(n)  # rank by (length, index)
            lbin = (rank * nl // n).astype(np.uint16)
            lcounts = np.bincount(lbin, minlength=nl)
        by_bin = np.argsort(lbin, kind="stable")  # grouped by length bin, positions ascending
        lstarts = np.concatenate([[0], np.cumsum(lcounts)])
        dropped, score_edges, hard_cut = [], [], []
        for b in range(nl):  # a loop over length bins
            members = by_bin[lstarts[b] : lstarts[b + 1]]
            k = hard_cutoff_count(len(members), self.beta)
            dropped.append(k)
            s = scores[members]
            hard = extreme_k(s, k, largest=True)  # ties: the smaller position is harder
            hard_cut.append(float(s[hard].min()) if k else None)
            keep = np.ones(len(members), dtype=bool)
            keep[hard] = False
            pool, s = members[keep], s[keep]
            if not len(pool):
                score_edges.append(None)
                continue
            edges = strata_edges(float(s.min()), float(s.max()), strata)
            if not np.isfinite(edges).all():
                raise ValueError(f"{self.name}: a score range is too wide to bin in float64")
            sb, _ = bin_scores(s, edges)
            cell[pool] = b * strata + sb.astype(np.int64)
            score_edges.append(edges)
        pool_size = int(np.count_nonzero(cell >= 0))
        budget = check_budget(
            budget,
            pool_size,
            self.name,
            f"examples left after dropping the floor(n_b*{self.beta}) hardest of each "
            f"length bin ({sum(dropped)} in all)",
        )
        rng = np.random.default_rng(self.seed) if keys is None else None
        picks, pick_cell, counts, taken = allocate_cells(cell, nl * strata, budget, rng, keys)
        # per bin: the residue range it covers (log: its edges; quantile: its members')
        if self.length_binning == "log":
            lengths_edges = np.exp(length_edges)  # shown in residues; the ends exactly
            lengths_edges[0], lengths_edges[-1] = max(lengths.min(), 1), max(lengths.max(), 1)
            span = [(float(lengths_edges[b]), float(lengths_edges[b + 1])) for b in range(nl)]
        else:
            span = [
                (float(lengths[m].min()), float(lengths[m].max())) if len(m) else (None, None)
                for m in (by_bin[lstarts[b] : lstarts[b + 1]] for b in range(nl))
            ]
        details.update(
            dropped_hardest=int(sum(dropped)),
            length_table=[
                {
                    "length_bin": b,
                    "length_lower": span[b][0],
                    "length_upper": span[b][1],
                    "upper_inclusive": b == nl - 1 or self.length_binning == "quantile",
                    "members": int(lcounts[b]),
                    "dropped_hardest": dropped[b],
                    "hard_cutoff_score": hard_cut[b],
                    "pool": int(counts[b * strata : (b + 1) * strata].sum()),
                    "picks": int(taken[b * strata : (b + 1) * strata].sum()),
                }
                for b in range(nl)
            ],
            cells=[
                {
                    "cell": int(c),
                    "length_bin": int(c) // strata,
                    "stratum": int(c) % strata,
                    "lower": float(score_edges[c // strata][c % strata]),
                    "upper": float(score_edges[c // strata][c % strata + 1]),
                    "pool": int(counts[c]),
                    "picks": int(taken[c]),
                }
                for c in np.flatnonzero(counts)
            ],
        )
        return Selection(indices=picks, stratum=pick_cell.astype(np.int32), details=details)


@dataclass(frozen=True)
class RedundancyAwareCCI:
    """CCI on a pool thinned to at most ``max_per_cluster`` members per sequence cluster.

    Parameters
    ----------
    beta, strata, seed, sampling
        As for :class:`~bioprune.selection.cci.CoverageCentric` (under ``keys``,
        the keys of the corpus positions).
    max_per_cluster
        At most this many picks from any one cluster (>= 1).
    min_seq_id, coverage, tool, mmseqs_command, threads
        The clustering (as for the ``cluster`` baseline); the default identity
        0.9 groups near-duplicates, not families.

    Examples
    --------
    >>> clusters = np.array([0, 0, 0, 0, 4, 5, 6, 7])  # four copies of one sequence
    >>> s = RedundancyAwareCCI(beta=0.0, strata=2).select(np.arange(8.0), 5, clusters)
    >>> int((clusters[s.indices] == 0).sum())
    1
    """

    beta: float = 0.05
    strata: int = 50
    max_per_cluster: int = 1
    min_seq_id: float = 0.9
    coverage: float = 0.8
    tool: str = "mmseqs"
    mmseqs_command: str = "easy-linclust"
    seed: int = 0
    threads: int = 1
    sampling: str = "keys"

    name: ClassVar[str] = "cci-cluster"
    uses_scores: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ("clusters",)

    def __post_init__(self) -> None:
        _check_cci_params(self.name, self.beta, self.strata, self.sampling)
        if int(self.max_per_cluster) != self.max_per_cluster or self.max_per_cluster < 1:
            raise ValueError(
                f"{self.name}: max_per_cluster must be an integer >= 1, got {self.max_per_cluster}"
            )

    def select(
        self,
        scores: np.ndarray,
        budget: int,
        clusters: np.ndarray,
        *,
        keys: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``budget`` positions; ``clusters[i]`` labels example ``i``'s cluster.

        ``keys``: as for :meth:`bioprune.selection.cci.CoverageCentric.select`.
        """
        scores = check_scores(scores, self.name)
        n, m = len(scores), int(self.max_per_cluster)
        keys = sampling_keys(self.name, self.sampling, self.seed, n, keys)
        clusters = _side_array(clusters, n, self.name, "clusters")
        n_hard = hard_cutoff_count(n, self.beta)
        hard = extreme_k(scores, n_hard, largest=True)
        priority = np.random.default_rng([self.seed, 1]).permutation(n)  # distinct
        eligible = np.ones(n, dtype=bool)
        eligible[hard] = False
        idx = np.flatnonzero(eligible)
        # Grouped by cluster, within it by priority: one sort of a composite key
        # (cluster * n + priority, all distinct, so any sort gives the same order).
        cl = clusters[idx]
        if len(cl) and (cl.min() < 0 or cl.max() >= (1 << 62) // max(n, 1)):
            cl = np.unique(cl, return_inverse=True)[1].astype(np.int64)  # dense labels
        grouped = idx[np.argsort(cl * n + priority[idx])]
        g = clusters[grouped]
        first = np.flatnonzero(np.r_[True, g[1:] != g[:-1]]) if len(g) else np.zeros(0, np.int64)
        rank = np.arange(len(g)) - np.repeat(first, np.diff(np.r_[first, len(g)]))
        kept = np.sort(grouped[rank < m])
        budget = check_budget(
            budget,
            len(kept),
            self.name,
            f"examples left after dropping the floor(n*beta) = floor({n}*{self.beta}) = "
            f"{n_hard} hardest and keeping at most {m} per cluster",
        )
        inner = CoverageCentric(
            beta=0.0, strata=int(self.strata), seed=self.seed, sampling=self.sampling
        ).select(scores[kept], budget, keys=None if keys is None else keys[kept])
        chosen = kept[inner.indices]
        d = inner.details
        details = {
            "n": n,
            "beta": float(self.beta),
            "strata": int(self.strata),
            "dropped_hardest": n_hard,
            "hard_cutoff_score": float(scores[hard].min()) if n_hard else None,
            "max_per_cluster": m,
            "sampling": self.sampling,
            "clusters": _distinct(clusters),
            "clusters_in_pool": len(first),
            "thinned_out": int(len(idx) - len(kept)),
            "pool": len(kept),
            "score_min": d.get("score_min"),
            "score_max": d.get("score_max"),
            "edges": d.get("edges", []),
            "strata_table": d.get("strata_table", []),
        }
        return Selection(
            indices=chosen, stratum=inner.stratum, cluster=clusters[chosen], details=details
        )
