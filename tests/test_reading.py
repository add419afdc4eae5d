"""Reading: every format reads to the same rows, exactly as a spreadsheet shows them.

The binary fixtures (contacts.xlsx/.xls/.ods) come from
tests/data/reading/make_fixtures.py; the text variants are written here, from
the same table (contacts.json), into tmp_path.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from bulksend.common.errors import InputError
from bulksend.reading import cells, delimited, files
from bulksend.reading.sources import open_table
from bulksend.reading.table import Row, Table

DATA = Path(__file__).parent / "data" / "reading"
TABLE = json.loads((DATA / "contacts.json").read_text(encoding="utf-8"))
HEADER: list[str] = TABLE["header"]
COLUMNS = [name.strip() for name in HEADER]
ROWS: list[list[str]] = TABLE["rows"]
EXPECTED = [dict(zip(COLUMNS, cells, strict=True)) for cells in ROWS]


def write_csv(
    path: Path,
    rows: list[list[str]],
    *,
    encoding: str = "utf-8",
    delimiter: str = ",",
    newline: str = "\r\n",
) -> Path:
    """Write rows as an exporter would, quoting cells with a delimiter, quote or newline.

    (csv.writer only quotes the characters of *its* line terminator, so with
    "\r" endings it would leave a cell's "\n" bare.)
    """

    def cell(text: str) -> str:
        if any(c in text for c in (delimiter, '"', "\r", "\n")):
            return '"' + text.replace('"', '""') + '"'
        return text

    lines = (delimiter.join(cell(c) for c in cells) + newline for cells in rows)
    with open(path, "w", encoding=encoding, newline="") as out:
        out.writelines(lines)
    return path


def read_all(table: Table) -> list[Row]:
    return list(table.rows())


def read_error(source: str | Path, **options: object) -> InputError:
    with pytest.raises(InputError) as caught:
        table = open_table(str(source), **options)  # type: ignore[arg-type]
        try:
            read_all(table)
        finally:
            table.close()
    return caught.value


def assert_one_line(error: InputError, where: str) -> None:
    assert error.message.startswith(f"{where}: "), error.message
    assert "\n" not in error.message and "\r" not in error.message
    assert error.hint is None or "\n" not in error.hint


# --- one table, every format --------------------------------------------------

TEXT_VARIANTS = {
    "utf-8": ("contacts.csv", "utf-8", ","),
    "utf-8 BOM": ("contacts.csv", "utf-8-sig", ","),
    "utf-16 BOM": ("contacts.csv", "utf-16", ","),
    "utf-16-be BOM": ("contacts.csv", "utf-16-be", ","),  # BOM added below
    "cp1252": ("contacts.csv", "cp1252", ","),
    "cp1252 ;": ("contacts.csv", "cp1252", ";"),
    "semicolon": ("contacts.csv", "utf-8", ";"),
    "tab .tsv": ("contacts.tsv", "utf-8", "\t"),
    "tab .txt": ("contacts.txt", "utf-8", "\t"),
    "pipe": ("contacts.csv", "utf-8", "|"),
}


@pytest.mark.parametrize("variant", TEXT_VARIANTS)
@pytest.mark.parametrize("newline", ["\r\n", "\n", "\r"], ids=["crlf", "lf", "cr"])
def test_text_formats_read_to_the_same_rows(tmp_path: Path, variant: str, newline: str) -> None:
    filename, encoding, delimiter = TEXT_VARIANTS[variant]
    path = write_csv(
        tmp_path / filename,
        [HEADER, *ROWS],
        encoding=encoding,
        delimiter=delimiter,
        newline=newline,
    )
    if variant == "utf-16-be BOM":
        path.write_bytes(b"\xfe\xff" + path.read_bytes())
    with open_table(str(path)) as table:
        assert table.name == str(path)
        assert table.columns == COLUMNS
        assert table.delimiter == delimiter
        rows = read_all(table)
    assert [row.values for row in rows] == EXPECTED
    assert [row.number for row in rows] == [2, 3, 4, 5, 6]
    assert all(row.extra == () for row in rows)


def test_detected_encodings_are_named(tmp_path: Path) -> None:
    cases = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "utf-16": "utf-16", "cp1252": "cp1252"}
    for written, detected in cases.items():
        path = write_csv(tmp_path / f"{written}.csv", [HEADER, *ROWS], encoding=written)
        with open_table(str(path)) as table:
            assert table.encoding == detected


@pytest.mark.parametrize(
    ("text", "written"),
    [
        ("Name\nRené\n", "cp1252"),  # charset_normalizer alone says cp1006
        ("Name,Note\nA,5 €\n", "cp1252"),  # ... and cp1125 here
        ("Email;Name;City\na@x.org;François;Besançon\nb@x.org;Jürgen;Köln\n", "cp1252"),
        ("Имя,Город\nИван,Москва\n", "cp1251"),  # noqa: RUF001 - Cyrillic on purpose: kept
    ],
)
def test_short_single_byte_files_are_not_misread(tmp_path: Path, text: str, written: str) -> None:
    path = tmp_path / "short.csv"
    path.write_bytes(text.encode(written))
    with open_table(str(path)) as table:
        assert table.encoding == written
        assert [table.columns, *(list(row.values.values()) for row in table.rows())] == [
            line.split(table.delimiter or ",") for line in text.splitlines()
        ]


@pytest.mark.parametrize("extension", ["xlsx", "xls", "ods"])
def test_spreadsheets_read_to_the_same_rows(extension: str) -> None:
    path = DATA / f"contacts.{extension}"
    with open_table(str(path)) as table:
        assert table.sheet == "Contacts"
        assert table.columns == [*COLUMNS, "Due", "Amount"]
        rows = read_all(table)
    assert [{c: row.values[c] for c in COLUMNS} for row in rows] == EXPECTED
    assert [row.number for row in rows] == [2, 3, 4, 5, 6]
    # A real date cell and a real number cell, as a person sees them.
    assert rows[0].values["Due"] == "2026-03-31"
    assert rows[0].values["Amount"] == "42"
    assert [row.values["Due"] for row in rows[1:]] == ["2026-04-01", "2027-01-15", "", "2026-12-31"]
    assert [row.values["Amount"] for row in rows[1:]] == ["3.14", "0", "-7", "1234567"]


@pytest.mark.parametrize("extension", ["xlsx", "xls", "ods"])
@pytest.mark.parametrize("sheet", ["Layout", 2, "2"])
def test_spreadsheet_rows_keep_sheet_row_numbers_and_types(extension: str, sheet: object) -> None:
    with open_table(str(DATA / f"contacts.{extension}"), sheet=sheet) as table:  # type: ignore[arg-type]
        assert table.sheet == "Layout"
        assert table.header_row == 3  # two blank rows above the header
        assert table.columns == ["Email", "Name", "When", "At", "Amount"]
        rows = read_all(table)
    assert rows == [
        Row(4, {"Email": "a@x.org", "Name": "A", "When": "2026-01-02 03:04:05",
                "At": "13:45:00", "Amount": "3.14"}),
        Row(6, {"Email": "b@x.org", "Name": "B", "When": "2026-01-02", "At": "",
                "Amount": "1234567890123"}, extra=("surplus",)),
        Row(7, {"Email": "c@x.org", "Name": "C", "When": "2026-12-31", "At": "00:00:30",
                "Amount": "-0.5"}),
    ]  # fmt: skip


def test_spreadsheet_content_wins_over_its_extension(tmp_path: Path) -> None:
    # An .xlsx renamed .xls opens in Excel (with a warning); it opens here too.
    path = tmp_path / "renamed.xls"
    shutil.copy(DATA / "contacts.xlsx", path)
    with open_table(str(path)) as table:
        assert next(table.rows()).values["Amount"] == "42"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, ""),
        ("", ""),
        (" 007 ", " 007 "),
        (True, "TRUE"),
        (False, "FALSE"),
        (12, "12"),
        (12.0, "12"),
        (-0.0, "0"),
        (3.14, "3.14"),
        (0.1 + 0.2, "0.3"),  # Excel shows 15 significant digits
        (1234567890123.0, "1234567890123"),
        (1e20, "1e+20"),
        (float("nan"), ""),
        (dt.date(2026, 3, 31), "2026-03-31"),
        (dt.datetime(2026, 3, 31), "2026-03-31"),
        (dt.datetime(2026, 3, 31, 9, 30), "2026-03-31 09:30:00"),
        (dt.datetime(2026, 3, 31, 9, 29, 59, 999_000), "2026-03-31 09:30:00"),
        (dt.time(13, 45), "13:45:00"),
        (dt.time(8, 0, 0, 600_000), "08:00:01"),
        (dt.timedelta(hours=30, minutes=5), "30:05:00"),
    ],
)
def test_cell_text(value: object, text: str) -> None:
    assert cells.cell_text(value) == text


# --- rows, numbers, cells --------------------------------------------------------


def test_blank_rows_are_skipped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "blank.csv"
    path.write_text("\n\nEmail,Name\na@x.org,A\n\n,\n  ,  \nb@x.org,B\n", encoding="utf-8")
    with open_table(str(path)) as table:
        assert table.header_row == 3
        rows = read_all(table)
    assert [(row.number, row.values["Email"]) for row in rows] == [(4, "a@x.org"), (8, "b@x.org")]


def test_missing_cells_are_empty_and_extra_cells_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "ragged.csv"
    path.write_text("a,b,c\n1\n1,2,3,4\n1,2,3,,\n1,2,3, ,x\n", encoding="utf-8")
    with open_table(str(path)) as table:
        rows = read_all(table)
    assert rows[0] == Row(2, {"a": "1", "b": "", "c": ""})
    assert rows[1].extra == ("4",)
    assert rows[2].extra == ()  # empty trailing cells are not data
    assert rows[3].extra == ("x",)


def test_a_record_spanning_lines_is_one_row(tmp_path: Path) -> None:
    path = tmp_path / "multiline.csv"
    path.write_bytes(b'a,b\r\n1,"line one\r\nline two, with comma\n\nend"\r\n2,x\r\n\r\n3,y\r\n')
    with open_table(str(path)) as table:
        rows = read_all(table)
    assert [row.number for row in rows] == [2, 3, 5]
    assert rows[0].values["b"] == "line one\r\nline two, with comma\n\nend"


def test_cells_are_kept_exactly(tmp_path: Path) -> None:
    path = tmp_path / "exact.csv"
    path.write_text(
        'id,n,na,flag,pad,quote\n007,12345678901234567890,NA,TRUE,"  x  ",a""b\n',
        encoding="utf-8",
    )
    with open_table(str(path)) as table:
        (row,) = read_all(table)
    assert row.values == {
        "id": "007", "n": "12345678901234567890", "na": "NA", "flag": "TRUE", "pad": "  x  ",
        "quote": 'a""b',  # an unquoted cell keeps its quotes, as Excel does
    }  # fmt: skip


def test_header_names_are_trimmed_and_trailing_unnamed_columns_dropped(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_bytes(b"\xef\xbb\xbf  Email ,\tName\t,,\r\na@x.org,A,,\r\n")
    with open_table(str(path)) as table:
        assert table.columns == ["Email", "Name"]
        assert read_all(table) == [Row(2, {"Email": "a@x.org", "Name": "A"})]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    path = tmp_path / "header-only.csv"
    path.write_text("Email,Name\n", encoding="utf-8")
    with open_table(str(path)) as table:
        assert table.columns == ["Email", "Name"]
        assert read_all(table) == []


def test_rows_can_be_read_twice(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "twice.csv", [HEADER, *ROWS])
    with open_table(str(path)) as table:
        assert read_all(table) == read_all(table)
    with open_table(str(DATA / "contacts.xlsx")) as table:
        assert read_all(table) == read_all(table)


def test_stdin_is_spooled_and_removed_on_close(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool_dir))
    data = "\ufeffEmail;Name\r\nzoe@example.com;Zoë\r\n".encode()
    table = open_table("-", stdin=io.BytesIO(data))
    assert table.name == "<stdin>"
    assert table.delimiter == ";"
    first, second = read_all(table), read_all(table)
    assert first == second == [Row(2, {"Email": "zoe@example.com", "Name": "Zoë"})]
    assert len(list(spool_dir.iterdir())) == 1
    table.close()
    assert list(spool_dir.iterdir()) == []


def test_empty_stdin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    error = read_error("-", stdin=io.BytesIO(b""))
    assert_one_line(error, "<stdin>")
    assert "empty" in error.message
    assert list(tmp_path.iterdir()) == []


# --- delimiter and encoding ----------------------------------------------------------


@pytest.mark.parametrize("given", ["\t", "tab", "\\t", "TAB"])
def test_delimiter_option_accepts_tab_spellings(tmp_path: Path, given: str) -> None:
    path = write_csv(tmp_path / "tabs.csv", [["a", "b,c"], ["1", "2,3"]], delimiter="\t")
    with open_table(str(path), delimiter=given) as table:
        assert table.columns == ["a", "b,c"]


def test_delimiter_detection_is_quote_aware_and_prefers_consistency(tmp_path: Path) -> None:
    # Unquoted semicolons inside a comma file, decimal commas inside a ; file.
    comma = tmp_path / "comma.csv"
    comma.write_text('Name,Notes\nA,"x;y;z"\nB,p;q\nC,none\n', encoding="utf-8")
    semi = tmp_path / "semi.csv"
    semi.write_text("Name;Amount\nA;3,14\nB;2,50\nC;1\n", encoding="utf-8")
    single = tmp_path / "single.csv"
    single.write_text("Email\na@x.org\n", encoding="utf-8")
    for path, expected in [(comma, ","), (semi, ";"), (single, ",")]:
        with open_table(str(path)) as table:
            assert table.delimiter == expected, path.name


def test_excel_sep_line_names_the_delimiter_and_is_not_a_row(tmp_path: Path) -> None:
    path = tmp_path / "sep.csv"
    path.write_text("sep=;\r\nEmail;Name\r\na@x.org;A, B\r\n", encoding="utf-8")
    with open_table(str(path)) as table:
        assert table.delimiter == ";"
        assert read_all(table) == [Row(2, {"Email": "a@x.org", "Name": "A, B"})]


def test_encoding_option_overrides_detection(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes("Name\nZoë\n".encode("cp1252"))
    with open_table(str(path), encoding="latin-1") as table:
        assert table.encoding == "iso8859-1"
        assert read_all(table)[0].values["Name"] == "Zoë"


def test_late_bad_byte_names_its_row(tmp_path: Path) -> None:
    # The first 64 KiB are plain ASCII, so the file is taken as UTF-8; a
    # Windows-1252 "é" far below must stop the read at its row, not garble it.
    path = tmp_path / "late.csv"
    body = "".join(f"user{i}@example.com,Name {i}\n" for i in range(5000))
    path.write_bytes(b"Email,Name\n" + body.encode() + "x@example.com,Ren\xe9\n".encode("latin-1"))
    assert path.stat().st_size > delimited.SAMPLE_BYTES
    error = read_error(path)
    assert_one_line(error, str(path))
    assert error.message.startswith(f"{path}: row 5002: ")
    assert "0xE9" in error.message
    assert error.hint is not None and "--encoding cp1252" in error.hint
    with open_table(str(path), encoding="cp1252") as table:
        assert list(table.rows())[-1].values["Name"] == "René"


# --- file-level errors -----------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    error = read_error(tmp_path / "nope.csv")
    assert_one_line(error, str(tmp_path / "nope.csv"))
    assert "no such file" in error.message
    assert_one_line(read_error(tmp_path / "nope.xlsx"), str(tmp_path / "nope.xlsx"))


def test_directory(tmp_path: Path) -> None:
    folder = tmp_path / "contacts.csv"
    folder.mkdir()
    error = read_error(folder)
    assert_one_line(error, str(folder))
    assert "directory" in error.message


def test_unreadable_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_csv(tmp_path / "locked.csv", [HEADER, *ROWS])
    path.chmod(0)
    if os.access(path, os.R_OK):  # running as root: permissions do not apply

        def refuse(*args: object, **kwargs: object) -> object:
            raise PermissionError(13, "Permission denied")

        monkeypatch.setattr(files, "open", refuse, raising=False)
    try:
        error = read_error(path)
    finally:
        path.chmod(0o644)
    assert_one_line(error, str(path))
    assert "permission denied" in error.message


@pytest.mark.parametrize("content", [b"", b"\xef\xbb\xbf", b"\n\n  \r\n,,\n"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(content)
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "is empty" in error.message


def test_empty_spreadsheet_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.xlsx"
    path.write_bytes(b"")
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "is empty" in error.message


def test_binary_file_is_not_csv(tmp_path: Path) -> None:
    path = tmp_path / "photo.csv"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "looks like a binary file, not CSV" in error.message


def test_spreadsheet_saved_as_csv(tmp_path: Path) -> None:
    path = tmp_path / "contacts.csv"
    shutil.copy(DATA / "contacts.xlsx", path)
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "binary" in error.message
    assert error.hint is not None and ".xlsx" in error.hint


def test_utf16_without_bom_gets_a_hint(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "u16.csv", [HEADER, *ROWS], encoding="utf-16-le")
    error = read_error(path)
    assert error.hint is not None and "utf-16-le" in error.hint
    with open_table(str(path), encoding="utf-16-le") as table:
        assert [row.values for row in table.rows()] == EXPECTED


@pytest.mark.parametrize(
    "given", ["hex", "base64", "zlib", "bz2", "rot13", "quopri", "uu", "idna", "punycode", "undefined"]
)
def test_codec_that_cannot_decode_a_file_is_an_unknown_encoding(tmp_path: Path, given: str) -> None:
    # Bytes-to-bytes codecs (hex, zlib, ...) crashed with AssertionError/TypeError,
    # idna/punycode refuse the escape error handler: all are refused up front.
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS])
    error = read_error(path, encoding=given)
    assert_one_line(error, str(path))
    assert error.message.startswith(f"{path}: unknown encoding {given!r}")
    assert error.hint is not None and "utf-8" in error.hint and "cp1252" in error.hint


@pytest.mark.parametrize("family", ["utf-16", "utf-32"])
@pytest.mark.parametrize("written", ["utf-8", "utf-16-le", "utf-32-be"])
def test_utf16_and_utf32_without_bom_are_refused(tmp_path: Path, family: str, written: str) -> None:
    # Python's plain utf-16/utf-32 decoders raise UnicodeError without a BOM.
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS], encoding=written)
    error = read_error(path, encoding=family.upper().replace("-", "_"))
    assert_one_line(error, str(path))
    assert f"{family.upper()} byte-order mark" in error.message
    assert error.hint == f"try --encoding {family}-le or {family}-be"


@pytest.mark.parametrize("family", ["utf-16", "utf-32"])
def test_utf16_and_utf32_with_bom_read_with_the_plain_name(tmp_path: Path, family: str) -> None:
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS], encoding=family)  # writes a BOM
    with open_table(str(path), encoding=family) as table:
        assert [row.values for row in table.rows()] == EXPECTED


class _FussyDecoder(codecs.IncrementalDecoder):
    """ASCII that fails, whatever the error handler, at the first "!"."""

    def decode(self, input: bytes, final: bool = False) -> str:  # type: ignore[override]
        if b"!" in input:
            raise UnicodeError("fussy codec saw a !")
        return bytes(input).decode("ascii")


def _fussy_search(name: str) -> codecs.CodecInfo | None:
    if name != "fussytest":
        return None
    ascii_info = codecs.lookup("ascii")
    return codecs.CodecInfo(
        ascii_info.encode,
        ascii_info.decode,
        incrementalencoder=ascii_info.incrementalencoder,
        incrementaldecoder=_FussyDecoder,
        name="fussytest",
    )


@pytest.fixture
def fussy_codec() -> Iterator[str]:
    codecs.register(_fussy_search)
    try:
        yield "fussytest"
    finally:
        codecs.unregister(_fussy_search)


def test_codec_error_in_the_sample_is_an_input_error(tmp_path: Path, fussy_codec: str) -> None:
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"Email,Name\r\na@b.co,Hi!\r\n")
    error = read_error(path, encoding=fussy_codec)
    assert_one_line(error, str(path))
    assert error.message == f"{path}: cannot be read as fussytest text: fussy codec saw a !"
    assert error.hint is not None and "--encoding" in error.hint


def test_codec_error_past_the_sample_names_the_row(tmp_path: Path, fussy_codec: str) -> None:
    # The backstop around the streaming read: a codec's UnicodeError (not a bad
    # byte, which is escaped and reported exactly) is an InputError with a row.
    path = tmp_path / "contacts.csv"
    body = "".join(f"user{i}@example.com,Name {i}\r\n" for i in range(5000))
    path.write_bytes(b"Email,Name\r\n" + body.encode() + b"x@example.com,Hi!\r\n")
    assert path.stat().st_size > delimited.SAMPLE_BYTES
    error = read_error(path, encoding=fussy_codec)
    assert_one_line(error, str(path))
    assert error.message.startswith(f"{path}: row ")
    number = int(error.message.split(": row ", 1)[1].split(":", 1)[0])
    assert 2 < number <= 5002  # decoding runs a chunk ahead of the rows
    assert error.message.endswith(": cannot be read as fussytest text: fussy codec saw a !")


def test_text_file_named_xlsx(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "contacts.xlsx", [HEADER, *ROWS])
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "looks like a text file" in error.message
    assert error.hint is not None and ".csv" in error.hint


@pytest.mark.parametrize("extension", ["xlsx", "ods", "xls"])
def test_corrupt_spreadsheet(tmp_path: Path, extension: str) -> None:
    path = tmp_path / f"broken.{extension}"
    good = (DATA / f"contacts.{extension}").read_bytes()
    path.write_bytes(good[: len(good) // 2])  # a download cut in half
    error = read_error(path)
    assert_one_line(error, str(path))
    assert "cannot be read as a spreadsheet" in error.message


def test_unknown_sheet_lists_the_sheets() -> None:
    path = str(DATA / "contacts.xlsx")
    for wanted, asked in [("Clients", 'no sheet "Clients"'), (3, "no sheet 3"), (0, "no sheet 0")]:
        error = read_error(path, sheet=wanted)
        assert_one_line(error, path)
        assert asked in error.message
        assert '"Contacts", "Layout"' in error.message


def test_sheet_option_on_text_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS])
    assert_one_line(read_error(path, sheet="Contacts"), str(path))


def test_bad_options(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS])
    error = read_error(path, encoding="klingon")
    assert_one_line(error, str(path))
    assert "unknown encoding" in error.message
    assert_one_line(read_error(path, delimiter=";;"), str(path))
    assert_one_line(read_error(path, delimiter='"'), str(path))


def test_duplicate_and_empty_header_names_are_not_read(tmp_path: Path) -> None:
    # Issue 13, case 9: such columns are left out of the rows, not refused
    # (the mapping refuses them only when it uses one: tests/test_sheets_wild.py).
    path = tmp_path / "contacts.csv"
    path.write_text("Name,Email,Phone, ,Email,,Name\nA,a@x.org,1,x,b@x.org,y,B\n", encoding="utf-8")
    with open_table(str(path)) as table:
        assert table.columns == ["Phone"]
        assert table.header.unnamed == ("4", "6")
        assert table.header.ambiguous == {"Name": ("1", "7"), "Email": ("2", "5")}
        assert read_all(table) == [Row(2, {"Phone": "1"})]
    path.write_text("\nEmail,Name, Email \n", encoding="utf-8")
    with open_table(str(path)) as table:
        assert table.header.ambiguous == {"Email": ("1", "3")}
        assert table.columns == ["Name"]


def test_unclosed_quote_is_an_error_not_a_short_read(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    path.write_text('Email,Name\na@x.org,A\nb@x.org,"B\nc@x.org,C\n', encoding="utf-8")
    error = read_error(path)
    assert_one_line(error, str(path))
    assert error.message.startswith(f"{path}: row 3: ")
    assert "never closed" in error.message


def test_unclosed_quote_in_a_large_file_stops_early(tmp_path: Path) -> None:
    path = tmp_path / "quote.csv"
    lines = "".join(f"user{i}@example.com,Name {i}\n" for i in range(20_000))
    path.write_text(f'Email,Name\na@x.org,"A\n{lines}', encoding="utf-8")
    error = read_error(path)
    assert_one_line(error, str(path))
    assert error.message.startswith(f"{path}: row 2: ")


# --- streaming and imports -----------------------------------------------------------


def test_reading_streams_in_constant_memory(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    line = "someone.{}@example.com,Firstname,Lastname,ACME Corporation,0012345,Notes here\n"
    with open(path, "w", encoding="utf-8") as out:
        out.write("Email,First,Last,Company,Id,Notes\n")
        for start in range(0, 200_000, 10_000):
            out.write("".join(line.format(i) for i in range(start, start + 10_000)))
    size = path.stat().st_size
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with open_table(str(path)) as table:
            count = sum(1 for _ in table.rows())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert size > 15_000_000
    assert peak < 2_000_000, f"peak {peak:,} bytes for a {size:,}-byte file"
    assert time.perf_counter() - started < 30


def test_reading_text_does_not_import_pandas(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "contacts.csv", [HEADER, *ROWS])
    code = (
        "import sys\n"
        "from bulksend.reading.sources import open_table\n"
        f"for source in [{str(path)!r}, {str(DATA / 'contacts.xlsx')!r}]:\n"
        "    with open_table(source) as table:\n"
        "        assert len(list(table.rows())) == 5\n"
        "assert 'pandas' not in sys.modules, 'pandas imported'\n"
    )
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


# --- reading from a mark (resume: bulksend/store/checkpoints.py) ------------------------


@pytest.mark.parametrize(
    ("name", "data", "unmarked"),
    [
        ("plain.csv", b"Email,Name\na@x.com,A\nb@x.com,B\n\nc@x.com,C\n", set()),
        ("crlf.csv", 'Email,Name\r\na@x.com,"two\r\nlines"\r\n\r\nb@x.com,Bé\r\n'.encode(), set()),
        ("bom.csv", b"\xef\xbb\xbf" + "Email,Name\na@x.com,Ä\nb@x.com,€uro\n".encode(), set()),
        ("cp1252.csv", "Email;Name\na@x.com;Ré\nb@x.com;Bö\n".encode("cp1252"), set()),
        ("sep.csv", b"sep=;\nEmail;Name\na@x.com;A\nb@x.com;B", {3}),  # last line: no LF
        ("leading-blank.csv", b'\n\nEmail,Name\na@x.com,A\nb@x.com,"q""x"\n', set()),
        ("cr-only.csv", b"Email,Name\ra@x.com,A\rb@x.com,B\r", {1, 2, 3}),  # CR may become CRLF
    ],
)
def test_rows_from_a_mark_are_the_rows_after_it(tmp_path: Path, name: str, data: bytes,
                                                unmarked: set[int]) -> None:
    path = tmp_path / name
    path.write_bytes(data)
    table = open_table(str(path))
    full = [(r.number, r.values) for r in table.rows()]
    last = max(n for n, _ in full)
    marks = table.marks(None, list(range(1, last + 3)))
    assert table.seekable
    assert {m.number for m in marks} == set(range(1, last + 1)) - unmarked
    for mark in marks:
        assert data[: mark.offset].endswith(b"\n")
        assert [(r.number, r.values) for r in table.rows(mark)] == [x for x in full if x[0] > mark.number]
        later = [m for m in marks if m.number > mark.number]
        assert table.marks(mark, [m.number for m in later]) == later  # marks from a mark agree


def test_utf16_and_spreadsheets_are_not_read_from_the_middle(tmp_path: Path) -> None:
    path = tmp_path / "u16.csv"
    path.write_bytes("Email,Name\na@x.com,A\n".encode("utf-16"))
    assert not open_table(str(path)).seekable
