"""The two fairseq-style sources, RNA-FM (``rnafm``) and fair-esm ESM-2 (``fair-esm``).

Both become HF ``EsmForMaskedLM`` with bioprune's alphabet, whose token ids are
the originals' (RNA-FM's 25 tokens, ESM-2's 33), so no embedding row moves.
Architecture numbers come from the tensors' shapes, checked against the
source's arguments; the head count, which no shape shows, comes from the
arguments.
"""

from __future__ import annotations

import re
from pathlib import Path

from bioprune.data.alphabet import get_alphabet
from bioprune.errors import InputError
from bioprune.models.convert.base import Converted, Source, pickle_source
from bioprune.models.convert.fairseq import (
    add_zero_contact_head,
    map_fairseq_state,
    strip_prefixes,
)
from bioprune.models.convert.safe_load import load_checkpoint

__all__ = ["FairEsm", "RnaFm", "esm_config"]

_LAYER_INDEX = re.compile(r"^layers\.(\d+)\.")


def _arg(args, *names, default=None):
    """``args.name`` for the first of ``names`` present (argparse.Namespace or dict)."""
    for n in names:
        if isinstance(args, dict) and n in args:
            return args[n]
        if not isinstance(args, dict) and hasattr(args, n):
            return getattr(args, n)
    return default


