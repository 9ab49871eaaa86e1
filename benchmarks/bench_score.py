"""Throughput and peak memory of self-influence scoring against a training step and vmap.

Claim (issue 3): on the same model and batches, scoring with the hook engine
(exact per-example gradients over every scored tensor, reduced inside the
hooks) runs at >= 0.8x the throughput of a plain training step (forward,
backward, weight gradients) with <= 1.5x its peak memory, and is faster and
leaner than per-example gradients from ``torch.func.vmap(grad(...))`` over the
same parameters (the paper code's technique, there used on one matrix).

Method: every measurement runs in a fresh subprocess (same model, same
batches, same thread count). Throughput is real (unpadded) tokens per second
over the timed batches after one warm-up batch. Peak memory is the process's
peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``, CPU) or
``torch.cuda.max_memory_allocated`` (GPU); we report it whole and as the part
above the baseline after loading model and batches ("working" memory), which is
what the method itself costs. The machine may be shared: read the ratios. With
one thread, throughput is also reported per second of the process's CPU time
(``time.process_time``), which time spent waiting for a shared core does not
inflate; each method keeps its best run on either clock.

Factored mode (issue 14; ``--methods score-factored``): rank-one weights ``u v^T``
per weight matrix and the Gram form of the weighted norm where it is cheaper
(:mod:`bioprune.influence.factored`); target >= 1.3x a training step at length
128. ``--lengths 128 512`` measures both sequence lengths (same tokens per
batch: the batch size shrinks as the length grows).

Run::

    python benchmarks/bench_score.py                     # small and rnafm presets, CPU
    python benchmarks/bench_score.py --methods score score-factored train \
        --presets small rnafm esmc-300m --lengths 128 512   # the factored comparison
    python benchmarks/bench_score.py --presets small --batches 6
    python benchmarks/bench_score.py --device cuda --dtype bfloat16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

METHODS = ("score", "train", "vmap")
#: also accepted by --methods: scoring with the last encoder layer on every
#: position (gather_last_layer=False), the path before that specialisation; the
#: factored mode (rank-one weights, Gram form where cheaper).
EXTRA_METHODS = ("score-plain", "score-factored")
#: preset -> (batch size, framed tokens per example), CPU defaults kept short.
SHAPES = {
    "tiny": (16, 128), "small": (16, 128), "esm2-8m": (16, 128), "rnafm": (8, 128),
    "esmc-tiny": (16, 128), "esmc-300m": (4, 128),  # ESM-C: protein corpus
}  # fmt: skip
#: Presets measured with 2 timed batches by default (large models on a CPU).
LARGE = ("rnafm", "esmc-300m")


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _worker(args) -> dict:
    import torch

    from bioprune.data.batching import collate_masked, token_budget_batches
    from bioprune.data.corpus import Corpus
    from bioprune.data.masking import IGNORE_INDEX, mask_draw
    from bioprune.influence.engine import MLMGradientRunner
    from bioprune.influence.hooks import (
        PerExampleGradients,
        SelfInfluenceReduction,
    )
    from bioprune.influence.params import select_parameters
    from bioprune.models.loading import load_masked_lm
    from bioprune.runtime import resolve_device

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = resolve_device(args.device)
    autocast = torch.bfloat16 if args.dtype == "bfloat16" else None
    corpus = Corpus(args.corpus)
    model, alphabet = load_masked_lm(args.model, device=device)
    names = select_parameters(model, args.params).names
    batch_size = _batch_size(args.preset, args.length)
    idx = np.arange(len(corpus), dtype=np.int64)
    batches = token_budget_batches(
        corpus.lengths + 2, idx, max_tokens=10**9, max_batch_size=batch_size
    )[: args.batches + 1]
    collated = []
    for b in batches:
        draws = [mask_draw(corpus.residues(int(i)), alphabet, seed=0, index=int(i)) for i in b]
        framed = [corpus.framed(int(i)) for i in b]
        collated.append(collate_masked(framed, draws, alphabet, b).to_torch(device))
    tokens = [int(c["attention_mask"].sum()) for c in collated]

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def autocast_ctx():
        import contextlib

        if autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=autocast)

    if args.method in ("score", "score-plain", "score-factored"):
        weights = {
            n: torch.full_like(model.get_parameter(n), 1.0 / 1.001, dtype=torch.float32)
            for n in names
        }
        if args.method == "score-factored":
            from bioprune.influence.factored import FactoredSelfInfluence, factorable_tensors

            factors = {}
            for n in factorable_tensors(model, names):
                rows, cols = weights.pop(n).shape
                factors[n] = (
                    torch.full((rows,), 1.0 / 1.001, device=device),
                    torch.ones(cols, device=device),
                )
            tracker = FactoredSelfInfluence(
                model,
                names,
                weights=weights,
                factors=factors,
                gram=args.gram,
                compute_dtype=autocast or torch.float32,
            ).__enter__()
        else:
            tracker = PerExampleGradients(
                model,
                names,
                reduction=SelfInfluenceReduction(weights),
                compute_dtype=autocast or torch.float32,
                gather_last_layer=args.method == "score",
            ).__enter__()
        runner = MLMGradientRunner(
            model,
            alphabet,
            corpus,
            tracker,
            seed=0,
            draws=1,
            device=device,
            autocast_dtype=autocast,
        )

        def step(i):
            tracker.begin_batch(len(batches[i]))
            runner.forward_backward(collated[i])
            return tracker.scores

    elif args.method == "train":
        model.train(False)  # no dropout, like scoring; weights still get gradients
        params = [model.get_parameter(n) for n in names]
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        opt = torch.optim.AdamW(params, lr=1e-5) if args.optimizer else None

        def step(i):
            with autocast_ctx():
                out = model(**collated[i])
            out.loss.backward()
            if opt is not None:
                opt.step()
            for p in params:
                p.grad = None
            return out.loss

    else:  # vmap(grad) over the same parameters
        from torch import nn
        from torch.func import functional_call, grad, vmap

        class Unrolled(nn.Module):
            """EsmForMaskedLM's forward with a ready 4-D mask: HF's mask builder
            branches on the mask's values, which vmap cannot trace."""

            def __init__(self, inner):
                super().__init__()
                self.m = inner

            def forward(self, ids, attn):
                m = self.m
                if not hasattr(m.esm, "rotary_embeddings"):  # ESM-C: plain tensor ops
                    return m.lm_head(m.esm(input_ids=ids, attention_mask=attn).last_hidden_state)
                emb = m.esm.embeddings(input_ids=ids, attention_mask=attn)
                pos = None
                if m.esm.rotary_embeddings is not None:
                    where = torch.arange(ids.shape[1], device=ids.device)[None]
                    pos = m.esm.rotary_embeddings(emb, where)
                mask = attn[:, None, None, :].bool()
                h = m.esm.encoder(emb, attention_mask=mask, position_embeddings=pos)
                return m.lm_head(h.last_hidden_state)

        wrapper = Unrolled(model)
        params = {f"m.{n}": model.get_parameter(n).detach() for n in names}
        frozen = {
            f"m.{n}": p.detach() for n, p in model.named_parameters() if f"m.{n}" not in params
        } | {f"m.{n}": b for n, b in model.named_buffers()}
        weights = {n: torch.full_like(p, 1.0 / 1.001) for n, p in params.items()}

        def loss_one(ps, ids, attn, labels):
            with autocast_ctx():
                logits = functional_call(wrapper, (ps, frozen), (ids[None], attn[None]))[0]
            keep = labels != IGNORE_INDEX
            ce = torch.nn.functional.cross_entropy(
                logits.float(), labels, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            return ce / keep.sum()

        per_example = vmap(grad(loss_one), in_dims=(None, 0, 0, 0))

        def step(i):
            c = collated[i]
            g = per_example(params, c["input_ids"], c["attention_mask"], c["labels"])
            return sum((g[n].float() ** 2 * weights[n]).flatten(1).sum(1) for n in params)

    # Baseline: model, batches and the method's fixed state (e.g. weights) loaded.
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated() / 2**20
    else:
        base = _rss_mb()
    step(0)  # warm-up, not timed (its memory counts: RSS is a high-water mark)
    sync()
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(1, len(batches)):
        step(i)
    sync()
    seconds = time.perf_counter() - t0
    cpu_seconds = time.process_time() - c0
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else _rss_mb()
    timed_tokens = sum(tokens[1:])
    return {
        "method": args.method,
        "tokens_per_s": timed_tokens / seconds,
        "examples_per_s": sum(len(b) for b in batches[1:]) / seconds,
        "seconds": seconds,
        # CPU time of the process (all its threads): on a shared machine it does not
        # count the time other processes held the core, unlike the wall clock.
        "cpu_tokens_per_s": timed_tokens / max(cpu_seconds, 1e-9),
        "peak_mb": peak,
        "working_mb": peak - base,
        "params": sum(int(model.get_parameter(n).numel()) for n in names),
        "branches": dict(getattr(tracker, "branch_counts", {}))
        if args.method.startswith("score")
        else {},
    }


def _ratio_line(label: str, rows: dict, a: str, b: str, extra: str = "") -> None:
    x, y = rows.get(a, {}), rows.get(b, {})
    if "tokens_per_s" in x and "tokens_per_s" in y:
        ratio = x["tokens_per_s"] / y["tokens_per_s"]
        cpu = x["cpu_tokens_per_s"] / y["cpu_tokens_per_s"]
        print(
            f"{label} {a}/{b}: throughput {ratio:.2f}x (CPU time {cpu:.2f}x){extra}, "
            f"peak memory {x['peak_mb'] / y['peak_mb']:.2f}x, "
            f"working memory {x['working_mb'] / max(y['working_mb'], 1):.2f}x"
        )


def _measure(args, env: dict, tmp: Path, preset: str, length: int) -> dict:
    """Every method on one preset and length, interleaved over the repeats."""
    bsz = _batch_size(preset, length)
    tokens = length
    label = f"{preset}@{length}"
    batches = args.batches or (2 if preset in LARGE else 3)
    corpus, model = _prepare(preset, tmp, bsz * (batches + 1), tokens)
    rows: dict[str, dict] = {}
    # Interleave methods over repeats and keep each method's best throughput:
    # on a shared machine the fastest run is the least disturbed one.
    for _ in range(args.repeats):
        for method in args.methods:
            cmd = [sys.executable, __file__, "--worker", "1", "--method", method]
            cmd += ["--preset", preset, "--model", str(model), "--corpus", str(corpus)]
            cmd += ["--threads", str(args.threads), "--device", args.device]
            cmd += ["--dtype", args.dtype, "--params", args.params]
            cmd += ["--batches", str(batches), "--length", str(length), "--gram", args.gram]
            cmd += ["--optimizer"] if args.optimizer else []
            run = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if run.returncode != 0:
                rows[method] = {"error": run.stderr.strip().splitlines()[-1:]}
                print(f"{label} {method} FAILED: {rows[method]['error']}")
                continue
            r = json.loads(run.stdout.strip().splitlines()[-1])
            branches = r.get("branches") or {}
            forms = f" forms {branches}" if branches else ""
            print(
                f"{label} {method:14s} {r['tokens_per_s']:9.1f} tok/s "
                f"({r['cpu_tokens_per_s']:7.1f} per CPU s) "
                f"{r['examples_per_s']:7.2f} ex/s  peak {r['peak_mb']:8.0f} MB "
                f"working {r['working_mb']:7.0f} MB  ({r['params']:,} params, "
                f"{bsz} x {tokens} tokens, {batches} timed batches){forms}",
                flush=True,
            )
            best = rows.get(method, {})
            best_cpu = max(r["cpu_tokens_per_s"], best.get("cpu_tokens_per_s", 0.0))
            if r["tokens_per_s"] > best.get("tokens_per_s", 0.0):
                rows[method] = r
            rows[method]["cpu_tokens_per_s"] = best_cpu
    _ratio_line(label, rows, "score", "train", " (target >= 0.8; memory target <= 1.5)")
    _ratio_line(label, rows, "score", "vmap")
    _ratio_line(label, rows, "score", "score-plain", " (gathered last layer)")
    _ratio_line(label, rows, "score-factored", "train", " (target >= 1.3 at length 128)")
    _ratio_line(label, rows, "score-factored", "score")
    return rows


def _batch_size(preset: str, length: int) -> int:
    """The preset's batch size at 128 tokens, scaled to keep the tokens per batch."""
    bsz, tokens = SHAPES[preset]
    return max(1, bsz * tokens // length)


def _prepare(preset: str, root: Path, n_examples: int, tokens: int, seed: int = 0):
    from bioprune.data.alphabet import get_alphabet
    from bioprune.data.corpus import write_corpus
    from bioprune.models.presets import PRESETS, init_model

    a = get_alphabet("protein" if PRESETS[preset].family == "esmc" else "rna")
    rng = np.random.default_rng(seed)
    letters = np.array(list(a.canonical))
    # Lengths near the target so padding is modest but present.
    lengths = rng.integers(int(0.8 * (tokens - 2)), tokens - 1, size=n_examples)
    records = [(f"s{i}", "", "".join(rng.choice(letters, n))) for i, n in enumerate(lengths)]
    corpus = write_corpus(root / f"corpus-{preset}-{tokens}", records, a)
    model = root / f"model-{preset}"
    if not model.exists():
        init_model(preset, a.name, model, seed=0)
    return corpus.path, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", nargs="+", default=["small", "rnafm"])
    ap.add_argument("--batches", type=int, default=None, help="timed batches (default 3; rnafm 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per measurement")
    ap.add_argument("--repeats", type=int, default=2, help="runs per method; best kept")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--params", default="all")
    ap.add_argument("--optimizer", action="store_true", help="add an AdamW step to training")
    ap.add_argument(
        "--methods", nargs="+", default=list(METHODS), choices=[*METHODS, *EXTRA_METHODS]
    )
    ap.add_argument(
        "--lengths",
        nargs="+",
        type=int,
        default=[128],
        help="framed tokens per example (default 128; the issue-14 comparison: 128 512)",
    )
    ap.add_argument(
        "--gram",
        default="auto",
        choices=["auto", "gram", "matrix"],
        help="score-factored: the cheaper form per module and batch, or force one",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    # worker mode
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--method", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--preset", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--corpus", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--length", type=int, default=128, help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        print(json.dumps(_worker(args)))
        return

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    report = {}
    with tempfile.TemporaryDirectory() as tmp:
        for preset in args.presets:
            for length in args.lengths:
                key = preset if args.lengths == [128] else f"{preset}@{length}"
                report[key] = _measure(args, env, Path(tmp), preset, length)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
