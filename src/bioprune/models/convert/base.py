"""What every source format produces, and how a result becomes a model directory.

A format module turns a source (a loaded checkpoint or a directory) into a
:class:`Converted`: the target architecture's config, a complete state dict
under the target's tensor names, the alphabet, and every mapping decision.
:func:`build_model` then refuses anything but an exact match of names and
shapes (weights load completely or not at all) and :func:`write_model_dir`
writes a normal bioprune model directory plus ``conversion.json``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bioprune.data.alphabet import Alphabet
from bioprune.errors import InputError

__all__ = [
    "Converted",
    "DirectoryFormat",
    "Source",
    "build_model",
    "directory_model_type",
    "directory_source",
    "esm_config_from_hf",
    "pickle_source",
    "tensor_list",
]

log = logging.getLogger("bioprune.models")

#: How many tensor names a message lists before "and N more".
SHOWN = 8


def tensor_list(names, shown: int = SHOWN) -> str:
    names = sorted(str(n) for n in names)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


@dataclass
class Source:
    """A source as read from disk, before any format claims it.

    ``kind``: ``"pickle"`` (``obj`` is what the checkpoint held), ``"safetensors"``
    (``obj`` is a name -> tensor dict) or ``"directory"`` (``obj`` is None).
    """

    path: Path
    kind: str
    obj: Any = None
    trusted: bool = False


@dataclass
class Converted:
    """A converted model: target config, complete target state dict and the decisions made."""

    source_format: str
    config: Any
    state_dict: dict
    alphabet: Alphabet
    #: target tensor name -> source tensor name (or a description of how it was made)
    mapping: dict[str, str] = field(default_factory=dict)
    #: source tensor name -> why it is not in the result
    dropped: dict[str, str] = field(default_factory=dict)
    #: decisions a user should know (one sentence each)
    notes: list[str] = field(default_factory=list)
    #: what the result does not reproduce exactly (empty: logit-identical on every token)
    inexact: list[str] = field(default_factory=list)
    #: extra source facts (architecture numbers, arguments)
    source_info: dict = field(default_factory=dict)


def build_model(converted: Converted, where: Path):
    """The target model with exactly ``converted.state_dict`` loaded (eval mode).

    Raises :class:`InputError` naming ``where`` for any missing, unexpected or
    mis-shaped tensor: nothing is initialised at random.
    """
    import torch
    from transformers import AutoModelForMaskedLM

    if getattr(converted.config, "model_type", None) == "esmc":
        import bioprune.models.esmc  # noqa: F401  registers ESM-C with the Auto classes

    with torch.device("meta"):
        skeleton = AutoModelForMaskedLM.from_config(converted.config)
    expected = {k: tuple(v.shape) for k, v in skeleton.state_dict().items()}
    # Buffers the model computes itself from its config (rotary frequencies) are not weights.
    buffers = {k for k, _ in skeleton.named_buffers()}
    got = {k: tuple(v.shape) for k, v in converted.state_dict.items()}
    missing = sorted(set(expected) - set(got) - buffers)
    unexpected = sorted(set(got) - set(expected))
    wrong = [f"{k} {list(got[k])} vs {list(expected[k])}" for k in sorted(set(got) & set(expected))
             if got[k] != expected[k]]  # fmt: skip
    problems = []
    if missing:
        problems.append(f"{len(missing)} tensor(s) missing ({tensor_list(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({tensor_list(unexpected)})")
    if wrong:
        problems.append(f"{len(wrong)} tensor(s) of the wrong shape ({'; '.join(wrong[:4])})")
    if problems:
        raise InputError(
            where,
            f"cannot convert as {converted.source_format}: " + "; ".join(problems),
        )
    model = AutoModelForMaskedLM.from_config(converted.config)
    state = {k: v.detach().to(torch.float32).contiguous() for k, v in converted.state_dict.items()}
    result = model.load_state_dict(state, strict=False)
    assert set(result.missing_keys) <= buffers and not result.unexpected_keys
    # Tied tensors share storage: check the tie survived (the decoder IS the embedding).
    for name, tensor in model.state_dict().items():
        if name in state and not torch.equal(tensor, state[name]):
            raise InputError(
                where,
                f"tensor {name} differs after loading (a tied tensor got two different values)",
            )
    return model.eval()


def pickle_source(path: Path, trust: bool) -> Source:
    """A source that is one pickled checkpoint, read by the restricted unpickler."""
    from bioprune.models.convert.safe_load import load_checkpoint

    return Source(path, "pickle", load_checkpoint(path, trust=trust), trust)


def directory_model_type(source: Source) -> str | None:
    """The ``model_type`` of a directory source's ``config.json``; None when unreadable."""
    import json

    if source.kind != "directory":
        return None
    try:
        raw = json.loads((source.path / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return raw.get("model_type") if isinstance(raw, dict) else None


def directory_source(path: Path, trust: bool, fmt: str) -> Source:
    """A source that is a HF-style model directory (config.json + weights)."""
    from bioprune.errors import InputError

    if not path.is_dir():
        raise InputError(path, f"{fmt} expects a directory (config.json + weights)")
    return Source(path, "directory", None, trust)


def esm_config_from_hf(raw: dict, alphabet: Alphabet, *, position: str, ln_before: bool):
    """The ``EsmConfig`` of a HF-style ``config.json`` dict (ESM-2 or RNA-FM port)."""
    from bioprune.models.convert.esm_family import esm_config

    config = esm_config(
        alphabet,
        hidden=int(raw["hidden_size"]),
        layers=int(raw["num_hidden_layers"]),
        heads=int(raw["num_attention_heads"]),
        ffn=int(raw["intermediate_size"]),
        position=position,
        max_positions=int(raw["max_position_embeddings"]),
        ln_before=ln_before,
        token_dropout=bool(raw.get("token_dropout", False)),
    )
    config.layer_norm_eps = float(raw.get("layer_norm_eps", 1e-12))
    return config


class DirectoryFormat:
    """Base of the formats read from a HF-style directory whose ``config.json`` names
    ``model_type``: recognising and opening one is the same for all of them."""

    name: str
    model_type: str

    @classmethod
    def matches(cls, source: Source) -> bool:
        return directory_model_type(source) == cls.model_type

    @classmethod
    def load(cls, path: Path, trust: bool) -> Source:
        return directory_source(path, trust, cls.name)


def directory_config(path: Path, model_type: str) -> tuple[Path, dict]:
    """``(config.json path, its dict)`` of a directory source, refusing another model_type."""
    import json

    from bioprune.errors import InputError, reading

    cfg_path = path / "config.json"
    with reading(cfg_path, "model config"):
        raw = json.loads(cfg_path.read_text())
    if not isinstance(raw, dict) or raw.get("model_type") != model_type:
        got = raw.get("model_type") if isinstance(raw, dict) else None
        raise InputError(cfg_path, f"model_type {got!r} is not {model_type!r}")
    return cfg_path, raw
