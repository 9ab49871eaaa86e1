"""``describe_model``: what a model directory holds, read from its files without building it.

Architecture and sizes come from ``config.json``; the parameter count from the
safetensors headers (shapes only, no tensor data); the vocabulary from
``bioprune_alphabet.json``; provenance from ``conversion.json`` (``convert``),
``bioprune_init.json`` (``init``) and ``training.json`` (``pretrain``/``adapt``).
No torch or transformers import, so ``bioprune info MODEL_DIR`` is fast on a
600M-parameter model.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

from bioprune import artifacts
from bioprune.errors import InputError, reading

__all__ = ["describe_model", "is_model_dir"]

#: Tensors that are a second name for another (tied) or never used by the MLM loss.
_TIED = ("lm_head.decoder.weight",)
_UNUSED = ("esm.contact_head.",)


def is_model_dir(path: str | Path) -> bool:
    """A directory with a ``config.json`` (a model directory rather than a corpus)."""
    return (Path(path) / "config.json").is_file()


def _read_json(path: Path, what: str):
    with reading(path, what):
        value = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(value, dict):
        raise InputError(path, f"expected a JSON object ({what})")
    return value


def _safetensors_shapes(path: Path) -> dict[str, list[int]]:
    """Tensor name -> shape from a safetensors header (8-byte length, then JSON)."""
    with reading(path, "safetensors header"), open(path, "rb") as fh:
        raw = fh.read(8)
        if len(raw) != 8:
            raise InputError(path, "truncated safetensors file (no header)")
        (n,) = struct.unpack("<Q", raw)
        if n > 100_000_000:
            raise InputError(path, "not a safetensors file (header length out of range)")
        header = json.loads(fh.read(n))
    return {k: v["shape"] for k, v in header.items() if k != "__metadata__"}


def _parameters(model_dir: Path) -> tuple[int | None, list[str]]:
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None, []
    shapes: dict[str, list[int]] = {}
    for f in files:
        shapes.update(_safetensors_shapes(f))
    total = 0
    for name, shape in shapes.items():
        if name in _TIED or name.startswith(_UNUSED):
            continue
        n = 1
        for d in shape:
            n *= int(d)
        total += n
    return total, [f.name for f in files]


def describe_model(path: str | Path) -> dict:
    """A JSON-able description of a model directory.

    Keys: ``path``, ``architecture`` (model type, class, layers, hidden, heads,
    FFN, extras such as token dropout), ``parameters`` (trainable, tied tensors
    once, contact head excluded; from the weights' headers), ``weights``,
    ``vocabulary`` (alphabet, tokens, model rows), ``positions`` (type and the
    longest sequence in residues), ``provenance`` (how the directory was made),
    ``training_state`` (:func:`training_state`, or None without ``training.json``).
    """
    model_dir = Path(path)
    if not model_dir.is_dir():
        raise InputError(model_dir, "not a directory")
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise InputError(config_path, "no such file: not a model directory")
    cfg = _read_json(config_path, "model config")
    vocabulary = _vocabulary(model_dir, cfg)  # files read in the order they always were
    params, weights = _parameters(model_dir)
    provenance, state = _provenance(model_dir)
    return {
        "path": str(model_dir),
        "architecture": _architecture(cfg),
        "parameters": params,
        "weights": weights,
        "vocabulary": vocabulary,
        "positions": _positions(cfg),
        "provenance": provenance,
        "training_state": state,
    }


def _architecture(cfg: dict) -> dict:
    model_type = cfg.get("model_type")
    archs = cfg.get("architectures") or []
    arch = {
        "model_type": model_type,
        "class": archs[0] if archs else None,
        "layers": cfg.get("num_hidden_layers"),
        "hidden": cfg.get("hidden_size"),
        "heads": cfg.get("num_attention_heads"),
        "ffn": cfg.get("intermediate_size"),
    }
    if model_type == "esm":
        arch["token_dropout"] = cfg.get("token_dropout")
        arch["layer_norm_before_encoder"] = cfg.get("emb_layer_norm_before")
        arch["tied_decoder"] = cfg.get("tie_word_embeddings", True)
    elif model_type == "esmc":
        arch["residual_scale"] = cfg.get("residual_scale")
        arch["tied_decoder"] = False
    return arch


def _positions(cfg: dict) -> dict:
    """Position type and the longest sequence (residues) the model accepts."""
    from bioprune.models.presets import MAX_TOKENS

    position = cfg.get("position_embedding_type", "absolute")
    if position == "rotary":
        longest = MAX_TOKENS - 2
    elif isinstance(cfg.get("max_position_embeddings"), int):
        longest = cfg["max_position_embeddings"] - int(cfg.get("pad_token_id") or 0) - 3
    else:
        longest = None
    return {"type": position, "max_residues": longest}


def _vocabulary(model_dir: Path, cfg: dict) -> dict:
    vocab = {"model_rows": cfg.get("vocab_size"), "alphabet": None, "tokens": None}
    alphabet_path = model_dir / artifacts.MODEL_ALPHABET
    if alphabet_path.is_file():
        meta = _read_json(alphabet_path, "model alphabet")
        vocab["alphabet"] = meta.get("alphabet")
        vocab["tokens"] = len(meta.get("tokens") or [])
    return vocab


#: conversion.json keys shown as the provenance of a converted model.
_CONVERSION_KEYS = (
    "format", "source", "source_sha256", "exact", "inexact", "created", "bioprune_version",
)  # fmt: skip


def _provenance(model_dir: Path) -> tuple[dict, dict | None]:
    """``(how the directory was made, training state or None)`` from its records."""
    provenance: dict = {}
    conv = model_dir / "conversion.json"
    if conv.is_file():
        c = _read_json(conv, "conversion record")
        provenance["converted"] = {k: c.get(k) for k in _CONVERSION_KEYS}
    init = model_dir / "bioprune_init.json"
    if init.is_file():
        i = _read_json(init, "init record")
        preset = i.get("preset")
        provenance["init"] = {
            "preset": preset.get("name") if isinstance(preset, dict) else preset,
            "seed": i.get("seed"),
            "created": i.get("created"),
        }
    training = model_dir / artifacts.MODEL_TRAINING
    state = None
    if training.is_file():
        t = _read_json(training, "training record")
        provenance["training"] = {
            k: t.get(k) for k in ("recipe", "steps", "stopped_by", "created") if k in t
        }
        state = training_state(t)
    return provenance, state


#: training.json keys shown by `bioprune info MODEL_DIR`, in this order.
TRAINING_STATE_KEYS = (
    "recipe",
    "steps",
    "planned_steps",
    "epochs_completed",
    "stopped_by",
    "examples_seen",
    "tokens_seen",
    "train_loss_final",
    "val_loss",
    "val_perplexity",
    "wall_s",
    "max_time_s",
    "resumed_from_step",
    "checkpoint",
    "exported_from",
)


def training_state(record: dict) -> dict:
    """The training state a ``training.json`` record holds (steps, tokens, last validation
    loss, ``stopped_by``, budget), for ``bioprune info MODEL_DIR``."""
    if not isinstance(record, dict):
        return {}
    state = {k: record.get(k) for k in TRAINING_STATE_KEYS if k in record}
    hp = record.get("hyperparameters") or {}
    if isinstance(hp, dict):
        state["budget"] = {k: hp.get(k) for k in ("epochs", "max_steps", "max_tokens") if k in hp}
    return state
