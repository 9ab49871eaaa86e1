"""prepare's hygiene flags (data/hygiene.py): references on tiny inputs, counts, info."""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bioprune.data import prepare as prepare_mod
from bioprune.data.alphabet import get_alphabet
from bioprune.data.corpus import Corpus
from bioprune.data.hygiene import complexity_scores, kmer_spec, longest_unknown_runs
from bioprune.data.prepare import PrepareConfig, prepare
from tests.hostile import assert_one_line_error, run_cli
from tests.test_prepare import _fasta

# ---- references: plain loops over one sequence at a time ---------------------------


def reference_complexity(seq: str, letters: str, k: int) -> tuple[float, int]:
    words = [seq[i : i + k] for i in range(len(seq) - k + 1)]
    words = [w for w in words if all(c in letters for c in w)]
    if len(words) < 2:
        return 1.0, len(words)
    h = -sum(c / len(words) * math.log2(c / len(words)) for c in Counter(words).values())
    return min(max(h / math.log2(min(len(letters) ** k, len(words))), 0.0), 1.0), len(words)


def reference_longest_run(seq: str, unknown: str) -> int:
    return max((len(list(g)) for c, g in itertools.groupby(seq) if c == unknown), default=0)


def _encode(seqs: list[str], alphabet):
    raw = "".join(seqs).encode()
    tokens = alphabet.byte_to_id[np.frombuffer(raw, dtype=np.uint8)]
    offsets = np.r_[0, np.cumsum([len(s) for s in seqs])].astype(np.int64)
    return tokens, offsets


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from(["rna", "protein"]),
    st.lists(st.text(alphabet="ACGUNNR", max_size=40), max_size=12),
    st.lists(st.text(alphabet="ACDEFGHIKLMXXBNQ", max_size=40), max_size=12),
)
def test_flags_match_plain_loop_references(name, rna, protein):
    alphabet = get_alphabet(name)
    seqs = rna if name == "rna" else protein
    symbol, size, k = kmer_spec(alphabet)
    letters = "ACGU" if name == "rna" else "ACDEFGHIKLMNPQRSTVWY"
    tokens, offsets = _encode(seqs, alphabet)
    cplx, kmers = complexity_scores(tokens, offsets, symbol, size, k)
    runs = longest_unknown_runs(tokens, offsets, alphabet.tokens.index(alphabet.unknown_residue))
    for i, s in enumerate(seqs):
        ref, count = reference_complexity(s, letters, k)
        assert kmers[i] == count
        assert cplx[i] == pytest.approx(ref, abs=1e-9)
        assert runs[i] == reference_longest_run(s, alphabet.unknown_residue)


def test_complexity_of_known_repeats():
    alphabet = get_alphabet("rna")
    seqs = ["U" * 100, "AU" * 50, "CAG" * 40, "ACGU", "NNNNNNNNNN" + "ACGU" + "NNNNN"]
    tokens, offsets = _encode(seqs, alphabet)
    cplx, kmers = complexity_scores(tokens, offsets, *kmer_spec(alphabet))
    assert cplx[0] == 0.0 and kmers[0] == 98
    assert cplx[1] == pytest.approx(1 / 6)  # two 3-mers in equal parts, log2(64) = 6
    assert cplx[2] == pytest.approx(math.log2(3) / 6, rel=1e-3)  # 40/39/39 of 118 3-mers
    assert cplx[3] == 1.0  # two distinct 3-mers out of two
    runs = longest_unknown_runs(tokens, offsets, alphabet.tokens.index("N"))
    assert runs.tolist() == [0, 0, 0, 0, 10]  # runs do not join across sequences


# ---- prepare: counts on hand-made inputs ---------------------------------------------

RECORDS = [
    ("a", "", "GAUCCGAUUAGCAAGGCUAC"),
    ("b", "lower case, T: a after normalising", "gatccgattagcaaggctac"),
    ("c", "homopolymer", "U" * 30),
    ("d", "N-run", "ACGUAGGCUA" + "N" * 12 + "CCGAUAGCAU"),
    ("e", "exact copy of a", "GAUCCGAUUAGCAAGGCUAC"),
    ("f", "copy of the homopolymer", "u" * 30),
    ("g", "short repeat: too few 3-mers to judge", "AUAUAUA"),
    ("h", "dinucleotide repeat", "CA" * 20),
    ("i", "unique", "GGCAUCCAAUGCUAGCAUCG"),
]


