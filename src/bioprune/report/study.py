"""``bioprune report``: the paper-style report of a study directory (``bioprune study``).

Reads only the files the stages wrote (``results/*/*.json``, ``coresets/*/selection.json``,
``inspect/*/summary.json``, model ``training.json``/``curve.csv``, Snakemake's
``benchmarks/``) and ``study/config.json``; writes ``report.md`` (plots beside it in
``plots/``) and one self-contained ``report.html`` (plots embedded as data URIs).

The table: one row per model (Full, Full equal-compute, Raw, then each budget's coreset
methods), one column per task and headline metric, ``mean ± std`` over every seed behind
the row (evaluation seeds x pretraining seeds, sample std, ddof=1). **Bold**: the best
mean of the column. ``†``: the row beats Random 1x of the same budget by more than the
seed spread, i.e. ``|mean - mean_random| > std + std_random`` in the metric's better
direction (a plain, conservative rule rather than a significance test; with 2-3 seeds a
t-test has little power and rests on normality it cannot check).
"""

from __future__ import annotations

import base64
import csv
import html
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.report.figures import figure, png
from bioprune.workflow.config import StudyConfig, validate_study_config
from bioprune.workflow.plan import FULL, FULL_EQUAL, RAW, StudyPlan, build_plan, model_row

__all__ = ["Cell", "TableRow", "beats", "build_table", "write_study_report"]

log = logging.getLogger("bioprune.report")

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS = "plots"
BEATS_MARK = "†"
_SMALLER_IS_BETTER = ("mse", "rmse", "mae", "loss")
_METHOD_NAMES = {
    "cci": "CCI",
    "topk": "Top-k",
    "bottomk": "Bottom-k",
    "random": "Random",
    "cluster": "Cluster",
}


def larger_is_better(metric: str) -> bool:
    base = metric.removesuffix("_beacon")  # a benchmark's definition of the same quantity
    return not any(base == s or base.endswith(s) for s in _SMALLER_IS_BETTER)


@dataclass
class Cell:
    """One metric of one row: every per-seed value behind it, their mean and sample std."""

    values: list[float]
    mean: float
    std: float | None  # None for fewer than two values

    @property
    def n(self) -> int:
        return len(self.values)

    def text(self) -> str:
        if self.mean is None or not math.isfinite(self.mean):
            return "nan"
        if self.std is None or self.n == 1:  # one value: no spread to show
            return f"{self.mean:.3f} (n={self.n})"
        return f"{self.mean:.3f} ± {self.std:.3f}"


@dataclass
class TableRow:
    key: str  # full, full-equal, raw, or a coreset name (method-budget)
    label: str
    budget: str | None
    size: int | None  # sequences pretrained on (None: the whole corpus / none)
    method: str | None
    random_1x: str | None  # key of the Random 1x row of the same budget
    models: list[str]
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)


def _cell(results: list[dict], metric: str) -> Cell | None:
    found = [r["metrics"][metric] for r in results if metric in r.get("metrics", {})]
    if not found:
        return None
    if len(found) == 1:  # exactly the numbers of the RESULTS.json
        m = found[0]
        return Cell(list(m.get("per_seed") or []), m["mean"], m["std"])
    values = [float(v) for m in found for v in (m.get("per_seed") or [])]
    arr = np.asarray(values, dtype=float)
    return Cell(values, float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else None)


def beats(row: Cell, random: Cell, metric: str) -> bool:
    """``row`` beats ``random`` beyond the seed spread: the means differ, in the better
    direction, by more than the sum of the two standard deviations. A cell of one value
    has no spread to compare with, so it never beats."""
    if (
        row is None
        or random is None
        or row.std is None
        or random.std is None
        or row.n == 1
        or random.n == 1
        or not (math.isfinite(row.mean) and math.isfinite(random.mean))
    ):
        return False
    diff = row.mean - random.mean if larger_is_better(metric) else random.mean - row.mean
    return diff > (row.std or 0.0) + (random.std or 0.0)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _row_label(plan: StudyPlan, coreset: str) -> tuple[str, str | None]:
    cs = plan.coresets[coreset]
    method = next(m for m in plan.config.methods if m.label == cs.method_label)
    if method.name:
        return method.name, None
    base = _METHOD_NAMES.get(method.method, method.method)
    if method.method == "random":
        return f"Random {method.multiplier:g}x", None
    if method.multiplier != 1:
        base += f" {method.multiplier:g}x"
    return base, None


