"""The diagonal empirical Fisher over a seeded subset (method.md section 4, eq. 9).

``F_p = 1/(M K) sum_{z in D_sub} sum_k g_p(z,k)^2`` for every scored scalar
parameter ``p``; damping ``lambda_p = damping * mean(F over p's tensor)``.

File format (``FISHER.safetensors``): one float32 tensor per scored parameter,
named as in ``model.named_parameters()``, and safetensors metadata (all values
JSON strings): ``format``, ``subset`` (the indices, or ``{"file": sidecar}``
for large subsets), ``subset_size``, ``subset_seed``, ``examples`` (``M``),
``damping`` (rule, value and each tensor's lambda), ``mask_seed``,
``mask_draws``, ``params`` (spec, names, size, excluded tensors and why),
``nonfinite`` (skipped indices), ``model_checksum``, ``corpus_checksum``,
``bioprune_version``, ``created``, ``config``.

Resume: each rank checkpoints its float64 running sums (and how many of its
parts are done) in ``FISHER.safetensors.parts/`` every ``checkpoint_seconds``;
a resumed run continues from there and adds the remaining batches in the same
order, so it ends with the same file as an uninterrupted run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.data.subsets import random_subset

__all__ = [
    "FISHER_FORMAT",
    "FisherConfig",
    "FisherData",
    "FisherResult",
    "compute_fisher",
    "damping_lambdas",
    "load_fisher",
    "resolve_subset",
]

FISHER_FORMAT = "bioprune-fisher-diagonal-v1"
#: Subsets larger than this go to a sidecar ``.npy`` next to the Fisher file.
INLINE_SUBSET_MAX = 10_000
#: Test hook: a run dies by SIGKILL after this many parts (resume tests).
KILL_ENV = "BIOPRUNE_TEST_KILL_AFTER_PARTS"
DAMPING_RULE = "lambda_p = damping * mean(F over p's tensor)"
#: exact: the diagonal Fisher only; factored: also rank-one factors of 1/(F + lambda).
FISHER_MODES = ("exact", "factored")


@dataclass
class FisherConfig:
    """Arguments of ``bioprune fisher`` (validated by :func:`compute_fisher`)."""

    model: Path
    corpus: Path
    out: Path
    subset_size: str | None = None  # count or fraction of the corpus
    subset_from: Path | None = None  # .npy / text of indices, or an adapt model directory
    seed: int = 0  # subset draw and mask draws
    mask_draws: int = 1
    params: str = "all"
    damping: float = 1e-3
    batch_tokens: int = 8192
    max_batch_size: int | None = None
    part_batches: int = 16
    device: str = "auto"
    dtype: str = "float32"
    on_nonfinite: str = "stop"
    save_masks: Path | None = None
    resume: bool = False
    overwrite: bool = False
    checkpoint_seconds: float = 300.0
    max_chunk_elements: int | None = None  # per-example gradient chunk; None: by device
    progress: bool = True
    progress_every_s: float | None = None  # plain progress lines every S s (None: bar on a TTY)
    fisher_mode: str = "exact"  # factored: also fit u v^T ~ 1/(F + lambda) per weight matrix

    def validate(self) -> None:
        if self.fisher_mode not in FISHER_MODES:
            raise ValueError(f"--fisher-mode {self.fisher_mode!r}: choose exact or factored")
        if (self.subset_size is None) == (self.subset_from is None):
            raise ValueError("give exactly one of --subset-size and --subset-from")
        if self.mask_draws < 1:
            raise ValueError(f"--mask-draws must be >= 1 (got {self.mask_draws})")
        if not self.damping > 0:
            raise ValueError(f"--damping must be > 0 (got {self.damping})")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"--on-nonfinite {self.on_nonfinite!r}: choose stop or skip")
        if self.batch_tokens < 1:
            raise ValueError(f"--batch-tokens must be >= 1 (got {self.batch_tokens})")
        if self.seed < 0:
            raise ValueError(f"--seed must be >= 0 (got {self.seed})")


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


@dataclass
class FisherData:
    """A loaded Fisher file: tensors (float32, CPU), lambdas and metadata."""

    tensors: dict[str, object]
    lambdas: dict[str, float]
    meta: dict
    checksum: str
    #: name -> (u, v) float32 with u v^T ~ 1/(F + lambda) (files of ``--fisher-mode factored``)
    factors: dict = field(default_factory=dict)


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
            idx = np.load(src)
        else:
            try:
                idx = np.loadtxt(src, dtype=np.int64, ndmin=1)
            except ValueError as exc:
                raise ValueError(
                    f"{src}: expected one integer corpus index per line ({exc})"
                ) from None
        idx = np.asarray(idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{src}: expected a 1-D array of integer corpus indices")
        idx = idx.astype(np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= n):
            bad = idx[(idx < 0) | (idx >= n)][:5].tolist()
            raise ValueError(
                f"{src}: indices {bad} lie outside corpus {corpus.path} of {n} examples"
            )
        if len(np.unique(idx)) != len(idx):
            raise ValueError(f"{src}: repeated corpus indices; a subset lists each example once")
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


def _indices_digest(idx: np.ndarray) -> str:
    return (
        "blake2b:"
        + hashlib.blake2b(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()
    )


def load_fisher(path: str | Path) -> FisherData:
    """Read a Fisher file written by :func:`compute_fisher`.

    Raises :class:`~bioprune.errors.InputError` naming ``path`` when it is not a
    readable safetensors file (garbage, truncated), not a bioprune Fisher file,
    or when its metadata or values are damaged (missing fields, a tensor without
    its damping, a non-float, negative or non-finite Fisher value).
    """
    import torch
    from safetensors import safe_open

    from bioprune.errors import InputError, reading

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Fisher file; compute one with `bioprune fisher`")
    tensors = {}
    with reading(path, "Fisher file"), safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata() or {}
        if raw.get("format") != FISHER_FORMAT:  # before reading any tensor data
            raise InputError(
                path,
                f"not a bioprune Fisher file (format {raw.get('format')!r}, expected "
                f"{FISHER_FORMAT!r}); compute one with `bioprune fisher`",
            )
        for name in fh.keys():
            tensors[name] = fh.get_tensor(name)
    with reading(path, "Fisher metadata"):
        meta = {k: (v if k in ("format",) else json.loads(v)) for k, v in raw.items()}
    lambdas = _fisher_lambdas(path, meta)
    factors = _split_factors(path, tensors, meta)
    if not tensors:
        raise InputError(path, "holds no Fisher tensors")
    missing = sorted(n for n in tensors if n not in lambdas)
    if missing:
        raise InputError(path, f"damaged metadata: no damping recorded for {missing[:5]}")
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise InputError(path, f"tensor {name} is {t.dtype}, not a floating-point Fisher")
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise InputError(
                path,
                f"tensor {name} holds negative or non-finite values: a diagonal Fisher is a "
                "mean of squares; recompute it with `bioprune fisher`",
            )
    return FisherData(
        tensors=tensors,
        lambdas=lambdas,
        meta=meta,
        checksum=artifacts.file_checksum(path),
        factors=factors,
    )


def _split_factors(path: Path, tensors: dict, meta: dict) -> dict:
    """Move the rank-one factors (``factor_u/NAME``, ``factor_v/NAME``) out of ``tensors``,
    checking them: both present, shaped like NAME's rows and columns, finite and > 0."""
    import torch

    from bioprune.errors import InputError
    from bioprune.influence.factored import FACTOR_PREFIX

    keys = [k for k in tensors if k.startswith(FACTOR_PREFIX)]
    if not keys:
        return {}
    if not isinstance(meta.get("factored"), dict):
        raise InputError(path, "damaged Fisher metadata: factors without the factored record")
    raw = {k: tensors.pop(k) for k in keys}
    factors = {}
    for key in keys:
        if not key.startswith(FACTOR_PREFIX + "u/"):
            continue
        name = key[len(FACTOR_PREFIX) + 2 :]
        u, v = raw[key], raw.get(f"{FACTOR_PREFIX}v/{name}")
        f = tensors.get(name)
        if v is None or f is None or f.ndim != 2:
            raise InputError(path, f"damaged factors of {name}: no matching v or Fisher matrix")
        if tuple(u.shape) != (f.shape[0],) or tuple(v.shape) != (f.shape[1],):
            raise InputError(path, f"damaged factors of {name}: shapes do not match the Fisher")
        for t in (u, v):
            if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
                raise InputError(path, f"factors of {name} hold non-positive or non-finite values")
        factors[name] = (u.float(), v.float())
    if len(factors) * 2 != len(keys):
        raise InputError(path, "damaged factors: a u without its v or a stray factor tensor")
    return factors


