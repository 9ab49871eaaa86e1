"""``bioprune select``: choose a coreset from influence scores (method.md section 5)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import typer

from bioprune.cli.common import console, flag_names
from bioprune.cli.options import option, with_options
from bioprune.progress import format_duration

METHODS = ("random", "topk", "bottomk", "cci", "cluster", "cci-length", "cci-cluster")
STRATIFY = ("score", "length")
SAMPLINGS = ("keys", "stream")


@dataclass(frozen=True)
class SelectOptions:
    """The options of ``bioprune select`` (unset strategy options: the strategy's default)."""

    method: str = option(
        help="random | topk (largest influence) | bottomk (smallest) | cci "
        "(coverage-centric, Algorithm 1) | cluster (one per sequence-identity cluster) | "
        "cci-length (CCI strata over score within length bins; = cci --stratify length) | "
        "cci-cluster (CCI with at most --max-per-cluster picks per sequence cluster).",
        choices=METHODS,
    )
    budget: str = option(
        help="Examples to keep: a count (1000) or a fraction of the corpus (0.1 or 10%). "
        "Random 10x is --method random with 10 times the budget.",
    )
    out: Path = option(help="Selection directory to write.")
    scores: Optional[Path] = option(
        None, help="Score file from `bioprune score` (needed by topk, bottomk, cci)."
    )
    corpus: Optional[Path] = option(
        None,
        help="Corpus directory; checks the scores belong to it and writes coreset.fasta "
        "(needed by cluster). Without it the score file's ids are used as they are.",
    )
    seed: int = option(0, help="Seed of random, cci and cluster sampling.")
    sampling: str = option(
        "keys",
        help="cci, cci-length, cci-cluster: keys (coordinated: each stratum takes its members "
        "with the smallest per-example random keys, so a small change of the scores changes "
        "few picks) or stream (one random draw per stratum in turn; selections made before "
        "bioprune had --sampling).",
        choices=SAMPLINGS,
    )
    beta: float = option(
        0.05, help="cci: fraction of the hardest (largest-influence) examples dropped."
    )
    strata: Optional[int] = option(
        None,
        help="cci, cci-cluster: equal-width score bins [50]; cci-length: score bins inside "
        "each length bin [10].",
    )
    reduction: str = option(
        "mean",
        help="Scores as selected: mean (the paper's: gradient of the mean masked loss), sum "
        "(of the summed masked loss: score x n_masked^2) or per-masked (score x n_masked); "
        "n_masked is recounted from the score file's mask seed and the lengths (needs --corpus).",
    )
    stratify: str = option(
        "score",
        help="cci: score (Algorithm 1) or length (strata over score within log-length bins: "
        "the method becomes cci-length).",
        choices=STRATIFY,
    )
    length_bins: Optional[int] = option(None, help="cci-length: number of length bins [5].")
    length_binning: Optional[str] = option(
        None,
        help="cci-length: quantile (equal-count length bins: the budget follows the length "
        "distribution) [default] or log (equal-width bins of log length: rare lengths get an "
        "equal share).",
    )
    max_per_cluster: Optional[int] = option(
        None, help="cci-cluster: at most this many picks per cluster [1]."
    )
    min_seq_id: Optional[float] = option(
        None, help="cluster [0.3], cci-cluster [0.9]: minimum sequence identity (0..1)."
    )
    coverage: float = option(
        0.8, help="cluster: minimum alignment coverage of both sequences (0..1)."
    )
    cluster_tool: str = option("mmseqs", help="cluster: mmseqs (MMseqs2) or cd-hit.")
    mmseqs_command: str = option(
        "easy-linclust",
        help="cluster: easy-linclust (linear time) or easy-cluster (more sensitive).",
    )
    threads: int = option(1, help="cluster: threads of the clustering tool.")
    cluster_cache: Optional[Path] = option(
        None,
        envvar="BIOPRUNE_CLUSTER_CACHE",
        help="cluster, cci-cluster: folder that keeps each corpus's clusters (keyed by its "
        "checksum and the clustering options), so they are computed once.",
    )
    fasta: bool = option(
        True, flag="--fasta/--no-fasta", help="Write coreset.fasta (needs --corpus)."
    )
    overwrite: bool = option(False, help="Replace an existing OUT.")

    @property
    def resolved_method(self) -> str:
        """``--method cci --stratify length`` is cci-length."""
        if self.stratify != "length":
            return self.method
        if self.method not in ("cci", "cci-length"):
            raise ValueError(f"--stratify length applies to --method cci, not {self.method!r}")
        return "cci-length"


#: The options recorded in bioprune_config.json, in their order there.
CONFIG_KEYS = (
    "method", "budget", "out", "scores", "corpus", "seed", "sampling", "beta", "strata",
    "stratify", "reduction", "length_bins", "length_binning", "max_per_cluster", "min_seq_id",
    "coverage", "cluster_tool", "mmseqs_command", "threads", "cluster_cache", "fasta",
)  # fmt: skip

#: Strategy parameter -> the option that sets it.
STRATEGY_OPTIONS = {
    "seed": "seed", "sampling": "sampling", "beta": "beta", "strata": "strata",
    "min_seq_id": "min_seq_id", "coverage": "coverage", "tool": "cluster_tool",
    "mmseqs_command": "mmseqs_command", "threads": "threads", "length_bins": "length_bins",
    "length_binning": "length_binning", "max_per_cluster": "max_per_cluster",
}  # fmt: skip


def _run_config(opts: SelectOptions, method: str) -> dict[str, Any]:
    """The command as recorded in bioprune_config.json (paths as text)."""
    config: dict[str, Any] = {"command": "select"}
    for key in CONFIG_KEYS:
        value = getattr(opts, key)
        config[key] = str(value) if isinstance(value, Path) else value
    config["method"] = method
    return config


def _strategy_params(opts: SelectOptions) -> dict[str, Any]:
    """The strategy's options; those left unset take the strategy's own default (cci's
    strata differ from cci-length's)."""
    params = {param: getattr(opts, key) for param, key in STRATEGY_OPTIONS.items()}
    return {k: v for k, v in params.items() if v is not None}


@with_options
def select(opts: SelectOptions) -> None:
    """Select a coreset: OUT/ids.txt, selection.parquet, coreset.fasta, selection.json."""
    method = opts.resolved_method
    from bioprune.selection.pipeline import select_coreset

    # the strategy names its clustering tool "tool"; the CLI calls it --cluster-tool
    with flag_names({"tool": "--cluster-tool"}), _waiting(method):
        meta = select_coreset(
            method=method,
            budget=opts.budget,
            out=opts.out,
            scores_path=opts.scores,
            corpus_path=opts.corpus,
            params=_strategy_params(opts),
            fasta=opts.fasta,
            overwrite=opts.overwrite,
            config=_run_config(opts, method),
            cluster_cache=opts.cluster_cache,
            reduction=opts.reduction,
        )
    _report(meta, method, opts.out, opts.corpus)


@contextmanager
def _waiting(method: str) -> Iterator[None]:
    """A spinner on a terminal; in a log file (where a spinner draws nothing), what runs
    and, after, how long it took."""
    if console.is_terminal:
        with console.status(f"selecting a coreset ({method})"):
            yield
        return
    console.print(f"select: selecting a coreset ({method}) ...", highlight=False)
    start = time.perf_counter()
    yield
    took = format_duration(time.perf_counter() - start)
    console.print(f"select: done in {took}", highlight=False)


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
