"""Score diagnostics: does the influence score follow length, junk or duplicates?

A self-influence score that ranks by something other than "informative for
pretraining" biases every selection built on it. Three biases are measured here
(docs/science.md):

- **length**: Spearman's rank correlation between score and sequence length. The
  masked-LM loss is a mean over the masked positions, so the squared gradient norm
  of a long sequence is smaller; ``|rho| > LENGTH_WARNING_RHO`` earns a
  plain-language warning.
- **labels**: per label (e.g. Rfam family, or ``junk``), the score distribution
  and how many of the label's examples sit in the top 1% / 5% of the ranking.
- **duplicates**: when a labels file marks a duplicate with its original (a
  ``kind`` column with ``duplicate``/``near_duplicate`` and a cell ``of=<id>``
  in a later column), the agreement of the two scores. A score that gives a copy
  about its original's value selects both.

Everything is vectorised NumPy over the finite scores; plots use Matplotlib's
object API (``matplotlib.figure.Figure``), never pyplot's global state.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioprune.report.figures import figure, save

__all__ = [
    "LENGTH_WARNING_RHO",
    "LabelInfo",
    "length_warning",
    "plot_duplicate_pairs",
    "plot_score_by_label",
    "plot_score_vs_length",
    "plot_strata_log",
    "read_label_info",
    "score_diagnostics",
    "spearman",
]

log = logging.getLogger("bioprune.report")

#: |Spearman(score, length)| above this earns a warning (inspect, study report).
LENGTH_WARNING_RHO = 0.5
#: Fractions of the ranking (highest scores first) whose composition is reported.
TOP_FRACTIONS = (0.01, 0.05)
#: ``kind`` values that mark a copy of another sequence.
DUPLICATE_KINDS = ("duplicate", "near_duplicate")
_OF = re.compile(r"(?:^|[;,\s])of=([^;,\s]+)")
_MAX_LABEL_ROWS = 30
_COLORS = {"junk": "#c44e52", "duplicate": "#dd8452", "near_duplicate": "#ccb974"}
_OTHER = "#4c72b0"


@dataclass
class LabelInfo:
    """Per corpus example: its label, its ``kind`` (or None), and duplicate pairs.

    ``labels``/``kinds``: object arrays of length n (None where the labels file has
    no row); ``pairs``: int64 array (k, 2) of corpus indices (copy, original).
    """

    name: str
    labels: np.ndarray
    kinds: np.ndarray | None
    pairs: np.ndarray


def spearman(x: np.ndarray, y: np.ndarray) -> float | None:
    """Spearman's rho over the pairs where both are finite; None below 3 pairs or if constant."""
    from scipy.stats import spearmanr

    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    if ok.sum() < 3 or np.ptp(x[ok]) == 0 or np.ptp(y[ok]) == 0:
        return None
    return float(spearmanr(x[ok], y[ok]).statistic)


def length_warning(rho: float | None, *, score_name: str = "the influence score") -> str | None:
    """A plain-language warning when ``|rho| > LENGTH_WARNING_RHO``, else None."""
    if rho is None or abs(rho) <= LENGTH_WARNING_RHO:
        return None
    favours = "short" if rho < 0 else "long"
    return (
        f"{score_name[:1].upper() + score_name[1:]} follows sequence length "
        f"(Spearman {rho:+.2f}, |rho| > "
        f"{LENGTH_WARNING_RHO}): Top-k and CCI will mostly pick {favours} sequences and "
        f"under-represent the {'long' if rho < 0 else 'short'} ones. Consider CCI stratified "
        "by length or a length-aware score (docs/science.md)."
    )


