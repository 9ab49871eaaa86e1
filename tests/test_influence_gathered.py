"""The gathered last layer (engine.gathered_last_layer) against the plain path.

With ``gather_last_layer=True`` the runner computes the last encoder layer's
queries, attention output, FFN and final layer norm at the selected positions
only. It must give the same losses, Fisher and scores as running the HF model
on every position (``gather_last_layer=False``), on mixed-length batches (pads
everywhere), for rotary and absolute positions and for every ``--params``
restriction, including ones that leave out the last layer and the head.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bioprune.data.batching import collate_masked
from bioprune.data.corpus import write_corpus
from bioprune.data.masking import mask_draw
from bioprune.influence.engine import MLMGradientRunner, encoder_at_selected
from bioprune.influence.hooks import (
    FisherReduction,
    PerExampleGradients,
    SelfInfluenceReduction,
    gathered_module_names,
)
from bioprune.influence.params import select_parameters
from tests.conftest import random_sequences
from tests.test_influence_exact import rel_err, small_model

SEED = 5
CPU = torch.device("cpu")


def _gathered_runs_here() -> bool:
    import transformers

    from bioprune.influence.engine import GATHERED_TRANSFORMERS, _major_minor

    low, high = GATHERED_TRANSFORMERS
    return low <= _major_minor(transformers.__version__) < high


# Outside the transformers releases it re-implements, the gathered layer is off
# (tests/test_gathered_guard.py checks the fallback there).
pytestmark = [
    pytest.mark.skipif(
        not _gathered_runs_here(), reason="gathered last layer needs transformers >= 5.6, < 6"
    ),
    pytest.mark.usefixtures("one_thread"),
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("gathered") / "corpus"
    return write_corpus(path, random_sequences(24, "rna", seed=2, min_len=3, max_len=40), "rna")


@pytest.fixture(scope="module", params=["rotary", "absolute"])
def kind(request):
    return request.param


BATCHES = [[0, 5, 11, 17, 2], [3, 4], [6, 7, 8, 9, 10, 1, 12, 23, 22]]
ALL = sorted(i for b in BATCHES for i in b)


def run(model, corpus, names, *, gather: bool, mode: str, weights=None, draws: int = 2):
    """Fisher totals or scores and losses of BATCHES, through one path."""
    tracker = PerExampleGradients(
        model,
        names,
        reduction=SelfInfluenceReduction(weights) if mode == "score" else FisherReduction(),
        gather_last_layer=gather,
    )
    scores, losses = {}, {}
    with tracker:
        runner = MLMGradientRunner(
            model, corpus.alphabet, corpus, tracker, seed=SEED, draws=draws, device=CPU
        )
        for b in BATCHES:
            res = runner.run_batch(np.asarray(b))
            assert not res.nonfinite.any()
            for j, i in enumerate(b):
                losses[i] = res.loss[j]
                if mode == "score":
                    scores[i] = res.score[j]
            if mode == "fisher":
                tracker.reduction.commit()
        fired = set(tracker.fired)
    if mode == "fisher":
        return {n: t.clone() for n, t in tracker.reduction.totals.items()}, losses, fired
    return scores, losses, fired


@pytest.mark.parametrize("spec", ["all", "lm_head", "layers:1:2", "layers:0:1", "word_emb"])
def test_gathered_last_layer_equals_plain_path(corpus, kind, spec):
    model = small_model(kind, seed=1)
    pattern = r"esm\.embeddings\.word_embeddings\.weight" if spec == "word_emb" else spec
    names = select_parameters(model, pattern).names
    assert names
    f_plain, l_plain, fired_plain = run(model, corpus, names, gather=False, mode="fisher")
    f_gath, l_gath, fired_gath = run(model, corpus, names, gather=True, mode="fisher")
    assert fired_gath == fired_plain == set(names)
    bad = {n: rel_err(f_gath[n], f_plain[n]) for n in names}
    assert max(bad.values()) < 1e-5, bad
    np.testing.assert_allclose([l_gath[i] for i in ALL], [l_plain[i] for i in ALL], rtol=1e-6)

    weights = {n: (1.0 / (f.double() + 1e-3 * float(f.mean()))).float() for n, f in f_plain.items()}
    s_plain, _, _ = run(model, corpus, names, gather=False, mode="score", weights=weights)
    s_gath, _, _ = run(model, corpus, names, gather=True, mode="score", weights=weights)
    np.testing.assert_allclose([s_gath[i] for i in ALL], [s_plain[i] for i in ALL], rtol=1e-5)
    assert all(s_plain[i] > 0 for i in ALL)


def test_gathered_modules_see_selected_rows_only(corpus, kind):
    """The gathered modules run on (B, S, .) rows, S the most selected positions in
    the batch; the last layer's keys and values still see every position."""
    model = small_model(kind)
    batch_ids = BATCHES[2]
    a = corpus.alphabet
    draws = [mask_draw(corpus.residues(i), a, seed=SEED, index=i, draw=0) for i in batch_ids]
    framed = [corpus.framed(i) for i in batch_ids]
    batch = collate_masked(framed, draws, a, np.asarray(batch_ids)).to_torch(CPU)
    t = batch["input_ids"].shape[1]
    selected = batch["labels"] != -100
    s = int(selected.sum(1).max())
    assert s < t
    seen: dict[str, int] = {}
    modules = dict(model.named_modules())
    last = f"esm.encoder.layer.{len(model.esm.encoder.layer) - 1}"
    watched = gathered_module_names(model) | {f"{last}.attention.self.key"}
    handles = [
        modules[n].register_forward_hook(
            lambda mod, inp, out, n=n: seen.__setitem__(n, inp[0].shape[1])
        )
        for n in watched
    ]
    order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :s]
    tracker = PerExampleGradients(model, ["lm_head.bias"], reduction=FisherReduction())
    with torch.no_grad():
        rows = encoder_at_selected(
            model, tracker, batch["input_ids"], batch["attention_mask"], order
        )
    for h in handles:
        h.remove()
    with torch.no_grad():
        full = model.esm(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).last_hidden_state
    assert seen.pop(f"{last}.attention.self.key") == t
    assert set(seen.values()) == {s}
    want = full.gather(1, order.unsqueeze(-1).expand(-1, -1, full.shape[-1]))
    valid = torch.arange(s).unsqueeze(0) < selected.sum(1, keepdim=True)
    assert rel_err(rows[valid], want[valid]) < 1e-5
