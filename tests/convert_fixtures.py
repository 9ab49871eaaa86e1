"""Tiny random models built with the ORIGINAL packages' classes, saved in their on-disk layouts.

- rna-fm (``fm``): ``BioBertModel`` (ESM-1b layers), saved as RNA-FM_pretrained.pth is:
  ``{"args": argparse.Namespace(arch="roberta_large", encoder_*...), "model": state}``
  with ``encoder.sentence_encoder.`` / ``encoder.`` prefixes. fairseq writes its
  checkpoints after moving every tensor to the CPU one by one, which unties
  ``lm_head.weight`` from ``embed_tokens.weight``: they are separate (equal) tensors.
- fair-esm (``esm``): ``ESM2``, saved as esm2_t*_*.pt is: ``{"model": state,
  "cfg": {"model": Namespace(encoder_layers, encoder_embed_dim,
  encoder_attention_heads, token_dropout)}}`` plus ``NAME-contact-regression.pt``.

Every tensor is randomised: LayerNorm weights around 1 +- 0.3, biases non-zero,
so that a swapped or missing mapping changes the logits.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

LAYERS, HIDDEN, HEADS, FFN = 2, 32, 4, 64


def randomise(model: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.3 * noise)
            elif name.endswith("bias"):
                p.copy_(0.2 * noise)
            elif "embed" in name:
                p.copy_(0.5 * noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def _prefixed(state: dict, style: str = "sentence_encoder") -> dict:
    """fairseq names: ``encoder.sentence_encoder.`` + encoder / ``encoder.`` + LM head
    (fair-esm), or ``encoder.encoder.`` + everything (RNA-FM_pretrained.pth)."""
    out = {}
    for k, v in state.items():
        if style == "encoder.encoder":
            prefix = "encoder.encoder."
        elif k.startswith(("lm_head.", "contact_head.")):
            prefix = "encoder."
        else:
            prefix = "encoder.sentence_encoder."
        out[prefix + k] = v.detach().clone()  # fairseq's checkpoints hold untied copies
    return out


def rnafm_original(seed: int = 0):
    import fm

    alphabet = fm.Alphabet.from_architecture("roberta_large", theme="rna")
    model_args = argparse.Namespace(
        arch="roberta_large", layers=LAYERS, embed_dim=HIDDEN, ffn_embed_dim=FFN,
        attention_heads=HEADS, max_positions=1024, emb_layer_norm_before=True,
    )  # fmt: skip
    model = fm.BioBertModel(model_args, alphabet)
    randomise(model, seed)
    return model


def save_rnafm(
    model, path: Path, token_dropout: bool | None = None, style: str = "encoder.encoder"
) -> Path:
    """``style="encoder.encoder"``: every tensor under ``encoder.encoder.``, the contact
    head included (as RNA-FM_pretrained.pth); ``"sentence_encoder"``: fair-esm's prefixes,
    no contact head."""
    args = argparse.Namespace(
        arch="roberta_large", encoder_layers=LAYERS, encoder_embed_dim=HIDDEN,
        encoder_ffn_embed_dim=FFN, encoder_attention_heads=HEADS, max_positions=1024,
        dropout=0.1, attention_dropout=0.1,
    )  # fmt: skip
    if token_dropout is not None:
        args.token_dropout = token_dropout
    state = model.state_dict()
    if style != "encoder.encoder":
        state = {k: v for k, v in state.items() if not k.startswith("contact_head")}
    torch.save({"args": args, "model": _prefixed(state, style)}, path)
    return path


def load_rnafm_reference(path: Path):
    """The original package's own loader (our test file, so the full unpickler is fine)."""
    import fm

    data = torch.load(path, map_location="cpu", weights_only=False)
    model, _ = fm.pretrained.load_model_and_alphabet_core("rna-fm", data, None, theme="rna")
    return model.eval()


def esm2_original(seed: int = 0, token_dropout: bool = True):
    import esm
    from esm.model.esm2 import ESM2

    alphabet = esm.data.Alphabet.from_architecture("ESM-1b")
    model = ESM2(num_layers=LAYERS, embed_dim=HIDDEN, attention_heads=HEADS,
                 alphabet=alphabet, token_dropout=token_dropout)  # fmt: skip
    randomise(model, seed)
    return model


def save_esm2(model, path: Path, token_dropout: bool = True, regression: bool = True) -> Path:
    cfg = {"model": argparse.Namespace(
        encoder_layers=LAYERS, encoder_embed_dim=HIDDEN, encoder_attention_heads=HEADS,
        token_dropout=token_dropout,
    )}  # fmt: skip
    state = model.state_dict()
    main = {k: v for k, v in state.items() if not k.startswith("contact_head")}
    torch.save({"model": _prefixed(main), "cfg": cfg}, path)
    if regression:
        reg = {k: v.clone() for k, v in state.items() if k.startswith("contact_head")}
        torch.save({"model": reg}, path.with_name(path.stem + "-contact-regression.pt"))
    return path


def load_esm2_reference(path: Path):
    import esm

    data = torch.load(path, map_location="cpu", weights_only=False)
    reg_path = path.with_name(path.stem + "-contact-regression.pt")
    reg = torch.load(reg_path, map_location="cpu", weights_only=True) if reg_path.exists() else None
    model, _ = esm.pretrained.load_model_and_alphabet_core(path.stem, data, reg)
    return model.eval()


def token_batch(alphabet_size: int, residues: range, mask_id: int, pad_id: int, seed: int = 0):
    """(B, T) ids: <cls> residues <eos>, mixed lengths padded with <pad>, some <mask>."""
    g = torch.Generator().manual_seed(seed)
    lengths = [17, 5, 11, 1, 23]
    width = max(lengths) + 2
    ids = torch.full((len(lengths), width), pad_id, dtype=torch.long)
    for b, n in enumerate(lengths):
        res = torch.randint(residues.start, residues.stop, (n,), generator=g)
        masked = torch.rand(n, generator=g) < 0.2
        if b == 0:
            masked[:3] = True
        res[masked] = mask_id
        ids[b, 0] = 0
        ids[b, 1 : n + 1] = res
        ids[b, n + 1] = 2
    return ids
