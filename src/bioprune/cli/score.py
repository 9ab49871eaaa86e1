"""``bioprune score``: the self-influence of every corpus example (eq. 11)."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.fisher import (
    BATCH_TOKENS,
    DEVICE,
    DTYPE,
    FISHER_MODE,
    LOG_EVERY_S,
    MAX_BATCH,
    NO_PROGRESS,
    ON_NONFINITE,
    OVERWRITE,
    PART_BATCHES,
    RESUME,
    SAVE_MASKS,
    config_from,
    run_stage,
    this_run,
)


def score(
    model: Path = typer.Option(..., "--model", help="Model directory (HF format)."),
    corpus: Path = typer.Option(..., "--corpus", help="Corpus directory (bioprune prepare)."),
    fisher: Path = typer.Option(..., "--fisher", help="Fisher file (bioprune fisher)."),
    out: Path = typer.Option(..., "--out", help="Scores to write (.parquet)."),
    mask_draws: int = typer.Option(
        None, "--mask-draws", help="Mask draws K per example (default: the Fisher's)."
    ),
    seed: int = typer.Option(
        None, "--seed", help="Mask seed (default: the Fisher's, so masks match)."
    ),
    params: str = typer.Option(
        None,
        "--params",
        help="Restrict to these of the Fisher's tensors: lm_head, layers:I:J or a regex "
        "(default: all of them).",
    ),
    batch_tokens: int = BATCH_TOKENS,
    max_batch_size: int = MAX_BATCH,
    part_batches: int = PART_BATCHES,
    device: str = DEVICE,
    dtype: str = DTYPE,
    on_nonfinite: str = ON_NONFINITE,
    save_masks: Path = SAVE_MASKS,
    resume: bool = RESUME,
    overwrite: bool = OVERWRITE,
    no_progress: bool = NO_PROGRESS,
    log_every_s: float = LOG_EVERY_S,
    fisher_mode: str = FISHER_MODE,
) -> None:
    """Self-influence I(z) of every example (method.md eq. 11); larger = more influential.

    Several processes: `torchrun --standalone --nproc-per-node N --no-python bioprune score ...`.
    """
    from bioprune.influence.score import ScoreConfig, compute_scores

    cfg = config_from(ScoreConfig, locals())
    res = run_stage(compute_scores, cfg)
    if res is not None:
        console.print(
            f"wrote [bold]{out}[/]: {res.examples:,} examples; this run scored "
            f"{res.processed:,} {this_run(res)}"
        )
        if res.quantiles:
            q = "  ".join(f"{k} {v:.4g}" for k, v in res.quantiles.items())
            console.print(f"score quantiles: {q}")
        if res.nonfinite:
            console.print(
                f"[yellow]{res.nonfinite} example(s) with non-finite loss or gradient "
                "recorded as NaN[/]"
            )


def register(app: typer.Typer) -> None:
    app.command("score")(score)