def build_table(study: Path, plan: StudyPlan) -> tuple[list[TableRow], list[tuple[str, str]]]:
    """Rows and columns ``(task, metric)`` of the paper-style table."""
    rows: list[TableRow] = [
        TableRow(FULL, "Full", None, None, None, None, [FULL]),
    ]
    eq = [m for m in plan.models if model_row(m)[0] == FULL_EQUAL]
    if eq:
        rows.append(TableRow(FULL_EQUAL, "Full equal-compute", None, None, None, None, eq))
    rows.append(TableRow(RAW, "Raw", None, 0, None, None, [RAW]))
    for b in plan.config.budgets:
        from bioprune.workflow.config import budget_label

        bl = budget_label(b)
        random_1x = next(
            (
                n
                for n, c in plan.coresets.items()
                if c.budget_label == bl
                and c.method == "random"
                and next(m for m in plan.config.methods if m.label == c.method_label).multiplier
                == 1
            ),
            None,
        )
        for name, cs in plan.coresets.items():
            if cs.budget_label != bl:
                continue
            meta = _read_json(study / "coresets" / name / artifacts.SELECTION_META) or {}
            size = (meta.get("budget") or {}).get("selected")
            label, _ = _row_label(plan, name)
            models = [m for m in plan.models if plan.models[m].coreset == name]
            rows.append(TableRow(name, label, bl, size, cs.method, random_1x, models))
    columns: list[tuple[str, str]] = []
    for task in plan.task_args:
        headline: list[str] = []
        for row in rows:
            results = [
                r for m in row.models if (r := _read_json(study / "results" / task / f"{m}.json"))
            ]
            for r in results:
                for h in r.get("headline_metrics") or list(r.get("metrics", {}))[:2]:
                    if h not in headline:
                        headline.append(h)
            for metric in headline:
                c = _cell(results, metric)
                if c is not None:
                    row.cells[(task, metric)] = c
        for row in rows:  # metrics first met in a later row
            results = [
                r for m in row.models if (r := _read_json(study / "results" / task / f"{m}.json"))
            ]
            for metric in headline:
                if (task, metric) not in row.cells and (c := _cell(results, metric)):
                    row.cells[(task, metric)] = c
        columns += [(task, h) for h in headline]
    return rows, columns


# ---- plots (matplotlib's Figure API: no pyplot, no global backend) ---------------------------


def _figure(w: float, h: float):
    return figure(w, h, dpi=110)


def plot_data_efficiency(rows: list[TableRow], task: str, metric: str) -> bytes:
    """Headline metric vs coreset size, one line per method, error bars = std over seeds;
    Full, Full equal-compute and Raw as horizontal lines."""
    fig = _figure(8.5, 4.2)
    ax = fig.subplots()
    by_method: dict[str, list[tuple[int, Cell]]] = {}
    for r in rows:
        c = r.cells.get((task, metric))
        if c is None:
            continue
        if r.budget is None or r.size is None:
            style = {"Full": "-", "Full equal-compute": "--", "Raw": ":"}.get(r.label, "-")
            ax.axhline(c.mean, color="0.3", linestyle=style, linewidth=1, label=r.label)
            continue
        by_method.setdefault(r.label, []).append((r.size, c))
    for i, (label, pts) in enumerate(by_method.items()):
        pts.sort(key=lambda p: p[0])
        # methods share sizes: spread their points a little sideways (log axis) to see each
        dodge = 1.0 + 0.025 * (i - (len(by_method) - 1) / 2)
        ax.errorbar(
            [p[0] * dodge for p in pts],
            [p[1].mean for p in pts],
            yerr=[p[1].std or 0.0 for p in pts],  # one seed: no bar
            marker="o",
            capsize=3,
            label=label,
        )
    ax.set_xscale("log")
    ax.set_xlabel("coreset size (sequences pretrained on, log scale)")
    ax.set_ylabel(f"{metric} (test)")
    ax.set_title(f"Data efficiency: {task} (points of one size spread sideways)")
    ax.legend(frameon=False, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    return png(fig)


def plot_training_curves(curves: dict[str, list[dict]]) -> bytes:
    """Validation loss vs tokens seen of every trained model (log x)."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    for name, rows in curves.items():
        pts = [
            (float(r["tokens"]), float(r["val_loss"]))
            for r in rows
            if r.get("val_loss") not in (None, "") and float(r["tokens"] or 0) > 0
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker=".", linewidth=1.2, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("tokens seen (log scale)")
    ax.set_ylabel("validation loss (MLM)")
    ax.set_title("Training curves")
    ax.legend(frameon=False, fontsize=7, ncol=2)
    return png(fig)


def plot_overlap(names: list[str], jac: np.ndarray) -> bytes:
    fig = _figure(1.5 + 0.6 * len(names), 1.2 + 0.55 * len(names))
    ax = fig.subplots()
    im = ax.imshow(jac, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i in range(len(names)):
        for j in range(len(names)):
            ax.text(
                j,
                i,
                f"{jac[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if jac[i, j] < 0.6 else "black",
            )
    fig.colorbar(im, ax=ax, label="Jaccard")
    ax.set_title("Overlap between coresets")
    return png(fig)


# ---- the pieces of the report -------------------------------------------------------------


def _coreset_indices(study: Path, name: str) -> np.ndarray | None:
    import pyarrow.parquet as pq

    path = study / "coresets" / name / artifacts.SELECTION_TABLE
    if not path.is_file():
        return None
    return np.sort(pq.read_table(path, columns=["index"]).column("index").to_numpy())


def overlap(study: Path, names: list[str]) -> tuple[list[str], np.ndarray]:
    sets = {n: idx for n in names if (idx := _coreset_indices(study, n)) is not None}
    keys = list(sets)
    jac = np.eye(len(keys))
    for i, a in enumerate(keys):
        for j in range(i + 1, len(keys)):
            b = keys[j]
            inter = len(np.intersect1d(sets[a], sets[b], assume_unique=True))
            union = len(sets[a]) + len(sets[b]) - inter
            jac[i, j] = jac[j, i] = inter / union if union else 1.0
    return keys, jac


def junk_and_duplicates(study: Path, plan: StudyPlan, names: list[str]) -> list[dict[str, Any]]:
    """Per coreset: exact duplicate sequences inside it (copies beyond the first), and, from a
    ``kind`` column of the labels TSV, how many picks are junk / duplicate / near_duplicate.

    Reads only the picks' tokens (memory-mapped) and the corpus ids, never every sequence.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from bioprune.data.corpus import Corpus
    from bioprune.selection.io import gather_tokens

    corpus_dir = Path(plan.corpus) if Path(plan.corpus).is_absolute() else study / plan.corpus
    if not corpus_dir.is_dir():
        return []
    corpus = Corpus(corpus_dir)
    kinds = None
    labels = plan.config.labels
    if labels is not None and Path(labels).is_file():
        import pyarrow.csv as pacsv

        t = pacsv.read_csv(
            labels, parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False)
        )
        if "kind" in t.column_names and t.num_columns > 1:
            ids = corpus.read_columns(["id"]).column("id").combine_chunks()
            pos = pc.index_in(ids, value_set=t.column(0).cast(pa.string()))
            kinds = t.column("kind").cast(pa.string()).combine_chunks().take(pos)
            corpus_kinds = pc.value_counts(kinds).to_pylist()
            corpus_kinds = {d["values"]: d["counts"] for d in corpus_kinds}
    out = []
    for name in names:
        idx = _coreset_indices(study, name)
        if idx is None:
            continue
        residues, lens = gather_tokens(corpus, idx)
        ends = np.cumsum(lens)
        seqs = {residues[e - n : e].tobytes() for e, n in zip(ends, lens, strict=True)}
        row: dict[str, Any] = {
            "coreset": name,
            "size": len(idx),
            "exact_duplicates": len(idx) - len(seqs),
        }
        if kinds is not None:
            picked = pc.value_counts(kinds.take(pa.array(idx))).to_pylist()
            picked = {d["values"]: d["counts"] for d in picked}
            for k in ("junk", "duplicate", "near_duplicate"):
                row[k] = picked.get(k, 0)
                row[f"{k}_corpus"] = corpus_kinds.get(k, 0)
        out.append(row)
    return out


