"""Task kinds: one object per kind owns everything that differs between kinds.

A :class:`TaskKind` says which columns a task CSV holds and how a row becomes
a target (the reader), which head sits on the encoder, the training loss, how
the head's outputs become predictions and metrics, which metric picks the best
epoch on the valid split, the paper's default protocol, and, for base pairs,
how the decision threshold is chosen. The registry maps a kind's name (the
``kind:`` of ``task.yaml``) to that object, so adding a kind is one
:func:`register_kind` call:

>>> from bioprune.evaluation.kinds import get_kind, task_kinds
>>> "contact_map" in task_kinds()
True
>>> get_kind("regression").primary
('mse', False)

Torch is imported inside the methods that train or score, so reading a task
(and the CLI's ``--help``) stays light.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from bioprune.evaluation import metrics as M

if TYPE_CHECKING:
    from bioprune.evaluation.tasks import Split, TaskData, _Table

__all__ = [
    "Fit",
    "KindView",
    "Standardizer",
    "TaskKind",
    "get_kind",
    "register_kind",
    "task_kinds",
]

#: Default protocols (paper appendix B): structure kinds and protein tasks train a
#: 2-layer MLP on the frozen encoder; RNA sequence-level tasks fine-tune everything.
_FROZEN_SHORT = {"protocol": "frozen-mlp", "epochs": 10, "lr": 1e-5, "batch_size": 32}
_PROTEIN = {"protocol": "frozen-mlp", "epochs": 50, "lr": 1e-5, "batch_size": 32}
_FINETUNE = {"protocol": "finetune-linear", "epochs": 30, "lr": 1e-4, "batch_size": 32}
_FINETUNE_MULTILABEL = {**_FINETUNE, "lr": 5e-5}


@dataclass
class Standardizer:
    """Targets are trained as ``(y - mean) / std`` (train split), predictions mapped back."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        v = values[np.isfinite(values)]
        std = float(v.std()) if v.size > 1 else 1.0
        return cls(float(v.mean()) if v.size else 0.0, std if std > 0 else 1.0)


class Fit(Protocol):
    """What a kind reads from the run it serves (:class:`bioprune.evaluation.runner.Runner`)."""

    device: Any
    scale: Standardizer
    pos_weight: float | None
    primary: str
    fixed_threshold: float | None
    decoding: Any
    alphabet: Any
    allowed: dict[str, list[np.ndarray]]  # canonical-pair masks per split, filled lazily


class TaskKind(ABC):
    """Base of every task kind; a subclass (or instance) fills in what differs.

    Attributes
    ----------
    name : the ``kind:`` of ``task.yaml``.
    columns : the CSV columns a task of this kind reads.
    metrics : every metric reported, in order.
    primary : ``(metric, larger_is_better)`` that picks the best valid epoch.
    residue_inputs : the head reads per-residue embeddings (else the mean-pooled vector).
    two_sequences : each example is two sequences (their pooled vectors concatenated).
    rna_protocol : the default protocol for an RNA model (protein: frozen MLP, 50 epochs).
    tunes_threshold : a decision threshold is chosen on the valid split after each epoch.
    definitions : metric definitions particular to the kind, for RESULTS.json.
    """

    name: str = ""
    columns: tuple[str, ...] = ("sequence", "label")
    metrics: tuple[str, ...] = ()
    primary: tuple[str, bool] = ("accuracy", True)
    residue_inputs: bool = False
    two_sequences: bool = False
    rna_protocol: Mapping[str, Any] = _FINETUNE
    tunes_threshold: bool = False
    #: metric definitions that differ for this kind (others: ``metrics.DEFINITIONS``)
    definitions: Mapping[str, str] = MappingProxyType({})

    # ---- reading -------------------------------------------------------------------
    @abstractmethod
    def read(self, table: _Table, alphabet, max_length: int, classes) -> Split:
        """One split's validated examples (see :mod:`bioprune.evaluation.tasks`)."""

    def classes(self, train: _Table) -> list[str] | None:
        """Class names taken from the training split (``None``: not categorical)."""
        return None

    def required_columns(self, columns: list[str]) -> list[str]:
        """The columns every split must hold, given the training split's ``columns``."""
        return list(self.columns)

    # ---- training ------------------------------------------------------------------
    def default_protocol(self, alphabet: str) -> dict[str, Any]:
        return dict(_PROTEIN if alphabet == "protein" else self.rna_protocol)

    def fit_scale(self, train: Split) -> Standardizer:
        """How targets are standardised for training (identity unless real-valued)."""
        return Standardizer()

    def pos_weight(self, data: TaskData, setting: Any) -> float | None:
        """Weight of positive cells in a pair loss; ``None`` where the loss has none."""
        return None

    def make_head(self, dim: int, classes: list[str] | None, mlp: bool):
        from bioprune.evaluation.heads import SequenceHead

        if self.two_sequences:
            dim *= 2
        return SequenceHead(dim, len(classes) if classes is not None else 1, mlp)

    @abstractmethod
    def loss(self, fit: Fit, out, split: Split, idx: np.ndarray):
        """The training loss of the head's batch output ``out`` on examples ``idx``."""

    # ---- scoring -------------------------------------------------------------------
    def collect(self, out, split: Split, idx: np.ndarray) -> list:
        """The head's batch output ``out`` as the items :meth:`score` reads."""
        return [out.cpu().numpy()]

    @abstractmethod
    def score(self, fit: Fit, outs: list, split: Split, threshold: float) -> dict[str, float]:
        """Every metric of :attr:`metrics` on ``split`` from :meth:`collect`'s items."""

    def choose_threshold(self, fit: Fit, outs: list, split: Split) -> float:
        """The decision cut to score with (logit); only kinds that tune one override it."""
        return 0.0

    def threshold_setting(self, threshold: float | None) -> dict[str, Any] | None:
        """How the decision threshold is set, for RESULTS.json (``None``: no threshold)."""
        return None

    def decoding_record(self, decoding) -> dict[str, Any] | None:
        """The structure decoding used, for RESULTS.json (``None``: no decoding)."""
        return None


