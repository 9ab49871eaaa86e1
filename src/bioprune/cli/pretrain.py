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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options
from bioprune.training.recipe import TrainingConfig

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


_PAPER = TrainingConfig  # the defaults of every training option (class attributes)


def common_options() -> dict[str, Any]:
    """The fields ``pretrain`` and ``adapt`` declare alike (same flag, default and help).

    Called once per options dataclass: a ``dataclasses.Field`` belongs to one class.
    """
    return {
        "weight_decay": option(_PAPER.weight_decay, help="AdamW weight decay."),
        "checkpoint_every": option(
            _PAPER.checkpoint_every,
            help="Checkpoint to OUT.ckpt every N steps (0: never).",
        ),
        "log_every": option(
            _PAPER.log_every,
            help="A curve row (window mean of the training loss) every N steps.",
        ),
        "log_every_s": option(
            None,
            help="A plain progress line every S seconds (step/total, loss, tok/s, elapsed, "
            "ETA) instead of the bar; default: the bar on a terminal, a line every 30 s "
            "otherwise.",
        ),
        "max_time": option(
            None,
            help="Stop at the first step boundary after this much training time, e.g. 45m, "
            "2h, 1h30m, 90s (all sessions of a resumed run together); writes the checkpoint "
            "and a usable model (training.json: stopped_by time).",
        ),
        "keep_checkpoint": option(
            _PAPER.keep_checkpoint,
            help="Keep OUT.ckpt after the budget is spent, so --resume with a larger budget "
            "can extend the run.",
        ),
        "device": option(_PAPER.device, help="auto, cpu or cuda."),
        "dtype": option(_PAPER.dtype, help="Autocast: auto (bf16 on GPU), float32 or bfloat16."),
        "overwrite": option(False, help="Replace OUT and its checkpoint."),
        "progress": option(
            _PAPER.show_progress,
            flag="--progress/--no-progress",
            help="Progress: a bar on a terminal, plain lines in a log (--no-progress: none, "
            "unless --log-every-s is given).",
        ),
    }


_COMMON = common_options()


@dataclass(frozen=True)
class PretrainOptions:
    """The options of ``bioprune pretrain``, in their --help order."""

    corpus: Path = option(help="Prepared corpus directory.")
    out: Path = option(help="Model directory to write (HF format).")
    selection: Path | None = option(
        None, help="Selection directory (bioprune select): train on it only."
    )
    preset: str | None = option(
        None, help="Start from scratch: micro, tiny, small, esm2-8m, esm2-35m or rnafm."
    )
    init: Path | None = option(None, help="Start from this model directory instead.")
    dropout: float = option(0.0, help="Dropout of a --preset model.")
    lr: float = option(_PAPER.lr, help="Peak AdamW learning rate (paper: 1e-4).")
    weight_decay: float = _COMMON["weight_decay"]
    warmup_steps: int = option(_PAPER.warmup_steps, help="Linear warmup steps.")
    schedule: str = option(_PAPER.schedule, help="After warmup: inverse-sqrt, constant or linear.")
    batch_size: int = option(
        _PAPER.batch_size, help="Examples per micro-step, split across torchrun ranks."
    )
    grad_accum: int = option(
        _PAPER.grad_accum,
        help="Micro-steps per optimizer step (global batch = batch x accum).",
    )
    epochs: int = option(_PAPER.epochs, help="Passes over the training examples.")
    max_steps: int | None = option(
        None, help="Stop after this many optimizer steps (equal compute)."
    )
    max_tokens: int | None = option(
        None, help="Stop once this many (unpadded) tokens were trained on."
    )
    val_fraction: float = option(0.02, help="Seeded held-out validation fraction (indices saved).")
    eval_every: int = option(
        _PAPER.eval_every, help="Validate every N steps (0: at each epoch end)."
    )
    checkpoint_every: int = _COMMON["checkpoint_every"]
    log_every: int = _COMMON["log_every"]
    log_every_s: float | None = _COMMON["log_every_s"]
    max_time: str | None = _COMMON["max_time"]
    keep_checkpoint: bool = _COMMON["keep_checkpoint"]
    seed: int = option(_PAPER.seed, help="Seed of init, split, epoch order and masks.")
    device: str = _COMMON["device"]
    dtype: str = _COMMON["dtype"]
    resume: bool = option(
        False,
        help="Continue from OUT.ckpt if present (a larger --max-steps/--epochs/--max-time "
        "extends the run).",
    )
    overwrite: bool = _COMMON["overwrite"]
    progress: bool = _COMMON["progress"]


@with_options
def pretrain(opts: PretrainOptions) -> None:
    """Pretrain a masked LM on a corpus or a coreset (paper A.3/A.4: AdamW 1e-4, warmup 2,000 then inverse-sqrt, batch 16, 10 epochs); torchrun for several processes."""  # noqa: E501
    from bioprune.training.pretrain import PretrainConfig
    from bioprune.training.pretrain import pretrain as run_pretrain

    params = asdict(opts)
    config = PretrainConfig(
        **{k: params[k] for k in ("corpus", "out", "selection", "preset", "init", "dropout")},
        val_fraction=opts.val_fraction,
        training=training_config(params),
    )
    info, stop = run_training(run_pretrain, config)
    val = info["val_loss"]
    finish(
        info,
        opts.out,
        stop,
        f"wrote [bold]{opts.out}[/]: {info['steps']} steps ({info['stopped_by']}), "
        f"{info['tokens_seen']:,} tokens, train loss {info['train_loss_final']:.4f}"
        + (f", val loss {val:.4f} (ppl {info['val_perplexity']:.2f})" if val else "")
        + f", {info['wall_s']:.1f} s",
        highlight=True,
    )


def register(app: typer.Typer) -> None:
    app.command("pretrain")(pretrain)