def composition(
    study: Path, names: list[str], junk: list[dict[str, Any]]
) -> tuple[list[str], list[list[str]], dict[str, Any]]:
    """The composition table printed beside the results: per coreset its size, residues,
    median length, long sequences, junk and duplicate picks and label values (families)
    covered, with the corpus as the first row. From ``inspect/*/summary.json`` and
    :func:`junk_and_duplicates`; returns (header, rows, numbers for report.json).
    """
    by_junk = {j["coreset"]: j for j in junk}
    has_kind = bool(junk) and "junk" in junk[0]
    header = ["coreset", "sequences", "residues", "median length", "longer than 200"]
    if has_kind:
        header += ["junk", "duplicates (exact / marked)"]
    else:
        header += ["exact duplicates"]
    header += ["labels covered"]
    rows: list[list[str]] = []
    numbers: dict[str, Any] = {}
    corpus_row_done = False
    for name in names:
        s = _read_json(study / "inspect" / name / artifacts.INSPECT_SUMMARY)
        if not s:
            continue
        lens = s.get("lengths") or {}
        per_label = [r for r in (s.get("labels") or {}).get("per_label", []) if r["label"]]
        fams = [r for r in per_label if r["label"] != "junk"]
        long_c = (s.get("long") or {}).get("coreset")
        j = by_junk.get(name, {})
        if not corpus_row_done:
            c = lens.get("corpus") or {}
            line = ["corpus", _fmt_int(c.get("count")), _fmt_int(c.get("residues")),
                    f"{c.get('median', float('nan')):.0f}",
                    _pct((s.get("long") or {}).get("corpus"), c.get("count"))]  # fmt: skip
            if has_kind:
                dup_c = j.get("duplicate_corpus", 0) + j.get("near_duplicate_corpus", 0)
                line += [_fmt_int(j.get("junk_corpus")), f"– / {dup_c:,}"]
            else:
                line += ["–"]
            line += [f"{len(fams)} of {len(fams)}" if fams else "–"]
            rows.append(line)
            corpus_row_done = True
        k = lens.get("coreset") or {}
        covered = sum(1 for r in fams if r["coreset"])
        line = [name, _fmt_int(k.get("count")), _fmt_int(k.get("residues")),
                f"{k.get('median', float('nan')):.0f}", _pct(long_c, k.get("count"))]  # fmt: skip
        if has_kind:
            marked = j.get("duplicate", 0) + j.get("near_duplicate", 0)
            line += [
                _pct(j.get("junk"), k.get("count"), count=True),
                f"{j.get('exact_duplicates', 0):,} / {_pct(marked, k.get('count'), count=True)}",
            ]
        else:
            line += [_fmt_int(j.get("exact_duplicates"))]
        line += [f"{covered} of {len(fams)}" if fams else "–"]
        rows.append(line)
        numbers[name] = {
            "sequences": k.get("count"),
            "residues": k.get("residues"),
            "median_length": k.get("median"),
            "longer_than_200": long_c,
            "junk": j.get("junk"),
            "duplicate": j.get("duplicate"),
            "near_duplicate": j.get("near_duplicate"),
            "exact_duplicates": j.get("exact_duplicates"),
            "labels_covered": covered if fams else None,
            "labels": len(fams) if fams else None,
        }
    return header, rows, numbers


