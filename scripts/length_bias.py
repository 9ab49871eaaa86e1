"""How each score definition and selection variant treats length, junk and duplicates.

Reads a corpus, its score file (``bioprune score``) and a labels TSV (``id``,
``family``, ``kind`` with ``junk`` / ``duplicate`` / ``near_duplicate`` /
``family``: the demo's ``rna_labels.tsv``), and prints two Markdown tables:

1. per ``--reduction`` (mean, sum, per-masked; docs/selection.md):
   Spearman(score, length) over all examples and over the non-junk ones, and
   each family's median score percentile (where a family sits in the ranking);
2. per method x reduction at each budget: the coreset's junk share, copies
   (``duplicate`` + ``near_duplicate`` records), copies picked *together with
   their original* (the labels' ``detail`` column ``of=ID``: the redundancy
   that matters), families covered, median length and
   Spearman(score, length) inside the coreset. Randomised methods are averaged
   over ``--seeds`` (mean, and the min-max range in brackets).

The corpus rates are the first row. ``cluster`` (the sequence-identity
baseline) and ``cci-cluster`` need ``mmseqs`` on the PATH (skipped without it);
their clusters are cached in ``--cache``.

Run (the demo study's outputs)::

    python scripts/length_bias.py --corpus STUDY/corpus --scores STUDY/scores.parquet \\
        --labels src/bioprune/resources/demo/rna_labels.tsv --budgets 0.05,0.1
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np


def _labels(path: Path, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Family, kind and (for a duplicate) the position of its original, -1 otherwise."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        path,
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(column_types={"detail": pa.string()}),
    )
    by_id = dict(
        zip(
            table.column("id").to_pylist(),
            zip(table.column("family").to_pylist(), table.column("kind").to_pylist(), strict=True),
            strict=True,
        )
    )
    missing = [i for i in ids[:5] if i not in by_id]
    if missing:
        sys.exit(f"{path}: no label for id {missing[0]!r}")
    family = np.array([by_id[i][0] for i in ids])
    kind = np.array([by_id[i][1] for i in ids])
    position = {x: k for k, x in enumerate(ids.tolist())}
    original = np.full(len(ids), -1, dtype=np.int64)
    if "detail" in table.column_names:  # the demo writes "of=ID;..." for each copy
        detail = dict(zip(table.column("id").to_pylist(), table.column("detail").to_pylist(),
                          strict=True))  # fmt: skip
        for k, x in enumerate(ids.tolist()):
            d = detail.get(x) or ""
            if d.startswith("of="):
                original[k] = position.get(d[3:].split(";")[0], -1)
    return family, kind, original


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy.stats import spearmanr

    ok = np.isfinite(a) & np.isfinite(b)
    return float(spearmanr(a[ok], b[ok]).statistic) if ok.sum() > 2 else float("nan")


def _composition(idx, scores, lengths, family, kind, original, families) -> dict:
    dup = np.isin(kind, ("duplicate", "near_duplicate"))
    picked = np.zeros(len(kind), dtype=bool)
    picked[idx] = True
    both = picked & (original >= 0)
    both[both] = picked[original[both]]  # a copy picked together with its original
    return {
        "pairs": float(both.sum() / len(idx)) if len(idx) else 0.0,
        "junk": float((kind[idx] == "junk").mean()) if len(idx) else 0.0,
        "dup": float(dup[idx].mean()) if len(idx) else 0.0,
        "families": len(set(family[idx].tolist()) & families),
        "median_len": float(np.median(lengths[idx])) if len(idx) else 0.0,
        "rho": _spearman(scores[idx], lengths[idx].astype(float)),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", type=Path, required=True)
    ap.add_argument("--scores", type=Path, required=True)
    ap.add_argument("--labels", type=Path, required=True)
    ap.add_argument("--budgets", default="0.05,0.1", help="fractions of the corpus")
    ap.add_argument("--seeds", default="0,1,2", help="seeds of the randomised methods")
    ap.add_argument("--cache", type=Path, default=None, help="cluster cache (default: temporary)")
    args = ap.parse_args(argv)

    from bioprune.data.corpus import Corpus
    from bioprune.selection import make_strategy
    from bioprune.selection.cluster import corpus_clusters
    from bioprune.selection.io import read_scores
    from bioprune.selection.pipeline import _mask_facts
    from bioprune.selection.reduction import REDUCTIONS, rescale_scores

    corpus = Corpus(args.corpus)
    table = read_scores(args.scores)
    if len(table) != len(corpus):
        sys.exit(f"{args.scores} has {len(table)} scores, {args.corpus} {len(corpus)} sequences")
    lengths = corpus.lengths
    family, kind, original = _labels(args.labels, corpus.ids())
    families = set(family[kind != "junk"].tolist()) - {"junk"}
    seed, draws = _mask_facts(table)
    scored = {r: rescale_scores(table.scores, lengths, seed, draws, r) for r in REDUCTIONS}
    finite = np.isfinite(table.scores)
    seeds = [int(s) for s in args.seeds.split(",")]
    budgets = [float(b) for b in args.budgets.split(",")]

    print(f"corpus {args.corpus}: {len(corpus):,} sequences, {len(families)} families; "
          f"scores {args.scores} (mask seed {seed}, {draws} draw(s))\n")  # fmt: skip
    print("## Spearman(score, length) and each family's median score percentile\n")
    fams = sorted(families, key=lambda f: np.median(lengths[family == f]))
    head = ["reduction", "rho (all)", "rho (non-junk)"] + [
        f"{f} ({np.median(lengths[family == f]):.0f} nt)" for f in fams
    ] + ["junk"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for r in REDUCTIONS:
        s = scored[r]
        pct = np.full(len(s), np.nan)
        order = np.argsort(s[finite], kind="stable")
        ranks = np.empty(len(order))
        ranks[order] = np.arange(len(order))
        pct[finite] = 100 * ranks / max(len(order) - 1, 1)
        nj = kind != "junk"
        cells = [r, f"{_spearman(s, lengths.astype(float)):+.2f}",
                 f"{_spearman(s[nj], lengths[nj].astype(float)):+.2f}"]  # fmt: skip
        cells += [f"{np.nanmedian(pct[family == f]):.0f}" for f in fams]
        cells.append(f"{np.nanmedian(pct[kind == 'junk']):.0f}")
        print("| " + " | ".join(cells) + " |")

    clusters: dict[float, np.ndarray] = {}
    cache = args.cache or Path(tempfile.mkdtemp(prefix="bioprune-length-bias-"))
    have_mmseqs = shutil.which("mmseqs") is not None

    def rep_of(identity: float) -> np.ndarray:
        if identity not in clusters:
            clusters[identity], _ = corpus_clusters(
                corpus, cache / "work", min_seq_id=identity, cache_dir=cache
            )
        return clusters[identity]

    methods: list[tuple[str, str, bool, dict]] = [("random", "random", False, {})]
    if have_mmseqs:
        methods.append(("cluster (id 0.5)", "cluster", False, {}))
    variants = [
        ("topk", "topk", {}),
        ("cci", "cci", {}),
        ("cci-length", "cci-length", {}),
        ("cci-length (log bins)", "cci-length", {"length_binning": "log"}),
    ]
    if have_mmseqs:
        variants.append(("cci-cluster", "cci-cluster", {}))
    for r in REDUCTIONS:
        for label, name, params in variants:
            methods.append((f"{label} / {r}", name, True, params))

    print("\n## Coreset composition (mean over seeds; [min, max] where seeds differ)\n")
    head = ["budget", "method / reduction", "junk %", "copies %", "copy+original %", "families",
            "median length", "rho in coreset"]  # fmt: skip
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    all_idx = np.arange(len(corpus))
    c = _composition(all_idx, table.scores, lengths, family, kind, original, families)
    print(f"| - | corpus | {100 * c['junk']:.1f} | {100 * c['dup']:.1f} | "
          f"{100 * c['pairs']:.1f} | {c['families']} | "
          f"{c['median_len']:.0f} | {c['rho']:+.2f} |")  # fmt: skip
    for b in budgets:
        m = int(b * len(corpus))
        for label, name, uses_scores, params in methods:
            red = label.split(" / ")[1] if uses_scores else "mean"
            runs = []
            for sd in seeds if name != "topk" else seeds[:1]:
                strategy = make_strategy(name, seed=sd, **params)
                if name == "cluster":
                    from bioprune.selection.cluster import round_robin_order

                    order, _ = round_robin_order(rep_of(0.5), sd)
                    idx = np.sort(order[:m])
                elif name == "random":
                    idx = strategy.select(len(corpus), m).indices
                else:
                    s = scored[red][finite]
                    side = {}
                    if name == "cci-length":
                        side["lengths"] = lengths[finite]
                    if name == "cci-cluster":
                        side["clusters"] = rep_of(strategy.min_seq_id)[finite]
                    idx = np.flatnonzero(finite)[strategy.select(s, m, **side).indices]
                runs.append(
                    _composition(idx, scored[red], lengths, family, kind, original, families)
                )

            def cell(key: str, scale: float = 1.0, fmt: str = ".1f", runs=runs) -> str:
                v = np.array([r[key] for r in runs]) * scale
                text = format(v.mean(), fmt)
                if v.max() != v.min():
                    text += f" [{format(v.min(), fmt)}, {format(v.max(), fmt)}]"
                return text

            print(f"| {b:g} | {label} | {cell('junk', 100)} | {cell('dup', 100)} | "
                  f"{cell('pairs', 100)} | "
                  f"{cell('families', 1, '.1f')} | {cell('median_len', 1, '.0f')} | "
                  f"{cell('rho', 1, '+.2f')} |")  # fmt: skip
    if args.cache is None:
        shutil.rmtree(cache, ignore_errors=True)


if __name__ == "__main__":
    main()
