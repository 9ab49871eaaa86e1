"""Progress of long runs: a rich bar on a terminal, plain lines in a log file.

A rich progress bar draws nothing when stderr is not a terminal (``nohup``,
SLURM, Snakemake, ``> log 2>&1``), so a long run there looked dead. Every long
stage therefore reports through :class:`ProgressLines` when its console is not
a terminal, or when the user asks for lines with ``--log-every-s``: one plain
line every ``every_s`` seconds (and at the first update, so a log shows life
at once) with work done of total, throughput, loss where there is one, elapsed
time and ETA, e.g.::

    pretrain: step 120/2,000 (6.0%) | loss 3.1234 | 2.10 step/s 9,876 tok/s
      | elapsed 0:00:57 | ETA 0:14:55   (one line in the log)

The lines are written through the caller's rich ``Console`` (the CLI's, on
stderr); library code never picks a stream itself. :func:`progress_style`
decides between bar, lines and nothing.

Library code does not draw anything: it reports through an optional
``progress`` callback that receives :class:`ProgressEvent` objects
(:data:`ProgressCallback`); the CLI turns those into the bar or the lines
(:func:`bioprune.cli.progress.rich_progress`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "DEFAULT_EVERY_S",
    "ProgressCallback",
    "ProgressEvent",
    "ProgressLines",
    "format_duration",
    "progress_style",
    "rate_unit",
]

#: Seconds between plain progress lines when the user gave no ``--log-every-s``.
DEFAULT_EVERY_S = 30.0


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report from a long library call.

    ``stage`` names the work (``"fisher"``, ``"pretrain"``); ``done`` counts
    units finished so far (absolute, so a resumed run's first event carries
    the work done before it) out of ``total`` (``None`` when unknown).
    ``message`` is a short free-form note. The optional fields feed the CLI's
    line: ``unit`` (``"step"``, ``"examples"``...), ``loss`` (latest training
    loss) and ``tokens`` (tokens processed since this call started, for tok/s).

    A stage's first event *opens* it and is not drawn as progress: send it
    before the work starts, with ``done`` = the work done before this call (0
    for a fresh run, the checkpoint's step for a resumed one), so rates and
    ETAs count only this call's work; then one event per unit of work (or
    batch). The CLI's adapter writes a stage's last line when its block ends.

    >>> event = ProgressEvent("score", 10, 100, unit="examples")
    >>> event.stage, event.done, event.total, event.loss
    ('score', 10, 100, None)
    """

    stage: str
    done: int
    total: int | None
    message: str = ""
    unit: str = "step"
    loss: float | None = None
    tokens: int | None = None


#: What a library function's ``progress=`` argument accepts.
ProgressCallback = Callable[[ProgressEvent], None]


def progress_style(enabled: bool, every_s: float | None, is_terminal: bool) -> str:
    """``"bar"``, ``"lines"`` or ``"off"``.

    ``enabled`` false silences everything unless ``every_s`` is given (so
    ``--no-progress --log-every-s 60`` still logs lines); an explicit
    ``every_s`` always means lines; otherwise a terminal gets the bar and
    anything else (a pipe, a file) lines.
    """
    if every_s is not None:
        return "lines"
    if not enabled:
        return "off"
    return "bar" if is_terminal else "lines"


def format_duration(seconds: float | None) -> str:
    """``3725.0`` -> ``"1:02:05"``; unknown (None, inf, nan) -> ``"?"``."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = round(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


class ProgressLines:
    """Plain, timestamp-free progress lines, at most one every ``every_s`` seconds.

    Parameters
    ----------
    title : command name that starts every line.
    total : units of work in the whole run (``None`` when unknown).
    unit : what is counted (``"step"``, ``"examples"``, ``"bytes"``).
    write : called with each finished line (e.g. ``console.print``).
    every_s : minimum seconds between lines; ``0`` writes one per update.
    done : units already done before this session (a resumed run); rates and
        the ETA count only this session's work.
    clock : seconds, monotonic (tests pass a fake one).
    """

    def __init__(
        self,
        title: str,
        total: int | None,
        unit: str,
        write: Callable[[str], None],
        *,
        every_s: float = DEFAULT_EVERY_S,
        done: int = 0,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.title, self.total, self.unit = title, total, unit
        self.write, self.every_s, self.clock = write, max(0.0, every_s), clock
        self.done0 = self.done = done
        self.start = clock()
        self.last: float | None = None
        self.lines = 0
        self.written_done: int | None = None  # ``done`` of the last line written

    def update(
        self,
        done: int,
        *,
        tokens: int | None = None,
        loss: float | None = None,
        note: str = "",
        force: bool = False,
    ) -> None:
        """Record progress ``done`` (absolute); write a line when one is due.

        ``tokens`` counts this session's tokens (for tok/s); ``note`` is appended.
        """
        self.done = done
        now = self.clock()
        if not force and self.last is not None and now - self.last < self.every_s:
            return
        self.last = now
        self.lines += 1
        self.written_done = done
        self.write(self.format(now, tokens=tokens, loss=loss, note=note))

    def format(
        self, now: float, *, tokens: int | None = None, loss: float | None = None, note: str = ""
    ) -> str:
        elapsed = now - self.start
        work = self.done - self.done0
        rate = work / elapsed if elapsed > 0 else 0.0
        if self.unit == "step":
            head = f"step {self.done:,}"
        else:
            head = f"{self.done:,}"
        if self.total:
            head += f"/{self.total:,}"
            head += f" {self.unit}" if self.unit != "step" else ""
            head += f" ({100.0 * self.done / self.total:.1f}%)"
        elif self.unit != "step":
            head += f" {self.unit}"
        parts = [f"{self.title}: {head}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        speed = (
            f"{rate:,.2f} {rate_unit(self.unit)}"
            if rate < 10
            else f"{rate:,.0f} {rate_unit(self.unit)}"
        )
        if tokens is not None and elapsed > 0:
            speed += f" {tokens / elapsed:,.0f} tok/s"
        parts.append(speed)
        eta = (self.total - self.done) / rate if self.total and rate > 0 else None
        if self.total and self.done >= self.total:
            eta = 0.0
        parts.append(f"elapsed {format_duration(elapsed)}")
        parts.append(f"ETA {format_duration(eta)}")
        if note:
            parts.append(note)
        return " | ".join(parts)


def rate_unit(unit: str) -> str:
    """``"examples"`` -> ``"ex/s"``: how a rate of ``unit`` is written."""
    return {"step": "step/s", "examples": "ex/s", "bytes": "B/s", "records": "rec/s"}.get(
        unit, f"{unit}/s"
    )
