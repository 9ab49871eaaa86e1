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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.data import hygiene
from bioprune.data.alphabet import INVALID, Alphabet, get_alphabet
from bioprune.data.readers import Record, detect_format, read_records
from bioprune.errors import InputError

logger = logging.getLogger("bioprune")

__all__ = ["COUNT_KEYS", "PrepareConfig", "PrepareResult", "prepare"]

ON_LONG = ("crop", "skip")
ON_INVALID = ("error", "skip", "replace")
DEDUP = ("none", "exact")

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
class PrepareConfig:
    """What ``bioprune prepare`` does; validated on construction.

    Parameters
    ----------
    inputs : sequence files, read in this order (corpus index follows it).
    alphabet : "rna" or "protein".
    out : corpus directory to write.
    max_length : longest sequence kept, in residues (default 1022: 1024 tokens
        with ``<cls>``/``<eos>``, the context of RNA-FM and ESM-2).
    on_long : "crop" (keep the first ``max_length`` residues) or "skip".
    on_invalid : "error", "skip" or "replace" (with N for RNA, X for protein).
    dedupe_ids : rename repeated ids ``ID_2``, ``ID_3``... instead of failing.
    dedup : "none" (count exact duplicate sequences) or "exact" (also skip them,
        keeping the first).
    drop_low_complexity : skip records flagged low complexity or with an N-run
        (they are counted either way).
    column, id_column : sequence and id columns of CSV/TSV/Parquet inputs.
    format : force one format for every input (else by extension).
    overwrite : replace an existing ``out``.
    allow_empty : write a corpus even when no record is written (else an error:
        an empty input, or one whose every record is skipped, is almost always
        a mistake, and every later stage would have nothing to work on).
    seed : recorded for the pipeline's provenance; prepare draws no random numbers.
    """

    inputs: list[Path]
    alphabet: str
    out: Path
    max_length: int = 1022
    on_long: str = "crop"
    on_invalid: str = "error"
    dedupe_ids: bool = False
    dedup: str = "none"
    drop_low_complexity: bool = False
    column: str | None = None
    id_column: str | None = None
    format: str | None = None
    overwrite: bool = False
    allow_empty: bool = False
    seed: int = 0
    formats: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.out = Path(self.out)
        if not self.inputs:
            raise ValueError("prepare needs at least one input file")
        get_alphabet(self.alphabet)
        if int(self.max_length) < 1:
            raise ValueError(f"--max-length must be at least 1 residue, got {self.max_length}")
        self.max_length = int(self.max_length)
        if self.on_long not in ON_LONG:
            raise ValueError(f"--on-long {self.on_long!r}: choose one of {', '.join(ON_LONG)}")
        if self.on_invalid not in ON_INVALID:
            raise ValueError(
                f"--on-invalid {self.on_invalid!r}: choose one of {', '.join(ON_INVALID)}"
            )
        if self.dedup not in DEDUP:
            raise ValueError(f"--dedup {self.dedup!r}: choose one of {', '.join(DEDUP)}")
        for p in self.inputs:
            if not p.is_file():
                raise FileNotFoundError(f"input {p} does not exist or is not a file")
        self.formats = [detect_format(p, self.format) for p in self.inputs]
        artifacts.check_output_dir(self.out, self.overwrite, inputs=self.inputs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [str(p) for p in self.inputs]
        d["out"] = str(self.out)
        return d


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

    def __init__(self, config: PrepareConfig):
        self.config = config
        self.seen = _IdHashSet()
        self.next_suffix: dict[str, int] = {}

    def resolve(
        self, batch: list[Record], file_index: int
    ) -> tuple[list[str], list[bool], tuple[int, str] | None]:
        """Final ids of ``batch``, whether each was renamed, and the first duplicate error.

        The error (batch position, message) is returned rather than raised, so
        that ``prepare`` can report whichever problem comes first in the input
        (an invalid character in an earlier record of the same batch wins):
        the error a file gives must not depend on the batch size.
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
                if self.config.dedupe_ids:
                    ids[i] = self._fresh(rec.id)
                    renamed[i] = True
                    hi = int(self.seen.hashes([ids[i]])[0])
                else:
                    earlier = _locate_first(self.config, rec.id, (file_index, rec.number))
                    if earlier is not None:
                        here = f"record {rec.number} of {self.config.inputs[file_index]}"
                        return (
                            ids,
                            renamed,
                            (
                                i,
                                f"duplicate id {rec.id!r}: {here} repeats {earlier}; ids must be "
                                "unique (pass --dedupe-ids to rename repeats ID_2, ID_3, ...; "
                                "with several text/table inputs without --id-column, record "
                                "numbers repeat across files)",
                            ),
                        )
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

    def __init__(self, config: PrepareConfig, alphabet: Alphabet):
        self.config = config
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


def _locate_first(config: PrepareConfig, rid: str, before: tuple[int, int]) -> str | None:
    """Where the first record with id ``rid`` is (re-reads the inputs; error path only)."""
    for fi, path in enumerate(config.inputs[: before[0] + 1]):
        for rec in _records(config, fi):
            if (fi, rec.number) >= before:
                return None
            if rec.id == rid:
                return f"record {rec.number} of {path}"
    return None


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
    ``bioprune`` logger: a protein corpus whose residues are more than
    :data:`NUCLEIC_FRACTION` A/C/G/T/U.
    """
    from bioprune.data.corpus import CorpusWriter

    alphabet = get_alphabet(config.alphabet)
    encoder = _Encoder(alphabet)
    ids_policy = _Ids(config)
    hygiene_policy = _Hygiene(config, alphabet)
    counts = dict.fromkeys(COUNT_KEYS, 0)
    max_len = config.max_length
    crop = config.on_long == "crop"
    sources = [
        {
            "path": str(p),
            "format": fmt,
            "size": p.stat().st_size,
            "checksum": artifacts.file_checksum(p),
            "records_read": 0,
            "records_written": 0,
        }
        for p, fmt in zip(config.inputs, config.formats, strict=True)
    ]
    on_bytes, flush_progress = _open_progress(progress)
    composition = np.zeros(256, dtype=np.int64)  # written residues per token id

    with artifacts.atomic_dir(config.out, overwrite=config.overwrite) as tmp:
        writer = CorpusWriter(tmp, alphabet)
        for fi, path in enumerate(config.inputs):
            source = sources[fi]
            for batch in _batches(_records(config, fi, on_bytes), BATCH_RECORDS):
                n_read = len(batch)
                counts["read"] += n_read
                source["records_read"] += n_read
                final_ids, renamed, id_error = ids_policy.resolve(batch, fi)

                keep: list[int] = []
                seqs: list[str] = []
                cropped: list[bool] = []
                for i, rec in enumerate(batch):
                    seq = rec.sequence
                    n = len(seq)
                    if n == 0:
                        counts["empty_skipped"] += 1
                    elif n <= max_len:
                        keep.append(i)
                        seqs.append(seq)
                        cropped.append(False)
                    elif crop:
                        keep.append(i)
                        seqs.append(seq[:max_len])
                        cropped.append(True)
                    else:
                        counts["long_skipped"] += 1

                raw, tokens, offsets, bad = encoder(seqs)
                bad_records: set[int] = set()
                if bad.size:
                    owner = np.searchsorted(offsets, bad, side="right") - 1
                    if config.on_invalid == "error" and (
                        id_error is None or keep[int(owner[0])] < id_error[0]
                    ):
                        k = int(owner[0])
                        rec = batch[keep[k]]
                        pos = int(bad[0] - offsets[k])
                        raise ValueError(
                            f"{path}: record {rec.number} (id {rec.id!r}): character "
                            f"{rec.sequence[pos]!r} at position {pos + 1} is not in the "
                            f"{alphabet.name} alphabet ({alphabet.residues}); pass "
                            "--on-invalid skip or --on-invalid replace to continue"
                        )
                if id_error is not None:
                    raise ValueError(id_error[1])
                if bad.size:
                    if config.on_invalid == "skip":
                        bad_records = set(np.unique(owner).tolist())
                        counts["invalid_skipped"] += len(bad_records)
                    else:
                        tokens = tokens.copy()
                        tokens[bad] = encoder.unknown_id
                        fixed = np.frombuffer(raw, dtype=np.uint8).copy()
                        fixed[bad] = encoder.unknown_byte
                        raw = fixed.tobytes()
                        counts["invalid_replaced_chars"] += int(bad.size)
                        counts["invalid_replaced_records"] += len(np.unique(owner))
                text = raw.decode("latin-1")
                off = offsets.tolist()
                skip = np.zeros(len(keep), dtype=bool)
                if bad_records:
                    skip[list(bad_records)] = True
                low, n_run = hygiene_policy.flags(tokens, offsets)
                low &= ~skip
                n_run &= ~skip
                counts["low_complexity"] += int(low.sum())
                counts["n_runs"] += int(n_run.sum())
                if config.drop_low_complexity:
                    counts["low_complexity_skipped"] += int((low | n_run).sum())
                    skip |= low | n_run
                candidates = np.flatnonzero(~skip)
                dup = hygiene_policy.duplicates(
                    [text[off[k] : off[k + 1]] for k in candidates.tolist()]
                )
                counts["exact_duplicates"] += int(dup.sum())
                if config.dedup == "exact":
                    counts["duplicates_skipped"] += int(dup.sum())
                    skip[candidates[dup]] = True
                skipped_here = set(np.flatnonzero(skip).tolist())
                written = 0
                if not skipped_here:
                    composition += np.bincount(tokens, minlength=256)
                for k, i in enumerate(keep):
                    if k in skipped_here:
                        continue
                    a, b = off[k], off[k + 1]
                    if skipped_here:
                        composition += np.bincount(tokens[a:b], minlength=256)
                    writer.add(final_ids[i], batch[i].description, text[a:b], tokens[a:b])
                    written += 1
                    counts["long_cropped"] += cropped[k]
                    counts["ids_deduplicated"] += renamed[i]
                counts["written"] += written
                source["records_written"] += written
                flush_progress(n_read)
        if not counts["written"] and not config.allow_empty:
            raise _nothing_written(config, counts)
        store = writer.close()
        notes = _composition_notes(alphabet, composition)
        for note in notes:
            logger.warning("%s", note)
        skipped = sum(counts[k] for k in SKIP_KEYS)
        if (
            counts["read"] != counts["written"] + skipped
            or store["num_sequences"] != counts["written"]
        ):
            raise RuntimeError(f"prepare's counts do not add up: {counts}")  # a bug, not input
        manifest = {
            "format": "bioprune-corpus",
            "format_version": 1,
            **store,
            "max_length": max_len,
            "counts": counts,
            "sources": sources,
            "options": config.to_dict(),
            "seed": config.seed,
            "hygiene": {
                "low_complexity": {
                    "measure": f"normalised {hygiene_policy.k}-mer entropy",
                    "threshold": hygiene.LOW_COMPLEXITY,
                    "min_kmers": hygiene.MIN_KMERS,
                },
                "n_run": {"unknown_residue": alphabet.unknown_residue, "min_run": hygiene.N_RUN},
                "exact_duplicates": "normalised sequence, 64-bit blake2b",
                "dedup": config.dedup,
                "drop_low_complexity": config.drop_low_complexity,
            },
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
        counts=counts,
        manifest=manifest,
        notes=notes,
    )


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
