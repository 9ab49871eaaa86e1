"""MLM masking: a pure function of (seed, index, draw) with the right statistics."""

import numpy as np
import pytest

from bioprune.data.alphabet import get_alphabet
from bioprune.data.masking import IGNORE_INDEX, apply_mask, mask_draw

RNA = get_alphabet("rna")
PROTEIN = get_alphabet("protein")


def _residues(n, alphabet=RNA, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(alphabet.canonical_ids, n).astype(np.uint8)


def test_same_key_same_draw_and_different_keys_differ():
    r = _residues(200)
    a = mask_draw(r, RNA, seed=3, index=11, draw=2)
    assert a == mask_draw(r.copy(), RNA, seed=3, index=11, draw=2)
    others = [
        mask_draw(r, RNA, seed=4, index=11, draw=2),
        mask_draw(r, RNA, seed=3, index=12, draw=2),
        mask_draw(r, RNA, seed=3, index=11, draw=3),
    ]
    assert all(a != o for o in others)


def test_draw_does_not_depend_on_batch_or_history():
    # Interleaving other draws (other examples, other batches) changes nothing.
    r = _residues(80)
    first = mask_draw(r, RNA, seed=0, index=5, draw=0)
    for i in range(20):
        mask_draw(_residues(30, seed=i), RNA, seed=0, index=i, draw=0)
    assert mask_draw(r, RNA, seed=0, index=5, draw=0) == first


@pytest.mark.parametrize("alphabet", [RNA, PROTEIN], ids=["rna", "protein"])
def test_statistics_over_many_draws(alphabet):
    length = 150
    r = _residues(length, alphabet)
    selected = masked = randomized = kept = 0
    draws = 4000
    for k in range(draws):
        d = mask_draw(r, alphabet, seed=1, index=k % 97, draw=k)
        orig = r[d.positions - 1].astype(np.int32)
        selected += len(d.positions)
        is_mask = d.inputs == alphabet.mask_id
        masked += int(is_mask.sum())
        # a random replacement may coincide with the original residue; count
        # "kept" as unchanged, then correct with the known collision rate
        unchanged = (~is_mask) & (d.inputs == orig)
        kept += int(unchanged.sum())
        randomized += int(((~is_mask) & (d.inputs != orig)).sum())
        assert not np.isin(d.inputs, alphabet.special_ids[:-1]).any()  # never <cls>/<pad>/...
        assert set(d.inputs[~is_mask].tolist()) <= set(alphabet.canonical_ids.tolist())
    frac = selected / (draws * length)
    assert abs(frac - 0.15) < 0.003
    collide = 1.0 / len(alphabet.canonical_ids)
    p_random = randomized / selected / (1 - collide)
    assert abs(masked / selected - 0.8) < 0.01
    assert abs(p_random - 0.1) < 0.01
    assert abs(kept / selected - (0.1 + 0.1 * collide)) < 0.01


def test_positions_are_residues_unique_sorted_and_at_least_one():
    for length in (1, 2, 3, 6, 7, 50):
        for k in range(50):
            d = mask_draw(_residues(length), RNA, seed=0, index=k, draw=0)
            assert len(d.positions) >= 1
            assert d.positions.min() >= 1 and d.positions.max() <= length  # never <cls>/<eos>
            assert np.all(np.diff(d.positions) > 0)


def test_short_sequences_keep_fifteen_percent_in_expectation():
    # probabilistic rounding: E[n] = 0.15 L exactly once 0.15 L >= 1
    length = 20
    n = [
        len(mask_draw(_residues(length), RNA, seed=2, index=i, draw=0).positions)
        for i in range(3000)
    ]
    assert abs(np.mean(n) / length - 0.15) < 0.01
    assert set(n) <= {3, 4}


def test_apply_mask_labels_only_selected_positions():
    r = _residues(40)
    framed = RNA.frame(r)
    d = mask_draw(r, RNA, seed=0, index=0, draw=0)
    x, y = apply_mask(framed, d)
    sel = np.zeros(len(framed), bool)
    sel[d.positions] = True
    assert np.array_equal(y[sel], framed[sel])
    assert np.all(y[~sel] == IGNORE_INDEX)
    assert np.array_equal(x[~sel], framed[~sel])
    assert np.array_equal(x[sel], d.inputs)


def test_empty_sequence_and_negative_keys_are_errors():
    with pytest.raises(ValueError, match="no residues"):
        mask_draw(np.zeros(0, np.uint8), RNA, seed=0, index=3, draw=0)
    with pytest.raises(ValueError, match=">= 0"):
        mask_draw(_residues(5), RNA, seed=-1, index=0, draw=0)
