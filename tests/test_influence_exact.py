"""The hook-based influence engine against a brute-force reference.

The reference is plain autograd, one example and one draw at a time, over all
scored tensors (``torch.autograd.grad(loss_z, params)``), then squared,
averaged (eq. 9) or divided by ``F + lambda`` (eq. 11). Small models (2
layers, hidden 32) keep it fast; both position types are covered: rotary
(tiny/small/ESM-2 presets) and learned absolute positions with a layer norm
before the encoder (RNA-FM).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bioprune.data.alphabet import get_alphabet
from bioprune.data.corpus import write_corpus
from bioprune.data.masking import IGNORE_INDEX, apply_mask, mask_draw
from bioprune.influence.engine import MLMGradientRunner
from bioprune.influence.hooks import FisherReduction, PerExampleGradients, SelfInfluenceReduction
from bioprune.influence.params import select_parameters
from tests.conftest import random_sequences

SEED = 3
CPU = torch.device("cpu")


pytestmark = pytest.mark.usefixtures("one_thread")


def small_model(kind: str, seed: int = 0):
    """A 2-layer, hidden-32 EsmForMaskedLM on the RNA alphabet (rotary or absolute)."""
    from transformers import EsmForMaskedLM

    from bioprune.models.presets import ModelPreset, build_config

    preset = ModelPreset("test", 2, 32, 4, 64, kind, kind == "absolute", "tests")
    torch.manual_seed(seed)
    model = EsmForMaskedLM(build_config(preset, get_alphabet("rna"))).eval()
    # Random, non-zero LM-head bias and layer-norm affine terms so that every
    # tensor's gradient is generic (initialisation sets them to 0 / 1).
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    return model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("exact") / "corpus"
    return write_corpus(path, random_sequences(24, "rna", seed=1, min_len=3, max_len=40), "rna")


@pytest.fixture(scope="module", params=["rotary", "absolute"])
def kind(request):
    return request.param


def reference_gradients(model, corpus, names, index: int, draw: int, seed: int = SEED):
    """Loss and per-tensor gradients of one example and draw, by plain autograd."""
    a = corpus.alphabet
    d = mask_draw(corpus.residues(index), a, seed=seed, index=index, draw=draw)
    x, y = apply_mask(corpus.framed(index), d)
    x = torch.from_numpy(x)[None]
    y = torch.from_numpy(y)[None]
    params = [model.get_parameter(n) for n in names]
    saved = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(True)
    logits = model(input_ids=x, attention_mask=torch.ones_like(x)).logits
    keep = y != IGNORE_INDEX
    loss = torch.nn.functional.cross_entropy(logits[keep], y[keep])
    grads = torch.autograd.grad(loss, params)
    for p, s in zip(params, saved, strict=True):
        p.requires_grad_(s)
    return float(loss.detach()), {n: g.detach().double() for n, g in zip(names, grads, strict=True)}


def reference_fisher(model, corpus, names, indices, draws):
    f = {n: torch.zeros(model.get_parameter(n).shape, dtype=torch.float64) for n in names}
    for i in indices:
        for k in range(draws):
            _, g = reference_gradients(model, corpus, names, int(i), k)
            for n in names:
                f[n] += g[n] ** 2
    return {n: v / (len(indices) * draws) for n, v in f.items()}


def reference_scores(model, corpus, names, indices, draws, fisher, lambdas):
    scores, losses = [], []
    for i in indices:
        s = loss = 0.0
        for k in range(draws):
            lk, g = reference_gradients(model, corpus, names, int(i), k)
            loss += lk / draws
            s += sum(float((g[n] ** 2 / (fisher[n] + lambdas[n])).sum()) for n in names) / draws
        scores.append(s)
        losses.append(loss)
    return np.array(scores), np.array(losses)


def engine_fisher(model, corpus, names, batches, draws, chunk=None):
    with PerExampleGradients(
        model, names, reduction=FisherReduction(), max_chunk_elements=chunk
    ) as tracker:
        runner = MLMGradientRunner(
            model, corpus.alphabet, corpus, tracker, seed=SEED, draws=draws, device=CPU
        )
        count = 0
        for b in batches:
            res = runner.run_batch(np.asarray(b))
            assert not res.nonfinite.any()
            tracker.reduction.commit()
            count += len(b)
        fired = set(tracker.fired)
        return {n: tracker.reduction.totals[n] / (count * draws) for n in names}, fired


def engine_scores(model, corpus, names, batches, draws, weights, chunk=None):
    out_s, out_l = {}, {}
    tracker = PerExampleGradients(
        model, names, reduction=SelfInfluenceReduction(weights), max_chunk_elements=chunk
    )
    with tracker:
        runner = MLMGradientRunner(
            model, corpus.alphabet, corpus, tracker, seed=SEED, draws=draws, device=CPU
        )
        for b in batches:
            res = runner.run_batch(np.asarray(b))
            for j, i in enumerate(b):
                out_s[int(i)] = res.score[j]
                out_l[int(i)] = res.loss[j]
        fired = set(tracker.fired)
    return out_s, out_l, fired


def weights_of(fisher, damping=1e-3):
    lambdas = {n: damping * float(f.mean()) for n, f in fisher.items()}
    weights = {n: (1.0 / (f.double() + lambdas[n])).float() for n, f in fisher.items()}
    return lambdas, weights


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest deviation relative to the tensor's scale."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-300))


def assert_fisher_close(got, want, names, rtol=1e-4):
    bad = {n: rel_err(got[n], want[n]) for n in names if rel_err(got[n], want[n]) > rtol}
    assert not bad, f"Fisher differs from the brute force: {bad}"


# Batches of mixed lengths that do not follow the length order (pads everywhere).
BATCHES = [
    [0, 5, 11, 17, 2],
    [3, 4],
    [6, 7, 8, 9, 10, 1, 12],
    [13, 14, 15, 16, 18, 19, 20, 21, 22, 23],
]
ALL = list(range(24))


@pytest.mark.parametrize("draws", [1, 2])
def test_fisher_and_scores_match_brute_force(corpus, kind, draws):
    model = small_model(kind)
    names = select_parameters(model, "all").names
    fisher, fired = engine_fisher(model, corpus, names, BATCHES, draws)
    assert fired == set(names)
    want = reference_fisher(model, corpus, names, ALL, draws)
    assert_fisher_close(fisher, want, names)

    lambdas, weights = weights_of(fisher)
    got_s, got_l, _ = engine_scores(model, corpus, names, BATCHES, draws, weights)
    ref_s, ref_l = reference_scores(model, corpus, names, ALL, draws, fisher, lambdas)
    got_s = np.array([got_s[i] for i in ALL])
    got_l = np.array([got_l[i] for i in ALL])
    np.testing.assert_allclose(got_s, ref_s, rtol=1e-4)
    np.testing.assert_allclose(got_l, ref_l, rtol=1e-5)
    assert (got_s > 0).all()


def test_blocks_of_examples_and_row_bands_match_brute_force(corpus):
    """Tiny blocks: one example and a band of a few weight rows at a time (and
    several examples per block for the small tensors) give the same Fisher and
    scores as the brute force, tied embedding included."""
    model = small_model("rotary")
    names = select_parameters(model, "all").names
    hidden = model.config.hidden_size
    chunk = 3 * hidden + 5  # bands of 3 rows of a (., hidden) weight; whole small tensors
    fisher, _ = engine_fisher(model, corpus, names, BATCHES, 1, chunk=chunk)
    assert_fisher_close(fisher, reference_fisher(model, corpus, names, ALL, 1), names)
    lambdas, weights = weights_of(fisher)
    got, _, _ = engine_scores(model, corpus, names, BATCHES, 1, weights, chunk=chunk)
    ref, _ = reference_scores(model, corpus, names, ALL, 1, fisher, lambdas)
    np.testing.assert_allclose([got[i] for i in ALL], ref, rtol=1e-4)


def test_k_draws_average_per_draw_terms(corpus):
    """K = 2 gives the mean over draws of the per-draw sums of g^2/(F+lambda), not the
    square of the mean gradient."""
    model = small_model("rotary")
    names = select_parameters(model, "all").names
    fisher, _ = engine_fisher(model, corpus, names, BATCHES, 1)
    lambdas, weights = weights_of(fisher)
    got2, _, _ = engine_scores(model, corpus, names, [[4, 9]], 2, weights)
    for i in (4, 9):
        per_draw = []
        grads = []
        for k in (0, 1):
            _, g = reference_gradients(model, corpus, names, i, k)
            grads.append(g)
            per_draw.append(sum(float((g[n] ** 2 / (fisher[n] + lambdas[n])).sum()) for n in names))
        assert got2[i] == pytest.approx(np.mean(per_draw), rel=1e-4)
        of_mean = sum(
            float((((grads[0][n] + grads[1][n]) / 2) ** 2 / (fisher[n] + lambdas[n])).sum())
            for n in names
        )
        assert abs(got2[i] - of_mean) > 1e-3 * got2[i]


def test_lm_head_params_score_only_those_tensors(corpus, kind):
    model = small_model(kind)
    sel = select_parameters(model, "lm_head")
    assert sel.names == [n for n, _ in model.named_parameters() if n.startswith("lm_head.")]
    assert "esm.embeddings.word_embeddings.weight" not in sel.names
    fisher, fired = engine_fisher(model, corpus, sel.names, BATCHES, 1)
    assert fired == set(sel.names)
    assert_fisher_close(fisher, reference_fisher(model, corpus, sel.names, ALL, 1), sel.names)
    lambdas, weights = weights_of(fisher)
    got, _, _ = engine_scores(model, corpus, sel.names, BATCHES, 1, weights)
    ref, _ = reference_scores(model, corpus, sel.names, ALL, 1, fisher, lambdas)
    np.testing.assert_allclose([got[i] for i in ALL], ref, rtol=1e-4)
    # The same examples score differently over all tensors: the restriction is real.
    all_names = select_parameters(model, "all").names
    f_all, _ = engine_fisher(model, corpus, all_names, BATCHES, 1)
    _, w_all = weights_of(f_all)
    got_all, _, _ = engine_scores(model, corpus, all_names, BATCHES, 1, w_all)
    assert got_all[0] > 2 * got[0]


def test_middle_layers_only(corpus):
    """layers:1:2 backpropagates from layer 1's input and matches the reference."""
    model = small_model("rotary")
    sel = select_parameters(model, "layers:1:2")
    assert sel.names and all(n.startswith("esm.encoder.layer.1.") for n in sel.names)
    fisher, _ = engine_fisher(model, corpus, sel.names, BATCHES, 1)
    assert_fisher_close(fisher, reference_fisher(model, corpus, sel.names, ALL, 1), sel.names)


