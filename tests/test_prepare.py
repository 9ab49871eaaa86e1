"""prepare: every policy, exact messages, counts that add up, atomic output, round trip."""

from __future__ import annotations

import gzip
import json
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune import artifacts
from bioprune.data import prepare as prepare_mod
from bioprune.data.alphabet import get_alphabet
from bioprune.data.corpus import Corpus, CorpusWriter
from bioprune.data.prepare import COUNT_KEYS, PrepareConfig, _IdHashSet, prepare


def _fasta(path, records, wrap=7, newline="\n"):
    lines = []
    for rid, desc, seq in records:
        lines.append(f">{rid} {desc}".rstrip())
        lines += [seq[k : k + wrap] for k in range(0, len(seq), wrap)]
    data = (newline.join(lines) + newline).encode()
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def _run(tmp_path, inputs, name="corpus", **kw):
    kw.setdefault("alphabet", "rna")
    return prepare(PrepareConfig(inputs=inputs, out=tmp_path / name, **kw))


def _rows(path):
    return pq.read_table(path / artifacts.CORPUS_SEQUENCES).to_pylist()


def _check_counts_add_up(result):
    c = result.counts
    assert set(c) == set(COUNT_KEYS)
    assert c["read"] == c["written"] + sum(c[k] for k in prepare_mod.SKIP_KEYS)
    assert c["written"] == result.num_sequences == result.manifest["num_sequences"]


# ---- round trip ----------------------------------------------------------------