# ---- sequence-level kinds -------------------------------------------------------------


class _SequenceLevel(TaskKind):
    def read(self, table, alphabet, max_length, classes):
        from bioprune.evaluation.tasks import read_sequence_level

        return read_sequence_level(table, alphabet, max_length, classes, self)

    @abstractmethod
    def target(self, table, k: int, row: dict[str, str], index: dict[str, int]) -> Any:
        """Row ``k``'s target (a class index, a value, a multi-hot vector)."""

    @abstractmethod
    def stack(self, targets: list) -> np.ndarray:
        """The targets of a split as one array."""


class Classification(_SequenceLevel):
    """One class per sequence (or pair of sequences): softmax head, cross-entropy."""

    metrics = ("accuracy", "macro_f1", "mcc", "auc", "aupr")

    def __init__(self, name: str, two_sequences: bool = False) -> None:
        self.name, self.two_sequences = name, two_sequences
        if two_sequences:
            self.columns, self.rna_protocol = ("sequence_a", "sequence_b", "label"), _FROZEN_SHORT

    def classes(self, train):
        from bioprune.evaluation.tasks import categorical_classes

        return categorical_classes(train)

    def target(self, table, k, row, index):
        from bioprune.evaluation.tasks import unseen

        if row["label"] not in index:
            raise unseen(table, k, "label", row["label"], list(index))
        return index[row["label"]]

    def stack(self, targets):
        return np.asarray(targets, dtype=np.int64)

    def loss(self, fit, out, split, idx):
        import torch
        import torch.nn.functional as F

        return F.cross_entropy(out, torch.from_numpy(split.targets[idx]).to(fit.device))

    def score(self, fit, outs, split, threshold):
        import torch

        prob = torch.softmax(torch.from_numpy(np.concatenate(outs)), -1).numpy()
        y, pred = split.targets, prob.argmax(1)
        scores = prob[:, 1] if prob.shape[1] == 2 else prob
        return {
            "accuracy": M.accuracy(y, pred),
            "macro_f1": M.macro_f1(y, pred),
            "mcc": M.mcc(y, pred),
            "auc": M.roc_auc(y, scores),
            "aupr": M.average_precision(y, scores),
        }


