"""The Fisher file: :class:`Fisher` in memory, ``FISHER.safetensors`` on disk.

File format: one float32 tensor per scored parameter, named as in
``model.named_parameters()`` (plus ``factor_u/NAME`` and ``factor_v/NAME`` for
``--fisher-mode factored``), and safetensors metadata (all values JSON strings
but ``format``): ``format``, ``subset`` (the indices, or ``{"file": sidecar}``
for large subsets), ``subset_size``, ``subset_seed``, ``examples`` (``M``),
``damping`` (rule, value and each tensor's lambda), ``mask_seed``,
``mask_draws``, ``params`` (spec, names, size, excluded tensors and why),
``nonfinite`` (skipped indices), ``model_checksum``, ``corpus_checksum``,
``bioprune_version``, ``created``, ``config``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts

__all__ = ["FISHER_FORMAT", "INLINE_SUBSET_MAX", "Fisher", "load_fisher"]

FISHER_FORMAT = "bioprune-fisher-diagonal-v1"
#: Subsets larger than this go to a sidecar ``.npy`` next to the Fisher file.
INLINE_SUBSET_MAX = 10_000


@dataclass
class Fisher:
    """A diagonal Fisher: tensors (float32, CPU), per-tensor damping and metadata.

    ``tensors``: name -> ``F`` (shaped like the parameter); ``lambdas``: name ->
    ``lambda_p``; ``meta``: the record written as the file's metadata (decoded);
    ``checksum``: the file's checksum once saved or loaded (``None`` before);
    ``factors``: name -> ``(u, v)`` float32 with ``u v^T ~ 1/(F + lambda)``
    (``fisher_mode="factored"``).
    """

    tensors: dict[str, object]
    lambdas: dict[str, float]
    meta: dict
    checksum: str | None = None
    factors: dict = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write ``path`` (safetensors, atomically), as ``bioprune fisher`` does.

        A subset of more than ``INLINE_SUBSET_MAX`` indices goes to a sidecar
        ``STEM.subset.npy`` next to it. Sets :attr:`checksum`; returns the path.
        """
        from safetensors.torch import save_file

        from bioprune.influence.factored import FACTOR_PREFIX

        path = Path(path)
        meta = dict(self.meta)
        subset = meta.get("subset")
        if isinstance(subset, (list, np.ndarray)) and len(subset) > INLINE_SUBSET_MAX:
            sidecar = path.with_name(path.stem + ".subset.npy")
            with artifacts.atomic_path(sidecar) as tmp, open(tmp, "wb") as fh:
                np.save(fh, np.asarray(subset, dtype=np.int64))
            meta["subset"] = {"file": sidecar.name, "count": len(subset)}
        encoded = {k: json.dumps(v) for k, v in meta.items() if k != "format"}
        encoded["format"] = FISHER_FORMAT
        tensors = {n: t.contiguous() for n, t in self.tensors.items()}
        for name, (u, v) in self.factors.items():
            tensors[f"{FACTOR_PREFIX}u/{name}"] = u.contiguous()
            tensors[f"{FACTOR_PREFIX}v/{name}"] = v.contiguous()
        with artifacts.atomic_path(path) as tmp:
            save_file(tensors, str(tmp), metadata=encoded)
        self.checksum = artifacts.file_checksum(path)
        return path


