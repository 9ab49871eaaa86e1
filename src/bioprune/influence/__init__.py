"""Gradient self-influence: the diagonal Fisher (eq. 9) and self-influence scores (eq. 11).

In memory (writes nothing)::

    fisher = diagonal_fisher(model, corpus, subset=2000, seed=0)
    scores = self_influence(model, corpus, fisher)      # Scores; numpy.asarray(scores)
    fisher.save("F.safetensors"); scores.save("scores.parquet")

On disk, resumable and multi-process (what ``bioprune fisher`` / ``score`` run):
:func:`~bioprune.influence.fisher.compute_fisher`,
:func:`~bioprune.influence.score.compute_scores`.
"""

from bioprune.influence.fisher import Fisher, diagonal_fisher, load_fisher
from bioprune.influence.score import Scores, self_influence

__all__ = ["Fisher", "Scores", "diagonal_fisher", "load_fisher", "self_influence"]
