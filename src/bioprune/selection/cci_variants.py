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
from numpy.typing import ArrayLike

from bioprune.errors import ConfigError, check_choice
from bioprune.selection.base import (
    Selection,
    check_budget,
    check_count,
    check_scores,
    extreme_k,
)
from bioprune.selection.budget import as_count
from bioprune.selection.cci import (
    _MAX_STRATA,
    CoverageCentric,
    allocate_cells,
    bin_scores,
    check_cci_parameters,
    hard_cutoff_count,
    sampling_keys,
    strata_edges,
)
from bioprune.selection.cluster import check_clustering

__all__ = ["LENGTH_BINNINGS", "LengthStratifiedCCI", "RedundancyAwareCCI", "allocate_cells"]

LENGTH_BINNINGS = ("quantile", "log")


def _distinct(labels: np.ndarray) -> int:
    """Number of distinct labels (one sort; cheaper than ``np.unique``'s hashing here)."""
    if not len(labels):
        return 0
    x = np.sort(labels)
    return int(np.count_nonzero(x[1:] != x[:-1])) + 1


def _side_array(values, n: int, name: str, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"{name}: {what} must have one value per score ({n}), got {values.shape}")
    if not np.issubdtype(values.dtype, np.integer):
        raise ValueError(f"{name}: {what} must be integers, got {values.dtype}")
    return values.astype(np.int64, copy=False)


