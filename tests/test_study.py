"""bioprune study: config validation, the Snakemake job list, and a tiny end-to-end study."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import yaml

from bioprune.workflow.config import load_study_config
from bioprune.workflow.plan import build_plan

from .conftest import random_sequences

BASE = {
    "corpus": {"path": "corpus.fa"},
    "reference": {"pretrain": {"preset": "tiny", "lr": 5.0e-4, "warmup_steps": 2, "max_steps": 6}},
    "adaptation": {"subset_size": 20, "batch_size": 8},
    "budgets": [20, 0.2],
    "methods": [{"method": "cci", "strata": 5}, {"method": "random"}],
    "pretraining": {
        "preset": "tiny",
        "lr": 5.0e-4,
        "warmup_steps": 2,
        "max_steps": 4,
        "batch_size": 8,
        "seeds": [0],
    },
    "tasks": [
        {"path": "task", "name": "fam", "protocol": "frozen-linear", "epochs": 1, "seeds": [0, 1]}
    ],
}


def _write_inputs(root, n: int = 200) -> None:
    with open(root / "corpus.fa", "w") as fh:
        for sid, desc, seq in random_sequences(n, "rna", seed=3, min_len=8, max_len=40):
            fh.write(f">{sid} {desc}\n{seq}\n")
    with open(root / "labels.tsv", "w") as fh:
        fh.write("id\tfamily\tkind\n")
        for i in range(n):
            fh.write(f"seq{i}\tfam{i % 3}\t{'junk' if i % 10 == 0 else 'family'}\n")
    task = root / "task"
    task.mkdir()
    rng = np.random.default_rng(0)
    for split, k in (("train", 24), ("valid", 8), ("test", 8)):
        rows = ["sequence,label"]
        for i in range(k):
            motif = "GGGG" if i % 2 else "UUUU"
            rows.append("".join(rng.choice(list("ACGU"), 12)) + motif + f",c{i % 2}")
        (task / f"{split}.csv").write_text("\n".join(rows) + "\n")


def _config(root, **changes) -> object:
    raw = json.loads(json.dumps(BASE))
    for key, value in changes.items():
        node = raw
        *path, last = key.split(".")
        for k in path:
            node = node[k]
        if value is None:
            node.pop(last, None)
        else:
            node[last] = value
    path = root / "study.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture
def inputs(tmp_path):
    _write_inputs(tmp_path)
    return tmp_path


# ---- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, expected",
    [
        ({"budgets": [0]}, r"budgets = \[0\]: 0 is neither a count > 0 nor a fraction"),
        ({"budgets": [1.5]}, r"budgets = \[1.5\]: 1.5 is neither"),
        ({"methods": [{"method": "best"}]}, r"methods.0.method = 'best': Input should be 'cci'"),
        ({"methods": [{"method": "cci", "betta": 0.1}]}, r"methods.0.betta = 0.1: unknown key"),
        ({"pretraining.max_steps": None}, r"pretraining: equal_compute 'steps' needs max_steps"),
        ({"reference": {}}, r"reference: give exactly one of reference.model and reference.pre"),
        ({"adaptation": None}, r"adaptation: Field required"),
        (
            {"methods": [{"method": "random"}, {"method": "random"}]},
            r"two methods are named 'random'; give one a `name`",
        ),
        ({"corpus.path": "missing.fa"}, r"corpus.path: .*missing.fa does not exist"),
        ({"tasks": [{"path": "package:tasks/nope"}]}, r"bioprune resource 'tasks/nope' not found"),
        ({"resources": {"score": {"gpus": 1}}}, r"score: unknown resource 'gpus'; allowed: "),
        (
            {"full": {"equal_compute": True}, "pretraining.equal_compute": "epochs"},
            r"full.equal_compute needs pretraining.equal_compute 'steps' or 'tokens'",
        ),
    ],
)
def test_config_errors_name_key_value_and_allowed(inputs, change, expected):
    path = _config(inputs, **change)
    with pytest.raises(ValueError, match=expected) as info:
        load_study_config(path)
    assert str(info.value).startswith(str(path)) and "\n" not in str(info.value)


def test_config_error_is_one_line_exit_2(inputs):
    path = _config(inputs, budgets=[-3])
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bioprune.cli.main",
            "study",
            str(path),
            "--out",
            str(inputs / "out"),
            "--dry-run",
        ],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "COLUMNS": "400"},
    )
    assert proc.returncode == 2, proc.stderr
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "budgets = [-3]" in lines[0], proc.stderr
    assert not (inputs / "out").exists()


def test_plan_names_and_one_scoring_for_every_budget(inputs):
    plan = build_plan(load_study_config(_config(inputs, **{"pretraining.seeds": [0, 1]})))
    assert list(plan.coresets) == ["cci-20", "cci-0.2", "random-20", "random-0.2"]
    assert plan.coresets["cci-0.2"].needs_scores and not plan.coresets["random-20"].needs_scores
    assert len(plan.models) == 8 and "cci-0.2-s1" in plan.models
    assert set(plan.evaluated) >= {"full", "raw"}


def test_reference_init_keeps_its_seed(inputs):
    plan = build_plan(load_study_config(_config(inputs, **{"reference.pretrain.seed": 3})))
    assert plan.reference_init == "init/tiny-s3" and "--seed 3" in plan.inits["tiny-s3"]
    assert plan.raw_init == "init/tiny" and "--seed 0" in plan.inits["tiny"]


def test_missing_snakemake_names_the_extra(inputs, monkeypatch):
    import importlib.util

    from bioprune.workflow import run

    real = importlib.util.find_spec
    monkeypatch.setattr(
        run.importlib.util,
        "find_spec",
        lambda name, *a: None if name == "snakemake" else real(name, *a),
    )
    with pytest.raises(run.MissingDependencyError, match=r"pip install 'bioprune\[cluster\]'"):
        run.run_study(_config(inputs), inputs / "out", dry_run=True)


# ---- Snakemake -----------------------------------------------------------------------------

snakemake = pytest.importorskip("snakemake", reason="bioprune[cluster] not installed")


def test_dry_run_lists_every_stage_and_one_scoring_job(inputs):
    from bioprune.workflow.run import run_study

    run = run_study(_config(inputs, labels="labels.tsv"), inputs / "out", dry_run=True)
    assert run.returncode == 0, run.output
    assert run.jobs == {
        "prepare": 1,
        "init": 1,
        "pretrain_reference": 1,
        "adapt": 1,
        "fisher": 1,
        "score": 1,
        "select": 4,
        "inspect": 4,
        "pretrain": 4,
        "evaluate": 6,
        "report": 1,
        "all": 1,
    }
    assert not (inputs / "out" / "corpus").exists()


def test_slurm_dry_run_takes_resources_from_the_config(inputs):
    pytest.importorskip("snakemake_executor_plugin_slurm")
    from bioprune.workflow.run import run_study

    resources = {
        "default": {"mem_mb": 4000, "slurm_partition": "cpu"},
        "score": {"gpu": 1, "slurm_partition": "gpu", "runtime": 240},
    }
    run = run_study(
        _config(inputs, resources=resources), inputs / "out", dry_run=True, executor="slurm"
    )
    assert run.returncode == 0, run.output
    score = re.search(r"rule score:\n(?:    .*\n)+", run.output).group(0)
    res = set(re.search(r"resources: (.*)", score).group(1).split(", "))
    assert {"mem_mb=4000", "runtime=240", "slurm_partition=gpu", "gpu=1"} <= res
    select = re.search(r"rule select:\n(?:    .*\n)+", run.output).group(0)
    assert "slurm_partition=cpu" in select and "gpu=1" not in select


def _table_cells(md: str, label: str, budget: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {label} | {budget} |"))
    return [c.strip().strip("*").removesuffix(" †") for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_tiny_study_end_to_end_resume_and_rerun_one_branch(inputs):
    from bioprune.workflow.run import run_study

    out = inputs / "out"
    config = _config(inputs, labels="labels.tsv")
    first = run_study(config, out, cores=2, capture=True)
    assert first.returncode == 0, first.output[-3000:]
    md = (out / "report" / "report.md").read_text()
    # the table shows exactly the numbers of every RESULTS.json (one model per row here)
    for key, label, budget in [
        ("full", "Full", "–"),
        ("raw", "Raw", "–"),
        ("cci-20-s0", "CCI", "20"),
        ("random-0.2-s0", "Random 1x", "0.2"),
    ]:
        res = json.loads((out / "results" / "fam" / f"{key}.json").read_text())
        cells = _table_cells(md, label, budget)
        for j, metric in enumerate(res["headline_metrics"]):
            m = res["metrics"][metric]
            assert cells[3 + j] == f"{m['mean']:.3f} ± {m['std']:.3f}", (label, metric)
    assert (out / "report" / "report.html").is_file()
    assert (
        json.loads((out / "coresets" / "cci-0.2" / "selection.json").read_text())["budget"][
            "selected"
        ]
        == 40
    )

    # the same config again: nothing to do
    again = run_study(config, out, cores=2, capture=True)
    assert again.returncode == 0 and "Nothing to be done" in again.output, again.output[-2000:]

    # one coreset's model lost: only its branch (pretrain, evaluate) and the report rerun
    keep = {p: p.stat().st_mtime_ns for p in (out / "results" / "fam").glob("*.json")}
    shutil.rmtree(out / "models" / "cci-20-s0")
    rerun = run_study(config, out, cores=2, capture=True)
    assert rerun.returncode == 0, rerun.output[-3000:]
    assert rerun.jobs == {"pretrain": 1, "evaluate": 1, "report": 1, "all": 1}, rerun.output
    changed = {p.name for p, t in keep.items() if p.stat().st_mtime_ns != t}
    assert changed == {"cci-20-s0.json"}
    assert re.search(r"\| CCI \| 20 \|", (out / "report" / "report.md").read_text())
