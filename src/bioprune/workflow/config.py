"""The study config (``bioprune study CONFIG.yaml``): one pydantic model, checked up front.

Every field carries its default and help text here, in one place; the demo config
(``resources/study/demo.yaml``) and ``docs/study.md`` show them in use. Paths are
resolved against the config file's folder; ``package:demo/rna_corpus.fasta.gz``
names a file shipped in ``bioprune/resources``. A validation error names the key,
the value and what is allowed, on one line (:func:`load_study_config`).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bioprune.errors import InputError

__all__ = [
    "CompactConfig",
    "CorpusConfig",
    "MethodConfig",
    "StudyConfig",
    "TaskConfig",
    "load_study_config",
]

#: = bioprune.models.presets.PRESETS
PRESETS = ("micro", "tiny", "small", "esm2-8m", "esm2-35m", "rnafm")
PROTOCOLS = ("finetune-linear", "finetune-mlp", "frozen-linear", "frozen-mlp")
SELECT_METHODS = ("cci", "topk", "bottomk", "random", "cluster", "cci-length", "cci-cluster")
SCORE_METHODS = ("cci", "topk", "bottomk", "cci-length", "cci-cluster")
CCI_METHODS = ("cci", "cci-length", "cci-cluster")
CLUSTER_METHODS = ("cluster", "cci-cluster")
#: Stages whose SLURM/local resources the config may set (see docs/study.md).
STAGES = (
    "prepare",
    "init",
    "pretrain_reference",
    "adapt",
    "fisher",
    "score",
    "select",
    "inspect",
    "pretrain",
    "evaluate",
    "report",
)
RESOURCE_KEYS = (
    "threads",
    "mem_mb",
    "runtime",
    "gpu",
    "gres",
    "slurm_partition",
    "slurm_account",
    "slurm_extra",
    "constraint",
    "cpus_per_task",
)
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.]*$")


class CompactConfig(BaseModel):
    """Base: unknown keys are errors (a typo must not silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class CorpusConfig(CompactConfig):
    path: Path = Field(
        description="A FASTA/text/CSV/TSV/Parquet file (or list) to `prepare`, or a corpus "
        "directory already written by `bioprune prepare` (used as it is)."
    )
    alphabet: Literal["rna", "protein"] = Field("rna", description="prepare --alphabet.")
    max_length: int = Field(1022, gt=0, description="prepare --max-length.")
    on_invalid: Literal["error", "skip", "replace"] = Field(
        "error", description="prepare --on-invalid."
    )
    column: Optional[str] = Field(None, description="prepare --column (tables only).")
    dedup: Literal["none", "exact"] = Field(
        "none", description="prepare --dedup: exact skips repeated sequences (first kept)."
    )
    drop_low_complexity: bool = Field(
        False, description="prepare --drop-low-complexity: skip low-complexity and N-run records."
    )


class TrainingRecipe(CompactConfig):
    """The options of `bioprune pretrain` that shape a run (see docs/training.md)."""

    preset: Literal[PRESETS] = Field("tiny", description="Model preset trained from scratch.")
    lr: float = Field(1e-4, gt=0, description="Peak AdamW learning rate.")
    warmup_steps: int = Field(2000, ge=0, description="Linear warmup steps.")
    schedule: Literal["inverse-sqrt", "constant", "linear"] = "inverse-sqrt"
    batch_size: int = Field(16, gt=0, description="Examples per optimizer step.")
    epochs: int = Field(10, gt=0, description="Passes over the training examples.")
    max_steps: Optional[int] = Field(None, gt=0, description="Stop after this many steps.")
    eval_every: int = Field(0, ge=0, description="Validate every N steps (0: each epoch).")
    log_every: int = Field(10, gt=0, description="A curve row every N steps.")


class ReferenceRecipe(TrainingRecipe):
    seed: int = Field(0, description="Seed of init, split, order and masks.")


class ReferenceConfig(CompactConfig):
    model: Optional[Path] = Field(
        None, description="A model directory (`init`/`convert`/`pretrain`) used as the reference."
    )
    pretrain: Optional[ReferenceRecipe] = Field(
        None, description="Or: pretrain this preset on the whole corpus first (the Full model)."
    )

    @model_validator(mode="after")
    def _one_source(self) -> ReferenceConfig:
        if (self.model is None) == (self.pretrain is None):
            raise ValueError("give exactly one of reference.model and reference.pretrain")
        return self


class AdaptationConfig(CompactConfig):
    subset_size: Union[int, float] = Field(
        ..., description="`adapt --subset-size`: a count, or a fraction of the corpus."
    )
    lr: float = Field(1e-5, gt=0)
    warmup_steps: int = Field(50, ge=0)
    batch_size: int = Field(16, gt=0)
    seed: int = 0

    @field_validator("subset_size")
    @classmethod
    def _positive(cls, v: Union[int, float]) -> Union[int, float]:
        if v <= 0 or (isinstance(v, float) and v > 1):
            raise ValueError("must be a count > 0 or a fraction in (0, 1]")
        return v


class InfluenceConfig(CompactConfig):
    mask_draws: int = Field(1, gt=0, description="Mask draws K per example (fisher and score).")
    params: str = Field("all", description="all, lm_head, layers:I:J or a regex.")
    damping: float = Field(1e-3, gt=0, description="lambda_p = damping * mean(F over p's tensor).")
    dtype: Literal["float32", "bfloat16"] = "float32"
    batch_tokens: int = Field(8192, gt=0)
    seed: int = Field(0, description="Seed of the mask draws.")


class MethodConfig(CompactConfig):
    method: Literal[SELECT_METHODS] = Field(description="Selection strategy of `bioprune select`.")
    name: Optional[str] = Field(
        None,
        description="Row name in the report (default: method, or random10x for multiplier 10).",
    )
    multiplier: float = Field(
        1.0, gt=0, description="Select multiplier x budget (random 10x: method random, 10)."
    )
    beta: float = Field(
        0.05, ge=0, lt=1, description="cci, cci-length, cci-cluster: fraction of hardest dropped."
    )
    strata: Optional[int] = Field(
        None,
        gt=0,
        description="cci, cci-cluster: equal-width score bins (default 50); cci-length: score "
        "bins inside each length bin (default 10).",
    )
    reduction: Literal["mean", "sum", "per-masked"] = Field(
        "mean",
        description="Score-based methods: the scores as selected: mean (the paper's), sum "
        "(summed masked loss: score x n_masked^2) or per-masked (score x n_masked); "
        "see docs/selection.md.",
    )
    length_bins: int = Field(5, gt=0, description="cci-length: number of length bins.")
    length_binning: Literal["quantile", "log"] = Field(
        "quantile",
        description="cci-length: quantile (equal-count length bins) or log (equal-width bins "
        "of log length).",
    )
    max_per_cluster: int = Field(1, gt=0, description="cci-cluster: most picks per cluster.")
    sampling: Literal["keys", "stream"] = Field(
        "keys",
        description="cci, cci-length, cci-cluster: keys (coordinated: each stratum takes its "
        "members with the smallest per-example random keys) or stream (one rng.choice per "
        "stratum in visiting order, as before); see docs/selection.md.",
    )
    min_seq_id: Optional[float] = Field(
        None,
        gt=0,
        le=1,
        description="cluster (default 0.3), cci-cluster (default 0.9): identity threshold.",
    )
    coverage: float = Field(0.8, gt=0, le=1, description="cluster: alignment coverage.")
    cluster_tool: Literal["mmseqs", "cd-hit"] = "mmseqs"
    seed: int = Field(0, description="Seed of random, cci and cluster sampling.")

    @model_validator(mode="after")
    def _options_fit_method(self) -> MethodConfig:
        # Only values that differ from the default count: the study re-validates its own
        # dumped config (every field present) in the Snakefile.
        fields = type(self).model_fields
        given = {k for k in self.model_fields_set if getattr(self, k) != fields[k].default}
        misplaced = [
            key
            for key, methods in (
                ("beta", CCI_METHODS),
                ("reduction", SCORE_METHODS),
                ("strata", CCI_METHODS),
                ("sampling", CCI_METHODS),
                ("length_bins", ("cci-length",)),
                ("length_binning", ("cci-length",)),
                ("max_per_cluster", ("cci-cluster",)),
                ("min_seq_id", CLUSTER_METHODS),
                ("coverage", CLUSTER_METHODS),
                ("cluster_tool", CLUSTER_METHODS),
            )
            if key in given and self.method not in methods
        ]
        if misplaced:
            raise ValueError(f"method {self.method!r} takes no {misplaced[0]!r}")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        if self.multiplier != 1:
            return f"{self.method}{self.multiplier:g}x"
        return self.method

    @field_validator("name")
    @classmethod
    def _name(cls, v: Optional[str]) -> Optional[str]:
        if v is not None and not _NAME.match(v):
            raise ValueError("use letters, digits, '_' and '.' only")
        return v


class CoresetTraining(TrainingRecipe):
    equal_compute: Literal["steps", "tokens", "epochs"] = Field(
        "steps",
        description="steps: every model trains max_steps optimizer steps (the paper's equal "
        "compute); tokens: every model sees max_tokens tokens; epochs: `epochs` passes over its "
        "own data (compute grows with the coreset).",
    )
    max_tokens: Optional[int] = Field(None, gt=0, description="For equal_compute: tokens.")
    seeds: list[int] = Field([0], min_length=1, description="One model per coreset and seed.")

    @model_validator(mode="after")
    def _rule(self) -> CoresetTraining:
        if self.equal_compute == "steps" and self.max_steps is None:
            raise ValueError("equal_compute 'steps' needs max_steps")
        if self.equal_compute == "tokens" and self.max_tokens is None:
            raise ValueError("equal_compute 'tokens' needs max_tokens")
        if len(set(self.seeds)) != len(self.seeds):
            raise ValueError(f"seeds {self.seeds}: a seed is repeated")
        return self


class FullConfig(CompactConfig):
    equal_compute: bool = Field(
        False,
        description="Also pretrain the coreset recipe on the whole corpus (same steps/tokens as "
        "each coreset model): 'Full equal-compute'.",
    )


class TaskConfig(CompactConfig):
    path: Path = Field(description="Task directory or task YAML; package:tasks/rna_family ships.")
    name: Optional[str] = Field(None, description="Name in the report (default: folder name).")
    protocol: Optional[Literal[PROTOCOLS]] = Field(None, description="Default: per task kind.")
    epochs: Optional[int] = Field(None, gt=0)
    lr: Optional[float] = Field(None, gt=0)
    batch_size: Optional[int] = Field(None, gt=0)
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="One head per seed.")

    @property
    def label(self) -> str:
        return self.name or (
            self.path.stem if self.path.suffix in {".yaml", ".yml"} else self.path.name
        )


