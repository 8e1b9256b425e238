"""Markup formats read here, as unstructured elements the parse stage converts like any other:
EPUB books, reStructuredText, Org mode and generic XML.

EPUB is a zip of XHTML chapters: the container names the package document (OPF), whose spine
gives the reading order; each chapter is partitioned as HTML and its elements carry the chapter's
position in the spine as their page number. A spine item encrypted by DRM (listed in
``META-INF/encryption.xml``) makes the book unreadable; obfuscated fonts alone do not.

reStructuredText goes through docutils to HTML with everything that could read a file of this
machine switched off (``include``, ``raw``, CSV tables from files, embedded or measured images)
and with no message level stopping or reporting: a bad document is still read as far as it goes.

Org mode has no reader in unstructured: a small one here takes the title, headings, tables, list
items, source blocks and paragraphs; drawers, comments and settings are left out.

XML is unstructured's ``partition_xml``, the text of each leaf element; entities are not resolved
(no file or URL is read through a DTD).
"""

from __future__ import annotations

import html
import io
import posixpath
import re
import zipfile
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ingest.errors import CorruptDocument, EncryptedDocument
from ingest.guards import check_zip_container, decode_text
from ingest.text import CJK_CHAR

if TYPE_CHECKING:
    from ingest.stages.parse import ParseOptions

_CONTAINER = "META-INF/container.xml"
_ENCRYPTION = "META-INF/encryption.xml"
_XHTML_TYPES = frozenset({"application/xhtml+xml", "text/html"})


# -- EPUB -----------------------------------------------------------------------------------------


def partition_epub(data: bytes, options: ParseOptions) -> list[Any]:
    """The elements of each XHTML chapter in spine order; page number = spine position."""
    from unstructured.partition.html import partition_html

    check_zip_container(data, "epub", options.max_uncompressed_bytes)
    with zipfile.ZipFile(io.BytesIO(data)) as book:
        spine = _spine(book)
        _refuse_drm(book, {path for path, _ in spine})
        elements: list[Any] = []
        for number, (path, media_type) in enumerate(spine, start=1):
            if media_type not in _XHTML_TYPES:
                continue  # an SVG or image page: nothing to read
            text = decode_text(_read(book, path))
            for el in partition_html(text=text, languages=list(options.languages)):
                el.metadata.page_number = number
                elements.append(el)
    return elements


def _spine(book: zipfile.ZipFile) -> list[tuple[str, str]]:
    """(path in the zip, media type) of each spine item, in reading order."""
    if _CONTAINER not in book.namelist():
        raise CorruptDocument(f"not a valid EPUB file (no {_CONTAINER})")
    container = _xml(_read(book, _CONTAINER), _CONTAINER)
    opf_path = next((el.get("full-path") for el in _all(container, "rootfile")), None)
    if not opf_path:
        raise CorruptDocument(f"not a valid EPUB file ({_CONTAINER} names no package document)")
    if opf_path not in book.namelist():
        raise CorruptDocument(f"not a valid EPUB file (the package document {opf_path} is missing)")
    package = _xml(_read(book, opf_path), opf_path)
    manifest = _manifest(package, posixpath.dirname(opf_path))
    spine = []
    for ref in _all(package, "itemref"):
        idref = ref.get("idref")
        if idref not in manifest:
            raise CorruptDocument(f"not a valid EPUB file (spine item {idref!r} is not in the "
                                  "manifest)")  # fmt: skip
        path, media_type = manifest[idref]
        if path not in book.namelist():
            raise CorruptDocument(f"not a valid EPUB file (spine item {path} is missing)")
        spine.append((path, media_type))
    if not spine:
        raise CorruptDocument(f"not a valid EPUB file ({opf_path} has no spine)")
    return spine


def _manifest(package: Any, base: str) -> dict[str, tuple[str, str]]:
    """Item id -> (path in the zip, media type); hrefs are relative to the package document."""
    return {
        el.get("id"): (_resolve(base, el.get("href", "")), el.get("media-type", ""))
        for el in _all(package, "item")
    }


