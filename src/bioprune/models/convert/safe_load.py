"""Reading checkpoint pickles without executing them.

``.pt``/``.pth`` checkpoints are pickles: unpickling one can run any code. They
are read with ``torch.load(weights_only=True)``, whose unpickler rebuilds only
tensors and plain containers, plus the few globals a format really needs:
the original RNA-FM and fair-esm files hold an ``argparse.Namespace`` (their
training arguments), so that class, and nothing else, is allowed. A file that
needs any other global is refused naming the globals found; the user may pass
``--trust-checkpoint`` (``trust=True``) to load it with the full unpickler.
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
from pathlib import Path

from bioprune.errors import InputError, UnsafeFileError, reading

__all__ = ["ALLOWED_GLOBALS", "load_checkpoint"]

log = logging.getLogger("bioprune.models")

#: The only non-tensor globals a checkpoint may hold (fully qualified name -> class).
ALLOWED_GLOBALS: dict[str, type] = {"argparse.Namespace": argparse.Namespace}

_GLOBAL_IN_MESSAGE = re.compile(r"GLOBAL ([\w.]+)")


def _unsafe_globals(path: Path, error: BaseException) -> list[str]:
    """Names of the globals ``path`` needs beyond :data:`ALLOWED_GLOBALS` (best effort)."""
    import torch

    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format: the error message names the first one
        found = _GLOBAL_IN_MESSAGE.findall(str(error))
    return sorted({g for g in found if g not in ALLOWED_GLOBALS})


def load_checkpoint(path: str | Path, *, trust: bool = False):
    """The object pickled in ``path``, loaded on the CPU without running code unless ``trust``.

    Raises
    ------
    UnsafeFileError
        the file needs globals other than :data:`ALLOWED_GLOBALS` (named) and
        ``trust`` is false.
    InputError
        the file is not a readable torch checkpoint.
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such checkpoint file")
    if trust:
        log.warning("%s: loading with the full unpickler (--trust-checkpoint)", path)
        with reading(path, "checkpoint"):
            return torch.load(str(path), map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(list(ALLOWED_GLOBALS.values())):
            return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        names = _unsafe_globals(path, exc)
        if not names:  # not a global we refused: a damaged or foreign file
            # torch wraps the unpickler's own reason between long explanations
            m = re.search(r"WeightsUnpickler error:\s*(.+?)\n", str(exc))
            reason = m.group(1).strip() if m else str(exc).strip().splitlines()[0]
            raise InputError(path, f"cannot read checkpoint (not a torch file?): {reason}") from exc
        shown = ", ".join(names)
        raise UnsafeFileError(
            path,
            f"the checkpoint holds Python objects that loading would have to execute ({shown}); "
            f"bioprune only loads tensors and {', '.join(ALLOWED_GLOBALS)} without running "
            "code. If you trust where this file comes from, add --trust-checkpoint",
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
        # (torch's legacy reader raises KeyError on a file without its magic number)
        if isinstance(exc, (FileNotFoundError, PermissionError)):
            raise
        if isinstance(exc, KeyError):
            reason = "unknown file format"
        else:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(path, f"cannot read checkpoint (not a torch file?): {reason}") from exc