class StudyConfig(CompactConfig):
    """A whole study: corpus -> reference -> adapt -> Fisher -> scores -> coresets (budgets x
    methods) -> coreset models -> downstream tasks -> report. Raw is always included."""

    corpus: CorpusConfig
    labels: Optional[Path] = Field(
        None,
        description="TSV id<TAB>label[...] for diagnostics; a `kind` column adds "
        "junk/duplicate counts.",
    )
    reference: ReferenceConfig
    adaptation: AdaptationConfig
    influence: InfluenceConfig = InfluenceConfig()
    budgets: list[Union[int, float]] = Field(
        min_length=1, description="Coreset sizes: counts (350) or fractions of the corpus (0.05)."
    )
    methods: list[MethodConfig] = Field(min_length=1)
    pretraining: CoresetTraining
    full: FullConfig = FullConfig()
    tasks: list[TaskConfig] = Field(min_length=1)
    resources: dict[str, dict[str, Union[int, float, str]]] = Field(
        default_factory=dict,
        description="Per stage (or 'default'): threads, mem_mb, runtime (minutes), gpu, "
        "slurm_partition, ... passed to Snakemake as the rule's resources.",
    )

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: list[Union[int, float]]) -> list[Union[int, float]]:
        for b in v:
            if b <= 0 or (isinstance(b, float) and b > 1):
                raise ValueError(f"{b!r} is neither a count > 0 nor a fraction in (0, 1]")
        if len({budget_label(b) for b in v}) != len(v):
            raise ValueError(f"{v}: a budget is repeated")
        return v

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for stage, res in v.items():
            if stage != "default" and stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; allowed: default, {', '.join(STAGES)}")
            for key in res:
                if key not in RESOURCE_KEYS:
                    raise ValueError(
                        f"{stage}: unknown resource {key!r}; allowed: {', '.join(RESOURCE_KEYS)}"
                    )
        return v

    @model_validator(mode="after")
    def _consistent(self) -> StudyConfig:
        labels = [m.label for m in self.methods]
        dup = sorted({x for x in labels if labels.count(x) > 1})
        if dup:
            raise ValueError(f"methods: two methods are named {dup[0]!r}; give one a `name`")
        tasks = [t.label for t in self.tasks]
        dup = sorted({x for x in tasks if tasks.count(x) > 1})
        if dup:
            raise ValueError(f"tasks: two tasks are named {dup[0]!r}; give one a `name`")
        if self.full.equal_compute and self.pretraining.equal_compute == "epochs":
            raise ValueError(
                "full.equal_compute needs pretraining.equal_compute 'steps' or 'tokens' "
                "(with 'epochs' the whole corpus costs more by definition)"
            )
        return self


