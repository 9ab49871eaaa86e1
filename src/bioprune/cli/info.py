"""``bioprune info``: counts, length quantiles, composition of a prepared corpus."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from bioprune.cli.common import console


def info(
    corpus_dir: Path = typer.Argument(..., help="A corpus directory written by `prepare`."),
    plot: Path = typer.Option(
        None,
        "--plot",
        help="Also write a PNG: length histogram (log y-axis when skewed) and residue composition.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the statistics as JSON on stdout instead of tables."
    ),
    verify: bool = typer.Option(
        False,
        "--verify",
        help="Also recompute the content checksum (tokens, lengths, sequences.parquet) and "
        "compare it with manifest.json; a mismatch is an error. Every open already checks "
        "sizes, dtypes, offsets, row counts and token ids.",
    ),
) -> None:
    """Show a corpus: sequences and residues, length quantiles (min, 5/25/50/75/95%,
    max), residue composition, and the records prepare skipped, cropped or replaced.
    The corpus is checked on open (sizes, offsets, token ids); --verify also checks
    the content checksum."""
    from rich.console import Console
    from rich.table import Table

    from bioprune.data.corpus import Corpus
    from bioprune.data.stats import corpus_stats, plot_stats

    corpus = Corpus(corpus_dir, allow_empty=True)
    stats = corpus_stats(corpus, verify=verify)
    if verify:
        console.print(
            f"[green]verified[/] {escape(str(corpus_dir))}: content checksum matches manifest.json"
        )
    if plot is not None:
        plot_stats(corpus, stats, plot)
        console.print(f"wrote [bold]{plot}[/]")
    if as_json:
        typer.echo(json.dumps(stats, indent=2))
        return

    out = Console()  # the tables are this command's result: stdout
    overview = Table(title=f"corpus {corpus_dir}", title_justify="left", show_header=False)
    overview.add_column("key")
    overview.add_column("value", overflow="fold")
    overview.add_row("alphabet", stats["alphabet"])
    overview.add_row("sequences", f"{stats['num_sequences']:,}")
    overview.add_row("residues", f"{stats['num_tokens']:,}")
    limit = stats["max_length"]
    overview.add_row("max_length (crop limit)", "not recorded" if limit is None else str(limit))
    state = "verified" if stats["checksum_verified"] else "recorded; check it with --verify"
    overview.add_row("checksum", f"{stats['checksum']} ({state})")
    overview.add_row("bioprune version", f"{stats['bioprune_version']} ({stats['created']})")
    for src in stats["sources"]:
        overview.add_row(
            "source",
            f"{src['path']} ({src['format']}, {src['size']:,} bytes, "
            f"{src['records_read']:,} read, {src['records_written']:,} written)",
        )
    for note in stats["notes"]:
        overview.add_row("note", note)
    out.print(overview)

    lengths = Table(title="length (residues)", title_justify="left")
    for name in stats["lengths"]:
        lengths.add_column(name, justify="right")
    lengths.add_row(*(f"{v:,.1f}" if name == "mean" else f"{v:,.0f}"
                      for name, v in stats["lengths"].items()))  # fmt: skip
    out.print(lengths)

    comp = Table(title="residue composition", title_justify="left")
    comp.add_column("token")
    comp.add_column("count", justify="right")
    comp.add_column("fraction", justify="right")
    for token, c in stats["composition"].items():
        if c["count"]:
            frac = c["fraction"]
            comp.add_row(token, f"{c['count']:,}", f"{frac:.4f}" if frac >= 1e-4 else f"{frac:.1e}")
    absent = [t for t, c in stats["composition"].items() if not c["count"]]
    if absent:
        comp.caption = f"absent: {' '.join(absent)}"
    out.print(comp)

    if stats["counts"]:
        counts = Table(title="prepare", title_justify="left")
        counts.add_column("count")
        counts.add_column("records", justify="right")
        for key, value in stats["counts"].items():
            counts.add_row(key, f"{value:,}")
        out.print(counts)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
