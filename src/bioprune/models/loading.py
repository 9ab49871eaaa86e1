"""Loading a bioprune model directory and checking it against a corpus.

Weights load completely or not at all. A model directory is refused, with one
message naming the file and the reason, when:

- ``config.json`` is missing, is not JSON, names an architecture other than
  ``esm`` or holds values no model can have (checked before anything is built);
- ``bioprune_alphabet.json`` is missing or damaged, or the vocabulary size
  differs from the alphabet's;
- there is no ``model.safetensors`` (or sharded index); a directory holding only
  pickle weights (``pytorch_model.bin``) is refused without unpickling anything,
  since a pickle can execute code;
- the safetensors header is unreadable (a truncated file) or its tensor shapes
  contradict ``config.json`` (checked from the header, before the model is
  built, so a nonsense config cannot allocate a huge model);
- after loading, transformers reports any missing, unexpected or mis-shaped
  tensor: transformers would initialise those at random and carry on, so that
  two runs of the same command would differ. Tensors that are legitimately
  absent from the file (``lm_head.decoder.weight``, tied to the word
  embeddings; the ``position_ids`` buffer) are not reported by transformers.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from bioprune.data.alphabet import Alphabet
from bioprune.errors import InputError, UnsafeFileError, reading
from bioprune.models.presets import load_model_alphabet, max_residues

__all__ = [
    "ARCHITECTURES",
    "check_model_fits_corpus",
    "load_masked_lm",
    "read_model_config",
    "weights_files",
]

#: ``model_type`` of config.json -> (config class, masked-LM class), as ``module:name``.
ARCHITECTURES: dict[str, tuple[str, str]] = {
    "esm": ("transformers:EsmConfig", "transformers:EsmForMaskedLM"),
    "esmc": ("bioprune.models.esmc:EsmcConfig", "bioprune.models.esmc:EsmcForMaskedLM"),
}


def _architecture_class(model_type: str, which: int):
    """The config (``which=0``) or masked-LM (``1``) class of a supported ``model_type``.

    Importing ``bioprune.models.esmc`` also registers ESM-C with the Auto classes.
    """
    import importlib

    module, name = ARCHITECTURES[model_type][which].split(":")
    return getattr(importlib.import_module(module), name)


WEIGHTS = "model.safetensors"
WEIGHTS_INDEX = "model.safetensors.index.json"
#: Weight files that are pickles (``torch.save``): never loaded.
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
#: How many tensor names a message lists before "and N more".
SHOWN = 6

_POSITIVE_INTS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "max_position_embeddings",
)
_LAYER = re.compile(r"^esm\.encoder\.layer\.(\d+)\.")


def _names(keys, shown: int = SHOWN) -> str:
    """Tensor names for a message; a layer's tensors collapse to ``esm.encoder.layer.N.*``."""
    groups: dict[str, list[str]] = {}
    for k in sorted(str(k) for k in keys):
        m = _LAYER.match(k)
        groups.setdefault(m.group(0) + "*" if m else k, []).append(k)
    items = [g if len(ks) == 1 and g == ks[0] else f"{g} ({len(ks)})" for g, ks in groups.items()]
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


