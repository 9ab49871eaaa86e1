"""The benchmarks' metric definitions (BEACON, PEER) against values computed by hand,
unknown (-1) map cells, the validation-chosen base-pair threshold and structure decoding."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from bioprune.evaluation import metrics as M
from bioprune.evaluation.protocols import select_metrics
from bioprune.evaluation.structure import canonical_pair_mask
from tests.test_evaluate import _hairpin, _micro_model, _splits, _write_task

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- BEACON contact precision ---------------------------------------------------------


def _contact_case():
    """Two sequences; the numbers below are worked out by hand in the test."""
    p1, t1 = np.zeros((26, 26)), np.zeros((26, 26))
    # long range for BEACON is j - i >= 23: (0,23) (0,24) (0,25) (1,24) (1,25) (2,25)
    for (i, j), prob, truth in [
        ((0, 23), 0.9, 1),
        ((0, 24), 0.8, 0),
        ((0, 25), 0.7, -1),  # unknown: never ranked
        ((1, 24), 0.6, 1),
        ((1, 25), 0.4, 1),  # true but below 0.5: not counted
        ((2, 25), 0.3, 0),
        ((0, 22), 0.99, 1),  # j - i = 22: not long range
    ]:
        p1[i, j] = p1[j, i] = prob
        t1[i, j] = t1[j, i] = truth
    p2, t2 = np.zeros((24, 24)), np.zeros((24, 24))
    p2[0, 23] = p2[23, 0] = 0.7  # the only long-range cell; a false contact above 0.5
    return [p1, p2], [t1, t2]


def test_beacon_contact_precision_thresholded_and_pooled_by_hand():
    probs, truths = _contact_case()
    got = M.contact_precision_beacon(probs, truths)
    # seq 1, known long-range cells by probability: .9 T, .8 F, .6 T, .4 T, .3 F
    #   top-L (26), L/2 (13), L/5 (5): all five; counted (> .5): .9 T, .8 F, .6 T -> TP 2, FP 1
    #   L/10 (2): .9 T, .8 F -> TP 1, FP 1
    # seq 2: L // k >= 1 for every k; .7 F counted -> FP 1
    assert got["precision_L_beacon"] == pytest.approx(2 / 4)
    assert got["precision_L/2_beacon"] == pytest.approx(2 / 4)
    assert got["precision_L/5_beacon"] == pytest.approx(2 / 4)
    assert got["precision_L/10_beacon"] == pytest.approx(1 / 3)
    # bioprune's per-sequence, unthresholded variant (j - i >= 24) differs on the same input:
    # seq 1's known cells with j - i >= 24: .8 F, .4 T (top-L takes both) -> 1/2;
    # seq 2 has no cell with j - i >= 24
    assert M.contact_precision(probs[0], truths[0])["precision_L"] == pytest.approx(1 / 2)
    assert M.contact_precision(probs[1], truths[1]) is None


def test_beacon_contact_precision_nothing_counted_is_nan():
    probs, truths = _contact_case()
    low = [p * 0.1 for p in probs]  # nothing above 0.5
    assert all(math.isnan(v) for v in M.contact_precision_beacon(low, truths).values())


# ---- BEACON distance ------------------------------------------------------------------


def test_beacon_distance_pearson_squared_and_mse_skip_unknown_cells():
    truth = np.array([[0.0, 1.0], [2.0, -1.0]])
    pred = np.array([[0.0, 2.0], [1.0, 50.0]])  # the -1 cell's prediction must not count
    got = M.distance_scores_beacon([pred], [truth])
    # known cells: y = (0, 1, 2), p = (0, 2, 1); means 1 and 1; cov 1, var 2 and 2
    # -> r = 1/2, r^2 = 1/4; mse = (0 + 1 + 1) / 3
    assert got["r2_beacon"] == pytest.approx(0.25)
    assert got["mse_beacon"] == pytest.approx(2 / 3)
    # pooled over maps, full L x L (both triangles and the diagonal): p = 2y + 1 -> r^2 = 1
    t2 = np.array([[0.0, 3.0, -1.0], [3.0, 0.0, 4.0], [-1.0, 4.0, 0.0]])
    got = M.distance_scores_beacon([2 * t2 + 1], [t2])
    assert got["r2_beacon"] == pytest.approx(1.0)
    known = t2[t2 >= 0]
    assert got["mse_beacon"] == pytest.approx(np.mean((known + 1) ** 2))


# ---- BEACON bpRNA ---------------------------------------------------------------------


def test_beacon_pair_scores_pool_cells_over_sequences():
    true = [[(0, 5), (1, 4)], [(0, 9), (1, 8), (2, 7)]]
    pred = [[(0, 5), (2, 7)], [(0, 9), (1, 8), (2, 7), (3, 6)]]
    got = M.pooled_pair_scores(true, pred)
    # TP 1 + 3, FP 1 + 1, FN 1 + 0 -> P 4/6, R 4/5, F1 8/11
    assert got["precision_beacon"] == pytest.approx(4 / 6)
    assert got["recall_beacon"] == pytest.approx(4 / 5)
    assert got["f1_beacon"] == pytest.approx(8 / 11)
    # BEACON's own computation: sklearn over every cell of the thresholded L x L matrices
    from sklearn.metrics import f1_score, precision_score

    ys, ps = [], []
    for t, p, n in zip(true, pred, (8, 10), strict=True):
        a, b = np.zeros((n, n), int), np.zeros((n, n), int)
        for i, j in t:
            a[i, j] = a[j, i] = 1
        for i, j in p:
            b[i, j] = b[j, i] = 1
        ys.append(a.ravel())
        ps.append(b.ravel())
    y, p = np.concatenate(ys), np.concatenate(ps)
    assert got["f1_beacon"] == pytest.approx(f1_score(y, p))
    assert got["precision_beacon"] == pytest.approx(precision_score(y, p))
    # bioprune's per-sequence mean differs: (1/2 + 6/7) / 2
    per_seq = [M.base_pair_scores(t, p, 10)["f1"] for t, p in zip(true, pred, strict=True)]
    assert np.mean(per_seq) == pytest.approx((0.5 + 6 / 7) / 2)


# ---- BEACON modification, PEER, classification ----------------------------------------


def test_beacon_mean_auc_counts_one_class_labels_as_half_and_mean_mcc():
    y = np.array([[0, 1, 0], [1, 0, 0], [1, 1, 0], [0, 0, 0]])
    s = np.array([[0.1, 0.6, 0.5], [0.9, 0.7, 0.5], [0.8, 0.2, 0.5], [0.3, 0.1, 0.5]])
    # label 0: AUC 1; label 1: 2 of 4 pairs ordered -> 0.5; label 2: one class -> 0.5
    assert M.mean_auc_beacon(y, s) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert M.mean_auc(y, s) == pytest.approx(0.75)  # bioprune's: label 2 left out
    # MCC at > 0.5: label 0 predicted exactly (1); label 1 TP 1 FP 1 FN 1 TN 1 (0);
    # label 2: nothing predicted, one class (0, scikit-learn's convention)
    assert M.mean_mcc(y, s) == pytest.approx(1 / 3)


def test_binary_mcc_and_aupr_by_hand():
    # TP 1, FN 1, TN 2, FP 0: (1*2 - 0*1) / sqrt(1 * 2 * 2 * 3)
    assert M.mcc([1, 1, 0, 0], [1, 0, 0, 0]) == pytest.approx(2 / math.sqrt(12))
    # ranked .9 (+) P 1 R 1/2; .8 (-); .7 (+) P 2/3 R 1 -> AP = 1/2 * 1 + 1/2 * 2/3
    y, s = [1, 0, 1, 0, 0], np.array([0.9, 0.8, 0.7, 0.2, 0.1])
    assert M.average_precision(y, s) == pytest.approx(5 / 6)


def test_per_protein_macro_accuracy_skips_masked_residues():
    y = [np.array([0, 1, 2, -1]), np.array([1, 1]), np.array([-1, -1])]
    p = [np.array([0, 1, 0, 2]), np.array([1, 1]), np.array([0, 0])]
    # protein 1: 2 of 3 scored residues; protein 2: 2 of 2; protein 3: none scored (skipped)
    assert M.per_sequence_accuracy(y, p) == pytest.approx((2 / 3 + 1) / 2)
    flat_y, flat_p = np.concatenate(y), np.concatenate(p)
    keep = flat_y >= 0
    assert M.accuracy(flat_y[keep], flat_p[keep]) == pytest.approx(4 / 5)  # micro


def test_benchmark_selects_its_metric():
    assert select_metrics("distance_map", "beacon")[1:] == ("r2_beacon", True)
    assert select_metrics("distance_map", None)[1:] == ("mse", False)
    assert select_metrics("contact_map", "beacon")[1] == "precision_L_beacon"
    assert select_metrics("pair_regression", "peer")[1:] == ("rmse", False)
    assert select_metrics("multilabel", "beacon")[0] == ("mean_auc_beacon", "mean_mcc")


# ---- threshold and decoding -------------------------------------------------------------


def test_best_threshold_by_hand():
    candidates = [(np.array([3.0, 2.0, 1.0]), np.array([True, False, True])),
                  (np.array([0.5]), np.array([False]))]  # fmt: skip
    counts = [2, 0]
    # cuts -0.5, 0.75, 1.5, 2.5 -> pooled F1 4/6, 4/5, 2/4, 2/3
    assert M.best_threshold(candidates, counts, pooled=True) == pytest.approx((0.75, 0.8))
    # per sequence (seq 2 scores 1 when it predicts nothing): 0.4, 0.9, 0.75, 5/6
    assert M.best_threshold(candidates, counts, pooled=False) == pytest.approx((0.75, 0.9))


def test_best_threshold_matches_brute_force_decoding():
    rng = np.random.default_rng(0)
    logits, truths, seqs = [], [], []
    for _ in range(4):
        n = int(rng.integers(12, 20))
        a = rng.normal(size=(n, n))
        logits.append((a + a.T) / 2)
        truths.append([(i, n - 1 - i) for i in range(3)])
        seqs.append("".join(rng.choice(list("ACGU"), n)))
    for pooled in (True, False):
        for one_partner, min_loop, canonical in ((False, 0, False), (True, 3, True)):
            allowed = [canonical_pair_mask(s) if canonical else None for s in seqs]
            cands, counts = [], []
            for lg, t, al in zip(logits, truths, allowed, strict=True):
                pairs, scores = M.decode_pairs(lg, -np.inf, one_partner, min_loop=min_loop,
                                               allowed=al, with_scores=True)  # fmt: skip
                cands.append((scores, np.array([p in set(t) for p in pairs])))
                counts.append(len(t))
            cut, f1 = M.best_threshold(cands, counts, pooled=pooled)

            def score_at(c, pooled=pooled, one_partner=one_partner, min_loop=min_loop,
                         allowed=allowed):  # fmt: skip
                preds = [M.decode_pairs(lg, c, one_partner, min_loop=min_loop, allowed=al)
                         for lg, al in zip(logits, allowed, strict=True)]  # fmt: skip
                if pooled:
                    return M.pooled_pair_scores(truths, preds)["f1_beacon"]
                per_seq = [M.base_pair_scores(t, p, len(lg))["f1"]
                           for t, p, lg in zip(truths, preds, logits, strict=True)]  # fmt: skip
                return np.mean(per_seq)

            assert score_at(cut) == pytest.approx(f1)
            values = np.unique(np.concatenate([c[0] for c in cands]))
            brute = max(score_at(c) for c in np.concatenate([[values[0] - 1], values]))
            assert f1 == pytest.approx(brute)


def test_best_threshold_tries_every_top_score_of_a_large_set():
    rng = np.random.default_rng(1)
    scores = rng.normal(size=20_000)
    hit = np.zeros(scores.size, bool)
    hit[np.argsort(-scores)[:7]] = True  # the 7 best-scored cells are the true pairs
    cut, f1 = M.best_threshold([(scores, hit)], [7], pooled=True, max_candidates=256)
    assert f1 == pytest.approx(1.0)
    assert np.sum(scores > cut) == 7


def test_decoding_respects_its_constraints():
    rng = np.random.default_rng(3)
    n = 40
    seq = "".join(rng.choice(list("ACGUN"), n))
    a = rng.random((n, n))
    prob = (a + a.T) / 2
    pairs = M.decode_pairs(prob, 0.2, True, min_loop=3, allowed=canonical_pair_mask(seq))
    assert pairs
    bases = [b for p in pairs for b in p]
    assert len(bases) == len(set(bases))  # at most one partner per base
    assert all(j - i > 3 for i, j in pairs)  # hairpin loops of >= 3 bases
    assert all(seq[i] + seq[j] in {"AU", "UA", "GC", "CG", "GU", "UG"} for i, j in pairs)
    # greedy by probability: a pair left out is blocked by a more probable chosen pair
    taken = {b: prob[i, j] for i, j in pairs for b in (i, j)}
    for i in range(n):
        for j in range(i + 4, n):
            ok = seq[i] + seq[j] in {"AU", "UA", "GC", "CG", "GU", "UG"}
            if ok and prob[i, j] > 0.2 and (i, j) not in pairs:
                assert max(taken.get(i, -1), taken.get(j, -1)) >= prob[i, j]
    # the greedy pass runs in score order, so a higher threshold keeps a subset
    full, scores = M.decode_pairs(prob, -1.0, True, min_loop=3,
                                  allowed=canonical_pair_mask(seq), with_scores=True)  # fmt: skip
    assert pairs == {p for p, s in zip(full, scores, strict=True) if s > 0.2}
    assert canonical_pair_mask("GTN")[0, 1] and not canonical_pair_mask("GTN")[1, 2]


# ---- -1 cells take no part in the loss ----------------------------------------------------


@pytest.mark.parametrize("kind", ["distance_map", "contact_map"])
def test_unknown_cells_do_not_affect_loss_or_gradients(kind):
    from types import SimpleNamespace

    import torch

    from bioprune.evaluation.kinds import Standardizer as _Standardizer
    from bioprune.evaluation.kinds import get_kind
    from bioprune.evaluation.tasks import Split

    rng = np.random.default_rng(0)
    n = 8
    truth = np.abs(rng.normal(size=(n, n))).astype(np.float32) + 1
    truth = (truth + truth.T) / 2
    if kind == "contact_map":
        truth = (truth > 1.6).astype(np.float32)
    unknown = np.zeros((n, n), bool)
    unknown[1, 5] = unknown[5, 1] = unknown[0, 7] = unknown[7, 0] = True
    truth[unknown] = -1
    split = Split("train", Path("train.csv"), [np.zeros(n, np.uint8)], [truth])
    runner = SimpleNamespace(device=torch.device("cpu"), pos_weight=3.0)
    known = truth[truth >= 0]
    runner.scale = _Standardizer.fit(known) if kind == "distance_map" else _Standardizer()

    def loss_and_grad(out_np):
        out = torch.tensor(out_np[None], requires_grad=True)
        loss = get_kind(kind).loss(runner, out, split, np.array([0]))
        loss.backward()
        return loss.item(), out.grad[0].numpy()

    out = rng.normal(size=(n, n)).astype(np.float32)
    loss, grad = loss_and_grad(out)
    assert np.all(grad[unknown] == 0)
    changed = out.copy()
    changed[unknown] = 1e3  # any prediction on an unknown cell
    assert loss_and_grad(changed)[0] == pytest.approx(loss)
    # the reference: the loss over the known i < j cells only
    iu, ju = np.triu_indices(n, k=1)
    keep = truth[iu, ju] >= 0
    o, t = torch.tensor(out[iu, ju][keep]), torch.tensor(truth[iu, ju][keep])
    if kind == "distance_map":
        ref = torch.nn.functional.mse_loss(o, (t - runner.scale.mean) / runner.scale.std)
    else:
        ref = torch.nn.functional.binary_cross_entropy_with_logits(
            o, t, pos_weight=torch.tensor(3.0)
        )
    assert loss == pytest.approx(float(ref), rel=1e-5)


# ---- end to end ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rna_model(tmp_path_factory):
    return _micro_model(tmp_path_factory.mktemp("micro") / "rna", "rna", 123)


@pytest.fixture(scope="module")
def ss_task(tmp_path_factory):
    def make(rng):
        seq, structure = _hairpin(rng)
        return {"sequence": seq, "structure": structure}

    return _write_task(tmp_path_factory.mktemp("ss") / "ss", _splits(make, n=12))


FAST = {"seeds": [0], "epochs": 1, "batch_size": 8, "show_progress": False, "lr": 1e-2}


def test_validation_threshold_is_recorded_and_used(rna_model, ss_task):
    from bioprune.evaluation.downstream import evaluate_model

    chosen = evaluate_model(rna_model, ss_task, **FAST)
    thr = chosen["runs"][0]["threshold"]
    assert thr["chosen_on"] == "valid" and 0 < thr["probability"] < 1
    assert chosen["protocol"]["threshold"]["mode"] == "valid"
    assert chosen["runs"][0]["history"][0]["threshold"] == thr["probability"]
    # the same run with that probability fixed scores identically: the threshold was used
    fixed = evaluate_model(rna_model, ss_task, threshold=thr["probability"], **FAST)
    assert fixed["runs"][0]["threshold"]["chosen_on"] == "fixed"
    assert fixed["runs"][0]["test"] == chosen["runs"][0]["test"]
    # and it maximises the valid F1: no worse than the fixed 0.5
    half = evaluate_model(rna_model, ss_task, threshold=0.5, **FAST)
    assert chosen["runs"][0]["valid"]["f1"] >= half["runs"][0]["valid"]["f1"]
    # one seed: n=1, no std
    assert chosen["metrics"]["f1"]["n"] == 1 and chosen["metrics"]["f1"]["std"] is None
    assert "f1_beacon" in chosen["metric_definitions"]


def test_decode_option_and_benchmark_selection(rna_model, ss_task, tmp_path):
    import shutil

    from bioprune.evaluation.downstream import evaluate_model

    res = evaluate_model(rna_model, ss_task, decode=True, **FAST)
    assert res["protocol"]["decoding"] == {
        "one_partner_per_base": True, "min_loop": 3, "canonical_pairs_only": True
    }  # fmt: skip
    assert res["primary_metric"]["name"] == "f1"
    task = shutil.copytree(ss_task, tmp_path / "beacon_ss")
    (task / "task.yaml").write_text("benchmark: beacon\n")
    res = evaluate_model(rna_model, task, **{**FAST, "epochs": 2})
    assert res["task"]["benchmark"] == "beacon"
    assert res["primary_metric"]["name"] == "f1_beacon"
    assert res["headline_metrics"] == ["f1_beacon", "precision_beacon", "recall_beacon"]
    assert res["protocol"]["pos_weight"] == 1.0  # BEACON's plain binary cross-entropy
    run = res["runs"][0]
    best = max(h["f1_beacon"] for h in run["history"])
    assert run["valid"]["f1_beacon"] == pytest.approx(best)


def test_single_seed_is_shown_as_n1_not_zero_std():
    from bioprune.cli.evaluate import format_summary
    from bioprune.report.study import Cell

    assert format_summary({"per_seed": [0.5], "n": 1, "mean": 0.5, "std": None}) == "0.5000 (n=1)"
    assert format_summary({"per_seed": [0.5, 0.7], "n": 2, "mean": 0.6, "std": 0.1414}) == (
        "0.6000 ± 0.1414 (n=2)"
    )
    assert Cell([0.5], 0.5, 0.0).text() == "0.500 (n=1)"  # an older RESULTS.json's 0.0
    assert "±" not in Cell([0.5], 0.5, None).text()
