"""What a training run reports while it runs (it draws nothing itself).

:class:`~bioprune.training.recipe.MaskedLMRecipe` calls its ``progress``
callback with :class:`TrainingEvent` objects, a
:class:`~bioprune.progress.ProgressEvent` with the few extra fields a training
bar needs; ``bioprune.cli.train_progress`` turns them into the CLI's bar or
lines. Notices (``kind="notice"``) are also logged on the ``bioprune.training``
logger.

>>> event = TrainingEvent("pretrain", 3, 10, loss=2.5, tokens=1200, seconds=2.0)
>>> event.kind, event.unit, isinstance(event, ProgressEvent)
('step', 'step', True)
"""

from __future__ import annotations

from dataclasses import dataclass

from bioprune.progress import ProgressEvent

__all__ = ["TRAINING_EVENT_KINDS", "TrainingEvent"]

#: ``notice``: a one-line message (``message``); ``start``: the loop begins at
#: step ``done`` of ``total``; ``step``: an optimizer step finished; ``end``: the loop ended.
TRAINING_EVENT_KINDS = ("notice", "start", "step", "end")


@dataclass(frozen=True)
class TrainingEvent(ProgressEvent):
    """A :class:`~bioprune.progress.ProgressEvent` of a training run.

    ``done`` is the optimizer step (absolute, a resumed run's first event
    carries the steps before it), ``total`` the planned steps, ``tokens`` the
    tokens trained on in this session and ``seconds`` this session's training
    time. ``force`` asks a rate-limited display to show this event (a
    validation or the last step); ``message`` is the note (``val loss ...``).
    """

    kind: str = "step"
    seconds: float = 0.0
    force: bool = False