class Regression(_SequenceLevel):
    """One value per sequence (or pair): standardised targets, mean squared error."""

    metrics = ("spearman", "mse", "rmse", "mae", "r2")
    primary = ("mse", False)

    def __init__(self, name: str, two_sequences: bool = False) -> None:
        self.name, self.two_sequences = name, two_sequences
        if two_sequences:
            self.columns, self.rna_protocol = ("sequence_a", "sequence_b", "label"), _FROZEN_SHORT

    def target(self, table, k, row, index):
        from bioprune.evaluation.tasks import parse_float

        value = parse_float(row["label"])
        if value is None or not math.isfinite(value):
            raise ValueError(
                f"{table.at(k)}: label {row['label']!r} is not a "
                f"finite number, as a {self.name} task needs"
            )
        return value

    def stack(self, targets):
        return np.asarray(targets, dtype=np.float64)

    def fit_scale(self, train):
        return Standardizer.fit(np.asarray(train.targets))

    def loss(self, fit, out, split, idx):
        import torch
        import torch.nn.functional as F

        y = (torch.from_numpy(split.targets[idx]).float() - fit.scale.mean) / fit.scale.std
        return F.mse_loss(out.squeeze(-1), y.to(fit.device))

    def score(self, fit, outs, split, threshold):
        pred = np.concatenate(outs)[:, 0] * fit.scale.std + fit.scale.mean
        y = split.targets
        return {"spearman": M.spearman(y, pred), "mse": M.mse(y, pred),
                "rmse": M.rmse(y, pred), "mae": M.mae(y, pred), "r2": M.r2(y, pred)}  # fmt: skip


class Multilabel(_SequenceLevel):
    """Several labels per sequence (``a;b``): one sigmoid per class, binary cross-entropy."""

    name = "multilabel"
    columns = ("sequence", "labels")
    metrics = ("mean_auc", "mean_auc_beacon", "mean_mcc")
    primary = ("mean_auc", True)
    rna_protocol = _FINETUNE_MULTILABEL

    def classes(self, train):
        from bioprune.evaluation.tasks import label_set

        return sorted({x for r in train.rows for x in label_set(r["labels"])})

    def target(self, table, k, row, index):
        from bioprune.evaluation.tasks import label_set, unseen

        hot = np.zeros(len(index), dtype=np.float32)
        for lab in label_set(row["labels"]):
            if lab not in index:
                raise unseen(table, k, "label", lab, list(index))
            hot[index[lab]] = 1.0
        return hot

    def stack(self, targets):
        return np.stack(targets).astype(np.float32)

    def loss(self, fit, out, split, idx):
        import torch
        import torch.nn.functional as F

        y = torch.from_numpy(split.targets[idx]).to(fit.device)
        return F.binary_cross_entropy_with_logits(out, y)

    def score(self, fit, outs, split, threshold):
        prob = 1.0 / (1.0 + np.exp(-np.concatenate(outs)))
        return {
            "mean_auc": M.mean_auc(split.targets, prob),
            "mean_auc_beacon": M.mean_auc_beacon(split.targets, prob),
            "mean_mcc": M.mean_mcc(split.targets, prob),
        }


# ---- residue-level kinds ----------------------------------------------------------------


class ResidueClassification(TaskKind):
    """One class per residue (``tags``, one character each); masked residues do not count."""

    name = "residue_classification"
    columns = ("sequence", "tags")
    metrics = ("accuracy", "macro_f1", "per_sequence_accuracy")
    residue_inputs = True
    rna_protocol = _FROZEN_SHORT

    def read(self, table, alphabet, max_length, classes):
        from bioprune.evaluation.tasks import read_tags

        return read_tags(table, alphabet, max_length, classes)

    def classes(self, train):
        from bioprune.evaluation.tasks import valid_tags

        return sorted({c for r in train.rows for c in valid_tags(r)})

    def loss(self, fit, out, split, idx):
        import torch
        import torch.nn.functional as F

        y = torch.nn.utils.rnn.pad_sequence(
            [torch.from_numpy(split.targets[i]) for i in idx], batch_first=True, padding_value=-100
        )
        y = torch.where(y < 0, -100, y).to(fit.device)  # a negative tag: masked residue
        return F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=-100)

    def collect(self, out, split, idx):
        pred = out.argmax(-1).cpu().numpy()
        return [pred[b, : len(split.tokens[i])] for b, i in enumerate(idx)]

    def score(self, fit, outs, split, threshold):
        y, pred = np.concatenate(split.targets), np.concatenate(outs)
        keep = y >= 0  # negative tags are masked residues (PEER's valid_mask)
        return {
            "accuracy": M.accuracy(y[keep], pred[keep]),
            "macro_f1": M.macro_f1(y[keep], pred[keep]),
            "per_sequence_accuracy": M.per_sequence_accuracy(split.targets, outs),
        }


