"""Data shipped inside the package: the demo RNA corpus and small downstream tasks.

Everything here is built by committed, seeded scripts from real Rfam / Pfam /
UniProt data carried by Debian packages (see ``docs/data.md``):

- ``scripts/build_demo_corpus.py`` -> :data:`DEMO_CORPUS`, :data:`DEMO_LABELS`,
  :data:`DEMO_PROVENANCE`;
- ``scripts/build_demo_tasks.py`` -> ``tasks/<name>/{train,valid,test}.csv`` and
  ``task.yaml`` (the BEACON layout) plus ``provenance.json``, one directory per
  name in :data:`TASK_NAMES`.

Examples
--------
>>> from bioprune.resources import DEMO_CORPUS, resource_path
>>> resource_path(DEMO_CORPUS).name
'rna_corpus.fasta.gz'
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

__all__ = [
    "DEMO_CORPUS",
    "DEMO_LABELS",
    "DEMO_PROVENANCE",
    "TASKS_DIR",
    "TASK_FILES",
    "TASK_NAMES",
    "TASK_PROVENANCE",
    "TASK_SPEC",
    "resource_path",
    "task_dir",
]

#: The demo RNA pretraining corpus (gzipped FASTA), relative to this package.
DEMO_CORPUS = "demo/rna_corpus.fasta.gz"
#: Tab-separated ``id family kind source detail`` for every corpus record.
DEMO_LABELS = "demo/rna_labels.tsv"
#: JSON provenance of the corpus (tool versions, models, seeds, counts).
DEMO_PROVENANCE = "demo/rna_corpus.json"

#: Directory holding one sub-directory per shipped downstream task.
TASKS_DIR = "tasks"
#: Shipped tasks: RNA family classification, RNA base pairs, protein domain family,
#: protein per-residue domain tags.
TASK_NAMES = ("rna_family", "rna_ss", "protein_domain", "protein_domain_tags")
#: Split files of a task directory (the BEACON layout).
TASK_FILES = ("train.csv", "valid.csv", "test.csv")
#: Task description file of a task directory (what ``bioprune evaluate`` reads).
TASK_SPEC = "task.yaml"
#: How a task was built (seeds, sources, class/tag meanings, split counts).
TASK_PROVENANCE = "provenance.json"


def resource_path(*parts: str) -> Path:
    """Filesystem path of a shipped resource.

    Parameters
    ----------
    *parts : path components below ``bioprune/resources``; a single
        ``"a/b.txt"`` string works too.

    Raises
    ------
    FileNotFoundError
        if the resource does not exist (e.g. a broken install).
    """
    root = files(__name__)
    # Installed from a directory or a wheel, package data is a real file; only a
    # zip import would give a non-filesystem Traversable.
    path = Path(str(root)).joinpath(*parts)
    if not path.exists():
        raise FileNotFoundError(f"bioprune resource {'/'.join(parts)!r} not found at {path}")
    return path


def task_dir(name: str) -> Path:
    """Directory of a shipped task (one of :data:`TASK_NAMES`)."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown shipped task {name!r}; choose one of {list(TASK_NAMES)}")
    return resource_path(TASKS_DIR, name)
