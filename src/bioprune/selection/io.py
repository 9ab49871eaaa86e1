"""Reading score files and writing selection directories, without Python loops over examples.

A score file (written by ``bioprune score``) is Parquet with the columns

======== ======== ===================================================
index    int64    corpus index, 0..n-1 (any order, each exactly once)
id       string   the example's id in the corpus
length   integer  residues
score    float64  self-influence I (larger = more influential); NaN
                  where the influence engine met a non-finite value
loss     float    the example's masked-LM loss
======== ======== ===================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bioprune import artifacts

__all__ = [
    "SCORE_COLUMNS",
    "ScoreTable",
    "arrow_text_bytes",
    "check_scores_match_corpus",
    "gather_tokens",
    "read_scores",
    "take_sorted",
    "write_coreset_fasta",
    "write_ids",
]

SCORE_COLUMNS = ("index", "id", "length", "score", "loss")

#: Rows handled per step when streaming ids (bounded memory).
CHUNK_ROWS = 1 << 20
#: Examples per step when writing FASTA from the token store.
FASTA_CHUNK = 1 << 14


def arrow_text_bytes(arr) -> memoryview:
    """The concatenated bytes of an Arrow string array (no separators added).

    Arrow stores a string array as one data buffer plus offsets, so a column
    whose every element already ends in ``"\\n"`` *is* the text file; this
    returns that slice of the buffer without copying.
    """
    import pyarrow as pa

    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if arr.null_count:
        raise ValueError("cannot write text with missing (null) values")
    if len(arr) == 0:
        return memoryview(b"")
    offset_type = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    _, offsets_buf, data_buf = arr.buffers()[:3]
    offsets = np.frombuffer(offsets_buf, dtype=offset_type)[arr.offset : arr.offset + len(arr) + 1]
    if data_buf is None:
        return memoryview(b"")
    return memoryview(data_buf)[int(offsets[0]) : int(offsets[-1])]


@dataclass
class ScoreTable:
    """A score file read into memory, rows ordered by corpus index.

    Attributes
    ----------
    scores
        float64, shape ``(n,)``; ``scores[i]`` is example ``i``'s influence (NaN: unscored).
    ids
        Arrow string (chunked) array, shape ``(n,)``; ``ids[i]`` is example ``i``'s id.
    """

    path: Path
    scores: np.ndarray
    ids: object
    checksum: str
    metadata: dict

    def __len__(self) -> int:
        return len(self.scores)


def read_scores(path: str | Path) -> ScoreTable:
    """Read and validate a score file (schema, indices 0..n-1 each once).

    Only ``index``, ``id`` and ``score`` are loaded (~30 bytes per example);
    rows are reordered by ``index`` when the file is not already in order.
    """
    import json

    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"score file {path} does not exist; write one with `bioprune score`"
        )
    try:
        schema = pq.read_schema(path)
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path} is not a Parquet score file: {exc}") from None
    missing = [c for c in SCORE_COLUMNS if c not in schema.names]
    if missing:
        raise ValueError(
            f"score file {path} lacks column(s) {', '.join(missing)}; "
            f"a score file has {', '.join(SCORE_COLUMNS)}"
        )
    kinds = {
        "index": (pa.types.is_integer, "an integer"),
        "id": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t), "a string"),
        "length": (pa.types.is_integer, "an integer"),
        "score": (pa.types.is_floating, "a float"),
        "loss": (pa.types.is_floating, "a float"),
    }
    for col, (ok, expected) in kinds.items():
        if not ok(schema.field(col).type):
            raise ValueError(
                f"score file {path}: column {col!r} has type {schema.field(col).type}, "
                f"expected {expected}"
            )
    from concurrent.futures import ThreadPoolExecutor

    # The checksum streams the file in a thread (hashlib releases the GIL)
    # while the columns are decoded; each column is converted and its Arrow
    # buffers dropped before the next is read, to keep the peak low.
    with ThreadPoolExecutor(max_workers=1) as pool:
        checksum = pool.submit(artifacts.file_checksum, path)
        column = pq.read_table(path, columns=["index"], use_threads=False).column("index")
        if column.null_count:
            raise ValueError(f"score file {path}: {column.null_count} row(s) have no index")
        n = len(column)
        # Usual case: rows already in index order; checked chunk by chunk without
        # materialising the whole column.
        ordered, start = True, 0
        for chunk in column.chunks:  # a loop over Parquet row groups
            values = chunk.to_numpy()
            if not np.array_equal(values, np.arange(start, start + len(values))):
                ordered = False
                break
            start += len(values)
        order = None  # None: keep the file's row order
        if not ordered:
            index = np.asarray(column.to_numpy(), dtype=np.int64)
            order = np.argsort(index, kind="stable")
            if not np.array_equal(index[order], np.arange(n, dtype=np.int64)):
                raise ValueError(
                    f"score file {path}: column 'index' must hold 0..{n - 1} exactly once each "
                    f"(found min {index.min()}, max {index.max()}, "
                    f"{n - len(np.unique(index))} duplicate(s))"
                )
            del index
        del column
        column = pq.read_table(path, columns=["score"], use_threads=False).column("score")
        if column.null_count:
            column = pc.fill_null(column, float("nan"))
        scores = np.asarray(column.to_numpy(), dtype=np.float64)
        del column
        if order is not None:
            scores = scores[order]
        ids = pq.read_table(path, columns=["id"], use_threads=False).column("id")
        if ids.null_count:
            raise ValueError(f"score file {path}: {ids.null_count} row(s) have no id")
        if order is not None:
            ids = ids.take(pa.array(order))
        digest = checksum.result()
    # Arrow's allocator keeps freed buffers for reuse; hand the converted columns back.
    pa.default_memory_pool().release_unused()
    meta = pq.read_metadata(path).metadata or {}
    decoded = {}
    for k, v in meta.items():
        key = k.decode(errors="replace")
        if key.startswith("ARROW"):  # Arrow's own schema blob
            continue
        text = v.decode(errors="replace")
        try:
            decoded[key] = json.loads(text)
        except ValueError:
            decoded[key] = text
    return ScoreTable(path, scores, ids, digest, decoded)


def check_scores_match_corpus(table: ScoreTable, corpus) -> None:
    """The score file must describe this corpus: same n and, for every index, the same id.

    When the file's metadata records ``corpus_checksum`` (``bioprune score``
    writes it), it must equal the corpus's too.

    The corpus ids are streamed one Parquet row group at a time and compared
    with Arrow kernels, so memory stays at one row group beyond the scores.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    recorded = table.metadata.get("corpus_checksum")
    if isinstance(recorded, str) and recorded != corpus.checksum:
        raise ValueError(
            f"score file {table.path} was computed on another corpus (its metadata records "
            f"corpus checksum {recorded[:24]}..., {corpus.path} has {corpus.checksum[:24]}...); "
            "score this corpus with `bioprune score`"
        )
    n = len(corpus)
    if len(table) != n:
        raise ValueError(
            f"score file {table.path} has {len(table):,} rows but corpus {corpus.path} has "
            f"{n:,} sequences; score this corpus with `bioprune score`"
        )
    pf = pq.ParquetFile(corpus.sequences_path)
    start = 0
    for g in range(pf.num_row_groups):
        corpus_ids = pf.read_row_group(g, columns=["id"], use_threads=False).column("id")
        corpus_ids = corpus_ids.combine_chunks()
        stop = start + len(corpus_ids)
        ours = table.ids.slice(start, len(corpus_ids))
        if not pa.types.is_string(ours.type):
            ours = ours.cast(pa.string())
        same = pc.equal(ours, corpus_ids.cast(pa.string()))
        same = np.asarray(same.to_numpy(zero_copy_only=False), dtype=bool)
        if not same.all():
            i = int(np.flatnonzero(~same)[0])
            raise ValueError(
                f"score file {table.path} does not match corpus {corpus.path}: index "
                f"{start + i} has id {ours[i].as_py()!r} in the scores but "
                f"{corpus_ids[i].as_py()!r} in the corpus"
            )
        start = stop


