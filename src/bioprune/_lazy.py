"""Lazy exports for a package ``__init__``: names imported on first access (PEP 562).

A package lists ``name -> defining module`` and gets the module-level ``__getattr__``
and ``__dir__`` from :func:`lazy_exports`, so importing the package loads nothing
heavy (no torch, NumPy or pyarrow) until one of its names is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``; ``exports`` maps a public name to its
    module (absolute, or relative to ``package`` when it starts with a dot). A name, once
    imported, is stored in ``namespace`` (the package's ``globals()``), so later look-ups
    skip the hook.

    >>> ns = {}
    >>> getattr_, dir_ = lazy_exports("pkg", {"sqrt": "math"}, ns)
    >>> getattr_("sqrt")(4.0), "sqrt" in ns, dir_()
    (2.0, True, ['sqrt'])
    >>> getattr_("nope")
    Traceback (most recent call last):
    AttributeError: module 'pkg' has no attribute 'nope'
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__
