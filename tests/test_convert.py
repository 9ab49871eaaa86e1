"""``bioprune convert``: tiny models built with the original packages, converted, logits compared.

The original packages (rna-fm's ``fm``, fair-esm's ``esm``) are test extras
(``pip install -e .[convert-test]``; ``make test`` installs them from
requirements/env.txt). Each test saves a random model in the original on-disk
layout, converts it with the CLI, loads the result with bioprune's loader and
compares logits with the original package's own loader on a batch with
padding and ``<mask>`` tokens: max |difference| < 1e-5 over non-pad positions.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys

import pytest
import torch

from tests import convert_fixtures as fx

fm = pytest.importorskip("fm")
esm = pytest.importorskip("esm")

TOL = 1e-5


pytestmark = pytest.mark.usefixtures("one_thread")


class Result:
    def __init__(self, returncode, stderr):
        self.returncode, self.stderr = returncode, stderr


def run_cli(*args):
    """The real entry point in-process (exit status and stderr as a user sees them)."""
    import contextlib
    import io

    from bioprune.cli.main import main

    err = io.StringIO()
    code = 0
    argv = sys.argv
    sys.argv = ["bioprune", *map(str, args)]
    try:
        with contextlib.redirect_stderr(err):
            main()
    except SystemExit as exc:
        code = exc.code
    finally:
        sys.argv = argv
    return Result(code, err.getvalue())


def cli_convert(src, out, *extra):
    res = run_cli("convert", src, "--out", out, *extra)
    assert res.returncode == 0, res.stderr
    return json.loads((out / "conversion.json").read_text())


def bioprune_logits(model_dir, ids, pad_id):
    from bioprune.models.loading import load_masked_lm

    model, _ = load_masked_lm(model_dir)
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=(ids != pad_id).long()).logits


def max_diff_non_pad(a, b, ids, pad_id):
    keep = ids != pad_id
    return float((a[keep] - b[keep]).abs().max())


@pytest.mark.parametrize(
    ("token_dropout", "style"),
    [(None, "encoder.encoder"), (True, "encoder.encoder"), (None, "sentence_encoder")],
)
def test_rnafm_logits_match_the_original(tmp_path, token_dropout, style):
    src = fx.save_rnafm(fx.rnafm_original(seed=1), tmp_path / "RNA-FM_pretrained.pth",
                        token_dropout=token_dropout, style=style)  # fmt: skip
    info = cli_convert(src, tmp_path / "model")  # format detected from the contents
    assert info["format"] == "rnafm" and info["detected"]
    assert info["exact"] and info["alphabet"] == "rna"
    assert info["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    ids = fx.token_batch(25, range(4, 20), mask_id=24, pad_id=1)
    ref = fx.load_rnafm_reference(src)
    with torch.no_grad():
        want = ref(ids)["logits"]
    got = bioprune_logits(tmp_path / "model", ids, pad_id=1)
    diff = max_diff_non_pad(got, want, ids, 1)
    assert diff < TOL, diff
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["token_dropout"] is bool(token_dropout)
    assert cfg["position_embedding_type"] == "absolute" and cfg["emb_layer_norm_before"]
    # plain transformers loads it without bioprune
    from transformers import AutoModelForMaskedLM

    plain = AutoModelForMaskedLM.from_pretrained(tmp_path / "model").eval()
    with torch.no_grad():
        logits = plain(input_ids=ids, attention_mask=(ids != 1).long()).logits
    assert max_diff_non_pad(logits, want, ids, 1) < TOL


def test_rnafm_mask_row_comes_from_the_tied_lm_head(tmp_path):
    """rna-fm zeroes the <mask> row of embed_tokens, then the tied lm_head.weight restores it."""
    src = fx.save_rnafm(fx.rnafm_original(seed=2), tmp_path / "rnafm.pth")
    cli_convert(src, tmp_path / "model", "--from", "rnafm")
    from safetensors.torch import load_file

    w = load_file(tmp_path / "model" / "model.safetensors")["esm.embeddings.word_embeddings.weight"]
    orig = torch.load(src, weights_only=False)["model"]["encoder.encoder.lm_head.weight"]
    assert torch.equal(w, orig) and w[24].abs().sum() > 0


@pytest.mark.parametrize("token_dropout", [True, False])
def test_fair_esm2_logits_match_the_original(tmp_path, token_dropout):
    model = fx.esm2_original(seed=3, token_dropout=token_dropout)
    src = fx.save_esm2(model, tmp_path / "esm2_t2_32_test.pt", token_dropout=token_dropout)
    info = cli_convert(src, tmp_path / "model")
    assert info["format"] == "fair-esm" and info["exact"]
    assert any(f["path"].endswith("-contact-regression.pt") for f in info["source_files"])
    ids = fx.token_batch(33, range(4, 24), mask_id=32, pad_id=1, seed=1)
    ref = fx.load_esm2_reference(src)
    with torch.no_grad():
        want = ref(ids)["logits"]
    got = bioprune_logits(tmp_path / "model", ids, pad_id=1)
    assert max_diff_non_pad(got, want, ids, 1) < TOL
    cfg = json.loads((tmp_path / "model" / "config.json").read_text())
    assert cfg["token_dropout"] is token_dropout
    from safetensors.torch import load_file

    w = load_file(tmp_path / "model" / "model.safetensors")
    assert torch.equal(w["esm.contact_head.regression.weight"],
                       model.contact_head.regression.weight.detach())  # fmt: skip


def test_esm2_needs_token_dropout_to_match(tmp_path):
    """ESM-2 was trained with token dropout: a converted model with it off differs."""
    src = fx.save_esm2(fx.esm2_original(seed=4), tmp_path / "esm2_t2_32_test.pt")
    cli_convert(src, tmp_path / "model")
    ids = fx.token_batch(33, range(4, 24), mask_id=32, pad_id=1, seed=2)
    from bioprune.models.loading import load_masked_lm

    model, _ = load_masked_lm(tmp_path / "model")
    att = (ids != 1).long()
    with torch.no_grad():
        on = model(input_ids=ids, attention_mask=att).logits
        model.esm.embeddings.token_dropout = False
        off = model(input_ids=ids, attention_mask=att).logits
    # even the example with no <mask> (rows 1..) is rescaled by 0.88
    assert max_diff_non_pad(on, off, ids, 1) > 1e-2


def _hf_esm_dir(tmp_path, legacy: bool):
    from transformers import EsmForMaskedLM

    from bioprune.data.alphabet import get_alphabet
    from bioprune.models.convert.esm_family import esm_config
    from bioprune.models.presets import save_alphabet

    a = get_alphabet("protein")
    cfg = esm_config(a, hidden=32, layers=2, heads=4, ffn=64, position="rotary",
                     max_positions=1026, ln_before=False, token_dropout=True)  # fmt: skip
    model = EsmForMaskedLM(cfg).eval()
    fx.randomise(model, 5)
    d = tmp_path / "esm2_hf"
    model.save_pretrained(d)
    save_alphabet(d, a)
    (d / "bioprune_alphabet.json").unlink()
    if legacy:  # an older export: pickle weights with buffers and the tied decoder named
        state = dict(model.state_dict())
        state["esm.embeddings.position_ids"] = torch.arange(1026)[None]
        (d / "model.safetensors").unlink()
        torch.save(state, d / "pytorch_model.bin")
    return d, model


@pytest.mark.parametrize("legacy", [False, True])
def test_hf_esm_directory(tmp_path, legacy):
    src, model = _hf_esm_dir(tmp_path, legacy)
    info = cli_convert(src, tmp_path / "model")
    assert info["format"] == "hf-esm"
    ids = fx.token_batch(33, range(4, 24), mask_id=32, pad_id=1, seed=3)
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=(ids != 1).long()).logits
    got = bioprune_logits(tmp_path / "model", ids, 1)
    assert max_diff_non_pad(got, want, ids, 1) == 0.0


# ----------------------------------------------------------------- safety and errors


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_naming_the_global(tmp_path):
    src = fx.save_rnafm(fx.rnafm_original(), tmp_path / "rnafm.pth")
    data = torch.load(src, weights_only=False)
    marker = tmp_path / "executed"
    data["payload"] = _RunsCode(marker)
    with open(src, "wb") as fh:
        torch.save(data, fh, pickle_module=pickle)
    res = run_cli("convert", src, "--out", tmp_path / "model")
    assert res.returncode == 2
    assert "system" in res.stderr and "--trust-checkpoint" in res.stderr
    assert str(src) in res.stderr.replace("\n", "")
    assert not marker.exists() and not (tmp_path / "model").exists()


def test_trust_checkpoint_loads_other_globals(tmp_path):
    import pathlib

    src = fx.save_rnafm(fx.rnafm_original(), tmp_path / "rnafm.pth")
    data = torch.load(src, weights_only=False)
    data["args"].save_dir = pathlib.PurePosixPath("/checkpoints")
    torch.save(data, src)
    res = run_cli("convert", src, "--out", tmp_path / "m1")
    assert res.returncode == 2 and "PurePosixPath" in res.stderr
    info = cli_convert(src, tmp_path / "m2", "--trust-checkpoint")
    assert info["trusted_pickle"]


def test_missing_and_misshaped_tensors_are_errors_listing_them(tmp_path):
    src = fx.save_rnafm(fx.rnafm_original(), tmp_path / "rnafm.pth")
    data = torch.load(src, weights_only=False)
    del data["model"]["encoder.encoder.layers.1.fc2.bias"]
    data["model"]["encoder.encoder.layers.0.fc2.weight"] = torch.zeros(32, 63)
    torch.save(data, src)
    res = run_cli("convert", src, "--out", tmp_path / "model")
    assert res.returncode == 2
    err = " ".join(res.stderr.split())
    assert "esm.encoder.layer.1.output.dense.bias" in err and "missing" in err
    assert "esm.encoder.layer.0.output.dense.weight [32, 63]" in err
    assert not (tmp_path / "model").exists()


def test_unknown_contents_need_from(tmp_path):
    src = tmp_path / "weights.pt"
    torch.save({"state": {"w": torch.zeros(2)}}, src)
    res = run_cli("convert", src, "--out", tmp_path / "model")
    assert res.returncode == 2
    assert "cannot tell the checkpoint format" in res.stderr and "--from" in res.stderr


def test_converted_models_score_exactly(tmp_path):
    """fisher/score on converted RNA-FM and ESM-2 (token dropout on) match the brute force,
    and a score does not depend on the example's batch neighbours."""
    import numpy as np

    from bioprune.data.corpus import write_corpus
    from bioprune.influence.params import select_parameters
    from bioprune.models.loading import load_masked_lm
    from tests import test_influence_exact as ex
    from tests.conftest import random_sequences

    fx.save_rnafm(fx.rnafm_original(seed=6), tmp_path / "rnafm.pth")
    fx.save_esm2(fx.esm2_original(seed=7), tmp_path / "esm2_t2_test.pt")
    cli_convert(tmp_path / "rnafm.pth", tmp_path / "rnafm")
    cli_convert(tmp_path / "esm2_t2_test.pt", tmp_path / "esm2")
    for kind in ("rna", "protein"):
        seqs = random_sequences(10, kind, seed=2, min_len=3, max_len=30)
        corpus = write_corpus(tmp_path / f"c-{kind}", seqs, kind)
        model, _ = load_masked_lm(tmp_path / ("rnafm" if kind == "rna" else "esm2"))
        assert model.config.token_dropout is (kind == "protein")
        names = select_parameters(model, "all").names
        batches = [[0, 4, 7], [1, 2, 3, 5, 6, 8, 9]]
        fisher, _ = ex.engine_fisher(model, corpus, names, batches, 1)
        ex.assert_fisher_close(fisher, ex.reference_fisher(model, corpus, names, range(10), 1),
                               names)  # fmt: skip
        lambdas, weights = ex.weights_of(fisher)
        got, _, _ = ex.engine_scores(model, corpus, names, batches, 1, weights)
        want, _ = ex.reference_scores(model, corpus, names, range(10), 1, fisher, lambdas)
        np.testing.assert_allclose([got[i] for i in range(10)], want, rtol=1e-4)
        short = int(np.argmin(corpus.lengths))
        alone, _, _ = ex.engine_scores(model, corpus, names, [[short]], 1, weights)
        others = [i for i in range(10) if i != short]
        crowd, _, _ = ex.engine_scores(model, corpus, names, [[*others, short]], 1, weights)
        assert crowd[short] == pytest.approx(alone[short], rel=1e-5)


