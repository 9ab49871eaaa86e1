"""Run a study: validate its config, write it into the study directory, hand it to Snakemake.

Snakemake runs as ``python -m snakemake`` in a subprocess of the same Python (its
command line is its stable interface, and a crash of a job never takes down the
caller). It works in the study directory, so every relative path of
:mod:`bioprune.workflow.plan` lands there, and its own bookkeeping (``.snakemake/``)
is what lets a second run skip every job whose outputs are present and whose inputs,
options and code did not change.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

from bioprune import artifacts
from bioprune.errors import BioPruneError
from bioprune.workflow.config import StudyConfig, load_study_config
from bioprune.workflow.plan import build_plan

__all__ = ["MissingDependencyError", "StudyRun", "run_study", "snakefile_path"]

log = logging.getLogger("bioprune.workflow")

#: The pip extra that installs Snakemake and its SLURM executor plugin.
EXTRA = "cluster"
EXECUTORS = ("local", "slurm")


class MissingDependencyError(BioPruneError):
    """An optional dependency (Snakemake, a clustering tool) is not installed."""


@dataclass
class StudyRun:
    returncode: int
    jobs: dict[str, int]  # rule -> jobs run (or, with dry_run, to run)
    output: str  # Snakemake's output (empty when not captured)
    command: list[str]


def snakefile_path() -> Path:
    """The Snakefile shipped in the package."""
    return Path(str(files("bioprune.workflow").joinpath("Snakefile")))


def _check_tools(cfg: StudyConfig) -> None:
    for i, m in enumerate(cfg.methods):
        if m.method != "cluster":
            continue
        tool = "mmseqs" if m.cluster_tool == "mmseqs" else "cd-hit"
        if shutil.which(tool) is None:
            raise MissingDependencyError(
                f"methods[{i}] (cluster) needs {tool} on the PATH (apt-get install "
                f"{'mmseqs2' if tool == 'mmseqs' else 'cd-hit'}), or remove that method"
            )


def parse_job_stats(text: str) -> dict[str, int]:
    """Snakemake's ``Job stats`` table (``job  count`` rows) -> ``{rule: count}``."""
    jobs: dict[str, int] = {}
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == "Job stats:":
            for row in lines[i + 3 :]:
                parts = row.split()
                if len(parts) != 2 or not parts[1].isdigit():
                    break
                if parts[0] != "total":
                    jobs[parts[0]] = int(parts[1])
            break
    return jobs


def parse_job_list(text: str) -> list[tuple[str, str]]:
    """``(rule, outputs)`` of every job in Snakemake's (dry-run) log, in its order."""
    jobs, rule = [], None
    for line in text.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line.strip())
        if m:
            rule = m.group(1)
        elif rule and line.strip().startswith("output:"):
            jobs.append((rule, line.strip().removeprefix("output:").strip()))
            rule = None
    return jobs


def _write_if_changed(path: Path, text: str) -> None:
    # an unchanged config keeps its mtime: nothing downstream looks outdated
    if not path.is_file() or path.read_text() != text:
        artifacts.atomic_write_text(path, text)


def prepare_study_dir(config: str | Path, out: str | Path) -> tuple[StudyConfig, Path]:
    """Validate ``config`` and write it (resolved, as JSON, plus the YAML as given) into
    ``out/study/``. Returns the config and the JSON's path."""
    cfg = load_study_config(config)
    _check_tools(cfg)
    build_plan(cfg)  # names must resolve before anything runs
    out = Path(out)
    artifacts.check_not_input(
        out, [cfg.corpus.path, cfg.labels, cfg.reference.model, *[t.path for t in cfg.tasks]]
    )
    study = out / "study"
    study.mkdir(parents=True, exist_ok=True)
    resolved = study / "config.json"
    _write_if_changed(resolved, json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
    _write_if_changed(study / "config.yaml", Path(config).read_text())
    return cfg, resolved


def run_study(
    config: str | Path,
    out: str | Path,
    *,
    cores: int | None = None,
    jobs: int | None = None,
    dry_run: bool = False,
    executor: str = "local",
    profile: str | Path | None = None,
    snakemake_args: list[str] | None = None,
    capture: bool = True,
    unlock: bool = False,
) -> StudyRun:
    """Run (or with ``dry_run`` list) the jobs of the study ``config`` in ``out``.

    ``cores``: local CPU cores used at once (default: all); every job runs one thread
    unless the config's ``resources`` say otherwise, so ``cores`` jobs run side by side.
    ``jobs``: at most this many jobs at once (local: in addition to ``cores``; slurm:
    jobs queued at once, default 100). ``executor="slurm"`` submits every job with
    Snakemake's SLURM executor plugin, with the config's per-stage resources.
    ``profile``: a Snakemake profile (folder with config.yaml) for site settings.
    ``unlock``: only remove the lock a killed run left behind (Snakemake ``--unlock``).
    ``capture``: return Snakemake's output in :attr:`StudyRun.output` (default); with
    ``False`` it goes to this process's stdout/stderr (the CLI's live progress).
    """
    if executor not in EXECUTORS:
        raise ValueError(f"--executor {executor!r}: choose one of {', '.join(EXECUTORS)}")
    if importlib.util.find_spec("snakemake") is None:
        raise MissingDependencyError(
            f"bioprune study needs Snakemake: pip install 'bioprune[{EXTRA}]' "
            "(snakemake and its SLURM executor plugin)"
        )
    if executor == "slurm" and importlib.util.find_spec("snakemake_executor_plugin_slurm") is None:
        raise MissingDependencyError(
            f"--executor slurm needs snakemake-executor-plugin-slurm: pip install "
            f"'bioprune[{EXTRA}]'"
        )
    _, resolved = prepare_study_dir(config, out)
    out = Path(out).resolve()
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile_path()),
        "--configfile",
        str(resolved),
        "--directory",
        str(out),
        "--rerun-incomplete",
        "--show-failed-logs",
        "--nolock" if dry_run else "--keep-going",
    ]
    if executor == "local":
        cmd += ["--cores", str(cores or os.cpu_count() or 1)]
        if jobs:
            cmd += ["--resources", f"study_jobs={jobs}", "--default-resources", "study_jobs=1"]
    else:
        cmd += ["--executor", "slurm", "--jobs", str(jobs or 100)]
    if profile is not None:
        cmd += ["--profile", str(profile)]
    if dry_run:
        cmd += ["--dry-run"]
    if unlock:  # a run killed with SIGKILL leaves Snakemake's lock behind
        cmd += ["--unlock"]
    cmd += list(snakemake_args or [])
    log.info("running %s", " ".join(cmd))
    # Snakemake and every job run in this Python with this environment (PYTHONPATH included)
    proc = subprocess.run(cmd, text=True, capture_output=capture, check=False)
    output = (proc.stdout or "") + (proc.stderr or "") if capture else ""
    return StudyRun(proc.returncode, parse_job_stats(output), output, cmd)


def nothing_to_do(output: str) -> bool:
    return bool(re.search(r"Nothing to be done", output))
