"""Reading score files and writing selection directories, without Python loops over examples.

A score file (written by ``bioprune score``) is Parquet with the columns

======== ======== ===================================================
index    int64    corpus index, 0..n-1 (any order, each exactly once)
id       string   the example's id in the corpus
length   integer  residues
score    float64  self-influence I (larger = more influential); NaN
                  where the influence engine met a non-finite value.
                  I is a squared norm, so a negative score (or -inf)
                  means the file was altered: it is refused
loss     float    the example's masked-LM loss
======== ======== ===================================================

Cost model (23M rows): every string column is decoded by Arrow's C++ Parquet
reader straight into Arrow buffers, never into Python objects; ids are
compared with Arrow's C++ ``equals`` and only the chosen rows are ``take``-n.
Columns are streamed in batches of :data:`BATCH_ROWS` rows wherever the whole
column need not be held, so memory stays at the float64 scores plus one id
column.
"""

from __future__ import annotations

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.errors import InputError, reading

__all__ = [
    "SCORE_COLUMNS",
    "ScoreTable",
    "arrow_text_bytes",
    "check_ids_match_corpus",
    "check_scores_match_corpus",
    "check_scores_name_corpus",
    "gather_tokens",
    "read_scores",
    "take_rows",
    "take_sorted",
    "write_coreset_fasta",
    "write_ids",
]

SCORE_COLUMNS = ("index", "id", "length", "score", "loss")

#: Rows handled per step when streaming ids (bounded memory).
CHUNK_ROWS = 1 << 20
#: Rows decoded per step when a Parquet column is streamed (~8 MB of float64).
BATCH_ROWS = 1 << 20
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


def _parquet_file(path: Path):
    """``pyarrow.parquet.ParquetFile`` over a memory map (no read-into-buffer copy)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(path, memory_map=True)


def _no_nulls(batch, path: Path, start: int):
    """A record batch's one column (first row: file row ``start``); nulls are an error."""
    values = batch.column(0)
    if values.null_count:
        first = start + int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{path}: row {first} has no {batch.schema.names[0]} "
            f"({values.null_count} missing in its batch)"
        )
    return values


#: Threads that decode row groups in parallel (Arrow releases the GIL while decoding).
DECODE_THREADS = max(2, min(4, os.cpu_count() or 1))


