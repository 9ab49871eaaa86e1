"""``bioprune info``: counts, length quantiles, composition of a prepared corpus."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from bioprune import artifacts
from bioprune.cli.common import console


def info(
    corpus_dir: Path = typer.Argument(
        ...,
        help="A corpus directory written by `prepare`, or a model directory written by "
        "`pretrain`/`adapt`/`export` (shows its training state).",
    ),
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
    from rich.table import Table

    from bioprune.data.corpus import Corpus
    from bioprune.data.stats import corpus_stats, plot_stats

    if (corpus_dir / artifacts.MODEL_TRAINING).is_file():
        _show_training_state(corpus_dir, as_json)
        return
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


#: training.json keys shown by `bioprune info MODEL_DIR`, in this order.
TRAINING_STATE_KEYS = (
    "recipe",
    "steps",
    "planned_steps",
    "epochs_completed",
    "stopped_by",
    "examples_seen",
    "tokens_seen",
    "train_loss_final",
    "val_loss",
    "val_perplexity",
    "wall_s",
    "max_time_s",
    "resumed_from_step",
    "checkpoint",
    "exported_from",
)


def training_state(model_dir: Path) -> dict:
    """The training state a model directory's ``training.json`` records."""
    path = model_dir / artifacts.MODEL_TRAINING
    try:
        record = json.loads(path.read_text())
    except ValueError as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path} does not hold a training record")
    state = {k: record.get(k) for k in TRAINING_STATE_KEYS if k in record}
    hp = record.get("hyperparameters") or {}
    state["budget"] = {k: hp.get(k) for k in ("epochs", "max_steps", "max_tokens") if k in hp}
    return state


def _show_training_state(model_dir: Path, as_json: bool) -> None:
    from rich.table import Table

    state = training_state(model_dir)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    table = Table(title=f"model {model_dir}: training state", title_justify="left")
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
