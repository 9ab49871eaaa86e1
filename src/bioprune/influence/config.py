"""The arguments of ``bioprune fisher`` and ``bioprune score``, each written once.

Plain dataclasses importing only the standard library, so the CLI builds its options
from them (:func:`bioprune.cli.options.with_options`) without loading NumPy or torch.
The options the two passes share (batching, device, failure policy, resume) are one
base class, :class:`PassConfig`; its fields are keyword-only, so the positional order
of each config is its own (``FisherConfig(model, corpus, out, ...)``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from bioprune.errors import ConfigError

__all__ = [
    "FISHER_MODES",
    "IN_MEMORY_OPTIONS",
    "FisherConfig",
    "PassConfig",
    "ScoreConfig",
    "check_pass_arguments",
    "pass_options",
]

#: exact: the diagonal Fisher only; factored: also rank-one factors of 1/(F + lambda).
FISHER_MODES = ("exact", "factored")

_LOG_EVERY_S_HELP = (
    "A plain progress line every S seconds (done/total, ex/s, tok/s, elapsed, ETA) "
    "instead of the bar; default: the bar on a terminal, a line every 30 s otherwise."
)


def _opt(default, help: str, **meta):
    return field(default=default, metadata={"help": help, **meta})


def _required(help: str):
    return field(metadata={"help": help})


@dataclass(kw_only=True)
class PassConfig:
    """What a Fisher pass and a scoring pass share: batching, device, failures, resume."""

    batch_tokens: int = _opt(8192, "Padded tokens per batch (length-bucketed batches).")
    max_batch_size: int | None = _opt(None, "Optional cap on examples per batch.")
    part_batches: int = _opt(16, "Batches per resumable part (the unit of checkpoints and ranks).")
    device: str = _opt("auto", "auto (CUDA when available), cpu or cuda.")
    dtype: str = _opt(
        "float32",
        "float32, or bfloat16 (autocast; Fisher and scores still accumulate in float32/64).",
    )
    on_nonfinite: str = _opt(
        "stop",
        "stop: a non-finite loss or gradient stops the run naming the ids; "
        "skip: record NaN / leave the example out, count and report it.",
    )
    save_masks: Path | None = _opt(
        None, "Parquet of every (example, draw): index, draw, positions, inputs."
    )
    resume: bool = _opt(False, "Continue a killed run from its parts directory.")
    overwrite: bool = _opt(False, "Replace an existing OUT.")
    #: per-example gradient chunk (elements); None: chosen by device
    max_chunk_elements: int | None = field(default=None, metadata={"cli": False})
    #: the CLI sets it from --no-progress
    progress: bool = field(default=True, metadata={"cli": False})
    progress_every_s: float | None = _opt(None, _LOG_EVERY_S_HELP, flag="--log-every-s")
    fisher_mode: str = _opt(
        "exact",
        "exact: the diagonal Fisher (eq. 11). factored: a rank-one fit u v^T of "
        "1/(F + lambda) per weight matrix (fisher: fit and store it; score: use it, "
        "exact for those weights, not for the diagonal Fisher; faster on long sequences).",
    )

    def check_pass(self, mask_draws: int | None, seed: int | None) -> None:
        check_pass_arguments(
            mask_draws=mask_draws,
            seed=seed,
            on_nonfinite=self.on_nonfinite,
            batch_tokens=self.batch_tokens,
            fisher_mode=self.fisher_mode,
        )


@dataclass
class FisherConfig(PassConfig):
    """Arguments of ``bioprune fisher`` (validated by ``compute_fisher``)."""

    cli_order: ClassVar[tuple[str, ...]] = (
        "model", "corpus", "out", "subset_size", "subset_from", "seed", "mask_draws",
        "params", "damping", "batch_tokens", "max_batch_size", "part_batches",
        "checkpoint_seconds",
    )  # fmt: skip

    model: Path = _required("Model directory (HF format).")
    corpus: Path = _required("Corpus directory (bioprune prepare).")
    out: Path = _required("Fisher file to write (.safetensors).")
    subset_size: str | None = _opt(None, "Random subset: a count (1000) or a fraction (0.01, 1%).")
    subset_from: Path | None = _opt(
        None,
        "Reuse a subset: .npy or text file of corpus indices, or a `bioprune adapt` "
        "model directory (its subset_indices.npy).",
    )
    seed: int = _opt(0, "Seed of the subset draw and of the mask draws.")
    mask_draws: int = _opt(1, "Mask draws K per example.")
    params: str = _opt(
        "all", "all, lm_head, layers:I:J (encoder layers I <= i < J, 0-based) or a regex."
    )
    damping: float = _opt(1e-3, "lambda_p = damping * mean(F over p's tensor).")
    checkpoint_seconds: float = _opt(300.0, "Seconds between checkpoints of the running sums.")

    def validate(self) -> None:
        if (self.subset_size is None) == (self.subset_from is None):
            raise ConfigError("subset_size", "give exactly one of --subset-size and --subset-from")
        self.check_pass(self.mask_draws, self.seed)
        if not self.damping > 0:
            raise ConfigError("damping", f"must be > 0 (got {self.damping})")


@dataclass
class ScoreConfig(PassConfig):
    """Arguments of ``bioprune score`` (validated by ``compute_scores``)."""

    cli_order: ClassVar[tuple[str, ...]] = (
        "model", "corpus", "fisher", "out", "mask_draws", "seed", "params",
    )  # fmt: skip

    model: Path = _required("Model directory (HF format).")
    corpus: Path = _required("Corpus directory (bioprune prepare).")
    fisher: Path = _required("Fisher file (bioprune fisher).")
    out: Path = _required("Scores to write (.parquet).")
    mask_draws: int | None = _opt(None, "Mask draws K per example (default: the Fisher's).")
    seed: int | None = _opt(None, "Mask seed (default: the Fisher's, so masks match).")
    params: str | None = _opt(
        None,
        "Restrict to these of the Fisher's tensors: lm_head, layers:I:J or a regex "
        "(default: all of them).",
    )

    def validate(self) -> None:
        self.check_pass(self.mask_draws, self.seed)


def check_pass_arguments(
    *, mask_draws: int | None, seed: int | None, on_nonfinite: str, batch_tokens: int, fisher_mode
) -> None:
    """The checks ``fisher`` and ``score`` share (``None``: take the Fisher's value)."""
    if fisher_mode not in FISHER_MODES:
        raise ConfigError("fisher_mode", f"{fisher_mode!r}: choose exact or factored")
    if mask_draws is not None and mask_draws < 1:
        raise ConfigError("mask_draws", f"must be >= 1 (got {mask_draws})")
    if seed is not None and seed < 0:
        raise ConfigError("seed", f"must be >= 0 (got {seed})")
    if on_nonfinite not in ("stop", "skip"):
        raise ConfigError("on_nonfinite", f"{on_nonfinite!r}: choose stop or skip")
    if batch_tokens < 1:
        raise ConfigError("batch_tokens", f"must be >= 1 (got {batch_tokens})")


#: The :class:`PassConfig` options the in-memory passes (``diagonal_fisher``,
#: ``self_influence``) take as keyword arguments, with PassConfig's defaults.
IN_MEMORY_OPTIONS = ("batch_tokens", "max_batch_size", "on_nonfinite", "fisher_mode", "dtype")


def pass_options(options: dict) -> PassConfig:
    """The keyword ``options`` of an in-memory pass as a :class:`PassConfig` (defaults from
    its fields, so each is written once); a name outside :data:`IN_MEMORY_OPTIONS` is a
    :class:`~bioprune.errors.ConfigError`.

    >>> pass_options({"batch_tokens": 4096}).batch_tokens, pass_options({}).dtype
    (4096, 'float32')
    >>> pass_options({"batch_token": 1})
    Traceback (most recent call last):
    bioprune.errors.ConfigError: batch_token: unknown option; choose from batch_tokens, \
max_batch_size, on_nonfinite, fisher_mode, dtype
    """
    for name in options:
        if name not in IN_MEMORY_OPTIONS:
            raise ConfigError(name, f"unknown option; choose from {', '.join(IN_MEMORY_OPTIONS)}")
    return PassConfig(**options)
