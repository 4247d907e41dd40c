"""The export-file parser on its own: gzip'd CSV in any chunking, damage detected, knobs honoured."""

from __future__ import annotations

import csv
import gzip
import io

import pyarrow as pa
import pytest

from cio_mavera.customerio.export_files import (
    CorruptExportFile,
    ExportFormat,
    csv_tables,
    decompressed,
)

SMALL_BLOCKS = ExportFormat(block_bytes=4096)

ROWS = [["cio_id", "id", "email", "note", "mrr"]] + [
    [f"c{i:05d}", str(i) if i % 3 else "", f"p{i}@example.com",
     'she said "hi",\nthen left' if i % 7 == 0 else ("1,200 seats" if i % 2 else "plain"),
     "" if i % 5 == 0 else f"{i}.99"]
    for i in range(3000)
]


def _csv(rows: list[list[str]], **kw: str) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator=kw.get("end", "\n"), delimiter=kw.get("delimiter", ",")).writerows(rows)
    return out.getvalue().encode()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _read(data: bytes, size: int = 1000, fmt: ExportFormat = SMALL_BLOCKS) -> pa.Table:
    tables = list(csv_tables(_chunks(data, size), fmt))
    return pa.concat_tables(tables)


def _expected() -> pa.Table:
    header, *rows = ROWS
    return pa.table({name: pa.array([r[i] or None for r in rows], pa.string())
                     for i, name in enumerate(header)})


@pytest.mark.parametrize("size", [1, 7, 1000, 65536, 10**7])
def test_gzip_csv_reads_the_same_in_any_chunking(size: int) -> None:
    table = _read(gzip.compress(_csv(ROWS)), size)
    assert table.equals(_expected())


def test_quoted_commas_newlines_and_quotes_survive_block_boundaries() -> None:
    table = _read(gzip.compress(_csv(ROWS)), 333, ExportFormat(block_bytes=1 << 20))
    notes = table.column("note").to_pylist()
    assert notes[0] == 'she said "hi",\nthen left' and notes[1] == "1,200 seats"
    # 4 KB blocks cut the 3,000 rows into many tables; no row is split or lost.
    assert len(list(csv_tables(_chunks(gzip.compress(_csv(ROWS)), 333), SMALL_BLOCKS))) > 10


def test_every_column_is_a_string_and_empty_fields_are_missing() -> None:
    table = _read(gzip.compress(_csv(ROWS)))
    assert all(field.type == pa.string() for field in table.schema)
    assert table.column("id")[0].as_py() is None and table.column("mrr")[0].as_py() is None
    assert table.column("mrr")[1].as_py() == "1.99"  # never a number


def test_plain_csv_is_detected_and_read() -> None:
    assert _read(_csv(ROWS)).equals(_expected())


def test_concatenated_gzip_members_read_as_one_file() -> None:
    header, *rows = ROWS
    data = gzip.compress(_csv([header, *rows[:1000]])) + gzip.compress(_csv(rows[1000:]))
    assert _read(data, 777).equals(_expected())


def test_bom_and_crlf_line_ends_are_read() -> None:
    data = b"\xef\xbb\xbf" + _csv(ROWS, end="\r\n")
    table = _read(gzip.compress(data))
    assert table.schema.names == ROWS[0]
    assert table.column("mrr")[1].as_py() == "1.99"


def test_a_file_with_only_a_header_has_no_rows() -> None:
    assert list(csv_tables([gzip.compress(b"cio_id,id,email\n")])) == []
    assert list(csv_tables([b"cio_id,id,email"])) == []


def test_truncated_gzip_is_corrupt() -> None:
    data = gzip.compress(_csv(ROWS))
    with pytest.raises(CorruptExportFile, match="truncated"):
        _read(data[: len(data) // 2])


def test_garbled_gzip_is_corrupt() -> None:
    data = bytearray(gzip.compress(_csv(ROWS)))
    for i in range(len(data) // 2, len(data) // 2 + 32):
        data[i] ^= 0x5A
    with pytest.raises(CorruptExportFile):
        _read(bytes(data))


def test_plain_csv_cut_mid_row_is_corrupt() -> None:
    data = _csv(ROWS)
    cut = data.index(b"\n", len(data) // 2) + 8  # a few bytes into a row
    with pytest.raises(CorruptExportFile):
        _read(data[:cut])


def test_file_ending_inside_a_quoted_value_is_corrupt() -> None:
    data = _csv(ROWS)
    cut = data.index(b'"she said', len(data) // 2) + 5
    with pytest.raises(CorruptExportFile, match="quoted"):
        _read(data[:cut])


def test_empty_file_is_corrupt() -> None:
    with pytest.raises(CorruptExportFile, match="empty"):
        list(csv_tables([]))


def test_header_naming_a_column_twice_is_corrupt() -> None:
    with pytest.raises(CorruptExportFile, match="twice"):
        list(csv_tables([b"cio_id,email,email\na,b,c\n"]))


def test_forced_gzip_on_a_plain_file_is_corrupt() -> None:
    with pytest.raises(CorruptExportFile, match="gzip"):
        list(csv_tables([_csv(ROWS)], ExportFormat(compression="gzip")))


def test_format_knobs_rename_and_delimiter() -> None:
    data = _csv([["customer_id", "email"], ["c1", "a@example.com"]], delimiter=";")
    fmt = ExportFormat(delimiter=";", rename={"customer_id": "cio_id"})
    (table,) = csv_tables([data], fmt)
    assert table.to_pylist() == [{"cio_id": "c1", "email": "a@example.com"}]


def test_decompressed_passes_plain_bytes_through_unchanged() -> None:
    assert b"".join(decompressed([b"a", b"b,c\n"])) == b"ab,c\n"
    assert b"".join(decompressed(_chunks(gzip.compress(b"x" * 5000), 10))) == b"x" * 5000
