"""EPUB, reStructuredText, Org mode and XML, read from real files written here: each found by a
phrase only it holds, chapters in spine order, damaged and hostile files refused or defused."""

from __future__ import annotations

import io
import os
import sys
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ingest import nlp_fallback
from ingest.errors import CorruptDocument, EncryptedDocument
from ingest.models import Element
from ingest.stages.parse import ParseOptions, filetype_of, parse_bytes

pytestmark = pytest.mark.integration

_XHTML = """<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml"><head><title>{title}</title></head>
<body><h1>{title}</h1><p>{body}</p></body></html>
"""
_CONTAINER = """<?xml version="1.0"?>
<container version="1.0" xmlns="urn:oasis:names:tc:opendocument:xmlns:container">
  <rootfiles><rootfile full-path="OEBPS/content.opf" media-type="application/oebps-package+xml"/>
  </rootfiles>
</container>
"""
#: (file name, title, body) in reading order; the names and the manifest say another order
CHAPTERS = (
    ("zz-opening.xhtml", "The Lighthouse Keeper", "The keeper logs the gannet migration nightly."),
    ("aa-middle.xhtml", "第二章 港の朝", "漁港の朝は早く、競りは五時に始まります。"),
    ("mm-closing.xhtml", "Closing the Ledger", "The ledger closes with the cormorant tally."),
)


@pytest.fixture(scope="module", autouse=True)
def _offline_nlp() -> None:
    nlp_fallback.install()  # unstructured's title/narrative classifier, offline


def _text(elements: list[Element]) -> str:
    return "\n".join(e.text for e in elements)


def _epub(
    chapters: tuple[tuple[str, str, str], ...] = CHAPTERS,
    leave_out: str | None = None,
    encryption: str | None = None,
) -> bytes:
    """An EPUB 3 whose spine lists the chapters in order; ``leave_out`` names a zip entry not
    written; ``encryption`` is META-INF/encryption.xml."""
    manifest = "".join(
        f'<item id="c{i}" href="text/{name}" media-type="application/xhtml+xml"/>'
        for i, (name, _, _) in sorted(enumerate(chapters), key=lambda c: c[1][0])
    )
    spine = "".join(f'<itemref idref="c{i}"/>' for i in range(len(chapters)))
    opf = (
        '<?xml version="1.0" encoding="UTF-8"?><package xmlns="http://www.idpf.org/2007/opf" '
        'version="3.0" unique-identifier="id"><metadata xmlns:dc="http://purl.org/dc/elements/1.1/">'
        '<dc:identifier id="id">test-book</dc:identifier><dc:title>Harbour Book</dc:title>'
        f"</metadata><manifest>{manifest}</manifest><spine>{spine}</spine></package>"
    )
    entries = {
        "META-INF/container.xml": _CONTAINER,
        "OEBPS/content.opf": opf,
        **{
            f"OEBPS/text/{name}": _XHTML.format(title=title, body=body)
            for name, title, body in chapters
        },
    }
    if encryption is not None:
        entries["META-INF/encryption.xml"] = encryption
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("mimetype", "application/epub+zip", compress_type=zipfile.ZIP_STORED)
        for name, content in entries.items():
            if name != leave_out:
                zf.writestr(name, content.encode("utf-8"), compress_type=zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _encryption(uri: str, algorithm: str) -> str:
    return (
        '<encryption xmlns="urn:oasis:names:tc:opendocument:xmlns:container" '
        'xmlns:enc="http://www.w3.org/2001/04/xmlenc#"><enc:EncryptedData>'
        f'<enc:EncryptionMethod Algorithm="{algorithm}"/><enc:CipherData>'
        f'<enc:CipherReference URI="{uri}"/></enc:CipherData></enc:EncryptedData></encryption>'
    )


# -- EPUB -----------------------------------------------------------------------------------------


def test_epub_chapters_come_in_spine_order_numbered_as_pages() -> None:
    assert filetype_of("books/Harbour.EPUB") == "epub"
    elements = parse_bytes(_epub(), "epub", ParseOptions())
    titles = [(e.page_number, e.text) for e in elements if e.kind == "title"]
    assert titles == [(1, "The Lighthouse Keeper"), (2, "第二章 港の朝"), (3, "Closing the Ledger")]
    pages = {e.text: e.page_number for e in elements}
    assert pages["The keeper logs the gannet migration nightly."] == 1
    assert pages["漁港の朝は早く、競りは五時に始まります。"] == 2
    assert pages["The ledger closes with the cormorant tally."] == 3
    assert [e.page_number for e in elements] == sorted(e.page_number or 0 for e in elements)


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: b"PK\x03\x04 not really a zip", r"bad zip container"),
        (lambda: _epub(leave_out="META-INF/container.xml"), r"no META-INF/container\.xml"),
        (lambda: _epub(leave_out="OEBPS/content.opf"), r"package document .* is missing"),
        (lambda: _epub(leave_out="OEBPS/text/aa-middle.xhtml"), r"spine item .*aa-middle"),
        (lambda: _epub()[:-200], r"bad zip container"),  # the central directory cut off
    ],
    ids=["not-a-zip", "no-container", "no-opf", "no-chapter", "truncated"],
)
def test_a_damaged_epub_fails_with_its_reason(make: Callable[[], bytes], reason: str) -> None:
    with pytest.raises(CorruptDocument, match=f"not a valid EPUB file.*{reason}"):
        parse_bytes(make(), "epub", ParseOptions())


