"""``bioprune init``: a randomly initialised preset model in HF format."""

from __future__ import annotations

from pathlib import Path

import typer

from bioprune.cli.common import console


def init(
    preset: str = typer.Option(
        ...,
        "--preset",
        help="tiny (<=1M, CPU demo), small (~10M), esm2-8m, esm2-35m, rnafm (~99M); "
        "ESM-C: esmc-tiny (CPU), esmc-300m, esmc-600m (protein only).",
    ),
    alphabet: str = typer.Option(
        ..., "--alphabet", help="rna (RNA-FM's 25 tokens) or protein (ESM-2's 33)."
    ),
    out: Path = typer.Option(..., "--out", help="Model directory to write (HF format)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random initialisation."),
    dropout: float = typer.Option(
        0.0, "--dropout", help="Hidden and attention dropout (default 0, as ESM-2)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Write a randomly initialised model (EsmForMaskedLM) that
    transformers.AutoModelForMaskedLM.from_pretrained(OUT) loads without bioprune."""
    from bioprune.models.presets import init_model

    info = init_model(preset, alphabet, out, seed=seed, dropout=dropout, overwrite=overwrite)
    console.print(
        f"wrote [bold]{out}[/]: preset {preset}, {alphabet}, "
        f"{info['parameters']:,} parameters, seed {seed}"
    )


def register(app: typer.Typer) -> None:
    app.command("init")(init)
