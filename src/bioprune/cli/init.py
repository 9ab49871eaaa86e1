"""``bioprune init``: a randomly initialised preset model in HF format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options


@dataclass(frozen=True)
class InitOptions:
    """The options of ``bioprune init``."""

    preset: str = option(
        help="tiny (<=1M, CPU demo), small (~10M), esm2-8m, esm2-35m, rnafm (~99M); "
        "ESM-C: esmc-tiny (CPU), esmc-300m, esmc-600m (protein only).",
    )
    alphabet: str = option(help="rna (RNA-FM's 25 tokens) or protein (ESM-2's 33).")
    out: Path = option(help="Model directory to write (HF format).")
    seed: int = option(0, help="Seed of the random initialisation.")
    dropout: float = option(0.0, help="Hidden and attention dropout (default 0, as ESM-2).")
    overwrite: bool = option(False, help="Replace an existing OUT.")


@with_options
def init(opts: InitOptions) -> None:
    """Write a randomly initialised model (EsmForMaskedLM) that
    transformers.AutoModelForMaskedLM.from_pretrained(OUT) loads without bioprune."""
    from bioprune.models.presets import init_model

    info = init_model(
        opts.preset, opts.alphabet, opts.out,
        seed=opts.seed, dropout=opts.dropout, overwrite=opts.overwrite,
    )  # fmt: skip
    console.print(
        f"wrote [bold]{opts.out}[/]: preset {opts.preset}, {opts.alphabet}, "
        f"{info['parameters']:,} parameters, seed {opts.seed}"
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