def test_tied_embedding_gets_its_total_gradient(corpus, kind):
    """The decoder is the word embedding: its per-example gradient sums both uses
    before squaring. Squaring the two uses apart gives another (wrong) Fisher."""
    model = small_model(kind)
    assert model.lm_head.decoder.weight is model.esm.embeddings.word_embeddings.weight
    name = "esm.embeddings.word_embeddings.weight"
    names = select_parameters(model, "all").names
    assert names.count(name) == 1 and "lm_head.decoder.weight" not in names
    fisher, _ = engine_fisher(model, corpus, [name], BATCHES, 1)
    want = reference_fisher(model, corpus, [name], ALL, 1)
    assert rel_err(fisher[name], want[name]) < 1e-4
    # Decoder use alone (lm_head input as the only leaf) squared separately is different.
    untied = small_model(kind)
    untied.lm_head.decoder.weight = torch.nn.Parameter(
        untied.lm_head.decoder.weight.detach().clone()
    )
    parts, _ = engine_fisher(untied, corpus, [name, "lm_head.decoder.weight"], BATCHES, 1)
    separate = parts[name] + parts["lm_head.decoder.weight"]
    assert rel_err(separate, want[name]) > 1e-2


def test_score_does_not_depend_on_batch_neighbours(corpus, kind):
    model = small_model(kind)
    names = select_parameters(model, "all").names
    fisher, _ = engine_fisher(model, corpus, names, BATCHES, 1)
    _, weights = weights_of(fisher)
    lengths = corpus.lengths
    short = int(np.argmin(lengths))
    longer = [int(i) for i in np.argsort(-lengths)[:5]]
    alone, loss_alone, _ = engine_scores(model, corpus, names, [[short]], 2, weights)
    crowd, loss_crowd, _ = engine_scores(model, corpus, names, [[*longer, short]], 2, weights)
    assert lengths[longer].min() > lengths[short]
    assert crowd[short] == pytest.approx(alone[short], rel=1e-5)
    assert loss_crowd[short] == pytest.approx(loss_alone[short], rel=1e-6)


