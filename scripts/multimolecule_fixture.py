"""Regenerate tests/data/multimolecule_rnafm/: a tiny RNA-FM converted by multimolecule's OWN
converter into its ``RnaFmForMaskedLM`` format (what ``multimolecule/rnafm`` on the Hub is).

The source is the tiny random RNA-FM of ``tests/convert_fixtures.py`` (``rnafm_original
(seed=1)``, built with rna-fm's classes and saved as RNA-FM_pretrained.pth is); it is
converted with ``multimolecule.models.rnafm.convert_checkpoint._convert_checkpoint`` and
saved with ``save_pretrained`` plus multimolecule's ``RnaTokenizer``. The test converts
this directory with ``bioprune convert --from multimolecule`` and compares its logits
with rna-fm's own model rebuilt from the same seed.

multimolecule (AGPL) pins packages bioprune does not use (datasets, danling, chanfig,
torchmetrics), so it is not installed beside bioprune. How the committed fixture was
made (multimolecule 0.2.2 from PyPI, its import-time dependencies in a separate folder):

    pip download multimolecule==0.2.2 --no-deps && unzip multimolecule-0.2.2-*.whl -d mm
    pip install --target deps --no-deps datasets multiprocess dill xxhash danling chanfig \
        lazy-imports torchmetrics lightning-utilities torchdata python-frontmatter
    PYTHONPATH=mm:deps:src python scripts/multimolecule_fixture.py --out tests/data
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _installed() -> bool:
    try:
        importlib.metadata.version("multimolecule")
        return True
    except importlib.metadata.PackageNotFoundError:
        return False


def main() -> None:
    from multimolecule.models import RnaFmConfig, RnaFmForMaskedLM
    from multimolecule.models.rnafm.convert_checkpoint import _convert_checkpoint, original_vocabs
    from multimolecule.tokenisers import RnaTokenizer
    from multimolecule.tokenisers.rna.utils import get_alphabet
    from tests import convert_fixtures as fx

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    out = ap.parse_args().out / "multimolecule_rnafm"
    out.mkdir(parents=True, exist_ok=True)
    vocab = list(get_alphabet().vocabulary)
    with tempfile.TemporaryDirectory() as tmp:
        src = fx.save_rnafm(fx.rnafm_original(seed=1), Path(tmp) / "RNA-FM_pretrained.pth")
        state = torch.load(src, map_location="cpu", weights_only=False)["model"]
    cfg = RnaFmConfig(vocab_size=len(vocab), hidden_size=fx.HIDDEN,
                      num_hidden_layers=fx.LAYERS, num_attention_heads=fx.HEADS,
                      intermediate_size=fx.FFN)  # fmt: skip
    model = RnaFmForMaskedLM(cfg).eval()
    converted = _convert_checkpoint(cfg, state, vocab, original_vocabs["single"])
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert not missing, missing
    model.save_pretrained(out)
    RnaTokenizer().save_pretrained(out)
    (out / "provenance.json").write_text(json.dumps({
        "multimolecule_version": importlib.metadata.version("multimolecule")
        if _installed() else "0.2.2 (unpacked wheel)",
        "source": "tests/convert_fixtures.py rnafm_original(seed=1), saved by save_rnafm",
        "converter": "multimolecule.models.rnafm.convert_checkpoint._convert_checkpoint",
        "unused_by_the_masked_lm": sorted(unexpected),
        "script": "scripts/multimolecule_fixture.py",
    }, indent=2) + "\n")  # fmt: skip
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
