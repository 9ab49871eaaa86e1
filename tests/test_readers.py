"""Readers: every parsing edge case, checked against a slow obviously-correct reference."""

from __future__ import annotations

import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune.data import readers
from bioprune.data.readers import FORMATS, Record, detect_format, read_records


def _records(path, fmt=None, **kw):
    return [tuple(r) for r in read_records(path, fmt, **kw)]


def _reference_fasta(text: str) -> list[tuple[str, str, str, int]]:
    """Line-by-line FASTA parse: the obviously-correct reference."""
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(">"):
            words = line[1:].split(None, 1)
            out.append([words[0], words[1] if len(words) > 1 else "", ""])
        elif out:
            out[-1][2] += "".join(line.split())
    return [(i, d, s, n + 1) for n, (i, d, s) in enumerate(out)]


# ---- format detection ------------------------------------------------------


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_detect_format_every_extension_plain_gz_and_upper_case(fmt):
    for ext in FORMATS[fmt]:
        assert detect_format(f"dir.x/file{ext}") == fmt
        assert detect_format(f"file{ext}.gz") == fmt
        assert detect_format(f"FILE{ext.upper()}.GZ") == fmt


def test_detect_format_unknown_extension_is_a_clear_error():
    with pytest.raises(ValueError, match=r"seqs\.xyz.*cannot tell the format.*--format"):
        detect_format("seqs.xyz")
    with pytest.raises(ValueError, match="unknown --format 'genbank'"):
        detect_format("seqs.fa", "genbank")
    assert detect_format("seqs.xyz", "text") == "text"


def test_missing_input_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.fa"):
        read_records(tmp_path / "nope.fa")


# ---- FASTA -------------------------------------------------------------------


def test_fasta_wrapped_crlf_lower_case_blank_lines_descriptions(tmp_path):
    text = (
        "\r\n\n>s1 a tRNA\tfrom yeast\r\nacgu\r\nAC GT\r\n\r\n"
        ">s2\tdesc after tab\n\n>s3\nNNNN\n\n\nAC\n"
    )
    p = tmp_path / "x.fasta"
    p.write_bytes(text.encode())
    assert _records(p) == [
        ("s1", "a tRNA\tfrom yeast", "acguACGT", 1),
        ("s2", "desc after tab", "", 2),
        ("s3", "", "NNNNAC", 3),
    ]


def test_fasta_no_trailing_newline_and_empty_file(tmp_path):
    p = tmp_path / "x.fa"
    p.write_bytes(b">a\nAC\n>b\nGG")
    assert _records(p) == [("a", "", "AC", 1), ("b", "", "GG", 2)]
    p.write_bytes(b"")
    assert _records(p) == []
    p.write_bytes(b"\n \r\n")
    assert _records(p) == []


def test_fasta_gzip_by_content_and_progress_counts_compressed_bytes(tmp_path):
    text = ">a x\nACGU\nAC\n>b\nUU\n" * 50
    p = tmp_path / "x.fa.gz"
    p.write_bytes(gzip.compress(text.encode()))
    seen = []
    got = [tuple(r) for r in read_records(p, progress=seen.append)]
    assert got == _reference_fasta(text)
    assert sum(seen) == p.stat().st_size
    # A gzip file whose name lacks .gz still reads (detected by its magic bytes).
    q = tmp_path / "y.fa"
    q.write_bytes(p.read_bytes())
    assert _records(q) == got


@pytest.mark.parametrize("block", [1, 2, 3, 5, 8, 13, 64])
def test_fasta_records_spanning_blocks_match_reference(tmp_path, monkeypatch, block):
    rng = np.random.default_rng(block)
    parts = []
    for i in range(40):
        seq = "".join(rng.choice(list("ACGUacgu"), int(rng.integers(0, 50))))
        wrap = int(rng.integers(1, 30))
        nl = "\r\n" if i % 3 == 0 else "\n"
        body = nl.join(seq[k : k + wrap] for k in range(0, len(seq), wrap))
        parts.append(f">r{i} desc {i}{nl}{body}{nl}" + (nl if i % 4 == 0 else ""))
    text = "".join(parts)
    p = tmp_path / "x.fa"
    p.write_bytes(text.encode())
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    seen = []
    got = [tuple(r) for r in read_records(p, progress=seen.append)]
    assert got == _reference_fasta(text)
    assert sum(seen) == p.stat().st_size


@pytest.mark.parametrize("header", [">", "> desc only", ">\tx"])
def test_fasta_empty_id_is_an_error_naming_file_and_record(tmp_path, header):
    p = tmp_path / "bad.fa"
    p.write_text(f">ok\nAC\n{header}\nACGU\n")
    with pytest.raises(ValueError, match=r"bad\.fa: record 2 has an empty id"):
        _records(p)


def test_fasta_text_before_first_header_is_an_error(tmp_path):
    p = tmp_path / "bad.fa"
    p.write_text("\nACGU\n>a\nAC\n")
    with pytest.raises(ValueError, match=r"bad\.fa: line 2 is not a FASTA header"):
        _records(p)