def read_tsv_strings(path: Path):
    """A tab-separated file as a ``pyarrow.Table`` of strings, columns ``f0``, ``f1``, ...
    (no header row assumed; quotes are ordinary characters; empty cells are ``""``)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    return pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(autogenerate_column_names=True),
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(
            column_types={f"f{i}": pa.string() for i in range(64)}, strings_can_be_null=False
        ),
    )


def read_label_info(path: str | Path, corpus_ids) -> LabelInfo:
    """Read a labels TSV (``id<TAB>label[<TAB>kind...]``) aligned to the corpus ids.

    The first row is a header when its id is not a corpus id; a header column named
    ``kind`` gives each example's kind; a cell ``of=<id>`` (in any column after the
    second, as in the demo's ``detail`` column) of a row whose kind is
    ``duplicate``/``near_duplicate`` pairs it with its original.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioprune.errors import InputError, reading

    path = Path(path)
    with reading(path, "labels TSV"):
        table = read_tsv_strings(path)
    if table.num_columns < 2:
        raise InputError(path, "expected id<TAB>label lines, found one column")
    if not isinstance(corpus_ids, pa.Array):
        corpus_ids = pa.array(list(corpus_ids), pa.string())
    cols = [table.column(i).combine_chunks() for i in range(table.num_columns)]
    header = None
    if len(cols[0]) and not pc.is_in(cols[0].slice(0, 1), value_set=corpus_ids)[0].as_py():
        header = [c[0].as_py() for c in cols]
        cols = [c.slice(1) for c in cols]
    ids = cols[0]
    pos = pc.index_in(corpus_ids, value_set=ids)  # row of each corpus example, or null
    labels = np.array(cols[1].take(pos).to_pylist(), dtype=object)
    kinds = None
    pairs = np.zeros((0, 2), dtype=np.int64)
    if header is not None and "kind" in header[1:]:
        kcol = cols[header.index("kind")]
        kinds = np.array(kcol.take(pos).to_pylist(), dtype=object)
        is_dup = np.isin(np.array(kcol.to_pylist(), dtype=object), DUPLICATE_KINDS)
        rows = np.flatnonzero(is_dup)
        if len(rows):
            extra = [np.array(c.to_pylist(), dtype=object)[rows] for c in cols[2:]]
            copy_ids, orig_ids = [], []
            for r, cells in zip(rows, zip(*extra, strict=True), strict=True):  # duplicates only
                m = next((_OF.search(c) for c in cells if c and _OF.search(c)), None)
                if m is not None:
                    copy_ids.append(ids[int(r)].as_py())
                    orig_ids.append(m.group(1))
            if copy_ids:
                ci = pc.index_in(pa.array(copy_ids, pa.string()), value_set=corpus_ids)
                oi = pc.index_in(pa.array(orig_ids, pa.string()), value_set=corpus_ids)
                both = pc.and_(pc.is_valid(ci), pc.is_valid(oi))
                ci = pc.filter(ci, both).to_numpy(zero_copy_only=False)
                oi = pc.filter(oi, both).to_numpy(zero_copy_only=False)
                pairs = np.stack([ci, oi], axis=1).astype(np.int64)
    name = header[1] if header is not None and header[1] else "label"
    return LabelInfo(name=name, labels=labels, kinds=kinds, pairs=pairs)


def _top_sets(scores: np.ndarray) -> dict[float, np.ndarray]:
    """Corpus indices of the top q fraction of finite scores (highest first), per q."""
    finite = np.flatnonzero(np.isfinite(scores))
    order = finite[np.lexsort((finite, -scores[finite]))]
    return {q: order[: max(1, round(q * len(order)))] for q in TOP_FRACTIONS}


def score_diagnostics(
    scores: np.ndarray,
    lengths: np.ndarray,
    info: LabelInfo | None = None,
    *,
    score_name: str = "the influence score",
) -> dict[str, Any]:
    """Length, label and duplicate diagnostics of one score vector (see the module doc).

    ``scores`` and ``lengths`` are per corpus example (NaN scores are left out).
    """
    scores = np.asarray(scores, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.float64)
    finite = np.isfinite(scores)
    n = int(finite.sum())
    rho = spearman(scores, lengths)
    out: dict[str, Any] = {"n_finite": n, "spearman_length": rho}
    warning = length_warning(rho, score_name=score_name)
    out["warnings"] = [warning] if warning else []
    # percentile rank of every finite score (0 = lowest, 100 = highest)
    pct = np.full(len(scores), np.nan)
    if n:
        from scipy.stats import rankdata

        pct[finite] = 100.0 * (rankdata(scores[finite]) - 0.5) / n
    tops = _top_sets(scores) if n else {}
    out["top"] = [_top_row(q, idx, lengths, info) for q, idx in tops.items()]
    out["median_length_corpus"] = float(np.median(lengths[finite])) if n else None
    if info is None:
        return out
    out["per_label"] = {"name": info.name, "rows": _per_label(scores, lengths, pct, tops, info)}
    if info.kinds is not None:
        out["per_kind"] = _per_kind(finite, pct, tops, info.kinds)
    if len(info.pairs):
        out["duplicates"] = _duplicate_pairs(scores, pct, tops, info.pairs)
    return out


def _top_row(q: float, idx: np.ndarray, lengths: np.ndarray, info: LabelInfo | None) -> dict:
    """The top ``q`` fraction: size, median length, junk/duplicates and labels in it."""
    row: dict[str, Any] = {
        "fraction": q,
        "count": len(idx),
        "median_length": float(np.median(lengths[idx])),
    }
    if info is not None and info.kinds is not None:
        k = info.kinds[idx]
        for kind in ("junk", *DUPLICATE_KINDS):
            row[kind] = int(np.sum(k == kind))
    if info is not None:
        row["labels_present"] = len({x for x in info.labels[idx] if x is not None})
    return row


