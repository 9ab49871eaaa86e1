"""Shared CLI plumbing: one error style, a rich console."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape

from bioprune.errors import DISK_FULL_ERRNOS, BioPruneError, ConfigError, Terminated
from bioprune.selection.budget import parse_budget  # noqa: F401  (re-exported for the commands)

console = Console(stderr=True)

#: Exceptions that are the user's to fix: printed as one line, exit status 2. bioprune's own
#: errors (BioPruneError: InputError, DiskFullError, MissingIdsError) plus the built-ins that
#: the stages raise for bad arguments and missing or existing paths. KeyError, IndexError and
#: TypeError are deliberately absent: from a bug, they keep their traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    BioPruneError,
    ValueError,
    FileNotFoundError,
    FileExistsError,
    PermissionError,
    IsADirectoryError,
    NotADirectoryError,
)


def flag_name(param: str) -> str:
    """The CLI flag of a Python parameter: ``max_tokens`` -> ``--max-tokens``."""
    return "--" + param.strip("_").replace("_", "-")


@contextmanager
def flag_names(overrides: Mapping[str, str]) -> Iterator[None]:
    """Inside a command: a :class:`ConfigError` about a parameter in ``overrides`` names that
    flag instead of ``--dashed-param`` (for a command whose flag differs from the parameter).

    >>> try:
    ...     with flag_names({"budget": "--size"}):
    ...         raise ConfigError("budget", "must be positive")
    ... except ConfigError as exc:
    ...     print(_error_line(exc))
    --size: must be positive
    """
    try:
        yield
    except ConfigError as exc:
        if exc.flag is None and exc.param in overrides:
            exc.flag = overrides[exc.param]
        raise


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, ConfigError):
        return f"{exc.flag or flag_name(exc.param)}: {exc.reason}"
    if isinstance(exc, OSError) and not isinstance(exc, BioPruneError) and exc.filename:
        # "[Errno 2] No such file or directory: 'x'" -> "x: no such file or directory"
        reason = (exc.strerror or str(exc)).lower()
        return f"{exc.filename}: {reason}"
    return str(exc)


_signals_seen: list[int] = []


def _raise_terminated(signum: int, frame: object) -> None:
    _signals_seen.append(signum)
    raise Terminated()


def _interrupted(terminated: bool) -> None:
    if terminated:
        console.print("[yellow]terminated[/] (SIGTERM): temporary outputs removed")
        sys.exit(143)
    console.print("[yellow]interrupted[/]: temporary outputs removed")
    sys.exit(130)


def run_app(app: typer.Typer) -> None:
    """Run the CLI: usage errors are click's (exit 2); a user error is one red line, exit 2.

    SIGTERM (what a batch scheduler sends before SIGKILL) is raised like Ctrl-C, so every
    temporary output is removed on the way out; exit status 143 (130 for Ctrl-C).
    """
    previous = None
    _signals_seen.clear()
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        # standalone mode: click itself prints usage errors and exits; anything
        # else (our ValueError & co.) propagates here.
        app(standalone_mode=True)
    except SystemExit as exc:
        # click ends even a successful run with SystemExit(0); return normally
        # instead, so that main() can be called from Python.
        if exc.code == 130:  # typer turns KeyboardInterrupt (and so SIGTERM) into Exit(130)
            _interrupted(bool(_signals_seen))
        if exc.code not in (0, None):
            raise
    except USER_ERRORS as exc:
        _fail(_error_line(exc))
    except OSError as exc:
        if exc.errno not in DISK_FULL_ERRNOS:
            raise
        # a disk-full error that no atomic writer translated: still one line
        _fail(_error_line(exc) if exc.filename else f"{exc.strerror or exc} while writing output")
    except KeyboardInterrupt as exc:
        _interrupted(isinstance(exc, Terminated))
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _fail(message: str) -> None:
    # The message is plain text: file names and sequences may hold "[...]" or
    # ":a:", which rich would otherwise read as markup or emoji codes. soft_wrap: one
    # line whatever the terminal width, so a long path is never split (and grep finds it).
    console.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, emoji=False, soft_wrap=True
    )
    sys.exit(2)
