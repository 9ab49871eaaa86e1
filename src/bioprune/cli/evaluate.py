"""``bioprune evaluate``: downstream evaluation of a model on a task (method.md section 6)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from bioprune.cli.common import console
from bioprune.cli.options import option, with_options

if TYPE_CHECKING:
    from bioprune.progress import ProgressCallback, ProgressEvent


def _parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(
            f"--seeds {text!r}: expected comma-separated integers, e.g. 0,1,2"
        ) from None
    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds {text!r}: a seed is repeated")
    return seeds


def format_summary(m: dict) -> str:
    """``mean ± std (n=3)``; one finite value is ``mean (n=1)``: its spread is unknown."""
    n = m.get("n", len([v for v in m.get("per_seed") or [] if v is not None]))
    if m.get("mean") is None:
        return f"nan (n={n})"
    if m.get("std") is None or n < 2:
        return f"{m['mean']:.4f} (n={n})"
    return f"{m['mean']:.4f} ± {m['std']:.4f} (n={n})"


@dataclass(frozen=True)
class EvaluateOptions:
    """The options of ``bioprune evaluate`` (defaults ``None``: task.yaml's, else the
    kind's, see :func:`bioprune.evaluation.evaluate`)."""

    model: Path = field(metadata={"help": "Model directory (bioprune init/pretrain)."})
    task: Path = field(
        metadata={
            "help": "Task directory with train.csv, valid.csv, test.csv [+ task.yaml], a task "
            "YAML, or a benchmark task as distributed (BEACON, PEER/TAPE LMDB, PrismNet TSV; "
            "see docs/evaluation.md)."
        }
    )
    task_format: Optional[str] = option(
        None,
        flag="--format",
        help="The task's layout when it is ambiguous: beacon, peer, tape, prismnet or "
        "bioprune (default: recognised from its files).",
    )
    out: Path = field(kw_only=True, metadata={"help": "RESULTS.json to write."})
    seeds: str = option("0,1,2", help="Comma-separated training seeds.")
    raw: bool = option(
        False, help="Evaluate an untrained model of the same architecture (Raw baseline)."
    )
    protocol: Optional[str] = option(
        None,
        help="finetune-linear, finetune-mlp, frozen-linear or frozen-mlp "
        "(default: per task kind, see docs/evaluation.md).",
    )
    epochs: Optional[int] = option(None, help="Training epochs (overrides task.yaml).")
    lr: Optional[float] = option(None, help="AdamW learning rate (overrides task.yaml).")
    batch_size: Optional[int] = option(None, help="Examples per batch.")
    weight_decay: Optional[float] = option(None, help="AdamW weight decay (0.01).")
    max_length: Optional[int] = option(
        None, help="Crop sequences to this many residues (default: the model's)."
    )
    device: Optional[str] = option(None, help="torch device (default: cuda if present).")
    decode: bool = option(
        False,
        help="Base pairs: structure decoding before scoring (one partner per base, hairpin "
        "loops of at least 3 bases, Watson-Crick and G-U pairs only).",
    )
    threshold: Optional[float] = option(
        None,
        help="Base pairs: fixed decision probability (default: chosen on the valid split, "
        "recorded in OUT).",
    )
    overwrite: bool = option(False, help="Replace an existing OUT.")


@with_options
def evaluate(opts: EvaluateOptions) -> None:
    """Downstream evaluation (method.md section 6): train a task head per seed, report test.

    The head (and, with a finetune protocol, the encoder) is trained once per
    seed; the test metrics of the best valid epoch go to OUT per seed, as mean
    and std, with the protocol and the checksums of the model and the data.
    """
    from bioprune import artifacts
    from bioprune.evaluation.downstream import Task, check_results_path, evaluate

    seed_list = _parse_seeds(opts.seeds)
    artifacts.check_output_dir(opts.out, opts.overwrite, inputs=(opts.model, opts.task))
    check_results_path(opts.out)  # before training, not after
    with _stage_by_stage() as progress:
        result = evaluate(
            opts.model,
            Task.open(opts.task, format=opts.task_format),
            seeds=seed_list,
            **{name: getattr(opts, name) for name in _PASSED_ON},
            progress=progress,
        )
    result.save(opts.out)
    model = f"{'raw ' if opts.raw else ''}model {opts.model}"
    _print_summary(result.results, model, seed_list)
    console.print(f"wrote [bold]{opts.out}[/]")


#: The options handed to :func:`bioprune.evaluation.evaluate` as they are.
_PASSED_ON = ("raw", "protocol", "epochs", "lr", "batch_size", "weight_decay", "max_length",
              "device", "decode", "threshold")  # fmt: skip


@contextmanager
def _stage_by_stage() -> Iterator[ProgressCallback]:
    """The CLI's progress drawing (:func:`bioprune.cli.progress.rich_progress`), one block
    per stage, closed when the next stage opens: each stage's last line is written before
    the next stage's first, as ``evaluate`` always logged them."""
    from bioprune.cli.progress import rich_progress

    stack, current = ExitStack(), {}

    def draw(event: ProgressEvent) -> None:
        if event.stage != current.get("stage"):
            stack.close()
            current["stage"] = event.stage
            current["draw"] = stack.enter_context(rich_progress(console, title="evaluate"))
        current["draw"](event)

    with stack:
        yield draw


def _print_summary(results: dict, model: str, seeds: list[int]) -> None:
    """The task, protocol and each test split's metrics (headline first), as mean ± std."""
    t = results["task"]
    cropped = sum(s["cropped"] for s in t["splits"].values())
    console.print(
        f"[bold]{t['name']}[/] ({t['kind']}, "
        + (f"{t['benchmark']} layout, " if t.get("benchmark") else "")
        + f"{results['protocol']['name']}, {model}), seeds {seeds}"
        + (
            f", {cropped} sequences cropped to {results['protocol']['max_length']}"
            if cropped
            else ""
        )
    )
    headline = results["headline_metrics"]
    others = [n for n in results["metrics"] if n not in headline]
    tests = results["test_metrics"]
    width = max(len(split) for split in tests)
    for split in tests:  # BEACON's test/RFAM19/DIRECT, TAPE's cb513/casp12/ts115
        for name in headline + others:
            label = f"{split:<{width}}" if len(tests) > 1 else "test"
            console.print(f"  {label} {name:<24} {format_summary(tests[split][name])}")
    cuts = [r["threshold"]["probability"] for r in results["runs"] if r.get("threshold")]
    if cuts:
        shown = ", ".join("none" if c is None else f"{c:.4g}" for c in cuts)
        how = results["runs"][0]["threshold"]["chosen_on"]
        console.print(f"  base-pair threshold per seed ({how}): {shown}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