def test_pads_contribute_nothing_to_the_fisher(corpus):
    """The same examples batched with heavy padding or one by one give one Fisher."""
    model = small_model("absolute")
    names = select_parameters(model, "all").names
    padded, _ = engine_fisher(model, corpus, names, [ALL], 1)
    single, _ = engine_fisher(model, corpus, names, [[i] for i in ALL], 1)
    assert_fisher_close(padded, single, names, rtol=1e-5)


def test_damping_rule_and_zero_fisher_exclusion(tmp_path, corpus):
    """lambda_p = damping * mean(F_p); tensors never reached or with zero Fisher are left out."""
    from bioprune.influence.fisher import FisherConfig, compute_fisher, load_fisher
    from bioprune.models.presets import save_alphabet

    model = small_model("rotary")
    with torch.no_grad():
        # A zero LM-head dense weight blocks every gradient below the head: the
        # encoder's Fisher is exactly zero (the tied embedding still gets the
        # decoder's share).
        model.lm_head.dense.weight.zero_()
    model.save_pretrained(tmp_path / "m")
    save_alphabet(tmp_path / "m", get_alphabet("rna"))
    cfg = FisherConfig(
        model=tmp_path / "m",
        corpus=corpus.path,
        out=tmp_path / "F.safetensors",
        subset_size="12",
        damping=0.05,
        device="cpu",
        progress=False,
    )
    res = compute_fisher(cfg)
    data = load_fisher(res.path)
    assert data.meta["damping"]["rule"] == "lambda_p = damping * mean(F over p's tensor)"
    for n, f in data.tensors.items():
        assert data.lambdas[n] == pytest.approx(0.05 * float(f.double().mean()), rel=1e-6)
        assert f.any()
    excluded = data.meta["params"]["excluded"]
    assert excluded["esm.contact_head.regression.weight"] == "not reached by the MLM loss"
    assert excluded["esm.encoder.layer.0.attention.self.query.weight"] == "zero Fisher everywhere"
    assert "lm_head.bias" in data.tensors and "lm_head.layer_norm.weight" in data.tensors
    assert len(data.meta["subset"]) == 12 and data.meta["subset"] == sorted(data.meta["subset"])


