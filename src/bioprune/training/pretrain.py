"""Pretraining from scratch on a corpus or a coreset (paper A.3/A.4, method.md section 6).

Recipe: AdamW, lr 1e-4, weight decay 0.01, linear warmup over 2,000 steps then
inverse-square-root decay, batch 16, 10 epochs — or a fixed budget of steps or
tokens (``max_steps`` / ``max_tokens``, whichever comes first) so that coresets
of different sizes get equal compute. A seeded validation split of the training
examples is held out (its indices are saved) for MLM loss and perplexity.

Lifecycle: :func:`pretrain` sets up (corpus, selection, split, model), hands
the loop to :class:`~bioprune.training.recipe.MaskedLMRecipe` (train,
checkpoint) and saves the model directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.errors import ConfigError
from bioprune.progress import ProgressCallback
from bioprune.training.recipe import TrainingConfig, own_rng

__all__ = ["PretrainConfig", "pretrain", "pretrain_model", "selection_indices"]


@dataclass
class PretrainConfig:
    """What ``bioprune pretrain`` was asked to do."""

    corpus: Path
    """Prepared corpus directory."""
    out: Path
    """Model directory to write."""
    selection: Path | None = None
    """Selection directory (``bioprune select``); train on its examples only."""
    preset: str | None = None
    """Initialise a preset architecture from scratch (seeded with ``training.seed``)."""
    init: Path | None = None
    """Start from this model directory's weights instead."""
    dropout: float = 0.0
    """Dropout of a preset model (ignored with ``init``)."""
    val_fraction: float = 0.02
    """Fraction of the training examples held out for validation."""
    training: TrainingConfig = field(default_factory=TrainingConfig)

    def __post_init__(self) -> None:
        if (self.preset is None) == (self.init is None):
            raise ConfigError("preset", "give exactly one of --preset NAME and --init MODEL_DIR")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError("dropout", f"must lie in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("val_fraction", f"must lie in [0, 1) (got {self.val_fraction})")


def selection_indices(selection: str | Path, corpus) -> tuple[np.ndarray, dict[str, Any]]:
    """Corpus indices of a selection directory's examples, and its checksums.

    Reads ``selection.parquet`` (column ``index``; its ``id`` column, when
    present, must name the same examples in ``corpus``), else ``ids.txt`` (one
    id per line) mapped through :meth:`Corpus.indices_of`. A ``selection.json``
    that records another corpus checksum is refused.
    """
    selection = Path(selection)
    _check_selection_corpus(selection, corpus)
    table_path = selection / artifacts.SELECTION_TABLE
    ids_path = selection / artifacts.SELECTION_IDS
    if table_path.is_file():
        import pyarrow.parquet as pq

        names = pq.read_schema(table_path).names
        if "index" not in names:
            raise ValueError(f"{table_path} has no 'index' column (columns: {names})")
        table = pq.read_table(table_path, columns=[c for c in ("index", "id") if c in names])
        idx = table.column("index").to_numpy().astype(np.int64)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(corpus)):
            raise ValueError(
                f"{table_path}: indices outside corpus {corpus.path} of {len(corpus)} examples; "
                "was the selection made from another corpus?"
            )
        if "id" in names:
            ids = corpus.ids()[idx]
            wanted = table.column("id").to_numpy(zero_copy_only=False)
            bad = np.flatnonzero(ids != wanted)
            if bad.size:
                r = int(bad[0])
                raise ValueError(
                    f"{table_path} row {r}: index {idx[r]} is {ids[r]!r} in corpus {corpus.path} "
                    f"but the selection says {wanted[r]!r}; the selection is from another corpus"
                )
        source = table_path
    elif ids_path.is_file():
        ids = [line.strip() for line in ids_path.read_text().splitlines() if line.strip()]
        idx = corpus.indices_of(ids)
        source = ids_path
    else:
        raise FileNotFoundError(
            f"{selection} holds neither {artifacts.SELECTION_TABLE} nor {artifacts.SELECTION_IDS}; "
            "create it with `bioprune select`"
        )
    if len(np.unique(idx)) != len(idx):
        raise ValueError(f"{source} lists some examples more than once")
    if len(idx) == 0:
        raise ValueError(f"{source} selects no examples")
    info = {"selection": str(selection), "selection_checksum": artifacts.file_checksum(source)}
    return np.sort(idx), info


