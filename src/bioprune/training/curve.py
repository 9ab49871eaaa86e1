"""The training curve: ``curve.csv`` (one row per logged step or evaluation) and ``curve.png``."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from bioprune import artifacts

__all__ = ["CURVE_COLUMNS", "append_curve_rows", "plot_curve", "write_curve_csv"]

#: Columns of ``curve.csv``; empty cells where a row has no value (e.g. no
#: validation at a logging step).
CURVE_COLUMNS = (
    "step",
    "epoch",
    "tokens",
    "lr",
    "train_loss",
    "val_loss",
    "val_perplexity",
    "wall_s",
)


def write_curve_csv(path: str | Path, rows: list[dict]) -> None:
    """Write the rows (dicts keyed by :data:`CURVE_COLUMNS`) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CURVE_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in CURVE_COLUMNS})
    artifacts.atomic_write_text(path, buf.getvalue())


def append_curve_rows(path: str | Path, rows: list[dict]) -> None:
    """Append finished rows to a curve file that :func:`write_curve_csv` started.

    For the live curve of a running job (``tail -f``-able); flushed per call.
    """
    with open(path, "a", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CURVE_COLUMNS, lineterminator="\n")
        for row in rows:
            writer.writerow({k: _cell(row.get(k)) for k in CURVE_COLUMNS})


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def plot_curve(
    path: str | Path,
    rows: list[dict],
    title: str,
    vocab_size: int | None = None,
    lr=None,
) -> None:
    """Plot MLM loss (train and validation) and learning rate against optimizer steps.

    With ``vocab_size`` a dotted line marks ``ln(vocab_size)``, the loss of a
    uniform guess, so an untrained model's starting point is visible. ``lr``
    (the rate of steps ``1..len(lr)``) draws the schedule exactly; without it
    the curve rows' rates are joined.
    """
    # The Figure API with an explicit Agg canvas: no pyplot, no global backend switch.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    train = [(r["step"], r["train_loss"]) for r in rows if r.get("train_loss") is not None]
    val = [(r["step"], r["val_loss"]) for r in rows if r.get("val_loss") is not None]
    if lr is not None and len(lr):
        lr = list(enumerate(lr, start=1))
    else:
        lr = [(r["step"], r["lr"]) for r in rows if r.get("lr") is not None]
    fig = Figure(figsize=(7, 5.5))
    FigureCanvasAgg(fig)
    ax_loss, ax_lr = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    if train:
        ax_loss.plot(*zip(*train, strict=True), lw=1.2, label="train (masked-token mean)")
    if val:
        ax_loss.plot(*zip(*val, strict=True), "o-", ms=4, lw=1.2, label="validation")
    if vocab_size:
        ax_loss.axhline(
            math.log(vocab_size),
            color="grey",
            ls=":",
            lw=0.8,
            label=f"uniform guess (ln {vocab_size})",
        )
    ax_loss.set_ylabel("MLM cross-entropy (nats)")
    ax_loss.set_title(title)
    ax_loss.legend(loc="upper right", fontsize=8)
    ax_loss.grid(alpha=0.3)
    if lr:
        ax_lr.plot(*zip(*lr, strict=True), color="tab:green", lw=1.2)
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("optimizer step")
    ax_lr.grid(alpha=0.3)
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    fig.tight_layout()
    with artifacts.atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=110)
