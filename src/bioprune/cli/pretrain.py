"""``bioprune pretrain``: MLM pretraining from scratch on a corpus or a coreset."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console


def pretrain(
    corpus: Path = typer.Option(..., "--corpus", help="Prepared corpus directory."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (HF format)."),
    selection: Path = typer.Option(
        None, "--selection", help="Selection directory (bioprune select): train on it only."
    ),
    preset: str = typer.Option(
        None, "--preset", help="Start from scratch: tiny, small, esm2-8m, esm2-35m or rnafm."
    ),
    init: Path = typer.Option(None, "--init", help="Start from this model directory instead."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout of a --preset model."),
    lr: float = typer.Option(1e-4, "--lr", help="Peak AdamW learning rate (paper: 1e-4)."),
    weight_decay: float = typer.Option(0.01, "--weight-decay", help="AdamW weight decay."),
    warmup_steps: int = typer.Option(2000, "--warmup-steps", help="Linear warmup steps."),
    schedule: str = typer.Option(
        "inverse-sqrt", "--schedule", help="After warmup: inverse-sqrt, constant or linear."
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", help="Examples per micro-step, split across torchrun ranks."
    ),
    grad_accum: int = typer.Option(
        1, "--grad-accum", help="Micro-steps per optimizer step (global batch = batch x accum)."
    ),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training examples."),
    max_steps: int = typer.Option(
        None, "--max-steps", help="Stop after this many optimizer steps (equal compute)."
    ),
    max_tokens: int = typer.Option(
        None, "--max-tokens", help="Stop once this many (unpadded) tokens were trained on."
    ),
    val_fraction: float = typer.Option(
        0.02, "--val-fraction", help="Seeded held-out validation fraction (indices saved)."
    ),
    eval_every: int = typer.Option(
        0, "--eval-every", help="Validate every N steps (0: at each epoch end)."
    ),
    checkpoint_every: int = typer.Option(
        1000, "--checkpoint-every", help="Checkpoint to OUT.ckpt every N steps (0: never)."
    ),
    log_every: int = typer.Option(10, "--log-every", help="A curve row every N steps."),
    seed: int = typer.Option(0, "--seed", help="Seed of init, split, epoch order and masks."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    dtype: str = typer.Option(
        "auto", "--dtype", help="Autocast: auto (bf16 on GPU), float32 or bfloat16."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT.ckpt if present."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT and its checkpoint."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Pretrain a masked LM on a corpus or a coreset (paper A.3/A.4: AdamW 1e-4, warmup 2,000 then inverse-sqrt, batch 16, 10 epochs); torchrun for several processes."""  # noqa: E501
    from bioprune.training.pretrain import PretrainConfig
    from bioprune.training.pretrain import pretrain as run_pretrain
    from bioprune.training.recipe import TrainingConfig

    config = PretrainConfig(
        corpus=corpus,
        out=out,
        selection=selection,
        preset=preset,
        init=init,
        dropout=dropout,
        val_fraction=val_fraction,
        training=TrainingConfig(
            lr=lr,
            weight_decay=weight_decay,
            warmup_steps=warmup_steps,
            schedule=schedule,
            batch_size=batch_size,
            grad_accum=grad_accum,
            epochs=epochs,
            max_steps=max_steps,
            max_tokens=max_tokens,
            seed=seed,
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            device=device,
            dtype=dtype,
            resume=resume,
            overwrite=overwrite,
            show_progress=progress,
        ),
    )
    info = run_pretrain(config)
    if _is_rank_zero():
        val = info["val_loss"]
        console.print(
            f"wrote [bold]{out}[/]: {info['steps']} steps ({info['stopped_by']}), "
            f"{info['tokens_seen']:,} tokens, train loss {info['train_loss_final']:.4f}"
            + (f", val loss {val:.4f} (ppl {info['val_perplexity']:.2f})" if val else "")
            + f", {info['wall_s']:.1f} s"
        )


def _is_rank_zero() -> bool:
    import os

    return os.environ.get("RANK", "0") == "0"


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
