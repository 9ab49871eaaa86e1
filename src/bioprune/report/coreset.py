"""``bioprune inspect``: how a coreset differs from its corpus, as plots and a JSON summary.

Writes into ``OUT`` (atomically):

``lengths.png``       length distributions of corpus and coreset (densities)
``composition.png``   residue frequencies of corpus and coreset
``labels.png``        per-label counts in corpus and coreset (with ``--labels``)
``scores.png``        influence histogram of the corpus with the picks overlaid;
                      for CCI also the strata edges, the hard cut and each
                      stratum's pool and picks (with ``--scores``)
``score_vs_length.png``  score against length on log axes, Spearman in the title
                      (with ``--scores``; a warning when |rho| > 0.5)
``score_by_label.png``   score per label, ``duplicate_pairs.png`` copy vs original
                      score (with ``--scores`` and ``--labels``; see
                      ``bioprune.report.diagnostics``)
``strata_log.png``    CCI's strata as bars on a log score axis (CCI + ``--scores``)
``summary.json``      every number the plots show; corpus counts add up to n,
                      coreset counts to m

Everything is computed with vectorised NumPy/Arrow over memory-mapped tokens,
in chunks, so a 23M-sequence corpus is inspected in bounded memory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.report.figures import figure, save

__all__ = ["inspect_coreset"]

log = logging.getLogger("bioprune.report")

PLOT_LENGTHS = artifacts.INSPECT_LENGTHS
PLOT_COMPOSITION = artifacts.INSPECT_COMPOSITION
PLOT_LABELS = artifacts.INSPECT_LABELS
PLOT_SCORES = artifacts.INSPECT_SCORES
SUMMARY = artifacts.INSPECT_SUMMARY
PLOT_SCORE_LENGTH = artifacts.INSPECT_SCORE_LENGTH
PLOT_SCORE_LABELS = artifacts.INSPECT_SCORE_LABELS
PLOT_DUPLICATE_PAIRS = artifacts.INSPECT_DUPLICATE_PAIRS
PLOT_STRATA_LOG = artifacts.INSPECT_STRATA_LOG

#: Sequences longer than this count as long in ``summary.json`` (the study's composition).
LONG_RESIDUES = 200
_TOKEN_CHUNK = 1 << 26  # tokens per bincount step
_INDEX_CHUNK = 1 << 16  # examples per gather step
_MAX_LABEL_BARS = 30
_CORPUS_COLOR, _CORESET_COLOR = "#4c72b0", "#dd8452"


def _describe(lengths: np.ndarray) -> dict[str, Any]:
    if not len(lengths):
        return {"count": 0, "residues": 0}
    q = np.percentile(lengths, [5, 25, 50, 75, 95])
    return {
        "count": len(lengths),
        "residues": int(lengths.sum()),
        "mean": float(lengths.mean()),
        "min": int(lengths.min()),
        "p5": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p95": float(q[4]),
        "max": int(lengths.max()),
    }


def _token_counts(corpus, indices: np.ndarray | None) -> np.ndarray:
    """Residue-token counts (int64, one per alphabet token) of the corpus or of ``indices``."""
    size = len(corpus.alphabet.tokens)
    counts = np.zeros(size, dtype=np.int64)
    tokens = corpus.tokens
    if indices is None:
        for s in range(0, len(tokens), _TOKEN_CHUNK):
            counts += np.bincount(np.asarray(tokens[s : s + _TOKEN_CHUNK]), minlength=size)
        return counts
    from bioprune.selection.io import gather_tokens

    for s in range(0, len(indices), _INDEX_CHUNK):
        residues, _ = gather_tokens(corpus, indices[s : s + _INDEX_CHUNK])
        counts += np.bincount(residues, minlength=size)
    return counts


def _read_labels(path: Path, corpus_ids) -> tuple[Any, Any, str, dict[str, int]]:
    """Labels TSV ``id<TAB>label[<TAB>...]``: returns (ids, labels, label name, facts).

    The first row is a header when its id is not a corpus id.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioprune.report.diagnostics import read_tsv_strings

    if not path.is_file():
        raise FileNotFoundError(f"labels file {path} does not exist")
    try:
        table = read_tsv_strings(path)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"labels file {path}: {exc}; expected id<TAB>label lines") from None
    if table.num_columns < 2:
        raise ValueError(f"labels file {path}: expected id<TAB>label lines, found one column")
    ids, labels = table.column(0).combine_chunks(), table.column(1).combine_chunks()
    name = "label"
    if len(ids) and not pc.is_in(ids.slice(0, 1), value_set=corpus_ids)[0].as_py():
        name = labels[0].as_py() or "label"
        ids, labels = ids.slice(1), labels.slice(1)
    unique = pc.count_distinct(ids).as_py()
    if unique != len(ids):
        raise ValueError(
            f"labels file {path}: {len(ids) - unique} id(s) appear more than once; "
            "give each id one label"
        )
    in_corpus = int(pc.sum(pc.is_in(ids, value_set=corpus_ids)).as_py() or 0)
    return ids, labels, name, {"rows": len(ids), "ids_not_in_corpus": len(ids) - in_corpus}


