"""``prepare``: stream sequence files into a corpus directory, with explicit policies.

Each record goes through six checks, in this order, and every record that is
not written is counted under exactly one reason::

    read = written + empty_skipped + long_skipped + invalid_skipped
           + low_complexity_skipped + duplicates_skipped

1. **id** — ids must be unique across all records *read* (skipped ones
   included, so the rule does not depend on the other policies). A repeated
   id is an error naming both records (file and record number), or with
   ``dedupe_ids`` the later record is renamed ``ID_2``, ``ID_3``, ... (a
   suffix already taken is skipped over).
2. **empty** — a record with no residues is skipped (``empty_skipped``).
3. **length** — a record longer than ``max_length`` residues keeps its first
   ``max_length`` residues (``on_long="crop"``; ``long_cropped``) or is
   skipped (``"skip"``; ``long_skipped``). Residues removed by cropping are
   not validated.
4. **residues** — after normalising (upper case; RNA: ``T`` -> ``U``), a
   character outside the alphabet is an error naming file, record id, 1-based
   position and character (``on_invalid="error"``), skips the record
   (``"skip"``; ``invalid_skipped``), or is written as the alphabet's unknown
   residue ``N``/``X`` (``"replace"``; ``invalid_replaced_records`` and
   ``invalid_replaced_chars``).
5. **complexity** (:mod:`bioprune.data.hygiene`, on the normalised sequence
   as written) — a record whose normalised k-mer entropy is below 0.5 is
   counted as ``low_complexity``, one with a run of 10 or more unknown
   residues as ``n_runs`` (a record can be both); with
   ``drop_low_complexity`` a record with either flag is skipped
   (``low_complexity_skipped``).
6. **exact duplicates** — a record whose normalised sequence equals that of an
   earlier written record is counted as ``exact_duplicates``; with
   ``dedup="exact"`` it is skipped (``duplicates_skipped``: the first is kept).

Speed: records are handled in batches; normalising, validating and encoding
a batch are a handful of byte-level C operations (``bytes.translate`` and a
NumPy table lookup over the whole batch), so per-record Python work is a few
list operations.

Memory: one batch plus the corpus writer's row group (65,536 records), plus
the id set: 64-bit hashes of the ids (:class:`_IdHashSet`, about 8 bytes per
id once merged; 23.7M ids take about 190 MB). A hash match is confirmed by
re-reading the inputs for the earlier record (error path only), so a hash
collision never produces a false error; with ``dedupe_ids`` a collision
(probability about n²/2⁶⁵, 1e-5 at 23.7M ids) would rename a unique id to a
still-unique one.
"""

from __future__ import annotations

import hashlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.data import hygiene
from bioprune.data.alphabet import INVALID, Alphabet, get_alphabet
from bioprune.data.policy import (
    POLICY,
    PrepareConfig,
    SequencePolicy,
)
from bioprune.data.readers import Record, read_records
from bioprune.errors import ConfigError, InputError

logger = logging.getLogger("bioprune.data")

__all__ = [
    "COUNT_KEYS",
    "POLICY",
    "PrepareConfig",
    "PrepareResult",
    "SequencePolicy",
    "prepare",
    "prepare_sequences",
]

#: Every count in ``manifest["counts"]``, in report order.
COUNT_KEYS = (
    "read",
    "written",
    "empty_skipped",
    "long_cropped",
    "long_skipped",
    "invalid_skipped",
    "invalid_replaced_records",
    "invalid_replaced_chars",
    "ids_deduplicated",
    "low_complexity",
    "n_runs",
    "low_complexity_skipped",
    "exact_duplicates",
    "duplicates_skipped",
)

#: The counts of records not written (each record at most one); their sum is read - written.
SKIP_KEYS = (
    "empty_skipped",
    "long_skipped",
    "invalid_skipped",
    "low_complexity_skipped",
    "duplicates_skipped",
)

#: Records normalised and validated together.
BATCH_RECORDS = 4096

