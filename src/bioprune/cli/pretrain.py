"""``bioprune pretrain``: MLM pretraining from scratch on a corpus or a coreset.

Also the pieces ``adapt`` shares: ``--max-time`` parsing, the SIGINT/SIGTERM
handlers that ask the recipe to stop at the next step boundary, and the line
that says where a stopped run left its model and checkpoint.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import typer

from bioprune.cli.common import console

# Options shared with `bioprune adapt` (same names, same help).
MAX_TIME = typer.Option(
    None,
    "--max-time",
    help="Stop at the first step boundary after this much training time, e.g. 45m, 2h, "
    "1h30m, 90s (all sessions of a resumed run together); writes the checkpoint and a "
    "usable model (training.json: stopped_by time).",
)
KEEP_CHECKPOINT = typer.Option(
    False,
    "--keep-checkpoint",
    help="Keep OUT.ckpt after the budget is spent, so --resume with a larger budget can "
    "extend the run.",
)
LOG_EVERY_S = typer.Option(
    None,
    "--log-every-s",
    help="A plain progress line every S seconds (step/total, loss, tok/s, elapsed, ETA) "
    "instead of the bar; default: the bar on a terminal, a line every 30 s otherwise.",
)
PROGRESS = typer.Option(
    True,
    "--progress/--no-progress",
    help="Progress: a bar on a terminal, plain lines in a log (--no-progress: none, unless "
    "--log-every-s is given).",
)
WEIGHT_DECAY = typer.Option(0.01, "--weight-decay", help="AdamW weight decay.")
CHECKPOINT_EVERY = typer.Option(
    1000, "--checkpoint-every", help="Checkpoint to OUT.ckpt every N steps (0: never)."
)
LOG_EVERY = typer.Option(
    10, "--log-every", help="A curve row (window mean of the training loss) every N steps."
)
DEVICE = typer.Option("auto", "--device", help="auto, cpu or cuda.")
DTYPE = typer.Option("auto", "--dtype", help="Autocast: auto (bf16 on GPU), float32 or bfloat16.")
OVERWRITE = typer.Option(False, "--overwrite", help="Replace OUT and its checkpoint.")

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*(d|h|m|min|s|sec)?", re.IGNORECASE)
_UNIT_S = {"d": 86400.0, "h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "sec": 1.0}


def parse_duration(text: str | None) -> float | None:
    """``"45m"`` -> 2700.0; ``"1h30m"`` -> 5400.0; ``"90"`` -> 90.0 (seconds); None -> None."""
    if text is None:
        return None
    t = text.strip().replace(" ", "")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(t):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[(m.group(2) or "s").lower()]
        pos = m.end()
    if not t or pos != len(t) or total <= 0:
        raise ValueError(
            f"--max-time {text!r} is not a positive duration (e.g. 45m, 2h, 1h30m, 90s, 3600)"
        )
    return total


class StopRequest:
    """Set by the first SIGINT/SIGTERM; the recipe polls it between steps."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.signum: int | None = None

    def __call__(self) -> str | None:
        return "signal" if self.event.is_set() else None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Turn the first SIGINT/SIGTERM into a stop request; a second one aborts at once.

    The previous handlers are restored on exit. Outside the main thread (where
    Python cannot install handlers) the request is simply never set.
    """
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def handler(signum, frame):
        if stop.event.is_set():  # the second: abort now, as the previous handler would
            before = previous[signum]
            if callable(before):
                before(signum, frame)
            raise KeyboardInterrupt
        stop.signum = signum
        stop.event.set()
        name = signal.Signals(signum).name
        try:  # os.write: safe inside a signal handler, unlike print
            os.write(
                2,
                f"\n{name}: stopping at the next step boundary, then writing the checkpoint "
                "and the model (send it again to abort without saving)\n".encode(),
            )
        except OSError:
            pass

    for s in signums:
        signal.signal(s, handler)
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


#: Command parameters whose TrainingConfig field is named (or typed) differently.
_RENAMED = {
    "max_time": "max_time_s",
    "progress": "show_progress",
    "log_every_s": "progress_every_s",
}


def training_config(params: dict[str, Any], **fixed: Any):
    """The :class:`TrainingConfig` of a command's parameters (``dict(locals())``).

    Parameters named like a field are copied, the CLI spellings in
    :data:`_RENAMED` mapped (``--max-time`` parsed), ``fixed`` added; other
    parameters are ignored and unnamed fields keep their defaults.
    """
    from dataclasses import fields

    from bioprune.training.recipe import TrainingConfig

    names = {f.name for f in fields(TrainingConfig)}
    values = {_RENAMED.get(k, k): v for k, v in params.items()}
    values["max_time_s"] = parse_duration(params.get("max_time"))
    return TrainingConfig(**{k: v for k, v in values.items() if k in names}, **fixed)


def run_training(run: Callable[..., dict], config) -> tuple[dict, StopRequest]:
    """Run ``run(config, should_stop=..., progress=...)`` with the CLI's signals and progress.

    SIGINT/SIGTERM become a stop request; the library's progress events become
    the bar or the lines (``--progress``, ``--log-every-s``) on the console.
    """
    from bioprune.cli.train_progress import TrainingPrinter

    tc = config.training
    printer = TrainingPrinter(console, enabled=tc.show_progress, every_s=tc.progress_every_s)
    with stop_on_signals() as stop, printer:
        info = run(config, should_stop=stop, progress=printer)
    return info, stop


def finish(
    info: dict, out: Path, stop: StopRequest, summary: str, *, highlight: bool = False
) -> None:
    """On rank 0: print the one-line ``summary``, then :func:`report_stop`."""
    if os.environ.get("RANK", "0") == "0":
        console.print(summary, highlight=highlight, soft_wrap=True)  # one line in a log file
        report_stop(info, out, stop)


def report_stop(info: dict, out: Path, stop: StopRequest) -> None:
    """After a stopped run: say where its model and checkpoint are; exit 130/143 on a signal.

    A time budget is what the user asked for (exit 0); a signal means the job
    did not finish, and schedulers should see that (128 + the signal number).
    """
    reason = info.get("stopped_by")
    if reason not in ("time", "signal", "request"):
        return
    console.print(
        f"[yellow]stopped by {reason}[/] at step {info['steps']:,}: model written to "
        f"[bold]{out}[/] (usable; training.json stopped_by {reason}), checkpoint "
        f"{info.get('checkpoint')}; continue with the same command plus --resume"
        + (" and a larger --max-time" if reason == "time" else ""),
        highlight=False,
        soft_wrap=True,
    )
    if reason == "signal" and stop.signum is not None:
        raise typer.Exit(128 + int(stop.signum))


def pretrain(
    corpus: Path = typer.Option(..., "--corpus", help="Prepared corpus directory."),
    out: Path = typer.Option(..., "--out", help="Model directory to write (HF format)."),
    selection: Path = typer.Option(
        None, "--selection", help="Selection directory (bioprune select): train on it only."
    ),
    preset: str = typer.Option(
        None, "--preset", help="Start from scratch: micro, tiny, small, esm2-8m, esm2-35m or rnafm."
    ),
    init: Path = typer.Option(None, "--init", help="Start from this model directory instead."),
    dropout: float = typer.Option(0.0, "--dropout", help="Dropout of a --preset model."),
    lr: float = typer.Option(1e-4, "--lr", help="Peak AdamW learning rate (paper: 1e-4)."),
    weight_decay: float = WEIGHT_DECAY,
    warmup_steps: int = typer.Option(2000, "--warmup-steps", help="Linear warmup steps."),
    schedule: str = typer.Option(
        "inverse-sqrt", "--schedule", help="After warmup: inverse-sqrt, constant or linear."
    ),
    batch_size: int = typer.Option(
        16, "--batch-size", help="Examples per micro-step, split across torchrun ranks."
    ),
    grad_accum: int = typer.Option(
        1, "--grad-accum", help="Micro-steps per optimizer step (global batch = batch x accum)."
    ),
    epochs: int = typer.Option(10, "--epochs", help="Passes over the training examples."),
    max_steps: int = typer.Option(
        None, "--max-steps", help="Stop after this many optimizer steps (equal compute)."
    ),
    max_tokens: int = typer.Option(
        None, "--max-tokens", help="Stop once this many (unpadded) tokens were trained on."
    ),
    val_fraction: float = typer.Option(
        0.02, "--val-fraction", help="Seeded held-out validation fraction (indices saved)."
    ),
    eval_every: int = typer.Option(
        0, "--eval-every", help="Validate every N steps (0: at each epoch end)."
    ),
    checkpoint_every: int = CHECKPOINT_EVERY,
    log_every: int = LOG_EVERY,
    log_every_s: float = LOG_EVERY_S,
    max_time: str = MAX_TIME,
    keep_checkpoint: bool = KEEP_CHECKPOINT,
    seed: int = typer.Option(0, "--seed", help="Seed of init, split, epoch order and masks."),
    device: str = DEVICE,
    dtype: str = DTYPE,
    resume: bool = typer.Option(
        False,
        "--resume",
        help="Continue from OUT.ckpt if present (a larger --max-steps/--epochs/--max-time "
        "extends the run).",
    ),
    overwrite: bool = OVERWRITE,
    progress: bool = PROGRESS,
) -> None:
    """Pretrain a masked LM on a corpus or a coreset (paper A.3/A.4: AdamW 1e-4, warmup 2,000 then inverse-sqrt, batch 16, 10 epochs); torchrun for several processes."""  # noqa: E501
    from bioprune.training.pretrain import PretrainConfig
    from bioprune.training.pretrain import pretrain as run_pretrain

    params = dict(locals())
    config = PretrainConfig(
        **{k: params[k] for k in ("corpus", "out", "selection", "preset", "init", "dropout")},
        val_fraction=val_fraction,
        training=training_config(params),
    )
    info, stop = run_training(run_pretrain, config)
    val = info["val_loss"]
    finish(
        info,
        out,
        stop,
        f"wrote [bold]{out}[/]: {info['steps']} steps ({info['stopped_by']}), "
        f"{info['tokens_seen']:,} tokens, train loss {info['train_loss_final']:.4f}"
        + (f", val loss {val:.4f} (ppl {info['val_perplexity']:.2f})" if val else "")
        + f", {info['wall_s']:.1f} s",
        highlight=True,
    )


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
