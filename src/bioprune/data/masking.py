"""Deterministic masked-language-model corruption (method.md section 3).

One *draw* is a pure function of ``(seed, example index, draw)``: a NumPy
``Generator`` seeded with ``[seed, index, draw]`` picks the positions and the
replacement tokens. The same example therefore gets the same masks in the
Fisher pass, the scoring pass, on any rank, in any batch and after any restart.
Training passes the epoch as ``draw`` so that every epoch gets fresh masks.

Rules:

- ``n = max(1, floor(0.15 * L + u))`` residue positions are selected, ``u``
  uniform in [0, 1): probabilistic rounding makes the expected fraction exactly
  15% for every length while keeping at least one position; positions are drawn
  uniformly without replacement among the ``L`` residues (never ``<cls>``,
  ``<eos>`` or ``<pad>``);
- each selected position independently becomes ``<mask>`` with probability 0.8,
  a random *canonical residue* (A/C/G/U, or the 20 standard amino acids) with
  probability 0.1, and stays unchanged with probability 0.1;
- the loss is the mean cross-entropy over the selected positions.

Examples
--------
>>> from bioprune.data.alphabet import get_alphabet
>>> rna = get_alphabet("rna")
>>> d = mask_draw(rna.encode("ACGUACGUACGUACGUACGU"), rna, seed=0, index=7, draw=0)
>>> d == mask_draw(rna.encode("ACGUACGUACGUACGUACGU"), rna, seed=0, index=7, draw=0)
True
>>> bool((d.positions >= 1).all() and (d.positions <= 20).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bioprune.data.alphabet import Alphabet

__all__ = [
    "MASK_FRACTION",
    "MLM_PROBABILITY",
    "RANDOM_FRACTION",
    "MaskDraw",
    "apply_mask",
    "mask_draw",
]

MLM_PROBABILITY = 0.15
MASK_FRACTION = 0.8
RANDOM_FRACTION = 0.1
#: Label value ignored by the cross-entropy (PyTorch's default ``ignore_index``).
IGNORE_INDEX = -100


@dataclass(frozen=True, eq=False)
class MaskDraw:
    """One mask draw of one example.

    Attributes
    ----------
    positions : int32 array, sorted, token positions in the *framed* sequence
        (``<cls>`` is position 0, so residues are 1..L).
    inputs : int32 array, the token id placed at each selected position
        (``<mask>``, a random canonical residue, or the original residue).
    """

    positions: np.ndarray
    inputs: np.ndarray

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, MaskDraw):
            return NotImplemented
        return np.array_equal(self.positions, other.positions) and np.array_equal(
            self.inputs, other.inputs
        )


def mask_draw(
    residue_ids: np.ndarray,
    alphabet: Alphabet,
    *,
    seed: int,
    index: int,
    draw: int = 0,
) -> MaskDraw:
    """Draw the MLM corruption of one example.

    Parameters
    ----------
    residue_ids : the example's residue token ids, without ``<cls>``/``<eos>``.
    alphabet : its alphabet (gives ``<mask>`` and the canonical residues).
    seed, index, draw : non-negative integers; the draw depends on nothing else.
    """
    length = len(residue_ids)
    if length == 0:
        raise ValueError(f"example {index} has no residues: nothing to mask")
    if seed < 0 or index < 0 or draw < 0:
        raise ValueError(f"seed, index and draw must be >= 0 (got {seed}, {index}, {draw})")
    rng = np.random.default_rng([seed, index, draw])
    n = max(1, int(np.floor(MLM_PROBABILITY * length + rng.random())))
    n = min(n, length)
    chosen = np.sort(rng.choice(length, size=n, replace=False))
    kind = rng.random(n)
    inputs = np.asarray(residue_ids, dtype=np.int32)[chosen].copy()
    to_mask = kind < MASK_FRACTION
    to_random = (kind >= MASK_FRACTION) & (kind < MASK_FRACTION + RANDOM_FRACTION)
    inputs[to_mask] = alphabet.mask_id
    n_random = int(to_random.sum())
    if n_random:
        inputs[to_random] = rng.choice(alphabet.canonical_ids, size=n_random)
    return MaskDraw(positions=(chosen + 1).astype(np.int32), inputs=inputs)


def apply_mask(framed: np.ndarray, draw: MaskDraw) -> tuple[np.ndarray, np.ndarray]:
    """Corrupted input ids and MLM labels of one framed example.

    Returns ``(input_ids, labels)``, both int64 of the framed length; ``labels``
    holds the original token at the selected positions and ``IGNORE_INDEX``
    elsewhere.
    """
    input_ids = np.array(framed, dtype=np.int64, copy=True)
    labels = np.full(len(framed), IGNORE_INDEX, dtype=np.int64)
    labels[draw.positions] = input_ids[draw.positions]
    input_ids[draw.positions] = draw.inputs
    return input_ids, labels