#: A protein corpus whose residues are more than this fraction A/C/G/T/U is noted as
#: probably nucleic acid (proteins have about 20%: Ala 8%, Gly 7%, Thr 5.5%, Cys 1.4%).
NUCLEIC_FRACTION = 0.9

#: Called once per batch with (on-disk bytes consumed, records read).
PrepareProgress = Callable[[int, int], None]


@dataclass
class PrepareResult:
    """What :func:`prepare` wrote: the corpus path, its counts and its manifest."""

    out: Path
    num_sequences: int
    num_tokens: int
    counts: dict[str, int]
    manifest: dict
    notes: list[str] = field(default_factory=list)


class _IdHashSet:
    """Set of 64-bit id hashes: a sorted NumPy array plus a small Python set.

    New hashes go to the Python set (about 70 bytes each); when it outgrows
    1/16 of the array (at most 2^18 entries, about 18 MB) it is merged into the
    array (8 bytes each), so memory stays near 8 bytes per id.
    """

    #: Bounds of the Python-set buffer, in entries.
    MIN_BUFFER = 1 << 16
    MAX_BUFFER = 1 << 18

    def __init__(self) -> None:
        self._sorted = np.zeros(0, dtype=np.uint64)
        self._recent: set[int] = set()

    def __len__(self) -> int:
        return len(self._sorted) + len(self._recent)

    @staticmethod
    def hashes(ids: list[str]) -> np.ndarray:
        """blake2b-64 of each id (uint64), stable across runs and machines."""
        digests = b"".join(
            [hashlib.blake2b(i.encode("utf-8"), digest_size=8).digest() for i in ids]
        )
        return np.frombuffer(digests, dtype=np.uint64)

    def contains(self, h: np.ndarray) -> np.ndarray:
        """Boolean mask: which of ``h`` are already in the set."""
        found = np.zeros(len(h), dtype=bool)
        if len(self._sorted):
            pos = np.searchsorted(self._sorted, h)
            pos[pos == len(self._sorted)] = 0
            found = self._sorted[pos] == h
        if self._recent:
            recent = self._recent
            found |= np.fromiter((x in recent for x in h.tolist()), dtype=bool, count=len(h))
        return found

    def contains_one(self, h: int) -> bool:
        return bool(self.contains(np.array([h], dtype=np.uint64))[0])

    def add(self, h: np.ndarray) -> None:
        self._recent.update(h.tolist())
        # The buffer is allowed 1/16 of the array (bounded to [2^16, 2^18] entries):
        # small enough to keep memory near 8 bytes per id, large enough that the
        # merges (each an O(n) copy) total a few seconds at 23.7M ids.
        if len(self._recent) > min(max(self.MIN_BUFFER, len(self._sorted) // 16), self.MAX_BUFFER):
            merged = np.concatenate(
                [self._sorted, np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))]
            )
            merged.sort(kind="stable")  # two sorted-ish runs: timsort merges them in O(n)
            self._sorted = merged
            self._recent = set()


class _Ids:
    """Duplicate-id policy over every record read (see the module docstring)."""

    def __init__(self, pipeline: _Pipeline):
        self.pipeline = pipeline
        self.seen = _IdHashSet()
        self.next_suffix: dict[str, int] = {}

    def resolve(
        self, batch: list[Record], source: int
    ) -> tuple[list[str], list[bool], tuple[int, Record, str] | None]:
        """Final ids of ``batch``, whether each was renamed, and the first duplicate id.

        The duplicate (batch position, record, where the earlier one is) is
        returned rather than raised, so that the pipeline can report whichever
        problem comes first in the input (an invalid character in an earlier
        record of the same batch wins): the error a file gives must not depend
        on the batch size.
        """
        ids = [r.id for r in batch]
        h = self.seen.hashes(ids)
        clash = self.seen.contains(h)
        _, first = np.unique(h, return_index=True)
        within = np.ones(len(h), dtype=bool)
        within[first] = False
        renamed = [False] * len(ids)
        if not (clash.any() or within.any()):
            self.seen.add(h)
            return ids, renamed, None
        # Rare path: resolve one record at a time, in input order.
        for i, rec in enumerate(batch):
            hi = int(h[i])
            if self.seen.contains_one(hi):
                if self.pipeline.policy.dedupe_ids:
                    ids[i] = self._fresh(rec.id)
                    renamed[i] = True
                    hi = int(self.seen.hashes([ids[i]])[0])
                else:
                    earlier = self.pipeline.locate_first(rec.id, (source, rec.number))
                    if earlier is not None:
                        return ids, renamed, (i, rec, earlier)
            self.seen.add(np.array([hi], dtype=np.uint64))
        return ids, renamed, None

    def _fresh(self, rid: str) -> str:
        k = self.next_suffix.get(rid, 2)
        while True:
            candidate = f"{rid}_{k}"
            k += 1
            if not self.seen.contains_one(int(self.seen.hashes([candidate])[0])):
                self.next_suffix[rid] = k
                return candidate