def _pct(x: Any, n: Any, *, count: bool = False) -> str:
    if not isinstance(x, int) or not isinstance(n, int) or n <= 0:
        return "–"
    return f"{x:,} ({x / n:.1%})" if count else f"{x / n:.1%}"


def score_diagnostics_section(doc: Doc, study: Path, names: list[str]) -> list[dict[str, Any]]:
    """One block per score file the coresets were inspected against: Spearman(score, length)
    with the plain warning, junk in the top 1% / 5%, per-label ranks, duplicate-pair agreement
    and the plots ``inspect`` drew (bioprune.report.diagnostics). Returns the numbers."""
    seen: dict[tuple[str, str], tuple[str, dict]] = {}
    for name in names:
        s = _read_json(study / "inspect" / name / artifacts.INSPECT_SUMMARY) or {}
        sc = s.get("scores") or {}
        key = (str(sc.get("file")), str(sc.get("reduction") or "mean"))
        if sc.get("diagnostics") and key not in seen:  # one block per score and reduction
            seen[key] = (name, s)
    out = []
    for (file, reduction), (name, s) in seen.items():
        d = s["scores"]["diagnostics"]
        rho = d.get("spearman_length")
        title = Path(file).name + ("" if reduction == "mean" else f", reduction {reduction}")
        doc.heading(f"Score diagnostics: {title}", 3)
        parts = [f"Spearman(score, length) = {rho:+.2f}" if rho is not None else "no length trend"]
        for t in d.get("top", []):
            if "junk" in t:
                parts.append(
                    f"top {t['fraction']:.0%} of the ranking: {t['junk']} of {t['count']} junk, "
                    f"median length {t['median_length']:.0f} (corpus "
                    f"{d.get('median_length_corpus', float('nan')):.0f})"
                )
        dup = d.get("duplicates")
        if dup and dup.get("spearman") is not None:
            parts.append(
                f"{dup['pairs']:,} duplicate pairs agree with Spearman {dup['spearman']:.2f} "
                f"(median percentile gap {dup.get('median_percentile_gap', float('nan')):.0f})"
            )
        doc.para("; ".join(parts) + ".")
        for w in d.get("warnings", []):
            doc.para(f"**Warning:** {w}", f"<b>Warning:</b> {html.escape(w)}")
        rows = (d.get("per_label") or {}).get("rows") or []
        if rows:
            head = [d["per_label"]["name"], "examples", "median length", "median percentile"]
            body = [
                [
                    str(r["label"]),
                    _fmt_int(r["count"]),
                    f"{r['median_length']:.0f}",
                    f"{r['median_percentile']:.0f}",
                    _fmt_int(r.get("top0.01")),
                    _fmt_int(r.get("top0.05")),
                ]
                for r in rows[:20]
            ]
            doc.table([*head, "in top 1%", "in top 5%"], body)
        for key in ("score_vs_length", "score_by_label", "duplicate_pairs"):
            f = (s.get("plots") or {}).get(key)
            if f and (study / "inspect" / name / f).is_file():
                stem = Path(file).stem + ("" if reduction == "mean" else f"-{reduction}")
                doc.image(
                    f"{stem}-{f}", (study / "inspect" / name / f).read_bytes(), f"{stem}: {key}"
                )
        out.append(
            {
                "scores": file,
                "reduction": reduction,
                **{k: v for k, v in d.items() if k != "per_label"},
            }
        )
    return out


def _read_curve(model_dir: Path) -> list[dict]:
    path = model_dir / artifacts.MODEL_CURVE_CSV
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _expected_benchmarks(plan: StudyPlan) -> set[str]:
    """Benchmark files (relative, no suffix) of the plan's jobs: stale ones from an earlier
    config (another budget, say) stay on disk but are not this study's cost."""
    names = {"adapt", "fisher", "score"}
    names |= {f"init/{p}" for p in plan.inits}
    if plan.prepare_args is not None:
        names.add("prepare")
    if plan.reference_args is not None:
        names.add("pretrain_reference")
    names |= {f"{s}/{c}" for c in plan.coresets for s in ("select", "inspect")}
    names |= {f"pretrain/{m}" for m in plan.models}
    names |= {f"evaluate/{t}/{m}" for t in plan.task_args for m in plan.evaluated}
    return names