class _PairKind(TaskKind):
    """One output per residue pair (pairwise head); only ``i < j`` cells inside a sequence,
    with a known target, count in the loss."""

    residue_inputs = True

    def default_protocol(self, alphabet):
        return dict(_FROZEN_SHORT)

    def read(self, table, alphabet, max_length, classes):
        """An (L, L) ``.npy`` map per row, named in the column called like the kind."""
        from bioprune.evaluation.tasks import read_maps

        return read_maps(table, alphabet, max_length, self.name)

    def make_head(self, dim, classes, mlp):
        from bioprune.evaluation.heads import PairwiseHead

        return PairwiseHead(dim, mlp)

    def collect(self, out, split, idx):
        return [out[b, : len(split.tokens[i]), : len(split.tokens[i])].cpu().numpy()
                for b, i in enumerate(idx)]  # fmt: skip

    def sequence_cells(self, fit: Fit, target, n: int):
        """One sequence's (n, n) target tensor and the mask of its known cells (``None``:
        all known)."""
        import torch

        arr = torch.from_numpy(target)
        known = torch.isfinite(arr)
        known &= arr >= 0  # -1 (BEACON) or any negative value: unknown
        values = self.cell_values(fit, arr)
        return torch.where(known, values, torch.zeros_like(values)), known

    def cell_values(self, fit: Fit, arr):
        """The training target of each cell of an (L, L) map tensor ``arr``: for a binary map
        (base pairs, contacts) 1 where the cell is positive; real-valued maps override it."""
        return (arr > 0).float()

    def pair_targets(self, fit: Fit, split: Split, idx: np.ndarray, width: int):
        """(B, L, L) targets and the mask of cells that count: ``i < j`` inside each sequence,
        with a known target."""
        import torch

        target = torch.zeros(len(idx), width, width)
        mask = torch.zeros(len(idx), width, width, dtype=torch.bool)
        for b, i in enumerate(idx):
            n = len(split.tokens[i])
            mask[b, :n, :n] = torch.ones(n, n, dtype=torch.bool).triu(1)
            values, known = self.sequence_cells(fit, split.targets[i], n)
            target[b, :n, :n] = values
            if known is not None:
                mask[b, :n, :n] &= known
        return target.to(fit.device), mask.to(fit.device)

    def loss(self, fit, out, split, idx):
        import torch
        import torch.nn.functional as F

        target, mask = self.pair_targets(fit, split, idx, out.shape[1])
        weight = torch.tensor(fit.pos_weight or 1.0, device=fit.device)
        return F.binary_cross_entropy_with_logits(out[mask], target[mask], pos_weight=weight)

    def pos_weight(self, data, setting):
        """``"balanced"``: negatives / positives over the training split's scored cells
        (``i < j``, known), so that the rare pairs are not drowned by the ``O(L^2)``
        unpaired cells (UFold and E2Efold weight their BCE likewise); a number sets it,
        1 is plain binary cross-entropy."""
        if setting != "balanced":
            try:
                value = float(setting)
            except (TypeError, ValueError):
                value = -1.0
            if not value > 0:
                raise ValueError(
                    f"pos_weight must be 'balanced' or a positive number, got {setting!r}"
                )
            return value
        train = data.splits["train"]
        pos = cells = 0
        for tokens, target in zip(train.tokens, train.targets, strict=True):
            p, c = self.count_cells(tokens, target)
            pos, cells = pos + p, cells + c
        return float(cells - pos) / pos if pos else 1.0

    def count_cells(self, tokens, target) -> tuple[int, int]:
        """(positive, scored) ``i < j`` cells of one training sequence."""
        upper = target[np.triu_indices(len(target), k=1)]
        known = upper[np.isfinite(upper) & (upper >= 0)]
        return int((known > 0).sum()), known.size


