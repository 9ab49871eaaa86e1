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
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = [
    "LONG_RANGE",
    "accuracy",
    "average_precision",
    "base_pair_scores",
    "contact_precision",
    "decode_pairs",
    "macro_f1",
    "mae",
    "mean_auc",
    "mse",
    "r2",
    "rmse",
    "roc_auc",
    "spearman",
]

#: Minimum sequence separation |i - j| of a long-range contact (RNA-FM, trRosetta convention).
LONG_RANGE = 24


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
    prob: np.ndarray, threshold: float = 0.5, one_partner: bool = False
) -> set[tuple[int, int]]:
    """Predicted base pairs ``(i, j)``, ``i < j``, from an (L, L) pair-probability matrix.

    Only the strict upper triangle is read. With ``one_partner`` the pairs
    above ``threshold`` are taken greedily from the most probable down, each
    base keeping at most one partner (ties broken row-major).
    """
    p = np.asarray(prob)
    iu, ju = np.triu_indices(p.shape[0], k=1)
    vals = p[iu, ju]
    keep = vals > threshold
    iu, ju, vals = iu[keep], ju[keep], vals[keep]
    if not one_partner:
        return {(int(i), int(j)) for i, j in zip(iu, ju, strict=True)}
    order = np.argsort(-vals, kind="stable")
    used: set[int] = set()
    out: set[tuple[int, int]] = set()
    for k in order:
        i, j = int(iu[k]), int(ju[k])
        if i in used or j in used:
            continue
        used.update((i, j))
        out.add((i, j))
    return out


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
