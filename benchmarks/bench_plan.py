"""How close ``bioprune plan``'s prediction comes to a measured run (issue 14).

Claim: the plan's predicted wall time for ``score`` and ``fisher`` over a corpus
is within 30% of a measured run on the same machine.

Method: a seeded sample of the shipped demo corpus (real Rfam RNAs, their
length distribution: 20-1022 nt, median ~73) and a ``tiny`` model. For each
repeat, interleaved: ``plan_run`` in a fresh process, then the stage itself in a
fresh process (``compute_scores`` / ``compute_fisher``). Compared, for the whole
process (start-up, imports, model loading, batches, write): wall time (measured
around the subprocess), process CPU time (``getrusage``: user + system, all
threads) and peak resident memory (the child's own ``VmHWM``; not
``ru_maxrss``, which after ``fork``/``exec`` starts at the parent's peak), and
for the batch loop alone the plan's ``batch_seconds_total`` against the stage's
``seconds``. Same thread count everywhere (``--threads``, default 1). The ratio
predicted / measured is printed per repeat; on a shared machine read their
spread (the load changes between the calibration and the run).

Run::

    python benchmarks/bench_plan.py                      # 1,000 examples, 2 repeats
    python benchmarks/bench_plan.py --examples 2000 --repeats 3 --stages score
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np


def _demo_records(n: int, seed: int) -> list[tuple[str, str, str]]:
    path = resources.files("bioprune.resources") / "demo" / "rna_corpus.fasta.gz"
    records, head, seq = [], None, []
    with gzip.open(str(path), "rt") as fh:
        for line in fh:
            line = line.strip()
            if line.startswith(">"):
                if head is not None:
                    records.append((head, "", "".join(seq).upper().replace("T", "U")))
                head, seq = line[1:].split()[0], []
            elif line:
                seq.append(line)
    if head is not None:
        records.append((head, "", "".join(seq).upper().replace("T", "U")))
    pick = np.sort(np.random.default_rng(seed).choice(len(records), size=n, replace=False))
    # cropped to 1022 nt as `bioprune prepare` does by default (the models' positions)
    return [(r[0], r[1], r[2][:1022]) for r in (records[i] for i in pick)]


def _worker(args) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    if args.worker == "plan":
        from bioprune.planning import PlanConfig, plan_run

        p = plan_run(
            PlanConfig(
                Path(args.model),
                Path(args.corpus),
                stage=args.stage,
                device="cpu",
                batch_tokens=args.batch_tokens,
                subset_size=args.subset_size,
                repeats=args.plan_repeats,
            )
        )
        return {
            "seconds": p.seconds_total,
            "cpu_seconds": p.cpu_seconds_total,
            "batch_seconds": p.batch_seconds_total,
            "peak_mb": p.peak_mb_per_process,
            "fixed": p.fixed_seconds,
            "fixed_cpu": p.fixed_cpu_seconds,
        }
    if args.stage == "score":
        from bioprune.influence.score import ScoreConfig, compute_scores

        res = compute_scores(
            ScoreConfig(
                model=Path(args.model),
                corpus=Path(args.corpus),
                fisher=Path(args.fisher),
                out=Path(args.out),
                batch_tokens=args.batch_tokens,
                device="cpu",
                overwrite=True,
                progress=False,
            )
        )
    else:
        from bioprune.influence.fisher import FisherConfig, compute_fisher

        res = compute_fisher(
            FisherConfig(
                model=Path(args.model),
                corpus=Path(args.corpus),
                out=Path(args.out),
                subset_size=args.subset_size,
                batch_tokens=args.batch_tokens,
                device="cpu",
                overwrite=True,
                progress=False,
            )
        )
    return {
        "batch_seconds": res.seconds,  # the batch loop (and its part writes)
        "cpu_seconds": _process_cpu_s(),  # the whole process
        "peak_mb": _peak_rss_mb(),
    }


def _process_cpu_s() -> float:
    import resource

    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _peak_rss_mb() -> float:
    """This process's own high-water RSS (``VmHWM``); ``ru_maxrss`` only without /proc.

    ``ru_maxrss`` of a child started by ``subprocess`` begins at the parent's peak
    (Linux keeps the larger of the old and the new address space's high-water mark
    across ``exec``), so it reports the benchmark's own memory, not the run's.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--examples", type=int, default=1000, help="demo corpus sample size")
    ap.add_argument("--seed", type=int, default=0, help="seed of the sample")
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--stages", nargs="+", default=["score", "fisher"])
    ap.add_argument("--subset-size", default="0.25", help="fisher subset")
    ap.add_argument("--batch-tokens", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--plan-repeats", type=int, default=2, help="plan --repeats")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    # worker mode
    for name in ("worker", "stage", "model", "corpus", "fisher", "out"):
        ap.add_argument(f"--{name}", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(_worker(args)))
        return

    from bioprune.data.corpus import write_corpus
    from bioprune.influence.fisher import FisherConfig, compute_fisher
    from bioprune.models.presets import init_model

    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), HF_HUB_OFFLINE="1")
    report: dict[str, list] = {s: [] for s in args.stages}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        corpus = write_corpus(root / "corpus", _demo_records(args.examples, args.seed), "rna")
        model = root / "model"
        init_model(args.preset, "rna", model, seed=0)
        fisher = root / "F.safetensors"
        compute_fisher(
            FisherConfig(model, corpus.path, fisher, subset_size="50", device="cpu", progress=False)
        )
        lengths = corpus.lengths
        print(
            f"demo sample: {len(corpus)} examples (seed {args.seed}), lengths "
            f"{int(lengths.min())}-{int(lengths.max())} nt, median {int(np.median(lengths))}; "
            f"{args.preset} model, --batch-tokens {args.batch_tokens}, {args.threads} thread(s)"
        )

        def run(kind: str, stage: str) -> dict:
            cmd = [sys.executable, __file__, "--worker", kind, "--stage", stage]
            cmd += ["--model", str(model), "--corpus", str(corpus.path), "--fisher", str(fisher)]
            cmd += ["--out", str(root / f"out-{stage}"), "--batch-tokens", str(args.batch_tokens)]
            cmd += ["--subset-size", args.subset_size, "--threads", str(args.threads)]
            cmd += ["--plan-repeats", str(args.plan_repeats)]
            t0 = time.perf_counter()
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(proc.stderr[-2000:])
            out = json.loads(proc.stdout.strip().splitlines()[-1])
            out["process_s"] = time.perf_counter() - t0
            if kind == "run":
                out["seconds"] = out["process_s"]
            return out

        for rep in range(args.repeats):
            for stage in args.stages:
                load = os.getloadavg()[0]
                planned = run("plan", stage)
                measured = run("run", stage)
                ratio = planned["seconds"] / measured["seconds"]
                cpu_ratio = planned["cpu_seconds"] / measured["cpu_seconds"]
                batch_ratio = planned["batch_seconds"] / measured["batch_seconds"]
                mem_ratio = planned["peak_mb"] / measured["peak_mb"]
                report[stage].append(
                    {
                        "planned": planned,
                        "measured": measured,
                        "ratio": ratio,
                        "cpu_ratio": cpu_ratio,
                        "batch_ratio": batch_ratio,
                        "mem_ratio": mem_ratio,
                        "load": load,
                    }
                )
                fx = planned["fixed"]
                print(
                    f"{stage:6s} repeat {rep + 1}: wall predicted {planned['seconds']:6.1f} s, "
                    f"measured {measured['seconds']:6.1f} s, ratio {ratio:.2f} (target 0.7-1.3; "
                    f"fixed: start-up {fx['startup']:.1f}, set-up {fx['setup']:.1f}, write "
                    f"{fx['write']:.2f}, first batch {fx['first_batch']:.2f} s); "
                    f"batches {planned['batch_seconds']:.1f} / "
                    f"{measured['batch_seconds']:.1f} s = {batch_ratio:.2f}; CPU "
                    f"{planned['cpu_seconds']:.1f} / {measured['cpu_seconds']:.1f} s = "
                    f"{cpu_ratio:.2f}; peak {planned['peak_mb']:.0f} / "
                    f"{measured['peak_mb']:.0f} MB = {mem_ratio:.2f}; planning took "
                    f"{planned['process_s']:.0f} s; load average {load:.1f}",
                    flush=True,
                )
    for stage, rows in report.items():
        names = {"ratio": "wall time", "batch_ratio": "batch wall time", "cpu_ratio": "CPU time"}
        names["mem_ratio"] = "peak memory"
        for key, what in names.items():
            ratios = [r[key] for r in rows]
            print(
                f"{stage:6s} predicted/measured {what}: "
                f"median {np.median(ratios):.2f}, range {min(ratios):.2f}-{max(ratios):.2f} "
                f"over {len(ratios)} repeat(s)"
            )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
