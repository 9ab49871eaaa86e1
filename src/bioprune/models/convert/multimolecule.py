"""``multimolecule``: multimolecule's RNA-FM port (``RnaFmForMaskedLM``, ``model_type: rnafm``).

multimolecule converted RNA-FM's weights into its own vocabulary (28 tokens,
``<pad>`` = 0): each RNA-FM token's row was copied by name, RNA-FM's four
``<null_1..4>`` rows were merged into one ``<null>`` row (the last one copied
wins), and tokens RNA-FM does not have (``I X | . * ?``) were added. Converting
back, every RNA-FM token takes the row of the multimolecule token of the same
name; what cannot be exact is named in ``conversion.json`` (``inexact``) and in
the command's output:

- the four ``<null_k>`` embedding rows, decoder rows and output biases all come
  from multimolecule's single ``<null>`` row, so the logits of those four output
  columns are equal to each other, where the original's differ;
- multimolecule-only tokens are dropped.

Logits over the other 21 output columns are the original RNA-FM's (when the
port was made from it). Convert the original ``RNA-FM_pretrained.pth`` with
``--from rnafm`` instead when you have it: that is exact on every token.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bioprune.data.alphabet import get_alphabet
from bioprune.errors import InputError
from bioprune.models.convert.base import (
    Converted,
    DirectoryFormat,
    Source,
    directory_config,
    esm_config_from_hf,
)
from bioprune.models.convert.fairseq import add_zero_contact_head
from bioprune.models.convert.hf_esm import read_directory_weights

__all__ = ["MultiMolecule"]

#: multimolecule 0.2.2's RNA vocabulary (``multimolecule.tokenisers.rna.utils``), used when
#: the directory has no vocab.txt.
DEFAULT_VOCAB = (
    "<pad>", "<cls>", "<eos>", "<unk>", "<mask>", "<null>",
    "A", "C", "G", "U", "N", "R", "Y", "S", "W", "K", "M", "B", "D", "H", "V",
    "I", "X", "|", ".", "*", "-", "?",
)  # fmt: skip

_LAYER_MAP = {
    "attention.self.query": "attention.self.query",
    "attention.self.key": "attention.self.key",
    "attention.self.value": "attention.self.value",
    "attention.output.dense": "attention.output.dense",
    "attention.layer_norm": "attention.LayerNorm",
    "intermediate.dense": "intermediate.dense",
    "output.dense": "output.dense",
    "layer_norm": "LayerNorm",
}
_TOP_MAP = {
    "model.embeddings.position_embeddings.weight": "esm.embeddings.position_embeddings.weight",
    "model.embeddings.layer_norm.weight": "esm.embeddings.layer_norm.weight",
    "model.embeddings.layer_norm.bias": "esm.embeddings.layer_norm.bias",
    "model.encoder.layer_norm.weight": "esm.encoder.emb_layer_norm_after.weight",
    "model.encoder.layer_norm.bias": "esm.encoder.emb_layer_norm_after.bias",
    "lm_head.transform.dense.weight": "lm_head.dense.weight",
    "lm_head.transform.dense.bias": "lm_head.dense.bias",
    "lm_head.transform.layer_norm.weight": "lm_head.layer_norm.weight",
    "lm_head.transform.layer_norm.bias": "lm_head.layer_norm.bias",
}


def _mm_name(token: str) -> str:
    return "<null>" if token.startswith("<null_") else token


class MultiMolecule(DirectoryFormat):
    name = "multimolecule"
    model_type = "rnafm"
    description = "multimolecule's RNA-FM port (RnaFmForMaskedLM directory; not exact on <null_k>)"

    @staticmethod
    def convert(source: Source) -> Converted:
        path = source.path
        cfg_path, raw = directory_config(path, "rnafm")
        _check_config(cfg_path, raw)
        vocab_path = path / "vocab.txt"
        vocab = (
            [t for t in vocab_path.read_text().splitlines() if t.strip()]
            if vocab_path.is_file()
            else list(DEFAULT_VOCAB)
        )
        state, weights = read_directory_weights(path, source.trusted)
        emb = state.get("model.embeddings.word_embeddings.weight")
        if emb is None or emb.shape[0] != len(vocab):
            raise InputError(
                weights, f"word embeddings do not have one row per token of {len(vocab)}"
            )
        alphabet = get_alphabet("rna")
        missing = [t for t in alphabet.tokens if _mm_name(t) not in vocab]
        if missing:
            raise InputError(vocab_path, f"lacks RNA-FM token(s) {missing}")
        config = esm_config_from_hf(
            raw, alphabet, position="absolute", ln_before=bool(raw.get("embed_norm", True))
        )
        layers, heads = config.num_hidden_layers, config.num_attention_heads
        hf, mapping, dropped = _map_layers(state, weights)
        rows = torch.tensor([vocab.index(_mm_name(t)) for t in alphabet.tokens])
        _map_vocabulary_rows(hf, mapping, state, rows, weights)
        notes: list[str] = []
        add_zero_contact_head(hf, mapping, notes, layers, heads)
        notes.append(
            f"token ids remapped from multimolecule's {len(vocab)}-token vocabulary "
            "(<pad> = 0) to RNA-FM's 25 (<pad> = 1), by token name"
        )
        info = {"layers": layers, "hidden": config.hidden_size, "heads": heads,
                "vocabulary": vocab, "weights": weights.name}  # fmt: skip
        return Converted("multimolecule", config, hf, alphabet, mapping, dropped, notes,
                         _inexact(vocab, alphabet), info)  # fmt: skip


def _check_config(cfg_path: Path, raw: dict) -> None:
    """Refuse the RNA-FM variants this converter cannot represent exactly."""
    if raw.get("codon"):
        raise InputError(cfg_path, "a codon (mRNA-FM) model: its 3-mer vocabulary is not supported")
    if raw.get("position_embedding_type", "absolute") != "absolute":
        raise InputError(cfg_path, "RNA-FM has learned absolute positions")
    if raw.get("hidden_act", "gelu") != "gelu":
        raise InputError(cfg_path, f"hidden_act {raw.get('hidden_act')!r} is not gelu")


def _map_layers(state: dict, weights: Path) -> tuple[dict, dict[str, str], dict[str, str]]:
    """``(hf tensors, target -> source name, dropped -> why)`` of every non-vocabulary tensor."""
    hf: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    dropped: dict[str, str] = {}
    unknown = []
    for name, t in state.items():
        if name in _TOP_MAP:
            hf[_TOP_MAP[name]] = t
            mapping[_TOP_MAP[name]] = name
        elif name.startswith("model.encoder.layer."):
            _, _, _, i, rest = name.split(".", 4)
            mod, _, kind = rest.rpartition(".")
            if mod not in _LAYER_MAP:
                unknown.append(name)
                continue
            target = f"esm.encoder.layer.{i}.{_LAYER_MAP[mod]}.{kind}"
            hf[target] = t
            mapping[target] = name
        elif name in ("model.embeddings.word_embeddings.weight", "lm_head.bias",
                      "lm_head.decoder.weight", "lm_head.decoder.bias"):  # fmt: skip
            continue  # vocabulary rows: _map_vocabulary_rows
        elif name.startswith(("ss_head.", "contact_head.", "model.pooler.")):
            dropped[name] = "not part of the masked LM"
        else:
            unknown.append(name)
    if unknown:
        raise InputError(weights, f"tensor(s) with no counterpart in RNA-FM: {unknown[:8]}")
    return hf, mapping, dropped


def _map_vocabulary_rows(hf: dict, mapping: dict, state: dict, rows, weights: Path) -> None:
    """Word embedding, tied decoder and output bias, rows re-ordered into RNA-FM's tokens."""
    emb = state["model.embeddings.word_embeddings.weight"]
    dec = state.get("lm_head.decoder.weight")
    if dec is not None and not torch.equal(dec, emb):
        raise InputError(weights, "lm_head.decoder.weight is not tied to the word embedding")
    dec_bias = state.get("lm_head.bias", state.get("lm_head.decoder.bias"))
    if dec_bias is None:
        raise InputError(weights, "no lm_head.bias")
    other = state.get("lm_head.decoder.bias")
    if other is not None and not torch.equal(other, dec_bias):
        raise InputError(weights, "lm_head.bias and lm_head.decoder.bias differ")
    hf["esm.embeddings.word_embeddings.weight"] = emb[rows]
    hf["lm_head.decoder.weight"] = hf["esm.embeddings.word_embeddings.weight"]
    hf["lm_head.bias"] = dec_bias[rows]
    how = "rows re-ordered into RNA-FM's token order by name"
    mapping["esm.embeddings.word_embeddings.weight"] = f"model.embeddings.word_embeddings ({how})"
    mapping["lm_head.decoder.weight"] = "tied to the word embedding"
    mapping["lm_head.bias"] = f"lm_head.bias ({how})"


def _inexact(vocab: list[str], alphabet) -> list[str]:
    """What the conversion cannot reproduce exactly (the merged <null> rows)."""
    extra = [t for t in vocab if t not in {_mm_name(x) for x in alphabet.tokens}]
    nulls = [t for t in alphabet.tokens if t.startswith("<null_")]
    return [
        f"{', '.join(nulls)}: RNA-FM's four rows were merged into multimolecule's one "
        "<null> row, which all four take here (their embeddings, decoder rows and output "
        "biases are equal; the original's differ), so the logits of those output columns "
        "are not the original's",
        f"multimolecule-only token(s) {' '.join(extra)} dropped (not in RNA-FM's vocabulary)",
        "convert the original RNA-FM_pretrained.pth with --from rnafm for a model that is "
        "exact on every token",
    ]
