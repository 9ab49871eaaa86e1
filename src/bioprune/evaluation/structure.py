"""RNA secondary-structure formats -> 0-based base-pair lists.

Supported: dot-bracket strings (``()``, pseudoknot brackets ``[] {} <>`` and
``Aa``..``Zz`` letter pairs, unpaired ``. , : - _ ~``), bpseq files and CT
files. Every parser returns sorted ``(i, j)`` tuples with ``i < j``; errors name
the position, file and line.

>>> parse_dot_bracket("((..[[..))..]]")
[(0, 9), (1, 8), (4, 13), (5, 12)]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = [
    "CANONICAL_PAIRS",
    "canonical_pair_mask",
    "parse_dot_bracket",
    "read_bpseq",
    "read_ct",
    "read_structure_file",
]

#: Watson-Crick and wobble pairs (either order); T reads as U.
CANONICAL_PAIRS = frozenset({"AU", "UA", "GC", "CG", "GU", "UG"})

_OPEN = {"(": ")", "[": "]", "{": "}", "<": ">"}
_CLOSE = {c: o for o, c in _OPEN.items()}
_UNPAIRED = set(".,:-_~")


def parse_dot_bracket(structure: str) -> list[tuple[int, int]]:
    """Base pairs of a dot-bracket string (0-based, ``i < j``, sorted).

    Raises
    ------
    ValueError
        on an unmatched opening or closing bracket or an unknown character,
        naming its 1-based position.
    """
    stacks: dict[str, list[int]] = {}
    pairs: list[tuple[int, int]] = []
    for pos, c in enumerate(structure):
        if c in _UNPAIRED:
            continue
        if c in _OPEN or (c.isascii() and c.isupper()):
            stacks.setdefault(c, []).append(pos)
        elif c in _CLOSE or (c.isascii() and c.islower()):
            opener = _CLOSE.get(c, c.upper())
            stack = stacks.get(opener)
            if not stack:
                raise ValueError(f"unbalanced brackets: {c!r} at position {pos + 1} closes nothing")
            pairs.append((stack.pop(), pos))
        else:
            raise ValueError(
                f"character {c!r} at position {pos + 1} is not dot-bracket notation "
                "(use . for unpaired, () [] {} <> Aa..Zz for pairs)"
            )
    for opener, stack in stacks.items():
        if stack:
            raise ValueError(
                f"unbalanced brackets: {opener!r} at position {stack[-1] + 1} is never closed"
            )
    return sorted(pairs)


def _pairs_from_partners(
    partners: list[int], path: Path, lines: list[int]
) -> list[tuple[int, int]]:
    """1-based partner list (0 = unpaired) -> pairs, checking that pairing is mutual."""
    n = len(partners)
    pairs = []
    for i, j in enumerate(partners, start=1):
        if j == 0:
            continue
        if not 1 <= j <= n or j == i:
            raise ValueError(f"{path} line {lines[i - 1]}: base {i} pairs with {j}, out of range")
        if partners[j - 1] != i:
            raise ValueError(
                f"{path} line {lines[i - 1]}: base {i} pairs with {j} but base {j} pairs "
                f"with {partners[j - 1]}"
            )
        if i < j:
            pairs.append((i - 1, j - 1))
    return pairs


def read_bpseq(path: str | Path) -> tuple[str, list[tuple[int, int]]]:
    """``(sequence, pairs)`` of a bpseq file: lines ``index base partner`` (partner 0 = unpaired).

    Comment lines (``#``) and header lines that do not start with an integer
    (e.g. ``Filename:``) are skipped.
    """
    path = Path(path)
    bases: list[str] = []
    partners: list[int] = []
    lines: list[int] = []
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        fields = line.split()
        if not fields or line.startswith("#") or not fields[0].isdigit():
            continue
        if len(fields) != 3 or not fields[2].lstrip("-").isdigit():
            raise ValueError(
                f"{path} line {line_no}: expected 'index base partner', got {len(fields)} field(s)"
            )
        if int(fields[0]) != len(bases) + 1:
            raise ValueError(
                f"{path} line {line_no}: index {fields[0]} out of order (expected {len(bases) + 1})"
            )
        bases.append(fields[1])
        partners.append(int(fields[2]))
        lines.append(line_no)
    if not bases:
        raise ValueError(f"{path}: no base lines found; not a bpseq file")
    return "".join(bases), _pairs_from_partners(partners, path, lines)


def read_ct(path: str | Path) -> tuple[str, list[tuple[int, int]]]:
    """``(sequence, pairs)`` of the first structure in a CT (connectivity table) file.

    Header line ``N title``, then N lines ``index base prev next partner index``
    (partner 0 = unpaired).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8").splitlines()
    start = next((k for k, line in enumerate(text) if line.strip()), None)
    if start is None:
        raise ValueError(f"{path}: empty file; not a CT file")
    header = text[start].split()
    if not header or not header[0].isdigit():
        raise ValueError(f"{path} line {start + 1}: expected a header 'LENGTH title'")
    n = int(header[0])
    bases: list[str] = []
    partners: list[int] = []
    lines: list[int] = []
    for k in range(start + 1, len(text)):
        if len(bases) == n:
            break
        fields = text[k].split()
        if not fields:
            continue
        if len(fields) < 6 or not fields[0].isdigit() or not fields[4].isdigit():
            raise ValueError(
                f"{path} line {k + 1}: expected 'index base prev next partner index' "
                f"(integers but the base), got {len(fields)} field(s)"
            )
        bases.append(fields[1])
        partners.append(int(fields[4]))
        lines.append(k + 1)
    if len(bases) != n:
        raise ValueError(f"{path}: header announces {n} bases but the file holds {len(bases)}")
    return "".join(bases), _pairs_from_partners(partners, path, lines)


def read_structure_file(path: str | Path) -> tuple[str, list[tuple[int, int]]]:
    """Read a bpseq (``.bpseq``) or CT (``.ct``) file; other suffixes are sniffed."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"structure file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".bpseq":
        return read_bpseq(path)
    if suffix == ".ct":
        return read_ct(path)
    lines = path.read_text(encoding="utf-8").splitlines()
    first = next((ln.split() for ln in lines if ln.strip() and not ln.startswith("#")), [])
    # A CT header is 'N title' with a non-integer second field; bpseq lines are 3 fields.
    if len(first) == 3 and all(f.lstrip("-").isdigit() for f in (first[0], first[2])):
        return read_bpseq(path)
    return read_ct(path)


def canonical_pair_mask(sequence: str) -> np.ndarray:
    """(L, L) boolean matrix, True where bases i and j can form a Watson-Crick (A-U, G-C)
    or wobble (G-U) pair; other letters (N, modified bases) pair with nothing."""
    seq = np.array(list(sequence.upper().replace("T", "U")))
    mask = np.zeros((len(seq), len(seq)), dtype=bool)
    for pair in CANONICAL_PAIRS:
        mask |= (seq == pair[0])[:, None] & (seq == pair[1])[None, :]
    return mask