def load_fisher(path: str | Path) -> Fisher:
    """Read a Fisher file written by ``bioprune fisher`` or :meth:`Fisher.save`.

    Raises :class:`~bioprune.errors.InputError` naming ``path`` when it is not a
    readable safetensors file (garbage, truncated), not a bioprune Fisher file,
    or when its metadata or values are damaged (missing fields, a tensor without
    its damping, a non-float, negative or non-finite Fisher value).
    """
    import torch
    from safetensors import safe_open

    from bioprune.errors import InputError, reading

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such Fisher file; compute one with `bioprune fisher`")
    tensors = {}
    with reading(path, "Fisher file"), safe_open(str(path), framework="pt") as fh:
        raw = fh.metadata() or {}
        if raw.get("format") != FISHER_FORMAT:  # before reading any tensor data
            raise InputError(
                path,
                f"not a bioprune Fisher file (format {raw.get('format')!r}, expected "
                f"{FISHER_FORMAT!r}); compute one with `bioprune fisher`",
            )
        for name in fh.keys():
            tensors[name] = fh.get_tensor(name)
    with reading(path, "Fisher metadata"):
        meta = {k: (v if k in ("format",) else json.loads(v)) for k, v in raw.items()}
    lambdas = _fisher_lambdas(path, meta)
    factors = _split_factors(path, tensors, meta)
    if not tensors:
        raise InputError(path, "holds no Fisher tensors")
    missing = sorted(n for n in tensors if n not in lambdas)
    if missing:
        raise InputError(path, f"damaged metadata: no damping recorded for {missing[:5]}")
    for name, t in tensors.items():
        if not t.is_floating_point():
            raise InputError(path, f"tensor {name} is {t.dtype}, not a floating-point Fisher")
        if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
            raise InputError(
                path,
                f"tensor {name} holds negative or non-finite values: a diagonal Fisher is a "
                "mean of squares; recompute it with `bioprune fisher`",
            )
    return Fisher(
        tensors=tensors,
        lambdas=lambdas,
        meta=meta,
        checksum=artifacts.file_checksum(path),
        factors=factors,
    )


def _split_factors(path: Path, tensors: dict, meta: dict) -> dict:
    """Move the rank-one factors (``factor_u/NAME``, ``factor_v/NAME``) out of ``tensors``,
    checking them: both present, shaped like NAME's rows and columns, finite and > 0."""
    import torch

    from bioprune.errors import InputError
    from bioprune.influence.factored import FACTOR_PREFIX

    keys = [k for k in tensors if k.startswith(FACTOR_PREFIX)]
    if not keys:
        return {}
    if not isinstance(meta.get("factored"), dict):
        raise InputError(path, "damaged Fisher metadata: factors without the factored record")
    raw = {k: tensors.pop(k) for k in keys}
    factors = {}
    for key in keys:
        if not key.startswith(FACTOR_PREFIX + "u/"):
            continue
        name = key[len(FACTOR_PREFIX) + 2 :]
        u, v = raw[key], raw.get(f"{FACTOR_PREFIX}v/{name}")
        f = tensors.get(name)
        if v is None or f is None or f.ndim != 2:
            raise InputError(path, f"damaged factors of {name}: no matching v or Fisher matrix")
        if tuple(u.shape) != (f.shape[0],) or tuple(v.shape) != (f.shape[1],):
            raise InputError(path, f"damaged factors of {name}: shapes do not match the Fisher")
        for t in (u, v):
            if not bool(torch.isfinite(t).all()) or bool((t <= 0).any()):
                raise InputError(path, f"factors of {name} hold non-positive or non-finite values")
        factors[name] = (u.float(), v.float())
    if len(factors) * 2 != len(keys):
        raise InputError(path, "damaged factors: a u without its v or a stray factor tensor")
    return factors


def _fisher_lambdas(path: Path, meta: dict) -> dict[str, float]:
    """The per-tensor damping of a Fisher file's metadata, after checking the fields that
    ``score`` reads (a file edited or written by another tool fails here, naming the field)."""
    import math

    from bioprune.errors import InputError

    def damaged(what: str) -> InputError:
        return InputError(path, f"damaged Fisher metadata: {what}")

    damping = meta.get("damping")
    lam = damping.get("lambda") if isinstance(damping, dict) else None
    if not isinstance(lam, dict):
        raise damaged("no per-tensor damping (damping.lambda)")
    lambdas = {}
    for name, v in lam.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise damaged(f"damping of {name} is {v!r}, not a finite number >= 0")
        lambdas[name] = float(v)
    for key in ("mask_seed", "mask_draws"):
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if key == "mask_seed" else 1):
            raise damaged(f"{key} is {v!r}")
    params = meta.get("params")
    if not isinstance(params, dict) or not isinstance(params.get("spec"), str):
        raise damaged("no parameter spec (params.spec)")
    if not isinstance(meta.get("model_checksum"), str):
        raise damaged("no model_checksum")
    return lambdas
