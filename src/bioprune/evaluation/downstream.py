"""Downstream evaluation as a library: :class:`Task`, :func:`evaluate`, :class:`EvaluationResult`.

``evaluate`` trains a task head on a model once per seed, picks the best epoch
on the valid split and reports the test splits there (paper appendix B;
method.md section 6; the training itself is :mod:`bioprune.evaluation.runner`).
It takes a model directory or a model object in memory and returns the result
in memory; nothing is written unless :meth:`EvaluationResult.save` is called,
which writes the RESULTS.json that ``bioprune evaluate --out`` writes. Progress
goes to an optional callback (:class:`bioprune.progress.ProgressEvent`), never
to the terminal.

>>> from bioprune.evaluation import Task
>>> Task.open("no/such/task")
Traceback (most recent call last):
...
FileNotFoundError: task no/such/task does not exist (give a task directory or task YAML)
"""

from __future__ import annotations

import copy
import logging
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bioprune import artifacts
from bioprune.errors import ConfigError
from bioprune.evaluation import metrics as M
from bioprune.evaluation.kinds import get_kind
from bioprune.evaluation.protocols import resolve_protocol, select_metrics
from bioprune.evaluation.runner import MIN_LOOP, Decoding, Runner, finite
from bioprune.evaluation.tasks import KIND_METRICS, TaskData, TaskSpec, load_task, load_task_spec
from bioprune.progress import ProgressCallback, ProgressEvent

__all__ = ["EvaluationResult", "Task", "check_results_path", "evaluate", "evaluate_model"]

logger = logging.getLogger("bioprune.evaluation")


@dataclass(frozen=True)
class Task:
    """A downstream task on disk: where its splits are and what ``task.yaml`` says.

    Open one with :meth:`open`; the examples are read by :func:`evaluate`, for
    the model's alphabet and length limit.
    """

    path: Path
    spec: TaskSpec

    @classmethod
    def open(cls, path: str | Path, *, format: str | None = None) -> Task:
        """A task directory (train/valid/test.csv [+ task.yaml]), a task YAML, or a
        benchmark task as distributed (BEACON, PEER/TAPE LMDB, PrismNet TSV);
        ``format`` names the layout when detection is ambiguous."""
        return cls(Path(path), load_task_spec(path, format))

    @property
    def name(self) -> str:
        return self.spec.name

    def load(self, alphabet, max_length: int) -> TaskData:
        """Every split's validated examples for a model's ``alphabet``, cropped to
        ``max_length`` residues."""
        return load_task(self.spec, alphabet, max_length)


@dataclass(frozen=True)
class EvaluationResult:
    """What :func:`evaluate` returns: the RESULTS.json contents, in memory.

    ``metrics`` maps each metric of the main test split to its per-seed values,
    count, mean and std; ``test_metrics`` does so per test split; ``runs`` holds
    each seed's best epoch, valid and test metrics and training history.
    """

    results: dict[str, Any]

    @property
    def metrics(self) -> dict[str, dict[str, Any]]:
        return self.results["metrics"]

    @property
    def test_metrics(self) -> dict[str, dict[str, dict[str, Any]]]:
        return self.results["test_metrics"]

    @property
    def runs(self) -> list[dict[str, Any]]:
        return self.results["runs"]

    def save(self, path: str | Path) -> Path:
        """Write the RESULTS.json ``bioprune evaluate`` writes, atomically; returns ``path``."""
        artifacts.write_json(path, self.results)
        return Path(path)


