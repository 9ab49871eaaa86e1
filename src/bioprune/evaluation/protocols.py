"""Fine-tuning protocols and their per-kind defaults (method.md section 6, paper B.1/B.2).

A protocol is two choices and four numbers: whether the encoder is trained
(``finetune``) or kept fixed (``frozen``; its embeddings are computed once per
split and cached), whether the head is one linear layer (``linear``) or a
2-layer MLP (``mlp``), and epochs, learning rate, batch size, weight decay
(AdamW). Defaults come from the paper; ``task.yaml`` overrides them and the
command line overrides ``task.yaml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from bioprune.errors import ConfigError
from bioprune.evaluation.kinds import KindView, get_kind

__all__ = [
    "BENCHMARK_METRICS",
    "PRIMARY_METRIC",
    "PROTOCOLS",
    "Protocol",
    "default_protocol",
    "resolve_protocol",
    "select_metrics",
]

PROTOCOLS = ("finetune-linear", "finetune-mlp", "frozen-linear", "frozen-mlp")

#: Metric that picks the best epoch on the valid split, and whether larger is better
#: (a view of the task-kind registry, :mod:`bioprune.evaluation.kinds`).
PRIMARY_METRIC: Mapping[str, tuple[str, bool]] = KindView(lambda kind: kind.primary)

_SMALLER_IS_BETTER = frozenset({"mse", "rmse", "mae", "mse_beacon"})
_BEACON_CONTACT = tuple(
    f"{n}_beacon" for n in ("precision_L", "precision_L/2", "precision_L/5", "precision_L/10")
)

#: (benchmark, kind) -> the benchmark's headline metrics; the first picks the best epoch.
#: Read off the benchmarks' own training scripts: BEACON's ``metric_for_best_model`` /
#: ``best_val`` (RNABenchmark ``downstream/train_*.py``), PEER's task metrics (torchdrug),
#: RNA-FM's RBP evaluation (PrismNet layout: AUC).
BENCHMARK_METRICS: dict[tuple[str, str], tuple[str, ...]] = {
    ("beacon", "classification"): ("accuracy", "macro_f1", "mcc"),
    ("beacon", "regression"): ("spearman",),
    ("beacon", "multilabel"): ("mean_auc_beacon", "mean_mcc"),
    ("beacon", "secondary_structure"): ("f1_beacon", "precision_beacon", "recall_beacon"),
    ("beacon", "contact_map"): _BEACON_CONTACT,
    ("beacon", "distance_map"): ("r2_beacon", "mse_beacon"),
    ("peer", "classification"): ("accuracy", "mcc"),
    ("peer", "residue_classification"): ("accuracy", "per_sequence_accuracy"),
    ("peer", "regression"): ("rmse", "mae", "spearman"),
    ("peer", "pair_regression"): ("rmse", "mae", "spearman"),
    ("peer", "pair_classification"): ("accuracy", "mcc"),
    ("tape", "residue_classification"): ("accuracy", "per_sequence_accuracy"),
    ("tape", "classification"): ("accuracy",),
    ("tape", "regression"): ("spearman", "mse", "mae"),
    ("prismnet", "classification"): ("auc", "accuracy", "aupr"),
}


def select_metrics(kind: str, benchmark: str | None) -> tuple[tuple[str, ...] | None, str, bool]:
    """``(headline, primary, larger_is_better)`` for a task of ``kind`` from ``benchmark``.

    ``headline`` is ``None`` when the benchmark (or its absence) adds no default, so
    the kind's own metrics are the headline; ``primary`` is the metric that picks the
    best epoch on the valid split: the benchmark's first headline metric, else the
    kind's :data:`PRIMARY_METRIC`.
    """
    headline = BENCHMARK_METRICS.get((benchmark, kind)) if benchmark else None
    if headline is None:
        primary, larger = PRIMARY_METRIC[kind]
        return None, primary, larger
    return headline, headline[0], headline[0] not in _SMALLER_IS_BETTER


#: (parameter, is it out of range?, the rule) of every number of a :class:`Protocol`.
_LIMITS = (
    ("epochs", lambda v: v < 1, "at least 1"),
    ("lr", lambda v: not v > 0, "positive"),
    ("batch_size", lambda v: v < 1, "at least 1"),
    ("weight_decay", lambda v: v < 0, ">= 0"),
)


@dataclass(frozen=True)
class Protocol:
    """How the head (and maybe the encoder) is trained."""

    name: str
    epochs: int
    lr: float
    batch_size: int
    weight_decay: float = 0.01

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ConfigError(
                "protocol", f"unknown protocol {self.name!r}; choose one of {list(PROTOCOLS)}"
            )
        for param, out_of_range, rule in _LIMITS:
            value = getattr(self, param)
            if out_of_range(value):
                raise ConfigError(param, f"must be {rule}, got {value}")

    @property
    def frozen(self) -> bool:
        """The encoder is kept fixed: its outputs are computed once and cached."""
        return self.name.startswith("frozen")

    @property
    def mlp_head(self) -> bool:
        """The head is a 2-layer MLP (else one linear layer)."""
        return self.name.endswith("mlp")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "encoder": "frozen" if self.frozen else "finetune",
                "head": "mlp" if self.mlp_head else "linear", "optimizer": "AdamW"}  # fmt: skip


def default_protocol(kind: str, alphabet: str) -> dict[str, Any]:
    """The paper's recipe for a task kind and a model alphabet (appendix B).

    RNA sequence-level tasks fine-tune everything with a linear head on the
    mean-pooled representation (30 epochs, batch 32, lr 1e-4; multi-label
    5e-5); RNA structure and interaction tasks train a head on the frozen
    encoder (10 epochs, lr 1e-5); protein tasks train a 2-layer MLP head on
    the frozen encoder (50 epochs, lr 1e-5). Each kind declares its own
    (:meth:`bioprune.evaluation.kinds.TaskKind.default_protocol`).
    """
    return get_kind(kind).default_protocol(alphabet)


def resolve_protocol(
    kind: str, alphabet: str, task_options: dict[str, Any], cli: dict[str, Any]
) -> tuple[Protocol, dict[str, str]]:
    """Merge defaults < task.yaml < command line; also say where each value came from."""
    values: dict[str, Any] = {**default_protocol(kind, alphabet), "weight_decay": 0.01}
    source = dict.fromkeys(values, "default")
    for layer, name in ((task_options, "task.yaml"), (cli, "command line")):
        for key in values:
            if layer.get(key) is not None:
                values[key] = layer[key]
                source[key] = name
    try:
        protocol = Protocol(
            name=str(values["protocol"]),
            epochs=int(values["epochs"]),
            lr=float(values["lr"]),
            batch_size=int(values["batch_size"]),
            weight_decay=float(values["weight_decay"]),
        )
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid protocol setting: {exc}") from None
    return protocol, source
