"""select --reduction sum|per-masked: the identity with a brute-force summed-loss gradient."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from bioprune.data.masking import IGNORE_INDEX, apply_mask, mask_draw
from bioprune.influence.params import select_parameters
from bioprune.selection.reduction import masked_counts, rescale_scores
from tests.test_influence_exact import (
    SEED,
    engine_scores,
    reference_fisher,
    small_model,
    weights_of,
)
from tests.test_selection import write_scores

pytestmark = pytest.mark.usefixtures("one_thread")


def test_masked_counts_are_the_masking_rule(tiny_corpus):
    lengths = tiny_corpus.lengths
    for seed, draws in ((0, 1), (7, 3)):
        got = masked_counts(lengths, seed, draws)
        for i in range(len(lengths)):
            for k in range(draws):
                d = mask_draw(
                    tiny_corpus.residues(i), tiny_corpus.alphabet, seed=seed, index=i, draw=k
                )
                assert got[i, k] == len(d.positions)


def summed_loss_score(model, corpus, names, index, draw, lambdas, fisher):
    """Brute force: sum_p g_p^2 / (F_p + lambda_p) with g the gradient of the SUMMED masked loss."""
    d = mask_draw(corpus.residues(index), corpus.alphabet, seed=SEED, index=index, draw=draw)
    x, y = apply_mask(corpus.framed(index), d)
    x, y = torch.from_numpy(x)[None], torch.from_numpy(y)[None]
    params = [model.get_parameter(n) for n in names]
    for p in params:
        p.requires_grad_(True)
    logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
    keep = y != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[keep], y[keep], reduction="sum")
    grads = torch.autograd.grad(loss, params)
    return sum(
        float((g.double() ** 2 / (fisher[n] + lambdas[n])).sum())
        for n, g in zip(names, grads, strict=True)
    ), len(d.positions)


def test_sum_reduction_is_the_summed_loss_influence(tmp_path):
    from bioprune.data.corpus import write_corpus
    from tests.conftest import random_sequences

    corpus = write_corpus(
        tmp_path / "c", random_sequences(5, "rna", seed=4, min_len=5, max_len=60), "rna"
    )
    model = small_model("rotary")
    names = select_parameters(model, "all").names
    fisher = reference_fisher(model, corpus, names, range(len(corpus)), 1)
    lambdas, weights = weights_of(fisher)
    engine, _, _ = engine_scores(model, corpus, names, [list(range(len(corpus)))], 1, weights)
    mean_scores = np.array([engine[i] for i in range(len(corpus))])
    summed = rescale_scores(mean_scores, corpus.lengths, SEED, 1, "sum")
    per_masked = rescale_scores(mean_scores, corpus.lengths, SEED, 1, "per-masked")
    counts = []
    for i in range(len(corpus)):
        want, n = summed_loss_score(model, corpus, names, i, 0, lambdas, fisher)
        counts.append(n)
        assert summed[i] == pytest.approx(want, rel=2e-4)
        assert per_masked[i] == pytest.approx(want / n, rel=2e-4)
    assert max(counts) >= 5  # the rescaling is far from trivial
    # the three orders differ: the length trend is what they change
    assert not np.array_equal(np.argsort(mean_scores), np.argsort(summed))


def test_several_draws_use_the_mean_factor():
    lengths = np.array([7, 20, 33, 100])
    n = masked_counts(lengths, 3, 4).astype(float)
    s = np.array([1.0, 2.0, np.nan, np.inf])
    got = rescale_scores(s, lengths, 3, 4, "sum")
    np.testing.assert_array_equal(got[:2], s[:2] * (n[:2] ** 2).mean(1))
    assert np.isnan(got[2]) and np.isinf(got[3])
    np.testing.assert_array_equal(rescale_scores(s, lengths, 3, 4, "mean"), s)
    with pytest.raises(ValueError, match="--reduction must be one of"):
        rescale_scores(s, lengths, 3, 4, "max")


def test_select_cli_reduction(tiny_corpus, tmp_path, monkeypatch, capsys):
    from tests.hostile import assert_one_line_error, run_cli

    scores = np.random.default_rng(2).lognormal(0, 1, len(tiny_corpus))
    meta = {"mask_seed": 5, "mask_draws": 1, "corpus_checksum": tiny_corpus.checksum}
    path = write_scores(tmp_path / "s.parquet", tiny_corpus, scores, metadata=meta)
    base = ["select", "--scores", path, "--method", "topk", "--budget", "6"]
    code, out = run_cli(
        *base, "--corpus", tiny_corpus.path, "--reduction", "sum", "--out", tmp_path / "a",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    sel = json.loads((tmp_path / "a" / "selection.json").read_text())
    assert sel["reduction"] == "sum" and sel["reduction_facts"] == {"mask_seed": 5, "mask_draws": 1}
    n = masked_counts(tiny_corpus.lengths, 5, 1)[:, 0].astype(float)
    want = sorted(np.argsort(-(scores * n**2), kind="stable")[:6].tolist())
    chosen = (tmp_path / "a" / "ids.txt").read_text().split()
    assert chosen == tiny_corpus.ids()[want].tolist()
    # inspect reads the same rescaled scores
    code, out = run_cli(
        "inspect", "--corpus", tiny_corpus.path, "--selection", tmp_path / "a", "--scores", path,
        "--out", tmp_path / "ins", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    summary = json.loads((tmp_path / "ins" / "summary.json").read_text())
    assert summary["scores"]["reduction"] == "sum"
    # without the corpus, or for a method without scores: one-line errors
    code, out = run_cli(
        *base, "--reduction", "sum", "--out", tmp_path / "b", monkeypatch=monkeypatch, capsys=capsys
    )
    assert_one_line_error(code, out, "--reduction sum", "--corpus")
    code, out = run_cli(
        "select", "--corpus", tiny_corpus.path, "--method", "random", "--budget", "3",
        "--reduction", "per-masked", "--out", tmp_path / "c", monkeypatch=monkeypatch,
        capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, out, "--reduction per-masked", "random")
    # a score file without the mask metadata names itself
    bare = write_scores(tmp_path / "bare.parquet", tiny_corpus, scores)
    code, out = run_cli(
        "select", "--scores", bare, "--corpus", tiny_corpus.path, "--method", "cci",
        "--budget", "3", "--reduction", "sum", "--out", tmp_path / "d",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, out, "bare.parquet", "mask_seed")


def test_inspect_refuses_a_damaged_reduction(tiny_corpus, tmp_path, monkeypatch, capsys):
    from tests.hostile import assert_one_line_error, run_cli

    scores = np.random.default_rng(2).lognormal(0, 1, len(tiny_corpus))
    meta = {"mask_seed": 5, "mask_draws": 1, "corpus_checksum": tiny_corpus.checksum}
    path = write_scores(tmp_path / "s.parquet", tiny_corpus, scores, metadata=meta)
    code, out = run_cli(
        "select", "--scores", path, "--corpus", tiny_corpus.path, "--method", "cci",
        "--budget", "6", "--reduction", "per-masked", "--out", tmp_path / "a",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    sel = tmp_path / "a" / "selection.json"
    for bad in ({"reduction": "max"}, {"reduction_facts": {"mask_seed": "x", "mask_draws": 1}}):
        meta = json.loads(sel.read_text())
        meta.update(bad)
        sel.write_text(json.dumps(meta))
        code, out = run_cli(
            "inspect", "--corpus", tiny_corpus.path, "--selection", tmp_path / "a",
            "--scores", path, "--out", tmp_path / "ins", monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert_one_line_error(code, out, "selection.json", "reduction")
