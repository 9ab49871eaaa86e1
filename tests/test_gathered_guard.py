"""The version guard of the gathered last layer (engine.gathered_last_layer_supported).

The gathered layer re-implements HF's ESM encoder loop as transformers 5.6+
writes it. Where the installed release or the layer's signature differ, the
tracker must take the plain path, log one note, and give the plain path's
scores exactly (it *is* the plain path), which equal the gathered ones.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import transformers

from bioprune.data.corpus import write_corpus
from bioprune.influence import engine
from bioprune.influence.engine import (
    GATHERED_TRANSFORMERS,
    _major_minor,
    gathered_last_layer_supported,
)
from bioprune.influence.hooks import FisherReduction, PerExampleGradients
from bioprune.influence.params import select_parameters
from tests.conftest import random_sequences
from tests.test_influence_exact import small_model
from tests.test_influence_gathered import ALL, run

IN_RANGE = GATHERED_TRANSFORMERS[0] <= _major_minor(transformers.__version__)
IN_RANGE = IN_RANGE and _major_minor(transformers.__version__) < GATHERED_TRANSFORMERS[1]


@pytest.fixture(autouse=True)
def _fresh_check(monkeypatch):
    monkeypatch.setattr(engine, "_support_checked", {})
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("guard") / "corpus"
    return write_corpus(path, random_sequences(24, "rna", seed=3, min_len=3, max_len=40), "rna")


def test_major_minor():
    assert _major_minor("5.24.0") == (5, 24)
    assert _major_minor("4.57.0.dev0") == (4, 57)
    assert _major_minor("6") == (6, 0)


@pytest.mark.parametrize("kind", ["rotary", "absolute"])
def test_installed_release_is_used_where_supported(kind, caplog):
    """On the pinned transformers the gathered layer is on; at the lower bound it is off."""
    model = small_model(kind)
    with caplog.at_level(logging.WARNING, logger="bioprune"):
        tracker = PerExampleGradients(model, ["lm_head.bias"], reduction=FisherReduction())
    assert tracker.gather_last_layer is IN_RANGE
    notes = [r for r in caplog.records if "gathered last layer off" in r.getMessage()]
    assert len(notes) == (0 if IN_RANGE else 1)


def test_explicit_plain_path_is_not_checked(monkeypatch):
    def boom(model):
        raise AssertionError("checked although gather_last_layer=False")

    monkeypatch.setattr(engine, "gathered_last_layer_supported", boom)
    tracker = PerExampleGradients(
        small_model("rotary"),
        ["lm_head.bias"],
        reduction=FisherReduction(),
        gather_last_layer=False,
    )
    assert not tracker.gather_last_layer


def test_other_release_falls_back_once_with_a_note(monkeypatch, caplog):
    monkeypatch.setattr(engine, "GATHERED_TRANSFORMERS", ((99, 0), (100, 0)))
    model = small_model("rotary")
    with caplog.at_level(logging.WARNING, logger="bioprune"):
        for _ in range(3):
            assert not gathered_last_layer_supported(model)
            tracker = PerExampleGradients(model, ["lm_head.bias"], reduction=FisherReduction())
            assert not tracker.gather_last_layer
    notes = [r for r in caplog.records if "gathered last layer off" in r.getMessage()]
    assert len(notes) == 1
    assert notes[0].name.startswith("bioprune.")
    assert transformers.__version__ in notes[0].getMessage()
    assert "same scores" in notes[0].getMessage()


@pytest.mark.skipif(not IN_RANGE, reason="transformers outside the gathered layer's range")
def test_layer_without_position_embeddings_falls_back(monkeypatch):
    """A release in range whose layer call differs (as 5.0-5.5 did) is refused by signature."""
    model = small_model("rotary")
    layer_cls = type(model.esm.encoder.layer[-1])

    def old_forward(self, hidden_states, attention_mask=None, output_attentions=False):
        raise AssertionError("not called")

    monkeypatch.setattr(layer_cls, "forward", old_forward)
    assert not gathered_last_layer_supported(model)
    assert "position_embeddings" in engine._support_checked[next(iter(engine._support_checked))]


@pytest.mark.skipif(not IN_RANGE, reason="transformers outside the gathered layer's range")
def test_relative_position_models_fall_back():
    model = small_model("absolute")
    model.esm.config.position_embedding_type = "relative_key"
    assert not gathered_last_layer_supported(model)


@pytest.mark.parametrize("kind", ["rotary", "absolute"])
def test_fallback_scores_are_the_plain_paths(corpus, kind, monkeypatch):
    """Forced off, ``gather_last_layer=True`` gives the plain path's Fisher and
    scores bit for bit; and those equal the gathered layer's where it runs."""
    model = small_model(kind, seed=2)
    names = select_parameters(model, "all").names
    f_plain, l_plain, _ = run(model, corpus, names, gather=False, mode="fisher")
    weights = {n: (1.0 / (f.double() + 1e-3 * float(f.mean()))).float() for n, f in f_plain.items()}
    s_plain, _, _ = run(model, corpus, names, gather=False, mode="score", weights=weights)

    gathered = None
    if IN_RANGE:
        gathered, _, _ = run(model, corpus, names, gather=True, mode="score", weights=weights)

    monkeypatch.setattr(engine, "GATHERED_TRANSFORMERS", ((99, 0), (100, 0)))
    monkeypatch.setattr(engine, "_support_checked", {})  # the gathered run cached "yes"
    f_fall, l_fall, _ = run(model, corpus, names, gather=True, mode="fisher")
    s_fall, _, _ = run(model, corpus, names, gather=True, mode="score", weights=weights)
    for n in names:
        assert torch.equal(f_fall[n], f_plain[n]), n
    assert [l_fall[i] for i in ALL] == [l_plain[i] for i in ALL]
    assert [s_fall[i] for i in ALL] == [s_plain[i] for i in ALL]
    if gathered is not None:
        np.testing.assert_allclose([gathered[i] for i in ALL], [s_plain[i] for i in ALL], rtol=1e-5)
