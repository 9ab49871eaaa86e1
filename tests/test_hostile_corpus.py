"""Hostile corpus directories and prepare inputs (issue 10, items 3, 5, 7 and 12b).

Every case asserts the exit status, that the one-line message names the file and the reason,
and that no input or earlier output changed (and, for prepare, that no output is left).
"""

from __future__ import annotations

import bz2
import gzip
import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune import artifacts
from bioprune.data.corpus import Corpus, write_corpus
from bioprune.errors import InputError
from tests.conftest import random_sequences
from tests.hostile import assert_one_line_error, leftovers, run_cli, snapshot

# ---- helpers -----------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _wide_console(monkeypatch):
    # rich wraps at 80 columns and may break a long tmp path mid-name; the message itself is
    # one line (what a log file or a wide terminal shows).
    from bioprune.cli.common import console

    monkeypatch.setattr(console, "_width", 1000)


def _copy(corpus, tmp_path, name="c"):
    dst = tmp_path / name
    shutil.copytree(corpus.path, dst)
    return dst


def _poke_npy(path, index, value, dtype):
    """Overwrite entry ``index`` of a 1-D .npy in place (header untouched)."""
    arr = np.load(path, mmap_mode="r+")
    assert arr.dtype == np.dtype(dtype)
    arr[index] = value
    arr.flush()
    del arr


def _fasta_bytes(n=30, seed=0):
    recs = random_sequences(n, "rna", seed=seed, max_len=40)
    return "".join(f">{i} {d}\n{s}\n" for i, d, s in recs).encode()


def _prepare(*args, monkeypatch, capsys):
    return run_cli("prepare", *args, monkeypatch=monkeypatch, capsys=capsys)


def _assert_prepare_refused(code, err, src, out, *fragments):
    assert_one_line_error(code, err, src, *fragments)
    assert not out.exists()
    assert leftovers(out.parent) == []


# ---- item 3: the corpus store is checked on open ------------------------------------------