class _Hygiene:
    """Complexity, N-run and exact-duplicate flags of a batch (see :mod:`bioprune.data.hygiene`)."""

    def __init__(self, alphabet: Alphabet):
        self.symbol, self.size, self.k = hygiene.kmer_spec(alphabet)
        self.unknown_id = alphabet.tokens.index(alphabet.unknown_residue)
        self.seen = _IdHashSet()

    def flags(self, tokens: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(low complexity, N-run) masks of the batch's sequences."""
        cplx, kmers = hygiene.complexity_scores(tokens, offsets, self.symbol, self.size, self.k)
        low = (cplx < hygiene.LOW_COMPLEXITY) & (kmers >= hygiene.MIN_KMERS)
        n_run = hygiene.longest_unknown_runs(tokens, offsets, self.unknown_id) >= hygiene.N_RUN
        return low, n_run

    def duplicates(self, seqs: list[str]) -> np.ndarray:
        """Which of ``seqs`` (in order) repeat an earlier one; the new ones are remembered."""
        h = self.seen.hashes(seqs)
        dup = self.seen.contains(h)
        _, first = np.unique(h, return_index=True)
        within = np.ones(len(h), dtype=bool)
        within[first] = False
        dup |= within
        self.seen.add(np.unique(h[~dup]))
        return dup


def _records(config: PrepareConfig, file_index: int, progress=None) -> Iterator[Record]:
    kwargs = {"progress": progress} if progress is not None else {}
    return read_records(
        config.inputs[file_index],
        config.formats[file_index],
        column=config.column,
        id_column=config.id_column,
        **kwargs,
    )


def _batches(records: Iterator[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for rec in records:
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _normalize_bytes_table(alphabet: Alphabet) -> bytes:
    """256-byte ``bytes.translate`` table equal to ``alphabet.normalize`` on ASCII."""
    table = bytearray(range(256))
    for code, dst in alphabet.normalize_table.items():
        if code < 128:
            table[code] = ord(dst)
    return bytes(table)


class _Encoder:
    """Normalise, validate and encode a batch of sequences at once."""

    def __init__(self, alphabet: Alphabet):
        self.alphabet = alphabet
        self.table = _normalize_bytes_table(alphabet)
        self.unknown_byte = ord(alphabet.unknown_residue)
        self.unknown_id = alphabet.tokens.index(alphabet.unknown_residue)

    def __call__(self, seqs: list[str]):
        """Normalised bytes of the concatenated batch, their residue ids (uint8,
        255 = invalid), offsets (int64, n + 1: sequence k is ``[offsets[k], offsets[k+1])``)
        and the positions of invalid characters in the concatenation (int64)."""
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        offsets = np.zeros(len(seqs) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # latin-1 with "replace" keeps one byte per character, so positions stay
        # character positions; a non-latin-1 character becomes '?', which is invalid.
        raw = "".join(seqs).encode("latin-1", errors="replace").translate(self.table)
        ids = self.alphabet.byte_to_id[np.frombuffer(raw, dtype=np.uint8)]
        bad = np.flatnonzero(ids == INVALID)
        return raw, ids, offsets, bad


def _open_progress(callback: PrepareProgress | None):
    pending = [0]

    def on_bytes(n: int) -> None:
        pending[0] += n

    def flush(records: int) -> None:
        if callback is not None:
            callback(pending[0], records)
        pending[0] = 0

    return on_bytes, flush


class _Pipeline(ABC):
    """The six checks of the module docstring over batches of records, writing to ``writer``.

    Counts (:data:`COUNT_KEYS`) and the written residues' composition accumulate
    across batches. How an error names a record and which option fixes it
    depends on where the records come from: files (:class:`_FilePipeline`,
    ``bioprune prepare``) or a list in memory (``Corpus.from_sequences``).
    """

    def __init__(self, policy, alphabet: Alphabet, writer) -> None:
        self.policy = policy
        self.alphabet = alphabet
        self.writer = writer
        self.encoder = _Encoder(alphabet)
        self.ids = _Ids(self)
        self.hygiene = _Hygiene(alphabet)
        self.counts = dict.fromkeys(COUNT_KEYS, 0)
        self.composition = np.zeros(256, dtype=np.int64)  # written residues per token id

    # -- wording (per source) -------------------------------------------------
    @abstractmethod
    def locate_first(self, rid: str, before: tuple[int, int]) -> str | None:
        """Where the first record with id ``rid`` before ``(source, number)`` is, or None."""

    @abstractmethod
    def invalid_error(self, source: int, rec: Record, pos: int) -> Exception:
        """The error for an invalid character at 0-based ``pos`` of ``rec``."""

    @abstractmethod
    def duplicate_error(self, source: int, rec: Record, earlier: str) -> Exception:
        """The error for ``rec`` repeating the id of the record at ``earlier``."""

    # -- the checks ----------------------------------------------------------
    def process(self, batch: list[Record], source: int) -> int:
        """Check, encode and write one batch; returns the number of records written."""
        self.counts["read"] += len(batch)
        final_ids, renamed, id_error = self.ids.resolve(batch, source)
        keep, seqs, cropped = self._length_policy(batch)
        raw, tokens, offsets, bad = self.encoder(seqs)
        if bad.size:
            owner = np.searchsorted(offsets, bad, side="right") - 1
            if self.policy.on_invalid == "error" and (
                id_error is None or keep[int(owner[0])] < id_error[0]
            ):
                k = int(owner[0])
                raise self.invalid_error(source, batch[keep[k]], int(bad[0] - offsets[k]))
        if id_error is not None:
            raise self.duplicate_error(source, *id_error[1:])
        skip = np.zeros(len(keep), dtype=bool)
        if bad.size:
            raw, tokens = self._invalid_policy(raw, tokens, bad, owner, skip)
        text = raw.decode("latin-1")
        off = offsets.tolist()
        self._hygiene_policy(text, off, tokens, offsets, skip)
        written = 0
        if not skip.any():
            self.composition += np.bincount(tokens, minlength=256)
        for k, i in enumerate(keep):
            if skip[k]:
                continue
            a, b = off[k], off[k + 1]
            if skip.any():
                self.composition += np.bincount(tokens[a:b], minlength=256)
            self.writer.add(final_ids[i], batch[i].description, text[a:b], tokens[a:b])
            written += 1
            self.counts["long_cropped"] += cropped[k]
            self.counts["ids_deduplicated"] += renamed[i]
        self.counts["written"] += written
        return written

    def _length_policy(self, batch: list[Record]) -> tuple[list[int], list[str], list[bool]]:
        """Checks 2 and 3: which records go on (batch positions), their text, cropped or not."""
        max_len = self.policy.max_length
        crop = self.policy.on_long == "crop"
        keep: list[int] = []
        seqs: list[str] = []
        cropped: list[bool] = []
        for i, rec in enumerate(batch):
            n = len(rec.sequence)
            if n == 0:
                self.counts["empty_skipped"] += 1
            elif n <= max_len or crop:
                keep.append(i)
                seqs.append(rec.sequence[:max_len])
                cropped.append(n > max_len)
            else:
                self.counts["long_skipped"] += 1
        return keep, seqs, cropped

    def _invalid_policy(self, raw: bytes, tokens, bad, owner, skip) -> tuple[bytes, np.ndarray]:
        """Check 4 under "skip" (marks ``skip``) or "replace" (rewrites the bad characters)."""
        if self.policy.on_invalid == "skip":
            bad_records = np.unique(owner)
            self.counts["invalid_skipped"] += len(bad_records)
            skip[bad_records] = True
            return raw, tokens
        tokens = tokens.copy()
        tokens[bad] = self.encoder.unknown_id
        fixed = np.frombuffer(raw, dtype=np.uint8).copy()
        fixed[bad] = self.encoder.unknown_byte
        self.counts["invalid_replaced_chars"] += int(bad.size)
        self.counts["invalid_replaced_records"] += len(np.unique(owner))
        return fixed.tobytes(), tokens

    def _hygiene_policy(self, text: str, off: list[int], tokens, offsets, skip) -> None:
        """Checks 5 and 6 on the records not yet skipped; marks ``skip`` per the policy."""
        low, n_run = self.hygiene.flags(tokens, offsets)
        low &= ~skip
        n_run &= ~skip
        self.counts["low_complexity"] += int(low.sum())
        self.counts["n_runs"] += int(n_run.sum())
        if self.policy.drop_low_complexity:
            self.counts["low_complexity_skipped"] += int((low | n_run).sum())
            skip |= low | n_run
        candidates = np.flatnonzero(~skip)
        dup = self.hygiene.duplicates([text[off[k] : off[k + 1]] for k in candidates.tolist()])
        self.counts["exact_duplicates"] += int(dup.sum())
        if self.policy.dedup == "exact":
            self.counts["duplicates_skipped"] += int(dup.sum())
            skip[candidates[dup]] = True

    def finish(self, store: dict) -> list[str]:
        """Check the counts add up; returns (and logs) the composition notes."""
        notes = _composition_notes(self.alphabet, self.composition)
        for note in notes:
            logger.warning("%s", note)
        skipped = sum(self.counts[k] for k in SKIP_KEYS)
        if (
            self.counts["read"] != self.counts["written"] + skipped
            or store["num_sequences"] != self.counts["written"]
        ):
            raise RuntimeError(f"prepare's counts do not add up: {self.counts}")  # a bug
        return notes

    def hygiene_manifest(self) -> dict:
        """The ``hygiene`` entry of the manifest: what the flags mean and the policy."""
        return {
            "low_complexity": {
                "measure": f"normalised {self.hygiene.k}-mer entropy",
                "threshold": hygiene.LOW_COMPLEXITY,
                "min_kmers": hygiene.MIN_KMERS,
            },
            "n_run": {"unknown_residue": self.alphabet.unknown_residue, "min_run": hygiene.N_RUN},
            "exact_duplicates": "normalised sequence, 64-bit blake2b",
            "dedup": self.policy.dedup,
            "drop_low_complexity": self.policy.drop_low_complexity,
        }


class _FilePipeline(_Pipeline):
    """``bioprune prepare``'s wording: records are numbered within input files."""

    def __init__(self, config: PrepareConfig, alphabet: Alphabet, writer) -> None:
        super().__init__(config, alphabet, writer)
        self.config = config

    def locate_first(self, rid: str, before: tuple[int, int]) -> str | None:
        """Where the first record with id ``rid`` is (re-reads the inputs; error path only)."""
        for fi, path in enumerate(self.config.inputs[: before[0] + 1]):
            for rec in _records(self.config, fi):
                if (fi, rec.number) >= before:
                    return None
                if rec.id == rid:
                    return f"record {rec.number} of {path}"
        return None

    def invalid_error(self, source: int, rec: Record, pos: int) -> Exception:
        return ValueError(
            f"{self.config.inputs[source]}: record {rec.number} (id {rec.id!r}): character "
            f"{rec.sequence[pos]!r} at position {pos + 1} is not in the "
            f"{self.alphabet.name} alphabet ({self.alphabet.residues}); pass "
            "--on-invalid skip or --on-invalid replace to continue"
        )

    def duplicate_error(self, source: int, rec: Record, earlier: str) -> Exception:
        here = f"record {rec.number} of {self.config.inputs[source]}"
        return ValueError(
            f"duplicate id {rec.id!r}: {here} repeats {earlier}; ids must be "
            "unique (pass --dedupe-ids to rename repeats ID_2, ID_3, ...; "
            "with several text/table inputs without --id-column, record "
            "numbers repeat across files)"
        )


def prepare(config: PrepareConfig, progress: PrepareProgress | None = None) -> PrepareResult:
    """Read ``config.inputs`` and write the corpus directory ``config.out`` atomically.

    Parameters
    ----------
    config : a validated :class:`PrepareConfig`.
    progress : optional callback, called once per batch with the on-disk bytes
        consumed and the records read since the previous call.

    Returns
    -------
    PrepareResult with the counts (keys :data:`COUNT_KEYS`) and the manifest.

    Raises
    ------
    ValueError
        on a malformed input, an invalid character under ``on_invalid="error"``,
        a duplicate id without ``dedupe_ids``, or no record written without
        ``allow_empty``; nothing is left at ``out``.

    Warnings (also returned as ``notes`` and stored in the manifest) go to the
    ``bioprune.data`` logger: a protein corpus whose residues are more than
    :data:`NUCLEIC_FRACTION` A/C/G/T/U.
    """
    from bioprune.data.corpus import CorpusWriter

    alphabet = get_alphabet(config.alphabet)
    sources = [_source_entry(p, fmt) for p, fmt in zip(config.inputs, config.formats, strict=True)]
    on_bytes, flush_progress = _open_progress(progress)
    with artifacts.atomic_dir(config.out, overwrite=config.overwrite) as tmp:
        pipeline = _FilePipeline(config, alphabet, CorpusWriter(tmp, alphabet))
        for fi, source in enumerate(sources):
            for batch in _batches(_records(config, fi, on_bytes), BATCH_RECORDS):
                source["records_read"] += len(batch)
                source["records_written"] += pipeline.process(batch, fi)
                flush_progress(len(batch))
        if not pipeline.counts["written"] and not config.allow_empty:
            raise _nothing_written(config, pipeline.counts)
        store = pipeline.writer.close()
        notes = pipeline.finish(store)
        manifest = {
            **corpus_manifest(store, pipeline),
            "sources": sources,
            "options": config.to_dict(),
            "seed": config.seed,
            "hygiene": pipeline.hygiene_manifest(),
            "notes": notes,
            **artifacts.provenance(),
        }
        manifest["options"].pop("formats", None)
        manifest["options"].pop("out", None)
        artifacts.write_json(tmp / artifacts.CORPUS_MANIFEST, manifest)
        artifacts.write_json(tmp / artifacts.RUN_CONFIG, {"command": "prepare", **config.to_dict()})
    return PrepareResult(
        out=config.out,
        num_sequences=store["num_sequences"],
        num_tokens=store["num_tokens"],
        counts=pipeline.counts,
        manifest=manifest,
        notes=notes,
    )


def _source_entry(path: Path, fmt: str) -> dict:
    """A ``sources`` entry of the manifest (the record counts are filled in as it is read)."""
    return {
        "path": str(path),
        "format": fmt,
        "size": path.stat().st_size,
        "checksum": artifacts.file_checksum(path),
        "records_read": 0,
        "records_written": 0,
    }


def corpus_manifest(store: dict, pipeline: _Pipeline) -> dict:
    """A corpus manifest's first keys: format, the store's counts and checksums, policy counts."""
    return {
        "format": "bioprune-corpus",
        "format_version": 1,
        **store,
        "max_length": pipeline.policy.max_length,
        "counts": pipeline.counts,
    }


# ---------------------------------------------------------------------------
# Sequences in memory (``Corpus.from_sequences``)
# ---------------------------------------------------------------------------


class _MemoryPipeline(_Pipeline):
    """``Corpus.from_sequences``'s wording: records are numbered 1.. in the caller's list."""

    def __init__(self, records: list[Record], policy, alphabet: Alphabet, writer) -> None:
        super().__init__(policy, alphabet, writer)
        self.records = records

    def locate_first(self, rid: str, before: tuple[int, int]) -> str | None:
        for rec in self.records[: before[1] - 1]:
            if rec.id == rid:
                return f"sequence {rec.number}"
        return None

    def invalid_error(self, source: int, rec: Record, pos: int) -> Exception:
        return ConfigError(
            "sequences",
            f"sequence {rec.number} (id {rec.id!r}): character {rec.sequence[pos]!r} at "
            f"position {pos + 1} is not in the {self.alphabet.name} alphabet "
            f"({self.alphabet.residues}); pass on_invalid='skip' or on_invalid='replace' "
            "to continue",
        )

    def duplicate_error(self, source: int, rec: Record, earlier: str) -> Exception:
        return ConfigError(
            "ids",
            f"duplicate id {rec.id!r}: sequence {rec.number} repeats {earlier}; ids must be "
            "unique (pass dedupe_ids=True to rename repeats ID_2, ID_3, ...)",
        )


def prepare_sequences(
    sequences, alphabet: Alphabet, ids, policy: SequencePolicy, writer
) -> tuple[dict, dict]:
    """Run ``prepare``'s checks over sequences in memory, writing to ``writer``.

    Returns the writer's store information and the manifest (without
    provenance: nothing was read from a file). An empty result is allowed.
    """
    sequences = None if isinstance(sequences, str) else list(sequences)
    if sequences is None or not all(isinstance(s, str) for s in sequences):
        raise ConfigError("sequences", "must be a list of strings (one per sequence)")
    if ids is None:
        ids = [str(i) for i in range(1, len(sequences) + 1)]
    ids = [str(i) for i in ids]
    if len(ids) != len(sequences):
        raise ConfigError("ids", f"{len(ids)} ids for {len(sequences)} sequences")
    records = [
        Record(rid, "", seq, n)
        for n, (rid, seq) in enumerate(zip(ids, sequences, strict=True), start=1)
    ]
    pipeline = _MemoryPipeline(records, policy, alphabet, writer)
    for start in range(0, len(records), BATCH_RECORDS):
        pipeline.process(records[start : start + BATCH_RECORDS], 0)
    store = writer.close()
    notes = pipeline.finish(store)
    manifest = {
        **corpus_manifest(store, pipeline),
        "sources": [{"path": None, "format": "memory", "records_read": len(records)}],
        "options": {"alphabet": alphabet.name, **asdict(policy)},
        "seed": None,
        "hygiene": pipeline.hygiene_manifest(),
        "notes": notes,
    }
    return store, manifest


def _nothing_written(config: PrepareConfig, counts: dict[str, int]) -> InputError:
    """The error for a run that would write an empty corpus (without ``allow_empty``)."""
    names = ", ".join(str(p) for p in config.inputs)
    if not counts["read"]:
        why = "holds no records" if len(config.inputs) == 1 else "hold no records"
    else:
        reasons = [f"{counts[k]:,} {k.removesuffix('_skipped')}" for k in SKIP_KEYS if counts[k]]
        why = f"{counts['read']:,} records read, all skipped ({', '.join(reasons)})"
    return InputError(
        names,
        f"{why}, so the corpus would be empty; check the input and the options "
        "(--format, --column, --max-length, --on-long, --on-invalid, --drop-low-complexity), "
        "or pass --allow-empty "
        "to write an empty corpus anyway",
    )


def _composition_notes(alphabet: Alphabet, composition: np.ndarray) -> list[str]:
    """Warnings about the written residues (a nucleic-acid corpus prepared as protein)."""
    total = int(composition.sum())
    if alphabet.name != "protein" or not total:
        return []
    ids = [alphabet.tokens.index(c) for c in "ACGTU"]
    fraction = int(composition[ids].sum()) / total
    if fraction <= NUCLEIC_FRACTION:
        return []
    return [
        f"{fraction:.1%} of the residues are A, C, G, T or U: this looks like RNA/DNA, not "
        "protein (proteins have about 20%); if it is nucleic acid, prepare it again with "
        "--alphabet rna"
    ]
