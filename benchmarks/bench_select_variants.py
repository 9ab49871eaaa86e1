"""Cost of the CCI variants relative to CCI itself (strategy cores, in process).

``cci-length`` adds length binning (a sort of the lengths for quantile bins)
and per-length-bin hard cuts and strata; ``cci-cluster`` adds a sort by
(cluster, random key) to thin the pool. Neither loops over examples in Python,
so both should stay within a small factor of CCI (whose 23M-score budget is in
``bench_select.py``). Prints the median of ``--repeats`` interleaved runs of each
and the ratios to CCI; the clusters are random labels (the clustering tool's
time is not included: it runs once per corpus and is cached).

    python benchmarks/bench_select_variants.py               # n = 2M
    python benchmarks/bench_select_variants.py --n 23000000  # RNA-FM's corpus size
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=2_000_000)
    ap.add_argument("--budget", type=float, default=0.1)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    from bioprune.selection import make_strategy

    rng = np.random.default_rng(0)
    n = args.n
    scores = rng.lognormal(0.0, 1.0, n)
    lengths = np.clip(rng.lognormal(np.log(150), 0.8, n), 20, 3000).astype(np.int64)
    clusters = rng.integers(0, n // 3, n)  # about 3 members per cluster
    m = int(args.budget * n)
    runs = {
        "cci": lambda: make_strategy("cci").select(scores, m),
        "cci-length (quantile)": lambda: make_strategy("cci-length").select(
            scores, m, lengths=lengths
        ),
        "cci-length (log)": lambda: make_strategy("cci-length", length_binning="log").select(
            scores, m, lengths=lengths
        ),
        "cci-cluster": lambda: make_strategy("cci-cluster").select(scores, m, clusters=clusters),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.repeats):  # interleaved: a noisy machine slows all alike
        for name, fn in runs.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    base = statistics.median(times["cci"])
    print(f"n = {n:,}, budget {m:,}; median of {args.repeats} interleaved runs")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"  {name:24s} {med:7.2f} s   x{med / base:.2f} of cci")


if __name__ == "__main__":
    main()
