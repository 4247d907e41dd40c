"""The file behind an export's signed URL, read as a stream: decompressed and parsed in chunks.

Customer.io does not document this file (customerio-api.md §3.9 and §9: "CSV? gzip?"). The kit
assumes the most likely format, a CSV with a header row of column names (identifiers, then one
column per attribute), gzip-compressed, and keeps every part of that assumption in `ExportFormat`
so a different reality is a one-line change here, not a rewrite. Compression is detected from
the first bytes by default, so a plain CSV (or one the server sends with `Content-Encoding: gzip`,
which httpx undoes) reads too.

Nothing here holds the whole file: bytes are decompressed as they arrive, cut at the last
complete CSV record, and each block (a few MB) becomes one pyarrow table of string columns.
A file that is truncated or damaged raises `CorruptExportFile`; callers fetch it again.
"""

from __future__ import annotations

import csv
import io
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Literal

import pyarrow as pa
import pyarrow.csv as pacsv

from ..errors import CioMaveraError

__all__ = ["CorruptExportFile", "ExportFormat", "DEFAULT_FORMAT", "csv_tables", "decompressed"]

_GZIP_MAGIC = b"\x1f\x8b"
_BOM = b"\xef\xbb\xbf"
_OUT_BYTES = 4 << 20  # decompressed bytes produced per step


class CorruptExportFile(CioMaveraError):
    """An export file that cannot be read to its end: truncated, damaged, or not the assumed format."""


@dataclass(frozen=True)
class ExportFormat:
    """The assumed layout of an export file (UNDOCUMENTED upstream: change it here if reality differs)."""

    # "auto": gzip when the file starts with gzip's magic bytes, else plain text.
    compression: Literal["auto", "gzip", "none"] = "auto"
    delimiter: str = ","
    quote_char: str = '"'
    # Field values read as missing. An empty attribute and a missing one look alike in a CSV.
    null_values: tuple[str, ...] = ("",)
    # Header names -> the kit's names, for a header that spells identifiers differently.
    rename: dict[str, str] = field(default_factory=dict)
    # Decompressed bytes parsed into one table (memory per chunk is a few times this).
    block_bytes: int = 16 << 20
    # Whether the export's `total` counts the file's data rows; when it does, a file with another
    # number of rows is refetched as truncated. UNVERIFIED: set False if live totals mean otherwise.
    total_counts_rows: bool = True


DEFAULT_FORMAT = ExportFormat()


def decompressed(chunks: Iterable[bytes], compression: str = "auto") -> Iterator[bytes]:
    """The bytes of `chunks` decompressed as they arrive (concatenated gzip members included)."""
    stream = iter(chunks)
    first = b""
    for chunk in stream:
        first += chunk
        if len(first) >= 2:
            break
    if not first:
        return
    gzipped = compression == "gzip" or (compression == "auto" and first.startswith(_GZIP_MAGIC))
    if not gzipped:
        yield first
        yield from stream
        return
    yield from _gunzip(_prepend(first, stream))


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


def _gunzip(chunks: Iterable[bytes]) -> Iterator[bytes]:
    inflater = zlib.decompressobj(wbits=31)
    fed = False  # whether the current gzip member has begun
    try:
        for chunk in chunks:
            while chunk:
                fed = True
                # At most _OUT_BYTES at a time: a highly compressed chunk never inflates at once.
                out = inflater.decompress(chunk, _OUT_BYTES)
                if out:
                    yield out
                if inflater.unconsumed_tail:
                    chunk = inflater.unconsumed_tail
                    continue
                if not inflater.eof:
                    break
                # Another gzip member may follow: concatenated gzip files are valid gzip.
                chunk = inflater.unused_data
                inflater = zlib.decompressobj(wbits=31)
                fed = False
                if chunk and not _GZIP_MAGIC.startswith(chunk[:2]):
                    raise CorruptExportFile("bytes after the end of the gzip stream")
        tail = inflater.flush()
        if tail:
            yield tail
    except zlib.error as exc:
        raise CorruptExportFile(f"the gzip stream is damaged ({exc})") from None
    if fed and not inflater.eof:
        raise CorruptExportFile("the file ends before its gzip stream does (truncated download)")


