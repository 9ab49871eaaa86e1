"""``esmc``: EvolutionaryScale ESM-C weights -> :class:`bioprune.models.esmc.EsmcForMaskedLM`.

Three tensor layouts are recognised (all from the ``esm`` package's own code):

- ``pth``: the plain state dict of ``esmc_300m_2024_12_v0.pth`` / ``esmc_600m_...``
  (esm <= 3.2: ``embed``, ``transformer.blocks.N.attn.layernorm_qkv.0`` (LayerNorm)
  and ``.1`` (fused q/k/v), ``attn.q_ln``, ``attn.k_ln``, ``attn.out_proj``,
  ``ffn.0`` (LayerNorm), ``ffn.1`` (fused gate/up), ``ffn.3`` (down),
  ``transformer.norm``, ``sequence_head.{0,2,3}``);
- ``published``: the safetensors checkpoints of esm >= 3.4 (optional ``esmc.`` prefix;
  ``embed_tokens``, ``layers.N.input_layernorm``, ``self_attn.{q,k,v,o}_proj``,
  ``self_attn.{q,k}_norm``, ``post_attention_layernorm``, ``mlp.{gate,up,down}_proj``,
  ``norm``, ``lm_head.{dense,layer_norm,decoder}``);
- ``native``: esm >= 3.4's in-memory names (``layernorm_qkv.layer_norm_weight``,
  ``ffn.fc1_weight``, ``lm_head.{0,2,3}``).

A fused q/k/v matrix is split in row order (q, k, v) and a fused ``[gate; up]``
matrix in halves (gate first: ``silu(x1) * x2``), exactly as the original
slices them. The head count is not visible in any shape: it comes from a
``config.json`` beside the weights (``num_attention_heads``), else from ESM-C's
head size of 64 (300M: 960/64 = 15, 600M: 1152/64 = 18), recorded in
``conversion.json``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from bioprune.data.alphabet import get_alphabet
from bioprune.errors import InputError, reading
from bioprune.models.convert.base import Converted, Source, tensor_list
from bioprune.models.convert.safe_load import load_checkpoint

__all__ = ["Esmc"]

ESMC_HEAD_DIM = 64

_PTH_BLOCK = {
    "attn.layernorm_qkv.0.weight": "attention.layer_norm.weight",
    "attn.layernorm_qkv.0.bias": "attention.layer_norm.bias",
    "attn.q_ln.weight": "attention.q_norm.weight",
    "attn.k_ln.weight": "attention.k_norm.weight",
    "attn.out_proj.weight": "attention.out_proj.weight",
    "ffn.0.weight": "ffn.layer_norm.weight",
    "ffn.0.bias": "ffn.layer_norm.bias",
    "ffn.3.weight": "ffn.down.weight",
}
_NATIVE_BLOCK = {
    "attn.layernorm_qkv.layer_norm_weight": "attention.layer_norm.weight",
    "attn.layernorm_qkv.layer_norm_bias": "attention.layer_norm.bias",
    "attn.q_ln.weight": "attention.q_norm.weight",
    "attn.k_ln.weight": "attention.k_norm.weight",
    "attn.out_proj.weight": "attention.out_proj.weight",
    "ffn.layer_norm_weight": "ffn.layer_norm.weight",
    "ffn.layer_norm_bias": "ffn.layer_norm.bias",
    "ffn.fc2_weight": "ffn.down.weight",
}
_PUBLISHED_BLOCK = {
    "input_layernorm.weight": "attention.layer_norm.weight",
    "input_layernorm.bias": "attention.layer_norm.bias",
    "self_attn.q_proj.weight": "attention.query.weight",
    "self_attn.k_proj.weight": "attention.key.weight",
    "self_attn.v_proj.weight": "attention.value.weight",
    "self_attn.q_norm.weight": "attention.q_norm.weight",
    "self_attn.k_norm.weight": "attention.k_norm.weight",
    "self_attn.o_proj.weight": "attention.out_proj.weight",
    "post_attention_layernorm.weight": "ffn.layer_norm.weight",
    "post_attention_layernorm.bias": "ffn.layer_norm.bias",
    "mlp.gate_proj.weight": "ffn.gate.weight",
    "mlp.up_proj.weight": "ffn.up.weight",
    "mlp.down_proj.weight": "ffn.down.weight",
}
_FUSED_QKV = {"attn.layernorm_qkv.1.weight", "attn.layernorm_qkv.weight"}
_FUSED_FFN = {"ffn.1.weight", "ffn.fc1_weight"}
_HEAD = {
    "sequence_head.0": "lm_head.dense", "sequence_head.2": "lm_head.layer_norm",
    "sequence_head.3": "lm_head.decoder", "lm_head.0": "lm_head.dense",
    "lm_head.2": "lm_head.layer_norm", "lm_head.3": "lm_head.decoder",
    "lm_head.dense": "lm_head.dense", "lm_head.layer_norm": "lm_head.layer_norm",
    "lm_head.decoder": "lm_head.decoder",
}  # fmt: skip
_TOP = {
    "embed.weight": "esm.embeddings.word_embeddings.weight",
    "embed_tokens.weight": "esm.embeddings.word_embeddings.weight",
    "transformer.norm.weight": "esm.encoder.emb_layer_norm_after.weight",
    "norm.weight": "esm.encoder.emb_layer_norm_after.weight",
}
_BLOCK_KEY = re.compile(r"^(?:transformer\.blocks|layers)\.(\d+)\.(.+)$")


def _looks_like_esmc(names) -> bool:
    names = [n[len("esmc.") :] if n.startswith("esmc.") else n for n in names]
    return any(n in ("embed.weight", "embed_tokens.weight") for n in names) and any(
        ".layernorm_qkv" in n or ".self_attn.q_norm." in n or ".attn.q_ln." in n for n in names
    )


def map_esmc_state(state: dict, where: Path):
    """Original ESM-C tensor names (any layout above) -> bioprune's; returns
    ``(state, mapping, layout)``."""
    out: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    unknown = []
    layouts = set()
    for raw_name, t in state.items():
        if not isinstance(t, torch.Tensor):
            unknown.append(raw_name)
            continue
        name = raw_name[len("esmc.") :] if raw_name.startswith("esmc.") else raw_name
        m = _BLOCK_KEY.match(name)
        if m:
            i, leaf = m.groups()
            pre = f"esm.encoder.layer.{i}."
            if leaf in _FUSED_QKV:
                layouts.add("pth" if leaf.endswith(".1.weight") else "native")
                if t.shape[0] % 3:
                    raise InputError(where, f"{raw_name} {list(t.shape)}: not a fused q/k/v")
                for part, chunk in zip(("query", "key", "value"), t.chunk(3, dim=0), strict=True):
                    out[f"{pre}attention.{part}.weight"] = chunk
                    mapping[f"{pre}attention.{part}.weight"] = f"{raw_name} ({part} third)"
                continue
            if leaf in _FUSED_FFN:
                layouts.add("pth" if leaf == "ffn.1.weight" else "native")
                if t.shape[0] % 2:
                    raise InputError(where, f"{raw_name} {list(t.shape)}: not a fused gate/up")
                gate, up = t.chunk(2, dim=0)
                out[f"{pre}ffn.gate.weight"], out[f"{pre}ffn.up.weight"] = gate, up
                mapping[f"{pre}ffn.gate.weight"] = f"{raw_name} (first half: silu(x1) * x2)"
                mapping[f"{pre}ffn.up.weight"] = f"{raw_name} (second half)"
                continue
            for table, layout in ((_PTH_BLOCK, "pth"), (_NATIVE_BLOCK, "native"),
                                  (_PUBLISHED_BLOCK, "published")):  # fmt: skip
                if leaf in table:
                    layouts.add(layout)
                    out[pre + table[leaf]] = t
                    mapping[pre + table[leaf]] = raw_name
                    break
            else:
                unknown.append(raw_name)
            continue
        if name in _TOP:
            out[_TOP[name]] = t
            mapping[_TOP[name]] = raw_name
            continue
        head, _, kind = name.rpartition(".")
        if head in _HEAD and kind in ("weight", "bias"):
            out[f"{_HEAD[head]}.{kind}"] = t
            mapping[f"{_HEAD[head]}.{kind}"] = raw_name
            continue
        unknown.append(raw_name)
    if unknown:
        raise InputError(
            where, f"{len(unknown)} tensor(s) with no counterpart in ESM-C: {tensor_list(unknown)}"
        )
    if len(layouts) > 1:
        raise InputError(where, f"mixes tensor layouts {sorted(layouts)}")
    return out, mapping, (layouts.pop() if layouts else "unknown")


class Esmc:
    name = "esmc"
    description = "EvolutionaryScale ESM-C weights (.pth state dict or safetensors)"

    @staticmethod
    def matches(source: Source) -> bool:
        if source.kind in ("pickle", "safetensors") and isinstance(source.obj, dict):
            return _looks_like_esmc(source.obj)
        if source.kind == "directory":
            files = list(source.path.glob("*.safetensors"))
            return len(files) == 1 and Esmc._names_of(files[0], _looks_like_esmc)
        return False

    @staticmethod
    def _names_of(path: Path, test) -> bool:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return test(list(fh.keys()))
        except Exception:  # not readable: no match (the converter names the error)
            return False

    @staticmethod
    def load(path: Path, trust: bool) -> Source:
        if path.is_dir():
            files = sorted(path.glob("*.safetensors"))
            if len(files) != 1:
                raise InputError(path, "expected one .safetensors file of ESM-C weights")
            path = files[0]
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            with reading(path, "ESM-C weights"):
                return Source(path, "safetensors", load_file(str(path)), trust)
        return Source(path, "pickle", load_checkpoint(path, trust=trust), trust)

    @staticmethod
    def convert(source: Source) -> Converted:
        from bioprune.models.esmc import EsmcConfig

        where = source.path
        if source.kind == "directory":
            source = Esmc.load(where, source.trusted)
            where = source.path
        state = source.obj
        if isinstance(state, dict) and isinstance(state.get("model"), dict):
            state = state["model"]
        if not isinstance(state, dict) or not _looks_like_esmc(state):
            raise InputError(where, "not ESM-C weights (no embed and layernorm_qkv/q_norm tensors)")
        mapped, mapping, layout = map_esmc_state(state, where)
        emb = mapped.get("esm.embeddings.word_embeddings.weight")
        if emb is None or emb.ndim != 2:
            raise InputError(where, "no token embedding (embed.weight)")
        rows, hidden = (int(s) for s in emb.shape)
        layers = 1 + max(
            (int(k.split(".")[3]) for k in mapped if k.startswith("esm.encoder.layer.")),
            default=-1,
        )
        gate = mapped.get("esm.encoder.layer.0.ffn.gate.weight")
        if layers == 0 or gate is None:
            raise InputError(where, "no transformer blocks")
        notes = [f"source layout: {layout}"]
        heads, how = Esmc._heads(where, hidden, notes)
        alphabet = get_alphabet("protein")
        config = EsmcConfig(
            vocab_size=rows,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=int(gate.shape[0]),
            alphabet_size=len(alphabet),
            pad_token_id=alphabet.pad_id,
            mask_token_id=alphabet.mask_id,
        )
        notes.append(
            f"{heads} attention heads ({how}); residual branches scaled by "
            f"1/sqrt({layers}/36) = {1 / config.residual_scale:.6f}"
        )
        notes.append(
            "vocabulary: ESM-C's 64-row table and head are kept; bioprune's protein alphabet "
            "uses ids 0-32, which are ESM-C's tokenizer ids for every token a corpus holds "
            "(id 31 is '|' in ESM-C, '<null_1>' in ESM-2; never produced)"
        )
        info = {"layout": layout, "layers": layers, "hidden": hidden, "heads": heads,
                "ffn": int(gate.shape[0]), "vocab_rows": rows}  # fmt: skip
        return Converted("esmc", config, mapped, alphabet, mapping, {}, notes, [], info)

    @staticmethod
    def _heads(where: Path, hidden: int, notes: list) -> tuple[int, str]:
        cfg = where.parent / "config.json"
        if cfg.is_file():
            with reading(cfg, "config beside the weights"):
                raw = json.loads(cfg.read_text())
            heads = raw.get("num_attention_heads") if isinstance(raw, dict) else None
            if isinstance(heads, int) and heads > 0 and hidden % heads == 0:
                return heads, f"num_attention_heads from {cfg.name}"
            raise InputError(cfg, f"num_attention_heads {heads!r} does not divide {hidden}")
        if hidden % ESMC_HEAD_DIM:
            raise InputError(
                where, f"hidden size {hidden} is not a multiple of ESM-C's head size 64 and no "
                "config.json beside the weights gives num_attention_heads",
            )  # fmt: skip
        return hidden // ESMC_HEAD_DIM, "hidden size / ESM-C's head size 64"