def _label_coverage(
    corpus_ids, indices: np.ndarray, label_ids, labels, groups: list[str] | None = None
) -> list[dict[str, Any]]:
    """Per label: examples in the corpus and in the coreset (unlabelled as one row).

    ``groups``: glob patterns (``fnmatch``, e.g. ``dup-of:*``); label values
    matching one are counted together under the pattern (the first that matches).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if isinstance(labels, pa.ChunkedArray):
        labels = labels.combine_chunks()
    pos = pc.index_in(corpus_ids, value_set=label_ids)
    per_example = labels.take(pos)  # null where the example has no label
    per_example = pc.fill_null(per_example, "\x00unlabelled")
    encoded = pc.dictionary_encode(per_example)
    if isinstance(encoded, pa.ChunkedArray):
        encoded = encoded.combine_chunks()
    names = encoded.dictionary.to_pylist()
    codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    if groups:  # merge the label values a pattern matches (on the dictionary, not examples)
        import fnmatch

        merged = [
            next((g for g in groups if n != "\x00unlabelled" and fnmatch.fnmatchcase(n, g)), n)
            for n in names
        ]
        uniq = list(dict.fromkeys(merged))
        where = {n: i for i, n in enumerate(uniq)}
        codes = np.array([where[n] for n in merged], dtype=np.int64)[codes]
        names = uniq
    corpus_counts = np.bincount(codes, minlength=len(names))
    coreset_counts = np.bincount(codes[indices], minlength=len(names))
    rows = [
        {
            "label": None if name == "\x00unlabelled" else name,
            "corpus": int(c),
            "coreset": int(k),
            "kept_fraction": float(k / c) if c else 0.0,
        }
        for name, c, k in zip(names, corpus_counts, coreset_counts, strict=True)
    ]  # a loop over labels, not examples
    rows.sort(key=lambda r: (r["label"] is None, -r["corpus"], str(r["label"])))
    return rows


def _plot_lengths(path: Path, corpus_len: np.ndarray, coreset_len: np.ndarray, stats: dict):
    fig = figure(7, 4)
    ax = fig.add_subplot()
    lo, hi = max(1, int(corpus_len.min())), max(2, int(corpus_len.max()))
    log_scale = hi / lo > 20
    bins = np.geomspace(lo, hi + 1, 60) if log_scale else np.linspace(lo, hi + 1, 60)
    for values, label, color in (
        (corpus_len, f"corpus (n={len(corpus_len):,})", _CORPUS_COLOR),
        (coreset_len, f"coreset (m={len(coreset_len):,})", _CORESET_COLOR),
    ):
        if len(values):
            ax.hist(np.maximum(values, lo), bins=bins, density=True, histtype="step",
                    linewidth=2, color=color, label=label)  # fmt: skip
    for key, color in (("corpus", _CORPUS_COLOR), ("coreset", _CORESET_COLOR)):
        if stats[key].get("count"):
            ax.axvline(stats[key]["median"], color=color, linestyle=":", linewidth=1.5)
    if log_scale:
        ax.set_xscale("log")
    ax.set_xlabel("sequence length (residues)" + (", log scale" if log_scale else ""))
    ax.set_ylabel("density")
    ax.set_title("Length distribution (dotted: medians)")
    ax.legend(frameon=False)
    save(fig, path, dpi=120)


def _plot_composition(path: Path, rows: list[dict[str, Any]]):
    width = max(5, 0.45 * len(rows) + 2)
    fig = figure(width, 5.5)
    ax, bx = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["corpus_fraction"] for r in rows], 0.4, label="corpus", color=_CORPUS_COLOR)
    ax.bar(x + 0.2, [r["coreset_fraction"] for r in rows], 0.4, label="coreset",
           color=_CORESET_COLOR)  # fmt: skip
    ax.set_ylabel("fraction of residues")
    ax.set_title("Residue composition")
    ax.legend(frameon=False)
    # relative change, so that rare tokens (N, X, ambiguity codes) are visible too
    rel = [
        100.0 * (r["coreset_fraction"] / r["corpus_fraction"] - 1.0)
        if r["corpus_fraction"]
        else 0.0
        for r in rows
    ]
    bx.bar(x, rel, 0.6, color=[_CORESET_COLOR if v >= 0 else _CORPUS_COLOR for v in rel])
    bx.axhline(0, color="0.3", linewidth=0.8)
    bx.set_ylabel("coreset vs corpus (%)")
    bx.set_xticks(x, [r["token"] for r in rows])
    save(fig, path, dpi=120)


def _plot_labels(path: Path, rows: list[dict[str, Any]], name: str):
    shown = [r for r in rows if r["label"] is not None][:_MAX_LABEL_BARS]
    fig = figure(8, 1.5 + 0.3 * max(1, len(shown)))
    ax = fig.add_subplot()
    y = np.arange(len(shown))
    ax.barh(y + 0.2, [r["corpus"] for r in shown], 0.4, label="corpus", color=_CORPUS_COLOR)
    ax.barh(y - 0.2, [r["coreset"] for r in shown], 0.4, label="coreset", color=_CORESET_COLOR)
    for yi, r in zip(y, shown, strict=True):
        ax.text(r["corpus"], yi + 0.2, f" {r['coreset']}/{r['corpus']}", va="center", fontsize=7)
    ax.set_yticks(y, [str(r["label"]) for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("examples (log scale); text: coreset/corpus")
    more = len([r for r in rows if r["label"] is not None]) - len(shown)
    ax.set_title(f"Coverage per {name}" + (f" (largest {len(shown)}; {more} more)" if more else ""))
    ax.legend(frameon=False, loc="lower right")
    save(fig, path, dpi=120)


def _plot_scores(path: Path, scores: np.ndarray, picked: np.ndarray, meta: dict):
    d = meta.get("details", {})
    strata = d.get("strata_table") if meta.get("method") == "cci" else None
    nrows = 2 if strata else 1
    fig = figure(8, 3.6 * nrows)
    axes = fig.subplots(nrows, 1, squeeze=False)
    ax = axes[0, 0]
    # Scores span orders of magnitude (300 to 1.6e6 on a real corpus): on a linear
    # axis nearly everything falls into the first bin. Log bins when all are > 0.
    log_x = bool(len(scores)) and scores.min() > 0 and scores.max() / scores.min() > 100
    if log_x:
        bins = np.geomspace(scores.min(), scores.max() * (1 + 1e-9), 121)
    else:
        bins = np.histogram_bin_edges(scores, bins=120) if len(scores) else 10
    ax.hist(scores, bins=bins, color=_CORPUS_COLOR, alpha=0.6, label=f"corpus ({len(scores):,})")
    ax.hist(picked, bins=bins, color=_CORESET_COLOR, alpha=0.9, label=f"coreset ({len(picked):,})")
    ax.set_yscale("log")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlabel("self-influence I" + (" (log scale)" if log_x else ""))
    ax.set_ylabel("examples (log scale)")
    if strata:
        for e in d["edges"]:
            ax.axvline(e, color="0.4", linewidth=0.4, alpha=0.6)
        if d.get("hard_cutoff_score") is not None:
            ax.axvline(d["hard_cutoff_score"], color="crimson", linestyle="--", linewidth=1.2,
                       label=f"hard cut: top {d['dropped_hardest']:,} dropped")  # fmt: skip
        ax.set_title(f"Influence with CCI's {d['strata']} strata (grey) and picks")
        bx = axes[1, 0]
        b = np.arange(len(strata))
        bx.bar(b, [s["pool"] for s in strata], color=_CORPUS_COLOR, alpha=0.6, label="pool")
        bx.bar(b, [s["picks"] for s in strata], color=_CORESET_COLOR, width=0.5, label="picks")
        bx.set_yscale("log")
        bx.set_xlabel("stratum (low influence -> high)")
        bx.set_ylabel("examples (log scale)")
        bx.set_title("Per-stratum pool and picks (fewest-first allocation)")
        bx.legend(frameon=False)
    else:
        ax.set_title(f"Influence of corpus and coreset ({meta.get('method', '?')})")
    ax.legend(frameon=False, fontsize=8)
    save(fig, path, dpi=120)
    return "log" if log_x else "linear"


def _score_diagnostics(
    tmp: Path,
    summary: dict[str, Any],
    corpus,
    scores: np.ndarray,
    indices: np.ndarray,
    meta: dict[str, Any],
    labels_path: str | Path | None,
) -> dict[str, Any]:
    """Score vs length (and label, duplicates, strata on a log axis): plots + numbers.

    Logs the plain-language length warning (also kept in the returned ``warnings``).
    """
    from bioprune.report import diagnostics as D

    info = None
    if labels_path is not None:
        corpus_ids = corpus.read_columns(["id"]).column("id").combine_chunks()
        info = D.read_label_info(labels_path, corpus_ids)
    lengths = corpus.lengths.astype(np.float64)
    diag = D.score_diagnostics(scores, lengths, info)
    for w in diag["warnings"]:
        log.warning("%s", w)
    D.plot_score_vs_length(tmp / PLOT_SCORE_LENGTH, scores, lengths, diag, info)
    summary["plots"]["score_vs_length"] = PLOT_SCORE_LENGTH
    if info is not None and diag.get("per_label", {}).get("rows"):
        D.plot_score_by_label(tmp / PLOT_SCORE_LABELS, scores, info, diag)
        summary["plots"]["score_by_label"] = PLOT_SCORE_LABELS
    if info is not None and diag.get("duplicates", {}).get("pairs"):
        D.plot_duplicate_pairs(tmp / PLOT_DUPLICATE_PAIRS, scores, info.pairs, diag)
        summary["plots"]["duplicate_pairs"] = PLOT_DUPLICATE_PAIRS
    strata = (meta.get("details") or {}).get("strata_table")
    if meta.get("method") == "cci" and isinstance(strata, list):
        if D.plot_strata_log(tmp / PLOT_STRATA_LOG, strata, scores, scores[indices]):
            summary["plots"]["strata_log"] = PLOT_STRATA_LOG
    # coreset-side numbers: median length and picks' Spearman (is the coreset length-biased?)
    picked = scores[indices]
    diag["coreset"] = {
        "median_length": float(np.median(lengths[indices])) if len(indices) else None,
        "spearman_length": D.spearman(picked, lengths[indices]),
    }
    return diag


def _read_selection_meta(path: Path) -> dict[str, Any]:
    """``selection.json``, checked to be one that ``bioprune select`` wrote (the parts used)."""
    from bioprune.errors import InputError, reading

    with reading(path, "selection.json"):
        meta = json.loads(path.read_bytes().decode("utf-8"))
    fix = "make the selection again with `bioprune select`"
    if not isinstance(meta, dict) or meta.get("format") != "bioprune-selection":
        raise InputError(path, f"not a selection.json written by `bioprune select`; {fix}")
    details = meta.get("details")
    if not isinstance(meta.get("inputs"), dict) or not isinstance(details, dict):
        raise InputError(path, f"'inputs' or 'details' is missing or not a mapping; {fix}")
    from bioprune.selection.reduction import REDUCTIONS

    facts = meta.get("reduction_facts")
    if meta.get("reduction") not in (None, *REDUCTIONS) or (
        meta.get("reduction") not in (None, "mean")
        and not (
            isinstance(facts, dict)
            and all(
                isinstance(facts.get(k), int) and not isinstance(facts.get(k), bool)
                for k in ("mask_seed", "mask_draws")
            )
            and facts["mask_seed"] >= 0
            and facts["mask_draws"] >= 1
        )
    ):
        raise InputError(path, f"'reduction' or 'reduction_facts' is damaged; {fix}")
    if meta.get("method") == "cci":
        strata = details.get("strata_table")
        ok = (
            isinstance(strata, list)
            and all(
                isinstance(r, dict)
                and all(isinstance(r.get(k), int) and not isinstance(r.get(k), bool)
                        for k in ("pool", "picks"))
                for r in strata
            )
            and isinstance(details.get("edges"), list)
            and all(isinstance(e, int | float) for e in details["edges"])
            and isinstance(details.get("dropped_hardest", 0), int)
            and isinstance(details.get("strata", 0), int)
            and isinstance(details.get("hard_cutoff_score"), int | float | None)
        )  # fmt: skip
        if not ok:
            raise InputError(path, f"the CCI details (strata_table, edges) are damaged; {fix}")
    return meta


def _read_selection_indices(path: Path) -> np.ndarray:
    """The sorted int64 ``index`` column of ``selection.parquet`` (no nulls)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from bioprune.errors import InputError, reading

    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist: the selection is incomplete; make it again with "
            "`bioprune select`"
        )
    with reading(path, "selection table"):
        schema = pq.read_schema(path)
        if "index" not in schema.names or not pa.types.is_integer(schema.field("index").type):
            raise InputError(path, "has no integer 'index' column; not a selection table")
        column = pq.read_table(path, columns=["index"]).column("index")
    if column.null_count:
        raise InputError(path, f"{column.null_count} row(s) have no index")
    return np.sort(column.to_numpy().astype(np.int64))