def test_a_drm_encrypted_epub_is_refused_but_obfuscated_fonts_are_not() -> None:
    drm = _encryption("OEBPS/text/mm-closing.xhtml", "http://www.w3.org/2001/04/xmlenc#aes128-cbc")
    with pytest.raises(EncryptedDocument, match=r"encrypted \(DRM\) EPUB"):
        parse_bytes(_epub(encryption=drm), "epub", ParseOptions())
    fonts = _encryption("OEBPS/fonts/serif.otf", "http://www.idpf.org/2008/embedding")
    elements = parse_bytes(_epub(encryption=fonts), "epub", ParseOptions())
    assert "cormorant tally" in _text(elements)


# -- reStructuredText -----------------------------------------------------------------------------

RST = """\
=======================
Pump Station Handbook
=======================

The sluice gate opens when the marmot gauge reads nine.

Daily checks
------------

- grease the bearings
- read the flow meter

油圧ポンプの点検は毎週月曜日に行います。

+----------+--------+
| Part     | Result |
+==========+========+
| Impeller | worn   |
+----------+--------+

A :bogus:`role`, an unknown directive and a short underline do not stop it.

.. no-such-directive:: at all

Short
--

The last paragraph mentions the quokka valve.
"""


def test_rst_is_read_with_its_titles_lists_tables_and_japanese() -> None:
    assert filetype_of("docs/handbook.rst") == "rst"
    elements = parse_bytes(RST.encode("utf-8"), "rst", ParseOptions())
    kinds = {e.text: e.kind for e in elements}
    assert kinds["Pump Station Handbook"] == "title"
    assert kinds["grease the bearings"] == "list_item"
    assert "The sluice gate opens when the marmot gauge reads nine." in kinds
    assert "油圧ポンプの点検は毎週月曜日に行います。" in kinds
    assert "The last paragraph mentions the quokka valve." in kinds  # after the errors
    table = next(e for e in elements if e.kind == "table")
    assert table.rows == (("Part", "Result"), ("Impeller", "worn"))


#: the lists of the ``opened`` fixtures in use; the audit hook, once added, records into them
_OPENED: list[list[str]] = []


@pytest.fixture
def opened() -> Iterator[list[str]]:
    """The paths of the files this process opens while the test runs (an audit hook)."""
    if not _OPENED and _record_open not in _HOOKS:
        sys.addaudithook(_record_open)  # it cannot be removed: it records only during a test
        _HOOKS.append(_record_open)
    paths: list[str] = []
    _OPENED.append(paths)
    yield paths
    _OPENED.remove(paths)


