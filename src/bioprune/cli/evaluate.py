"""``bioprune evaluate``: downstream evaluation of a model on a task (method.md section 6)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bioprune.cli.common import console

if TYPE_CHECKING:
    from bioprune.progress import ProgressEvent


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


def evaluate(
    model: Path = typer.Option(..., "--model", help="Model directory (bioprune init/pretrain)."),
    task: Path = typer.Option(
        ...,
        "--task",
        help="Task directory with train.csv, valid.csv, test.csv [+ task.yaml], a task YAML, "
        "or a benchmark task as distributed (BEACON, PEER/TAPE LMDB, PrismNet TSV; "
        "see docs/evaluation.md).",
    ),
    task_format: str = typer.Option(
        None,
        "--format",
        help="The task's layout when it is ambiguous: beacon, peer, tape, prismnet or "
        "bioprune (default: recognised from its files).",
    ),
    out: Path = typer.Option(..., "--out", help="RESULTS.json to write."),
    seeds: str = typer.Option("0,1,2", "--seeds", help="Comma-separated training seeds."),
    raw: bool = typer.Option(
        False, "--raw", help="Evaluate an untrained model of the same architecture (Raw baseline)."
    ),
    protocol: str = typer.Option(
        None,
        "--protocol",
        help="finetune-linear, finetune-mlp, frozen-linear or frozen-mlp "
        "(default: per task kind, see docs/evaluation.md).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Training epochs (overrides task.yaml)."),
    lr: float = typer.Option(None, "--lr", help="AdamW learning rate (overrides task.yaml)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Examples per batch."),
    weight_decay: float = typer.Option(None, "--weight-decay", help="AdamW weight decay (0.01)."),
    max_length: int = typer.Option(
        None, "--max-length", help="Crop sequences to this many residues (default: the model's)."
    ),
    device: str = typer.Option(None, "--device", help="torch device (default: cuda if present)."),
    decode: bool = typer.Option(
        False,
        "--decode",
        help="Base pairs: structure decoding before scoring (one partner per base, hairpin "
        "loops of at least 3 bases, Watson-Crick and G-U pairs only).",
    ),
    threshold: float = typer.Option(
        None,
        "--threshold",
        help="Base pairs: fixed decision probability (default: chosen on the valid split, "
        "recorded in OUT).",
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing OUT."),
) -> None:
    """Downstream evaluation (method.md section 6): train a task head per seed, report test.

    The head (and, with a finetune protocol, the encoder) is trained once per
    seed; the test metrics of the best valid epoch go to OUT per seed, as mean
    and std, with the protocol and the checksums of the model and the data.
    """
    from bioprune import artifacts
    from bioprune.evaluation.downstream import Task, check_results_path, evaluate

    seed_list = _parse_seeds(seeds)
    artifacts.check_output_dir(out, overwrite, inputs=(model, task))
    check_results_path(out)  # before training, not after
    with _StageProgress() as progress:
        result = evaluate(
            model,
            Task.open(task, format=task_format),
            seeds=seed_list,
            raw=raw,
            protocol=protocol,
            epochs=epochs,
            lr=lr,
            batch_size=batch_size,
            weight_decay=weight_decay,
            max_length=max_length,
            device=device,
            decode=decode,
            threshold=threshold,
            progress=progress,
        )
    result.save(out)
    _print_summary(result.results, f"{'raw ' if raw else ''}model {model}", seed_list)
    console.print(f"wrote [bold]{out}[/]")


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


class _StageProgress:
    """Draws the library's progress events as before: per stage (an embedding pass, a
    seed's training) a rich bar on a terminal, else plain ``evaluate ...`` lines."""

    def __init__(self) -> None:
        self._bars: Any = None
        self._stage: str | None = None
        self._task: Any = None

    def __enter__(self) -> _StageProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close(*exc)

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != self._stage:
            self._close(None, None, None)
            self._bars = _open_bars()
            self._bars.__enter__()
            self._task = self._bars.add_task(event.stage, total=event.total, status="")
            self._stage = event.stage
        self._bars.update(self._task, completed=event.done, status=event.message)

    def _close(self, *exc: Any) -> None:
        if self._bars is not None:
            self._bars.__exit__(*exc)
        self._bars, self._stage = None, None


def _open_bars():
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from bioprune.progress import LineTasks

    stderr = Console(stderr=True)
    if not stderr.is_terminal:  # a log file: plain lines
        return LineTasks(
            lambda line: stderr.print(line, markup=False, highlight=False, soft_wrap=True),
            prefix="evaluate ",
        )
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        console=Console(stderr=True),
        transient=False,
    )


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