def _refuse_drm(book: zipfile.ZipFile, chapters: set[str]) -> None:
    """DRM encrypts the chapters; font obfuscation, listed in the same file, only fonts."""
    if _ENCRYPTION not in book.namelist():
        return
    encryption = _xml(_read(book, _ENCRYPTION), _ENCRYPTION)
    encrypted = {_resolve("", el.get("URI", "")) for el in _all(encryption, "CipherReference")}
    if encrypted & chapters:
        raise EncryptedDocument("encrypted (DRM) EPUB: its chapters cannot be read without the "
                                "key of the shop or library that sold or lent it")  # fmt: skip


def _resolve(base: str, href: str) -> str:
    """A manifest href (relative to the OPF, URL-encoded, maybe with a fragment) as a zip path."""
    return posixpath.normpath(posixpath.join(base, unquote(href.split("#", 1)[0])))


def _read(book: zipfile.ZipFile, name: str) -> bytes:
    try:
        return book.read(name)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise CorruptDocument(f"not a valid EPUB file (damaged entry {name}: {exc})") from exc


def _xml(data: bytes, name: str) -> Any:
    from lxml import etree

    # no DTD, no entities, no network: the book's XML is untrusted
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    try:
        return etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise CorruptDocument(f"not a valid EPUB file ({name} is not valid XML: {exc})") from exc


def _all(root: Any, local_name: str) -> Iterator[Any]:
    """Elements by local name, whatever namespace (prefix or none) the book used."""
    return root.iterfind(f".//{{*}}{local_name}")


# -- reStructuredText -----------------------------------------------------------------------------


def partition_rst(data: bytes, options: ParseOptions) -> list[Any]:
    from docutils import nodes
    from docutils.core import publish_doctree, publish_from_doctree
    from unstructured.partition.html import partition_html

    settings = _rst_settings()
    doctree = publish_doctree(decode_text(data), settings_overrides=settings)
    for image in doctree.findall(nodes.image):
        # ``:loading: embed`` would make the HTML writer read the named file, whatever it is
        image.attributes.pop("loading", None)
    page = publish_from_doctree(doctree, writer="html5", settings_overrides=settings)
    return partition_html(text=str(page), languages=list(options.languages))


def _rst_settings() -> dict[str, Any]:
    return {
        "file_insertion_enabled": False,  # include, csv-table :file:, image sizes from files
        "raw_enabled": False,
        "image_loading": "link",
        "report_level": 5,  # no system messages in the text
        "halt_level": 5,  # no error stops the document
        "warning_stream": io.StringIO(),
        "_disable_config": True,  # no docutils.conf of this machine
        "embed_stylesheet": False,
        "syntax_highlight": "none",
        "output_encoding": "unicode",
    }


# -- Org mode -------------------------------------------------------------------------------------

_ORG_HEADING = re.compile(r"^\*+\s+(.*)$")
_ORG_KEYWORD = re.compile(r"^\s*#\+(\w+):\s*(.*)$")
_ORG_BLOCK = re.compile(r"^\s*#\+(begin|end)_(\w+)", re.IGNORECASE)
_ORG_COMMENT = re.compile(r"^\s*#(\s|$)")
_ORG_DRAWER = re.compile(r"^\s*:[\w-]+:\s*$")
_ORG_DRAWER_END = re.compile(r"^\s*:end:\s*$", re.IGNORECASE)
_ORG_ITEM = re.compile(r"^\s*(?:[-+]|\d+[.)])\s+(.*)$")
_ORG_TABLE_RULE = re.compile(r"^\s*\|-")
_ORG_HEADING_TODO = re.compile(r"^(?:TODO|DONE)\s+|^\[#\w\]\s*")
_ORG_HEADING_TAGS = re.compile(r"\s+:[\w@#%:]+:\s*$")
_ORG_LINK = re.compile(r"\[\[([^\]]*)\](?:\[([^\]]*)\])?\]")
_ORG_EMPHASIS = re.compile(r"(^|[\s\-({'\"])([*/_=~+])(\S|\S.*?\S)\2(?=[\s\-.,:;!?'\")\]}]|$)")
#: blocks whose lines are kept as written
_ORG_VERBATIM = frozenset({"src", "example"})


def partition_org(data: bytes, options: ParseOptions) -> list[Any]:
    return [_org_element(kind, lines) for kind, lines in org_blocks(decode_text(data))]


