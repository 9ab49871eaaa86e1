"""The factored mode (rank-one weights, Gram-form norms) against a brute force.

The reference is the one of ``test_influence_exact``: plain autograd, one example
and draw at a time, every scored tensor's gradient, then ``sum g^2 * w`` with the
*same* weights as the engine: ``u v^T`` for the factored matrices, ``1/(F + lambda)``
for the others. Both forms of the engine (Gram and rescaled ``G``) must agree with it
to float tolerance, with padding and K > 1 mask draws.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from bioprune.influence.engine import MLMGradientRunner
from bioprune.influence.factored import (
    FactoredSelfInfluence,
    factorable_tensors,
    fit_rank_one,
)
from bioprune.influence.params import select_parameters
from tests.hostile import assert_one_line_error, run_cli
from tests.test_influence_cli import COMMON, _kill_then_resume, ok, save_small_model

# Fixtures: one thread in-process and in subprocesses (module-scoped, autouse), the
# random corpus and the position kinds of the exact tests.
from tests.test_influence_cli import _one_thread as _one_thread
from tests.test_influence_exact import (
    ALL,
    BATCHES,
    CPU,
    SEED,
    engine_fisher,
    reference_gradients,
    small_model,
    weights_of,
)
from tests.test_influence_exact import corpus as corpus
from tests.test_influence_exact import kind as kind


def factored_setup(model, corpus, names):
    """Engine Fisher -> exact weights for every tensor, rank-one fits for the matrices."""
    fisher, _ = engine_fisher(model, corpus, names, BATCHES, 1)
    lambdas, weights = weights_of(fisher)
    factors = {}
    for n in factorable_tensors(model, names):
        fit = fit_rank_one(fisher[n].float(), lambdas[n])
        factors[n] = (fit.u, fit.v)
    effective = dict(weights)
    for n, (u, v) in factors.items():
        effective[n] = torch.outer(u.double(), v.double())
    exact_weights = {n: w for n, w in weights.items() if n not in factors}
    return exact_weights, factors, effective


def brute_force(model, corpus, names, indices, draws, effective):
    out = []
    for i in indices:
        s = 0.0
        for k in range(draws):
            _, g = reference_gradients(model, corpus, names, int(i), k)
            s += sum(float((g[n] ** 2 * effective[n].double()).sum()) for n in names) / draws
        out.append(s)
    return np.array(out)


def factored_engine(model, corpus, names, batches, draws, weights, factors, gram, chunk=None):
    tracker = FactoredSelfInfluence(
        model, names, weights=weights, factors=factors, gram=gram, max_chunk_elements=chunk
    )
    got = {}
    with tracker:
        runner = MLMGradientRunner(
            model, corpus.alphabet, corpus, tracker, seed=SEED, draws=draws, device=CPU
        )
        for b in batches:
            res = runner.run_batch(np.asarray(b))
            assert not res.nonfinite.any()
            got.update({int(i): res.score[j] for j, i in enumerate(b)})
        assert tracker.fired == set(names)
    return np.array([got[i] for i in sorted(got)]), dict(tracker.branch_counts)


@pytest.mark.parametrize("draws", [1, 2])
def test_both_forms_match_brute_force_with_the_same_factors(corpus, kind, draws):
    model = small_model(kind)
    names = select_parameters(model, "all").names
    weights, factors, effective = factored_setup(model, corpus, names)
    assert len(factors) == 6 * 2 + 1  # q, k, v, out, ffn in/out per layer; the LM-head dense
    want = brute_force(model, corpus, names, ALL, draws, effective)
    counts = {}
    for gram in ("gram", "matrix", "auto"):
        got, counts[gram] = factored_engine(
            model, corpus, names, BATCHES, draws, weights, factors, gram
        )
        np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=gram)
    assert counts["gram"]["matrix"] == 0 and counts["gram"]["gram"] > 0
    assert counts["matrix"]["gram"] == 0 and counts["matrix"]["matrix"] > 0
    # auto: the LM head and the gathered last layer see few rows (Gram), the early
    # layers every padded position (G) on these hidden-32 matrices.
    assert counts["auto"]["gram"] > 0 and counts["auto"]["matrix"] > 0


def test_small_blocks_and_layer_subsets_match_brute_force(corpus):
    """Blocks of one example at a time, and --params restricted to the LM head and one layer."""
    model = small_model("rotary")
    for spec in ("all", "lm_head", "layers:1:2"):
        names = select_parameters(model, spec).names
        weights, factors, effective = factored_setup(model, corpus, names)
        assert factors
        want = brute_force(model, corpus, names, ALL, 1, effective)
        for gram in ("gram", "matrix"):
            got, _ = factored_engine(
                model, corpus, names, BATCHES, 1, weights, factors, gram, chunk=7
            )
            np.testing.assert_allclose(got, want, rtol=1e-4, err_msg=f"{spec} {gram}")


def test_score_does_not_depend_on_batch_neighbours(corpus):
    model = small_model("absolute")
    names = select_parameters(model, "all").names
    weights, factors, _ = factored_setup(model, corpus, names)
    short = int(np.argmin(corpus.lengths))
    longer = [int(i) for i in np.argsort(-corpus.lengths)[:5]]
    for gram in ("gram", "matrix"):
        alone, _ = factored_engine(model, corpus, names, [[short]], 2, weights, factors, gram)
        crowd, _ = factored_engine(
            model, corpus, names, [[*longer, short]], 2, weights, factors, gram
        )
        assert crowd[sorted([*longer, short]).index(short)] == pytest.approx(alone[0], rel=1e-5)


def test_factorable_tensors_are_single_use_linear_weights():
    model = small_model("absolute")
    names = select_parameters(model, "all").names
    chosen = factorable_tensors(model, names)
    assert "esm.embeddings.word_embeddings.weight" not in chosen  # tied to the decoder
    assert "esm.embeddings.position_embeddings.weight" not in chosen
    assert "lm_head.dense.weight" in chosen
    assert all(n.endswith(".weight") and model.get_parameter(n).ndim == 2 for n in chosen)
    assert not any("LayerNorm" in n or "layer_norm" in n for n in chosen)
    with pytest.raises(ValueError, match=r"exactly one nn\.Linear"):
        emb = "esm.embeddings.word_embeddings.weight"
        shape = model.get_parameter(emb).shape
        with FactoredSelfInfluence(
            model,
            [emb],
            weights={},
            factors={emb: (torch.ones(shape[0]), torch.ones(shape[1]))},
        ):
            pass


def test_fit_recovers_an_exactly_rank_one_weight():
    g = torch.Generator().manual_seed(0)
    u0 = torch.rand(7, generator=g, dtype=torch.float64) + 0.5
    v0 = torch.rand(5, generator=g, dtype=torch.float64) + 0.5
    lam = 0.01
    fisher = 1.0 / torch.outer(u0, v0) - lam  # 1/(F + lambda) = u0 v0^T exactly
    assert (fisher > 0).all()
    fit = fit_rank_one(fisher, lam)
    np.testing.assert_allclose(torch.outer(fit.u, fit.v).numpy(), torch.outer(u0, v0), rtol=1e-5)
    assert fit.score_rel_error < 1e-5 and fit.rms_log_error < 1e-5


def test_fit_is_unbiased_on_average_and_reports_its_errors():
    """sum F u v^T = sum F w; the recorded errors are the defined quantities; zero-Fisher
    rows get finite, positive factors; entries dominated by damping weigh little."""
    g = torch.Generator().manual_seed(1)
    r = torch.rand(12, generator=g, dtype=torch.float64) ** 3
    c = torch.rand(9, generator=g, dtype=torch.float64) ** 3
    noise = torch.exp(0.3 * torch.randn(12, 9, generator=g, dtype=torch.float64))
    fisher = torch.outer(r, c) * noise
    fisher[3] = 0.0  # a row the loss never reaches
    lam = 1e-3 * float(fisher.mean())
    fit = fit_rank_one(fisher, lam)
    w = 1.0 / (fisher + lam)
    approx = torch.outer(fit.u.double(), fit.v.double())
    assert torch.isfinite(approx).all() and (approx > 0).all()
    assert float((fisher * approx).sum()) == pytest.approx(float((fisher * w).sum()), rel=1e-5)
    want = float((fisher * (approx - w).abs()).sum() / (fisher * w).sum())
    assert fit.score_rel_error == pytest.approx(want, rel=1e-4)
    assert fit.max_abs_log_error == pytest.approx(float((approx / w).log().abs().max()), rel=1e-4)
    # Better for the score than an unweighted log fit (row + column means of log w).
    logw = w.log()
    plain = torch.exp(logw.mean(1, keepdim=True) + logw.mean(0, keepdim=True) - logw.mean())
    plain = plain * (fisher * w).sum() / (fisher * plain).sum()
    plain_err = float((fisher * (plain - w).abs()).sum() / (fisher * w).sum())
    assert fit.score_rel_error < plain_err
    with pytest.raises(ValueError):
        fit_rank_one(fisher[0], lam)
    with pytest.raises(ValueError):
        fit_rank_one(fisher, 0.0)


# ----------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    return save_small_model(tmp_path_factory.mktemp("fact") / "model")


@pytest.fixture(scope="module")
def factored_fisher(tmp_path_factory, cli_model, tiny_corpus):
    out = tmp_path_factory.mktemp("factF") / "F.safetensors"
    args = ["fisher", "--model", str(cli_model), "--corpus", str(tiny_corpus.path)]
    args += ["--subset-size", "0.5", "--seed", "7", "--out", str(out), "--fisher-mode", "factored"]
    result = ok(args + COMMON)
    assert "factored" in result.output
    return out


@pytest.fixture(scope="module")
def factored_scores(tmp_path_factory, cli_model, tiny_corpus, factored_fisher):
    out = tmp_path_factory.mktemp("factS") / "S.parquet"
    args = ["score", "--model", str(cli_model), "--corpus", str(tiny_corpus.path)]
    args += ["--fisher", str(factored_fisher), "--out", str(out), "--fisher-mode", "factored"]
    ok(args + COMMON)
    return out


def test_factored_fisher_file_records_factors_and_fit_errors(factored_fisher, cli_model):
    from bioprune.influence.fisher import load_fisher
    from bioprune.models.loading import load_masked_lm

    data = load_fisher(factored_fisher)
    model, _ = load_masked_lm(cli_model, device=CPU)
    assert set(data.factors) == set(factorable_tensors(model, list(data.tensors)))
    rec = data.meta["factored"]
    assert "not for the diagonal Fisher" in rec["note"]
    assert set(rec["tensors"]) == set(data.factors)
    assert set(rec["exact"]) == set(data.tensors) - set(data.factors)
    for name, (u, v) in data.factors.items():
        errs = rec["tensors"][name]
        assert set(errs) == {"score_rel_error", "rms_log_error", "max_abs_log_error"}
        fit = fit_rank_one(data.tensors[name], data.lambdas[name])
        assert torch.allclose(fit.u, u) and torch.allclose(fit.v, v)
        assert errs["score_rel_error"] == pytest.approx(fit.score_rel_error)
    assert data.meta["config"]["fisher_mode"] == "factored"


def test_factored_scores_file_says_what_it_is(
    factored_scores, factored_fisher, cli_model, tiny_corpus, tmp_path
):
    from bioprune.influence.score import read_scores_meta

    meta = read_scores_meta(factored_scores)
    assert meta["fisher_mode"]["mode"] == "factored"
    assert "not for the diagonal Fisher" in meta["fisher_mode"]["note"]
    assert "not exact for the diagonal Fisher" in meta["score"]
    assert set(meta["fisher_mode"]["fit"]) == set(meta["fisher_mode"]["factored"])
    factored = pq.read_table(factored_scores).column("score").to_numpy()
    assert np.isfinite(factored).all() and (factored > 0).all()
    # The exact mode on the same file ignores the factors and gives other (exact) scores.
    exact_out = tmp_path / "exact.parquet"
    args = ["score", "--model", str(cli_model), "--corpus", str(tiny_corpus.path)]
    ok([*args, "--fisher", str(factored_fisher), "--out", str(exact_out), *COMMON])
    assert "fisher_mode" not in read_scores_meta(exact_out)
    exact = pq.read_table(exact_out).column("score").to_numpy()
    assert not np.allclose(exact, factored, rtol=1e-3)
    assert np.corrcoef(exact, factored)[0, 1] > 0.5


def test_factored_resume_after_kill_and_one_part_equal_many(
    tmp_path, cli_model, tiny_corpus, factored_fisher, factored_scores
):
    out = tmp_path / "S.parquet"
    args = ["score", "--model", str(cli_model), "--corpus", str(tiny_corpus.path)]
    args += ["--fisher", str(factored_fisher), "--fisher-mode", "factored", "--out", str(out)]
    _kill_then_resume(tmp_path, [*args, *COMMON], out, after=2)
    assert pq.read_table(out).equals(pq.read_table(factored_scores))
    # An exact run cannot resume a factored one's parts (the run key differs).
    one = tmp_path / "one.parquet"
    common_one = ["--batch-tokens", "256", "--part-batches", "1000", "--device", "cpu"]
    common_one += ["--no-progress"]  # one part instead of one per batch
    ok([*args[:-1], str(one), *common_one])
    got = pq.read_table(one).column("score").to_numpy()
    want = pq.read_table(factored_scores).column("score").to_numpy()
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_factored_score_needs_a_factored_fisher(
    tmp_path, cli_model, tiny_corpus, capsys, monkeypatch
):
    plain = tmp_path / "F.safetensors"
    args = ["fisher", "--model", str(cli_model), "--corpus", str(tiny_corpus.path)]
    ok([*args, "--subset-size", "8", "--out", str(plain), *COMMON])
    code, err = run_cli(
        "score", "--model", cli_model, "--corpus", tiny_corpus.path, "--fisher", plain,
        "--out", tmp_path / "S.parquet", "--fisher-mode", "factored", *COMMON,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, plain, "no rank-one factors", "--fisher-mode factored")
    code, err = run_cli(
        "score", "--model", cli_model, "--corpus", tiny_corpus.path, "--fisher", plain,
        "--out", tmp_path / "S.parquet", "--fisher-mode", "diagonal", *COMMON,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "--fisher-mode", "exact or factored")
    assert not (tmp_path / "S.parquet").exists()


def test_damaged_factors_are_refused_naming_the_file(tmp_path, factored_fisher):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from bioprune.errors import InputError
    from bioprune.influence.fisher import load_fisher

    with safe_open(str(factored_fisher), "pt") as fh:
        meta = fh.metadata()
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    key = next(k for k in tensors if k.startswith("factor_u/"))
    bad = dict(tensors)
    bad[key] = -bad[key]
    save_file(bad, str(tmp_path / "neg.safetensors"), metadata=meta)
    with pytest.raises(InputError, match="non-positive"):
        load_fisher(tmp_path / "neg.safetensors")
    del bad[key]
    save_file(bad, str(tmp_path / "half.safetensors"), metadata=meta)
    with pytest.raises(InputError, match="damaged factors"):
        load_fisher(tmp_path / "half.safetensors")
    no_record = {k: v for k, v in meta.items() if k != "factored"}
    save_file(tensors, str(tmp_path / "norec.safetensors"), metadata=no_record)
    with pytest.raises(InputError, match="factored record"):
        load_fisher(tmp_path / "norec.safetensors")
    assert json.loads(meta["factored"])["tensors"]
