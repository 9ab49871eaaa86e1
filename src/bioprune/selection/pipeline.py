"""The ``select`` stage: score file (+ corpus) -> selection directory.

Output directory (written atomically)::

    ids.txt             one chosen id per line, in corpus-index order
    selection.parquet   index (int64), id, score (float64; NaN when unscored
                        or no score file), stratum (int32, CCI only, else
                        null), cluster (int64 representative index, cluster only)
    coreset.fasta       >id and sequence of each chosen example (needs the corpus;
                        --no-fasta skips)
    selection.json      method, parameters, seed, budget asked and met, input
                        checksums, strategy details, provenance
    bioprune_config.json  the command's options (when called from the CLI)
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.selection.base import Selection
from bioprune.selection.cci import position_keys
from bioprune.selection.registry import make_strategy, strategy_parameters

__all__ = ["excluded_text", "select_coreset"]


def _score_based(
    strategy, table, budget: int, side: dict[str, np.ndarray] | None = None
) -> tuple[Selection, int, np.ndarray]:
    """Run a score-based strategy on the finite scores.

    ``side`` holds the per-example arrays the strategy ``needs`` (corpus
    order); they are compressed with the scores.

    Returns the selection (corpus indices), how many NaN/+inf scores were
    excluded, and the chosen examples' scores. When scores are excluded the
    strategy runs on the compressed finite scores and its positions are mapped
    back through the (few) excluded positions with one ``searchsorted``, so no
    n-sized index array is built; the full array is dropped from ``table``
    meanwhile, so the peak memory does not grow by a copy. A strategy with
    coordinated sampling (``sampling="keys"``) gets the keys of the corpus
    positions it sees, so excluding a score does not reshuffle every pick.
    """
    scores = table.scores
    nan_count, inf_count = table.nan_count, table.inf_count
    finite = np.isfinite(scores)
    excluded = int(len(scores) - np.count_nonzero(finite))
    side = side or {}
    if not excluded:
        del finite
        sel = strategy.select(scores, budget, **side)
        return sel, 0, scores[sel.indices]
    gaps = np.flatnonzero(~finite)
    pooled = scores[finite]
    side = {k: v[finite] for k, v in side.items()}
    if getattr(strategy, "sampling", None) == "keys":
        side["keys"] = position_keys(strategy.seed, len(scores))[finite]
    del finite
    table.scores = scores = None
    try:
        sel = strategy.select(pooled, budget, **side)
    except ValueError as exc:
        raise ValueError(
            f"{exc} ({excluded_text(nan_count, inf_count)} excluded from {table.path})"
        ) from None
    chosen_scores = pooled[sel.indices]
    # Position p of the compressed array is corpus index p + (number of excluded
    # indices before it); the j-th excluded index lands before compressed
    # position gaps[j] - j, hence the searchsorted over those.
    sel.indices = sel.indices + np.searchsorted(gaps - np.arange(excluded), sel.indices, "right")
    return sel, excluded, chosen_scores


def _side_arrays(
    strategy, corpus, tmp: Path, cluster_cache: str | Path | None
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """The per-example arrays ``strategy.needs`` (corpus order), and the clustering facts."""
    side: dict[str, np.ndarray] = {}
    facts: dict[str, Any] = {}
    needs = getattr(strategy, "needs", ())
    if "lengths" in needs:
        side["lengths"] = corpus.lengths
    if "clusters" in needs:
        from bioprune.selection.cluster import strategy_clusters

        work = tmp / ".cluster-work"
        side["clusters"], facts = strategy_clusters(strategy, corpus, work, cluster_cache)
        shutil.rmtree(work, ignore_errors=True)
    return side, facts


def _mask_facts(table) -> tuple[int, int]:
    """The score file's mask seed and number of draws (needed to recount masked positions)."""
    from bioprune.errors import InputError

    try:
        seed, draws = int(table.metadata["mask_seed"]), int(table.metadata["mask_draws"])
    except (KeyError, TypeError, ValueError):
        raise InputError(
            table.path,
            "records no mask_seed/mask_draws, so the masked positions cannot be recounted for "
            "--reduction; score the corpus again with `bioprune score`",
        ) from None
    if seed < 0 or draws < 1:
        raise InputError(table.path, f"mask_seed {seed} / mask_draws {draws} are not valid")
    return seed, draws


