"""The public API: ``import bioprune`` is cheap, every exported name resolves."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys
import typing

import pytest

import bioprune

HEAVY = ("torch", "transformers", "pyarrow", "matplotlib", "rich", "numpy", "pandas")


def test_import_is_cheap_and_changes_no_global_state():
    """In a fresh interpreter: no heavy library imported, root logging untouched."""
    code = (
        "import json, logging, sys\n"
        "root = (logging.root.level, list(logging.root.handlers))\n"
        "import bioprune\n"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "same = root == (logging.root.level, list(logging.root.handlers))\n"
        "handlers = [type(h).__name__ for h in logging.getLogger('bioprune').handlers]\n"
        "print(json.dumps([heavy, same, handlers]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    heavy, same, handlers = json.loads(out)
    assert heavy == [] and same and handlers == ["NullHandler"]


@pytest.mark.parametrize("name", [n for n in bioprune.__all__ if n != "__version__"])
def test_every_public_name_resolves(name):
    value = getattr(bioprune, name)
    assert value is getattr(bioprune, name)  # cached after the first access
    assert name in dir(bioprune)
    alias = typing.get_origin(value) is not None  # ProgressCallback = Callable[...]
    if (inspect.isclass(value) or inspect.isfunction(value)) and not alias:
        assert inspect.getdoc(value), f"{name} has no docstring"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'score'"):
        bioprune.score  # noqa: B018
    assert not hasattr(bioprune, "compute_scores")