def test_fasta_non_ascii_is_kept_for_the_invalid_character_message(tmp_path):
    p = tmp_path / "x.fa"
    p.write_bytes(">a\nACé\n".encode())
    assert _records(p) == [("a", "", "ACé", 1)]


# ---- plain text ------------------------------------------------------------------


def test_text_ids_are_line_numbers_and_blank_lines_are_empty_records(tmp_path):
    p = tmp_path / "x.txt"
    p.write_bytes(b"acgu\r\n\r\nAC GU\n  \nGG")
    assert _records(p) == [
        ("1", "", "acgu", 1),
        ("2", "", "", 2),
        ("3", "", "ACGU", 3),
        ("4", "", "", 4),
        ("5", "", "GG", 5),
    ]


def test_text_gzip_and_small_blocks(tmp_path, monkeypatch):
    lines = [f"{'ACGU' * (i % 7)}" for i in range(30)]
    p = tmp_path / "x.seq.gz"
    p.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    monkeypatch.setattr(readers, "BLOCK_BYTES", 3)
    assert _records(p) == [(str(i + 1), "", s, i + 1) for i, s in enumerate(lines)]


def test_text_that_looks_like_fasta_is_refused(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("\n>a\nACGU\n")
    with pytest.raises(ValueError, match=r"line 2 starts with '>'.*--format fasta"):
        _records(p)


def test_column_options_are_refused_for_sequence_formats(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("ACGU\n")
    with pytest.raises(ValueError, match="--column/--id-column apply to csv"):
        _records(p, column="seq")


# ---- tables ------------------------------------------------------------------


def _write_table(path, fmt, rows: dict):
    if fmt == "parquet":
        pq.write_table(pa.table(rows), path, row_group_size=2)
        return
    sep = "\t" if fmt == "tsv" else ","
    cols = list(rows)
    lines = [sep.join(cols)]
    for vals in zip(*rows.values(), strict=True):
        lines.append(sep.join("" if v is None else str(v) for v in vals))
    text = "\n".join(lines) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet", "t.csv.gz", "t.tsv.gz"])
def test_tables_column_and_id_column(tmp_path, name):
    p = tmp_path / name
    fmt = detect_format(p)
    _write_table(
        p,
        fmt,
        {"name": ["007", "b", "c"], "seq": ["acgu", "", "AC GU"], "other": [1.5, 2.5, 3.5]},
    )
    assert _records(p, column="seq", id_column="name") == [
        ("007", "", "acgu", 1),
        ("b", "", "", 2),
        ("c", "", "ACGU", 3),
    ]
    # Without --id-column the id is the 1-based row number.
    assert [r[0] for r in _records(p, column="seq")] == ["1", "2", "3"]


def test_csv_quoted_fields_and_numeric_ids(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text('id,sequence\n1,"ACGU"\n2,"GG,CC"\n')
    assert _records(p, column="sequence", id_column="id") == [
        ("1", "", "ACGU", 1),
        ("2", "", "GG,CC", 2),
    ]


def test_parquet_null_sequence_is_empty_and_null_id_is_an_error(tmp_path):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", None], "s": [None, "AC"]}), p)
    it = read_records(p, column="s", id_column="id")
    assert tuple(next(it)) == ("a", "", "", 1)
    with pytest.raises(ValueError, match=r"t\.parquet: row 2 has an empty id"):
        next(it)


def test_parquet_progress_sums_to_file_size(tmp_path, monkeypatch):
    p = tmp_path / "t.parquet"
    pq.write_table(pa.table({"s": ["ACGU"] * 10}), p, row_group_size=3)
    monkeypatch.setattr(readers, "TABLE_BATCH_ROWS", 3)
    seen = []
    assert len(list(read_records(p, column="s", progress=seen.append))) == 10
    assert sum(seen) == p.stat().st_size


@pytest.mark.parametrize("name", ["t.csv", "t.tsv", "t.parquet"])
def test_missing_column_names_file_and_its_columns(tmp_path, name):
    p = tmp_path / name
    _write_table(p, detect_format(p), {"id": ["a"], "seq": ["AC"]})
    with pytest.raises(
        ValueError, match=rf"{name}: no column 'sequence' \(--column\).*'id', 'seq'"
    ):
        read_records(p, column="sequence")
    with pytest.raises(ValueError, match=r"no column 'name' \(--id-column\)"):
        read_records(p, column="seq", id_column="name")
    with pytest.raises(ValueError, match="needs --column"):
        read_records(p)


def test_gzipped_parquet_is_refused(tmp_path):
    p = tmp_path / "t.parquet.gz"
    p.write_bytes(gzip.compress(b"PAR1"))
    with pytest.raises(ValueError, match="gunzip it first"):
        read_records(p, column="s")


def test_record_is_a_named_tuple():
    r = Record("a", "d", "AC", 1)
    assert (r.id, r.description, r.sequence, r.number) == ("a", "d", "AC", 1)
