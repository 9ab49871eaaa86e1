"""Benchmark ``bioprune prepare``: sequences per second and peak memory vs corpus size.

Claim (issue 2): prepare streams, so peak memory is flat in the number of
sequences, and it ingests at least 20,000 ncRNA-like sequences per second on
one core.

For each size, a FASTA with ncRNA-like lengths (lognormal, median 150 nt,
clipped to 20..3000 nt, so about 0.2% exceed the 1022-residue default and are
cropped; lines wrapped at 60 columns, RNAcentral-like ids and descriptions)
is generated into a temporary directory, then ``prepare`` runs in a fresh
subprocess so that its peak RSS (``ru_maxrss``) belongs to that run alone.

Run::

    .venv/bin/python benchmarks/bench_prepare.py                  # 100k and 1M
    .venv/bin/python benchmarks/bench_prepare.py --sizes 10000,100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_SEQ_PER_S = 20_000
WRAP = 60

_CHILD = r"""
import json, resource, sys, time
from bioprune.data.prepare import PrepareConfig, prepare
fasta, out = sys.argv[1], sys.argv[2]
t0 = time.perf_counter()
result = prepare(PrepareConfig([fasta], "rna", out))
seconds = time.perf_counter() - t0
cpu = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({
    "seconds": seconds,
    "cpu_seconds": cpu.ru_utime + cpu.ru_stime,
    "written": result.counts["written"],
    "cropped": result.counts["long_cropped"],
    "tokens": result.num_tokens,
    "max_rss_kib": cpu.ru_maxrss,
}))
"""


def write_fasta(path: Path, n: int, seed: int = 0) -> dict:
    """Write ``n`` random RNA records with lognormal lengths (median 150 nt); returns stats."""
    rng = np.random.default_rng(seed)
    letters = np.frombuffer(b"ACGU", dtype=np.uint8)
    lengths_all = []
    with open(path, "wb") as fh:
        for start in range(0, n, 50_000):
            m = min(50_000, n - start)
            lengths = np.clip(np.round(rng.lognormal(np.log(150), 0.6, m)), 20, 3000).astype(int)
            lengths_all.append(lengths)
            residues = letters[rng.integers(0, 4, int(lengths.sum()))].tobytes()
            parts = []
            pos = 0
            for j, length in enumerate(lengths.tolist()):
                seq = residues[pos : pos + length]
                pos += length
                wrapped = b"\n".join(seq[k : k + WRAP] for k in range(0, length, WRAP))
                parts.append(
                    b">URS%010d_9606 Homo sapiens ncRNA %d\n%s\n" % (start + j, start + j, wrapped)
                )
            fh.write(b"".join(parts))
    lengths = np.concatenate(lengths_all)
    return {"median_length": float(np.median(lengths)), "bytes": path.stat().st_size}


def run_size(n: int, workdir: Path) -> dict:
    fasta = workdir / f"bench_{n}.fa"
    t0 = time.perf_counter()
    info = write_fasta(fasta, n)
    gen_s = time.perf_counter() - t0
    out = workdir / f"corpus_{n}"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(fasta), str(out)],
        check=True,
        capture_output=True,
        text=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res.update(info, n=n, generate_seconds=gen_s)
    fasta.unlink()
    return res


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated record counts")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temp dir)")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        rows = []
        for n in sizes:
            r = run_size(n, Path(tmp))
            rows.append(r)
            rate = r["written"] / r["seconds"]
            print(
                f"n={n:>9,}  FASTA {r['bytes'] / 1e6:7.1f} MB "
                f"(median {r['median_length']:.0f} nt)  "
                f"prepare {r['seconds']:6.1f} s wall, {r['cpu_seconds']:6.1f} s CPU  "
                f"{rate:>9,.0f} seq/s  peak RSS {r['max_rss_kib'] / 1024:6.1f} MiB  "
                f"({r['cropped']} cropped)",
                flush=True,
            )
    print()
    for r in rows:
        rate = r["written"] / r["seconds"]
        # On a shared machine wall time includes waiting for a core; records per
        # CPU-second is what one core sustains.
        cpu_rate = r["written"] / r["cpu_seconds"]
        verdict = "meets" if rate >= TARGET_SEQ_PER_S else "MISSES"
        print(
            f"n={r['n']:,}: {rate:,.0f} seq/s wall = {rate / TARGET_SEQ_PER_S:.2f}x the "
            f"{TARGET_SEQ_PER_S:,}/s target ({verdict}); {cpu_rate:,.0f} seq per CPU-second "
            f"= {cpu_rate / TARGET_SEQ_PER_S:.2f}x"
        )
    if len(rows) >= 2:
        small, large = rows[0], rows[-1]
        print(
            f"peak memory {large['n']:,} / {small['n']:,}: "
            f"{large['max_rss_kib'] / small['max_rss_kib']:.2f}x "
            f"(flat = 1.0x; {large['n'] / small['n']:.0f}x more sequences)"
        )


if __name__ == "__main__":
    main()