def check_results_path(out: str | Path) -> Path:
    """Refuse, before any training, a RESULTS.json path that cannot be written.

    The file's directory may not exist yet (it is created on writing), but its
    nearest existing ancestor must be a directory where a file can be created:
    probed by creating and removing a hidden empty file, which also catches a
    read-only file system and, unlike a permission check, works for root.
    """
    from bioprune.errors import InputError

    out = Path(out)
    if out.is_dir():
        raise InputError(out, "is a directory; --out names the RESULTS.json file to write")
    ancestor = out.absolute().parent
    while not ancestor.exists() and not ancestor.is_symlink() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise InputError(out, f"cannot be written: {ancestor} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(dir=ancestor, prefix=".bioprune-write-test-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = (exc.strerror or str(exc)).lower()
        raise InputError(out, f"cannot be written: {ancestor} is not writable ({reason})") from None
    return out


@dataclass(frozen=True)
class _Model:
    """The model under evaluation and what RESULTS.json records about it."""

    module: Any  # a masked LM with ``.esm`` (the encoder) and ``.config``
    alphabet: Any
    path: Path | None  # None: a model object given in memory
    owned: bool  # loaded here, so it may be moved and used without a copy


def _open_model(model: Any, alphabet: Any) -> _Model:
    """A model directory (strict loading) or a masked LM object and its alphabet."""
    if isinstance(model, (str, os.PathLike)):
        from bioprune.models.loading import load_masked_lm

        module, found = load_masked_lm(model)
        return _Model(module, found, Path(model), owned=True)
    if not (hasattr(model, "esm") and hasattr(model, "config")):
        raise ConfigError(
            "model", "expected a model directory or a masked LM with .esm and .config"
        )
    return _Model(model, _model_alphabet(model.config, alphabet), None, owned=False)


def _model_alphabet(config, alphabet: Any):
    """The alphabet given (a name or an Alphabet), else the one whose size fits the config."""
    from bioprune.data.alphabet import ALPHABETS, Alphabet, get_alphabet

    if isinstance(alphabet, Alphabet):
        return alphabet
    if alphabet is not None:
        return get_alphabet(str(alphabet))
    size = getattr(config, "alphabet_size", None) or config.vocab_size
    fits = [a for a in ALPHABETS.values() if len(a) == size]
    if len(fits) != 1:
        raise ConfigError("alphabet", f"cannot tell the model's alphabet from its {size} tokens; "
                          f"give one of {list(ALPHABETS)}")  # fmt: skip
    return fits[0]


def _check_arguments(seeds: Sequence[int], threshold: float | None) -> None:
    if not seeds:
        raise ConfigError("seeds", "give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ConfigError("seeds", f"a seed is repeated: {list(seeds)}")
    if threshold is not None and not 0.0 < threshold < 1.0:
        raise ConfigError("threshold", f"must be a probability in (0, 1), got {threshold}")


def _length_limit(spec: TaskSpec, config, max_length: int | None) -> tuple[int, int]:
    """``(crop length, the model's own limit)``: the smaller of the model's limit and
    ``max_length`` (argument, else task.yaml)."""
    from bioprune.models.presets import max_residues

    model_limit = max_residues(config)
    requested = max_length if max_length is not None else spec.options.get("max_length")
    limit = model_limit if requested is None else min(int(requested), model_limit)
    if limit < 1:
        raise ConfigError("max_length", f"must be at least 1, got {requested}")
    return limit, model_limit


def _choose_metrics(spec: TaskSpec, data: TaskData) -> tuple[list[str], str, bool]:
    """``(headline metrics, primary metric, larger is better)`` of the task."""
    bench_headline, primary, larger = select_metrics(data.kind, data.benchmark)
    own = [m for m in KIND_METRICS[data.kind] if not m.endswith("_beacon")]
    headline = spec.metrics or list(bench_headline or own)
    unknown = [m for m in headline if m not in KIND_METRICS[data.kind]]
    if unknown:
        raise ValueError(
            f"{spec.yaml_path}: metric(s) {unknown} are not computed for a {data.kind} task; "
            f"choose among {list(KIND_METRICS[data.kind])}"
        )
    return headline, primary, larger


def evaluate(
    model: Any,
    task: Task | str | Path,
    *,
    protocol: str | None = None,
    seeds: Sequence[int] = (0,),
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int | None = None,
    weight_decay: float | None = None,
    max_length: int | None = None,
    device: str | None = None,
    raw: bool = False,
    decode: bool = False,
    threshold: float | None = None,
    alphabet: Any = None,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Evaluate a model on a downstream task; nothing is written or printed.

    Parameters
    ----------
    model : a bioprune model directory, or a masked LM object (``.esm`` encoder and
        ``.config``, e.g. from :func:`bioprune.models.loading.load_masked_lm`); an
        object is never modified (its encoder is copied).
    task : a :class:`Task`, or a path :meth:`Task.open` accepts.
    protocol, epochs, lr, batch_size, weight_decay, max_length : override
        ``task.yaml`` and the per-kind defaults (``None``: keep them).
    seeds : one training run per seed; metrics are reported per seed, mean and std.
    device : torch device; default CUDA when available, else CPU.
    raw : evaluate an untrained model of the same architecture (re-initialised
        from the config with each seed): the paper's Raw baseline.
    decode : base-pair tasks: structure decoding of the predicted pairs (at most one
        partner per base, at least :data:`MIN_LOOP` unpaired bases in a hairpin,
        Watson-Crick and G-U wobble pairs only) before scoring.
    threshold : base-pair tasks: a fixed decision probability; default (``None``):
        chosen on the valid split after every epoch, as the one that maximises the
        primary F1 there (recorded per seed in ``runs[].threshold``).
    alphabet : a model object's alphabet (name or Alphabet); default: the one whose
        size matches the model's vocabulary.
    progress : called with a :class:`~bioprune.progress.ProgressEvent` per batch.

    Every test split (BEACON's test/RFAM19/DIRECT, TAPE's cb513/casp12/ts115) is
    scored at the best valid epoch and reported separately under ``test_metrics``;
    ``metrics`` holds the first (main) test split's.
    """
    _check_arguments(seeds, threshold)
    task = task if isinstance(task, Task) else Task.open(task)
    target = _device(device)
    m = _open_model(model, alphabet)
    _check_alphabet(task.spec, m)
    limit, model_limit = _length_limit(task.spec, m.module.config, max_length)
    data = task.load(m.alphabet, limit)
    headline, primary, larger = _choose_metrics(task.spec, data)
    overrides = {"protocol": protocol, "epochs": epochs, "lr": lr, "batch_size": batch_size,
                 "weight_decay": weight_decay}  # fmt: skip
    proto, sources = resolve_protocol(data.kind, m.alphabet.name, task.spec.options, overrides)
    runner = Runner(data, proto, m.alphabet, m.module.config.hidden_size, target,
                    _decoding(task.spec, decode), progress)  # fmt: skip
    runner.primary, runner.larger, runner.fixed_threshold = primary, larger, threshold
    # The benchmarks train their pair heads with plain binary cross-entropy.
    setting = task.spec.options.get("pos_weight", 1.0 if data.benchmark else "balanced")
    runner.pos_weight = get_kind(data.kind).pos_weight(data, setting)
    per_seed = _run_seeds(runner, m, seeds, raw)
    return EvaluationResult(
        {
            "task": _task_record(task, data),
            "model": _model_record(m, raw, model_limit),
            "protocol": _protocol_record(runner, limit, threshold, sources),
            "primary_metric": {"name": primary, "larger_is_better": larger, "split": "valid"},
            "headline_metrics": headline,
            **_summaries(data, per_seed, seeds),
            **artifacts.provenance(command="evaluate"),
        }
    )


def _device(device: str | None):
    """The torch device (default CUDA when available, else CPU)."""
    import torch

    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if target.type == "cuda":  # deterministic CUDA matmuls need this before the first call
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return target


def _check_alphabet(spec: TaskSpec, m: _Model) -> None:
    if spec.alphabet is not None and spec.alphabet != m.alphabet.name:
        where = m.path if m.path is not None else "(in memory)"
        raise ValueError(
            f"task {spec.name} ({spec.yaml_path}) holds {spec.alphabet} sequences but model "
            f"{where} uses the {m.alphabet.name} alphabet"
        )


def _decoding(spec: TaskSpec, decode: bool) -> Decoding:
    return Decoding(
        one_partner=decode or bool(spec.options.get("one_partner_per_base", False)),
        min_loop=MIN_LOOP if decode else 0,
        canonical=decode,
    )


def _protocol_record(
    runner: Runner, limit: int, threshold: float | None, sources: dict[str, str]
) -> dict[str, Any]:
    kind = runner.task_kind
    return {
        **runner.proto.to_dict(),
        "max_length": limit,
        "one_partner_per_base": runner.decoding.one_partner,
        "decoding": kind.decoding_record(runner.decoding),
        "threshold": kind.threshold_setting(threshold),
        "pos_weight": runner.pos_weight,
        "sources": sources,
        "device": str(runner.device),
    }


def _run_seeds(runner: Runner, m: _Model, seeds: Sequence[int], raw: bool) -> list[dict]:
    """One training run per seed, with deterministic algorithms; torch's global random
    streams (seeded per run) and the deterministic setting are the caller's again after."""
    import torch

    cuda = [runner.device.index or 0] if runner.device.type == "cuda" else []
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with torch.random.fork_rng(devices=cuda):
            return _train_seeds(runner, m, seeds, raw)
    finally:
        torch.use_deterministic_algorithms(deterministic)


def _train_seeds(runner: Runner, m: _Model, seeds: Sequence[int], raw: bool) -> list[dict]:
    frozen = runner.proto.frozen
    shared_cache = None
    if frozen and not raw:
        encoder = m.module.esm if m.owned else copy.deepcopy(m.module.esm)
        shared_cache = runner.embed_all(encoder.to(runner.device), "embedding (frozen encoder)")
    per_seed = []
    for seed in seeds:
        if raw:
            encoder = _raw_encoder(m.module.config, seed)
        else:
            encoder = copy.deepcopy(m.module.esm) if not frozen else None
        per_seed.append(runner.run_seed(seed, encoder, shared_cache))
        logger.debug("seed %d: best valid epoch %d", seed, per_seed[-1]["best_epoch"])
    return per_seed


def _summaries(data: TaskData, per_seed: list[dict], seeds: Sequence[int]) -> dict[str, Any]:
    names = list(per_seed[0]["test"])
    summary = {name: _summarise([r["test"][name] for r in per_seed]) for name in names}
    per_test = {
        split: {name: _summarise([r["tests"][split][name] for r in per_seed]) for name in names}
        for split in data.spec.test_splits
    }
    return {
        "metric_definitions": {name: M.definition(data.kind, name) for name in names},
        "seeds": list(seeds),
        "metrics": summary,
        "test_metrics": per_test,
        "runs": per_seed,
    }


def _task_record(task: Task, data: TaskData) -> dict[str, Any]:
    spec = task.spec
    return {
        "name": spec.name,
        "kind": data.kind,
        "benchmark": data.benchmark,
        "format": spec.format,
        "test_splits": list(spec.test_splits),
        "made_splits": spec.made_splits,
        "path": str(task.path.resolve()),
        "task_yaml": str(spec.yaml_path) if spec.yaml_path else None,
        "classes": data.classes,
        "splits": {
            s: {
                "path": str(spec.files[s]),
                "checksum": artifacts.file_checksum(spec.files[s]),
                "examples": len(data.splits[s]),
                "cropped": data.splits[s].cropped,
            }
            for s in spec.split_names
        },
    }


def _model_record(m: _Model, raw: bool, model_limit: int) -> dict[str, Any]:
    from bioprune.models.presets import count_parameters

    return {
        "path": str(m.path.resolve()) if m.path is not None else None,
        "checksum": artifacts.model_checksum(m.path) if m.path is not None else None,
        "alphabet": m.alphabet.name,
        "raw": raw,
        "parameters": count_parameters(m.module.esm),
        "max_residues": model_limit,
    }


def _log_progress(event: ProgressEvent) -> None:
    logger.debug("%s: %d/%s %s", event.stage, event.done, event.total, event.message)


def evaluate_model(
    model_dir: str | Path,
    task: str | Path,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    show_progress: bool = True,
    fmt: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """:func:`evaluate` on paths, returning the RESULTS.json dictionary (three seeds by
    default, as the CLI). ``show_progress`` logs progress at DEBUG level on the
    ``bioprune.evaluation`` logger; ``fmt`` is :meth:`Task.open`'s ``format``;
    ``options`` are :func:`evaluate`'s keywords (an unknown one is a ``TypeError``)."""
    progress = _log_progress if show_progress else None
    result = evaluate(
        model_dir, Task.open(task, format=fmt), seeds=seeds, progress=progress, **options
    )
    return result.results


def _raw_encoder(config, seed: int):
    """An untrained encoder of the model's architecture, initialised with ``seed``."""
    import torch
    from transformers import AutoModelForMaskedLM, EsmForMaskedLM

    torch.manual_seed(seed)
    if config.model_type != "esm":  # ESM-C (registered by the model loader)
        return AutoModelForMaskedLM.from_config(copy.deepcopy(config)).esm
    return EsmForMaskedLM(copy.deepcopy(config)).esm


def _summarise(values: list[float]) -> dict[str, Any]:
    """Per-seed values, their count ``n``, mean and sample std (ddof 1) over the finite
    ones; the std of fewer than two values is ``None`` (undefined, not 0)."""
    kept = [v for v in values if v is not None and math.isfinite(v)]
    mean = float(np.mean(kept)) if kept else None
    std = float(np.std(kept, ddof=1)) if len(kept) > 1 else None
    return {"per_seed": [finite(v) for v in values], "n": len(kept), "mean": mean, "std": std}
