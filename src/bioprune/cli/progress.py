"""The CLI's view of library progress and log records, on its rich console.

Library calls report progress through a ``progress`` callback that receives
:class:`bioprune.progress.ProgressEvent` objects and log through the
``bioprune`` logger; they never draw or print. This module is the one place
that turns both into what a CLI user sees on stderr:

- :func:`rich_progress` gives the callback: a rich bar on a terminal, plain
  :class:`~bioprune.progress.ProgressLines` in a log file or with
  ``--log-every-s``, nothing with ``--no-progress`` (see
  :func:`~bioprune.progress.progress_style`);
- :func:`log_to_console` renders ``bioprune`` log records as plain lines, so a
  library ``log.info("...")`` appears exactly as the CLI's own messages.

Each stage (``event.stage``) gets its own bar or line series. A stage's first
event opens it and draws no progress: its ``done`` is the work already done
before this call (0 for a fresh run, the checkpoint's step for a resumed one),
so rates and ETAs count only this session's work.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from bioprune.progress import (
    DEFAULT_EVERY_S,
    ProgressCallback,
    ProgressEvent,
    ProgressLines,
    progress_style,
)

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, Task
    from rich.text import Text

__all__ = ["ConsoleLogHandler", "log_to_console", "rich_progress"]


def _rate(per_second: float, unit: str) -> str:
    return f"{per_second:,.1f} {unit}" if per_second < 10 else f"{per_second:,.0f} {unit}"


def _stats(task: Task) -> Text:
    """Loss, units/s and tok/s of one bar, counting only this session's work."""
    from rich.text import Text

    fields = task.fields
    elapsed = task.elapsed or 0.0
    parts = []
    if fields.get("loss") is not None:
        parts.append(f"loss {fields['loss']:.4f}")
    if elapsed > 0:
        unit = {"step": "step/s", "examples": "ex/s", "bytes": "B/s"}.get(
            fields["unit"], f"{fields['unit']}/s"
        )
        parts.append(_rate((task.completed - fields["done0"]) / elapsed, unit))
        if fields.get("tokens") is not None:
            parts.append(f"{fields['tokens'] / elapsed:,.0f} tok/s")
    return Text("  ".join(parts) or "--")


class _Adapter:
    """The callback :func:`rich_progress` yields: one bar or line series per stage."""

    def __init__(self, console: Console, style: str, every_s: float | None, title: str):
        self.console, self.style, self.title = console, style, title
        self.every_s = DEFAULT_EVERY_S if every_s is None else every_s
        self.lines: dict[str, tuple[ProgressLines, ProgressEvent]] = {}
        self.tasks: dict[str, int] = {}
        self.bar: Progress | None = None

    def name(self, stage: str) -> str:
        return f"{self.title} {stage}" if self.title and stage != self.title else stage

    def write(self, line: str) -> None:
        self.console.print(line, markup=False, highlight=False, soft_wrap=True)

    def __call__(self, event: ProgressEvent) -> None:
        if self.style == "lines":
            self._line(event)
        elif self.style == "bar":
            self._bar(event)

    def _line(self, event: ProgressEvent) -> None:
        known = self.lines.get(event.stage)
        if known is None:  # the opening event: work done before this call, no line
            lines = ProgressLines(
                self.name(event.stage),
                event.total,
                event.unit,
                self.write,
                every_s=self.every_s,
                done=event.done,
            )
            self.lines[event.stage] = (lines, event)
            return
        lines = known[0]
        lines.total = event.total
        self.lines[event.stage] = (lines, event)
        lines.update(event.done, tokens=event.tokens, loss=event.loss, note=event.message)

    def _bar(self, event: ProgressEvent) -> None:
        assert self.bar is not None
        fields = {"loss": event.loss, "tokens": event.tokens, "message": event.message}
        task = self.tasks.get(event.stage)
        if task is None:
            self.tasks[event.stage] = self.bar.add_task(
                self.name(event.stage),
                total=event.total,
                completed=event.done,
                done0=event.done,
                unit=event.unit,
                **fields,
            )
            return
        self.bar.update(task, total=event.total, completed=event.done, **fields)

    def open(self) -> None:
        if self.style != "bar":
            return
        from rich import progress as rp

        class StatsColumn(rp.ProgressColumn):
            def render(self, task: Task) -> Text:
                return _stats(task)

        self.bar = rp.Progress(
            rp.TextColumn("[bold]{task.description}"),
            rp.BarColumn(),
            rp.MofNCompleteColumn(),
            StatsColumn(),
            rp.TimeElapsedColumn(),
            rp.TextColumn("ETA"),
            rp.TimeRemainingColumn(),
            rp.TextColumn("{task.fields[message]}", markup=False),
            console=self.console,
            transient=False,
        )
        self.bar.start()

    def close(self, failed: bool) -> None:
        """Stop the bar; after a success, write each stage's last line if it is not out yet."""
        if self.bar is not None:
            self.bar.stop()
        if failed:
            return
        for lines, last in self.lines.values():
            if lines.lines and lines.written_done != lines.done:
                lines.update(
                    lines.done, tokens=last.tokens, loss=last.loss, note=last.message, force=True
                )


@contextmanager
def rich_progress(
    console: Console,
    *,
    enabled: bool = True,
    every_s: float | None = None,
    title: str = "",
) -> Iterator[ProgressCallback]:
    """A progress callback that draws on ``console`` while the block runs.

    Parameters
    ----------
    console : the CLI's rich console (stderr).
    enabled : show anything at all (``every_s`` overrides a false value: the
        user asked for lines).
    every_s : plain lines every ``every_s`` seconds instead of the bar;
        ``None`` means the bar on a terminal and lines every
        :data:`~bioprune.progress.DEFAULT_EVERY_S` seconds elsewhere.
    title : put before each stage's name (``"evaluate"`` + ``"seed 0"`` ->
        ``"evaluate seed 0"``); a stage named like the title keeps its name.

    On leaving the block without an error, a stage whose last update fell
    between two lines gets a final line, so a log always ends with the total.
    """
    adapter = _Adapter(
        console, progress_style(enabled, every_s, console.is_terminal), every_s, title
    )
    adapter.open()
    failed = True
    try:
        yield adapter
        failed = False
    finally:
        adapter.close(failed)


class ConsoleLogHandler(logging.Handler):
    """Writes each log record's message as one plain line on a rich console.

    No level, time or logger name: library messages read like the CLI's own
    lines (as Python's last-resort handler wrote warnings before); warnings
    and errors are coloured on a terminal.
    """

    def __init__(self, console: Console, level: int = logging.NOTSET):
        super().__init__(level)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            style = None
            if record.levelno >= logging.ERROR:
                style = "red"
            elif record.levelno >= logging.WARNING:
                style = "yellow"
            self.console.print(
                self.format(record),
                style=style,
                markup=False,
                highlight=False,
                emoji=False,
                soft_wrap=True,
            )
        except Exception:  # a broken stream must not turn a log call into a crash
            self.handleError(record)


@contextmanager
def log_to_console(console: Console, level: int = logging.INFO) -> Iterator[ConsoleLogHandler]:
    """Render the ``bioprune`` logger's records at ``level`` and above on ``console``.

    The logger's level and handlers are restored on exit, so running the CLI
    in-process (tests, notebooks) leaves logging as it found it.
    """
    logger = logging.getLogger("bioprune")
    handler = ConsoleLogHandler(console)
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(level)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)