def _record_end(buffer: bytes | bytearray, quote: bytes, limit: int | None = None) -> int:
    """Index just past the last complete record in `buffer[:limit]` (0 if there is none).

    A newline ends a record when it is outside quotes: an even number of quote characters before
    it (an escaped quote is two). `buffer` starts at a record boundary.
    """
    pos = len(buffer) if limit is None else min(limit, len(buffer))
    while True:
        newline = buffer.rfind(b"\n", 0, pos)
        if newline < 0:
            return 0
        if buffer.count(quote, 0, newline) % 2 == 0:
            return newline + 1
        pos = newline


def _header(line: bytes, fmt: ExportFormat) -> list[str]:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        raise CorruptExportFile("the header row is not UTF-8") from None
    rows = list(csv.reader(io.StringIO(text), delimiter=fmt.delimiter, quotechar=fmt.quote_char))
    names = [fmt.rename.get(n.strip(), n.strip()) for n in (rows[0] if rows else [])]
    if not names or any(not n for n in names):
        raise CorruptExportFile("the file has no header row of column names (or an empty name)")
    if len(set(names)) != len(names):
        raise CorruptExportFile("the header row names a column twice")
    return names


class _Parser:
    """pyarrow's CSV reader for blocks that share one header; every column read as a string."""

    def __init__(self, names: list[str], fmt: ExportFormat) -> None:
        self.names = names
        self.read = pacsv.ReadOptions(column_names=names, block_size=max(1 << 20, fmt.block_bytes))
        self.parse = pacsv.ParseOptions(delimiter=fmt.delimiter, quote_char=fmt.quote_char,
                                        newlines_in_values=True)
        self.convert = pacsv.ConvertOptions(column_types={n: pa.string() for n in names},
                                            null_values=list(fmt.null_values),
                                            strings_can_be_null=True,
                                            quoted_strings_can_be_null=True)

    def table(self, block: bytes) -> pa.Table:
        try:
            return pacsv.read_csv(io.BytesIO(block), read_options=self.read,
                                  parse_options=self.parse, convert_options=self.convert)
        except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
            raise CorruptExportFile(f"a row does not fit the header ({str(exc)[:160]})") from None


def csv_tables(chunks: Iterable[bytes], fmt: ExportFormat = DEFAULT_FORMAT) -> Iterator[pa.Table]:
    """Tables of string columns (one per block of `fmt.block_bytes`) from raw export-file bytes.

    The header row names the columns; a file with a header and no rows yields nothing.
    """
    quote = fmt.quote_char.encode()
    buffer = bytearray()
    parser: _Parser | None = None
    for piece in decompressed(chunks, fmt.compression):
        buffer += piece
        if parser is None:
            if buffer.startswith(_BOM):
                del buffer[:len(_BOM)]
            end = _first_record(buffer, quote)
            if not end:
                continue
            parser = _Parser(_header(bytes(buffer[:end]), fmt), fmt)
            del buffer[:end]
        while len(buffer) >= fmt.block_bytes:
            # Blocks of about block_bytes: the last record end inside it, or past it for a record
            # longer than a block.
            end = _record_end(buffer, quote, fmt.block_bytes) or _first_record(buffer, quote)
            if not end:
                break
            yield parser.table(bytes(buffer[:end]))
            del buffer[:end]
    if parser is None:
        if not buffer.strip():
            raise CorruptExportFile("the file is empty (not even a header row)")
        if buffer.count(quote) % 2:
            raise CorruptExportFile("the file ends inside its header row (truncated download)")
        _header(bytes(buffer), fmt)  # a header without a newline and no rows: valid, and empty
        return
    if buffer.strip():
        if buffer.count(quote) % 2:
            raise CorruptExportFile("the file ends inside a quoted value (truncated download)")
        yield parser.table(bytes(buffer) if buffer.endswith(b"\n") else bytes(buffer) + b"\n")


def _first_record(buffer: bytes | bytearray, quote: bytes) -> int:
    """Index just past the first complete record in `buffer` (0 if none has ended yet)."""
    pos = 0
    while True:
        newline = buffer.find(b"\n", pos)
        if newline < 0:
            return 0
        if buffer.count(quote, 0, newline) % 2 == 0:
            return newline + 1
        pos = newline + 1
