"""Downstream metrics, named as in method.md section 6 (paper appendix B).

Scalar metrics wrap scikit-learn and SciPy; the structure metrics (base pairs,
long-range contact precision) are defined here because no library provides
them with the conventions we need. Every function returns plain floats; a
metric that is undefined on its input (e.g. AUC with one class present) is
``nan``, never an exception, so one degenerate seed does not lose a run.

Conventions (also in docs/evaluation.md):

- base pairs are 0-based ``(i, j)`` with ``i < j``; precision, recall and F1
  are computed per sequence over the predicted and true pair sets and then
  averaged over sequences; a sequence with no true and no predicted pair
  scores 1 on all three (a perfect prediction); otherwise a zero denominator
  gives 0;
- base-pair MCC is computed per sequence over the strict upper triangle of the
  ``L x L`` pair matrix (``L (L - 1) / 2`` cells), 0 when undefined (the
  scikit-learn convention), then averaged over sequences;
- long-range contact precision at ``L / k`` takes, per sequence, the
  ``max(1, floor(L / k))`` most probable pairs with ``j - i >= 24`` (ties
  broken by position, row-major) and reports the fraction that are true
  contacts; sequences with no long-range pair are skipped.

Benchmark definitions (suffix ``_beacon``, or a plain name where the
benchmark's definition is the usual one; read off RNABenchmark/BEACON's
``downstream/train_*.py`` and torchdrug's PEER tasks; see
:data:`DEFINITIONS`):

- ``precision_L/k_beacon``: per sequence, the ``L // k`` most probable cells
  with ``j - i >= 23`` (unknown cells left out); of those, only the cells with
  probability above 0.5 are counted, as true or false positives, pooled over
  all sequences: ``sum TP / (sum TP + sum FP)``;
- ``r2_beacon`` / ``mse_beacon``: squared Pearson correlation and mean squared
  error over every known cell of every ``L x L`` distance map, pooled;
- ``precision_beacon`` / ``recall_beacon`` / ``f1_beacon``: base-pair cells
  pooled over all sequences before the ratios are taken;
- ``mean_auc_beacon``: mean over labels of the ROC AUC, a label whose column
  holds one class counting 0.5; ``mean_mcc``: mean over labels of the MCC at
  probability 0.5;
- ``per_sequence_accuracy``: PEER's ``macro_acc``, each sequence's accuracy
  over its scored residues, averaged over sequences.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "BEACON_LONG_RANGE",
    "DEFINITIONS",
    "LONG_RANGE",
    "accuracy",
    "average_precision",
    "base_pair_scores",
    "best_threshold",
    "contact_precision",
    "contact_precision_beacon",
    "decode_pairs",
    "definition",
    "distance_scores_beacon",
    "macro_f1",
    "mae",
    "mcc",
    "mean_auc",
    "mean_auc_beacon",
    "mean_mcc",
    "mse",
    "pearson_r2",
    "per_sequence_accuracy",
    "pooled_pair_scores",
    "r2",
    "rmse",
    "roc_auc",
    "spearman",
]

#: Minimum sequence separation |i - j| of a long-range contact (RNA-FM, trRosetta convention).
LONG_RANGE = 24
#: BEACON's long-range cut: ``np.triu_indices(L, k=23)``, i.e. ``j - i >= 23``.
BEACON_LONG_RANGE = 23

#: One line per metric name: what is computed (RESULTS.json ``metric_definitions``).
DEFINITIONS: dict[str, str] = {
    "accuracy": "fraction of exact matches (per-residue tasks: pooled over all scored residues, "
    "PEER's micro_acc)",
    "macro_f1": "unweighted mean over classes of the per-class F1",
    "mcc": "Matthews correlation coefficient of the predicted classes (scikit-learn; "
    "multi-class generalisation when more than two classes)",
    "auc": "ROC AUC of the positive class's probability (binary) or macro one-vs-rest AUC",
    "aupr": "area under the precision-recall curve (scikit-learn average precision)",
    "per_sequence_accuracy": "each sequence's accuracy over its scored residues, averaged over "
    "sequences (PEER's macro_acc)",
    "mean_auc": "mean over labels of the ROC AUC; labels with one class in the split are left out",
    "mean_auc_beacon": "BEACON: mean over all labels of the ROC AUC, a label with one class "
    "counting 0.5",
    "mean_mcc": "BEACON: mean over labels of the MCC at probability 0.5",
    "spearman": "Spearman rank correlation",
    "mse": "mean squared error",
    "rmse": "root mean squared error",
    "mae": "mean absolute error",
    "r2": "coefficient of determination 1 - SS_res/SS_tot (distance maps: known i<j cells pooled)",
    "precision": "base pairs: per-sequence precision of the predicted pair set, averaged over "
    "sequences",
    "recall": "base pairs: per-sequence recall, averaged over sequences",
    "f1": "base pairs: per-sequence F1, averaged over sequences",
    "precision_beacon": "BEACON: base-pair precision over all cells of all sequences pooled",
    "recall_beacon": "BEACON: base-pair recall over all cells of all sequences pooled",
    "f1_beacon": "BEACON: base-pair F1 over all cells of all sequences pooled",
    "r2_beacon": "BEACON: squared Pearson correlation over every known cell (-1 excluded) of "
    "every distance map, pooled",
    "mse_beacon": "BEACON: mean squared error over every known cell (-1 excluded) of every "
    "distance map, pooled",
    "scored_sequences": "sequences with at least one known long-range (j - i >= 24) cell",
}
for _k in (1, 2, 5, 10):
    _name = "precision_L" if _k == 1 else f"precision_L/{_k}"
    _top = "L" if _k == 1 else f"L/{_k}"
    DEFINITIONS[_name] = (
        f"per sequence, the fraction of true contacts among the top-{_top} most probable known "
        "cells with j - i >= 24, averaged over sequences"
    )
    DEFINITIONS[f"{_name}_beacon"] = (
        f"BEACON: per sequence the top-{_top} (L // {_k}) most probable known cells with "
        "j - i >= 23, of which only those with probability > 0.5 count; TP / (TP + FP) pooled "
        "over sequences"
    )


def definition(kind: str, name: str) -> str:
    """The one-line definition of metric ``name`` of a ``kind`` task: the kind's own
    (:attr:`bioprune.evaluation.kinds.TaskKind.definitions`) or the shared one."""
    from bioprune.evaluation.kinds import get_kind

    return get_kind(kind).definitions.get(name) or DEFINITIONS.get(name, "")


# ---- classification ----------------------------------------------------------


def accuracy(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Fraction of exact matches."""
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(y_true, y_pred))


