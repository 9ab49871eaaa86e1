"""``bioprune convert``: a real checkpoint in its original format -> a bioprune model directory."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console

FORMAT_HELP = (
    "Source format: rnafm (RNA-FM_pretrained.pth), multimolecule (its RNA-FM port), "
    "fair-esm (esm2_*.pt), hf-esm (facebook/esm2_* directory), esmc (ESM-C .pth state "
    "dict or safetensors). "
    "Default: detected from the contents."
)


def convert(
    source: Path = typer.Argument(..., help="Checkpoint file or directory to convert."),
    source_format: str = typer.Option(None, "--from", help=FORMAT_HELP),
    out: Path = typer.Option(..., "--out", help="Model directory to write."),
    trust_checkpoint: bool = typer.Option(
        False,
        "--trust-checkpoint",
        help="Load a pickle that holds objects beyond tensors and argparse.Namespace with the "
        "full unpickler (it can execute code: only for files whose origin you trust).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Convert RNA-FM, ESM-2 (fair-esm or HF) or ESM-C weights into a bioprune model
    directory (config, safetensors, vocab.txt, bioprune_alphabet.json) with a
    conversion.json recording the source's sha256, format and every mapping decision.
    Pickles are read without executing code."""
    from bioprune.models.convert import convert_checkpoint

    info = convert_checkpoint(
        source, out, source_format=source_format, trust=trust_checkpoint, overwrite=overwrite
    )
    how = "detected" if info["detected"] else "given"
    console.print(
        f"wrote [bold]{out}[/]: {info['architecture']} from {info['format']} ({how}), "
        f"{info['alphabet']} alphabet, {info['parameters']:,} parameters"
    )
    for note in info["notes"]:
        console.print(f"  note: {note}", highlight=False)
    if info["inexact"]:
        for item in info["inexact"]:
            console.print(f"  [yellow]not exact:[/] {item}", highlight=False)
    else:
        console.print("  every tensor copied exactly (no token is approximated)", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("convert")(convert)
