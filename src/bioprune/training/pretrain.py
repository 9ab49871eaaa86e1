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

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.training.recipe import TrainingConfig

__all__ = ["PretrainConfig", "pretrain", "selection_indices"]


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
            raise ValueError("give exactly one of --preset NAME and --init MODEL_DIR")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1) (got {self.dropout})")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must lie in [0, 1) (got {self.val_fraction})")


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


def _build_model(config: PretrainConfig, corpus):
    import torch

    from bioprune.models.loading import check_model_fits_corpus, load_masked_lm
    from bioprune.models.presets import build_model, count_parameters

    if config.preset is not None:
        torch.manual_seed(config.training.seed)
        model = build_model(config.preset, corpus.alphabet, dropout=config.dropout)
        source = {
            "preset": config.preset,
            "dropout": config.dropout,
            "init_seed": config.training.seed,
        }
        alphabet = corpus.alphabet
    else:
        model, alphabet = load_masked_lm(config.init)
        source = {"init": str(config.init), "init_checksum": artifacts.model_checksum(config.init)}
    check_model_fits_corpus(model, alphabet, corpus, config.preset or config.init)
    source["parameters"] = count_parameters(model)
    return model, source


def pretrain(config: PretrainConfig, *, should_stop=None, console=None) -> dict[str, Any]:
    """Train a masked LM on ``config.corpus`` (or its selection); write ``config.out``.

    Returns the ``training.json`` record. Under ``torchrun`` every rank calls
    this; rank 0 writes the outputs. ``should_stop`` (a callable, see
    :meth:`MaskedLMRecipe.train`) stops the run at the next step boundary with a
    checkpoint and a usable model (``stopped_by`` in the record); ``console`` is
    the rich console progress goes to.
    """
    from bioprune.data.corpus import Corpus
    from bioprune.runtime import start_process
    from bioprune.training.batches import validation_split
    from bioprune.training.recipe import MaskedLMRecipe, check_training_output

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
    train_idx, val_idx = validation_split(indices, config.val_fraction, tc.seed)
    model, source = _build_model(config, corpus)
    data.update(source)
    tc.extra = {
        **tc.extra,
        "val_fraction": config.val_fraction,
        "validation_masks": "mask_draw(seed, index, draw=0), fixed across evaluations",
        "command": "pretrain",
    }
    env = start_process(tc.device)
    run = None
    try:
        run = MaskedLMRecipe(
            tc, model, corpus, train_idx, val_idx, config.out,
            recipe="pretrain", data_fingerprint=data, env=env,
        )  # fmt: skip
        run.setup()
        run.train(should_stop, console=console)
        return run.save({artifacts.MODEL_VALIDATION: val_idx})
    finally:
        if run is not None:
            run.close()
        env.close()
