"""Matplotlib figures without pyplot: no global state, the caller's backend untouched.

Every plot in bioprune is drawn on a :class:`matplotlib.figure.Figure` made
here and written with ``savefig`` (which renders through Agg for PNG), so
importing or calling bioprune never runs ``matplotlib.use`` nor registers a
figure with pyplot.

>>> import matplotlib
>>> backend = matplotlib.get_backend()
>>> fig = figure(2, 1)
>>> _ = fig.add_subplot().plot([0, 1], [1, 0])
>>> png(fig)[:8]
b'\\x89PNG\\r\\n\\x1a\\n'
>>> matplotlib.get_backend() == backend
True
"""

from __future__ import annotations

import io

__all__ = ["figure", "png", "save"]


def figure(width: float, height: float, dpi: float | None = None, **kwargs):
    """A new ``Figure`` of ``width`` x ``height`` inches, outside pyplot."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=dpi, **kwargs)


def png(fig, dpi: float | None = None) -> bytes:
    """``fig`` laid out (``tight_layout``) and rendered as PNG bytes."""
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi="figure" if dpi is None else dpi)
    return buf.getvalue()


def save(fig, path, dpi: float) -> None:
    """``fig`` laid out (``tight_layout``) and written to ``path`` as PNG."""
    fig.tight_layout()
    fig.savefig(path, dpi=dpi, format="png")
