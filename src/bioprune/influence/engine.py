"""One forward and backward per batch and mask draw, with per-example MLM losses.

The loss of example ``z`` under draw ``k`` is the mean cross-entropy over its
selected positions (method.md section 3), computed per example from the
logits, never HF's batch-mean loss. The backward of ``sum_b loss_b`` then puts
each example's own gradient in its own rows, which the hooks of
:mod:`bioprune.influence.hooks` reduce.

The LM head runs on the selected positions only (gathered into ``(B, S, H)``,
``S`` the largest number of selected positions in the batch): the loss depends
on nothing else, so this is exact and saves the head ~85% of its work.

The same holds one step earlier (:func:`gathered_last_layer`, on unless the
tracker says ``gather_last_layer=False``): in the last encoder layer only the
selected positions' outputs reach the loss. Its attention layer norm, keys and
values still run on every position (every position is attended to), but the
queries, the attention, the attention output projection, the FFN and the final
layer norm run on the selected positions only, in the forward and the backward,
and their per-example weight gradients sum over those positions only. The
result is the same function of the same inputs, so losses, Fisher and scores
do not change (tested against the plain path).

That layer re-implements HF's ESM encoder loop as transformers 5.6 and later
write it (model-level rotary embeddings, layers called with
``position_embeddings=``, masks from ``transformers.masking_utils``).
:func:`gathered_last_layer_supported` checks the installed release and the
layer's signature once; elsewhere the runner takes the plain path (the same
scores, slower) and logs one note.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import re
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from bioprune.data.alphabet import Alphabet
from bioprune.data.batching import collate_masked, token_budget_batches
from bioprune.data.masking import IGNORE_INDEX, mask_draw
from bioprune.influence.hooks import PerExampleGradients

__all__ = [
    "BatchResult",
    "GradientPass",
    "MLMGradientRunner",
    "encoder_at_selected",
    "gathered_last_layer",
    "gathered_last_layer_supported",
    "plan_parts",
]


log = logging.getLogger(__name__)

#: transformers releases, ``[low, high)``, whose ESM encoder the gathered last layer
#: re-implements: 5.6 moved the rotary embedding to the model and made layers take
#: ``position_embeddings=``; a new major release may change that call again.
GATHERED_TRANSFORMERS = ((5, 6), (6, 0))

_support_checked: dict[tuple, str | None] = {}
#: Which loss an example's gradient is taken of (``MLMGradientRunner``): its mean masked
#: loss, the sum (gradient x n_masked: scores x n_masked^2) or per masked token (scores x n).
LOSS_REDUCTIONS = ("mean", "sum", "per-masked")


def _major_minor(version: str) -> tuple[int, int]:
    major, minor = [*(int(x) for x in re.findall(r"\d+", version)[:2]), 0, 0][:2]
    return major, minor


def _gathered_unsupported_reason(esm) -> str | None:
    """Why the gathered last layer cannot run on ``esm`` here, or None when it can."""
    import transformers

    low, high = GATHERED_TRANSFORMERS
    version = transformers.__version__
    if not low <= _major_minor(version) < high:
        return (
            f"transformers {version} is outside {low[0]}.{low[1]} <= version < "
            f"{high[0]}.{high[1]}, whose ESM encoder it re-implements"
        )
    try:
        from transformers.masking_utils import create_bidirectional_mask  # noqa: F401
        from transformers.models.esm.modeling_esm import rotate_half  # noqa: F401
    except ImportError as err:
        return f"transformers {version} lacks {err.name or err}"
    kind = getattr(esm.config, "position_embedding_type", "absolute")
    if kind not in ("absolute", "rotary"):
        return f"position_embedding_type {kind!r} (only absolute and rotary are re-implemented)"
    layer = esm.encoder.layer[len(esm.encoder.layer) - 1]
    if "position_embeddings" not in inspect.signature(type(layer).forward).parameters:
        return f"{type(layer).__name__}.forward takes no position_embeddings"
    if kind == "rotary" and getattr(esm, "rotary_embeddings", None) is None:
        return f"{type(esm).__name__} has no model-level rotary embedding"
    sa = getattr(layer.attention, "self", None)
    needed = ("num_attention_heads", "attention_head_size", "query", "key", "value")
    if sa is None or not all(hasattr(sa, a) for a in needed):
        return f"{type(layer).__name__}'s self-attention lacks one of {needed}"
    if not (
        hasattr(layer.attention, "LayerNorm")
        and hasattr(layer.attention, "output")
        and hasattr(layer, "feed_forward_chunk")
    ):
        return f"{type(layer).__name__} lacks attention.LayerNorm, .output or feed_forward_chunk"
    return None


def gathered_last_layer_supported(model) -> bool:
    """Whether :func:`encoder_at_selected` can run ``model`` (an ``EsmForMaskedLM``).

    Checked once per installed transformers release and model class; when not,
    one warning on the ``bioprune`` logger says why and that the plain path (the
    same scores, the last layer on every position) is used instead.
    """
    import transformers

    esm = model.esm
    key = (
        transformers.__version__,
        type(esm),
        getattr(esm.config, "position_embedding_type", "absolute"),
    )
    if key not in _support_checked:
        reason = _gathered_unsupported_reason(esm)
        _support_checked[key] = reason
        if reason is not None:
            log.warning(
                "gathered last layer off: %s; scoring runs the last encoder layer on every "
                "position (the same scores, slower)",
                reason,
            )
    return _support_checked[key] is None


def plan_parts(
    corpus, indices: np.ndarray, *, batch_tokens: int, max_batch_size: int | None, part_batches: int
) -> list[list[np.ndarray]]:
    """Length-bucketed batches under a token budget, grouped into parts.

    Returns a list of parts, each a list of batches (int64 arrays of corpus
    indices). The plan depends only on the corpus lengths, ``indices`` and the
    three numbers, so every rank and every restart sees the same plan.
    """
    if part_batches < 1:
        raise ValueError(f"--part-batches must be >= 1 (got {part_batches})")
    indices = np.asarray(indices, dtype=np.int64)
    framed = corpus.lengths[indices] + 2
    batches = token_budget_batches(
        framed, indices, max_tokens=batch_tokens, max_batch_size=max_batch_size
    )
    return [batches[i : i + part_batches] for i in range(0, len(batches), part_batches)]


def _gather_rows(x: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """``x[b, order[b, s]]``: ``(B, T, D)`` -> ``(B, S, D)``."""
    return x.gather(1, order.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def gathered_last_layer(
    layer,
    hidden: torch.Tensor,
    attention: torch.Tensor,
    order: torch.Tensor,
    rotary: tuple[torch.Tensor, torch.Tensor] | None,
) -> torch.Tensor:
    """An ESM encoder layer's output at the positions ``order`` only.

    Equal to ``layer(hidden, ...)[b, order[b]]`` (pre-LN ESM layer, eval mode):
    keys and values from the layer-normed input at every position, queries only
    at ``order``, then attention, output projection, residual and FFN on those
    rows. Built from the layer's own submodules, so their hooks see the inputs
    and outputs they would see in the full layer, restricted to ``order``.

    Parameters
    ----------
    layer : an ``EsmLayer`` (no cross-attention).
    hidden : ``(B, T, H)`` the layer's input.
    attention : ``(B, T)`` 1 for real tokens, 0 for padding (keys masked out).
    order : ``(B, S)`` int64 positions to compute, in ``0 .. T-1``.
    rotary : ``(cos, sin)`` of shape ``(1 or B, T, head_dim)`` for rotary
        models (applied to the queries at their original positions), else None.

    Returns
    -------
    ``(B, S, H)`` the layer's output at ``order``.
    """
    from transformers.models.esm.modeling_esm import rotate_half

    att = layer.attention
    sa = att.self
    b, t, _ = hidden.shape
    s = order.shape[1]
    heads, head_dim = sa.num_attention_heads, sa.attention_head_size
    normed = att.LayerNorm(hidden)  # every position: keys and values
    q = sa.query(_gather_rows(normed, order)).view(b, s, heads, head_dim).transpose(1, 2)
    k = sa.key(normed).view(b, t, heads, head_dim).transpose(1, 2)
    v = sa.value(normed).view(b, t, heads, head_dim).transpose(1, 2)
    # ESM scales the query before the rotary embedding (as EsmSelfAttention does).
    q = q * head_dim**-0.5
    if rotary is not None:
        cos, sin = rotary
        cos = cos.expand(b, -1, -1)
        sin = sin.expand(b, -1, -1)
        cos_q, sin_q = _gather_rows(cos, order), _gather_rows(sin, order)
        dtype = q.dtype
        q = (q.float() * cos_q.unsqueeze(1) + rotate_half(q.float()) * sin_q.unsqueeze(1)).to(dtype)
        k = (k.float() * cos.unsqueeze(1) + rotate_half(k.float()) * sin.unsqueeze(1)).to(dtype)
    key_mask = (attention > 0).view(b, 1, 1, t)
    ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, scale=1.0)
    ctx = ctx.transpose(1, 2).reshape(b, s, heads * head_dim)
    attended = att.output(ctx, _gather_rows(hidden, order))  # dense + residual
    return layer.feed_forward_chunk(attended)


def encoder_at_selected(
    model, tracker, input_ids: torch.Tensor, attention: torch.Tensor, order: torch.Tensor
) -> torch.Tensor:
    """``model.esm(...).last_hidden_state`` at the positions ``order`` only: ``(B, S, H)``.

    The embeddings and all layers but the last run as HF runs them; the last
    layer runs through :func:`gathered_last_layer`, then the final layer norm
    on the ``S`` rows.
    """
    if hasattr(model, "encoder_at_selected"):  # ESM-C: the model computes its own gathered layer
        return model.encoder_at_selected(tracker.enter, input_ids, attention, order)
    from transformers.masking_utils import create_bidirectional_mask

    esm = model.esm
    if esm.config.is_decoder or esm.config.add_cross_attention:
        raise ValueError("the gathered last layer needs an encoder-only ESM model")
    hidden = esm.embeddings(input_ids=input_ids, attention_mask=attention)
    mask = create_bidirectional_mask(
        config=esm.config, inputs_embeds=hidden, attention_mask=attention
    )
    rotary = None
    if esm.position_embedding_type == "rotary":
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        rotary = esm.rotary_embeddings(hidden, positions)
    layers = esm.encoder.layer
    for layer in layers[:-1]:
        hidden = layer(hidden, attention_mask=mask, position_embeddings=rotary)
    last = layers[len(layers) - 1]
    hidden = gathered_last_layer(last, tracker.enter(last, hidden), attention, order, rotary)
    if esm.encoder.emb_layer_norm_after is not None:
        hidden = esm.encoder.emb_layer_norm_after(hidden)
    return hidden


@dataclass
class BatchResult:
    """Per-example results of one batch (all arrays of the batch's length)."""

    indices: np.ndarray  # int64 corpus indices
    loss: np.ndarray  # float64, mean MLM loss over the draws
    score: np.ndarray | None  # float64, eq. 11 (score mode)
    nonfinite: np.ndarray  # bool: a loss or gradient was not finite
    tokens: int  # real (unpadded) tokens processed, all draws


class MLMGradientRunner:
    """Runs batches of corpus examples through the model under a tracker.

    Parameters
    ----------
    model : ``EsmForMaskedLM`` in eval mode, on ``device``.
    alphabet : the corpus alphabet.
    corpus : a :class:`bioprune.data.corpus.Corpus`.
    tracker : an entered :class:`PerExampleGradients`.
    seed, draws : mask seed and number of draws ``K`` (draws ``0..K-1``).
    autocast_dtype : ``torch.bfloat16`` for bf16 autocast, else ``None``.
    loss_reduction : which loss the gradients are of: ``"mean"`` (the mean over
        an example's selected positions, method.md section 3 and eq. 11),
        ``"sum"`` (the sum: gradients x n, scores x n^2 for ``n`` selected
        positions) or ``"per-masked"`` (scores x n). Reported losses are means.
    """

    def __init__(
        self,
        model,
        alphabet: Alphabet,
        corpus,
        tracker: PerExampleGradients,
        *,
        seed: int,
        draws: int,
        device: torch.device,
        autocast_dtype: torch.dtype | None = None,
        loss_reduction: str = "mean",
    ):
        if loss_reduction not in LOSS_REDUCTIONS:
            raise ValueError(f"reduction {loss_reduction!r}: choose {' or '.join(LOSS_REDUCTIONS)}")
        if draws < 1:
            raise ValueError(f"--mask-draws must be >= 1 (got {draws})")
        if model.training:
            raise ValueError("the model must be in eval mode (no dropout) for influence scores")
        self.model = model
        self.alphabet = alphabet
        self.corpus = corpus
        self.tracker = tracker
        self.seed = int(seed)
        self.draws = int(draws)
        self.device = device
        self.autocast_dtype = autocast_dtype
        self.loss_reduction = loss_reduction

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.autocast_dtype)

    def run_batch(self, indices: np.ndarray) -> BatchResult:
        """All ``K`` draws of one batch; the tracker holds the batch's reductions after."""
        indices = np.asarray(indices, dtype=np.int64)
        b = len(indices)
        self.tracker.begin_batch(b)
        loss_sum = torch.zeros(b, dtype=torch.float64, device=self.device)
        framed = [self.corpus.framed(int(i)) for i in indices]
        tokens = 0
        for k in range(self.draws):
            draws = [
                mask_draw(
                    self.corpus.residues(int(i)),
                    self.alphabet,
                    seed=self.seed,
                    index=int(i),
                    draw=k,
                )
                for i in indices
            ]
            batch = collate_masked(framed, draws, self.alphabet, indices).to_torch(self.device)
            tokens += int(batch["attention_mask"].sum())
            loss_sum += self.forward_backward(batch)
        loss = loss_sum / self.draws
        nonfinite = ~torch.isfinite(loss)
        score = None
        reduction = self.tracker.reduction
        if reduction.per_example:
            score_t = reduction.scores / self.draws
            nonfinite |= ~torch.isfinite(score_t)
            score = score_t.cpu().numpy()
        elif not bool(nonfinite.any()) and not reduction.is_finite():
            # Finite losses but an overflowing gradient: find the examples one by one
            # (an example's gradient does not depend on its batch neighbours).
            if b == 1:
                nonfinite = torch.ones(1, dtype=torch.bool, device=self.device)
            else:
                nonfinite = torch.tensor(
                    [not self._alone_is_finite(i) for i in indices], device=self.device
                )
                self.tracker.begin_batch(b)  # the batch's sums are void; the caller reruns
        return BatchResult(
            indices=indices,
            loss=loss.cpu().numpy(),
            score=score,
            nonfinite=nonfinite.cpu().numpy(),
            tokens=tokens,
        )

    def _alone_is_finite(self, index: int) -> bool:
        return not bool(self.run_batch(np.array([index], dtype=np.int64)).nonfinite[0])

    def per_example_loss(self, batch: dict) -> torch.Tensor:
        """Forward pass: ``(B,)`` cross-entropy over each example's selected positions.

        Sets the tracker's masks; the LM head sees only the selected positions.
        """
        input_ids = batch["input_ids"]
        attention = batch["attention_mask"]
        labels = batch["labels"]
        selected = labels != IGNORE_INDEX
        counts = selected.sum(1)
        if bool((counts == 0).any()):
            raise ValueError("an example has no selected position; mask draws select at least one")
        width = int(counts.max())
        # Selected positions first, in position order (stable sort on "not selected").
        order = torch.argsort((~selected).to(torch.int8), dim=1, stable=True)[:, :width]
        head_valid = torch.arange(width, device=labels.device).unsqueeze(0) < counts.unsqueeze(1)
        head_labels = labels.gather(1, order).masked_fill(~head_valid, IGNORE_INDEX)
        self.tracker.set_masks(tokens=attention.float(), head=head_valid.float())
        with self._autocast():
            if self.tracker.gather_last_layer:
                rows = encoder_at_selected(self.model, self.tracker, input_ids, attention, order)
            else:
                hidden = self.model.esm(
                    input_ids=input_ids, attention_mask=attention
                ).last_hidden_state
                rows = _gather_rows(hidden, order)
            logits = self.model.lm_head(rows)
        ce = F.cross_entropy(
            logits.float().reshape(-1, logits.shape[-1]),
            head_labels.reshape(-1),
            ignore_index=IGNORE_INDEX,
            reduction="none",
        ).view(head_labels.shape)
        return ce.sum(1) / counts

    def _scaled(self, loss: torch.Tensor, batch: dict) -> torch.Tensor:
        """The loss whose gradient is taken: the mean, or scaled for another reduction."""
        if self.loss_reduction == "mean":
            return loss
        counts = (batch["labels"] != IGNORE_INDEX).sum(1).to(loss.dtype)
        return loss * (counts if self.loss_reduction == "sum" else counts.sqrt())

    def forward_backward(self, batch: dict) -> torch.Tensor:
        """One pass: per-example losses (float64, detached) after the hooked backward."""
        loss = self.per_example_loss(batch)
        leaves = self.tracker.leaves
        if not leaves:
            raise RuntimeError("no stage input was made a leaf: the hooks are not installed")
        torch.autograd.grad(self._scaled(loss, batch).sum(), leaves, allow_unused=True)
        self.tracker.end_pass()
        return loss.detach().to(torch.float64)