def inspect_coreset(
    corpus_path: str | Path,
    selection_path: str | Path,
    out: str | Path,
    *,
    scores_path: str | Path | None = None,
    labels_path: str | Path | None = None,
    label_groups: list[str] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Compare a selection with its corpus; write plots and ``summary.json`` to ``out``.

    Returns the summary. ``scores_path`` adds ``scores.png``; ``labels_path``
    (TSV ``id<TAB>label``, header optional) adds ``labels.png``.
    """
    from bioprune.data.corpus import Corpus

    corpus = Corpus(corpus_path)
    selection_path = Path(selection_path)
    meta, indices = _read_selection(selection_path, corpus)
    n = len(corpus)
    summary: dict[str, Any] = {
        "corpus": str(corpus_path),
        "selection": str(selection_path),
        "method": meta.get("method"),
        "n_corpus": n,
        "n_coreset": len(indices),
        "fraction": len(indices) / n if n else 0.0,
        "plots": {},
    }
    artifacts.check_not_input(out, (corpus_path, selection_path, scores_path, labels_path))
    table = None
    if scores_path is not None:  # checked before any plot is drawn
        from bioprune.selection.io import check_scores_match_corpus, read_scores

        table = read_scores(scores_path)
        check_scores_match_corpus(table, corpus)
    with artifacts.atomic_dir(out, overwrite=overwrite) as tmp:
        _inspect_lengths(tmp, summary, corpus.lengths, indices)
        _inspect_composition(tmp, summary, corpus, indices)
        if labels_path is not None:
            _inspect_labels(tmp, summary, corpus, indices, Path(labels_path), label_groups)
        if table is not None:
            _inspect_scores(tmp, summary, corpus, indices, meta, table, scores_path, labels_path)
        summary.update(artifacts.provenance())
        artifacts.write_json(tmp / SUMMARY, summary)
        artifacts.write_json(
            tmp / artifacts.RUN_CONFIG,
            {
                "command": "inspect",
                "corpus": str(corpus_path),
                "selection": str(selection_path),
                "scores": str(scores_path) if scores_path is not None else None,
                "labels": str(labels_path) if labels_path is not None else None,
                "out": str(out),
            },
        )
    return summary


def _read_selection(selection_path: Path, corpus) -> tuple[dict[str, Any], np.ndarray]:
    """The selection's metadata and sorted indices, checked against ``corpus``."""
    meta_path = selection_path / artifacts.SELECTION_META
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"{selection_path} is not a selection (no {artifacts.SELECTION_META}); "
            "make one with `bioprune select`"
        )
    meta = _read_selection_meta(meta_path)
    recorded = meta["inputs"].get("corpus_checksum")
    if recorded and recorded != corpus.checksum:
        raise ValueError(
            f"selection {selection_path} was made from another corpus "
            f"(checksum {str(recorded)[:20]}..., this corpus {corpus.checksum[:20]}...)"
        )
    indices = _read_selection_indices(selection_path / artifacts.SELECTION_TABLE)
    n = len(corpus)
    if len(indices) and (indices[0] < 0 or indices[-1] >= n):
        raise ValueError(f"selection {selection_path} holds indices outside corpus of {n}")
    if len(np.unique(indices)) != len(indices):
        raise ValueError(f"selection {selection_path} lists some example twice")
    return meta, indices


