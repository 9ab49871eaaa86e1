"""Write two benchmark-free tasks in the benchmarks' own layouts, for a sanity figure.

- ``OUT/beacon_family``: the shipped ``rna_family`` task in BEACON's CSV layout
  (``train.csv``, ``val.csv``, a test file named ``test``; ``seq,label`` with integer
  class ids, read by position);
- ``OUT/peer_pairing``: the shipped ``rna_ss`` task in PEER/TAPE's secondary-structure
  LMDB layout (``pairing_{train,valid,test}.lmdb``; ``primary``, ``ss3`` with 0 = opening
  bracket, 1 = closing bracket, 2 = unpaired, and ``valid_mask``), with the test rows
  split into two named test sets (``cb513``, ``casp12``: the first and second half) so
  that the per-test-split report is exercised.

Usage: python scripts/benchmark_layout_fixtures.py OUT
then: bioprune evaluate --model MODEL --task OUT/beacon_family --out R.json [--raw]
"""

from __future__ import annotations

import csv
import pickle
import sys
from pathlib import Path

import numpy as np

TASKS = Path(__file__).resolve().parents[1] / "src" / "bioprune" / "resources" / "tasks"


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def beacon_family(out: Path) -> None:
    out.mkdir(parents=True)
    splits = {s: _rows(TASKS / "rna_family" / f"{s}.csv") for s in ("train", "valid", "test")}
    classes = sorted({r["label"] for r in splits["train"]})
    for split, name in (("train", "train.csv"), ("valid", "val.csv"), ("test", "test")):
        with open(out / name, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["seq", "label"])
            for r in splits[split]:
                w.writerow([r["sequence"], classes.index(r["label"])])


def _ss3(structure: str) -> np.ndarray:
    code = {"(": 0, ")": 1}
    return np.array([code.get(c, 2) for c in structure], dtype=np.int64)


def _write_lmdb(path: Path, records: list[dict]) -> None:
    import lmdb

    env = lmdb.open(str(path), map_size=1 << 26)
    with env.begin(write=True) as txn:
        txn.put(b"num_examples", pickle.dumps(len(records)))
        for i, rec in enumerate(records):
            txn.put(str(i).encode(), pickle.dumps(rec))
    env.close()


def peer_pairing(out: Path) -> None:
    out.mkdir(parents=True)
    splits = {s: _rows(TASKS / "rna_ss" / f"{s}.csv") for s in ("train", "valid", "test")}
    half = len(splits["test"]) // 2
    named = {
        "train": splits["train"],
        "valid": splits["valid"],
        "cb513": splits["test"][:half],
        "casp12": splits["test"][half:],
    }
    for split, rows in named.items():
        records = [
            {
                "primary": r["sequence"],
                "ss3": _ss3(r["structure"]),
                "valid_mask": np.ones(len(r["sequence"]), dtype=bool),
            }
            for r in rows
        ]
        _write_lmdb(out / f"pairing_{split}.lmdb", records)


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    beacon_family(out / "beacon_family")
    peer_pairing(out / "peer_pairing")


if __name__ == "__main__":
    main()
