"""Reading a prepared corpus directory (written by ``bioprune prepare``).

Layout of ``CORPUS_DIR``::

    sequences.parquet   index (int64, 0.. in input order), id, description,
                        sequence (normalised), length
    tokens.npy          uint8, every example's residue token ids concatenated
                        (no <cls>/<eos>; framing is added at batch time)
    offsets.npy         int64, n + 1 entries; example i is tokens[offsets[i]:offsets[i+1]]
    manifest.json       alphabet, counts, skip/crop/replacement counts, sources,
                        checksum, seed, bioprune version

``tokens.npy`` and ``offsets.npy`` are memory-mapped, so later stages never
read the corpus into RAM: a stage touching example ``i`` reads only its bytes.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.data.alphabet import Alphabet, get_alphabet
from bioprune.errors import ConfigError, InputError

__all__ = ["Corpus", "CorpusWriter", "write_corpus"]


class Corpus:
    """A prepared corpus, memory-mapped, checked on open; or sequences held in memory.

    ``Corpus(path)`` (= :meth:`Corpus.open`) opens a directory written by
    ``bioprune prepare``; :meth:`Corpus.from_sequences` builds the same object
    from Python strings, with no files (``path`` is then ``None``).

    Opening a corpus checks everything that is cheap (see :func:`check_store`):
    the manifest's keys and types, every file's presence, header, dtype and
    size, the offsets (start at 0, never decrease, end at the token count),
    the row count against the manifest and ``sequences.parquet``, and every
    token id against the alphabet's residue ids. A violation is an
    :class:`~bioprune.errors.InputError` naming the file and the reason.

    The content checksum (blake2b of the tokens and lengths, plus the
    ``sequences.parquet`` file) is verified the first time :attr:`checksum`
    is read: a stage that records the checksum in its output (fisher, score,
    select, pretrain, adapt, inspect) thus never records a checksum the data
    does not have. :attr:`recorded_checksum` is the manifest's value, unverified.

    An empty corpus (0 sequences; ``prepare --allow-empty``) is refused unless
    ``allow_empty=True``: there is nothing to score, select or train on.

    Examples
    --------
    >>> corpus = Corpus("corpus/")                     # doctest: +SKIP
    >>> corpus.alphabet.name, len(corpus)              # doctest: +SKIP
    ('rna', 12000)
    >>> corpus.framed(0)[:3]                           # doctest: +SKIP
    array([0, 6, 4])

    In memory:

    >>> mem = Corpus.from_sequences(["ACGUACGU", "GGAUCCa"], ids=["r1", "r2"])
    >>> len(mem), mem.lengths.tolist(), mem.ids().tolist()
    (2, [8, 7], ['r1', 'r2'])
    >>> mem.framed(1).tolist()  # <cls> G G A U C C A <eos>
    [0, 6, 6, 4, 7, 5, 5, 4, 2]
    """

    path: Path | None
    _table = None  # the sequences table of an in-memory corpus (pyarrow.Table)

    def __init__(self, path: str | Path, *, allow_empty: bool = False):
        self.path = Path(path)
        manifest_path = self.path / artifacts.CORPUS_MANIFEST
        if not manifest_path.is_file():
            raise FileNotFoundError(
                f"{self.path} is not a bioprune corpus (no {artifacts.CORPUS_MANIFEST}); "
                "create one with `bioprune prepare`"
            )
        from bioprune.data.integrity import check_store, open_store

        self.manifest, self.tokens, self.offsets = open_store(self.path)
        self.alphabet: Alphabet = get_alphabet(self.manifest["alphabet"])
        check_store(self.path, self.manifest, self.tokens, self.offsets, self.alphabet)
        if not len(self) and not allow_empty:
            raise InputError(
                self.path,
                "the corpus holds no sequences (prepared with --allow-empty), so there is "
                "nothing to score, select or train on; prepare it from inputs with sequences",
            )
        self._verified: str | None = None

    @classmethod
    def open(cls, path: str | Path, *, allow_empty: bool = False) -> Corpus:
        """Open a prepared corpus directory (the same as ``Corpus(path)``)."""
        return cls(path, allow_empty=allow_empty)

    @classmethod
    def from_sequences(
        cls,
        sequences,
        *,
        alphabet: str = "rna",
        ids=None,
        allow_empty: bool = False,
        **policy,
    ) -> Corpus:
        """A corpus held in memory, built from sequence strings (no files are written).

        The sequences go through the checks of ``bioprune prepare``, with the
        same policies and defaults (``max_length``, ``on_long``, ``on_invalid``,
        ``dedupe_ids``, ``dedup``, ``drop_low_complexity``: see
        :data:`bioprune.data.prepare.POLICY`; any other keyword is a
        :class:`~bioprune.errors.ConfigError`): upper case, ``T`` -> ``U`` for
        RNA, ids unique, empty sequences skipped, longer than ``max_length``
        cropped or skipped, invalid characters an error naming the sequence id
        (or skipped, or replaced), complexity and duplicates counted (and
        dropped when asked). So a corpus prepared from a FASTA file and one
        built from the same records here have the same tokens, lengths, ids
        and :attr:`checksum`. ``ids`` default to ``"1"``, ``"2"``, ...; the
        counts are in ``manifest["counts"]``. :meth:`save` writes it as a
        corpus directory.
        """
        from bioprune.data.policy import SequencePolicy, check_alphabet
        from bioprune.data.prepare import prepare_sequences

        policy_ = SequencePolicy.of(policy)
        a = check_alphabet(alphabet)
        writer = _MemoryWriter(a)
        _, manifest = prepare_sequences(sequences, a, ids, policy_, writer)
        corpus = cls.__new__(cls)
        corpus.path = None
        corpus.manifest = manifest
        corpus.tokens, corpus.offsets, corpus._table = writer.tokens, writer.offsets, writer.table
        corpus.alphabet = a
        corpus._verified = manifest["checksum"]
        if not len(corpus) and not allow_empty:
            counts = {k: v for k, v in manifest["counts"].items() if v}
            raise ConfigError(
                "sequences",
                f"no sequence left to hold ({counts}); check the sequences and options, "
                "or pass allow_empty=True",
            )
        return corpus

    def save(self, path: str | Path, *, overwrite: bool = False) -> Corpus:
        """Write this corpus as a corpus directory (atomically) and return it opened.

        The content checksum is unchanged; ``sequences.parquet`` gets its own
        file checksum. Works for any corpus (a prepared one is copied row by row).
        """
        artifacts.check_output_dir(path, overwrite)
        table = self.read_columns(["id", "description", "sequence"])
        rows = zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True)
        with artifacts.atomic_dir(path, overwrite=overwrite) as tmp:
            writer = CorpusWriter(tmp, self.alphabet)
            for i, (rid, desc, seq) in enumerate(rows):
                writer.add(rid, desc, seq, self.residues(i))
            manifest = {**self.manifest, **writer.close()}
            manifest.update(artifacts.provenance())
            artifacts.write_json(tmp / artifacts.CORPUS_MANIFEST, manifest)
        return Corpus(path, allow_empty=True)

    @property
    def in_memory(self) -> bool:
        """True for a corpus from :meth:`from_sequences` (no files behind it)."""
        return self.path is None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __repr__(self) -> str:
        where = "in memory" if self.path is None else repr(str(self.path))
        return f"Corpus({where}, alphabet={self.alphabet.name}, n={len(self)})"

    @cached_property
    def lengths(self) -> np.ndarray:
        """Residue counts (int64, without <cls>/<eos>)."""
        return np.diff(np.asarray(self.offsets)).astype(np.int64)

    @property
    def recorded_checksum(self) -> str:
        """The content checksum ``manifest.json`` records (not verified against the data)."""
        return str(self.manifest["checksum"])

    @property
    def checksum(self) -> str:
        """The content checksum, verified against the data on first use (then cached).

        Stages record this value in their outputs, so they only ever record a
        checksum that the tokens, lengths and ``sequences.parquet`` really have.
        Raises :class:`~bioprune.errors.InputError` when the data was changed.
        """
        if self._verified is None:
            self.verify()
        return str(self._verified)

    def verify(self, progress=None) -> dict:
        """Recompute the content checksum and compare it with the manifest's.

        Streams the token store and offsets in chunks (memory bounded) and hashes
        ``sequences.parquet``; see :func:`bioprune.data.integrity.verify_checksum`.
        Returns what was checked; raises ``InputError`` on a mismatch.
        """
        from bioprune.data.integrity import verify_checksum

        result = verify_checksum(self, progress=progress)
        self._verified = self.recorded_checksum
        return result

    @property
    def max_length(self) -> int:
        """Longest sequence in residues."""
        return int(self.lengths.max()) if len(self) else 0

    def residues(self, index: int) -> np.ndarray:
        """Residue ids (uint8 view into the memory map) of example ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"example index {index} outside corpus of {len(self)}")
        return self.tokens[int(self.offsets[index]) : int(self.offsets[index + 1])]

    def framed(self, index: int) -> np.ndarray:
        """``<cls> residues <eos>`` (int64) of example ``index``."""
        return self.alphabet.frame(self.residues(index))

    @property
    def sequences_path(self) -> Path:
        if self.path is None:
            raise ValueError(
                "an in-memory corpus has no sequences.parquet: use read_columns(), "
                "or save() it first"
            )
        return self.path / artifacts.CORPUS_SEQUENCES

    def read_columns(self, columns: list[str]):
        """Columns of ``sequences.parquet`` as a ``pyarrow.Table`` (row i = example i)."""
        import pyarrow.parquet as pq

        if self._table is not None:
            return self._table.select(columns)
        return pq.read_table(self.sequences_path, columns=columns)

    def iter_columns(self, columns: list[str], batch_size: int = 65_536):
        """Columns of ``sequences.parquet`` as ``pyarrow.RecordBatch`` es in index order,
        at most ``batch_size`` rows each (memory bounded; in memory or on disk alike)."""
        if self._table is not None:
            yield from self._table.select(columns).to_batches(max_chunksize=batch_size)
            return
        import pyarrow.parquet as pq

        source = pq.ParquetFile(self.sequences_path)
        yield from source.iter_batches(batch_size=batch_size, columns=columns)

    def ids(self) -> np.ndarray:
        """Every example's id as a NumPy object array (row i = example i)."""
        return self.read_columns(["id"]).column("id").to_numpy(zero_copy_only=False)

    def indices_of(self, ids) -> np.ndarray:
        """Corpus indices of the given ids, in their order; unknown ids are an error."""
        import pyarrow as pa
        import pyarrow.compute as pc

        all_ids = self.read_columns(["id"]).column("id")
        wanted = pa.array(list(ids), type=pa.string())
        pos = pc.index_in(wanted, value_set=all_ids).to_numpy(zero_copy_only=False)
        missing = np.flatnonzero(np.isnan(pos.astype(float)))
        if missing.size:
            examples = ", ".join(repr(wanted[int(i)].as_py()) for i in missing[:5])
            from bioprune.errors import MissingIdsError

            raise MissingIdsError(
                f"{self.path or 'corpus'}: {missing.size} id(s) not found in this corpus: "
                f"{examples}"
            )
        return pos.astype(np.int64)


