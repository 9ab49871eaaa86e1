"""``bioprune prepare``: sequence files -> a corpus directory (parsing and dispatch only)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.markup import escape

from bioprune.cli.common import console

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


def prepare(
    inputs: list[Path] = typer.Argument(
        ..., help="Input files, read in this order (the corpus index follows it)."
    ),
    alphabet: str = typer.Option(
        ..., "--alphabet", help="rna (RNA-FM vocabulary) or protein (ESM-2 vocabulary)."
    ),
    out: Path = typer.Option(..., "--out", help="Corpus directory to write."),
    max_length: int = typer.Option(
        1022,
        "--max-length",
        help="Longest sequence kept, in residues (1022 = 1024 tokens with <cls> and <eos>, "
        "the context of RNA-FM and ESM-2).",
    ),
    on_long: str = typer.Option(
        "crop",
        "--on-long",
        help="Records longer than --max-length: 'crop' keeps the first --max-length "
        "residues (counted as long_cropped); 'skip' drops the record (long_skipped). "
        "Cropped-off residues are not validated.",
    ),
    on_invalid: str = typer.Option(
        "error",
        "--on-invalid",
        help="Characters outside the alphabet (after upper-casing and T->U): 'error' stops "
        "and names the file, record id, 1-based position and character; 'skip' drops the "
        "record (invalid_skipped); 'replace' writes the unknown residue, N for RNA or X for "
        "protein (invalid_replaced_records / invalid_replaced_chars).",
    ),
    dedupe_ids: bool = typer.Option(
        False,
        "--dedupe-ids",
        help="Rename a repeated id ID_2, ID_3, ... (counted as ids_deduplicated) instead of "
        "stopping with an error that names both records.",
    ),
    dedup: str = typer.Option(
        "none",
        "--dedup",
        help="Exact duplicate sequences (after upper-casing, T->U, cropping): 'none' counts "
        "them (exact_duplicates); 'exact' also skips each repeat, keeping the first "
        "(duplicates_skipped).",
    ),
    drop_low_complexity: bool = typer.Option(
        False,
        "--drop-low-complexity",
        help="Skip records flagged low complexity (normalised 3-mer entropy < 0.5 for RNA, "
        "residue entropy < 0.5 for protein) or holding a run of >= 10 N/X "
        "(low_complexity_skipped); without it they are only counted (low_complexity, n_runs).",
    ),
    column: str = typer.Option(
        None, "--column", help="CSV/TSV/Parquet: the column holding the sequences (required)."
    ),
    id_column: str = typer.Option(
        None,
        "--id-column",
        help="CSV/TSV/Parquet: the column holding ids; default: the 1-based row number.",
    ),
    fmt: str = typer.Option(
        None,
        "--format",
        help="Force the format of every input: fasta, text, csv, tsv or parquet "
        "(default: from each file's extension).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
    allow_empty: bool = typer.Option(
        False,
        "--allow-empty",
        help="Write the corpus even if no record survives (an empty input, or every record "
        "skipped); without it that is an error, since later stages would have nothing to do.",
    ),
    seed: int = typer.Option(
        0, "--seed", help="Recorded in the manifest for provenance (prepare is not random)."
    ),
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
    from bioprune.data.prepare import COUNT_KEYS, PrepareConfig
    from bioprune.data.prepare import prepare as run_prepare
    from bioprune.progress import DEFAULT_EVERY_S, ProgressLines, progress_style

    config = PrepareConfig(
        inputs=inputs,
        alphabet=alphabet,
        out=out,
        max_length=max_length,
        on_long=on_long,
        on_invalid=on_invalid,
        dedupe_ids=dedupe_ids,
        dedup=dedup,
        drop_low_complexity=drop_low_complexity,
        column=column,
        id_column=id_column,
        format=fmt,
        overwrite=overwrite,
        allow_empty=allow_empty,
        seed=seed,
    )
    total_bytes = sum(p.stat().st_size for p in config.inputs)
    style = progress_style(progress_on, log_every_s, console.is_terminal)
    if style != "bar":
        lines = None
        if style == "lines":
            lines = ProgressLines(
                "prepare",
                total_bytes,
                "bytes",
                lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
                every_s=DEFAULT_EVERY_S if log_every_s is None else log_every_s,
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
    else:
        result = _prepare_with_bar(config, total_bytes, run_prepare)
    _summary(result, out, alphabet, COUNT_KEYS)


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
    """Show the library's logged warnings (``bioprune`` logger) on the console for this run."""
    logger = logging.getLogger("bioprune")
    handler = _ConsoleHandler(logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)


def register(app: typer.Typer) -> None:
    app.command("prepare")(prepare)
