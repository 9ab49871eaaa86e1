"""cci-length and cci-cluster against slow, plain-loop references (cci_variants.py docstring)."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioprune.selection import LengthStratifiedCCI, RedundancyAwareCCI, make_strategy
from bioprune.selection.cci import hard_cutoff_count
from tests.test_selection import reference_cci, reference_picks, write_scores

# ---------------------------------------------------------------------------
# References: lists and loops, the same random calls as the documented streams.
# ---------------------------------------------------------------------------


def _equal_width_bin(value, lo, hi, bins):
    """The last k with lo + (hi - lo) * k / bins <= value (ends exact); the maximum in the last."""
    edges = [lo + (hi - lo) * (k / bins) for k in range(bins + 1)]
    edges[0], edges[-1] = lo, hi
    b = 0
    for k in range(bins):
        if edges[k] <= value:
            b = k
    return b


def reference_cci_length(
    scores,
    lengths,
    budget,
    beta,
    strata,
    length_bins,
    seed,
    binning="quantile",
    sampling="keys",
    keys=None,
):
    n = len(scores)
    if sampling == "keys" and keys is None:
        keys = list(np.random.default_rng(seed).random(n))
    if n == 0:
        if budget:
            raise ValueError("budget exceeds the pool")
        return [], set()
    members = {b: [] for b in range(length_bins)}
    if binning == "log":
        logs = [math.log(max(x, 1)) for x in lengths]
        lo, hi = min(logs), max(logs)
        for i in range(n):
            members[_equal_width_bin(logs[i], lo, hi, length_bins)].append(i)
    else:
        for r, i in enumerate(sorted(range(n), key=lambda i: (lengths[i], i))):
            members[r * length_bins // n].append(i)
        for b in members:
            members[b].sort()
    cells = {}
    dropped = []
    for b in range(length_bins):
        group = members[b]
        k = hard_cutoff_count(len(group), beta)
        hardest = set(sorted(group, key=lambda i: (-scores[i], i))[:k])
        dropped += hardest
        pool = [i for i in group if i not in hardest]
        if not pool:
            continue
        s_lo = min(scores[i] for i in pool)
        s_hi = max(scores[i] for i in pool)
        for i in pool:
            c = b * strata + _equal_width_bin(scores[i], s_lo, s_hi, strata)
            cells.setdefault(c, []).append(i)
    if budget > sum(len(v) for v in cells.values()):
        raise ValueError("budget exceeds the pool")
    visit = sorted(cells, key=lambda c: (len(cells[c]), c))
    rng = np.random.default_rng(seed)
    remaining, chosen = budget, []
    for j, c in enumerate(visit):
        take = min(len(cells[c]), remaining // (len(visit) - j))
        if take:
            chosen += reference_picks(cells[c], take, rng, keys)
            remaining -= take
    return sorted(chosen), set(dropped)


def reference_cci_cluster(scores, clusters, budget, beta, strata, m, seed, sampling="keys"):
    n = len(scores)
    corpus_keys = np.random.default_rng(seed).random(n)
    n_hard = hard_cutoff_count(n, beta)
    hardest = set(sorted(range(n), key=lambda i: (-scores[i], i))[:n_hard])
    priority = np.random.default_rng([seed, 1]).permutation(n)
    kept = []
    for c in sorted(set(clusters)):
        members = [i for i in range(n) if clusters[i] == c and i not in hardest]
        kept += sorted(members, key=lambda i: priority[i])[:m]
    kept.sort()
    keys = [corpus_keys[i] for i in kept] if sampling == "keys" else None
    sub, _, _ = reference_cci([scores[i] for i in kept], budget, 0.0, strata, seed, sampling, keys)
    return [kept[j] for j in sub], hardest


# ---------------------------------------------------------------------------

values = st.one_of(
    st.lists(st.integers(-3, 3).map(float), min_size=0, max_size=90),  # heavy ties
    st.lists(st.floats(-1e5, 1e5, allow_nan=False, allow_subnormal=False), max_size=90),
)


@st.composite
def length_cases(draw):
    scores = draw(values)
    n = len(scores)
    lengths = draw(
        st.one_of(
            st.lists(st.integers(0, 3000), min_size=n, max_size=n),
            st.lists(st.sampled_from([7, 50, 51, 400]), min_size=n, max_size=n),  # ties
        )
    )
    beta = draw(st.sampled_from([0.0, 0.05, 0.29, 0.5]))
    strata = draw(st.integers(1, 8))
    length_bins = draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    binning = draw(st.sampled_from(["quantile", "log"]))
    sampling = draw(st.sampled_from(["keys", "stream"]))
    _, dropped = reference_cci_length(scores, lengths, 0, beta, strata, length_bins, seed, binning)
    budget = draw(st.integers(0, n - len(dropped)))
    return scores, lengths, budget, beta, strata, length_bins, seed, binning, sampling


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(length_cases())
def test_cci_length_matches_reference(case):
    scores, lengths, budget, beta, strata, length_bins, seed, binning, sampling = case
    strategy = LengthStratifiedCCI(
        beta=beta,
        strata=strata,
        length_bins=length_bins,
        length_binning=binning,
        seed=seed,
        sampling=sampling,
    )
    sel = strategy.select(
        np.array(scores, dtype=np.float64), budget, np.array(lengths, dtype=np.int64)
    )
    ref, dropped = reference_cci_length(
        scores, lengths, budget, beta, strata, length_bins, seed, binning, sampling
    )
    assert sel.indices.tolist() == ref
    assert len(sel) == budget and np.all(np.diff(sel.indices) > 0)
    assert not dropped & set(ref)
    if len(scores):
        d = sel.details
        assert d["dropped_hardest"] == len(dropped)
        assert sum(c["picks"] for c in d["cells"]) == budget
        assert all(c["picks"] <= c["pool"] for c in d["cells"])
        assert sum(r["members"] for r in d["length_table"]) == len(scores)
        cells = {c["cell"]: c for c in d["cells"]}
        assert np.bincount(sel.stratum, minlength=1).sum() == budget
        for c in set(sel.stratum.tolist()):
            assert cells[c]["picks"] == sel.stratum.tolist().count(c)


@st.composite
def cluster_cases(draw):
    scores = draw(values)
    n = len(scores)
    clusters = draw(st.lists(st.integers(0, max(n // 3, 0)), min_size=n, max_size=n))
    beta = draw(st.sampled_from([0.0, 0.05, 0.29]))
    strata = draw(st.integers(1, 10))
    m = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**32 - 1))
    sampling = draw(st.sampled_from(["keys", "stream"]))
    n_hard = hard_cutoff_count(n, beta)
    hardest = set(sorted(range(n), key=lambda i: (-scores[i], i))[:n_hard])
    pool = sum(
        min(m, sum(1 for i in range(n) if clusters[i] == c and i not in hardest))
        for c in set(clusters)
    )
    budget = draw(st.integers(0, pool))
    return scores, clusters, budget, beta, strata, m, seed, sampling


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cluster_cases())
def test_cci_cluster_matches_reference(case):
    scores, clusters, budget, beta, strata, m, seed, sampling = case
    strategy = RedundancyAwareCCI(
        beta=beta, strata=strata, max_per_cluster=m, seed=seed, sampling=sampling
    )
    sel = strategy.select(
        np.array(scores, dtype=np.float64), budget, np.array(clusters, dtype=np.int64)
    )
    ref, hardest = reference_cci_cluster(scores, clusters, budget, beta, strata, m, seed, sampling)
    assert sel.indices.tolist() == ref
    assert len(sel) == budget and not hardest & set(ref)
    picked = np.array(clusters, dtype=np.int64)[sel.indices]
    assert np.array_equal(sel.cluster, picked)
    if budget:
        assert np.bincount(picked).max() <= m  # the cap
    assert sum(s["picks"] for s in sel.details["strata_table"]) == budget


def test_variant_budget_errors_name_the_pool():
    scores = np.arange(20.0)
    with pytest.raises(ValueError, match=r"exceeds the pool of 19 examples.*each length bin"):
        LengthStratifiedCCI(beta=0.05, length_bins=1).select(scores, 20, np.full(20, 100))
    with pytest.raises(ValueError, match="at most 1 per cluster"):
        RedundancyAwareCCI(beta=0.0).select(scores, 3, np.zeros(20, dtype=np.int64))
    with pytest.raises(ValueError, match="one value per score"):
        LengthStratifiedCCI().select(scores, 3, np.zeros(5, dtype=np.int64))
    with pytest.raises(ValueError, match="max_per_cluster"):
        RedundancyAwareCCI(max_per_cluster=0)
    with pytest.raises(ValueError, match="length_bins"):
        LengthStratifiedCCI(length_bins=0)


def test_cci_length_removes_a_length_driven_score_ranking():
    # Scores ~ 1/length (the paper's mean-loss bias): CCI's equal-width strata put
    # all long sequences into the lowest stratum; cci-length draws from every length bin.
    rng = np.random.default_rng(0)
    lengths = np.exp(rng.uniform(np.log(50), np.log(3000), 4000)).astype(np.int64)
    scores = 1.0 / lengths * rng.lognormal(0, 0.2, 4000)
    cci = make_strategy("cci", seed=0).select(scores, 400)
    long = lengths >= 1000
    for binning in ("quantile", "log"):
        by_length = make_strategy("cci-length", seed=0, length_binning=binning).select(
            scores, 400, lengths=lengths
        )
        assert long[by_length.indices].mean() > 1.5 * long[cci.indices].mean()
        assert by_length.details["length_table"][-1]["picks"] >= 60  # the longest bin's share
    # quantile bins follow the length distribution: a rare short tail is not inflated
    lengths = np.r_[np.full(40, 20), np.full(3960, 300)]
    scores = rng.random(4000)
    q = make_strategy("cci-length", length_binning="quantile").select(scores, 400, lengths=lengths)
    w = make_strategy("cci-length", length_binning="log").select(scores, 400, lengths=lengths)
    assert (lengths[q.indices] == 20).sum() <= 10 < 30 <= (lengths[w.indices] == 20).sum()


# ---------------------------------------------------------------------------
# Through `bioprune select`: corpus lengths, the cluster cache
# ---------------------------------------------------------------------------


def test_select_cli_cci_length_and_stratify(tiny_corpus, tmp_path, monkeypatch, capsys):
    from tests.hostile import run_cli

    scores = np.random.default_rng(1).lognormal(0, 1, len(tiny_corpus))
    scores[5] = np.nan
    path = write_scores(tmp_path / "s.parquet", tiny_corpus, scores)
    outs = {}
    for name, extra in {
        "a": ["--method", "cci-length", "--length-binning", "log"],
        "b": ["--method", "cci", "--stratify", "length", "--length-binning", "log"],
    }.items():
        args = ["select", "--scores", path, "--corpus", tiny_corpus.path, "--budget", "10"]
        code, out = run_cli(
            *args, *extra, "--out", tmp_path / name, "--length-bins", "3", "--strata", "2",
            monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, out
        outs[name] = json.loads((tmp_path / name / "selection.json").read_text())
    a, b = outs["a"], outs["b"]
    assert a["method"] == b["method"] == "cci-length"
    assert a["parameters"] == {
        "beta": 0.05, "strata": 2, "length_bins": 3, "length_binning": "log", "seed": 0,
        "sampling": "keys",
    }  # fmt: skip
    assert a["details"]["sampling"] == "keys"
    assert a["details"]["cells"] == b["details"]["cells"]
    finite = np.flatnonzero(np.isfinite(scores))
    corpus_keys = np.random.default_rng(0).random(len(scores))[finite]  # keys of corpus positions
    ref, _ = reference_cci_length(
        scores[finite].tolist(), tiny_corpus.lengths[finite].tolist(), 10, 0.05, 2, 3, 0, "log",
        keys=corpus_keys.tolist(),
    )  # fmt: skip
    chosen = (tmp_path / "a" / "ids.txt").read_text().split()
    assert chosen == tiny_corpus.ids()[finite[ref]].tolist()
    code, out = run_cli(
        "select", "--scores", path, "--method", "topk", "--stratify", "length",
        "--budget", "3", "--out", tmp_path / "c", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 2 and "--stratify length applies to --method cci" in out


@pytest.mark.skipif(shutil.which("mmseqs") is None, reason="mmseqs is not installed")
def test_select_cli_cci_cluster_caches_clusters(tmp_path, monkeypatch, capsys):
    from bioprune.data.corpus import Corpus, write_corpus
    from tests.conftest import random_sequences
    from tests.hostile import run_cli

    base = random_sequences(10, "rna", seed=7, min_len=120, max_len=160)
    records = list(base) + [(f"{r}_copy", "", s) for r, _, s in base[:5]]  # 5 exact copies
    corpus = write_corpus(tmp_path / "corpus", records, "rna")
    # a copy scores exactly like its original (the 'blind to duplicates')
    scores = np.r_[np.linspace(1, 2, 10), np.linspace(1, 2, 10)[:5]]
    path = write_scores(tmp_path / "s.parquet", corpus, scores)
    cache = tmp_path / "cache"
    metas = []
    for k in range(2):
        code, out = run_cli(
            "select", "--scores", path, "--corpus", corpus.path, "--method", "cci-cluster",
            "--beta", "0", "--budget", "10", "--out", tmp_path / f"sel{k}",
            "--cluster-cache", cache, monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, out
        metas.append(json.loads((tmp_path / f"sel{k}" / "selection.json").read_text()))
    assert [m["details"]["clustering"]["cache"] for m in metas] == ["miss", "hit"]
    assert metas[0]["details"]["clusters"] == 10 and metas[0]["details"]["thinned_out"] == 5
    assert len(list(cache.glob("clusters-*.npy"))) == 1
    ids = (tmp_path / "sel0" / "ids.txt").read_text().split()
    assert len({i.removesuffix("_copy") for i in ids}) == 10  # one of each original/copy pair
    assert ids == (tmp_path / "sel1" / "ids.txt").read_text().split()
    # a damaged cache entry is recomputed, not trusted
    np.save(next(cache.glob("clusters-*.npy")), np.zeros(3, dtype=np.int64))
    code, out = run_cli(
        "select", "--scores", path, "--corpus", corpus.path, "--method", "cci-cluster",
        "--beta", "0", "--budget", "10", "--out", tmp_path / "sel2",
        "--cluster-cache", cache, monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    meta = json.loads((tmp_path / "sel2" / "selection.json").read_text())
    assert meta["details"]["clustering"]["cache"] == "miss"
    assert (tmp_path / "sel2" / "ids.txt").read_text().split() == ids
    # the cluster baseline shares the cache (other parameters: another entry)
    code, out = run_cli(
        "select", "--corpus", corpus.path, "--method", "cluster", "--budget", "10",
        "--out", tmp_path / "base", "--cluster-cache", cache, monkeypatch=monkeypatch,
        capsys=capsys,
    )  # fmt: skip
    assert code == 0, out
    assert len(list(cache.glob("clusters-*.npy"))) == 2
    assert Corpus(corpus.path).checksum  # the corpus is untouched and still verifies


# ---------------------------------------------------------------------------
# The study config: methods entries for the variants become `select` options
# ---------------------------------------------------------------------------


def test_study_config_accepts_the_variants(tmp_path):
    from bioprune.cli.select import select as select_command
    from bioprune.errors import InputError
    from bioprune.workflow.config import validate_study_config
    from bioprune.workflow.plan import CLUSTER_CACHE, build_plan
    from tests.test_study import BASE

    raw = json.loads(json.dumps(BASE))
    raw["methods"] = [
        {"method": "cci"},
        {"method": "cci-length", "length_bins": 4, "strata": 8, "length_binning": "log"},
        {"method": "cci-cluster", "max_per_cluster": 2, "min_seq_id": 0.95, "sampling": "stream"},
        {"method": "cluster"},
        {"method": "topk", "name": "topk_pm", "reduction": "per-masked"},
    ]
    cfg = validate_study_config(raw, tmp_path, check_paths=False)
    plan = build_plan(cfg)
    args = {name: cs.args for name, cs in plan.coresets.items() if name.endswith("-20")}
    assert args["cci-20"] == "--method cci --budget 20 --seed 0 --beta 0.05"
    assert args["cci-length-20"].endswith(
        "--beta 0.05 --strata 8 --length-bins 4 --length-binning log"
    )
    assert "--max-per-cluster 2 --min-seq-id 0.95" in args["cci-cluster-20"]
    assert "--sampling stream" in args["cci-cluster-20"]  # keys, the default, is not written
    assert "--sampling" not in args["cci-20"] + args["cci-length-20"]
    assert f"--cluster-cache {CLUSTER_CACHE}" in args["cci-cluster-20"]
    assert f"--cluster-cache {CLUSTER_CACHE}" in args["cluster-20"]
    assert args["topk_pm-20"] == "--method topk --budget 20 --seed 0 --reduction per-masked"
    assert "--reduction" not in args["cci-20"]
    assert (
        plan.coresets["cci-length-20"].needs_scores and not plan.coresets["cluster-20"].needs_scores
    )
    # the dumped config (every field present) validates again, as the Snakefile does
    validate_study_config(cfg.model_dump(mode="json"), tmp_path, check_paths=False)
    # every option the plan writes is one `bioprune select` knows
    import inspect

    known = {
        p.default.param_decls[0]
        for p in inspect.signature(select_command).parameters.values()
        if hasattr(p.default, "param_decls")
    }
    for cs in plan.coresets.values():
        assert {a for a in cs.args.split() if a.startswith("--")} <= known
    assert "--dedup" not in plan.prepare_args and "--drop" not in plan.prepare_args
    raw["corpus"] = {"path": "corpus.fa", "dedup": "exact", "drop_low_complexity": True}
    plan = build_plan(validate_study_config(raw, tmp_path, check_paths=False))
    assert plan.prepare_args.endswith("--dedup exact --drop-low-complexity")
    raw["methods"] = [{"method": "cci", "max_per_cluster": 2}]
    with pytest.raises(InputError, match="method 'cci' takes no 'max_per_cluster'"):
        validate_study_config(raw, tmp_path, check_paths=False)
    raw["methods"] = [{"method": "topk", "sampling": "stream"}]
    with pytest.raises(InputError, match="method 'topk' takes no 'sampling'"):
        validate_study_config(raw, tmp_path, check_paths=False)
    raw["methods"] = [{"method": "cci", "sampling": "choice"}]
    with pytest.raises(InputError, match="sampling"):
        validate_study_config(raw, tmp_path, check_paths=False)
    raw["methods"] = [{"method": "random", "reduction": "sum"}]
    with pytest.raises(InputError, match="method 'random' takes no 'reduction'"):
        validate_study_config(raw, tmp_path, check_paths=False)


def test_study_dry_run_with_the_variants(tmp_path):
    pytest.importorskip("snakemake", reason="bioprune[cluster] not installed")
    from bioprune.workflow.run import run_study
    from tests.test_study import _config, _write_inputs

    _write_inputs(tmp_path)
    methods = [
        {"method": "cci-length"},
        {"method": "cci-cluster"},
        {"method": "cci", "name": "cci_pm", "reduction": "per-masked"},
    ]
    run = run_study(_config(tmp_path, methods=methods), tmp_path / "out", dry_run=True)
    assert run.returncode == 0, run.output
    assert run.jobs["select"] == 6 and run.jobs["score"] == 1  # 3 methods x 2 budgets