# ---------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------

_NPY_HEADER_BYTES = 128  # fixed, so the header can be rewritten in place with the final shape


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    """A version-1.0 ``.npy`` header of exactly ``_NPY_HEADER_BYTES`` bytes."""
    body = f"{{'descr': '{np.dtype(dtype).str}', 'fortran_order': False, 'shape': ({count},), }}"
    prefix = b"\x93NUMPY\x01\x00"
    room = _NPY_HEADER_BYTES - len(prefix) - 2
    text = body.ljust(room - 1) + "\n"
    if len(text) != room:
        raise ValueError("npy header overflow")
    return prefix + room.to_bytes(2, "little") + text.encode("latin-1")


class _NpyAppender:
    """Append a 1-D array to a ``.npy`` file in chunks; the header is fixed on close."""

    def __init__(self, path: Path, dtype):
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.count = 0
        self.fh = open(self.path, "wb")
        self.fh.write(_npy_header(self.dtype, 0))

    def append(self, values: np.ndarray) -> None:
        arr = np.ascontiguousarray(values, dtype=self.dtype)
        self.fh.write(arr.tobytes())
        self.count += len(arr)

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(_npy_header(self.dtype, self.count))
        self.fh.flush()
        os.fsync(self.fh.fileno())
        self.fh.close()


