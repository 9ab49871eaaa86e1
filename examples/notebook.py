"""bioprune in a notebook: the whole pipeline in memory on a few hundred RNAs.

Each step is one call on objects you keep (a corpus, a model, a Fisher, the
scores), as in a Jupyter notebook; nothing is written to disk and nothing is
printed by the library. Run it as a script to see the numbers::

    python examples/notebook.py

or copy the body of :func:`run` into notebook cells. The steps:

1. a corpus held in memory (:meth:`bioprune.Corpus.from_sequences`);
2. a reference model: a ``tiny`` masked LM trained for a few steps;
3. the diagonal Fisher of its loss on a random subset, then every sequence's
   self-influence score (the same code as ``bioprune fisher`` / ``score``);
4. a coverage-centric coreset of the scores (``bioprune select --method cci``);
5. a fresh model pretrained on the coreset only;
6. its downstream evaluation on the shipped Rfam family task.

Long calls take ``progress=`` (a callable receiving
:class:`bioprune.ProgressEvent`) and log through the ``bioprune`` logger; turn
either on when you want to watch (``logging.basicConfig(level="INFO")``).
"""

from __future__ import annotations

import gzip
from importlib import resources
from typing import Any

import bioprune as bp

#: The demo corpus and task shipped with bioprune.
DEMO = resources.files("bioprune") / "resources" / "demo" / "rna_corpus.fasta.gz"
TASK = resources.files("bioprune") / "resources" / "tasks" / "rna_family"


def demo_sequences(n: int = 200, max_length: int = 160) -> tuple[list[str], list[str]]:
    """Ids and sequences of the first ``n`` demo RNAs of at most ``max_length`` nt."""
    ids: list[str] = []
    sequences: list[str] = []
    with gzip.open(DEMO, "rt") as fh:  # type: ignore[arg-type]
        header, parts = None, []
        for line in [*fh, ">"]:
            if line.startswith(">"):
                sequence = "".join(parts)
                if header is not None and 0 < len(sequence) <= max_length:
                    ids.append(header.split()[0])
                    sequences.append(sequence)
                    if len(ids) == n:
                        break
                header, parts = line[1:].strip(), []
            else:
                parts.append(line.strip())
    return ids, sequences


def run(
    ids: list[str],
    sequences: list[str],
    *,
    seed: int = 0,
    steps: int = 4,
    budget: int = 60,
) -> dict[str, Any]:
    """The pipeline on ``sequences``; returns every intermediate object."""
    corpus = bp.Corpus.from_sequences(sequences, alphabet="rna", ids=ids)

    # a reference model (in practice: bp.load_model("reference-ft/"))
    reference = bp.new_model("tiny", corpus.alphabet, seed)
    reference = bp.pretrain_model(corpus, model=reference, steps=steps, lr=1e-3, seed=seed)

    # scores: the Fisher on a random subset, then every sequence's self-influence
    fisher = bp.diagonal_fisher(reference, corpus, subset=64, seed=seed)
    scores = bp.self_influence(reference, corpus, fisher, seed=seed)

    # a coreset of `budget` sequences, covering the score range
    strategy = bp.CoverageCentric(beta=0.1, strata=5, seed=seed)
    picks = strategy.select(scores.score, budget)
    coreset = bp.Corpus.from_sequences(
        [sequences[i] for i in picks.indices],
        alphabet="rna",
        ids=[ids[i] for i in picks.indices],
    )

    # a model pretrained on the coreset, evaluated downstream
    student = bp.pretrain_model(coreset, preset="tiny", steps=steps, lr=1e-3, seed=seed)
    task = bp.Task.open(TASK)
    result = bp.evaluate(student, task, protocol="frozen-mlp", seeds=(seed,), epochs=2)
    return {
        "corpus": corpus,
        "reference": reference,
        "fisher": fisher,
        "scores": scores,
        "selection": picks,
        "student": student,
        "evaluation": result,
    }


def main() -> None:
    ids, sequences = demo_sequences()
    out = run(ids, sequences)
    scores, picks = out["scores"], out["selection"]
    print(
        f"{len(out['corpus'])} sequences; scores {scores.score.min():.3g}..{scores.score.max():.3g}"
    )
    print(f"coreset: {len(picks)} sequences; downstream: {out['evaluation'].metrics}")


if __name__ == "__main__":
    main()