def _inspect_lengths(tmp: Path, summary: dict, lengths: np.ndarray, indices: np.ndarray) -> None:
    stats = {"corpus": _describe(lengths), "coreset": _describe(lengths[indices])}
    summary["lengths"] = stats
    summary["long"] = {
        "threshold": LONG_RESIDUES,
        "corpus": int((lengths > LONG_RESIDUES).sum()),
        "coreset": int((lengths[indices] > LONG_RESIDUES).sum()),
    }
    _plot_lengths(tmp / PLOT_LENGTHS, lengths, lengths[indices], stats)
    summary["plots"]["lengths"] = PLOT_LENGTHS


def _inspect_composition(tmp: Path, summary: dict, corpus, indices: np.ndarray) -> None:
    full, part = _token_counts(corpus, None), _token_counts(corpus, indices)
    used = np.flatnonzero(full + part)
    tf, tp = max(int(full.sum()), 1), max(int(part.sum()), 1)
    comp = [
        {
            "token": corpus.alphabet.tokens[t],
            "corpus": int(full[t]),
            "coreset": int(part[t]),
            "corpus_fraction": float(full[t] / tf),
            "coreset_fraction": float(part[t] / tp),
        }
        for t in used  # a loop over alphabet tokens
    ]
    summary["composition"] = comp
    _plot_composition(tmp / PLOT_COMPOSITION, comp)
    summary["plots"]["composition"] = PLOT_COMPOSITION


