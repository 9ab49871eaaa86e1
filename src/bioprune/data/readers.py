"""Streaming readers: sequence files -> ``Record(id, description, sequence, number)``.

Every reader is a generator that holds one block of the file (about 1 MiB, or
one pyarrow batch) at a time, so memory does not grow with the file. Readers
only parse text; normalising and validating residues is ``prepare``'s job.

Formats (by extension, each optionally ``.gz``; ``--format`` overrides):

==========  ======================================  =================================
format      extensions                              id of a record
==========  ======================================  =================================
``fasta``   .fa .fasta .fna .fas .ffn .faa          first word of the header line
``text``    .txt .seq (one sequence per line)       the 1-based line number
``csv``     .csv                                    ``id_column``, else the row number
``tsv``     .tsv                                    ``id_column``, else the row number
``parquet`` .parquet                                ``id_column``, else the row number
==========  ======================================  =================================

``Record.number`` is the 1-based position of the record in its file (the
FASTA record count, the line number of a text file, the data row of a table
not counting the header), so error messages point at the exact record.
All whitespace inside a sequence (line breaks, CR of CRLF files, spaces,
tabs) is removed, as seqkit does. LF, CRLF and CR-only (classic Mac) line
endings read the same.

Damaged input is an :class:`~bioprune.errors.InputError` naming the file, the
byte offset and (FASTA/text) the record or line: damaged gzip data (truncated,
bad CRC, trailing bytes after the last member other than NUL padding), a
bzip2/xz/zstd file (only plain and gzip are read), a NUL byte or invalid
UTF-8 in a FASTA/text file (a binary file). See :class:`_CountingReader`.

Examples
--------
>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "x.fa"
>>> _ = p.write_bytes(b">s1 a tRNA\\r\\nacgu\\r\\nAC\\r\\n>s2\\nGG\\n")
>>> [tuple(r) for r in read_records(p)]
[('s1', 'a tRNA', 'acguAC', 1), ('s2', '', 'GG', 2)]
"""

from __future__ import annotations

import codecs
import gzip
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

from bioprune.errors import InputError, reading

__all__ = [
    "FORMATS",
    "Record",
    "detect_format",
    "read_fasta",
    "read_records",
    "read_table",
    "read_text",
]

#: Extensions of each format (lower case, without ``.gz``).
FORMATS: dict[str, tuple[str, ...]] = {
    "fasta": (".fa", ".fasta", ".fna", ".fas", ".ffn", ".faa"),
    "text": (".txt", ".seq"),
    "csv": (".csv",),
    "tsv": (".tsv",),
    "parquet": (".parquet",),
}

#: Bytes read per block; a record longer than this simply spans blocks.
BLOCK_BYTES = 1 << 20

#: Rows per pyarrow batch for tables.
TABLE_BATCH_ROWS = 65_536

NEWLINE = b"\n"

#: Whitespace removed from sequences (``bytes.translate`` delete set).
_WHITESPACE = b" \t\r\n\v\f"

#: Called with the number of *on-disk* bytes consumed since the last call
#: (compressed bytes for ``.gz``), so a progress bar can use file sizes as total.
ProgressCallback = Callable[[int], None]


class Record(NamedTuple):
    """One input record, as parsed (not yet normalised or validated)."""

    id: str
    description: str
    sequence: str
    number: int


def _noop(_: int) -> None:
    return None


#: Compressed-file suffixes that are named and refused (only gzip is read).
_OTHER_COMPRESSION = {
    ".bz2": ("bzip2", "bunzip2"),
    ".xz": ("xz", "unxz"),
    ".zst": ("zstd", "unzstd"),
}


def detect_format(path: str | Path, override: str | None = None) -> str:
    """The format of ``path``: ``override`` if given, else from its extension.

    A ``.bz2``/``.xz``/``.zst`` name is refused with the tool that decompresses it
    (only gzip is read; the content is checked too, see :func:`_is_gzip`).

    Raises
    ------
    ValueError
        for an unknown ``override`` or extension (the message lists the known ones).
    """
    if override is not None:
        if override not in FORMATS:
            raise ValueError(f"unknown --format {override!r}; choose one of {', '.join(FORMATS)}")
        return override
    name = Path(path).name.lower()
    for suffix, (kind, tool) in _OTHER_COMPRESSION.items():
        if name.endswith(suffix):
            raise InputError(
                path,
                f"is {kind}-compressed; bioprune reads plain or gzip-compressed files only: "
                f"decompress it first ({tool} {Path(path).name}) or recompress it with gzip",
            )
    if name.endswith(".gz"):
        name = name[:-3]
    for fmt, exts in FORMATS.items():
        if name.endswith(exts):
            return fmt
    known = " ".join(e for exts in FORMATS.values() for e in exts)
    raise ValueError(
        f"{path}: cannot tell the format from the extension (known: {known}, each "
        f"optionally .gz); pass --format {{{','.join(FORMATS)}}}"
    )


