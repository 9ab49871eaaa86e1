"""Length-aware influence: the score of the summed masked loss, and the score per masked position.

The paper's self-influence (method.md section 4, eq. 11) is computed from the
gradient of the *mean* masked-LM loss ``L_mean(z, k) = 1/n_k sum_{j in M_k}
ce_j``, where ``n_k = |M_k|`` is the number of positions draw ``k`` selects
(about 15% of the length, :mod:`bioprune.data.masking`). So its squared
gradient norm shrinks roughly as ``1/length`` and the ranking follows length.
``select --reduction`` rescales the scores of a score file, with no new
gradient pass:

``mean`` (default: the paper's definition)
    ``I(z)`` as ``bioprune score`` wrote it.
``sum``
    the self-influence of the *summed* masked loss ``L_sum = n_k L_mean``.
    Its gradient is ``n_k`` times the mean loss's, so for the same Fisher and
    mask draw its score is exactly ``n_k^2 I(z)``. With ``K`` draws the score
    file holds ``1/K sum_k s_k`` (``s_k`` the draw's term) and the per-draw
    terms are gone; ``sum`` is then ``I(z) * mean_k(n_k^2)``, which equals
    ``1/K sum_k n_k^2 s_k`` whenever every draw selects the same number of
    positions, and otherwise differs only because ``n_k`` takes the two
    values ``floor(0.15 L)`` and ``floor(0.15 L) + 1`` (exact for ``K = 1``,
    the default).
``per-masked``
    ``I(z) * mean_k(n_k)``: the summed loss's score divided by the number of
    masked positions, ``|grad L_sum|^2 / n``. If the per-position gradients
    were independent with equal variance, ``|grad L_sum|^2`` would grow as
    ``n`` and the mean loss's score shrink as ``1/n``; this is the rescaling
    that leaves neither trend.

``n_k`` is not stored in the score file: it is recomputed from the file's
``mask_seed``, ``mask_draws`` and each example's length with the masking
rule itself (:func:`masked_counts`: one NumPy generator per example and draw,
the same calls :func:`bioprune.data.masking.mask_draw` makes first), so score
files written before this option work unchanged.
"""

from __future__ import annotations

import math

import numpy as np

from bioprune.data.masking import MLM_PROBABILITY

__all__ = ["REDUCTIONS", "masked_counts", "rescale_scores"]

REDUCTIONS = ("mean", "sum", "per-masked")


def masked_counts(lengths: np.ndarray, seed: int, draws: int) -> np.ndarray:
    """``n_k`` of every example (row, corpus index = position) and draw (column), int64.

    ``n = min(L, max(1, floor(0.15 L + u)))`` with ``u`` the first
    ``random()`` of ``numpy.random.default_rng([seed, index, draw])``, as in
    :func:`bioprune.data.masking.mask_draw`.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros((len(lengths), int(draws)), dtype=np.int64)
    for i, length in enumerate(lengths.tolist()):  # one generator per example and draw
        for k in range(int(draws)):
            u = np.random.default_rng([int(seed), i, k]).random()
            out[i, k] = min(length, max(1, math.floor(MLM_PROBABILITY * length + u)))
    return out


def rescale_scores(
    scores: np.ndarray, lengths: np.ndarray, seed: int, draws: int, reduction: str
) -> np.ndarray:
    """The scores under ``reduction`` (module docstring); NaN and inf stay as they are."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"--reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    scores = np.asarray(scores, dtype=np.float64)
    if reduction == "mean":
        return scores
    if len(lengths) != len(scores):
        raise ValueError(
            f"--reduction {reduction}: {len(scores)} scores but {len(lengths)} corpus lengths"
        )
    n = masked_counts(lengths, seed, draws).astype(np.float64)
    factor = (n**2).mean(axis=1) if reduction == "sum" else n.mean(axis=1)
    return scores * factor
