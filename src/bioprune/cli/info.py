"""``bioprune info``: a prepared corpus (counts, lengths, composition) or a model directory."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from bioprune.cli.common import console
from bioprune.cli.options import with_options


@dataclass(frozen=True)
class InfoOptions:
    """The options of ``bioprune info``."""

    corpus_dir: Path = field(
        metadata={
            "argument": True,
            "help": "A corpus directory written by `prepare`, or a model directory (architecture, "
            "parameters, vocabulary, provenance, and the training state of pretrain/adapt/export).",
        }
    )
    plot: Optional[Path] = field(
        default=None,
        metadata={
            "help": "Also write a PNG: length histogram (log y-axis when skewed) and residue "
            "composition."
        },
    )
    as_json: bool = field(
        default=False,
        metadata={
            "flag": "--json",
            "help": "Print the statistics as JSON on stdout instead of tables.",
        },
    )
    verify: bool = field(
        default=False,
        metadata={
            "help": "Also recompute the content checksum (tokens, lengths, sequences.parquet) and "
            "compare it with manifest.json; a mismatch is an error. Every open already checks "
            "sizes, dtypes, offsets, row counts and token ids."
        },
    )


@with_options
def info(opts: InfoOptions) -> None:
    """Show a corpus (sequences, residues, length quantiles, composition, the records
    prepare skipped; checked on open, --verify also checks the content checksum) or a
    model directory (architecture, parameters, vocabulary, positions, provenance,
    training state)."""
    from bioprune.data.corpus import Corpus
    from bioprune.data.stats import corpus_stats, plot_stats
    from bioprune.models.describe import describe_model, is_model_dir

    if is_model_dir(opts.corpus_dir):
        _show_model(describe_model(opts.corpus_dir), opts.as_json)
        return
    corpus = Corpus(opts.corpus_dir, allow_empty=True)
    stats = corpus_stats(corpus, verify=opts.verify)
    if opts.verify:
        console.print(
            f"[green]verified[/] {escape(str(opts.corpus_dir))}: content checksum matches "
            "manifest.json"
        )
    if opts.plot is not None:
        plot_stats(corpus, stats, opts.plot)
        console.print(f"wrote [bold]{opts.plot}[/]")
    if opts.as_json:
        typer.echo(json.dumps(stats, indent=2))
        return
    _show_corpus(opts.corpus_dir, stats)


def _show_corpus(corpus_dir: Path, stats: dict) -> None:
    """The tables of a corpus's statistics (this command's result: stdout)."""
    out = Console()
    out.print(_overview_table(corpus_dir, stats))
    out.print(_lengths_table(stats))
    out.print(_composition_table(stats))
    if stats["counts"]:
        from rich.table import Table

        counts = Table(title="prepare", title_justify="left")
        counts.add_column("count")
        counts.add_column("records", justify="right")
        for key, value in stats["counts"].items():
            counts.add_row(key, f"{value:,}")
        out.print(counts)
        out.print(_hygiene_caption(stats.get("hygiene"), stats["counts"]), highlight=False)


def _overview_table(corpus_dir: Path, stats: dict):
    from rich.table import Table

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
    return overview


def _lengths_table(stats: dict):
    from rich.table import Table

    lengths = Table(title="length (residues)", title_justify="left")
    for name in stats["lengths"]:
        lengths.add_column(name, justify="right")
    lengths.add_row(*(f"{v:,.1f}" if name == "mean" else f"{v:,.0f}"
                      for name, v in stats["lengths"].items()))  # fmt: skip
    return lengths


def _composition_table(stats: dict):
    from rich.table import Table

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
    return comp


def _hygiene_caption(h: dict | None, counts: dict) -> str:
    """One line on how the hygiene counts were made (or that they were not)."""
    if not isinstance(h, dict):
        return "hygiene not checked (prepared by an older bioprune; prepare it again to count " \
            "duplicates and low-complexity records)"  # fmt: skip
    low, run = h.get("low_complexity") or {}, h.get("n_run") or {}
    parts = [
        f"low_complexity: {low.get('measure')} < {low.get('threshold')}",
        f"n_runs: >= {run.get('min_run')} {run.get('unknown_residue')} in a row",
        "dedup: " + ("exact (repeats skipped)" if h.get("dedup") == "exact" else "counted only"),
        "flagged records " + ("skipped" if h.get("drop_low_complexity") else "kept"),
    ]
    written = counts.get("written") or 0
    dup = counts.get("exact_duplicates", 0)
    if written and dup and h.get("dedup") != "exact":
        parts.append(f"{dup / written:.1%} of the written records repeat an earlier one")
    return "; ".join(parts)


def _show_model(d: dict, as_json: bool) -> None:
    """Print :func:`bioprune.models.describe.describe_model`'s dict (a table or JSON)."""
    from rich.console import Console
    from rich.table import Table

    if as_json:
        typer.echo(json.dumps(d, indent=2))
        return
    t = Table(title=f"model {d['path']}", title_justify="left", show_header=False)
    t.add_column("key")
    t.add_column("value", overflow="fold")
    a = d["architecture"]
    t.add_row("architecture", f"{a['class'] or a['model_type']}: {a['layers']} layers x "
              f"{a['hidden']}, {a['heads']} heads, FFN {a['ffn']}")  # fmt: skip
    for key in ("token_dropout", "layer_norm_before_encoder", "tied_decoder", "residual_scale"):
        if key in a:
            t.add_row(key.replace("_", " "), str(a[key]))
    p = d["parameters"]
    t.add_row("parameters", "unknown (no safetensors)" if p is None else f"{p:,}")
    v = d["vocabulary"]
    t.add_row("vocabulary", f"{v['alphabet']} alphabet, {v['tokens']} tokens; "
              f"{v['model_rows']} model rows")  # fmt: skip
    pos = d["positions"]
    t.add_row("positions", f"{pos['type']}, up to {pos['max_residues']} residues")
    for kind, rec in d["provenance"].items():
        t.add_row(kind, ", ".join(f"{k}={val}" for k, val in rec.items() if val is not None))
    if not d["provenance"]:
        t.add_row("provenance", "not recorded (not written by bioprune)")
    Console().print(t)
    if d.get("training_state"):
        _show_training_state(d["training_state"])


def _show_training_state(state: dict) -> None:
    from rich.table import Table

    table = Table(title="training state", title_justify="left")
    table.add_column("key")
    table.add_column("value", overflow="fold")
    for key, value in state.items():
        if value is None or value == {}:
            continue
        if isinstance(value, float):
            text = f"{value:.4f}" if key != "wall_s" else f"{value:,.1f} s"
        elif isinstance(value, int) and not isinstance(value, bool):
            text = f"{value:,}"
        elif isinstance(value, dict):
            text = ", ".join(f"{k} {v}" for k, v in value.items() if v is not None)
        else:
            text = str(value)
        table.add_row(key, text)
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("info")(info)
