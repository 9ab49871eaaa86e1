"""Self-influence of every corpus example (method.md section 4, eq. 11).

``I(z) = 1/K sum_k sum_{p in P} g_p(z,k)^2 / (F_p + lambda_p)``: positive,
larger = more self-influential ("harder"). ``P`` is the Fisher's tensors (or a
subset of them, ``params``); masks use the Fisher's seed unless given.

Two entry points share one computation: :func:`self_influence` works on a model
object, a corpus and a :class:`~bioprune.influence.fisher_file.Fisher` in memory
and returns :class:`Scores` (it writes nothing); :func:`compute_scores` is
``bioprune score`` (model directory, torchrun ranks, resume, output file).

Output (``SCORES.parquet``): one row per corpus example in index order,
columns ``index`` (int64), ``id``, ``length`` (residues), ``score`` (float64)
and ``loss`` (float64, the mean MLM loss over the draws); key-value metadata
``format``, ``model_checksum``, ``fisher_checksum``, ``corpus_checksum``,
``mask_seed``, ``mask_draws``, ``params``, ``nonfinite``, ``config``,
``bioprune_version``, ``created``.

Streaming and resume: the work is cut into parts of consecutive length-sorted
batches; each part is written atomically as
``SCORES.parquet.parts/part-NNNNNN.parquet`` (its rename is its done marker).
``--resume`` skips the parts that exist; at the end the main rank merges the
parts in index order, streams ids and lengths from the corpus, and deletes the
parts, so a resumed or multi-process run ends with the same file as one
uninterrupted process.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.errors import ConfigError
from bioprune.influence import runs
from bioprune.influence.config import ScoreConfig, pass_options
from bioprune.influence.fisher import in_memory_pass, load_fisher
from bioprune.progress import ProgressCallback

__all__ = [
    "SCORES_FORMAT",
    "ScoreConfig",
    "ScoreResult",
    "Scores",
    "compute_scores",
    "read_scores_meta",
    "self_influence",
]

log = logging.getLogger(__name__)

SCORES_FORMAT = "bioprune-self-influence-v1"
SCORE_DEFINITION = (
    "I(z) = 1/K sum_k sum_p g_p(z,k)^2 / (F_p + lambda_p) (eq. 11); larger = more influential"
)
FACTORED_SCORE_DEFINITION = (
    "I(z) = 1/K sum_k [sum_{p exact} g_p^2 / (F_p + lambda_p) + sum_{W factored} "
    "sum_ij u_i v_j G_ij^2] with u v^T a rank-one fit of 1/(F + lambda) per weight matrix: "
    "exact for the factored weights, an approximation of eq. 11 (not exact for the "
    "diagonal Fisher); larger = more influential"
)
QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)
_PART_COLUMNS = ("index", "score", "loss", "nonfinite")


@dataclass
class ScoreResult:
    path: Path
    examples: int
    nonfinite: int
    seconds: float
    tokens: int
    quantiles: dict[str, float]
    names: list[str]
    processed: int = 0  # examples scored by this run (all ranks; less than examples on resume)


@dataclass
class Scores:
    """Self-influence of every corpus example, in corpus order.

    ``ids`` (str), ``score`` and ``loss`` (float64; NaN where a loss or gradient
    was not finite under ``on_nonfinite="skip"``), ``length`` (residues, int64)
    and ``metadata`` (what ``bioprune score`` writes as the file's metadata).
    ``numpy.asarray(scores)`` is the score column.
    """

    ids: np.ndarray
    score: np.ndarray
    loss: np.ndarray
    length: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.score)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        return self.score if dtype is None else self.score.astype(dtype)

    def save(self, path: str | Path) -> Path:
        """Write the parquet file ``bioprune score`` writes (atomically); returns the path."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        schema = _scores_schema(self.metadata)
        table = pa.table(
            {
                "index": pa.array(np.arange(len(self), dtype=np.int64)),
                "id": pa.array([str(i) for i in self.ids], pa.string()),
                "length": pa.array(np.asarray(self.length, dtype=np.int64)),
                "score": pa.array(self.score, pa.float64()),
                "loss": pa.array(self.loss, pa.float64()),
            },
            schema=schema,
        )
        with artifacts.atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return path


# ----------------------------------------------------------------------- the computation
@dataclass
class _ScoreJob:
    """One scoring: the pass, the weights 1/(F + lambda) (and factors), the plan, the process."""

    grad: object  # engine.GradientPass
    fisher: object  # Fisher
    spec: str
    weights: dict
    factors: dict
    parts: list
    proc: object  # runtime.Process

    @property
    def numel(self) -> int:
        return sum(int(self.fisher.tensors[n].numel()) for n in self.grad.names)

    def tracker(self):
        from bioprune.influence.factored import FactoredSelfInfluence
        from bioprune.influence.hooks import SelfInfluenceReduction

        if not self.factors:
            return self.grad.tracker(SelfInfluenceReduction(self.weights))
        return FactoredSelfInfluence(
            self.grad.model,
            self.grad.names,
            weights=self.weights,
            factors=self.factors,
            max_chunk_elements=self.grad.max_chunk_elements,
            compute_dtype=self.grad.compute_dtype,
        )


def _scored_names(model, fisher, params: str | None, where: str) -> list[str]:
    """The Fisher's tensors to score (all, or those ``params`` selects), checked on the model."""
    from bioprune.influence.params import select_parameters

    model_names = [n for n, _ in model.named_parameters()]
    unknown = sorted(set(fisher.tensors) - set(model_names))
    if unknown:
        raise ValueError(f"{where} holds tensors the model lacks: {unknown[:5]}")
    names = [n for n in model_names if n in fisher.tensors]
    if params is not None:
        chosen = select_parameters(model, params).names
        absent = [n for n in chosen if n not in fisher.tensors]
        if absent:
            raise ValueError(
                f"--params {params!r} selects tensors the Fisher file {where} lacks: "
                f"{absent[:5]}; compute the Fisher with those parameters"
            )
        names = [n for n in names if n in set(chosen)]
    for n in names:
        shape = tuple(model.get_parameter(n).shape)
        if tuple(fisher.tensors[n].shape) != shape:
            raise ValueError(
                f"{where}: {n} has shape {tuple(fisher.tensors[n].shape)}, model {shape}"
            )
    return names


def _factors_of(fisher, names: list[str], fisher_mode: str, device, where: str) -> dict:
    if fisher_mode != "factored":
        return {}
    if not fisher.factors:
        raise ValueError(
            f"{where} holds no rank-one factors; compute it with "
            "`bioprune fisher --fisher-mode factored` (or score with --fisher-mode exact)"
        )
    chosen = set(names)
    factors = {
        n: (u.to(device), v.to(device)) for n, (u, v) in fisher.factors.items() if n in chosen
    }
    log.info(
        "factored mode: %d weight matrices use u v^T (exact for those factors, not for the "
        "diagonal Fisher); %d tensors exact",
        len(factors),
        len(names) - len(factors),
    )
    return factors


def _score_job(grad, fisher, *, params, fisher_mode, where, plan: dict, proc) -> _ScoreJob:
    """Check the Fisher against the model, build the weights and plan the parts."""
    import torch

    from bioprune.influence.engine import plan_parts

    grad.names = _scored_names(grad.model, fisher, params, where)
    spec = params if params is not None else fisher.meta["params"]["spec"]
    job = _ScoreJob(grad, fisher, spec, {}, {}, [], proc)
    if proc.is_main:
        log.info(
            "scored parameters: %d tensors, %s parameters (%.1f MiB as float32) [--params %s]",
            len(grad.names), f"{job.numel:,}", job.numel * 4 / 2**20, spec,
        )  # fmt: skip
        log.info(
            "scoring %s examples, %d mask draw(s), mask seed %d",
            f"{len(grad.corpus):,}", grad.draws, grad.seed,
        )  # fmt: skip
    job.factors = _factors_of(fisher, grad.names, fisher_mode, grad.device, where)
    # w = 1 / (F + lambda), in float64 then float32 for the matvec of eq. 11.
    job.weights = {
        n: (1.0 / (fisher.tensors[n].to(torch.float64) + fisher.lambdas[n]))
        .to(torch.float32)
        .to(grad.device)
        for n in grad.names
        if n not in job.factors
    }
    everything = np.arange(len(grad.corpus), dtype=np.int64)
    job.parts = plan_parts(grad.corpus, everything, **plan)
    return job


def _score_part(runner, batches: list, job: _ScoreJob, report) -> dict[str, np.ndarray]:
    """Scores, losses and non-finite flags of one part's batches."""
    cols: dict[str, list] = {k: [] for k in _PART_COLUMNS}
    for batch in batches:
        res = runner.run_batch(batch)
        if res.nonfinite.any():
            bad = batch[res.nonfinite]
            if job.grad.on_nonfinite == "stop":
                raise ValueError(runs.nonfinite_message(job.grad.corpus, bad, "score"))
            res.score[res.nonfinite] = np.nan
        values = (res.indices, res.score, res.loss, res.nonfinite)
        for key, value in zip(_PART_COLUMNS, values, strict=True):
            cols[key].append(value)
        report.advance(len(batch), res.tokens)
    return {k: np.concatenate(v) for k, v in cols.items()}


def _score_parts(job: _ScoreJob, todo: list[int], report, sink: Callable) -> None:
    """Score the parts ``todo``; ``sink(j, columns, count)`` takes each part's results."""
    with job.tracker() as tracker:
        runner = job.grad.runner(tracker)
        for count, j in enumerate(todo, start=1):
            report.note = f"part {j + 1} of {len(job.parts)} ({count - 1} of {len(todo)} done)"
            sink(j, _score_part(runner, job.parts[j], job, report), count)


def _scores_meta(job: _ScoreJob, flags: np.ndarray, on_nonfinite: str) -> dict:
    from bioprune.runtime import cpu_threads

    g = job.grad
    meta = {
        "format": SCORES_FORMAT,
        "score": FACTORED_SCORE_DEFINITION if job.factors else SCORE_DEFINITION,
        "model_checksum": job.fisher.meta.get("model_checksum"),
        "fisher_checksum": job.fisher.checksum,
        "fisher_path": None,
        "corpus_checksum": g.corpus.checksum,
        "mask_seed": g.seed,
        "mask_draws": g.draws,
        "cpu_threads": cpu_threads(g.device),
        "params": {"spec": job.spec, "names": g.names, "numel": job.numel},
        "nonfinite": {
            "policy": on_nonfinite,
            "count": int(flags.sum()),
            "indices": np.flatnonzero(flags).tolist()[:1000],
        },
        **artifacts.provenance(),
    }
    if job.factors:
        fits = job.fisher.meta["factored"].get("tensors", {})
        meta["fisher_mode"] = {
            "mode": "factored",
            "note": "exact for the rank-one factored weights u v^T, not for the "
            "diagonal Fisher (an approximation of eq. 11)",
            "factored": sorted(job.factors),
            "fit": {n: fits.get(n) for n in sorted(job.factors)},
        }
    return meta


# ------------------------------------------------------------------------- in memory
def self_influence(
    model,
    corpus,
    fisher,
    *,
    seed: int | None = None,
    mask_draws: int | None = None,
    params: str | None = None,
    reduction: str = "mean",
    progress: ProgressCallback | None = None,
    **options,
) -> Scores:
    """Self-influence (eq. 11) of every example of ``corpus`` under ``model``, in memory.

    ``fisher``: a :class:`~bioprune.influence.fisher_file.Fisher` (from
    :func:`~bioprune.influence.fisher.diagonal_fisher` or ``load_fisher``).
    ``seed`` and ``mask_draws`` default to the Fisher's, so the masks match.
    ``reduction``: the loss the gradients are of, ``"mean"`` over an example's masked
    positions (eq. 11), ``"sum"`` (scores x n_masked^2) or ``"per-masked"`` (x n_masked),
    as ``bioprune select --reduction`` rescales them. Writes nothing;
    :meth:`Scores.save` writes the file ``bioprune score`` writes, and with the same
    arguments the scores are the same. ``options``: ``batch_tokens``, ``max_batch_size``,
    ``on_nonfinite``, ``fisher_mode``, ``dtype``, as the CLI's options of those names
    (defaults: ``PassConfig``'s); any other keyword is a
    :class:`~bioprune.errors.ConfigError`.
    """
    opts = pass_options(options)
    opts.check_pass(mask_draws, seed)
    from bioprune.influence.engine import LOSS_REDUCTIONS

    if reduction not in LOSS_REDUCTIONS:
        raise ConfigError("reduction", f"{reduction!r}: choose {', '.join(LOSS_REDUCTIONS)}")
    seed = int(fisher.meta["mask_seed"]) if seed is None else seed
    draws = int(fisher.meta["mask_draws"]) if mask_draws is None else mask_draws
    with in_memory_pass(
        model, corpus, seed=seed, draws=draws, dtype=opts.dtype, on_nonfinite=opts.on_nonfinite
    ) as (grad, proc):
        grad.loss_reduction = reduction
        plan = {
            "batch_tokens": opts.batch_tokens,
            "max_batch_size": opts.max_batch_size,
            "part_batches": 1,
        }
        job = _score_job(
            grad, fisher, params=params, fisher_mode=opts.fisher_mode, where="the Fisher",
            plan=plan, proc=proc,
        )  # fmt: skip
        cols = {k: [] for k in _PART_COLUMNS}
        report = runs.StageProgress("score", len(corpus), progress)

        def collect(j: int, part: dict, count: int) -> None:
            for k, v in part.items():
                cols[k].append(v)

        _score_parts(job, list(range(len(job.parts))), report, collect)
    score, loss, flags = _in_order(cols, len(corpus))
    meta = _scores_meta(job, flags, opts.on_nonfinite)
    meta["config"] = {"function": "self_influence", "reduction": reduction, "params": params}
    meta["config"].update(
        batch_tokens=opts.batch_tokens, max_batch_size=opts.max_batch_size, dtype=opts.dtype
    )
    lengths = np.asarray(corpus.lengths, dtype=np.int64)
    return Scores(
        ids=np.asarray(corpus.ids()), score=score, loss=loss, length=lengths, metadata=meta
    )


def _in_order(cols: dict, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    idx = np.concatenate(cols["index"]) if cols["index"] else np.zeros(0, np.int64)
    score, loss = np.full(n, np.nan), np.full(n, np.nan)
    flags = np.zeros(n, dtype=bool)
    if len(idx):
        score[idx] = np.concatenate(cols["score"])
        loss[idx] = np.concatenate(cols["loss"])
        flags[idx] = np.concatenate(cols["nonfinite"])
    return score, loss, flags


# --------------------------------------------------------------------------- on disk
def compute_scores(cfg: ScoreConfig, progress: ProgressCallback | None = None) -> ScoreResult:
    """Score every corpus example and write ``cfg.out`` (one process or one torchrun rank).

    Messages go to the ``bioprune.influence`` logger (rank 0), progress to ``progress``.
    """
    inputs = (cfg.corpus, cfg.model, cfg.fisher)
    with runs.resumable_run(cfg, inputs, _file_score_job, _run_key) as run:
        job, proc = run.job, run.proc
        todo = _todo(cfg, job, run.parts_dir)
        total = sum(len(b) for j in todo for b in job.parts[j])
        report = runs.StageProgress("score", total, progress if proc.is_main else None)
        _score_parts(job, todo, report, _part_writer(run.parts_dir))
        tokens, processed = proc.sum_int(report.tokens), proc.sum_int(report.examples)
        proc.barrier()
        quantiles, n_nonfinite = {}, 0
        if proc.is_main:
            quantiles, n_nonfinite = _write(cfg, job, run.parts_dir)
    return ScoreResult(
        path=Path(cfg.out), examples=len(job.grad.corpus), nonfinite=n_nonfinite,
        seconds=report.elapsed, tokens=tokens, quantiles=quantiles, names=job.grad.names,
        processed=processed,
    )  # fmt: skip


def _file_score_job(cfg: ScoreConfig, proc) -> tuple[_ScoreJob, str]:
    """Read the inputs of a file-based run, check the Fisher belongs to the model, plan."""
    from bioprune.data.corpus import Corpus
    from bioprune.influence.engine import GradientPass
    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm
    from bioprune.runtime import autocast_dtype

    corpus = Corpus(cfg.corpus)
    fisher = load_fisher(cfg.fisher)
    model, alphabet = load_masked_lm(cfg.model, device=proc.device)
    check_model_fits_corpus(model, alphabet, corpus, cfg.model)
    model_sum = artifacts.model_checksum(cfg.model)
    if not _same_model(fisher.meta.get("model_checksum"), model_sum, model):
        raise ValueError(
            f"{cfg.fisher} was computed for another model (checksum "
            f"{fisher.meta.get('model_checksum')}, {cfg.model} has {model_sum}); "
            "compute the Fisher with the model you score with"
        )
    grad = GradientPass(
        model, alphabet, corpus, [],
        seed=int(fisher.meta["mask_seed"]) if cfg.seed is None else cfg.seed,
        draws=int(fisher.meta["mask_draws"]) if cfg.mask_draws is None else cfg.mask_draws,
        device=proc.device, autocast=autocast_dtype(cfg.dtype, proc.device),
        max_chunk_elements=cfg.max_chunk_elements, on_nonfinite=cfg.on_nonfinite,
    )  # fmt: skip
    plan = {
        "batch_tokens": cfg.batch_tokens,
        "max_batch_size": cfg.max_batch_size,
        "part_batches": cfg.part_batches,
    }
    job = _score_job(
        grad, fisher, params=cfg.params, fisher_mode=cfg.fisher_mode, where=str(cfg.fisher),
        plan=plan, proc=proc,
    )  # fmt: skip
    return job, model_sum


def _same_model(recorded, model_sum: str, model) -> bool:
    """Whether a Fisher's recorded model is this one: the directory's checksum, or for a
    Fisher made in memory (``diagonal_fisher``) the checksum of the weights themselves."""
    from bioprune.influence.fisher import weights_checksum

    if recorded == model_sum:
        return True
    return (
        isinstance(recorded, str)
        and recorded.startswith("weights:")
        and (recorded == weights_checksum(model))
    )


def _run_key(cfg: ScoreConfig, job: _ScoreJob, model_sum: str) -> dict:
    from bioprune.runtime import cpu_threads

    key = {
        "stage": "score",
        "model_checksum": model_sum,
        "fisher_checksum": job.fisher.checksum,
        "corpus_checksum": job.grad.corpus.checksum,
        "seed": job.grad.seed,
        "mask_draws": job.grad.draws,
        "params": job.grad.names,
        "batch_tokens": cfg.batch_tokens,
        "max_batch_size": cfg.max_batch_size,
        "part_batches": cfg.part_batches,
        "dtype": cfg.dtype,
        "cpu_threads": cpu_threads(job.grad.device),
    }
    if cfg.fisher_mode != "exact":  # exact runs keep their key (resumable across versions)
        key["fisher_mode"] = cfg.fisher_mode
    return key


def _part_path(parts_dir: Path, j: int) -> Path:
    return parts_dir / f"part-{j:06d}.parquet"


def _todo(cfg: ScoreConfig, job: _ScoreJob, parts_dir: Path) -> list[int]:
    """This rank's parts that are not written yet."""
    n = len(job.parts)
    todo = [j for j in range(n) if job.proc.owns(j) and not _part_path(parts_dir, j).is_file()]
    if cfg.resume and job.proc.is_main:
        done = sum(1 for j in range(n) if _part_path(parts_dir, j).is_file())
        log.info("resuming: %d of %d part(s) already written", done, n)
    return todo


def _part_writer(parts_dir: Path) -> Callable:
    """A sink for :func:`_score_parts` that writes each part atomically (its done marker)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("index", pa.int64()),
            ("score", pa.float64()),
            ("loss", pa.float64()),
            ("nonfinite", pa.bool_()),
        ]
    )

    def write(j: int, cols: dict, count: int) -> None:
        with artifacts.atomic_path(_part_path(parts_dir, j)) as tmp:
            pq.write_table(pa.table(cols, schema=schema), tmp)
        runs.maybe_die(count)

    return write


def _write(cfg: ScoreConfig, job: _ScoreJob, parts_dir: Path) -> tuple[dict, int]:
    """Rank 0: merge the parts into ``cfg.out`` (and the masks when asked)."""
    from bioprune.influence.files import write_masks

    corpus = job.grad.corpus
    score, loss, flags = _merge_parts(parts_dir, len(job.parts), len(corpus))
    finite = score[np.isfinite(score)]
    quantiles = {}
    if len(finite):
        quantiles = {f"q{int(q * 100):02d}": float(np.quantile(finite, q)) for q in QUANTILES}
    meta = _scores_meta(job, flags, cfg.on_nonfinite)
    meta.update(fisher_path=str(cfg.fisher), config=runs.config_record(cfg))
    _write_scores(cfg.out, corpus, score, loss, meta)
    if cfg.save_masks is not None:
        g = job.grad
        write_masks(
            cfg.save_masks, corpus, g.alphabet, np.arange(len(corpus)), seed=g.seed,
            draws=g.draws,
            meta={"stage": "score", "corpus_checksum": corpus.checksum, **artifacts.provenance()},
        )  # fmt: skip
    return quantiles, int(flags.sum())


def _merge_parts(
    parts_dir: Path, n_parts: int, n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read every part; check that each example appears exactly once."""
    import pyarrow.parquet as pq

    score = np.full(n, np.nan)
    loss = np.full(n, np.nan)
    flags = np.zeros(n, dtype=bool)
    seen = np.zeros(n, dtype=np.int64)
    for j in range(n_parts):
        path = parts_dir / f"part-{j:06d}.parquet"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing: a rank did not finish; rerun with --resume"
            )
        t = pq.read_table(path)
        idx = t.column("index").to_numpy()
        score[idx] = t.column("score").to_numpy()
        loss[idx] = t.column("loss").to_numpy()
        flags[idx] = t.column("nonfinite").to_numpy()
        seen[idx] += 1
    if not (seen == 1).all():
        raise RuntimeError(
            f"{parts_dir}: {int((seen == 0).sum())} examples unscored and "
            f"{int((seen > 1).sum())} scored twice; delete the directory and rerun"
        )
    return score, loss, flags


def _write_scores(out: Path, corpus, score: np.ndarray, loss: np.ndarray, meta: dict) -> None:
    """Stream ids and lengths from the corpus beside the scores, in index order."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = _scores_schema(meta)
    source = pq.ParquetFile(corpus.sequences_path)
    with artifacts.atomic_path(out) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for rb in source.iter_batches(batch_size=65_536, columns=["index", "id", "length"]):
                idx = rb.column(0).to_numpy()
                writer.write_table(
                    pa.table(
                        {
                            "index": pa.array(idx, pa.int64()),
                            "id": rb.column(1).cast(pa.string()),
                            "length": rb.column(2).cast(pa.int64()),
                            "score": pa.array(score[idx], pa.float64()),
                            "loss": pa.array(loss[idx], pa.float64()),
                        },
                        schema=schema,
                    )
                )


def read_scores_meta(path: str | Path) -> dict:
    """The key-value metadata of a scores file, JSON values decoded."""
    import pyarrow.parquet as pq

    raw = pq.read_schema(path).metadata or {}
    out = {}
    for k, v in raw.items():
        key, text = k.decode(), v.decode()
        try:
            out[key] = json.loads(text)
        except json.JSONDecodeError:
            out[key] = text
    return out


def _scores_schema(meta: dict):
    """The schema of a scores file, ``meta`` as its key-value metadata."""
    import pyarrow as pa

    from bioprune.influence.files import parquet_metadata

    columns = [
        ("index", pa.int64()),
        ("id", pa.string()),
        ("length", pa.int64()),
        ("score", pa.float64()),
        ("loss", pa.float64()),
    ]
    return pa.schema(columns).with_metadata(parquet_metadata(meta))