def esm_config(alphabet, *, hidden, layers, heads, ffn, position, max_positions,
               ln_before, token_dropout):  # fmt: skip
    from transformers import EsmConfig

    return EsmConfig(
        vocab_size=len(alphabet),
        mask_token_id=alphabet.mask_id,
        pad_token_id=alphabet.pad_id,
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        intermediate_size=ffn,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        max_position_embeddings=max_positions,
        position_embedding_type=position,
        emb_layer_norm_before=ln_before,
        token_dropout=bool(token_dropout),
        layer_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def _shapes(state: dict, where: Path, alphabet) -> dict:
    emb = state.get("embed_tokens.weight")
    if emb is None or emb.ndim != 2:
        raise InputError(where, "no 2-d embed_tokens.weight: not an ESM-style checkpoint")
    if emb.shape[0] != len(alphabet):
        raise InputError(
            where,
            f"embed_tokens.weight has {emb.shape[0]} rows but the {alphabet.name} alphabet "
            f"has {len(alphabet)} tokens",
        )
    layers = sorted({int(m.group(1)) for n in state if (m := _LAYER_INDEX.match(n))})
    if not layers or layers != list(range(len(layers))):
        raise InputError(where, f"encoder layers are not numbered 0..N-1 (found {layers[:8]})")
    fc1 = state.get("layers.0.fc1.weight")
    if fc1 is None:
        raise InputError(where, "no layers.0.fc1.weight: not an ESM-style checkpoint")
    return {"hidden": int(emb.shape[1]), "layers": len(layers), "ffn": int(fc1.shape[0])}


def _sizes(shapes: dict, heads: int) -> dict[str, int]:
    """``esm_config``'s size arguments from the tensors' shapes and the head count."""
    return {k: shapes[k] for k in ("hidden", "layers", "ffn")} | {"heads": heads}


def _check(where: Path, what: str, from_args, from_shapes) -> None:
    if from_args is not None and int(from_args) != int(from_shapes):
        raise InputError(
            where, f"the checkpoint's arguments say {what} {from_args} but its tensors have "
            f"{from_shapes}",
        )  # fmt: skip


def _heads(where: Path, value, hidden: int) -> int:
    if value is None:
        raise InputError(where, "the checkpoint's arguments do not give the attention head count")
    heads = int(value)
    if heads < 1 or hidden % heads:
        raise InputError(where, f"{heads} attention heads do not divide hidden size {hidden}")
    return heads


class RnaFm:
    """The original rna-fm ``.pth``: ``{"args": Namespace, "model": state dict}``, ESM-1b layers."""

    name = "rnafm"
    description = "original RNA-FM checkpoint (RNA-FM_pretrained.pth from the rna-fm package)"

    @staticmethod
    def matches(source: Source) -> bool:
        obj = source.obj
        if source.kind != "pickle" or not isinstance(obj, dict):
            return False
        if "args" not in obj or not isinstance(obj.get("model"), dict):
            return False
        emb = [v for k, v in obj["model"].items() if k.endswith("embed_tokens.weight")]
        return bool(emb) and emb[0].shape[0] == len(get_alphabet("rna"))

    load = staticmethod(pickle_source)

    @staticmethod
    def convert(source: Source) -> Converted:
        where, obj = source.path, source.obj
        if not isinstance(obj, dict) or "args" not in obj or "model" not in obj:
            raise InputError(
                where, "not an RNA-FM checkpoint (expected a dict with args and model)"
            )
        args = obj["args"]
        arch = _arg(args, "arch")
        if arch is not None and arch != "roberta_large":
            raise InputError(
                where, f"architecture {arch!r}: only ESM-1b-style ('roberta_large') RNA-FM "
                "checkpoints are supported",
            )  # fmt: skip
        alphabet = get_alphabet("rna")
        state, _ = strip_prefixes(obj["model"])
        shapes = _shapes(state, where, alphabet)
        _check(where, "layers", _arg(args, "encoder_layers", "layers"), shapes["layers"])
        _check(where, "embedding size", _arg(args, "encoder_embed_dim", "embed_dim"),
               shapes["hidden"])  # fmt: skip
        _check(where, "FFN size", _arg(args, "encoder_ffn_embed_dim", "ffn_embed_dim"),
               shapes["ffn"])  # fmt: skip
        heads = _heads(
            where, _arg(args, "encoder_attention_heads", "attention_heads"), shapes["hidden"]
        )
        pos = state.get("embed_positions.weight")
        if pos is None:
            raise InputError(where, "no embed_positions.weight: RNA-FM has learned positions")
        token_dropout = bool(_arg(args, "token_dropout", default=False))
        config = esm_config(
            alphabet,
            **_sizes(shapes, heads),
            position="absolute",
            max_positions=int(pos.shape[0]),
            ln_before="emb_layer_norm_before.weight" in state,
            token_dropout=token_dropout,
        )
        hf, mapping, dropped, notes = map_fairseq_state(state, where)
        add_zero_contact_head(hf, mapping, notes, shapes["layers"], heads)
        notes.append(
            f"token_dropout={token_dropout} "
            + ("(from the checkpoint's arguments)" if _arg(args, "token_dropout") is not None
               else "(the arguments have none; the original rna-fm model then has it off)")
        )  # fmt: skip
        notes.append(
            "rna-fm zeroes the <mask> embedding row when it loads embed_tokens, then loads the "
            "tied lm_head.weight into the same tensor, which restores the row: the row is "
            "copied as it is in lm_head.weight"
        )
        notes.append("dropout set to 0 (inference and bioprune's scoring run in eval mode)")
        info = {
            "arch": arch,
            "layers": shapes["layers"],
            "hidden": shapes["hidden"],
            "heads": heads,
            "ffn": shapes["ffn"],
            "position_rows": int(pos.shape[0]),
            "token_dropout": token_dropout,
        }
        return Converted("rnafm", config, hf, alphabet, mapping, dropped, notes, [], info)


class FairEsm:
    """fair-esm ESM-2 ``.pt``: ``{"model": state dict, "cfg": {"model": Namespace}}``.

    A ``NAME-contact-regression.pt`` beside the file (as fair-esm ships them)
    supplies the contact head.
    """

    name = "fair-esm"
    description = "fair-esm ESM-2 checkpoint (esm2_t*_*.pt, optional -contact-regression.pt)"

    @staticmethod
    def matches(source: Source) -> bool:
        obj = source.obj
        return (
            source.kind == "pickle"
            and isinstance(obj, dict)
            and isinstance(obj.get("model"), dict)
            and "cfg" in obj
        )

    load = staticmethod(pickle_source)

    @staticmethod
    def convert(source: Source) -> Converted:
        where, obj = source.path, source.obj
        if not FairEsm.matches(source):
            raise InputError(where, "not a fair-esm ESM-2 checkpoint (expected model and cfg)")
        cfg = obj["cfg"]
        margs = _arg(cfg, "model", default=cfg)
        alphabet = get_alphabet("protein")
        raw = dict(obj["model"])
        regression = Path(str(where.with_suffix("")) + "-contact-regression.pt")
        notes: list[str] = []
        if regression.is_file():
            extra = load_checkpoint(regression, trust=source.trusted)
            reg = extra.get("model") if isinstance(extra, dict) else None
            if not isinstance(reg, dict):
                raise InputError(regression, "not a fair-esm contact-regression file")
            raw.update(reg)
            notes.append(f"contact head from {regression.name}")
        state, _ = strip_prefixes(raw)
        shapes = _shapes(state, where, alphabet)
        _check(where, "layers", _arg(margs, "encoder_layers"), shapes["layers"])
        _check(where, "embedding size", _arg(margs, "encoder_embed_dim"), shapes["hidden"])
        if shapes["ffn"] != 4 * shapes["hidden"]:
            raise InputError(where, f"FFN size {shapes['ffn']} is not 4 x {shapes['hidden']} "
                             "as in ESM-2")  # fmt: skip
        if any(n.startswith("embed_positions") for n in state):
            raise InputError(where, "learned positions: an ESM-1b checkpoint, not ESM-2")
        heads = _heads(where, _arg(margs, "encoder_attention_heads"), shapes["hidden"])
        td = _arg(margs, "token_dropout")
        token_dropout = True if td is None else bool(td)
        config = esm_config(
            alphabet,
            **_sizes(shapes, heads),
            position="rotary",
            max_positions=1026,
            ln_before=False,
            token_dropout=token_dropout,
        )
        hf, mapping, dropped, more = map_fairseq_state(state, where)
        notes += more
        add_zero_contact_head(hf, mapping, notes, shapes["layers"], heads)
        notes.append(
            f"token_dropout={token_dropout}: ESM-2 multiplies every embedding by 0.88 / (1 - the "
            "example's own <mask> ratio) and zeroes <mask> embeddings, as it was trained; "
            "switching it off would change the logits. The factor depends only on the example "
            "(given an attention mask), so scores stay exact and batch-invariant"
        )
        notes.append("dropout set to 0 (inference and bioprune's scoring run in eval mode)")
        info = {
            "layers": shapes["layers"],
            "hidden": shapes["hidden"],
            "heads": heads,
            "ffn": shapes["ffn"],
            "token_dropout": token_dropout,
        }
        return Converted("fair-esm", config, hf, alphabet, mapping, dropped, notes, [], info)
