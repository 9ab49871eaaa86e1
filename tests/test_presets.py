"""Model presets, `bioprune init` and the HF round trip."""

import json

import pytest
import torch

from bioprune.models.presets import (
    PRESETS,
    build_config,
    count_parameters,
    init_model,
    load_model_alphabet,
    max_residues,
)

#: (preset, expected parameters for the RNA alphabet, tolerance)
EXPECTED = {
    "micro": (106_009, 0),
    "tiny": (813_337, 0),
    "small": (10_805_785, 0),
    "esm2-8m": (7_509_785, 0),
    "esm2-35m": (33_497_305, 0),
    "rnafm": (99_521_305, 0),
}


def _params_on_meta(preset, alphabet="rna"):
    from transformers import EsmForMaskedLM

    with torch.device("meta"):
        model = EsmForMaskedLM(build_config(preset, alphabet))
    return model, count_parameters(model)


@pytest.mark.parametrize("preset", [n for n, p in PRESETS.items() if p.family == "esm"])
def test_parameter_counts(preset):
    model, n = _params_on_meta(preset)
    assert n == EXPECTED[preset][0]
    cfg = model.config
    p = PRESETS[preset]
    assert (cfg.num_hidden_layers, cfg.hidden_size, cfg.num_attention_heads) == (
        p.layers,
        p.hidden,
        p.heads,
    )
    assert cfg.token_dropout is False
    assert max_residues(cfg) == 1022


def test_size_classes():
    assert _params_on_meta("tiny")[1] <= 1_000_000
    assert 8e6 <= _params_on_meta("small")[1] <= 12e6
    assert 98e6 <= _params_on_meta("rnafm")[1] <= 101e6


def test_rnafm_has_rna_fm_positions():
    cfg = build_config("rnafm", "rna")
    assert cfg.position_embedding_type == "absolute"
    assert cfg.max_position_embeddings == 1026  # RNA-FM's learned position table
    assert cfg.emb_layer_norm_before is True
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads) == (640, 5120, 20)


def test_init_roundtrips_through_plain_transformers(tmp_path):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    out = tmp_path / "m"
    info = init_model("tiny", "protein", out, seed=3)
    assert info["parameters"] == count_parameters(AutoModelForMaskedLM.from_pretrained(out))
    model = AutoModelForMaskedLM.from_pretrained(out)
    assert type(model).__name__ == "EsmForMaskedLM"
    assert model.config.vocab_size == 33 and model.config.mask_token_id == 32
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("MKV")["input_ids"] == [0, 20, 15, 7, 2]
    assert load_model_alphabet(out).name == "protein"
    assert json.loads((out / "bioprune_init.json").read_text())["seed"] == 3


def test_init_is_deterministic_and_refuses_existing(tmp_path):
    from safetensors.torch import load_file

    init_model("tiny", "rna", tmp_path / "a", seed=1)
    init_model("tiny", "rna", tmp_path / "b", seed=1)
    init_model("tiny", "rna", tmp_path / "c", seed=2)
    a, b, c = (load_file(tmp_path / x / "model.safetensors") for x in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(FileExistsError, match="--overwrite"):
        init_model("tiny", "rna", tmp_path / "a", seed=1)
    init_model("tiny", "rna", tmp_path / "a", seed=2, overwrite=True)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        build_config("huge", "rna")
