"""Downstream metrics and structure parsers against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bioprune.evaluation import metrics as M
from bioprune.evaluation.structure import (
    parse_dot_bracket,
    read_bpseq,
    read_ct,
    read_structure_file,
)


def test_accuracy_and_macro_f1_by_hand():
    y, p = [0, 1, 1, 2], [0, 1, 2, 2]
    assert M.accuracy(y, p) == pytest.approx(0.75)
    # class 0: F1 1; class 1: P 1, R 1/2 -> 2/3; class 2: P 1/2, R 1 -> 2/3
    assert M.macro_f1(y, p) == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)


def test_binary_auc_and_aupr_by_hand():
    y, s = [0, 0, 1, 1], np.array([0.1, 0.4, 0.35, 0.8])
    # 3 of the 4 (positive, negative) pairs are ordered correctly
    assert M.roc_auc(y, s) == pytest.approx(0.75)
    # ranked: 0.8 (+) P=1 R=1/2; 0.4 (-); 0.35 (+) P=2/3 R=1 -> 1/2*1 + 1/2*2/3
    assert M.average_precision(y, s) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert math.isnan(M.roc_auc([1, 1], np.array([0.2, 0.3])))
    assert math.isnan(M.average_precision([0, 0], np.array([0.2, 0.3])))


def test_multiclass_auc_is_macro_one_vs_rest():
    y = [0, 1, 2, 0]
    prob = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.1, 0.3, 0.6], [0.3, 0.4, 0.3]])
    # class 0: positives 0.8, 0.3 vs 0.2, 0.1 -> 1; class 1: 0.7 vs 0.1, 0.3, 0.4 -> 1;
    # class 2: 0.6 vs 0.1, 0.1, 0.3 -> 1
    assert M.roc_auc(y, prob) == pytest.approx(1.0)
    prob[3] = [0.1, 0.8, 0.1]  # class 0's second positive now ranks below both negatives
    # class 0: 0.8 beats 0.2, 0.1 (2); 0.1 ties 0.1 (0.5), loses to 0.2 -> 2.5/4
    # class 1: 0.7 vs (0.1, 0.3, 0.8) -> 2/3
    expected = (2.5 / 4 + 2 / 3 + 1.0) / 3
    assert M.roc_auc(y, prob) == pytest.approx(expected)


def test_mean_auc_skips_single_class_labels():
    y = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.1, 0.6, 0.5], [0.9, 0.7, 0.5], [0.8, 0.2, 0.5], [0.3, 0.1, 0.5]])
    # label 0: positives 0.9, 0.8 vs 0.1, 0.3 -> 1.0
    # label 1: positives 0.6, 0.2 vs 0.7, 0.1 -> 2 of 4 pairs -> 0.5; label 2: no positive
    assert M.mean_auc(y, s) == pytest.approx(0.75)


def test_regression_metrics_by_hand():
    y, p = [1.0, 2.0, 3.0], [1.0, 3.0, 5.0]
    assert M.mse(y, p) == pytest.approx(5 / 3)
    assert M.rmse(y, p) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae(y, p) == pytest.approx(1.0)
    # SS_res = 0 + 1 + 4 = 5, SS_tot = 1 + 0 + 1 = 2
    assert M.r2(y, p) == pytest.approx(1 - 5 / 2)
    # ranks 1 2 4 3: sum d^2 = 2 -> 1 - 6*2 / (4 * 15)
    assert M.spearman([1, 2, 3, 4], [10, 20, 40, 30]) == pytest.approx(0.8)
    assert math.isnan(M.spearman([1, 2, 3], [5, 5, 5]))
    assert math.isnan(M.r2([2, 2, 2], [1, 2, 3]))


def test_base_pair_scores_by_hand():
    true = [(0, 9), (1, 8), (2, 7)]
    pred = [(0, 9), (8, 1), (3, 6)]  # (8, 1) is the same pair as (1, 8)
    s = M.base_pair_scores(true, pred, 10)
    # TP 2, FP 1, FN 1, TN 45 - 4 = 41
    assert s["precision"] == pytest.approx(2 / 3)
    assert s["recall"] == pytest.approx(2 / 3)
    assert s["f1"] == pytest.approx(2 / 3)
    assert s["mcc"] == pytest.approx((2 * 41 - 1 * 1) / math.sqrt(3 * 3 * 42 * 42))


def test_base_pair_mcc_matches_sklearn_on_upper_triangle():
    from sklearn.metrics import matthews_corrcoef

    rng = np.random.default_rng(0)
    length = 15
    iu, ju = np.triu_indices(length, k=1)
    for _ in range(5):
        t = rng.random(len(iu)) < 0.1
        p = rng.random(len(iu)) < 0.1
        true = [(int(i), int(j)) for i, j, x in zip(iu, ju, t, strict=True) if x]
        pred = [(int(i), int(j)) for i, j, x in zip(iu, ju, p, strict=True) if x]
        s = M.base_pair_scores(true, pred, length)
        assert s["mcc"] == pytest.approx(matthews_corrcoef(t, p))


def test_base_pair_scores_edge_cases():
    assert M.base_pair_scores([], [], 8) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "mcc": 0.0}
    s = M.base_pair_scores([(0, 5)], [], 8)
    assert (s["precision"], s["recall"], s["f1"], s["mcc"]) == (0.0, 0.0, 0.0, 0.0)


def test_decode_pairs_threshold_and_one_partner():
    prob = np.zeros((5, 5))
    prob[0, 4] = 0.9
    prob[0, 3] = 0.7  # shares base 0 with the better pair
    prob[1, 3] = 0.6
    prob[2, 3] = 0.5  # not above the threshold
    prob[4, 0] = 0.99  # lower triangle is never read
    assert M.decode_pairs(prob) == {(0, 4), (0, 3), (1, 3)}
    assert M.decode_pairs(prob, one_partner=True) == {(0, 4), (1, 3)}


def test_long_range_contact_precision_by_hand():
    length = 30
    prob = np.zeros((length, length))
    truth = np.zeros((length, length))
    for i, j in [(0, 24), (1, 25), (5, 29), (0, 1)]:
        truth[i, j] = 1
    prob[0, 24], prob[1, 25], prob[2, 26], prob[5, 29] = 0.9, 0.8, 0.7, 0.1
    prob[0, 1] = 0.99  # short range: never ranked
    out = M.contact_precision(prob, truth)
    # 21 long-range cells (j - i >= 24); ranked .9 .8 .7 .1 then zeros row-major
    assert out["precision_L/10"] == pytest.approx(2 / 3)  # top 3
    assert out["precision_L/5"] == pytest.approx(3 / 6)  # top 6
    assert out["precision_L/2"] == pytest.approx(3 / 15)  # top 15
    assert out["precision_L"] == pytest.approx(3 / 21)  # top 30 > 21 cells: all of them
    truth[2, 26] = -1  # unknown: left out of the ranking
    out = M.contact_precision(prob, truth)
    assert out["precision_L/10"] == pytest.approx(1.0)  # .9 .8 .1 are all contacts
    assert M.contact_precision(np.zeros((20, 20)), np.zeros((20, 20))) is None


def test_dot_bracket_with_pseudoknots():
    assert parse_dot_bracket("((..[[..))..]]") == [(0, 9), (1, 8), (4, 13), (5, 12)]
    assert parse_dot_bracket("(<{A..a}>)") == [(0, 9), (1, 8), (2, 7), (3, 6)]
    assert parse_dot_bracket("....") == []
    with pytest.raises(ValueError, match=r"unbalanced.*position 4 closes nothing"):
        parse_dot_bracket("().)")
    with pytest.raises(ValueError, match=r"unbalanced.*'\(' at position 1 is never closed"):
        parse_dot_bracket("((.)")
    with pytest.raises(ValueError, match=r"'\*' at position 2"):
        parse_dot_bracket(".*.")


def test_bpseq_and_ct_readers(tmp_path):
    bpseq = tmp_path / "x.bpseq"
    bpseq.write_text("# comment\n1 G 6\n2 G 5\n3 A 0\n4 A 0\n5 C 2\n6 C 1\n")
    assert read_bpseq(bpseq) == ("GGAACC", [(0, 5), (1, 4)])
    ct = tmp_path / "x.ct"
    ct.write_text(
        "6 example\n1 G 0 2 6 1\n2 G 1 3 5 2\n3 A 2 4 0 3\n4 A 3 5 0 4\n5 C 4 6 2 5\n6 C 5 0 1 6\n"
    )
    assert read_ct(ct) == ("GGAACC", [(0, 5), (1, 4)])
    sniffed = tmp_path / "x.txt"
    sniffed.write_text(bpseq.read_text())
    assert read_structure_file(sniffed) == read_bpseq(bpseq)
    bad = tmp_path / "bad.bpseq"
    bad.write_text("1 G 6\n2 G 5\n3 A 0\n4 A 0\n5 C 2\n6 C 2\n")
    with pytest.raises(ValueError, match=r"bad.bpseq line 1: base 1 pairs with 6 but base 6"):
        read_bpseq(bad)
    short = tmp_path / "short.ct"
    short.write_text("4 t\n1 G 0 2 0 1\n")
    with pytest.raises(ValueError, match="announces 4 bases but the file holds 1"):
        read_ct(short)
