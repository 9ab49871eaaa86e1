"""Tensor names of fairseq-style ESM checkpoints (ESM-1b, RNA-FM, ESM-2) -> HF ``EsmForMaskedLM``.

RNA-FM (ESM-1b layers, learned positions) and ESM-2 (rotary) share one naming
scheme: ``embed_tokens``, ``layers.N.self_attn.{q,k,v,out}_proj``,
``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``,
``emb_layer_norm_before/after``, ``lm_head.{dense,layer_norm,weight,bias}``,
``contact_head.regression``, under ``encoder.sentence_encoder.`` (fair-esm:
encoder) and ``encoder.`` (LM head) prefixes, or ``encoder.encoder.`` for
everything (RNA-FM_pretrained.pth; both original loaders strip any of them).
This module maps them one by one; every source tensor is either mapped or
dropped with a reason.
"""

from __future__ import annotations

import re

import torch

from bioprune.errors import InputError

__all__ = ["add_zero_contact_head", "map_fairseq_state", "strip_prefixes"]

#: Prefixes fairseq puts before the model's own names (longest first).
PREFIXES = (
    "model.encoder.sentence_encoder.",
    "encoder.sentence_encoder.",
    "encoder.encoder.",  # RNA-FM_pretrained.pth (fm's loader strips it like the others)
    "sentence_encoder.",
    "model.encoder.",
    "encoder.",
    "model.",
)

_LAYER_MAP = {
    "self_attn.q_proj": "attention.self.query",
    "self_attn.k_proj": "attention.self.key",
    "self_attn.v_proj": "attention.self.value",
    "self_attn.out_proj": "attention.output.dense",
    "self_attn_layer_norm": "attention.LayerNorm",
    "fc1": "intermediate.dense",
    "fc2": "output.dense",
    "final_layer_norm": "LayerNorm",
}
_TOP_MAP = {
    "embed_tokens.weight": "esm.embeddings.word_embeddings.weight",
    "embed_positions.weight": "esm.embeddings.position_embeddings.weight",
    "emb_layer_norm_before.weight": "esm.embeddings.layer_norm.weight",
    "emb_layer_norm_before.bias": "esm.embeddings.layer_norm.bias",
    "emb_layer_norm_after.weight": "esm.encoder.emb_layer_norm_after.weight",
    "emb_layer_norm_after.bias": "esm.encoder.emb_layer_norm_after.bias",
    "lm_head.dense.weight": "lm_head.dense.weight",
    "lm_head.dense.bias": "lm_head.dense.bias",
    "lm_head.layer_norm.weight": "lm_head.layer_norm.weight",
    "lm_head.layer_norm.bias": "lm_head.layer_norm.bias",
    "lm_head.bias": "lm_head.bias",
    "contact_head.regression.weight": "esm.contact_head.regression.weight",
    "contact_head.regression.bias": "esm.contact_head.regression.bias",
}
_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.(weight|bias)$")
_INV_FREQ = re.compile(r"^layers\.(\d+)\.self_attn\.rot_emb\.inv_freq$")


def strip_prefixes(state: dict) -> tuple[dict, dict[str, str]]:
    """``{short name: tensor}`` and ``{short name: original name}``."""
    out, original = {}, {}
    for name, tensor in state.items():
        short = name
        for p in PREFIXES:
            if short.startswith(p):
                short = short[len(p) :]
                break
        if short in out:
            raise ValueError(f"two source tensors map to {short!r} ({original[short]}, {name})")
        out[short] = tensor
        original[short] = name
    return out, original