#: Leading bytes of compressed formats: gzip is read; the others are named and refused.
_MAGIC: tuple[tuple[bytes, str, str], ...] = (
    (b"\x1f\x8b", "gzip", "gunzip"),
    (b"BZh", "bzip2", "bunzip2"),
    (b"\xfd7zXZ\x00", "xz", "unxz"),
    (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
)


def _compression(path: Path) -> str | None:
    """``"gzip"``, ``"bzip2"``, ``"xz"``, ``"zstd"`` by content (not name), or None."""
    with open(path, "rb") as fh:
        head = fh.read(6)
    for magic, name, _ in _MAGIC:
        if head.startswith(magic) and (name != "bzip2" or head[3:4].isdigit()):
            return name
    return None


def _is_gzip(path: Path) -> bool:
    # By content, not name, so a mislabelled file still reads.
    comp = _compression(path)
    if comp not in (None, "gzip"):
        tool = next(t for _, n, t in _MAGIC if n == comp)
        raise InputError(
            path,
            f"is {comp}-compressed; bioprune reads plain or gzip-compressed files only: "
            f"decompress it first ({tool} {path.name}) or recompress it with gzip",
        )
    return comp == "gzip"


def _gzip_reason(exc: BaseException, data_bytes: int) -> str:
    text = str(exc)
    if isinstance(exc, EOFError):
        return "truncated: the compressed stream ends before its end-of-stream marker"
    if "CRC check failed" in text:
        return "CRC check failed (the data is corrupt)"
    if "Incorrect length" in text:
        return "the length recorded at the end of a gzip member does not match (corrupt data)"
    if "Not a gzipped file" in text and data_bytes:
        return "trailing garbage after the last gzip member"
    return f"corrupt compressed data ({text or type(exc).__name__})"


#: Raised by a damaged gzip stream (zlib.error and gzip.BadGzipFile are OSError/Exception).
_GZIP_ERRORS = (EOFError, OSError, zlib.error)


class _CountingReader:
    """Reads blocks from a (possibly gzip) file; reports raw bytes consumed.

    Three guards sit here, at the I/O boundary, so every reader shares them:

    * a damaged gzip stream (truncated, bad CRC or length, trailing garbage
      after the last member, corrupt deflate data) is an :class:`InputError`
      naming the file, the uncompressed byte offset where the data stops and,
      for FASTA/text, the record or line there. Trailing NUL padding after the
      last member is ignored, as ``gzip -d`` and Python's ``gzip`` module do;
      any other trailing bytes are an error (``gzip -d`` only warns, but
      reading on would silently accept a file that was damaged or appended to);
    * with ``text=True``, a NUL byte or invalid UTF-8 (a binary file) is an
      ``InputError`` naming the byte offset in the (uncompressed) data and the
      record or line;
    * with ``text=True``, line endings are normalised to ``\\n``: CRLF and
      CR-only (classic Mac) files read like LF files.

    A reader sets ``locate`` so that these errors can say which record or
    line they are in (computed only when an error happens).
    """

    #: Bytes per ``read1`` from a gzip stream: data before a failure is still counted.
    GZIP_STEP = 1 << 16

    def __init__(
        self,
        path: Path,
        progress: ProgressCallback,
        *,
        text: bool = True,
    ):
        self.path = path
        gz = _is_gzip(path)
        self.raw: BinaryIO = open(path, "rb")
        self.fh = gzip.GzipFile(fileobj=self.raw) if gz else self.raw
        self.gzip = gz
        self.progress = progress
        self.text = text
        #: Set by a reader: given the normalised data of this block before an error, where
        #: the error is (", record 12", ", line 7"); only called on the error path.
        self.locate: Callable[[bytes], str] | None = None
        self._pos = 0
        self.data_bytes = 0  # uncompressed bytes delivered so far
        self._carry_cr = False
        self._utf8 = codecs.getincrementaldecoder("utf-8")("strict")

    def _read_block(self, n: int) -> tuple[bytes, BaseException | None]:
        if not self.gzip:
            return self.fh.read(n), None
        parts: list[bytes] = []
        got = 0
        try:
            while got < n:
                part = self.fh.read1(min(self.GZIP_STEP, n - got))
                if not part:
                    break
                parts.append(part)
                got += len(part)
        except _GZIP_ERRORS as exc:
            if isinstance(exc, OSError) and exc.errno is not None:
                raise  # a real I/O error (disk, permission) keeps its own message
            return b"".join(parts), exc
        return b"".join(parts), None

    def read(self, n: int | None = None) -> bytes:
        """The next block (``b""`` only at the end of the data)."""
        n = BLOCK_BYTES if n is None else n
        while True:
            block, failure = self._read_block(n)
            pos = self.raw.tell()
            self.progress(pos - self._pos)
            self._pos = pos
            if self.text:
                self._check_text(block)
            if failure is not None:
                self._fail(
                    f"damaged gzip data: {_gzip_reason(failure, self.data_bytes + len(block))}",
                    block,
                    "the file is truncated, corrupt or has bytes appended: download or "
                    "compress it again",
                )
            self.data_bytes += len(block)
            if not self.text:
                return block
            out = self._newlines(block, eof=not block)
            if out or not block:
                return out

    def _where(self, raw_prefix: bytes) -> str:
        """The record or line at the end of ``raw_prefix`` (undelivered data of this block)."""
        if self.locate is None:
            return ""
        return self.locate(raw_prefix.replace(b"\r\n", b"\n").replace(b"\r", b"\n"))

    def _fail(self, reason: str, raw_prefix: bytes, advice: str) -> None:
        offset = self.data_bytes + len(raw_prefix)
        data = "uncompressed byte offset" if self.gzip else "byte offset"
        raise InputError(
            self.path, f"{reason} ({data} {offset:,}{self._where(raw_prefix)}); {advice}"
        )

    def _check_text(self, block: bytes) -> None:
        nul = block.find(b"\0")
        if not block.isascii() or self._utf8.getstate()[0]:
            try:
                self._utf8.decode(block[: nul if nul >= 0 else len(block)], final=not block)
            except UnicodeDecodeError as exc:
                pending = len(exc.object) - (nul if nul >= 0 else len(block))
                at = max(exc.start - pending, 0)
                self._fail(
                    f"byte 0x{exc.object[exc.start]:02x} is not UTF-8 text",
                    block[:at],
                    "a binary file, or text in another encoding (convert it with iconv -t UTF-8)?",
                )
        if nul >= 0:
            self._fail(
                "a NUL byte",
                block[:nul],
                "this is a binary file, not sequence text (compressed with something other "
                "than gzip, or the wrong file?)",
            )

    def _newlines(self, block: bytes, eof: bool) -> bytes:
        # CRLF -> LF, then a lone CR -> LF. A CR last in a block may be the first half of
        # a CRLF split across blocks: it is held back and decided with the next block.
        if self._carry_cr:
            block = b"\r" + block
            self._carry_cr = False
        if b"\r" not in block:
            return block
        if not eof and block.endswith(b"\r"):
            self._carry_cr = True
            block = block[:-1]
        return block.replace(b"\r\n", b"\n").replace(b"\r", b"\n")

    def close(self) -> None:
        if self.fh is not self.raw:
            self.fh.close()
        self.raw.close()


def _decode(raw: bytes) -> str:
    # ASCII is the fast, common case; anything else is decoded so that an
    # invalid character is reported as the user sees it.
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="replace")


