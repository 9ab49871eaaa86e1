"""``bioprune plan``: predict a run's wall time and peak memory before launching it."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.options import with_options
from bioprune.planning import PlanConfig


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@with_options
def plan(
    cfg: PlanConfig,
    json_out: Path = typer.Option(
        None, "--json", help="Also write the plan (figures, fit, assumptions) as JSON here."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --json file."),
) -> None:
    """Predict wall time, peak memory and a fitting --batch-tokens for a whole run.

    Runs a few calibration batches of the real model on a seeded sample of the
    corpus through the stage's own code path, fits time and memory per batch to
    its examples and padded length, and sums the fit over the run's batches.
    Writes nothing unless --json is given.
    """
    from bioprune import artifacts
    from bioprune.planning import plan_run

    if json_out is not None:
        artifacts.check_output_dir(json_out, overwrite, inputs=(cfg.model, cfg.corpus))
    p = plan_run(cfg)
    _print_plan(p)
    if json_out is not None:
        artifacts.write_json(json_out, {**p.to_dict(), **artifacts.provenance()})
        console.print(f"wrote {json_out}")


def _print_plan(p) -> None:
    """The plan as the CLI shows it: figures, calibration, assumptions."""
    console.print(
        f"[bold]{p.stage}[/] of {p.examples:,} examples ({p.batches:,} batches, "
        f"{p.real_tokens:,} tokens, {p.padded_tokens:,} padded) on {p.device} ({p.dtype})"
    )
    console.print(
        f"  predicted time: {_duration(p.seconds_total)} in one process; "
        f"{p.processes} process(es): ETA {_duration(p.eta_seconds)} "
        f"(per process {', '.join(_duration(s) for s in p.seconds_per_process[:8])}"
        f"{' ...' if p.processes > 8 else ''}); process CPU time "
        f"{_duration(p.cpu_seconds_total)}"
    )
    fx, fc = p.fixed_seconds, p.fixed_cpu_seconds
    console.print(
        f"  of which batches {_duration(p.batch_seconds_total)} "
        f"(CPU {_duration(p.batch_cpu_seconds_total)}); fixed per process: start-up "
        f"{_duration(fx['startup'])}, set-up {_duration(fx['setup'])} (CPU "
        f"{_duration(fc['startup'])}, {_duration(fc['setup'])}), first batch "
        f"{_duration(fx['first_batch'])}; write "
        f"{_duration(fx['write'])}"
    )
    console.print(
        f"  predicted peak memory: {p.peak_mb_per_process:,.0f} MB per process, "
        f"{p.peak_mb_total:,.0f} MB total (of {p.available_mb:,.0f} MB available)"
    )
    if p.fitted_batch_tokens is not None:
        console.print(f"  --batch-tokens that fits this device: {p.fitted_batch_tokens:,}")
    console.print("  calibration (examples x padded length: seconds, working MB):")
    for c in p.calibration:
        console.print(
            f"    {c.examples} x {c.padded_length}: {c.seconds:.3f} s, {c.working_mb:,.0f} MB"
        )
    console.print("  assumptions:")
    for a in p.assumptions:
        console.print(f"    - {a}", markup=False, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