def test_info_reports_what_is_checked_and_verify_passes_on_a_clean_corpus(
    tiny_corpus, monkeypatch, capsys
):
    code, out = run_cli("info", tiny_corpus.path, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0 and "check it with --verify" in out
    code, out = run_cli(
        "info", tiny_corpus.path, "--verify", monkeypatch=monkeypatch, capsys=capsys
    )
    assert code == 0 and "(verified)" in out


def test_tokens_edited_in_place_fail_the_checksum_in_info_verify_and_select(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    """A token changed to another valid residue passes the cheap checks, but every stage that
    records the corpus checksum verifies it first, so nothing is recorded under a checksum
    the data does not have."""
    c = _copy(tiny_corpus, tmp_path)
    tokens = np.load(c / artifacts.CORPUS_TOKENS)
    _poke_npy(c / artifacts.CORPUS_TOKENS, 3, 4 if tokens[3] != 4 else 5, np.uint8)
    before = snapshot(tmp_path)
    code, err = run_cli("info", c, "--verify", monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "checksum", "prepare")
    out = tmp_path / "sel"
    code, err = run_cli(
        "select", "--method", "random", "--budget", "5", "--corpus", c, "--out", out,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "checksum")
    assert not out.exists() and leftovers(tmp_path) == []
    assert snapshot(tmp_path) == before


def test_sequences_parquet_replaced_fails_the_checksum(tiny_corpus, tmp_path):
    c = _copy(tiny_corpus, tmp_path)
    table = pq.read_table(c / artifacts.CORPUS_SEQUENCES)
    ids = table.column("id").to_pylist()
    ids[0], ids[1] = ids[1], ids[0]
    table = table.set_column(1, "id", pa.array(ids, pa.string()))
    pq.write_table(table, c / artifacts.CORPUS_SEQUENCES)
    corpus = Corpus(c)  # the cheap checks pass: same rows, same columns
    with pytest.raises(InputError, match=r"sequences\.parquet: checksum"):
        corpus.checksum  # noqa: B018 - the property verifies


def test_fisher_and_score_refuse_an_edited_corpus(tiny_corpus, tmp_path, monkeypatch, capsys):
    from tests.test_influence_cli import COMMON, save_small_model

    model = save_small_model(tmp_path / "model")
    c = _copy(tiny_corpus, tmp_path)
    fisher = tmp_path / "F.safetensors"
    base = ["--model", model, "--corpus", c, *COMMON]
    code, err = run_cli(
        "fisher", *base, "--subset-size", "8", "--out", fisher,
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, err
    tokens = np.load(c / artifacts.CORPUS_TOKENS)
    _poke_npy(c / artifacts.CORPUS_TOKENS, 0, 4 if tokens[0] != 4 else 5, np.uint8)
    before = snapshot(tmp_path)
    code, err = run_cli(
        "fisher", *base, "--subset-size", "8", "--out", tmp_path / "F2.safetensors",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "checksum")
    code, err = run_cli(
        "score", *base, "--fisher", fisher, "--out", tmp_path / "S.parquet",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "checksum")
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


def test_out_of_range_token_id_is_one_line_not_an_index_error(
    tiny_corpus, tmp_path, monkeypatch, capsys
):
    c = _copy(tiny_corpus, tmp_path)
    _poke_npy(c / artifacts.CORPUS_TOKENS, 7, 200, np.uint8)
    before = snapshot(c)
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "token id 200", "position 7")
    assert snapshot(c) == before
    _poke_npy(c / artifacts.CORPUS_TOKENS, 7, 0, np.uint8)  # <cls>: in range, not a residue
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, "token id 0", "not a residue id")


def test_non_monotonic_offsets_are_refused(tiny_corpus, tmp_path, monkeypatch, capsys):
    c = _copy(tiny_corpus, tmp_path)
    offsets = np.load(c / artifacts.CORPUS_OFFSETS)
    _poke_npy(c / artifacts.CORPUS_OFFSETS, 5, offsets[7], np.int64)
    before = snapshot(c)
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, c / artifacts.CORPUS_OFFSETS, "decreases at example")
    assert snapshot(c) == before


@pytest.mark.parametrize(
    "text, reason",
    [
        ("{not json", "cannot read corpus manifest"),
        ("[1, 2]", "not a corpus manifest"),
        ('{"alphabet": "rna", "num_tokens": 1, "checksum": "x"}', "no 'num_sequences'"),
        ('{"alphabet": "rna", "num_sequences": "48", "num_tokens": 1, "checksum": "x"}',
         "'num_sequences' is '48' (str), not an integer"),
        ('{"alphabet": "dna", "num_sequences": 48, "num_tokens": 1, "checksum": "x"}',
         "unknown alphabet 'dna'"),
        (b"\xff\xfe{}", "cannot read corpus manifest"),
    ],
)  # fmt: skip
def test_bad_manifest_is_one_line(tiny_corpus, tmp_path, monkeypatch, capsys, text, reason):
    c = _copy(tiny_corpus, tmp_path)
    path = c / artifacts.CORPUS_MANIFEST
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    before = snapshot(c)
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, path, reason)
    assert snapshot(c) == before


def test_garbage_or_short_sequences_parquet_is_one_line(tiny_corpus, tmp_path, monkeypatch, capsys):
    c = _copy(tiny_corpus, tmp_path)
    path = c / artifacts.CORPUS_SEQUENCES
    path.write_bytes(b"PAR1 this is not parquet at all" * 10)
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, path, "cannot read corpus sequences")
    pq.write_table(pq.read_table(tiny_corpus.sequences_path).slice(0, 40), path)
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, path, "40 rows", "48 sequences")


def test_truncated_tokens_npy_is_one_line(tiny_corpus, tmp_path, monkeypatch, capsys):
    c = _copy(tiny_corpus, tmp_path)
    path = c / artifacts.CORPUS_TOKENS
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, path, "truncated", "prepare it again")
    path.write_bytes(data[:40])  # inside the header
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, path, "token store")