class CorpusWriter:
    """Stream examples into a corpus directory's files (memory independent of corpus size).

    The caller owns the directory's atomicity (write into a temporary directory
    from :func:`bioprune.artifacts.atomic_dir`) and the manifest's policy counts;
    :meth:`close` returns the store's part of the manifest (counts and checksum).

    >>> with atomic_dir("corpus") as tmp:                       # doctest: +SKIP
    ...     w = CorpusWriter(tmp, get_alphabet("rna"))
    ...     w.add("seq1", "a tRNA", "ACGU", rna.encode("ACGU"))
    ...     info = w.close()
    """

    ROWS_PER_GROUP = 65_536

    def __init__(self, directory: str | Path, alphabet: Alphabet):
        import hashlib

        import pyarrow as pa
        import pyarrow.parquet as pq

        self.directory = Path(directory)
        self.alphabet = alphabet
        self._pa = pa
        self.schema = pa.schema(
            [
                ("index", pa.int64()),
                ("id", pa.string()),
                ("description", pa.string()),
                ("sequence", pa.string()),
                ("length", pa.int64()),
            ]
        )
        self._parquet = pq.ParquetWriter(
            self.directory / artifacts.CORPUS_SEQUENCES, self.schema, compression="zstd"
        )
        self._tokens = _NpyAppender(self.directory / artifacts.CORPUS_TOKENS, np.uint8)
        self._offsets = _NpyAppender(self.directory / artifacts.CORPUS_OFFSETS, np.int64)
        self._offsets.append(np.zeros(1, dtype=np.int64))
        # Two streams, combined on close, so the checksum depends on content only
        # (not on where flushes happened).
        self._hash_tokens = hashlib.blake2b()
        self._hash_lengths = hashlib.blake2b()
        self._rows: dict[str, list] = {k: [] for k in ("id", "description", "sequence")}
        self._pending_tokens: list[np.ndarray] = []
        self._pending_lengths: list[int] = []
        self.num_sequences = 0
        self.num_tokens = 0

    def add(self, id: str, description: str, sequence: str, residue_ids: np.ndarray) -> int:
        """Append one example; returns its corpus index."""
        if len(residue_ids) != len(sequence):
            raise ValueError(f"record {id!r}: {len(sequence)} residues but {len(residue_ids)} ids")
        self._rows["id"].append(id)
        self._rows["description"].append(description)
        self._rows["sequence"].append(sequence)
        self._pending_tokens.append(residue_ids)
        self._pending_lengths.append(len(residue_ids))
        self.num_sequences += 1
        if len(self._pending_lengths) >= self.ROWS_PER_GROUP:
            self._flush()
        return self.num_sequences - 1

    def _flush(self) -> None:
        n = len(self._pending_lengths)
        if not n:
            return
        pa = self._pa
        lengths = np.asarray(self._pending_lengths, dtype=np.int64)
        tokens = (
            np.concatenate(self._pending_tokens).astype(np.uint8, copy=False)
            if lengths.sum()
            else np.zeros(0, np.uint8)
        )
        first = self.num_sequences - n
        offsets = self.num_tokens + np.cumsum(lengths)
        self._tokens.append(tokens)
        self._offsets.append(offsets)
        self._hash_tokens.update(tokens.tobytes())
        self._hash_lengths.update(lengths.tobytes())
        self.num_tokens += int(lengths.sum())
        table = pa.table(
            {
                "index": pa.array(np.arange(first, first + n, dtype=np.int64)),
                "id": pa.array(self._rows["id"], pa.string()),
                "description": pa.array(self._rows["description"], pa.string()),
                "sequence": pa.array(self._rows["sequence"], pa.string()),
                "length": pa.array(lengths),
            },
            schema=self.schema,
        )
        self._parquet.write_table(table)
        for v in self._rows.values():
            v.clear()
        self._pending_tokens.clear()
        self._pending_lengths.clear()

    def close(self) -> dict:
        """Flush, finalise the files; returns ``alphabet``, counts, ``checksum`` (content:
        tokens and lengths, see :func:`bioprune.data.integrity.content_checksum`) and
        ``sequences_checksum`` (the ``sequences.parquet`` file)."""
        self._flush()
        self._parquet.close()
        self._tokens.close()
        self._offsets.close()
        import hashlib

        combined = hashlib.blake2b(self.alphabet.name.encode())
        combined.update(self._hash_tokens.digest())
        combined.update(self._hash_lengths.digest())
        return {
            "alphabet": self.alphabet.name,
            "num_sequences": self.num_sequences,
            "num_tokens": self.num_tokens,
            "checksum": f"blake2b:{combined.hexdigest()}",
            # The ids and sequence text are not in the content checksum (that would change
            # every existing corpus's checksum); the file's own checksum guards them.
            "sequences_checksum": artifacts.file_checksum(
                self.directory / artifacts.CORPUS_SEQUENCES
            ),
        }


