"""``bioprune report``: the paper-style report of a study directory (docs/study.md)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options


@dataclass(frozen=True)
class ReportOptions:
    """The options of ``bioprune report``."""

    study: Path = option(help="Study directory written by `bioprune study`.", argument=True)
    out: Path = option(help="Report directory: report.md, report.html.")
    overwrite: bool = option(False, help="Replace an existing OUT.")


@with_options
def report(opts: ReportOptions) -> None:
    """Table (methods x task metrics, mean ± std over seeds), data-efficiency curves, coreset
    diagnostics, training curves, cost and provenance, as report.md and one report.html."""
    from bioprune.report.study import write_study_report

    summary = write_study_report(opts.study, opts.out, overwrite=opts.overwrite)
    beat = summary["beats_random_1x"]
    console.print(
        f"wrote [bold]{opts.out}[/] (report.md, report.html): {len(summary['rows'])} rows x "
        f"{len(summary['columns'])} metrics; "
        + (
            f"{len(beat)} cell(s) beat Random 1x beyond the seed spread"
            if beat
            else "no method beats Random 1x beyond the seed spread"
        ),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("report")(report)
