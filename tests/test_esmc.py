"""ESM-C: the native module against the REAL ``esm`` package's logits, presets, and the
influence engine's exactness on every ESM-C tensor kind.

Golden fixtures (``tests/data/esmc_golden_{pth,safetensors}``): a tiny random ESM-C
(2 layers x 32, 4 heads), token ids with padding and ``<mask>``, and the logits that
EvolutionaryScale's own ``esm`` package computed, saved in that package's on-disk
layouts (3.2.4a1: the ``.pth`` state dict of ``esmc_300m_2024_12_v0.pth``; 3.4.3: the
published safetensors with split q/k/v and gate/up). ``provenance.json`` in each
names the package version. The package cannot be installed beside bioprune (it
declares Python >= 3.12); ``scripts/esmc_golden.py`` regenerates the fixtures in a
separate environment (its docstring says exactly how these were made).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from bioprune.data.corpus import write_corpus
from bioprune.influence.hooks import PerExampleGradients, SelfInfluenceReduction
from bioprune.influence.params import select_parameters
from bioprune.models.esmc import EsmcConfig, EsmcForMaskedLM, esmc_ffn_size
from tests import test_influence_exact as ex
from tests.conftest import random_sequences
from tests.test_convert import cli_convert, max_diff_non_pad, run_cli

DATA = Path(__file__).parent / "data"
TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


def _golden(name):
    from safetensors.torch import load_file

    d = DATA / name
    g = load_file(d / "golden.safetensors")
    return d, g["input_ids"], g["attention_mask"], g["logits"]


@pytest.mark.parametrize(
    ("fixture", "source"),
    [("esmc_golden_pth", "weights.pth"), ("esmc_golden_safetensors", "model.safetensors")],
)
def test_converted_esmc_matches_the_real_esm_package(tmp_path, fixture, source):
    from bioprune.models.loading import load_masked_lm

    d, ids, att, want = _golden(fixture)
    prov = json.loads((d / "provenance.json").read_text())
    assert prov["esm_version"] in ("3.2.4.a1", "3.4.3")
    info = cli_convert(d / source, tmp_path / "model")  # format detected from the contents
    assert info["format"] == "esmc" and info["exact"]
    assert info["source_info"]["heads"] == 4
    model, alphabet = load_masked_lm(tmp_path / "model")
    assert isinstance(model, EsmcForMaskedLM) and alphabet.name == "protein"
    with torch.no_grad():
        got = model(input_ids=ids, attention_mask=att).logits
    assert got.shape == want.shape == (*ids.shape, 64)
    assert max_diff_non_pad(got, want, ids, 1) < TOL


def test_esmc_without_config_takes_head_size_64(tmp_path):
    d, *_ = _golden("esmc_golden_pth")
    (tmp_path / "w.pth").write_bytes((d / "weights.pth").read_bytes())
    res = run_cli("convert", tmp_path / "w.pth", "--out", tmp_path / "m")
    assert res.returncode == 2
    assert "head size 64" in " ".join(res.stderr.split())


def test_auto_classes_and_save_pretrained_round_trip(tmp_path):
    from transformers import AutoConfig, AutoModelForMaskedLM

    cfg = EsmcConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4)
    model = EsmcForMaskedLM(cfg).eval()
    model.save_pretrained(tmp_path)
    assert AutoConfig.from_pretrained(tmp_path).model_type == "esmc"
    again = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    ids = torch.randint(4, 24, (2, 7))
    with torch.no_grad():
        assert torch.equal(again(input_ids=ids).logits, model(input_ids=ids).logits)


def _esmc_params(layers, d, heads, rows=64):
    h = esmc_ffn_size(d)
    block = 2 * d + 3 * d * d + 2 * d + d * d + 2 * d + 2 * h * d + h * d
    head = d * d + d + 2 * d + d * rows + rows
    return rows * d + layers * block + d + head


@pytest.mark.parametrize(("preset", "layers", "d", "heads"),
                         [("esmc-300m", 30, 960, 15), ("esmc-600m", 36, 1152, 18)])  # fmt: skip
def test_esmc_presets_have_the_published_sizes(preset, layers, d, heads):
    from bioprune.models.presets import build_config, build_model, count_parameters, max_residues

    cfg = build_config(preset, "protein")
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (layers, d, heads)
    assert cfg.intermediate_size == {960: 2560, 1152: 3072}[d]
    assert cfg.residual_scale == pytest.approx(math.sqrt(layers / 36))
    assert max_residues(cfg) == 1022
    with torch.device("meta"):
        model = build_model(preset, "protein")
    assert count_parameters(model) == _esmc_params(layers, d, heads)
    assert 3.3e8 < count_parameters(model) < 6.2e8


def test_esmc_presets_refuse_rna_and_dropout():
    from bioprune.models.presets import build_config

    with pytest.raises(ValueError, match="protein"):
        build_config("esmc-tiny", "rna")
    with pytest.raises(ValueError, match="dropout"):
        build_config("esmc-tiny", "protein", dropout=0.1)


# ------------------------------------------------------------------ influence exactness


def small_esmc(seed=0):
    model = EsmcForMaskedLM(
        EsmcConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=48)
    ).eval()
    from tests.convert_fixtures import randomise

    randomise(model, seed)
    return model


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("esmc") / "corpus"
    seqs = random_sequences(16, "protein", seed=4, min_len=3, max_len=36)
    return write_corpus(path, seqs, "protein")


BATCHES = [[0, 5, 11, 2], [3, 4], [6, 7, 8, 9, 10, 1, 12], [13, 14, 15]]
ALL = list(range(16))


def _scores(model, corpus, names, batches, weights, gather):
    from bioprune.influence.engine import MLMGradientRunner

    out = {}
    tracker = PerExampleGradients(
        model, names, reduction=SelfInfluenceReduction(weights), gather_last_layer=gather
    )
    with tracker:
        runner = MLMGradientRunner(
            model, corpus.alphabet, corpus, tracker, seed=ex.SEED, draws=1, device=ex.CPU
        )
        for b in batches:
            res = runner.run_batch(np.asarray(b))
            out.update({int(i): res.score[j] for j, i in enumerate(b)})
        assert tracker.fired == set(names)
    return np.array([out[i] for i in sorted(out)])


def test_esmc_fisher_and_scores_match_brute_force(corpus):
    """Every ESM-C tensor kind: embedding (no padding row), LayerNorm with and without
    bias, QK norms, bias-free q/k/v/out/gate/up/down, the untied head with biases."""
    model = small_esmc()
    names = select_parameters(model, "all").names
    kinds = {n.rsplit(".", 2)[-2] + "." + n.rsplit(".", 1)[-1] for n in names}
    assert {"q_norm.weight", "k_norm.weight", "gate.weight", "decoder.bias"} <= kinds
    assert not any(n.endswith(("query.bias", "q_norm.bias", "emb_layer_norm_after.bias"))
                   for n in names)  # fmt: skip
    fisher, fired = ex.engine_fisher(model, corpus, names, BATCHES, 1)
    assert fired == set(names)
    ex.assert_fisher_close(fisher, ex.reference_fisher(model, corpus, names, ALL, 1), names)
    lambdas, weights = ex.weights_of(fisher)
    want, _ = ex.reference_scores(model, corpus, names, ALL, 1, fisher, lambdas)
    for gather in (True, False):
        got = _scores(model, corpus, names, BATCHES, weights, gather)
        np.testing.assert_allclose(got, want, rtol=1e-4)


@pytest.mark.parametrize("spec", ["lm_head", "layers:1", "q_norm|k_norm", "emb_layer_norm_after"])
def test_esmc_partial_params_match_brute_force(corpus, spec):
    model = small_esmc(seed=1)
    names = select_parameters(model, spec).names
    fisher, _ = ex.engine_fisher(model, corpus, names, BATCHES, 1)
    ex.assert_fisher_close(fisher, ex.reference_fisher(model, corpus, names, ALL, 1), names)
    lambdas, weights = ex.weights_of(fisher)
    want, _ = ex.reference_scores(model, corpus, names, ALL, 1, fisher, lambdas)
    for gather in (True, False):
        np.testing.assert_allclose(
            _scores(model, corpus, names, BATCHES, weights, gather), want, rtol=1e-4
        )


def test_esmc_score_does_not_depend_on_batch_neighbours(corpus):
    model = small_esmc(seed=2)
    names = select_parameters(model, "all").names
    fisher, _ = ex.engine_fisher(model, corpus, names, BATCHES, 1)
    _, weights = ex.weights_of(fisher)
    short = int(np.argmin(corpus.lengths))
    longer = [int(i) for i in np.argsort(-corpus.lengths)[:5]]
    alone = _scores(model, corpus, names, [[short]], weights, True)[0]
    crowd = _scores(model, corpus, names, [[*longer, short]], weights, True)
    assert crowd[sorted([*longer, short]).index(short)] == pytest.approx(alone, rel=1e-5)


def test_esmc_tiny_through_every_stage(tmp_path, corpus, capsys):
    """init, pretrain, adapt, fisher, score, evaluate and info on an ESM-C model."""
    import pyarrow.parquet as pq

    import bioprune.resources

    task = Path(bioprune.resources.__file__).parent / "tasks" / "protein_domain"

    def ok(*args):
        res = run_cli(*map(str, args))
        assert res.returncode == 0, res.stderr
        return res

    c = corpus.path
    fast = ["--device", "cpu", "--no-progress"]
    ok("init", "--preset", "esmc-tiny", "--alphabet", "protein", "--out", tmp_path / "init")
    ok("pretrain", "--corpus", c, "--init", tmp_path / "init", "--out", tmp_path / "pre",
       "--max-steps", 2, "--batch-size", 4, "--warmup-steps", 1, *fast)  # fmt: skip
    ok("pretrain", "--corpus", c, "--preset", "esmc-tiny", "--out", tmp_path / "pre2",
       "--max-steps", 1, "--batch-size", 4, "--warmup-steps", 1, *fast)  # fmt: skip
    ok("adapt", "--model", tmp_path / "pre", "--corpus", c, "--subset-size", 6,
       "--batch-size", 3, "--out", tmp_path / "ft", *fast)  # fmt: skip
    ok("fisher", "--model", tmp_path / "ft", "--corpus", c, "--subset-from", tmp_path / "ft",
       "--out", tmp_path / "F.safetensors", "--device", "cpu")  # fmt: skip
    ok("score", "--model", tmp_path / "ft", "--corpus", c, "--fisher", tmp_path / "F.safetensors",
       "--out", tmp_path / "S.parquet", "--device", "cpu")  # fmt: skip
    scores = pq.read_table(tmp_path / "S.parquet").column("score").to_numpy()
    assert len(scores) == len(corpus) and np.isfinite(scores).all() and (scores > 0).all()
    ok("evaluate", "--model", tmp_path / "ft", "--task", task,
       "--out", tmp_path / "r.json", "--seeds", "0", "--epochs", "1",
       "--protocol", "frozen-mlp")  # fmt: skip
    res = json.loads((tmp_path / "r.json").read_text())
    assert "accuracy" in res["metrics"]
    capsys.readouterr()
    ok("info", tmp_path / "ft", "--json")
    d = json.loads(capsys.readouterr().out)
    assert d["architecture"]["model_type"] == "esmc" and d["vocabulary"]["model_rows"] == 64


def test_a_protein_corpus_has_the_same_ids_for_esm2_and_esmc():
    """Every id a protein corpus or a mask draw can hold means the same token in ESM-2's and
    ESM-C's vocabularies; the only difference (id 31: <null_1> vs |) is never produced."""
    from bioprune.data.alphabet import get_alphabet
    from bioprune.data.masking import mask_draw
    from bioprune.models.esmc import ESMC_TOKENS

    a = get_alphabet("protein")
    differ = [i for i, (x, y) in enumerate(zip(a.tokens, ESMC_TOKENS, strict=True)) if x != y]
    assert differ == [31]
    residues = a.encode(a.normalize(a.residues))
    framing = {a.cls_id, a.eos_id, a.pad_id, a.mask_id, a.unk_id}
    assert 31 not in set(residues.tolist()) | framing
    rng = np.random.default_rng(0)
    for i in range(200):
        seq = rng.choice(np.asarray(residues), size=int(rng.integers(1, 60)))
        d = mask_draw(seq, a, seed=0, index=i)
        assert 31 not in set(np.asarray(d.inputs).tolist())