def budget_label(b: Union[int, float]) -> str:
    """``350`` -> ``"350"``, ``0.05`` -> ``"0.05"``: the budget as written, used in names."""
    return str(b) if isinstance(b, int) else f"{b:g}" if "e" not in f"{b:g}" else repr(b)


# ---- loading ------------------------------------------------------------------------------


def _resolve(value: Any, base: Path) -> Any:
    """``package:x`` -> the shipped resource; relative -> against ``base``; absolute as is."""
    if not isinstance(value, str):
        return value
    if value.startswith("package:"):
        from bioprune.resources import resource_path

        return str(resource_path(value.removeprefix("package:")))
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (base / p).resolve())


_PATH_KEYS = (("corpus", "path"), ("labels",), ("reference", "model"))


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    raw = dict(raw)
    for keys in _PATH_KEYS:
        node = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and keys[-1] in node:
            node[keys[-1]] = _resolve(node[keys[-1]], base)
    for task in raw.get("tasks") or []:
        if isinstance(task, dict) and "path" in task:
            task["path"] = _resolve(task["path"], base)
    return raw


def _check_paths(cfg: StudyConfig, source: Path) -> None:
    checks = [
        ("corpus.path", cfg.corpus.path),
        ("labels", cfg.labels),
        ("reference.model", cfg.reference.model),
    ]
    checks += [(f"tasks[{i}].path", t.path) for i, t in enumerate(cfg.tasks)]
    for key, p in checks:
        if p is not None and not p.exists():
            raise InputError(source, f"{key}: {p} does not exist")


