"""Self-influence of every corpus example (method.md section 4, eq. 11).

``I(z) = 1/K sum_k sum_{p in P} g_p(z,k)^2 / (F_p + lambda_p)``: positive,
larger = more self-influential ("harder"). ``P`` is the Fisher file's tensors
(or a subset of them, ``--params``); masks use the Fisher's seed unless given.

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
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from bioprune import artifacts

__all__ = ["SCORES_FORMAT", "ScoreConfig", "ScoreResult", "compute_scores"]

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


@dataclass
class ScoreConfig:
    """Arguments of ``bioprune score``."""

    model: Path
    corpus: Path
    fisher: Path
    out: Path
    mask_draws: int | None = None  # default: the Fisher's
    seed: int | None = None  # default: the Fisher's mask seed
    params: str | None = None  # default: every tensor of the Fisher file
    batch_tokens: int = 8192
    max_batch_size: int | None = None
    part_batches: int = 16
    device: str = "auto"
    dtype: str = "float32"
    on_nonfinite: str = "stop"
    save_masks: Path | None = None
    resume: bool = False
    overwrite: bool = False
    max_chunk_elements: int | None = None  # per-example gradient chunk; None: by device
    progress: bool = True
    progress_every_s: float | None = None  # plain progress lines every S s (None: bar on a TTY)
    fisher_mode: str = "exact"  # factored: u v^T weights per matrix, Gram-form norms

    def validate(self) -> None:
        if self.fisher_mode not in ("exact", "factored"):
            raise ValueError(f"--fisher-mode {self.fisher_mode!r}: choose exact or factored")
        if self.mask_draws is not None and self.mask_draws < 1:
            raise ValueError(f"--mask-draws must be >= 1 (got {self.mask_draws})")
        if self.seed is not None and self.seed < 0:
            raise ValueError(f"--seed must be >= 0 (got {self.seed})")
        if self.on_nonfinite not in ("stop", "skip"):
            raise ValueError(f"--on-nonfinite {self.on_nonfinite!r}: choose stop or skip")
        if self.batch_tokens < 1:
            raise ValueError(f"--batch-tokens must be >= 1 (got {self.batch_tokens})")


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


def compute_scores(cfg: ScoreConfig, console=None) -> ScoreResult:
    """Score every corpus example and write ``cfg.out`` (one process or one torchrun rank)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from bioprune.data.corpus import Corpus
    from bioprune.influence.engine import (
        MLMGradientRunner,
        plan_parts,
    )
    from bioprune.influence.factored import FactoredSelfInfluence
    from bioprune.influence.files import atomic_path, write_masks
    from bioprune.influence.fisher import (
        _discard_if_empty,
        _maybe_die,
        _nonfinite_message,
        _prepare_parts_dir,
        _start_run,
        cpu_threads,
        load_fisher,
    )
    from bioprune.influence.hooks import PerExampleGradients
    from bioprune.influence.params import select_parameters
    from bioprune.influence.progress import RunProgress
    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm

    cfg.validate()
    artifacts.check_output_dir(cfg.out, cfg.overwrite, inputs=(cfg.corpus, cfg.model, cfg.fisher))
    corpus = Corpus(cfg.corpus)
    fisher = load_fisher(cfg.fisher)
    out, device, autocast, dist, console, say = _start_run(cfg, console)
    parts_dir = None
    try:
        model, alphabet = load_masked_lm(cfg.model, device=device)
        check_model_fits_corpus(model, alphabet, corpus, cfg.model)
        model_sum = artifacts.model_checksum(cfg.model)
        if fisher.meta.get("model_checksum") != model_sum:
            raise ValueError(
                f"{cfg.fisher} was computed for another model (checksum "
                f"{fisher.meta.get('model_checksum')}, {cfg.model} has {model_sum}); "
                "compute the Fisher with the model you score with"
            )
        model_names = [n for n, _ in model.named_parameters()]
        unknown = sorted(set(fisher.tensors) - set(model_names))
        if unknown:
            raise ValueError(f"{cfg.fisher} holds tensors the model lacks: {unknown[:5]}")
        names = [n for n in model_names if n in fisher.tensors]
        if cfg.params is not None:
            chosen = select_parameters(model, cfg.params).names
            absent = [n for n in chosen if n not in fisher.tensors]
            if absent:
                raise ValueError(
                    f"--params {cfg.params!r} selects tensors the Fisher file {cfg.fisher} lacks: "
                    f"{absent[:5]}; compute the Fisher with those parameters"
                )
            names = [n for n in names if n in set(chosen)]
        for n in names:
            shape = tuple(model.get_parameter(n).shape)
            if tuple(fisher.tensors[n].shape) != shape:
                raise ValueError(
                    f"{cfg.fisher}: {n} has shape {tuple(fisher.tensors[n].shape)}, model {shape}"
                )
        numel = sum(int(fisher.tensors[n].numel()) for n in names)
        seed = int(fisher.meta["mask_seed"]) if cfg.seed is None else cfg.seed
        draws = int(fisher.meta["mask_draws"]) if cfg.mask_draws is None else cfg.mask_draws
        spec = cfg.params if cfg.params is not None else fisher.meta["params"]["spec"]
        say(
            f"scored parameters: {len(names)} tensors, {numel:,} parameters "
            f"({numel * 4 / 2**20:.1f} MiB as float32) [--params {spec}]"
        )
        say(f"scoring {len(corpus):,} examples, {draws} mask draw(s), mask seed {seed}")
        factors = {}
        if cfg.fisher_mode == "factored":
            if not fisher.factors:
                raise ValueError(
                    f"{cfg.fisher} holds no rank-one factors; compute it with "
                    "`bioprune fisher --fisher-mode factored` (or score with --fisher-mode exact)"
                )
            factors = {
                n: (u.to(device), v.to(device))
                for n, (u, v) in fisher.factors.items()
                if n in set(names)
            }
            say(
                f"factored mode: {len(factors)} weight matrices use u v^T (exact for those "
                f"factors, not for the diagonal Fisher); {len(names) - len(factors)} tensors exact"
            )
        # w = 1 / (F + lambda), in float64 then float32 for the matvec of eq. 11.
        weights = {
            n: (1.0 / (fisher.tensors[n].to(torch.float64) + fisher.lambdas[n]))
            .to(torch.float32)
            .to(device)
            for n in names
            if n not in factors
        }
        parts = plan_parts(
            corpus,
            np.arange(len(corpus), dtype=np.int64),
            batch_tokens=cfg.batch_tokens,
            max_batch_size=cfg.max_batch_size,
            part_batches=cfg.part_batches,
        )
        run_key = {
            "stage": "score",
            "model_checksum": model_sum,
            "fisher_checksum": fisher.checksum,
            "corpus_checksum": corpus.checksum,
            "seed": seed,
            "mask_draws": draws,
            "params": names,
            "batch_tokens": cfg.batch_tokens,
            "max_batch_size": cfg.max_batch_size,
            "part_batches": cfg.part_batches,
            "dtype": cfg.dtype,
            "cpu_threads": cpu_threads(device),
        }
        if cfg.fisher_mode != "exact":  # exact runs keep their key (resumable across versions)
            run_key["fisher_mode"] = cfg.fisher_mode
        parts_dir = out.with_name(out.name + ".parts")
        _lock = _prepare_parts_dir(parts_dir, run_key, cfg.resume, dist)

        def part_path(j: int) -> Path:
            return parts_dir / f"part-{j:06d}.parquet"

        todo = [j for j in range(len(parts)) if dist.owns(j) and not part_path(j).is_file()]
        if cfg.resume:
            done = sum(1 for j in range(len(parts)) if part_path(j).is_file())
            say(f"resuming: {done} of {len(parts)} part(s) already written")
        total_examples = sum(len(b) for j in todo for b in parts[j])
        part_schema = pa.schema(
            [
                ("index", pa.int64()),
                ("score", pa.float64()),
                ("loss", pa.float64()),
                ("nonfinite", pa.bool_()),
            ]
        )
        tokens = 0
        compute_dtype = torch.float32 if autocast is None else autocast
        if factors:
            hooks = FactoredSelfInfluence(
                model,
                names,
                weights=weights,
                factors=factors,
                max_chunk_elements=cfg.max_chunk_elements,
                compute_dtype=compute_dtype,
            )
        else:
            hooks = PerExampleGradients(
                model,
                names,
                mode="score",
                weights=weights,
                max_chunk_elements=cfg.max_chunk_elements,
                compute_dtype=compute_dtype,
            )
        with (
            hooks as tracker,
            RunProgress(
                "score",
                total_examples,
                enabled=cfg.progress and dist.is_main,
                console=console,
                every_s=cfg.progress_every_s if dist.is_main else None,
            ) as bar,
        ):
            runner = MLMGradientRunner(
                model,
                alphabet,
                corpus,
                tracker,
                seed=seed,
                draws=draws,
                device=device,
                autocast_dtype=autocast,
            )
            for count, j in enumerate(todo, start=1):
                bar.note = f"part {j + 1} of {len(parts)} ({count - 1} of {len(todo)} done)"
                cols: dict[str, list] = {"index": [], "score": [], "loss": [], "nonfinite": []}
                for batch in parts[j]:
                    res = runner.run_batch(batch)
                    if res.nonfinite.any():
                        bad = batch[res.nonfinite]
                        if cfg.on_nonfinite == "stop":
                            raise ValueError(_nonfinite_message(corpus, bad, "score"))
                        res.score[res.nonfinite] = np.nan
                    cols["index"].append(res.indices)
                    cols["score"].append(res.score)
                    cols["loss"].append(res.loss)
                    cols["nonfinite"].append(res.nonfinite)
                    tokens += res.tokens
                    bar.advance(len(batch), res.tokens)
                table = pa.table(
                    {k: np.concatenate(v) for k, v in cols.items()}, schema=part_schema
                )
                with atomic_path(part_path(j)) as tmp:
                    pq.write_table(table, tmp)
                _maybe_die(count)
        tokens = dist.sum_int(tokens, device)
        processed = dist.sum_int(bar.examples, device)
        dist.barrier()
        quantiles: dict[str, float] = {}
        n_nonfinite = 0
        if dist.is_main:
            score, loss, flags = _merge_parts(parts_dir, len(parts), len(corpus))
            n_nonfinite = int(flags.sum())
            finite = score[np.isfinite(score)]
            if len(finite):
                quantiles = {
                    f"q{int(q * 100):02d}": float(np.quantile(finite, q)) for q in QUANTILES
                }
            config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
            meta = {
                "format": SCORES_FORMAT,
                "score": FACTORED_SCORE_DEFINITION if factors else SCORE_DEFINITION,
                "model_checksum": model_sum,
                "fisher_checksum": fisher.checksum,
                "fisher_path": str(cfg.fisher),
                "corpus_checksum": corpus.checksum,
                "mask_seed": seed,
                "mask_draws": draws,
                "cpu_threads": run_key["cpu_threads"],
                "params": {"spec": spec, "names": names, "numel": numel},
                "nonfinite": {
                    "policy": cfg.on_nonfinite,
                    "count": n_nonfinite,
                    "indices": np.flatnonzero(flags).tolist()[:1000],
                },
                "config": config,
                **artifacts.provenance(),
            }
            if factors:
                fits = fisher.meta["factored"].get("tensors", {})
                meta["fisher_mode"] = {
                    "mode": "factored",
                    "note": "exact for the rank-one factored weights u v^T, not for the "
                    "diagonal Fisher (an approximation of eq. 11)",
                    "factored": sorted(factors),
                    "fit": {n: fits.get(n) for n in sorted(factors)},
                }
            _write_scores(out, corpus, score, loss, meta)
            if cfg.save_masks is not None:
                write_masks(
                    cfg.save_masks,
                    corpus,
                    alphabet,
                    np.arange(len(corpus)),
                    seed=seed,
                    draws=draws,
                    meta={
                        "stage": "score",
                        "corpus_checksum": corpus.checksum,
                        **artifacts.provenance(),
                    },
                )
            shutil.rmtree(parts_dir, ignore_errors=True)
        dist.barrier()
        return ScoreResult(
            path=out,
            examples=len(corpus),
            nonfinite=n_nonfinite,
            seconds=bar.elapsed,
            tokens=tokens,
            quantiles=quantiles,
            names=names,
            processed=processed,
        )
    except BaseException:
        if dist.is_main:
            _discard_if_empty(parts_dir)
        raise
    finally:
        dist.close()


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

    from bioprune.influence.files import atomic_path, parquet_metadata

    schema = pa.schema(
        [
            ("index", pa.int64()),
            ("id", pa.string()),
            ("length", pa.int64()),
            ("score", pa.float64()),
            ("loss", pa.float64()),
        ]
    ).with_metadata(parquet_metadata(meta))
    source = pq.ParquetFile(corpus.sequences_path)
    with atomic_path(out) as tmp:
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