def _fisher_lambdas(path: Path, meta: dict) -> dict[str, float]:
    """The per-tensor damping of a Fisher file's metadata, after checking the fields that
    ``score`` reads (a file edited or written by another tool fails here, naming the field)."""
    import math

    from bioprune.errors import InputError

    def damaged(what: str) -> InputError:
        return InputError(path, f"damaged Fisher metadata: {what}")

    damping = meta.get("damping")
    lam = damping.get("lambda") if isinstance(damping, dict) else None
    if not isinstance(lam, dict):
        raise damaged("no per-tensor damping (damping.lambda)")
    lambdas = {}
    for name, v in lam.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise damaged(f"damping of {name} is {v!r}, not a finite number >= 0")
        lambdas[name] = float(v)
    for key in ("mask_seed", "mask_draws"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "mask_seed" else 1):
            raise damaged(f"{key} is {v!r}")
    params = meta.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("spec"), str):
        raise damaged("no parameter spec (params.spec)")
    if not isinstance(meta.get("model_checksum"), str):
        raise damaged("no model_checksum")
    return lambdas


def _parts_dir(out: Path) -> Path:
    return out.with_name(out.name + ".parts")


def _prepare_parts_dir(parts_dir: Path, run_key: dict, resume: bool, dist):
    """Create the work directory, or check that a resumed run matches the previous one.

    Returns the open lock file (rank 0; ``None`` elsewhere): the caller keeps it for the
    run's lifetime. A second run on the same output (two ``--resume`` started by
    mistake) is refused while the first holds it, instead of both merging and deleting
    the same parts.
    """
    key_path = parts_dir / "run.json"
    lock = None
    if dist.is_main:
        if parts_dir.exists():
            if not resume:
                raise FileExistsError(
                    f"{parts_dir} holds an unfinished run; pass --resume to continue it "
                    "or delete the directory to start over"
                )
            lock = _lock_parts_dir(parts_dir)
            if key_path.is_file():
                from bioprune.errors import reading

                with reading(key_path, "the run description of an unfinished run"):
                    previous = json.loads(key_path.read_text())
                diff = sorted(
                    k
                    for k in set(previous) | set(run_key)
                    if previous.get(k) != run_key.get(k)
                    # a run started before the thread count was recorded: unknown, not changed
                    and not (k == "cpu_threads" and k not in previous)
                )
                if diff:
                    values = "".join(
                        f"; {k} was {previous.get(k)}, now {run_key.get(k)}"
                        for k in diff
                        if k == "cpu_threads"
                    )
                    raise ValueError(
                        f"--resume: {parts_dir} was made by a different run (differs in {diff}"
                        f"{values}); use the same arguments"
                        + (" and thread count (OMP_NUM_THREADS)" if values else "")
                        + " or delete the directory"
                    )
        parts_dir.mkdir(parents=True, exist_ok=True)
        if lock is None:
            lock = _lock_parts_dir(parts_dir)
        artifacts.write_json(key_path, run_key)
    dist.barrier()
    return lock


