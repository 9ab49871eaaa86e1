"""Turn a training checkpoint (``OUT.ckpt/checkpoint.pt``) into a model directory.

A checkpoint holds the weights, the model's config, its alphabet and the
run's summary at that step, so a model directory can be made from it alone
(no corpus, no initial model): ``bioprune export OUT.ckpt --out MODEL_DIR``.
The result is the same HF format as ``pretrain`` writes (``config.json``,
``model.safetensors``, the alphabet and tokenizer, ``training.json`` with the
step it was taken at, ``curve.csv``) and loads with plain transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bioprune import artifacts

__all__ = ["export_checkpoint"]


def export_checkpoint(checkpoint: str | Path, out: str | Path, *, overwrite: bool = False) -> dict:
    """Write the model of ``checkpoint`` (a ``.ckpt`` directory or its ``checkpoint.pt``).

    Returns the ``training.json`` record written (``stopped_by: "checkpoint"``,
    ``exported_from``). The checkpoint is read without unpickling code.
    """
    from transformers import EsmConfig, EsmForMaskedLM

    from bioprune.data.alphabet import get_alphabet
    from bioprune.models.hf import quiet_transformers
    from bioprune.models.presets import save_alphabet
    from bioprune.training.curve import write_curve_csv
    from bioprune.training.recipe import CHECKPOINT_FILE, load_checkpoint_payload

    path = Path(checkpoint)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} does not exist; give a training checkpoint directory (OUT.ckpt, written "
            "by pretrain/adapt with --checkpoint-every, --max-time, a stop signal or "
            "--keep-checkpoint) or its checkpoint.pt"
        )
    out = artifacts.check_output_dir(out, overwrite)
    payload = load_checkpoint_payload(path)
    if "model_config" not in payload or "alphabet" not in payload:
        raise ValueError(
            f"{path} records no model config (written by an older bioprune); resume the run "
            "with --resume instead, or export it with that version"
        )
    try:
        config = EsmConfig.from_dict(json.loads(payload["model_config"]))
        model = EsmForMaskedLM(config)
        model.load_state_dict(payload["model"])
        alphabet = get_alphabet(payload["alphabet"])
    except (ValueError, KeyError, RuntimeError, TypeError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise ValueError(f"{path}: cannot rebuild the model ({reason})") from None
    state = payload["state"]
    curve = state.get("curve") or []
    val = [r for r in curve if r.get("val_loss") is not None]
    info: dict[str, Any] = {
        **(payload.get("summary") or {}),
        "steps": state.get("step"),
        "epochs_completed": state.get("epoch"),
        "examples_seen": state.get("examples"),
        "tokens_seen": state.get("tokens"),
        "masked_tokens_seen": state.get("masked_tokens"),
        "wall_s": state.get("wall_s"),
        "val_loss": val[-1]["val_loss"] if val else None,
        "val_perplexity": val[-1].get("val_perplexity") if val else None,
        "stopped_by": "checkpoint",
        "checkpoint": None,
        "exported_from": str(path),
        "exported_checkpoint_checksum": artifacts.file_checksum(path),
        **artifacts.provenance(),
    }
    with (
        quiet_transformers(errors_only=False),
        artifacts.atomic_dir(out, overwrite=overwrite) as tmp,
    ):
        model.save_pretrained(tmp)
        save_alphabet(tmp, alphabet)
        write_curve_csv(tmp / artifacts.MODEL_CURVE_CSV, curve)
        artifacts.write_json(tmp / artifacts.MODEL_TRAINING, info)
    return info
