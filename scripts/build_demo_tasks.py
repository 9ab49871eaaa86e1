"""Build the small downstream tasks shipped with bioprune (BEACON layout).

Requires Debian's ``infernal``, ``hmmer``, ``hmmer-examples`` and
``mmseqs2-examples`` packages::

    apt-get update && apt-get install -y infernal hmmer hmmer-examples mmseqs2-examples

and the demo corpus built first (``scripts/build_demo_corpus.py``): no task
sequence may occur in it, which this script checks (exact match, after the
same normalisation ``bioprune prepare`` applies) and fails the build otherwise.
The shipped outputs need none of these packages.

Run from the repository root::

    .venv/bin/python scripts/build_demo_tasks.py

Writes ``src/bioprune/resources/tasks/<name>/{train,valid,test}.csv`` and
``task.yaml`` for

- ``rna_family``: Rfam family of an RNA (``sequence,label``), sequences sampled
  from the same covariance models as the corpus with different ``cmemit`` seeds;
- ``rna_ss``: base pairs (``sequence,structure`` dot-bracket), ``cmemit -a``
  alignments whose consensus structure is projected onto each sequence;
- ``protein_domain``: Pfam domain family (``sequence,label``) of ``hmmemit``
  samples from real Pfam profile HMMs;
- ``protein_domain_tags``: per-residue Pfam domain tags (``sequence,tags``) of
  real UniProt proteins, from ``hmmsearch`` envelope coordinates.

Splits are 60/20/20, drawn with a recorded seed (stratified by label for the
classification tasks).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import random
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import yaml

# The sibling script holds the shared infernal helpers.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_demo_corpus import (
    FASTA_NAME,
    TESTSUITE,
    _atomic_write,
    cmemit_fasta,
    derived_seed,
    md5,
    parse_stockholm,
    require_tool,
    tool_version,
    ungap,
)
from build_demo_corpus import OUT_DIR as CORPUS_DIR

#: Master seed of the tasks (different from the corpus's, so cmemit draws differ).
SEED = 777
REPO = Path(__file__).resolve().parent.parent
TASKS_OUT = REPO / "src" / "bioprune" / "resources" / "tasks"
HMMER_EXAMPLES = Path("/usr/share/doc/hmmer/examples")
UNIPROT_DB = Path("/usr/share/doc/mmseqs2/example-data/DB.fasta.gz")
SPLIT_FRACTIONS = (0.6, 0.2, 0.2)
#: Keys written to task.yaml (besides ``name``); the rest goes to provenance.json.
TASK_YAML_KEYS = ("kind", "alphabet", "metrics", "description", "source")

#: rna_family: (label, covariance model, sequences); balanced on purpose.
RNA_FAMILY_CLASSES = (
    ("tRNA", "tRNA.c.cm", 60),
    ("tRNA-Sec", "tRNA-Sec.c.cm", 60),
    ("Vault", "Vault.c.cm", 60),
    ("snR75", "snR75.c.cm", 60),
    ("mascRNA-menRNA", "bug-i33.cm", 60),
    ("Hammerhead_1", "bug-i34.cm", 60),
)
#: rna_ss: (family, covariance model, sequences); all have a consensus structure.
RNA_SS_FAMILIES = (
    ("tRNA", "tRNA.c.cm", 120),
    ("tRNA-Sec", "tRNA-Sec.c.cm", 50),
    ("Vault", "Vault.c.cm", 50),
    ("mascRNA-menRNA", "bug-i33.cm", 40),
    ("Hammerhead_1", "bug-i34.cm", 40),
)
RNA_SS_MAX_LENGTH = 120
#: Global CM emissions can delete most of a model; such stubs are not kept.
RNA_MIN_LENGTH = 30
#: protein_domain: (label, HMM file below HMMER_EXAMPLES, sequences). Pfam models
#: of at most ~150 match states, so that sequences stay short.
PROTEIN_DOMAIN_CLASSES = (
    ("fn3", "tutorial/fn3.hmm", 60),
    ("globin", "tutorial/globins4.hmm", 60),
    ("RRM_1", "testsuite/RRM_1.hmm.gz", 60),
    ("2OG-FeII_Oxy_3", "testsuite/2OG-FeII_Oxy_3.hmm.gz", 60),
    ("Caudal_act", "testsuite/Caudal_act.hmm.gz", 60),
)
PROTEIN_MAX_LENGTH = 200
#: protein_domain_tags: one tag character per residue, per Pfam model; '-' is
#: outside every domain.
TAG_MODELS = (
    ("K", "Pkinase", "tutorial/Pkinase.hmm"),
    ("F", "fn3", "tutorial/fn3.hmm"),
    ("R", "RRM_1", "testsuite/RRM_1.hmm.gz"),
)
TAG_OUTSIDE = "-"
TAG_PROTEINS_PER_MODEL = 100
HMMSEARCH_EVALUE = 1e-5

#: Bracket pairs for dot-bracket output, by pseudoknot order (method: each pair
#: takes the first level at which it crosses no pair already placed there).
BRACKETS = ("()", "[]", "{}", "<>")


# ---- structure helpers -----------------------------------------------------
def wuss_pairs(ss: str) -> dict[int, int]:
    """Base pairs ``{i: j}`` (0-based, i < j) of a WUSS consensus structure.

    ``<>``, ``()``, ``[]``, ``{}`` are nested pairs; an upper-case letter pairs
    with the same lower-case letter (pseudoknot); everything else is unpaired.
    """
    close_of = {">": "<", ")": "(", "]": "[", "}": "{"}
    stacks: dict[str, list[int]] = defaultdict(list)
    pairs: dict[int, int] = {}
    for i, c in enumerate(ss):
        if c in "<([{" or (c.isalpha() and c.isupper()):
            stacks[c].append(i)
        elif c in close_of or (c.isalpha() and c.islower()):
            key = close_of.get(c, c.upper())
            if not stacks[key]:
                raise ValueError(f"unbalanced {c!r} at column {i + 1} of SS_cons")
            pairs[stacks[key].pop()] = i
    if any(stacks.values()):
        raise ValueError("unbalanced SS_cons: unclosed brackets")
    return pairs


#: Smallest hairpin: a pair (i, j) needs j - i - 1 >= 3 unpaired bases between.
MIN_HAIRPIN_LOOP = 3


def project_structure(row: str, ss_pairs: dict[int, int]) -> tuple[str, str]:
    """A sequence's own dot-bracket from an aligned row and consensus pairs.

    Pairs whose partner column is a gap in this row are dropped, and so are pairs
    enclosing fewer than :data:`MIN_HAIRPIN_LOOP` bases: a consensus hairpin
    whose loop lies in an insert column (Hammerhead_1's ``<<<<.>>>>``) would
    otherwise close with an empty loop, which no real RNA can.

    Returns
    -------
    (sequence, structure), same length, sequence upper-case RNA.
    """
    residue_of: dict[int, int] = {}
    seq_chars: list[str] = []
    for col, c in enumerate(row):
        if c not in ".-_~":
            residue_of[col] = len(seq_chars)
            seq_chars.append(c)
    pairs = [
        (residue_of[i], residue_of[j])
        for i, j in ss_pairs.items()
        if i in residue_of
        and j in residue_of
        and residue_of[j] - residue_of[i] - 1 >= MIN_HAIRPIN_LOOP
    ]
    return ungap(row), pairs_to_dot_bracket(len(seq_chars), pairs)


def pairs_to_dot_bracket(length: int, pairs: list[tuple[int, int]]) -> str:
    """Dot-bracket of ``pairs`` (0-based, i < j); crossing pairs get ``[]``, ``{}``, ``<>``."""
    levels: list[list[tuple[int, int]]] = [[] for _ in BRACKETS]
    out = ["."] * length
    for i, j in sorted(pairs):
        for level, placed in enumerate(levels):
            if not any(a < i < b < j or i < a < j < b for a, b in placed):
                placed.append((i, j))
                out[i], out[j] = BRACKETS[level]
                break
        else:
            raise ValueError("structure needs more than 4 bracket types")
    return "".join(out)


def dot_bracket_pairs(structure: str) -> list[tuple[int, int]]:
    """Pairs of a dot-bracket string; raises ValueError if brackets do not balance."""
    stacks: dict[str, list[int]] = {b[0]: [] for b in BRACKETS}
    closer = {b[1]: b[0] for b in BRACKETS}
    pairs = []
    for k, c in enumerate(structure):
        if c in stacks:
            stacks[c].append(k)
        elif c in closer:
            if not stacks[closer[c]]:
                raise ValueError(f"unbalanced {c!r} at position {k + 1}")
            pairs.append((stacks[closer[c]].pop(), k))
        elif c != ".":
            raise ValueError(f"unexpected character {c!r} at position {k + 1}")
    if any(stacks.values()):
        raise ValueError("unbalanced structure: unclosed brackets")
    return pairs


# ---- sampling --------------------------------------------------------------
def cmemit_alignment(cm: Path, n: int, seed: int) -> tuple[dict[str, str], str]:
    """``cmemit -a`` rows and ``SS_cons`` (Pfam format: one line per sequence)."""
    out = subprocess.run(
        ["cmemit", "-a", "--outformat", "Pfam", "-N", str(n), "--seed", str(seed), str(cm)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows, ss = parse_stockholm(out)
    if ss is None or len(rows) != n:
        raise RuntimeError(f"cmemit -a {cm.name}: no SS_cons or wrong count")
    return rows, ss


def hmm_text(rel: str) -> str:
    path = HMMER_EXAMPLES / rel
    data = path.read_bytes()
    return (gzip.decompress(data) if path.suffix == ".gz" else data).decode()


def hmmemit(rel: str, n: int, seed: int) -> list[str]:
    """``hmmemit -N n --seed seed`` of a (possibly gzipped) HMM; upper-case sequences."""
    with tempfile.NamedTemporaryFile("w", suffix=".hmm") as fh:
        fh.write(hmm_text(rel))
        fh.flush()
        out = subprocess.run(
            ["hmmemit", "-N", str(n), "--seed", str(seed), fh.name],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    return ["".join(b.split("\n")[1:]).upper() for b in out.split(">")[1:]]


class Excluder:
    """Rejects sequences already in the corpus or already in a task (exact match)."""

    def __init__(self, corpus_sequences: set[str]):
        self.corpus = corpus_sequences
        self.taken: set[str] = set()
        self.rejected = Counter()

    def accept(self, seq: str) -> bool:
        if seq in self.corpus:
            self.rejected["in_corpus"] += 1
            return False
        if seq in self.taken:
            self.rejected["repeat"] += 1
            return False
        self.taken.add(seq)
        return True


def read_corpus_sequences(path: Path) -> set[str]:
    """Normalised (upper case, T -> U) sequences of the demo corpus FASTA."""
    seqs: set[str] = set()
    with gzip.open(path, "rt") as fh:
        chunks: list[str] = []
        for line in fh:
            if line.startswith(">"):
                if chunks:
                    seqs.add("".join(chunks).upper().replace("T", "U"))
                chunks = []
            else:
                chunks.append(line.strip())
        if chunks:
            seqs.add("".join(chunks).upper().replace("T", "U"))
    return seqs


# ---- tasks -----------------------------------------------------------------
def rna_family_rows(ex: Excluder, meta: dict) -> list[dict]:
    rows = []
    seeds = {}
    for label, cm, n in RNA_FAMILY_CLASSES:
        seed = _task_seed("rna_family", label)
        seeds[label] = seed
        got = 0
        # Over-draw so that rejected samples (in the corpus, repeats) can be replaced.
        for seq in _cmemit_unaligned(TESTSUITE / cm, 3 * n, seed):
            if got == n:
                break
            if len(seq) >= RNA_MIN_LENGTH and ex.accept(seq):
                rows.append({"sequence": seq, "label": label})
                got += 1
        if got < n:
            raise RuntimeError(f"rna_family: only {got} new {label} sequences")
    meta["cmemit_seeds"] = seeds
    return rows


def rna_ss_rows(ex: Excluder, meta: dict) -> list[dict]:
    rows = []
    seeds = {}
    for family, cm, n in RNA_SS_FAMILIES:
        seed = _task_seed("rna_ss", family)
        seeds[family] = seed
        aligned, ss = cmemit_alignment(TESTSUITE / cm, 4 * n, seed)
        ss_pairs = wuss_pairs(ss)
        got = 0
        for row in aligned.values():
            if got == n:
                break
            seq, structure = project_structure(row, ss_pairs)
            if not RNA_MIN_LENGTH <= len(seq) <= RNA_SS_MAX_LENGTH or "(" not in structure:
                continue
            if ex.accept(seq):
                rows.append({"sequence": seq, "structure": structure, "family": family})
                got += 1
        if got < n:
            raise RuntimeError(f"rna_ss: only {got} usable {family} sequences")
    meta["cmemit_seeds"] = seeds
    return rows


def protein_domain_rows(ex: Excluder, meta: dict) -> list[dict]:
    rows = []
    seeds = {}
    for label, rel, n in PROTEIN_DOMAIN_CLASSES:
        seed = _task_seed("protein_domain", label)
        seeds[label] = seed
        got = 0
        for seq in hmmemit(rel, 3 * n, seed):
            if got == n:
                break
            if len(seq) <= PROTEIN_MAX_LENGTH and ex.accept(seq):
                rows.append({"sequence": seq, "label": label})
                got += 1
        if got < n:
            raise RuntimeError(f"protein_domain: only {got} usable {label} sequences")
    meta["hmmemit_seeds"] = seeds
    meta["hmm_md5"] = {label: hashlib.md5(hmm_text(rel).encode()).hexdigest()
                       for label, rel, _ in PROTEIN_DOMAIN_CLASSES}  # fmt: skip
    return rows


def protein_domain_tag_rows(ex: Excluder, meta: dict) -> list[dict]:
    """Real UniProt proteins, windows of at most PROTEIN_MAX_LENGTH residues, tagged."""
    proteins: dict[str, str] = {}
    with gzip.open(UNIPROT_DB, "rt") as fh:
        name = None
        for line in fh:
            if line.startswith(">"):
                name = line[1:].split()[0]
                proteins[name] = ""
            elif name is not None:
                proteins[name] += line.strip().upper()
    # envelopes[protein] = [(tag, start0, end0_exclusive)]
    envelopes: dict[str, list[tuple[str, int, int]]] = defaultdict(list)
    with tempfile.TemporaryDirectory() as tmp:
        # One hmmsearch per model: HMMER refuses files mixing HMMER3/e and /f models.
        for tag, _model, rel in TAG_MODELS:
            hmm_path = Path(tmp) / "model.hmm"
            hmm_path.write_text(hmm_text(rel))
            tbl = Path(tmp) / "dom.tbl"
            subprocess.run(
                ["hmmsearch", "--cpu", "1", "--noali", "-E", str(HMMSEARCH_EVALUE),
                 "--domE", str(HMMSEARCH_EVALUE), "--domtblout", str(tbl), str(hmm_path),
                 str(UNIPROT_DB)],
                capture_output=True, check=True,
            )  # fmt: skip
            for line in tbl.read_text().splitlines():
                if line.startswith("#"):
                    continue
                f = line.split()
                # domtblout columns: 0 target name, 19/20 envelope from/to (1-based)
                envelopes[f[0]].append((tag, int(f[19]) - 1, int(f[20])))
    rng = random.Random(_task_seed("protein_domain_tags", "windows"))
    rows = []
    per_model = Counter()
    for prot in sorted(envelopes):
        envs = sorted(envelopes[prot], key=lambda e: e[1])
        main_tag = envs[0][0]
        if per_model[main_tag] >= TAG_PROTEINS_PER_MODEL:
            continue
        seq = proteins[prot]
        tags = [TAG_OUTSIDE] * len(seq)
        for tag, a, b in envs:
            tags[a:b] = tag * (b - a)
        # A window that starts at most 30 residues before the first domain, so
        # each window holds domain and (usually) flank.
        start = max(0, min(envs[0][1] - rng.randint(0, 30), len(seq) - PROTEIN_MAX_LENGTH))
        window = seq[start : start + PROTEIN_MAX_LENGTH]
        window_tags = "".join(tags[start : start + PROTEIN_MAX_LENGTH])
        if not set(window) <= set("ACDEFGHIKLMNPQRSTVWYXBZUO") or not ex.accept(window):
            continue
        rows.append({"sequence": window, "tags": window_tags, "protein": prot})
        per_model[main_tag] += 1
    rows_order = sorted(rows, key=lambda r: r["protein"])
    meta["uniprot_db_md5"] = md5(UNIPROT_DB)
    meta["hmmsearch_evalue"] = HMMSEARCH_EVALUE
    meta["proteins_by_first_domain"] = {model: per_model[tag] for tag, model, _ in TAG_MODELS}
    return rows_order


def _task_seed(task: str, part: str) -> int:
    return derived_seed("tasks", SEED, task, part)


def _cmemit_unaligned(cm: Path, n: int, seed: int) -> list[str]:
    return [s for _, s in cmemit_fasta(cm, n, seed)]


def split_rows(rows: list[dict], seed: int, stratify: str | None) -> dict[str, list[dict]]:
    """60/20/20 train/valid/test, stratified by ``stratify`` when given."""
    rng = random.Random(seed)
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        groups[r[stratify] if stratify else ""].append(r)
    out: dict[str, list[dict]] = {"train": [], "valid": [], "test": []}
    for key in sorted(groups):
        g = groups[key][:]
        rng.shuffle(g)
        n_train = round(SPLIT_FRACTIONS[0] * len(g))
        n_valid = round(SPLIT_FRACTIONS[1] * len(g))
        out["train"] += g[:n_train]
        out["valid"] += g[n_train : n_train + n_valid]
        out["test"] += g[n_train + n_valid :]
    for split in out.values():
        rng.shuffle(split)
    return out


def write_task(
    name: str, rows: list[dict], columns: list[str], spec: dict, stratify: str | None
) -> dict:
    seed = _task_seed(name, "split")
    splits = split_rows(rows, seed, stratify)
    out_dir = TASKS_OUT / name
    out_dir.mkdir(parents=True, exist_ok=True)
    for split, split_rows_ in splits.items():
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(split_rows_)
        _atomic_write(out_dir / f"{split}.csv", buf.getvalue().encode("ascii"))
    # task.yaml holds only what `bioprune evaluate` reads (it rejects unknown keys
    # to catch typos); how the task was built goes to provenance.json.
    task = {"name": name, **{k: spec.pop(k) for k in TASK_YAML_KEYS}}
    provenance = {
        "task": name,
        **spec,
        "split_seed": seed,
        "split_fractions": list(SPLIT_FRACTIONS),
        "counts": {split: len(r) for split, r in splits.items()},
    }
    text = yaml.safe_dump(task, sort_keys=False, width=88)
    _atomic_write(out_dir / "task.yaml", text.encode())
    text = json.dumps(provenance, indent=2) + "\n"
    _atomic_write(out_dir / "provenance.json", text.encode())
    return provenance


def build() -> None:
    require_tool("cmemit", "infernal")
    require_tool("hmmemit", "hmmer")
    for path, pkg in ((HMMER_EXAMPLES, "hmmer-examples"), (UNIPROT_DB, "mmseqs2-examples")):
        if not path.exists():
            sys.exit(f"{path} not found: run `apt-get install -y {pkg}`")
    corpus_path = CORPUS_DIR / FASTA_NAME
    if not corpus_path.exists():
        sys.exit(f"{corpus_path} not found: run scripts/build_demo_corpus.py first")
    corpus = read_corpus_sequences(corpus_path)
    ex = Excluder(corpus)
    common = {
        "built_by": "scripts/build_demo_tasks.py",
        "seed": SEED,
        "excluded_from": f"bioprune demo corpus ({FASTA_NAME}, exact match)",
    }
    infernal = tool_version("cmemit")
    hmmer = tool_version("hmmemit")

    meta: dict = {}
    rows = rna_family_rows(ex, meta)
    write_task(
        "rna_family",
        rows,
        ["sequence", "label"],
        {
            "kind": "classification",
            "alphabet": "rna",
            "metrics": ["accuracy", "macro_f1"],
            "labels": [c[0] for c in RNA_FAMILY_CLASSES],
            "description": "Rfam family of an RNA sequence (6 balanced classes).",
            "source": f"Rfam covariance models (CC0) from the Infernal testsuite, sampled with "
            f"cmemit ({infernal}); Debian package infernal",
            **common,
            **meta,
        },
        stratify="label",
    )

    meta = {}
    rows = rna_ss_rows(ex, meta)
    write_task(
        "rna_ss",
        rows,
        ["sequence", "structure"],
        {
            "kind": "secondary_structure",
            "alphabet": "rna",
            "metrics": ["precision", "recall", "f1", "mcc"],
            "description": "Base pairs of an RNA (dot-bracket), from the Rfam consensus "
            "structure projected onto each sequence; pairs with a gapped partner or enclosing "
            "fewer than 3 bases dropped.",
            "source": f"Rfam covariance models (CC0), cmemit -a ({infernal}); "
            "Debian package infernal",
            "min_length": RNA_MIN_LENGTH,
            "max_length": RNA_SS_MAX_LENGTH,
            "min_hairpin_loop": MIN_HAIRPIN_LOOP,
            "families": {f: n for f, _, n in RNA_SS_FAMILIES},
            **common,
            **meta,
        },
        stratify=None,
    )

    meta = {}
    rows = protein_domain_rows(ex, meta)
    write_task(
        "protein_domain",
        rows,
        ["sequence", "label"],
        {
            "kind": "classification",
            "alphabet": "protein",
            "metrics": ["accuracy", "macro_f1"],
            "labels": [c[0] for c in PROTEIN_DOMAIN_CLASSES],
            "description": "Pfam domain family of a protein domain sequence (5 balanced classes).",
            "source": f"Pfam profile HMMs (CC0) from HMMER's examples, sampled with hmmemit "
            f"({hmmer}); Debian package hmmer-examples",
            "max_length": PROTEIN_MAX_LENGTH,
            **common,
            **meta,
        },
        stratify="label",
    )

    meta = {}
    rows = protein_domain_tag_rows(ex, meta)
    write_task(
        "protein_domain_tags",
        rows,
        ["sequence", "tags"],
        {
            "kind": "residue_classification",
            "alphabet": "protein",
            "metrics": ["accuracy"],
            "tags": {TAG_OUTSIDE: "outside every domain",
                     **{tag: f"Pfam {model} domain" for tag, model, _ in TAG_MODELS}},
            "description": "Per-residue Pfam domain tag of real UniProt proteins (windows of "
            f"at most {PROTEIN_MAX_LENGTH} residues), from hmmsearch envelope coordinates.",
            "source": "UniProt proteins (CC BY 4.0) from Debian package mmseqs2-examples "
            f"(DB.fasta.gz), Pfam HMMs (CC0) from hmmer-examples, hmmsearch ({hmmer})",
            "max_length": PROTEIN_MAX_LENGTH,
            **common,
            **meta,
        },
        stratify=None,
    )  # fmt: skip

    # Final guard: nothing shipped may occur in the corpus.
    for name in ("rna_family", "rna_ss", "protein_domain", "protein_domain_tags"):
        for split in ("train", "valid", "test"):
            with open(TASKS_OUT / name / f"{split}.csv", newline="") as fh:
                for k, r in enumerate(csv.DictReader(fh), start=2):
                    if r["sequence"].upper().replace("T", "U") in corpus:
                        sys.exit(f"{name}/{split}.csv line {k}: sequence occurs in the corpus")
                    if "structure" in r:
                        assert len(dot_bracket_pairs(r["structure"])) > 0
                        assert len(r["structure"]) == len(r["sequence"]), (name, split, k)
    print(f"tasks written to {TASKS_OUT}; rejected draws: {dict(ex.rejected)}", file=sys.stderr)


def main() -> None:
    argparse.ArgumentParser(description=__doc__.split("\n")[0]).parse_args()
    build()


if __name__ == "__main__":
    main()