def take_sorted(values, indices: np.ndarray):
    """``values[indices]`` for an Arrow (chunked) array and sorted int64 ``indices``.

    Taking chunk by chunk is an order of magnitude faster than Arrow's
    generic chunked ``take``, which resolves every index against all chunks.
    """
    import pyarrow as pa

    if not isinstance(values, pa.ChunkedArray):
        return values.take(pa.array(indices, type=pa.int64()))
    sizes = [len(c) for c in values.chunks]
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    cuts = np.searchsorted(indices, bounds)
    parts = [
        chunk.take(pa.array(indices[cuts[i] : cuts[i + 1]] - bounds[i], type=pa.int64()))
        for i, chunk in enumerate(values.chunks)  # a loop over Parquet row groups
        if cuts[i + 1] > cuts[i]
    ]
    if not parts:
        return pa.array([], type=values.type)
    return pa.concat_arrays(parts)


def write_ids(path: Path, ids) -> None:
    """``ids.txt``: one id per line, in the order given (Arrow string array)."""
    import pyarrow.compute as pc

    with open(path, "wb") as fh:
        for s in range(0, len(ids), CHUNK_ROWS):
            chunk = ids.slice(s, CHUNK_ROWS)
            fh.write(arrow_text_bytes(pc.binary_join_element_wise(chunk, "\n", "")))