def test_converted_esmc_scores_match_brute_force(tmp_path, corpus):
    """fisher/score on the ESM-C converted from the real package's safetensors layout."""
    from bioprune.models.loading import load_masked_lm

    d, *_ = _golden("esmc_golden_safetensors")
    cli_convert(d / "model.safetensors", tmp_path / "model")
    model, _ = load_masked_lm(tmp_path / "model")
    names = select_parameters(model, "all").names
    fisher, _ = ex.engine_fisher(model, corpus, names, BATCHES, 1)
    ex.assert_fisher_close(fisher, ex.reference_fisher(model, corpus, names, ALL, 1), names)
    lambdas, weights = ex.weights_of(fisher)
    want, _ = ex.reference_scores(model, corpus, names, ALL, 1, fisher, lambdas)
    np.testing.assert_allclose(_scores(model, corpus, names, BATCHES, weights, True), want,
                               rtol=1e-4)  # fmt: skip


def test_bfloat16_weights_are_upcast_exactly_and_said_so(tmp_path):
    from safetensors.torch import load_file, save_file

    d, *_ = _golden("esmc_golden_safetensors")
    state = {k: v.to(torch.bfloat16) for k, v in load_file(d / "model.safetensors").items()}
    (tmp_path / "src").mkdir()
    save_file(state, tmp_path / "src" / "model.safetensors")
    (tmp_path / "src" / "config.json").write_text((d / "config.json").read_text())
    info = cli_convert(tmp_path / "src" / "model.safetensors", tmp_path / "model")
    assert any("bfloat16" in n for n in info["notes"])
    written = load_file(tmp_path / "model" / "model.safetensors")
    assert torch.equal(
        written["esm.encoder.layer.0.attention.query.weight"],
        state["esmc.layers.0.self_attn.q_proj.weight"].float(),
    )
