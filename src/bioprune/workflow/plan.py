"""From a validated :class:`StudyConfig` to the study's jobs: names, output paths, commands.

The packaged Snakefile asks this module what to run, so the names and every stage's
command line live in Python (testable without Snakemake) and the Snakefile stays a
list of rules. Output paths are relative to the study directory (Snakemake runs
there); inputs outside it (a prepared corpus, a reference model, tasks) are absolute.

Layout of a study directory::

    corpus/                      prepare (absent when corpus.path is a prepared corpus)
    init/<preset>/               init: the untrained model (Raw baseline, reference start)
    reference/                   pretrain on the whole corpus (absent with reference.model)
    adapted/                     adapt (+ subset_indices.npy for fisher)
    fisher.safetensors, scores.parquet
    coresets/<method>-<budget>/  select, one per method x budget, all from the one scores file
    inspect/<method>-<budget>/   inspect (plots + summary.json)
    models/<coreset>-s<seed>/    pretrain from scratch on a coreset (and full-equal-s<seed>)
    results/<task>/<model>.json  evaluate (full = the reference, raw = untrained)
    report/                      report.md, report.html
    logs/, benchmarks/           one log and one Snakemake benchmark (wall time) per job
"""

from __future__ import annotations

import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioprune.workflow.config import (
    CCI_METHODS,
    CLUSTER_METHODS,
    SCORE_METHODS,
    StudyConfig,
    budget_label,
)

__all__ = ["StudyPlan", "build_plan"]

CORPUS = "corpus"
REFERENCE = "reference"
ADAPTED = "adapted"
FISHER = "fisher.safetensors"
SCORES = "scores.parquet"
CLUSTER_CACHE = "cache/clusters"  # cluster and cci-cluster share each corpus's clusters
REPORT = "report"
FULL = "full"  # the reference model as a row of the table
RAW = "raw"
FULL_EQUAL = "full-equal"


def _q(x: Any) -> str:
    return shlex.quote(str(x))


def bioprune_command() -> str:
    """The bioprune CLI of the running Python (the study's jobs use the same environment)."""
    return f"{_q(sys.executable)} -m bioprune.cli.main"


@dataclass(frozen=True)
class Coreset:
    name: str
    method: str
    budget: str  # as given to select --budget
    budget_label: str
    method_label: str
    needs_scores: bool
    args: str


@dataclass(frozen=True)
class TrainedModel:
    name: str
    coreset: str | None  # None: the whole corpus (full equal-compute)
    seed: int
    args: str


@dataclass
class StudyPlan:
    config: StudyConfig
    corpus: str
    prepare_args: str | None
    reference: str
    reference_init: str | None
    reference_args: str | None
    raw_init: str
    inits: dict[str, str]  # init/<name>: preset, or preset-s<seed> -> init args
    adapt_args: str
    fisher_args: str
    score_args: str
    coresets: dict[str, Coreset] = field(default_factory=dict)
    models: dict[str, TrainedModel] = field(default_factory=dict)
    task_paths: dict[str, str] = field(default_factory=dict)
    task_args: dict[str, str] = field(default_factory=dict)

    @property
    def evaluated(self) -> dict[str, str]:
        """Row name -> model directory evaluated (raw: evaluated with --raw)."""
        rows = {FULL: self.reference, RAW: self.raw_init}
        rows.update({m: f"models/{m}" for m in self.models})
        return rows

    def model_dir(self, name: str) -> str:
        return self.evaluated[name]

    def results(self) -> list[str]:
        return [f"results/{t}/{m}.json" for t in self.task_args for m in self.evaluated]

    def resources(self, stage: str) -> dict[str, Any]:
        res = {**self.config.resources.get("default", {}), **self.config.resources.get(stage, {})}
        res.pop("threads", None)
        return res

    def threads(self, stage: str) -> int:
        res = {**self.config.resources.get("default", {}), **self.config.resources.get(stage, {})}
        return int(res.get("threads", 1))


def _recipe_args(r, *, steps: int | None, tokens: int | None, epochs: int) -> str:
    args = [
        f"--preset {r.preset}",
        f"--lr {r.lr:g}",
        f"--warmup-steps {r.warmup_steps}",
        f"--schedule {r.schedule}",
        f"--batch-size {r.batch_size}",
        f"--epochs {epochs}",
        f"--eval-every {r.eval_every}",
        f"--log-every {r.log_every}",
    ]
    if steps is not None:
        args.append(f"--max-steps {steps}")
    if tokens is not None:
        args.append(f"--max-tokens {tokens}")
    return " ".join(args)


def _coreset_budget(b: int | float, multiplier: float) -> str:
    if multiplier == 1:
        return budget_label(b)
    if isinstance(b, int):
        return str(int(b * multiplier))
    return f"{min(1.0, b * multiplier):.6g}"


