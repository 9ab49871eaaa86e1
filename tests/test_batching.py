"""Token-budget batching and masked collation."""

import numpy as np
import pytest

from bioprune.data.alphabet import get_alphabet
from bioprune.data.batching import collate_masked, padding_fraction, token_budget_batches
from bioprune.data.masking import IGNORE_INDEX, mask_draw

RNA = get_alphabet("rna")


def test_batches_cover_every_example_once_and_respect_budget():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 300, 1000)
    idx = rng.permutation(5000)[:1000]
    batches = token_budget_batches(lengths, idx, max_tokens=2048)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == sorted(idx.tolist())
    by_index = dict(zip(idx.tolist(), lengths.tolist(), strict=True))
    for b in batches:
        ls = [by_index[i] for i in b.tolist()]
        assert len(b) == 1 or max(ls) * len(b) <= 2048


def test_batches_are_deterministic_and_longest_first():
    lengths = np.array([5, 9, 9, 2, 7])
    a = token_budget_batches(lengths, max_tokens=18)
    b = token_budget_batches(lengths.copy(), max_tokens=18)
    assert [x.tolist() for x in a] == [x.tolist() for x in b]
    assert a[0].tolist() == [1, 2]  # both 9s, ties by index


def test_oversized_example_gets_its_own_batch_and_cap_applies():
    batches = token_budget_batches(np.array([100, 3, 3, 3]), max_tokens=10, max_batch_size=2)
    assert [b.tolist() for b in batches] == [[0], [1, 2], [3]]


def test_length_sorting_keeps_padding_small():
    rng = np.random.default_rng(1)
    lengths = (rng.lognormal(np.log(150), 0.5, 20000)).astype(int) + 2
    batches = token_budget_batches(lengths, max_tokens=4096)
    assert padding_fraction(batches, lengths) < 0.05


def test_collate_pads_with_pad_and_ignores_labels():
    seqs = ["ACGUACGU", "GGA", "ACGUACGUACGUAC"]
    framed, draws = [], []
    for i, s in enumerate(seqs):
        r = RNA.encode(s)
        framed.append(RNA.frame(r))
        draws.append(mask_draw(r, RNA, seed=0, index=i, draw=0))
    batch = collate_masked(framed, draws, RNA, indices=np.array([7, 8, 9]))
    assert batch.input_ids.shape == (3, 16)
    assert batch.indices.tolist() == [7, 8, 9]
    for row, f in enumerate(framed):
        assert batch.attention_mask[row].sum() == len(f)
        assert np.all(batch.input_ids[row, len(f) :] == RNA.pad_id)
        assert np.all(batch.labels[row, len(f) :] == IGNORE_INDEX)
    t = batch.to_torch()
    assert t["input_ids"].shape == (3, 16)


def test_bad_arguments():
    with pytest.raises(ValueError):
        token_budget_batches(np.array([3]), max_tokens=0)
    with pytest.raises(ValueError):
        collate_masked([RNA.frame(RNA.encode("AC"))], [], RNA)
