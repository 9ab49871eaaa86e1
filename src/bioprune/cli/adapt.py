"""``bioprune adapt``: one epoch of MLM on a seeded random subset before scoring."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console, parse_budget
from bioprune.cli.pretrain import (
    KEEP_CHECKPOINT,
    LOG_EVERY_S,
    MAX_TIME,
    PROGRESS,
    parse_duration,
    report_stop,
    stop_on_signals,
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
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    warmup_steps: int = typer.Option(50, "--warmup-steps", help="Linear warmup steps."),
    schedule: str = typer.Option(
        "constant", "--schedule", help="After warmup: constant (default), linear or inverse-sqrt."
    ),
    batch_size: int = typer.Option(16, "--batch-size", help="Examples per micro-step."),
    grad_accum: int = typer.Option(1, "--grad-accum", help="Micro-steps per optimizer step."),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", help="Checkpoint to OUT.ckpt every N steps (0: never)."
    ),
    log_every: int = typer.Option(
        10, "--log-every", help="A curve row (window mean of the training loss) every N steps."
    ),
    log_every_s: float = LOG_EVERY_S,
    max_time: str = MAX_TIME,
    keep_checkpoint: bool = KEEP_CHECKPOINT,
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Autocast: auto (bf16 on GPU), float32 or bfloat16."
    ),
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from OUT.ckpt if present (a larger --max-time extends it).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT and its checkpoint."),
    progress: bool = PROGRESS,
) -> None:
    """One epoch of MLM on a seeded random subset before scoring (paper A.5: AdamW 1e-5, warmup 50, batch 16); saves the subset's indices for `bioprune fisher --subset-from`."""  # noqa: E501
    import os

    from bioprune.data.corpus import Corpus
    from bioprune.training.adapt import AdaptConfig
    from bioprune.training.adapt import adapt as run_adapt
    from bioprune.training.recipe import TrainingConfig

    n = len(Corpus(corpus))
    size = parse_budget(subset_size, n, what="subset size")
    if size > n:
        raise ValueError(f"subset size {size} exceeds the corpus's {n} examples")
    config = AdaptConfig(
        model=model,
        corpus=corpus,
        out=out,
        subset_size=size,
        training=TrainingConfig(
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            schedule=schedule,
            batch_size=batch_size,
            grad_accum=grad_accum,
            epochs=1,
            seed=seed,
            max_time_s=parse_duration(max_time),
            keep_checkpoint=keep_checkpoint,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            device=device,
            dtype=dtype,
            resume=resume,
            overwrite=overwrite,
            show_progress=progress,
            progress_every_s=log_every_s,
        ),
    )
    with stop_on_signals() as stop:
        info = run_adapt(config, should_stop=stop, console=console)
    if os.environ.get("RANK", "0") == "0":
        # The two numbers are curve rows: each the mean loss over a window of
        # --log-every steps (the first window still in warmup), not single batches.
        # On a small subset at lr 1e-5 the second may be higher; that is noise.
        console.print(
            f"wrote [bold]{out}[/]: {size:,} examples, {info['steps']} steps, "
            f"train loss (mean of the first -> last {log_every}-step window) "
            f"{_fmt(info['train_loss_first'])} -> {_fmt(info['train_loss_final'])}, "
            f"{info['wall_s']:.1f} s",
            highlight=False,
            soft_wrap=True,
        )
        report_stop(info, out, stop)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