def _lock_parts_dir(parts_dir: Path):
    """An exclusive, non-blocking ``flock`` on ``PARTS/.lock`` (released when the process ends)."""
    import fcntl

    path = parts_dir / ".lock"
    fh = open(path, "a+")
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise FileExistsError(
            f"{parts_dir} is being written by another running bioprune process (pid {holder}); "
            "wait for it to finish or stop it before resuming"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


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


def _discard_if_empty(parts_dir: Path | None) -> None:
    """After a failed run: remove a work directory that holds nothing to resume."""
    if parts_dir is None or not parts_dir.is_dir():
        return
    if all(p.name in {"run.json", ".lock"} for p in parts_dir.iterdir()):
        shutil.rmtree(parts_dir, ignore_errors=True)


def _maybe_die(parts_done: int) -> None:
    limit = os.environ.get(KILL_ENV)
    if limit is not None and parts_done >= int(limit):
        os.kill(os.getpid(), signal.SIGKILL)


def cpu_threads(device) -> int | None:
    """``torch.get_num_threads()`` when computing on CPU, else None (recorded, compared on resume).

    PyTorch's CPU kernels round differently with the thread count for some shapes
    (measured on torch 2.13: the flash-attention kernel of
    ``scaled_dot_product_attention`` and softmax's backward, both used by HF's ESM
    layers and the gathered last layer), so scores change by ~1e-7 relative and
    Fisher sums by as much between thread counts. Each file records the count it
    was made with, and ``--resume`` refuses another, so that a resumed run still
    ends with the file of an uninterrupted one.
    """
    import torch

    return int(torch.get_num_threads()) if device.type == "cpu" else None


def _start_run(cfg, console):
    """The common start of a fisher or score run (after its inputs are read).

    Resolves the device and autocast dtype (``None`` for float32), joins the
    process group under torchrun, and returns ``(out, device, autocast, dist,
    console, say)``; ``say`` prints on rank 0 only.
    """
    import torch

    from bioprune.influence.distributed import init_distributed
    from bioprune.influence.engine import resolve_device, resolve_dtype

    autocast = resolve_dtype(cfg.dtype)
    autocast = None if autocast == torch.float32 else autocast
    dist, device = init_distributed(resolve_device(cfg.device))
    if console is None:
        from rich.console import Console

        console = Console(stderr=True)
    say = console.print if dist.is_main else (lambda *a, **k: None)
    return Path(cfg.out), device, autocast, dist, console, say


def compute_fisher(cfg: FisherConfig, console=None) -> FisherResult:
    """Run eq. 9 over the subset and write ``cfg.out`` (one process or one torchrun rank)."""
    import torch
    from safetensors.torch import save_file

    from bioprune.data.corpus import Corpus
    from bioprune.influence.engine import (
        MLMGradientRunner,
        plan_parts,
    )
    from bioprune.influence.files import atomic_path, write_masks
    from bioprune.influence.hooks import PerExampleGradients
    from bioprune.influence.params import select_parameters
    from bioprune.influence.progress import RunProgress
    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm

    cfg.validate()
    artifacts.check_output_dir(
        cfg.out, cfg.overwrite, inputs=(cfg.corpus, cfg.model, cfg.subset_from)
    )
    corpus = Corpus(cfg.corpus)
    out, device, autocast, dist, console, say = _start_run(cfg, console)
    parts_dir = None
    try:
        model, alphabet = load_masked_lm(cfg.model, device=device)
        check_model_fits_corpus(model, alphabet, corpus, cfg.model)
        selection = select_parameters(model, cfg.params)
        subset = resolve_subset(corpus, cfg.subset_size, cfg.subset_from, cfg.seed)
        say(f"scored parameters: {selection.describe()}")
        for name, why in selection.excluded.items():
            say(f"  left out {name}: {why}")
        say(
            f"Fisher subset: {len(subset):,} of {len(corpus):,} examples, "
            f"{cfg.mask_draws} mask draw(s)"
        )
        model_sum = artifacts.model_checksum(cfg.model)
        parts = plan_parts(
            corpus,
            subset,
            batch_tokens=cfg.batch_tokens,
            max_batch_size=cfg.max_batch_size,
            part_batches=cfg.part_batches,
        )
        run_key = {
            "stage": "fisher",
            "model_checksum": model_sum,
            "corpus_checksum": corpus.checksum,
            "subset": _indices_digest(subset),
            "seed": cfg.seed,
            "mask_draws": cfg.mask_draws,
            "params": selection.names,
            "batch_tokens": cfg.batch_tokens,
            "max_batch_size": cfg.max_batch_size,
            "part_batches": cfg.part_batches,
            "dtype": cfg.dtype,
            "world_size": dist.world,
            "cpu_threads": cpu_threads(device),
        }
        parts_dir = _parts_dir(out)
        _lock = _prepare_parts_dir(parts_dir, run_key, cfg.resume, dist)
        ckpt_path = parts_dir / f"fisher-rank{dist.rank}.safetensors"

        names = selection.names
        totals = {
            n: torch.zeros(selection.shapes[n], dtype=torch.float64, device=device) for n in names
        }
        done_parts, examples, tokens, skipped = 0, 0, 0, []
        fired = torch.zeros(len(names), dtype=torch.float64, device=device)
        if cfg.resume and ckpt_path.is_file():
            state, info = _read_resume_part(ckpt_path, selection.shapes, names, parts_dir)
            for n in names:
                totals[n].copy_(state[n])
            fired.copy_(state["__fired__"])
            done_parts, examples, tokens = info["done_parts"], info["examples"], info["tokens"]
            skipped = list(info["skipped"])
            say(f"resuming: {done_parts} part(s) of rank {dist.rank} already summed")

        mine = [j for j in range(len(parts)) if dist.owns(j)]
        todo = mine[done_parts:]
        total_examples = sum(len(b) for j in todo for b in parts[j])

        def save_checkpoint() -> None:
            state = {n: t.detach().cpu().contiguous() for n, t in totals.items()}
            state["__fired__"] = fired.cpu()
            info = {
                "done_parts": done_parts,
                "examples": examples,
                "tokens": tokens,
                "skipped": skipped,
            }
            with atomic_path(ckpt_path) as tmp:
                save_file(state, str(tmp), metadata={"state": json.dumps(info)})

        compute_dtype = torch.float32 if autocast is None else autocast
        last_ckpt = time.perf_counter()
        processed_parts = 0
        with (
            PerExampleGradients(
                model,
                names,
                mode="fisher",
                max_chunk_elements=cfg.max_chunk_elements,
                compute_dtype=compute_dtype,
            ) as tracker,
            RunProgress(
                "fisher",
                total_examples,
                enabled=cfg.progress and dist.is_main,
                console=console,
                every_s=cfg.progress_every_s if dist.is_main else None,
            ) as bar,
        ):
            tracker.totals = totals
            runner = MLMGradientRunner(
                model,
                alphabet,
                corpus,
                tracker,
                seed=cfg.seed,
                draws=cfg.mask_draws,
                device=device,
                autocast_dtype=autocast,
            )
            for count, j in enumerate(todo):
                bar.note = f"part {j + 1} of {len(parts)} ({count} of {len(todo)} done)"
                for batch in parts[j]:
                    n_batch = len(batch)
                    res = runner.run_batch(batch)
                    while res.nonfinite.any():
                        bad = batch[res.nonfinite]
                        if cfg.on_nonfinite == "stop":
                            raise ValueError(_nonfinite_message(corpus, bad, "Fisher"))
                        # Skip: leave them out and redo the batch without them.
                        skipped.extend(int(i) for i in bad)
                        batch = batch[~res.nonfinite]
                        if not len(batch):
                            break
                        res = runner.run_batch(batch)
                    if len(batch):
                        tracker.commit()
                    examples += len(batch)
                    tokens += res.tokens if len(batch) else 0
                    bar.advance(n_batch, res.tokens)
                for i, n in enumerate(names):
                    if n in tracker.fired:
                        fired[i] = 1.0
                done_parts += 1
                processed_parts += 1
                if time.perf_counter() - last_ckpt >= cfg.checkpoint_seconds:
                    save_checkpoint()
                    last_ckpt = time.perf_counter()
                _maybe_die(processed_parts)

        # Sum over ranks (float64), then eq. 9.
        processed = dist.sum_int(bar.examples, device)
        for n in names:
            dist.all_reduce_sum_(totals[n])
        dist.all_reduce_sum_(fired)
        examples = dist.sum_int(examples, device)
        tokens = dist.sum_int(bar.tokens, device)  # this run's tokens, for the rate
        skipped = sorted(_gather_lists(dist, skipped))
        if examples == 0:
            raise ValueError("no example of the subset had finite gradients; nothing to average")
        denom = float(examples * cfg.mask_draws)
        fisher = {n: (totals[n] / denom).to(torch.float32).cpu() for n in names}
        excluded = dict(selection.excluded)
        kept = []
        for i, n in enumerate(names):
            if fired[i] == 0:
                excluded[n] = "not reached by the MLM loss"
            elif not bool(fisher[n].any()):
                excluded[n] = "zero Fisher everywhere"
            else:
                kept.append(n)
        if not kept:
            raise ValueError("every selected tensor has zero Fisher; nothing to score")
        fisher = {n: fisher[n].contiguous() for n in kept}
        lambdas = damping_lambdas(fisher, cfg.damping)
        factored_meta, factor_tensors = None, {}
        if cfg.fisher_mode == "factored" and dist.is_main:
            factored_meta, factor_tensors = _fit_factors(model, fisher, lambdas, kept)
            worst = max(
                (e["score_rel_error"] for e in factored_meta["tensors"].values()), default=0.0
            )
            say(
                f"factored: {len(factor_tensors) // 2} weight matrices fitted as u v^T "
                f"(worst score_rel_error {worst:.3g}; per tensor in the metadata)"
            )
        result = FisherResult(
            path=out,
            names=kept,
            numel=sum(int(f.numel()) for f in fisher.values()),
            examples=examples,
            skipped=skipped,
            excluded=excluded,
            seconds=0.0,
            tokens=tokens,
            lambdas=lambdas,
            processed=processed,
        )
        if dist.is_main:
            meta = _fisher_metadata(
                cfg,
                out,
                subset,
                examples,
                selection.spec,
                kept,
                excluded,
                lambdas,
                skipped,
                model_sum,
                corpus.checksum,
                result.numel,
            )
            meta["cpu_threads"] = json.dumps(run_key["cpu_threads"])
            if factored_meta is not None:
                meta["factored"] = json.dumps(factored_meta)
            with atomic_path(out) as tmp:
                save_file({**fisher, **factor_tensors}, str(tmp), metadata=meta)
            if cfg.save_masks is not None:
                write_masks(
                    cfg.save_masks,
                    corpus,
                    alphabet,
                    subset,
                    seed=cfg.seed,
                    draws=cfg.mask_draws,
                    meta={
                        "stage": "fisher",
                        "corpus_checksum": corpus.checksum,
                        **artifacts.provenance(),
                    },
                )
            shutil.rmtree(parts_dir, ignore_errors=True)
            for n, why in excluded.items():
                if n not in selection.excluded:
                    say(f"  left out {n}: {why}")
        result.seconds = bar.elapsed
        dist.barrier()
        return result
    except BaseException:
        if dist.is_main:
            _discard_if_empty(parts_dir)
        raise
    finally:
        dist.close()


def _fit_factors(model, fisher: dict, lambdas: dict, names: list[str]) -> tuple[dict, dict]:
    """Rank-one factors of ``1/(F + lambda)`` for every factorable weight matrix.

    Returns the metadata record (``rule``, ``note``, per-tensor fit errors, the
    tensors kept exact) and the tensors to store (``factor_u/NAME``, ``factor_v/NAME``).
    """
    from bioprune.influence.factored import (
        FACTOR_PREFIX,
        FACTORED_RULE,
        factorable_tensors,
        fit_rank_one,
    )

    chosen = factorable_tensors(model, names)
    tensors, errors = {}, {}
    for name in chosen:
        fit = fit_rank_one(fisher[name], lambdas[name])
        tensors[f"{FACTOR_PREFIX}u/{name}"] = fit.u.contiguous()
        tensors[f"{FACTOR_PREFIX}v/{name}"] = fit.v.contiguous()
        errors[name] = fit.errors()
    record = {
        "rule": FACTORED_RULE,
        "note": "scores of --fisher-mode factored are exact for these rank-one weights, "
        "not for the diagonal Fisher",
        "tensors": errors,
        "exact": [n for n in names if n not in errors],
    }
    return record, tensors


def _gather_lists(dist, values: list[int]) -> list[int]:
    if not dist.active:
        return list(values)
    import torch.distributed as tdist

    gathered: list = [None] * dist.world
    tdist.all_gather_object(gathered, list(values))
    return [v for part in gathered for v in part]


def _nonfinite_message(corpus, indices: np.ndarray, stage: str) -> str:
    ids = corpus.ids()[np.asarray(indices, dtype=np.int64)]
    shown = ", ".join(f"{int(i)} ({ids[k]!s})" for k, i in enumerate(indices[:10]))
    more = f" and {len(indices) - 10} more" if len(indices) > 10 else ""
    return (
        f"{stage}: non-finite loss or gradient for {len(indices)} example(s): {shown}{more}; "
        "check these sequences and the model, or pass --on-nonfinite skip to record them as NaN"
    )


def _fisher_metadata(
    cfg,
    out,
    subset,
    examples,
    spec,
    names,
    excluded,
    lambdas,
    skipped,
    model_sum,
    corpus_sum,
    numel,
) -> dict[str, str]:
    from bioprune.influence.files import atomic_path

    if len(subset) > INLINE_SUBSET_MAX:
        sidecar = out.with_name(out.stem + ".subset.npy")
        with atomic_path(sidecar) as tmp:
            with open(tmp, "wb") as fh:
                np.save(fh, subset)
        subset_meta: object = {"file": sidecar.name, "count": len(subset)}
    else:
        subset_meta = [int(i) for i in subset]
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    meta = {
        "subset": subset_meta,
        "subset_size": len(subset),
        "subset_checksum": _indices_digest(subset),
        "subset_seed": cfg.seed if cfg.subset_from is None else None,
        "subset_from": str(cfg.subset_from) if cfg.subset_from is not None else None,
        "examples": int(examples),
        "damping": {"rule": DAMPING_RULE, "damping": cfg.damping, "lambda": lambdas},
        "mask_seed": cfg.seed,
        "mask_draws": cfg.mask_draws,
        "params": {"spec": spec, "names": names, "numel": numel, "excluded": excluded},
        "nonfinite": {"policy": cfg.on_nonfinite, "skipped": skipped},
        "model_checksum": model_sum,
        "corpus_checksum": corpus_sum,
        "config": config,
        **artifacts.provenance(),
    }
    encoded = {k: json.dumps(v) for k, v in meta.items()}
    encoded["format"] = FISHER_FORMAT
    return encoded