@dataclass(frozen=True, kw_only=True)
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
        check_cci_parameters(self)
        check_count("length_bins", self.length_bins, 1, _MAX_STRATA)
        check_choice("length_binning", self.length_binning, LENGTH_BINNINGS)
        if int(self.length_bins) * int(self.strata) > 1 << 24:
            raise ConfigError("length_bins", f"length_bins x strata must be at most {1 << 24}")

    def select(
        self,
        scores: ArrayLike,
        budget: int | float | str,
        lengths: ArrayLike,
        *,
        keys: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``budget`` positions; ``lengths[i]`` is example ``i``'s residue count.

        ``budget`` and ``keys``: as for :meth:`bioprune.selection.cci.CoverageCentric.select`.
        """
        scores = check_scores(scores, self.name)
        n, strata, nl = len(scores), int(self.strata), int(self.length_bins)
        keys = sampling_keys(self.name, self.sampling, self.seed, n, keys)
        lengths = _side_array(lengths, n, self.name, "lengths")
        if n and lengths.min() < 0:
            raise ValueError(f"{self.name}: lengths must be >= 0")
        details: dict = {
            "n": n, "beta": float(self.beta), "strata": strata, "length_bins": nl,
            "length_binning": self.length_binning, "sampling": self.sampling,
        }  # fmt: skip
        if n == 0:
            check_budget(as_count(budget, 0), 0, self.name)
            return Selection(np.zeros(0, np.int64), np.zeros(0, np.int32), details=details)
        lbin, lcounts, length_edges = self._length_bins(lengths)
        by_bin = np.argsort(lbin, kind="stable")  # grouped by length bin, positions ascending
        members = np.split(by_bin, np.cumsum(lcounts)[:-1])
        cell, dropped, hard_cut, score_edges = self._cells(scores, members)
        budget = check_budget(
            as_count(budget, n),
            int(np.count_nonzero(cell >= 0)),
            self.name,
            f"examples left after dropping the floor(n_b*{self.beta}) hardest of each "
            f"length bin ({sum(dropped)} in all)",
        )
        rng = np.random.default_rng(self.seed) if keys is None else None
        picks, pick_cell, counts, taken = allocate_cells(cell, nl * strata, budget, rng, keys)
        per_bin = [counts.reshape(nl, strata).sum(1), taken.reshape(nl, strata).sum(1)]
        length_table = [
            {"length_bin": b, "length_lower": lower, "length_upper": upper,
             "upper_inclusive": b == nl - 1 or self.length_binning == "quantile",
             "members": int(lcounts[b]), "dropped_hardest": dropped[b],
             "hard_cutoff_score": hard_cut[b], "pool": int(per_bin[0][b]),
             "picks": int(per_bin[1][b])}
            for b, (lower, upper) in enumerate(_spans(lengths, length_edges, members))
        ]  # fmt: skip
        cells = [
            {"cell": int(c), "length_bin": int(c) // strata, "stratum": int(c) % strata,
             "lower": float(score_edges[c // strata][c % strata]),
             "upper": float(score_edges[c // strata][c % strata + 1]),
             "pool": int(counts[c]), "picks": int(taken[c])}
            for c in np.flatnonzero(counts)
        ]  # fmt: skip
        details.update(dropped_hardest=int(sum(dropped)), length_table=length_table, cells=cells)
        return Selection(indices=picks, stratum=pick_cell.astype(np.int32), details=details)

    def _length_bins(self, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Each example's length bin, the bins' sizes, and (``log``) the bins' log-length edges."""
        n, nl = len(lengths), int(self.length_bins)
        if self.length_binning == "log":
            log_len = np.log(np.maximum(lengths, 1).astype(np.float64))
            length_edges = strata_edges(float(log_len.min()), float(log_len.max()), nl)
            return (*bin_scores(log_len, length_edges), length_edges)
        rank = np.empty(n, dtype=np.int64)
        short = lengths.max() < 1 << 16  # 16-bit keys: radix sort, O(n)
        by_length = np.argsort(lengths.astype(np.uint16) if short else lengths, kind="stable")
        rank[by_length] = np.arange(n)  # rank by (length, index)
        lbin = (rank * nl // n).astype(np.uint16)
        return lbin, np.bincount(lbin, minlength=nl), None

    def _cells(self, scores: np.ndarray, members: list[np.ndarray]):
        """Each example's cell (``length_bin * strata + stratum``; -1 for the dropped
        hardest), and per length bin: how many were dropped, the hard cut-off score and the
        score edges of its strata (``None`` for a bin left empty)."""
        strata = int(self.strata)
        cell = np.full(len(scores), -1, dtype=np.int64)
        dropped, hard_cut, score_edges = [], [], []
        for b, m in enumerate(members):  # a loop over length bins
            k = hard_cutoff_count(len(m), self.beta)
            dropped.append(k)
            s = scores[m]
            hard = extreme_k(s, k, largest=True)  # ties: the smaller position is harder
            hard_cut.append(float(s[hard].min()) if k else None)
            keep = np.ones(len(m), dtype=bool)
            keep[hard] = False
            pool, s = m[keep], s[keep]
            if not len(pool):
                score_edges.append(None)
                continue
            edges = strata_edges(float(s.min()), float(s.max()), strata)
            if not np.isfinite(edges).all():
                raise ValueError(f"{self.name}: a score range is too wide to bin in float64")
            cell[pool] = b * strata + bin_scores(s, edges)[0].astype(np.int64)
            score_edges.append(edges)
        return cell, dropped, hard_cut, score_edges


def _spans(
    lengths: np.ndarray, length_edges: np.ndarray | None, members: list[np.ndarray]
) -> list[tuple[float | None, float | None]]:
    """The residue range each length bin covers: log binning, its edges (the outer ones
    exactly the shortest and longest); quantile binning, its members' range."""
    if length_edges is not None:
        edges = np.exp(length_edges)  # shown in residues; the ends exactly
        edges[0], edges[-1] = max(lengths.min(), 1), max(lengths.max(), 1)
        return [(float(edges[b]), float(edges[b + 1])) for b in range(len(members))]
    return [
        (float(lengths[m].min()), float(lengths[m].max())) if len(m) else (None, None)
        for m in members
    ]


@dataclass(frozen=True, kw_only=True)
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
        check_cci_parameters(self)
        check_count("max_per_cluster", self.max_per_cluster, 1)
        check_clustering(self)

    def select(
        self,
        scores: ArrayLike,
        budget: int | float | str,
        clusters: ArrayLike,
        *,
        keys: np.ndarray | None = None,
    ) -> Selection:
        """Choose ``budget`` positions; ``clusters[i]`` labels example ``i``'s cluster.

        ``budget`` and ``keys``: as for :meth:`bioprune.selection.cci.CoverageCentric.select`.
        """
        scores = check_scores(scores, self.name)
        n, m = len(scores), int(self.max_per_cluster)
        budget = as_count(budget, n)
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
