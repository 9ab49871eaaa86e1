"""Factored self-influence: a rank-one weight per matrix and a "ghost" norm (method.md 4).

Exact mode (eq. 11) weighs each squared per-example gradient entry by
``w_ij = 1 / (F_ij + lambda)``. The factored mode replaces, for every weight
matrix of an ``nn.Linear`` (``out x in``), that weight by a rank-one product
``w_ij ~ u_i v_j`` (``u`` > 0 of length ``out``, ``v`` > 0 of length ``in``).
Then, with the module's output gradients ``d`` (``T x out``) and inputs ``a``
(``T x in``) of one example, ``G = d^T a`` and::

    sum_ij u_i v_j G_ij^2 = ||D~^T A~||_F^2 = sum_{t,s} (d~_t . d~_s)(a~_t . a~_s)

with ``d~ = d * sqrt(u)`` and ``a~ = a * sqrt(v)`` per position. The right-hand
side (the *Gram form*) costs ``T^2 (in + out)`` multiply-adds per example and
never forms ``G``; the middle form forms the rescaled ``G~ = d~^T a~``
(``T in out``). :class:`FactoredSelfInfluence` takes the cheaper of the two per
module and batch (``T`` is the padded length, or the number of selected
positions in the gathered last layer and the LM head). Biases, layer norms,
embeddings (and the LM-head decoder tied to them) stay exact.

The result is exact for the factored weights ``u v^T``, not for the diagonal
Fisher: it is a different (approximate) score, and the files say so.

**The fit** (:func:`fit_rank_one`): ``1/(F + lambda)`` is positive and spans
orders of magnitude, so the factors are fitted in log space, weighted by how
much each entry contributes to an average score. The expected score term of
entry ``ij`` over the Fisher's subset is ``F_ij w_ij = F/(F + lambda)`` (1 where
the Fisher dominates, ~0 where damping does), so::

    minimise  sum_ij rho_ij (log w_ij - log u_i - log v_j)^2,   rho = F/(F + lambda) + eps

by alternating weighted row and column means (a convex least-squares problem;
each half-step is its exact minimiser), with ``eps = 1e-3 * mean(rho)`` so a row
or column with zero Fisher still gets a defined factor (the damping's ``1/lambda``
scale). A final scalar makes the fit unbiased on average:
``sum F u v^T = sum F w`` (the factored tensor's mean score term over the subset
equals the exact one). Entries where damping dominates may be fitted loosely;
they weigh little in any score, which is the point of the weighting.

Fit errors recorded per tensor (Fisher metadata ``factored.tensors``):

- ``score_rel_error``: ``sum F |u v^T - w| / sum F w``, a bound on the relative
  error of this tensor's average score term;
- ``rms_log_error``: the weighted RMS of ``log(u v^T / w)`` (0.1 ~ 10 %);
- ``max_abs_log_error``: the largest ``|log(u v^T / w)|`` over the tensor.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from torch import nn

from bioprune.influence.hooks import PerExampleGradients, SelfInfluenceReduction

__all__ = [
    "FACTORED_RULE",
    "FACTOR_PREFIX",
    "FactoredSelfInfluence",
    "RankOneFit",
    "factorable_tensors",
    "fit_rank_one",
]

log = logging.getLogger(__name__)

#: Safetensors key prefixes of the factors in a Fisher file: ``factor_u/NAME``, ``factor_v/NAME``.
FACTOR_PREFIX = "factor_"
FACTORED_RULE = (
    "w_ij = 1/(F_ij + lambda) ~ u_i v_j per nn.Linear weight: least squares in log space "
    "weighted by F/(F + lambda) + 1e-3 mean, then one scale so that sum F u v^T = sum F w"
)
#: At most this many sweeps of the weighted log fit (each half-step an exact block minimiser)
FIT_ITERATIONS = 60
#: ... or until no log factor moves by more than this (1e-6 relative) in a sweep.
FIT_TOLERANCE = 1e-6
GRAM_POLICIES = ("auto", "gram", "matrix")


@dataclass
class RankOneFit:
    """``u`` (out,), ``v`` (in,), float32 > 0, ``u v^T ~ 1/(F + lambda)``; and the fit errors."""

    u: torch.Tensor
    v: torch.Tensor
    score_rel_error: float
    rms_log_error: float
    max_abs_log_error: float

    def errors(self) -> dict[str, float]:
        return {
            "score_rel_error": self.score_rel_error,
            "rms_log_error": self.rms_log_error,
            "max_abs_log_error": self.max_abs_log_error,
        }


def fit_rank_one(fisher: torch.Tensor, lam: float, iterations: int = FIT_ITERATIONS) -> RankOneFit:
    """Fit ``u v^T`` to ``w = 1/(F + lambda)`` (``F``: ``(out, in)``, ``lambda > 0``).

    See the module docstring for the objective and the recorded errors.
    """
    if fisher.ndim != 2:
        raise ValueError(f"a rank-one fit needs a matrix (got shape {tuple(fisher.shape)})")
    if not lam > 0:
        raise ValueError(f"the damping lambda must be > 0 for a factored weight (got {lam})")
    f = fisher.detach().to(device="cpu", dtype=torch.float64)
    w = 1.0 / (f + lam)
    logw = w.log()
    rho = f * w
    rho = rho + 1e-3 * float(rho.mean()) + 1e-300
    row_w, col_w = rho.sum(1), rho.sum(0)
    a = torch.zeros(f.shape[0], dtype=torch.float64)
    b = (rho * logw).sum(0) / col_w
    for _ in range(iterations):
        previous = b
        a = (rho * (logw - b)).sum(1) / row_w
        b = (rho * (logw - a[:, None])).sum(0) / col_w
        if float((b - previous).abs().max()) < FIT_TOLERANCE:
            break
    # Unbiased on average: sum F u v^T = sum F w (a shift of log u by a constant).
    approx = torch.exp(a[:, None] + b[None, :])
    total_f = float(f.sum())
    if total_f > 0:
        a = a + (torch.log((f * w).sum()) - torch.log((f * approx).sum()))
        approx = torch.exp(a[:, None] + b[None, :])
    err = approx.log() - logw
    exact_term = float((f * w).sum())
    score_rel = float((f * (approx - w).abs()).sum()) / exact_term if exact_term > 0 else 0.0
    # Split the scale evenly between the factors (keeps both near sqrt of w's scale).
    shift = 0.5 * (float(a.mean()) - float(b.mean()))
    u = torch.exp(a - shift).to(torch.float32)
    v = torch.exp(b + shift).to(torch.float32)
    return RankOneFit(
        u=u,
        v=v,
        score_rel_error=score_rel,
        rms_log_error=float(((rho * err.square()).sum() / rho.sum()).sqrt()),
        max_abs_log_error=float(err.abs().max()),
    )


def factorable_tensors(model: nn.Module, names: list[str]) -> list[str]:
    """Of ``names``, the weight matrices that the factored mode replaces by ``u v^T``.

    A tensor qualifies when it is the ``weight`` of exactly one ``nn.Linear`` and
    of no other module (so the LM-head decoder tied to the word embedding stays
    exact, as embeddings do).
    """
    owners: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            owners.setdefault(id(p), []).append((module, pname))
    out = []
    for name in names:
        uses = owners.get(id(model.get_parameter(name)), [])
        if len(uses) == 1 and isinstance(uses[0][0], nn.Linear) and uses[0][1] == "weight":
            out.append(name)
    return out


class FactoredSelfInfluence(PerExampleGradients):
    """Score-mode hooks where the factored weight matrices use ``u v^T`` (see module doc).

    Parameters
    ----------
    model, names, weights, max_chunk_elements, compute_dtype, gather_last_layer :
        as :class:`~bioprune.influence.hooks.PerExampleGradients` with a
        ``SelfInfluenceReduction(weights)``; ``weights`` must cover the tensors that
        are not factored.
    factors : name -> ``(u, v)`` float32 on the model's device, for ``nn.Linear``
        weights (:func:`factorable_tensors`).
    gram : ``"auto"`` (the cheaper of the Gram form and the rescaled ``G`` per
        module and batch), ``"gram"`` or ``"matrix"`` (force one; tests, benchmarks).

    ``branch_counts`` counts how often each form ran (``{"gram": n, "matrix": m}``).
    """

    def __init__(
        self,
        model: nn.Module,
        names: list[str],
        *,
        weights: dict[str, torch.Tensor],
        factors: dict[str, tuple[torch.Tensor, torch.Tensor]],
        gram: str = "auto",
        max_chunk_elements: int | None = None,
        compute_dtype: torch.dtype = torch.float32,
        gather_last_layer: bool = True,
    ):
        if gram not in GRAM_POLICIES:
            raise ValueError(f"gram must be one of {GRAM_POLICIES} (got {gram!r})")
        unknown = sorted(set(factors) - set(names))
        if unknown:
            raise ValueError(f"factors for tensors that are not scored: {unknown[:5]}")
        missing = sorted(n for n in names if n not in factors and n not in weights)
        if missing:
            raise ValueError(f"neither a weight nor factors for {missing[:5]}")
        super().__init__(
            model,
            names,
            reduction=SelfInfluenceReduction(weights),
            max_chunk_elements=max_chunk_elements,
            compute_dtype=compute_dtype,
            gather_last_layer=gather_last_layer,
        )
        self.factors = factors
        self.gram = gram
        self.branch_counts = {"gram": 0, "matrix": 0}
        self._sqrt: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        for name, (u, v) in factors.items():
            shape = self.shapes[name]
            if len(shape) != 2 or tuple(u.shape) != (shape[0],) or tuple(v.shape) != (shape[1],):
                raise ValueError(
                    f"factors of {name} have shapes {tuple(u.shape)}, {tuple(v.shape)}; "
                    f"the tensor is {shape}"
                )
            self._sqrt[name] = (u.float().sqrt(), v.float().sqrt())
        self._factored_hooked: set[str] = set()

    def _install_handlers(self) -> None:
        super()._install_handlers()
        wrong = sorted(
            n for n in self.factors if n not in self._factored_hooked or self._uses[n] != 1
        )
        if wrong:
            raise ValueError(
                f"tensors {wrong[:5]} are not the weight of exactly one nn.Linear; "
                "the factored mode keeps them exact (factorable_tensors)"
            )

    def _make_linear_hook(self, module: nn.Linear, own: dict[str, str], region: str):
        w_name = own.get("weight")
        if w_name not in self.factors:
            return super()._make_linear_hook(module, own, region)
        self._factored_hooked.add(w_name)
        b_name = own.get("bias")
        sqrt_u, sqrt_v = self._sqrt[w_name]

        def backward(mod, a, grad):
            delta = self._delta(grad, region)
            self.fired.add(w_name)
            self.reduction.scores += self.factored_norms(delta, a, sqrt_u, sqrt_v).to(torch.float64)
            if b_name is not None:
                self._deliver(b_name, iter([(slice(None), delta.float().sum(1), 0)]))

        return self._forward_hook(own, backward)

    def use_gram(self, t: int, n_in: int, n_out: int) -> bool:
        """Whether the Gram form (``T^2 (in + out)``) is cheaper than ``G`` (``T in out``)."""
        if self.gram != "auto":
            return self.gram == "gram"
        return t * (n_in + n_out) < n_in * n_out

    def factored_norms(
        self, delta: torch.Tensor, a: torch.Tensor, sqrt_u: torch.Tensor, sqrt_v: torch.Tensor
    ) -> torch.Tensor:
        """``sum_ij u_i v_j G_bij^2`` per example: ``(B,)`` float32.

        ``delta``: ``(B, T, out)`` masked output gradients; ``a``: ``(B, T, in)``
        inputs. Blocks of examples keep the extra memory under ``max_chunk_elements``.
        """
        dt = self.compute_dtype
        b, t, n_out = delta.shape
        n_in = a.shape[-1]
        d = (delta.float() * sqrt_u).to(dt)
        x = (a.float() * sqrt_v).to(dt)
        out = torch.zeros(b, dtype=torch.float32, device=delta.device)
        gram = self.use_gram(t, n_in, n_out)
        self.branch_counts["gram" if gram else "matrix"] += 1
        if not gram:
            # The rescaled per-example gradients G~ = d~^T a~ in the exact mode's
            # cache-sized blocks (examples, or one example's band of rows), squared in place.
            for rows, g, _ in self._linear_chunks(d, x, n_out * n_in):
                out[rows] += g.square_().sum((1, 2))
            return out
        step = max(1, min(b, self.max_chunk_elements // max(2 * t * t, 1)))
        for start in range(0, b, step):
            rows = slice(start, start + step)
            dd = torch.bmm(d[rows], d[rows].transpose(1, 2)).float()
            aa = torch.bmm(x[rows], x[rows].transpose(1, 2)).float()
            out[rows] = (dd * aa).sum((1, 2))
        return out
