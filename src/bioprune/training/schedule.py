"""Learning-rate schedules of the paper's recipes (method.md section 6).

Every schedule is a pure function of the optimizer step ``t = 1, 2, ...`` (the
step about to be taken), so a resumed run needs only the step counter.

- ``inverse-sqrt`` (pretraining, paper A.3/A.4)::

      lr_t = lr * t / w              for t <= w
      lr_t = lr * sqrt(w / t)        for t >  w

  with ``w`` the warmup steps; both branches give ``lr`` at ``t = w``, so the
  curve is continuous and peaks there. ``w = 0`` is treated as ``w = 1``
  (``lr_1 = lr``, then ``lr * sqrt(1 / t)``).
- ``constant`` (adaptation, paper A.5, see docs/training.md)::

      lr_t = lr * min(1, t / w)
- ``linear`` (HF ``get_linear_schedule_with_warmup``, for users who read A.5 as
  the HF ``Trainer`` default)::

      lr_t = lr * t / w                       for t <= w
      lr_t = lr * max(0, (T - t) / (T - w))   for t >  w,   T = total steps

Examples
--------
>>> round(learning_rate(1, 1e-4, 2000), 15)
5e-08
>>> learning_rate(2000, 1e-4, 2000)
0.0001
>>> round(learning_rate(8000, 1e-4, 2000), 12)
5e-05
"""

from __future__ import annotations

import math

__all__ = ["SCHEDULES", "learning_rate", "lr_factor"]

SCHEDULES = ("inverse-sqrt", "constant", "linear")


def lr_factor(
    t: int, warmup: int, schedule: str = "inverse-sqrt", total_steps: int | None = None
) -> float:
    """Multiplier of the base learning rate at optimizer step ``t`` (1-based).

    Parameters
    ----------
    t : the optimizer step about to be taken, ``t >= 1``.
    warmup : linear-warmup steps ``w >= 0``.
    schedule : one of :data:`SCHEDULES`.
    total_steps : ``T``, needed by ``linear`` only.
    """
    if t < 1:
        raise ValueError(f"optimizer steps count from 1 (got {t})")
    if warmup < 0:
        raise ValueError(f"warmup steps must be >= 0 (got {warmup})")
    w = max(1, warmup)
    if t <= w:
        return t / w
    if schedule == "inverse-sqrt":
        return math.sqrt(w / t)
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        if total_steps is None:
            raise ValueError("the linear schedule needs the total number of steps")
        return max(0.0, (total_steps - t) / max(1, total_steps - w))
    raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")


def learning_rate(
    t: int, lr: float, warmup: int, schedule: str = "inverse-sqrt", total_steps: int | None = None
) -> float:
    """Learning rate used by optimizer step ``t`` (1-based): ``lr * lr_factor(...)``."""
    return lr * lr_factor(t, warmup, schedule, total_steps)


def lambda_lr(optimizer, warmup: int, schedule: str, total_steps: int | None = None):
    """A ``torch.optim.lr_scheduler.LambdaLR`` following :func:`lr_factor`.

    ``LambdaLR`` calls its function with the number of *completed* steps
    ``s = 0, 1, ...``; the step about to be taken is ``t = s + 1``.
    """
    from torch.optim.lr_scheduler import LambdaLR

    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; choose one of {SCHEDULES}")
    return LambdaLR(optimizer, lambda s: lr_factor(s + 1, warmup, schedule, total_steps))
