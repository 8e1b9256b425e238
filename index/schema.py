"""The point contract downstream apps read: ids, vector names, payload fields.

Payload layout follows LangChain's Qdrant vector store defaults: the text under ``page_content``,
everything else under ``metadata``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from ingest.paths import display

DEFAULT_COLLECTION = "shareindex"
DENSE = "dense"
SPARSE = "sparse"
CONTENT_KEY = "page_content"
METADATA_KEY = "metadata"

#: payload fields that filters use, with their Qdrant index type
INDEXED_FIELDS: dict[str, str] = {
    "metadata.acl": "keyword",
    "metadata.acl_deny": "keyword",
    "metadata.share_acl": "keyword",
    "metadata.share_acl_deny": "keyword",
    "metadata.doc_id": "keyword",
    "metadata.share": "keyword",
    "metadata.path": "keyword",
    "metadata.kind": "keyword",
    "metadata.version": "integer",
    "metadata.text_hash": "keyword",
}

_NAMESPACE = uuid.UUID("5f1c3b0e-8a55-4f3e-9a43-0d7c4b1e2a61")


def document_id(share: str, path: str) -> str:
    """Stable id of a document: derived from where it was first seen (``path`` in text form)."""
    return str(uuid.uuid5(_NAMESPACE, f"{share}\x00{path}"))


def point_id(doc_id: str, version: int, chunk_index: int) -> str:
    """Deterministic point id: writing the same chunk twice overwrites, never duplicates."""
    return str(uuid.uuid5(_NAMESPACE, f"{doc_id}\x00{version}\x00{chunk_index}"))


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def location_metadata(path: str, mtime_ns: int) -> dict[str, Any]:
    """The payload fields that change when a file is moved or renamed.

    ``path`` is the text form that finds the file again (``ingest.paths``: the name itself unless
    it is not UTF-8); ``display_path`` and ``filename`` are for people (a Shift_JIS name decoded)."""
    shown = display(path)
    return {
        "path": path,
        "display_path": shown,
        "filename": shown.rsplit("/", 1)[-1],
        "mtime": datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat(timespec="seconds"),
    }


def build_metadata(
    *,
    doc_id: str,
    share: str,
    path: str,
    version: int,
    content_hash: str,
    chunk_index: int,
    chunk_count: int,
    kind: str,
    kinds: list[str],
    page_numbers: list[int],
    section: str | None,
    mtime_ns: int,
    filetype: str,
    embedding_model: str,
    text_hash: str,
    acl: list[str],
    acl_deny: list[str],
    share_acl: list[str],
    share_acl_deny: list[str],
) -> dict[str, Any]:
    return {
        "doc_id": doc_id,
        "share": share,
        **location_metadata(path, mtime_ns),
        "filetype": filetype,
        "version": version,
        "content_hash": content_hash,
        "chunk_index": chunk_index,
        "chunk_count": chunk_count,
        "prev_chunk": chunk_index - 1 if chunk_index > 0 else None,
        "next_chunk": chunk_index + 1 if chunk_index + 1 < chunk_count else None,
        "page_number": page_numbers[0] if page_numbers else None,
        "page_numbers": page_numbers,
        "kind": kind,
        "kinds": kinds,
        "section": section,
        "ingested_at": now_iso(),
        "embedding_model": embedding_model,
        "text_hash": text_hash,
        "acl": acl,
        "acl_deny": acl_deny,
        "share_acl": share_acl,
        "share_acl_deny": share_acl_deny,
    }