def build_plan(cfg: StudyConfig) -> StudyPlan:
    """Every job of the study, named, with its command-line options."""
    c = cfg.corpus
    prepared = c.path.is_dir()
    p = cfg.pretraining
    inits = {p.preset: f"--preset {p.preset} --alphabet {c.alphabet} --seed 0"}
    reference, reference_init, reference_args = _reference(cfg, inits)
    a = cfg.adaptation
    adapt_args = (
        f"--subset-size {a.subset_size} --lr {a.lr:g} --warmup-steps {a.warmup_steps} "
        f"--batch-size {a.batch_size} --seed {a.seed}"
    )
    i = cfg.influence
    common = (
        f"--mask-draws {i.mask_draws} --params {_q(i.params)} --dtype {i.dtype} "
        f"--batch-tokens {i.batch_tokens} --seed {i.seed}"
    )
    plan = StudyPlan(
        config=cfg,
        corpus=str(c.path) if prepared else CORPUS,
        prepare_args=None if prepared else _prepare_args(c),
        reference=reference,
        reference_init=reference_init,
        reference_args=reference_args,
        raw_init=f"init/{p.preset}",
        inits=inits,
        adapt_args=adapt_args,
        fisher_args=f"{common} --damping {i.damping:g}",
        score_args=common,
    )
    for m in cfg.methods:
        for b in cfg.budgets:
            name = f"{m.label}-{budget_label(b)}"
            budget = _coreset_budget(b, m.multiplier)
            plan.coresets[name] = Coreset(
                name=name,
                method=m.method,
                budget=budget,
                budget_label=budget_label(b),
                method_label=m.label,
                needs_scores=m.method in SCORE_METHODS,
                args=" ".join(_select_args(m, budget)),
            )
    _add_models(plan, cfg)
    for t in cfg.tasks:
        plan.task_paths[t.label] = str(t.path)
        plan.task_args[t.label] = _evaluate_args(t)
    return plan


def _prepare_args(c) -> str:
    """``bioprune prepare``'s options for the corpus section of the config."""
    args = (
        f"{_q(c.path)} --alphabet {c.alphabet} --max-length {c.max_length} "
        f"--on-invalid {c.on_invalid}" + (f" --column {_q(c.column)}" if c.column else "")
    )
    if c.dedup != "none":
        args += f" --dedup {c.dedup}"
    if c.drop_low_complexity:
        args += " --drop-low-complexity"
    return args


def _reference(cfg: StudyConfig, inits: dict[str, str]) -> tuple[str, str | None, str | None]:
    """The reference model: given (a path), or pretrained here (its init added to ``inits``)."""
    ref = cfg.reference
    if ref.model is not None:
        return str(ref.model), None, None
    r = ref.pretrain
    init_name = r.preset if r.seed == 0 else f"{r.preset}-s{r.seed}"
    inits[init_name] = f"--preset {r.preset} --alphabet {cfg.corpus.alphabet} --seed {r.seed}"
    reference_args = " ".join(
        a
        for a in [
            f"--lr {r.lr:g}",
            f"--warmup-steps {r.warmup_steps}",
            f"--schedule {r.schedule}",
            f"--batch-size {r.batch_size}",
            f"--epochs {r.epochs}",
            f"--max-steps {r.max_steps}" if r.max_steps else "",
            f"--eval-every {r.eval_every}",
            f"--log-every {r.log_every}",
            f"--seed {r.seed}",
        ]
        if a
    )
    return REFERENCE, f"init/{init_name}", reference_args


def _select_args(m, budget: str) -> list[str]:
    """``bioprune select``'s options for one method of the config at one budget."""
    args = [f"--method {m.method}", f"--budget {budget}", f"--seed {m.seed}"]
    if m.reduction != "mean":
        args.append(f"--reduction {m.reduction}")
    if m.method in CCI_METHODS:
        args.append(f"--beta {m.beta:g}")
        if m.strata is not None:
            args.append(f"--strata {m.strata}")
        if m.sampling != "keys":
            args.append(f"--sampling {m.sampling}")
    if m.method == "cci-length":
        args.append(f"--length-bins {m.length_bins}")
        if m.length_binning != "quantile":
            args.append(f"--length-binning {m.length_binning}")
    if m.method == "cci-cluster":
        args.append(f"--max-per-cluster {m.max_per_cluster}")
    if m.method in CLUSTER_METHODS:
        if m.min_seq_id is not None:
            args.append(f"--min-seq-id {m.min_seq_id:g}")
        args += [
            f"--coverage {m.coverage:g}",
            f"--cluster-tool {m.cluster_tool}",
            f"--cluster-cache {CLUSTER_CACHE}",
        ]
    return args


def _add_models(plan: StudyPlan, cfg: StudyConfig) -> None:
    """One coreset model per coreset and pretraining seed (and Full at equal compute)."""
    p = cfg.pretraining
    steps = p.max_steps if p.equal_compute == "steps" else None
    tokens = p.max_tokens if p.equal_compute == "tokens" else None
    recipe = _recipe_args(p, steps=steps, tokens=tokens, epochs=p.epochs)
    for seed in p.seeds:
        for cs in plan.coresets:
            name = f"{cs}-s{seed}"
            plan.models[name] = TrainedModel(name, cs, seed, f"{recipe} --seed {seed}")
        if cfg.full.equal_compute:
            name = f"{FULL_EQUAL}-s{seed}"
            plan.models[name] = TrainedModel(name, None, seed, f"{recipe} --seed {seed}")


def _evaluate_args(t) -> str:
    """``bioprune evaluate``'s options for one task of the config."""
    args = [f"--seeds {','.join(map(str, t.seeds))}"]
    if t.protocol:
        args.append(f"--protocol {t.protocol}")
    if t.epochs:
        args.append(f"--epochs {t.epochs}")
    if t.lr:
        args.append(f"--lr {t.lr:g}")
    if t.batch_size:
        args.append(f"--batch-size {t.batch_size}")
    return " ".join(args)


def model_row(name: str) -> tuple[str, int | None]:
    """``cci-0.05-s1`` -> (``cci-0.05``, 1); ``full`` -> (``full``, None)."""
    head, sep, tail = name.rpartition("-s")
    if sep and tail.isdigit():
        return head, int(tail)
    return name, None


def study_files(out: str | Path) -> dict[str, Path]:
    out = Path(out)
    return {"config": out / "study" / "config.json", "report": out / REPORT}
