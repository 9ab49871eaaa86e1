"""Length-bucketed batches under a token budget, and masked-batch collation.

Shared by the influence engine and training so that padding waste stays small
and every stage pads the same way. Padding never changes an example's loss:
pads get attention mask 0 and label ``IGNORE_INDEX``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bioprune.data.alphabet import Alphabet
from bioprune.data.masking import IGNORE_INDEX, MaskDraw, apply_mask

__all__ = ["MaskedBatch", "collate_masked", "padding_fraction", "token_budget_batches"]


def token_budget_batches(
    framed_lengths: np.ndarray,
    indices: np.ndarray | None = None,
    *,
    max_tokens: int,
    max_batch_size: int | None = None,
) -> list[np.ndarray]:
    """Group examples into batches whose padded size ``count * longest`` fits ``max_tokens``.

    Examples are sorted by decreasing framed length (ties by index, so the
    result is deterministic), then cut greedily: a batch starting at an
    example of length ``L`` holds ``max_tokens // L`` examples. The first batch
    holds the longest examples, so an out-of-memory error shows at once.
    Python loops once per *batch*, never per example.

    Parameters
    ----------
    framed_lengths : int array, framed length (residues + 2) of every example
        listed in ``indices`` (or of examples ``0..n-1``).
    indices : the corpus indices of those examples (default ``arange(n)``).
    max_tokens : padded-token budget per batch; a single example longer than
        the budget gets a batch of its own.
    max_batch_size : optional cap on examples per batch.

    Returns
    -------
    list of int64 arrays of corpus indices.
    """
    lengths = np.asarray(framed_lengths, dtype=np.int64)
    idx = np.arange(len(lengths), dtype=np.int64) if indices is None else np.asarray(indices)
    if len(idx) != len(lengths):
        raise ValueError("indices and framed_lengths differ in length")
    if max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1 (got {max_tokens})")
    order = np.lexsort((idx, -lengths))
    lengths, idx = lengths[order], idx[order]
    batches: list[np.ndarray] = []
    start, n = 0, len(idx)
    while start < n:
        size = max(1, max_tokens // int(lengths[start]))
        if max_batch_size is not None:
            size = min(size, max_batch_size)
        batches.append(idx[start : start + size].astype(np.int64))
        start += size
    return batches


def padding_fraction(batches: Sequence[np.ndarray], framed_lengths_of: np.ndarray) -> float:
    """Fraction of padded token slots that are padding, over ``batches``.

    ``framed_lengths_of[i]`` is the framed length of corpus example ``i``.
    """
    real = padded = 0
    for b in batches:
        ls = framed_lengths_of[b]
        real += int(ls.sum())
        padded += int(ls.max()) * len(b)
    return 1.0 - real / padded if padded else 0.0


@dataclass
class MaskedBatch:
    """A padded batch of masked examples, as NumPy arrays (int64, shape ``(B, T)``)."""

    indices: np.ndarray
    input_ids: np.ndarray
    attention_mask: np.ndarray
    labels: np.ndarray

    def to_torch(self, device=None) -> dict:
        """``input_ids``, ``attention_mask``, ``labels`` as torch tensors on ``device``."""
        import torch

        return {
            "input_ids": torch.from_numpy(self.input_ids).to(device),
            "attention_mask": torch.from_numpy(self.attention_mask).to(device),
            "labels": torch.from_numpy(self.labels).to(device),
        }


def collate_masked(
    framed: Sequence[np.ndarray],
    draws: Sequence[MaskDraw],
    alphabet: Alphabet,
    indices: np.ndarray | None = None,
) -> MaskedBatch:
    """Pad framed examples with their mask draws to one batch (right padding)."""
    if len(framed) != len(draws):
        raise ValueError("one mask draw per example is needed")
    width = max(len(f) for f in framed)
    b = len(framed)
    input_ids = np.full((b, width), alphabet.pad_id, dtype=np.int64)
    labels = np.full((b, width), IGNORE_INDEX, dtype=np.int64)
    attention = np.zeros((b, width), dtype=np.int64)
    for row, (f, d) in enumerate(zip(framed, draws, strict=True)):
        x, y = apply_mask(f, d)
        input_ids[row, : len(f)] = x
        labels[row, : len(f)] = y
        attention[row, : len(f)] = 1
    idx = np.arange(b) if indices is None else np.asarray(indices, dtype=np.int64)
    return MaskedBatch(indices=idx, input_ids=input_ids, attention_mask=attention, labels=labels)
