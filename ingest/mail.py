"""E-mail messages (.eml, RFC 5322) and Outlook messages (.msg, [MS-OXMSG]): the message itself
(subject, sender, recipients, date, body) and its attachments, each of which becomes a document
of its own (``ingest.stages.members``).

An attached message (``message/rfc822``) is an attachment named ``<subject>.eml``, so that it is
read as a message in its turn. Encrypted messages (S/MIME enveloped, PGP, Microsoft rights
protection) cannot be read without the recipient's key: they are refused with that reason. A
signed message is read (the signature hides nothing); an opaque-signed one wraps its content in
the signature and is refused with its reason.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.message import EmailMessage, Message, MIMEPart
from typing import Any

from ingest.archives import Part, unique_names
from ingest.errors import CorruptDocument, EncryptedDocument

MAIL_FILETYPES = frozenset({"eml", "msg"})

_SIGNATURES = frozenset({
    "application/pkcs7-signature", "application/x-pkcs7-signature", "application/pgp-signature",
})  # fmt: skip
_PKCS7 = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime"})
_UNSAFE_IN_NAME = re.compile(r'[\x00-\x1f/\\:*?"<>|]')


@dataclass
class MailMessage:
    """What a message says, ready to become the elements of its document."""

    subject: str = ""
    #: "From: ...", "To: ...", "Cc: ...", "Date: ..." lines, those the message has
    headers: list[str] = field(default_factory=list)
    text: str = ""
    html: str = ""
    attachments: list[Part] = field(default_factory=list)


def read_message(data: bytes, filetype: str) -> MailMessage:
    if filetype == "eml":
        return read_eml(data)
    if filetype == "msg":
        return read_msg(data)
    raise ValueError(f"not a mail filetype: {filetype}")


# -- .eml -------------------------------------------------------------------------------------
def read_eml(data: bytes) -> MailMessage:
    parsed = email.message_from_bytes(data, policy=email.policy.default)
    if not isinstance(parsed, EmailMessage) or not (parsed.keys() or parsed.get_payload()):
        raise CorruptDocument("not an e-mail message (no headers, no body)")
    message = MailMessage(subject=_header(parsed, "subject"))
    for name in ("from", "to", "cc", "date"):
        if value := _header(parsed, name):
            message.headers.append(f"{name.capitalize()}: {value}")
    content = _readable_content(parsed)
    body = content.get_body(preferencelist=("plain", "html"))
    if body is not None:
        text = _text_of(body)
        if body.get_content_type() == "text/html":
            message.html = text
        else:
            message.text = text
    elif content.get_content_maintype() == "text":  # a bare text message without a structure
        message.text = _text_of(content)
    message.attachments = _eml_attachments(content)
    return message


def _readable_content(msg: EmailMessage) -> EmailMessage:
    """The part that holds the message's content; refuses what cannot be read."""
    ctype = msg.get_content_type()
    if ctype == "multipart/encrypted":
        raise EncryptedDocument(
            "encrypted message (PGP/MIME): it cannot be read without the recipient's key"
        )
    if ctype in _PKCS7:
        kind = str(msg.get_param("smime-type") or "enveloped-data").lower()
        if kind == "signed-data":
            raise EncryptedDocument(
                "opaque-signed S/MIME message: its content is wrapped in the signature, which "
                "is not unpacked; ask the sender for a clear-signed copy"
            )
        raise EncryptedDocument(
            "encrypted message (S/MIME): it cannot be read without the recipient's key"
        )
    if ctype == "multipart/signed":  # clear-signed: the first part is the message
        first = msg.get_payload(0)
        if isinstance(first, EmailMessage):
            return _readable_content(first)
    return msg


def _eml_attachments(msg: EmailMessage) -> list[Part]:
    parts: list[Part] = []
    if not msg.is_multipart():
        return parts
    for index, part in enumerate(msg.iter_attachments(), start=1):
        ctype = part.get_content_type()
        if ctype in _SIGNATURES:
            continue  # the signature of the message, not an attachment anyone wrote
        if ctype == "message/rfc822":
            inner = part.get_payload(0) if part.is_multipart() else None
            if not isinstance(inner, Message):
                continue
            data = inner.as_bytes(policy=email.policy.default)
            name = _attachment_name(part.get_filename() or f"{inner['subject'] or 'message'}.eml")
            if not name.lower().endswith(".eml"):
                name += ".eml"
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
            name = _attachment_name(part.get_filename() or f"attachment-{index}")
        parts.append(_bytes_part(name, data))
    return unique_names(parts)


def _header(msg: Message, name: str) -> str:
    try:
        value = msg.get(name)
    except (ValueError, TypeError, IndexError):  # a malformed header: read as the raw text
        value = msg.get_all(name, [None])[0] if hasattr(msg, "get_all") else None
    return " ".join(str(value).split()) if value else ""


