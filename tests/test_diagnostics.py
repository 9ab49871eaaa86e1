"""Score diagnostics (bioprune.report.diagnostics): length bias, labels, duplicate pairs."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from bioprune.report import diagnostics as D

PNG = b"\x89PNG\r\n\x1a\n"


def _ranks(v):
    """Average ranks by a plain double loop (reference for Spearman)."""
    v = list(v)
    out = []
    for x in v:
        less = sum(1 for y in v if y < x)
        equal = sum(1 for y in v if y == x)
        out.append(less + (equal + 1) / 2)
    return out


def _pearson(a, b):
    n = len(a)
    ma, mb = sum(a) / n, sum(b) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    va = sum((x - ma) ** 2 for x in a) ** 0.5
    vb = sum((y - mb) ** 2 for y in b) ** 0.5
    return cov / (va * vb)


def test_spearman_matches_a_plain_rank_correlation_with_ties_and_nans():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 6, 40).astype(float)  # many ties
    y = x + rng.normal(0, 2, 40)
    x[3], y[7] = np.nan, np.inf
    keep = [i for i in range(40) if np.isfinite(x[i]) and np.isfinite(y[i])]
    ref = _pearson(_ranks(x[keep]), _ranks(y[keep]))
    assert D.spearman(x, y) == pytest.approx(ref, abs=1e-12)
    assert D.spearman(np.ones(5), np.arange(5.0)) is None  # constant
    assert D.spearman(np.arange(2.0), np.arange(2.0)) is None  # too few


def test_length_warning_appears_only_for_a_length_driven_score():
    rng = np.random.default_rng(1)
    lengths = rng.integers(20, 1000, 500).astype(float)
    driven = 1.0 / lengths * rng.lognormal(0, 0.3, 500)  # the mean-loss gradient's 1/L trend
    d = D.score_diagnostics(driven, lengths)
    assert d["spearman_length"] < -0.5
    assert len(d["warnings"]) == 1 and "short sequences" in d["warnings"][0]
    independent = rng.lognormal(0, 1, 500)
    d = D.score_diagnostics(independent, lengths)
    assert abs(d["spearman_length"]) < 0.2 and d["warnings"] == []
    # the other direction names long sequences; the threshold is strict
    assert "long sequences" in D.length_warning(0.7)
    assert D.length_warning(0.5) is None and D.length_warning(None) is None


@pytest.fixture
def labelled(tmp_path):
    """12 examples: 3 junk (highest scores), a duplicate and a near-duplicate of 0 and 1."""
    ids = [f"s{i}" for i in range(12)]
    rows = ["id\tfamily\tkind\tsource\tdetail"]
    for i in range(12):
        kind, fam, detail = "family", "A" if i % 2 else "B", ""
        if i >= 9:
            kind, fam = "junk", "junk"
        if i == 7:
            kind, detail = "duplicate", "of=s0"
        if i == 8:
            kind, detail = "near_duplicate", "of=s1;G5C"
        rows.append(f"s{i}\t{fam}\t{kind}\tx\t{detail}")
    rows.append("not_in_corpus\tA\tduplicate\tx\tof=s2")  # ignored: not a corpus id
    path = tmp_path / "labels.tsv"
    path.write_text("\n".join(rows) + "\n")
    return ids, path


def test_label_info_reads_kinds_and_duplicate_pairs(labelled):
    ids, path = labelled
    info = D.read_label_info(path, ids)
    assert info.name == "family"
    assert list(info.kinds[9:]) == ["junk"] * 3 and info.kinds[7] == "duplicate"
    assert sorted(map(tuple, info.pairs.tolist())) == [(7, 0), (8, 1)]
    # ids the labels file lacks get None
    info2 = D.read_label_info(path, [*ids, "extra"])
    assert info2.labels[-1] is None and info2.kinds[-1] is None


def test_diagnostics_counts_against_a_plain_loop(labelled):
    ids, path = labelled
    info = D.read_label_info(path, ids)
    scores = np.array([5.0, 4, 3, 2, 1, 0.5, 0.4, 5.1, 3.9, 100, 90, 80])
    lengths = np.arange(10.0, 130.0, 10.0)
    d = D.score_diagnostics(scores, lengths, info)
    top = {r["fraction"]: r for r in d["top"]}
    assert top[0.01]["count"] == 1 and top[0.01]["junk"] == 1  # round(0.12) -> at least 1
    assert top[0.05]["count"] == 1
    by = {r["label"]: r for r in d["per_label"]["rows"]}
    assert by["junk"]["count"] == 3 and by["junk"]["median_percentile"] > 70
    # percentile of a label by a plain loop: rank (average) - 0.5 over n, times 100
    ranks = _ranks(scores)
    pa_ = sorted(100 * (ranks[i] - 0.5) / 12 for i in range(12) if ids[i] and info.labels[i] == "A")
    assert by["A"]["median_percentile"] == pytest.approx(float(np.median(pa_)))
    dup = d["duplicates"]
    assert dup["pairs"] == 2
    ratios = [abs(np.log10(scores[7] / scores[0])), abs(np.log10(scores[8] / scores[1]))]
    assert dup["median_abs_log10_ratio"] == pytest.approx(float(np.median(ratios)))
    kinds = {r["kind"]: r for r in d["per_kind"]}
    assert kinds["junk"]["count"] == 3 and kinds["family"]["count"] == 7


def test_plots_are_written_with_the_figure_api(labelled, tmp_path):
    import matplotlib

    backend = matplotlib.get_backend()
    ids, path = labelled
    info = D.read_label_info(path, ids)
    rng = np.random.default_rng(3)
    scores = rng.lognormal(0, 1, 12)
    lengths = np.arange(10.0, 130.0, 10.0)
    d = D.score_diagnostics(scores, lengths, info)
    D.plot_score_vs_length(tmp_path / "a.png", scores, lengths, d, info)
    D.plot_score_by_label(tmp_path / "b.png", scores, info, d)
    D.plot_duplicate_pairs(tmp_path / "c.png", scores, info.pairs, d)
    strata = [{"lower": 0.1, "upper": 1.0, "pool": 5, "picks": 2},
              {"lower": 1.0, "upper": 10.0, "pool": 7, "picks": 2}]  # fmt: skip
    assert D.plot_strata_log(tmp_path / "d.png", strata, scores, scores[:4])
    assert not D.plot_strata_log(tmp_path / "e.png", [{"pool": 1, "picks": 1}], scores, scores)
    for name in "abcd":
        assert (tmp_path / f"{name}.png").read_bytes()[:8] == PNG
    assert not (tmp_path / "e.png").exists()
    assert matplotlib.get_backend() == backend  # no global backend switch


def test_inspect_adds_score_diagnostics_and_warns(tiny_corpus, tmp_path, capsys, monkeypatch):
    """inspect with scores 1/length: the warning is printed and the plots written."""
    from bioprune.selection.pipeline import select_coreset
    from tests.hostile import run_cli

    n, ids = len(tiny_corpus), tiny_corpus.ids()
    lengths = tiny_corpus.lengths.astype(float)
    scores_path = tmp_path / "scores.parquet"
    pq.write_table(
        pa.table(
            {
                "index": np.arange(n, dtype=np.int64),
                "id": pa.array(ids, pa.string()),
                "length": tiny_corpus.lengths,
                "score": 1000.0 / lengths + np.arange(n) * 1e-6,
                "loss": np.ones(n),
            }
        ),
        scores_path,
    )
    sel = tmp_path / "cci"
    select_coreset(method="cci", budget="10", out=sel, scores_path=scores_path,
                   corpus_path=tiny_corpus.path, params={"strata": 4, "seed": 0})  # fmt: skip
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "id\tfamily\tkind\tdetail\n"
        + "".join(
            f"{ids[i]}\tf{i % 2}\t{'duplicate' if i == 3 else 'family'}\t"
            f"{'of=' + ids[0] if i == 3 else ''}\n"
            for i in range(n)
        )
    )
    out = tmp_path / "r"
    code, text = run_cli(
        "inspect", "--corpus", str(tiny_corpus.path), "--selection", str(sel), "--out", str(out),
        "--scores", str(scores_path), "--labels", str(labels),
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, text
    flat = " ".join(text.split())
    assert "follows sequence length" in flat and "Spearman(score, length) -1.00" in flat
    summary = json.loads((out / "summary.json").read_text())
    for key in ("score_vs_length", "score_by_label", "duplicate_pairs", "strata_log"):
        assert (out / summary["plots"][key]).read_bytes()[:8] == PNG
    diag = summary["scores"]["diagnostics"]
    assert diag["spearman_length"] == pytest.approx(-1.0, abs=0.01)
    assert diag["duplicates"]["pairs"] == 1

    # scores unrelated to length: no warning
    rng = np.random.default_rng(5)
    flat_scores = tmp_path / "flat.parquet"
    t = pq.read_table(scores_path)
    t = t.set_column(t.schema.get_field_index("score"), "score", pa.array(rng.permutation(n) + 1.0))
    pq.write_table(t, flat_scores)
    sel2 = tmp_path / "topk"
    select_coreset(method="topk", budget="10", out=sel2, scores_path=flat_scores,
                   corpus_path=tiny_corpus.path, params={})  # fmt: skip
    code, text = run_cli(
        "inspect", "--corpus", str(tiny_corpus.path), "--selection", str(sel2),
        "--out", str(tmp_path / "r2"), "--scores", str(flat_scores),
        monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, text
    assert "follows sequence length" not in " ".join(text.split())


@pytest.mark.parametrize("name", ["demo.yaml", "science.yaml"])
def test_shipped_study_configs_validate(name):
    """Both shipped study configs validate; science.yaml shares demo.yaml's scoring (so a demo
    run's scores serve it) and trains 3 pretraining seeds of coreset models with the
    reference's own recipe, probed linearly (docs/science.md section 3c)."""
    from importlib.resources import files

    from bioprune.workflow.config import load_study_config

    cfg = load_study_config(files("bioprune") / "resources" / "study" / name)
    assert cfg.labels is not None and cfg.labels.is_file()
    if name == "science.yaml":
        demo = load_study_config(files("bioprune") / "resources" / "study" / "demo.yaml")
        for key in ("corpus", "reference", "adaptation", "influence"):
            assert getattr(cfg, key) == getattr(demo, key), key
        assert cfg.pretraining.preset == "tiny" and len(cfg.pretraining.seeds) >= 3
        assert cfg.pretraining.max_steps == demo.reference.pretrain.max_steps
        assert len(cfg.budgets) == 2 and cfg.tasks[0].protocol == "frozen-linear"
        assert {"cci-length", "cci-cluster"} <= {m.method for m in cfg.methods}
