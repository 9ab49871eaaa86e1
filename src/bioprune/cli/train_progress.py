"""Training progress on stderr: a rich bar on a terminal, plain lines in a log.

Steps done of planned, loss, tokens/s, elapsed and ETA. Which of the two is
shown follows :func:`bioprune.progress.progress_style`. The training library
draws nothing: :class:`TrainingPrinter` is the ``progress`` callback that the
``pretrain`` and ``adapt`` commands hand it, turning its
:class:`~bioprune.training.progress.TrainingEvent` objects into the bar, the
lines and the notices.
"""

from __future__ import annotations

from bioprune.progress import DEFAULT_EVERY_S, ProgressEvent, ProgressLines, progress_style

__all__ = ["TrainingPrinter", "TrainingProgress"]


class TrainingPrinter:
    """The CLI's ``progress`` callback for a training run; a context manager.

    ``enabled`` and ``every_s`` are ``--progress`` and ``--log-every-s``;
    notices are printed when ``enabled``. Leaving the ``with`` block closes a
    bar still open (a run that raised).
    """

    def __init__(self, console, *, enabled: bool, every_s: float | None) -> None:
        self.console, self.enabled, self.every_s = console, enabled, every_s
        self._bar: TrainingProgress | None = None

    def __enter__(self) -> TrainingPrinter:
        return self

    def __exit__(self, *exc) -> None:
        self._close(*exc)

    def _close(self, *exc) -> None:
        bar, self._bar = self._bar, None
        if bar is not None:
            bar.__exit__(*(exc or (None, None, None)))

    def __call__(self, event: ProgressEvent) -> None:
        kind = getattr(event, "kind", "step")
        if kind == "notice":
            if self.enabled:
                self.console.print(event.message, highlight=False, markup=False, soft_wrap=True)
        elif kind == "start":
            self._close()
            self._bar = TrainingProgress(
                total=event.total or 0, done=event.done, tokens=0, enabled=self.enabled,
                title=event.stage, every_s=self.every_s, console=self.console,
            ).__enter__()  # fmt: skip
        elif kind == "end":
            self._close()
        elif self._bar is not None:
            self._bar.update(
                event.done, event.loss, event.tokens or 0, getattr(event, "seconds", 0.0),
                note=event.message, force=getattr(event, "force", False),
            )  # fmt: skip


class TrainingProgress:
    """Context manager; ``update`` after every optimizer step. Disabled -> does nothing.

    Parameters
    ----------
    total : planned optimizer steps.
    done : steps taken before this session (a resumed run).
    tokens : tokens seen before this session.
    enabled : show anything at all (``every_s`` overrides a false value).
    title : name at the start of the bar or line.
    every_s : plain lines every ``every_s`` seconds instead of the bar.
    console : rich console to draw on (default: a new one on stderr).
    """

    def __init__(
        self,
        total: int,
        done: int,
        tokens: int,
        enabled: bool,
        title: str,
        *,
        every_s: float | None = None,
        console=None,
    ):
        from rich.console import Console

        self._tokens0 = tokens  # tokens seen before this session (a resumed run)
        self.total, self.done, self.title = total, done, title
        self.console = console or Console(stderr=True)
        self.style = progress_style(enabled, every_s, self.console.is_terminal)
        self.enabled = self.style != "off"
        self._progress = None
        self._lines = None
        if self.style == "lines":
            self._lines = ProgressLines(
                title,
                total,
                "step",
                lambda line: self.console.print(
                    line, markup=False, highlight=False, soft_wrap=True
                ),
                every_s=DEFAULT_EVERY_S if every_s is None else every_s,
                done=done,
            )

    def __enter__(self) -> TrainingProgress:
        if self.style != "bar":
            return self
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
            console=self.console,
            transient=False,
        )
        self._progress.__enter__()
        self._task = self._progress.add_task(
            self.title, total=self.total, completed=self.done, loss="-", rate="-"
        )
        return self

    def update(
        self,
        step: int,
        loss: float | None,
        tokens: int,
        seconds: float,
        *,
        note: str = "",
        force: bool = False,
    ) -> None:
        """Show ``step``; the rate is the tokens of this session over its wall time."""
        if self._lines is not None:
            self._lines.update(
                step, tokens=tokens - self._tokens0, loss=loss, note=note, force=force
            )
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
