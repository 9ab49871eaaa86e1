"""The masked-language-model training recipe shared by ``pretrain`` and ``adapt``.

One readable lifecycle (torchtune style), no framework:

1. **set up** — device and process group, optimizer (AdamW), schedule, and,
   with ``resume``, the last checkpoint;
2. **train** — for each epoch, the global batches of
   :func:`~bioprune.training.batches.epoch_batches` (a pure function of
   ``(seed, epoch)``); each optimizer step runs ``grad_accum`` micro-batches on
   every rank, sums gradients across ranks, steps AdamW and the schedule;
3. **checkpoint** every ``checkpoint_every`` steps (model, optimizer, schedule,
   RNG states, data position ``(epoch, batch)``, curve so far), atomically;
4. **save** the final model in HF format with ``training.json`` and the curve,
   atomically, then remove the checkpoint.

A run can also be *stopped* at a step boundary — by a time budget
(``max_time_s``) or by a stop request (the ``should_stop`` callable of
:meth:`MaskedLMRecipe.train`, which the CLI sets from SIGINT/SIGTERM): it then
writes the checkpoint *and* a usable model directory whose ``training.json``
says ``stopped_by: time`` or ``signal``, and ``resume`` continues it, with a
larger budget if wanted (see :meth:`MaskedLMRecipe.load_checkpoint` for what
may change on resume).

Checkpoints are read with ``torch.load(weights_only=True)``: tensors and plain
containers only, so a crafted ``checkpoint.pt`` cannot run code. A lock file
``OUT.ckpt/lock`` (``flock``, released by the kernel when the process dies)
keeps two runs from training into the same output at once. The curve so far
is appended to ``OUT.ckpt/curve.csv`` as the run goes.

The loss of a step (standard MLM, as HF's ``DataCollatorForLanguageModeling``
+ ``EsmForMaskedLM``): the cross-entropy summed over every masked position of
the *global* batch divided by the number of those positions, i.e. the
token-mean over the global batch. Each micro-batch backpropagates its own sum
divided by the global count (known before the forward pass because mask draws
are pure functions), so the gradient does not depend on how the global batch
is split across micro-batches and ranks. Masks are fresh every epoch:
``mask_draw(residues, alphabet, seed=seed, index=corpus_index, draw=epoch)``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.data.batching import collate_masked
from bioprune.data.masking import IGNORE_INDEX, mask_draw
from bioprune.progress import ProgressCallback
from bioprune.training.batches import epoch_batches, micro_batches
from bioprune.training.progress import TrainingEvent
from bioprune.training.schedule import SCHEDULES

__all__ = [
    "KILL_AFTER_STEP_ENV",
    "MaskedLMRecipe",
    "TrainingConfig",
    "check_training_output",
    "checkpoint_dir",
    "load_checkpoint_payload",
    "run_recipe",
]

log = logging.getLogger("bioprune.training")

#: Crash-test hook: when set to ``N``, the process SIGKILLs itself right after
#: optimizer step ``N`` (used by the resume-equivalence test; harmless otherwise).
KILL_AFTER_STEP_ENV = "BIOPRUNE_KILL_AFTER_STEP"

#: Checkpoint directory beside the output: ``OUT.ckpt/``.
CHECKPOINT_SUFFIX = ".ckpt"
CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = "bioprune-training-checkpoint"
#: Lock held by the run training into ``OUT`` (``OUT.ckpt/lock``).
LOCK_FILE = "lock"
#: The curve so far, appended row by row while training (``OUT.ckpt/curve.csv``).
LIVE_CURVE = "curve.csv"
#: ``stopped_by`` values of a run stopped before its budget; its checkpoint is kept.
INTERRUPTIONS = ("time", "signal", "request")
#: Budget fields: they may change on resume (see ``MaskedLMRecipe.load_checkpoint``).
BUDGET_FIELDS = ("epochs", "max_steps", "max_tokens")


def checkpoint_dir(out: str | Path) -> Path:
    """Where a run writing ``out`` keeps its checkpoint (``OUT.ckpt``)."""
    out = Path(out)
    return out.with_name(out.name + CHECKPOINT_SUFFIX)


def check_training_output(out: str | Path, overwrite: bool, resume: bool) -> bool:
    """Refuse an existing ``out`` unless ``overwrite``, or ``resume`` of a stopped run.

    A run stopped by time or signal (or one that kept its checkpoint) leaves a
    model directory *and* ``OUT.ckpt``; resuming it replaces that model when it
    ends. Returns whether ``out`` exists and may be replaced.
    """
    import json

    out = Path(out)
    if not out.exists():
        return False
    if overwrite:
        return True
    if (checkpoint_dir(out) / CHECKPOINT_FILE).is_file():
        try:
            info = json.loads((out / artifacts.MODEL_TRAINING).read_text())
        except (OSError, ValueError):
            info = {}
        if isinstance(info, dict) and info.get("checkpoint"):
            if resume:
                return True
            raise FileExistsError(
                f"{out} already exists (stopped by {info.get('stopped_by') or '?'} at step "
                f"{info.get('steps')}, checkpoint kept); pass --resume to continue it (a larger "
                "budget extends it) or --overwrite to start again"
            )
    raise FileExistsError(f"{out} already exists; pass --overwrite to replace it")


def load_checkpoint_payload(path: str | Path) -> dict[str, Any]:
    """Read a training checkpoint without unpickling code (``weights_only=True``).

    A crafted, truncated or foreign file raises :class:`ValueError` naming it.
    """
    import torch

    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # torch raises many types for a bad file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(
            f"{path} is not a readable bioprune checkpoint ({reason}); remove it and start "
            "again with --overwrite, or restore the file"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a bioprune training checkpoint (no format marker)")
    missing = [
        k for k in ("model", "optimizer", "scheduler", "state", "torch_rng") if k not in payload
    ]
    if missing:
        raise ValueError(f"{path} is an incomplete checkpoint (missing {', '.join(missing)})")
    return payload


@dataclass
class TrainingConfig:
    """Hyperparameters of one MLM training run; validated on construction.

    Defaults are the paper's pretraining recipe (A.3/A.4); ``adapt`` overrides
    them with A.5's.
    """

    lr: float = 1e-4
    """Peak AdamW learning rate."""
    weight_decay: float = 0.01
    """AdamW decoupled weight decay (not applied to biases and LayerNorm weights)."""
    warmup_steps: int = 2000
    """Linear-warmup optimizer steps."""
    schedule: str = "inverse-sqrt"
    """Schedule after warmup: inverse-sqrt, constant or linear (schedule.py)."""
    batch_size: int = 16
    """Examples per optimizer step before accumulation (the paper's 16), split across ranks."""
    grad_accum: int = 1
    """Micro-steps per optimizer step; the global batch is ``batch_size * grad_accum``."""
    epochs: int = 10
    """Passes over the training examples."""
    max_steps: int | None = None
    """Stop after this many optimizer steps (equal-compute budgets)."""
    max_tokens: int | None = None
    """Stop after the step that brings the tokens seen (framed, unpadded) to this."""
    max_time_s: float | None = None
    """Stop at the first step boundary after this many seconds of training, counting
    every session of a resumed run; the checkpoint and a model directory are written."""
    keep_checkpoint: bool = False
    """Keep ``OUT.ckpt`` after a run that used up its budget, so that a later
    ``resume`` with a larger budget can extend it."""
    seed: int = 0
    """Seeds the epoch order, the mask draws and (for presets) the initialisation."""
    eval_every: int = 0
    """Validate every N steps (0: at the end of every epoch only)."""
    checkpoint_every: int = 1000
    """Checkpoint every N steps (0: never)."""
    log_every: int = 10
    """A curve row (mean training loss of the window) every N steps."""
    device: str = "auto"
    """auto, cpu or cuda."""
    dtype: str = "auto"
    """Autocast dtype: auto (bf16 on CUDA, fp32 on CPU), float32 or bfloat16."""
    resume: bool = False
    """Continue from ``OUT.ckpt`` when it exists."""
    overwrite: bool = False
    """Replace an existing output (and discard an existing checkpoint)."""
    show_progress: bool = True
    """Show progress on rank 0 (a bar on a terminal, plain lines otherwise)."""
    progress_every_s: float | None = None
    """Plain progress lines every N seconds instead of the bar (None: bar on a terminal,
    a line every 30 s otherwise)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Recipe-specific settings recorded in training.json (not validated here)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise :class:`~bioprune.errors.ConfigError` naming the first invalid field."""
        from bioprune.errors import ConfigError

        at_least = {
            "weight_decay": 0, "warmup_steps": 0, "batch_size": 1, "grad_accum": 1, "epochs": 1,
            "max_steps": 1, "max_tokens": 1, "seed": 0, "eval_every": 0, "checkpoint_every": 0,
            "log_every": 1,
        }  # fmt: skip
        for name, low in at_least.items():
            value = getattr(self, name)
            if value is not None and value < low:
                raise ConfigError(name, f"must be >= {low} (got {value})")
        for name in ("lr", "max_time_s"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ConfigError(name, f"must be > 0 (got {value})")
        if self.schedule not in SCHEDULES:
            raise ConfigError("schedule", f"must be one of {', '.join(SCHEDULES)}")
        if self.dtype not in ("auto", "float32", "bfloat16"):
            raise ConfigError("dtype", "must be auto, float32 or bfloat16")

    def hyperparameters(self) -> dict[str, Any]:
        """Everything that shapes the trajectory, and the budget (recorded in training.json)."""
        keep = (
            "lr weight_decay warmup_steps schedule batch_size grad_accum epochs "
            "max_steps max_tokens seed"
        ).split()
        return {k: getattr(self, k) for k in keep}

    def trajectory(self) -> dict[str, Any]:
        """The hyperparameters a resumed run must share with its checkpoint.

        The budget (epochs, max_steps, max_tokens, max_time_s) is left out: it only
        decides when to stop, never what a step does (the linear schedule's total is
        checked separately).
        """
        return {k: v for k, v in self.hyperparameters().items() if k not in BUDGET_FIELDS}


@dataclass
class TrainState:
    """Where a run is: everything besides tensors that a checkpoint restores."""

    step: int = 0
    epoch: int = 0  # next batch to run is (epoch, batch)
    batch: int = 0
    tokens: int = 0
    examples: int = 0
    masked_tokens: int = 0
    wall_s: float = 0.0
    window_loss: float = 0.0  # summed CE of the steps since the last curve row
    window_count: float = 0.0  # masked positions of those steps
    last_train_loss: float | None = None
    curve: list[dict] = field(default_factory=list)
    done: bool = False
    stop_reason: str = ""


class MaskedLMRecipe:
    """Train an ``EsmForMaskedLM`` on corpus examples; see the module docstring.

    Parameters
    ----------
    config : hyperparameters.
    model : an HF masked LM (fp32 weights) — moved to the run's device.
    corpus : :class:`~bioprune.data.corpus.Corpus`.
    train_indices, val_indices : corpus indices (int64 arrays).
    out : the output model directory; the checkpoint lives in ``OUT.ckpt``.
        ``None`` trains in memory: no checkpoint, lock or live curve, and
        :meth:`save` may not be called.
    recipe : name recorded in ``training.json`` ("pretrain" or "adapt").
    data_fingerprint : checksums of the inputs (corpus, selection, init model),
        recorded and compared on resume.
    env : :class:`~bioprune.runtime.Process` of this process.
    progress : called with a :class:`~bioprune.training.progress.TrainingEvent`
        at the start, after every optimizer step and at the end (rank 0 only),
        and with the run's notices; the recipe itself draws nothing.
    """

    def __init__(
        self,
        config: TrainingConfig,
        model,
        corpus,
        train_indices: np.ndarray,
        val_indices: np.ndarray,
        out: str | Path | None,
        *,
        recipe: str,
        data_fingerprint: dict[str, Any],
        env,
        progress: ProgressCallback | None = None,
    ):
        self.config = config
        self.model = model
        self.corpus = corpus
        self.alphabet = corpus.alphabet
        self.train_indices = np.asarray(train_indices, dtype=np.int64)
        self.val_indices = np.asarray(val_indices, dtype=np.int64)
        self.out = Path(out) if out is not None else None
        self.ckpt_dir = checkpoint_dir(self.out) if self.out is not None else None
        self.recipe = recipe
        self.data_fingerprint = dict(data_fingerprint)
        self.env = env
        self.progress = progress if env.is_main else None
        self.state = TrainState()
        self._session = (time.perf_counter(), 0.0, 0)  # clock, wall_s and tokens at the start
        if len(self.train_indices) == 0:
            raise ValueError("no training examples: the selection or subset is empty")

    # ------------------------------------------------------------------ set up
    @property
    def global_batch(self) -> int:
        """Examples per optimizer step: ``batch_size * grad_accum``, whatever the world size.

        The ranks split every global batch between them, so the paper's batch
        of 16 stays 16 on any number of processes, the optimisation trajectory
        does not depend on the world size, and a run may resume on another one.
        """
        return self.config.batch_size * self.config.grad_accum

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.train_indices) / self.global_batch)

    @property
    def planned_steps(self) -> int:
        """Steps of the full run (``max_tokens`` may end it earlier)."""
        steps = self.config.epochs * self.batches_per_epoch
        return min(steps, self.config.max_steps) if self.config.max_steps else steps

    def setup(self) -> None:
        """Optimizer, schedule, autocast; restore the checkpoint when resuming."""
        import torch

        from bioprune.runtime import autocast_dtype, broadcast_parameters
        from bioprune.training.schedule import lambda_lr

        c = self.config
        self.device = self.env.device
        self.model.to(self.device)
        self.model.train()
        broadcast_parameters(self.model, self.env)
        decay, no_decay = [], []
        for name, p in self.model.named_parameters():
            # ESM's contact-prediction head is not reached by the MLM loss; leave it alone.
            if not p.requires_grad or "contact_head" in name:
                continue
            # HF Trainer's convention: no decay on biases and normalisation weights.
            (no_decay if p.ndim < 2 or "LayerNorm" in name else decay).append(p)
        self.params = decay + no_decay
        self.optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": c.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=c.lr,
            betas=(0.9, 0.999),
            eps=1e-8,
        )
        self.scheduler = lambda_lr(self.optimizer, c.warmup_steps, c.schedule, self.planned_steps)
        self.autocast_dtype = autocast_dtype(c.dtype, self.device)
        self.framed_lengths = self.corpus.lengths + 2
        if self.ckpt_dir is None:
            return
        ckpt = self.ckpt_dir / CHECKPOINT_FILE
        self._lock()
        if c.resume and ckpt.is_file():
            self.load_checkpoint(ckpt)
            self._notice(f"resuming from {ckpt} at step {self.state.step}")
        elif c.resume:
            self._notice(f"no checkpoint in {self.ckpt_dir}; starting from step 0")
        elif ckpt.is_file() and not c.overwrite:
            raise FileExistsError(
                f"{self.ckpt_dir} holds a checkpoint of an earlier run; pass --resume to "
                "continue it or --overwrite to start again"
            )

    def _lock(self) -> None:
        """Hold ``OUT.ckpt/lock`` for the whole run (rank 0): a second run into the
        same output fails at once instead of racing this one for the checkpoint."""
        if not self.env.is_main or getattr(self, "_lock_fh", None) is not None:
            return
        assert self.ckpt_dir is not None
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        path = self.ckpt_dir / LOCK_FILE
        fh = open(path, "a+")  # held until close()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise FileExistsError(
                f"{path}: another run (pid {holder}) is training into {self.out} right now; "
                "wait for it to finish or stop it (its checkpoint is resumable)"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")
        fh.flush()
        self._lock_fh = fh

    def close(self) -> None:
        """Release the lock; remove ``OUT.ckpt`` when nothing worth keeping is left in it."""
        fh = getattr(self, "_lock_fh", None)
        if fh is None:
            return
        self._lock_fh = None
        if self.ckpt_dir.is_dir() and not (self.ckpt_dir / CHECKPOINT_FILE).exists():
            import shutil

            shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        fh.close()

    def _notice(self, message: str) -> None:
        """A one-line notice: passed to the progress callback (the CLI prints it with the
        progress, so not under ``--no-progress``) and logged at debug level."""
        if self.env.is_main:
            log.debug("%s", message)
        self._emit("notice", message)

    def _emit(self, kind: str, message: str = "", *, force: bool = False) -> None:
        """Report to the progress callback (rank 0; nothing without a callback)."""
        if self.progress is None:
            return
        st = self.state
        _, wall_before, tokens_before = self._session
        self.progress(
            TrainingEvent(
                self.recipe, st.step, self.planned_steps, message,
                loss=st.last_train_loss, tokens=st.tokens - tokens_before, kind=kind,
                seconds=st.wall_s - wall_before, force=force,
            )
        )  # fmt: skip

    def _autocast(self):
        import torch

        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    # ------------------------------------------------------------------- train
    def train(self, should_stop: Callable[[], bool | str | None] | None = None) -> TrainState:
        """Run until the epochs or a budget are spent, or until stopped; returns the state.

        ``should_stop`` is called after every optimizer step; a true value stops
        the run at that step boundary (a string is the reason recorded as
        ``stopped_by``, ``True`` records ``"request"``). The CLI sets it from
        SIGINT/SIGTERM; the recipe itself installs no signal handlers.

        A stopped run (``should_stop`` or ``max_time_s``) writes its checkpoint
        before returning; :meth:`save` then writes a usable model and keeps it.
        """
        c, st = self.config, self.state
        self._kill_after = int(os.environ.get(KILL_AFTER_STEP_ENV, "0") or 0)
        self._open_live_curve()
        self._notice(
            f"{self.recipe}: {self.planned_steps:,} planned steps ({c.epochs} epoch(s) x "
            f"{self.batches_per_epoch:,} batches of {self.global_batch}"
            + (f", stopping after {c.max_time_s:,.0f} s" if c.max_time_s else "")
            + ")"
            + (f"; curve so far in {self.ckpt_dir / LIVE_CURVE}" if self.ckpt_dir else "")
        )
        if st.step == 0 and len(self.val_indices):
            self._record_validation()
        self._session = (time.perf_counter(), st.wall_s, st.tokens)
        self._emit("start")
        while not st.done and st.epoch < c.epochs:
            self._run_epoch(should_stop)
        if not st.stop_reason:
            st.stop_reason = "epochs"
        self._emit("end")
        st.done = True
        return st

    def _run_epoch(self, should_stop) -> None:
        """The batches left in the current epoch, until it ends or the run stops."""
        st = self.state
        batches = epoch_batches(
            self.train_indices,
            self.framed_lengths[self.train_indices],
            batch_size=self.global_batch,
            seed=self.config.seed,
            epoch=st.epoch,
        )
        while st.batch < len(batches):
            loss = self.train_step(batches[st.batch], st.epoch)
            st.batch += 1
            if st.batch == len(batches):
                st.epoch, st.batch = st.epoch + 1, 0
            if self._after_step(loss, should_stop) or st.batch == 0:
                return

    def _after_step(self, loss: float, should_stop) -> bool:
        """Budget and stop checks, curve, validation, progress, checkpoint; True: stop."""
        c, st = self.config, self.state
        start, wall_before, _ = self._session
        st.wall_s = wall_before + time.perf_counter() - start
        st.done = self._budget_spent()
        interrupted = None if st.done else self._interruption(should_stop)
        stopping = st.done or interrupted is not None
        epoch_end = st.batch == 0
        self._log(loss, force=stopping or epoch_end)
        validated = bool(len(self.val_indices)) and bool(
            (c.eval_every and st.step % c.eval_every == 0) or epoch_end or stopping
        )
        if validated:
            self._record_validation()
        self._flush_live_curve()
        note = self._progress_note() if validated else ""
        self._emit("step", note, force=validated or stopping)
        if self.ckpt_dir is not None:
            if interrupted is not None or (st.done and c.keep_checkpoint):
                self.save_checkpoint()
            elif c.checkpoint_every and st.step % c.checkpoint_every == 0 and not st.done:
                self.save_checkpoint()
        if interrupted is not None:
            st.stop_reason, st.done = interrupted, True
            log.debug("%s stopped by %s at step %d", self.recipe, interrupted, st.step)
        if self._kill_after and st.step == self._kill_after:
            os.kill(os.getpid(), signal.SIGKILL)
        return st.done

    def _interruption(self, should_stop) -> str | None:
        """``"time"``, the stop request's reason, or None; the same on every rank."""
        from bioprune.runtime import all_reduce_sum

        c, st = self.config, self.state
        by_time = bool(c.max_time_s and st.wall_s >= c.max_time_s)
        request = should_stop() if should_stop is not None else None
        if self.env.distributed:  # one rank's clock or signal stops them all
            flags = all_reduce_sum([float(by_time), float(bool(request))], self.env).tolist()
            by_time, by_request = flags[0] > 0, flags[1] > 0
            if by_request and not request:
                request = "signal"
        if request:
            return request if isinstance(request, str) else "request"
        return "time" if by_time else None

    def _progress_note(self) -> str:
        val = [r for r in self.state.curve if r.get("val_loss") is not None]
        return f"val loss {val[-1]['val_loss']:.4f}" if val else ""

    # -------------------------------------------------------------- live curve
    def _open_live_curve(self) -> None:
        """(Re)write ``OUT.ckpt/curve.csv`` with the rows so far (a resumed run's)."""
        from bioprune.training.curve import write_curve_csv

        self._curve_written = len(self.state.curve)
        if self.env.is_main and self.ckpt_dir is not None:
            write_curve_csv(self.ckpt_dir / LIVE_CURVE, self.state.curve)

    def _flush_live_curve(self) -> None:
        """Append the rows finished since the last call (a row is final after its step)."""
        from bioprune.training.curve import append_curve_rows

        rows = self.state.curve[self._curve_written :]
        if rows and self.env.is_main and self.ckpt_dir is not None:
            append_curve_rows(self.ckpt_dir / LIVE_CURVE, rows)
        self._curve_written = len(self.state.curve)

    def train_step(self, global_batch: np.ndarray, epoch: int) -> float:
        """One optimizer step on ``global_batch``; returns its masked-token-mean loss."""
        import torch
        import torch.nn.functional as F

        from bioprune.runtime import all_reduce_gradients

        c, st = self.config, self.state
        draws = {
            int(i): mask_draw(
                self.corpus.residues(int(i)), self.alphabet, seed=c.seed, index=int(i), draw=epoch
            )
            for i in global_batch
        }
        n_masked = sum(len(d.positions) for d in draws.values())
        self.optimizer.zero_grad(set_to_none=True)
        local_sum = torch.zeros((), dtype=torch.float64, device=self.device)
        for micro in micro_batches(global_batch, c.grad_accum, self.env.world_size, self.env.rank):
            if len(micro) == 0:
                continue
            batch = collate_masked(
                [self.corpus.framed(int(i)) for i in micro],
                [draws[int(i)] for i in micro],
                self.alphabet,
                micro,
            ).to_torch(self.device)
            with self._autocast():
                logits = self.model(
                    input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                ).logits
            ce = F.cross_entropy(
                logits.float().reshape(-1, logits.shape[-1]),
                batch["labels"].reshape(-1),
                ignore_index=IGNORE_INDEX,
                reduction="sum",
            )
            (ce / n_masked).backward()
            local_sum += ce.detach().double()
        (loss_sum,) = all_reduce_gradients(self.params, [float(local_sum)], self.env).tolist()
        self.optimizer.step()
        self.scheduler.step()
        st.step += 1
        st.tokens += int(self.framed_lengths[global_batch].sum())
        st.examples += len(global_batch)
        st.masked_tokens += n_masked
        st.window_loss += loss_sum
        st.window_count += n_masked
        return loss_sum / n_masked

    def _budget_spent(self) -> bool:
        c, st = self.config, self.state
        if c.max_steps and st.step >= c.max_steps:
            st.stop_reason = "max_steps"
            return True
        if c.max_tokens and st.tokens >= c.max_tokens:
            st.stop_reason = "max_tokens"
            return True
        if st.epoch >= c.epochs:
            st.stop_reason = "epochs"
            return True
        return False

    def _current_lr(self) -> float:
        """Learning rate the *last* step used (the schedule has moved on by one)."""
        from bioprune.training.schedule import learning_rate

        c = self.config
        t = max(1, self.state.step)
        return learning_rate(t, c.lr, c.warmup_steps, c.schedule, self.planned_steps)

    def _lr_per_step(self) -> np.ndarray:
        """Learning rate of every step taken, ``(steps,)`` float64 (for the plot)."""
        from bioprune.training.schedule import learning_rate

        c = self.config
        return np.array(
            [
                learning_rate(t, c.lr, c.warmup_steps, c.schedule, self.planned_steps)
                for t in range(1, self.state.step + 1)
            ]
        )

    def _log(self, loss: float, force: bool) -> None:
        st = self.state
        st.last_train_loss = loss
        if st.step % self.config.log_every and not force:
            return
        if st.window_count == 0:
            return
        self._row(train_loss=st.window_loss / st.window_count)
        st.window_loss = st.window_count = 0.0

    def _row(self, **values) -> None:
        st = self.state
        row = {
            "step": st.step,
            "epoch": round(st.epoch + st.batch / max(1, self.batches_per_epoch), 4),
            "tokens": st.tokens,
            "lr": self._current_lr() if st.step else 0.0,
            "wall_s": round(st.wall_s, 3),
            **values,
        }
        if st.curve and st.curve[-1]["step"] == st.step:
            st.curve[-1].update(values)
        else:
            st.curve.append(row)

    # -------------------------------------------------------------- validation
    def validate(self) -> tuple[float, int]:
        """Token-mean MLM loss on the validation examples with fixed masks (draw 0).

        Returns ``(loss, masked positions)``. Fixed draws make successive
        evaluations comparable; validation examples are never trained on.
        """
        import torch
        import torch.nn.functional as F

        from bioprune.runtime import all_reduce_sum

        c = self.config
        order = self.val_indices[np.argsort(-self.framed_lengths[self.val_indices], kind="stable")]
        chunks = [order[i : i + c.batch_size] for i in range(0, len(order), c.batch_size)]
        total = count = 0.0
        self.model.eval()
        with torch.no_grad():
            for micro in chunks[self.env.rank :: self.env.world_size]:
                draws = [
                    mask_draw(
                        self.corpus.residues(int(i)), self.alphabet, seed=c.seed, index=int(i)
                    )
                    for i in micro
                ]
                batch = collate_masked(
                    [self.corpus.framed(int(i)) for i in micro], draws, self.alphabet, micro
                ).to_torch(self.device)
                with self._autocast():
                    logits = self.model(
                        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
                    ).logits
                total += float(
                    F.cross_entropy(
                        logits.float().reshape(-1, logits.shape[-1]),
                        batch["labels"].reshape(-1),
                        ignore_index=IGNORE_INDEX,
                        reduction="sum",
                    )
                )
                count += sum(len(d.positions) for d in draws)
        self.model.train()
        total, count = all_reduce_sum([total, count], self.env).tolist()
        return total / count, int(count)

    def _record_validation(self) -> None:
        loss, _ = self.validate()
        self._row(val_loss=loss, val_perplexity=math.exp(min(loss, 50.0)))

    # -------------------------------------------------------------- checkpoint
    def _resume_key(self) -> dict[str, Any]:
        # Inputs are compared by checksum, not by path: a run may resume from
        # another working directory or after the inputs were moved.
        paths = {"corpus", "selection", "init", "model"}
        return {
            "recipe": self.recipe,
            "hyperparameters": self.config.trajectory(),
            "data": {k: v for k, v in self.data_fingerprint.items() if k not in paths},
            "train_examples": len(self.train_indices),
            "train_indices_checksum": _array_checksum(self.train_indices),
        }

    def save_checkpoint(self) -> None:
        """Rank 0 writes ``OUT.ckpt/checkpoint.pt`` atomically (temp file + rename)."""
        import torch

        if self.env.is_main:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            # A checkpoint is a point to continue from: never "done", whatever
            # stopped this session.
            state = {**asdict(self.state), "done": False, "stop_reason": ""}
            payload = {
                "format": CHECKPOINT_FORMAT,
                "resume_key": self._resume_key(),
                "budget": {
                    **{k: getattr(self.config, k) for k in BUDGET_FIELDS},
                    "planned_steps": self.planned_steps,
                },
                # what `bioprune export` needs to rebuild the model without the inputs
                "recipe": self.recipe,
                "model_config": self.model.config.to_json_string(),
                "alphabet": self.alphabet.name,
                "summary": _plain({**self.summary(), **self.config.extra}),
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": state,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            }
            with artifacts.atomic_path(self.ckpt_dir / CHECKPOINT_FILE) as tmp:
                torch.save(payload, tmp)
        self.env.barrier()

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything :meth:`save_checkpoint` wrote; refuse a different run's.

        What may change on resume is the *budget* — ``epochs``, ``max_steps``,
        ``max_tokens`` and ``max_time_s`` — since it only decides when to stop;
        everything else that shapes a step must match. Two limits keep the steps
        already taken unchanged: under the ``linear`` schedule the planned total
        (where the rate reaches zero) must stay the same, and the new budget must
        not be spent already at the checkpoint.
        """
        import torch

        payload = load_checkpoint_payload(path)
        saved, now = payload.get("resume_key", {}), self._resume_key()
        if saved != now:
            diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            hp = ""
            if "hyperparameters" in diff:
                a, b = saved.get("hyperparameters") or {}, now["hyperparameters"]
                hp = (
                    " ("
                    + ", ".join(
                        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
                        for k in sorted(set(a) | set(b))
                        if a.get(k) != b.get(k)
                    )
                    + ")"
                )
            raise ValueError(
                f"checkpoint {path} belongs to a different run (differs in {', '.join(diff)}"
                f"{hp}); rerun with the original settings, or pass --overwrite without --resume"
            )
        budget = payload.get("budget") or {}
        if (
            self.config.schedule == "linear"
            and budget.get("planned_steps") is not None
            and budget["planned_steps"] != self.planned_steps
        ):
            raise ValueError(
                f"checkpoint {path}: the linear schedule decays to zero at the planned total of "
                f"{budget['planned_steps']} steps, and this budget plans {self.planned_steps}; "
                "changing it would change the rate of the steps already taken. Resume with the "
                "original --epochs/--max-steps (a --max-time may change)"
            )
        try:
            state = TrainState(**payload["state"])
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
            self.scheduler.load_state_dict(payload["scheduler"])
            torch.set_rng_state(payload["torch_rng"])
        except (TypeError, KeyError, RuntimeError, ValueError) as exc:
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ValueError(f"checkpoint {path} does not fit this run ({reason})") from None
        self.state = state
        if payload.get("cuda_rng") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(payload["cuda_rng"])
        self.resumed_from_step = self.state.step
        self._check_budget_left(path)

    def _check_budget_left(self, path: Path) -> None:
        """Refuse to resume when the (new) budget is already used up at the checkpoint."""
        c, st = self.config, self.state
        spent = [
            (c.max_steps and st.step >= c.max_steps, f"--max-steps {c.max_steps}"),
            (c.max_tokens and st.tokens >= c.max_tokens, f"--max-tokens {c.max_tokens}"),
            (st.epoch >= c.epochs, f"--epochs {c.epochs}"),
            (
                c.max_time_s and st.wall_s >= c.max_time_s,
                f"--max-time {c.max_time_s:g}s (used {st.wall_s:.0f} s)" if c.max_time_s else "",
            ),
        ]
        for done, what in spent:
            if done:
                raise ValueError(
                    f"checkpoint {path} is at step {st.step} ({st.tokens:,} tokens, epoch "
                    f"{st.epoch}), which {what} has already reached; pass a larger budget "
                    "to extend the run"
                )

    # -------------------------------------------------------------------- save
    def summary(self) -> dict[str, Any]:
        """The ``training.json`` body (without provenance and recipe extras)."""
        st = self.state
        val = [r for r in st.curve if r.get("val_loss") is not None]
        train_rows = [r for r in st.curve if r.get("train_loss") is not None]
        return {
            "recipe": self.recipe,
            "hyperparameters": self.config.hyperparameters(),
            "global_batch": self.global_batch,
            "world_size": self.env.world_size,
            "device": str(self.device),
            "autocast_dtype": str(self.autocast_dtype).replace("torch.", "")
            if self.autocast_dtype
            else "float32",
            "data": self.data_fingerprint,
            "train_examples": len(self.train_indices),
            "validation_examples": len(self.val_indices),
            "steps": st.step,
            "planned_steps": self.planned_steps,
            "max_time_s": self.config.max_time_s,
            "epochs_completed": st.epoch,
            "stopped_by": st.stop_reason,
            "checkpoint": str(self.ckpt_dir / CHECKPOINT_FILE)
            if self.ckpt_dir is not None and self._keeps_checkpoint()
            else None,
            "examples_seen": st.examples,
            "tokens_seen": st.tokens,
            "masked_tokens_seen": st.masked_tokens,
            "train_loss_first": train_rows[0]["train_loss"] if train_rows else None,
            "train_loss_final": train_rows[-1]["train_loss"] if train_rows else None,
            "val_loss_initial": val[0]["val_loss"] if val else None,
            "val_loss": val[-1]["val_loss"] if val else None,
            "val_perplexity": val[-1]["val_perplexity"] if val else None,
            "wall_s": round(st.wall_s, 3),
            "seeds": {
                "seed": self.config.seed,
                "epoch_order": "numpy default_rng([seed, epoch])",
                "masks": "mask_draw(seed=seed, index=corpus index, draw=epoch)",
                "validation_masks": "mask_draw(seed=seed, index=corpus index, draw=0)",
            },
            "torch_version": _version("torch"),
            "transformers_version": _version("transformers"),
            "resumed_from_step": getattr(self, "resumed_from_step", None),
            "loss": "cross-entropy summed over the masked positions of a global batch / "
            "their number (token mean); masks fresh every epoch (draw = epoch)",
        }

    def _keeps_checkpoint(self) -> bool:
        """A stopped run, or one asked to, keeps ``OUT.ckpt`` for a later resume."""
        return self.state.stop_reason in INTERRUPTIONS or self.config.keep_checkpoint

    def save(self, extra_files: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
        """Rank 0 writes the model directory atomically; removes the checkpoint unless kept.

        A stopped run's model (``stopped_by`` time/signal) is as usable as a
        finished one's; ``resume`` replaces it when the continued run ends.
        """
        import shutil

        if self.out is None:
            raise ValueError("this run trains in memory (out=None): there is no directory to save")
        info = {
            **self.summary(),
            **self.config.extra,
            **artifacts.provenance(),
        }
        replace = self.config.overwrite or check_training_output(
            self.out, self.config.overwrite, self.config.resume
        )
        if self.env.is_main:
            from bioprune.models.hf import quiet_transformers

            with quiet_transformers(errors_only=False):  # our own summary line says it was written
                self._write_model_dir(replace, info, extra_files)
            if not self._keeps_checkpoint():
                shutil.rmtree(self.ckpt_dir, ignore_errors=True)
        self.env.barrier()
        return info

    def _write_model_dir(self, replace: bool, info: dict, extra_files) -> None:
        from bioprune.models.presets import save_alphabet
        from bioprune.training.curve import plot_curve, write_curve_csv

        with artifacts.atomic_dir(self.out, overwrite=replace) as tmp:
            self.model.save_pretrained(tmp)
            save_alphabet(tmp, self.alphabet)
            for name, array in (extra_files or {}).items():
                np.save(tmp / name, np.asarray(array))
            write_curve_csv(tmp / artifacts.MODEL_CURVE_CSV, self.state.curve)
            plot_curve(
                tmp / artifacts.MODEL_CURVE_PNG,
                self.state.curve,
                f"bioprune {self.recipe}: {self.out.name}",
                vocab_size=len(self.alphabet),
                lr=self._lr_per_step(),
            )
            artifacts.write_json(tmp / artifacts.MODEL_TRAINING, info)


@contextmanager
def own_rng(device: str) -> Iterator[None]:
    """Torch's global random state (CPU, and the current GPU's) restored on exit.

    Training draws dropout masks from it (and a preset is initialised from a
    seeded state inside it); the caller's stream is left as it was.
    """
    import torch

    cuda = device != "cpu" and torch.cuda.is_available()
    with torch.random.fork_rng(devices=[torch.cuda.current_device()] if cuda else []):
        yield


def run_recipe(
    make: Callable[..., MaskedLMRecipe],
    device: str,
    *,
    extra_files: dict[str, np.ndarray] | None = None,
    should_stop: Callable[[], bool | str | None] | None = None,
) -> dict[str, Any]:
    """Set up, train and (with an output) save one run: what ``pretrain`` and ``adapt`` share.

    ``make(env=...)`` builds the :class:`MaskedLMRecipe` (a ``functools.partial``
    of it with everything but ``env``) once the process environment of
    ``device`` is set up. Returns the ``training.json`` record (for a run in
    memory, ``out=None``: its summary, nothing written). The model is trained in
    place. Under ``torchrun`` every rank calls this; rank 0 writes the outputs.
    """
    from bioprune.runtime import start_process

    env = start_process(device)
    run = None
    try:
        with own_rng(device):
            run = make(env=env)
            run.setup()
            run.train(should_stop)
        if run.out is None:
            return {**run.summary(), **run.config.extra}
        return run.save(extra_files)
    finally:
        if run is not None:
            run.close()
        env.close()


def _plain(obj):
    """JSON round trip: only str/int/float/bool/None/list/dict, as weights_only loading allows."""
    import json

    return json.loads(json.dumps(obj, default=artifacts._json_default))


def _array_checksum(a: np.ndarray) -> str:
    import hashlib

    return (
        "blake2b:" + hashlib.blake2b(np.ascontiguousarray(a, dtype=np.int64).tobytes()).hexdigest()
    )


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
