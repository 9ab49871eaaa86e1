"""Progress bar (examples/s, tokens/s, ETA) and end-of-run summary for fisher and score."""

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
    """A rich progress bar on stderr, shown on the main rank only.

    ``total`` counts examples (of this rank); :meth:`advance` adds examples and
    tokens. :attr:`elapsed` gives wall time since the start.
    """

    def __init__(self, description: str, total: int, *, enabled: bool = True, console=None):
        self.start = time.perf_counter()
        self.tokens = 0
        self.examples = 0
        self._progress = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console or Console(stderr=True),
                transient=False,
            )
            self._task = self._progress.add_task(description, total=total, tokens=0)

    def __enter__(self) -> RunProgress:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def advance(self, examples: int, tokens: int) -> None:
        self.examples += examples
        self.tokens += tokens
        if self._progress is not None:
            self._progress.update(self._task, advance=examples, tokens=self.tokens)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start
