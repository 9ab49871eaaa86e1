"""Per-example gradients from forward and backward hooks (method.md section 4).

:class:`PerExampleGradients` is a context manager in the style of kronfluence's
trackers and Opacus's grad samplers. For every module that owns a scored tensor
a forward hook keeps the module's input ``a`` (``(B, T, in)``) and registers a
hook on its output, which receives the output gradient ``delta``
(``(B, T, out)``) during backward. There the per-example gradient is built and
reduced at once, one module at a time:

- ``nn.Linear``: ``G_b = sum_t delta_bt a_bt^T`` (one batched matmul), bias
  ``sum_t delta_bt``;
- ``nn.Embedding``: the output gradients are scatter-added into the rows an
  example uses (rows ``padding_idx`` get nothing, as in PyTorch);
- ``nn.LayerNorm``: weight ``sum_t delta_bt * xhat_bt``, bias ``sum_t delta_bt``,
  with ``xhat`` the normalised input;
- the ESM LM head's output bias: ``sum_t delta_bt`` over the logits.

Reductions: what happens to the squared per-example gradients is a reduction
object the tracker is given. :class:`SelfInfluenceReduction` adds
``sum_p G_bp^2 * w_p`` to example ``b``'s score (``w = 1 / (F + lambda)``,
eq. 11); :class:`FisherReduction` adds ``sum_b G_b^2`` to a per-batch float32
buffer (eq. 9) that the caller commits to a float64 total.
At no time are all tensors' per-example gradients held, and the batch weight
gradients are never formed: every parameter gets ``requires_grad=False`` and
autograd flows only through activations.

Where autograd starts: the earliest stage that holds a scored tensor (the
embeddings, an encoder layer, the final layer norm, the LM head) gets a fresh
leaf requiring grad as its input (for the embeddings: the embedding outputs),
so ``--params lm_head`` backpropagates through the head only.

Tied tensors (the LM-head decoder is the word embedding): the tensor's
per-example gradient is the sum of its uses. Each use adds into a pending
per-example buffer, and the sum is squared only after the last use of the
pass has delivered (hooks fire in reverse order of use).

Padding: the caller passes, per pass, the token mask (``(B, T)``, encoder and
embeddings) and the mask of gathered LM-head rows (``(B, S)``); ``delta`` is
multiplied by the mask of the module's region, so pads contribute exactly 0.

Gathered last layer (``gather_last_layer=True``, the default): the runner
computes the last encoder layer's query, attention output, FFN and layer norms
and the final layer norm only at the selected positions (``(B, S, .)``), see
:func:`bioprune.influence.engine.gathered_last_layer`. Those modules then belong
to the ``"head"`` region (:func:`gathered_module_names`); the last layer's
attention layer norm, keys and values still see every position.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from bioprune.influence.params import stage_of

__all__ = [
    "FisherReduction",
    "PerExampleGradients",
    "SelfInfluenceReduction",
    "gathered_module_names",
]

_LAYERNORM_TYPES = (nn.LayerNorm,)


def gathered_module_names(model: nn.Module) -> set[str]:
    """Modules that run on the selected positions only when the last layer is gathered.

    In the last encoder layer only the selected positions' outputs reach the
    loss, so everything after the attention's key/value inputs can run on them
    alone: the query projection, the attention output projection, the FFN layer
    norm and both FFN projections, and the final encoder layer norm. Names as in
    ``model.named_modules()``. A model with its own gathered path (ESM-C) names its
    modules itself (``model.gathered_module_names()``).
    """
    if hasattr(model, "gathered_module_names"):
        return set(model.gathered_module_names())
    last = f"esm.encoder.layer.{len(model.esm.encoder.layer) - 1}"
    names = {
        f"{last}.attention.self.query",
        f"{last}.attention.output.dense",
        f"{last}.LayerNorm",
        f"{last}.intermediate.dense",
        f"{last}.output.dense",
    }
    if model.esm.encoder.emb_layer_norm_after is not None:
        names.add("esm.encoder.emb_layer_norm_after")
    return names


class SelfInfluenceReduction:
    """Per-example scores: example ``b`` gets ``sum_p G_bp^2 * w_p`` (eq. 11).

    ``weights``: name -> ``1 / (F + lambda)`` (float32, on the model's device,
    the tensor's shape). After a batch, ``scores`` holds one float64 sum per
    example (over the passes, i.e. the mask draws).
    """

    per_example = True

    def __init__(self, weights: dict[str, torch.Tensor]):
        if weights is None:
            raise ValueError("self-influence needs the weights 1 / (F + lambda)")
        self.weights = weights
        self.scores: torch.Tensor | None = None

    def begin_batch(self, batch_size: int, shapes: dict, device) -> None:
        self.scores = torch.zeros(batch_size, dtype=torch.float64, device=device)

    def add(self, name: str, g2: torch.Tensor, rows: slice, lo: int, hi: int) -> None:
        """``g2``: ``(examples, numel)`` squared gradients of rows ``lo:hi`` of ``name``."""
        w = self.weights[name][lo:hi]  # whole tensor unless embedding rows
        self.scores[rows] += (g2 @ w.reshape(-1)).to(torch.float64)


class FisherReduction:
    """Sums of squared gradients over the examples of a batch (eq. 9).

    ``batch_sums`` (float32, per tensor) hold the current batch; :meth:`commit`
    adds them to the float64 ``totals`` once the batch is known to be finite.
    """

    per_example = False

    def __init__(self, totals: dict[str, torch.Tensor] | None = None):
        self.batch_sums: dict[str, torch.Tensor] = {}
        self.totals: dict[str, torch.Tensor] = {} if totals is None else totals

    def begin_batch(self, batch_size: int, shapes: dict, device) -> None:
        for name, shape in shapes.items():
            buf = self.batch_sums.get(name)
            if buf is None:
                self.batch_sums[name] = torch.zeros(shape, dtype=torch.float32, device=device)
            else:
                buf.zero_()

    def add(self, name: str, g2: torch.Tensor, rows: slice, lo: int, hi: int) -> None:
        # Non-finite values are caught per batch (is_finite), not per element here.
        target = self.batch_sums[name][lo:hi]
        target.add_((g2[0] if g2.shape[0] == 1 else g2.sum(0)).reshape(target.shape))

    def is_finite(self) -> bool:
        """Whether every sum of squared gradients of this batch is finite."""
        return all(bool(torch.isfinite(buf).all()) for buf in self.batch_sums.values())

    def commit(self) -> None:
        """Add this batch's sums of squared gradients to the float64 totals."""
        for name, buf in self.batch_sums.items():
            total = self.totals.get(name)
            if total is None:
                self.totals[name] = buf.to(torch.float64)
            else:
                total.add_(buf)


class PerExampleGradients:
    """Install per-example gradient hooks on an ESM masked LM.

    Parameters
    ----------
    model : ``EsmForMaskedLM`` in eval mode.
    names : scored tensor names (``named_parameters()`` names).
    reduction : what the squared per-example gradients become: a
        :class:`SelfInfluenceReduction` (scores) or a :class:`FisherReduction`.
    max_chunk_elements : per-example gradients of a module are formed for at
        most this many scalars at a time (several examples per block when a
        whole per-example gradient fits, else one example and a band of the
        weight's rows), which bounds the extra memory. Default (``None``):
        2**21 on CPU, where a block that stays in cache beats one large batched
        matmul (2**18 and 2**19 measured no faster on the ``small`` preset), and
        2**27 on GPU, where large batches keep the device busy. Blocks are
        written into one reused workspace (no allocation per block).
    compute_dtype : dtype of the per-example matmul (float32; bfloat16 under
        bf16 autocast). Squares and sums are always float32, totals float64.
    gather_last_layer : whether the runner computes the last encoder layer on
        the selected positions only (exact, and cheaper); the hooks of those
        modules then take the LM-head mask (see :func:`gathered_module_names`).
        Honoured only where the installed transformers matches the layer it
        re-implements (``engine.gathered_last_layer_supported``; else plain).

    Usage
    -----
    >>> red = SelfInfluenceReduction(w)  # doctest: +SKIP
    >>> with PerExampleGradients(model, names, reduction=red) as tracker:  # doctest: +SKIP
    ...     tracker.begin_batch(batch_size)
    ...     tracker.set_masks(tokens=attention_mask, head=head_mask)
    ...     loss = per_example_losses(...).sum()
    ...     torch.autograd.grad(loss, tracker.leaves, allow_unused=True)
    ...     tracker.end_pass()
    ...     red.scores          # (B,) float64, sum over passes
    """

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        *,
        reduction: SelfInfluenceReduction | FisherReduction,
        max_chunk_elements: int | None = None,
        compute_dtype: torch.dtype = torch.float32,
        gather_last_layer: bool = True,
    ):
        self.model = model
        self.names = list(names)
        self.reduction = reduction
        if max_chunk_elements is None:
            on_gpu = next(model.parameters()).device.type == "cuda"
            max_chunk_elements = 1 << 27 if on_gpu else 1 << 21
        self.max_chunk_elements = int(max_chunk_elements)
        self._workspace: torch.Tensor | None = None
        self.compute_dtype = compute_dtype
        if gather_last_layer:
            # the gathered layer re-implements HF internals: only where they match
            from bioprune.influence.engine import gathered_last_layer_supported

            gather_last_layer = gathered_last_layer_supported(model)
        self.gather_last_layer = bool(gather_last_layer)
        self.cut_module: nn.Module | None = None
        self._name_of: dict[int, str] = {}
        for name in self.names:
            self._name_of[id(model.get_parameter(name))] = name
        self.shapes = {n: tuple(model.get_parameter(n).shape) for n in self.names}
        self._handles: list = []
        self._saved_requires_grad: dict[str, bool] = {}
        # per-batch state
        self.leaves: list[torch.Tensor] = []
        self.fired: set[str] = set()
        self._masks: dict[str, torch.Tensor] = {}
        self._expected: dict[str, int] = defaultdict(int)
        self._pending: dict[str, torch.Tensor] = {}
        self._uses: dict[str, int] = defaultdict(int)
        self._batch_size = 0

    # ------------------------------------------------------------------ setup
    def __enter__(self) -> PerExampleGradients:
        model = self.model
        for name, p in model.named_parameters():
            self._saved_requires_grad[name] = p.requires_grad
            p.requires_grad_(False)
        try:
            self._install_cut()
            self._install_handlers()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        for name, p in self.model.named_parameters():
            if name in self._saved_requires_grad:
                p.requires_grad_(self._saved_requires_grad[name])

    def _install_cut(self) -> None:
        """Make the input of the earliest scored stage a leaf that requires grad."""
        esm = self.model.esm
        first = min(stage_of(n) for n in self.names)
        if first == 0:
            for module in esm.embeddings.modules():
                if isinstance(module, nn.Embedding):
                    self._handles.append(module.register_forward_hook(self._leaf_output_hook))
            return
        if first <= len(esm.encoder.layer):
            target = esm.encoder.layer[first - 1]
        elif first == 1_000_000:
            target = esm.encoder.emb_layer_norm_after
        else:
            target = self.model.lm_head
        # The gathered last layer is not called as a module; the runner calls enter().
        self.cut_module = target
        self._handles.append(
            target.register_forward_pre_hook(self._leaf_input_hook, with_kwargs=True)
        )

    def _leaf_output_hook(self, module, inputs, output):
        leaf = output.detach().requires_grad_()
        self.leaves.append(leaf)
        return leaf

    def enter(self, module: nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        """Input of a stage the runner computes without calling the module itself.

        Returns a fresh leaf requiring grad when ``module`` is where autograd
        starts (as its forward pre-hook would have made), else ``hidden``.
        """
        if module is not self.cut_module:
            return hidden
        leaf = hidden.detach().requires_grad_()
        self.leaves.append(leaf)
        return leaf

    def _leaf_input_hook(self, module, args, kwargs):
        leaf = args[0].detach().requires_grad_()
        self.leaves.append(leaf)
        return (leaf, *args[1:]), kwargs

    def _install_handlers(self) -> None:
        covered: set[str] = set()
        gathered = gathered_module_names(self.model) if self.gather_last_layer else set()
        for mod_name, module in self.model.named_modules():
            own = {
                pname: self._name_of[id(p)]
                for pname, p in module.named_parameters(recurse=False)
                if id(p) in self._name_of
            }
            if not own:
                continue
            head = mod_name.startswith("lm_head") or mod_name in gathered
            region = "head" if head else "tokens"
            if isinstance(module, nn.Linear):
                hook = self._make_linear_hook(module, own, region)
            elif isinstance(module, nn.Embedding):
                hook = self._make_embedding_hook(module, own, region)
            elif isinstance(module, _LAYERNORM_TYPES):
                hook = self._make_layernorm_hook(module, own, region)
            elif set(own) == {"bias"} and type(module).__name__ == "EsmLMHead":
                hook = self._make_output_bias_hook(module, own, region)
            else:
                raise ValueError(
                    f"no per-example gradient rule for {type(module).__name__} "
                    f"{mod_name!r} (parameters {sorted(own.values())}); restrict --params"
                )
            for tensor_name in own.values():
                self._uses[tensor_name] += 1
                covered.add(tensor_name)
            self._handles.append(module.register_forward_hook(hook))
        missing = [n for n in self.names if n not in covered]
        if missing:
            raise ValueError(f"parameters without a module that uses them: {missing}")

    # ------------------------------------------------------------ batch state
    def begin_batch(self, batch_size: int) -> None:
        """Reset the per-example results for a batch of ``batch_size`` examples."""
        device = next(self.model.parameters()).device
        self._batch_size = batch_size
        self.reduction.begin_batch(batch_size, self.shapes, device)

    def set_masks(self, *, tokens: torch.Tensor, head: torch.Tensor) -> None:
        """Masks of real tokens ``(B, T)`` and of gathered LM-head rows ``(B, S)`` for a pass."""
        self._masks = {"tokens": tokens, "head": head}
        self.leaves = []
        self._expected.clear()
        self._pending.clear()

    def end_pass(self) -> None:
        """Reduce tensors whose uses did not all deliver (a use off the loss's path)."""
        for name in list(self._pending):
            self._reduce(name, self._pending.pop(name), slice(None), 0)
        self._expected.clear()
        self.leaves = []

    # -------------------------------------------------------------- handlers
    def _delta(self, grad: torch.Tensor, region: str) -> torch.Tensor:
        mask = self._masks[region]
        if grad.shape[:2] != mask.shape:
            raise RuntimeError(
                f"output gradient of shape {tuple(grad.shape)} does not match the "
                f"{region} mask {tuple(mask.shape)}"
            )
        return grad * mask.to(grad.dtype).unsqueeze(-1)

    def _expect(self, own: dict[str, str]) -> None:
        for tensor_name in own.values():
            self._expected[tensor_name] += 1

    def _forward_hook(self, own: dict[str, str], backward):
        """A forward hook that keeps the module's input and, once the output's gradient
        arrives, calls ``backward(module, input, output_gradient)``."""

        def forward_hook(mod, inputs, output):
            if not output.requires_grad:
                return
            saved = inputs[0].detach()
            self._expect(own)
            output.register_hook(lambda grad: backward(mod, saved, grad))

        return forward_hook

    def _make_linear_hook(self, module: nn.Linear, own: dict[str, str], region: str):
        w_name, b_name = own.get("weight"), own.get("bias")

        def backward(mod, a, grad):
            delta = self._delta(grad, region)
            if w_name is not None:
                out_f, in_f = mod.weight.shape
                self._deliver(w_name, self._linear_chunks(delta, a, out_f * in_f))
            if b_name is not None:
                self._deliver(b_name, iter([(slice(None), delta.float().sum(1), 0)]))

        return self._forward_hook(own, backward)

    def _linear_chunks(
        self, delta: torch.Tensor, a: torch.Tensor, numel: int
    ) -> Iterator[tuple[slice, torch.Tensor, int]]:
        """Per-example weight gradients ``G_b = delta_b^T a_b`` in blocks of examples and rows.

        A block holds at most ``max_chunk_elements`` scalars: several examples
        when a whole ``G_b`` fits, else one example and a band of output rows
        (``lo .. lo + r``). The block is squared and reduced right after the
        matmul wrote it, while it is still in cache.
        """
        dt = self.compute_dtype
        b = delta.shape[0]
        out_f, in_f = delta.shape[-1], a.shape[-1]
        step = min(b, max(1, self.max_chunk_elements // numel))
        band = out_f if step > 1 else min(out_f, max(1, self.max_chunk_elements // in_f))
        ws = self._workspace_for(step * band * in_f, dt, delta.device)
        d_t = delta.to(dt).transpose(1, 2)  # (B, out, T), a strided view when dt matches
        a = a.to(dt)
        for start in range(0, b, step):
            rows = slice(start, start + step)
            c = min(step, b - start)
            for lo in range(0, out_f, band):
                r = min(band, out_f - lo)
                g = ws[: c * r * in_f].view(c, r, in_f)
                # (c, r, T) @ (c, T, in): the per-example sums over positions, G_b[lo:lo+r].
                torch.bmm(d_t[rows, lo : lo + r], a[rows], out=g)
                yield rows, g.float(), lo

    def _workspace_for(self, numel: int, dtype: torch.dtype, device) -> torch.Tensor:
        """A flat buffer of at least ``numel`` elements, reused across chunks and modules."""
        ws = self._workspace
        if ws is None or ws.numel() < numel or ws.dtype != dtype or ws.device != device:
            ws = torch.empty(numel, dtype=dtype, device=device)
            self._workspace = ws
        return ws

    def _make_embedding_hook(self, module: nn.Embedding, own: dict[str, str], region: str):
        w_name = own["weight"]
        padding_idx = module.padding_idx

        def backward(mod, ids, grad):
            delta = self._delta(grad, region).float()
            keep = self._masks[region] > 0
            if padding_idx is not None:
                keep = keep & (ids != padding_idx)
            delta = delta * keep.unsqueeze(-1).to(delta.dtype)
            self._deliver(w_name, self._embedding_chunks(delta, ids, keep, mod.embedding_dim))

        return self._forward_hook(own, backward)

    def _embedding_chunks(
        self, delta: torch.Tensor, ids: torch.Tensor, keep: torch.Tensor, dim: int
    ) -> Iterator[tuple[slice, torch.Tensor, int]]:
        if not bool(keep.any()):
            return
        used = ids[keep]
        lo, hi = int(used.min()), int(used.max()) + 1
        rows_used = hi - lo
        local = (ids - lo).clamp(0, rows_used - 1)  # masked positions add zeros anywhere
        step = max(1, self.max_chunk_elements // (rows_used * dim))
        for start in range(0, delta.shape[0], step):
            rows = slice(start, start + step)
            d = delta[rows]
            g = torch.zeros(d.shape[0], rows_used, dim, dtype=d.dtype, device=d.device)
            g.scatter_add_(1, local[rows].unsqueeze(-1).expand(-1, -1, dim), d)
            yield rows, g, lo

    def _make_layernorm_hook(self, module: nn.LayerNorm, own: dict[str, str], region: str):
        w_name, b_name = own.get("weight"), own.get("bias")

        def backward(mod, x, grad):
            delta = self._delta(grad, region).float()
            if w_name is not None:
                xhat = F.layer_norm(x.float(), mod.normalized_shape, eps=mod.eps)
                gw = (delta * xhat).sum(1)
                self._deliver(w_name, iter([(slice(None), gw, 0)]))
            if b_name is not None:
                self._deliver(b_name, iter([(slice(None), delta.sum(1), 0)]))

        return self._forward_hook(own, backward)

    def _make_output_bias_hook(self, module: nn.Module, own: dict[str, str], region: str):
        b_name = own["bias"]

        def backward(mod, _saved, grad):
            delta = self._delta(grad, region).float()
            self._deliver(b_name, iter([(slice(None), delta.sum(1), 0)]))

        return self._forward_hook(own, backward)

    # ------------------------------------------------------------- reduction
    def _deliver(self, name: str, chunks: Iterator[tuple[slice, torch.Tensor, int]]) -> None:
        """One use of tensor ``name`` delivers its per-example gradient, in chunks.

        ``chunks`` yields ``(batch rows, G, first row)``: ``G`` is the per-example
        gradient of those examples, restricted to the tensor's leading rows
        ``first .. first + G.shape[1]`` (embeddings) or whole (others).
        """
        self.fired.add(name)
        shared = self._uses[name] > 1
        for rows, g, lo in chunks:
            if not shared:
                self._reduce(name, g, rows, lo)
                continue
            pending = self._pending.get(name)
            if pending is None:
                pending = torch.zeros(
                    (self._batch_size, *self.shapes[name]), dtype=torch.float32, device=g.device
                )
                self._pending[name] = pending
            pending[rows, lo : lo + g.shape[1]] += g
        if shared:
            self._expected[name] -= 1
            if self._expected[name] <= 0 and name in self._pending:
                self._reduce(name, self._pending.pop(name), slice(None), 0)

    def _reduce(self, name: str, g: torch.Tensor, rows: slice, lo: int) -> None:
        """Square ``g`` (destroys it) and hand it to the reduction."""
        c = g.shape[0]
        self.reduction.add(name, g.square_().reshape(c, -1), rows, lo, lo + g.shape[1])
