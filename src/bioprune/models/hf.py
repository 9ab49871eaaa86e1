"""Quiet Hugging Face ``transformers`` for one block, then put its settings back.

``transformers`` keeps its log verbosity and its progress-bar switch in
process-wide state. bioprune needs both quiet while it loads or saves a model
(its own summary line says what happened), but a library must not leave them
changed for the caller: :func:`quiet_transformers` restores exactly what it
found, on success or error.

>>> from transformers.utils import logging as hf_logging
>>> before = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled())
>>> with quiet_transformers():
...     hf_logging.is_progress_bar_enabled()
False
>>> (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == before
True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["quiet_transformers"]


@contextmanager
def quiet_transformers(*, errors_only: bool = True) -> Iterator[None]:
    """Hide transformers' progress bars (and, with ``errors_only``, its warnings) inside.

    The previous verbosity and progress-bar state are restored on exit.
    """
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    if errors_only:
        hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        else:
            hf_logging.disable_progress_bar()
