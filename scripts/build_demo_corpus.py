"""Build the RNA pretraining corpus embedded in bioprune for the demo.

Requires Debian's ``infernal`` package (``apt-get install -y infernal``): its
testsuite ships real Rfam covariance models and seed alignments under
``/usr/share/doc/infernal/examples/testsuite/`` (Rfam data is CC0). The shipped
outputs do not need infernal; only regenerating them does.

Run from the repository root::

    .venv/bin/python scripts/build_demo_corpus.py

Outputs (all deterministic for a given infernal version, see ``SEED``):

- ``src/bioprune/resources/demo/rna_corpus.fasta.gz``: the corpus, records in a
  seeded random order, ids ``rna00000``.., wrapped at 60 columns;
- ``src/bioprune/resources/demo/rna_labels.tsv``: ``id family kind source detail``
  for every record (``kind`` is ``family``, ``duplicate``, ``near_duplicate`` or
  ``junk``);
- ``src/bioprune/resources/demo/rna_corpus.json``: provenance (infernal version,
  model and alignment checksums, every seed, counts).

What goes in, and why:

- family members: real Rfam seed-alignment sequences (ungapped) plus sequences
  sampled from the family's covariance model with ``cmemit --seed``; the counts
  are skewed on purpose (tRNA about half the corpus, a long tail of rare
  families, a handful of rRNAs longer than the default ``--max-length`` so that
  ``prepare`` crops them), as in RNAcentral-like corpora;
- exact duplicates and near-duplicates (1 to 3 point substitutions of a family
  member): the redundancy that pruning should find;
- junk: uniform random sequences, low-complexity repeats, N-rich scaffold
  fragments and sequencing-adapter dimers;
- formatting quirks on a few per cent of records (lower case, DNA ``T`` for
  ``U``), which ``bioprune prepare --alphabet rna`` normalises. Every character is
  an IUPAC nucleotide code, so the default ``--on-invalid error`` accepts the file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

#: Master seed; every other seed below is derived from it and recorded.
SEED = 20240611

TESTSUITE = Path("/usr/share/doc/infernal/examples/testsuite")
REPO = Path(__file__).resolve().parent.parent
OUT_DIR = REPO / "src" / "bioprune" / "resources" / "demo"
FASTA_NAME = "rna_corpus.fasta.gz"
LABELS_NAME = "rna_labels.tsv"
PROVENANCE_NAME = "rna_corpus.json"

#: Characters a corpus sequence may hold before normalisation (IUPAC + T).
VALID_CHARS = set("ACGUTRYKMSWBDHVN")
#: Stockholm gap characters.
GAP_CHARS = ".-_~"
WRAP = 60


@dataclass(frozen=True)
class Family:
    """One RNA family: its covariance model, optional real seed alignment, counts.

    ``n_emit`` sequences are sampled from ``cm`` with ``cmemit``; every usable
    sequence of ``seed_alignment`` is added as well (real data).
    """

    name: str
    accession: str
    description: str
    cm: str
    n_emit: int
    seed_alignment: str | None = None


#: Families, most frequent first; the skew mimics a real ncRNA collection.
FAMILIES: tuple[Family, ...] = (
    Family("tRNA", "RF00005", "transfer RNA", "tRNA.c.cm", 2400, "tRNA.sto"),
    Family("Hammerhead_1", "RF00163", "hammerhead ribozyme (type I)", "bug-i34.cm", 900),
    Family("tRNA-Sec", "RF01852", "selenocysteine tRNA", "tRNA-Sec.c.cm", 600),
    Family("Vault", "RF00006", "vault RNA", "Vault.c.cm", 325, "Vault.sto"),
    Family(
        "RNaseP_bact", "", "bacterial RNase P RNA", "rnaseP-eubact.c.cm", 60, "rnaseP-eubact.sto"
    ),
    Family("snR75", "RF01185", "small nucleolar RNA snR75", "snR75.c.cm", 238, "snR75.sto"),
    Family("mascRNA-menRNA", "RF01684", "MALAT1/MEN beta tRNA-like RNA", "bug-i33.cm", 220),
    Family("srp-euk", "", "eukaryotic SRP RNA", "srp-euk.c.cm", 113, "srp-euk.sto"),
    Family("Plant_SRP", "RF01855", "plant SRP RNA", "Plant_SRP.c.cm", 36, "Plant_SRP.sto"),
    Family("SSU_rRNA_bacteria", "RF00177", "bacterial small subunit rRNA", "bug-i45.cm", 12),
    Family("28S_rRNA", "", "28S LSU rRNA (model RF90006.28S)", "bug-i43.cm", 4),
)

#: Fraction of family members copied as exact duplicates / near-duplicates.
DUPLICATE_FRACTION = 0.01
NEAR_DUPLICATE_FRACTION = 0.04
#: Fractions of records written with formatting quirks (normalised by prepare).
LOWERCASE_FRACTION = 0.03
DNA_FRACTION = 0.05
#: Junk records by kind.
JUNK_COUNTS = {"random": 120, "low_complexity": 80, "n_rich": 30, "adapter": 20}
#: Illumina TruSeq adapter prefixes (DNA, as sequenced).
ADAPTERS = ("AGATCGGAAGAGCACACGTCTGAACTCCAGTCAC", "AGATCGGAAGAGCGTCGTGTAGGGAAAGAGTGT")


@dataclass
class Record:
    """One corpus record before ids are assigned."""

    sequence: str
    family: str
    kind: str
    source: str
    detail: str
    description: str
    #: The family member a duplicate or near-duplicate was copied from.
    origin: Record | None = None


# ---- infernal helpers (also used by build_demo_tasks.py) --------------------
def require_tool(name: str, package: str) -> str:
    """Path of an executable, or exit with the apt command that installs it."""
    path = shutil.which(name)
    if path is None:
        sys.exit(f"{name} not found: run `apt-get update && apt-get install -y {package}`")
    return path


def tool_version(tool: str) -> str:
    """Banner line of an infernal/hmmer tool, e.g. ``INFERNAL 1.1.4 (Dec 2020)``."""
    out = subprocess.run([tool, "-h"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("# INFERNAL") or line.startswith("# HMMER"):
            return line[2:].strip()
    raise RuntimeError(f"no version banner in `{tool} -h`")


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def parse_stockholm(text: str) -> tuple[dict[str, str], str | None]:
    """Aligned sequences (name -> row, blocks joined) and ``#=GC SS_cons`` of one alignment.

    Stops at the first ``//`` so that multi-alignment files give their first one.
    """
    rows: dict[str, str] = {}
    ss_parts: list[str] = []
    for line in text.splitlines():
        if line.startswith("//"):
            break
        if not line.strip():
            continue
        if line.startswith("#=GC SS_cons"):
            ss_parts.append(line.split()[2])
            continue
        if line.startswith("#"):
            continue
        name, row = line.split()
        rows[name] = rows.get(name, "") + row
    return rows, ("".join(ss_parts) if ss_parts else None)


def ungap(row: str) -> str:
    """Residues of an aligned row, gaps removed, upper case, DNA T as U."""
    return re.sub(f"[{re.escape(GAP_CHARS)}]", "", row).upper().replace("T", "U")


def cmemit_fasta(cm: Path, n: int, seed: int) -> list[tuple[str, str]]:
    """``cmemit -N n --seed seed`` as (name, sequence) pairs; sequences upper case RNA."""
    out = subprocess.run(
        ["cmemit", "-N", str(n), "--seed", str(seed), str(cm)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    records: list[tuple[str, str]] = []
    for block in out.split(">")[1:]:
        header, _, body = block.partition("\n")
        records.append((header.split()[0], ungap(body.replace("\n", ""))))
    if len(records) != n:
        raise RuntimeError(f"cmemit {cm.name}: expected {n} sequences, got {len(records)}")
    return records


def derived_seed(*parts: object) -> int:
    """A seed for one sub-task, a pure function of :data:`SEED` and ``parts``.

    Kept within cmemit's accepted range (positive 31-bit integer).
    """
    key = "/".join(str(p) for p in (SEED, *parts)).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:4], "big") % (2**31 - 1) + 1


# ---- corpus construction ---------------------------------------------------
def family_records(fam: Family, provenance: dict) -> list[Record]:
    """Real seed-alignment sequences plus ``cmemit`` samples of one family."""
    records: list[Record] = []
    fam_prov: dict = {
        "accession": fam.accession,
        "description": fam.description,
        "cm": fam.cm,
        "cm_md5": md5(TESTSUITE / fam.cm),
    }
    if fam.seed_alignment:
        rows, _ = parse_stockholm((TESTSUITE / fam.seed_alignment).read_text())
        dropped = 0
        for name, row in rows.items():
            seq = ungap(row)
            # Seeds with non-IUPAC characters (X) are left out rather than edited.
            if not seq or not set(seq) <= VALID_CHARS:
                dropped += 1
                continue
            records.append(
                Record(seq, fam.name, "family", f"rfam_seed:{fam.seed_alignment}", "", name)
            )
        fam_prov.update(
            seed_alignment=fam.seed_alignment,
            seed_alignment_md5=md5(TESTSUITE / fam.seed_alignment),
            seed_sequences_used=len(records),
            seed_sequences_dropped_invalid=dropped,
        )
    seed = derived_seed("cmemit", fam.name)
    for name, seq in cmemit_fasta(TESTSUITE / fam.cm, fam.n_emit, seed):
        records.append(
            Record(seq, fam.name, "family", f"cmemit:{fam.cm}", "", f"{fam.name}/{name}")
        )
    fam_prov.update(cmemit_n=fam.n_emit, cmemit_seed=seed)
    provenance["families"][fam.name] = fam_prov
    return records


def mutate(seq: str, n_mut: int, rng: random.Random) -> tuple[str, list[str]]:
    """``n_mut`` point substitutions at distinct positions (always to a different base)."""
    chars = list(seq)
    changes = []
    for pos in sorted(rng.sample(range(len(chars)), n_mut)):
        old = chars[pos]
        new = rng.choice([b for b in "ACGU" if b != old])
        chars[pos] = new
        changes.append(f"{old}{pos + 1}{new}")
    return "".join(chars), changes


def junk_records(rng: random.Random) -> list[Record]:
    """Sequences a curated corpus should not contain (see :data:`JUNK_COUNTS`)."""
    out: list[Record] = []
    for _ in range(JUNK_COUNTS["random"]):
        # log-uniform length 20..400 nt, uniform base composition
        length = round(20 * (20 ** rng.random()))
        seq = "".join(rng.choice("ACGU") for _ in range(length))
        out.append(Record(seq, "junk", "junk", "generated", "random", "random sequence"))
    for _ in range(JUNK_COUNTS["low_complexity"]):
        unit = rng.choice(["A", "U", "AU", "GC", "CA", "CAG", "GGC", "AAUG", "UUUUC"])
        length = rng.randint(20, 150)
        seq = (unit * (length // len(unit) + 1))[:length]
        out.append(Record(seq, "junk", "junk", "generated", f"repeat ({unit})n", "low complexity"))
    for _ in range(JUNK_COUNTS["n_rich"]):
        # A scaffold-gap fragment: runs of N between short stretches of bases.
        parts = []
        for _ in range(rng.randint(2, 5)):
            parts.append("N" * rng.randint(10, 60))
            parts.append("".join(rng.choice("ACGU") for _ in range(rng.randint(5, 30))))
        seq = "".join(parts)
        out.append(Record(seq, "junk", "junk", "generated", "N-rich", "scaffold gap fragment"))
    for _ in range(JUNK_COUNTS["adapter"]):
        adapter = rng.choice(ADAPTERS)
        seq = adapter + "".join(rng.choice("ACGT") for _ in range(rng.randint(0, 12))) + adapter
        # Left as DNA on purpose: prepare turns T into U.
        out.append(Record(seq, "junk", "junk", "generated", "adapter dimer (DNA)", "adapter dimer"))
    return out


def build(out_dir: Path) -> dict:
    """Build the corpus into ``out_dir``; returns the provenance dictionary."""
    require_tool("cmemit", "infernal")
    provenance: dict = {
        "description": "bioprune demo RNA pretraining corpus",
        "built_by": "scripts/build_demo_corpus.py",
        "infernal": tool_version("cmemit"),
        "source": "Rfam covariance models and seed alignments from the Infernal testsuite "
        f"({TESTSUITE}, Debian package infernal); Rfam data is CC0",
        "seed": SEED,
        "families": {},
    }
    rng = random.Random(SEED)

    members: list[Record] = []
    seen: set[str] = set()
    collisions = 0
    for fam in FAMILIES:
        for rec in family_records(fam, provenance):
            # Only the labelled duplicates below may repeat a sequence exactly.
            if rec.sequence in seen:
                collisions += 1
                continue
            seen.add(rec.sequence)
            members.append(rec)
    provenance["exact_repeats_dropped"] = collisions

    # Duplicates and near-duplicates of family members (rRNAs excluded: too few).
    pool = [r for r in members if "rRNA" not in r.family]
    copies: list[Record] = []
    for src in rng.sample(pool, round(DUPLICATE_FRACTION * len(members))):
        copies.append(
            Record(src.sequence, src.family, "duplicate", src.source, "", src.description, src)
        )
    for src in rng.sample(pool, round(NEAR_DUPLICATE_FRACTION * len(members))):
        while True:
            seq, changes = mutate(src.sequence, rng.randint(1, 3), rng)
            if seq not in seen:
                break
        seen.add(seq)
        copies.append(
            Record(
                seq,
                src.family,
                "near_duplicate",
                src.source,
                ",".join(changes),
                src.description,
                src,
            )
        )
    junk = junk_records(rng)

    records = members + copies + junk
    # Ids follow the shuffled order; a copy names its origin by that id.
    order = list(range(len(records)))
    rng.shuffle(order)
    id_of = {id(records[i]): f"rna{k:05d}" for k, i in enumerate(order)}

    quirks = Counter()
    fasta = io.StringIO()
    labels = io.StringIO()
    labels.write("id\tfamily\tkind\tsource\tdetail\n")
    for k, i in enumerate(order):
        rec = records[i]
        rid = f"rna{k:05d}"
        detail = rec.detail
        if rec.origin is not None:
            detail = ";".join(x for x in (f"of={id_of[id(rec.origin)]}", rec.detail) if x)
        seq = rec.sequence
        u = rng.random()
        if u < LOWERCASE_FRACTION:
            seq = seq.lower()
            detail = f"{detail};lowercase" if detail else "lowercase"
            quirks["lowercase"] += 1
        elif u < LOWERCASE_FRACTION + DNA_FRACTION:
            seq = seq.replace("U", "T")
            detail = f"{detail};DNA" if detail else "DNA"
            quirks["dna_t"] += 1
        assert set(seq.upper()) <= VALID_CHARS, rec
        fasta.write(f">{rid} {rec.description}\n")
        for s in range(0, len(seq), WRAP):
            fasta.write(seq[s : s + WRAP] + "\n")
        labels.write(f"{rid}\t{rec.family}\t{rec.kind}\t{rec.source}\t{detail}\n")

    counts_family = Counter(r.family for r in records)
    counts_kind = Counter(r.kind for r in records)
    lengths = sorted(len(r.sequence) for r in records)
    provenance.update(
        n_sequences=len(records),
        n_residues=sum(lengths),
        length_min=lengths[0],
        length_median=lengths[len(lengths) // 2],
        length_max=lengths[-1],
        counts_by_family=dict(counts_family.most_common()),
        counts_by_kind=dict(counts_kind.most_common()),
        quirks=dict(quirks),
        junk_counts=JUNK_COUNTS,
        fractions={
            "duplicate": DUPLICATE_FRACTION,
            "near_duplicate": NEAR_DUPLICATE_FRACTION,
            "lowercase": LOWERCASE_FRACTION,
            "dna": DNA_FRACTION,
        },
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    raw = io.BytesIO()
    # mtime=0 and no file name: identical inputs give identical bytes.
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=9, mtime=0) as gz:
        gz.write(fasta.getvalue().encode("ascii"))
    _atomic_write(out_dir / FASTA_NAME, raw.getvalue())
    _atomic_write(out_dir / LABELS_NAME, labels.getvalue().encode("ascii"))
    provenance["files"] = {
        FASTA_NAME: hashlib.sha256(raw.getvalue()).hexdigest(),
        LABELS_NAME: hashlib.sha256(labels.getvalue().encode("ascii")).hexdigest(),
    }
    text = json.dumps(provenance, indent=2) + "\n"
    _atomic_write(out_dir / PROVENANCE_NAME, text.encode())
    return provenance


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; package data must be world-readable
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    args = parser.parse_args()
    prov = build(args.out)
    print(
        f"wrote {prov['n_sequences']} sequences ({prov['n_residues']} nt) to {args.out}",
        file=sys.stderr,
    )
    for fam, n in prov["counts_by_family"].items():
        print(f"  {fam:20s} {n:6d}", file=sys.stderr)
    print(f"  kinds: {prov['counts_by_kind']}", file=sys.stderr)


if __name__ == "__main__":
    main()
