"""What is checked when a corpus directory is opened, and the full content check.

Two levels (docs/corpus.md, "What is verified when"):

* :func:`open_store` + :func:`check_store`, on **every** ``Corpus(...)``: the
  manifest parses and has its keys with the right types; every file is
  present; ``tokens.npy``/``offsets.npy`` have a plain ``.npy`` header (never
  unpickled), the expected dtype, one dimension and exactly the bytes their
  header promises; offsets start at 0, never decrease and end at the token
  count; the row count equals the manifest's and ``sequences.parquet``'s (its
  footer only), the token count the manifest's; every token id is a residue id
  of the alphabet (chunked min/max over the memory map). Cost, measured on a
  1M-sequence corpus (150M tokens): see docs/corpus.md.
* :func:`verify_checksum`, on the first read of ``Corpus.checksum`` (every
  stage that records the checksum) and by ``bioprune info --verify``: the
  blake2b content checksum of the tokens and lengths, recomputed in chunks,
  and the blake2b of ``sequences.parquet`` (when the manifest records it).

Every failure is an :class:`~bioprune.errors.InputError` naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from bioprune import artifacts
from bioprune.errors import InputError, UnsafeFileError, reading

__all__ = ["CHUNK", "check_store", "open_store", "verify_checksum"]

#: Elements per chunk of the min/max and hashing passes (64 Mi tokens = 64 MiB of uint8).
CHUNK = 1 << 26

_DAMAGED = "the corpus is damaged; prepare it again"

#: manifest key -> (accepted types, description), checked on every open.
_MANIFEST_KEYS: dict[str, tuple[tuple[type, ...], str]] = {
    "alphabet": ((str,), "a string"),
    "num_sequences": ((int,), "an integer"),
    "num_tokens": ((int,), "an integer"),
    "checksum": ((str,), "a string"),
}


def _read_manifest(path: Path) -> dict:
    with reading(path, "corpus manifest"):
        text = path.read_bytes().decode("utf-8")
        manifest = json.loads(text)
    if not isinstance(manifest, dict):
        raise InputError(path, f"is not a corpus manifest (a JSON {type(manifest).__name__}, "
                               f"not an object); {_DAMAGED}")  # fmt: skip
    fmt = manifest.get("format", "bioprune-corpus")
    if fmt != "bioprune-corpus":
        raise InputError(path, f"format {fmt!r} is not 'bioprune-corpus'")
    version = manifest.get("format_version", 1)
    if version != 1:
        raise InputError(
            path, f"format_version {version!r} is not 1 (written by another bioprune version?)"
        )
    for key, (types, what) in _MANIFEST_KEYS.items():
        if key not in manifest:
            raise InputError(path, f"has no {key!r} key; {_DAMAGED}")
        value = manifest[key]
        if not isinstance(value, types) or isinstance(value, bool):
            raise InputError(
                path, f"{key!r} is {value!r} ({type(value).__name__}), not {what}; {_DAMAGED}"
            )
        if isinstance(value, int) and value < 0:
            raise InputError(path, f"{key!r} is negative ({value}); {_DAMAGED}")
    from bioprune.data.alphabet import ALPHABETS

    if manifest["alphabet"] not in ALPHABETS:
        raise InputError(
            path,
            f"unknown alphabet {manifest['alphabet']!r} (known: {', '.join(sorted(ALPHABETS))})",
        )
    return manifest


def _open_npy(path: Path, dtype: np.dtype, what: str) -> np.ndarray:
    """Memory-map a 1-D ``.npy`` of ``dtype`` after checking its header and size.

    The header is parsed with NumPy's own header reader (a literal, never
    unpickled); an object dtype is refused before anything is loaded.
    """
    if not path.is_file():
        raise InputError(path, f"is missing (the {what} of the corpus); {_DAMAGED}")
    fmt = np.lib.format
    with reading(path, what), open(path, "rb") as fh:
        try:
            major, _ = fmt.read_magic(fh)
        except ValueError as exc:
            raise InputError(path, f"is not a .npy file ({exc}); {_DAMAGED}") from None
        read_header = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        shape, _fortran, found = read_header(fh)
        data_start = fh.tell()
    if found.hasobject:
        raise UnsafeFileError(
            path,
            f"holds Python objects (dtype {found}), which would have to be unpickled; "
            "bioprune never unpickles a corpus file. It was not written by bioprune "
            "prepare: prepare the corpus again",
        )
    if found != np.dtype(dtype) or len(shape) != 1:
        raise InputError(
            path,
            f"holds a {found} array of shape {shape}; a corpus {what} is a 1-D "
            f"{np.dtype(dtype)} array; {_DAMAGED}",
        )
    expected = data_start + int(shape[0]) * found.itemsize
    size = os.path.getsize(path)
    if size != expected:
        state = "truncated" if size < expected else "longer than its header says"
        raise InputError(
            path,
            f"is {state}: its header promises {shape[0]:,} entries ({expected:,} bytes) "
            f"but the file has {size:,} bytes; {_DAMAGED}",
        )
    if shape[0] == 0:  # an empty file region cannot be memory-mapped
        return np.zeros(0, dtype=found)
    with reading(path, what):
        return np.load(path, mmap_mode="r", allow_pickle=False)


def open_store(path: Path) -> tuple[dict, np.ndarray, np.ndarray]:
    """The manifest and the memory-mapped token store of a corpus directory (checked headers)."""
    manifest = _read_manifest(path / artifacts.CORPUS_MANIFEST)
    tokens = _open_npy(path / artifacts.CORPUS_TOKENS, np.uint8, "token store")
    offsets = _open_npy(path / artifacts.CORPUS_OFFSETS, np.int64, "offsets")
    return manifest, tokens, offsets


_PARQUET_COLUMNS = ("index", "id", "description", "sequence", "length")


def _parquet_rows(path: Path) -> int:
    """Rows of ``sequences.parquet`` from its footer, after checking its columns."""
    if not path.is_file():
        raise InputError(path, f"is missing (the sequences of the corpus); {_DAMAGED}")
    import pyarrow.parquet as pq

    with reading(path, "corpus sequences (Parquet)"):
        meta = pq.read_metadata(path)
        names = meta.schema.to_arrow_schema().names
    missing = [c for c in _PARQUET_COLUMNS if c not in names]
    if missing:
        raise InputError(path, f"has no column(s) {', '.join(map(repr, missing))}; {_DAMAGED}")
    return int(meta.num_rows)


def _chunked_min_max(a: np.ndarray, chunk: int = CHUNK) -> tuple[int, int]:
    lo, hi = None, None
    for start in range(0, len(a), chunk):
        part = a[start : start + chunk]
        pl, ph = int(part.min()), int(part.max())
        lo = pl if lo is None else min(lo, pl)
        hi = ph if hi is None else max(hi, ph)
    return (0, 0) if lo is None else (lo, hi)


def check_store(path: Path, manifest: dict, tokens, offsets, alphabet, chunk: int = CHUNK) -> None:
    """The cheap consistency checks of every open (module docstring); raises ``InputError``."""
    man = path / artifacts.CORPUS_MANIFEST
    off = path / artifacts.CORPUS_OFFSETS
    tok = path / artifacts.CORPUS_TOKENS
    n = int(manifest["num_sequences"])
    if len(offsets) != n + 1:
        raise InputError(
            off,
            f"has {len(offsets):,} entries but {man.name} records {n:,} sequences (n + 1 = "
            f"{n + 1:,} expected); the token store does not match manifest.json — {_DAMAGED}",
        )
    if len(tokens) != int(manifest["num_tokens"]):
        raise InputError(
            tok,
            f"holds {len(tokens):,} tokens but {man.name} records {manifest['num_tokens']:,}; "
            f"{_DAMAGED}",
        )
    if int(offsets[0]) != 0 or int(offsets[-1]) != len(tokens):
        raise InputError(
            off,
            f"must start at 0 and end at the token count {len(tokens):,}, but runs from "
            f"{int(offsets[0]):,} to {int(offsets[-1]):,}; {_DAMAGED}",
        )
    # Monotone, chunk by chunk (each chunk overlaps the previous by one entry).
    for start in range(0, max(len(offsets) - 1, 0), chunk):
        part = np.asarray(offsets[start : start + chunk + 1])
        steps = np.diff(part)
        if steps.size and steps.min() < 0:
            i = start + int(np.flatnonzero(steps < 0)[0])
            raise InputError(
                off,
                f"decreases at example {i} ({int(offsets[i]):,} -> {int(offsets[i + 1]):,}), "
                f"which would give it a negative length; {_DAMAGED}",
            )
    rows = _parquet_rows(path / artifacts.CORPUS_SEQUENCES)
    if rows != n:
        raise InputError(
            path / artifacts.CORPUS_SEQUENCES,
            f"has {rows:,} rows but {man.name} records {n:,} sequences; {_DAMAGED}",
        )
    ids = alphabet.residue_ids
    lo_ok, hi_ok = int(ids.min()), int(ids.max())
    contiguous = hi_ok - lo_ok + 1 == len(ids)
    lo, hi = _chunked_min_max(tokens, chunk)
    bad_range = len(tokens) and (lo < lo_ok or hi > hi_ok)
    if bad_range or (len(tokens) and not contiguous):
        allowed = np.zeros(256, dtype=bool)
        allowed[ids] = True
        for start in range(0, len(tokens), chunk):
            part = np.asarray(tokens[start : start + chunk])
            bad = np.flatnonzero(~allowed[part])
            if bad.size:
                pos = start + int(bad[0])
                example = int(np.searchsorted(np.asarray(offsets), pos, side="right")) - 1
                raise InputError(
                    tok,
                    f"token id {int(part[bad[0]])} at position {pos:,} (example {example}) is "
                    f"not a residue id of the {alphabet.name} alphabet ({lo_ok}..{hi_ok}); "
                    f"{_DAMAGED}",
                )


def content_checksum(
    alphabet_name: str,
    tokens,
    offsets,
    chunk: int = CHUNK,
    progress: Callable[[int], None] | None = None,
) -> str:
    """The corpus content checksum, as :class:`~bioprune.data.corpus.CorpusWriter` defines it:
    ``blake2b(alphabet name, blake2b(tokens as uint8 bytes), blake2b(lengths as int64 bytes))``.

    Streams ``chunk`` entries at a time, so memory stays bounded; the digest does
    not depend on the chunking (blake2b is a stream hash).
    """
    h_tokens = hashlib.blake2b()
    for start in range(0, len(tokens), chunk):
        part = np.ascontiguousarray(tokens[start : start + chunk])
        h_tokens.update(memoryview(part))
        if progress is not None:
            progress(len(part))
    h_lengths = hashlib.blake2b()
    for start in range(0, max(len(offsets) - 1, 0), chunk):
        part = np.diff(np.asarray(offsets[start : start + chunk + 1])).astype(np.int64)
        h_lengths.update(memoryview(np.ascontiguousarray(part)))
    combined = hashlib.blake2b(alphabet_name.encode())
    combined.update(h_tokens.digest())
    combined.update(h_lengths.digest())
    return f"blake2b:{combined.hexdigest()}"


def verify_checksum(corpus, progress: Callable[[int], None] | None = None) -> dict:
    """Recompute ``corpus``'s content checksum (and ``sequences.parquet``'s file checksum when
    the manifest records one) and compare with the manifest; raises ``InputError`` naming the
    file whose content changed. Returns ``{"checksum": ..., "sequences_checksum": ... | None}``.
    """
    from concurrent.futures import ThreadPoolExecutor

    recorded = corpus.recorded_checksum
    seq_recorded = corpus.manifest.get("sequences_checksum")
    # The Parquet file is hashed in a second thread while the tokens are hashed here
    # (hashlib releases the GIL on large buffers), so the two costs overlap.
    with ThreadPoolExecutor(1) as pool:
        seq_future = (
            pool.submit(artifacts.file_checksum, corpus.sequences_path)
            if isinstance(seq_recorded, str)
            else None
        )
        found = content_checksum(
            corpus.alphabet.name, corpus.tokens, corpus.offsets, progress=progress
        )
        seq_found = seq_future.result() if seq_future is not None else None
    if found != recorded:
        raise InputError(
            corpus.path / artifacts.CORPUS_TOKENS,
            f"content checksum {found[:24]}... differs from the {recorded[:24]}... that "
            f"{artifacts.CORPUS_MANIFEST} records: tokens.npy or offsets.npy were changed after "
            "prepare; results computed on it would be recorded under the wrong corpus — "
            "prepare the corpus again",
        )
    if seq_found is not None and seq_found != seq_recorded:
        raise InputError(
            corpus.sequences_path,
            f"checksum {seq_found[:24]}... differs from the {seq_recorded[:24]}... that "
            f"{artifacts.CORPUS_MANIFEST} records: the ids or sequences were changed after "
            "prepare — prepare the corpus again",
        )
    return {"checksum": found, "sequences_checksum": seq_recorded}
