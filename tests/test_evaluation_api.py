"""Evaluation as a library: the task-kind registry, ``evaluate`` in memory, API == CLI."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pytest

from bioprune.errors import ConfigError
from bioprune.evaluation import EvaluationResult, Task, evaluate, get_kind, task_kinds
from bioprune.evaluation.kinds import Classification, register_kind, unregister_kind
from bioprune.evaluation.tasks import KIND_METRICS, KINDS
from tests.hostile import run_cli
from tests.test_evaluate import _gc, _micro_model, _rand, _splits, _write_task

FAST = {"seeds": (0,), "epochs": 1, "batch_size": 8}

BUILT_IN = [
    "classification",
    "regression",
    "multilabel",
    "secondary_structure",
    "residue_classification",
    "pair_classification",
    "pair_regression",
    "contact_map",
    "distance_map",
]


@pytest.fixture(scope="module")
def rna_model(tmp_path_factory):
    return _micro_model(tmp_path_factory.mktemp("micro") / "rna", "rna", 123)


@pytest.fixture(scope="module")
def cls_task(tmp_path_factory):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 30)))
        return {"sequence": seq, "label": int(_gc(seq) > 0.5)}

    return _write_task(tmp_path_factory.mktemp("task") / "cls", _splits(make, n=12))


# ---- the registry ----------------------------------------------------------------------


def test_registry_lists_every_kind_and_the_views_follow_it():
    assert task_kinds() == BUILT_IN
    for name in BUILT_IN:
        kind = get_kind(name)
        assert kind.name == name
        assert KIND_METRICS[name] == kind.metrics and KINDS[name] == kind.columns
        assert kind.primary[0] in kind.metrics
    assert list(KIND_METRICS) == BUILT_IN
    with pytest.raises(ValueError, match=r"unknown task kind 'nope'; choose one of \["):
        get_kind("nope")
    with pytest.raises(ValueError, match="already registered"):
        register_kind(Classification("classification"))


class _HasMotif(Classification):
    """A toy kind: does the sequence hold ``GGG``? (column ``has_motif``, 0 or 1)."""

    name = "toy_motif"
    columns = ("sequence", "has_motif")
    metrics = ("accuracy", "mcc")
    rna_protocol: ClassVar[dict] = {
        "protocol": "frozen-linear",
        "epochs": 2,
        "lr": 1e-3,
        "batch_size": 4,
    }

    def __init__(self) -> None:
        pass  # the class attributes say everything

    def classes(self, train):
        return ["0", "1"]

    def target(self, table, k, row, index):
        return index[row["has_motif"]]

    def score(self, fit, outs, split, threshold):
        full = super().score(fit, outs, split, threshold)
        return {name: full[name] for name in self.metrics}


def test_a_kind_registered_in_a_test_runs_end_to_end(tmp_path, rna_model):
    def make(rng):
        seq = _rand(rng, int(rng.integers(8, 20)))
        return {"sequence": seq, "has_motif": int("GGG" in seq)}

    task = _write_task(tmp_path / "toy", _splits(make, n=10), yaml="kind: toy_motif\n")
    register_kind(_HasMotif())
    try:
        assert "toy_motif" in task_kinds() and KIND_METRICS["toy_motif"] == ("accuracy", "mcc")
        result = evaluate(rna_model, task, seeds=(0, 1))
    finally:
        unregister_kind("toy_motif")
    res = result.results
    assert res["task"]["kind"] == "toy_motif" and res["task"]["classes"] == ["0", "1"]
    assert set(result.metrics) == {"accuracy", "mcc"}
    assert res["primary_metric"]["name"] == "accuracy"
    assert res["protocol"]["name"] == "frozen-linear" and res["protocol"]["epochs"] == 2
    assert [len(r["history"]) for r in result.runs] == [2, 2]
    assert 0.0 <= result.metrics["accuracy"]["mean"] <= 1.0
    assert "toy_motif" not in task_kinds()


# ---- the in-memory API ------------------------------------------------------------------


def test_api_metrics_equal_the_cli_results(tmp_path, rna_model, cls_task, monkeypatch, capsys):
    out = tmp_path / "RESULTS.json"
    code, _ = run_cli("evaluate", "--model", rna_model, "--task", cls_task, "--out", out,
                      "--seeds", "0,1", "--epochs", "2", "--batch-size", "8",
                      monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0
    cli = json.loads(out.read_text())
    api = evaluate(rna_model, Task.open(cls_task), seeds=(0, 1), epochs=2, batch_size=8)
    assert isinstance(api, EvaluationResult)
    for name, summary in cli["metrics"].items():
        got, want = api.metrics[name]["per_seed"], summary["per_seed"]
        assert np.allclose(np.array(got, float), np.array(want, float), atol=1e-6, equal_nan=True)
    assert api.runs[0]["history"] == cli["runs"][0]["history"]
    # save() writes the CLI's file: identical apart from the creation time
    saved = json.loads(api.save(tmp_path / "api.json").read_text())
    saved.pop("created"), cli.pop("created")
    assert saved == cli


def test_library_call_prints_nothing_and_reports_progress(cls_task, rna_model, capfd):
    import torch

    from bioprune.models.loading import load_masked_lm

    model, _ = load_masked_lm(rna_model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    events = []
    capfd.readouterr()
    stream = torch.random.get_rng_state()
    result = evaluate(model, cls_task, protocol="finetune-linear", progress=events.append, **FAST)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    # torch's global random stream is the caller's again (the runs seed their own)
    assert torch.equal(torch.random.get_rng_state(), stream)
    assert not torch.are_deterministic_algorithms_enabled()
    assert result.results["model"]["path"] is None and result.results["model"]["alphabet"] == "rna"
    # the caller's model is not trained: its encoder was copied
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    stages = {e.stage for e in events}
    assert stages == {"seed 0"}
    done = [e.done for e in events]
    assert done == sorted(done) and done[-1] == events[-1].total == 2  # 12 examples, batch 8
    assert events[-1].message.startswith("epoch 1: valid accuracy ")


def test_in_memory_model_matches_the_model_directory(cls_task, rna_model):
    from bioprune.models.loading import load_masked_lm

    model, alphabet = load_masked_lm(rna_model)
    a = evaluate(model, cls_task, alphabet=alphabet, protocol="frozen-mlp", **FAST)
    b = evaluate(rna_model, cls_task, protocol="frozen-mlp", **FAST)
    assert a.runs == b.runs


def test_arguments_are_checked_by_name(cls_task, rna_model):
    with pytest.raises(ConfigError, match=r"^seeds: give at least one seed$"):
        evaluate(rna_model, cls_task, seeds=())
    with pytest.raises(ConfigError, match=r"^threshold: must be a probability in \(0, 1\)"):
        evaluate(rna_model, cls_task, threshold=1.5)
    with pytest.raises(ConfigError, match=r"^epochs: must be at least 1, got 0$"):
        evaluate(rna_model, cls_task, epochs=0)
    with pytest.raises(ConfigError, match=r"^model: expected a model directory"):
        evaluate(object(), cls_task)
    with pytest.raises(TypeError, match="unexpected keyword argument 'epoch'"):
        evaluate(rna_model, cls_task, epoch=3)  # type: ignore[call-arg]


def test_cli_progress_lines_close_each_stage_before_the_next(
    tmp_path, rna_model, cls_task, monkeypatch, capsys
):
    """In a log (not a terminal) each stage writes its first line and, on closing, its last,
    before the next stage begins: embedding, then seed 0, then seed 1."""
    code, err = run_cli("evaluate", "--model", rna_model, "--task", cls_task,
                        "--out", tmp_path / "R.json", "--seeds", "0,1", "--epochs", "1",
                        "--batch-size", "8", "--protocol", "frozen-mlp",
                        monkeypatch=monkeypatch, capsys=capsys)  # fmt: skip
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.startswith("evaluate ")]
    stages = [line.split(":")[0] for line in lines]
    assert (
        stages
        == ["evaluate embedding (frozen encoder)"] * 2
        + ["evaluate seed 0"] * 2
        + ["evaluate seed 1"] * 2
    ), err
    assert "step 6/6 (100.0%)" in lines[1] and "step 2/2 (100.0%)" in lines[3]
    assert "epoch 1: valid accuracy" in lines[5]
