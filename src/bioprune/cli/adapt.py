"""``bioprune adapt``: one epoch of MLM on a seeded random subset before scoring."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import typer

from bioprune.cli.options import option, with_options
from bioprune.cli.pretrain import common_options, finish, run_training, training_config
from bioprune.selection.budget import parse_budget
from bioprune.training.adapt import adaptation_defaults

_PAPER = adaptation_defaults()  # paper A.5: the defaults of the training options
_COMMON = common_options()


@dataclass(frozen=True)
class AdaptOptions:
    """The options of ``bioprune adapt``, in their --help order."""

    model: Path = option(help="Model directory to adapt.")
    corpus: Path = option(help="Prepared corpus directory.")
    subset_size: str = option(help="Examples in the random subset: a count or a fraction.")
    out: Path = option(help="Adapted model directory to write.")
    seed: int = option(_PAPER.seed, help="Seed of the subset, its order and masks.")
    lr: float = option(_PAPER.lr, help="AdamW learning rate (paper: 1e-5).")
    weight_decay: float = _COMMON["weight_decay"]
    warmup_steps: int = option(_PAPER.warmup_steps, help="Linear warmup steps.")
    schedule: str = option(
        _PAPER.schedule, help="After warmup: constant (default), linear or inverse-sqrt."
    )
    batch_size: int = option(_PAPER.batch_size, help="Examples per micro-step.")
    grad_accum: int = option(_PAPER.grad_accum, help="Micro-steps per optimizer step.")
    checkpoint_every: int = _COMMON["checkpoint_every"]
    log_every: int = _COMMON["log_every"]
    log_every_s: float | None = _COMMON["log_every_s"]
    max_time: str | None = _COMMON["max_time"]
    keep_checkpoint: bool = _COMMON["keep_checkpoint"]
    device: str = _COMMON["device"]
    dtype: str = _COMMON["dtype"]
    resume: bool = option(
        False, help="Continue from OUT.ckpt if present (a larger --max-time extends it)."
    )
    overwrite: bool = _COMMON["overwrite"]
    progress: bool = _COMMON["progress"]


@with_options
def adapt(opts: AdaptOptions) -> None:
    """One epoch of MLM on a seeded random subset before scoring (paper A.5: AdamW 1e-5, warmup 50, batch 16); saves the subset's indices for `bioprune fisher --subset-from`."""  # noqa: E501
    from bioprune.data.corpus import Corpus
    from bioprune.training.adapt import AdaptConfig
    from bioprune.training.adapt import adapt as run_adapt

    n = len(Corpus(opts.corpus))
    size = parse_budget(opts.subset_size, n, "subset_size")
    if size > n:
        raise ValueError(f"subset size {size} exceeds the corpus's {n} examples")
    config = AdaptConfig(
        model=opts.model, corpus=opts.corpus, out=opts.out, subset_size=size,
        training=training_config(asdict(opts), epochs=1),
    )  # fmt: skip
    info, stop = run_training(run_adapt, config)
    # The two numbers are curve rows: each the mean loss over a window of
    # --log-every steps (the first window still in warmup), not single batches.
    # On a small subset at lr 1e-5 the second may be higher; that is noise.
    finish(
        info,
        opts.out,
        stop,
        f"wrote [bold]{opts.out}[/]: {size:,} examples, {info['steps']} steps, "
        f"train loss (mean of the first -> last {opts.log_every}-step window) "
        f"{_fmt(info['train_loss_first'])} -> {_fmt(info['train_loss_final'])}, "
        f"{info['wall_s']:.1f} s",
    )


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.4f}"


def register(app: typer.Typer) -> None:
    app.command("adapt")(adapt)
