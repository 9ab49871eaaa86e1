"""Benchmark ``bioprune pretrain``: training tokens/s and padding waste on ncRNA-like lengths.

Claim (issue 5): length-bucketed batches of 16 (HF ``group_by_length``-style
megabatches of 50 batches) keep padding under 15% of the padded token slots on
a realistic length mix, where random batches waste about half.

The corpus: ``--n`` random RNA sequences with ncRNA-like lengths (lognormal,
median 150 nt, sigma 0.8, clipped to 20..1022 nt). The padding fraction is
computed over one full epoch of the real batch order
(:func:`~bioprune.training.batches.epoch_batches`, then the micro-batches
every rank would run), with and without bucketing. Throughput is measured by
running the real recipe for ``--steps`` optimizer steps per preset (after one
warm-up step that is not timed), and reported as real (unpadded) tokens per
second.

Run::

    .venv/bin/python benchmarks/bench_train.py                       # tiny and small, CPU
    .venv/bin/python benchmarks/bench_train.py --presets small --steps 50 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_PADDING = 0.15


def ncrna_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Lognormal lengths, median 150 nt, clipped to 20..1022 (RNA-FM's limit)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.lognormal(np.log(150), 0.8, size=n)), 20, 1022).astype(np.int64)


def write_bench_corpus(path: Path, lengths: np.ndarray, seed: int = 0):
    from bioprune.data.corpus import write_corpus

    rng = np.random.default_rng(seed + 1)
    letters = np.array(list("ACGU"))
    records = (
        (f"URS{i:010d}_9606", "bench", "".join(rng.choice(letters, int(n))))
        for i, n in enumerate(lengths)
    )
    return write_corpus(path, records, "rna")


def padding_of_epoch(
    lengths: np.ndarray, batch_size: int, grad_accum: int, world: int, megabatch: int
) -> float:
    """Padded-slot fraction over one epoch of micro-batches (framed lengths)."""
    from bioprune.data.batching import padding_fraction
    from bioprune.training.batches import epoch_batches, micro_batches

    framed = lengths + 2
    idx = np.arange(len(lengths))
    batches = epoch_batches(
        idx, framed, batch_size=batch_size * grad_accum, seed=0, epoch=0, megabatch=megabatch
    )
    micro = [
        m
        for b in batches
        for r in range(world)
        for m in micro_batches(b, grad_accum, world, r)
        if len(m)
    ]
    return padding_fraction(micro, framed)


def throughput(corpus, preset: str, steps: int, device: str, batch_size: int) -> dict:
    """Tokens/s of the real recipe: ``steps`` timed optimizer steps after one warm-up."""
    import torch
    from transformers import EsmForMaskedLM

    from bioprune.models.presets import build_config, count_parameters
    from bioprune.runtime import start_process
    from bioprune.training.recipe import MaskedLMRecipe, TrainingConfig

    torch.manual_seed(0)
    model = EsmForMaskedLM(build_config(preset, corpus.alphabet))
    env = start_process(device)
    cfg = TrainingConfig(
        batch_size=batch_size, device=device, checkpoint_every=0, show_progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        run = MaskedLMRecipe(
            cfg, model, corpus, np.arange(len(corpus)), np.zeros(0, np.int64),
            Path(tmp) / "m", recipe="bench", data_fingerprint={}, env=env,
        )  # fmt: skip
        run.setup()
        from bioprune.training.batches import epoch_batches

        batches = epoch_batches(
            run.train_indices, run.framed_lengths, batch_size=batch_size, seed=0, epoch=0
        )
        run.train_step(batches[0], 0)  # warm-up (allocations, kernels)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        tokens0 = run.state.tokens
        t0 = time.perf_counter()
        for b in batches[1 : steps + 1]:
            run.train_step(b, 0)
        if env.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        tokens = run.state.tokens - tokens0
        done = min(steps, len(batches) - 1)
    return {
        "preset": preset,
        "parameters": count_parameters(model),
        "device": str(env.device),
        "autocast": str(run.autocast_dtype) if run.autocast_dtype else "float32",
        "torch_threads": torch.get_num_threads(),
        "steps": done,
        "seconds": round(seconds, 3),
        "tokens_per_s": round(tokens / seconds, 1),
        "steps_per_s": round(done / seconds, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4000, help="sequences in the benchmark corpus")
    ap.add_argument("--presets", default="tiny,small")
    ap.add_argument("--steps", type=int, default=20, help="timed optimizer steps per preset")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    lengths = ncrna_lengths(args.n)
    print(
        f"corpus: {args.n} sequences, length median {int(np.median(lengths))}, "
        f"mean {lengths.mean():.0f}, p95 {int(np.percentile(lengths, 95))}, max {lengths.max()}"
    )
    padding = {
        "bucketed (megabatch 50)": padding_of_epoch(lengths, args.batch_size, 1, 1, 50),
        "bucketed, 2 ranks x accum 2": padding_of_epoch(lengths, args.batch_size // 2, 2, 2, 50),
        "random batches (no bucketing)": padding_of_epoch(lengths, args.batch_size, 1, 1, 1),
    }
    print(f"\npadding fraction of padded token slots, batch {args.batch_size}:")
    for name, frac in padding.items():
        print(f"  {name:32s} {frac:6.1%}")
    ok = padding["bucketed (megabatch 50)"] < TARGET_PADDING
    print(f"  target < {TARGET_PADDING:.0%}: {'PASS' if ok else 'FAIL'}")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        corpus = write_bench_corpus(Path(tmp) / "corpus", lengths)
        for preset in args.presets.split(","):
            r = throughput(corpus, preset, args.steps, args.device, args.batch_size)
            results.append(r)
            print(
                f"\n{preset:6s} {r['parameters']:>11,} params on {r['device']} "
                f"({r['autocast']}, {r['torch_threads']} threads): "
                f"{r['tokens_per_s']:>10,.0f} tokens/s, {r['steps_per_s']:.2f} steps/s "
                f"({r['steps']} steps, {r['seconds']:.1f} s)"
            )
    print("\n" + json.dumps({"padding": padding, "throughput": results}, indent=1))


if __name__ == "__main__":
    main()
