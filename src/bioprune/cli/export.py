"""``bioprune export``: a training checkpoint -> a model directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options


@dataclass(frozen=True)
class ExportOptions:
    """The options of ``bioprune export``."""

    checkpoint: Path = option(
        help="A training checkpoint: OUT.ckpt (pretrain/adapt) or its checkpoint.pt.",
        argument=True,
    )
    out: Path = option(help="Model directory to write (HF format).")
    overwrite: bool = option(False, help="Replace an existing OUT.")


@with_options
def export(opts: ExportOptions) -> None:
    """Write the model of a pretrain/adapt checkpoint as a model directory (loads with plain transformers)."""  # noqa: E501
    from bioprune.training.export import export_checkpoint

    out = opts.out
    info = export_checkpoint(opts.checkpoint, out, overwrite=opts.overwrite)
    val = info.get("val_loss")
    console.print(
        f"wrote [bold]{out}[/]: {info.get('recipe', 'training')} checkpoint at step "
        f"{info['steps']:,} ({info['tokens_seen']:,} tokens"
        + (f", val loss {val:.4f}" if val is not None else "")
        + ")",
        highlight=False,
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("export")(export)