def _messy_records(n, seed):
    """Random RNA-ish records with lower case and T, as a user's file would have."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        seq = "".join(rng.choice(list("ACGUTacgutNn"), int(rng.integers(1, 80))))
        out.append((f"id{seed}_{i}", f"record {i} of {seed}", seq))
    return out


@pytest.mark.parametrize("batch", [1, 5, 4096])
def test_round_trip_gives_the_normalized_input_exactly(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", batch)
    monkeypatch.setattr(CorpusWriter, "ROWS_PER_GROUP", 16)
    a = _messy_records(30, 1)
    b = _messy_records(25, 2)
    files = [_fasta(tmp_path / "a.fa", a, newline="\r\n"), _fasta(tmp_path / "b.fa.gz", b)]
    result = _run(tmp_path, files)
    rna = get_alphabet("rna")
    expected = [(i, d, rna.normalize(s)) for i, d, s in a + b]
    # Reference normalisation, written out by hand: upper case, T -> U.
    assert [s for _, _, s in expected] == [s.upper().replace("T", "U") for _, _, s in a + b]
    rows = _rows(result.out)
    assert [(r["id"], r["description"], r["sequence"]) for r in rows] == expected
    assert [r["index"] for r in rows] == list(range(len(expected)))
    assert [r["length"] for r in rows] == [len(s) for _, _, s in expected]
    corpus = Corpus(result.out)
    assert len(corpus) == len(expected)
    for i, (_, _, s) in enumerate(expected):
        assert rna.decode(corpus.residues(i)) == s
        assert corpus.framed(i)[0] == rna.cls_id and corpus.framed(i)[-1] == rna.eos_id
    assert result.num_tokens == sum(len(s) for _, _, s in expected)
    _check_counts_add_up(result)


def test_output_does_not_depend_on_batch_or_row_group_size(tmp_path, monkeypatch):
    recs = _messy_records(40, 3)
    f = _fasta(tmp_path / "a.fa", recs)
    first = _run(tmp_path, [f], "one")
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", 3)
    second = _run(tmp_path, [f], "two")
    assert first.manifest["checksum"] == second.manifest["checksum"]
    assert _rows(first.out) == _rows(second.out)


def test_protein_keeps_t_and_upper_cases(tmp_path):
    f = _fasta(tmp_path / "p.faa", [("p1", "", "mktayiakqr"), ("p2", "", "ACDT")])
    result = _run(tmp_path, [f], alphabet="protein")
    assert [r["sequence"] for r in _rows(result.out)] == ["MKTAYIAKQR", "ACDT"]


# ---- empty, long ------------------------------------------------------------------


def test_empty_records_are_skipped_and_counted(tmp_path):
    f = tmp_path / "e.fa"
    f.write_text(">a\n>b\n\n>c\nAC\n>d\n")
    result = _run(tmp_path, [f])
    assert [r["id"] for r in _rows(result.out)] == ["c"]
    assert result.counts["empty_skipped"] == 3
    assert result.counts["read"] == 4
    _check_counts_add_up(result)


def test_long_records_crop_keeps_the_first_residues(tmp_path):
    f = _fasta(tmp_path / "l.fa", [("a", "", "ACGUACGUAC"), ("b", "", "ACGU"), ("c", "", "GGGGG")])
    result = _run(tmp_path, [f], max_length=5, on_long="crop")
    assert [r["sequence"] for r in _rows(result.out)] == ["ACGUA", "ACGU", "GGGGG"]
    assert result.counts["long_cropped"] == 1
    assert Corpus(result.out).max_length == 5
    _check_counts_add_up(result)


def test_long_records_skip(tmp_path):
    f = _fasta(tmp_path / "l.fa", [("a", "", "ACGUACGUAC"), ("b", "", "ACGU")])
    result = _run(tmp_path, [f], max_length=5, on_long="skip")
    assert [r["id"] for r in _rows(result.out)] == ["b"]
    assert result.counts["long_skipped"] == 1 and result.counts["long_cropped"] == 0
    _check_counts_add_up(result)


def test_characters_cropped_off_are_not_validated(tmp_path):
    f = _fasta(tmp_path / "l.fa", [("a", "", "ACGUAZZZ")])
    result = _run(tmp_path, [f], max_length=5)
    assert [r["sequence"] for r in _rows(result.out)] == ["ACGUA"]


# ---- invalid characters ------------------------------------------------------------


def test_invalid_error_names_file_record_id_position_and_character(tmp_path):
    f = _fasta(tmp_path / "bad.fa", [("ok", "", "ACGU"), ("seqB", "x", "acgujacg")])
    with pytest.raises(ValueError) as exc:
        _run(tmp_path, [f])
    msg = str(exc.value)
    assert msg.startswith(f"{f}: record 2 (id 'seqB'): character 'j' at position 5 ")
    assert "not in the rna alphabet" in msg and "--on-invalid" in msg
    assert not (tmp_path / "corpus").exists()


def test_invalid_non_ascii_character_is_reported_as_typed(tmp_path):
    f = tmp_path / "u.fa"
    f.write_bytes(">a\nACGé\n".encode())
    with pytest.raises(ValueError, match="character 'é' at position 4"):
        _run(tmp_path, [f])


def test_invalid_skip(tmp_path):
    f = _fasta(tmp_path / "bad.fa", [("a", "", "ACGU"), ("b", "", "AZZU"), ("c", "", "GG*")])
    result = _run(tmp_path, [f], on_invalid="skip")
    assert [r["id"] for r in _rows(result.out)] == ["a"]
    assert result.counts["invalid_skipped"] == 2
    _check_counts_add_up(result)


@pytest.mark.parametrize(("alphabet", "unknown"), [("rna", "N"), ("protein", "X")])
def test_invalid_replace_writes_the_unknown_residue_and_counts(tmp_path, alphabet, unknown):
    f = _fasta(tmp_path / "bad.fa", [("a", "", "ACGA"), ("b", "", "A1CA2"), ("c", "", "%")])
    result = _run(tmp_path, [f], on_invalid="replace", alphabet=alphabet)
    assert [r["sequence"] for r in _rows(result.out)] == [
        "ACGA",
        f"A{unknown}CA{unknown}",
        unknown,
    ]
    a = get_alphabet(alphabet)
    assert a.decode(Corpus(result.out).residues(1)) == f"A{unknown}CA{unknown}"
    assert result.counts["invalid_replaced_records"] == 2
    assert result.counts["invalid_replaced_chars"] == 3
    _check_counts_add_up(result)


# ---- ids -----------------------------------------------------------------------------


@pytest.mark.parametrize("batch", [2, 4096])
def test_duplicate_id_error_names_both_records(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", batch)
    a = _fasta(tmp_path / "a.fa", [("x", "", "AC"), ("dup", "", "AC"), ("y", "", "AC")])
    b = _fasta(tmp_path / "b.fa", [("z", "", "AC"), ("dup", "", "GG")])
    with pytest.raises(ValueError) as exc:
        _run(tmp_path, [a, b])
    msg = str(exc.value)
    assert f"duplicate id 'dup': record 2 of {b} repeats record 2 of {a}" in msg
    assert "--dedupe-ids" in msg
    assert not (tmp_path / "corpus").exists()


def test_duplicate_id_within_a_file_and_of_a_skipped_record(tmp_path):
    # Ids must be unique over every record read, even one that is then skipped.
    f = tmp_path / "d.fa"
    f.write_text(">a\n>a\nACGU\n")
    with pytest.raises(ValueError, match=re.escape(f"record 2 of {f} repeats record 1 of {f}")):
        _run(tmp_path, [f])


@pytest.mark.parametrize("batch", [1, 4096])
def test_dedupe_ids_suffixes_and_counts(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", batch)
    recs = [("a", "", "AC"), ("a", "", "GG"), ("a_2", "", "UU"), ("a", "", "CC"), ("b", "", "A")]
    f = _fasta(tmp_path / "d.fa", recs)
    result = _run(tmp_path, [f], dedupe_ids=True)
    assert [r["id"] for r in _rows(result.out)] == ["a", "a_2", "a_2_2", "a_3", "b"]
    assert result.counts["ids_deduplicated"] == 3
    _check_counts_add_up(result)


def test_id_hash_set_matches_a_python_set_across_merges(monkeypatch):
    monkeypatch.setattr(_IdHashSet, "MIN_BUFFER", 50)
    monkeypatch.setattr(_IdHashSet, "MAX_BUFFER", 200)
    rng = np.random.default_rng(0)
    ids = [f"id{int(i)}" for i in rng.integers(0, 3000, 6000)]
    s = _IdHashSet()
    reference: set[str] = set()
    for start in range(0, len(ids), 37):
        chunk = ids[start : start + 37]
        h = s.hashes(chunk)
        got = s.contains(h)
        assert got.tolist() == [i in reference for i in chunk]
        s.add(h)
        reference.update(chunk)
    assert len(s._sorted) > 0  # the merge path ran


# ---- tables ------------------------------------------------------------------------


def test_tables_with_column_and_id_column(tmp_path):
    c = tmp_path / "t.csv"
    c.write_text("name,seq\nr1,acgt\nr2,\nr3,GG\n")
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"name": ["p1"], "seq": ["UU"]}), p)
    result = _run(tmp_path, [c, p], column="seq", id_column="name")
    assert [(r["id"], r["sequence"]) for r in _rows(result.out)] == [
        ("r1", "ACGU"),
        ("r3", "GG"),
        ("p1", "UU"),
    ]
    assert [s["records_read"] for s in result.manifest["sources"]] == [3, 1]
    assert [s["records_written"] for s in result.manifest["sources"]] == [2, 1]
    assert [s["format"] for s in result.manifest["sources"]] == ["csv", "parquet"]


def test_unknown_format_and_missing_column_fail_before_writing(tmp_path):
    bad = tmp_path / "x.xyz"
    bad.write_text("ACGU\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        _run(tmp_path, [bad])
    c = tmp_path / "t.csv"
    c.write_text("a,b\nAC,GG\n")
    with pytest.raises(ValueError, match=r"no column 'seq'.*'a', 'b'"):
        _run(tmp_path, [c], column="seq")
    assert not (tmp_path / "corpus").exists()


# ---- output directory ------------------------------------------------------------------


def test_existing_output_is_refused_and_overwrite_replaces_it(tmp_path):
    f = _fasta(tmp_path / "a.fa", [("a", "", "ACGU")])
    _run(tmp_path, [f])
    with pytest.raises(FileExistsError, match="--overwrite"):
        _run(tmp_path, [f])
    g = _fasta(tmp_path / "b.fa", [("b", "", "GG"), ("c", "", "UU")])
    result = _run(tmp_path, [g], overwrite=True)
    assert [r["id"] for r in _rows(result.out)] == ["b", "c"]
    assert len(Corpus(result.out)) == 2


def test_interrupted_write_leaves_no_complete_looking_directory(tmp_path, monkeypatch):
    f = _fasta(tmp_path / "a.fa", _messy_records(50, 0))
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", 4)
    real = prepare_mod.read_records

    def failing(*args, **kwargs):
        for i, rec in enumerate(real(*args, **kwargs)):
            if i == 20:
                raise KeyboardInterrupt  # as if the user pressed Ctrl-C mid-way
            yield rec

    monkeypatch.setattr(prepare_mod, "read_records", failing)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, [f])
    assert not (tmp_path / "corpus").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.fa"]  # temp dir removed too

    # An existing corpus survives a failed --overwrite run untouched.
    monkeypatch.setattr(prepare_mod, "read_records", real)
    first = _run(tmp_path, [f])
    monkeypatch.setattr(prepare_mod, "read_records", failing)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, [f], overwrite=True)
    assert Corpus(first.out).checksum == first.manifest["checksum"]


# ---- manifest and config -----------------------------------------------------------


def test_manifest_records_counts_sources_options_seed_and_version(tmp_path):
    from bioprune import __version__

    f = _fasta(tmp_path / "a.fa", [("a", "d", "ACGU"), ("b", "", ""), ("c", "", "ACGUACGU")])
    result = _run(tmp_path, [f], max_length=6, seed=7)
    m = json.loads((result.out / artifacts.CORPUS_MANIFEST).read_text())
    assert m["alphabet"] == "rna"
    assert m["num_sequences"] == 2 and m["num_tokens"] == 10
    assert m["max_length"] == 6 and m["seed"] == 7
    assert m["bioprune_version"] == __version__
    assert m["counts"] == {
        "read": 3,
        "written": 2,
        "empty_skipped": 1,
        "long_cropped": 1,
        "long_skipped": 0,
        "invalid_skipped": 0,
        "invalid_replaced_records": 0,
        "invalid_replaced_chars": 0,
        "ids_deduplicated": 0,
        "low_complexity": 0,
        "n_runs": 0,
        "low_complexity_skipped": 0,
        "exact_duplicates": 0,
        "duplicates_skipped": 0,
    }
    assert m["hygiene"]["dedup"] == "none" and m["hygiene"]["low_complexity"]["threshold"] == 0.5
    (src,) = m["sources"]
    assert src == {
        "path": str(f),
        "format": "fasta",
        "size": f.stat().st_size,
        "checksum": artifacts.file_checksum(f),
        "records_read": 3,
        "records_written": 2,
    }
    assert m["options"]["on_long"] == "crop" and m["options"]["on_invalid"] == "error"
    assert m["options"]["inputs"] == [str(f)]
    config = json.loads((result.out / artifacts.RUN_CONFIG).read_text())
    assert config["command"] == "prepare" and config["max_length"] == 6


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        # ConfigError names the Python parameter (issue 13); the CLI prints the flag
        ({"max_length": 0}, "max_length: must be at least 1"),
        ({"on_long": "trim"}, "on_long: 'trim'"),
        ({"on_invalid": "drop"}, "on_invalid: 'drop'"),
        ({"alphabet": "dna"}, "unknown alphabet"),
        ({"format": "genbank"}, "unknown --format"),
    ],
)
def test_config_validation(tmp_path, kw, match):
    f = _fasta(tmp_path / "a.fa", [("a", "", "AC")])
    args = {"inputs": [f], "alphabet": "rna", "out": tmp_path / "c", **kw}
    with pytest.raises(ValueError, match=match):
        PrepareConfig(**args)
    with pytest.raises(FileNotFoundError, match=r"missing\.fa"):
        PrepareConfig(inputs=[tmp_path / "missing.fa"], alphabet="rna", out=tmp_path / "c")
    with pytest.raises(ValueError, match="at least one input"):
        PrepareConfig(inputs=[], alphabet="rna", out=tmp_path / "c")


def test_progress_callback_sees_every_record_and_byte(tmp_path, monkeypatch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", 7)
    f = _fasta(tmp_path / "a.fa", _messy_records(30, 5))
    calls = []
    prepare(
        PrepareConfig(inputs=[f], alphabet="rna", out=tmp_path / "c"),
        progress=lambda b, n: calls.append((b, n)),
    )
    assert sum(n for _, n in calls) == 30
    assert sum(b for b, _ in calls) == f.stat().st_size


@pytest.mark.parametrize("batch", [1, 2, 4096])
def test_first_problem_in_input_order_is_reported_whatever_the_batch(tmp_path, monkeypatch, batch):
    monkeypatch.setattr(prepare_mod, "BATCH_RECORDS", batch)
    early_invalid = [("a", "", "AC"), ("b", "", "AZ"), ("a", "", "GG")]
    f = _fasta(tmp_path / "x.fa", early_invalid)
    with pytest.raises(ValueError, match=r"record 2 \(id 'b'\): character 'Z'"):
        _run(tmp_path, [f])
    early_duplicate = [("a", "", "AC"), ("a", "", "GG"), ("b", "", "AZ")]
    g = _fasta(tmp_path / "y.fa", early_duplicate)
    with pytest.raises(ValueError, match="duplicate id 'a'"):
        _run(tmp_path, [g])


@pytest.mark.parametrize("name", ["rna", "protein"])
def test_byte_normalisation_equals_alphabet_normalize_on_every_byte(name):
    a = get_alphabet(name)
    table = prepare_mod._normalize_bytes_table(a)
    for code in range(256):
        assert chr(table[code]) == a.normalize(chr(code)), code


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--on-long", "trim"], "--on-long: 'trim': choose one of crop, skip"),
        (["--max-length", "0"], "--max-length: must be at least 1 residue"),
        (["--alphabet", "dna"], "--alphabet: unknown alphabet 'dna'"),
    ],
)
def test_cli_names_the_flag_of_an_invalid_option(tmp_path, monkeypatch, capsys, args, fragment):
    from tests.hostile import assert_one_line_error, run_cli

    f = _fasta(tmp_path / "a.fa", [("a", "", "AC")])
    base = {"--alphabet": "rna", "--out": str(tmp_path / "c")}
    base.update(dict(zip(args[::2], args[1::2], strict=True)))
    flat = [x for kv in base.items() for x in kv]
    code, out = run_cli("prepare", str(f), *flat, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, out, fragment)
    assert not (tmp_path / "c").exists()