def _row_group_slices(pf, parts: int) -> list[tuple[list[int], int]]:
    """``parts`` contiguous runs of ``pf``'s row groups with their first row."""
    sizes = [pf.metadata.row_group(g).num_rows for g in range(pf.num_row_groups)]
    first = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    k = len(sizes)
    cuts = sorted({k * i // parts for i in range(parts + 1)})
    return [(list(range(a, b)), int(first[a])) for a, b in itertools.pairwise(cuts) if b > a]


def _map_row_groups(path: Path, columns: str | list[str], fn) -> list:
    """``fn(batch, first_row)`` over every :data:`BATCH_ROWS` batch of ``columns``, in parallel.

    The file's row groups are cut into contiguous runs, each decoded by its own
    reader in one of :data:`DECODE_THREADS` threads; results come back in file
    order (one list per run).
    """
    from concurrent.futures import ThreadPoolExecutor

    runs = _row_group_slices(_parquet_file(path), DECODE_THREADS * 4)

    def run(groups_first):
        groups, start = groups_first
        out = []
        pf = _parquet_file(path)
        for batch in pf.iter_batches(
            batch_size=BATCH_ROWS,
            row_groups=groups,
            columns=[columns] if isinstance(columns, str) else columns,
            use_threads=False,
        ):  # a loop over batches of ~1M rows
            out.append(fn(batch, start))
            start += batch.num_rows
        return out

    with ThreadPoolExecutor(DECODE_THREADS) as pool:
        return [r for part in pool.map(run, runs) for r in part]


def take_rows(path: str | Path, column: str, rows: np.ndarray):
    """``column[rows]`` of a Parquet file, for sorted int64 file ``rows``, streamed.

    The column is decoded :data:`BATCH_ROWS` rows at a time and only the wanted
    rows of each batch are kept (Arrow ``take``), so memory is one batch plus
    the result; missing values anywhere in the column are an error.
    """
    import pyarrow as pa

    path = Path(path)
    rows = np.asarray(rows, dtype=np.int64)
    pf = _parquet_file(path)
    parts, start = [], 0
    with reading(path, f"column {column!r}"):
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=[column], use_threads=False):
            values = _no_nulls(batch, path, start)
            lo, hi = np.searchsorted(rows, [start, start + len(values)])
            if hi > lo:
                parts.append(values.take(pa.array(rows[lo:hi] - start)))
            start += len(values)
    if len(rows) and (rows[0] < 0 or rows[-1] >= start):
        raise IndexError(f"{path}: rows {rows[0]}..{rows[-1]} outside 0..{start - 1}")
    if not parts:
        return pa.array([], type=pf.schema_arrow.field(column).type)
    return pa.concat_arrays(parts)


@dataclass
class ScoreTable:
    """A score file read into memory, rows ordered by corpus index.

    Attributes
    ----------
    scores
        float64, shape ``(n,)``; ``scores[i]`` is example ``i``'s influence (NaN: unscored).
    order
        int64, shape ``(n,)``: the file row of corpus index ``i``, or ``None``
        when the file is already in index order (the usual case).
    ids
        Arrow string (chunked) array, shape ``(n,)``; ``ids[i]`` is example
        ``i``'s id. Decoded on first use (~20 bytes per example), so a caller
        that needs only the chosen ids calls :meth:`take_ids` instead.
    """

    path: Path
    scores: np.ndarray
    checksum: str
    metadata: dict
    order: np.ndarray | None = None
    _ids: object = field(default=None, repr=False)
    nan_count: int = 0  # scores that are NaN (unscored)
    inf_count: int = 0  # scores that are +inf (counted apart from NaN)

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def ids(self):
        if self._ids is None:
            import pyarrow as pa

            # Batches, not ParquetFile.read: the one-shot read grows its buffers by
            # reallocation, which costs more kernel time than the decoding itself.
            with reading(self.path, "score file ids"):
                chunks = _map_row_groups(
                    self.path, "id", lambda batch, start: _no_nulls(batch, self.path, start)
                )
            ids = pa.chunked_array(
                chunks, type=_parquet_file(self.path).schema_arrow.field("id").type
            )
            if self.order is not None:
                ids = ids.take(pa.array(self.order))
            self._ids = ids
        return self._ids

    def take_ids(self, indices: np.ndarray):
        """Ids of the sorted corpus ``indices`` (Arrow string array).

        From the decoded column when :attr:`ids` was used already, else
        streamed from the file (only the wanted rows are kept).
        """
        indices = np.asarray(indices, dtype=np.int64)
        if self._ids is not None:
            return take_sorted(self._ids, indices)
        if self.order is None:
            return take_rows(self.path, "id", indices)
        rows = self.order[indices]
        by_row = np.argsort(rows, kind="stable")
        ids = take_rows(self.path, "id", rows[by_row])
        import pyarrow as pa

        return ids.take(pa.array(np.argsort(by_row, kind="stable")))


def read_scores(path: str | Path) -> ScoreTable:
    """Read and validate a score file (schema, indices 0..n-1 each once).

    Only ``index`` and ``score`` are decoded here, batch by batch into one
    preallocated float64 array (8 bytes per example); the ``id`` column is
    decoded only when used (:attr:`ScoreTable.ids`, :meth:`ScoreTable.take_ids`).
    Scores are reordered by ``index`` when the file is not already in order.
    """
    import pyarrow as pa

    path = Path(path)
    pf = _open_score_file(path)
    scores, order, digest = _decode_scores(path, pf)
    # Arrow's allocator keeps freed buffers for reuse; hand the decoded batches back.
    pa.default_memory_pool().release_unused()
    nan_count, inf_count = _check_score_values(path, scores)
    return ScoreTable(
        path, scores, digest, _file_metadata(path), order, nan_count=nan_count, inf_count=inf_count
    )


#: column -> (type test, what it should be)
_SCORE_TYPES = {
    "index": ("is_integer", "an integer"),
    "id": ("is_string", "a string"),
    "length": ("is_integer", "an integer"),
    "score": ("is_floating", "a float"),
    "loss": ("is_floating", "a float"),
}


def _open_score_file(path: Path):
    """The Parquet file at ``path``, checked to be a score file (columns and their types)."""
    import pyarrow as pa

    if path.is_dir():
        raise InputError(path, "is a directory, not a score file (give the .parquet file)")
    if not path.is_file():
        raise FileNotFoundError(
            f"score file {path} does not exist; write one with `bioprune score`"
        )
    try:
        pf = _parquet_file(path)
    except (pa.ArrowInvalid, OSError) as exc:
        if isinstance(exc, OSError) and type(exc) is not OSError:
            raise  # PermissionError & co. name the file already
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            path, f"not a Parquet score file ({reason}); write one with `bioprune score`"
        ) from None
    schema = pf.schema_arrow
    missing = [c for c in SCORE_COLUMNS if c not in schema.names]
    if missing:
        raise InputError(
            path,
            f"score file lacks column(s) {', '.join(missing)}; "
            f"a score file has {', '.join(SCORE_COLUMNS)}",
        )
    for col, (test, expected) in _SCORE_TYPES.items():
        kind = schema.field(col).type
        ok = getattr(pa.types, test)(kind) or (col == "id" and pa.types.is_large_string(kind))
        if not ok:
            raise ValueError(
                f"score file {path}: column {col!r} has type {kind}, expected {expected}"
            )
    return pf


