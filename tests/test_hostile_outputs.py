"""Hostile cases shared by every command (issue 10): outputs that overlap inputs, SIGTERM
mid-write, a full disk. Each asserts exit 2 (143 for SIGTERM), a one-line message naming the
file and the reason, and that no input or earlier output changed."""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import random_sequences
from tests.hostile import assert_one_line_error, leftovers, run_cli, snapshot


def _fasta(path, n=40, seed=0, max_len=60):
    recs = random_sequences(n, "rna", seed=seed, max_len=max_len)
    path.write_text("".join(f">{i} {d}\n{s}\n" for i, d, s in recs))
    return path


def test_select_out_equal_to_corpus_is_refused(tiny_corpus, monkeypatch, capsys):
    tiny_corpus = tiny_corpus.path
    before = snapshot(tiny_corpus)
    code, err = run_cli(
        "select", "--method", "random", "--budget", "5", "--corpus", tiny_corpus,
        "--out", tiny_corpus, "--overwrite", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, tiny_corpus, "is the input")
    assert snapshot(tiny_corpus) == before


def test_output_inside_or_containing_an_input_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "in").mkdir()
    fa = _fasta(tmp_path / "in" / "x.fa")
    before = snapshot(tmp_path)
    # output is the input file itself
    code, err = run_cli(
        "prepare", fa, "--alphabet", "rna", "--out", fa, "--overwrite",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, fa, "is the input")
    # output contains the input
    code, err = run_cli(
        "prepare", fa, "--alphabet", "rna", "--out", tmp_path / "in", "--overwrite",
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "contains the input")
    assert snapshot(tmp_path) == before
    assert leftovers(tmp_path / "in") == []


def test_output_inside_an_input_directory_is_refused(tiny_corpus, monkeypatch, capsys):
    tiny_corpus = tiny_corpus.path
    before = snapshot(tiny_corpus)
    code, err = run_cli(
        "select", "--method", "random", "--budget", "5", "--corpus", tiny_corpus,
        "--out", tiny_corpus / "sel", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, err, "lies inside the input")
    assert snapshot(tiny_corpus) == before


def test_sigterm_mid_prepare_removes_the_temporary_output(tmp_path):
    """A batch scheduler's SIGTERM is handled like Ctrl-C: no .NAME.tmp-* directory is left,
    no output appears, exit status 143."""
    big = tmp_path / "big.fa"
    rec = ">s{i}\n" + "ACGU" * 50 + "\n"
    big.write_text("".join(rec.format(i=i) for i in range(300_000)))
    out = tmp_path / "corpus"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bioprune.cli.main", "prepare", str(big), "--alphabet", "rna",
         "--out", str(out),],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(".corpus.tmp-") for p in tmp_path.iterdir()):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "terminated" in err and "Traceback" not in err
    assert leftovers(tmp_path) == []
    assert not out.exists()


def _limit_file_size(limit: int):
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # get EFBIG instead of being killed
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_FSIZE/EFBIG semantics")
def test_disk_full_is_one_line_naming_the_output(tmp_path):
    """Writing past the space available (here EFBIG from a file-size limit, the same path as
    ENOSPC) is a one-line error naming the output and how much was written; nothing is left."""
    fa = _fasta(tmp_path / "x.fa", n=3000, max_len=400)
    out = tmp_path / "corpus"
    proc = subprocess.run(
        [sys.executable, "-m", "bioprune.cli.main", "prepare", str(fa), "--alphabet", "rna",
         "--out", str(out),],
        capture_output=True, text=True, timeout=120, preexec_fn=_limit_file_size(200_000),
    )  # fmt: skip
    assert_one_line_error(proc.returncode, proc.stderr, out, "file too large", "written so far")
    assert not out.exists()
    assert leftovers(tmp_path) == []


def test_internal_bugs_keep_their_traceback(monkeypatch, capsys, tiny_corpus):
    """KeyError/IndexError from a bug are not user errors: they propagate with a traceback
    instead of becoming a one-line "error:"."""
    from bioprune.cli.main import main
    from bioprune.data import corpus as corpus_mod

    def bug(self, *a, **k):
        raise KeyError("internal")

    monkeypatch.setattr(corpus_mod.Corpus, "__init__", bug)
    monkeypatch.setattr(sys, "argv", ["bioprune", "info", str(tiny_corpus.path)])
    with pytest.raises(KeyError, match="internal"):
        main()
