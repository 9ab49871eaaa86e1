"""Progress (examples/s, tokens/s, ETA) for fisher and score: a bar or plain lines."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from bioprune.progress import DEFAULT_EVERY_S, ProgressLines, progress_style

__all__ = ["RunProgress"]


class _RateColumn(ProgressColumn):
    """Examples/s and tokens/s since the bar started (this rank's work)."""

    def render(self, task) -> Text:
        elapsed = task.elapsed or 0.0
        if elapsed <= 0:
            return Text("-- ex/s  -- tok/s")
        ex = task.completed / elapsed
        tok = task.fields.get("tokens", 0) / elapsed
        return Text(f"{ex:,.1f} ex/s  {tok:,.0f} tok/s")


class RunProgress:
    """Progress on stderr, shown on the main rank only.

    ``total`` counts examples (of this rank); :meth:`advance` adds examples and
    tokens. :attr:`elapsed` gives wall time since the start. On a terminal a
    rich bar; otherwise (a log file, a pipe), or with ``every_s``, plain lines
    every ``every_s`` seconds (see :mod:`bioprune.progress`).
    """

    def __init__(
        self,
        description: str,
        total: int,
        *,
        enabled: bool = True,
        console=None,
        every_s: float | None = None,
    ):
        self.start = time.perf_counter()
        self.tokens = 0
        self.examples = 0
        self.note = ""
        self._progress = None
        self._lines = None
        console = console or Console(stderr=True)
        style = progress_style(enabled, every_s, console.is_terminal)
        if style == "bar":
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, tokens=0)
        elif style == "lines":
            self._lines = ProgressLines(
                description,
                total,
                "examples",
                lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
                every_s=DEFAULT_EVERY_S if every_s is None else every_s,
            )

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()
        lines = self._lines
        if (
            lines is not None
            and exc_type is None
            and lines.lines
            and lines.written_done != self.examples
        ):
            lines.update(self.examples, tokens=self.tokens, note=self.note, force=True)

    def advance(self, examples: int, tokens: int) -> None:
        self.examples += examples
        self.tokens += tokens
        if self._progress is not None:
            self._progress.update(self._task, advance=examples, tokens=self.tokens)
        if self._lines is not None:
            self._lines.update(self.examples, tokens=self.tokens, note=self.note)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
