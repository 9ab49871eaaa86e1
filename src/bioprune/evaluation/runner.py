"""Training and scoring of one task under one protocol, seed by seed (paper appendix B).

Lifecycle per seed (method.md section 6):

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
encoder), so only the head runs in the training loop. Everything that differs
between task kinds is asked of the kind (:mod:`bioprune.evaluation.kinds`);
progress goes to an optional :data:`bioprune.progress.ProgressCallback`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from bioprune.evaluation.kinds import get_kind
from bioprune.evaluation.protocols import Protocol
from bioprune.evaluation.tasks import Split, TaskData
from bioprune.progress import ProgressCallback, ProgressEvent

__all__ = ["MIN_LOOP", "Decoding", "Runner"]

#: Minimum hairpin loop of the structure decoding: a pair (i, j) encloses >= 3 bases.
MIN_LOOP = 3


@dataclass(frozen=True)
class Decoding:
    """How predicted pair scores become a base-pair set."""

    one_partner: bool = False
    min_loop: int = 0
    canonical: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"one_partner_per_base": self.one_partner, "min_loop": self.min_loop,
                "canonical_pairs_only": self.canonical}  # fmt: skip


def finite(x: float | None) -> float | None:
    """``x`` as a float, ``None`` when missing or not finite (JSON has no nan)."""
    return float(x) if x is not None and math.isfinite(x) else None


def probability(logit: float) -> float | None:
    """The probability of a logit threshold (``None`` when infinite: nothing predicted)."""
    if not math.isfinite(logit):
        return None
    return float(1.0 / (1.0 + math.exp(-logit)))


def better(value: float, best: float, larger: bool) -> bool:
    """``value`` beats ``best``; ``nan`` never beats anything and anything beats ``nan``."""
    if math.isnan(value):
        return False
    if math.isnan(best):
        return True
    return value > best if larger else value < best


class Runner:
    """Training and scoring of one task under one protocol (shared by every seed).

    It is also the ``fit`` a kind reads: ``device``, ``scale``, ``pos_weight``,
    ``primary``, ``fixed_threshold``, ``decoding``, ``alphabet`` and the
    ``allowed`` cache of canonical-pair masks.
    """

    def __init__(
        self,
        data: TaskData,
        proto: Protocol,
        alphabet,
        hidden: int,
        device,
        decoding: Decoding,
        progress: ProgressCallback | None = None,
    ):
        self.data, self.proto, self.hidden = data, proto, hidden
        self.task_kind = get_kind(data.kind)
        self.alphabet, self.device, self.decoding = alphabet, device, decoding
        self.progress = progress
        self.pos_weight: float | None = None
        self.fixed_threshold: float | None = None
        self.primary, self.larger = self.task_kind.primary
        self.allowed: dict[str, list[np.ndarray]] = {}
        self.scale = self.task_kind.fit_scale(data.splits["train"])

    def _report(self, stage: str, done: int, total: int, message: str = "") -> None:
        if self.progress is not None:
            self.progress(ProgressEvent(stage, done, total, message))

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
        if self.task_kind.residue_inputs:
            return residues, lengths
        pooled = mean_pool(residues, lengths)
        if self.task_kind.two_sequences:
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
        done = 0
        self._report(description, 0, total)  # opens the stage
        with torch.no_grad():
            for name, split in self.data.splits.items():
                out: list = [None] * len(split)
                order = np.argsort([len(t) for t in split.tokens], kind="stable")
                for start in range(0, len(order), bs):
                    idx = order[start : start + bs]
                    feats, lengths = self._features_from_encoder(encoder, split, idx)
                    feats = feats.float().cpu()
                    for b, i in enumerate(idx):
                        out[i] = feats[b, : int(lengths[b])] if feats.dim() == 3 else feats[b]
                    done += 1
                    self._report(description, done, total)
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

    # ---- scoring -----------------------------------------------------------------
    def predict(self, encoder, cache, head, split: Split) -> list:
        """The head's outputs on ``split`` in file order, as the kind collects them."""
        import torch

        head.eval()
        if encoder is not None:
            encoder.eval()
        bs = self.proto.batch_size
        outs: list = []
        with torch.no_grad():
            for start in range(0, len(split), bs):
                idx = np.arange(start, min(start + bs, len(split)))
                feats, _ = self._features(encoder, cache, split, idx)
                outs.extend(self.task_kind.collect(head(feats).float(), split, idx))
        return outs

    def score(self, encoder, cache, head, split: Split, threshold: float = 0.0):
        """Every metric of the kind on ``split``; ``threshold`` is the base-pair logit cut."""
        return self.task_kind.score(self, self.predict(encoder, cache, head, split), split,
                                    threshold)  # fmt: skip

    # ---- one seed ----------------------------------------------------------------
    def _setup(self, seed: int, encoder, shared_cache):
        """The cache, the trainable encoder (``None`` when frozen), the head and AdamW."""
        import torch

        torch.manual_seed(seed)
        cache = shared_cache
        if encoder is not None:
            encoder.to(self.device)
        if self.proto.frozen and cache is None:
            cache = self.embed_all(encoder, f"seed {seed}: embedding (raw encoder)")
        trainable = None if self.proto.frozen else encoder
        torch.manual_seed(seed)  # the head's initialisation depends on the seed alone
        head = self.task_kind.make_head(self.hidden, self.data.classes, self.proto.mlp_head)
        head = head.to(self.device)
        params = list(head.parameters())
        if trainable is not None:
            params += [p for p in trainable.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(
            params, lr=self.proto.lr, weight_decay=self.proto.weight_decay
        )
        return cache, trainable, head, optimizer

    def _train_epoch(self, state, order: np.ndarray, report) -> float:
        """One pass over the training split in ``order``; the mean training loss."""
        cache, encoder, head, optimizer = state
        train, bs = self.data.splits["train"], self.proto.batch_size
        head.train()
        if encoder is not None:
            encoder.train()
        total_loss = 0.0
        for start in range(0, len(order), bs):
            idx = order[start : start + bs]
            feats, _ = self._features(encoder, cache, train, idx)
            loss = self.task_kind.loss(self, head(feats), train, idx)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total_loss += float(loss.detach()) * len(idx)
            report()
        return total_loss / len(train)

    def _valid_epoch(self, state, epoch: int, train_loss: float, best, history: list):
        """Score valid; when it improves on ``best``, score every test split.

        Returns the new best and the epoch's primary valid metric.
        """
        cache, encoder, head, _ = state
        valid, primary = self.data.splits["valid"], self.primary
        valid_out = self.predict(encoder, cache, head, valid)
        cut = self.task_kind.choose_threshold(self, valid_out, valid)
        valid_metrics = self.task_kind.score(self, valid_out, valid, cut)
        value = valid_metrics[primary]
        record = {"epoch": epoch, "train_loss": train_loss, primary: finite(value)}
        if self.task_kind.tunes_threshold:
            record["threshold"] = probability(cut)
        history.append(record)
        if best is not None and not better(value, best["valid"][primary], self.larger):
            return best, value
        tests = {
            name: self.score(encoder, cache, head, self.data.splits[name], cut)
            for name in self.data.spec.test_splits
        }
        first = tests[self.data.spec.test_splits[0]]
        best = {"epoch": epoch, "valid": valid_metrics, "test": first, "tests": tests,
                "threshold": cut}  # fmt: skip
        return best, value

    def run_seed(self, seed: int, encoder, shared_cache) -> dict[str, Any]:
        """Train under ``seed``; the test metrics of the best valid epoch."""
        state = self._setup(seed, encoder, shared_cache)
        stage, epochs = f"seed {seed}", self.proto.epochs
        total = epochs * math.ceil(len(self.data.splits["train"]) / self.proto.batch_size)
        rng = np.random.default_rng(seed)
        counter = {"done": 0, "status": ""}

        def report() -> None:
            counter["done"] += 1
            self._report(stage, counter["done"], total, counter["status"])

        best: dict[str, Any] | None = None
        history: list[dict[str, Any]] = []
        self._report(stage, 0, total)  # opens the stage
        for epoch in range(1, epochs + 1):
            order = rng.permutation(len(self.data.splits["train"]))
            train_loss = self._train_epoch(state, order, report)
            best, value = self._valid_epoch(state, epoch, train_loss, best, history)
            counter["status"] = (
                f"epoch {epoch}: valid {self.primary} {value:.4f} "
                f"(best {best['valid'][self.primary]:.4f} @ {best['epoch']})"
            )
            self._report(stage, counter["done"], total, counter["status"])
        assert best is not None  # epochs >= 1
        return self._seed_record(seed, best, history)

    def _seed_record(self, seed: int, best: dict[str, Any], history: list) -> dict[str, Any]:
        chosen = None
        if self.task_kind.tunes_threshold:
            chosen = {
                "probability": probability(best["threshold"]),
                "logit": finite(best["threshold"]),
                "chosen_on": "valid" if self.fixed_threshold is None else "fixed",
            }
        return {
            "seed": seed,
            "best_epoch": best["epoch"],
            "threshold": chosen,
            "valid": {k: finite(v) for k, v in best["valid"].items()},
            "test": {k: finite(v) for k, v in best["test"].items()},
            "tests": {
                name: {k: finite(v) for k, v in m.items()} for name, m in best["tests"].items()
            },
            "history": history,
        }
