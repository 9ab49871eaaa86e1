"""Loading a bioprune model directory and checking it against a corpus."""

from __future__ import annotations

from pathlib import Path

from bioprune.data.alphabet import Alphabet
from bioprune.models.presets import load_model_alphabet, max_residues

__all__ = ["check_model_fits_corpus", "load_masked_lm"]


def load_masked_lm(model_dir: str | Path, *, device=None, dtype=None):
    """Load ``(model, alphabet)`` from a bioprune/HF model directory, model in eval mode.

    The alphabet comes from the directory's ``bioprune_alphabet.json``; the
    model's vocabulary size must match it.
    """
    from transformers import AutoModelForMaskedLM
    from transformers.utils import logging as hf_logging

    import bioprune.models.esmc  # noqa: F401  registers model_type "esmc" with the Auto classes

    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir} is not a model directory (no config.json)")
    alphabet = load_model_alphabet(model_dir)
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    # ESM-C's table has 64 rows of which its tokenizer uses the first 33 (alphabet_size).
    tokens = getattr(model.config, "alphabet_size", model.config.vocab_size)
    if tokens != len(alphabet):
        raise ValueError(
            f"{model_dir}: model vocabulary has {tokens} tokens but its "
            f"{alphabet.name} alphabet has {len(alphabet)}"
        )
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
