"""Summary statistics of a prepared corpus (``bioprune info``).

Everything is computed from the memory-mapped token store: lengths from the
offsets (8 bytes per sequence in RAM), residue composition by ``np.bincount``
over the tokens in fixed-size chunks, so the tokens are never all in RAM.

Examples
--------
>>> stats = corpus_stats(Corpus("corpus/"))          # doctest: +SKIP
>>> stats["lengths"]["median"], stats["composition"]["A"]["fraction"]  # doctest: +SKIP
(150.0, 0.251)
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bioprune.artifacts import atomic_path
from bioprune.data.corpus import Corpus

__all__ = ["QUANTILES", "composition_counts", "corpus_stats", "plot_stats"]

#: Length quantiles reported, as (name, q).
QUANTILES: tuple[tuple[str, float], ...] = (
    ("min", 0.0),
    ("p5", 0.05),
    ("p25", 0.25),
    ("median", 0.5),
    ("p75", 0.75),
    ("p95", 0.95),
    ("max", 1.0),
)

#: Tokens per ``np.bincount`` call (64 MiB of uint8).
CHUNK_TOKENS = 1 << 26


def composition_counts(
    tokens: np.ndarray, vocab_size: int, chunk: int = CHUNK_TOKENS
) -> np.ndarray:
    """Occurrences of each token id (int64, shape ``(vocab_size,)``), read in chunks."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for start in range(0, len(tokens), chunk):
        part = np.asarray(tokens[start : start + chunk])
        counts += np.bincount(part, minlength=vocab_size)[:vocab_size]
    return counts


def corpus_stats(corpus: Corpus, chunk: int = CHUNK_TOKENS, *, verify: bool = False) -> dict:
    """Counts, length quantiles and residue composition of ``corpus``.

    ``verify`` also recomputes the content checksum (:meth:`Corpus.verify`; an
    ``InputError`` when the data no longer matches the manifest); the result's
    ``checksum_verified`` says whether it was.

    Returns
    -------
    dict with ``path``, ``alphabet``, ``num_sequences``, ``num_tokens`` (residues,
    without ``<cls>``/``<eos>``), ``lengths`` (``min``, ``p5``, ``p25``,
    ``median``, ``p75``, ``p95``, ``max``, ``mean``; residues; quantiles by
    linear interpolation), ``composition`` (token -> ``count`` and
    ``fraction`` of all residues; every residue token of the alphabet, plus
    any other token that occurs), and from the manifest ``max_length``,
    ``counts`` (prepare's skip/crop/replace counts and its hygiene counts:
    ``low_complexity``, ``n_runs``, ``exact_duplicates`` and what was skipped
    for them), ``hygiene`` (the thresholds and policies behind those counts;
    ``None`` for a corpus prepared before they existed), ``sources``, ``notes``
    (prepare's warnings), ``checksum``/``sequences_checksum`` and
    ``checksum_verified``.
    """
    if verify:
        corpus.verify()
    lengths = corpus.lengths
    alphabet = corpus.alphabet
    if len(lengths):
        qs = np.quantile(lengths, [q for _, q in QUANTILES])
        length_stats = {name: float(v) for (name, _), v in zip(QUANTILES, qs, strict=True)}
        length_stats["mean"] = float(lengths.mean())
    else:
        length_stats = {name: 0.0 for name, _ in QUANTILES} | {"mean": 0.0}
    counts = composition_counts(corpus.tokens, len(alphabet), chunk)
    total = int(counts.sum())
    residue_ids = set(alphabet.residue_ids.tolist())
    composition = {
        alphabet.tokens[i]: {"count": int(c), "fraction": (float(c) / total) if total else 0.0}
        for i, c in enumerate(counts.tolist())
        if i in residue_ids or c
    }
    manifest = corpus.manifest
    return {
        "path": str(corpus.path),
        "alphabet": alphabet.name,
        "num_sequences": len(corpus),
        "num_tokens": int(lengths.sum()),
        "lengths": length_stats,
        "composition": composition,
        "max_length": manifest.get("max_length"),
        "counts": manifest.get("counts", {}),
        "hygiene": manifest.get("hygiene"),
        "sources": manifest.get("sources", []),
        "checksum": manifest.get("checksum"),
        "checksum_verified": verify,
        "sequences_checksum": manifest.get("sequences_checksum"),
        "notes": manifest.get("notes", []),
        "bioprune_version": manifest.get("bioprune_version"),
        "created": manifest.get("created"),
    }


def _log_scale_needed(hist: np.ndarray) -> bool:
    """A log y-axis when the tallest bin dwarfs the typical non-empty bin."""
    nonzero = hist[hist > 0]
    return len(nonzero) > 1 and nonzero.max() > 20 * np.median(nonzero)


def plot_stats(corpus: Corpus, stats: dict, path: str | Path, bins: int = 60) -> Path:
    """Write a PNG: length histogram (left) and residue composition (right).

    The histogram's y-axis is logarithmic when the distribution is skewed
    (tallest bin > 20x the median non-empty bin), and the ``max_length`` crop
    limit is drawn as a dashed line. Written atomically.
    """
    from bioprune.report.figures import figure

    path = Path(path)
    lengths = corpus.lengths
    fig = figure(12, 4.5)
    ax_len, ax_comp = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    if len(lengths):
        hist, edges, _ = ax_len.hist(lengths, bins=bins, color="#4C72B0", edgecolor="white")
        if _log_scale_needed(hist):
            ax_len.set_yscale("log")
            ax_len.set_ylabel("sequences (log scale)")
        else:
            ax_len.set_ylabel("sequences")
        med = stats["lengths"]["median"]
        ax_len.axvline(med, color="black", linewidth=1, alpha=0.7, label=f"median {med:g}")
        limit = stats.get("max_length")
        if limit and limit <= edges[-1] * 1.05:
            ax_len.axvline(limit, color="#C44E52", linestyle="--", label=f"max_length {limit}")
        ax_len.legend(frameon=False, loc="upper right")
    ax_len.set_xlabel("length (residues)")
    ax_len.set_title(f"Length of {stats['num_sequences']:,} sequences")

    comp = stats["composition"]
    tokens = list(comp)
    fractions = [comp[t]["fraction"] for t in tokens]
    ax_comp.bar(range(len(tokens)), fractions, color="#55A868")
    ax_comp.set_xticks(range(len(tokens)), tokens, fontsize=8 if len(tokens) > 20 else 10)
    ax_comp.set_ylabel("fraction of residues")
    ax_comp.set_title(f"Residue composition ({stats['num_tokens']:,} residues)")
    name = "in-memory corpus" if corpus.path is None else Path(stats["path"]).name
    fig.suptitle(f"{name} ({stats['alphabet']})")
    fig.tight_layout()

    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=120)
    return path
