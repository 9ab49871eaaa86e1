"""``bioprune study``: a whole study from one config, on Snakemake (docs/study.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bioprune.cli.common import console


def study(
    config: Path = typer.Argument(..., help="Study config (YAML); see docs/study.md."),
    out: Path = typer.Option(..., "--out", help="Study directory (created; reruns resume it)."),
    cores: Optional[int] = typer.Option(
        None, "--cores", help="Local: CPU cores used at once (default: all); one thread per job."
    ),
    jobs: Optional[int] = typer.Option(
        None, "--jobs", help="At most this many jobs at once (slurm: queued; default 100)."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="List the jobs that would run, run nothing."
    ),
    executor: str = typer.Option(
        "local", "--executor", help="local, or slurm (Snakemake's SLURM executor plugin)."
    ),
    profile: Optional[Path] = typer.Option(
        None, "--profile", help="A Snakemake profile folder (site settings: account, partition)."
    ),
    unlock: bool = typer.Option(
        False, "--unlock", help="Only remove the lock that a killed run (SIGKILL) left in OUT."
    ),
) -> None:
    """Run a whole study (prepare -> reference -> adapt -> fisher -> score -> coresets ->
    pretrain -> evaluate -> report) with Snakemake; a rerun does only what is missing or stale."""
    from bioprune.workflow.run import run_study

    run = run_study(
        config,
        out,
        cores=cores,
        jobs=jobs,
        dry_run=dry_run,
        executor=executor,
        profile=profile,
        capture=dry_run,  # a real run shows Snakemake's progress as it goes
        unlock=unlock,
    )
    if dry_run:
        from bioprune.workflow.run import parse_job_list

        if run.returncode != 0:
            console.print(run.output, highlight=False, markup=False, emoji=False)
        for rule, outputs in parse_job_list(run.output):
            console.print(f"  {rule:<20} {outputs}", highlight=False, markup=False, emoji=False)
        total = sum(run.jobs.values())
        console.print(
            f"dry run: {total} job(s) to run"
            + (": " + ", ".join(f"{k} {v}" for k, v in run.jobs.items()) if total else ""),
            highlight=False,
        )
    if run.returncode != 0:
        raise _stopped(out, run.returncode)
    if unlock:
        console.print(f"unlocked {out}")
    elif not dry_run:
        console.print(f"study done: report in [bold]{out / 'report'}[/] (report.md, report.html)")


def _stopped(out: Path, code: int) -> Exception:
    from bioprune.errors import BioPruneError

    return BioPruneError(
        f"the study stopped (Snakemake exit status {code}); the failed job's log is shown "
        f"above and kept in {out / 'logs'}; rerun the same command to continue"
    )


def register(app: typer.Typer) -> None:
    app.command("study")(study)