def excluded_text(nan_count: int, inf_count: int) -> str:
    """``"2 NaN and 1 infinite score(s)"``: NaN (unscored) and inf are told apart."""
    parts = [
        f"{nan_count:,} NaN" if nan_count else "",
        f"{inf_count:,} infinite" if inf_count else "",
    ]
    return " and ".join(p for p in parts if p) + " score(s)"


def select_coreset(
    *,
    method: str,
    budget: str,
    out: str | Path,
    scores_path: str | Path | None = None,
    corpus_path: str | Path | None = None,
    params: dict[str, Any] | None = None,
    fasta: bool = True,
    overwrite: bool = False,
    config: dict[str, Any] | None = None,
    cluster_cache: str | Path | None = None,
    reduction: str = "mean",
) -> dict[str, Any]:
    """Select a coreset and write the selection directory ``out``; returns ``selection.json``.

    Parameters
    ----------
    method
        A name in :data:`bioprune.selection.STRATEGIES`.
    budget
        A count (``"1000"``) or a fraction of the n examples (``"0.1"``, ``"10%"``).
    scores_path
        Score file; required by ``topk``, ``bottomk`` and ``cci``.
    corpus_path
        Corpus directory; required by ``cluster`` and for ``coreset.fasta``.
        Without it the score file's ids are used unchecked.
    params
        Strategy options (``seed``, ``beta``, ``strata``, ``min_seq_id``, ...);
        the ones the strategy does not take are ignored.
    fasta
        Write ``coreset.fasta`` (needs the corpus).
    config
        The command's full configuration, recorded in ``selection.json``.
    reduction
        ``mean`` (the paper's scores), ``sum`` or ``per-masked``: the scores are
        rescaled before a score-based strategy sees them
        (:mod:`bioprune.selection.reduction`; needs the corpus for the lengths).
    cluster_cache
        Folder where ``cluster`` and ``cci-cluster`` keep the clusters of a corpus
        (:func:`bioprune.selection.cluster.corpus_clusters`); ``None``: not cached.
    """
    from bioprune.data.corpus import Corpus
    from bioprune.selection.budget import parse_budget
    from bioprune.selection.io import (
        check_ids_match_corpus,
        check_scores_name_corpus,
        read_scores,
        take_rows,
        write_coreset_fasta,
        write_ids,
    )

    out = artifacts.check_output_dir(out, overwrite, inputs=(scores_path, corpus_path))
    strategy = make_strategy(method, **(params or {}))
    if strategy.uses_scores and scores_path is None:
        raise ValueError(f"method {method!r} ranks by influence: pass --scores SCORES.parquet")
    from bioprune.selection.reduction import REDUCTIONS, rescale_scores

    if reduction not in REDUCTIONS:
        raise ValueError(f"--reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if reduction != "mean" and not strategy.uses_scores:
        raise ValueError(f"--reduction {reduction} rescales scores; method {method!r} uses none")
    if reduction != "mean" and corpus_path is None:
        raise ValueError(
            f"--reduction {reduction} needs the sequence lengths: pass --corpus CORPUS_DIR"
        )
    needs = getattr(strategy, "needs", ())
    if (method == "cluster" or needs) and corpus_path is None:
        what = "clusters the sequences" if method != "cci-length" else "needs the lengths"
        raise ValueError(f"method {method!r} {what}: pass --corpus CORPUS_DIR")
    if scores_path is None and corpus_path is None:
        raise ValueError("pass --scores or --corpus (random needs to know how many examples exist)")

    corpus = Corpus(corpus_path) if corpus_path is not None else None
    table = read_scores(scores_path) if scores_path is not None else None
    if table is not None and corpus is not None:
        check_scores_name_corpus(table, corpus)
    n = len(corpus) if corpus is not None else len(table)
    count = parse_budget(str(budget), n)
    reduction_facts = None
    if reduction != "mean":
        seed, draws = _mask_facts(table)
        table.scores = rescale_scores(table.scores, corpus.lengths, seed, draws, reduction)
        reduction_facts = {"mask_seed": seed, "mask_draws": draws}

    excluded = 0
    with artifacts.atomic_dir(out, overwrite=overwrite) as tmp, ThreadPoolExecutor(1) as pool:
        # Every id is checked against the corpus in a thread (Arrow decodes and
        # compares in C++ without the GIL) while the strategy runs here.
        id_check = (
            pool.submit(check_ids_match_corpus, table, corpus)
            if table is not None and corpus is not None
            else None
        )
        try:
            if method == "cluster":
                work = tmp / ".cluster-work"
                sel = strategy.select(corpus, count, work, cache_dir=cluster_cache)
                shutil.rmtree(work, ignore_errors=True)
            elif strategy.uses_scores:
                side, facts = _side_arrays(strategy, corpus, tmp, cluster_cache)
                sel, excluded, chosen_scores = _score_based(strategy, table, count, side)
                if facts:
                    sel.details["clustering"] = facts
            else:
                sel = strategy.select(n, count)
        except Exception:
            if id_check is not None:
                id_check.result()  # a score file of another corpus is the error to report
            raise
        if id_check is not None:
            id_check.result()

        import pyarrow as pa
        import pyarrow.parquet as pq

        idx = sel.indices
        take = pa.array(idx, type=pa.int64())
        if table is not None:
            ids = table.take_ids(idx)  # the decoded column when checked, else streamed
            if not strategy.uses_scores:
                chosen_scores = table.scores[idx]
        else:
            ids = take_rows(corpus.sequences_path, "id", idx)
            chosen_scores = np.full(len(idx), np.nan)
        columns = {
            "index": take,
            "id": ids.cast(pa.string()),
            "score": pa.array(chosen_scores, type=pa.float64()),
            "stratum": (
                pa.array(sel.stratum, type=pa.int32())
                if sel.stratum is not None
                else pa.nulls(len(idx), type=pa.int32())
            ),
        }
        if sel.cluster is not None:
            columns["cluster"] = pa.array(sel.cluster, type=pa.int64())
        wrote_fasta = bool(fasta and corpus is not None)
        # The FASTA (token gather + Arrow text kernels) is written in the thread
        # while the table and ids.txt are written here.
        fasta_job = (
            pool.submit(
                write_coreset_fasta, corpus, idx, columns["id"], tmp / artifacts.SELECTION_FASTA
            )
            if wrote_fasta
            else None
        )
        # Dictionary pages only for the few-valued columns (trying them on unique
        # ids and scores is wasted work); the sorted index delta-encodes.
        pq.write_table(
            pa.table(columns),
            tmp / artifacts.SELECTION_TABLE,
            compression="zstd",
            use_dictionary=[c for c in ("stratum", "cluster") if c in columns],
            column_encoding={"index": "DELTA_BINARY_PACKED"},
        )
        write_ids(tmp / artifacts.SELECTION_IDS, columns["id"])
        if fasta_job is not None:
            fasta_job.result()

        parameters = strategy_parameters(strategy)
        meta: dict[str, Any] = {
            "format": "bioprune-selection",
            "format_version": 1,
            "method": method,
            "parameters": parameters,
            "seed": parameters.get("seed"),
            "budget": {
                "requested": str(budget),
                "count": count,
                "selected": len(idx),
                "n": n,
                "fraction_of_n": (len(idx) / n) if n else 0.0,
            },
            "reduction": reduction if strategy.uses_scores else None,
            "reduction_facts": reduction_facts,
            "non_finite_scores_excluded": excluded if strategy.uses_scores else None,
            "nan_scores_excluded": table.nan_count if strategy.uses_scores else None,
            "inf_scores_excluded": table.inf_count if strategy.uses_scores else None,
            "inputs": {
                "scores": str(scores_path) if scores_path is not None else None,
                "scores_checksum": table.checksum if table is not None else None,
                "corpus": str(corpus_path) if corpus_path is not None else None,
                "corpus_checksum": corpus.checksum if corpus is not None else None,
                # the score file's own provenance, so the chain to model and Fisher is kept
                "scores_metadata": {
                    k: table.metadata[k]
                    for k in ("format", "corpus_checksum", "model_checksum", "fisher_checksum")
                    if table is not None and k in table.metadata
                },
            },
            "details": sel.details,
            "outputs": {
                "ids": artifacts.SELECTION_IDS,
                "table": artifacts.SELECTION_TABLE,
                "fasta": artifacts.SELECTION_FASTA if wrote_fasta else None,
            },
            "config": config or {},
            **artifacts.provenance(),
        }
        artifacts.write_json(tmp / artifacts.SELECTION_META, meta)
        if config:  # the command that made this directory, as every stage records it
            artifacts.write_json(tmp / artifacts.RUN_CONFIG, config)
    return meta
