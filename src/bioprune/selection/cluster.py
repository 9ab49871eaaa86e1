"""``cluster``: the sequence-identity baseline (method.md section 5).

The corpus is clustered at ``min_seq_id`` identity and ``coverage`` with
MMseqs2 (``easy-linclust``, linear time, or ``easy-cluster``) or CD-HIT
(``cd-hit`` for proteins, ``cd-hit-est`` for nucleotides); the tool's
representative of each cluster is kept, and the budget is then met by:

* ``m <= clusters``: ``m`` representatives uniformly at random;
* ``m > clusters``: round robin over clusters -- round 0 is every
  representative, round ``r`` adds each cluster's ``r``-th other member (the
  members of a cluster in a seeded random order); whole rounds are taken while
  they fit and the last, partial round is a uniform sample of its candidates.

Both cases are one rule: sort the examples by (round, random key) and keep the
first ``m``. Sequences are written to the tool with their corpus position as
the FASTA name (ids may hold spaces or exceed CD-HIT's 19 characters), and
RNA ``U`` is written as ``T`` because both tools read nucleotides as DNA.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from bioprune.errors import ConfigError, check_choice
from bioprune.selection.base import Budget, Selection, check_budget, check_count
from bioprune.selection.budget import as_count

__all__ = [
    "ClusterSelection",
    "ClusteringParameters",
    "check_clustering",
    "cluster_representatives",
    "corpus_clusters",
    "round_robin_order",
    "strategy_clusters",
]

log = logging.getLogger("bioprune")

TOOLS = ("mmseqs", "cd-hit")
MMSEQS_COMMANDS = ("easy-linclust", "easy-cluster")

_INSTALL = {
    "mmseqs": "install it with `apt-get install mmseqs2` (or `conda install -c bioconda mmseqs2`)",
    "cd-hit": "install it with `apt-get install cd-hit` (or `conda install -c bioconda cd-hit`)",
}


def _require(binary: str, tool: str) -> str:
    path = shutil.which(binary)
    if path is None:
        other = "cd-hit" if tool == "mmseqs" else "mmseqs"
        raise FileNotFoundError(
            f"the cluster baseline needs `{binary}`, which is not on PATH; {_INSTALL[tool]}, "
            f"or pass --cluster-tool {other}"
        )
    return path


def _cdhit_word_size(identity: float, nucleotide: bool) -> int:
    """CD-HIT's word length for an identity threshold (its user guide's table)."""
    table = (
        [(0.95, 10), (0.90, 8), (0.88, 7), (0.85, 6), (0.80, 5), (0.75, 4)]
        if nucleotide
        else [(0.70, 5), (0.60, 4), (0.50, 3), (0.40, 2)]
    )
    for threshold, word in table:
        if identity >= threshold:
            return word
    lowest = table[-1][0]
    raise ValueError(
        f"{'cd-hit-est' if nucleotide else 'cd-hit'} clusters at identity >= {lowest} only, "
        f"got --min-seq-id {identity}; use --cluster-tool mmseqs for lower identities"
    )


def write_positional_fasta(corpus, path: Path) -> int:
    """Stream the corpus to FASTA named by position (``>0``, ``>1``, ...); returns n.

    Reads ``sequences.parquet`` one row group at a time and builds each
    group's text with Arrow kernels (no Python loop over examples).
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from bioprune.selection.io import arrow_text_bytes

    rna = corpus.alphabet.name == "rna"
    pf = pq.ParquetFile(corpus.sequences_path)
    count = 0
    with open(path, "wb") as fh:
        for g in range(pf.num_row_groups):
            table = pf.read_row_group(g, columns=["index", "sequence"])
            seq = table.column("sequence").combine_chunks()
            if rna:
                seq = pc.replace_substring(seq, "U", "T")
            name = pc.cast(table.column("index").combine_chunks(), pa.string())
            fh.write(arrow_text_bytes(pc.binary_join_element_wise(">", name, "\n", seq, "\n", "")))
            count += table.num_rows
    return count