def org_blocks(text: str) -> Iterator[tuple[str, list[str]]]:
    """(kind, lines) of each block of an Org document, in order; kinds are title, text,
    list_item, table (a line per row) and code."""
    kind = ""
    block: list[str] = []
    inside = ""  # "code" or "drawer": the lines up to its end are not prose
    for line in text.splitlines():
        if inside == "code":
            if _ORG_BLOCK.match(line):  # its #+END_
                yield "code", block
                block, inside = [], ""
            else:
                block.append(line)
            continue
        if inside == "drawer":
            inside = "" if _ORG_DRAWER_END.match(line) else inside
            continue
        new, content = _org_line(line)
        if kind and not _continues(kind, new):
            yield kind, block
            kind, block = "", []
        if new in ("code", "drawer"):
            inside = new
        elif kind and new in ("more", "table"):
            block.append(content)
        elif new in ("title", "list_item", "table", "more"):
            kind, block = ("text" if new == "more" else new), [content]
    if inside == "code" or kind:
        yield inside or kind, block


def _continues(kind: str, new: str) -> bool:
    """Whether a line of kind ``new`` belongs to the open block of ``kind``."""
    if kind == "table":
        return new in ("table", "rule")
    return kind in ("text", "list_item") and new == "more"


def _org_line(line: str) -> tuple[str, str]:
    """What one line (outside blocks and drawers) is: its kind and its content.

    Kinds: title, list_item, table, more (a line of prose), code (a block starts), drawer,
    skip (a blank, a comment or a setting: it ends the paragraph), rule (a table's rule)."""
    stripped = line.strip()
    if not stripped:
        return "skip", ""
    if heading := _ORG_HEADING.match(line):
        title = _ORG_HEADING_TAGS.sub("", _ORG_HEADING_TODO.sub("", heading.group(1).strip()))
        return "title", title
    if block := _ORG_BLOCK.match(line):
        begins = block.group(1).lower() == "begin"
        return ("code" if begins and block.group(2).lower() in _ORG_VERBATIM else "skip"), ""
    if keyword := _ORG_KEYWORD.match(line):
        return ("title" if keyword.group(1).lower() == "title" else "skip"), keyword.group(2)
    if _ORG_COMMENT.match(line):
        return "skip", ""
    if _ORG_DRAWER.match(line):
        return "drawer", ""
    if stripped.startswith("|"):
        return ("rule", "") if _ORG_TABLE_RULE.match(line) else ("table", stripped)
    if item := _ORG_ITEM.match(line):
        return "list_item", item.group(1)
    return "more", stripped


def _org_element(kind: str, lines: list[str]) -> Any:
    from unstructured.documents.elements import (
        CodeSnippet,
        ElementMetadata,
        ListItem,
        NarrativeText,
        Table,
        Title,
    )

    if kind == "code":
        return CodeSnippet(text="\n".join(lines))
    if kind == "table":
        rows = [[_org_inline(c.strip()) for c in line.strip("|").split("|")] for line in lines]
        metadata = ElementMetadata(text_as_html=_table_html(rows))
        return Table(text="\n".join(" | ".join(row) for row in rows), metadata=metadata)
    text = _org_inline(_join_lines(lines))
    return {"title": Title, "list_item": ListItem}.get(kind, NarrativeText)(text=text)


def _org_inline(text: str) -> str:
    """Link descriptions (or targets) and text without emphasis markers."""
    text = _ORG_LINK.sub(lambda m: m.group(2) or m.group(1), text)
    return _ORG_EMPHASIS.sub(r"\1\3", text)


def _join_lines(lines: list[str]) -> str:
    """A paragraph's lines as one: no space is put between two Japanese characters."""
    text = ""
    for line in (line.strip() for line in lines):
        cjk = text and CJK_CHAR.match(text[-1]) and CJK_CHAR.match(line[:1])
        text += line if not text or cjk else f" {line}"
    return text


def _table_html(rows: list[list[str]]) -> str:
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table>{body}</table>"


# -- XML ------------------------------------------------------------------------------------------


def partition_xml(data: bytes, options: ParseOptions) -> list[Any]:
    from unstructured.partition.xml import partition_xml as partition

    # bytes, not text: the parser follows the document's own encoding declaration
    return partition(file=io.BytesIO(data), xml_keep_tags=False, languages=list(options.languages))
