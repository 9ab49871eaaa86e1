"""Model presets built on HuggingFace ``EsmForMaskedLM``, and ``bioprune init``.

Every preset is an ESM-style BERT encoder with an MLM head, saved with
``save_pretrained`` so that ``transformers.AutoModelForMaskedLM.from_pretrained``
loads it with no bioprune code. The vocabulary is the alphabet's (RNA-FM's 25
or ESM-2's 33 tokens, same ids), so real checkpoints can be converted later.

Deliberate settings (see README, "Model presets"):

- ``token_dropout=False``: ESM's token dropout rescales embeddings by the
  observed mask ratio. It only makes sense with ESM's exact masking recipe and
  makes a model's output depend on how many ``<mask>`` tokens a batch holds; we
  train from scratch with our own masking, so it is off.
- dropout 0.0 (hidden and attention), as ESM-2 was trained: the coreset
  comparisons run for a fixed, short compute budget where dropout only slows
  learning, and influence scores are taken in eval mode anyway. Override with
  ``init --dropout`` for long runs on small coresets.
- ``esm2-*`` presets use rotary positions like ESM-2; ``rnafm`` uses learned
  absolute positions with 1,026 rows and a LayerNorm before the encoder, like
  RNA-FM (ESM-1b architecture); ``tiny`` and ``small`` use rotary positions,
  which need no table sized to the corpus's longest sequence.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from bioprune import artifacts
from bioprune.data.alphabet import Alphabet, get_alphabet

__all__ = [
    "PRESETS",
    "ModelPreset",
    "build_config",
    "build_model",
    "count_parameters",
    "init_model",
    "load_model_alphabet",
    "max_residues",
    "new_model",
]

#: Longest framed input every preset accepts: 1,022 residues + <cls> + <eos>.
MAX_TOKENS = 1024


@dataclass(frozen=True)
class ModelPreset:
    """Architecture of one preset (numbers of the HF ``EsmConfig``)."""

    name: str
    layers: int
    hidden: int
    heads: int
    ffn: int
    position_embedding_type: str  # "rotary" or "absolute"
    emb_layer_norm_before: bool
    description: str
    family: str = "esm"  # "esm" (HF EsmForMaskedLM) or "esmc" (bioprune.models.esmc)


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in [
        ModelPreset("micro", 2, 64, 4, 256, "rotary", False,
                    "seconds-per-run CPU studies (~0.1M parameters; docs/science.md)"),
        ModelPreset("tiny", 4, 128, 4, 512, "rotary", False,
                    "CPU tests and the demo (<= 1M parameters)"),
        ModelPreset("small", 6, 384, 6, 1536, "rotary", False,
                    "laptop studies (~10M parameters)"),
        ModelPreset("esm2-8m", 6, 320, 20, 1280, "rotary", False,
                    "ESM-2 8M architecture (esm2_t6_8M)"),
        ModelPreset("esm2-35m", 12, 480, 20, 1920, "rotary", False,
                    "ESM-2 35M architecture (esm2_t12_35M)"),
        ModelPreset("rnafm", 12, 640, 20, 5120, "absolute", True,
                    "RNA-FM architecture (ESM-1b style, ~99M parameters)"),
        ModelPreset("esmc-tiny", 4, 128, 4, 512, "rotary", False,
                    "ESM-C architecture, CPU-sized (tests and demos)", "esmc"),
        ModelPreset("esmc-300m", 30, 960, 15, 2560, "rotary", False,
                    "ESM-C 300M architecture (esmc_300m)", "esmc"),
        ModelPreset("esmc-600m", 36, 1152, 18, 3072, "rotary", False,
                    "ESM-C 600M architecture (esmc_600m)", "esmc"),
    ]
}  # fmt: skip


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; choose one of {list(PRESETS)}") from None


def build_config(preset: str | ModelPreset, alphabet: str | Alphabet, *, dropout: float = 0.0):
    """The ``transformers.EsmConfig`` of a preset for an alphabet."""
    from transformers import EsmConfig

    p = get_preset(preset) if isinstance(preset, str) else preset
    a = get_alphabet(alphabet) if isinstance(alphabet, str) else alphabet
    if p.family == "esmc":
        return _esmc_config(p, a, dropout)
    # Learned absolute positions are indexed from padding_idx + 1 (ESM-1b / RNA-FM
    # convention), so the table needs MAX_TOKENS + pad_id + 1 rows (1,026 for RNA-FM).
    max_positions = MAX_TOKENS + a.pad_id + 1
    return EsmConfig(
        vocab_size=len(a),
        mask_token_id=a.mask_id,
        pad_token_id=a.pad_id,
        hidden_size=p.hidden,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        intermediate_size=p.ffn,
        hidden_dropout_prob=dropout,
        attention_probs_dropout_prob=dropout,
        max_position_embeddings=max_positions,
        position_embedding_type=p.position_embedding_type,
        emb_layer_norm_before=p.emb_layer_norm_before,
        token_dropout=False,
        layer_norm_eps=1e-5,
        tie_word_embeddings=True,
    )


def _esmc_config(p: ModelPreset, a: Alphabet, dropout: float):
    from bioprune.models.esmc import EsmcConfig

    if a.name != "protein":
        raise ValueError(f"preset {p.name} is ESM-C, a protein model: use --alphabet protein")
    if dropout:
        raise ValueError(f"preset {p.name}: ESM-C has no dropout layers; leave --dropout at 0")
    return EsmcConfig(
        hidden_size=p.hidden,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        intermediate_size=p.ffn,
        alphabet_size=len(a),
        pad_token_id=a.pad_id,
        mask_token_id=a.mask_id,
    )


def build_model(preset: str | ModelPreset, alphabet: str | Alphabet, *, dropout: float = 0.0):
    """A randomly initialised masked LM of a preset (seed torch before calling)."""
    from transformers import AutoModelForMaskedLM, EsmForMaskedLM

    config = build_config(preset, alphabet, dropout=dropout)
    if config.model_type == "esm":
        return EsmForMaskedLM(config)
    return AutoModelForMaskedLM.from_config(config)


def new_model(
    preset: str | ModelPreset,
    alphabet: str | Alphabet = "rna",
    seed: int = 0,
    *,
    dropout: float = 0.0,
):
    """A randomly initialised masked LM of a preset; the weights depend only on the arguments.

    Torch's global random state is seeded with ``seed`` for the build and
    restored afterwards, so the caller's random stream is left as it was.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(preset, alphabet, dropout=dropout)


