"""``bioprune convert``: real checkpoints in their original formats -> bioprune model directories.

One module per source format, behind the :data:`FORMATS` registry. A format
object has ``name``, ``description``, ``load(path, trust) -> Source``,
``matches(source) -> bool`` (detection from the contents) and
``convert(source) -> Converted``. :func:`convert_checkpoint` detects or takes
the format, converts, checks that the result loads exactly (no missing,
unexpected or mis-shaped tensor) and writes a normal model directory
(``config.json``, ``model.safetensors``, ``vocab.txt``,
``bioprune_alphabet.json``) plus ``conversion.json``: the source's sha256 and
format and every mapping decision.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

from bioprune import artifacts
from bioprune.errors import InputError, reading
from bioprune.models.convert.base import Converted, Source, build_model
from bioprune.models.convert.esm_family import FairEsm, RnaFm
from bioprune.models.convert.esmc import Esmc
from bioprune.models.convert.hf_esm import HfEsm
from bioprune.models.convert.multimolecule import MultiMolecule
from bioprune.models.convert.safe_load import load_checkpoint

__all__ = ["CONVERSION_FILE", "FORMATS", "convert_checkpoint", "detect_format", "read_source"]

log = logging.getLogger("bioprune.models")

CONVERSION_FILE = "conversion.json"

FORMATS: dict[str, object] = {f.name: f for f in (RnaFm, MultiMolecule, FairEsm, HfEsm, Esmc)}


def register_format(fmt) -> None:
    """Add a source format (an object with name, description, load, matches, convert)."""
    FORMATS[fmt.name] = fmt


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def read_source(path: str | Path, *, trust: bool = False) -> Source:
    """Read a source once, format unknown: a directory, a safetensors file or a pickle."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "no such file or directory")
    if path.is_dir():
        return Source(path, "directory", None, trust)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        with reading(path, "safetensors weights"):
            return Source(path, "safetensors", load_file(str(path)), trust)
    return Source(path, "pickle", load_checkpoint(path, trust=trust), trust)


def detect_format(source: Source) -> str:
    """The one format whose ``matches`` accepts ``source``; else an error saying what was seen."""
    found = [name for name, fmt in FORMATS.items() if fmt.matches(source)]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(source.path, f"could be any of {found}; say which with --from")
    seen = source.kind
    if source.kind == "pickle" and isinstance(source.obj, dict):
        seen += f" holding keys {sorted(map(str, source.obj))[:6]}"
    elif source.kind == "safetensors":
        seen += f" with tensors such as {sorted(source.obj)[:3]}"
    raise InputError(
        source.path,
        f"cannot tell the checkpoint format ({seen}); pass --from one of {sorted(FORMATS)}",
    )


def _source_files(source: Source) -> list[Path]:
    if source.kind != "directory":
        files = [source.path]
        reg = source.path.with_name(source.path.stem + "-contact-regression.pt")
        if reg.is_file():
            files.append(reg)
        return files
    return sorted(p for p in source.path.iterdir() if p.is_file())


def convert_checkpoint(
    source_path: str | Path,
    out: str | Path,
    *,
    source_format: str | None = None,
    trust: bool = False,
    overwrite: bool = False,
) -> dict:
    """Convert ``source_path`` into the model directory ``out``.

    Returns the dict written to ``conversion.json``.
    """
    source_path = Path(source_path)
    if source_format is not None and source_format not in FORMATS:
        raise ValueError(f"--from {source_format!r}: choose one of {sorted(FORMATS)}")
    artifacts.check_not_input(out, [source_path])
    artifacts.check_output_dir(out, overwrite)
    if source_format is None:
        source = read_source(source_path, trust=trust)
        source_format = detect_format(source)
        detected = True
    else:
        source = FORMATS[source_format].load(source_path, trust)
        detected = False
    converted: Converted = FORMATS[source_format].convert(source)
    dtypes = sorted({str(t.dtype).replace("torch.", "") for t in converted.state_dict.values()})
    if dtypes != ["float32"]:
        converted.notes.append(
            f"source tensors are {', '.join(dtypes)}: written as float32 (an exact upcast "
            "from bfloat16/float16; float64 would be rounded)"
        )
    model = build_model(converted, source_path)
    files = _source_files(source)
    info = {
        "format": converted.source_format,
        "detected": detected,
        "source": str(source_path.resolve()),
        "source_sha256": _sha256(source_path) if source_path.is_file() else None,
        "source_files": [
            {"path": str(p.resolve()), "sha256": _sha256(p), "size": p.stat().st_size}
            for p in files
        ],
        "trusted_pickle": bool(trust),
        "architecture": type(model).__name__,
        "alphabet": converted.alphabet.name,
        "source_info": converted.source_info,
        "exact": not converted.inexact,
        "inexact": converted.inexact,
        "notes": converted.notes,
        "mapping": dict(sorted(converted.mapping.items())),
        "dropped": dict(sorted(converted.dropped.items())),
        **artifacts.provenance(command="convert"),
    }
    from bioprune.models.presets import count_parameters, save_alphabet

    info["parameters"] = count_parameters(model)
    with artifacts.atomic_dir(out, overwrite=overwrite) as tmp:
        model.save_pretrained(tmp)
        save_alphabet(tmp, converted.alphabet)
        artifacts.write_json(tmp / CONVERSION_FILE, info)
    log.debug("converted %s (%s) to %s", source_path, converted.source_format, out)
    return info
