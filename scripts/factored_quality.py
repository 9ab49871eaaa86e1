"""How well factored scores (``--fisher-mode factored``) stand in for exact ones (issue 14).

Computes, on one model and corpus, a Fisher with rank-one factors, the exact scores
(eq. 11) and the factored scores from it, then compares them as a selection would:

- Spearman correlation of factored vs exact scores (target >= 0.95);
- overlap of the top 1% and top 5% (|A cap B| / k);
- overlap of the CCI coreset at 5% (beta 0.05, 50 strata, seed 0: the demo study's
  settings; target >= 0.9) under both of CCI's ``sampling`` modes -- ``keys``
  (coordinated, the default) and ``stream`` (one random stream, bioprune's earlier
  draws) -- each next to its chance level: two exact-score coresets with seeds 0
  and 1;
- the fit errors recorded in the Fisher (``score_rel_error`` per weight matrix).

Run from the repository root on the demo corpus and its reference model (the demo
study's ``reference`` then ``adapted`` model; see docs/influence.md for the figures)::

    python scripts/factored_quality.py --model demo-out/adapted --corpus demo-out/corpus \\
        --subset-from demo-out/adapted --work /tmp/fq-work

Files in ``--work`` are reused when present (``--fresh`` recomputes them); the figures
are printed and written to ``WORK/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np


def overlap(a: np.ndarray, b: np.ndarray) -> float:
    """|A cap B| / |A| for two index sets of equal size."""
    return len(np.intersect1d(a, b)) / max(len(a), 1)


def top(scores: np.ndarray, fraction: float) -> np.ndarray:
    k = max(1, round(fraction * len(scores)))
    return np.argsort(-scores, kind="stable")[:k]


def compare(exact: np.ndarray, factored: np.ndarray, budget: float = 0.05) -> dict:
    """The selection-level agreement of two score vectors over the same examples."""
    from scipy.stats import spearmanr

    from bioprune.selection import make_strategy

    k = round(budget * len(exact))
    figures: dict = {
        "examples": len(exact),
        "spearman": float(spearmanr(exact, factored).statistic),
        "pearson_log": float(np.corrcoef(np.log(exact), np.log(factored))[0, 1]),
        "median_ratio_factored_over_exact": float(np.median(factored / exact)),
        "top1_overlap": overlap(top(exact, 0.01), top(factored, 0.01)),
        "top5_overlap": overlap(top(exact, 0.05), top(factored, 0.05)),
    }
    for sampling in ("keys", "stream"):
        suffix = "" if sampling == "keys" else "_stream"
        cci = {
            s: make_strategy("cci", beta=0.05, strata=50, seed=s, sampling=sampling) for s in (0, 1)
        }
        sel_exact, sel_factored = cci[0].select(exact, k), cci[0].select(factored, k)
        core_exact, core_factored = sel_exact.indices, sel_factored.indices
        core_exact_seed1 = cci[1].select(exact, k).indices
        figures[f"cci5_overlap{suffix}"] = overlap(core_exact, core_factored)
        figures[f"cci5_overlap_exact_seed0_vs_seed1{suffix}"] = overlap(
            core_exact, core_exact_seed1
        )
        # the spread over seeds (one seed's figure is one draw of the sampling)
        figures[f"cci5_overlap_seeds_0_to_4{suffix}"] = [
            overlap(*(c.select(x, k).indices for x in (exact, factored)))
            for c in (
                make_strategy("cci", beta=0.05, strata=50, seed=s, sampling=sampling)
                for s in range(5)
            )
        ]
    # What CCI decides from the scores alone (the same under both samplings): the
    # strata and how many each contributes. Under ``stream`` moving a few examples
    # across a stratum edge reshuffles every later stratum's draws; under ``keys``
    # only examples that change stratum (or sit at a stratum's key cut-off) can move.
    picks = [
        np.array([r["picks"] for r in s.details["strata_table"]]) for s in (sel_exact, sel_factored)
    ]
    strata = [_strata(s, sc) for s, sc in ((sel_exact, exact), (sel_factored, factored))]
    figures["cci5_allocation_overlap"] = float(np.minimum(*picks).sum() / k)
    figures["cci5_same_stratum"] = float((strata[0] == strata[1]).mean())
    return figures


def _strata(sel, scores: np.ndarray) -> np.ndarray:
    """Each example's CCI stratum (-1: among the hardest dropped), from the selection's edges."""
    edges = np.array(sel.details["edges"])
    out = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, len(edges) - 2)
    out[scores >= sel.details["hard_cutoff_score"]] = -1
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, required=True, help="scored model (the adapted one)")
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--subset-from", type=Path, default=None, help="Fisher subset (adapt dir)")
    ap.add_argument("--subset-size", default=None, help="or a random Fisher subset")
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--batch-tokens", type=int, default=8192)
    ap.add_argument("--fresh", action="store_true", help="recompute files present in --work")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import pyarrow.parquet as pq

    from bioprune.influence.fisher import FisherConfig, compute_fisher, load_fisher
    from bioprune.influence.score import ScoreConfig, compute_scores

    args.work.mkdir(parents=True, exist_ok=True)
    fisher = args.work / "fisher.safetensors"
    if args.fresh or not fisher.exists():
        compute_fisher(
            FisherConfig(
                model=args.model,
                corpus=args.corpus,
                out=fisher,
                subset_from=args.subset_from,
                subset_size=args.subset_size,
                batch_tokens=args.batch_tokens,
                device="cpu",
                fisher_mode="factored",
                overwrite=True,
                progress=False,
            ),
        )
    seconds = {}
    for mode in ("exact", "factored"):
        out = args.work / f"scores-{mode}.parquet"
        if args.fresh or not out.exists():
            res = compute_scores(
                ScoreConfig(
                    model=args.model,
                    corpus=args.corpus,
                    fisher=fisher,
                    out=out,
                    batch_tokens=args.batch_tokens,
                    device="cpu",
                    fisher_mode=mode,
                    overwrite=True,
                    progress=False,
                ),
            )
            seconds[mode] = res.seconds
    exact = pq.read_table(args.work / "scores-exact.parquet").column("score").to_numpy()
    factored = pq.read_table(args.work / "scores-factored.parquet").column("score").to_numpy()
    figures = compare(exact, factored)
    fits = load_fisher(fisher).meta["factored"]["tensors"]
    rel = np.array([f["score_rel_error"] for f in fits.values()])
    figures["fit_score_rel_error"] = {
        "median": float(np.median(rel)),
        "max": float(rel.max()),
        "worst": max(fits, key=lambda n: fits[n]["score_rel_error"]),
        "tensors": len(rel),
    }
    if seconds:
        figures["seconds_this_run"] = seconds
    (args.work / "quality.json").write_text(json.dumps(figures, indent=2))
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