def _benchmarks(study: Path, plan: StudyPlan) -> list[dict[str, Any]]:
    rows = []
    root = study / "benchmarks"
    expected = _expected_benchmarks(plan)
    for path in sorted(root.rglob("*.tsv")) if root.is_dir() else []:
        if path.relative_to(root).with_suffix("").as_posix() not in expected:
            continue
        with open(path, newline="") as fh:
            recs = list(csv.DictReader(fh, delimiter="\t"))
        if not recs:
            continue
        rel = path.relative_to(root).with_suffix("")
        stage, job = (
            (rel.parts[0], "/".join(rel.parts[1:])) if len(rel.parts) > 1 else (rel.parts[0], "")
        )
        rec = recs[-1]
        rows.append(
            {
                "stage": stage,
                "job": job,
                "wall_s": float(rec.get("s") or "nan"),
                "max_rss_mb": _num(rec.get("max_rss")),
                "cpu_s": _num(rec.get("cpu_time")),
            }
        )
    return rows


def _num(x: Any) -> float | None:
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def _model_dirs(study: Path, plan: StudyPlan) -> dict[str, Path]:
    dirs = {}
    ref = Path(plan.reference)
    dirs["reference (Full)"] = ref if ref.is_absolute() else study / ref
    dirs["adapted"] = study / "adapted"
    for m in plan.models:
        dirs[m] = study / "models" / m
    return dirs


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in (
        "bioprune",
        "torch",
        "transformers",
        "numpy",
        "pyarrow",
        "snakemake",
        "snakemake-executor-plugin-slurm",
    ):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "not installed"
    import platform

    out["python"] = platform.python_version()
    return out


def _input_checksums(cfg: StudyConfig) -> list[tuple[str, str, str]]:
    """(what, path, checksum) of every input of the study."""
    rows = []

    def add(what: str, p: Path | None) -> None:
        if p is None or not p.exists():
            return
        if p.is_file():
            rows.append((what, str(p), artifacts.file_checksum(p)))
            return
        for f in sorted(x for x in p.rglob("*") if x.is_file() and x.stat().st_size < 1 << 31):
            rows.append((what, str(f), artifacts.file_checksum(f)))

    add("corpus", cfg.corpus.path)
    add("labels", cfg.labels)
    if cfg.reference.model is not None:
        add("reference model", cfg.reference.model)
    for t in cfg.tasks:
        add(f"task {t.label}", t.path)
    return rows


# ---- rendering: one list of blocks, rendered to Markdown and to HTML ----------------------


