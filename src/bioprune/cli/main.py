"""Entry point of the ``bioprune`` command.

Each command lives in its own module ``bioprune.cli.<name>`` exposing
``register(app)``. Heavy libraries (torch, transformers) are imported inside
the command bodies, so ``bioprune --help`` starts fast.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="bioprune",
    help=(
        "Shrink the pretraining corpora of biological foundation models with "
        "gradient-based self-influence: prepare a corpus, score every sequence, "
        "select a coreset, pretrain on it and evaluate downstream."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

#: Command modules, in pipeline order (their order in --help).
COMMANDS = [
    "init",
]

for _name in COMMANDS:
    importlib.import_module(f"bioprune.cli.{_name}").register(app)


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", help="Print the version and exit."),
) -> None:
    if version:
        from bioprune import __version__

        typer.echo(__version__)
        raise typer.Exit()


def main() -> None:
    """Console-script entry point; user errors print one clear line and exit 2."""
    from bioprune.cli.common import run_app

    run_app(app)


if __name__ == "__main__":
    main()
