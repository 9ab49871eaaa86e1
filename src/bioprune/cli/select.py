"""``bioprune select``: choose a coreset from influence scores (method.md section 5)."""

from __future__ import annotations

import time
from contextlib import nullcontext
from pathlib import Path
from typing import Optional

import typer

from bioprune.cli.common import console
from bioprune.progress import format_duration

METHODS = ("random", "topk", "bottomk", "cci", "cluster", "cci-length", "cci-cluster")
STRATIFY = ("score", "length")
SAMPLINGS = ("keys", "stream")


def select(
    method: str = typer.Option(
        ...,
        "--method",
        help="random | topk (largest influence) | bottomk (smallest) | cci "
        "(coverage-centric, Algorithm 1) | cluster (one per sequence-identity cluster) | "
        "cci-length (CCI strata over score within length bins; = cci --stratify length) | "
        "cci-cluster (CCI with at most --max-per-cluster picks per sequence cluster).",
    ),
    budget: str = typer.Option(
        ...,
        "--budget",
        help="Examples to keep: a count (1000) or a fraction of the corpus (0.1 or 10%). "
        "Random 10x is --method random with 10 times the budget.",
    ),
    out: Path = typer.Option(..., "--out", help="Selection directory to write."),
    scores: Optional[Path] = typer.Option(
        None, "--scores", help="Score file from `bioprune score` (needed by topk, bottomk, cci)."
    ),
    corpus: Optional[Path] = typer.Option(
        None,
        "--corpus",
        help="Corpus directory; checks the scores belong to it and writes coreset.fasta "
        "(needed by cluster). Without it the score file's ids are used as they are.",
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of random, cci and cluster sampling."),
    sampling: str = typer.Option(
        "keys",
        "--sampling",
        help="cci, cci-length, cci-cluster: keys (coordinated: each stratum takes its members "
        "with the smallest per-example random keys, so a small change of the scores changes "
        "few picks) or stream (one random draw per stratum in turn; selections made before "
        "bioprune had --sampling).",
    ),
    beta: float = typer.Option(
        0.05, "--beta", help="cci: fraction of the hardest (largest-influence) examples dropped."
    ),
    strata: Optional[int] = typer.Option(
        None,
        "--strata",
        help="cci, cci-cluster: equal-width score bins [50]; cci-length: score bins inside "
        "each length bin [10].",
    ),
    reduction: str = typer.Option(
        "mean",
        "--reduction",
        help="Scores as selected: mean (the paper's: gradient of the mean masked loss), sum "
        "(of the summed masked loss: score x n_masked^2) or per-masked (score x n_masked); "
        "n_masked is recounted from the score file's mask seed and the lengths (needs --corpus).",
    ),
    stratify: str = typer.Option(
        "score",
        "--stratify",
        help="cci: score (Algorithm 1) or length (strata over score within log-length bins: "
        "the method becomes cci-length).",
    ),
    length_bins: Optional[int] = typer.Option(
        None, "--length-bins", help="cci-length: number of length bins [5]."
    ),
    length_binning: Optional[str] = typer.Option(
        None,
        "--length-binning",
        help="cci-length: quantile (equal-count length bins: the budget follows the length "
        "distribution) [default] or log (equal-width bins of log length: rare lengths get an "
        "equal share).",
    ),
    max_per_cluster: Optional[int] = typer.Option(
        None, "--max-per-cluster", help="cci-cluster: at most this many picks per cluster [1]."
    ),
    min_seq_id: Optional[float] = typer.Option(
        None,
        "--min-seq-id",
        help="cluster [0.3], cci-cluster [0.9]: minimum sequence identity (0..1).",
    ),
    coverage: float = typer.Option(
        0.8, "--coverage", help="cluster: minimum alignment coverage of both sequences (0..1)."
    ),
    cluster_tool: str = typer.Option(
        "mmseqs", "--cluster-tool", help="cluster: mmseqs (MMseqs2) or cd-hit."
    ),
    mmseqs_command: str = typer.Option(
        "easy-linclust",
        "--mmseqs-command",
        help="cluster: easy-linclust (linear time) or easy-cluster (more sensitive).",
    ),
    threads: int = typer.Option(1, "--threads", help="cluster: threads of the clustering tool."),
    cluster_cache: Optional[Path] = typer.Option(
        None,
        "--cluster-cache",
        envvar="BIOPRUNE_CLUSTER_CACHE",
        help="cluster, cci-cluster: folder that keeps each corpus's clusters (keyed by its "
        "checksum and the clustering options), so they are computed once.",
    ),
    fasta: bool = typer.Option(
        True, "--fasta/--no-fasta", help="Write coreset.fasta (needs --corpus)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Select a coreset: OUT/ids.txt, selection.parquet, coreset.fasta, selection.json."""
    if method not in METHODS:
        raise ValueError(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    if sampling not in SAMPLINGS:
        raise ValueError(f"--sampling must be one of {', '.join(SAMPLINGS)}, got {sampling!r}")
    if stratify not in STRATIFY:
        raise ValueError(f"--stratify must be one of {', '.join(STRATIFY)}, got {stratify!r}")
    if stratify == "length":
        if method not in ("cci", "cci-length"):
            raise ValueError(f"--stratify length applies to --method cci, not {method!r}")
        method = "cci-length"
    from bioprune.selection.pipeline import select_coreset

    config = {
        "command": "select",
        "method": method,
        "budget": budget,
        "out": str(out),
        "scores": str(scores) if scores else None,
        "corpus": str(corpus) if corpus else None,
        "seed": seed,
        "sampling": sampling,
        "beta": beta,
        "strata": strata,
        "stratify": stratify,
        "reduction": reduction,
        "length_bins": length_bins,
        "length_binning": length_binning,
        "max_per_cluster": max_per_cluster,
        "min_seq_id": min_seq_id,
        "coverage": coverage,
        "cluster_tool": cluster_tool,
        "mmseqs_command": mmseqs_command,
        "threads": threads,
        "cluster_cache": str(cluster_cache) if cluster_cache else None,
        "fasta": fasta,
    }
    params = {
        "seed": seed,
        "sampling": sampling,
        "beta": beta,
        "strata": strata,
        "min_seq_id": min_seq_id,
        "coverage": coverage,
        "tool": cluster_tool,
        "mmseqs_command": mmseqs_command,
        "threads": threads,
        "length_bins": length_bins,
        "length_binning": length_binning,
        "max_per_cluster": max_per_cluster,
    }
    # Options left unset take the strategy's own default (cci's strata differ from cci-length's).
    params = {k: v for k, v in params.items() if v is not None}
    # A spinner draws nothing in a log file: there, say what runs and, after, how long.
    if console.is_terminal:
        waiting = console.status(f"selecting a coreset ({method})")
    else:
        console.print(f"select: selecting a coreset ({method}) ...", highlight=False)
        waiting = nullcontext()
    start = time.perf_counter()
    with waiting:
        meta = select_coreset(
            method=method,
            budget=budget,
            out=out,
            scores_path=scores,
            corpus_path=corpus,
            params=params,
            fasta=fasta,
            overwrite=overwrite,
            config=config,
            cluster_cache=cluster_cache,
            reduction=reduction,
        )
    if not console.is_terminal:
        console.print(
            f"select: done in {format_duration(time.perf_counter() - start)}", highlight=False
        )
    _report(meta, method, out, corpus)


def _report(meta: dict, method: str, out: Path, corpus: Path | None) -> None:
    b = meta["budget"]
    line = f"wrote [bold]{out}[/]: {method}, {b['selected']:,} of {b['n']:,} examples"
    if meta.get("non_finite_scores_excluded"):
        from bioprune.selection.pipeline import excluded_text

        nan, inf = meta.get("nan_scores_excluded") or 0, meta.get("inf_scores_excluded") or 0
        line += f"; {excluded_text(nan, inf)} excluded"
    d = meta["details"]
    if method == "cci":
        used = sum(1 for s in d["strata_table"] if s["picks"])
        line += f"; dropped the {d['dropped_hardest']:,} hardest, picks from {used} strata"
    if d.get("sampling") == "stream":
        line += "; sampling stream"
    if method == "cluster":
        line += f"; {d['clusters']:,} clusters ({d['tool_version']})"
    if method == "cci-length":
        used = sum(1 for c in d["cells"] if c["picks"])
        line += (
            f"; dropped the {d['dropped_hardest']:,} hardest of their length bins, "
            f"picks from {used} of {len(d['cells'])} non-empty cells"
        )
    if method == "cci-cluster":
        line += (
            f"; dropped the {d['dropped_hardest']:,} hardest, {d['thinned_out']:,} beyond "
            f"{d['max_per_cluster']} per cluster ({d['clusters']:,} clusters, "
            f"cache {d.get('clustering', {}).get('cache', 'off')})"
        )
    if meta.get("reduction") not in (None, "mean"):
        line += f"; scores rescaled: --reduction {meta['reduction']}"
    if corpus is None:
        line += "; no --corpus: ids unchecked, no coreset.fasta"
    console.print(line, highlight=False)


def register(app: typer.Typer) -> None:
    app.command("select")(select)