def test_info_describes_a_converted_model_directory(tmp_path, capsys):
    from bioprune.models.describe import describe_model
    from bioprune.models.loading import load_masked_lm
    from bioprune.models.presets import count_parameters

    src = fx.save_rnafm(fx.rnafm_original(seed=8), tmp_path / "rnafm.pth")
    cli_convert(src, tmp_path / "model")
    d = describe_model(tmp_path / "model")
    model, _ = load_masked_lm(tmp_path / "model")
    assert d["parameters"] == count_parameters(model)
    assert d["architecture"]["layers"] == fx.LAYERS and d["architecture"]["heads"] == fx.HEADS
    assert d["vocabulary"] == {"model_rows": 25, "alphabet": "rna", "tokens": 25}
    assert d["positions"] == {"type": "absolute", "max_residues": 1022}
    conv = d["provenance"]["converted"]
    assert conv["format"] == "rnafm" and conv["exact"] is True
    assert conv["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    res = run_cli("info", tmp_path / "model", "--json")
    assert res.returncode == 0
    assert json.loads(capsys.readouterr().out) == d
    res = run_cli("info", tmp_path / "model")
    out = capsys.readouterr().out
    assert "rnafm" in out and f"{d['parameters']:,}" in out


def test_safe_loader_on_legacy_and_garbage_files(tmp_path):
    import argparse

    from bioprune.errors import InputError, UnsafeFileError
    from bioprune.models.convert.safe_load import load_checkpoint

    legacy = tmp_path / "legacy.pt"  # torch < 1.6 format (no zip), as old checkpoints are
    torch.save({"args": argparse.Namespace(a=1), "model": {"w": torch.ones(2)}}, legacy,
               _use_new_zipfile_serialization=False)  # fmt: skip
    assert load_checkpoint(legacy)["args"].a == 1
    marker = tmp_path / "executed"
    evil = tmp_path / "evil.pt"
    torch.save({"x": _RunsCode(marker)}, evil, _use_new_zipfile_serialization=False)
    with pytest.raises(UnsafeFileError, match=r"\(posix\.system\)|\(nt\.system\)"):
        load_checkpoint(evil)
    assert not marker.exists()
    for content in (b"", b"not a checkpoint at all"):
        bad = tmp_path / "bad.pt"
        bad.write_bytes(content)
        with pytest.raises(InputError, match="cannot read checkpoint"):
            load_checkpoint(bad)


def test_multimolecule_port_is_exact_except_the_merged_null_tokens(tmp_path):
    """tests/data/multimolecule_rnafm was written by multimolecule's own converter from the
    tiny RNA-FM ``rnafm_original(seed=1)`` (scripts/multimolecule_fixture.py); rna-fm's model
    rebuilt from the same seed is the reference."""
    from pathlib import Path

    src = Path(__file__).parent / "data" / "multimolecule_rnafm"
    info = cli_convert(src, tmp_path / "model")  # detected: config.json model_type rnafm
    assert info["format"] == "multimolecule" and not info["exact"]
    assert any("<null_1>" in item for item in info["inexact"])
    assert any("--from rnafm" in item for item in info["inexact"])
    ref_path = fx.save_rnafm(fx.rnafm_original(seed=1), tmp_path / "RNA-FM_pretrained.pth")
    ref = fx.load_rnafm_reference(ref_path)
    ids = fx.token_batch(25, range(4, 20), mask_id=24, pad_id=1)
    with torch.no_grad():
        want = ref(ids)["logits"]
    got = bioprune_logits(tmp_path / "model", ids, pad_id=1)
    keep = ids != 1
    exact_cols = [i for i in range(25) if i not in (20, 21, 22, 23)]
    assert float((got[keep][:, exact_cols] - want[keep][:, exact_cols]).abs().max()) < TOL
    nulls = got[keep][:, 20:24]
    assert torch.equal(nulls, nulls[:, :1].expand_as(nulls))  # one merged row
    assert float((nulls - want[keep][:, 20:24]).abs().max()) > 1e-3  # not the original's


def test_convert_cli_prints_what_is_not_exact(tmp_path):
    from pathlib import Path

    res = run_cli("convert", Path(__file__).parent / "data" / "multimolecule_rnafm",
                  "--out", tmp_path / "model")  # fmt: skip
    assert res.returncode == 0
    err = " ".join(res.stderr.split())
    assert "not exact:" in err and "--from rnafm" in err
