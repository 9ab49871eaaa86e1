"""The options of ``prepare`` (:class:`PrepareConfig`) and its record policies.

A light module (no NumPy): the CLI builds ``bioprune prepare``'s options from
:class:`PrepareConfig`'s fields at start-up. The policies' defaults and help
texts are written once, in :data:`POLICY`, for :class:`PrepareConfig`,
:class:`SequencePolicy` (``Corpus.from_sequences``) and the CLI.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, make_dataclass
from pathlib import Path
from typing import Any, Optional

from bioprune import artifacts
from bioprune.errors import ConfigError

__all__ = ["POLICY", "PrepareConfig", "SequencePolicy", "check_alphabet", "check_policy"]

ON_LONG = ("crop", "skip")
ON_INVALID = ("error", "skip", "replace")
DEDUP = ("none", "exact")

#: ``prepare``'s record policies (module docstring): default and help text, written once
#: for :class:`PrepareConfig`, :class:`SequencePolicy` and the CLI options made from them.
POLICY: dict[str, tuple[Any, str]] = {
    "max_length": (
        1022,
        "Longest sequence kept, in residues (1022 = 1024 tokens with <cls> and <eos>,"
        " the context of RNA-FM and ESM-2).",
    ),
    "on_long": (
        "crop",
        "Records longer than --max-length: 'crop' keeps the first --max-length "
        "residues (counted as long_cropped); 'skip' drops the record (long_skipped). "
        "Cropped-off residues are not validated.",
    ),
    "on_invalid": (
        "error",
        "Characters outside the alphabet (after upper-casing and T->U): 'error' stops"
        " and names the file, record id, 1-based position and character; 'skip' drops"
        " the record (invalid_skipped); 'replace' writes the unknown residue, N for "
        "RNA or X for protein (invalid_replaced_records / invalid_replaced_chars).",
    ),
    "dedupe_ids": (
        False,
        "Rename a repeated id ID_2, ID_3, ... (counted as ids_deduplicated) instead "
        "of stopping with an error that names both records.",
    ),
    "dedup": (
        "none",
        "Exact duplicate sequences (after upper-casing, T->U, cropping): 'none' "
        "counts them (exact_duplicates); 'exact' also skips each repeat, keeping the "
        "first (duplicates_skipped).",
    ),
    "drop_low_complexity": (
        False,
        "Skip records flagged low complexity (normalised 3-mer entropy < 0.5 for RNA,"
        " residue entropy < 0.5 for protein) or holding a run of >= 10 N/X "
        "(low_complexity_skipped); without it they are only counted (low_complexity, "
        "n_runs).",
    ),
}


def _policy_field(name: str) -> Any:
    default, help_text = POLICY[name]
    return field(default=default, metadata={"help": help_text})


@dataclass
class PrepareConfig:
    """What ``bioprune prepare`` does; validated on construction.

    Parameters
    ----------
    inputs : sequence files, read in this order (corpus index follows it).
    alphabet : "rna" or "protein".
    out : corpus directory to write.
    max_length : longest sequence kept, in residues (default 1022: 1024 tokens
        with ``<cls>``/``<eos>``, the context of RNA-FM and ESM-2).
    on_long : "crop" (keep the first ``max_length`` residues) or "skip".
    on_invalid : "error", "skip" or "replace" (with N for RNA, X for protein).
    dedupe_ids : rename repeated ids ``ID_2``, ``ID_3``... instead of failing.
    dedup : "none" (count exact duplicate sequences) or "exact" (also skip them,
        keeping the first).
    drop_low_complexity : skip records flagged low complexity or with an N-run
        (they are counted either way).
    column, id_column : sequence and id columns of CSV/TSV/Parquet inputs.
    format : force one format for every input (else by extension).
    overwrite : replace an existing ``out``.
    allow_empty : write a corpus even when no record is written (else an error:
        an empty input, or one whose every record is skipped, is almost always
        a mistake, and every later stage would have nothing to work on).
    seed : recorded for the pipeline's provenance; prepare draws no random numbers.
    """

    inputs: list[Path] = field(
        metadata={
            "argument": True,
            "help": "Input files, read in this order (the corpus index follows it).",
        }
    )
    alphabet: str = field(
        metadata={"help": "rna (RNA-FM vocabulary) or protein (ESM-2 vocabulary)."}
    )
    out: Path = field(metadata={"help": "Corpus directory to write."})
    max_length: int = _policy_field("max_length")
    on_long: str = _policy_field("on_long")
    on_invalid: str = _policy_field("on_invalid")
    dedupe_ids: bool = _policy_field("dedupe_ids")
    dedup: str = _policy_field("dedup")
    drop_low_complexity: bool = _policy_field("drop_low_complexity")
    column: Optional[str] = field(
        default=None,
        metadata={"help": "CSV/TSV/Parquet: the column holding the sequences (required)."},
    )
    id_column: Optional[str] = field(
        default=None,
        metadata={
            "help": "CSV/TSV/Parquet: the column holding ids; default: the 1-based row number."
        },
    )
    format: Optional[str] = field(
        default=None,
        metadata={
            "help": "Force the format of every input: fasta, text, csv, tsv or parquet "
            "(default: from each file's extension)."
        },
    )
    overwrite: bool = field(default=False, metadata={"help": "Replace an existing OUT."})
    allow_empty: bool = field(
        default=False,
        metadata={
            "help": "Write the corpus even if no record survives (an empty input, or every "
            "record skipped); without it that is an error, since later stages would "
            "have nothing to do."
        },
    )
    seed: int = field(
        default=0,
        metadata={"help": "Recorded in the manifest for provenance (prepare is not random)."},
    )
    formats: list[str] = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self.inputs = [Path(p) for p in self.inputs]
        self.out = Path(self.out)
        if not self.inputs:
            raise ConfigError("inputs", "prepare needs at least one input file")
        check_alphabet(self.alphabet)
        check_policy(self)
        for p in self.inputs:
            if not p.is_file():
                raise FileNotFoundError(f"input {p} does not exist or is not a file")
        from bioprune.data.readers import detect_format

        self.formats = [detect_format(p, self.format) for p in self.inputs]
        artifacts.check_output_dir(self.out, self.overwrite, inputs=self.inputs)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["inputs"] = [str(p) for p in self.inputs]
        d["out"] = str(self.out)
        return d


class _PolicyMethods:
    """Validation and construction of :class:`SequencePolicy` (its fields are made below)."""

    def __post_init__(self) -> None:
        check_policy(self)

    @classmethod
    def of(cls, params: dict[str, Any]) -> Any:
        """A policy from keyword arguments; an unknown name is a ConfigError naming it."""
        unknown = sorted(set(params) - set(POLICY))
        if unknown:
            raise ConfigError(
                unknown[0],
                f"not a policy of Corpus.from_sequences; choose from {', '.join(POLICY)}",
            )
        return cls(**params)


#: The record policies of :class:`PrepareConfig` for sequences given in memory
#: (``Corpus.from_sequences``): the same fields, defaults and meanings, validated on
#: construction; frozen.
SequencePolicy = make_dataclass(
    "SequencePolicy",
    [(f.name, f.type, _policy_field(f.name)) for f in fields(PrepareConfig) if f.name in POLICY],
    bases=(_PolicyMethods,),
    frozen=True,
)
SequencePolicy.__module__ = __name__


def check_policy(policy) -> None:
    """Validate the record policies of ``policy`` (a :class:`PrepareConfig` or
    :class:`SequencePolicy`): a :class:`~bioprune.errors.ConfigError` names the parameter."""
    if int(policy.max_length) < 1:
        raise ConfigError("max_length", f"must be at least 1 residue, got {policy.max_length}")
    object.__setattr__(policy, "max_length", int(policy.max_length))
    for param, choices in (("on_long", ON_LONG), ("on_invalid", ON_INVALID), ("dedup", DEDUP)):
        value = getattr(policy, param)
        if value not in choices:
            raise ConfigError(param, f"{value!r}: choose one of {', '.join(choices)}")


def check_alphabet(name: str) -> Any:
    """The alphabet called ``name``; an unknown name is a ConfigError about ``alphabet``."""
    from bioprune.data.alphabet import get_alphabet

    try:
        return get_alphabet(name)
    except ValueError as exc:
        raise ConfigError("alphabet", str(exc)) from None
