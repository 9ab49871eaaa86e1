"""Corpus.from_sequences: the same corpus as ``prepare`` on the same records, held in memory."""

from __future__ import annotations

import numpy as np
import pytest

from bioprune.data.corpus import Corpus
from bioprune.data.prepare import PrepareConfig, prepare
from bioprune.errors import ConfigError

# Mixed case, T for U, an empty record, one longer than max_length, an exact duplicate,
# a low-complexity run and an N-run: every policy that touches the records is exercised.
RECORDS = [
    ("r1", "acguacguAGGCU"),
    ("r2", "GGTTCCAAGGTTCC"),
    ("r3", ""),
    ("r4", "ACGU" * 12),
    ("r5", "acguacguAGGCU"),
    ("r6", "AAAAAAAAAAAAAAAAAAAAAAAA"),
    ("r7", "ACGUNNNNNNNNNNNNACGU"),
]


def _prepared(tmp_path, **policy) -> Corpus:
    fasta = tmp_path / "in.fa"
    fasta.write_text("".join(f">{rid}\n{seq}\n" for rid, seq in RECORDS))
    out = tmp_path / "corpus"
    prepare(PrepareConfig(inputs=[fasta], alphabet="rna", out=out, **policy))
    return Corpus.open(out)


def _same(a: Corpus, b: Corpus) -> None:
    assert len(a) == len(b)
    assert a.ids().tolist() == b.ids().tolist()
    assert a.lengths.tolist() == b.lengths.tolist()
    for i in range(len(a)):
        assert np.array_equal(a.framed(i), b.framed(i))
    assert a.checksum == b.checksum
    assert a.manifest["counts"] == b.manifest["counts"]
    assert a.read_columns(["sequence"]).equals(b.read_columns(["sequence"]))
    for corpus in (a, b):
        batches = list(corpus.iter_columns(["index", "id"], batch_size=2))
        assert all(rb.num_rows <= 2 for rb in batches)
        assert [x for rb in batches for x in rb.column(1).to_pylist()] == a.ids().tolist()


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"max_length": 20, "on_long": "skip", "dedup": "exact"},
        {"max_length": 30, "drop_low_complexity": True},
    ],
)
def test_from_sequences_equals_prepare(tmp_path, policy):
    before = sorted(tmp_path.iterdir())
    memory = Corpus.from_sequences(
        [s for _, s in RECORDS], alphabet="rna", ids=[r for r, _ in RECORDS], **policy
    )
    assert sorted(tmp_path.iterdir()) == before  # nothing written
    assert memory.in_memory and memory.path is None
    _same(memory, _prepared(tmp_path, **policy))


def test_default_ids_and_indices_of():
    corpus = Corpus.from_sequences(["ACGU", "GGCC", "UUAA"])
    assert corpus.ids().tolist() == ["1", "2", "3"]
    assert corpus.indices_of(["3", "1"]).tolist() == [2, 0]
    assert corpus.max_length == 4 and corpus.alphabet.name == "rna"
    assert corpus.verify()["checksum"] == corpus.checksum


def test_save_round_trip(tmp_path):
    memory = Corpus.from_sequences(["MKTAYIAKQR", "GSHMLE"], alphabet="protein", ids=["p1", "p2"])
    saved = memory.save(tmp_path / "saved")
    _same(memory, saved)
    assert saved.verify()["sequences_checksum"]
    with pytest.raises(FileExistsError):
        memory.save(tmp_path / "saved")


def test_arrays_are_read_only():
    corpus = Corpus.from_sequences(["ACGU"])
    with pytest.raises(ValueError):
        corpus.tokens[0] = 1


def test_invalid_character_names_the_sequence_id():
    with pytest.raises(ValueError, match=r"sequence 2 \(id 'b'\): character 'Z' at position 3"):
        Corpus.from_sequences(["ACGU", "ACZU"], ids=["a", "b"])
    replaced = Corpus.from_sequences(["ACGU", "ACZU"], ids=["a", "b"], on_invalid="replace")
    assert replaced.read_columns(["sequence"]).column(0).to_pylist() == ["ACGU", "ACNU"]


def test_duplicate_ids_and_bad_arguments():
    with pytest.raises(ValueError, match=r"ids: duplicate id 'a': sequence 3 repeats sequence 1"):
        Corpus.from_sequences(["ACGU", "GGCC", "UUAA"], ids=["a", "b", "a"])
    renamed = Corpus.from_sequences(["ACGU", "GGCC"], ids=["a", "a"], dedupe_ids=True)
    assert renamed.ids().tolist() == ["a", "a_2"]
    with pytest.raises(ValueError, match="ids: 1 ids for 2 sequences"):
        Corpus.from_sequences(["ACGU", "GGCC"], ids=["a"])
    with pytest.raises(ConfigError, match="on_long: 'cut': choose one of crop, skip"):
        Corpus.from_sequences(["ACGU"], on_long="cut")
    with pytest.raises(ValueError, match="max_length: must be at least 1"):
        Corpus.from_sequences(["ACGU"], max_length=0)
    with pytest.raises(ValueError, match="sequences: must be a list of strings"):
        Corpus.from_sequences("ACGU")
    with pytest.raises(ConfigError, match=r"alphabt: not a policy of Corpus\.from_sequences"):
        Corpus.from_sequences(["ACGU"], alphabt="rna")  # unknown keyword: an error
    with pytest.raises(ConfigError, match="alphabet: unknown alphabet 'dna'"):
        Corpus.from_sequences(["ACGU"], alphabet="dna")
    with pytest.raises(ValueError, match="no sequence left"):
        Corpus.from_sequences([""])
    assert len(Corpus.from_sequences([""], allow_empty=True)) == 0


def test_no_files_behind_an_in_memory_corpus():
    corpus = Corpus.from_sequences(["ACGU"])
    with pytest.raises(ValueError, match=r"in-memory corpus has no sequences\.parquet"):
        _ = corpus.sequences_path
    assert repr(corpus) == "Corpus(in memory, alphabet=rna, n=1)"
