"""bioprune report on a synthetic study directory (no training: files written by hand)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from bioprune import artifacts
from bioprune.report.study import Cell, beats, write_study_report
from bioprune.workflow.config import StudyConfig


def _config(tmp_path, corpus_dir) -> dict:
    task = tmp_path / "task"
    task.mkdir()
    labels = tmp_path / "labels.tsv"
    labels.write_text(
        "id\tfamily\tkind\n"
        + "".join(f"seq{i}\tf{i % 3}\t{'junk' if i % 10 == 0 else 'family'}\n" for i in range(48))
    )
    raw = {
        "corpus": {"path": str(corpus_dir)},
        "labels": str(labels),
        "reference": {"pretrain": {"preset": "tiny", "max_steps": 5}},
        "adaptation": {"subset_size": 10},
        "budgets": [10, 20],
        "methods": [{"method": "cci"}, {"method": "random"}],
        "pretraining": {"preset": "tiny", "max_steps": 5, "seeds": [0, 1]},
        "tasks": [{"path": str(task), "name": "fam", "seeds": [0, 1, 2]}],
    }
    return StudyConfig.model_validate(raw).model_dump(mode="json")


def _results(values: list[float], f1: list[float]) -> dict:
    def m(v):
        return {"per_seed": v, "mean": float(np.mean(v)), "std": float(np.std(v, ddof=1))}

    return {
        "headline_metrics": ["accuracy", "macro_f1"],
        "metrics": {"accuracy": m(values), "macro_f1": m(f1)},
    }


def _selection(path, indices, method, n):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.mkdir(parents=True)
    pq.write_table(
        pa.table({"index": np.asarray(indices, dtype=np.int64)}), path / artifacts.SELECTION_TABLE
    )
    artifacts.write_json(
        path / artifacts.SELECTION_META,
        {"method": method, "seed": 0, "budget": {"selected": len(indices), "n": n}},
    )


@pytest.fixture
def study(tmp_path, tiny_corpus):
    out = tmp_path / "study"
    cfg = _config(tmp_path, tiny_corpus.path if hasattr(tiny_corpus, "path") else tiny_corpus)
    artifacts.write_json(out / "study" / "config.json", cfg)
    res = out / "results" / "fam"
    # random: 0.50 +- 0.01; cci-10 far above it (beats), cci-20 within the spread
    per_model = {
        "full": _results([0.9, 0.91, 0.92], [0.8, 0.8, 0.8]),
        "raw": _results([0.2, 0.25, 0.3], [0.1, 0.1, 0.1]),
        "cci-10-s0": _results([0.7, 0.71, 0.72], [0.5, 0.5, 0.5]),
        "cci-10-s1": _results([0.7, 0.7, 0.7], [0.5, 0.5, 0.5]),
        "random-10-s0": _results([0.5, 0.5, 0.5], [0.4, 0.5, 0.6]),
        "random-10-s1": _results([0.49, 0.5, 0.51], [0.4, 0.5, 0.6]),
        "cci-20-s0": _results([0.5, 0.6, 0.7], [0.5, 0.5, 0.5]),
        "cci-20-s1": _results([0.5, 0.6, 0.7], [0.5, 0.5, 0.5]),
        "random-20-s0": _results([0.55, 0.55, 0.55], [0.5, 0.5, 0.5]),
        "random-20-s1": _results([0.55, 0.55, 0.55], [0.5, 0.5, 0.5]),
    }
    for name, r in per_model.items():
        artifacts.write_json(res / f"{name}.json", r)
    _selection(out / "coresets" / "cci-10", range(10), "cci", 48)
    _selection(out / "coresets" / "random-10", range(5, 15), "random", 48)
    _selection(out / "coresets" / "cci-20", range(20), "cci", 48)
    _selection(out / "coresets" / "random-20", range(20, 40), "random", 48)
    return out, per_model


def test_beats_rule_is_mean_difference_beyond_both_stds():
    r = Cell([], 0.5, 0.05)
    assert beats(Cell([], 0.61, 0.05), r, "accuracy")
    assert not beats(Cell([], 0.59, 0.05), r, "accuracy")
    assert not beats(Cell([], 0.3, 0.0), r, "accuracy")
    assert beats(Cell([], 0.3, 0.0), r, "mse")  # smaller is better


def test_report_table_values_markers_and_html(study, tmp_path):
    out, per_model = study
    summary = write_study_report(out, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    rows = {r["key"]: r for r in summary["rows"]}
    # one model behind Full: exactly the RESULTS.json's numbers
    full = per_model["full"]["metrics"]["accuracy"]
    assert f"{full['mean']:.3f} ± {full['std']:.3f}" in md
    assert rows["full"]["cells"]["fam:accuracy"]["mean"] == full["mean"]
    # two pretraining seeds x three evaluation seeds pooled: n = 6, sample std
    pooled = (
        per_model["cci-10-s0"]["metrics"]["accuracy"]["per_seed"]
        + per_model["cci-10-s1"]["metrics"]["accuracy"]["per_seed"]
    )
    cell = rows["cci-10"]["cells"]["fam:accuracy"]
    assert cell["n"] == 6
    assert cell["mean"] == pytest.approx(np.mean(pooled))
    assert cell["std"] == pytest.approx(np.std(pooled, ddof=1))
    # marker only where the rule holds
    beat = {(b["row"], b["metric"]) for b in summary["beats_random_1x"]}
    assert beat == {("cci-10", "accuracy")}
    line = next(x for x in md.splitlines() if x.startswith("| CCI | 10 |"))
    assert "†" in line.split("|")[4] and "†" not in line.split("|")[5]
    assert "| CCI | 20 |" in md and "†" not in next(
        x for x in md.splitlines() if x.startswith("| CCI | 20 |")
    )
    # the best mean of each column is bold (Full here)
    assert f"**{full['mean']:.3f} ± {full['std']:.3f}**" in md
    # every plot the Markdown names exists; the HTML embeds them all and loads nothing
    for name in re.findall(r"\]\(plots/([^)]+)\)", md):
        assert (tmp_path / "report" / "plots" / name).is_file()
    page = (tmp_path / "report" / "report.html").read_text()
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    assert not re.search(r'href="(?!#)', page)
    for section in (
        "Results",
        "Data efficiency",
        "Coreset diagnostics",
        "Training curves",
        "Cost",
        "Provenance",
    ):
        assert f"<h2>{section}</h2>" in page and f"## {section}" in md
    # overlap: random-10 shares 5 of 15 with cci-10
    assert "overlap.png" in md
    # junk picks from the labels' kind column, corpus total (5 of 48) in brackets
    assert "| cci-10 | 10 | 0 | 1 (5) | 0 (0) | 0 (0) |" in md
    assert "| random-20 | 20 | 0 | 2 (5) |" in md


def test_report_refuses_a_non_study_dir(tmp_path):
    from typer.testing import CliRunner

    from bioprune.cli.main import app

    r = CliRunner().invoke(app, ["report", str(tmp_path), "--out", str(tmp_path / "r")])
    assert r.exit_code != 0
    assert "not a study directory" in str(r.exception) or "not a study directory" in r.output


def test_report_composition_table_and_score_warning(study, tmp_path):
    """Inspect summaries (as `inspect` writes them) give the composition table beside the
    results and the score diagnostics with the plain length warning."""
    from bioprune.report.diagnostics import length_warning

    out, _ = study
    png = (tmp_path / "p.png").resolve()
    from matplotlib.figure import Figure

    Figure(figsize=(1, 1)).savefig(png, format="png")
    diag = {
        "spearman_length": -0.76,
        "warnings": [length_warning(-0.76)],
        "median_length_corpus": 73.0,
        "top": [{"fraction": 0.05, "count": 3, "median_length": 40.0, "junk": 2}],
        "per_label": {
            "name": "family",
            "rows": [
                {
                    "label": "f0",
                    "count": 16,
                    "median_length": 40.0,
                    "median_percentile": 80.0,
                    "top0.01": 1,
                    "top0.05": 2,
                },
            ],
        },
        "duplicates": {"pairs": 4, "spearman": 0.63, "median_percentile_gap": 9.0},
    }
    for name, k, fams in (("cci-10", 10, (3, 4, 3, 0)), ("random-10", 10, (5, 5, 0, 0))):
        per_label = [
            {"label": f"f{i}", "corpus": 16, "coreset": c, "kept_fraction": c / 16}
            for i, c in enumerate(fams[:3])
        ] + [{"label": "junk", "corpus": 5, "coreset": fams[3], "kept_fraction": fams[3] / 5}]
        summary = {
            "lengths": {
                "corpus": {"count": 48, "residues": 4800, "median": 73.0},
                "coreset": {"count": k, "residues": 500, "median": 50.0},
            },
            "long": {"threshold": 200, "corpus": 6, "coreset": 1},
            "labels": {"name": "family", "per_label": per_label},
            "scores": {"file": "/x/scores.parquet", "diagnostics": diag},
            "plots": {"score_vs_length": "score_vs_length.png"},
        }
        d = out / "inspect" / name
        artifacts.write_json(d / artifacts.INSPECT_SUMMARY, summary)
        (d / "score_vs_length.png").write_bytes(png.read_bytes())
    summary = write_study_report(out, tmp_path / "report")
    md = (tmp_path / "report" / "report.md").read_text()
    assert "### Composition of the coresets" in md
    assert md.index("Composition of the coresets") < md.index("## Data efficiency")
    # corpus row first; labels covered leave junk out (cci-10: f0, f1, f2 = 3 of 3)
    assert "| corpus | 48 | 4,800 | 73 | 12.5% | 5 | – / 0 | 3 of 3 |" in md
    assert "| cci-10 | 10 | 500 | 50 | 10.0% | 1 (10.0%) | 0 / 0 (0.0%) | 3 of 3 |" in md
    assert "| random-10 | 10 | 500 | 50 | 10.0% |" in md and "| 2 of 3 |" in md
    assert summary["composition"]["random-10"]["labels_covered"] == 2
    # score diagnostics: once per score file, with the warning in plain words
    assert md.count("### Score diagnostics: scores.parquet") == 1
    assert "Spearman(score, length) = -0.76" in md and "**Warning:**" in md
    assert "follows sequence length" in md and "0.63" in md
    assert "scores-score_vs_length.png" in md
    assert summary["score_diagnostics"][0]["spearman_length"] == -0.76