class _MemoryWriter:
    """:class:`CorpusWriter`'s ``add``/``close`` into arrays and a ``pyarrow.Table``."""

    def __init__(self, alphabet: Alphabet):
        self.alphabet = alphabet
        self._rows: dict[str, list] = {k: [] for k in ("id", "description", "sequence")}
        self._tokens: list[np.ndarray] = []

    def add(self, id: str, description: str, sequence: str, residue_ids: np.ndarray) -> int:
        """Append one example; returns its corpus index."""
        if len(residue_ids) != len(sequence):
            raise ValueError(f"record {id!r}: {len(sequence)} residues but {len(residue_ids)} ids")
        for key, value in zip(self._rows, (id, description, sequence), strict=True):
            self._rows[key].append(value)
        self._tokens.append(np.array(residue_ids, dtype=np.uint8))
        return len(self._tokens) - 1

    def close(self) -> dict:
        """Build ``tokens``, ``offsets`` and ``table`` (read-only); returns the store's
        manifest part, as :meth:`CorpusWriter.close` does (no file: no ``sequences_checksum``)."""
        import pyarrow as pa

        from bioprune.data.integrity import content_checksum

        lengths = np.array([len(t) for t in self._tokens], dtype=np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self.tokens = np.concatenate(self._tokens) if self._tokens else np.zeros(0, dtype=np.uint8)
        self.tokens.setflags(write=False)
        self.offsets.setflags(write=False)
        self.table = pa.table(
            {
                "index": pa.array(np.arange(len(lengths), dtype=np.int64)),
                **{k: pa.array(v, pa.string()) for k, v in self._rows.items()},
                "length": pa.array(lengths),
            }
        )
        return {
            "alphabet": self.alphabet.name,
            "num_sequences": len(lengths),
            "num_tokens": int(lengths.sum()),
            "checksum": content_checksum(self.alphabet.name, self.tokens, self.offsets),
            "sequences_checksum": None,
        }


def write_corpus(
    path: str | Path,
    records,
    alphabet: str | Alphabet,
    *,
    overwrite: bool = False,
    extra_manifest: dict | None = None,
) -> Corpus:
    """Write already-normalised ``(id, description, sequence)`` records as a corpus.

    A small convenience for tests and scripts that build corpora in code;
    ``bioprune prepare`` is the way to ingest files (it validates and counts).
    """
    a = get_alphabet(alphabet) if isinstance(alphabet, str) else alphabet
    with artifacts.atomic_dir(path, overwrite=overwrite) as tmp:
        writer = CorpusWriter(tmp, a)
        for rid, desc, seq in records:
            writer.add(rid, desc, seq, a.encode(seq))
        manifest = {
            "format": "bioprune-corpus",
            "format_version": 1,
            **writer.close(),
            **(extra_manifest or {}),
            **artifacts.provenance(),
        }
        artifacts.write_json(tmp / artifacts.CORPUS_MANIFEST, manifest)
    return Corpus(path, allow_empty=True)