def _counts(tmp_path, name, **kw):
    f = _fasta(tmp_path / "in.fa", RECORDS)
    result = prepare(PrepareConfig(inputs=[f], alphabet="rna", out=tmp_path / name, **kw))
    c = result.counts
    assert c["read"] == c["written"] + sum(c[k] for k in prepare_mod.SKIP_KEYS)
    return result


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_hygiene_counts_on_a_hand_made_input(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", batch)
    r = _counts(tmp_path, "plain")
    c = r.counts
    # flagged and counted, nothing dropped by default
    assert (c["written"], c["low_complexity"], c["n_runs"], c["exact_duplicates"]) == (9, 3, 1, 3)
    assert c["low_complexity_skipped"] == c["duplicates_skipped"] == 0
    # --dedup exact keeps the first of each sequence: b and e repeat a, f repeats c
    r = _counts(tmp_path, "dedup", dedup="exact")
    ids = Corpus(r.out).ids().tolist()
    assert ids == ["a", "c", "d", "g", "h", "i"]
    assert r.counts["duplicates_skipped"] == 3
    # --drop-low-complexity drops c, f (homopolymer), h (repeat) and d (N-run), not g (short)
    r = _counts(tmp_path, "drop", drop_low_complexity=True)
    assert Corpus(r.out).ids().tolist() == ["a", "b", "e", "g", "i"]
    assert r.counts["low_complexity_skipped"] == 4 and r.counts["exact_duplicates"] == 2
    # both: each record is skipped for one reason only (complexity first)
    r = _counts(tmp_path, "both", drop_low_complexity=True, dedup="exact")
    assert Corpus(r.out).ids().tolist() == ["a", "g", "i"]
    assert (r.counts["low_complexity_skipped"], r.counts["duplicates_skipped"]) == (4, 2)
    corpus = Corpus(r.out)
    corpus.verify()  # the content checksum still matches (an InputError otherwise)
    assert corpus.checksum == r.manifest["checksum"]


def test_duplicates_after_cropping_and_across_files(tmp_path):
    f1 = _fasta(tmp_path / "a.fa", [("x", "", "ACGUACGGAUCC"), ("y", "", "GGAUCCAGUACG")])
    f2 = _fasta(tmp_path / "b.fa", [("z", "", "acguacggAAAA"), ("w", "", "GGAUCCAGUACG")])
    r = prepare(PrepareConfig(inputs=[f1, f2], alphabet="rna", out=tmp_path / "c", max_length=8))
    # z cropped to ACGUACGG equals x cropped; w repeats y from the other file
    assert r.counts["exact_duplicates"] == 2 and r.counts["long_cropped"] == 4


def test_every_record_dropped_names_the_reason(tmp_path):
    f = _fasta(tmp_path / "in.fa", [("a", "", "U" * 40), ("b", "", "A" * 40)])
    with pytest.raises(ValueError, match="all skipped \\(2 low_complexity\\)"):
        prepare(
            PrepareConfig(inputs=[f], alphabet="rna", out=tmp_path / "c", drop_low_complexity=True)
        )
    assert not (tmp_path / "c").exists()


def test_prepare_and_info_cli_show_hygiene(tmp_path, monkeypatch, capsys):
    f = _fasta(tmp_path / "in.fa", RECORDS)
    out = tmp_path / "corpus"
    code, err = run_cli(
        "prepare", f, "--alphabet", "rna", "--out", out, "--dedup", "exact", "--no-progress",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    code, text = run_cli("info", out, "--json", monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, text
    stats = json.loads(text)
    assert stats["counts"]["exact_duplicates"] == 3 and stats["counts"]["duplicates_skipped"] == 3
    assert stats["counts"]["low_complexity"] == 3 and stats["counts"]["n_runs"] == 1  # before dedup
    assert stats["hygiene"]["dedup"] == "exact"
    code, table = run_cli("info", out, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, table
    assert "exact_duplicates" in table and "low_complexity" in table
    assert "dedup:exact(repeatsskipped)" in "".join(table.split())  # rich wraps lines
    code, err = run_cli(
        "prepare", f, "--alphabet", "rna", "--out", tmp_path / "x", "--dedup", "fuzzy",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "--dedup", "fuzzy")