def _per_label(scores, lengths, pct, tops: dict, info: LabelInfo) -> list[dict[str, Any]]:
    """Per label: count, median score, median percentile, members in the top 1% / 5%."""
    finite = np.isfinite(scores)
    per = []
    lab = info.labels
    names = sorted({x for x in lab[finite] if x is not None})
    for name in names:  # a loop over labels, not examples
        mask = finite & (lab == name)
        row = {
            "label": name,
            "count": int(mask.sum()),
            "median_score": float(np.median(scores[mask])),
            "median_percentile": float(np.median(pct[mask])),
            "median_length": float(np.median(lengths[mask])),
        }
        for q, idx in tops.items():
            row[f"top{q:g}"] = int(np.sum(lab[idx] == name))
        per.append(row)
    per.sort(key=lambda r: -r["median_percentile"])
    return per


def _per_kind(finite, pct, tops: dict, kinds: np.ndarray) -> list[dict[str, Any]]:
    """Per ``kind`` value: count, median percentile, members in the top fractions."""
    rows = []
    for kind in sorted({x for x in kinds[finite] if x is not None}):
        mask = finite & (kinds == kind)
        rows.append(
            {
                "kind": kind,
                "count": int(mask.sum()),
                "median_percentile": float(np.median(pct[mask])),
                **{f"top{q:g}": int(np.sum(kinds[idx] == kind)) for q, idx in tops.items()},
            }
        )
    return rows


def _duplicate_pairs(scores, pct, tops: dict, pairs: np.ndarray) -> dict[str, Any]:
    """How alike copy and original score: Spearman, log ratio, percentile gap, top 5%."""
    finite = np.isfinite(scores)
    ok = finite[pairs[:, 0]] & finite[pairs[:, 1]]
    p = pairs[ok]
    a, b = scores[p[:, 0]], scores[p[:, 1]]
    dup = {"pairs": len(p), "spearman": spearman(a, b)}
    if len(p):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.abs(np.log10(a / b))
        ratio = ratio[np.isfinite(ratio)]
        dup["median_abs_log10_ratio"] = float(np.median(ratio)) if len(ratio) else None
        dup["median_percentile_gap"] = float(np.median(np.abs(pct[p[:, 0]] - pct[p[:, 1]])))
        top5 = np.zeros(len(scores), dtype=bool)
        top5[tops[0.05]] = True
        either = top5[p[:, 0]] | top5[p[:, 1]]
        both = top5[p[:, 0]] & top5[p[:, 1]]
        dup["top0.05_either"] = int(either.sum())
        dup["top0.05_both"] = int(both.sum())
    return dup


# -- plots (Figure API: no pyplot, no backend switch) ---------------------------------


def _kind_colors(kinds: np.ndarray | None, n: int) -> list[tuple[str, np.ndarray, str]]:
    """(legend name, mask, colour) groups, the plain examples first (drawn underneath)."""
    if kinds is None:
        return [("all", np.ones(n, dtype=bool), _OTHER)]
    groups = []
    special = np.zeros(n, dtype=bool)
    for kind, color in _COLORS.items():
        m = kinds == kind
        if m.any():
            groups.append((kind, m, color))
            special |= m
    return [("other", ~special, _OTHER), *groups]


def plot_score_vs_length(
    path: Path, scores: np.ndarray, lengths: np.ndarray, diag: dict, info: LabelInfo | None
) -> None:
    """Score against length, both on log axes, coloured by kind, with binned medians."""
    fig = figure(7, 4.5)
    ax = fig.add_subplot()
    ok = np.isfinite(scores) & (scores > 0) & (lengths > 0)
    kinds = info.kinds if info is not None else None
    for name, mask, color in _kind_colors(kinds, len(scores)):
        m = mask & ok
        if m.any():
            ax.scatter(lengths[m], scores[m], s=4, alpha=0.35, color=color, linewidths=0,
                       label=f"{name} ({int(m.sum()):,})")  # fmt: skip
    if ok.sum() >= 10:
        lo, hi = lengths[ok].min(), lengths[ok].max()
        edges = np.geomspace(lo, hi * (1 + 1e-9), 16)
        which = np.digitize(lengths[ok], edges) - 1
        xs, ys = [], []
        for b in range(len(edges) - 1):  # a loop over 15 bins
            sel = which == b
            if sel.sum() >= 5:
                xs.append(np.sqrt(edges[b] * edges[b + 1]))
                ys.append(np.median(scores[ok][sel]))
        ax.plot(xs, ys, color="black", linewidth=1.5, label="median per length bin")
        ax.set_xscale("log")
        ax.set_yscale("log")
    rho = diag.get("spearman_length")
    ax.set_xlabel("sequence length (residues, log scale)")
    ax.set_ylabel("score (log scale)")
    title = "Score vs length" + (f": Spearman {rho:+.2f}" if rho is not None else "")
    if rho is not None and abs(rho) > LENGTH_WARNING_RHO:
        title += " (length-biased)"
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=7, markerscale=3)
    save(fig, path, dpi=110)


