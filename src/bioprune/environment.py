"""What bioprune runs on: versions against the declared ranges, devices, extras.

:func:`environment_report` is what ``bioprune doctor`` prints. It reads the
installed package's own metadata (``importlib.metadata``), so the ranges it
checks are the ones pip installed against, and it never changes anything.
"""

from __future__ import annotations

import platform
import shutil
import sys
from importlib import metadata

__all__ = ["environment_report", "requirement_status"]

#: Programs bioprune calls when present: the cluster baseline's tools
#: (``select --method cluster``) and the multi-process launcher.
TOOLS = ("mmseqs", "cd-hit", "cd-hit-est", "torchrun")


def requirement_status(spec: str) -> dict:
    """One requirement string (``"numpy>=1.24"``, optionally with a marker) checked.

    Returns ``name``, ``spec`` (the version range, "" for any), ``extra`` (None
    for a core requirement), ``installed`` (version or None) and ``ok``
    (installed and in range; None when the marker excludes this interpreter).
    """
    from packaging.requirements import Requirement

    req = Requirement(spec)
    extra = None
    if req.marker is not None:
        text = str(req.marker)
        if "extra" in text:
            extra = text.split("extra")[1].split('"')[1]
    try:
        installed = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        installed = None
    applies = req.marker is None or req.marker.evaluate({"extra": extra or ""})
    if not applies:
        ok = None
    else:
        ok = installed is not None and req.specifier.contains(installed, prereleases=True)
    return {
        "name": req.name,
        "spec": str(req.specifier),
        "extra": extra,
        "installed": installed,
        "ok": ok,
    }


def _torch_report() -> dict:
    import torch

    info = {
        "version": torch.__version__,
        "cuda_build": torch.version.cuda,  # None for a CPU build
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "nccl": torch.distributed.is_available() and torch.distributed.is_nccl_available(),
        "threads": torch.get_num_threads(),
        # bf16 autocast on the CPU needs no hardware support (it may be slow)
        "cpu_bf16_autocast": True,
        "devices": [],
    }
    if info["cuda_available"]:
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            info["devices"].append(
                {
                    "index": i,
                    "name": props.name,
                    "capability": f"{props.major}.{props.minor}",
                    "memory_gib": round(props.total_memory / 2**30, 1),
                    "bf16": props.major >= 8,  # bf16 tensor cores: Ampere (8.0) and newer
                }
            )
        info["bf16"] = bool(torch.cuda.is_bf16_supported())
    return info


def _gathered_report() -> dict:
    """Whether scoring runs the gathered last layer on this transformers."""
    import torch
    from transformers import EsmConfig, EsmForMaskedLM

    from bioprune.influence.engine import _gathered_unsupported_reason

    report = {}
    for kind in ("rotary", "absolute"):
        config = EsmConfig(
            vocab_size=33,
            hidden_size=8,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=16,
            position_embedding_type=kind,
            max_position_embeddings=16,
            pad_token_id=1,
        )
        with torch.device("meta"):  # no memory, no initialisation
            model = EsmForMaskedLM(config)
        report[kind] = _gathered_unsupported_reason(model.esm)
    return {"on": all(r is None for r in report.values()), "why_not": report}


def _transformers_torch_mismatch(torch_info: dict | None) -> str | None:
    """transformers' own torch floor, which its metadata does not declare.

    pip picks the newest transformers whatever torch is installed, and recent
    releases switch torch off below their floor (5.20: torch 2.6); bioprune
    then fails only when it builds a model.
    """
    if torch_info is None:
        return None
    try:
        import transformers
        from transformers.utils import is_torch_available
    except ImportError:
        return None
    if is_torch_available():
        return None
    return (
        f"transformers {transformers.__version__} does not use torch {torch_info['version']} "
        "(it needs a newer torch): keep this torch with pip install 'transformers<5', "
        "or upgrade torch"
    )


def environment_report() -> dict:
    """Versions, ranges, devices and extras of this installation (a JSON-able dict).

    ``problems`` lists what stops bioprune from working as installed (a missing
    or out-of-range core dependency); optional parts missing are not problems.
    """
    from bioprune import __version__

    report: dict = {
        "bioprune": {"version": __version__, "location": __import__("bioprune").__path__[0]},
        "python": {
            "version": platform.python_version(),
            "executable": sys.executable,
            "platform": platform.platform(),
        },
        "requirements": [],
        "extras": {},
        "problems": [],
    }
    try:
        specs = metadata.requires("bioprune") or []
        report["bioprune"]["installed"] = metadata.version("bioprune")
    except metadata.PackageNotFoundError:
        specs = []
        report["bioprune"]["installed"] = None
        report["problems"].append(
            "bioprune is imported from a source tree without being installed: "
            "run `pip install -e .` (or install the wheel) so that its requirements are known"
        )
    for spec in specs:
        status = requirement_status(spec)
        if status["extra"] is None:
            report["requirements"].append(status)
            if status["ok"] is False:
                want = f"{status['name']}{status['spec']}"
                have = f"{status['installed']} is" if status["installed"] else "none is"
                report["problems"].append(
                    f"{want} is required but {have} installed: pip install '{want}'"
                )
        else:
            report["extras"].setdefault(status["extra"], []).append(status)
    try:
        report["torch"] = _torch_report()
    except ImportError as err:
        report["torch"] = None
        report["problems"].append(f"torch does not import: {err}")
    torch_mismatch = _transformers_torch_mismatch(report["torch"])
    if torch_mismatch:
        report["problems"].append(torch_mismatch)
    try:
        report["gathered_last_layer"] = None if torch_mismatch else _gathered_report()
    except ImportError as err:
        report["gathered_last_layer"] = None
        report["problems"].append(f"transformers does not import: {err}")
    report["tools"] = {name: shutil.which(name) for name in TOOLS}
    return report
