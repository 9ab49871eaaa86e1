"""info: statistics against slow references, the tables, --json and --plot."""

from __future__ import annotations

import json
import statistics
from collections import Counter

import numpy as np
import pytest
from typer.testing import CliRunner

from bioprune.cli.main import app
from bioprune.data.corpus import Corpus, write_corpus
from bioprune.data.prepare import PrepareConfig, prepare
from bioprune.data.stats import _log_scale_needed, composition_counts, corpus_stats

runner = CliRunner()


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A corpus made by prepare (so the manifest has counts), with IUPAC codes and skips."""
    tmp = tmp_path_factory.mktemp("info")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(60):
        seq = "".join(rng.choice(list("ACGUACGUACGUN"), int(rng.lognormal(3.5, 0.7)) + 1))
        lines += [f">s{i}", seq]
    lines += [">empty", ">long", "A" * 300]
    f = tmp / "in.fa"
    f.write_text("\n".join(lines) + "\n")
    prepare(PrepareConfig(inputs=[f], alphabet="rna", out=tmp / "corpus", max_length=200))
    return Corpus(tmp / "corpus")


def test_stats_match_slow_references(prepared):
    stats = corpus_stats(prepared)
    seqs = prepared.read_columns(["sequence"]).column("sequence").to_pylist()
    lengths = sorted(len(s) for s in seqs)
    assert stats["num_sequences"] == len(seqs) == 61
    assert stats["num_tokens"] == sum(lengths)
    assert stats["lengths"]["min"] == lengths[0]
    assert stats["lengths"]["max"] == lengths[-1] == 200
    assert stats["lengths"]["median"] == statistics.median(lengths)
    assert stats["lengths"]["mean"] == pytest.approx(statistics.fmean(lengths))
    # statistics.quantiles(method="inclusive") is the same linear interpolation.
    q = statistics.quantiles(lengths, n=20, method="inclusive")
    assert stats["lengths"]["p5"] == pytest.approx(q[0])
    assert stats["lengths"]["p25"] == pytest.approx(q[4])
    assert stats["lengths"]["p95"] == pytest.approx(q[18])
    counter = Counter("".join(seqs))
    total = sum(counter.values())
    for token in prepared.alphabet.residues:
        assert stats["composition"][token]["count"] == counter.get(token, 0)
        assert stats["composition"][token]["fraction"] == pytest.approx(
            counter.get(token, 0) / total
        )
    assert stats["counts"]["empty_skipped"] == 1 and stats["counts"]["long_cropped"] == 1
    assert stats["max_length"] == 200


def test_composition_does_not_depend_on_chunk_size(prepared):
    full = composition_counts(prepared.tokens, len(prepared.alphabet))
    for chunk in (1, 7, 1000):
        np.testing.assert_array_equal(
            composition_counts(prepared.tokens, len(prepared.alphabet), chunk), full
        )


def test_stats_of_a_corpus_without_prepare_counts_and_of_an_empty_corpus(tmp_path, tiny_corpus):
    stats = corpus_stats(tiny_corpus)
    assert stats["counts"] == {} and stats["num_sequences"] == 48
    empty = write_corpus(tmp_path / "empty", [], "protein")
    stats = corpus_stats(empty)
    assert stats["num_sequences"] == 0 and stats["lengths"]["median"] == 0.0
    assert all(c["fraction"] == 0.0 for c in stats["composition"].values())


def test_log_scale_only_when_skewed():
    assert _log_scale_needed(np.array([1000, 10, 5, 3, 2, 1]))
    assert not _log_scale_needed(np.array([10, 12, 9, 11, 0, 8]))
    assert not _log_scale_needed(np.array([5]))


def test_info_cli_tables(prepared):
    result = runner.invoke(app, ["info", str(prepared.path)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    for text in (
        "sequences",
        "61",
        "median",
        "residue composition",
        "empty_skipped",
        "long_cropped",
    ):
        assert text in out


def test_info_cli_json_equals_corpus_stats(prepared):
    result = runner.invoke(app, ["info", str(prepared.path), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == json.loads(json.dumps(corpus_stats(prepared)))


def test_info_cli_plot_writes_a_png(prepared, tmp_path):
    png = tmp_path / "plots" / "info.png"
    result = runner.invoke(app, ["info", str(prepared.path), "--plot", str(png), "--json"])
    assert result.exit_code == 0, result.output
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert [p.name for p in png.parent.iterdir()] == ["info.png"]  # no temp file left


def test_info_on_a_directory_that_is_not_a_corpus(tmp_path):
    result = runner.invoke(app, ["info", str(tmp_path)])
    assert isinstance(result.exception, FileNotFoundError)
    assert "bioprune prepare" in str(result.exception)