def test_param_specs():
    model = small_model("absolute")
    names = [n for n, _ in model.named_parameters()]
    everything = select_parameters(model, "all")
    assert "esm.contact_head.regression.weight" in everything.excluded
    # learned absolute positions: key biases have an exactly zero gradient
    assert "esm.encoder.layer.0.attention.self.key.bias" in everything.excluded
    assert "esm.embeddings.position_embeddings.weight" in everything.names
    assert select_parameters(small_model("rotary"), "all").excluded.keys() == {
        "esm.contact_head.regression.weight",
        "esm.contact_head.regression.bias",
    }
    assert select_parameters(model, "layers:0:1").names == [
        n for n in names if n.startswith("esm.encoder.layer.0.") and not n.endswith("key.bias")
    ]
    assert select_parameters(model, "layers:1").names[0].startswith("esm.encoder.layer.1.")
    assert select_parameters(model, r"intermediate\.dense\.weight$").names == [
        "esm.encoder.layer.0.intermediate.dense.weight",
        "esm.encoder.layer.1.intermediate.dense.weight",
    ]
    for bad in ("layers:0:9", "layers:x", "no_such_tensor", "(["):
        with pytest.raises(ValueError):
            select_parameters(model, bad)


def test_overflowing_gradient_with_finite_loss_is_traced_to_its_example(corpus):
    """A batch whose summed squared gradients are not finite while every loss is: the
    engine finds the example by running the batch's examples alone."""
    model = small_model("rotary")
    names = select_parameters(model, "lm_head").names
    lengths = corpus.lengths
    victim = int(np.flatnonzero(np.bincount(lengths)[lengths] == 1)[0])  # a unique length

    class Overflowing(MLMGradientRunner):
        def forward_backward(self, batch):
            loss = super().forward_backward(batch)
            if bool((batch["attention_mask"].sum(1) == lengths[victim] + 2).any()):
                self.tracker.reduction.batch_sums["lm_head.bias"].fill_(float("inf"))
            return loss

    batch = np.array([victim, *[i for i in range(6) if i != victim]][:6])
    with PerExampleGradients(model, names, reduction=FisherReduction()) as tracker:
        runner = Overflowing(
            model, corpus.alphabet, corpus, tracker, seed=SEED, draws=1, device=CPU
        )
        res = runner.run_batch(batch)
    assert np.isfinite(res.loss).all()
    assert res.nonfinite.tolist() == [i == victim for i in batch]