def macro_f1(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes in ``y_true`` or ``y_pred``."""
    from sklearn.metrics import f1_score

    return float(f1_score(y_true, y_pred, average="macro", zero_division=0))


def roc_auc(y_true: Sequence[int], scores: np.ndarray) -> float:
    """Area under the ROC curve.

    Binary: ``scores`` is the positive class's score, shape (n,). Multi-class:
    ``scores`` is (n, C) class probabilities and the result is the macro
    one-vs-rest AUC over the classes present in ``y_true``. ``nan`` if
    ``y_true`` holds a single class.
    """
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        if len(np.unique(y)) < 2:
            return math.nan
        return float(roc_auc_score(y, s))
    per_class = [
        float(roc_auc_score(y == c, s[:, c]))
        for c in range(s.shape[1])
        if 0 < int((y == c).sum()) < len(y)
    ]
    return float(np.mean(per_class)) if per_class else math.nan


def average_precision(y_true: Sequence[int], scores: np.ndarray) -> float:
    """Area under the precision-recall curve (AUPR, as scikit-learn's average precision).

    Binary (``scores`` shape (n,)) or macro one-vs-rest (``scores`` shape (n, C)).
    ``nan`` when no example is positive.
    """
    from sklearn.metrics import average_precision_score

    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        if not (y == 1).any():
            return math.nan
        return float(average_precision_score(y, s))
    per_class = [
        float(average_precision_score(y == c, s[:, c])) for c in range(s.shape[1]) if (y == c).any()
    ]
    return float(np.mean(per_class)) if per_class else math.nan


def mean_auc(y_true: np.ndarray, scores: np.ndarray) -> float:
    """Multi-label mean ROC AUC: the mean over labels of each label's AUC.

    ``y_true`` and ``scores`` are (n, C); labels whose column holds a single
    class in ``y_true`` have no AUC and are left out of the mean.
    """
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    aucs = [roc_auc(y[:, c], s[:, c]) for c in range(y.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else math.nan


# ---- regression --------------------------------------------------------------


def spearman(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Spearman rank correlation; ``nan`` if either side is constant."""
    from scipy.stats import spearmanr

    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return math.nan
    return float(spearmanr(y, p).statistic)


def mse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean squared error."""
    from sklearn.metrics import mean_squared_error

    return float(mean_squared_error(y_true, y_pred))


def rmse(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Root mean squared error."""
    return math.sqrt(mse(y_true, y_pred))


def mae(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Mean absolute error."""
    from sklearn.metrics import mean_absolute_error

    return float(mean_absolute_error(y_true, y_pred))


def r2(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Coefficient of determination ``1 - SS_res / SS_tot``; ``nan`` if ``y_true`` is constant."""
    from sklearn.metrics import r2_score

    y = np.asarray(y_true, dtype=np.float64)
    if len(y) < 2 or np.all(y == y[0]):
        return math.nan
    return float(r2_score(y, np.asarray(y_pred, dtype=np.float64)))


# ---- base pairs --------------------------------------------------------------


def decode_pairs(
    prob: np.ndarray,
    threshold: float = 0.5,
    one_partner: bool = False,
    *,
    min_loop: int = 0,
    allowed: np.ndarray | None = None,
    with_scores: bool = False,
):
    """Predicted base pairs ``(i, j)``, ``i < j``, from an (L, L) pair-score matrix.

    Only the strict upper triangle is read; a pair is predicted when its score
    (a probability, or a logit with a logit threshold) is ``> threshold``.

    Parameters
    ----------
    one_partner : take the pairs greedily from the most probable down, each base
        keeping at most one partner (ties broken row-major).
    min_loop : a pair must enclose at least this many unpaired bases (``j - i > min_loop``;
        3 is the usual minimum hairpin loop).
    allowed : (L, L) boolean matrix of the pairs that may form (e.g.
        :func:`bioprune.evaluation.structure.canonical_pair_mask`); ``None`` allows all.
    with_scores : also return the scores of the chosen pairs, in the order chosen.

    Because the greedy pass runs in descending score order, the pairs it keeps at a
    threshold are exactly the pairs it keeps at ``-inf`` whose score is above the
    threshold (:func:`best_threshold` relies on this).
    """
    p = np.asarray(prob)
    iu, ju = np.triu_indices(p.shape[0], k=1 + max(0, min_loop))
    vals = p[iu, ju]
    keep = vals > threshold
    if allowed is not None:
        keep &= np.asarray(allowed, dtype=bool)[iu, ju]
    iu, ju, vals = iu[keep], ju[keep], vals[keep]
    if not one_partner:
        pairs = [(int(i), int(j)) for i, j in zip(iu, ju, strict=True)]
        return (pairs, vals) if with_scores else set(pairs)
    order = np.argsort(-vals, kind="stable")
    used: set[int] = set()
    chosen: list[tuple[int, int]] = []
    scores: list[float] = []
    for k in order:
        i, j = int(iu[k]), int(ju[k])
        if i in used or j in used:
            continue
        used.update((i, j))
        chosen.append((i, j))
        scores.append(float(vals[k]))
    if with_scores:
        return chosen, np.asarray(scores, dtype=np.float64)
    return set(chosen)


def base_pair_scores(
    true_pairs: Iterable[tuple[int, int]], pred_pairs: Iterable[tuple[int, int]], length: int
) -> dict[str, float]:
    """Precision, recall, F1 and MCC of one sequence's predicted base pairs.

    Parameters
    ----------
    true_pairs, pred_pairs : 0-based pairs; each is normalised to ``(min, max)``.
    length : residues L; MCC counts the ``L (L - 1) / 2`` upper-triangle cells.
    """
    t = {(min(i, j), max(i, j)) for i, j in true_pairs}
    p = {(min(i, j), max(i, j)) for i, j in pred_pairs}
    tp = len(t & p)
    fp = len(p - t)
    fn = len(t - p)
    tn = length * (length - 1) // 2 - tp - fp - fn
    if not t and not p:
        precision = recall = f1 = 1.0
    else:
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * tp / (2 * tp + fp + fn)
    denom = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / denom if denom > 0 else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "mcc": mcc}


# ---- contacts ----------------------------------------------------------------


def contact_precision(
    prob: np.ndarray,
    contacts: np.ndarray,
    *,
    divisors: Sequence[int] = (1, 2, 5, 10),
    min_separation: int = LONG_RANGE,
) -> dict[str, float] | None:
    """Long-range top-``L/k`` contact precision of one sequence.

    Parameters
    ----------
    prob : (L, L) predicted contact probabilities (only ``j > i`` is read).
    contacts : (L, L) true contacts, 1 contact, 0 none; negative or non-finite
        cells are unknown and never ranked.
    divisors : k of each ``top-L/k`` precision.
    min_separation : long range means ``j - i >= min_separation`` (24).

    Returns
    -------
    ``{"precision_L": .., "precision_L/2": .., ...}`` or ``None`` when the
    sequence has no scorable long-range pair.
    """
    length = prob.shape[0]
    iu, ju = np.triu_indices(length, k=min_separation)
    truth = np.asarray(contacts, dtype=np.float64)[iu, ju]
    known = np.isfinite(truth) & (truth >= 0)
    if not known.any():
        return None
    scores = np.asarray(prob, dtype=np.float64)[iu, ju][known]
    truth = truth[known] > 0
    order = np.argsort(-scores, kind="stable")
    out = {}
    for k in divisors:
        top = max(1, length // k)
        chosen = truth[order[:top]]
        out[contact_metric_name(k)] = float(chosen.mean())
    return out


def contact_metric_name(divisor: int) -> str:
    """``precision_L`` for 1, ``precision_L/2`` for 2, ..."""
    return "precision_L" if divisor == 1 else f"precision_L/{divisor}"


# ---- benchmark definitions ------------------------------------------------------


def mcc(y_true: Sequence[int], y_pred: Sequence[int]) -> float:
    """Matthews correlation coefficient (scikit-learn; 0 when undefined)."""
    from sklearn.metrics import matthews_corrcoef

    if len(np.unique(np.concatenate([np.asarray(y_true), np.asarray(y_pred)]))) < 2:
        return 0.0  # one class everywhere: undefined, 0 by scikit-learn's convention
    return float(matthews_corrcoef(y_true, y_pred))


def mean_auc_beacon(y_true: np.ndarray, scores: np.ndarray) -> float:
    """BEACON Modification's ``mean_auc``: mean over all C labels of each label's ROC AUC,
    a label whose column holds one class counting 0.5 (``y_true``, ``scores``: (n, C))."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    aucs = [roc_auc(y[:, c], s[:, c]) for c in range(y.shape[1])]
    return float(np.mean([0.5 if math.isnan(a) else a for a in aucs]))


def mean_mcc(y_true: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> float:
    """BEACON Modification's ``mean_mcc``: mean over labels of the MCC of ``scores > threshold``."""
    y = np.asarray(y_true)
    s = np.asarray(scores, dtype=np.float64)
    return float(np.mean([mcc(y[:, c], s[:, c] > threshold) for c in range(y.shape[1])]))


def per_sequence_accuracy(y_true: Sequence[np.ndarray], y_pred: Sequence[np.ndarray]) -> float:
    """PEER's ``macro_acc``: each sequence's accuracy over its scored residues (a negative
    target is a masked residue), averaged over the sequences with a scored residue."""
    per_seq = []
    for t, p in zip(y_true, y_pred, strict=True):
        t, p = np.asarray(t), np.asarray(p)
        keep = t >= 0
        if keep.any():
            per_seq.append(float((t[keep] == p[keep]).mean()))
    return float(np.mean(per_seq)) if per_seq else math.nan


def pearson_r2(y_true: Sequence[float], y_pred: Sequence[float]) -> float:
    """Squared Pearson correlation; ``nan`` if either side is constant."""
    from scipy.stats import pearsonr

    y, p = np.asarray(y_true, dtype=np.float64), np.asarray(y_pred, dtype=np.float64)
    if len(y) < 2 or np.all(y == y[0]) or np.all(p == p[0]):
        return math.nan
    return float(pearsonr(y, p).statistic) ** 2


def distance_scores_beacon(
    predictions: Sequence[np.ndarray], truths: Sequence[np.ndarray]
) -> dict[str, float]:
    """BEACON distance map: ``r2_beacon`` (Pearson^2) and ``mse_beacon`` over every known
    cell of every (L, L) map pooled; negative (BEACON writes -1) or non-finite cells are
    unknown and left out."""
    ys, ps = [], []
    for pred, truth in zip(predictions, truths, strict=True):
        t = np.asarray(truth, dtype=np.float64)
        known = np.isfinite(t) & (t >= 0)
        ys.append(t[known])
        ps.append(np.asarray(pred, dtype=np.float64)[known])
    y = np.concatenate(ys) if ys else np.zeros(0)
    p = np.concatenate(ps) if ps else np.zeros(0)
    if not y.size:
        return {"r2_beacon": math.nan, "mse_beacon": math.nan}
    return {"r2_beacon": pearson_r2(y, p), "mse_beacon": float(np.mean((y - p) ** 2))}


def pooled_pair_scores(
    true_pairs: Sequence[Iterable[tuple[int, int]]], pred_pairs: Sequence[Iterable[tuple[int, int]]]
) -> dict[str, float]:
    """BEACON bpRNA: precision, recall and F1 of base-pair cells pooled over all sequences.

    BEACON scores the whole thresholded ``L x L`` matrix; for symmetric pair sets that
    doubles every count, so the ratios equal those over the ``i < j`` pairs used here
    (the diagonal, which no base pair occupies, is not scored). Zero denominators give 0
    (scikit-learn's ``zero_division``).
    """
    tp = fp = fn = 0
    for t_pairs, p_pairs in zip(true_pairs, pred_pairs, strict=True):
        t = {(min(i, j), max(i, j)) for i, j in t_pairs}
        p = {(min(i, j), max(i, j)) for i, j in p_pairs}
        tp += len(t & p)
        fp += len(p - t)
        fn += len(t - p)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0
    return {"precision_beacon": precision, "recall_beacon": recall, "f1_beacon": f1}


def contact_precision_beacon(
    probs: Sequence[np.ndarray],
    contacts: Sequence[np.ndarray],
    *,
    divisors: Sequence[int] = (1, 2, 5, 10),
    min_separation: int = BEACON_LONG_RANGE,
    threshold: float = 0.5,
) -> dict[str, float]:
    """BEACON contact map: thresholded long-range top-``L/k`` precision pooled over sequences.

    Per sequence of length L: the cells with ``j - i >= min_separation`` whose truth is
    known (negative or non-finite truth is unknown, as BEACON's -1), the ``L // k`` most
    probable of them; among those, the cells with probability ``> threshold`` are counted
    as true or false positives. The result is ``sum TP / (sum TP + sum FP)`` over all
    sequences, ``nan`` when no counted cell exists. (BEACON's ``argsort(..)[-0:]`` would
    take every cell when ``L < k``; here ``L // k = 0`` cells are taken.)
    """
    tp = {k: 0 for k in divisors}
    fp = {k: 0 for k in divisors}
    for prob, truth in zip(probs, contacts, strict=True):
        length = truth.shape[0]
        iu, ju = np.triu_indices(length, k=min_separation)
        t = np.asarray(truth, dtype=np.float64)[iu, ju]
        known = np.isfinite(t) & (t >= 0)
        scores = np.asarray(prob, dtype=np.float64)[iu, ju][known]
        positive = t[known] > 0
        order = np.argsort(-scores, kind="stable")
        for k in divisors:
            top = order[: length // k]
            counted = scores[top] > threshold
            hits = int(positive[top][counted].sum())
            tp[k] += hits
            fp[k] += int(counted.sum()) - hits
    return {
        f"{contact_metric_name(k)}_beacon": tp[k] / (tp[k] + fp[k]) if tp[k] + fp[k] else math.nan
        for k in divisors
    }


def best_threshold(
    candidates: Sequence[tuple[np.ndarray, np.ndarray]],
    true_counts: Sequence[int],
    *,
    pooled: bool,
    max_candidates: int = 2048,
) -> tuple[float, float]:
    """The decision threshold that maximises base-pair F1, and that F1.

    Parameters
    ----------
    candidates : per sequence, ``(scores, hit)``: the score (logit or probability) of
        each pair that would be predicted at a low enough threshold (every cell, or the
        pairs a decoder accepts in descending score order) and whether it is a true pair.
    true_counts : per sequence, its number of true pairs.
    pooled : maximise the pooled F1 (BEACON) rather than the mean per-sequence F1.

    A pair is predicted when its score is ``> threshold``. The thresholds tried are the
    midpoints between consecutive distinct candidate scores (at most ``max_candidates``,
    spaced geometrically in rank from the highest score, so every one of the top scores
    is tried) and one below the lowest; ties go to the higher threshold.
    """
    allscores = np.concatenate([np.asarray(s, dtype=np.float64) for s, _ in candidates] or
                               [np.zeros(0)])  # fmt: skip
    distinct = np.unique(allscores)
    if distinct.size == 0:
        return math.inf, 0.0
    if distinct.size > max_candidates:
        # geometric in rank from the top: pairs are rare, so the best cut lies among the
        # highest scores, where evenly spaced quantiles would leave only a few candidates
        from_top = np.geomspace(1, distinct.size, max_candidates).round().astype(int)
        distinct = np.unique(distinct[distinct.size - from_top])
    cuts = np.concatenate([[distinct[0] - 1.0], (distinct[:-1] + distinct[1:]) / 2])
    n_pred = np.zeros((len(candidates), cuts.size))
    n_hit = np.zeros((len(candidates), cuts.size))
    for r, (scores, hit) in enumerate(candidates):
        s = np.asarray(scores, dtype=np.float64)
        h = np.asarray(hit, dtype=bool)
        order = np.argsort(s, kind="stable")
        s_sorted, h_sorted = s[order], h[order]
        above = s.size - np.searchsorted(s_sorted, cuts, side="right")  # count of s > cut
        cum_hits_from_top = np.concatenate([[0], np.cumsum(h_sorted[::-1])])
        n_pred[r] = above
        n_hit[r] = cum_hits_from_top[above]
    n_true = np.asarray(true_counts, dtype=np.float64)[:, None]
    if pooled:
        denom = n_pred.sum(0) + n_true.sum()
        f1 = np.where(denom > 0, 2 * n_hit.sum(0) / np.where(denom > 0, denom, 1), 0.0)
    else:
        denom = n_pred + n_true
        per_seq = np.where(denom > 0, 2 * n_hit / np.where(denom > 0, denom, 1), 1.0)
        f1 = per_seq.mean(0)
    best = int(np.flatnonzero(f1 == f1.max())[-1])
    return float(cuts[best]), float(f1[best])