def read_fasta(path: str | Path, progress: ProgressCallback = _noop) -> Iterator[Record]:
    """Records of a FASTA file (wrapped lines, CRLF, blank lines, ``.gz``).

    The id is the header's first whitespace-separated word, the description
    the rest of the header. A header with no id (``>`` alone, or ``> text``)
    and text before the first header are errors naming the file and record.
    A header with no sequence lines yields a record with an empty sequence
    (``prepare`` skips and counts it).

    The file is split at ``\\n>`` one block at a time, so the per-record work is
    a few C-level byte operations, not a Python loop per line.
    """
    path = Path(path)
    reader = _CountingReader(path, progress)
    number = 0
    buf = bytearray()

    def locate(prefix: bytes) -> str:
        # records yielded + record starts delivered but not yet parsed + those in `prefix`
        starts = number + buf.count(b"\n>") + buf.startswith(b">")
        starts += prefix.count(b"\n>") + (prefix.startswith(b">") and buf[-1:] in (b"\n", b""))
        return f", record {starts}" if starts else ", before the first record"

    reader.locate = locate
    try:
        started = False
        eof = False
        while not eof:
            block = reader.read()
            eof = not block
            # A boundary may straddle blocks: "\n" last in buf, ">" first in block.
            searched_from = max(len(buf) - 1, 0)
            buf += block
            if not started:
                searched_from = 0
                stripped = buf.lstrip(_WHITESPACE)
                if not stripped and not eof:
                    continue
                if stripped and not stripped.startswith(b">"):
                    skipped = len(buf) - len(stripped)
                    line = buf.count(b"\n", 0, skipped) + 1
                    raise ValueError(
                        f"{path}: line {line} is not a FASTA header (a FASTA file starts "
                        f"with '>'); pass --format text for one sequence per line"
                    )
                del buf[: len(buf) - len(stripped)]
                started = True
            if eof:
                cut = len(buf)
            else:
                # Only complete records (up to the last line that starts with '>') are parsed.
                cut = buf.rfind(b"\n>", searched_from) + 1
                if cut <= 0:
                    continue
            if cut == 0:
                break
            chunk = bytes(buf[:cut])
            del buf[:cut]
            # chunk starts with '>'; each piece after the split is one record.
            for piece in chunk[1:].split(b"\n>"):
                number += 1
                header, _, body = piece.partition(b"\n")
                header_text = _decode(header.rstrip())
                words = header_text.split(None, 1)
                if not header_text or header_text[0].isspace():
                    raise ValueError(
                        f"{path}: record {number} has an empty id (header {'>' + header_text!r}); "
                        "every FASTA header needs an id right after '>'"
                    )
                desc = words[1] if len(words) > 1 else ""
                yield Record(words[0], desc, _decode(body.translate(None, _WHITESPACE)), number)
    finally:
        reader.close()


