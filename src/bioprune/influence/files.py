"""Atomic output files and the ``--save-masks`` table shared by fisher and score."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bioprune.artifacts import atomic_path
from bioprune.data.alphabet import Alphabet
from bioprune.data.masking import mask_draw

__all__ = ["atomic_path", "parquet_metadata", "write_masks"]


def parquet_metadata(meta: dict) -> dict[bytes, bytes]:
    """Parquet key-value metadata: strings stay strings, everything else is JSON."""
    return {
        k.encode(): (v if isinstance(v, str) else json.dumps(v)).encode() for k, v in meta.items()
    }


def write_masks(
    path: str | Path,
    corpus,
    alphabet: Alphabet,
    indices: np.ndarray,
    *,
    seed: int,
    draws: int,
    meta: dict,
    rows_per_group: int = 8192,
) -> int:
    """Write the mask draws of ``indices`` (one row per example and draw), streaming.

    Columns: ``index`` int64, ``draw`` int32, ``positions`` list<int32> (framed
    positions, ``<cls>`` = 0) and ``inputs`` list<int32> (the token placed at
    each position). The draws are recomputed with the same pure function
    (:func:`bioprune.data.masking.mask_draw`) the run used, so anyone can
    rebuild every input and loss with plain PyTorch. Returns the row count.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema(
        [
            ("index", pa.int64()),
            ("draw", pa.int32()),
            ("positions", pa.list_(pa.int32())),
            ("inputs", pa.list_(pa.int32())),
        ]
    ).with_metadata(parquet_metadata({**meta, "mask_seed": seed, "mask_draws": draws}))
    indices = np.sort(np.asarray(indices, dtype=np.int64))
    rows = 0
    with atomic_path(path) as tmp:
        with pq.ParquetWriter(tmp, schema, compression="zstd") as writer:
            for start in range(0, len(indices), rows_per_group):
                cols: dict[str, list] = {"index": [], "draw": [], "positions": [], "inputs": []}
                for i in indices[start : start + rows_per_group]:
                    residues = corpus.residues(int(i))
                    for k in range(draws):
                        d = mask_draw(residues, alphabet, seed=seed, index=int(i), draw=k)
                        cols["index"].append(int(i))
                        cols["draw"].append(k)
                        cols["positions"].append(d.positions)
                        cols["inputs"].append(d.inputs)
                rows += len(cols["index"])
                writer.write_table(pa.table(cols, schema=schema))
    return rows
