"""The resumable-run machinery shared by ``fisher`` and ``score``.

A file-based run (``compute_fisher``, ``compute_scores``) cuts its work into
parts of consecutive length-sorted batches (:func:`bioprune.influence.engine.plan_parts`),
spreads them over the ranks of a ``torchrun`` launch
(:meth:`bioprune.runtime.Process.owns`) and keeps its progress in a work
directory ``OUT.parts/`` next to the output:

- ``run.json``: the run key (checksums, seeds, batch plan, thread count...);
  ``--resume`` refuses a directory made by a different run, naming the keys
  that differ;
- ``.lock``: an exclusive ``flock`` held by rank 0 for the run's lifetime, so
  two runs never write the same parts;
- the stage's own part files (score: one parquet per part; fisher: each rank's
  running sums).

A run that fails before writing any part removes the directory
(:func:`discard_if_empty`); a finished run deletes it after writing ``OUT``.
:func:`maybe_die` is the test hook that kills a run after some parts (resume tests).

:class:`StageProgress` counts examples and tokens and reports them through an
optional :data:`~bioprune.progress.ProgressCallback`; nothing here prints.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.progress import ProgressCallback, ProgressEvent

__all__ = [
    "KILL_ENV",
    "StageProgress",
    "config_record",
    "discard_if_empty",
    "indices_digest",
    "maybe_die",
    "nonfinite_message",
    "parts_dir_of",
    "prepare_parts_dir",
]

log = logging.getLogger(__name__)

#: Test hook: a run dies by SIGKILL after this many parts (resume tests).
KILL_ENV = "BIOPRUNE_TEST_KILL_AFTER_PARTS"
#: Files a work directory holds before its first part (nothing worth resuming).
_BOOKKEEPING = {"run.json", ".lock"}


class StageProgress:
    """Examples and tokens of one stage, reported as :class:`ProgressEvent` s.

    ``total`` counts the examples this process will compute; :meth:`advance`
    adds examples and tokens and calls ``callback`` (when given) with the
    running counts and :attr:`note` as the message.
    """

    def __init__(self, stage: str, total: int, callback: ProgressCallback | None):
        self.stage = stage
        self.total = int(total)
        self.callback = callback
        self.examples = 0
        self.tokens = 0
        self.note = ""
        self.start = time.perf_counter()
        self._emit()

    def _emit(self) -> None:
        if self.callback is not None:
            event = ProgressEvent(
                self.stage,
                self.examples,
                self.total,
                message=self.note,
                unit="examples",
                tokens=self.tokens,
            )
            self.callback(event)

    def advance(self, examples: int, tokens: int) -> None:
        self.examples += int(examples)
        self.tokens += int(tokens)
        self._emit()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def parts_dir_of(out: Path) -> Path:
    """The work directory of a run writing ``out``: ``OUT.parts``."""
    return out.with_name(out.name + ".parts")


def indices_digest(idx: np.ndarray) -> str:
    """A content digest of an index array (recorded in run keys and metadata)."""
    data = np.ascontiguousarray(idx, dtype=np.int64).tobytes()
    return "blake2b:" + hashlib.blake2b(data).hexdigest()


def config_record(cfg) -> dict:
    """A config dataclass as JSON-ready values (paths as strings)."""
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}


def nonfinite_message(corpus, indices: np.ndarray, stage: str) -> str:
    """The error of ``--on-nonfinite stop``: which examples, and what to do."""
    ids = corpus.ids()[np.asarray(indices, dtype=np.int64)]
    shown = ", ".join(f"{int(i)} ({ids[k]!s})" for k, i in enumerate(indices[:10]))
    more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
    return (
        f"{stage}: non-finite loss or gradient for {len(indices)} example(s): {shown}{more}; "
        "check these sequences and the model, or pass --on-nonfinite skip to record them as NaN"
    )


def _key_difference(previous: dict, run_key: dict) -> list[str]:
    return sorted(
        k
        for k in set(previous) | set(run_key)
        if previous.get(k) != run_key.get(k)
        # a run started before the thread count was recorded: unknown, not changed
        and not (k == "cpu_threads" and k not in previous)
    )


def _check_same_run(parts_dir: Path, key_path: Path, run_key: dict) -> None:
    """Refuse to resume a work directory made by another run, naming what differs."""
    from bioprune.errors import reading

    with reading(key_path, "the run description of an unfinished run"):
        previous = json.loads(key_path.read_text())
    diff = _key_difference(previous, run_key)
    if not diff:
        return
    values = "".join(
        f"; {k} was {previous.get(k)}, now {run_key.get(k)}" for k in diff if k == "cpu_threads"
    )
    raise ValueError(
        f"--resume: {parts_dir} was made by a different run (differs in {diff}{values}); "
        "use the same arguments"
        + (" and thread count (OMP_NUM_THREADS)" if values else "")
        + " or delete the directory"
    )


@dataclass
class Run:
    """A file-based run in progress: this process, the stage's job, the model's checksum
    and the work directory of its parts."""

    proc: object
    job: object
    model_sum: str
    parts_dir: Path


@contextmanager
def resumable_run(cfg, inputs: tuple, make_job, run_key) -> Iterator[Run]:
    """The frame ``fisher`` and ``score`` share: validate ``cfg``, check ``cfg.out``
    against ``inputs``, join the process group, ``make_job(cfg, proc) -> (job,
    model_sum)``, open the parts directory (locked, checked against ``run_key(cfg, job,
    model_sum)`` on ``--resume``) and yield the :class:`Run`. On success rank 0 removes
    the parts directory and every rank waits; on failure an empty one is removed and a
    resumable one kept.
    """
    from bioprune.runtime import process_group

    cfg.validate()
    artifacts.check_output_dir(cfg.out, cfg.overwrite, inputs=inputs)
    with process_group(cfg.device) as proc:
        job, model_sum = make_job(cfg, proc)
        parts_dir = parts_dir_of(Path(cfg.out))
        try:
            lock = prepare_parts_dir(parts_dir, run_key(cfg, job, model_sum), cfg.resume, proc)
            yield Run(proc, job, model_sum, parts_dir)
            if proc.is_main:
                shutil.rmtree(parts_dir, ignore_errors=True)
            proc.barrier()
            del lock  # held until here: a second run on the same output is refused
        except BaseException:
            if proc.is_main:
                discard_if_empty(parts_dir)
            raise


def prepare_parts_dir(parts_dir: Path, run_key: dict, resume: bool, proc):
    """Create the work directory, or check that a resumed run matches the previous one.

    Returns the open lock file (rank 0; ``None`` elsewhere): the caller keeps it for the
    run's lifetime. A second run on the same output (two ``--resume`` started by
    mistake) is refused while the first holds it, instead of both merging and deleting
    the same parts.
    """
    key_path = parts_dir / "run.json"
    lock = None
    if proc.is_main:
        if parts_dir.exists():
            if not resume:
                raise FileExistsError(
                    f"{parts_dir} holds an unfinished run; pass --resume to continue it "
                    "or delete the directory to start over"
                )
            lock = _lock_parts_dir(parts_dir)
            if key_path.is_file():
                _check_same_run(parts_dir, key_path, run_key)
        parts_dir.mkdir(parents=True, exist_ok=True)
        if lock is None:
            lock = _lock_parts_dir(parts_dir)
        artifacts.write_json(key_path, run_key)
    proc.barrier()
    return lock


def _lock_parts_dir(parts_dir: Path):
    """An exclusive, non-blocking ``flock`` on ``PARTS/.lock`` (released when the process ends)."""
    from bioprune.runtime import exclusive_lock

    def busy(holder: str) -> str:
        return (
            f"{parts_dir} is being written by another running bioprune process (pid {holder}); "
            "wait for it to finish or stop it before resuming"
        )

    return exclusive_lock(parts_dir / ".lock", busy)


def discard_if_empty(parts_dir: Path | None) -> None:
    """After a failed run: remove a work directory that holds nothing to resume."""
    if parts_dir is None or not parts_dir.is_dir():
        return
    if all(p.name in _BOOKKEEPING for p in parts_dir.iterdir()):
        shutil.rmtree(parts_dir, ignore_errors=True)


def maybe_die(parts_done: int) -> None:
    """Test hook: SIGKILL this process once ``$BIOPRUNE_TEST_KILL_AFTER_PARTS`` parts are done."""
    limit = os.environ.get(KILL_ENV)
    if limit is not None and parts_done >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)