class _Trap:
    """Unpickling this creates ``path``: proof that a loader executed pickled code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_npy_is_refused_and_never_unpickled(tiny_corpus, tmp_path, monkeypatch, capsys):
    c = _copy(tiny_corpus, tmp_path)
    marker = tmp_path / "EXECUTED"
    for name in (artifacts.CORPUS_TOKENS, artifacts.CORPUS_OFFSETS):
        d = _copy(tiny_corpus, tmp_path, name=f"c_{name}")
        arr = np.empty(3, dtype=object)
        arr[:] = [_Trap(marker), 1, 2]
        np.save(d / name, arr, allow_pickle=True)
        code, err = run_cli("info", d, monkeypatch=monkeypatch, capsys=capsys)
        assert_one_line_error(code, err, d / name, "never unpickles")
        assert not marker.exists()
    assert c.exists()


def test_missing_file_and_wrong_dtype_are_one_line(tiny_corpus, tmp_path, monkeypatch, capsys):
    c = _copy(tiny_corpus, tmp_path)
    np.save(c / artifacts.CORPUS_OFFSETS, np.load(c / artifacts.CORPUS_OFFSETS).astype(np.int32))
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, c / artifacts.CORPUS_OFFSETS, "int32", "int64")
    (c / artifacts.CORPUS_TOKENS).unlink()
    code, err = run_cli("info", c, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, err, c / artifacts.CORPUS_TOKENS, "missing")


# ---- item 5: damaged compressed input ----------------------------------------------------


def _gz_variants(data: bytes) -> dict[str, bytes]:
    g = gzip.compress(data, mtime=0)
    crc = bytearray(g)
    crc[-6] ^= 0x01  # the CRC32 in the trailer
    return {
        "truncated": g[: len(g) // 2],
        "bad_crc": bytes(crc),
        "trailing_garbage": g + b"garbage after the member",
    }


_GZ_REASONS = {
    "truncated": "truncated",
    "bad_crc": "CRC check failed",
    "trailing_garbage": "trailing garbage",
}


@pytest.mark.parametrize("kind", list(_GZ_REASONS))
@pytest.mark.parametrize("fmt", ["fa", "csv"])
def test_damaged_gzip_is_one_line_and_leaves_no_output(tmp_path, monkeypatch, capsys, kind, fmt):
    if fmt == "fa":
        data = _fasta_bytes(200)
        extra: tuple = ()
    else:
        recs = random_sequences(200, "rna", max_len=40)
        data = ("id,seq\n" + "".join(f"{i},{s}\n" for i, _, s in recs)).encode()
        extra = ("--column", "seq", "--id-column", "id")
    src = tmp_path / f"in.{fmt}.gz"
    src.write_bytes(_gz_variants(data)[kind])
    out = tmp_path / "corpus"
    before = snapshot(src)
    code, err = _prepare(src, "--alphabet", "rna", "--out", out, *extra,
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    _assert_prepare_refused(code, err, src, out, "damaged gzip data", _GZ_REASONS[kind],
                            "byte offset")  # fmt: skip
    if fmt == "fa":
        assert "record" in err
    assert snapshot(src) == before


def test_gzip_trailing_nul_padding_reads_like_gzip_d(tmp_path, monkeypatch, capsys):
    src = tmp_path / "pad.fa.gz"
    src.write_bytes(gzip.compress(_fasta_bytes(20)) + b"\0" * 512)
    code, err = _prepare(src, "--alphabet", "rna", "--out", tmp_path / "c",
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert len(Corpus(tmp_path / "c")) == 20


def test_other_compression_is_named_not_misread(tmp_path, monkeypatch, capsys):
    src = tmp_path / "in.fa"  # named like plain FASTA, but bzip2 inside
    src.write_bytes(bz2.compress(_fasta_bytes(5)))
    out = tmp_path / "c"
    code, err = _prepare(src, "--alphabet", "rna", "--out", out,
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    _assert_prepare_refused(code, err, src, out, "bzip2-compressed", "bunzip2")
    named = tmp_path / "in.fa.xz"  # named .xz: refused by name, before --format matters
    named.write_bytes(b"\xfd7zXZ\x00 not really")
    code, err = _prepare(named, "--alphabet", "rna", "--out", out,
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    _assert_prepare_refused(code, err, named, out, "xz-compressed", "unxz")


# ---- item 7: inputs that lose all their data ---------------------------------------------


@pytest.mark.parametrize("fmt", ["fa", "txt", "csv"])
def test_cr_only_line_endings_read_like_lf(tmp_path, monkeypatch, capsys, fmt):
    recs = random_sequences(12, "rna", seed=3, max_len=30)
    if fmt == "fa":
        text = "".join(f">{i} {d}\n{s[:10]}\n{s[10:]}\n" for i, d, s in recs)
        extra: tuple = ()
    elif fmt == "txt":
        text = "".join(f"{s}\n" for _, _, s in recs)
        extra = ()
    else:
        text = "name,seq\n" + "".join(f"{i},{s}\n" for i, _, s in recs)
        extra = ("--column", "seq", "--id-column", "name")
    lf = tmp_path / f"lf.{fmt}"
    cr = tmp_path / f"cr.{fmt}"
    lf.write_bytes(text.encode())
    cr.write_bytes(text.replace("\n", "\r").encode())
    for src in (lf, cr):
        code, err = _prepare(src, "--alphabet", "rna", "--out", tmp_path / src.stem, *extra,
                             monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
        assert code == 0, err
    a, b = Corpus(tmp_path / "lf"), Corpus(tmp_path / "cr")
    assert len(b) == 12 and b.manifest["counts"]["read"] == 12
    assert a.ids().tolist() == b.ids().tolist()
    assert a.checksum == b.checksum


@pytest.mark.parametrize("block", [1, 2, 3, 5, 64])
def test_line_endings_split_across_blocks_read_the_same(tmp_path, monkeypatch, block):
    """CRLF, CR-only and mixed endings give the same records whatever the block boundaries
    (a CR last in a block may be half of a CRLF)."""
    from bioprune.data import readers

    fasta = ">a one\nACG\nUU\n\n>b\nGG\n>c\n\nAC\n"
    text = "ACGU\n\nGG\nC\n"
    monkeypatch.setattr(readers, "BLOCK_BYTES", 1 << 20)
    want = {
        "fa": [tuple(r) for r in readers.read_fasta(_write(tmp_path / "w.fa", fasta))],
        "txt": [tuple(r) for r in readers.read_text(_write(tmp_path / "w.txt", text))],
    }
    monkeypatch.setattr(readers, "BLOCK_BYTES", block)
    for eol in ("\r\n", "\r", "\n"):
        for fmt, content, read in (("fa", fasta, readers.read_fasta),
                                   ("txt", text, readers.read_text)):  # fmt: skip
            mixed = content.replace("\n", eol)
            if eol == "\r\n":  # and one bare CR, one bare LF
                mixed = mixed.replace("\r\n", "\r", 1)[::-1].replace("\n\r", "\n", 1)[::-1]
            path = _write(tmp_path / f"x.{fmt}", mixed)
            assert [tuple(r) for r in read(path)] == want[fmt], (eol, block, fmt)


def _write(path, text):
    path.write_bytes(text.encode())
    return path


def test_garbage_parquet_input_is_one_line(tmp_path, monkeypatch, capsys):
    src = tmp_path / "t.parquet"
    src.write_bytes(b"not a parquet file" * 20)
    out = tmp_path / "c"
    code, err = _prepare(src, "--alphabet", "rna", "--out", out, "--column", "seq",
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    _assert_prepare_refused(code, err, src, out, "cannot read Parquet input")


@pytest.mark.parametrize(
    "content, fragment",
    [(b"", "holds no records"), (b">a\n\n>b\n", "all skipped (2 empty)")],
)
def test_empty_result_is_refused_unless_allow_empty(
    tmp_path, monkeypatch, capsys, content, fragment
):
    src = tmp_path / "in.fa"
    src.write_bytes(content)
    out = tmp_path / "c"
    code, err = _prepare(src, "--alphabet", "rna", "--out", out,
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    _assert_prepare_refused(code, err, src, out, fragment, "--allow-empty")
    code, err = _prepare(src, "--alphabet", "rna", "--out", out, "--allow-empty",
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    assert len(Corpus(out, allow_empty=True)) == 0


def test_stages_refuse_an_empty_corpus(tmp_path, monkeypatch, capsys):
    from tests.test_influence_cli import COMMON, save_small_model

    empty = write_corpus(tmp_path / "empty", [], "rna").path
    code, out = run_cli("info", empty, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out  # info describes it
    model = save_small_model(tmp_path / "model")
    before = snapshot(tmp_path)
    runs = [
        ("select", "--method", "random", "--budget", "1", "--corpus", empty,
         "--out", tmp_path / "sel"),
        ("fisher", "--model", model, "--corpus", empty, "--subset-size", "1",
         "--out", tmp_path / "F.safetensors", *COMMON),
        ("score", "--model", model, "--corpus", empty, "--fisher", tmp_path / "none.safetensors",
         "--out", tmp_path / "S.parquet", *COMMON),
    ]  # fmt: skip
    for args in runs:
        code, err = run_cli(*args, monkeypatch=monkeypatch, capsys=capsys)
        assert_one_line_error(code, err, empty, "holds no sequences")
    assert snapshot(tmp_path) == before and leftovers(tmp_path) == []


# ---- item 12b: suspicious content --------------------------------------------------------


def test_rna_prepared_as_protein_is_warned_and_noted(tmp_path, monkeypatch, capsys):
    src = tmp_path / "rna.fa"
    src.write_bytes(_fasta_bytes(30))
    code, out = _prepare(src, "--alphabet", "protein", "--out", tmp_path / "p",
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, out
    assert "warning:" in out and "--alphabet rna" in " ".join(out.split())
    notes = json.loads((tmp_path / "p" / artifacts.CORPUS_MANIFEST).read_text())["notes"]
    assert len(notes) == 1 and "A, C, G, T or U" in notes[0]
    prot = tmp_path / "prot.fa"
    recs = random_sequences(30, "protein", seed=1)
    prot.write_text("".join(f">{i}\n{s}\n" for i, _, s in recs))
    code, out = _prepare(prot, "--alphabet", "protein", "--out", tmp_path / "q",
                         monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0 and "warning" not in out
    assert Corpus(tmp_path / "q").manifest["notes"] == []


@pytest.mark.parametrize(
    "fmt, payload, fragments",
    [
        ("fa", b">a\nACGU\n>b\nAC\0GU\n", ("NUL byte", "byte offset 13", "record 2")),
        ("txt", b"ACGU\nGG\xffCC\n", ("0xff is not UTF-8", "byte offset 7", "line 2")),
        ("fa", b">a\nACGU\n>b\n" + bytes(range(256)) * 4, ("NUL byte", "record 2")),
    ],
)
def test_binary_input_is_one_line_naming_offset_and_record(
    tmp_path, monkeypatch, capsys, fmt, payload, fragments
):
    src = tmp_path / f"bin.{fmt}"
    src.write_bytes(payload)
    out = tmp_path / "c"
    for policy in ("error", "replace"):  # not silently replaced either
        code, err = _prepare(src, "--alphabet", "rna", "--out", out, "--on-invalid", policy,
                             monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
        _assert_prepare_refused(code, err, src, out, *fragments)
