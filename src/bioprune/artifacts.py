"""File names, metadata keys and the few helpers every stage uses to write outputs.

Stages talk only through files; every output carries the metadata (config,
seeds, input checksums, version) that made it. Names live here, in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_dir",
    "atomic_path",
    "atomic_write_text",
    "check_not_input",
    "check_output_dir",
    "file_checksum",
    "model_checksum",
    "provenance",
    "write_json",
]

# ---- corpus directory (bioprune prepare) ----------------------------------
CORPUS_SEQUENCES = "sequences.parquet"
CORPUS_TOKENS = "tokens.npy"
CORPUS_OFFSETS = "offsets.npy"
CORPUS_MANIFEST = "manifest.json"

# ---- model directory (bioprune init / pretrain / adapt) -------------------
MODEL_ALPHABET = "bioprune_alphabet.json"
MODEL_TRAINING = "training.json"
MODEL_SUBSET = "subset_indices.npy"  # adapt: the exact subset trained on
MODEL_VALIDATION = "validation_indices.npy"  # pretrain: the held-out split
MODEL_CURVE_CSV = "curve.csv"  # pretrain / adapt: training curve
MODEL_CURVE_PNG = "curve.png"

# ---- selection directory (bioprune select) --------------------------------
SELECTION_IDS = "ids.txt"
SELECTION_TABLE = "selection.parquet"
SELECTION_FASTA = "coreset.fasta"
SELECTION_META = "selection.json"

# ---- coreset report directory (bioprune inspect) ---------------------------
INSPECT_SUMMARY = "summary.json"
INSPECT_LENGTHS = "lengths.png"
INSPECT_COMPOSITION = "composition.png"
INSPECT_LABELS = "labels.png"
INSPECT_SCORES = "scores.png"
INSPECT_SCORE_LENGTH = "score_vs_length.png"
INSPECT_SCORE_LABELS = "score_by_label.png"
INSPECT_DUPLICATE_PAIRS = "duplicate_pairs.png"
INSPECT_STRATA_LOG = "strata_log.png"

#: Name of the config file every CLI stage writes next to its output.
RUN_CONFIG = "bioprune_config.json"


def bioprune_version() -> str:
    from bioprune import __version__

    return __version__


def provenance(**extra: Any) -> dict[str, Any]:
    """Version and timestamp block for an output's metadata, plus ``extra``."""
    return {
        "bioprune_version": bioprune_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def file_checksum(path: str | Path, algorithm: str = "blake2b", chunk: int = 1 << 22) -> str:
    """Hex digest of a file, streamed in chunks (never the whole file in memory)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return f"{algorithm}:{h.hexdigest()}"


def model_checksum(model_dir: str | Path) -> str:
    """Checksum of a HF model directory's weights (``*.safetensors`` / ``*.bin``) and config."""
    model_dir = Path(model_dir)
    files = sorted(
        p
        for p in model_dir.iterdir()
        if p.suffix in {".safetensors", ".bin"} or p.name == "config.json"
    )
    if not files:
        raise FileNotFoundError(f"{model_dir} holds no model weights")
    h = hashlib.blake2b()
    for p in files:
        h.update(p.name.encode())
        h.update(file_checksum(p).encode())
    return f"blake2b:{h.hexdigest()}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write a text file so that readers never see a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    # mkstemp creates 0600; give the file the permissions a plain open() would.
    os.chmod(tmp, 0o666 & ~_umask())
    with _removed_on_failure(path, tmp):
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place.

    For writers that need a file name (``savefig``, ``torch.save``, Parquet):
    readers, and a resumed run, never see a partial file; a killed writer leaves
    only a hidden ``.NAME.*.tmp`` file. ``suffix`` keeps an extension that a
    writer infers its format from (``".png"``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())
    with _removed_on_failure(path, tmp):
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)


@contextmanager
def _removed_on_failure(path: Path, tmp: str | Path) -> Iterator[None]:
    """Remove the temporary file ``tmp`` if the block fails; a full disk becomes one
    DiskFullError naming ``path``."""
    try:
        yield
    except OSError as exc:
        size_error = _disk_full(exc, path, tmp)
        Path(tmp).unlink(missing_ok=True)
        if size_error is not None:
            raise size_error from exc
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path: str | Path, obj: Any) -> None:
    """Atomically write ``obj`` as indented JSON."""
    atomic_write_text(
        path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    )


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"cannot serialise {type(o).__name__} to JSON")


def check_output_dir(
    path: str | Path,
    overwrite: bool,
    inputs: Iterable[str | Path | None] = (),
) -> Path:
    """Refuse an existing output unless ``overwrite``, and any output that overlaps an input.

    ``inputs`` are the paths the same command reads: an output that is one of
    them, lies inside one, or contains one is refused even with ``overwrite``
    (replacing it would delete the data being read).
    """
    path = Path(path)
    check_not_input(path, inputs)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; pass --overwrite to replace it")
    return path


def check_not_input(out: str | Path, inputs: Iterable[str | Path | None]) -> None:
    """Raise ``ValueError`` when ``out`` is, contains or lies inside one of ``inputs``.

    Paths are compared after resolving symlinks and ``..``, so ``./c`` and
    ``c/../c`` are the same corpus.

    >>> check_not_input("runs/scores.parquet", ["corpus", "model"])
    >>> check_not_input("corpus/sub", ["corpus"])
    Traceback (most recent call last):
    ...
    ValueError: --out corpus/sub lies inside the input corpus; choose an output outside every input
    """
    o = Path(os.path.abspath(os.path.realpath(out)))
    for given in inputs:
        if given is None:
            continue
        i = Path(os.path.abspath(os.path.realpath(given)))
        if o == i:
            how = "is"
        elif i in o.parents:
            how = "lies inside"
        elif o in i.parents:
            how = "contains"
        else:
            continue
        raise ValueError(
            f"--out {out} {how} the input {given}; choose an output outside every input"
        )


@contextmanager
def atomic_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Build a directory under a temporary name, then move it into place.

    An interrupted run leaves only a hidden ``.NAME.tmp-*`` directory beside
    the target, never a directory that looks complete. On success an existing
    target is replaced only when ``overwrite`` is true.

    >>> with atomic_dir("out/corpus") as tmp:          # doctest: +SKIP
    ...     (tmp / "manifest.json").write_text("{}")
    """
    path = check_output_dir(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp-"))
    # mkdtemp creates 0700; the finished directory gets what a plain mkdir would.
    os.chmod(tmp, 0o777 & ~_umask())
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except OSError as exc:
        size_error = _disk_full(exc, path, tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        if size_error is not None:
            raise size_error from exc
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _disk_full(exc: OSError, target: Path, partial: str | Path) -> OSError | None:
    """The one-line DiskFullError for a disk-full ``exc`` (None for any other OSError)."""
    from bioprune.errors import DISK_FULL_ERRNOS, BioPruneError, disk_full_error

    if isinstance(exc, BioPruneError) or exc.errno not in DISK_FULL_ERRNOS:
        return None
    return disk_full_error(exc, target, partial)