def _decode_scores(path: Path, pf) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The scores in corpus-index order, the file row of each index (``None``: the file is
    in order) and the file's checksum.

    The checksum streams the file in a thread (hashlib releases the GIL) while the row
    groups decode in parallel threads, each into its slice of the scores; a damaged page
    is one line naming the file.
    """
    import pyarrow.compute as pc

    n = pf.metadata.num_rows
    scores = np.empty(n, dtype=np.float64)

    def decode(batch, start: int) -> bool:
        """Copy a batch's scores into place; whether its index is start, start + 1, ..."""
        column = batch.column("index")
        if column.null_count:
            raise ValueError(f"score file {path}: {column.null_count} row(s) have no index")
        in_order = np.array_equal(column.to_numpy(), np.arange(start, start + len(column)))
        column = batch.column("score")
        if column.null_count:
            column = pc.fill_null(column, float("nan"))
        scores[start : start + len(column)] = column.to_numpy()
        return in_order

    with ThreadPoolExecutor(max_workers=1) as pool:
        checksum = pool.submit(artifacts.file_checksum, path)
        with reading(path, "score file"):
            ordered = all(_map_row_groups(path, ["index", "score"], decode))
            index = None if ordered else _read_index(pf, n)  # rare: rows out of index order
        order = None  # None: keep the file's row order
        if index is not None:
            order = np.argsort(index, kind="stable")
            if not np.array_equal(index[order], np.arange(n, dtype=np.int64)):
                raise ValueError(
                    f"score file {path}: column 'index' must hold 0..{n - 1} exactly once each "
                    f"(found min {index.min()}, max {index.max()}, "
                    f"{n - len(np.unique(index))} duplicate(s))"
                )
            del index
            scores = scores[order]
        return scores, order, checksum.result()


def _read_index(pf, n: int) -> np.ndarray:
    """The whole ``index`` column (int64)."""
    index = np.empty(n, dtype=np.int64)
    start = 0
    for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=["index"]):
        index[start : start + batch.num_rows] = batch.column(0).to_numpy()
        start += batch.num_rows
    return index


def _file_metadata(path: Path) -> dict:
    """The score file's key-value metadata, JSON values decoded (Arrow's schema left out)."""
    import json

    import pyarrow.parquet as pq

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
    return decoded