def _record_open(event: str, args: tuple[object, ...]) -> None:
    if event == "open" and _OPENED and isinstance(args[0], str | bytes):
        _OPENED[-1].append(os.fsdecode(args[0]))


_HOOKS: list[object] = []


def test_rst_directives_never_read_a_file_of_the_machine(tmp_path: Path, opened: list[str]) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("The hidden pangolin phrase.\n")
    picture = tmp_path / "picture.png"
    picture.write_bytes(b"\x89PNG not really")
    hostile = f"""\
Visible paragraph about the tapir pump.

.. include:: /etc/passwd

.. include:: {secret}

.. raw:: html
   :file: {secret}

.. csv-table::
   :file: {secret}

.. image:: {picture}
   :loading: embed
   :scale: 50
"""
    opened.clear()  # the files written above
    elements = parse_bytes(hostile.encode("utf-8"), "rst", ParseOptions())
    text = _text(elements)
    assert "Visible paragraph about the tapir pump." in text
    assert "pangolin" not in text and "root:" not in text
    assert not [p for p in opened if p in ("/etc/passwd", str(secret), str(picture))]


# -- Org mode -------------------------------------------------------------------------------------

ORG = """\
#+TITLE: Weir Maintenance Log
#+AUTHOR: Plant team
# a comment line, not text

* TODO Spring inspection of the weir  :plant:
:PROPERTIES:
:CREATED: [2024-03-01]
:END:
The inspector found the [[https://example.com/x][narwhal sluice]] in
good order and /logged/ it.

- replace the seals
- clean the grate
1. numbered step

| Part   | State    |
|--------+----------|
| Seal   | replaced |
| Grate  | clean    |

#+BEGIN_SRC shell
systemctl restart weir-pump
#+END_SRC

** 冬の点検
配電盤の清掃を
計画しています。
"""


def test_org_is_read_with_its_title_headings_lists_tables_and_code() -> None:
    assert filetype_of("notes/weir.org") == "org"
    elements = parse_bytes(ORG.encode("utf-8"), "org", ParseOptions())
    assert [(e.kind, e.text) for e in elements if e.kind != "table"] == [
        ("title", "Weir Maintenance Log"),
        ("title", "Spring inspection of the weir"),
        ("text", "The inspector found the narwhal sluice in good order and logged it."),
        ("list_item", "replace the seals"),
        ("list_item", "clean the grate"),
        ("list_item", "numbered step"),
        ("code", "systemctl restart weir-pump"),
        ("title", "冬の点検"),
        ("text", "配電盤の清掃を計画しています。"),
    ]
    table = next(e for e in elements if e.kind == "table")
    assert table.rows == (("Part", "State"), ("Seal", "replaced"), ("Grate", "clean"))


# -- XML ------------------------------------------------------------------------------------------


def test_xml_leaf_text_is_read_in_its_declared_encoding() -> None:
    assert filetype_of("export/items.xml") == "xml"
    xml = (
        '<?xml version="1.0" encoding="Shift_JIS"?>\n'
        "<catalog><item><name>Heron valve</name><note>The axolotl flange fits DN50.</note></item>"
        "<item><name>逆止弁</name><note>在庫は三個です。</note></item></catalog>"
    )
    text = _text(parse_bytes(xml.encode("cp932"), "xml", ParseOptions()))
    assert "The axolotl flange fits DN50." in text
    assert "在庫は三個です。" in text
    assert "<note>" not in text


def test_xml_entities_are_not_resolved(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("The hidden pangolin phrase.\n")
    xml = (
        f'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY leak SYSTEM "file://{secret}">]>'
        "<r><a>Plain bittern text.</a><b>&leak;</b></r>"
    )
    text = _text(parse_bytes(xml.encode(), "xml", ParseOptions()))
    assert "Plain bittern text." in text and "pangolin" not in text


def test_malformed_xml_is_a_corrupt_document() -> None:
    with pytest.raises(CorruptDocument, match="XML parser failed"):
        parse_bytes(b"<catalog><item>unclosed</catalog>", "xml", ParseOptions())