def _check_selection_corpus(selection: Path, corpus) -> None:
    """Refuse a selection made from another corpus (its ``selection.json`` checksum).

    Ids alone do not tell corpora apart: two corpora may share ids
    (``seq1``, ``seq2``, ...) and hold other sequences under them.
    """
    import json

    meta_path = selection / artifacts.SELECTION_META
    if not meta_path.is_file():
        return  # a hand-made selection (ids.txt / selection.parquet only): ids are checked
    try:
        meta = json.loads(meta_path.read_text())
    except ValueError as exc:
        raise ValueError(f"{meta_path} is not valid JSON ({exc})") from None
    inputs = meta.get("inputs") if isinstance(meta, dict) else None
    inputs = inputs if isinstance(inputs, dict) else {}
    recorded = inputs.get("corpus_checksum") or (inputs.get("scores_metadata") or {}).get(
        "corpus_checksum"
    )
    if recorded and recorded != corpus.checksum:
        raise ValueError(
            f"{meta_path}: the selection was made from another corpus (checksum "
            f"{recorded[:24]}..., {corpus.path} has {corpus.checksum[:24]}...); "
            "pass the --corpus it was selected from"
        )


def _preset_model(preset: str, alphabet, dropout: float, seed: int):
    """A preset initialised after ``torch.manual_seed(seed)``, and its record.

    Called inside :func:`~bioprune.training.recipe.own_rng`, so the caller's global
    stream is restored afterwards while training continues from this seeded state
    (as it always has).
    """
    import torch

    from bioprune.models.presets import build_model

    torch.manual_seed(seed)
    model = build_model(preset, alphabet, dropout=dropout)
    return model, {"preset": preset, "dropout": dropout, "init_seed": seed}, alphabet


def _init_model(init: Path):
    from bioprune.models.loading import load_masked_lm

    model, alphabet = load_masked_lm(init)
    return model, {"init": str(init), "init_checksum": artifacts.model_checksum(init)}, alphabet


def _train_pretrain(
    tc: TrainingConfig,
    corpus,
    indices: np.ndarray,
    data: dict[str, Any],
    make_model: Callable[[], tuple[Any, dict[str, Any], Any]],
    *,
    val_fraction: float,
    out: Path | None,
    should_stop=None,
    progress: ProgressCallback | None = None,
):
    """Split, build the model (``make_model``), run the recipe; returns ``(model, record)``."""
    from bioprune.models.loading import check_model_fits_corpus
    from bioprune.models.presets import count_parameters
    from bioprune.training.batches import validation_split
    from bioprune.training.recipe import MaskedLMRecipe, run_recipe

    train_idx, val_idx = validation_split(indices, val_fraction, tc.seed)
    with own_rng(tc.device):
        model, source, alphabet = make_model()
        check_model_fits_corpus(model, alphabet, corpus, source.get("preset") or source.get("init"))
        data = {**data, **source, "parameters": count_parameters(model)}
        extra = {
            **tc.extra,
            "val_fraction": val_fraction,
            "validation_masks": "mask_draw(seed, index, draw=0), fixed across evaluations",
            "command": "pretrain",
        }
        make = partial(
            MaskedLMRecipe, replace(tc, extra=extra), model, corpus, train_idx, val_idx, out,
            recipe="pretrain", data_fingerprint=data, progress=progress,
        )  # fmt: skip
        record = run_recipe(
            make, tc.device, should_stop=should_stop,
            extra_files={artifacts.MODEL_VALIDATION: val_idx},
        )  # fmt: skip
    return model, record