def _error_reason(exc: ValidationError) -> str:
    err = exc.errors()[0]
    key = ".".join(str(x) for x in err["loc"]) or "(top level)"
    msg = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    value = err.get("input")
    shown = "" if err["type"] == "missing" or isinstance(value, dict) else f" = {value!r}"
    more = len(exc.errors()) - 1
    return f"{key}{shown}: {msg}" + (f" (and {more} more)" if more else "")


def load_study_config(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML; paths come back absolute.

    Raises :class:`bioprune.errors.InputError` (a ``ValueError``) with one line naming the
    file, the key, the value and what is allowed.
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study config {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise InputError(path, f"not valid YAML{where} ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise InputError(path, "expected a mapping of keys (corpus, reference, ...)")
    return validate_study_config(raw, path.resolve().parent, source=path)


def validate_study_config(
    raw: dict[str, Any], base: Path, *, source: str | Path = "config", check_paths: bool = True
) -> StudyConfig:
    """Validate a config mapping (paths resolved against ``base``)."""
    try:
        cfg = StudyConfig.model_validate(_resolve_paths(raw, base))
    except ValidationError as exc:
        raise InputError(source, _error_reason(exc)) from None
    except FileNotFoundError as exc:  # a package: resource that does not exist
        raise InputError(source, str(exc)) from None
    if check_paths:
        _check_paths(cfg, Path(source))
    return cfg
