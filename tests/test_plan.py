"""``bioprune plan``: a calibrated prediction of a run's time and memory.

Runs on the ``tiny`` model and the 48-sequence corpus with small budgets (a
few calibration batches of a few hundred tokens). Whether the prediction is
*accurate* is a benchmark (benchmarks/bench_plan.py), never a timed test; here:
its shape, its arithmetic, its assumptions, its errors and that it writes nothing.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from bioprune.influence.engine import plan_parts
from bioprune.planning import FEATURES, PlanConfig, _fit, plan_run, predict_batch_seconds
from tests.hostile import assert_one_line_error, run_cli, snapshot

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {"batch_tokens": 256, "part_batches": 1, "repeats": 1, "device": "cpu"}


@pytest.fixture(scope="module")
def score_plan(tiny_model_dir, tiny_corpus):
    return plan_run(
        PlanConfig(tiny_model_dir, tiny_corpus.path, stage="score", processes=2, **FAST)
    )


def test_score_plan_covers_the_run_batches_and_states_its_assumptions(score_plan, tiny_corpus):
    p = score_plan
    parts = plan_parts(
        tiny_corpus, np.arange(len(tiny_corpus)), batch_tokens=256, max_batch_size=None,
        part_batches=1,
    )  # fmt: skip
    batches = [b for part in parts for b in part]
    assert p.examples == len(tiny_corpus) and p.batches == len(batches)
    assert p.real_tokens == int((tiny_corpus.lengths + 2).sum())
    assert p.padded_tokens == sum(len(b) * (int(tiny_corpus.lengths[b].max()) + 2) for b in batches)
    assert p.padded_tokens >= p.real_tokens
    assert p.seconds_total > 0
    # two processes: part j on rank j % 2; the ETA is the slower rank's share
    assert len(p.seconds_per_process) == 2
    # fixed per-run costs: measured (start-up, model loading, write), listed on their own
    assert (
        set(p.fixed_seconds)
        == set(p.fixed_cpu_seconds)
        == {
            "startup",
            "setup",
            "first_batch",
            "write",
        }
    )
    assert p.fixed_seconds["setup"] > 0 and p.fixed_cpu_seconds["startup"] > 0
    assert all(v >= 0 for v in [*p.fixed_seconds.values(), *p.fixed_cpu_seconds.values()])
    fx, fc = p.fixed_seconds, p.fixed_cpu_seconds
    # one process alone: the batches plus each fixed cost once
    assert p.seconds_total == pytest.approx(p.batch_seconds_total + sum(fx.values()))
    # every rank starts up and loads the model; rank 0 alone writes
    each = fx["startup"] + fx["setup"] + fx["first_batch"]
    assert sum(p.seconds_per_process) == pytest.approx(
        p.batch_seconds_total + 2 * each + fx["write"]
    )
    assert p.seconds_per_process[1] >= each
    assert p.cpu_seconds_total == pytest.approx(
        p.batch_cpu_seconds_total
        + 2 * (fc["startup"] + fc["setup"] + fc["first_batch"])
        + fc["write"]
    )
    assert p.seconds_total / 2 <= p.eta_seconds + 1e-12 and p.eta_seconds < p.seconds_total
    assert p.peak_mb_total == pytest.approx(2 * p.peak_mb_per_process)
    assert p.peak_mb_per_process >= p.baseline_mb > 0 and p.available_mb > 0
    assert p.fitted_batch_tokens is None or p.fitted_batch_tokens >= 62
    # calibration: real examples, the recorded seed, lengths spanning the distribution
    assert p.calibration_seed == 0 and len(p.calibration) >= 4
    assert set(p.calibration_indices) <= set(range(len(tiny_corpus)))
    framed = tiny_corpus.lengths + 2
    lengths = {c.padded_length for c in p.calibration}
    assert max(lengths) == framed.max() and min(lengths) < np.median(framed)
    assert all(c.seconds > 0 and c.padded_tokens <= 256 for c in p.calibration)
    # the fit's columns and the assumptions the user reads
    assert set(p.time_fit) == set(FEATURES) and all(v >= 0 for v in p.time_fit.values())
    text = " ".join(p.assumptions)
    for fragment in ("n*T^2", "default_rng(0)", "padding", "K = 1", "rank j % 2", "available RAM",
                     "start-up", "set-up", "loading the model", "first batch",
                     "rank 0 only"):  # fmt: skip
        assert fragment in text
    # the prediction is the fit summed over the run's batches
    coef = np.array([p.time_fit[k] for k in FEATURES])
    n = np.array([len(b) for b in batches])
    t = np.array([int(tiny_corpus.lengths[b].max()) + 2 for b in batches])
    assert p.batch_seconds_total == pytest.approx(float(predict_batch_seconds(coef, n, t).sum()))


def test_fit_recovers_a_known_cost_model():
    rng = np.random.default_rng(1)
    n = rng.integers(1, 200, size=12)
    t = rng.integers(10, 1000, size=12)
    true = np.array([2e-5, 3e-8, 1e-3, 0.05])
    y = predict_batch_seconds(true, n, t)
    from bioprune.planning import _features

    np.testing.assert_allclose(_fit(_features(n, t), y), true, rtol=1e-6)


def test_prediction_is_monotonic_in_examples_and_length(score_plan):
    coef = np.array([score_plan.time_fit[k] for k in FEATURES])
    base = predict_batch_seconds(coef, np.array([10]), np.array([100]))[0]
    assert predict_batch_seconds(coef, np.array([20]), np.array([100]))[0] >= base
    assert predict_batch_seconds(coef, np.array([10]), np.array([200]))[0] >= base
    # the same tokens in fewer, longer examples: attention makes them no cheaper per token
    # only when b > 0; the fit is non-negative, so doubling everything never costs less
    assert predict_batch_seconds(coef, np.array([20]), np.array([200]))[0] >= base


def test_fisher_plans_the_subset_and_pretrain_the_epochs(tiny_model_dir, tiny_corpus):
    f = plan_run(
        PlanConfig(tiny_model_dir, tiny_corpus.path, stage="fisher", subset_size="12", **FAST)
    )
    assert f.examples == 12 and f.seconds_total > 0
    t = plan_run(
        PlanConfig(
            tiny_model_dir, tiny_corpus.path, stage="pretrain", batch_size=8, epochs=3,
            repeats=1, device="cpu",
        )
    )  # fmt: skip
    assert t.batches == 3 * 6 and t.batch_tokens is None and t.fitted_batch_tokens is None
    assert "3 epoch(s)" in " ".join(t.assumptions)


def test_cli_prints_the_plan_and_writes_nothing_without_json(
    tmp_path, tiny_model_dir, tiny_corpus, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    before = snapshot(tmp_path, tiny_model_dir, tiny_corpus.path)
    args = ["plan", "--model", tiny_model_dir, "--corpus", tiny_corpus.path, "--device", "cpu"]
    args += ["--stage", "fisher", "--subset-size", "8", "--batch-tokens", "256", "--repeats", "1"]
    code, out = run_cli(*args, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out
    flat = " ".join(out.split())
    for fragment in ("predicted time", "ETA", "peak memory", "--batch-tokens that fits",
                     "assumptions", "calibration", "of which batches", "start-up",
                     "set-up", "write"):  # fmt: skip
        assert fragment in flat
    assert snapshot(tmp_path, tiny_model_dir, tiny_corpus.path) == before
    # --json writes the plan (atomically, once; again only with --overwrite)
    target = tmp_path / "plan.json"
    code, out = run_cli(*args, "--json", target, monkeypatch=monkeypatch, capsys=capsys)
    assert code == 0, out
    plan = json.loads(target.read_text())
    assert (
        plan["stage"] == "fisher"
        and plan["examples"] == 8
        and plan["assumptions"]
        and plan["calibration"]
    )
    assert plan["calibration_seed"] == 0 and "bioprune_version" in plan
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.json"]
    code, out = run_cli(*args, "--json", target, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, out, str(target), "--overwrite")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (["--stage", "train"], ["--stage", "score, fisher, pretrain"]),
        (["--processes", "0"], ["--processes", ">= 1"]),
        (["--device", "cuda"], ["--device cuda"]),
    ],
)
def test_bad_arguments_are_one_line_errors(
    tmp_path, tiny_model_dir, tiny_corpus, monkeypatch, capsys, extra, fragments
):
    import torch

    if extra[-1] == "cuda" and torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    args = ["plan", "--model", tiny_model_dir, "--corpus", tiny_corpus.path, *extra]
    code, out = run_cli(*args, monkeypatch=monkeypatch, capsys=capsys)
    assert_one_line_error(code, out, *fragments)


def test_missing_inputs_are_named(tmp_path, tiny_model_dir, tiny_corpus, monkeypatch, capsys):
    missing = tmp_path / "nowhere"
    for args in (
        ["--model", missing, "--corpus", tiny_corpus.path],
        ["--model", tiny_model_dir, "--corpus", missing],
    ):
        code, out = run_cli(
            "plan", *args, "--device", "cpu", monkeypatch=monkeypatch, capsys=capsys
        )
        assert_one_line_error(code, out, str(missing))


def test_process_age_is_the_time_since_this_process_started():
    import time

    from bioprune.planning import _process_age_s

    age = _process_age_s()
    if age is None:  # not Linux
        pytest.skip("no /proc")
    # the process ran at least its CPU time divided by its threads, and this test is later
    # than the interpreter's start: age is positive and not below itself a moment ago
    assert age > 0
    assert _process_age_s() >= age
    assert age < time.time()  # seconds, not clock ticks since the epoch
