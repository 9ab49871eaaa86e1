"""``bioprune convert``: a real checkpoint in its original format -> a bioprune model directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options

FORMAT_HELP = (
    "Source format: rnafm (RNA-FM_pretrained.pth), multimolecule (its RNA-FM port), "
    "fair-esm (esm2_*.pt), hf-esm (facebook/esm2_* directory), esmc (ESM-C .pth state "
    "dict or safetensors). "
    "Default: detected from the contents."
)


@dataclass(frozen=True)
class ConvertOptions:
    """The options of ``bioprune convert``."""

    source: Path = option(help="Checkpoint file or directory to convert.", argument=True)
    source_format: str | None = option(None, help=FORMAT_HELP, flag="--from")
    out: Path = field(kw_only=True, metadata={"help": "Model directory to write."})
    trust_checkpoint: bool = option(
        False,
        help="Load a pickle that holds objects beyond tensors and argparse.Namespace with the "
        "full unpickler (it can execute code: only for files whose origin you trust).",
    )
    overwrite: bool = option(False, help="Replace an existing OUT.")


@with_options
def convert(opts: ConvertOptions) -> None:
    """Convert RNA-FM, ESM-2 (fair-esm or HF) or ESM-C weights into a bioprune model
    directory (config, safetensors, vocab.txt, bioprune_alphabet.json) with a
    conversion.json recording the source's sha256, format and every mapping decision.
    Pickles are read without executing code."""
    from bioprune.models.convert import convert_checkpoint

    out = opts.out
    info = convert_checkpoint(
        opts.source, out, source_format=opts.source_format, trust=opts.trust_checkpoint,
        overwrite=opts.overwrite,
    )  # fmt: skip
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
