"""Messages and archives: the container's own document, and each attachment or member as a
document of its own, addressed inside the file; hostile and unreadable ones recorded with their
reason, the rest going on."""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest

from ingest import nlp_fallback
from ingest.errors import CorruptDocument, DecompressionBomb, EncryptedDocument
from ingest.models import Member, PreparedDocument, SourceFile
from ingest.stages.chunk import ChunkOptions, DocumentChunker
from ingest.stages.members import prepare_container, read_source
from ingest.stages.parse import ParseOptions, filetype_of
from tests.mailfiles import eml, outlook_msg, zip_of


@pytest.fixture
def chunker(token_counter: Any) -> DocumentChunker:
    nlp_fallback.install()  # as a parse process does: nothing is downloaded
    return DocumentChunker(token_counter, ChunkOptions())


def _prepare(
    folder: Path, name: str, data: bytes, chunker: DocumentChunker, **options: Any
) -> PreparedDocument:
    (folder / name).write_bytes(data)
    known = options.pop("known", ())
    source = SourceFile("s", str(folder), name, len(data), 0, known_members=tuple(known))
    return prepare_container(source, ParseOptions(**options), chunker)


def _members(doc: PreparedDocument) -> dict[str, Member]:
    assert doc.members is not None
    return {m.address: m for m in doc.members}


def _text(doc: PreparedDocument | None) -> str:
    assert doc is not None
    return "\n".join(c.text for c in doc.chunks)


def test_a_message_and_each_attachment_are_documents_nested_ones_too(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    inner = eml("Inner note", "The kestrel inspection is moved to Friday.")
    bundle = zip_of({"q3/summary.txt": b"Quarterly walrus migration figures."})
    data = eml(
        "Offer for the heron project",
        "Dear Bob,\n\nplease find the offer attached.",
        [("prices.txt", b"Seventeen flamingo units at 40 yen."),
         ("forwarded.eml", inner), ("bundle.zip", bundle)],
    )  # fmt: skip
    doc = _prepare(tmp_path, "offer.eml", data, chunker)
    own = _text(doc)
    assert "Offer for the heron project" in own and "From: Alice Example" in own
    assert "Date: Tue, 01 Oct 2024" in own and "please find the offer attached" in own
    assert "Attachments: prices.txt, forwarded.eml, bundle.zip" in own
    assert doc.parsed.filetype == "eml"
    members = _members(doc)
    assert set(members) == {
        "attachments/prices.txt", "attachments/forwarded.eml", "attachments/bundle.zip",
        "attachments/bundle.zip#q3/summary.txt",
    }  # fmt: skip
    assert "flamingo" in _text(members["attachments/prices.txt"].document)
    assert "kestrel" in _text(members["attachments/forwarded.eml"].document)
    assert "walrus" in _text(members["attachments/bundle.zip#q3/summary.txt"].document)
    nested = members["attachments/bundle.zip#q3/summary.txt"].document
    assert nested is not None and nested.source.member == "attachments/bundle.zip#q3/summary.txt"
    assert nested.source.address == "offer.eml#attachments/bundle.zip#q3/summary.txt"
    # a member is read again by its address (figures are captioned this way)
    again = read_source(nested.source, 10_000_000)
    assert again.data == b"Quarterly walrus migration figures."


def test_an_outlook_message_with_japanese_text_and_attachments(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    data = outlook_msg(
        "見積書の送付について", "山田様\n\n見積書を添付いたします。納期は十月末です。",
        [("見積.txt", "単価はトキ部品一個あたり四十円です。".encode()),
         ("report.eml", eml("Nested", "The osprey valve report."))],
    )  # fmt: skip
    doc = _prepare(tmp_path, "mail.msg", data, chunker)
    own = _text(doc)
    assert "見積書の送付について" in own and "納期は十月末です" in own
    assert "From: Alice Example <alice@example.com>" in own and "To: bob@example.com" in own
    members = _members(doc)
    assert "トキ部品" in _text(members["attachments/見積.txt"].document)
    assert "osprey" in _text(members["attachments/report.eml"].document)


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("smime.msg", outlook_msg("Secret", "x", [("smime.p7m", b"0\x80" * 40)],
                                  message_class="IPM.Note.SMIME"), "encrypted message (S/MIME)"),
        ("irm.msg", outlook_msg("Secret", "x", [("message.rpmsg", b"x" * 40)],
                                message_class="IPM.Note.rpmsg"), "rights-protected message"),
        ("smime.eml", b"Subject: s\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data"
                      b"; name=smime.p7m\nContent-Transfer-Encoding: base64\n\nMIAGCSqGSIb3DQEH\n",
         "encrypted message (S/MIME)"),
        ("pgp.eml", b'Subject: s\nContent-Type: multipart/encrypted; boundary="b"\n\n--b\n'
                    b"Content-Type: application/pgp-encrypted\n\nVersion: 1\n--b--\n",
         "encrypted message (PGP/MIME)"),
        ("opaque.eml", b"Subject: s\nContent-Type: application/pkcs7-mime; smime-type=signed-data"
                       b"\n\nMIAG\n", "opaque-signed S/MIME message"),
    ],
)  # fmt: skip
def test_encrypted_messages_fail_with_their_reason(
    tmp_path: Path, chunker: DocumentChunker, name: str, data: bytes, reason: str
) -> None:
    with pytest.raises(EncryptedDocument, match=re.escape(reason)):
        _prepare(tmp_path, name, data, chunker)


