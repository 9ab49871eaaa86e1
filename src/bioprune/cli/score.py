"""``bioprune score``: the self-influence of every corpus example (eq. 11).

The options are the fields of :class:`~bioprune.influence.config.ScoreConfig` (those
shared with ``bioprune fisher`` come from its base, ``PassConfig``).
"""

from __future__ import annotations

import typer

from bioprune.cli.fisher import NO_PROGRESS, run_and_report, this_run
from bioprune.cli.options import with_options
from bioprune.influence.config import ScoreConfig


@with_options
def score(cfg: ScoreConfig, no_progress: bool = NO_PROGRESS) -> None:
    """Self-influence I(z) of every example (method.md eq. 11); larger = more influential.

    Several processes: `torchrun --standalone --nproc-per-node N --no-python bioprune score ...`.
    """
    from bioprune.influence.score import compute_scores

    run_and_report(compute_scores, cfg, no_progress, _score_lines)


def _score_lines(res, cfg: ScoreConfig) -> list[str]:
    lines = [
        f"wrote [bold]{cfg.out}[/]: {res.examples:,} examples; this run scored "
        f"{res.processed:,} {this_run(res)}"
    ]
    if res.quantiles:
        lines.append(
            "score quantiles: " + "  ".join(f"{k} {v:.4g}" for k, v in res.quantiles.items())
        )
    if res.nonfinite:
        lines.append(
            f"[yellow]{res.nonfinite} example(s) with non-finite loss or gradient "
            "recorded as NaN[/]"
        )
    return lines


def register(app: typer.Typer) -> None:
    app.command("score")(score)