def plot_score_by_label(path: Path, scores: np.ndarray, info: LabelInfo, diag: dict) -> None:
    """One box per label (log score), ordered by median percentile, with top-5% counts."""
    rows = diag["per_label"]["rows"][:_MAX_LABEL_ROWS]
    fig = figure(8, 1.4 + 0.32 * max(1, len(rows)))
    ax = fig.add_subplot()
    ok = np.isfinite(scores) & (scores > 0)
    data = [scores[ok & (info.labels == r["label"])] for r in rows]
    if rows:
        import matplotlib

        # ``vert`` is deprecated from Matplotlib 3.10 on (``orientation``), absent before
        new_api = tuple(int(p) for p in matplotlib.__version__.split(".")[:2]) >= (3, 10)
        horizontal = {"orientation": "horizontal"} if new_api else {"vert": False}
        ax.boxplot(data, showfliers=False, widths=0.6, **horizontal)
        ax.set_yticks(np.arange(1, len(rows) + 1),
                      [f"{r['label']} (n={r['count']:,}, top5%: {r['top0.05']})" for r in rows],
                      fontsize=7)  # fmt: skip
        ax.invert_yaxis()
        ax.set_xscale("log")
    ax.set_xlabel("score (log scale)")
    ax.set_title(f"Score by {diag['per_label']['name']} (highest median first)")
    save(fig, path, dpi=110)


def plot_duplicate_pairs(path: Path, scores: np.ndarray, pairs: np.ndarray, diag: dict) -> None:
    """Score of each copy against its original's, log axes, with the diagonal."""
    fig = figure(5, 5)
    ax = fig.add_subplot()
    a, b = scores[pairs[:, 1]], scores[pairs[:, 0]]
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    ax.scatter(a[ok], b[ok], s=8, alpha=0.5, color="#dd8452", linewidths=0)
    if ok.any():
        lo, hi = min(a[ok].min(), b[ok].min()), max(a[ok].max(), b[ok].max())
        ax.plot([lo, hi], [lo, hi], color="0.4", linewidth=1, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
    d = diag.get("duplicates", {})
    rho = d.get("spearman")
    ax.set_xlabel("original's score")
    ax.set_ylabel("copy's score")
    ax.set_title(
        f"{d.get('pairs', 0):,} duplicate pairs"
        + (f": Spearman {rho:.2f}" if rho is not None else "")
    )
    save(fig, path, dpi=110)


def plot_strata_log(path: Path, strata: list[dict], scores: np.ndarray, picked: np.ndarray) -> bool:
    """CCI's strata on a log score axis: each stratum a bar over [lower, upper] (pool, picks).

    Returns False (and writes nothing) when the strata carry no positive bounds.
    """
    rows = [
        s
        for s in strata
        if isinstance(s.get("lower"), int | float)
        and isinstance(s.get("upper"), int | float)
        and s["upper"] > 0
    ]
    if not rows:
        return False
    fig = figure(8, 4)
    ax = fig.add_subplot()
    pos = scores[np.isfinite(scores) & (scores > 0)]
    floor = float(pos.min()) if len(pos) else min(s["upper"] for s in rows) / 10
    for s in rows:  # a loop over strata
        lo = max(float(s["lower"]), floor)
        width = float(s["upper"]) - lo
        if width <= 0:
            continue
        ax.bar(lo, s["pool"], width=width, align="edge", color=_OTHER, alpha=0.5,
               edgecolor="white", linewidth=0.3)  # fmt: skip
        ax.bar(lo, s["picks"], width=width, align="edge", color="#dd8452", alpha=0.9,
               edgecolor="white", linewidth=0.3)  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("score (log scale); each bar one stratum's [lower, upper]")
    ax.set_ylabel("examples (log scale)")
    ax.set_title(f"CCI strata on a log axis: pool (blue) and picks (orange); {len(picked):,} picks")
    save(fig, path, dpi=110)
    return True
