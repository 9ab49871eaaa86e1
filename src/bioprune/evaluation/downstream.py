"""``bioprune evaluate``: train a task head on a model, pick the best epoch on valid, report test.

Lifecycle per seed (paper appendix B; method.md section 6):

1. set up: the encoder (a fresh copy of the model's, or, with ``raw``, an
   untrained one of the same architecture initialised with the seed) and a
   head initialised with the seed;
2. train with AdamW for ``epochs`` epochs over shuffled batches (the shuffle
   is seeded too);
3. after each epoch score the valid split; when its primary metric improves,
   score the test split: the reported test numbers are those of the best
   valid epoch.

With a frozen protocol the encoder's outputs are computed once per split and
cached (once for all seeds, except with ``raw`` where each seed has its own
encoder), so only the head runs in the training loop.
"""

from __future__ import annotations

import copy
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.evaluation import metrics as M
from bioprune.evaluation.protocols import Protocol, resolve_protocol, select_metrics
from bioprune.evaluation.tasks import (
    KIND_METRICS,
    PAIRWISE_KINDS,
    TWO_SEQUENCE_KINDS,
    Split,
    TaskData,
    load_task,
    load_task_spec,
)

__all__ = ["check_results_path", "evaluate_model"]

#: Kinds whose head reads per-residue embeddings (others read the mean-pooled vector).
RESIDUE_LEVEL = PAIRWISE_KINDS | {"residue_classification"}
#: Kinds with real-valued targets, standardised with the training split's mean and std.
REGRESSION_KINDS = frozenset({"regression", "pair_regression", "distance_map"})


