"""Regenerate tests/data/esmc_golden_*: a tiny ESM-C, token ids and the logits the REAL
``esm`` package (EvolutionaryScale) computes, in the package's own on-disk layouts.

Run it OUTSIDE bioprune's environment, with the ``esm`` package importable. Two
layouts exist and each package version writes one:

- esm 3.1-3.2 (``ESMC(d_model, n_heads, n_layers, tokenizer)``, the layout of
  ``esmc_300m_2024_12_v0.pth``: ``embed``, ``transformer.blocks.N.attn.layernorm_qkv.{0,1}``,
  ``ffn.{0,1,3}``, ``sequence_head.{0,2,3}``) -> ``esmc_golden_pth/``;
- esm >= 3.4 (``EsmcForMaskedLM``; checkpoints published as safetensors with split
  ``q/k/v_proj`` and ``gate/up_proj``) -> ``esmc_golden_safetensors/``.

Usage (a Python 3.12 environment with the package, as it declares)::

    pip install esm==3.4.3            # or a 3.2.x release for the .pth layout
    python scripts/esmc_golden.py --out tests/data

How the committed fixtures were made (Python 3.12 was not available on the build
machine; both packages import and run on Python 3.11 when their declared
``Requires-Python`` is bypassed, with torch 2.13 / transformers 5.24):

    pip download esm==3.4.3 --no-deps --python-version 3.12 --only-binary=:all:
    unzip esm-3.4.3-py3-none-any.whl -d esm343
    pip install --target deps --no-deps einops accelerate cloudpathlib zstd 'biotite<2' \
        brotli msgpack msgpack-numpy biopython httpx
    PYTHONPATH=esm343:deps python scripts/esmc_golden.py --out tests/data \
        --source "PyPI esm-3.4.3-py3-none-any.whl"
    # esm 3.2.4a1: the .py files of github.com/evolutionaryscale/esm at 6e89bf7
    PYTHONPATH=esm-6e89bf7:deps python scripts/esmc_golden.py --out tests/data \
        --source "github.com/evolutionaryscale/esm 6e89bf7 (.py files)"

Each directory holds the weights (``weights.pth`` or ``model.safetensors``), a
``config.json`` with the architecture numbers, and ``golden.safetensors`` with
``input_ids``, ``attention_mask`` and ``logits`` (float32), plus ``provenance.json``
naming the package version that computed them.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import torch

HIDDEN, HEADS, LAYERS = 32, 4, 2


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Every tensor random: LayerNorm weights 1 +- 0.3, biases non-zero."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            low = name.lower()
            if (
                ("norm" in low or "_ln" in low or "layernorm" in low)
                and "weight" in low
                and (p.ndim == 1)
            ):
                p.copy_(1.0 + 0.3 * noise)
            elif p.ndim == 1:
                p.copy_(0.2 * noise)
            elif "embed" in low:
                p.copy_(noise)
            else:
                p.copy_(noise / p.shape[-1] ** 0.5)


def token_batch(seed: int = 0):
    """<cls> residues <eos>, mixed lengths padded with <pad>=1, some <mask>=32."""
    g = torch.Generator().manual_seed(seed)
    lengths = [19, 4, 12, 1, 25]
    width = max(lengths) + 2
    ids = torch.full((len(lengths), width), 1, dtype=torch.long)
    for b, n in enumerate(lengths):
        res = torch.randint(4, 24, (n,), generator=g)
        masked = torch.rand(n, generator=g) < 0.2
        if b == 0:
            masked[:3] = True
        res[masked] = 32
        ids[b, 0], ids[b, n + 1] = 0, 2
        ids[b, 1 : n + 1] = res
    return ids, (ids != 1)


def main() -> None:
    import esm
    from safetensors.torch import save_file

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--source", default="", help="where the esm package came from (recorded)")
    cli = ap.parse_args()
    out = cli.out
    torch.manual_seed(0)
    ids, mask = token_batch()
    version = getattr(esm, "__version__", "unknown")
    try:
        from esm.models.esmc import EsmcConfig, EsmcForMaskedLM  # esm >= 3.4
        from esm.models.esmc.checkpoint_layout import native_to_published
    except ImportError:
        EsmcForMaskedLM = None
    if EsmcForMaskedLM is not None:
        cfg = EsmcConfig(hidden_size=HIDDEN, num_attention_heads=HEADS,
                         num_hidden_layers=LAYERS, attn_implementation="sdpa")  # fmt: skip
        model = EsmcForMaskedLM(cfg).eval()
        randomise(model)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
        d = out / "esmc_golden_safetensors"
        d.mkdir(parents=True, exist_ok=True)
        state = native_to_published({k: v.contiguous() for k, v in model.state_dict().items()})
        save_file({k: v.contiguous() for k, v in state.items()}, d / "model.safetensors")
    else:
        from esm.models.esmc import ESMC
        from esm.tokenization import EsmSequenceTokenizer

        model = ESMC(HIDDEN, HEADS, LAYERS, EsmSequenceTokenizer(), use_flash_attn=False).eval()
        randomise(model)
        with torch.no_grad():
            logits = model(sequence_tokens=ids).sequence_logits.float()
        d = out / "esmc_golden_pth"
        d.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), d / "weights.pth")
    (d / "config.json").write_text(json.dumps(
        {"hidden_size": HIDDEN, "num_attention_heads": HEADS, "num_hidden_layers": LAYERS},
        indent=2) + "\n")  # fmt: skip
    save_file(
        {"input_ids": ids, "attention_mask": mask.to(torch.int64), "logits": logits.contiguous()},
        d / "golden.safetensors",
    )
    (d / "provenance.json").write_text(json.dumps({
        "esm_version": version, "esm_file": esm.__file__, "python": sys.version.split()[0],
        "platform": platform.platform(), "torch": torch.__version__,
        "script": "scripts/esmc_golden.py", "esm_source": cli.source,
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {d} (esm {version})")


if __name__ == "__main__":
    main()
