"""Entry point of the ``bioprune`` command.

Each command lives in its own module ``bioprune.cli.<name>`` exposing
``register(app)``; every such module in this package is registered, in the
pipeline order of ``COMMAND_ORDER`` (others after, alphabetically). Heavy
libraries (torch, transformers) are imported inside the command bodies, so
``bioprune --help`` starts fast.
"""

from __future__ import annotations

import importlib
import pkgutil

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

#: Pipeline order of the commands in --help.
COMMAND_ORDER = [
    "study", "prepare", "info", "init", "convert", "adapt", "plan", "fisher", "score", "select",
    "inspect", "pretrain", "export", "evaluate", "report", "doctor",
]  # fmt: skip


def _command_modules() -> list[str]:
    import bioprune.cli as pkg

    names = [m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in {"main", "common"}]
    rank = {n: i for i, n in enumerate(COMMAND_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


for _name in _command_modules():
    _module = importlib.import_module(f"bioprune.cli.{_name}")
    if hasattr(_module, "register"):
        _module.register(app)


def _one_line_summaries() -> None:
    """Each command's line in ``bioprune --help`` is its docstring's first paragraph
    joined into one line: a docstring wrapped at 80 columns in the source would
    otherwise show its line breaks mid-sentence in the list."""
    import inspect

    for command in app.registered_commands:
        if command.short_help is None and command.callback is not None:
            doc = command.help or inspect.getdoc(command.callback) or ""
            first = doc.strip().split("\n\n")[0]
            command.short_help = " ".join(first.replace("\b", "").split())


_one_line_summaries()


def _print_version(value: bool) -> None:
    if value:
        from bioprune import __version__

        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    version: bool = typer.Option(
        False,
        "--version",
        help="Print the version and exit.",
        callback=_print_version,
        is_eager=True,
    ),
    verbose: bool = typer.Option(
        False, "--verbose", "-v", help="Also show debug messages from the library."
    ),
) -> None:
    """Global options."""
    import logging

    from bioprune.cli.common import console
    from bioprune.cli.progress import log_to_console

    # library messages (the ``bioprune`` logger) become the command's lines on
    # stderr until the command ends; logging is restored afterwards
    ctx.with_resource(log_to_console(console, logging.DEBUG if verbose else logging.INFO))


def main() -> None:
    """Console-script entry point; user errors print one clear line and exit 2."""
    from bioprune.cli.common import run_app

    run_app(app)


if __name__ == "__main__":
    main()
