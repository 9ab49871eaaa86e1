"""The diagonal empirical Fisher over a seeded subset (method.md section 4, eq. 9).

``F_p = 1/(M K) sum_{z in D_sub} sum_k g_p(z,k)^2`` for every scored scalar
parameter ``p``; damping ``lambda_p = damping * mean(F over p's tensor)``.

Two entry points share one computation: :func:`diagonal_fisher` works on a model
object and a corpus in memory and returns a :class:`~bioprune.influence.fisher_file.Fisher`
(it writes nothing); :func:`compute_fisher` is ``bioprune fisher``: it reads the
model from a directory, splits the work over ``torchrun`` ranks, checkpoints and
resumes, and writes ``FISHER.safetensors`` (format in :mod:`bioprune.influence.fisher_file`).

Resume: each rank checkpoints its float64 running sums (and how many of its
parts are done) in ``FISHER.safetensors.parts/`` every ``checkpoint_seconds``;
a resumed run continues from there and adds the remaining batches in the same
order, so it ends with the same file as an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.data.subsets import random_subset
from bioprune.errors import ConfigError
from bioprune.influence import runs
from bioprune.influence.config import IN_MEMORY_OPTIONS, FisherConfig, pass_options
from bioprune.influence.fisher_file import FISHER_FORMAT, INLINE_SUBSET_MAX, Fisher, load_fisher
from bioprune.progress import ProgressCallback

__all__ = [
    "FISHER_FORMAT",
    "INLINE_SUBSET_MAX",
    "Fisher",
    "FisherConfig",
    "FisherData",
    "FisherResult",
    "compute_fisher",
    "damping_lambdas",
    "diagonal_fisher",
    "load_fisher",
    "resolve_subset",
]

log = logging.getLogger(__name__)

DAMPING_RULE = "lambda_p = damping * mean(F over p's tensor)"
#: The former name of :class:`Fisher` (what :func:`load_fisher` returns).
FisherData = Fisher


@dataclass
class FisherResult:
    """What a Fisher run produced."""

    path: Path
    names: list[str]
    numel: int
    examples: int
    skipped: list[int]
    excluded: dict[str, str]
    seconds: float
    tokens: int = 0
    lambdas: dict[str, float] = field(default_factory=dict)
    processed: int = 0  # examples summed by this run (all ranks; less than M on resume)


def _checked_indices(idx, n: int, where: str, corpus_name: str) -> np.ndarray:
    """``idx`` as int64 corpus indices: 1-D, integer, in range, each once."""
    idx = np.asarray(idx)
    if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{where}: expected a 1-D array of integer corpus indices")
    idx = idx.astype(np.int64)
    if len(idx) and (idx.min() < 0 or idx.max() >= n):
        bad = idx[(idx < 0) | (idx >= n)][:5].tolist()
        raise ValueError(f"{where}: indices {bad} lie outside corpus {corpus_name} of {n} examples")
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{where}: repeated corpus indices; a subset lists each example once")
    return idx


def _read_index_file(subset_from: Path) -> tuple[np.ndarray, Path]:
    src = Path(subset_from)
    if src.is_dir():
        src = src / artifacts.MODEL_SUBSET
        if not src.is_file():
            raise FileNotFoundError(
                f"{subset_from} has no {artifacts.MODEL_SUBSET}: it is not a model "
                "written by `bioprune adapt`; give --subset-size or an index file"
            )
    if not src.is_file():
        raise FileNotFoundError(f"--subset-from {src}: no such file or directory")
    if src.suffix == ".npy":
        return np.load(src), src
    try:
        return np.loadtxt(src, dtype=np.int64, ndmin=1), src
    except ValueError as exc:
        raise ValueError(f"{src}: expected one integer corpus index per line ({exc})") from None


def resolve_subset(
    corpus, subset_size: str | None, subset_from: Path | None, seed: int
) -> np.ndarray:
    """Sorted, unique corpus indices of the Fisher subset ``D_sub``.

    ``subset_size``: a count or fraction of the corpus, drawn uniformly without
    replacement by ``numpy.random.default_rng(seed)``. ``subset_from``: a
    ``.npy`` or text file of indices (one per line), or a model directory
    written by ``bioprune adapt`` (its ``subset_indices.npy``).
    """
    from bioprune.selection.budget import parse_budget

    n = len(corpus)
    if subset_from is not None:
        raw, src = _read_index_file(subset_from)
        idx = _checked_indices(raw, n, str(src), str(getattr(corpus, "path", "")))
    else:
        m = parse_budget(str(subset_size), n, "--subset-size")
        if m > n:
            raise ValueError(f"--subset-size {subset_size} exceeds the corpus size {n}")
        idx = random_subset(n, m, seed)
    if len(idx) == 0:
        raise ValueError("the Fisher subset is empty; give a positive --subset-size")
    return np.sort(idx)


def damping_lambdas(fisher: dict, damping: float) -> dict[str, float]:
    """``lambda_p = damping * mean(F over p's tensor)`` for every tensor (float64 mean)."""
    import torch

    return {n: float(damping * f.to(torch.float64).mean()) for n, f in fisher.items()}


# ----------------------------------------------------------------------- the computation
@dataclass
class _Sums:
    """Running float64 sums of squared gradients (one rank's), and what they cover."""

    totals: dict
    fired: object  # float64 tensor: 1 where a tensor received a gradient
    done_parts: int = 0
    examples: int = 0
    tokens: int = 0
    skipped: list[int] = field(default_factory=list)


@dataclass
class _FisherJob:
    """One Fisher computation: the pass, its subset and plan, and the process it runs in."""

    grad: object  # engine.GradientPass
    selection: object  # params.ParameterSelection
    subset: np.ndarray
    parts: list
    damping: float
    fisher_mode: str
    proc: object  # runtime.Process

    def new_sums(self) -> _Sums:
        import torch

        device, names = self.grad.device, self.selection.names
        shapes = self.selection.shapes
        totals = {n: torch.zeros(shapes[n], dtype=torch.float64, device=device) for n in names}
        fired = torch.zeros(len(names), dtype=torch.float64, device=device)
        return _Sums(totals=totals, fired=fired)


def _fisher_batch(runner, reduction, batch: np.ndarray, job: _FisherJob, sums: _Sums, report):
    """One batch into the sums; examples with non-finite gradients stop the run or are left out."""
    n_batch = len(batch)
    res = runner.run_batch(batch)
    while res.nonfinite.any():
        bad = batch[res.nonfinite]
        if job.grad.on_nonfinite == "stop":
            raise ValueError(runs.nonfinite_message(job.grad.corpus, bad, "Fisher"))
        # Skip: leave them out and redo the batch without them.
        sums.skipped.extend(int(i) for i in bad)
        batch = batch[~res.nonfinite]
        if not len(batch):
            break
        res = runner.run_batch(batch)
    if len(batch):
        reduction.commit()
        sums.tokens += res.tokens
    sums.examples += len(batch)
    report.advance(n_batch, res.tokens)


def _sum_parts(job: _FisherJob, sums: _Sums, todo: list[int], report, after_part) -> None:
    """Add the parts ``todo`` to ``sums``; ``after_part(count)`` runs after each."""
    from bioprune.influence.hooks import FisherReduction

    names = job.selection.names
    reduction = FisherReduction(sums.totals)
    with job.grad.tracker(reduction) as tracker:
        runner = job.grad.runner(tracker)
        for count, j in enumerate(todo):
            report.note = f"part {j + 1} of {len(job.parts)} ({count} of {len(todo)} done)"
            for batch in job.parts[j]:
                _fisher_batch(runner, reduction, batch, job, sums, report)
            for i, n in enumerate(names):
                if n in tracker.fired:
                    sums.fired[i] = 1.0
            sums.done_parts += 1
            after_part(count + 1)


def _finish(job: _FisherJob, sums: _Sums, report) -> tuple[Fisher, dict]:
    """Sum over ranks (float64), apply eq. 9 and the damping; returns the Fisher and run stats."""
    import torch

    proc = job.proc
    stats = {"processed": proc.sum_int(report.examples)}
    for n in job.selection.names:
        proc.all_reduce_sum_(sums.totals[n])
    proc.all_reduce_sum_(sums.fired)
    examples = proc.sum_int(sums.examples)
    stats["tokens"] = proc.sum_int(report.tokens)  # this run's tokens, for the rate
    skipped = sorted(proc.gather_lists(sums.skipped))
    if examples == 0:
        raise ValueError("no example of the subset had finite gradients; nothing to average")
    denom = float(examples * job.grad.draws)
    excluded = dict(job.selection.excluded)
    fisher = {}
    for i, n in enumerate(job.selection.names):
        f = (sums.totals[n] / denom).to(torch.float32).cpu()
        if sums.fired[i] == 0:
            excluded[n] = "not reached by the MLM loss"
        elif not bool(f.any()):
            excluded[n] = "zero Fisher everywhere"
        else:
            fisher[n] = f.contiguous()
    if not fisher:
        raise ValueError("every selected tensor has zero Fisher; nothing to score")
    lambdas = damping_lambdas(fisher, job.damping)
    meta = _fisher_meta(job, examples, excluded, lambdas, skipped)
    result = Fisher(tensors=fisher, lambdas=lambdas, meta=meta)
    if job.fisher_mode == "factored" and proc.is_main:
        meta["factored"], result.factors = _fit_factors(job.grad.model, fisher, lambdas)
    return result, stats


def _fisher_meta(job: _FisherJob, examples: int, excluded, lambdas, skipped) -> dict:
    from bioprune.runtime import cpu_threads

    g = job.grad
    names = list(lambdas)
    return {
        "subset": [int(i) for i in job.subset],
        "subset_size": len(job.subset),
        "subset_checksum": runs.indices_digest(job.subset),
        "subset_seed": g.seed,
        "subset_from": None,
        "examples": int(examples),
        "damping": {"rule": DAMPING_RULE, "damping": job.damping, "lambda": lambdas},
        "mask_seed": g.seed,
        "mask_draws": g.draws,
        "params": {
            "spec": job.selection.spec,
            "names": names,
            "numel": sum(int(g.model.get_parameter(n).numel()) for n in names),
            "excluded": excluded,
        },
        "nonfinite": {"policy": g.on_nonfinite, "skipped": skipped},
        "model_checksum": None,
        "corpus_checksum": g.corpus.checksum,
        "cpu_threads": cpu_threads(g.device),
        **artifacts.provenance(),
    }


def _fit_factors(model, fisher: dict, lambdas: dict) -> tuple[dict, dict]:
    """Rank-one factors of ``1/(F + lambda)`` for every factorable weight matrix.

    Returns the metadata record (``rule``, ``note``, per-tensor fit errors, the
    tensors kept exact) and name -> ``(u, v)``.
    """
    from bioprune.influence.factored import FACTORED_RULE, factorable_tensors, fit_rank_one

    names = list(fisher)
    factors, errors = {}, {}
    for name in factorable_tensors(model, names):
        fit = fit_rank_one(fisher[name], lambdas[name])
        factors[name] = (fit.u.contiguous(), fit.v.contiguous())
        errors[name] = fit.errors()
    record = {
        "rule": FACTORED_RULE,
        "note": "scores of --fisher-mode factored are exact for these rank-one weights, "
        "not for the diagonal Fisher",
        "tensors": errors,
        "exact": [n for n in names if n not in errors],
    }
    worst = max((e["score_rel_error"] for e in errors.values()), default=0.0)
    log.info(
        "factored: %d weight matrices fitted as u v^T (worst score_rel_error %.3g; "
        "per tensor in the metadata)",
        len(factors),
        worst,
    )
    return record, factors


# ------------------------------------------------------------------------- in memory
def diagonal_fisher(
    model,
    corpus,
    *,
    subset=None,
    seed: int = FisherConfig.seed,
    mask_draws: int = FisherConfig.mask_draws,
    params: str = FisherConfig.params,
    damping: float = FisherConfig.damping,
    progress: ProgressCallback | None = None,
    **options,
) -> Fisher:
    """The diagonal Fisher (eq. 9) of ``model`` over a subset of ``corpus``, in memory.

    ``model``: an ESM masked LM (:func:`bioprune.models.load_model`), used on its
    own device and put back in the mode it was in. ``subset``: ``None`` (the whole
    corpus), a count (``2000``), a fraction (``0.01``, ``"1%"``), drawn with
    ``seed``, or an array of corpus indices. ``seed`` also seeds the mask draws.
    ``progress`` receives :class:`~bioprune.progress.ProgressEvent` s. Writes
    nothing; :meth:`Fisher.save` writes the file ``bioprune fisher`` writes.
    The same computation as ``bioprune fisher`` with the same arguments.
    ``options``: ``batch_tokens``, ``max_batch_size``, ``on_nonfinite``, ``fisher_mode``,
    ``dtype``, as the CLI's options of those names (defaults: ``PassConfig``'s); any
    other keyword is a :class:`~bioprune.errors.ConfigError`.
    """
    from bioprune.influence.engine import plan_parts

    opts = pass_options(options)
    opts.check_pass(mask_draws, seed)
    if not damping > 0:
        raise ConfigError("damping", f"must be > 0 (got {damping})")
    indices = _subset_of(corpus, subset, seed)
    with in_memory_pass(
        model, corpus, seed=seed, draws=mask_draws, dtype=opts.dtype, on_nonfinite=opts.on_nonfinite
    ) as (grad, proc):
        selection = _select(grad, params)
        grad.names = selection.names
        parts = plan_parts(
            corpus, indices, batch_tokens=opts.batch_tokens, max_batch_size=opts.max_batch_size,
            part_batches=1,
        )  # fmt: skip
        job = _FisherJob(grad, selection, indices, parts, damping, opts.fisher_mode, proc)
        sums = job.new_sums()
        report = runs.StageProgress("fisher", len(indices), progress)
        _sum_parts(job, sums, list(range(len(parts))), report, lambda count: None)
        result, _ = _finish(job, sums, report)
    result.meta["model_checksum"] = weights_checksum(model)
    if not isinstance(subset, (int, float, str)):
        result.meta["subset_seed"] = None
    result.meta["config"] = {
        "function": "diagonal_fisher",
        "subset": _subset_record(subset),
        "seed": seed,
        "mask_draws": mask_draws,
        "params": params,
        "damping": damping,
        **{name: getattr(opts, name) for name in IN_MEMORY_OPTIONS},
    }
    return result


def _subset_record(subset) -> object:
    if subset is None or isinstance(subset, (int, float, str)):
        return subset
    return {"indices": len(np.asarray(subset))}


def _subset_of(corpus, subset, seed: int) -> np.ndarray:
    if subset is None:
        return np.arange(len(corpus), dtype=np.int64)
    if isinstance(subset, (int, float, str)) and not isinstance(subset, bool):
        return resolve_subset(corpus, str(subset), None, seed)
    idx = _checked_indices(subset, len(corpus), "subset", str(getattr(corpus, "path", "")))
    if len(idx) == 0:
        raise ConfigError("subset", "is empty; give at least one corpus index")
    return np.sort(idx)


def weights_checksum(model) -> str:
    """A checksum of a model's parameters in memory (names, dtypes, shapes and values)."""
    import hashlib

    import torch

    h = hashlib.blake2b()
    for name, p in model.named_parameters():
        t = p.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return f"weights:blake2b:{h.hexdigest()}"


@contextlib.contextmanager
def in_memory_pass(model, corpus, *, seed: int, draws: int, dtype: str, on_nonfinite: str):
    """A single-process :class:`GradientPass` on the model's own device (no names yet).

    The model is in eval mode inside (no dropout) and back in its own mode after.
    Yields ``(pass, process)``.
    """
    from bioprune.influence.engine import GradientPass
    from bioprune.models.loading import check_model_fits_corpus
    from bioprune.runtime import Process, autocast_dtype

    device = next(model.parameters()).device
    check_model_fits_corpus(model, corpus.alphabet, corpus, type(model).__name__)
    was_training = model.training
    model.eval()
    try:
        grad = GradientPass(
            model, corpus.alphabet, corpus, [], seed=seed, draws=draws, device=device,
            autocast=autocast_dtype(dtype, device), on_nonfinite=on_nonfinite,
        )  # fmt: skip
        yield grad, Process(device=device)
    finally:
        model.train(was_training)


def _select(grad, params: str, *, say: bool = True):
    """The tensors ``params`` selects (logged on the main rank: ``say``)."""
    from bioprune.influence.params import select_parameters

    selection = select_parameters(grad.model, params)
    if say:
        log.info("scored parameters: %s", selection.describe())
        for name, why in selection.excluded.items():
            log.info("  left out %s: %s", name, why)
    return selection


# --------------------------------------------------------------------------- on disk
def compute_fisher(cfg: FisherConfig, progress: ProgressCallback | None = None) -> FisherResult:
    """Run eq. 9 over the subset and write ``cfg.out`` (one process or one torchrun rank).

    Messages go to the ``bioprune.influence`` logger (rank 0), progress to ``progress``.
    """
    inputs = (cfg.corpus, cfg.model, cfg.subset_from)
    with runs.resumable_run(cfg, inputs, _fisher_job, _run_key) as run:
        job = run.job
        sums, todo, after_part = _resumable_sums(cfg, job, run.parts_dir)
        total = sum(len(b) for j in todo for b in job.parts[j])
        report = runs.StageProgress("fisher", total, progress if run.proc.is_main else None)
        _sum_parts(job, sums, todo, report, after_part)
        fisher, stats = _finish(job, sums, report)
        if run.proc.is_main:
            _write(cfg, job, fisher, run.model_sum)
    return _result(Path(cfg.out), job, fisher, stats, report.elapsed)


def _fisher_job(cfg: FisherConfig, proc) -> tuple[_FisherJob, str]:
    """Read the inputs of a file-based run and plan its parts."""
    from bioprune.data.corpus import Corpus
    from bioprune.influence.engine import GradientPass, plan_parts
    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm
    from bioprune.runtime import autocast_dtype

    corpus = Corpus(cfg.corpus)
    model, alphabet = load_masked_lm(cfg.model, device=proc.device)
    check_model_fits_corpus(model, alphabet, corpus, cfg.model)
    grad = GradientPass(
        model, alphabet, corpus, [], seed=cfg.seed, draws=cfg.mask_draws, device=proc.device,
        autocast=autocast_dtype(cfg.dtype, proc.device),
        max_chunk_elements=cfg.max_chunk_elements, on_nonfinite=cfg.on_nonfinite,
    )  # fmt: skip
    selection = _select(grad, cfg.params, say=proc.is_main)
    grad.names = selection.names
    subset = resolve_subset(corpus, cfg.subset_size, cfg.subset_from, cfg.seed)
    if proc.is_main:
        log.info(
            "Fisher subset: %s of %s examples, %d mask draw(s)",
            f"{len(subset):,}",
            f"{len(corpus):,}",
            cfg.mask_draws,
        )
    parts = plan_parts(
        corpus, subset, batch_tokens=cfg.batch_tokens, max_batch_size=cfg.max_batch_size,
        part_batches=cfg.part_batches,
    )  # fmt: skip
    job = _FisherJob(grad, selection, subset, parts, cfg.damping, cfg.fisher_mode, proc)
    return job, artifacts.model_checksum(cfg.model)


def _run_key(cfg: FisherConfig, job: _FisherJob, model_sum: str) -> dict:
    from bioprune.runtime import cpu_threads

    return {
        "stage": "fisher",
        "model_checksum": model_sum,
        "corpus_checksum": job.grad.corpus.checksum,
        "subset": runs.indices_digest(job.subset),
        "seed": cfg.seed,
        "mask_draws": cfg.mask_draws,
        "params": job.selection.names,
        "batch_tokens": cfg.batch_tokens,
        "max_batch_size": cfg.max_batch_size,
        "part_batches": cfg.part_batches,
        "dtype": cfg.dtype,
        "world_size": job.proc.world,
        "cpu_threads": cpu_threads(job.grad.device),
    }


def _resumable_sums(cfg: FisherConfig, job: _FisherJob, parts_dir: Path):
    """This rank's sums (resumed from its checkpoint), its parts to do, and the
    after-part hook that checkpoints every ``checkpoint_seconds`` (and the test kill)."""
    proc, names = job.proc, job.selection.names
    sums = job.new_sums()
    ckpt_path = parts_dir / f"fisher-rank{proc.rank}.safetensors"
    if cfg.resume and ckpt_path.is_file():
        state, info = _read_resume_part(ckpt_path, job.selection.shapes, names, parts_dir)
        for n in names:
            sums.totals[n].copy_(state[n])
        sums.fired.copy_(state["__fired__"])
        sums.done_parts, sums.examples = info["done_parts"], info["examples"]
        sums.tokens, sums.skipped = info["tokens"], list(info["skipped"])
        if proc.is_main:
            log.info("resuming: %d part(s) of rank %d already summed", sums.done_parts, proc.rank)
    mine = [j for j in range(len(job.parts)) if proc.owns(j)]
    last = [time.perf_counter()]

    def after_part(count: int) -> None:
        if time.perf_counter() - last[0] >= cfg.checkpoint_seconds:
            _save_checkpoint(ckpt_path, sums)
            last[0] = time.perf_counter()
        runs.maybe_die(count)

    return sums, mine[sums.done_parts :], after_part


def _save_checkpoint(ckpt_path: Path, sums: _Sums) -> None:
    from safetensors.torch import save_file

    state = {n: t.detach().cpu().contiguous() for n, t in sums.totals.items()}
    state["__fired__"] = sums.fired.cpu()
    info = {
        "done_parts": sums.done_parts,
        "examples": sums.examples,
        "tokens": sums.tokens,
        "skipped": sums.skipped,
    }
    with artifacts.atomic_path(ckpt_path) as tmp:
        save_file(state, str(tmp), metadata={"state": json.dumps(info)})


def _write(cfg: FisherConfig, job: _FisherJob, fisher: Fisher, model_sum: str) -> None:
    """Rank 0: the Fisher file (and the masks when asked), with the run's provenance."""
    from bioprune.influence.files import write_masks

    fisher.meta.update(
        subset_seed=cfg.seed if cfg.subset_from is None else None,
        subset_from=str(cfg.subset_from) if cfg.subset_from is not None else None,
        model_checksum=model_sum,
        config=runs.config_record(cfg),
    )
    fisher.save(cfg.out)
    if cfg.save_masks is not None:
        g = job.grad
        meta = {"stage": "fisher", "corpus_checksum": g.corpus.checksum, **artifacts.provenance()}
        write_masks(
            cfg.save_masks, g.corpus, g.alphabet, job.subset, seed=cfg.seed,
            draws=cfg.mask_draws, meta=meta,
        )  # fmt: skip
    for n, why in fisher.meta["params"]["excluded"].items():
        if n not in job.selection.excluded:
            log.info("  left out %s: %s", n, why)


def _result(out: Path, job: _FisherJob, fisher: Fisher, stats: dict, seconds: float):
    return FisherResult(
        path=out,
        names=list(fisher.tensors),
        numel=sum(int(f.numel()) for f in fisher.tensors.values()),
        examples=fisher.meta["examples"],
        skipped=fisher.meta["nonfinite"]["skipped"],
        excluded=fisher.meta["params"]["excluded"],
        seconds=seconds,
        tokens=stats["tokens"],
        lambdas=fisher.lambdas,
        processed=stats["processed"],
    )


def _read_resume_part(ckpt_path: Path, shapes: dict, names: list[str], parts_dir: Path):
    """A rank's running sums, checked against the run: ``(tensors on CPU, state dict)``.

    A truncated or damaged part is refused naming the file, with how to start over
    (the work directory's run.json already matched, so the sums are the only suspect).
    """
    from safetensors import safe_open

    from bioprune.errors import InputError, reading

    start_over = f"delete {parts_dir} to start over"
    try:
        with reading(ckpt_path, "Fisher resume part"), safe_open(str(ckpt_path), "pt") as fh:
            meta = fh.metadata() or {}
            keys = set(fh.keys())
            lacking = [n for n in [*names, "__fired__"] if n not in keys]
            if lacking:
                raise InputError(ckpt_path, f"damaged resume part: lacks {lacking[:5]}")
            state = {n: fh.get_tensor(n) for n in [*names, "__fired__"]}
            info = json.loads(meta["state"]) if "state" in meta else None
    except InputError as exc:
        raise InputError(ckpt_path, f"{exc.reason}; {start_over}") from exc
    ok = isinstance(info, dict) and all(
        isinstance(info.get(k), int) and not isinstance(info.get(k), bool) and info[k] >= 0
        for k in ("done_parts", "examples", "tokens")
    )
    if not ok or not isinstance(info.get("skipped"), list):
        raise InputError(ckpt_path, f"damaged resume part: bad progress record; {start_over}")
    for n in names:
        if tuple(state[n].shape) != tuple(shapes[n]):
            raise InputError(
                ckpt_path,
                f"damaged resume part: {n} has shape {tuple(state[n].shape)}, "
                f"model {tuple(shapes[n])}; {start_over}",
            )
    if tuple(state["__fired__"].shape) != (len(names),):
        raise InputError(ckpt_path, f"damaged resume part: bad __fired__ record; {start_over}")
    return state, info
