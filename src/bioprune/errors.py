"""bioprune's exception classes and the one place where file-reading failures are named.

Errors the user can fix subclass :class:`BioPruneError` *and* the built-in that
fits (``ValueError``, ``KeyError``, ``OSError``), so library callers can catch
either. The CLI prints a :class:`BioPruneError` as one line and exits 2; any
other exception that is not a known user error (``KeyError``, ``IndexError``,
``TypeError`` raised by a bug) keeps its traceback.

Failures of third-party readers (a truncated safetensors file, garbage
Parquet, bad JSON, a damaged gzip stream, a pickle) are mapped to
:class:`InputError` at the I/O boundary with :func:`reading`, which names the
file and what was being read:

>>> import json
>>> from pathlib import Path
>>> try:
...     with reading("config.json", "model config"):
...         json.loads("{not json")
... except InputError as exc:
...     print(exc)  # doctest: +ELLIPSIS
config.json: cannot read model config: Expecting property name enclosed in double quotes...
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = [
    "BioPruneError",
    "ConfigError",
    "DiskFullError",
    "InputError",
    "MissingIdsError",
    "Terminated",
    "UnsafeFileError",
    "check_choice",
    "disk_full_error",
    "reading",
]

#: errno values that mean "the disk (or a quota, or a file-size limit) is full".
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


class BioPruneError(Exception):
    """Base of the errors a user can fix: the CLI prints the message and exits 2."""


class InputError(BioPruneError, ValueError):
    """An input file is damaged, of the wrong kind, or inconsistent with another input.

    The message always starts with the file: ``"PATH: reason"``.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self):  # keep picklable across processes (two-argument __init__)
        return (type(self), (str(self.path), self.reason))


class ConfigError(BioPruneError, ValueError):
    """An invalid argument, named by its Python parameter: ``str()`` is ``"param: reason"``.

    Raised by every config's ``validate()`` and by functions that refuse an argument; the CLI
    prints it as ``--flag-name: reason`` (exit 2), taking the flag from :attr:`flag` when a
    command set it, else from the parameter (``max_tokens`` -> ``--max-tokens``).

    >>> str(ConfigError("max_tokens", "must be positive, got 0"))
    'max_tokens: must be positive, got 0'
    >>> isinstance(ConfigError("beta", "x"), ValueError)
    True
    """

    def __init__(self, param: str, reason: str, *, flag: str | None = None) -> None:
        self.param = param
        self.reason = reason
        #: the CLI flag that set ``param``, when it is not ``--`` + the dashed parameter name
        self.flag = flag
        super().__init__(f"{param}: {reason}")

    def __reduce__(self):  # keep picklable across processes (keyword-only flag)
        return (_config_error, (self.param, self.reason, self.flag))


def _config_error(param: str, reason: str, flag: str | None) -> ConfigError:
    return ConfigError(param, reason, flag=flag)


def check_choice(param: str, value: object, choices: Iterable[object]) -> None:
    """:class:`ConfigError` unless ``value`` is one of ``choices``.

    >>> check_choice("sampling", "choice", ("keys", "stream"))
    Traceback (most recent call last):
    ...
    bioprune.errors.ConfigError: sampling: must be one of keys, stream, got 'choice'
    """
    choices = tuple(choices)
    if value not in choices:
        raise ConfigError(param, f"must be one of {', '.join(map(str, choices))}, got {value!r}")


class UnsafeFileError(InputError):
    """An input would execute code when loaded (a pickle with globals we do not allow)."""


class MissingIdsError(BioPruneError, KeyError):
    """Sequence ids that a corpus does not hold."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DiskFullError(BioPruneError, OSError):
    """Writing an output ran out of space (ENOSPC), quota (EDQUOT) or file-size limit (EFBIG)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that every ``finally``/cleanup runs (batch schedulers
    send SIGTERM before SIGKILL)."""


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def disk_full_error(
    exc: OSError, target: str | os.PathLike[str], partial: str | os.PathLike[str] | None = None
) -> DiskFullError:
    """A :class:`DiskFullError` for ``exc`` raised while writing ``target``.

    ``partial`` is the temporary file or directory that was being filled: its
    size is how much was written before space ran out, i.e. a lower bound of
    what the output needs.
    """
    target = Path(target)
    what = {
        errno.ENOSPC: "no space left on device",
        errno.EDQUOT: "disk quota exceeded",
        errno.EFBIG: "file too large (file-size limit)",
    }.get(exc.errno, exc.strerror or "write failed")
    written = _tree_size(Path(partial)) if partial is not None and Path(partial).exists() else 0
    try:
        free = shutil.disk_usage(target.parent if target.parent.exists() else ".").free
        free_text = f"{_human(free)} free there"
    except OSError:
        free_text = "free space unknown"
    needed = f"needs more than the {_human(written)} written so far" if written else "needs space"
    err = DiskFullError(
        f"{target}: {what} while writing it (the output {needed}; {free_text}); "
        "free some space or choose another --out"
    )
    err.errno = exc.errno
    err.filename = str(target)
    return err


@contextmanager
def reading(path: str | os.PathLike[str], what: str = "file") -> Iterator[None]:
    """Map the failures of file readers inside the block to :class:`InputError` naming ``path``.

    Only known failure classes of parsers and decoders are mapped (JSON, YAML,
    safetensors, Arrow/Parquet, gzip/zlib/bz2/lzma, pickle, Unicode, NumPy
    headers, EOF); a ``KeyError``/``IndexError`` from a bug is left alone.
    ``FileNotFoundError`` and ``PermissionError`` pass through (they already
    name the file). A disk-full ``OSError`` is not a reading failure and passes
    through too.
    """
    try:
        yield
    except BioPruneError:
        raise
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except Exception as exc:  # filtered by _is_read_failure, else re-raised
        if not _is_read_failure(exc):
            raise
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot read {what}: {reason}") from exc


def _is_read_failure(exc: Exception) -> bool:
    import bz2  # noqa: F401 - imported so that its error classes exist
    import gzip
    import json
    import lzma
    import pickle
    import zlib

    known: tuple[type[BaseException], ...] = (
        json.JSONDecodeError,
        UnicodeDecodeError,
        EOFError,
        gzip.BadGzipFile,
        zlib.error,
        lzma.LZMAError,
        pickle.UnpicklingError,
    )
    if isinstance(exc, known):
        return True
    if isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS:
        return False
    name = f"{type(exc).__module__}.{type(exc).__name__}"
    if name in {
        "safetensors_rust.SafetensorError",
        "safetensors.SafetensorError",
        "yaml.scanner.ScannerError",
        "yaml.parser.ParserError",
        "yaml.composer.ComposerError",
        "yaml.constructor.ConstructorError",
        "yaml.reader.ReaderError",
        "_pickle.UnpicklingError",
        "builtins.OSError",  # bz2 "Invalid data stream", pyarrow "Unexpected end of stream"
    }:
        return True
    arrow = sys.modules.get("pyarrow.lib")
    if arrow is not None and isinstance(exc, arrow.ArrowException):
        return True  # ArrowInvalid, ArrowIOError, ArrowTypeError, ... (one base class)
    if type(exc).__name__ == "SafetensorError":
        return True
    # numpy's header parser raises plain ValueError ("cannot reshape ...", "Failed to
    # interpret file ... as a pickle", "... allow_pickle=False"): mapped when it comes from
    # numpy's own format module.
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is not None and isinstance(exc, ValueError):
        mod = tb.tb_frame.f_globals.get("__name__", "")
        if mod.startswith(("numpy.lib", "numpy.lib._format_impl", "numpy.lib.format")):
            return True
    return False
