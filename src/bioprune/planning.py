"""Predict the wall time and peak memory of a ``fisher``, ``score`` or ``pretrain`` run.

:func:`plan_run` runs a few calibration batches of the real model on a seeded
sample of the real corpus, through the code path the stage uses
(:class:`~bioprune.influence.engine.MLMGradientRunner` under
:class:`~bioprune.influence.hooks.PerExampleGradients` for ``fisher`` and
``score``; HF's forward with labels, backward and an AdamW step for
``pretrain``), and fits

    seconds(batch) = a * n T + b * n T^2 + c * n + d

over its examples ``n`` and padded length ``T`` (tokens, attention, the
per-example reduction, the per-batch overhead), and likewise its working
memory. The stage's own batches over the whole corpus are known exactly (they
depend only on the lengths), so the prediction is the sum of the fit over those
batches, and the multi-process ETA is the largest sum over a rank's parts
(part ``j`` runs on rank ``j % N``). Fixed per-run costs are measured on the way
and added as their own items (``Plan.fixed_seconds``): start-up (this process's
age and CPU time when the plan begins), set-up (corpus, model loading with the
imports it triggers, checks, model checksum, timed as the stage does them), the
first batch's one-time initialisation and the output's serialization (in
memory). Nothing is written; the calibration's
sample seed and every assumption are in the returned :class:`Plan`.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

__all__ = ["STAGES", "Plan", "PlanConfig", "plan_run", "predict_batch_seconds"]

log = logging.getLogger(__name__)

STAGES = ("score", "fisher", "pretrain")
#: Fraction of free device memory (CUDA) or available RAM (CPU) a plan lets a run use.
MEMORY_HEADROOM = 0.8
#: Quantiles of the corpus's framed lengths calibrated at.
CALIBRATION_QUANTILES = (0.1, 0.5, 0.9, 1.0)


@dataclass
class PlanConfig:
    """Arguments of ``bioprune plan``."""

    model: Path = field(metadata={"help": "Model directory (HF format)."})
    corpus: Path = field(metadata={"help": "Corpus directory (bioprune prepare)."})
    stage: str = field(default="score", metadata={"help": "score, fisher or pretrain."})
    device: str = field(
        default="auto", metadata={"help": "auto (CUDA when available), cpu or cuda."}
    )
    processes: int = field(
        default=1, metadata={"help": "Processes of the run (torchrun --nproc-per-node)."}
    )
    dtype: str = field(default="float32", metadata={"help": "float32 or bfloat16 (autocast)."})
    batch_tokens: int = field(
        default=8192,
        metadata={"help": "score/fisher: padded tokens per batch, as the run's."},
    )
    max_batch_size: int | None = field(default=None, metadata={"help": "As the run's."})
    part_batches: int = field(default=16, metadata={"help": "As the run's."})
    subset_size: str | None = field(
        default="1%", metadata={"help": "fisher: the run's subset (count or fraction)."}
    )
    batch_size: int = field(default=16, metadata={"help": "pretrain: examples per step."})
    epochs: int = field(default=1, metadata={"help": "pretrain: epochs to predict."})
    seed: int = field(default=0, metadata={"help": "Seed of the calibration sample and masks."})
    repeats: int = field(
        default=2,
        metadata={"help": "Timed runs per calibration batch."},  # the fastest is kept
    )
    #: cap on a calibration batch (default: the budget); not an option of the command
    max_calibration_tokens: int | None = field(default=None, metadata={"cli": False})

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        from bioprune.errors import ConfigError

        if self.stage not in STAGES:
            raise ConfigError("stage", f"{self.stage!r}: choose one of {', '.join(STAGES)}")
        counts = ("processes", "batch_tokens", "part_batches", "batch_size", "epochs", "repeats")
        for name in counts:
            if getattr(self, name) < 1:
                raise ConfigError(name, f"must be >= 1 (got {getattr(self, name)})")
        if self.seed < 0:
            raise ConfigError("seed", f"must be >= 0 (got {self.seed})")


@dataclass
class Calibration:
    """One timed calibration batch."""

    examples: int
    padded_length: int
    padded_tokens: int
    seconds: float
    cpu_seconds: float  # process CPU time of the same run (all threads)
    working_mb: float


@dataclass
class Plan:
    """What a run of ``stage`` over the corpus is predicted to cost."""

    stage: str
    model: str
    corpus: str
    device: str
    dtype: str
    processes: int
    threads_per_process: int
    examples: int  # examples the stage processes (the Fisher subset for fisher)
    batches: int
    real_tokens: int
    padded_tokens: int
    batch_tokens: int | None
    seconds_total: float  # batches + fixed costs, one process (one process alone takes this long)
    cpu_seconds_total: float  # process CPU time, all processes (does not grow with others' load)
    batch_seconds_total: float  # the batches alone, summed over all processes
    batch_cpu_seconds_total: float
    #: per-run costs besides the batches, wall seconds: "startup" (interpreter and imports
    #: before the stage; every process), "setup" (corpus, model loading with its imports,
    #: checks, model checksum; every process), "first_batch" (one-time initialisation the
    #: first batch pays; every process), "write" (serializing the output; rank 0)
    fixed_seconds: dict[str, float]
    fixed_cpu_seconds: dict[str, float]
    seconds_per_process: list[float]  # each rank's share
    eta_seconds: float  # the slowest rank: the wall time of an N-process run
    peak_mb_per_process: float
    peak_mb_total: float
    baseline_mb: float  # resident after loading the model and one batch (interpreter included)
    available_mb: float  # free device memory (CUDA) or available RAM (CPU)
    fitted_batch_tokens: int | None  # largest budget whose worst batch fits the headroom
    time_fit: dict[str, float]
    memory_fit: dict[str, float]
    calibration: list[Calibration]
    calibration_seed: int
    calibration_indices: list[int]
    assumptions: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


# ---------------------------------------------------------------------- memory


class _PeakSampler:
    """Peak resident memory (CPU: RSS sampled every ms) or CUDA peak allocation of a block."""

    def __init__(self, device):
        self.device = device
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def current_mb(self) -> float:
        if self.device.type == "cuda":
            import torch

            return torch.cuda.memory_allocated(self.device) / 2**20
        return _rss_mb()

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, self.current_mb())

    def __enter__(self) -> _PeakSampler:
        self.peak = self.current_mb()
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            import torch

            self.peak = max(self.peak, torch.cuda.max_memory_allocated(self.device) / 2**20)
        else:
            self._stop.set()
            assert self._thread is not None
            self._thread.join()
            self.peak = max(self.peak, self.current_mb())


def _available_mb(device) -> float:
    if device.type == "cuda":
        import torch

        free, _ = torch.cuda.mem_get_info(device)
        return free / 2**20
    try:  # Linux: what the kernel estimates can be allocated without swapping
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20


def _rss_mb() -> float:
    """This process's resident set size now (Linux ``/proc``; else its peak so far)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _process_age_s() -> float | None:
    """Wall seconds since this process started (Linux ``/proc``; else None)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start_ticks = int(fields[19])  # field 22: starttime, clock ticks after boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


class _Timer:
    """Wall and process CPU seconds of a block."""

    def __enter__(self) -> _Timer:
        self._w, self._c = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._w
        self.cpu = time.process_time() - self._c


def _time_write(cfg: PlanConfig, model, n_examples: int) -> _Timer:
    """Serialize an output of the run's size in memory (nothing touches the disk).

    ``fisher``: the scored parameters as float32 safetensors (the Fisher file);
    ``score``: a parquet table of one row per example, twice (the parts and the
    merged file); ``pretrain``: the model's state as safetensors (one checkpoint).
    """
    import io

    import torch

    with _Timer() as t:
        if cfg.stage == "score":
            import pyarrow as pa
            import pyarrow.parquet as pq

            rows = np.arange(n_examples, dtype=np.int64)
            table = pa.table({"index": rows, "score": rows.astype(np.float64), "loss": rows * 0.5})
            for _ in range(2):
                pq.write_table(table, io.BytesIO())
        else:
            from safetensors.torch import save

            save(
                {n: p.detach().to(torch.float32).contiguous() for n, p in model.named_parameters()}
            )
    return t


# ---------------------------------------------------------------------- batches


def _features(n: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Columns ``n T``, ``n T^2``, ``n``, ``1`` of the cost model (one row per batch)."""
    n = np.asarray(n, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    return np.stack([n * t, n * t * t, n, np.ones_like(n)], axis=1)


FEATURES = ("per_token", "per_token_x_length", "per_example", "per_batch")


def predict_batch_seconds(coef: np.ndarray, n: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Seconds per batch of ``n`` examples padded to ``T`` under the fitted cost model."""
    return _features(n, t) @ np.asarray(coef, dtype=np.float64)


def _fit(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative least squares, relative errors weighted equally (rows scaled by 1/y)."""
    from scipy.optimize import nnls

    scale = 1.0 / np.maximum(np.abs(y), 1e-12)
    coef, _ = nnls(x * scale[:, None], y * scale)
    return coef


def _stage_batches(cfg: PlanConfig, corpus) -> tuple[np.ndarray, list[list[np.ndarray]]]:
    """The indices the stage processes and its parts of batches (as the stage plans them)."""
    from bioprune.influence.engine import plan_parts

    if cfg.stage == "pretrain":
        from bioprune.training.batches import epoch_batches

        idx = np.arange(len(corpus), dtype=np.int64)
        batches = epoch_batches(
            idx, corpus.lengths, batch_size=cfg.batch_size, seed=cfg.seed, epoch=0
        )
        return idx, [[b] for b in batches]
    if cfg.stage == "fisher":
        from bioprune.influence.fisher import resolve_subset

        idx = resolve_subset(corpus, cfg.subset_size, None, cfg.seed)
    else:
        idx = np.arange(len(corpus), dtype=np.int64)
    parts = plan_parts(
        corpus,
        idx,
        batch_tokens=cfg.batch_tokens,
        max_batch_size=cfg.max_batch_size,
        part_batches=cfg.part_batches,
    )
    return idx, parts


def _calibration_batches(
    cfg: PlanConfig, corpus, indices: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """Batches of real examples at a few lengths of the distribution, at the stage's sizes.

    At each quantile of the framed lengths: a batch as large as the stage would
    make at that length (the token budget, or ``batch_size`` for pretrain), and at
    the median also one of a third of that size, so that the per-token, per-example
    and per-batch costs can be told apart.
    """
    framed = corpus.lengths[indices] + 2
    # by length, ties in a seeded random order: the examples nearest each target length
    order = np.lexsort((rng.random(len(framed)), framed))
    sorted_len = framed[order]
    targets = sorted({int(np.quantile(framed, q, method="nearest")) for q in CALIBRATION_QUANTILES})
    cap = cfg.max_calibration_tokens or cfg.batch_tokens
    out: list[np.ndarray] = []
    median = int(np.quantile(framed, 0.5, method="nearest"))
    for target in targets:
        if cfg.stage == "pretrain":
            full = cfg.batch_size
        else:
            full = max(1, cfg.batch_tokens // target)
            if cfg.max_batch_size is not None:
                full = min(full, cfg.max_batch_size)
            full = max(1, min(full, cap // target))
        full = min(full, len(order))
        sizes = [full] if target != median or full < 3 else [full, max(1, full // 3)]
        for n in sizes:
            # n consecutive examples in length order ending at the target's last one, as
            # the stage's length-sorted batches are
            end = max(n, min(int(np.searchsorted(sorted_len, target, side="right")), len(order)))
            while cfg.stage != "pretrain" and n > 1 and n * sorted_len[end - 1] > cap:
                n -= 1  # too few examples that short: fewer, as the token budget would
            out.append(np.sort(indices[order[end - n : end]]).astype(np.int64))
    return out


def _padded(corpus, batch: np.ndarray) -> tuple[int, int]:
    t = int(corpus.lengths[batch].max()) + 2
    return len(batch), t


# ---------------------------------------------------------------------- runners


def _make_step(cfg: PlanConfig, model, alphabet, corpus, device, autocast):
    """A function running one batch (corpus indices) the way the stage does; and a closer."""
    import contextlib

    import torch

    if cfg.stage in ("score", "fisher"):
        from bioprune.influence.engine import GradientPass
        from bioprune.influence.hooks import FisherReduction, SelfInfluenceReduction
        from bioprune.influence.params import select_parameters

        names = select_parameters(model, "all").names
        reduction = FisherReduction()
        if cfg.stage == "score":  # the cost does not depend on the weights' values
            weights = {
                n: torch.ones(model.get_parameter(n).shape, dtype=torch.float32, device=device)
                for n in names
            }
            reduction = SelfInfluenceReduction(weights)
        grad = GradientPass(
            model, alphabet, corpus, names, seed=cfg.seed, draws=1, device=device,
            autocast=autocast,
        )  # fmt: skip
        tracker = grad.tracker(reduction).__enter__()
        runner = grad.runner(tracker)

        def step(batch: np.ndarray) -> None:
            runner.run_batch(batch)
            if cfg.stage == "fisher":
                reduction.commit()

        return step, lambda: tracker.__exit__(None, None, None)

    from bioprune.data.batching import collate_masked
    from bioprune.data.masking import mask_draw

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-6)

    def step(batch: np.ndarray) -> None:
        draws = [
            mask_draw(corpus.residues(int(i)), alphabet, seed=cfg.seed, index=int(i)) for i in batch
        ]
        framed = [corpus.framed(int(i)) for i in batch]
        tensors = collate_masked(framed, draws, alphabet, batch).to_torch(device)
        ctx = (
            torch.autocast(device_type=device.type, dtype=autocast)
            if autocast is not None
            else contextlib.nullcontext()
        )
        with ctx:
            loss = model(**tensors).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step, lambda: None


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------- plan


def plan_run(cfg: PlanConfig) -> Plan:
    """Calibrate on the real model and corpus, then predict the whole run (writes nothing)."""
    from bioprune.runtime import cpu_threads

    # start-up: what this process spent before the plan (interpreter, torch, CLI imports);
    # the run's process pays the same
    startup_cpu = time.process_time()
    startup_wall = _process_age_s()
    startup_wall = startup_cpu if startup_wall is None else max(startup_wall, 0.0)
    cfg.validate()
    with _Timer() as setup:  # what the stage does before its first batch
        corpus, device, autocast, indices, parts, model, alphabet = _load(cfg)
    rng = np.random.default_rng(cfg.seed)
    calib = _calibration_batches(cfg, corpus, indices, rng)
    cal = _calibrate(cfg, model, alphabet, corpus, device, autocast, calib, len(indices))
    del model
    cal.fit()
    warm_t = np.array([_padded(corpus, cal.warm_batch)[1]])
    warm_fit = float(predict_batch_seconds(cal.time_coef, np.array([1]), warm_t)[0])
    warm_fit_cpu = float(predict_batch_seconds(cal.cpu_coef, np.array([1]), warm_t)[0])
    # the first batch's one-time cost: the warm-up beyond what the fit gives that example
    fixed = {
        "startup": startup_wall,
        "setup": setup.wall,
        "first_batch": max(0.0, cal.warm.wall - warm_fit),
        "write": cal.write.wall,
    }
    fixed_cpu = {
        "startup": startup_cpu,
        "setup": setup.cpu,
        "first_batch": max(0.0, cal.warm.cpu - warm_fit_cpu),
        "write": cal.write.cpu,
    }
    run = _predict(cfg, corpus, parts, cal, fixed, fixed_cpu, device)
    threads = cpu_threads(device) or 0
    assumptions = _assumptions(cfg, cal, calib, run, fixed, fixed_cpu, device, threads)
    return Plan(
        stage=cfg.stage,
        model=str(cfg.model),
        corpus=str(cfg.corpus),
        device=str(device),
        dtype=cfg.dtype,
        processes=cfg.processes,
        threads_per_process=threads,
        examples=len(indices),
        **run["plan"],
        fixed_seconds={k: float(v) for k, v in fixed.items()},
        fixed_cpu_seconds={k: float(v) for k, v in fixed_cpu.items()},
        baseline_mb=float(cal.baseline),
        time_fit=dict(zip(FEATURES, map(float, cal.time_coef), strict=True)),
        memory_fit=dict(zip(FEATURES[:3], map(float, cal.mem_coef), strict=True)),
        calibration=cal.results,
        calibration_seed=cfg.seed,
        calibration_indices=[int(i) for b in calib for i in b],
        assumptions=assumptions,
    )


def _load(cfg: PlanConfig):
    """The stage's set-up: corpus, device, autocast dtype, its batches, the model."""
    from bioprune import artifacts
    from bioprune.data.corpus import Corpus
    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm
    from bioprune.runtime import autocast_dtype, resolve_device

    corpus = Corpus(cfg.corpus)
    if len(corpus) == 0:
        raise ValueError(f"{cfg.corpus}: the corpus is empty; nothing to plan")
    device = resolve_device(cfg.device)
    autocast = autocast_dtype(cfg.dtype, device)
    indices, parts = _stage_batches(cfg, corpus)
    model, alphabet = load_masked_lm(cfg.model, device=device)
    check_model_fits_corpus(model, alphabet, corpus, cfg.model)
    artifacts.model_checksum(cfg.model)
    return corpus, device, autocast, indices, parts, model, alphabet


@dataclass
class _Calibrated:
    """What calibration measured, and the fits made from it (:meth:`fit`)."""

    results: list
    warm_batch: np.ndarray
    warm: object  # _Timer
    write: object  # _Timer
    baseline: float
    time_coef: np.ndarray | None = None
    cpu_coef: np.ndarray | None = None
    mem_coef: np.ndarray | None = None

    def fit(self) -> None:
        results = self.results
        x = _features([c.examples for c in results], [c.padded_length for c in results])
        self.time_coef = _fit(x, np.array([c.seconds for c in results]))
        self.cpu_coef = _fit(x, np.array([max(c.cpu_seconds, 1e-6) for c in results]))
        self.mem_coef = _fit(x[:, :3], np.array([max(c.working_mb, 1e-3) for c in results]))


def _calibrate(cfg, model, alphabet, corpus, device, autocast, calib, n_examples) -> _Calibrated:
    """Time (fastest of ``cfg.repeats``) and measure the memory of each calibration batch."""
    sampler = _PeakSampler(device)
    if cfg.stage == "pretrain":
        model.train(False)  # no dropout while timing; the cost is the same
    step, close = _make_step(cfg, model, alphabet, corpus, device, autocast)
    try:
        # warm-up on one example of the smallest calibration batch (lazy initialisation,
        # kernels, allocator): timed apart, since the run's first batch pays it too
        warm_batch = min(calib, key=lambda b: len(b) * _padded(corpus, b)[1])[:1]
        with _Timer() as warm:
            step(warm_batch)
            _sync(device)
        # the output's serialization, before the baseline: the run holds its libraries and
        # memory pools (pyarrow's: ~80 MB for score) while its batches run
        write = _time_write(cfg, model, n_examples)
        baseline = sampler.current_mb()
        results: list[Calibration] = []
        # smallest first, so that each batch's memory high-water mark is its own
        for batch in sorted(calib, key=lambda b: len(b) * _padded(corpus, b)[1] ** 2):
            results.append(_time_batch(cfg, corpus, batch, step, sampler, device, baseline))
    finally:
        close()
    return _Calibrated(results, warm_batch, warm, write, baseline)


def _time_batch(cfg, corpus, batch, step, sampler, device, baseline: float) -> Calibration:
    n, t = _padded(corpus, batch)
    best = best_cpu = float("inf")
    peak = 0.0
    for _ in range(cfg.repeats):
        with sampler:
            t0, c0 = time.perf_counter(), time.process_time()
            step(batch)
            _sync(device)
            best = min(best, time.perf_counter() - t0)
            best_cpu = min(best_cpu, time.process_time() - c0)
        peak = max(peak, sampler.peak)
    log.debug("calibration batch %d x %d: %.3f s, %.0f MB working", n, t, best, peak - baseline)
    return Calibration(n, t, n * t, best, best_cpu, max(0.0, peak - baseline))


def _predict(cfg, corpus, parts, cal: _Calibrated, fixed, fixed_cpu, device) -> dict:
    """The fits summed over the stage's own batches of the whole corpus, per process."""
    once = ("startup", "setup", "first_batch")  # every process pays these
    batch_n, batch_t, rank_of = [], [], []
    real = 0
    for j, part in enumerate(parts):
        for b in part:
            n, t = _padded(corpus, b)
            batch_n.append(n)
            batch_t.append(t)
            rank_of.append(j % cfg.processes)
            real += int((corpus.lengths[b] + 2).sum())
    bn, bt = np.array(batch_n), np.array(batch_t)
    per_batch_s = predict_batch_seconds(cal.time_coef, bn, bt)
    epochs = cfg.epochs if cfg.stage == "pretrain" else 1
    ranks = np.array(rank_of)
    batch_per_process = [
        float(per_batch_s[ranks == r].sum() * epochs) for r in range(cfg.processes)
    ]
    # every process starts up and loads; rank 0 writes
    per_process = [
        s + sum(fixed[k] for k in once) + (fixed["write"] if r == 0 else 0.0)
        for r, s in enumerate(batch_per_process)
    ]
    batch_cpu = float(predict_batch_seconds(cal.cpu_coef, bn, bt).sum() * epochs)
    cpu_total = batch_cpu + cfg.processes * sum(fixed_cpu[k] for k in once) + fixed_cpu["write"]
    working = float((_features(bn, bt)[:, :3] @ cal.mem_coef).max()) if len(bn) else 0.0
    available = _available_mb(device)
    plan = {
        "batches": len(bn) * epochs,
        "real_tokens": int(real) * epochs,
        "padded_tokens": int((bn * bt).sum()) * epochs,
        "batch_tokens": cfg.batch_tokens if cfg.stage != "pretrain" else None,
        "seconds_total": float(sum(batch_per_process) + sum(fixed.values())),
        "cpu_seconds_total": float(cpu_total),
        "batch_seconds_total": float(sum(batch_per_process)),
        "batch_cpu_seconds_total": batch_cpu,
        "seconds_per_process": per_process,
        "eta_seconds": float(max(per_process)),
        "peak_mb_per_process": float(cal.baseline + working),
        "peak_mb_total": float((cal.baseline + working) * cfg.processes),
        "available_mb": float(available),
        "fitted_batch_tokens": _fitted_budget(cfg, cal, bt, available),
    }
    return {"plan": plan, "working": working, "available": available}


def _fitted_budget(cfg, cal: _Calibrated, bt: np.ndarray, available: float) -> int | None:
    """The largest ``--batch-tokens`` whose worst batch fits the memory (fisher, score)."""
    if cfg.stage == "pretrain":
        return None
    # the worst batch of a budget B: B tokens at the longest length (attention), and
    # B / shortest examples (per-example buffers)
    t_max, t_min = float(bt.max()), float(bt.min())
    m = cal.mem_coef
    per_budget = m[0] + m[1] * t_max + m[2] / t_min
    room = MEMORY_HEADROOM * available / cfg.processes - cal.baseline
    if per_budget > 0 and room > 0:
        return max(int(room / per_budget) // 256 * 256, int(t_max))
    return None


def _assumptions(cfg, cal, calib, run, fixed, fixed_cpu, device, threads: int) -> list[str]:
    """What the prediction assumes, in words (printed with the plan)."""
    results, baseline = cal.results, cal.baseline
    working, available = run["working"], run["available"]
    return [
        f"time per batch = a*n*T + b*n*T^2 + c*n + d (n examples, T padded length), fitted by "
        f"non-negative least squares to {len(results)} calibration batches at framed lengths "
        f"{sorted({c.padded_length for c in results})} (quantiles "
        f"{list(CALIBRATION_QUANTILES)} of the corpus), fastest of {cfg.repeats} run(s) each",
        f"calibration sample: {sum(len(b) for b in calib)} corpus examples, per batch those "
        f"just below a target length (equal lengths in numpy default_rng({cfg.seed}) order)",
        "the whole run's batches are the stage's own (length-sorted, token budget, padding "
        "included); the prediction is the fit summed over them"
        if cfg.stage != "pretrain"
        else f"pretrain: epoch_batches of {cfg.batch_size} examples (seed {cfg.seed}), "
        f"{cfg.epochs} epoch(s), AdamW step included, no validation or checkpoint time",
        f"{'one mask draw (K = 1)' if cfg.stage != 'pretrain' else 'one mask per step'}; "
        "a run with K draws takes about K times as long",
        f"{cfg.processes} process(es): part j runs on rank j % {cfg.processes}; each process "
        "runs at the calibrated speed "
        + (
            f"with {threads} CPU thread(s), i.e. needs {threads * cfg.processes} free cores"
            if device.type == "cpu"
            else "on its own GPU"
        ),
        f"peak memory = this process's memory after loading the model and one batch "
        f"({baseline:.0f} MB: interpreter, torch, transformers, model, corpus, allocator "
        f"caches) + working memory fitted to n*T, n*T^2, n at the largest batch "
        f"({working:.0f} MB); "
        + (
            "CPU: resident set size sampled every ms"
            if device.type == "cpu"
            else "CUDA: peak allocated"
        ),
        f"fitted budget: largest --batch-tokens whose worst batch fits {MEMORY_HEADROOM:.0%} of "
        f"{'free GPU memory' if device.type == 'cuda' else 'available RAM'} "
        f"({available:.0f} MB) shared by {cfg.processes} process(es)",
        "fixed per-run costs, measured here and added once per process: start-up "
        f"{fixed['startup']:.1f} s ({fixed_cpu['startup']:.1f} s CPU; this process's "
        "interpreter and imports before the plan, assumed the same for the run's), set-up "
        f"{fixed['setup']:.1f} s ({fixed_cpu['setup']:.1f} s CPU; opening the corpus, "
        "loading the model with its library imports, checks, the model checksum), first "
        f"batch {fixed['first_batch']:.2f} s (a one-example warm-up's time beyond the fit: "
        "lazy initialisation the run's first batch pays), write "
        f"{fixed['write']:.2f} s ({fixed_cpu['write']:.2f} s CPU; serializing an output "
        "of the run's size in memory, rank 0 only; disk and fsync not included)",
        "not included: score's reading of the Fisher file, resumed or checkpointed work, "
        + ("pretrain's validation; " if cfg.stage == "pretrain" else "")
        + "the machine is assumed as busy as during calibration",
    ]