def map_fairseq_state(state: dict, where):
    """Map a fairseq ESM state dict (prefixes already stripped) to HF names.

    Returns ``(hf_state, mapping, dropped, notes)``: ``mapping`` is target ->
    source name, ``dropped`` source -> reason. The LM-head decoder is tied to
    the word embedding in HF ``EsmForMaskedLM``: the source's ``lm_head.weight``
    (the tensor the original model ends up using for both, since it is loaded
    last into the tied parameter) becomes the word embedding.
    """
    hf: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    dropped: dict[str, str] = {}
    notes: list[str] = []
    unknown = []
    for name, tensor in state.items():
        if not isinstance(tensor, torch.Tensor):
            unknown.append(name)
            continue
        m = _INV_FREQ.match(name)
        if m:
            dim = tensor.numel() * 2
            want = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
            if not torch.allclose(tensor.float(), want, rtol=1e-6, atol=0):
                raise InputError(
                    where, f"{name}: rotary frequencies differ from ESM-2's base 10000"
                )
            dropped[name] = "rotary frequencies (a buffer HF recomputes; checked equal)"
            continue
        m = _LAYER_KEY.match(name)
        if m:
            layer, mod, kind = m.groups()
            if mod not in _LAYER_MAP:
                unknown.append(name)
                continue
            target = f"esm.encoder.layer.{layer}.{_LAYER_MAP[mod]}.{kind}"
        elif name == "lm_head.weight":
            continue  # handled below with the embedding
        elif name in _TOP_MAP:
            target = _TOP_MAP[name]
        else:
            unknown.append(name)
            continue
        hf[target] = tensor
        mapping[target] = name
    if unknown:
        shown = ", ".join(sorted(unknown)[:8]) + (" ..." if len(unknown) > 8 else "")
        raise InputError(
            where,
            f"{len(unknown)} tensor(s) with no counterpart in an ESM masked LM: {shown} "
            "(ESM-1 models with bias_k/bias_v and MSA Transformers are not supported)",
        )
    emb = state.get("embed_tokens.weight")
    dec = state.get("lm_head.weight")
    if emb is None:
        raise InputError(where, "no embed_tokens.weight: not an ESM-style checkpoint")
    if dec is None:
        notes.append("the source has no lm_head.weight: the decoder is the word embedding")
        dec = emb
    elif dec.shape != emb.shape:
        raise InputError(
            where, f"lm_head.weight {list(dec.shape)} and embed_tokens.weight "
            f"{list(emb.shape)} differ in shape: an untied decoder is not an ESM model"
        )  # fmt: skip
    else:
        rows = (dec != emb).any(dim=1).nonzero().flatten().tolist()
        if rows:
            notes.append(
                f"embed_tokens.weight and lm_head.weight differ in row(s) {rows[:10]}; the "
                "original model ties them and loads lm_head.weight last, so its values are used"
            )
        dropped["embed_tokens.weight"] = (
            "replaced by lm_head.weight (tied; the original loads lm_head.weight last)"
        )
    hf["esm.embeddings.word_embeddings.weight"] = dec
    hf["lm_head.decoder.weight"] = dec
    mapping["esm.embeddings.word_embeddings.weight"] = "lm_head.weight"
    mapping["lm_head.decoder.weight"] = "lm_head.weight (tied to the word embedding)"
    return hf, mapping, dropped, notes


def add_zero_contact_head(hf: dict, mapping: dict, notes: list, num_layers: int, heads: int):
    """HF ``EsmModel`` always has a contact head; write zeros when the source has none.

    The contact head (a logistic regression over attention maps) is never used by
    the MLM loss nor by bioprune; zeros are deterministic, unlike transformers'
    random initialisation, and the note says contact predictions are meaningless.
    """
    if "esm.contact_head.regression.weight" in hf:
        return
    hf["esm.contact_head.regression.weight"] = torch.zeros(1, num_layers * heads)
    hf["esm.contact_head.regression.bias"] = torch.zeros(1)
    mapping["esm.contact_head.regression.weight"] = "zeros (not in the source)"
    mapping["esm.contact_head.regression.bias"] = "zeros (not in the source)"
    notes.append(
        "the source has no contact-regression weights: the contact head is written as zeros "
        "(unused by masked-LM scoring and training; its contact predictions are meaningless)"
    )