def test_a_clear_signed_message_is_read_without_its_signature(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    data = (
        b'Subject: Signed memo\nContent-Type: multipart/signed; protocol="application/pkcs7-'
        b'signature"; boundary="s"\n\n--s\nContent-Type: text/plain\n\nThe albatross budget '
        b"is signed off.\n--s\nContent-Type: application/pkcs7-signature; name=smime.p7s\n"
        b"Content-Transfer-Encoding: base64\n\nMIAGCSqG\n--s--\n"
    )
    doc = _prepare(tmp_path, "signed.eml", data, chunker)
    assert "albatross budget" in _text(doc)
    assert _members(doc) == {}  # the signature is not an attachment


def test_a_damaged_message_fails_as_such(tmp_path: Path, chunker: DocumentChunker) -> None:
    with pytest.raises(CorruptDocument, match="not a valid Outlook message"):
        _prepare(tmp_path, "broken.msg", b"\xd0\xcf\x11\xe0" + bytes(600), chunker)


def test_archive_members_hostile_names_encrypted_and_unsupported_ones(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    data = zip_of({
        "reports/q3.txt": b"Q3: the pelican line ran at 97 percent.",
        "../../etc/passwd.txt": b"root:x:0:0",
        "/abs/evil.txt": b"absolute",
        "secret.txt": b"locked text",
        "setup.exe": b"MZ\x90\x00",
        "empty.txt": b"",
    }, encrypt=frozenset({"secret.txt"}))  # fmt: skip
    doc = _prepare(tmp_path, "bundle.zip", data, chunker)
    assert "Archive bundle.zip: 6 file(s)" in _text(doc)
    members = _members(doc)
    assert "pelican" in _text(members["reports/q3.txt"].document)
    unsafe = {a: m for a, m in members.items() if a.startswith("unsafe-name-")}
    assert len(unsafe) == 2 and all(m.document is None for m in unsafe.values())
    assert all("points outside the archive" in m.error[1] for m in unsafe.values())  # type: ignore[index]
    assert members["secret.txt"].error == (
        "failed", "password-protected member: it cannot be read without its password"
    )  # fmt: skip
    assert members["setup.exe"].error == (
        "skipped", "unsupported file type (.exe): a program, not a document"
    )  # fmt: skip
    assert members["empty.txt"].error is not None and members["empty.txt"].error[0] == "skipped"


def test_japanese_windows_zip_names_are_read_as_shift_jis(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    data = bytearray(zip_of({"報告書.txt": "サギ工場の報告".encode()}))
    # as Japanese Windows writes it: the name in cp932, without the UTF-8 flag
    utf8, sjis = "報告書.txt".encode(), "報告書.txt".encode("cp932")
    data = data.replace(utf8, sjis)
    for at in (data.find(b"PK\x03\x04") + 7, data.find(b"PK\x01\x02") + 9):
        data[at] &= ~0x08  # the UTF-8 flag (bit 11) lives in the high byte of the flags
    for at in (data.find(b"PK\x03\x04") + 26, data.find(b"PK\x01\x02") + 28):
        data[at : at + 2] = len(sjis).to_bytes(2, "little")
    end = data.find(b"PK\x05\x06")
    cd = data.find(b"PK\x01\x02")
    data[end + 12 : end + 16] = (end - cd).to_bytes(4, "little")  # the central directory size
    data[end + 16 : end + 20] = cd.to_bytes(4, "little")
    doc = _prepare(tmp_path, "jp.zip", bytes(data), chunker)
    assert "サギ工場" in _text(_members(doc)["報告書.txt"].document)


def test_bombs_and_limits_refuse_the_archive_or_the_member(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    bomb = zip_of({"zeros.txt": b"0" * 5_000_000})
    assert len(bomb) < 50_000
    with pytest.raises(DecompressionBomb, match="decompression bomb"):
        _prepare(tmp_path, "bomb.zip", bomb, chunker, max_uncompressed_bytes=1_000_000)
    many = zip_of({f"f{i}.txt": b"x" for i in range(30)})
    with pytest.raises(DecompressionBomb, match="30 files, over the limit of 20"):
        _prepare(tmp_path, "many.zip", many, chunker, max_members=20)
    # a member over the file size limit fails alone
    doc = _prepare(tmp_path, "big.zip", zip_of({"big.txt": b"word " * 3000, "ok.txt": b"fine"}),
                   chunker, max_file_bytes=10_000)  # fmt: skip
    members = _members(doc)
    assert members["big.txt"].error is not None and "over the limit" in members["big.txt"].error[1]
    assert members["ok.txt"].document is not None
    # nesting deeper than the limit: recorded, not opened
    deep = zip_of({"l2.zip": zip_of({"l3.zip": zip_of({"deep.txt": b"deep text"})})})
    doc = _prepare(tmp_path, "deep.zip", deep, chunker, max_container_depth=2)
    members = _members(doc)
    assert members["l2.zip"].document is not None
    assert members["l2.zip#l3.zip"].error == (
        "skipped", "a container nested 3 deep; the limit is 2 (max_container_depth)"
    )  # fmt: skip
    assert "l2.zip#l3.zip#deep.txt" not in members


def test_tar_members_links_are_never_followed(tmp_path: Path, chunker: DocumentChunker) -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tf:
        body = b"Tern maintenance schedule for March."
        info = tarfile.TarInfo("docs/schedule.txt")
        info.size = len(body)
        tf.addfile(info, io.BytesIO(body))
        link = tarfile.TarInfo("docs/passwd.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    assert filetype_of("logs/a.tar.gz") == "tar" and filetype_of("x.tgz") == "tar"
    doc = _prepare(tmp_path, "docs.tar.gz", out.getvalue(), chunker)
    members = _members(doc)
    assert "Tern maintenance" in _text(members["docs/schedule.txt"].document)
    error = members["docs/passwd.txt"].error
    assert error is not None and error[0] == "skipped" and "links are not followed" in error[1]


def test_members_the_index_holds_are_hashed_not_parsed(
    tmp_path: Path, chunker: DocumentChunker
) -> None:
    a, b = b"Alpha member text.", b"Bravo member text."
    data = zip_of({"a.txt": a, "b.txt": b, "inner.zip": zip_of({"c.txt": b"Charlie."})})
    inner = zip_of({"c.txt": b"Charlie."})
    known = [("a.txt", hashlib.sha256(a).hexdigest()),
             ("inner.zip", hashlib.sha256(inner).hexdigest()),
             ("inner.zip#c.txt", "c-hash")]  # fmt: skip
    doc = _prepare(tmp_path, "k.zip", data, chunker, known=known)
    members = _members(doc)
    assert members["a.txt"].unchanged and members["a.txt"].content_hash == known[0][1]
    assert members["inner.zip"].unchanged and members["inner.zip#c.txt"].unchanged
    assert members["b.txt"].document is not None  # not known: parsed