@dataclass
class _Standardizer:
    """Targets are trained as ``(y - mean) / std`` (train split), predictions mapped back."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, values: np.ndarray) -> _Standardizer:
        v = values[np.isfinite(values)]
        std = float(v.std()) if v.size > 1 else 1.0
        return cls(float(v.mean()) if v.size else 0.0, std if std > 0 else 1.0)


def check_results_path(out: str | Path) -> Path:
    """Refuse, before any training, a RESULTS.json path that cannot be written.

    The file's directory may not exist yet (it is created on writing), but its
    nearest existing ancestor must be a directory where a file can be created:
    probed by creating and removing a hidden empty file, which also catches a
    read-only file system and, unlike a permission check, works for root.
    """
    from bioprune.errors import InputError

    out = Path(out)
    if out.is_dir():
        raise InputError(out, "is a directory; --out names the RESULTS.json file to write")
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(out, f"cannot be written: {ancestor} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".bioprune-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InputError(out, f"cannot be written: {ancestor} is not writable ({reason})") from None
    return out


def evaluate_model(
    model_dir: str | Path,
    task: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    raw: bool = False,
    protocol: str | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    weight_decay: float | None = None,
    max_length: int | None = None,
    device: str | None = None,
    show_progress: bool = True,
    decode: bool = False,
    threshold: float | None = None,
    fmt: str | None = None,
) -> dict[str, Any]:
    """Evaluate a model directory on a downstream task; returns the RESULTS.json dictionary.

    Parameters
    ----------
    model_dir : a bioprune model directory (``bioprune init`` / ``pretrain``).
    task : task directory (train/valid/test.csv [+ task.yaml]) or task YAML.
    seeds : one training run per seed; metrics are reported per seed, mean and std.
    raw : evaluate an untrained model of the same architecture (re-initialised
        from the config with each seed): the paper's Raw baseline.
    protocol, epochs, lr, batch_size, weight_decay, max_length : override
        ``task.yaml`` and the per-kind defaults.
    device : torch device; default CUDA when available, else CPU.
    decode : base-pair tasks: structure decoding of the predicted pairs (at most one
        partner per base, at least :data:`MIN_LOOP` unpaired bases in a hairpin,
        Watson-Crick and G-U wobble pairs only) before scoring.
    threshold : base-pair tasks: a fixed decision probability; default (``None``):
        chosen on the valid split after every epoch, as the one that maximises the
        primary F1 there (recorded per seed in ``runs[].threshold``).
    fmt : the task's layout (``bioprune``, ``beacon``, ``peer``, ``tape``, ``prismnet``)
        when detection is ambiguous; default: recognised from its files.

    Every test split (BEACON's test/RFAM19/DIRECT, TAPE's cb513/casp12/ts115) is
    scored at the best valid epoch and reported separately under ``test_metrics``;
    ``metrics`` holds the first (main) test split's.
    """
    import torch

    from bioprune.models.loading import load_masked_lm
    from bioprune.models.presets import count_parameters, max_residues

    if not seeds:
        raise ValueError("give at least one seed")
    spec = load_task_spec(task, fmt)
    # Deterministic CUDA matmuls need this before the first CUDA call.
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    base_model, alphabet = load_masked_lm(model_dir)
    if spec.alphabet is not None and spec.alphabet != alphabet.name:
        raise ValueError(
            f"task {spec.name} ({spec.yaml_path}) holds {spec.alphabet} sequences but model "
            f"{model_dir} uses the {alphabet.name} alphabet"
        )
    model_limit = max_residues(base_model.config)
    requested = max_length if max_length is not None else spec.options.get("max_length")
    limit = model_limit if requested is None else min(int(requested), model_limit)
    if limit < 1:
        raise ValueError(f"max_length must be at least 1, got {requested}")
    data = load_task(spec, alphabet, limit)
    benchmark = data.benchmark
    bench_headline, primary, larger = select_metrics(data.kind, benchmark)
    own = [m for m in KIND_METRICS[data.kind] if not m.endswith("_beacon")]
    headline = spec.metrics or list(bench_headline or own)
    unknown = [m for m in headline if m not in KIND_METRICS[data.kind]]
    if unknown:
        raise ValueError(
            f"{spec.yaml_path}: metric(s) {unknown} are not computed for a {data.kind} task; "
            f"choose among {list(KIND_METRICS[data.kind])}"
        )
    proto, sources = resolve_protocol(
        data.kind,
        alphabet.name,
        spec.options,
        {"protocol": protocol, "epochs": epochs, "lr": lr, "batch_size": batch_size,
         "weight_decay": weight_decay},
    )  # fmt: skip
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ValueError(f"threshold must be a probability in (0, 1), got {threshold}")
    decoding = _Decoding(
        one_partner=decode or bool(spec.options.get("one_partner_per_base", False)),
        min_loop=MIN_LOOP if decode else 0,
        canonical=decode,
    )
    runner = _Runner(
        data, proto, alphabet, base_model.config.hidden_size, device, decoding, show_progress
    )
    runner.primary, runner.larger = primary, larger
    runner.fixed_threshold = threshold
    # The benchmarks train their pair heads with plain binary cross-entropy.
    runner.pos_weight = _pos_weight(
        data, spec.options.get("pos_weight", 1.0 if benchmark else "balanced")
    )

    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        shared_cache = None
        if proto.frozen and not raw:
            shared_cache = runner.embed_all(base_model.esm.to(device), "embedding (frozen encoder)")
        per_seed = []
        for seed in seeds:
            if raw:
                encoder = _raw_encoder(base_model.config, seed)
            else:
                encoder = copy.deepcopy(base_model.esm) if not proto.frozen else None
            per_seed.append(runner.run_seed(seed, encoder, shared_cache))
    finally:
        torch.use_deterministic_algorithms(deterministic)

    names = list(per_seed[0]["test"])
    summary = {name: _summarise([r["test"][name] for r in per_seed]) for name in names}
    per_test = {
        split: {name: _summarise([r["tests"][split][name] for r in per_seed]) for name in names}
        for split in spec.test_splits
    }
    return {
        "task": {
            "name": spec.name,
            "kind": data.kind,
            "benchmark": data.benchmark,
            "format": spec.format,
            "test_splits": list(spec.test_splits),
            "made_splits": spec.made_splits,
            "path": str(Path(task).resolve()),
            "task_yaml": str(spec.yaml_path) if spec.yaml_path else None,
            "classes": data.classes,
            "splits": {
                s: {
                    "path": str(spec.files[s]),
                    "checksum": artifacts.file_checksum(spec.files[s]),
                    "examples": len(data.splits[s]),
                    "cropped": data.splits[s].cropped,
                }
                for s in spec.split_names
            },
        },
        "model": {
            "path": str(Path(model_dir).resolve()),
            "checksum": artifacts.model_checksum(model_dir),
            "alphabet": alphabet.name,
            "raw": raw,
            "parameters": count_parameters(base_model.esm),
            "max_residues": model_limit,
        },
        "protocol": {
            **proto.to_dict(),
            "max_length": limit,
            "one_partner_per_base": decoding.one_partner,
            "decoding": decoding.to_dict() if data.kind == "secondary_structure" else None,
            "threshold": _threshold_setting(data.kind, threshold),
            "pos_weight": runner.pos_weight,
            "sources": sources,
            "device": str(device),
        },
        "primary_metric": {"name": primary, "larger_is_better": larger, "split": "valid"},
        "headline_metrics": headline,
        "metric_definitions": {name: M.definition(data.kind, name) for name in names},
        "seeds": list(seeds),
        "metrics": summary,
        "test_metrics": per_test,
        "runs": per_seed,
        **artifacts.provenance(command="evaluate"),
    }


def _raw_encoder(config, seed: int):
    """An untrained encoder of the model's architecture, initialised with ``seed``."""
    import torch
    from transformers import AutoModelForMaskedLM, EsmForMaskedLM

    torch.manual_seed(seed)
    if config.model_type != "esm":  # ESM-C (registered by the model loader)
        return AutoModelForMaskedLM.from_config(copy.deepcopy(config)).esm
    return EsmForMaskedLM(copy.deepcopy(config)).esm