def _check_score_values(path: Path, scores: np.ndarray) -> tuple[int, int]:
    """Counts of NaN and +inf scores; negative scores (-inf too) are refused.

    Self-influence is a squared norm weighted by an inverse Fisher diagonal,
    so ``bioprune score`` never writes a value below 0 (nor an infinity: a
    non-finite result is written as NaN). A negative value means the file was
    edited or comes from another tool whose scale ``cci``'s strata and hard cut
    would silently misread, so it is an error rather than a warning.
    Costs two reductions (~3 ms per million scores) when every score is finite.
    """
    if not len(scores):
        return 0, 0
    # two SIMD reductions, no temporaries; min and max are NaN when any score is
    low, high = scores.min(), scores.max()
    if np.isnan(low):
        low = np.fmin.reduce(scores)  # skips NaN
    if low < 0:
        negative = scores < 0  # NaN compares False
        first = int(np.argmax(negative))
        raise InputError(
            path,
            f"{int(np.count_nonzero(negative)):,} negative score(s) (the first at index "
            f"{first}: {float(scores[first])!r}); self-influence is a squared norm (>= 0), so "
            "this file was altered or not written by `bioprune score`",
        )
    if np.isfinite(high):
        return 0, 0
    finite = np.isfinite(scores)
    odd = scores[~finite]  # few: NaN or +inf
    nan_count = int(np.count_nonzero(np.isnan(odd)))
    inf_count = len(odd) - nan_count
    return nan_count, inf_count


def check_scores_name_corpus(table: ScoreTable, corpus) -> None:
    """The cheap half of :func:`check_scores_match_corpus`: recorded checksum and n.

    When the file's metadata records ``corpus_checksum`` (``bioprune score``
    writes it), it must equal the corpus's; the row count must equal the
    corpus's size.
    """
    recorded = table.metadata.get("corpus_checksum")
    if recorded is not None and recorded != corpus.checksum:
        raise InputError(
            table.path,
            f"score file computed on another corpus (its metadata records corpus checksum "
            f"{str(recorded)[:24]}..., {corpus.path} has {corpus.checksum[:24]}...); "
            "score this corpus with `bioprune score`",
        )
    n = len(corpus)
    if len(table) != n:
        raise InputError(
            table.path,
            f"score file has {len(table):,} rows but corpus {corpus.path} has "
            f"{n:,} sequences; score this corpus with `bioprune score`",
        )


def check_ids_match_corpus(table: ScoreTable, corpus) -> None:
    """For every index, the score file's id equals the corpus's (Arrow C++ ``equals``).

    The corpus ids are streamed :data:`BATCH_ROWS` at a time and each batch is
    compared with the same slice of :attr:`ScoreTable.ids` in C++ (a memcmp of
    offsets and bytes), so no id becomes a Python object; only on a mismatch
    is the first differing index located.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    ours = table.ids
    if len(ours) != len(corpus):
        raise ValueError(
            f"score file {table.path} has {len(ours):,} ids but corpus {corpus.path} has "
            f"{len(corpus):,}; score this corpus with `bioprune score`"
        )

    def first_mismatch(batch, start: int) -> int | None:
        """Index of the first id of this corpus batch that differs from the scores', or None."""
        theirs = batch.column(0)
        if theirs.type != ours.type:
            theirs = theirs.cast(ours.type)
        mine = ours.slice(start, len(theirs))
        theirs = pa.chunked_array([theirs])
        if len(mine) == len(theirs) and mine.equals(theirs):
            return None
        k = min(len(mine), len(theirs))
        same = pc.fill_null(pc.equal(mine.slice(0, k), theirs.slice(0, k)), False)
        i = int(np.flatnonzero(~same.to_numpy())[0]) if k and not pc.all(same).as_py() else k
        return start + i

    bad = [i for i in _map_row_groups(corpus.sequences_path, "id", first_mismatch) if i is not None]
    if bad:
        i = bad[0]
        corpus_ids = take_rows(corpus.sequences_path, "id", np.array([i]))
        there = corpus_ids[0].as_py() if len(corpus_ids) else None
        here = ours[i].as_py() if i < len(ours) else None
        # on the error path only: say when the cause is an id listed twice in the scores
        times = int(pc.sum(pc.equal(ours, here)).as_py() or 0) if here is not None else 0
        raise InputError(
            table.path,
            f"score file does not match corpus {corpus.path}: index {i} has id {here!r} in "
            f"the scores but {there!r} in the corpus"
            + (f" (id {here!r} appears {times} times in the score file)" if times > 1 else ""),
        )


def check_scores_match_corpus(table: ScoreTable, corpus) -> None:
    """The score file must describe this corpus: same n and, for every index, the same id.

    :func:`check_scores_name_corpus` (recorded corpus checksum, row count)
    then :func:`check_ids_match_corpus` (every id, in C++).
    """
    check_scores_name_corpus(table, corpus)
    check_ids_match_corpus(table, corpus)


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
