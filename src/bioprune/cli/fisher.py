"""``bioprune fisher``: the diagonal empirical Fisher over a seeded subset (eq. 9).

The options are the fields of :class:`~bioprune.influence.config.FisherConfig` (those
shared with ``bioprune score`` come from its base, ``PassConfig``).
"""

from __future__ import annotations

import dataclasses

import typer

from bioprune.cli.common import console
from bioprune.cli.options import with_options
from bioprune.influence.config import FisherConfig

#: Not a config field: the config says ``progress=True``; the flag turns it off.
NO_PROGRESS = typer.Option(
    False,
    "--no-progress",
    help="No progress output (neither the bar nor, unless --log-every-s is given, log lines).",
)


@with_options
def fisher(cfg: FisherConfig, no_progress: bool = NO_PROGRESS) -> None:
    """Diagonal empirical Fisher of the MLM loss over a seeded subset (method.md eq. 9).

    Several processes: `torchrun --standalone --nproc-per-node N --no-python bioprune fisher ...`.
    """
    from bioprune.influence.fisher import compute_fisher

    run_and_report(compute_fisher, cfg, no_progress, _fisher_lines)


def _fisher_lines(res, cfg: FisherConfig) -> list[str]:
    lines = [
        f"wrote [bold]{cfg.out}[/]: {len(res.names)} tensors, {res.numel:,} parameters, "
        f"M = {res.examples:,} examples x K = {cfg.mask_draws} draw(s); this run "
        f"{res.processed:,} examples {this_run(res)}"
    ]
    if res.skipped:
        lines.append(
            f"[yellow]{len(res.skipped)} example(s) with non-finite loss or gradient left "
            f"out[/]: {res.skipped[:10]}"
        )
    return lines


def run_and_report(compute, cfg, no_progress: bool, lines) -> None:
    """Run a fisher/score pass with the CLI's progress, then print ``lines(result, cfg)``
    (rank 0 only); ``--no-progress`` turns the config's ``progress`` off."""
    res = run_stage(compute, dataclasses.replace(cfg, progress=not no_progress))
    if res is not None:
        for line in lines(res, cfg):
            console.print(line)


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
