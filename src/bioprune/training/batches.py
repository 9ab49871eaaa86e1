"""Which examples a training step sees: validation split and length-bucketed epoch order.

Everything here is a pure function of its arguments (seed, epoch, indices,
lengths), so any rank, and a run resumed after a crash, computes the same
order without reading a saved data-loader state: the position ``(epoch,
batch)`` is all a checkpoint needs.

Bucketing follows HF ``group_by_length``: shuffle the examples with the epoch's
seed, cut them into *megabatches* of ``megabatch * batch`` examples, sort each
megabatch by length, cut it into batches, then shuffle the batch order. Batches
hold sequences of similar length (little padding) while every epoch still sees
a fresh random order.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MEGABATCH",
    "epoch_batches",
    "micro_batches",
    "validation_split",
]

#: Batches per megabatch (HF ``group_by_length`` uses 50).
MEGABATCH = 50


def validation_split(
    indices: np.ndarray, fraction: float, seed: int, *, min_train: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded held-out split of ``indices`` into ``(train, validation)``, both sorted.

    The validation set holds ``round(fraction * n)`` examples, at least one
    when ``fraction > 0`` and the set has more than ``min_train`` examples,
    and never so many that fewer than ``min_train`` remain for training.
    The draw uses ``numpy.random.default_rng([seed, 0x7661])`` (a stream of its
    own, independent of the epoch order's).
    """
    idx = np.sort(np.asarray(indices, dtype=np.int64))
    n = len(idx)
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"validation fraction must lie in [0, 1) (got {fraction})")
    k = round(fraction * n)
    if fraction > 0 and n > min_train:
        k = max(k, 1)
    k = min(k, max(0, n - min_train))
    if k == 0:
        return idx, np.zeros(0, dtype=np.int64)
    rng = np.random.default_rng([seed, 0x7661])
    held = np.zeros(n, dtype=bool)
    held[rng.choice(n, size=k, replace=False)] = True
    return idx[~held], idx[held]


def epoch_batches(
    indices: np.ndarray,
    lengths: np.ndarray,
    *,
    batch_size: int,
    seed: int,
    epoch: int,
    megabatch: int = MEGABATCH,
) -> list[np.ndarray]:
    """The global batches of one epoch, a pure function of ``(indices, lengths, seed, epoch)``.

    Parameters
    ----------
    indices : int array, corpus indices of the training examples.
    lengths : int array, their lengths (any unit; only their order matters).
    batch_size : examples per (global) batch; the last batch may be smaller.
    seed, epoch : the order is drawn from ``numpy.random.default_rng([seed, epoch])``.
    megabatch : batches per length-sorted megabatch (``1`` sorts within each
        batch only, i.e. no bucketing; a huge value sorts the whole epoch).

    Returns
    -------
    list of int64 arrays of corpus indices, each sorted by decreasing length;
    together they hold every index exactly once.
    """
    idx = np.asarray(indices, dtype=np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    if len(idx) != len(lens):
        raise ValueError("indices and lengths differ in length")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1 (got {batch_size})")
    rng = np.random.default_rng([seed, epoch])
    perm = rng.permutation(len(idx))
    idx, lens = idx[perm], lens[perm]
    span = max(1, megabatch) * batch_size
    batches: list[np.ndarray] = []
    for start in range(0, len(idx), span):
        mi, ml = idx[start : start + span], lens[start : start + span]
        order = np.argsort(-ml, kind="stable")
        mi = mi[order]
        batches.extend(mi[b : b + batch_size] for b in range(0, len(mi), batch_size))
    # The batch order is shuffled so that one megabatch's longest batch is not
    # always first; the last (possibly short) batch stays wherever it lands.
    return [batches[i] for i in rng.permutation(len(batches))]


def micro_batches(
    batch: np.ndarray, grad_accum: int, world_size: int, rank: int
) -> list[np.ndarray]:
    """This rank's micro-batches of a global batch.

    The global batch (sorted by length) is cut into ``grad_accum * world_size``
    contiguous chunks of near-equal size (``numpy.array_split``); micro-step
    ``a`` of rank ``r`` takes chunk ``a * world_size + r``, so the ranks of one
    micro-step hold neighbouring lengths. A chunk may be empty when the last
    batch of an epoch is short; the loss normalisation makes that harmless.
    """
    chunks = np.array_split(np.asarray(batch, dtype=np.int64), grad_accum * world_size)
    return [chunks[a * world_size + rank] for a in range(grad_accum)]
