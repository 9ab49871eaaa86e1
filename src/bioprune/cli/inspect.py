"""``bioprune inspect``: compare a coreset with its corpus (plots + summary.json)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer

from bioprune.cli.common import console
from bioprune.cli.options import with_options


@dataclass(frozen=True)
class InspectOptions:
    """The options of ``bioprune inspect``."""

    corpus: Path = field(metadata={"help": "Corpus directory the selection came from."})
    selection: Path = field(metadata={"help": "Selection directory written by `bioprune select`."})
    out: Path = field(metadata={"help": "Directory for the PNG plots and summary.json."})
    scores: Optional[Path] = field(
        default=None,
        metadata={"help": "Score file: adds the influence histogram (with CCI strata)."},
    )
    labels: Optional[Path] = field(
        default=None,
        metadata={
            "help": "TSV id<TAB>label (header optional, further columns ignored): per-label "
            "coverage."
        },
    )
    label_group: Optional[list[str]] = field(
        default=None,
        metadata={
            "help": "Count the label values matching this glob pattern as one (e.g. 'dup-of:*'); "
            "repeatable, the first matching pattern wins."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing OUT."})


@with_options
def inspect(opts: InspectOptions) -> None:
    """Length distributions, residue composition, per-label coverage and the score
    histogram of the coreset against the corpus; with --scores also score vs length
    (Spearman, a warning when |rho| > 0.5), by label, duplicate pairs and CCI strata."""
    from bioprune.cli.prepare import _warnings_to_console
    from bioprune.report.coreset import inspect_coreset

    with _warnings_to_console():  # the length warning (docs/science.md), one plain line
        summary = inspect_coreset(
            opts.corpus,
            opts.selection,
            opts.out,
            scores_path=opts.scores,
            labels_path=opts.labels,
            label_groups=opts.label_group or None,
            overwrite=opts.overwrite,
        )
    line = (
        f"wrote [bold]{opts.out}[/]: {len(summary['plots'])} plots; coreset "
        f"{summary['n_coreset']:,} of {summary['n_corpus']:,} "
        f"(median length {summary['lengths']['coreset'].get('median', 0):.0f} vs "
        f"{summary['lengths']['corpus'].get('median', 0):.0f})"
    )
    if "labels" in summary:
        rows = [r for r in summary["labels"]["per_label"] if r["label"] is not None]
        kept = sum(1 for r in rows if r["coreset"])
        line += f"; {kept} of {len(rows)} {summary['labels']['name']} values kept"
    console.print(line, highlight=False)
    diag = (summary.get("scores") or {}).get("diagnostics")
    if diag:
        rho = diag.get("spearman_length")
        parts = [f"Spearman(score, length) {rho:+.2f}" if rho is not None else "no length trend"]
        for top in diag.get("top", []):
            if "junk" in top:
                parts.append(f"junk in top {top['fraction']:.0%}: {top['junk']}/{top['count']}")
        dup = diag.get("duplicates")
        if dup and dup.get("spearman") is not None:
            parts.append(f"duplicate-pair score Spearman {dup['spearman']:.2f} ({dup['pairs']:,})")
        console.print("scores: " + "; ".join(parts), highlight=False)


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect)
