"""Token vocabularies of RNA-FM and ESM-2, in their exact id order.

The id order matters: real RNA-FM and ESM-2 checkpoints index their embedding
and output matrices by these ids, so a model initialised here can later load
their weights with no remapping (method.md section 2).

Every sequence is framed as ``<cls> residues <eos>``; residues are single
characters, so encoding is a byte lookup table (no Python loop per residue).

Examples
--------
>>> rna = get_alphabet("rna")
>>> rna.encode("ACGU").tolist()
[4, 5, 6, 7]
>>> rna.frame(rna.encode("ACGU")).tolist()
[0, 4, 5, 6, 7, 2]
>>> rna.normalize("acgt")
'ACGU'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

__all__ = ["ALPHABETS", "Alphabet", "get_alphabet"]

#: Byte value in :attr:`Alphabet.byte_to_id` for characters outside the alphabet.
INVALID = 255


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _special_id(token: str) -> property:
    """A read-only property: the id of the special token ``token`` in ``self.tokens``."""
    return property(lambda self: self.tokens.index(token), doc=f"Id of {token}.")


@dataclass(frozen=True, eq=False)
class Alphabet:
    """A BioFM vocabulary.

    Parameters
    ----------
    name : "rna" or "protein".
    tokens : every token, index = token id.
    residues : the single-character tokens a sequence may contain.
    canonical : residues that random MLM replacements are drawn from
        (the standard nucleotides / amino acids; never a special token,
        never an ambiguity code or gap).
    unknown_residue : the residue written in place of an invalid character
        under ``--on-invalid replace`` (``N`` for RNA, ``X`` for protein).
    translate : input normalisation after upper-casing (RNA: ``T`` -> ``U``).
    """

    name: str
    tokens: tuple[str, ...]
    residues: str
    canonical: str
    unknown_residue: str
    translate: dict[str, str] = field(default_factory=dict)

    # ---- special token ids -------------------------------------------------
    cls_id = _special_id("<cls>")
    pad_id = _special_id("<pad>")
    eos_id = _special_id("<eos>")
    unk_id = _special_id("<unk>")
    mask_id = _special_id("<mask>")

    @property
    def special_ids(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.tokens) if t.startswith("<"))

    def __len__(self) -> int:
        return len(self.tokens)

    @cached_property
    def residue_ids(self) -> np.ndarray:
        """Ids of every residue token (int64)."""
        return _readonly(np.array([self.tokens.index(c) for c in self.residues], dtype=np.int64))

    @cached_property
    def canonical_ids(self) -> np.ndarray:
        """Ids that random MLM replacements are drawn from (int64)."""
        return _readonly(np.array([self.tokens.index(c) for c in self.canonical], dtype=np.int64))

    # ---- encoding ----------------------------------------------------------
    @cached_property
    def byte_to_id(self) -> np.ndarray:
        """uint8 table of 256 entries: ASCII byte of a *normalised* residue -> token id.

        Bytes that are not residues map to :data:`INVALID` (255).
        """
        table = np.full(256, INVALID, dtype=np.uint8)
        for c in self.residues:
            table[ord(c)] = self.tokens.index(c)
        return _readonly(table)

    @cached_property
    def normalize_table(self) -> dict[int, str]:
        """``str.translate`` table: lower -> upper case plus the alphabet's translations."""
        table: dict[int, str] = {}
        for lo in "abcdefghijklmnopqrstuvwxyz":
            table[ord(lo)] = lo.upper()
        for src, dst in self.translate.items():
            table[ord(src)] = dst
            table[ord(src.lower())] = dst
        return table

    def normalize(self, sequence: str) -> str:
        """Upper-case and apply the alphabet's translations (RNA: T -> U)."""
        return sequence.translate(self.normalize_table)

    def invalid_positions(self, normalized: str) -> np.ndarray:
        """0-based positions of characters that are not residues of this alphabet."""
        raw = np.frombuffer(normalized.encode("latin-1", errors="replace"), dtype=np.uint8)
        return np.flatnonzero(self.byte_to_id[raw] == INVALID)

    def encode(self, normalized: str) -> np.ndarray:
        """Residue token ids (uint8) of a normalised, valid sequence; no framing.

        Raises
        ------
        ValueError
            if the sequence holds a character outside the alphabet.
        """
        raw = np.frombuffer(normalized.encode("latin-1", errors="replace"), dtype=np.uint8)
        ids = self.byte_to_id[raw]
        bad = np.flatnonzero(ids == INVALID)
        if bad.size:
            pos = int(bad[0])
            raise ValueError(
                f"character {normalized[pos]!r} at position {pos + 1} is not in the "
                f"{self.name} alphabet ({self.residues})"
            )
        return ids

    def decode(self, residue_ids: np.ndarray) -> str:
        """Inverse of :meth:`encode` (residue ids only, no framing)."""
        return "".join(self.tokens[int(i)] for i in residue_ids)

    def frame(self, residue_ids: np.ndarray) -> np.ndarray:
        """``<cls> residues <eos>`` as int64 ids."""
        out = np.empty(len(residue_ids) + 2, dtype=np.int64)
        out[0] = self.cls_id
        out[1:-1] = residue_ids
        out[-1] = self.eos_id
        return out


_RNA_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "A", "C", "G", "U", "R", "Y", "K", "M", "S", "W", "B", "D", "H", "V", "N", "-",
    "<null_1>", "<null_2>", "<null_3>", "<null_4>", "<mask>",
)  # fmt: skip

_PROTEIN_TOKENS = (
    "<cls>", "<pad>", "<eos>", "<unk>",
    "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K", "Q", "N", "F", "Y",
    "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>", "<mask>",
)  # fmt: skip

RNA = Alphabet(
    name="rna",
    tokens=_RNA_TOKENS,
    residues="ACGURYKMSWBDHVN-",
    canonical="ACGU",
    unknown_residue="N",
    translate={"T": "U"},
)

PROTEIN = Alphabet(
    name="protein",
    tokens=_PROTEIN_TOKENS,
    residues="LAGVSERTIDPKQNFYMHWCXBUZO.-",
    canonical="ACDEFGHIKLMNPQRSTVWY",
    unknown_residue="X",
)

ALPHABETS: dict[str, Alphabet] = {"rna": RNA, "protein": PROTEIN}


def get_alphabet(name: str) -> Alphabet:
    """Look up an alphabet by name (``"rna"`` or ``"protein"``)."""
    try:
        return ALPHABETS[name]
    except KeyError:
        raise ValueError(f"unknown alphabet {name!r}; choose one of {sorted(ALPHABETS)}") from None
