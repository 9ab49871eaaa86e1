"""Shared CLI plumbing: one error style, a rich console, budget parsing."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

console = Console(stderr=True)

#: Exceptions that are the user's to fix: printed as one line, exit status 2.
USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, PermissionError)


def run_app(app: typer.Typer) -> None:
    """Run the CLI: usage errors are click's (exit 2); a user error is one red line, exit 2."""
    try:
        # standalone mode: click itself prints usage errors and exits; anything
        # else (our ValueError & co.) propagates here.
        app(standalone_mode=True)
    except SystemExit as exc:
        # click ends even a successful run with SystemExit(0); return normally
        # instead, so that main() can be called from Python.
        if exc.code not in (0, None):
            raise
    except USER_ERRORS as exc:
        msg = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        # The message is plain text: file names and sequences may hold "[...]" or
        # ":a:", which rich would otherwise read as markup or emoji codes.
        console.print(f"[bold red]error:[/] {escape(str(msg))}", highlight=False, emoji=False)
        sys.exit(2)
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        sys.exit(130)


def parse_budget(text: str, n: int, what: str = "budget") -> int:
    """``"1000"`` -> 1000; ``"0.1"`` or ``"10%"`` -> a fraction of ``n`` (floor).

    A value with a decimal point or a percent sign is a fraction; an integer is a count.
    """
    t = text.strip()
    try:
        if t.endswith("%"):
            frac = float(t[:-1]) / 100.0
        elif any(c in t for c in ".eE"):
            frac = float(t)
        else:
            count = int(t)
            if count < 0:
                raise ValueError
            return count
    except ValueError:
        raise ValueError(
            f"{what} {text!r} is neither a count (e.g. 1000) nor a fraction (e.g. 0.1 or 10%)"
        ) from None
    if not 0.0 <= frac <= 1.0:
        raise ValueError(f"{what} fraction {text!r} must lie between 0 and 1")
    return int(frac * n)
