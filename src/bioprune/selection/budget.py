"""How many examples to keep: a count, or a fraction of the corpus (no NumPy: the CLI
imports this at start-up)."""

from __future__ import annotations

import numbers

from bioprune.errors import ConfigError

__all__ = ["as_count", "parse_budget"]


def parse_budget(text: str, n: int, param: str = "budget") -> int:
    """``"1000"`` -> 1000; ``"0.1"`` or ``"10%"`` -> a fraction of ``n`` (floor).

    A value with a decimal point or a percent sign is a fraction; an integer is a count.
    ``param`` names the argument in the :class:`~bioprune.errors.ConfigError` of a value
    that is neither (``"--subset-size"`` and ``"subset size"`` name ``subset_size``).

    >>> parse_budget("1000", 5000), parse_budget("0.1", 5000), parse_budget("10%", 5000)
    (1000, 500, 500)
    >>> parse_budget("ten", 5000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    bioprune.errors.ConfigError: budget: 'ten' is neither a count (e.g. 1000) nor a fraction ...
    """
    param = param.strip("-").replace("-", "_").replace(" ", "_")
    t = text.strip()
    try:
        if t.endswith("%"):
            frac = float(t[:-1]) / 100.0
        elif any(c in t for c in ".eE"):
            frac = float(t)
        else:
            count = int(t)
            if count < 0:
                raise ValueError
            return count
    except ValueError:
        raise ConfigError(
            param, f"{text!r} is neither a count (e.g. 1000) nor a fraction (e.g. 0.1 or 10%)"
        ) from None
    if not 0.0 <= frac <= 1.0:
        raise ConfigError(param, f"fraction {text!r} must lie between 0 and 1")
    return int(frac * n)


def as_count(budget: int | float | str, n: int, param: str = "budget") -> int:
    """A budget given as a count (``int``), a fraction of ``n`` (``float`` in [0, 1]) or text
    (:func:`parse_budget`) as a count.

    >>> as_count(30, 1000), as_count(0.01, 1000), as_count("5%", 1000)
    (30, 10, 50)
    """
    if isinstance(budget, str):
        return parse_budget(budget, n, param)
    if isinstance(budget, bool):
        raise ConfigError(param, f"must be a count or a fraction, got {budget!r}")
    if isinstance(budget, numbers.Integral):
        return int(budget)
    if isinstance(budget, numbers.Real):
        if not 0.0 <= float(budget) <= 1.0:
            raise ConfigError(param, f"a fraction must lie between 0 and 1, got {budget!r}")
        return int(float(budget) * n)
    raise ConfigError(param, f"must be a count, a fraction or text, got {type(budget).__name__}")