def gather_tokens(corpus, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Residue ids of the given examples, concatenated, and their lengths (both NumPy).

    One fancy index into the memory-mapped token store: each token's position
    is its example's start plus its rank inside the example (``np.repeat``
    over the lengths), so there is no Python loop over examples.
    """
    idx = np.asarray(indices, dtype=np.int64)
    starts = np.asarray(corpus.offsets[idx], dtype=np.int64)
    lens = np.asarray(corpus.offsets[idx + 1], dtype=np.int64) - starts
    total = int(lens.sum())
    if not total:
        return np.zeros(0, dtype=np.uint8), lens
    first = np.cumsum(lens) - lens
    pos = np.repeat(starts - first, lens) + np.arange(total, dtype=np.int64)
    return np.asarray(corpus.tokens[pos]), lens


def write_coreset_fasta(corpus, indices: np.ndarray, ids, path: Path) -> int:
    """Write the chosen examples as FASTA (``>id`` then the sequence on one line).

    ``indices`` are sorted int64 corpus indices and ``ids`` their ids (an
    Arrow string array, same order, already checked against the corpus). The
    sequences are decoded from the memory-mapped token store, which touches
    only the chosen examples' bytes; residue tokens are single characters, so
    this is exactly the corpus's normalised ``sequence`` column. Returns the
    number of records.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    letter = np.zeros(256, dtype=np.uint8)
    for token_id, token in enumerate(corpus.alphabet.tokens):  # a loop over the alphabet
        if len(token) == 1:
            letter[token_id] = ord(token)
    written = 0
    with open(path, "wb") as fh:
        for s in range(0, len(indices), FASTA_CHUNK):
            idx = indices[s : s + FASTA_CHUNK]
            tokens, lens = gather_tokens(corpus, idx)
            text = letter[tokens]
            if len(text) and not text.all():
                bad = int(tokens[np.flatnonzero(text == 0)[0]])
                raise ValueError(
                    f"corpus {corpus.path}: token id {bad} in the token store is not a residue; "
                    "the corpus is damaged, prepare it again"
                )
            total = int(lens.sum())
            large = total >= 2**31
            seq_offsets = np.concatenate([[0], np.cumsum(lens)]).astype(
                np.int64 if large else np.int32
            )
            seq = (pa.LargeStringArray if large else pa.StringArray).from_buffers(
                len(idx), pa.py_buffer(seq_offsets), pa.py_buffer(text)
            )
            header = ids.slice(s, len(idx))
            if isinstance(header, pa.ChunkedArray):
                header = header.combine_chunks()
            if large:
                header = header.cast(pa.large_string())
            fh.write(
                arrow_text_bytes(pc.binary_join_element_wise(">", header, "\n", seq, "\n", ""))
            )
            written += len(idx)
    return written
