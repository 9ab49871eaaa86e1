"""Alphabets: exact id order of RNA-FM / ESM-2, framing, normalisation."""

import numpy as np
import pytest

from bioprune.data.alphabet import get_alphabet

RNA_FM_ORDER = (
    "<cls> <pad> <eos> <unk> A C G U R Y K M S W B D H V N - "
    "<null_1> <null_2> <null_3> <null_4> <mask>"
).split()
ESM2_ORDER = (
    "<cls> <pad> <eos> <unk> L A G V S E R T I D P K Q N F Y M H W C X B U Z O . - <null_1> <mask>"
).split()


def test_rna_vocabulary_is_rna_fm_order():
    rna = get_alphabet("rna")
    assert list(rna.tokens) == RNA_FM_ORDER
    assert len(rna) == 25
    assert (rna.cls_id, rna.pad_id, rna.eos_id, rna.unk_id, rna.mask_id) == (0, 1, 2, 3, 24)


def test_protein_vocabulary_is_esm2_order():
    prot = get_alphabet("protein")
    assert list(prot.tokens) == ESM2_ORDER
    assert len(prot) == 33
    assert (prot.cls_id, prot.pad_id, prot.eos_id, prot.unk_id, prot.mask_id) == (0, 1, 2, 3, 32)


def test_rna_normalisation_uppercases_and_converts_t():
    rna = get_alphabet("rna")
    assert rna.normalize("acgtTu") == "ACGUUU"
    # other IUPAC codes keep their own token
    assert rna.decode(rna.encode(rna.normalize("nrykmswbdhv-"))) == "NRYKMSWBDHV-"


def test_protein_does_not_translate_t():
    prot = get_alphabet("protein")
    assert prot.normalize("mkt") == "MKT"


def test_encode_frame_roundtrip():
    for name in ("rna", "protein"):
        a = get_alphabet(name)
        seq = a.residues * 3
        ids = a.encode(seq)
        assert ids.dtype == np.uint8
        assert a.decode(ids) == seq
        framed = a.frame(ids)
        assert framed[0] == a.cls_id and framed[-1] == a.eos_id
        assert framed.tolist()[1:-1] == ids.tolist()


def test_encode_rejects_foreign_characters_with_position():
    rna = get_alphabet("rna")
    with pytest.raises(ValueError, match=r"'X' at position 3"):
        rna.encode("ACXG")
    assert rna.invalid_positions("AC*GZ").tolist() == [2, 4]


def test_canonical_replacement_pool_has_no_special_tokens():
    for name in ("rna", "protein"):
        a = get_alphabet(name)
        assert not set(a.canonical_ids.tolist()) & set(a.special_ids)
    assert (
        "".join(get_alphabet("rna").tokens[i] for i in get_alphabet("rna").canonical_ids) == "ACGU"
    )
    assert len(get_alphabet("protein").canonical_ids) == 20


def test_unknown_alphabet_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown alphabet 'dna'"):
        get_alphabet("dna")
