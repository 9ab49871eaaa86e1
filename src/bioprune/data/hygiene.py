"""Per-record hygiene flags of ``prepare``: low complexity, unknown-residue runs, exact duplicates.

All three are computed on the *normalised* sequence as it is written (upper
case, RNA ``T`` -> ``U``, cropped to ``max_length``, invalid characters
replaced), a batch at a time with NumPy (no Python loop over residues).

**Low complexity** -- the normalised k-mer entropy. Over the overlapping
k-mers of standard residues (``k = 3`` over ACGU for RNA: 64 words; ``k = 1``
over the 20 standard amino acids for protein; a k-mer touching any other
residue is not counted), with ``l`` the number of counted k-mers and ``p_w``
their frequencies::

    complexity = H / log2(min(W, l)),   H = -sum_w p_w log2 p_w

(``W`` the number of possible words). 1 means every k-mer that could differ
does; a homopolymer scores 0, a dinucleotide repeat ``(AU)n`` 1 / log2(min(64,
l)) (about 0.17 at 100 nt), ``(CAG)n`` about 0.26, ``(UUUUC)n`` about 0.32.
A record is **low complexity** when ``complexity <`` :data:`LOW_COMPLEXITY`
(0.5: repeats of a unit up to about 8 residues fall below, real RNAs score
0.8-1.0, see docs/corpus.md) and it has at least :data:`MIN_KMERS` counted
k-mers (shorter records are never flagged: their entropy says little). This
is the entropy form of DUST's triplet statistic (Morgulis et al. 2006), taken
over the whole record rather than 64-nt windows, so a short repeat inside a
long real sequence does not flag it.

**N-run** -- a run of at least :data:`N_RUN` (10) consecutive unknown residues
(``N`` for RNA, ``X`` for protein) inside one record: a scaffold gap or a
masked region rather than a sequence a model should learn from.

**Exact duplicate** -- the normalised sequence equals that of an earlier
written record; compared by a 64-bit blake2b hash of the sequence (the
probability of any collision among 23.7M records is about n^2/2^65 = 1.5e-5;
a collision would count, or with ``--dedup exact`` drop, one unique record).
"""

from __future__ import annotations

import numpy as np

from bioprune.data.alphabet import Alphabet

__all__ = [
    "LOW_COMPLEXITY",
    "MIN_KMERS",
    "N_RUN",
    "complexity_scores",
    "kmer_spec",
    "longest_unknown_runs",
]

#: Records with a normalised k-mer entropy below this are low complexity.
LOW_COMPLEXITY = 0.5
#: Records with fewer counted k-mers are never flagged low complexity.
MIN_KMERS = 8
#: Records with at least this many consecutive unknown residues have an N-run.
N_RUN = 10

_STANDARD = {"rna": "ACGU", "protein": "ACDEFGHIKLMNPQRSTVWY"}


def kmer_spec(alphabet: Alphabet) -> tuple[np.ndarray, int, int]:
    """(token id -> symbol 0..S-1 or -1 (int16, one per token), S, k) for ``alphabet``."""
    letters = _STANDARD.get(alphabet.name)
    if letters is None:
        raise ValueError(f"no complexity measure for the {alphabet.name!r} alphabet")
    symbol = np.full(max(256, len(alphabet.tokens)), -1, dtype=np.int16)
    for s, letter in enumerate(letters):
        symbol[alphabet.tokens.index(letter)] = s
    return symbol, len(letters), 3 if alphabet.name == "rna" else 1


def complexity_scores(
    tokens: np.ndarray, offsets: np.ndarray, symbol: np.ndarray, size: int, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Normalised k-mer entropy of each sequence of a concatenated batch.

    ``tokens`` holds token ids of all sequences back to back; sequence ``i`` is
    ``tokens[offsets[i]:offsets[i + 1]]``. Returns ``(complexity, kmers)``:
    float64 in [0, 1] (1.0 where fewer than 2 k-mers were counted) and the
    number of counted k-mers (int64), one per sequence.
    """
    n = len(offsets) - 1
    words = size**k
    total = len(tokens)
    lengths = np.diff(offsets)
    out = np.ones(n, dtype=np.float64)
    kmers = np.zeros(n, dtype=np.int64)
    if n == 0 or total < k:
        return out, kmers
    sym = symbol[tokens]  # int16, -1: not a standard residue
    m = total - k + 1  # k-mer start positions in the concatenation
    code = sym[:m].astype(np.int64)
    bad = sym[:m] < 0
    for j in range(1, k):  # a loop over k (<= 3), not over residues
        part = sym[j : j + m]
        bad |= part < 0
        code *= size
        code += part
    # a k-mer starting in the last k - 1 residues of a sequence runs into the next one
    ends = offsets[1:]
    for j in range(1, k):
        cross = ends - j
        bad[cross[(cross >= 0) & (cross < m)]] = True
    # Each sequence gets words + 1 bins; the last one collects the k-mers not counted.
    code[bad] = words
    key = np.repeat(np.arange(n, dtype=np.int64) * (words + 1), lengths)[:m]
    key += code
    counts = np.bincount(key, minlength=n * (words + 1)).reshape(n, words + 1)[:, :words]
    kmers = counts.sum(axis=1)
    ok = kmers >= 2
    count = kmers[ok].astype(np.float64)  # l in the module docstring
    # H = log2(l) - sum_w c_w log2(c_w) / l; c log2 c is looked up for the integer counts
    # (0 for c = 0 and c = 1)
    grid = np.arange(int(counts.max()) + 1, dtype=np.float64)
    clogc = grid * np.log2(np.maximum(grid, 1.0))
    h = np.log2(count) - clogc[counts[ok]].sum(axis=1) / count
    h[h < 1e-9] = 0.0  # one word only: exactly 0, not a rounding residue
    out[ok] = h / np.log2(np.minimum(words, count))
    np.clip(out, 0.0, 1.0, out=out)
    return out, kmers


def longest_unknown_runs(tokens: np.ndarray, offsets: np.ndarray, unknown_id: int) -> np.ndarray:
    """The longest run of ``unknown_id`` inside each sequence (int64; runs never cross
    a sequence boundary)."""
    n = len(offsets) - 1
    longest = np.zeros(n, dtype=np.int64)
    unk = np.asarray(tokens) == unknown_id
    if not unk.any():
        return longest
    first = np.zeros(len(unk), dtype=bool)
    last = np.zeros(len(unk), dtype=bool)
    starts_at = offsets[:-1][np.diff(offsets) > 0]
    first[starts_at] = True
    last[offsets[1:][np.diff(offsets) > 0] - 1] = True
    prev = np.r_[False, unk[:-1]]
    nxt = np.r_[unk[1:], False]
    run_start = np.flatnonzero(unk & (~prev | first))
    run_end = np.flatnonzero(unk & (~nxt | last)) + 1
    owner = np.searchsorted(offsets, run_start, side="right") - 1
    np.maximum.at(longest, owner, run_end - run_start)
    return longest
