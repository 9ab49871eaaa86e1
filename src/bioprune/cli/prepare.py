"""``bioprune prepare``: sequence files -> a corpus directory (parsing and dispatch only)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from bioprune.cli.common import console
from bioprune.cli.options import with_options
from bioprune.data.policy import PrepareConfig

_HELP = """Ingest FASTA / text / CSV / TSV / Parquet files into a corpus directory.

Formats come from the extension (.fa .fasta .fna .fas .ffn .faa: FASTA; .txt
.seq: one sequence per line; .csv .tsv .parquet: tables; each optionally .gz),
or from --format. Sequences are upper-cased (RNA: T becomes U) and checked
against the alphabet. Every record read is written or counted under one
reason; the counts are printed at the end and stored in manifest.json.

An input from which no record is written (empty, or every record skipped) is
an error unless --allow-empty. A protein corpus whose residues are more than
90% A/C/G/T/U gets a warning (and a note in manifest.json). Damaged gzip data,
a binary file (NUL bytes, invalid UTF-8) and bzip2/xz/zstd files are one-line
errors naming the file and byte offset; CR-only (old Mac) line endings read
like LF.

\b
Checks, in this order:
  1. ids unique over all records read (else --dedupe-ids)
  2. empty records skipped (empty_skipped)
  3. longer than --max-length: --on-long crop|skip
  4. not in the alphabet: --on-invalid error|skip|replace
  5. low complexity (normalised k-mer entropy < 0.5) or a run of >= 10 N/X:
     counted (low_complexity, n_runs); --drop-low-complexity skips them
  6. exact duplicate of an earlier sequence (after normalising): counted
     (exact_duplicates); --dedup exact skips it, keeping the first

The corpus directory holds sequences.parquet (index, id, description,
sequence, length), tokens.npy + offsets.npy (memory-mapped token store) and
manifest.json; it is written atomically (an interrupted run leaves nothing
that looks complete).
"""


@with_options
def prepare(
    opts: PrepareConfig,
    progress_on: bool = typer.Option(
        True,
        "--progress/--no-progress",
        help="Progress: a bar on a terminal, plain lines in a log (--no-progress: none, unless "
        "--log-every-s is given).",
    ),
    log_every_s: float = typer.Option(
        None,
        "--log-every-s",
        help="A plain progress line every S seconds (bytes read of total, records, rec/s, "
        "elapsed, ETA) instead of the bar; default: a line every 30 s when not on a terminal.",
    ),
) -> None:
    from bioprune.data.prepare import COUNT_KEYS
    from bioprune.data.prepare import prepare as run_prepare
    from bioprune.progress import progress_style

    total_bytes = sum(p.stat().st_size for p in opts.inputs)
    style = progress_style(progress_on, log_every_s, console.is_terminal)
    if style == "bar":
        result = _prepare_with_bar(opts, total_bytes, run_prepare)
    else:
        result = _prepare_with_lines(opts, total_bytes, run_prepare, style, log_every_s)
    _summary(result, opts.out, opts.alphabet, COUNT_KEYS)


def _prepare_with_lines(config, total_bytes: int, run_prepare, style: str, every_s):
    """Run prepare with plain progress lines (``style == "lines"``) or none (``"off"``)."""
    from bioprune.progress import DEFAULT_EVERY_S, ProgressLines

    lines = None
    if style == "lines":
        lines = ProgressLines(
            "prepare",
            total_bytes,
            "bytes",
            lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
            every_s=DEFAULT_EVERY_S if every_s is None else every_s,
        )
    state = {"records": 0, "bytes": 0}

    def on_batch_lines(nbytes: int, nrecords: int) -> None:
        state["records"] += nrecords
        state["bytes"] += nbytes
        if lines is not None:
            lines.update(state["bytes"], note=f"{state['records']:,} records")

    with _warnings_to_console():
        result = run_prepare(config, progress=on_batch_lines)
    if lines is not None:
        lines.update(total_bytes, note=f"{state['records']:,} records", force=True)
    return result


def _prepare_with_bar(config, total_bytes: int, run_prepare):
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(
        TextColumn("[bold]prepare[/]"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[records]:>12,} records"),
        TextColumn("{task.fields[rate]:>9,.0f} rec/s"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    )
    with progress:
        task = progress.add_task("prepare", total=total_bytes, records=0, rate=0.0)
        state = {"records": 0}

        def on_batch(nbytes: int, nrecords: int) -> None:
            state["records"] += nrecords
            elapsed = progress.tasks[task].elapsed or 1e-9
            progress.update(
                task,
                advance=nbytes,
                records=state["records"],
                rate=state["records"] / elapsed,
            )

        with _warnings_to_console():
            result = run_prepare(config, progress=on_batch)
        progress.update(task, completed=total_bytes)
    return result


def _summary(result, out: Path, alphabet: str, count_keys) -> None:
    from rich.table import Table

    table = Table(title=f"{out}", title_justify="left")
    table.add_column("count")
    table.add_column("records", justify="right")
    for key in count_keys:
        table.add_row(key, f"{result.counts[key]:,}")
    console.print(table)
    console.print(
        f"wrote [bold]{out}[/]: {result.num_sequences:,} {alphabet} sequences, "
        f"{result.num_tokens:,} residues"
    )


prepare.__doc__ = _HELP


class _ConsoleHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        console.print(
            f"[yellow]warning:[/] {escape(record.getMessage())}", highlight=False, emoji=False
        )


@contextmanager
def _warnings_to_console():
    """Show the library's logged warnings (``bioprune`` logger) as ``warning: ...`` lines.

    Once: meanwhile the root command's plain log handler (``cli.progress``) leaves
    warnings to this one.
    """
    from bioprune.cli.progress import ConsoleLogHandler

    logger = logging.getLogger("bioprune")
    handler = _ConsoleHandler(logging.WARNING)
    plain = [h for h in logger.handlers if isinstance(h, ConsoleLogHandler)]
    for h in plain:
        h.addFilter(_below_warning)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        for h in plain:
            h.removeFilter(_below_warning)


def _below_warning(record: logging.LogRecord) -> bool:
    return record.levelno < logging.WARNING


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)
