"""Small .xlsx and .ods files written part by part, for tests that need what a
spreadsheet program records beside the cells: the active tab (xlsx
``activeTab``, ``tabSelected``; ods ``ActiveTable``), merged ranges and number
formats. No spreadsheet library is needed: the parts are a few lines of XML
(ECMA-376 Part 1; ODF 1.2), so each test says exactly what its file holds.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from bulksend.reading.cells import column_letter

Cell = str | int | float | None


@dataclass
class Sheet:
    """One worksheet: rows of cells (text, numbers, None for empty), merged
    ranges ("B2:B4"), number formats by cell ("D2": "0"), hidden row numbers,
    and whether its tab is selected (``<sheetView tabSelected="1">``)."""

    rows: list[list[Cell]]
    merges: list[str] = field(default_factory=list)
    formats: dict[str, str] = field(default_factory=dict)
    hidden: set[int] = field(default_factory=set)
    selected: bool = False



def write_xlsx(path: Path, sheets: dict[str, Sheet], *, active: int | None = None) -> Path:
    """An .xlsx of ``sheets`` (in order); ``active``: the workbookView's activeTab, None: no attribute."""
    codes = sorted({code for sheet in sheets.values() for code in sheet.formats.values()})
    style = {code: i + 1 for i, code in enumerate(codes)}  # cellXfs index; 0 is General
    with zipfile.ZipFile(path, "w") as book:
        overrides = "".join(
            f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="application/vnd.openxmlformats-'
            'officedocument.spreadsheetml.worksheet+xml"/>' for n in range(1, len(sheets) + 1))
        book.writestr("[Content_Types].xml", (
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/'
            'content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
            'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName='
            '"/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.'
            'sheet.main+xml"/><Override PartName="/xl/styles.xml" ContentType="application/'
            f'vnd.openxmlformats-officedocument.spreadsheetml.styles+xml"/>{overrides}</Types>'))
        book.writestr("_rels/.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            'package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'))
        rels = "".join(
            f'<Relationship Id="rId{n}" Type="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships/worksheet" Target="worksheets/sheet{n}.xml"/>' for n in range(1, len(sheets) + 1))
        book.writestr("xl/_rels/workbook.xml.rels", (
            '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/'
            f'package/2006/relationships">{rels}<Relationship Id="rIdS" Type="http://schemas.openxmlformats.org/'
            'officeDocument/2006/relationships/styles" Target="styles.xml"/></Relationships>'))
        view = f' activeTab="{active}"' if active is not None else ""
        listed = "".join(f'<sheet name={quoteattr(name)} sheetId="{n}" r:id="rId{n}"/>'
                         for n, name in enumerate(sheets, start=1))
        book.writestr("xl/workbook.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/'
            'spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/'
            f'relationships"><bookViews><workbookView{view}/></bookViews><sheets>{listed}</sheets></workbook>'))
        formats = "".join(f'<numFmt numFmtId="{163 + i}" formatCode={quoteattr(code)}/>'
                          for code, i in style.items())
        xfs = "".join(f'<xf numFmtId="{163 + i}" applyNumberFormat="1"/>' for i in style.values())
        book.writestr("xl/styles.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><styleSheet xmlns="http://schemas.openxmlformats.org/'
            f'spreadsheetml/2006/main"><numFmts count="{len(style)}">{formats}</numFmts><cellXfs count='
            f'"{len(style) + 1}"><xf numFmtId="0"/>{xfs}</cellXfs></styleSheet>'))
        for n, sheet in enumerate(sheets.values(), start=1):
            book.writestr(f"xl/worksheets/sheet{n}.xml", _sheet_xml(sheet, style))
    return path