def _tool_version(tool: str, binary: str) -> str:
    if tool == "mmseqs":
        out = subprocess.run([binary, "version"], capture_output=True, text=True)
        return out.stdout.strip() or out.stderr.strip()
    out = subprocess.run([binary, "-h"], capture_output=True, text=True)
    for line in (out.stdout + out.stderr).splitlines():
        if "version" in line.lower():
            return line.strip(" =\t")
    return "unknown"


def _read_mmseqs_tsv(path: Path, n: int) -> np.ndarray:
    import pyarrow as pa
    import pyarrow.csv as pacsv

    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["rep", "member"]),
        parse_options=pacsv.ParseOptions(delimiter="\t"),
        convert_options=pacsv.ConvertOptions(
            column_types={"rep": pa.int64(), "member": pa.int64()}
        ),
    )
    rep_of = np.full(n, -1, dtype=np.int64)
    rep_of[table.column("member").to_numpy()] = table.column("rep").to_numpy()
    return rep_of


def _read_cdhit_clstr(path: Path, n: int) -> np.ndarray:
    """Parse CD-HIT's ``.clstr`` (``>Cluster k`` lines, then ``j\\tLEN, >NAME... *|at``)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    lines = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["line"]),
        parse_options=pacsv.ParseOptions(delimiter="\x01", quote_char=False),
        convert_options=pacsv.ConvertOptions(column_types={"line": pa.string()}),
    ).column("line")
    header = pc.starts_with(lines, ">Cluster").to_numpy(zero_copy_only=False)
    cluster_of_line = np.cumsum(header) - 1
    member = ~header
    names = pc.extract_regex(lines.filter(pa.array(member)), r">(?P<name>\d+)\.\.\.")
    position = pc.cast(pc.struct_field(names, "name"), pa.int64()).to_numpy()
    is_rep = pc.ends_with(lines.filter(pa.array(member)), "*").to_numpy(zero_copy_only=False)
    cluster = cluster_of_line[member]
    rep_of_cluster = np.full(int(cluster.max()) + 1 if len(cluster) else 0, -1, dtype=np.int64)
    rep_of_cluster[cluster[is_rep]] = position[is_rep]
    rep_of = np.full(n, -1, dtype=np.int64)
    rep_of[position] = rep_of_cluster[cluster]
    return rep_of


def cluster_representatives(
    fasta: Path,
    n: int,
    workdir: Path,
    *,
    tool: str = "mmseqs",
    min_seq_id: float = 0.3,
    coverage: float = 0.8,
    nucleotide: bool = True,
    mmseqs_command: str = "easy-linclust",
    threads: int = 1,
    max_seq_len: int = 65535,
) -> tuple[np.ndarray, dict]:
    """Cluster the positional FASTA; returns (representative position of each example, facts).

    ``rep_of[i] == i`` marks a representative; a sequence the tool left out
    (CD-HIT skips those shorter than 10 residues) is its own cluster and is
    counted in ``unclustered_singletons``. Coverage means the alignment
    covers at least ``coverage`` of both sequences (MMseqs2 ``--cov-mode 0``;
    CD-HIT ``-aL`` and ``-aS``).
    """
    if tool not in TOOLS:
        raise ValueError(f"--cluster-tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    if not 0.0 <= min_seq_id <= 1.0 or not 0.0 <= coverage <= 1.0:
        raise ValueError(
            f"--min-seq-id and --coverage must lie in [0, 1], got {min_seq_id}, {coverage}"
        )
    workdir.mkdir(parents=True, exist_ok=True)
    if tool == "mmseqs":
        if mmseqs_command not in MMSEQS_COMMANDS:
            raise ValueError(f"--mmseqs-command must be one of {', '.join(MMSEQS_COMMANDS)}")
        binary = _require("mmseqs", tool)
        prefix = workdir / "clusters"
        cmd = [
            binary, mmseqs_command, str(fasta), str(prefix), str(workdir / "tmp"),
            "--min-seq-id", str(min_seq_id), "-c", str(coverage), "--cov-mode", "0",
            "--threads", str(threads), "--max-seq-len", str(max_seq_len), "-v", "1",
        ]  # fmt: skip
    else:
        name = "cd-hit-est" if nucleotide else "cd-hit"
        binary = _require(name, tool)
        prefix = workdir / "clusters"
        cmd = [
            binary, "-i", str(fasta), "-o", str(prefix), "-c", str(min_seq_id),
            "-n", str(_cdhit_word_size(min_seq_id, nucleotide)),
            "-aL", str(coverage), "-aS", str(coverage), "-d", "0", "-M", "0",
            "-T", str(threads),
        ]  # fmt: skip
        if nucleotide:
            cmd += ["-r", "0"]  # RNA/DNA strand matters: compare the given strand only
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {done.returncode}): " + " | ".join(tail))
    if tool == "mmseqs":
        rep_of = _read_mmseqs_tsv(Path(f"{prefix}_cluster.tsv"), n)
    else:
        rep_of = _read_cdhit_clstr(Path(f"{prefix}.clstr"), n)
    # CD-HIT throws away sequences shorter than its -l (10 residues by default);
    # a sequence the tool did not cluster is a cluster of its own.
    unassigned = np.flatnonzero(rep_of < 0)
    rep_of[unassigned] = unassigned
    facts = {
        "unclustered_singletons": int(unassigned.size),
        "tool": tool,
        "tool_version": _tool_version(tool, binary),
        # The work directory is temporary; record the command with it abbreviated.
        "command": " ".join(
            [Path(cmd[0]).name, *(c.replace(str(workdir), "WORK") for c in cmd[1:])]
        ),
    }
    return rep_of, facts


def strategy_clusters(strategy, corpus, workdir: str | Path, cache_dir=None):
    """:func:`corpus_clusters` with a clustering strategy's own settings (``tool``,
    ``min_seq_id``, ``coverage``, ``mmseqs_command``, ``threads``): one place that
    turns a strategy into a clustering run, for the cluster baseline and cci-cluster."""
    return corpus_clusters(
        corpus,
        workdir,
        tool=strategy.tool,
        min_seq_id=float(strategy.min_seq_id),
        coverage=float(strategy.coverage),
        mmseqs_command=strategy.mmseqs_command,
        threads=int(strategy.threads),
        cache_dir=cache_dir,
    )


def corpus_clusters(
    corpus,
    workdir: str | Path,
    *,
    tool: str = "mmseqs",
    min_seq_id: float = 0.3,
    coverage: float = 0.8,
    mmseqs_command: str = "easy-linclust",
    threads: int = 1,
    cache_dir: str | Path | None = None,
) -> tuple[np.ndarray, dict]:
    """The representative of each corpus example (``rep_of``), from the cache when it has them.

    With ``cache_dir`` the result is kept there as ``clusters-KEY.npy`` (int64,
    read back with ``allow_pickle=False``) and ``clusters-KEY.json`` (the
    facts), where KEY hashes the corpus content checksum and everything that
    can change the clusters: tool, tool version, command, identity, coverage,
    alphabet kind and maximum length (not ``threads``). Both files are written
    atomically, so concurrent runs (a study's select jobs) at worst cluster
    twice; a cache entry that does not fit the corpus is recomputed.
    ``facts["cache"]`` says ``hit``, ``miss`` or ``off``.
    """
    from bioprune import artifacts

    nucleotide = corpus.alphabet.name != "protein"
    max_seq_len = max(65535, corpus.max_length + 1)
    key_path = key = None
    if cache_dir is not None:
        key = _cache_key(corpus, tool, mmseqs_command, min_seq_id, coverage, max_seq_len)
        digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=12)
        key_path = Path(cache_dir) / f"clusters-{digest.hexdigest()}"
        cached = _read_cache(key_path, key, len(corpus))
        if cached is not None:
            return cached
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    fasta = workdir / "corpus.fasta"
    write_positional_fasta(corpus, fasta)
    rep_of, facts = cluster_representatives(
        fasta,
        len(corpus),
        workdir,
        tool=tool,
        min_seq_id=float(min_seq_id),
        coverage=float(coverage),
        nucleotide=nucleotide,
        mmseqs_command=mmseqs_command,
        threads=int(threads),
        max_seq_len=max_seq_len,
    )
    fasta.unlink(missing_ok=True)
    if key_path is None:
        return rep_of, {**facts, "cache": "off"}
    with artifacts.atomic_path(key_path.with_suffix(".npy"), suffix=".npy") as tmp:
        np.save(tmp, rep_of, allow_pickle=False)
    artifacts.write_json(key_path.with_suffix(".json"), {"key": key, "facts": facts})
    return rep_of, {**facts, "cache": "miss", "cache_file": str(key_path.with_suffix(".npy"))}


def _cache_key(corpus, tool, mmseqs_command, min_seq_id, coverage, max_seq_len) -> dict:
    """Everything that can change a corpus's clusters (the tool's version too)."""
    if tool not in TOOLS:
        raise ValueError(f"--cluster-tool must be one of {', '.join(TOOLS)}, got {tool!r}")
    nucleotide = corpus.alphabet.name != "protein"
    binary = _require(
        "mmseqs" if tool == "mmseqs" else ("cd-hit-est" if nucleotide else "cd-hit"), tool
    )
    return {
        "corpus_checksum": corpus.checksum,
        "n": len(corpus),
        "tool": tool,
        "tool_version": _tool_version(tool, binary),
        "mmseqs_command": mmseqs_command if tool == "mmseqs" else None,
        "min_seq_id": float(min_seq_id),
        "coverage": float(coverage),
        "nucleotide": nucleotide,
        "max_seq_len": max_seq_len,
    }


def _read_cache(key_path: Path, key: dict, n: int) -> tuple[np.ndarray, dict] | None:
    """The cached clusters under ``key_path`` when they exist and fit (``key``, ``n``
    examples, every representative its own); else ``None`` (a warning when unfit)."""
    npy, meta = key_path.with_suffix(".npy"), key_path.with_suffix(".json")
    if not (npy.is_file() and meta.is_file()):
        return None
    try:
        rep_of = np.load(npy, allow_pickle=False)
        facts = json.loads(meta.read_text())
        ok = (
            rep_of.dtype == np.int64
            and rep_of.shape == (n,)
            and isinstance(facts, dict)
            and facts.get("key") == key
            and isinstance(facts.get("facts"), dict)
            and (n == 0 or (rep_of.min() >= 0 and rep_of.max() < n))
            and np.array_equal(rep_of[rep_of], rep_of)
        )
    except (OSError, ValueError) as exc:
        log.warning("cluster cache %s is unreadable (%s); clustering again", npy, exc)
        return None
    if not ok:
        log.warning("cluster cache %s does not fit this corpus; clustering again", npy)
        return None
    log.debug("clusters read from the cache %s", npy)
    return rep_of, {**facts["facts"], "cache": "hit", "cache_file": str(npy)}


def round_robin_order(rep_of: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Every position in round-robin order over clusters, and each position's round.

    Round 0 holds the representatives; a cluster's other members get rounds
    1, 2, ... in a random order; within a round the order is random. Keeping
    the first ``m`` of the returned order is the budgeted selection.
    """
    n = len(rep_of)
    positions = np.arange(n, dtype=np.int64)
    is_rep = rep_of == positions
    rng = np.random.default_rng(seed)
    member_key = np.where(is_rep, -1.0, rng.random(n))  # the representative comes first
    grouped = np.lexsort((member_key, rep_of))
    sorted_rep = rep_of[grouped]
    first = np.flatnonzero(np.r_[True, sorted_rep[1:] != sorted_rep[:-1]])
    sizes = np.diff(np.r_[first, n])
    rounds = np.empty(n, dtype=np.int64)
    rounds[grouped] = positions - np.repeat(first, sizes)
    if int(is_rep.sum()) != len(first) or not np.all(rounds[is_rep] == 0):
        raise RuntimeError("clustering output has a cluster whose representative is not a member")
    order = np.lexsort((rng.random(n), rounds))
    return order, rounds