def _model_dir(model_dir: str | Path) -> Path:
    model_dir = Path(model_dir)
    if not model_dir.exists():
        raise InputError(model_dir, "no such model directory")
    if not model_dir.is_dir():
        raise InputError(model_dir, "is a file, not a model directory (give the directory)")
    if not (model_dir / "config.json").is_file():
        raise InputError(
            model_dir / "config.json",
            "no such file: not a model directory (create one with `bioprune init`)",
        )
    return model_dir


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check_config_values(path: Path, raw: dict) -> None:
    """Refuse values no model can have, with the field named (cheap: before building)."""

    def bad(reason: str):
        return InputError(path, f"invalid model config: {reason}")

    for key in _POSITIVE_INTS:
        v = raw.get(key)
        if not _is_int(v) or v < 1:
            raise bad(f"{key} must be a positive integer (got {v!r})")
    if raw["hidden_size"] % raw["num_attention_heads"]:
        raise bad(
            f"hidden_size {raw['hidden_size']} is not a multiple of "
            f"num_attention_heads {raw['num_attention_heads']}"
        )
    pos = raw.get("position_embedding_type", "absolute")
    if pos not in ("absolute", "rotary"):
        raise bad(f"position_embedding_type must be 'absolute' or 'rotary' (got {pos!r})")
    if pos == "rotary" and (raw["hidden_size"] // raw["num_attention_heads"]) % 2:
        raise bad("rotary positions need an even head size (hidden_size / num_attention_heads)")
    for key in ("pad_token_id", "mask_token_id"):
        v = raw.get(key)
        if v is not None and (not _is_int(v) or not 0 <= v < raw["vocab_size"]):
            raise bad(f"{key} must be a token id below vocab_size {raw['vocab_size']} (got {v!r})")
    for key in ("hidden_dropout_prob", "attention_probs_dropout_prob"):
        v = raw.get(key, 0.0)
        if not _is_number(v) or not 0.0 <= v < 1.0:
            raise bad(f"{key} must be a number in [0, 1) (got {v!r})")
    eps = raw.get("layer_norm_eps", 1e-12)
    if not _is_number(eps) or not eps > 0:
        raise bad(f"layer_norm_eps must be a positive number (got {eps!r})")
    for key in ("emb_layer_norm_before", "token_dropout", "tie_word_embeddings"):
        v = raw.get(key)
        if v is not None and not isinstance(v, bool):
            raise bad(f"{key} must be true or false (got {v!r})")
    if raw.get("is_folding_model"):
        raise bad("an ESMFold config (is_folding_model) is not a masked language model")


def read_model_config(model_dir: str | Path):
    """The ``transformers`` config of a model directory, validated before any model is built.

    Raises :class:`InputError` naming ``config.json`` when it is missing, not a
    JSON object, of an unsupported ``model_type`` or holds impossible values.
    """

    path = _model_dir(model_dir) / "config.json"
    with reading(path, "model config"):
        raw = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(raw, dict):
        raise InputError(path, f"expected a JSON object, got {type(raw).__name__}")
    model_type = raw.get("model_type")
    if model_type not in ARCHITECTURES:
        raise InputError(
            path,
            f"model_type {model_type!r} is not supported (bioprune models are "
            f"{sorted(ARCHITECTURES)}: EsmForMaskedLM or ESM-C, written by `bioprune init` "
            "or `bioprune convert`)",
        )
    _check_config_values(path, raw)
    config_cls = _architecture_class(model_type, 0)
    try:  # the fields checked above are the ones that matter; this catches the rest
        return config_cls.from_dict(raw)
    except _config_errors() as exc:  # the config class's own validation of the file's values
        reason = " ".join(line.strip() for line in str(exc).strip().splitlines()[:2])
        raise InputError(path, f"invalid model config: {reason}") from exc


def _config_errors() -> tuple[type[BaseException], ...]:
    """What a transformers config class raises for bad field values (typed dataclass fields
    raise huggingface_hub's StrictDataclassError)."""
    try:
        from huggingface_hub.errors import StrictDataclassError
    except ImportError:  # older huggingface_hub: plain ValueError/TypeError
        return (ValueError, TypeError)
    return (ValueError, TypeError, StrictDataclassError)


def weights_files(model_dir: str | Path) -> list[Path]:
    """The safetensors files of a model directory (one file, or the shards of an index).

    Pickle weights are refused unread (:class:`UnsafeFileError`), with how to convert them.
    """
    model_dir = Path(model_dir)
    single, index = model_dir / WEIGHTS, model_dir / WEIGHTS_INDEX
    if single.is_file():
        return [single]
    if index.is_file():
        with reading(index, "sharded weights index"):
            meta = json.loads(index.read_text(encoding="utf-8"))
        weight_map = meta.get("weight_map") if isinstance(meta, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise InputError(index, "no weight_map: not a safetensors index")
        shards = sorted({str(v) for v in weight_map.values()})
        for name in shards:
            if Path(name).name != name or not name.endswith(".safetensors"):
                raise InputError(index, f"shard {name!r} is not a .safetensors file of {model_dir}")
            if not (model_dir / name).is_file():
                raise InputError(model_dir / name, "no such file (listed in the weights index)")
        return [model_dir / name for name in shards]
    pickles = sorted(p for p in model_dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise UnsafeFileError(
            pickles[0],
            f"pickle weights are not loaded (unpickling can execute code); bioprune reads "
            f"{WEIGHTS} only: convert a checkpoint you trust with transformers "
            f"(from_pretrained(...).save_pretrained(NEW_DIR) writes {WEIGHTS})",
        )
    raise InputError(
        single, f"no such file: {model_dir} has config.json but no model weights ({WEIGHTS})"
    )


def _check_header(files: list[Path], config, config_path: Path) -> None:
    """Read the safetensors headers (not the data) and check the shapes config.json implies.

    A truncated or garbage file fails here, and so does a config that contradicts the
    weights (e.g. a larger ``hidden_size``) before a model of that size is allocated.
    """
    from safetensors import safe_open

    shapes: dict[str, list[int]] = {}
    for f in files:
        with reading(f, "model weights"), safe_open(str(f), framework="pt") as fh:
            for name in fh.keys():
                shapes[name] = list(fh.get_slice(name).get_shape())
    if not shapes:
        raise InputError(files[0], "holds no tensors")
    h, v, ffn = config.hidden_size, config.vocab_size, config.intermediate_size
    expected = {"esm.embeddings.word_embeddings.weight": [v, h]}
    layers = {int(m.group(1)) for n in shapes if (m := _LAYER.match(n))}
    beyond = sorted(i for i in layers if i >= config.num_hidden_layers)
    if beyond:
        raise InputError(
            files[0],
            f"holds encoder layer(s) {beyond} but {config_path} has num_hidden_layers "
            f"{config.num_hidden_layers}; the config does not describe these weights",
        )
    for i in layers:
        expected[f"esm.encoder.layer.{i}.intermediate.dense.weight"] = [ffn, h]
    wrong = [
        f"{n} is {shapes[n]}, config implies {s}"
        for n, s in expected.items()
        if n in shapes and shapes[n] != s
    ]
    if wrong:
        raise InputError(
            files[0],
            f"tensor shapes contradict {config_path}: {'; '.join(wrong[:3])}",
        )


def _check_loading_info(weights: Path, info: dict) -> None:
    """Refuse a model that transformers completed with random values."""
    problems = []
    if info.get("missing_keys"):
        missing = info["missing_keys"]
        problems.append(f"{len(missing)} tensor(s) missing ({_names(missing)})")
    if info.get("mismatched_keys"):
        mism = info["mismatched_keys"]
        shown = [
            f"{m[0]} {list(m[1])} vs model {list(m[2])}"
            if isinstance(m, tuple) and len(m) == 3
            else str(m)
            for m in sorted(mism, key=str)
        ]
        more = f" and {len(shown) - 3} more" if len(shown) > 3 else ""
        problems.append(f"{len(shown)} tensor(s) of the wrong shape ({'; '.join(shown[:3])}{more})")
    if info.get("unexpected_keys"):
        unexpected = info["unexpected_keys"]
        problems.append(f"{len(unexpected)} unexpected tensor(s) ({_names(unexpected)})")
    if info.get("error_msgs"):
        problems.append("; ".join(str(e).splitlines()[0] for e in info["error_msgs"][:2]))
    if problems:
        raise InputError(
            weights,
            "incomplete or mismatched weights: "
            + "; ".join(problems)
            + "; refusing to load it (transformers would initialise the missing ones at "
            "random), use a complete model directory",
        )


def load_masked_lm(model_dir: str | Path, *, device=None, dtype=None):
    """Load ``(model, alphabet)`` from a bioprune/HF model directory, model in eval mode.

    The alphabet comes from the directory's ``bioprune_alphabet.json``; the
    model's vocabulary size must match it. Every tensor of the model must come
    from the weights file (see the module docstring); otherwise
    :class:`~bioprune.errors.InputError` names the file and the tensors.
    """
    from bioprune.models.hf import quiet_transformers

    model_dir = _model_dir(model_dir)
    config = read_model_config(model_dir)
    alphabet = load_model_alphabet(model_dir)
    # ESM-C's table has 64 rows of which its tokenizer uses the first 33 (alphabet_size).
    key = "alphabet_size" if hasattr(config, "alphabet_size") else "vocab_size"
    tokens = getattr(config, key)
    if tokens != len(alphabet):
        raise InputError(
            model_dir / "config.json",
            f"{key} is {tokens} but the model's {alphabet.name} alphabet "
            f"({model_dir / 'bioprune_alphabet.json'}) has {len(alphabet)} tokens",
        )
    files = weights_files(model_dir)
    _check_header(files, config, model_dir / "config.json")
    model_cls = _architecture_class(config.model_type, 1)
    with quiet_transformers(), reading(files[0], "model weights"):
        # ignore_mismatched_sizes: report mis-shaped tensors in `info` (refused below)
        # instead of transformers' multi-line RuntimeError.
        model, info = model_cls.from_pretrained(
            model_dir,
            config=config,
            dtype=dtype,
            use_safetensors=True,
            output_loading_info=True,
            ignore_mismatched_sizes=True,
        )
    _check_loading_info(files[0] if len(files) == 1 else model_dir / WEIGHTS_INDEX, info)
    model.eval()
    if device is not None:
        model.to(device)
    return model, alphabet


def check_model_fits_corpus(model, model_alphabet: Alphabet, corpus, model_dir="model") -> None:
    """Refuse, before any work, a model whose vocabulary or positions do not fit ``corpus``."""
    if model_alphabet.name != corpus.alphabet.name:
        raise ValueError(
            f"model {model_dir} expects the {model_alphabet.name} alphabet but corpus "
            f"{corpus.path} is {corpus.alphabet.name}; use a model initialised with "
            f"--alphabet {corpus.alphabet.name}"
        )
    limit = max_residues(model.config)
    if corpus.max_length > limit:
        raise ValueError(
            f"corpus {corpus.path} holds sequences of up to {corpus.max_length} residues but "
            f"model {model_dir} accepts at most {limit}; prepare the corpus with "
            f"--max-length {limit}"
        )
