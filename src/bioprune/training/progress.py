"""A rich progress bar for training: steps, loss, tokens/s and ETA (on stderr)."""

from __future__ import annotations

__all__ = ["TrainingProgress"]


class TrainingProgress:
    """Context manager; ``update`` after every optimizer step. Disabled -> does nothing."""

    def __init__(self, total: int, done: int, tokens: int, enabled: bool, title: str):
        self.enabled = enabled
        self._tokens0 = tokens  # tokens seen before this session (a resumed run)
        self.total, self.done, self.title = total, done, title
        self._progress = None

    def __enter__(self) -> TrainingProgress:
        if not self.enabled:
            return self
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("{task.fields[rate]} tok/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(
            self.title, total=self.total, completed=self.done, loss="-", rate="-"
        )
        return self

    def update(self, step: int, loss: float | None, tokens: int, seconds: float) -> None:
        """Show ``step``; the rate is the tokens of this session over its wall time."""
        if self._progress is None:
            return
        rate = (tokens - self._tokens0) / seconds if seconds > 0 else 0.0
        self._progress.update(
            self._task,
            completed=step,
            loss=f"{loss:.4f}" if loss is not None else "-",
            rate=f"{rate:,.0f}",
        )

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
