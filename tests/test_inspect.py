"""``bioprune inspect``: every plot is written and the summary's counts add up."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.conftest import random_sequences

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def selected(tiny_corpus, tmp_path_factory):
    from bioprune.selection.pipeline import select_coreset

    tmp = tmp_path_factory.mktemp("inspect")
    n = len(tiny_corpus)
    scores = np.random.default_rng(2).lognormal(0, 1, n)
    scores[5] = np.nan
    scores_path = tmp / "scores.parquet"
    pq.write_table(
        pa.table(
            {
                "index": np.arange(n, dtype=np.int64),
                "id": pa.array(tiny_corpus.ids(), pa.string()),
                "length": tiny_corpus.lengths,
                "score": scores,
                "loss": np.ones(n),
            }
        ),
        scores_path,
    )
    sel = tmp / "cci"
    select_coreset(
        method="cci",
        budget="16",
        out=sel,
        scores_path=scores_path,
        corpus_path=tiny_corpus.path,
        params={"strata": 5, "seed": 1},
    )
    return tiny_corpus, sel, scores_path, tmp


def test_inspect_writes_every_plot_and_counts_add_up(selected, tmp_path):
    from typer.testing import CliRunner

    from bioprune.cli.main import app

    corpus, sel, scores_path, _ = selected
    ids = corpus.ids()
    labels = tmp_path / "labels.tsv"
    # header, a third column to ignore, 40 of 48 ids labelled, one id not in the corpus
    lines = ["id\tfamily\tnote"]
    lines += [f"{ids[i]}\t{'fam' + str(i % 3)}\tx" for i in range(40)]
    lines += ["not_in_corpus\tfam9\tx"]
    labels.write_text("\n".join(lines) + "\n")
    out = tmp_path / "report"
    args = ["inspect", "--corpus", str(corpus.path), "--selection", str(sel), "--out", str(out)]
    res = CliRunner().invoke(app, [*args, "--scores", str(scores_path), "--labels", str(labels)])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["plots"]) == {
        "lengths", "composition", "labels", "scores", "score_vs_length", "score_by_label",
        "strata_log",
    }  # fmt: skip
    for name in summary["plots"].values():
        assert (out / name).read_bytes()[:8] == PNG

    n, m = len(corpus), 16
    assert summary["n_corpus"] == n and summary["n_coreset"] == m
    chosen = pq.read_table(sel / "selection.parquet").column("index").to_numpy()
    assert summary["lengths"]["corpus"]["count"] == n
    assert summary["lengths"]["corpus"]["residues"] == int(corpus.lengths.sum())
    assert summary["lengths"]["coreset"]["residues"] == int(corpus.lengths[chosen].sum())
    comp = summary["composition"]
    assert sum(r["corpus"] for r in comp) == int(corpus.lengths.sum())
    assert sum(r["coreset"] for r in comp) == int(corpus.lengths[chosen].sum())
    # composition against a direct count over the sequences
    seqs = [corpus.residues(int(i)) for i in chosen]
    direct = np.bincount(np.concatenate(seqs), minlength=len(corpus.alphabet.tokens))
    for r in comp:
        assert r["coreset"] == direct[corpus.alphabet.tokens.index(r["token"])]

    lab = summary["labels"]
    assert lab["name"] == "family" and lab["rows"] == 41 and lab["ids_not_in_corpus"] == 1
    rows = lab["per_label"]
    assert sum(r["corpus"] for r in rows) == n
    assert sum(r["coreset"] for r in rows) == m
    by = {r["label"]: r for r in rows}
    assert by[None]["corpus"] == 8
    assert by[None]["coreset"] == int((chosen >= 40).sum())
    assert by["fam0"]["coreset"] == int(((chosen < 40) & (chosen % 3 == 0)).sum())
    assert "fam9" not in by

    sc = summary["scores"]
    assert sc["finite"] + sc["non_finite"] == n and sc["non_finite"] == 1
    assert sum(s["picks"] for s in sc["strata"]) == m


def test_inspect_without_scores_or_labels_and_headerless_labels(selected, tmp_path):
    from bioprune.report.coreset import inspect_coreset

    corpus, sel, _, _ = selected
    ids = corpus.ids()
    labels = tmp_path / "labels.tsv"
    labels.write_text("".join(f"{i}\tall\n" for i in ids))
    summary = inspect_coreset(corpus.path, sel, tmp_path / "r", labels_path=labels)
    assert set(summary["plots"]) == {"lengths", "composition", "labels"}
    assert summary["labels"]["rows"] == len(ids)  # the first row is data: its id is a corpus id
    assert summary["labels"]["per_label"] == [
        {"label": "all", "corpus": len(ids), "coreset": 16, "kept_fraction": 16 / len(ids)}
    ]
    dup = tmp_path / "dup.tsv"
    dup.write_text(f"{ids[0]}\ta\n{ids[0]}\tb\n")
    with pytest.raises(ValueError, match="more than once"):
        inspect_coreset(corpus.path, sel, tmp_path / "r2", labels_path=dup)


def test_inspect_refuses_a_selection_from_another_corpus(selected, tmp_path):
    from bioprune.data.corpus import write_corpus
    from bioprune.report.coreset import inspect_coreset

    _, sel, _, _ = selected
    other = write_corpus(tmp_path / "other", random_sequences(48, "rna", seed=9), "rna")
    with pytest.raises(ValueError, match="another corpus"):
        inspect_coreset(other.path, sel, tmp_path / "r")
    with pytest.raises(FileNotFoundError, match="not a selection"):
        inspect_coreset(other.path, tmp_path, tmp_path / "r")


def test_wide_scores_get_a_log_axis_and_label_patterns_group(selected, tmp_path):
    """Scores spanning 300 to 1.6e6 are histogrammed on a log axis; --label-group
    'dup-of:*' counts every dup-of:<id> label as one row."""
    from typer.testing import CliRunner

    from bioprune.cli.main import app

    corpus, sel, _, _ = selected
    n, ids = len(corpus), corpus.ids()
    wide = tmp_path / "wide.parquet"
    pq.write_table(
        pa.table(
            {
                "index": np.arange(n, dtype=np.int64),
                "id": pa.array(ids, pa.string()),
                "length": corpus.lengths,
                "score": np.geomspace(300, 1.6e6, n),
                "loss": np.ones(n),
            }
        ),
        wide,
    )
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "".join(f"{ids[i]}\t{'dup-of:' + ids[i - 1] if i % 2 else 'unique'}\n" for i in range(n))
    )
    out = tmp_path / "r"
    args = ["inspect", "--corpus", str(corpus.path), "--selection", str(sel), "--out", str(out)]
    res = CliRunner().invoke(
        app, [*args, "--scores", str(wide), "--labels", str(labels), "--label-group", "dup-of:*"]
    )
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"]["histogram_x_scale"] == "log"
    rows = {r["label"]: r for r in summary["labels"]["per_label"]}
    assert set(rows) == {"dup-of:*", "unique"}
    assert rows["dup-of:*"]["corpus"] == n // 2 and summary["labels"]["groups"] == ["dup-of:*"]
