"""``bioprune study``: a whole study from one config, on Snakemake (docs/study.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options


@dataclass(frozen=True)
class StudyOptions:
    """The options of ``bioprune study``: :func:`bioprune.workflow.run.run_study`'s parameters."""

    config: Path = option(help="Study config (YAML); see docs/study.md.", argument=True)
    out: Path = option(help="Study directory (created; reruns resume it).")
    cores: Optional[int] = option(
        None, help="Local: CPU cores used at once (default: all); one thread per job."
    )
    jobs: Optional[int] = option(
        None, help="At most this many jobs at once (slurm: queued; default 100)."
    )
    dry_run: bool = option(False, help="List the jobs that would run, run nothing.")
    executor: str = option("local", help="local, or slurm (Snakemake's SLURM executor plugin).")
    profile: Optional[Path] = option(
        None, help="A Snakemake profile folder (site settings: account, partition)."
    )
    unlock: bool = option(
        False, help="Only remove the lock that a killed run (SIGKILL) left in OUT."
    )


@with_options
def study(opts: StudyOptions) -> None:
    """Run a whole study (prepare -> reference -> adapt -> fisher -> score -> coresets ->
    pretrain -> evaluate -> report) with Snakemake; a rerun does only what is missing or stale."""
    from bioprune.workflow.run import run_study

    run = run_study(
        opts.config,
        opts.out,
        cores=opts.cores,
        jobs=opts.jobs,
        dry_run=opts.dry_run,
        executor=opts.executor,
        profile=opts.profile,
        capture=opts.dry_run,  # a real run shows Snakemake's progress as it goes
        unlock=opts.unlock,
    )
    if opts.dry_run:
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
        raise _stopped(opts.out, run.returncode)
    if opts.unlock:
        console.print(f"unlocked {opts.out}")
    elif not opts.dry_run:
        console.print(
            f"study done: report in [bold]{opts.out / 'report'}[/] (report.md, report.html)"
        )


def _stopped(out: Path, code: int) -> Exception:
    from bioprune.errors import BioPruneError

    return BioPruneError(
        f"the study stopped (Snakemake exit status {code}); the failed job's log is shown "
        f"above and kept in {out / 'logs'}; rerun the same command to continue"
    )


def register(app: typer.Typer) -> None:
    app.command("study")(study)