class SecondaryStructure(_PairKind):
    """Base pairs from dot-bracket, BPSEQ/CT files or (L, L) 0/1 matrices; the threshold is
    tuned on the valid split unless fixed, and decoding may enforce a valid structure."""

    name = "secondary_structure"
    columns = ("sequence", "structure")  # or structure_file
    metrics = ("precision", "recall", "f1", "mcc", "precision_beacon", "recall_beacon",
               "f1_beacon")  # fmt: skip
    primary = ("f1", True)
    tunes_threshold = True
    definitions = MappingProxyType(
        {"mcc": "base pairs: per-sequence MCC over the L(L-1)/2 upper-triangle cells, "
         "averaged over sequences"}
    )  # fmt: skip

    def read(self, table, alphabet, max_length, classes):
        from bioprune.evaluation.tasks import read_pair_matrices, read_structures

        if "pair_matrix" in table.columns:  # BEACON bpRNA: (L, L) 0/1 matrices
            return read_pair_matrices(table, alphabet, max_length)
        return read_structures(table, alphabet, max_length)

    def required_columns(self, columns):
        if "pair_matrix" in columns:
            return ["sequence", "pair_matrix"]
        required = ["structure"] if "structure" in columns else ["structure_file"]
        if "structure" in columns or "sequence" in columns:
            required = ["sequence", *required]
        return required

    def sequence_cells(self, fit, target, n):
        import torch

        values = torch.zeros(n, n)
        for p, q in target:
            values[p, q] = values[q, p] = 1.0
        return values, None

    def count_cells(self, tokens, target):
        return len(target), len(tokens) * (len(tokens) - 1) // 2

    def allowed_pairs(self, fit: Any, split: Split) -> list[np.ndarray | None]:
        """Per sequence, the canonical-pair matrix (``None`` each when not decoding so)."""
        from bioprune.evaluation.structure import canonical_pair_mask

        if not fit.decoding.canonical:
            return [None] * len(split)
        if split.name not in fit.allowed:
            letters = fit.alphabet.tokens
            fit.allowed[split.name] = [
                canonical_pair_mask("".join(letters[int(t)] for t in tokens))
                for tokens in split.tokens
            ]
        return fit.allowed[split.name]

    def decode(self, fit, logit, threshold: float, allowed, with_scores: bool = False):
        d = fit.decoding
        return M.decode_pairs(logit, threshold, d.one_partner, min_loop=d.min_loop,
                              allowed=allowed, with_scores=with_scores)  # fmt: skip

    def choose_threshold(self, fit, outs, split):
        """The logit threshold maximising the primary F1 on ``split`` (valid), or the fixed one."""
        if fit.fixed_threshold is not None:
            return math.log(fit.fixed_threshold / (1 - fit.fixed_threshold))
        candidates, counts = [], []
        for logit, pairs, allowed in zip(outs, split.targets, self.allowed_pairs(fit, split),
                                         strict=True):  # fmt: skip
            chosen, scores = self.decode(fit, logit, -math.inf, allowed, with_scores=True)
            truth = {(min(i, j), max(i, j)) for i, j in pairs}
            candidates.append((scores, np.array([p in truth for p in chosen], dtype=bool)))
            counts.append(len(truth))
        return M.best_threshold(candidates, counts, pooled=fit.primary.endswith("_beacon"))[0]

    def score(self, fit, outs, split, threshold):
        per_seq, preds = [], []
        for logit, pairs, allowed in zip(outs, split.targets, self.allowed_pairs(fit, split),
                                         strict=True):  # fmt: skip
            pred = self.decode(fit, logit, threshold, allowed)
            preds.append(pred)
            per_seq.append(M.base_pair_scores(pairs, pred, len(logit)))
        res = {k: float(np.mean([s[k] for s in per_seq])) for k in per_seq[0]}
        res.update(M.pooled_pair_scores(split.targets, preds))
        return res

    def threshold_setting(self, threshold):
        if threshold is None:
            return {"mode": "valid", "rule": "maximises the primary F1 on the valid split, "
                    "chosen after every epoch; per seed in runs[].threshold"}  # fmt: skip
        return {"mode": "fixed", "probability": threshold}

    def decoding_record(self, decoding):
        return decoding.to_dict()


_CONTACT = ("precision_L", "precision_L/2", "precision_L/5", "precision_L/10")


class ContactMap(_PairKind):
    """Residue contacts from (L, L) ``.npy`` maps (> 0: contact; negative: unknown)."""

    name = "contact_map"
    columns = ("sequence", "contact_map")
    metrics = (*_CONTACT, "scored_sequences", *(f"{m}_beacon" for m in _CONTACT))
    primary = ("precision_L", True)

    def score(self, fit, outs, split, threshold):
        probs = [1.0 / (1.0 + np.exp(-(logit + logit.T) / 2.0)) for logit in outs]  # BEACON's
        per_seq = [M.contact_precision(p, t) for p, t in zip(probs, split.targets, strict=True)]
        scored = [s for s in per_seq if s is not None]
        names = [M.contact_metric_name(k) for k in (1, 2, 5, 10)]
        res = {k: float(np.mean([s[k] for s in scored])) if scored else math.nan for k in names}
        res["scored_sequences"] = float(len(scored))
        res.update(M.contact_precision_beacon(probs, split.targets))
        return res

    def threshold_setting(self, threshold):
        rule = "BEACON's precision counts only cells above 0.5; the others rank, no threshold"
        return {"mode": "fixed", "probability": 0.5, "rule": rule}