def check_clustering(strategy) -> None:
    """The checks of a clustering strategy's ``tool``, ``mmseqs_command``, ``min_seq_id``,
    ``coverage`` and ``threads`` (:class:`~bioprune.errors.ConfigError`)."""
    check_choice("tool", strategy.tool, TOOLS)
    check_choice("mmseqs_command", strategy.mmseqs_command, MMSEQS_COMMANDS)
    for param in ("min_seq_id", "coverage"):
        value = getattr(strategy, param)
        if not 0.0 <= float(value) <= 1.0:
            raise ConfigError(param, f"must lie in [0, 1], got {value}")
    check_count("threads", strategy.threads, 1)


@dataclass(frozen=True, kw_only=True)
class ClusteringParameters:
    """The clustering settings that ``cluster`` and ``cci-cluster`` share (the identity
    threshold is each one's own: their defaults differ)."""

    coverage: float = 0.8
    tool: str = "mmseqs"
    mmseqs_command: str = "easy-linclust"
    threads: int = 1

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """:class:`~bioprune.errors.ConfigError` naming the first invalid parameter."""
        check_clustering(self)


@dataclass(frozen=True, kw_only=True)
class ClusterSelection(ClusteringParameters):
    """One representative per sequence-identity cluster, sampled to the budget.

    Parameters
    ----------
    min_seq_id, coverage
        Identity and alignment-coverage thresholds of the clustering (0..1).
    tool
        ``mmseqs`` or ``cd-hit``.
    mmseqs_command
        ``easy-linclust`` (linear time, the default) or ``easy-cluster`` (more sensitive).
    seed
        Seed of the within-cluster member order and the sampling.
    threads
        Threads given to the clustering tool.
    """

    min_seq_id: float = 0.3
    seed: int = 0

    name: ClassVar[str] = "cluster"
    uses_scores: ClassVar[bool] = False

    def select(
        self,
        corpus,
        budget: Budget,
        workdir: str | Path,
        cache_dir: str | Path | None = None,
    ) -> Selection:
        """Cluster ``corpus`` (a :class:`~bioprune.data.corpus.Corpus`) in ``workdir``.

        Returns ``budget`` sorted corpus indices and each one's cluster. With
        ``cache_dir`` the clusters are reused across calls (:func:`corpus_clusters`).
        """
        n = len(corpus)
        budget = check_budget(as_count(budget, n), n, self.name, "sequences in the corpus")
        rep_of, facts = strategy_clusters(self, corpus, workdir, cache_dir)
        order, rounds = round_robin_order(rep_of, self.seed)
        chosen = np.sort(order[:budget])
        sizes = np.bincount(rep_of, minlength=n)
        sizes = sizes[sizes > 0]
        details = {
            **facts,
            "min_seq_id": float(self.min_seq_id),
            "coverage": float(self.coverage),
            "threads": int(self.threads),
            "clusters": len(sizes),
            "singletons": int((sizes == 1).sum()),
            "largest_cluster": int(sizes.max()) if len(sizes) else 0,
            "rounds_used": int(rounds[chosen].max()) + 1 if budget else 0,
        }
        return Selection(indices=chosen, cluster=rep_of[chosen], details=details)