def _finite(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _summarise(values: list[float]) -> dict[str, Any]:
    """Per-seed values, their count ``n``, mean and sample std (ddof 1) over the finite
    ones; the std of fewer than two values is ``None`` (undefined, not 0)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(finite)) if finite else None
    std = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
    return {"per_seed": [_finite(v) for v in values], "n": len(finite), "mean": mean, "std": std}


#: Minimum hairpin loop of the structure decoding: a pair (i, j) encloses >= 3 bases.
MIN_LOOP = 3


@dataclass(frozen=True)
class _Decoding:
    """How predicted pair scores become a base-pair set."""

    one_partner: bool = False
    min_loop: int = 0
    canonical: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"one_partner_per_base": self.one_partner, "min_loop": self.min_loop,
                "canonical_pairs_only": self.canonical}  # fmt: skip


def _threshold_setting(kind: str, threshold: float | None) -> dict[str, Any] | None:
    if kind == "secondary_structure":
        if threshold is None:
            return {"mode": "valid", "rule": "maximises the primary F1 on the valid split, "
                    "chosen after every epoch; per seed in runs[].threshold"}  # fmt: skip
        return {"mode": "fixed", "probability": threshold}
    if kind == "contact_map":
        rule = "BEACON's precision counts only cells above 0.5; the others rank, no threshold"
        return {"mode": "fixed", "probability": 0.5, "rule": rule}
    return None


class _Runner:
    """Training and scoring of one task under one protocol (shared by every seed)."""

    def __init__(
        self,
        data: TaskData,
        proto: Protocol,
        alphabet,
        hidden: int,
        device,
        decoding: _Decoding,
        progress,
    ):
        self.data, self.kind, self.proto, self.hidden = data, data.kind, proto, hidden
        self.alphabet, self.device = alphabet, device
        self.decoding = decoding
        self.show_progress = progress
        self.pos_weight: float | None = None
        self.fixed_threshold: float | None = None
        self.primary, self.larger = select_metrics(data.kind, None)[1:]
        self._allowed: dict[str, list[np.ndarray]] = {}
        train = data.splits["train"]
        if self.kind == "distance_map":
            # unknown cells (negative, as BEACON's -1) take no part in the scale
            self.scale = _Standardizer.fit(
                np.concatenate([t[np.isfinite(t) & (t >= 0)] for t in train.targets])
            )
        elif self.kind in REGRESSION_KINDS:
            self.scale = _Standardizer.fit(np.asarray(train.targets))
        else:
            self.scale = _Standardizer()

    # ---- progress ------------------------------------------------------------
    def _progress(self):
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        console = Console(stderr=True)
        if self.show_progress and not console.is_terminal:  # a log file: plain lines
            from bioprune.progress import LineTasks

            return LineTasks(
                lambda line: console.print(line, markup=False, highlight=False, soft_wrap=True),
                prefix="evaluate ",
            )
        return Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=Console(stderr=True),
            disable=not self.show_progress,
            transient=False,
        )

    # ---- encoder -------------------------------------------------------------
    def _encode(self, encoder, tokens: list[np.ndarray]):
        """(B, Lmax, D) residue embeddings (``<cls>``/``<eos>`` dropped) and (B,) lengths."""
        import torch

        a = self.alphabet
        lengths = torch.tensor([len(t) for t in tokens], dtype=torch.long)
        width = int(lengths.max()) + 2
        ids = torch.full((len(tokens), width), a.pad_id, dtype=torch.long)
        for b, t in enumerate(tokens):
            ids[b, : len(t) + 2] = torch.from_numpy(a.frame(t))
        ids = ids.to(self.device)
        hidden = encoder(input_ids=ids, attention_mask=(ids != a.pad_id).long()).last_hidden_state
        return hidden[:, 1 : width - 1], lengths.to(self.device)

    def _features_from_encoder(self, encoder, split: Split, idx: np.ndarray):
        """Head inputs for examples ``idx``: pooled (B, D or 2D) or ((B, L, D), lengths)."""
        import torch

        from bioprune.evaluation.heads import mean_pool

        residues, lengths = self._encode(encoder, [split.tokens[i] for i in idx])
        if self.kind in RESIDUE_LEVEL:
            return residues, lengths
        pooled = mean_pool(residues, lengths)
        if self.kind in TWO_SEQUENCE_KINDS:
            res_b, len_b = self._encode(encoder, [split.tokens_b[i] for i in idx])
            pooled = torch.cat([pooled, mean_pool(res_b, len_b)], dim=-1)
        return pooled, lengths

    def embed_all(self, encoder, description: str) -> dict[str, list]:
        """Frozen encoder outputs of every example of every split, on the CPU.

        Per example: the pooled vector (D,) / (2D,) or the residue embeddings (L, D).
        Batches are formed in length order so that little padding is computed.
        """
        import torch

        encoder.eval()
        cache: dict[str, list] = {}
        bs = self.proto.batch_size
        total = sum(math.ceil(len(s) / bs) for s in self.data.splits.values())
        with self._progress() as progress, torch.no_grad():
            bar = progress.add_task(description, total=total, status="")
            for name, split in self.data.splits.items():
                out: list = [None] * len(split)
                order = np.argsort([len(t) for t in split.tokens], kind="stable")
                for start in range(0, len(order), bs):
                    idx = order[start : start + bs]
                    feats, lengths = self._features_from_encoder(encoder, split, idx)
                    feats = feats.float().cpu()
                    for b, i in enumerate(idx):
                        out[i] = feats[b, : int(lengths[b])] if feats.dim() == 3 else feats[b]
                    progress.advance(bar)
                cache[name] = out
        return cache

    def _features(self, encoder, cache, split: Split, idx: np.ndarray):
        import torch

        if cache is None:
            return self._features_from_encoder(encoder, split, idx)
        items = [cache[split.name][i] for i in idx]
        if items[0].dim() == 1:
            return torch.stack(items).to(self.device), None
        lengths = torch.tensor([len(x) for x in items], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)
        return padded.to(self.device), lengths.to(self.device)

    # ---- heads, targets, losses --------------------------------------------------
    def _make_head(self, dim: int):
        from bioprune.evaluation.heads import PairwiseHead, SequenceHead

        mlp = self.proto.mlp_head
        if self.kind in PAIRWISE_KINDS:
            return PairwiseHead(dim, mlp)
        if self.kind in TWO_SEQUENCE_KINDS:
            dim *= 2
        classes = self.data.classes
        out = len(classes) if classes is not None else 1
        return SequenceHead(dim, out, mlp)

    def _pair_targets(self, split: Split, idx: np.ndarray, width: int):
        """(B, L, L) targets and the mask of cells that count: ``i < j`` inside each sequence."""
        import torch

        n = len(idx)
        target = torch.zeros(n, width, width)
        mask = torch.zeros(n, width, width, dtype=torch.bool)
        for b, i in enumerate(idx):
            length = len(split.tokens[i])
            mask[b, :length, :length] = torch.ones(length, length, dtype=torch.bool).triu(1)
            t = split.targets[i]
            if self.kind == "secondary_structure":
                for p, q in t:
                    target[b, p, q] = target[b, q, p] = 1.0
                continue
            arr = torch.from_numpy(t)
            known = torch.isfinite(arr)
            known &= arr >= 0  # -1 (BEACON) or any negative value: unknown
            if self.kind == "contact_map":
                vals = (arr > 0).float()
            else:
                vals = (arr - self.scale.mean) / self.scale.std
            target[b, :length, :length] = torch.where(known, vals, torch.zeros_like(vals))
            mask[b, :length, :length] &= known
        return target.to(self.device), mask.to(self.device)

    def _loss(self, out, split: Split, idx: np.ndarray):
        import torch
        import torch.nn.functional as F

        kind, dev = self.kind, self.device
        if kind in {"classification", "pair_classification"}:
            return F.cross_entropy(out, torch.from_numpy(split.targets[idx]).to(dev))
        if kind in {"regression", "pair_regression"}:
            y = (torch.from_numpy(split.targets[idx]).float() - self.scale.mean) / self.scale.std
            return F.mse_loss(out.squeeze(-1), y.to(dev))
        if kind == "multilabel":
            return F.binary_cross_entropy_with_logits(
                out, torch.from_numpy(split.targets[idx]).to(dev)
            )
        if kind == "residue_classification":
            y = torch.nn.utils.rnn.pad_sequence(
                [torch.from_numpy(split.targets[i]) for i in idx],
                batch_first=True,
                padding_value=-100,
            )
            y = torch.where(y < 0, -100, y).to(dev)  # a negative tag: masked residue
            return F.cross_entropy(out.flatten(0, 1), y.flatten(), ignore_index=-100)
        target, mask = self._pair_targets(split, idx, out.shape[1])
        if kind == "distance_map":
            return F.mse_loss(out[mask], target[mask])
        weight = torch.tensor(self.pos_weight or 1.0, device=dev)
        return F.binary_cross_entropy_with_logits(out[mask], target[mask], pos_weight=weight)

    # ---- scoring -----------------------------------------------------------------
    def predict(self, encoder, cache, head, split: Split) -> list:
        """The head's outputs on ``split`` in file order: logits / values per batch, per-residue
        predicted classes, or (L, L) logit / value maps per sequence."""
        import torch

        head.eval()
        if encoder is not None:
            encoder.eval()
        kind, bs = self.kind, self.proto.batch_size
        outs: list = []
        with torch.no_grad():
            for start in range(0, len(split), bs):
                idx = np.arange(start, min(start + bs, len(split)))
                feats, _ = self._features(encoder, cache, split, idx)
                out = head(feats).float()
                if kind in PAIRWISE_KINDS:
                    for b, i in enumerate(idx):
                        n = len(split.tokens[i])
                        outs.append(out[b, :n, :n].cpu().numpy())
                elif kind == "residue_classification":
                    pred = out.argmax(-1).cpu().numpy()
                    outs.extend(pred[b, : len(split.tokens[i])] for b, i in enumerate(idx))
                else:
                    outs.append(out.cpu().numpy())
        return outs

    def score(self, encoder, cache, head, split: Split, threshold: float = 0.0):
        """Every metric of the kind on ``split``; ``threshold`` is the base-pair logit cut."""
        return self._metrics(self.predict(encoder, cache, head, split), split, threshold)

    def _allowed_pairs(self, split: Split) -> list[np.ndarray | None]:
        """Per sequence, the canonical-pair matrix (``None`` each when not decoding so)."""
        from bioprune.evaluation.structure import canonical_pair_mask

        if not self.decoding.canonical:
            return [None] * len(split)
        if split.name not in self._allowed:
            letters = self.alphabet.tokens
            self._allowed[split.name] = [
                canonical_pair_mask("".join(letters[int(t)] for t in tokens))
                for tokens in split.tokens
            ]
        return self._allowed[split.name]

    def _decode(self, logit: np.ndarray, threshold: float, allowed, with_scores: bool = False):
        d = self.decoding
        return M.decode_pairs(
            logit, threshold, d.one_partner, min_loop=d.min_loop, allowed=allowed,
            with_scores=with_scores,
        )  # fmt: skip

    def choose_threshold(self, outs: list, split: Split) -> tuple[float, float]:
        """The base-pair logit threshold maximising the primary F1 on ``split`` (valid), or
        the fixed one; returns ``(logit threshold, that F1)``."""
        if self.fixed_threshold is not None:
            return math.log(self.fixed_threshold / (1 - self.fixed_threshold)), math.nan
        candidates, counts = [], []
        for logit, pairs, allowed in zip(outs, split.targets, self._allowed_pairs(split),
                                         strict=True):  # fmt: skip
            chosen, scores = self._decode(logit, -math.inf, allowed, with_scores=True)
            truth = {(min(i, j), max(i, j)) for i, j in pairs}
            candidates.append((scores, np.array([p in truth for p in chosen], dtype=bool)))
            counts.append(len(truth))
        return M.best_threshold(candidates, counts, pooled=self.primary.endswith("_beacon"))

    def _metrics(self, outs: list, split: Split, threshold: float = 0.0) -> dict[str, float]:
        import torch

        kind = self.kind
        if kind in {"classification", "pair_classification"}:
            logits = np.concatenate(outs)
            prob = torch.softmax(torch.from_numpy(logits), -1).numpy()
            y, pred = split.targets, prob.argmax(1)
            scores = prob[:, 1] if prob.shape[1] == 2 else prob
            return {
                "accuracy": M.accuracy(y, pred),
                "macro_f1": M.macro_f1(y, pred),
                "mcc": M.mcc(y, pred),
                "auc": M.roc_auc(y, scores),
                "aupr": M.average_precision(y, scores),
            }
        if kind in {"regression", "pair_regression"}:
            pred = np.concatenate(outs)[:, 0] * self.scale.std + self.scale.mean
            return _regression_metrics(split.targets, pred)
        if kind == "multilabel":
            prob = 1.0 / (1.0 + np.exp(-np.concatenate(outs)))
            return {
                "mean_auc": M.mean_auc(split.targets, prob),
                "mean_auc_beacon": M.mean_auc_beacon(split.targets, prob),
                "mean_mcc": M.mean_mcc(split.targets, prob),
            }
        if kind == "residue_classification":
            y, pred = np.concatenate(split.targets), np.concatenate(outs)
            keep = y >= 0  # negative tags are masked residues (PEER's valid_mask)
            return {
                "accuracy": M.accuracy(y[keep], pred[keep]),
                "macro_f1": M.macro_f1(y[keep], pred[keep]),
                "per_sequence_accuracy": M.per_sequence_accuracy(split.targets, outs),
            }
        if kind == "secondary_structure":
            per_seq, preds = [], []
            for logit, pairs, allowed in zip(outs, split.targets, self._allowed_pairs(split),
                                             strict=True):  # fmt: skip
                pred = self._decode(logit, threshold, allowed)
                preds.append(pred)
                per_seq.append(M.base_pair_scores(pairs, pred, len(logit)))
            res = {k: float(np.mean([s[k] for s in per_seq])) for k in per_seq[0]}
            res.update(M.pooled_pair_scores(split.targets, preds))
            return res
        if kind == "contact_map":
            probs = [_symmetric_prob(logit) for logit in outs]
            per_seq = [
                M.contact_precision(prob, truth)
                for prob, truth in zip(probs, split.targets, strict=True)
            ]
            scored = [s for s in per_seq if s is not None]
            names = [M.contact_metric_name(k) for k in (1, 2, 5, 10)]
            res = {k: float(np.mean([s[k] for s in scored])) if scored else math.nan for k in names}
            res["scored_sequences"] = float(len(scored))
            res.update(M.contact_precision_beacon(probs, split.targets))
            return res
        # distance_map: bioprune's metrics pool every known i < j cell of every sequence
        ys, ps, values = [], [], []
        for value, truth in zip(outs, split.targets, strict=True):
            value = value * self.scale.std + self.scale.mean
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

    # ---- one seed ----------------------------------------------------------------
    def run_seed(self, seed: int, encoder, shared_cache) -> dict[str, Any]:
        """Train under ``seed``; the test metrics of the best valid epoch."""
        import torch

        torch.manual_seed(seed)
        cache = shared_cache
        if encoder is not None:
            encoder.to(self.device)
        if self.proto.frozen and cache is None:
            cache = self.embed_all(encoder, f"seed {seed}: embedding (raw encoder)")
        trainable_encoder = None if self.proto.frozen else encoder
        torch.manual_seed(seed)  # the head's initialisation depends on the seed alone
        head = self._make_head(self.hidden).to(self.device)
        params = list(head.parameters())
        if trainable_encoder is not None:
            params += [p for p in trainable_encoder.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.proto.lr, weight_decay=self.proto.weight_decay
        )
        train, valid = self.data.splits["train"], self.data.splits["valid"]
        test_names = self.data.spec.test_splits
        primary, larger = self.primary, self.larger
        rng = np.random.default_rng(seed)
        bs = self.proto.batch_size
        steps = math.ceil(len(train) / bs)
        best: dict[str, Any] | None = None
        history = []
        with self._progress() as progress:
            bar = progress.add_task(f"seed {seed}", total=self.proto.epochs * steps, status="")
            for epoch in range(1, self.proto.epochs + 1):
                head.train()
                if trainable_encoder is not None:
                    trainable_encoder.train()
                order = rng.permutation(len(train))
                total_loss = 0.0
                for start in range(0, len(order), bs):
                    idx = order[start : start + bs]
                    feats, _ = self._features(trainable_encoder, cache, train, idx)
                    loss = self._loss(head(feats), train, idx)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    total_loss += float(loss.detach()) * len(idx)
                    progress.advance(bar)
                valid_out = self.predict(trainable_encoder, cache, head, valid)
                cut = 0.0
                if self.kind == "secondary_structure":
                    cut, _ = self.choose_threshold(valid_out, valid)
                valid_metrics = self._metrics(valid_out, valid, cut)
                value = valid_metrics[primary]
                record = {"epoch": epoch, "train_loss": total_loss / len(train),
                          primary: _finite(value)}  # fmt: skip
                if self.kind == "secondary_structure":
                    record["threshold"] = _probability(cut)
                history.append(record)
                if best is None or _better(value, best["valid"][primary], larger):
                    tests = {
                        name: self.score(
                            trainable_encoder, cache, head, self.data.splits[name], cut
                        )
                        for name in test_names
                    }
                    best = {
                        "epoch": epoch,
                        "valid": valid_metrics,
                        "test": tests[test_names[0]],
                        "tests": tests,
                        "threshold": cut,
                    }
                progress.update(
                    bar,
                    status=f"epoch {epoch}: valid {primary} {value:.4f} "
                    f"(best {best['valid'][primary]:.4f} @ {best['epoch']})",
                )
        assert best is not None  # epochs >= 1
        chosen = None
        if self.kind == "secondary_structure":
            chosen = {
                "probability": _probability(best["threshold"]),
                "logit": _finite(best["threshold"]),
                "chosen_on": "valid" if self.fixed_threshold is None else "fixed",
            }
        return {
            "seed": seed,
            "best_epoch": best["epoch"],
            "threshold": chosen,
            "valid": {k: _finite(v) for k, v in best["valid"].items()},
            "test": {k: _finite(v) for k, v in best["test"].items()},
            "tests": {
                name: {k: _finite(v) for k, v in m.items()} for name, m in best["tests"].items()
            },
            "history": history,
        }


def _pos_weight(data: TaskData, setting: Any) -> float | None:
    """Weight of the positive cells in the base-pair / contact loss (``None`` for other kinds).

    ``"balanced"`` (default) is negatives / positives over the training split's
    scored cells (``i < j``, known), so that the rare pairs are not drowned by
    the ``O(L^2)`` unpaired cells (UFold and E2Efold weight their BCE likewise);
    a number sets it, 1 is plain binary cross-entropy.
    """
    if data.kind not in {"secondary_structure", "contact_map"}:
        return None
    if setting != "balanced":
        try:
            value = float(setting)
        except (TypeError, ValueError):
            value = -1.0
        if not value > 0:
            raise ValueError(f"pos_weight must be 'balanced' or a positive number, got {setting!r}")
        return value
    train = data.splits["train"]
    pos = cells = 0
    for tokens, target in zip(train.tokens, train.targets, strict=True):
        if data.kind == "secondary_structure":
            pos += len(target)
            cells += len(tokens) * (len(tokens) - 1) // 2
        else:
            upper = target[np.triu_indices(len(target), k=1)]
            known = upper[np.isfinite(upper) & (upper >= 0)]
            pos += int((known > 0).sum())
            cells += known.size
    return float(cells - pos) / pos if pos else 1.0


def _symmetric_prob(logit: np.ndarray) -> np.ndarray:
    """Sigmoid of the symmetrised logits (BEACON averages ``logits`` and their transpose)."""
    return 1.0 / (1.0 + np.exp(-(logit + logit.T) / 2.0))


def _probability(logit: float) -> float | None:
    """The probability of a logit threshold (``None`` when infinite: nothing predicted)."""
    if not math.isfinite(logit):
        return None
    return float(1.0 / (1.0 + math.exp(-logit)))


def _better(value: float, best: float, larger: bool) -> bool:
    """``value`` beats ``best``; ``nan`` never beats anything and anything beats ``nan``."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if larger else value < best


def _regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "spearman": M.spearman(y, pred),
        "mse": M.mse(y, pred),
        "rmse": M.rmse(y, pred),
        "mae": M.mae(y, pred),
        "r2": M.r2(y, pred),
    }
