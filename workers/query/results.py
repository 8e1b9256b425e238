"""A hit as the chat front ends get it (MCP, Dify, the tool server): the chunk, its score, and
where the person can open the file, ``source``: ``\\\\server\\share\\path`` for an SMB share, the
file's path for a local one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from index.vectors import Hit


@dataclass(frozen=True)
class Sources:
    """Share name -> its root as people open it (settings ``shares``)."""

    roots: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of_shares(cls, shares: Mapping[str, Path | str]) -> Sources:
        from ingest.smbfs import SmbLocation

        roots: dict[str, str] = {}
        for name, root in shares.items():
            if isinstance(root, str) and root.startswith("smb://"):
                roots[name] = SmbLocation.parse(root).unc()
            else:
                roots[name] = os.fspath(root)
        return cls(roots)

    def source(self, share: str, path: str) -> str:
        root = self.roots.get(share)
        if root is None:  # a share this process was not given (the API of a Qdrant server)
            return f"{share}/{path}"
        if root.startswith("\\\\"):
            return root + "\\" + path.replace("/", "\\")
        return os.path.join(root, path)


def result(hit: Hit, sources: Sources) -> dict[str, Any]:
    """``{content, score, share, path, source, title, modified, version, doc_id, chunk}``:
    ``path`` as the index names the file, ``source`` as a person opens it, ``doc_id`` and
    ``chunk`` the document and the passage's index in it (for its neighbours)."""
    meta = hit.metadata
    share, path = str(meta.get("share", "")), str(meta.get("path", ""))
    shown = str(meta.get("display_path") or path)
    return {
        "content": hit.page_content,
        "score": hit.score,
        "share": share,
        "path": path,
        "source": sources.source(share, shown),
        "title": meta.get("filename") or shown.rsplit("/", 1)[-1],
        "modified": meta.get("mtime"),
        "version": meta.get("version"),
        "doc_id": meta.get("doc_id"),
        "chunk": meta.get("chunk_index"),
    }


def citation(n: int, item: Mapping[str, Any]) -> str:
    """A hit as text for a model: a numbered citation, then the passage."""
    where = item["source"]
    return f"[{n}] {item['title']} ({where}, modified {item['modified']})\n{item['content']}"
