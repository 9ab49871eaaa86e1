"""``bioprune export``: a training checkpoint -> a model directory."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console


def export(
    checkpoint: Path = typer.Argument(
        ..., help="A training checkpoint: OUT.ckpt (pretrain/adapt) or its checkpoint.pt."
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write (HF format)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Write the model of a pretrain/adapt checkpoint as a model directory (loads with plain transformers)."""  # noqa: E501
    from bioprune.training.export import export_checkpoint

    info = export_checkpoint(checkpoint, out, overwrite=overwrite)
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