class DistanceMap(_PairKind):
    """Residue distances from (L, L) ``.npy`` maps (negative: unknown); standardised MSE."""

    name = "distance_map"
    columns = ("sequence", "distance_map")
    metrics = ("r2", "spearman", "mae", "mse", "r2_beacon", "mse_beacon")
    primary = ("mse", False)

    def fit_scale(self, train):
        # unknown cells (negative, as BEACON's -1) take no part in the scale
        return Standardizer.fit(
            np.concatenate([t[np.isfinite(t) & (t >= 0)] for t in train.targets])
        )

    def cell_values(self, fit, arr):
        return (arr - fit.scale.mean) / fit.scale.std

    def pos_weight(self, data, setting):
        return None

    def loss(self, fit, out, split, idx):
        import torch.nn.functional as F

        target, mask = self.pair_targets(fit, split, idx, out.shape[1])
        return F.mse_loss(out[mask], target[mask])

    def score(self, fit, outs, split, threshold):
        # bioprune's metrics pool every known i < j cell of every sequence
        ys, ps, values = [], [], []
        for value, truth in zip(outs, split.targets, strict=True):
            value = value * fit.scale.std + fit.scale.mean
            values.append(value)
            iu, ju = np.triu_indices(len(truth), k=1)
            t = truth[iu, ju]
            keep = np.isfinite(t) & (t >= 0)  # -1 (BEACON) marks an unknown distance
            ys.append(t[keep])
            ps.append(value[iu, ju][keep])
        y, p = np.concatenate(ys), np.concatenate(ps)
        res = {"r2": M.r2(y, p), "spearman": M.spearman(y, p), "mae": M.mae(y, p),
               "mse": M.mse(y, p)}  # fmt: skip
        res.update(M.distance_scores_beacon(values, split.targets))
        return res


# ---- the registry -------------------------------------------------------------------------

_REGISTRY: dict[str, TaskKind] = {}


def register_kind(kind: TaskKind, *, replace: bool = False) -> TaskKind:
    """Make ``kind`` available as ``kind: NAME`` in task.yaml; returns it.

    Refuses a name already registered unless ``replace``.
    """
    if not kind.name or not kind.metrics:
        raise ValueError("a task kind needs a name and at least one metric")
    if kind.primary[0] not in kind.metrics:
        raise ValueError(f"task kind {kind.name!r}: primary metric {kind.primary[0]!r} "
                         f"is not among its metrics {list(kind.metrics)}")  # fmt: skip
    if kind.name in _REGISTRY and not replace:
        raise ValueError(f"task kind {kind.name!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister_kind(name: str) -> None:
    """Remove a registered kind (tests and plug-ins that registered one)."""
    _REGISTRY.pop(name, None)


def get_kind(name: str) -> TaskKind:
    """The registered kind called ``name``; a ``ValueError`` lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown task kind {name!r}; choose one of {task_kinds()}") from None


def task_kinds() -> list[str]:
    """The registered kinds' names, in registration order."""
    return list(_REGISTRY)


class KindView(Mapping[str, Any]):
    """A read-only ``{kind name: attribute}`` view of the registry (always current)."""

    def __init__(self, attribute: Callable[[TaskKind], Any]) -> None:
        self._attribute = attribute

    def __getitem__(self, name: str) -> Any:
        return self._attribute(_REGISTRY[name])

    def __iter__(self) -> Iterator[str]:
        return iter(list(_REGISTRY))

    def __len__(self) -> int:
        return len(_REGISTRY)


for _kind in (
    Classification("classification"),
    Regression("regression"),
    Multilabel(),
    SecondaryStructure(),
    ResidueClassification(),
    Classification("pair_classification", two_sequences=True),
    Regression("pair_regression", two_sequences=True),
    ContactMap(),
    DistanceMap(),
):
    register_kind(_kind)