def _inspect_labels(
    tmp: Path, summary: dict, corpus, indices: np.ndarray, labels_path: Path, groups
) -> None:
    corpus_ids = corpus.read_columns(["id"]).column("id").combine_chunks()
    label_ids, labels, name, facts = _read_labels(labels_path, corpus_ids)
    rows = _label_coverage(corpus_ids, indices, label_ids, labels, groups)
    summary["labels"] = {"file": str(labels_path), "name": name, **facts, "per_label": rows}
    if groups:
        summary["labels"]["groups"] = list(groups)
    _plot_labels(tmp / PLOT_LABELS, rows, name)
    summary["plots"]["labels"] = PLOT_LABELS


def _inspect_scores(
    tmp: Path, summary: dict, corpus, indices, meta: dict, table, scores_path, labels_path
) -> None:
    """Scores of corpus and coreset (as the selection saw them), plot and diagnostics."""
    reduction = meta.get("reduction") or "mean"
    if reduction != "mean":  # the scores the selection saw (select --reduction)
        from bioprune.selection.reduction import rescale_scores

        facts = meta["reduction_facts"]  # checked by _read_selection_meta
        table.scores = rescale_scores(
            table.scores, corpus.lengths, facts["mask_seed"], facts["mask_draws"], reduction
        )
    finite = np.isfinite(table.scores)
    picked = table.scores[indices]
    summary["scores"] = {
        "file": str(scores_path),
        "checksum": table.checksum,
        "reduction": reduction,
        "finite": int(finite.sum()),
        "non_finite": int((~finite).sum()),
        "coreset_non_finite": int((~np.isfinite(picked)).sum()),
        "corpus_mean": float(table.scores[finite].mean()) if finite.any() else None,
        "coreset_mean": (
            float(picked[np.isfinite(picked)].mean()) if np.isfinite(picked).any() else None
        ),
    }
    if meta.get("method") == "cci":
        summary["scores"]["strata"] = meta["details"].get("strata_table")
    summary["scores"]["histogram_x_scale"] = _plot_scores(
        tmp / PLOT_SCORES, table.scores[finite], picked[np.isfinite(picked)], meta
    )
    summary["plots"]["scores"] = PLOT_SCORES
    summary["scores"]["diagnostics"] = _score_diagnostics(
        tmp, summary, corpus, table.scores, indices, meta, labels_path
    )