def read_text(path: str | Path, progress: ProgressCallback = _noop) -> Iterator[Record]:
    """One sequence per line; the id is the 1-based line number (as ``sed -n Np``).

    Blank lines are yielded as empty records (``prepare`` skips and counts
    them) so that line numbers stay those of the file.
    """
    path = Path(path)
    reader = _CountingReader(path, progress)
    number = 0
    tail = b""

    def locate(prefix: bytes) -> str:
        # every complete line delivered was yielded before the next block is read
        return f", line {number + 1 + prefix.count(NEWLINE)}"

    reader.locate = locate
    try:
        seen_content = False
        while True:
            block = reader.read()
            if not block:
                lines = [tail] if tail else []
            else:
                lines = (tail + block).split(b"\n")
                tail = lines.pop()
            for line in lines:
                number += 1
                seq = line.translate(None, _WHITESPACE)
                if not seen_content and seq:
                    seen_content = True
                    if seq.startswith(b">"):
                        raise ValueError(
                            f"{path}: line {number} starts with '>', so this looks like FASTA; "
                            "pass --format fasta"
                        )
                yield Record(str(number), "", _decode(seq), number)
            if not block:
                break
    finally:
        reader.close()


def _missing_column(path: Path, kind: str, name: str, columns: list[str]) -> ValueError:
    return ValueError(
        f"{path}: no column {name!r} ({kind}); its columns are: {', '.join(map(repr, columns))}"
    )


def read_table(
    path: str | Path,
    fmt: str,
    column: str | None,
    id_column: str | None = None,
    progress: ProgressCallback = _noop,
) -> Iterator[Record]:
    """Rows of a CSV, TSV or Parquet file, streamed in batches.

    Parameters
    ----------
    fmt : "csv", "tsv" or "parquet".
    column : the column holding sequences (required).
    id_column : the column holding ids; else the id is the 1-based row number
        (header not counted). Values are read as text, so ``007`` stays ``007``.

    A null sequence is an empty record; a null or empty id is an error.
    """

    path = Path(path)
    if column is None:
        raise ValueError(f"{path}: a {fmt} input needs --column NAME (the sequence column)")
    wanted = [column] + ([id_column] if id_column and id_column != column else [])
    if fmt == "parquet":
        batches = _parquet_batches(path, column, id_column, wanted)
    elif fmt in ("csv", "tsv"):
        batches = _csv_batches(path, fmt, column, id_column, wanted)
    else:
        raise ValueError(f"read_table cannot read format {fmt!r}")

    return _table_records(path, batches, column, id_column, progress)


def _table_records(path, batches, column, id_column, progress) -> Iterator[Record]:
    import pyarrow as pa

    number = 0
    for batch, consumed in batches:
        progress(consumed)
        seqs = batch.column(column)
        if seqs.type != pa.string():
            seqs = seqs.cast(pa.string())
        seq_list = seqs.to_pylist()
        if id_column:
            ids = batch.column(id_column)
            if ids.type != pa.string():
                ids = ids.cast(pa.string())
            id_list = ids.to_pylist()
        else:
            id_list = range(number + 1, number + 1 + len(seq_list))
        for rid, seq in zip(id_list, seq_list, strict=True):
            number += 1
            if rid is None or rid == "":
                raise ValueError(f"{path}: row {number} has an empty id in column {id_column!r}")
            text = "" if seq is None else seq.translate(_STR_WHITESPACE)
            yield Record(str(rid), "", text, number)


