"""Selection strategies (method.md section 5) against slow, obviously correct references."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bioprune.selection import (
    STRATEGIES,
    BottomK,
    ClusterSelection,
    CoverageCentric,
    RandomSelection,
    TopK,
    make_strategy,
)
from bioprune.selection.cci import bin_scores, hard_cutoff_count, position_keys, strata_edges
from bioprune.selection.cluster import round_robin_order
from tests.conftest import random_sequences

# ---------------------------------------------------------------------------
# A direct, slow reference of Algorithm 1 (method.md section 5): lists and loops.
# It makes the same random calls as the documented sampling: ``keys`` -- one
# default_rng(seed).random(n), each bin takes its members sorted by (key,
# position); ``stream`` -- one rng.choice per bin that takes members, in visiting
# order, members in ascending order.
# ---------------------------------------------------------------------------


def reference_picks(members, take, rng, keys):
    """``take`` of ``members`` (ascending): the smallest keys, or one rng.choice."""
    if keys is not None:
        return sorted(members, key=lambda i: (keys[i], i))[:take]
    return [int(x) for x in rng.choice(np.array(members, dtype=np.int64), size=take, replace=False)]


def reference_cci(scores, budget, beta, strata, seed, sampling="keys", keys=None):
    n = len(scores)
    if sampling == "keys" and keys is None:
        keys = list(np.random.default_rng(seed).random(n))
    n_hard = hard_cutoff_count(n, beta)
    by_hardness = sorted(range(n), key=lambda i: (-scores[i], i))
    hardest = set(by_hardness[:n_hard])
    pool = [i for i in range(n) if i not in hardest]
    if budget > len(pool):
        raise ValueError("budget exceeds the pool")
    counts = [0] * strata
    if not pool:
        return [], counts, hardest
    lo = min(scores[i] for i in pool)
    hi = max(scores[i] for i in pool)
    edges = [lo + (hi - lo) * (k / strata) for k in range(strata + 1)]
    edges[0], edges[-1] = lo, hi
    members = [[] for _ in range(strata)]
    for i in pool:
        b = 0
        for k in range(strata):  # the last edge <= score; the maximum lands in the last bin
            if edges[k] <= scores[i]:
                b = k
        members[b].append(i)
    nonempty = [b for b in range(strata) if members[b]]
    visit = sorted(nonempty, key=lambda b: (len(members[b]), b))
    rng = np.random.default_rng(seed)
    remaining = budget
    chosen = []
    for j, b in enumerate(visit):
        take = min(len(members[b]), remaining // (len(visit) - j))
        if take:
            chosen.extend(reference_picks(members[b], take, rng, keys))
            counts[b] = take
            remaining -= take
    return sorted(chosen), counts, hardest


score_lists = st.one_of(
    # heavy ties: few distinct values
    st.lists(st.integers(-3, 3).map(float), min_size=0, max_size=120),
    st.lists(
        st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, allow_subnormal=False),
        min_size=0,
        max_size=120,
    ),
)


@st.composite
def cci_cases(draw):
    scores = draw(score_lists)
    beta = draw(st.sampled_from([0.0, 0.05, 0.1, 0.29, 0.5]) | st.floats(0.0, 0.95))
    strata = draw(st.integers(1, 25))
    pool = len(scores) - hard_cutoff_count(len(scores), beta)
    budget = draw(st.integers(0, pool))
    seed = draw(st.integers(0, 2**32 - 1))
    sampling = draw(st.sampled_from(["keys", "stream"]))
    return np.array(scores, dtype=np.float64), beta, strata, budget, seed, sampling


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cci_cases())
def test_cci_matches_reference_algorithm_1(case):
    scores, beta, strata, budget, seed, sampling = case
    cci = CoverageCentric(beta=beta, strata=strata, seed=seed, sampling=sampling)
    sel = cci.select(scores, budget)
    ref, ref_counts, hardest = reference_cci(list(scores), budget, beta, strata, seed, sampling)
    assert sel.details["sampling"] == sampling
    # same set, hence equal per-stratum counts
    assert sel.indices.tolist() == ref
    assert np.bincount(sel.stratum, minlength=strata).tolist() == ref_counts
    # invariants of Algorithm 1
    assert len(sel) == budget  # exact budget
    assert len(np.unique(sel.indices)) == budget  # no duplicates
    assert not hardest & set(sel.indices.tolist())  # the hardest floor(n*beta) never chosen
    assert np.all(np.diff(sel.indices) > 0)
    table = sel.details.get("strata_table", [])
    assert sum(s["picks"] for s in table) == budget
    assert all(s["picks"] <= s["pool"] for s in table)
    # same seed, same set
    again = cci.select(scores, budget)
    assert np.array_equal(again.indices, sel.indices)


@settings(max_examples=60, deadline=None)
@given(score_lists, st.integers(1, 10))
def test_cci_budget_above_pool_is_an_error(scores, extra):
    scores = np.array(scores)
    pool = len(scores) - hard_cutoff_count(len(scores), 0.05)
    with pytest.raises(ValueError, match="exceeds the pool"):
        CoverageCentric().select(scores, pool + extra)


def test_cci_edge_cases():
    # all scores equal: one stratum (the last), budget equal to the pool takes everything left
    s = np.full(40, 2.5)
    sel = CoverageCentric(beta=0.05, strata=10, seed=1).select(s, 38)
    assert sel.indices.tolist() == list(range(2, 40))  # ties: the smallest indices are hardest
    assert set(sel.stratum.tolist()) == {9}
    # budget 0
    assert len(CoverageCentric().select(np.arange(100.0), 0)) == 0
    # a single non-empty stratum apart from the maximum's
    s = np.r_[np.zeros(30), 10.0]
    sel = CoverageCentric(beta=0.0, strata=5, seed=0).select(s, 10)
    counts = {s["stratum"]: s["pool"] for s in sel.details["strata_table"] if s["pool"]}
    assert counts == {0: 30, 4: 1}
    assert sel.stratum.tolist().count(4) == 1  # fewest-first: the small stratum is visited first
    # the default hard cut and an error message that names the pool
    with pytest.raises(ValueError, match=r"floor\(100\*0.05\) = 5 hardest"):
        CoverageCentric().select(np.arange(100.0), 96)
    with pytest.raises(ValueError, match="beta"):
        CoverageCentric(beta=1.0)
    with pytest.raises(ValueError, match="NaN"):
        CoverageCentric().select(np.array([1.0, np.nan]), 1)


def _edge_straddling_scores(n, strata, on_edge, seed):
    """Uniform scores in [0, 1] with the ends fixed and ``on_edge`` of them exactly on inner edges,
    and a copy in which those move just below their edge (1e-9 relative): ``on_edge`` examples,
    and no other, change stratum."""
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0.0, 1.0, n)
    scores[0], scores[1] = 0.0, 1.0  # the range (hence the edges) stays put
    edges = strata_edges(0.0, 1.0, strata)
    at = rng.choice(np.arange(2, n), on_edge, replace=False)
    scores[at] = edges[rng.integers(1, strata, on_edge)]
    moved = scores.copy()
    moved[at] *= 1 - 1e-9
    return scores, moved


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cci_keys_change_few_picks_when_a_few_scores_cross_an_edge(seed):
    """Coordinated sampling: k examples crossing a stratum edge change at most 2k picks plus the
    change of the allocation (whereas one random stream redraws every later stratum)."""
    n, strata, budget, on_edge = 5000, 50, 250, 4
    scores, moved = _edge_straddling_scores(n, strata, on_edge, seed)
    cci = CoverageCentric(beta=0.0, strata=strata, seed=seed)  # sampling="keys", the default
    assert cci.sampling == "keys"
    a, b = cci.select(scores, budget), cci.select(moved, budget)
    assert a.details["edges"] == b.details["edges"]
    bins_a, _ = bin_scores(scores, np.array(a.details["edges"]))
    bins_b, _ = bin_scores(moved, np.array(b.details["edges"]))
    crossed = int(np.count_nonzero(bins_a != bins_b))
    assert crossed == on_edge  # the perturbation does move examples across edges
    takes = [np.array([r["picks"] for r in s.details["strata_table"]]) for s in (a, b)]
    realloc = int(np.abs(takes[0] - takes[1]).sum())
    changed = len(np.setdiff1d(a.indices, b.indices))
    assert changed <= 2 * crossed + realloc
    assert realloc <= 2 * crossed  # a few strata gain or lose a member: takes move by one
    # a stratum that no crossing example left or joined, with the same take, picks the same members
    touched = set(bins_a[bins_a != bins_b].tolist()) | set(bins_b[bins_a != bins_b].tolist())
    for k in np.flatnonzero(takes[0] == takes[1]):
        if k not in touched:
            assert np.array_equal(a.indices[a.stratum == k], b.indices[b.stratum == k])


def test_cci_keys_are_the_corpus_positions_keys():
    """keys= takes corpus keys; stream refuses keys; an unknown sampling is an error."""
    scores = np.random.default_rng(0).lognormal(0, 1, 300)
    cci = CoverageCentric(strata=5, seed=4)
    full = cci.select(scores, 30)
    same = cci.select(scores, 30, keys=position_keys(4, 300))
    assert np.array_equal(full.indices, same.indices)
    assert full.details["sampling"] == "keys"
    with pytest.raises(ValueError, match="one value per score"):
        cci.select(scores, 30, keys=position_keys(4, 299))
    with pytest.raises(ValueError, match="sampling is 'stream'"):
        CoverageCentric(sampling="stream").select(scores, 30, keys=position_keys(4, 300))
    with pytest.raises(ValueError, match="sampling: must be one of keys, stream"):
        CoverageCentric(sampling="choice")


def test_cci_binning_in_chunks_changes_nothing(monkeypatch):
    import bioprune.selection.cci as cci_module

    scores = np.round(np.random.default_rng(4).lognormal(0, 1, 500), 2)
    whole = CoverageCentric(strata=13, seed=2).select(scores, 150)
    monkeypatch.setattr(cci_module, "_BIN_CHUNK", 7)
    chunked = CoverageCentric(strata=13, seed=2).select(scores, 150)
    assert np.array_equal(whole.indices, chunked.indices)
    assert whole.details == chunked.details
    ref, _, _ = reference_cci(list(scores), 150, 0.05, 13, 2)
    assert chunked.indices.tolist() == ref


@st.composite
def binning_cases(draw):
    # ranges from sub-normal-close to huge, values on and around the edges
    lo = draw(st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False))
    width = draw(st.sampled_from([0.0, 5e-324, 1e-300, 1e-12, 1.0, 3.0, 1e290]))
    hi = lo + width
    strata = draw(st.integers(1, 60))
    edges = strata_edges(lo, hi, strata)
    on_edges = draw(st.lists(st.sampled_from(edges.tolist()), max_size=20))
    near = [float(np.nextafter(e, d)) for e in on_edges for d in (-np.inf, np.inf)]
    inside = draw(st.lists(st.floats(lo, hi) if hi > lo else st.just(lo), max_size=40))
    above = draw(st.lists(st.floats(hi, 1e308), max_size=5))  # dropped-hardest scores
    values = [v for v in on_edges + near + inside + above if lo <= v]
    return np.array(values, dtype=np.float64), edges


@settings(max_examples=300, deadline=None)
@given(binning_cases(), st.sampled_from([1, 3, 1 << 16]))
def test_bin_scores_equals_searchsorted(case, chunk):
    import bioprune.selection.cci as cci_module

    scores, edges = case
    strata = len(edges) - 1
    old, cci_module._BIN_CHUNK = cci_module._BIN_CHUNK, chunk
    try:
        bins, counts = bin_scores(scores, edges)
    finally:
        cci_module._BIN_CHUNK = old
    expect = np.clip(np.searchsorted(edges, scores, side="right") - 1, 0, strata - 1)
    assert bins.tolist() == expect.tolist()
    assert counts.tolist() == np.bincount(expect, minlength=strata).tolist()


def test_hard_cutoff_count_reads_beta_as_typed():
    assert hard_cutoff_count(100, 0.29) == 29
    assert hard_cutoff_count(23_000_000, 0.05) == 1_150_000
    assert hard_cutoff_count(19, 0.05) == 0


@settings(max_examples=150, deadline=None)
@given(score_lists, st.data())
def test_topk_and_bottomk_match_argsort(scores, data):
    scores = np.array(scores, dtype=np.float64)
    k = data.draw(st.integers(0, len(scores)))
    top = TopK().select(scores, k).indices
    bottom = BottomK().select(scores, k).indices
    # a stable sort orders equal scores by index, which is the tie rule
    assert top.tolist() == sorted(np.argsort(-scores, kind="stable")[:k].tolist())
    assert bottom.tolist() == sorted(np.argsort(scores, kind="stable")[:k].tolist())


def test_topk_ties_by_smaller_index_and_budget_error():
    s = np.array([1.0, 5.0, 5.0, 5.0, 0.0])
    assert TopK().select(s, 2).indices.tolist() == [1, 2]
    assert BottomK().select(np.zeros(5), 3).indices.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="exceeds the pool"):
        TopK().select(s, 6)


def test_random_uniform_and_seeded():
    n, m, reps = 10, 3, 3000
    counts = np.zeros(n)
    for seed in range(reps):
        sel = RandomSelection(seed=seed).select(n, m).indices
        assert len(set(sel.tolist())) == m
        counts[sel] += 1
    expected = reps * m / n
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 30  # 9 degrees of freedom: p < 1e-3 beyond 27.9
    a = RandomSelection(seed=7).select(1000, 100).indices
    assert np.array_equal(a, RandomSelection(seed=7).select(1000, 100).indices)
    assert not np.array_equal(a, RandomSelection(seed=8).select(1000, 100).indices)
    with pytest.raises(ValueError, match="exceeds"):
        RandomSelection().select(5, 6)


def test_registry_builds_each_strategy_from_its_own_options():
    opts = {"seed": 3, "beta": 0.1, "strata": 7, "min_seq_id": 0.5, "tool": "cd-hit"}
    assert make_strategy("cci", **opts) == CoverageCentric(beta=0.1, strata=7, seed=3)
    assert make_strategy("topk", **opts) == TopK()
    assert make_strategy("cluster", **opts).tool == "cd-hit"
    assert set(STRATEGIES) == {
        "random", "topk", "bottomk", "cci", "cluster", "cci-length", "cci-cluster"
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown selection method"):
        make_strategy("kmeans")


def test_round_robin_over_clusters():
    # clusters: {0,1,2} rep 0; {3} rep 3; {4,5} rep 5
    rep_of = np.array([0, 0, 0, 3, 5, 5])
    order, rounds = round_robin_order(rep_of, seed=0)
    assert rounds.tolist() == [0, rounds[1], rounds[2], 0, 1, 0]
    assert sorted([rounds[1], rounds[2]]) == [1, 2]
    assert sorted(order[:3].tolist()) == [0, 3, 5]  # round 0: the representatives
    assert set(order[3:5].tolist()) == {4, int(np.flatnonzero(rounds == 1)[0])}
    assert sorted(order.tolist()) == list(range(6))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 6), min_size=1, max_size=60), st.integers(0, 2**32 - 1))
def test_round_robin_properties(labels, seed):
    # cluster k's representative is its first member
    labels = np.array(labels)
    first = {}
    for i, k in enumerate(labels.tolist()):
        first.setdefault(k, i)
    rep_of = np.array([first[k] for k in labels.tolist()])
    order, rounds = round_robin_order(rep_of, seed)
    assert sorted(order.tolist()) == list(range(len(labels)))
    assert np.all(np.diff(rounds[order]) >= 0)  # whole rounds first
    n_clusters = len(first)
    assert sorted(order[:n_clusters].tolist()) == sorted(first.values())
    for k in first:  # within a cluster, rounds are 0..size-1
        assert sorted(rounds[labels == k].tolist()) == list(range(int((labels == k).sum())))
    assert np.array_equal(order, round_robin_order(rep_of, seed)[0])


# ---------------------------------------------------------------------------
# The cluster baseline on a corpus with planted duplicates
# ---------------------------------------------------------------------------


def _mutate(seq: str, pos: int) -> str:
    return seq[:pos] + ("A" if seq[pos] != "A" else "C") + seq[pos + 1 :]


@pytest.fixture(scope="module")
def duplicated_corpus(tmp_path_factory):
    from bioprune.data.corpus import write_corpus

    base = random_sequences(12, "rna", seed=5, min_len=150, max_len=200)
    records = list(base)
    for i in range(6):  # exact copies and one-mismatch copies of the first six
        rid, _, seq = base[i]
        records.append((f"{rid}_copy", "exact copy", seq))
        records.append((f"{rid}_snp", "one mismatch", _mutate(seq, 40)))
    path = tmp_path_factory.mktemp("dups") / "corpus"
    return write_corpus(path, records, "rna")


@pytest.mark.parametrize("tool", ["mmseqs", "cd-hit"])
def test_cluster_keeps_one_of_each_planted_duplicate(duplicated_corpus, tool, tmp_path):
    binary = "mmseqs" if tool == "mmseqs" else "cd-hit-est"
    if shutil.which(binary) is None:
        pytest.skip(f"{binary} is not installed (apt-get install mmseqs2 cd-hit)")
    ids = duplicated_corpus.ids()
    family = np.array([s.split("_")[0] for s in ids])
    sel = ClusterSelection(min_seq_id=0.9, coverage=0.8, tool=tool, seed=0).select(
        duplicated_corpus, 12, tmp_path / "work"
    )
    assert sel.details["clusters"] == 12
    assert sorted(family[sel.indices].tolist()) == sorted(set(family.tolist()))
    assert np.array_equal(sel.cluster, sel.indices)  # budget == clusters: representatives only
    # above the number of clusters: round robin, each family gets a second member first
    sel = ClusterSelection(min_seq_id=0.9, tool=tool, seed=1).select(
        duplicated_corpus, 18, tmp_path / "work2"
    )
    fam, counts = np.unique(family[sel.indices], return_counts=True)
    assert len(fam) == 12 and counts.max() == 2 and (counts == 2).sum() == 6
    assert sel.details["rounds_used"] == 2


@pytest.mark.parametrize("tool", ["mmseqs", "cd-hit"])
def test_cluster_keeps_sequences_the_tool_skips(tool, tmp_path):
    from bioprune.data.corpus import write_corpus

    if shutil.which("mmseqs" if tool == "mmseqs" else "cd-hit-est") is None:
        pytest.skip(f"{tool} is not installed (apt-get install mmseqs2 cd-hit)")
    records = random_sequences(20, "rna", seed=3, min_len=2, max_len=14)
    corpus = write_corpus(tmp_path / "short", records, "rna")
    sel = ClusterSelection(min_seq_id=0.9, tool=tool).select(corpus, 20, tmp_path / "w")
    assert sel.indices.tolist() == list(range(20))  # every sequence is in some cluster
    assert sel.details["clusters"] >= sel.details["unclustered_singletons"]


def test_cluster_missing_binary_says_how_to_install(duplicated_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(FileNotFoundError, match="apt-get install mmseqs2"):
        ClusterSelection().select(duplicated_corpus, 3, tmp_path)
    with pytest.raises(FileNotFoundError, match="apt-get install cd-hit"):
        ClusterSelection(tool="cd-hit", min_seq_id=0.9).select(duplicated_corpus, 3, tmp_path)


# ---------------------------------------------------------------------------
# select end to end: score files, validation, outputs
# ---------------------------------------------------------------------------


def write_scores(path, corpus, scores, *, order=None, ids=None, metadata=None):
    n = len(corpus)
    table = pa.table(
        {
            "index": np.arange(n, dtype=np.int64),
            "id": pa.array(corpus.ids() if ids is None else ids, pa.string()),
            "length": corpus.lengths,
            "score": np.asarray(scores, dtype=np.float64),
            "loss": np.linspace(1.0, 3.0, n),
        }
    )
    if order is not None:
        table = table.take(pa.array(order))
    if metadata is not None:
        table = table.replace_schema_metadata({k: str(v) for k, v in metadata.items()})
    pq.write_table(table, path)
    return path


@pytest.fixture
def scored(tiny_corpus, tmp_path):
    scores = np.random.default_rng(0).lognormal(0, 1, len(tiny_corpus))
    scores[[3, 17]] = np.nan
    return tiny_corpus, write_scores(tmp_path / "scores.parquet", tiny_corpus, scores), scores


def test_select_cli_end_to_end(scored, tmp_path):
    from typer.testing import CliRunner

    from bioprune.cli.main import app

    corpus, scores_path, scores = scored
    out = tmp_path / "sel"
    args = ["select", "--scores", str(scores_path), "--corpus", str(corpus.path)]
    args += ["--method", "cci", "--budget", "0.25", "--out", str(out), "--strata", "4"]
    res = CliRunner().invoke(app, [*args, "--seed", "3"])
    assert res.exit_code == 0, res.output
    meta = json.loads((out / "selection.json").read_text())
    assert meta["method"] == "cci" and meta["seed"] == 3
    assert json.loads((out / "bioprune_config.json").read_text())["strata"] == 4
    assert meta["budget"] == {
        "requested": "0.25",
        "count": 12,
        "selected": 12,
        "n": 48,
        "fraction_of_n": 0.25,
    }
    assert meta["non_finite_scores_excluded"] == 2
    assert meta["inputs"]["scores_checksum"].startswith("blake2b:")
    assert meta["details"]["dropped_hardest"] == 2  # floor(46 * 0.05)
    assert sum(s["picks"] for s in meta["details"]["strata_table"]) == 12
    table = pq.read_table(out / "selection.parquet")
    assert table.column_names == ["index", "id", "score", "stratum"]
    idx = table.column("index").to_numpy()
    assert not {3, 17} & set(idx.tolist())
    ids = (out / "ids.txt").read_text().splitlines()
    assert ids == corpus.ids()[idx].tolist()
    fasta = (out / "coreset.fasta").read_text().splitlines()
    assert [h[1:] for h in fasta[0::2]] == ids
    assert (
        fasta[1::2]
        == corpus.read_columns(["sequence"])
        .column("sequence")
        .to_numpy(zero_copy_only=False)[idx]
        .tolist()
    )
    np.testing.assert_array_equal(table.column("score").to_numpy(), scores[idx])
    # refuses to overwrite, then replaces with --overwrite
    assert CliRunner().invoke(app, args).exit_code != 0
    res = CliRunner().invoke(app, [*args, "--method", "topk", "--overwrite"])
    assert res.exit_code == 0, res.output
    finite = np.where(np.isfinite(scores), scores, -np.inf)
    top = sorted(np.argsort(-finite, kind="stable")[:12].tolist())
    assert pq.read_table(out / "selection.parquet").column("index").to_pylist() == top


def test_select_reordered_score_file_and_scores_only(scored, tmp_path):
    from bioprune.selection.pipeline import select_coreset

    corpus, _, scores = scored
    path = write_scores(
        tmp_path / "meta.parquet",
        corpus,
        scores,
        metadata={"corpus_checksum": corpus.checksum, "model_checksum": "m:1"},
    )
    shuffled = write_scores(
        tmp_path / "shuffled.parquet",
        corpus,
        scores,
        order=np.random.default_rng(1).permutation(len(corpus)),
    )
    kw = {"method": "cci", "budget": "10", "params": {"seed": 5, "strata": 3}}
    a = select_coreset(out=tmp_path / "a", scores_path=path, corpus_path=corpus.path, **kw)
    b = select_coreset(out=tmp_path / "b", scores_path=shuffled, corpus_path=corpus.path, **kw)
    c = select_coreset(out=tmp_path / "c", scores_path=path, fasta=False, **kw)
    assert a["details"] == b["details"] == c["details"]
    assert a["inputs"]["scores_metadata"] == {
        "corpus_checksum": corpus.checksum,
        "model_checksum": "m:1",
    }
    read = [(tmp_path / d / "ids.txt").read_text() for d in "abc"]
    assert read[0] == read[1] == read[2]
    assert c["outputs"]["fasta"] is None and not (tmp_path / "c" / "coreset.fasta").exists()
    r = select_coreset(method="random", budget="5", out=tmp_path / "r", corpus_path=corpus.path)
    assert r["budget"]["selected"] == 5 and r["non_finite_scores_excluded"] is None


def test_select_rejects_mismatched_or_malformed_scores(tiny_corpus, tmp_path):
    from bioprune.selection.pipeline import select_coreset

    n = len(tiny_corpus)
    kw = {"method": "topk", "budget": "5", "corpus_path": tiny_corpus.path}
    ids = tiny_corpus.ids().copy()
    ids[7] = "intruder"
    bad_ids = write_scores(tmp_path / "ids.parquet", tiny_corpus, np.ones(n), ids=ids)
    with pytest.raises(ValueError, match=r"index 7 has id 'intruder'"):
        select_coreset(out=tmp_path / "o1", scores_path=bad_ids, **kw)
    short = tmp_path / "short.parquet"
    pq.write_table(pq.read_table(bad_ids).slice(0, n - 1), short)
    with pytest.raises(ValueError, match=f"has {n - 1:,} rows but corpus"):
        select_coreset(out=tmp_path / "o2", scores_path=short, **kw)
    no_loss = tmp_path / "noloss.parquet"
    pq.write_table(pq.read_table(bad_ids).drop_columns(["loss"]), no_loss)
    with pytest.raises(ValueError, match="lacks column"):
        select_coreset(out=tmp_path / "o3", scores_path=no_loss, **kw)
    dup = tmp_path / "dup.parquet"
    t = pq.read_table(bad_ids)
    t = t.set_column(0, "index", pa.array(np.r_[0, np.arange(n - 1)], pa.int64()))
    pq.write_table(t, dup)
    with pytest.raises(ValueError, match="exactly once"):
        select_coreset(out=tmp_path / "o4", scores_path=dup, **kw)
    other = write_scores(
        tmp_path / "other.parquet", tiny_corpus, np.ones(n), metadata={"corpus_checksum": "x:1"}
    )
    with pytest.raises(ValueError, match="computed on another corpus"):
        select_coreset(out=tmp_path / "o6", scores_path=other, **kw)
    with pytest.raises(ValueError, match="--scores"):
        select_coreset(method="cci", budget="5", out=tmp_path / "o5", corpus_path=tiny_corpus.path)
    assert not any(p.is_dir() for p in tmp_path.iterdir())  # nothing half-written


def test_select_across_row_groups_batches_and_nan_gaps(tmp_path, monkeypatch):
    """Many row groups, batches that straddle them, NaN gaps: same selection as in memory."""
    import bioprune.selection.io as selection_io
    from bioprune.data.corpus import CorpusWriter, write_corpus
    from bioprune.selection.pipeline import select_coreset

    monkeypatch.setattr(CorpusWriter, "ROWS_PER_GROUP", 7)
    monkeypatch.setattr(selection_io, "BATCH_ROWS", 3)
    n = 61
    records = random_sequences(n, "rna", seed=5, min_len=3, max_len=20)
    corpus = write_corpus(tmp_path / "corpus", records, "rna")
    assert pq.ParquetFile(corpus.sequences_path).num_row_groups == 9
    rng = np.random.default_rng(2)
    scores = rng.lognormal(0, 1, n)
    scores[rng.choice(n, 9, replace=False)] = np.nan

    def rewrite(name, order=None, ids=None):
        table = pq.read_table(write_scores(tmp_path / "raw.parquet", corpus, scores, ids=ids))
        if order is not None:
            table = table.take(pa.array(order))
        pq.write_table(table, tmp_path / name, row_group_size=5)
        return tmp_path / name

    ordered = rewrite("ordered.parquet")
    shuffled = rewrite("shuffled.parquet", order=rng.permutation(n))
    finite = np.flatnonzero(np.isfinite(scores))
    corpus_ids = np.array(corpus.ids())
    # cci's keys are those of the corpus positions, not of the compressed finite scores
    keys = position_keys(1, n)[finite]
    stream = CoverageCentric(strata=4, seed=1, sampling="stream")
    cases = {
        ("topk", "keys"): finite[TopK().select(scores[finite], 20).indices],
        ("cci", "keys"): finite[
            CoverageCentric(strata=4, seed=1).select(scores[finite], 20, keys=keys).indices
        ],
        ("cci", "stream"): finite[stream.select(scores[finite], 20).indices],
    }
    for (method, sampling), expected in cases.items():
        params = {"seed": 1, "strata": 4, "sampling": sampling}
        kw = {"method": method, "budget": "20", "params": params}
        runs = {
            "ordered+corpus": {"scores_path": ordered, "corpus_path": corpus.path},
            "shuffled+corpus": {"scores_path": shuffled, "corpus_path": corpus.path},
            "shuffled": {"scores_path": shuffled},  # ids streamed through the row order
        }
        for name, paths in runs.items():
            out = tmp_path / f"{method}-{sampling}-{name}"
            meta = select_coreset(out=out, **paths, **kw)
            assert meta["non_finite_scores_excluded"] == 9
            table = pq.read_table(out / "selection.parquet")
            assert table.column("index").to_pylist() == expected.tolist(), name
            assert table.column("id").to_pylist() == corpus_ids[expected].tolist(), name
            np.testing.assert_array_equal(table.column("score").to_numpy(), scores[expected])
            assert (out / "ids.txt").read_text().splitlines() == corpus_ids[expected].tolist()
    late = corpus_ids.copy()
    late[45] = "late"  # in the 7th corpus row group, a batch after the first
    wrong = rewrite("wrong.parquet", ids=late)
    with pytest.raises(ValueError, match=r"index 45 has id 'late' in the scores but '"):
        kw = {"scores_path": wrong, "corpus_path": corpus.path}
        select_coreset(method="topk", budget="3", out=tmp_path / "w", **kw)
    assert not (tmp_path / "w").exists()


def test_select_cli_sampling_keys_and_stream(scored, tmp_path, monkeypatch, capsys):
    """--sampling reaches CCI (keys over corpus positions, NaN gaps included) and is recorded."""
    from tests.hostile import assert_one_line_error, run_cli

    corpus, path, scores = scored
    finite = np.flatnonzero(np.isfinite(scores))
    keys = position_keys(2, len(scores))[finite]
    expected = {
        "keys": CoverageCentric(strata=5, seed=2).select(scores[finite], 12, keys=keys),
        "stream": CoverageCentric(strata=5, seed=2, sampling="stream").select(scores[finite], 12),
    }
    for mode, sel in expected.items():
        out = tmp_path / mode
        code, text = run_cli(
            "select", "--scores", path, "--corpus", corpus.path, "--method", "cci",
            "--budget", "12", "--strata", "5", "--seed", "2", "--sampling", mode,
            "--out", out, monkeypatch=monkeypatch, capsys=capsys,
        )  # fmt: skip
        assert code == 0, text
        meta = json.loads((out / "selection.json").read_text())
        assert meta["parameters"]["sampling"] == meta["details"]["sampling"] == mode
        chosen = pq.read_table(out / "selection.parquet").column("index").to_pylist()
        assert chosen == finite[sel.indices].tolist()
    code, text = run_cli(
        "select", "--scores", path, "--method", "cci", "--budget", "3", "--sampling", "choice",
        "--out", tmp_path / "bad", monkeypatch=monkeypatch, capsys=capsys,
    )  # fmt: skip
    assert_one_line_error(code, text, "--sampling must be one of keys, stream")
    assert not (tmp_path / "bad").exists()