def max_residues(config) -> int:
    """Longest sequence (residues) a model accepts, from its config."""
    if getattr(config, "position_embedding_type", "absolute") == "rotary":
        return MAX_TOKENS - 2
    return int(config.max_position_embeddings) - int(config.pad_token_id) - 1 - 2


def save_alphabet(model_dir: str | Path, alphabet: Alphabet) -> None:
    """Write the alphabet a model expects, plus an HF ``EsmTokenizer`` for outside users."""
    from transformers import EsmTokenizer

    model_dir = Path(model_dir)
    artifacts.write_json(
        model_dir / artifacts.MODEL_ALPHABET,
        {"alphabet": alphabet.name, "tokens": list(alphabet.tokens)},
    )
    vocab = model_dir / "vocab.txt"
    vocab.write_text("\n".join(alphabet.tokens) + "\n")
    tok = EsmTokenizer(vocab_file=str(vocab), model_max_length=MAX_TOKENS)
    tok.save_pretrained(model_dir)


def load_model_alphabet(model_dir: str | Path) -> Alphabet:
    """The alphabet a bioprune model directory expects (checks the token order).

    Raises :class:`~bioprune.errors.InputError` naming ``bioprune_alphabet.json``
    when it is missing, unreadable, names an unknown alphabet or lists other tokens.
    """
    from bioprune.data.alphabet import ALPHABETS
    from bioprune.errors import InputError, reading

    path = Path(model_dir) / artifacts.MODEL_ALPHABET
    if not path.is_file():
        raise InputError(
            path,
            "no such file: not a bioprune model directory (create one with `bioprune init`)",
        )
    with reading(path, "model alphabet"):
        meta = json.loads(path.read_text(encoding="utf-8"))
    name = meta.get("alphabet") if isinstance(meta, dict) else None
    tokens = meta.get("tokens") if isinstance(meta, dict) else None
    if not isinstance(name, str) or not isinstance(tokens, list):
        raise InputError(
            path, 'expected {"alphabet": NAME, "tokens": [...]}, as `bioprune init` writes'
        )
    if name not in ALPHABETS:
        raise InputError(path, f"unknown alphabet {name!r}; choose one of {sorted(ALPHABETS)}")
    alphabet = ALPHABETS[name]
    if tuple(tokens) != alphabet.tokens:
        raise InputError(path, f"token order differs from bioprune's {alphabet.name} alphabet")
    return alphabet


def init_model(
    preset: str,
    alphabet: str,
    out: str | Path,
    *,
    seed: int = 0,
    dropout: float = 0.0,
    overwrite: bool = False,
) -> dict:
    """Write a randomly initialised preset model in HF format to ``out``.

    Returns a summary with the parameter count. The weights depend only on
    ``(preset, alphabet, seed, dropout)``.
    """
    from bioprune.models.hf import quiet_transformers

    p = get_preset(preset)
    a = get_alphabet(alphabet)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"--dropout {dropout} must lie in [0, 1)")
    model = new_model(p, a, seed, dropout=dropout)
    n_params = count_parameters(model)
    info = {
        "preset": asdict(p),
        "alphabet": a.name,
        "seed": seed,
        "dropout": dropout,
        "parameters": n_params,
        **artifacts.provenance(),
    }
    # quiet: the command prints its own one-line summary
    with (
        quiet_transformers(errors_only=False),
        artifacts.atomic_dir(out, overwrite=overwrite) as tmp,
    ):
        model.save_pretrained(tmp)
        save_alphabet(tmp, a)
        artifacts.write_json(tmp / "bioprune_init.json", info)
    return info


def count_parameters(model) -> int:
    """Trainable parameters, tied tensors counted once, the unused contact head excluded."""
    seen: set[int] = set()
    total = 0
    for name, param in model.named_parameters():
        if "contact_head" in name or id(param) in seen:
            continue
        seen.add(id(param))
        total += param.numel()
    return total
