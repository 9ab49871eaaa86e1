"""Downstream evaluation: train a task head on a model, report the test metrics.

The in-memory API (nothing is written or printed unless asked):

- :class:`Task` (``Task.open(path)``): a task directory, task YAML or benchmark layout;
- :func:`evaluate` (``evaluate(model, task, seeds=(0, 1, 2))``) returns an
  :class:`EvaluationResult` (``.metrics``, ``.runs``, ``.save(path)`` = the CLI's
  RESULTS.json);
- :func:`register_kind`, :func:`get_kind`, :func:`task_kinds`: the registry of task
  kinds (:mod:`bioprune.evaluation.kinds`).

>>> import bioprune.evaluation as ev
>>> ev.task_kinds()[:3]
['classification', 'regression', 'multilabel']

Names are imported on first use, so ``import bioprune.evaluation`` stays light.
"""

from __future__ import annotations

from bioprune._lazy import lazy_exports

__all__ = [
    "EvaluationResult",
    "Task",
    "TaskKind",
    "evaluate",
    "get_kind",
    "register_kind",
    "task_kinds",
]

_HOMES = {
    "EvaluationResult": "bioprune.evaluation.downstream",
    "Task": "bioprune.evaluation.downstream",
    "evaluate": "bioprune.evaluation.downstream",
    "TaskKind": "bioprune.evaluation.kinds",
    "get_kind": "bioprune.evaluation.kinds",
    "register_kind": "bioprune.evaluation.kinds",
    "task_kinds": "bioprune.evaluation.kinds",
}


__getattr__, __dir__ = lazy_exports(__name__, _HOMES, globals())
