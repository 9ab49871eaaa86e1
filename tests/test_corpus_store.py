"""The memory-mapped corpus store and its streaming writer."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from bioprune import artifacts
from bioprune.data.corpus import Corpus, CorpusWriter, write_corpus
from tests.conftest import random_sequences


def test_roundtrip_across_flushes(tmp_path, monkeypatch):
    monkeypatch.setattr(CorpusWriter, "ROWS_PER_GROUP", 7)
    records = random_sequences(50, "rna", seed=4, min_len=1, max_len=40)
    corpus = write_corpus(tmp_path / "c", records, "rna")
    assert len(corpus) == 50
    table = pq.read_table(corpus.sequences_path)
    assert table.column("index").to_pylist() == list(range(50))
    assert table.column("id").to_pylist() == [r[0] for r in records]
    assert table.column("sequence").to_pylist() == [r[2] for r in records]
    assert table.column("length").to_pylist() == [len(r[2]) for r in records]
    for i, (_, _, seq) in enumerate(records):
        assert corpus.alphabet.decode(corpus.residues(i)) == seq
        assert corpus.framed(i)[0] == corpus.alphabet.cls_id
    assert corpus.lengths.tolist() == [len(r[2]) for r in records]
    assert isinstance(corpus.tokens, np.memmap)
    assert corpus.manifest["num_tokens"] == sum(len(r[2]) for r in records)


def test_checksum_depends_on_content_only(tmp_path, monkeypatch):
    records = random_sequences(20, "rna", seed=1)
    a = write_corpus(tmp_path / "a", records, "rna")
    monkeypatch.setattr(CorpusWriter, "ROWS_PER_GROUP", 3)
    b = write_corpus(tmp_path / "b", records, "rna")
    changed = [*records[:-1], (records[-1][0], "", records[-1][2] + "A")]
    c = write_corpus(tmp_path / "c", changed, "rna")
    assert a.checksum != c.checksum
    assert a.checksum == b.checksum  # flush boundaries do not matter


def test_ids_and_lookup(tmp_path):
    corpus = write_corpus(tmp_path / "c", random_sequences(10, "rna"), "rna")
    assert corpus.ids().tolist() == [f"seq{i}" for i in range(10)]
    assert corpus.indices_of(["seq7", "seq2"]).tolist() == [7, 2]
    with pytest.raises(KeyError, match="nope"):
        corpus.indices_of(["seq1", "nope"])
    with pytest.raises(IndexError):
        corpus.residues(10)


def test_not_a_corpus_and_damaged_store(tmp_path):
    with pytest.raises(FileNotFoundError, match="bioprune prepare"):
        Corpus(tmp_path)
    corpus = write_corpus(tmp_path / "c", random_sequences(5, "rna"), "rna")
    np.save(corpus.path / artifacts.CORPUS_OFFSETS, np.zeros(3, np.int64))
    with pytest.raises(ValueError, match="damaged"):
        Corpus(corpus.path)


def test_atomic_dir_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with artifacts.atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("interrupted")
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []
