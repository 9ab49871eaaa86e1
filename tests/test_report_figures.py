"""Plots leave matplotlib's global state alone: no backend switch, no pyplot figures."""

from __future__ import annotations

import subprocess
import sys
import textwrap

PNG = b"\x89PNG\r\n\x1a\n"

# Run in a fresh interpreter whose caller chose the "svg" backend: every plot bioprune
# makes must leave that choice (and pyplot) untouched.
SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import matplotlib
    import numpy as np

    matplotlib.use("svg")
    from bioprune.data.corpus import Corpus
    from bioprune.data.stats import corpus_stats, plot_stats
    from bioprune.report import coreset as C
    from bioprune.report import diagnostics as D
    from bioprune.report import study as S

    out = Path(sys.argv[1])
    corpus = Corpus.from_sequences(["ACGU" * k for k in range(1, 30)])
    plot_stats(corpus, corpus_stats(corpus), out / "stats.png")
    lengths = corpus.lengths.astype(float)
    stats = {"corpus": C._describe(lengths), "coreset": C._describe(lengths[:5])}
    C._plot_lengths(out / "lengths.png", lengths, lengths[:5], stats)
    rows = [{"token": t, "corpus_fraction": 0.25, "coreset_fraction": 0.2} for t in "ACGU"]
    C._plot_composition(out / "composition.png", rows)
    C._plot_labels(out / "labels.png", [{"label": "a", "corpus": 9, "coreset": 2}], "family")
    scores = np.random.default_rng(0).lognormal(0, 2, len(lengths))
    C._plot_scores(out / "scores.png", scores, scores[:5], {"method": "topk"})
    d = D.score_diagnostics(scores, lengths)
    D.plot_score_vs_length(out / "score_vs_length.png", scores, lengths, d, None)
    (out / "curves.png").write_bytes(S.plot_training_curves(
        {"m": [{"tokens": 10, "val_loss": 3.0}, {"tokens": 100, "val_loss": 2.0}]}))
    (out / "overlap.png").write_bytes(S.plot_overlap(["a", "b"], np.eye(2)))
    assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
    assert "matplotlib.pyplot" not in sys.modules
    """
)


def test_every_plot_leaves_the_backend_and_pyplot_alone(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and done.stderr == ""  # library code prints nothing
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 8, names
    for name in names:
        assert (tmp_path / name).read_bytes()[:8] == PNG, name
