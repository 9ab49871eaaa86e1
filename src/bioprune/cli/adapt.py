"""``bioprune adapt``: one epoch of MLM on a seeded random subset before scoring."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import parse_budget
from bioprune.cli.pretrain import (
    CHECKPOINT_EVERY,
    DEVICE,
    DTYPE,
    KEEP_CHECKPOINT,
    LOG_EVERY,
    LOG_EVERY_S,
    MAX_TIME,
    OVERWRITE,
    PROGRESS,
    WEIGHT_DECAY,
    finish,
    run_training,
    training_config,
)


def adapt(
    model: Path = typer.Option(..., "--model", help="Model directory to adapt."),
    corpus: Path = typer.Option(..., "--corpus", help="Prepared corpus directory."),
    subset_size: str = typer.Option(
        ..., "--subset-size", help="Examples in the random subset: a count or a fraction."
    ),
    out: Path = typer.Option(..., "--out", help="Adapted model directory to write."),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset, its order and masks."),
    lr: float = typer.Option(1e-5, "--lr", help="AdamW learning rate (paper: 1e-5)."),
    weight_decay: float = WEIGHT_DECAY,
    warmup_steps: int = typer.Option(50, "--warmup-steps", help="Linear warmup steps."),
    schedule: str = typer.Option(
        "constant", "--schedule", help="After warmup: constant (default), linear or inverse-sqrt."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Examples per micro-step."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-steps per optimizer step."),
    checkpoint_every: int = CHECKPOINT_EVERY,
    log_every: int = LOG_EVERY,
    log_every_s: float = LOG_EVERY_S,
    max_time: str = MAX_TIME,
    keep_checkpoint: bool = KEEP_CHECKPOINT,
    device: str = DEVICE,
    dtype: str = DTYPE,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from OUT.ckpt if present (a larger --max-time extends it).",
    ),
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """One epoch of MLM on a seeded random subset before scoring (paper A.5: AdamW 1e-5, warmup 50, batch 16); saves the subset's indices for `bioprune fisher --subset-from`."""  # noqa: E501
    from bioprune.data.corpus import Corpus
    from bioprune.training.adapt import AdaptConfig
    from bioprune.training.adapt import adapt as run_adapt

    params = dict(locals())
    n = len(Corpus(corpus))
    size = parse_budget(subset_size, n, what="subset size")
    if size > n:
        raise ValueError(f"subset size {size} exceeds the corpus's {n} examples")
    config = AdaptConfig(
        model=model, corpus=corpus, out=out, subset_size=size,
        training=training_config(params, epochs=1),
    )  # fmt: skip
    info, stop = run_training(run_adapt, config)
    # The two numbers are curve rows: each the mean loss over a window of
    # --log-every steps (the first window still in warmup), not single batches.
    # On a small subset at lr 1e-5 the second may be higher; that is noise.
    finish(
        info,
        out,
        stop,
        f"wrote [bold]{out}[/]: {size:,} examples, {info['steps']} steps, "
        f"train loss (mean of the first -> last {log_every}-step window) "
        f"{_fmt(info['train_loss_first'])} -> {_fmt(info['train_loss_final'])}, "
        f"{info['wall_s']:.1f} s",
    )


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