@dataclass
class Doc:
    md: list[str] = field(default_factory=list)
    html: list[str] = field(default_factory=list)
    plots: dict[str, bytes] = field(default_factory=dict)

    def heading(self, text: str, level: int = 2) -> None:
        self.md.append(f"{'#' * level} {text}\n")
        self.html.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def para(self, text: str, html_text: str | None = None) -> None:
        self.md.append(text + "\n")
        self.html.append(f"<p>{html_text if html_text is not None else html.escape(text)}</p>")

    def table(self, header: list[str], rows: list[list[str]], *, bold: set | None = None) -> None:
        bold = bold or set()
        md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        h = [
            "<table><thead><tr>"
            + "".join(f"<th>{html.escape(c)}</th>" for c in header)
            + "</tr></thead><tbody>"
        ]
        for i, r in enumerate(rows):
            md.append(
                "| "
                + " | ".join(f"**{c}**" if (i, j) in bold else c for j, c in enumerate(r))
                + " |"
            )
            h.append(
                "<tr>"
                + "".join(
                    f"<td><b>{html.escape(c)}</b></td>"
                    if (i, j) in bold
                    else f"<td>{html.escape(c)}</td>"
                    for j, c in enumerate(r)
                )
                + "</tr>"
            )
        h.append("</tbody></table>")
        self.md.append("\n".join(md) + "\n")
        self.html.append("".join(h))

    def image(self, name: str, png: bytes, alt: str) -> None:
        self.plots[name] = png
        self.md.append(f"![{alt}]({PLOTS}/{name})\n")
        b64 = base64.b64encode(png).decode()
        self.html.append(
            f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{b64}"></figure>'
        )

    def code(self, text: str, lang: str = "") -> None:
        self.md.append(f"```{lang}\n{text.rstrip()}\n```\n")
        self.html.append(f"<pre>{html.escape(text)}</pre>")

    def details(self, summary: str, inner: Doc) -> None:
        self.md.extend(inner.md)
        self.plots.update(inner.plots)
        self.html.append(
            f"<details><summary>{html.escape(summary)}</summary>"
            + "".join(inner.html)
            + "</details>"
        )


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1200px;
margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
tbody tr:nth-child(even){background:#fafafa}
figure{margin:1em 0} img{max-width:100%;border:1px solid #eee}
pre{background:#f6f8fa;padding:1em;overflow-x:auto;font-size:12px}
details{margin:.5em 0 1em} summary{cursor:pointer;font-weight:600}
h1{border-bottom:2px solid #333} h2{border-bottom:1px solid #ccc;margin-top:2em}
.note{color:#555;font-size:13px}
"""


def _fmt_int(x: Any) -> str:
    return "–" if x is None else f"{int(x):,}"


def _load_plan(study: Path) -> StudyPlan:
    path = study / "study" / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{study} is not a study directory (no study/config.json); run `bioprune study` first"
        )
    raw = json.loads(path.read_text())
    return build_plan(validate_study_config(raw, study, source=path, check_paths=False))


def write_study_report(study: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write ``report.md``, ``plots/`` and ``report.html`` for the study directory ``study``.

    Returns a summary: the table (rows x columns as numbers), which rows beat Random 1x.
    """
    study = Path(study).resolve()
    plan = _load_plan(study)
    rows, columns = build_table(study, plan)
    names = list(plan.coresets)
    doc = Doc()
    _intro_section(doc, study, plan)
    beat_rows = _results_section(doc, rows, columns)
    junk = junk_and_duplicates(study, plan, names)
    comp_numbers = _composition_section(doc, study, names, junk)
    _efficiency_section(doc, plan, rows, columns)
    score_diag = _diagnostics_section(doc, study, names, junk)
    dirs = _model_dirs(study, plan)
    _curves_section(doc, dirs)
    _cost_section(doc, study, plan, dirs)
    _provenance_section(doc, study, plan.config)
    summary = {
        "study": str(study),
        "columns": [list(c) for c in columns],
        "rows": [_row_summary(r) for r in rows],
        "beats_random_1x": beat_rows,
        "composition": comp_numbers,
        "score_diagnostics": score_diag,
        "beats_rule": "mean difference (better direction) > std + std of Random 1x",
        **artifacts.provenance(),
    }
    _write_report(out, overwrite, doc, summary)
    log.info("wrote %s", out)
    return summary


def _intro_section(doc: Doc, study: Path, plan: StudyPlan) -> None:
    """The title and one paragraph: where the study is, its corpus, models and seeds."""
    cfg = plan.config
    doc.md.append("# bioprune study report\n")
    doc.html.append("<h1>bioprune study report</h1>")
    n_corpus = None
    manifest = _read_json(
        (Path(plan.corpus) if Path(plan.corpus).is_absolute() else study / plan.corpus)
        / artifacts.CORPUS_MANIFEST
    )
    if manifest:
        n_corpus = manifest.get("num_sequences")
    seeds_eval = {t.label: t.seeds for t in cfg.tasks}
    doc.para(
        f"Study directory `{study}`; corpus {cfg.corpus.path.name}"
        + (f" ({n_corpus:,} sequences)" if isinstance(n_corpus, int) else "")
        + f"; coreset models: preset {cfg.pretraining.preset}, equal compute by "
        f"{cfg.pretraining.equal_compute}, pretraining seeds {cfg.pretraining.seeds}; "
        f"evaluation seeds {seeds_eval}."
    )


def _best_means(rows: list[TableRow], columns: list[tuple[str, str]]) -> dict:
    """The best finite mean of every column, in the metric's better direction."""
    best: dict[tuple[str, str], float] = {}
    for col in columns:
        vals = [
            r.cells[col].mean
            for r in rows
            if col in r.cells and r.cells[col].mean is not None and math.isfinite(r.cells[col].mean)
        ]
        if vals:
            best[col] = max(vals) if larger_is_better(col[1]) else min(vals)
    return best


def _results_table(
    rows: list[TableRow], columns: list[tuple[str, str]]
) -> tuple[list[list[str]], set, list[dict]]:
    """The results table's body, its bold cells and the cells that beat Random 1x."""
    best = _best_means(rows, columns)
    body, bold, beat_rows = [], set(), []
    by_key = {r.key: r for r in rows}
    for i, r in enumerate(rows):
        size = "all" if r.key in (FULL, FULL_EQUAL) else _fmt_int(r.size)
        line = [r.label, r.budget or "–", size]
        for j, col in enumerate(columns):
            c = r.cells.get(col)
            if c is None:
                line.append("–")
                continue
            text = c.text()
            rnd = by_key.get(r.random_1x) if r.random_1x and r.random_1x != r.key else None
            if rnd is not None and beats(c, rnd.cells.get(col), col[1]):
                text += f" {BEATS_MARK}"
                beat_rows.append({"row": r.key, "task": col[0], "metric": col[1]})
            if col in best and c.mean == best[col]:
                bold.add((i, 3 + j))
            line.append(text)
        body.append(line)
    return body, bold, beat_rows


def _results_section(doc: Doc, rows: list[TableRow], columns: list[tuple[str, str]]) -> list:
    """The results table and how to read it; returns the cells that beat Random 1x."""
    doc.heading("Results")
    header = ["model", "budget", "sequences"] + [f"{t}: {m}" for t, m in columns]
    body, bold, beat_rows = _results_table(rows, columns)
    doc.table(header, body, bold=bold)
    by_key = {r.key: r for r in rows}
    n_note = ", ".join(sorted({f"{r.label}: n={c.n}" for r in rows for c in r.cells.values()}))
    doc.para(
        f"mean ± std (sample std, ddof=1) over every seed behind a row (evaluation seeds x "
        f"pretraining seeds; a single value shows as 'mean (n=1)' and never beats); bold"
        f": the best mean of the column; {BEATS_MARK}: beats Random 1x "
        "of the same budget beyond the seed spread, i.e. the difference of the means, in the "
        "metric's better direction, exceeds the sum of the two standard deviations (a plain "
        "rule, not a significance test). Full is the reference model (pretrained on the whole "
        "corpus); Raw an untrained model of the coreset architecture."
    )
    doc.para(
        "Beats Random 1x beyond the seed spread: "
        + (
            "; ".join(
                f"{by_key[b['row']].label} ({by_key[b['row']].budget}) on {b['task']} {b['metric']}"
                for b in beat_rows
            )
            if beat_rows
            else "no method, on any metric."
        )
    )
    doc.para(
        f"Seeds per row: {n_note}.",
    )
    return beat_rows


def _composition_section(doc: Doc, study: Path, names: list[str], junk: list) -> list:
    """What each coreset holds (when the inspect outputs exist); returns the numbers."""
    comp_header, comp_rows, comp_numbers = composition(study, names, junk)
    if comp_rows:
        doc.heading("Composition of the coresets", 3)
        doc.table(comp_header, comp_rows)
        doc.para(
            "What each coreset holds, beside the results above: residues, the median length "
            "and the share longer than 200 residues; junk and duplicates from the labels "
            "file's `kind` column (exact: picks whose sequence equals another pick's; marked: "
            "`duplicate` and `near_duplicate` picks); labels covered: label values (families, "
            "junk left out) with at least one pick."
        )
    return comp_numbers


def _efficiency_section(
    doc: Doc, plan: StudyPlan, rows: list[TableRow], columns: list[tuple[str, str]]
) -> None:
    """One data-efficiency plot per task (its first metric)."""
    doc.heading("Data efficiency")
    for task in plan.task_args:
        metrics = [m for t, m in columns if t == task]
        if metrics:
            doc.image(
                f"efficiency-{task}.png",
                plot_data_efficiency(rows, task, metrics[0]),
                f"data efficiency on {task}",
            )


def _diagnostics_section(doc: Doc, study: Path, names: list[str], junk: list) -> list:
    """Score diagnostics, overlap, junk and duplicates, and one folded block per coreset."""
    doc.heading("Coreset diagnostics")
    score_diag = score_diagnostics_section(doc, study, names)
    keys, jac = overlap(study, names)
    if len(keys) > 1:
        doc.image("overlap.png", plot_overlap(keys, jac), "Jaccard overlap between coresets")
    if junk:
        _junk_table(doc, junk)
    for name in names:
        doc.details(
            f"{name}: score distribution, strata, labels, lengths", _coreset_details(study, name)
        )
    return score_diag


def _junk_table(doc: Doc, junk: list[dict]) -> None:
    has_kind = "junk" in junk[0]
    hdr = ["coreset", "size", "exact duplicate sequences"]
    if has_kind:
        hdr += ["junk (corpus)", "duplicate (corpus)", "near-duplicate (corpus)"]
    body = []
    for j in junk:
        line = [j["coreset"], _fmt_int(j["size"]), _fmt_int(j["exact_duplicates"])]
        if has_kind:
            kinds = ("junk", "duplicate", "near_duplicate")
            line += [f"{j[k]} ({j[k + '_corpus']})" for k in kinds]
        body.append(line)
    doc.table(hdr, body)
    doc.para(
        "exact duplicate sequences: picks whose sequence equals another pick's (copies "
        "beyond the first)"
        + (
            "; junk/duplicate/near-duplicate: picks whose `kind` in "
            "the labels file says so, corpus totals in brackets."
            if has_kind
            else "."
        )
    )


def _coreset_details(study: Path, name: str) -> Doc:
    """One coreset: method and size, its strata, its labels and its inspect plots."""
    inner = Doc()
    summary = _read_json(study / "inspect" / name / artifacts.INSPECT_SUMMARY) or {}
    meta = _read_json(study / "coresets" / name / artifacts.SELECTION_META) or {}
    inner.heading(f"Coreset {name}", 3)
    b = meta.get("budget") or {}
    lengths = summary.get("lengths") or {}
    inner.para(
        f"{meta.get('method', '?')}, {_fmt_int(b.get('selected'))} of {_fmt_int(b.get('n'))} "
        f"sequences, seed {meta.get('seed')}; median length "
        f"{(lengths.get('coreset') or {}).get('median', float('nan')):.0f} "
        f"(corpus {(lengths.get('corpus') or {}).get('median', float('nan')):.0f})"
    )
    strata = (meta.get("details") or {}).get("strata_table")
    if strata:
        inner.table(
            ["stratum", "low", "high", "pool", "picks"],
            [
                [
                    str(s.get("stratum", k)),
                    f"{s.get('lower', float('nan')):.4g}",
                    f"{s.get('upper', float('nan')):.4g}",
                    _fmt_int(s.get("pool")),
                    _fmt_int(s.get("picks")),
                ]
                for k, s in enumerate(strata)
            ],
        )
    per_label = ((summary.get("labels") or {}).get("per_label")) or []
    if per_label:
        lname = summary["labels"].get("name", "label")
        inner.table(
            [lname, "corpus", "coreset", "kept"],
            [
                [
                    str(x["label"]),
                    _fmt_int(x["corpus"]),
                    _fmt_int(x["coreset"]),
                    f"{x['kept_fraction']:.1%}",
                ]
                for x in per_label[:20]
            ],
        )
    for key in ("scores", "lengths", "labels", "composition"):
        f = (summary.get("plots") or {}).get(key)
        plot = study / "inspect" / name / f if f else None
        if plot is not None and plot.is_file():
            inner.image(f"{name}-{f}", plot.read_bytes(), f"{name}: {key}")
    return inner


def _curves_section(doc: Doc, dirs: dict[str, Path]) -> None:
    doc.heading("Training curves")
    curves = {n: c for n, d in dirs.items() if n != "adapted" and (c := _read_curve(d))}
    if curves:
        doc.image("training-curves.png", plot_training_curves(curves), "validation loss vs tokens")


def _cost_section(doc: Doc, study: Path, plan: StudyPlan, dirs: dict[str, Path]) -> None:
    """Wall time, CPU time and memory per job; tokens trained on per model."""
    doc.heading("Cost")
    bench = _benchmarks(study, plan)
    if bench:
        doc.table(
            ["stage", "job", "wall time (s)", "CPU time (s)", "max RSS (MB)"],
            [
                [
                    b["stage"],
                    b["job"] or "–",
                    f"{b['wall_s']:.1f}",
                    "–" if b["cpu_s"] is None else f"{b['cpu_s']:.1f}",
                    "–" if b["max_rss_mb"] is None else f"{b['max_rss_mb']:.0f}",
                ]
                for b in bench
            ],
        )
        doc.para(
            f"Total wall time of all jobs {sum(b['wall_s'] for b in bench):,.0f} s "
            "(jobs ran side by side; Snakemake benchmark files in benchmarks/)."
        )
    comp = _compute_rows(dirs)
    if comp:
        doc.table(
            ["model", "steps", "tokens seen", "compute vs Full (tokens)", "train wall (s)"], comp
        )
        doc.para(
            "Compute is counted in tokens trained on (every model of one architecture costs "
            "the same per token); the scoring cost is in the stage table above."
        )


def _compute_rows(dirs: dict[str, Path]) -> list[list[str]]:
    """Per trained model: steps, tokens seen, tokens relative to Full, training wall time."""
    ref_info = _read_json(dirs["reference (Full)"] / artifacts.MODEL_TRAINING) or {}
    ref_tokens = ref_info.get("tokens_seen")
    comp = []
    for name, d in dirs.items():
        info = _read_json(d / artifacts.MODEL_TRAINING)
        if not info:
            continue
        tok = info.get("tokens_seen")
        rel = f"{tok / ref_tokens:.3f}" if tok and ref_tokens else "–"
        comp.append(
            [
                name,
                _fmt_int(info.get("steps")),
                _fmt_int(tok),
                rel,
                f"{info.get('wall_s', float('nan')):.1f}",
            ]
        )
    return comp


def _provenance_section(doc: Doc, study: Path, cfg: StudyConfig) -> None:
    """Package versions, input checksums and the config (as given and as validated)."""
    doc.heading("Provenance")
    doc.table(["package", "version"], [[k, v] for k, v in _versions().items()])
    sums = _input_checksums(cfg)
    if sums:
        doc.table(["input", "file", "checksum"], [[w, p, c[:40] + "…"] for w, p, c in sums])
    yaml_path = study / "study" / "config.yaml"
    if yaml_path.is_file():
        doc.para("The config as given (study/config.yaml):")
        doc.code(yaml_path.read_text(), "yaml")
    doc.para("The config as validated (study/config.json, paths resolved):")
    doc.code(cfg.model_dump_json(indent=2), "json")


def _row_summary(r: TableRow) -> dict:
    return {
        "key": r.key,
        "label": r.label,
        "budget": r.budget,
        "size": r.size,
        "cells": {
            f"{t}:{m}": {"mean": c.mean, "std": c.std, "n": c.n} for (t, m), c in r.cells.items()
        },
    }


def _write_report(out: str | Path, overwrite: bool, doc: Doc, summary: dict) -> None:
    """``report.md``, ``report.html``, ``report.json`` and ``plots/``, atomically."""
    html_doc = (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>bioprune study report</title><style>{_CSS}</style></head><body>"
        + "\n".join(doc.html)
        + "</body></html>\n"
    )
    with artifacts.atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / PLOTS).mkdir()
        for name, data in doc.plots.items():
            (tmp / PLOTS / name).write_bytes(data)
        artifacts.atomic_write_text(tmp / REPORT_MD, "\n".join(doc.md))
        artifacts.atomic_write_text(tmp / REPORT_HTML, html_doc)
        artifacts.write_json(tmp / "report.json", summary)
