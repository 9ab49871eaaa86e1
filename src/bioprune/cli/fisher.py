"""``bioprune fisher``: the diagonal empirical Fisher over a seeded subset (eq. 9)."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console

# Options shared with `bioprune score` (same names, same help).
BATCH_TOKENS = typer.Option(
    8192, "--batch-tokens", help="Padded tokens per batch (length-bucketed batches)."
)
MAX_BATCH = typer.Option(None, "--max-batch-size", help="Optional cap on examples per batch.")
PART_BATCHES = typer.Option(
    16, "--part-batches", help="Batches per resumable part (the unit of checkpoints and ranks)."
)
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when available), cpu or cuda.")
DTYPE = typer.Option(
    "float32",
    "--dtype",
    help="float32, or bfloat16 (autocast; Fisher and scores still accumulate in float32/64).",
)
ON_NONFINITE = typer.Option(
    "stop",
    "--on-nonfinite",
    help="stop: a non-finite loss or gradient stops the run naming the ids; "
    "skip: record NaN / leave the example out, count and report it.",
)
SAVE_MASKS = typer.Option(
    None,
    "--save-masks",
    help="Parquet of every (example, draw): index, draw, positions, inputs.",
)
RESUME = typer.Option(False, "--resume", help="Continue a killed run from its parts directory.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace an existing OUT.")
NO_PROGRESS = typer.Option(
    False,
    "--no-progress",
    help="No progress output (neither the bar nor, unless --log-every-s is given, log lines).",
)
LOG_EVERY_S = typer.Option(
    None,
    "--log-every-s",
    help="A plain progress line every S seconds (done/total, ex/s, tok/s, elapsed, ETA) "
    "instead of the bar; default: the bar on a terminal, a line every 30 s otherwise.",
)
FISHER_MODE = typer.Option(
    "exact",
    "--fisher-mode",
    help="exact: the diagonal Fisher (eq. 11). factored: a rank-one fit u v^T of "
    "1/(F + lambda) per weight matrix (fisher: fit and store it; score: use it, "
    "exact for those weights, not for the diagonal Fisher; faster on long sequences).",
)


def fisher(
    model: Path = typer.Option(..., "--model", help="Model directory (HF format)."),
    corpus: Path = typer.Option(..., "--corpus", help="Corpus directory (bioprune prepare)."),
    out: Path = typer.Option(..., "--out", help="Fisher file to write (.safetensors)."),
    subset_size: str = typer.Option(
        None, "--subset-size", help="Random subset: a count (1000) or a fraction (0.01, 1%)."
    ),
    subset_from: Path = typer.Option(
        None,
        "--subset-from",
        help="Reuse a subset: .npy or text file of corpus indices, or a `bioprune adapt` "
        "model directory (its subset_indices.npy).",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the subset draw and of the mask draws."),
    mask_draws: int = typer.Option(1, "--mask-draws", help="Mask draws K per example."),
    params: str = typer.Option(
        "all",
        "--params",
        help="all, lm_head, layers:I:J (encoder layers I <= i < J, 0-based) or a regex.",
    ),
    damping: float = typer.Option(
        1e-3, "--damping", help="lambda_p = damping * mean(F over p's tensor)."
    ),
    batch_tokens: int = BATCH_TOKENS,
    max_batch_size: int = MAX_BATCH,
    part_batches: int = PART_BATCHES,
    checkpoint_seconds: float = typer.Option(
        300.0, "--checkpoint-seconds", help="Seconds between checkpoints of the running sums."
    ),
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
    """Diagonal empirical Fisher of the MLM loss over a seeded subset (method.md eq. 9).

    Several processes: `torchrun --standalone --nproc-per-node N --no-python bioprune fisher ...`.
    """
    from bioprune.influence.fisher import FisherConfig, compute_fisher

    cfg = config_from(FisherConfig, locals())
    res = run_stage(compute_fisher, cfg)
    if res is not None:
        console.print(
            f"wrote [bold]{out}[/]: {len(res.names)} tensors, {res.numel:,} parameters, "
            f"M = {res.examples:,} examples x K = {mask_draws} draw(s); this run "
            f"{res.processed:,} examples {this_run(res)}"
        )
        if res.skipped:
            console.print(
                f"[yellow]{len(res.skipped)} example(s) with non-finite loss or gradient left "
                f"out[/]: {res.skipped[:10]}"
            )


def config_from(cls, values: dict):
    """The config ``cls`` from a command's parameters (the same names, but for
    ``--no-progress`` and ``--log-every-s``, which set ``progress`` and ``progress_every_s``);
    fields without an option keep their defaults."""
    import dataclasses

    values = {**values, "progress": not values["no_progress"]}
    values["progress_every_s"] = values["log_every_s"]
    return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


def run_stage(compute, cfg):
    """Run ``compute(cfg, progress=...)`` with the CLI's progress display (rank 0 only).

    Returns the result on rank 0, ``None`` on the other ranks (which print nothing).
    """
    from bioprune.cli.progress import rich_progress
    from bioprune.runtime import launch_env

    main = launch_env()[0] == 0
    every_s = cfg.progress_every_s if main else None
    with rich_progress(console, enabled=cfg.progress and main, every_s=every_s) as progress:
        res = compute(cfg, progress=progress)
    return res if main else None


def this_run(res) -> str:
    """``in 12.3 s (45.6 ex/s, 7,890 tok/s)`` for a fisher or score result."""
    secs = max(res.seconds, 1e-9)
    return (
        f"in {res.seconds:.1f} s ({res.processed / secs:,.1f} ex/s, {res.tokens / secs:,.0f} tok/s)"
    )


def register(app: typer.Typer) -> None:
    app.command("fisher")(fisher)