def _text_of(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # an unknown charset: the raw bytes
        payload = part.get_payload(decode=True)
        content = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


# -- .msg -------------------------------------------------------------------------------------
def read_msg(data: bytes) -> MailMessage:
    from oxmsg import Message as OutlookMessage

    try:
        msg = OutlookMessage.load(data)
        message_class = msg.message_class
    except Exception as exc:  # olefile and oxmsg raise many kinds on broken input
        raise CorruptDocument(f"not a valid Outlook message: {type(exc).__name__}: {exc}") from exc
    klass = message_class.lower()
    names = [(a.file_name or "").lower() for a in _msg_attachments_raw(msg)]
    if klass.startswith("ipm.note.smime") and "multipartsigned" not in klass:
        raise EncryptedDocument(
            "encrypted message (S/MIME): it cannot be read without the recipient's key"
        )
    if "rpmsg" in klass or "message.rpmsg" in names:
        raise EncryptedDocument(
            "rights-protected message (Microsoft IRM): it cannot be read without the "
            "recipient's rights"
        )
    if "multipartsigned" in klass:  # the signed MIME message travels as smime.p7m
        for attachment in _msg_attachments_raw(msg):
            if (attachment.file_name or "").lower() == "smime.p7m" and attachment.file_bytes:
                signed = read_eml(attachment.file_bytes)
                signed.subject = signed.subject or msg.subject
                return signed
    message = MailMessage(subject=" ".join(msg.subject.rstrip("\x00").split()))
    try:
        sender = msg.sender
        headers = msg.message_headers
        sent = msg.sent_date
    except Exception as exc:
        raise CorruptDocument(f"damaged Outlook message headers: {exc}") from exc
    if sender:
        message.headers.append(f"From: {' '.join(sender.split())}")
    to = headers.get("To") or headers.get("to") or _display(msg, 0x0E04)
    cc = headers.get("Cc") or headers.get("cc") or _display(msg, 0x0E03)
    for label, value in (("To", to), ("Cc", cc)):
        if value:
            message.headers.append(f"{label}: {' '.join(value.split())}")
    if isinstance(sent, datetime):
        message.headers.append(f"Date: {sent.isoformat()}")
    message.text = (msg.body or "").rstrip("\x00")
    if not message.text.strip():
        try:
            message.html = msg.html_body or ""
        except (LookupError, UnicodeDecodeError):
            message.html = ""
    message.attachments = unique_names(
        [_msg_part(a, index) for index, a in enumerate(_msg_attachments_raw(msg), start=1)]
    )
    return message


def _msg_attachments_raw(msg: object) -> list[Any]:
    try:
        return list(msg.attachments)  # type: ignore[attr-defined]
    except Exception as exc:
        raise CorruptDocument(f"damaged Outlook message attachments: {exc}") from exc


def _display(msg: object, pid: int) -> str:
    try:
        return msg.properties.str_prop_value(pid) or ""  # type: ignore[attr-defined]
    except Exception:
        return ""


_ATTACH_METHOD = 0x3705
_BY_REFERENCE = {2: "by reference", 3: "by reference", 4: "by reference", 7: "as a web link"}


def _msg_part(attachment: object, index: int) -> Part:
    a = attachment
    name = _attachment_name(getattr(a, "file_name", None) or f"attachment-{index}")
    try:
        method = a.properties.int_prop_value(_ATTACH_METHOD)  # type: ignore[attr-defined]
        data = a.file_bytes  # type: ignore[attr-defined]
    except Exception as exc:
        return Part(name, 0, _nothing, ("failed", f"damaged attachment: {exc}"))
    if method == 5:
        reason = "an attached Outlook item (an embedded message); save it as .msg to index it"
        return Part(name, 0, _nothing, ("skipped", reason))
    if method in _BY_REFERENCE:
        reason = f"attached {_BY_REFERENCE[method]}: only a link to the file is in the message"
        return Part(name, 0, _nothing, ("skipped", reason))
    return _bytes_part(name, data or b"")


# -- both -------------------------------------------------------------------------------------
def _bytes_part(name: str, data: bytes) -> Part:
    if not data:
        return Part(name, 0, _nothing, ("skipped", "empty attachment (0 bytes)"))
    return Part(name, len(data), lambda: data)


def _nothing() -> bytes:
    return b""


def _attachment_name(raw: str) -> str:
    """``attachments/NAME``: a name as the sender gave it, with what no path may hold replaced."""
    name = _UNSAFE_IN_NAME.sub("_", " ".join(str(raw).rstrip("\x00").split())).strip(". ")
    name = name or "attachment"
    return f"attachments/{name}"