@dataclass
class GradientPass:
    """What a Fisher or score pass runs: the model, corpus, scored tensors, masks, precision.

    The in-memory functions and the file-based runs of ``fisher`` and ``score``
    build one and run their batches through :meth:`runner`, so both compute the
    same numbers.
    """

    model: object
    alphabet: Alphabet
    corpus: object
    names: list[str]
    seed: int
    draws: int
    device: torch.device
    autocast: torch.dtype | None = None
    max_chunk_elements: int | None = None
    on_nonfinite: str = "stop"
    loss_reduction: str = "mean"

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32 if self.autocast is None else self.autocast

    def tracker(self, reduction) -> PerExampleGradients:
        """Hooks on the scored tensors that hand squared gradients to ``reduction``."""
        return PerExampleGradients(
            self.model,
            self.names,
            reduction=reduction,
            max_chunk_elements=self.max_chunk_elements,
            compute_dtype=self.compute_dtype,
        )

    def runner(self, tracker: PerExampleGradients) -> MLMGradientRunner:
        return MLMGradientRunner(
            self.model,
            self.alphabet,
            self.corpus,
            tracker,
            seed=self.seed,
            draws=self.draws,
            device=self.device,
            autocast_dtype=self.autocast,
            loss_reduction=self.loss_reduction,
        )
