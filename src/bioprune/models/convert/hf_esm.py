"""``hf-esm``: a HuggingFace ``facebook/esm2_*`` directory (config.json, weights, vocab.txt).

The weights are read from ``model.safetensors`` (or, without code execution,
from ``pytorch_model.bin`` through the restricted loader). Older exports carry
buffers (``position_ids``, rotary ``inv_freq``) and the tied decoder under its
own name; these are checked and dropped. ``token_dropout`` is kept as the
config says (ESM-2: on, as trained).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bioprune.data.alphabet import get_alphabet
from bioprune.errors import InputError, reading
from bioprune.models.convert.base import (
    Converted,
    DirectoryFormat,
    Source,
    directory_config,
    esm_config_from_hf,
)
from bioprune.models.convert.safe_load import load_checkpoint

__all__ = ["HfEsm", "read_directory_weights"]


def read_directory_weights(path: Path, trust: bool) -> tuple[dict, Path]:
    """All tensors of a HF directory (safetensors preferred; a .bin only via the safe loader)."""
    from safetensors.torch import load_file

    single = path / "model.safetensors"
    index = path / "model.safetensors.index.json"
    if single.is_file():
        with reading(single, "model weights"):
            return load_file(str(single)), single
    if index.is_file():
        with reading(index, "weights index"):
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict = {}
        for name in shards:
            with reading(path / name, "model weights"):
                state.update(load_file(str(path / name)))
        return state, index
    binary = path / "pytorch_model.bin"
    if binary.is_file():
        obj = load_checkpoint(binary, trust=trust)
        if not isinstance(obj, dict):
            raise InputError(binary, "not a state dict")
        return obj, binary
    raise InputError(path, "no model.safetensors or pytorch_model.bin")


class HfEsm(DirectoryFormat):
    name = "hf-esm"
    model_type = "esm"
    description = "HuggingFace ESM-2 directory (facebook/esm2_*: config.json + weights)"

    @staticmethod
    def convert(source: Source) -> Converted:
        path = source.path
        cfg_path, raw = directory_config(path, "esm")
        if raw.get("is_folding_model"):
            raise InputError(cfg_path, "an ESMFold model, not a masked language model")
        alphabet = get_alphabet("protein")
        vocab = path / "vocab.txt"
        if vocab.is_file():
            tokens = [t for t in vocab.read_text().splitlines() if t.strip()]
            if tuple(tokens) != alphabet.tokens:
                raise InputError(vocab, "token list differs from ESM-2's 33 tokens in order")
        if raw.get("vocab_size") != len(alphabet):
            raise InputError(cfg_path, f"vocab_size {raw.get('vocab_size')} is not ESM-2's 33")
        state, weights = read_directory_weights(path, source.trusted)
        config = esm_config_from_hf(
            raw,
            alphabet,
            position=raw.get("position_embedding_type", "absolute"),
            ln_before=bool(raw.get("emb_layer_norm_before", False)),
        )
        layers, hidden = config.num_hidden_layers, config.hidden_size
        heads = config.num_attention_heads
        hf: dict[str, torch.Tensor] = {}
        mapping: dict[str, str] = {}
        dropped: dict[str, str] = {}
        notes: list[str] = []
        for name, tensor in state.items():
            if not isinstance(tensor, torch.Tensor):
                raise InputError(weights, f"{name} is not a tensor")
            if name.endswith("position_ids"):
                dropped[name] = "position index buffer (recomputed)"
                continue
            if name.endswith("rotary_embeddings.inv_freq"):
                dim = tensor.numel() * 2
                want = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
                if not torch.allclose(tensor.float(), want, rtol=1e-6, atol=0):
                    raise InputError(weights, f"{name}: rotary frequencies differ from base 10000")
                dropped[name] = "rotary frequencies (a buffer HF recomputes; checked equal)"
                continue
            target = name if name.startswith(("esm.", "lm_head.")) else f"esm.{name}"
            # transformers' legacy LayerNorm names (it writes and reads both spellings)
            if target.endswith("LayerNorm.gamma"):
                target = target[: -len("gamma")] + "weight"
            elif target.endswith("LayerNorm.beta"):
                target = target[: -len("beta")] + "bias"
            hf[target] = tensor
            mapping[target] = name
        emb = hf.get("esm.embeddings.word_embeddings.weight")
        if emb is None:
            raise InputError(weights, "no esm.embeddings.word_embeddings.weight")
        dec = hf.get("lm_head.decoder.weight")
        if dec is not None and not torch.equal(dec, emb):
            raise InputError(
                weights,
                "lm_head.decoder.weight differs from the word embedding; EsmForMaskedLM ties "
                "them, so this model cannot be represented",
            )
        hf["lm_head.decoder.weight"] = emb
        mapping.setdefault("lm_head.decoder.weight", "esm.embeddings.word_embeddings.weight (tied)")
        if "esm.contact_head.regression.weight" not in hf:
            from bioprune.models.convert.fairseq import add_zero_contact_head

            add_zero_contact_head(hf, mapping, notes, layers, heads)
        notes.append(
            f"token_dropout={config.token_dropout} as in the source config (ESM-2 was trained "
            "with it; the factor depends only on the example, so scores stay exact)"
        )
        info = {"layers": layers, "hidden": hidden, "heads": heads, "weights": weights.name,
                "token_dropout": config.token_dropout}  # fmt: skip
        return Converted("hf-esm", config, hf, alphabet, mapping, dropped, notes, [], info)