def pretrain(
    config: PretrainConfig, *, should_stop=None, progress: ProgressCallback | None = None
) -> dict[str, Any]:
    """Train a masked LM on ``config.corpus`` (or its selection); write ``config.out``.

    Returns the ``training.json`` record. Under ``torchrun`` every rank calls
    this; rank 0 writes the outputs. ``should_stop`` (a callable, see
    :meth:`MaskedLMRecipe.train`) stops the run at the next step boundary with a
    checkpoint and a usable model (``stopped_by`` in the record); ``progress``
    receives :class:`~bioprune.training.progress.TrainingEvent` objects.
    """
    from bioprune.data.corpus import Corpus
    from bioprune.training.recipe import check_training_output

    tc = config.training
    artifacts.check_not_input(config.out, (config.corpus, config.selection, config.init))
    check_training_output(config.out, tc.overwrite, tc.resume)
    corpus = Corpus(config.corpus)
    data: dict[str, Any] = {"corpus": str(config.corpus), "corpus_checksum": corpus.checksum}
    if config.selection is not None:
        indices, sel_info = selection_indices(config.selection, corpus)
        data.update(sel_info)
    else:
        indices = np.arange(len(corpus), dtype=np.int64)
    if config.preset is not None:
        make_model = partial(_preset_model, config.preset, corpus.alphabet, config.dropout, tc.seed)
    else:
        make_model = partial(_init_model, config.init)
    _, record = _train_pretrain(
        config.training, corpus, indices, data, make_model, val_fraction=config.val_fraction,
        out=config.out, should_stop=should_stop, progress=progress,
    )  # fmt: skip
    return record


def pretrain_model(
    corpus,
    *,
    model=None,
    preset: str = "tiny",
    dropout: float = 0.0,
    indices: np.ndarray | None = None,
    val_fraction: float = 0.02,
    steps: int | None = None,
    epochs: int | None = None,
    lr: float | None = None,
    warmup_steps: int | None = None,
    batch_size: int | None = None,
    seed: int | None = None,
    device: str | None = None,
    training: TrainingConfig | None = None,
    should_stop: Callable[[], bool | str | None] | None = None,
    progress: ProgressCallback | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
):
    """Pretrain a masked LM on a corpus in memory; returns the trained model (eval mode).

    The same recipe as ``bioprune pretrain`` (same weights for the same seed):
    ``model`` is trained in place, or, without one, ``preset`` is initialised
    from ``seed``. ``indices`` restricts training to those corpus examples (a
    selection); a seeded ``val_fraction`` of them is held out for validation.
    ``steps``, ``epochs``, ``lr``, ``warmup_steps``, ``batch_size``, ``seed`` and
    ``device`` override the matching fields of ``training`` (default: the
    paper's :class:`~bioprune.training.recipe.TrainingConfig`), which is never
    modified. Files are written only with ``out`` (a model directory, as the
    command writes; ``overwrite`` replaces one). The caller's torch random state
    is restored afterwards. The run's ``training.json`` record is on the
    returned model as ``model.bioprune_training``. Examples: docs/training.md
    ("From Python") and docs/api.md (run as doctests).
    """
    from bioprune.training.recipe import check_training_output

    given = {
        "max_steps": steps, "epochs": epochs, "lr": lr, "warmup_steps": warmup_steps,
        "batch_size": batch_size, "seed": seed, "device": device,
    }  # fmt: skip
    tc = replace(training or TrainingConfig(), **{k: v for k, v in given.items() if v is not None})
    if out is not None:
        out = Path(out)
        check_training_output(out, overwrite, resume=False)
        tc = replace(tc, overwrite=overwrite, resume=False)
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError("val_fraction", f"must lie in [0, 1) (got {val_fraction})")
    if indices is None:
        indices = np.arange(len(corpus), dtype=np.int64)
    data = corpus_record(corpus)
    if model is None:
        make_model = partial(_preset_model, preset, corpus.alphabet, dropout, tc.seed)
    else:
        make_model = partial(_given_model, model, corpus.alphabet)
    model, record = _train_pretrain(
        tc, corpus, np.sort(np.asarray(indices, dtype=np.int64)), data, make_model,
        val_fraction=val_fraction, out=out, should_stop=should_stop, progress=progress,
    )  # fmt: skip
    model.eval()
    model.bioprune_training = record
    return model


def corpus_record(corpus) -> dict[str, Any]:
    """Where a corpus came from, for ``training.json``: its directory or ``"in memory"``."""
    path = getattr(corpus, "path", None)
    return {"corpus": str(path) if path else "in memory", "corpus_checksum": corpus.checksum}


def _given_model(model, alphabet):
    return model, {"model": f"{type(model).__name__} given in memory"}, alphabet