def _sheet_xml(sheet: Sheet, style: dict[str, int]) -> str:
    rows = []
    for r, cells in enumerate(sheet.rows, start=1):
        parts = []
        for c, value in enumerate(cells):
            ref = f"{column_letter(c)}{r}"
            s = f' s="{style[sheet.formats[ref]]}"' if ref in sheet.formats else ""
            if value is None:
                continue
            if isinstance(value, str):
                text = f'<t xml:space="preserve">{escape(value)}</t>'
                parts.append(f'<c r="{ref}" t="inlineStr"{s}><is>{text}</is></c>')
            else:
                parts.append(f'<c r="{ref}"{s}><v>{value!r}</v></c>'.replace(".0<", "<"))
        hidden = ' hidden="1"' if r in sheet.hidden else ""
        rows.append(f'<row r="{r}"{hidden}>{"".join(parts)}</row>')
    merges = "".join(f'<mergeCell ref="{ref}"/>' for ref in sheet.merges)
    merged = f'<mergeCells count="{len(sheet.merges)}">{merges}</mergeCells>' if merges else ""
    selected = ' tabSelected="1"' if sheet.selected else ""
    return ('<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/'
            f'spreadsheetml/2006/main"><sheetViews><sheetView{selected} workbookViewId="0"/></sheetViews>'
            f'<sheetData>{"".join(rows)}</sheetData>{merged}</worksheet>')


OdsCell = str | int | None


def write_ods(path: Path, sheets: dict[str, list[list[OdsCell]]], *, active: str | None = None,
              spans: dict[str, tuple[int, int]] | None = None) -> Path:
    """An .ods of ``sheets`` (text, and whole numbers as float cells); ``active``: settings.xml's
    ActiveTable, None: no settings.xml. ``spans``: cells ("D2") merged over (rows, columns); a
    None cell is one a span covers."""
    ns = ('xmlns:office="urn:oasis:names:tc:opendocument:xmlns:office:1.0" '
          'xmlns:table="urn:oasis:names:tc:opendocument:xmlns:table:1.0" '
          'xmlns:text="urn:oasis:names:tc:opendocument:xmlns:text:1.0" '
          'xmlns:config="urn:oasis:names:tc:opendocument:xmlns:config:1.0"')
    tables = []
    for name, rows in sheets.items():
        body = "".join("<table:table-row>" + "".join(
            _ods_cell(cell, (spans or {}).get(f"{column_letter(c)}{r}")) for c, cell in enumerate(row))
            + "</table:table-row>" for r, row in enumerate(rows, start=1))
        tables.append(f"<table:table table:name={quoteattr(name)}>{body}</table:table>")
    with zipfile.ZipFile(path, "w") as book:
        book.writestr("mimetype", "application/vnd.oasis.opendocument.spreadsheet", zipfile.ZIP_STORED)
        files = '<manifest:file-entry manifest:full-path="content.xml" manifest:media-type="text/xml"/>'
        if active is not None:
            files += '<manifest:file-entry manifest:full-path="settings.xml" manifest:media-type="text/xml"/>'
            book.writestr("settings.xml", (
                f'<?xml version="1.0" encoding="UTF-8"?><office:document-settings {ns}><office:settings>'
                '<config:config-item-set config:name="ooo:view-settings"><config:config-item-map-indexed '
                'config:name="Views"><config:config-item-map-entry><config:config-item config:name='
                f'"ActiveTable" config:type="string">{escape(active)}</config:config-item>'
                "</config:config-item-map-entry>"
                "</config:config-item-map-indexed></config:config-item-set></office:settings>"
                "</office:document-settings>"))
        book.writestr("META-INF/manifest.xml", (
            '<?xml version="1.0" encoding="UTF-8"?><manifest:manifest xmlns:manifest="urn:oasis:names:tc:'
            'opendocument:xmlns:manifest:1.0"><manifest:file-entry manifest:full-path="/" '
            'manifest:media-type="application/vnd.oasis.opendocument.spreadsheet"/>'
            f"{files}</manifest:manifest>"))
        book.writestr("content.xml", (
            f'<?xml version="1.0" encoding="UTF-8"?><office:document-content {ns}><office:body>'
            f'<office:spreadsheet>{"".join(tables)}</office:spreadsheet></office:body></office:document-content>'))
    return path


def _ods_cell(cell: OdsCell, span: tuple[int, int] | None) -> str:
    if cell is None:
        return "<table:covered-table-cell/>"
    if isinstance(cell, int):
        return (f'<table:table-cell office:value-type="float" office:value="{cell}"><text:p>{cell}</text:p>'
                "</table:table-cell>")
    spanned = (f' table:number-rows-spanned="{span[0]}" table:number-columns-spanned="{span[1]}"'
               if span else "")
    return (f'<table:table-cell office:value-type="string"{spanned}><text:p>{escape(cell)}</text:p>'
            "</table:table-cell>")