_STR_WHITESPACE = {ord(c): None for c in _WHITESPACE.decode()}


def _parquet_batches(path, column, id_column, wanted):
    import pyarrow.parquet as pq

    with reading(path, "Parquet input"):
        pf = pq.ParquetFile(path)
        names = pf.schema_arrow.names
    for name, kind in ((column, "--column"), (id_column, "--id-column")):
        if name is not None and name not in names:
            raise _missing_column(path, kind, name, names)
    size = path.stat().st_size
    total = max(pf.metadata.num_rows, 1)

    def gen():
        done = 0
        batches = pf.iter_batches(batch_size=TABLE_BATCH_ROWS, columns=wanted)
        while True:
            with reading(path, "Parquet input"):
                batch = next(batches, None)
            if batch is None:
                break
            # Parquet has no byte position per batch: progress is the row fraction of the file.
            before = done * size // total
            done += batch.num_rows
            yield batch, done * size // total - before

    return gen()


class _ArrowSource:
    """A read-only file object over a :class:`_CountingReader` for ``pyarrow.PythonFile``."""

    def __init__(self, reader: _CountingReader):
        self.reader = reader
        self.closed = False

    def read(self, n: int = -1) -> bytes:
        return self.reader.read(BLOCK_BYTES if n is None or n < 0 else n)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def tell(self) -> int:
        return self.reader.data_bytes

    def close(self) -> None:
        self.closed = True


def _csv_batches(path, fmt, column, id_column, wanted):
    import pyarrow as pa
    import pyarrow.csv as pcsv

    parse = pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
    read = pcsv.ReadOptions(block_size=1 << 22)

    def open_stream():
        # gzip is decompressed by Python's gzip module (not Arrow's codec), so a damaged
        # .csv.gz fails exactly as a damaged .fa.gz does (see _CountingReader).
        reader = _CountingReader(path, _noop, text=False)
        return reader, pa.PythonFile(_ArrowSource(reader), mode="r")

    reader, stream = open_stream()
    try:
        probe = pcsv.open_csv(stream, read_options=read, parse_options=parse)
        names = probe.schema.names
    except pa.ArrowInvalid as exc:
        raise ValueError(f"{path}: cannot parse as {fmt.upper()}: {exc}") from None
    finally:
        reader.close()
    for name, kind in ((column, "--column"), (id_column, "--id-column")):
        if name is not None and name not in names:
            raise _missing_column(path, kind, name, names)

    def gen():
        reader, stream = open_stream()
        raw = reader.raw
        try:
            convert = pcsv.ConvertOptions(
                include_columns=wanted,
                column_types={c: pa.string() for c in wanted},
                strings_can_be_null=False,
            )
            csv_reader = pcsv.open_csv(
                stream, read_options=read, parse_options=parse, convert_options=convert
            )
            pos = 0
            while True:
                try:
                    batch = csv_reader.read_next_batch()
                except StopIteration:
                    break
                except pa.ArrowInvalid as exc:
                    raise ValueError(f"{path}: cannot parse as {fmt.upper()}: {exc}") from None
                now = raw.tell()
                yield batch, now - pos
                pos = now
        finally:
            reader.close()

    return gen()


def read_records(
    path: str | Path,
    fmt: str | None = None,
    *,
    column: str | None = None,
    id_column: str | None = None,
    progress: ProgressCallback = _noop,
) -> Iterator[Record]:
    """Records of any supported file; ``fmt`` None detects it from the extension.

    Raises
    ------
    FileNotFoundError
        if ``path`` does not exist.
    ValueError
        for an unknown format, a malformed file, or a missing column; the
        message names the file (and the record where there is one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"input {path} does not exist or is not a file")
    fmt = detect_format(path, fmt)
    if fmt == "parquet" and _is_gzip(path):
        raise ValueError(
            f"{path}: Parquet is compressed internally and must be seekable; gunzip it first"
        )
    if fmt in ("csv", "tsv", "parquet"):
        return read_table(path, fmt, column, id_column, progress)
    if column is not None or id_column is not None:
        raise ValueError(f"{path}: --column/--id-column apply to csv, tsv and parquet, not {fmt}")
    if fmt == "fasta":
        return read_fasta(path, progress)
    return read_text(path, progress)
